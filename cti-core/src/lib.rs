//! Capture The IP, the core: the game's rules, its SQLite store and
//! aggregates, JSON renderings, and the C ABI of `libcti_core.so` (module
//! [`abi`], header `include/cti_core.h`).
//!
//! Everything that decides the game lives in this crate. Frontends reach it
//! only through the C ABI, never by linking this crate as a Rust library.
//!
//! A store is one writer thread (group commit, see [`writer`]) and any number
//! of readers that see the game as of now from memory (see [`reader`]); a
//! read-only handle is the readers' side alone, following another process's
//! commits.

pub mod abi;
pub mod addr;
pub mod aggregates;
pub(crate) mod check;
pub mod claim;
pub mod error;
pub(crate) mod files;
pub(crate) mod fork;
pub mod health;
pub mod limits;
pub(crate) mod lock;
pub mod nick;
pub mod reader;
pub mod render;
pub mod schedule;
pub mod stats;
pub mod store;
pub mod subscribe;
pub mod view;
pub mod window;
pub mod writer;

pub use error::{Error, Result};
pub use limits::{Limits, NickLimits};
pub use subscribe::Subscription;
pub use window::{Clock, ManualClock, Micros, SystemClock, Window};
pub use writer::Claimed;

use reader::Reader;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use writer::{ClaimDone, Job, Writer, WriterState};

/// Longest list `recent` gives.
pub const RECENT_MAX: usize = store::RECENT_KEEP;

/// An open store. Thread-safe: claims from many threads are committed together.
pub struct Store {
    /// `None` only while dropping a store in a forked child (then leaked).
    inner: Option<Inner>,
    /// The process that opened the store: nothing works in another.
    pid: u32,
}

struct Inner {
    reader: Arc<Reader>,
    /// `None` for a read-only handle.
    writing: Option<Writing>,
    clock: Arc<dyn Clock>,
    limiter: limits::Limiter,
    stats: Arc<stats::Stats>,
    health: health::Health,
    arriving: Arriving,
}

struct Writing {
    jobs: Mutex<Option<SyncSender<Job>>>,
    state: Arc<WriterState>,
    thread: Option<JoinHandle<()>>,
    _checkpointer: store::Checkpointer,
    _lock: lock::WriterLock,
}

impl Store {
    /// Opens (creating if needed) the store at `path` for writing, using the
    /// system clock. One writer per store: a second one is refused with
    /// [`Error::Locked`].
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with_clock(path, Arc::new(SystemClock))
    }

    pub fn open_with_clock(path: &Path, clock: Arc<dyn Clock>) -> Result<Store> {
        // Refuse a device, a directory or another program's file before the
        // lock file is made beside it (as root, `/dev/null` would gain
        // `/dev/null-lock`).
        files::inspect(path).map_err(|message| Error::Open {
            path: path.display().to_string(),
            message,
        })?;
        let mut lock = Some(lock::WriterLock::acquire(path)?);
        let opened = Store::open_locked(path, clock, &mut lock);
        if let (Err(_), Some(lock)) = (&opened, lock.take()) {
            lock.discard();
        }
        opened
    }

    /// The rest of a writable open, under the writer's lock (which the store
    /// takes when it is made).
    fn open_locked(
        path: &Path,
        clock: Arc<dyn Clock>,
        lock: &mut Option<lock::WriterLock>,
    ) -> Result<Store> {
        let db = store::Db::open(path)?;
        let loaded = db.load()?;
        let reader = Arc::new(Reader::new(
            store::Db::open_readonly(path)?,
            loaded.clone(),
            clock.clone(),
            false,
        )?);
        let stats = Arc::new(stats::Stats::default());
        let (writer, state) =
            Writer::new(db, &loaded, clock.clone(), reader.clone(), stats.clone())?;
        drop(loaded);
        let checkpointer = store::Checkpointer::start(path)?;
        let (tx, rx) = mpsc::sync_channel(writer::QUEUE);
        let thread = std::thread::Builder::new()
            .name("cti-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let writing = Writing {
            jobs: Mutex::new(Some(tx)),
            state,
            thread: Some(thread),
            _checkpointer: checkpointer,
            _lock: lock.take().ok_or(Error::Closed)?,
        };
        Ok(Store::assemble(reader, Some(writing), clock, stats, path))
    }

    /// Opens an existing store for reading only, beside a writer in this or
    /// another process (or none). It sees the writer's commits within
    /// [`reader::FOLLOW_EVERY`], slides the windows itself, and refuses
    /// claims with [`Error::ReadOnly`].
    pub fn open_readonly(path: &Path) -> Result<Store> {
        Store::open_readonly_with_clock(path, Arc::new(SystemClock))
    }

    pub fn open_readonly_with_clock(path: &Path, clock: Arc<dyn Clock>) -> Result<Store> {
        let db = store::Db::open_readonly(path)?;
        let loaded = db.load()?;
        let reader = Arc::new(Reader::new(db, loaded, clock.clone(), true)?);
        let stats = Arc::new(stats::Stats::default());
        Ok(Store::assemble(reader, None, clock, stats, path))
    }

    fn assemble(
        reader: Arc<Reader>,
        writing: Option<Writing>,
        clock: Arc<dyn Clock>,
        stats: Arc<stats::Stats>,
        path: &Path,
    ) -> Store {
        Store {
            inner: Some(Inner {
                reader,
                writing,
                clock,
                limiter: limits::Limiter::default(),
                stats,
                health: health::Health::new(path),
                arriving: Arriving::default(),
            }),
            pid: std::process::id(),
        }
    }

    /// The store's parts, in the process that opened it.
    fn inner(&self) -> Result<&Inner> {
        if std::process::id() != self.pid {
            return Err(Error::Forked(self.pid));
        }
        self.inner.as_ref().ok_or(Error::Closed)
    }

    fn writing(&self) -> Result<&Writing> {
        self.inner()?.writing.as_ref().ok_or(Error::ReadOnly)
    }

    pub fn is_readonly(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.writing.is_none())
    }

    fn send(&self, job: Job) -> Result<()> {
        let w = self.writing()?;
        let jobs = w.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let tx = jobs.as_ref().ok_or(Error::Closed)?;
        w.state.queued.fetch_add(1, Ordering::AcqRel);
        tx.try_send(job).map_err(|e| {
            w.state.queued.fetch_sub(1, Ordering::AcqRel);
            match e {
                TrySendError::Full(_) => Error::Unavailable(format!(
                    "the store is overloaded: {} requests are waiting for the disk",
                    writer::QUEUE
                )),
                TrySendError::Disconnected(_) => Error::Closed,
            }
        })
    }

    /// Validates a claim and queues it; `done` runs on a library thread once
    /// the claim is committed (or failed). Invalid input is refused here and
    /// `done` is then never called.
    pub fn claim_with(&self, ip: &str, nick: &str, done: ClaimDone) -> Result<()> {
        let inner = self.inner()?;
        self.writing()?;
        let ip = addr::parse_client(ip)?;
        nick::validate(nick)?;
        // A name not on the board, and not already on its way there in a
        // claim still in flight, is new: it pays from the new-name budget.
        let live = inner.reader.peek().id(nick).is_some();
        let new_name = !live && !inner.arriving.contains(nick);
        let now = inner.clock.now();
        inner
            .limiter
            .admit(ip, new_name, now)
            .map_err(|(budget, wait)| {
                inner.stats.rate_limited();
                Error::RateLimited {
                    what: match budget {
                        limits::Budget::Claims => "claims",
                        limits::Budget::NewNames => "new names",
                    },
                    retry_after: limits::retry_after_secs(wait),
                }
            })?;
        let done = if live {
            done
        } else {
            inner.arriving.wrap(nick, done)
        };
        self.send(Job::Claim {
            ip,
            nick: nick.to_string(),
            done,
            queued: std::time::Instant::now(),
        })
    }

    /// Claims `ip` for `nick` and waits until the claim is on disk.
    pub fn claim(&self, ip: &str, nick: &str) -> Result<Claimed> {
        if writer::on_writer_thread() {
            return Err(Error::WrongThread("a blocking claim"));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.claim_with(ip, nick, Box::new(move |r| drop(tx.send(r))))?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    fn wait(&self, make: impl FnOnce(writer::Done) -> Job) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(make(Box::new(move |r| drop(tx.send(r)))))?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Sets the claim rate limits (on by default: see [`Limits::default`]).
    pub fn set_limits(&self, limits: Limits) -> Result<()> {
        self.inner()?.limiter.set(limits).map_err(Error::Argument)
    }

    /// Sets the limits on new names (on by default: see [`NickLimits::default`]).
    pub fn set_nick_limits(&self, limits: NickLimits) -> Result<()> {
        self.inner()?
            .limiter
            .set_nicks(limits)
            .map_err(Error::Argument)
    }

    /// `Ok` while the store can commit. Answers from the writer's state; the
    /// disk itself is probed at most every [`health::PROBE_EVERY`] (one
    /// probe at a time, its result shared), and a real commit is tried only
    /// while the last one failed.
    pub fn health(&self) -> Result<()> {
        let inner = self.inner()?;
        if writer::on_writer_thread() {
            return Err(Error::WrongThread("the health check"));
        }
        let Some(w) = &inner.writing else {
            return inner.reader.with_db(|db| db.data_version().map(drop));
        };
        health::from_state(&w.state, inner.clock.now())?;
        inner.health.probe(&inner.stats)?;
        if !w.state.writable.load(Ordering::Acquire) {
            self.wait(Job::Sync)?;
        }
        Ok(())
    }

    /// Writes the snapshot of the aggregates that is due next (see `store`),
    /// then recounts every aggregate from the claims table and compares it
    /// with the stored ones, the writer's and the readers' (as of now).
    pub fn check(&self) -> Result<()> {
        if writer::on_writer_thread() {
            return Err(Error::WrongThread("the consistency check"));
        }
        self.writing()?;
        self.wait(Job::Check)
    }

    /// Calls `callback` with each commit event (see [`subscribe`]) on a
    /// thread of its own until the subscription is dropped.
    pub fn subscribe(&self, callback: subscribe::Callback) -> Result<Subscription> {
        self.writing()?;
        self.inner()?
            .reader
            .subscribe(callback)
            .map_err(|e| Error::Unavailable(format!("cannot start a thread: {e}")))
    }

    fn reader(&self) -> Result<&Reader> {
        Ok(&self.inner()?.reader)
    }

    pub fn blocks(&self, window: Window) -> Result<render::BlocksJson> {
        Ok(render::blocks(&self.reader()?.read(), window))
    }

    /// The whole ranking of `window`.
    pub fn ranks(&self, window: Window) -> Result<render::RanksJson> {
        self.ranks_top(window, usize::MAX)
    }

    /// The first `limit` rows of the ranking of `window`.
    pub fn ranks_top(&self, window: Window, limit: usize) -> Result<render::RanksJson> {
        Ok(render::ranks(&self.reader()?.read(), window, limit))
    }

    pub fn recent(&self, limit: usize) -> Result<render::RecentJson> {
        Ok(render::recent(
            &self.reader()?.read(),
            limit.min(RECENT_MAX),
        ))
    }

    /// A player's standing per block in `window`; `NotFound` without claims there.
    pub fn user(&self, nick: &str, window: Window) -> Result<render::UserJson> {
        nick::validate(nick)?;
        let view = self.reader()?.read();
        match view.id(nick).map(|id| render::user(&view, window, id)) {
            Some(u) if !u.standing.is_empty() => Ok(u),
            _ => Err(Error::NotFound(nick.to_string())),
        }
    }

    pub fn score_compat(&self, window: Window) -> Result<render::ScoreCompat> {
        Ok(render::score_compat(&self.reader()?.read(), window))
    }

    pub fn recent_compat(&self, limit: usize) -> Result<render::RecentCompat> {
        Ok(render::recent_compat(
            &self.reader()?.read(),
            limit.min(RECENT_MAX),
        ))
    }

    /// A JSON rendering, made once per version of the data it shows.
    pub fn json(&self, query: Query) -> Result<Arc<str>> {
        let reader = self.reader()?;
        let (kind, window, param) = query.key();
        Ok(reader.cached(
            (kind, window.map_or(255, |w| w.index() as u8), param),
            query.depends_on(),
            |v| query.take(v),
            Taken::finish,
        ))
    }

    /// Counters since the store was opened.
    pub fn stats(&self) -> Result<stats::StatsJson> {
        let inner = self.inner()?;
        let (live, pairs, delivered, dropped) = {
            let view = inner.reader.read();
            let (d, x) = inner.reader.subscribers.counts();
            (view.live_players(), view.aggregates().block_players(), d, x)
        };
        Ok(inner.stats.snapshot(stats::Gauges {
            live_players: live as u64,
            block_players: pairs as u64,
            queued: inner
                .writing
                .as_ref()
                .map_or(0, |w| w.state.queued.load(Ordering::Relaxed) as u64),
            events_delivered: delivered,
            events_dropped: dropped,
            schedule_load_errors: inner.reader.load_errors.load(Ordering::Relaxed),
        }))
    }
}

/// Names not yet on the board with claims in flight, so that a new player's
/// burst of claims pays the new-name budget once, not once per claim sent
/// before the first one commits. Bounded by the writer's queue.
#[derive(Default, Clone)]
struct Arriving(Arc<Mutex<std::collections::HashMap<String, u32>>>);

impl Arriving {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn contains(&self, nick: &str) -> bool {
        self.lock().contains_key(nick)
    }

    /// Counts `nick` as arriving until `done` has run (or been dropped).
    fn wrap(&self, nick: &str, done: ClaimDone) -> ClaimDone {
        *self.lock().entry(nick.to_string()).or_default() += 1;
        let ticket = Ticket {
            arriving: self.clone(),
            nick: nick.to_string(),
        };
        Box::new(move |result| {
            done(result);
            drop(ticket);
        })
    }
}

/// One claim in flight for an arriving name.
struct Ticket {
    arriving: Arriving,
    nick: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut names = self.arriving.lock();
        if let Some(n) = names.get_mut(&self.nick) {
            *n -= 1;
            if *n == 0 {
                names.remove(&self.nick);
            }
        }
    }
}

/// The limit of [`Query::Ranks`] that asks for every row.
pub const RANKS_ALL: u32 = u32::MAX;

/// What [`Store::json`] renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    Blocks(Window),
    /// The first rows of a ranking: [`RANKS_ALL`] for the whole of it.
    Ranks(Window, u32),
    Recent(usize),
    Score(Window),
    RecentCompat(usize),
}

impl Query {
    fn key(self) -> (u8, Option<Window>, u32) {
        match self {
            Query::Blocks(w) => (0, Some(w), 0),
            Query::Ranks(w, limit) => (1, Some(w), limit),
            Query::Recent(n) => (2, None, n.min(RECENT_MAX) as u32),
            Query::Score(w) => (3, Some(w), 0),
            Query::RecentCompat(n) => (4, None, n.min(RECENT_MAX) as u32),
        }
    }

    /// The data it shows: a window's, or the recent list's (`None`).
    fn depends_on(self) -> Option<Window> {
        self.key().1
    }

    /// What the rendering needs from the view, taken under its lock.
    fn take(self, view: &view::View) -> Taken {
        let text = match self {
            Query::Blocks(w) => render::to_json(&render::blocks(view, w)),
            Query::Ranks(w, limit) => render::to_json(&render::ranks(view, w, limit as usize)),
            Query::Recent(n) => render::to_json(&render::recent(view, n.min(RECENT_MAX))),
            Query::Score(w) => return Taken::Score(render::score_rows(view, w)),
            Query::RecentCompat(n) => {
                render::to_json(&render::recent_compat(view, n.min(RECENT_MAX)))
            }
        };
        Taken::Text(text)
    }
}

/// A query's rendering as taken from the view: done already when it is
/// small, or the rows of the whole score, serialized once the lock is released.
enum Taken {
    Text(String),
    Score(render::ScoreRows),
}

impl Taken {
    fn finish(self) -> String {
        match self {
            Taken::Text(text) => text,
            Taken::Score(rows) => rows.to_json(),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        if std::process::id() != self.pid {
            // The threads and the SQLite connections belong to the parent:
            // closing them here could checkpoint or delete its WAL.
            std::mem::forget(inner);
            return;
        }
        inner.reader.subscribers.close_all();
        if let Some(w) = &mut inner.writing {
            // Closing the queue lets the writer commit what is queued and stop.
            w.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(t) = w.thread.take() {
                if !writer::on_writer_thread() {
                    let _ = t.join();
                }
            }
        }
    }
}
