//! Group commit: one thread owns the write connection. Claims queue up while a
//! commit is in flight and the next transaction takes all of them, so many
//! concurrent claims cost one fsync. Nobody is answered before the commit that
//! holds their claim has returned.

use crate::aggregates::{Aggregates, Deltas, PlayerId};
use crate::claim::{self, Cursors};
use crate::error::Result;
use crate::store::{Batch, Db, Event, Holder, Loaded, RECENT_KEEP};
use crate::window::{Clock, Micros, Window};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::cell::Cell;
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Most claims in one transaction; more wait for the next one.
const MAX_BATCH: usize = 16_384;
/// Longest idle sleep when no window is about to expire anything.
const IDLE: Duration = Duration::from_secs(60);

/// A committed claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub ip: Ipv4Addr,
    pub name: Arc<str>,
    pub at: Micros,
    pub seq: i64,
}

pub type ClaimDone = Box<dyn FnOnce(Result<Claimed>) + Send>;
pub type Done = Box<dyn FnOnce(Result<()>) + Send>;

pub enum Job {
    Claim {
        ip: Ipv4Addr,
        nick: String,
        done: ClaimDone,
    },
    /// Commit the windows' expiry up to now; answers whether the store can commit.
    Sync(Done),
    /// Recount the aggregates from the claims and compare.
    Check(Done),
}

/// What readers see: the state as of the last commit.
pub struct View {
    pub names: Vec<Arc<str>>,
    pub ids: HashMap<Arc<str>, PlayerId>,
    pub aggregates: Aggregates,
    /// Newest first, at most `RECENT_KEEP`.
    pub recent: VecDeque<Event>,
    pub updated_at: Micros,
}

impl View {
    pub fn name(&self, id: PlayerId) -> &Arc<str> {
        &self.names[id as usize - 1]
    }

    pub fn id(&self, name: &str) -> Option<PlayerId> {
        self.ids.get(name).copied()
    }
}

pub struct Shared {
    pub view: RwLock<View>,
    /// When the next claim leaves some window (`i64::MAX`: none pending).
    pub expiry_due: AtomicI64,
    /// Whether the last transaction committed.
    pub writable: AtomicBool,
    pub stats: crate::stats::Stats,
}

thread_local! {
    static ON_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// True on the writer and publisher threads (where callbacks run), which must not wait for themselves.
pub fn on_writer_thread() -> bool {
    ON_WRITER.with(Cell::get)
}

pub struct Writer {
    db: Db,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    staged: Staged,
    /// When the next claim leaves a window, as of the last commit.
    due: Micros,
    publisher: Publisher,
}

/// The writer's own state: ahead of `shared.view` while a transaction is open.
struct Staged {
    ids: HashMap<Arc<str>, PlayerId>,
    names: Vec<Arc<str>>,
    aggregates: Aggregates,
    cursors: Cursors,
    last_seq: i64,
    last_at: Micros,
}

impl Writer {
    pub fn new(db: Db, loaded: Loaded, clock: Arc<dyn Clock>) -> Result<(Writer, Arc<Shared>)> {
        let due = db.next_expiry(&loaded.cursors)?.unwrap_or(i64::MAX);
        let ids: HashMap<Arc<str>, PlayerId> = loaded
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as PlayerId + 1))
            .collect();
        let shared = Arc::new(Shared {
            view: RwLock::new(View {
                ids: ids.clone(),
                names: loaded.names.clone(),
                aggregates: loaded.aggregates.clone(),
                recent: loaded.recent.into(),
                updated_at: loaded.updated_at,
            }),
            expiry_due: AtomicI64::new(due),
            writable: AtomicBool::new(true),
            stats: crate::stats::Stats::default(),
        });
        let staged = Staged {
            ids,
            names: loaded.names,
            aggregates: loaded.aggregates,
            cursors: loaded.cursors,
            last_seq: loaded.last_seq,
            last_at: loaded.last_at,
        };
        let publisher = Publisher::start(shared.clone()).map_err(|e| crate::Error::Open {
            path: "(threads)".into(),
            message: e.to_string(),
        })?;
        let writer = Writer {
            db,
            clock,
            shared: shared.clone(),
            staged,
            due,
            publisher,
        };
        Ok((writer, shared))
    }

    /// Runs until every sender is gone, then finishes what is queued.
    pub fn run(mut self, jobs: Receiver<Job>) {
        ON_WRITER.with(|c| c.set(true));
        loop {
            let wait = self.until_due();
            let first = match jobs.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch: Vec<Job> = first.into_iter().collect();
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.is_empty() && self.until_due() > Duration::ZERO {
                continue;
            }
            self.run_batch(batch);
        }
    }

    fn until_due(&self) -> Duration {
        let left = self.due.saturating_sub(self.clock.now());
        Duration::from_micros(left.max(0) as u64).min(IDLE)
    }

    fn run_batch(&mut self, jobs: Vec<Job>) {
        let mut claims = Vec::new();
        let mut replies = Vec::new();
        let mut waiters = Vec::new();
        let mut checks = Vec::new();
        for job in jobs {
            match job {
                Job::Claim { ip, nick, done } => {
                    claims.push((ip, nick));
                    replies.push(done);
                }
                Job::Sync(done) => waiters.push(done),
                Job::Check(done) => checks.push(done),
            }
        }
        let requests: Vec<(Ipv4Addr, &str)> =
            claims.iter().map(|(ip, n)| (*ip, n.as_str())).collect();
        let started = std::time::Instant::now();
        let outcome = self.commit(&requests);
        self.shared
            .writable
            .store(outcome.is_ok(), Ordering::Release);
        match &outcome {
            Ok(_) => self
                .shared
                .stats
                .committed(requests.len(), started.elapsed()),
            Err(_) => self.shared.stats.failed(requests.len()),
        }
        match outcome {
            Ok(mut publication) => {
                publication.replies = replies;
                publication.waiters = waiters;
                self.publisher.publish(publication);
            }
            Err(e) => {
                replies.into_iter().for_each(|r| r(Err(e.clone())));
                waiters.into_iter().for_each(|w| w(Err(e.clone())));
            }
        }
        if !checks.is_empty() {
            self.publisher.flush();
            let view = self.shared.view.read().unwrap_or_else(|p| p.into_inner());
            for check in checks {
                check(self.db.check(Some(&view.aggregates)));
            }
        }
    }

    /// One transaction: expire what slid out of the windows, record the claims,
    /// write the changed tallies and holders, and commit.
    fn commit(&mut self, requests: &[(Ipv4Addr, &str)]) -> Result<Publication> {
        let s = &self.staged;
        let saved = (s.cursors, s.last_seq, s.last_at, s.names.len());
        // Time never runs backwards in the store, whatever the system clock does.
        let now = self.clock.now().max(s.last_at);
        match stage_and_commit(&mut self.db, &mut self.staged, requests, now) {
            Ok((deltas, claimed)) => {
                let s = &self.staged;
                self.due = self
                    .db
                    .next_expiry(&s.cursors)
                    .ok()
                    .flatten()
                    .unwrap_or(i64::MAX);
                let new_names = s.names[saved.3..].to_vec();
                let recent = claimed
                    .iter()
                    .map(|c| Event {
                        seq: c.seq,
                        ip: u32::from(c.ip),
                        player: s.ids[&c.name],
                        at: c.at,
                    })
                    .collect();
                Ok(Publication {
                    deltas,
                    claimed,
                    recent,
                    new_names,
                    now,
                    due: self.due,
                    replies: Vec::new(),
                    waiters: Vec::new(),
                })
            }
            Err(e) => {
                self.restore(saved);
                Err(e)
            }
        }
    }

    /// Puts the staged state back to the last commit after a failed transaction.
    fn restore(&mut self, saved: (Cursors, i64, Micros, usize)) {
        self.publisher.flush();
        let s = &mut self.staged;
        (s.cursors, s.last_seq, s.last_at) = (saved.0, saved.1, saved.2);
        for name in s.names.drain(saved.3..) {
            s.ids.remove(&name);
        }
        let view = self.shared.view.read().unwrap_or_else(|p| p.into_inner());
        s.aggregates = view.aggregates.clone();
    }
}

/// A committed batch on its way to readers and callers.
struct Publication {
    deltas: Deltas,
    claimed: Vec<Claimed>,
    /// The same claims as events, oldest first.
    recent: Vec<Event>,
    new_names: Vec<Arc<str>>,
    now: Micros,
    due: Micros,
    replies: Vec<ClaimDone>,
    waiters: Vec<Done>,
}

enum Publish {
    Batch(Box<Publication>),
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// Applies committed batches to the readers' view and answers their callers
/// on a second thread, so the writer starts the next transaction at once.
/// One thread, one queue: batches are published in commit order.
struct Publisher {
    queue: Option<std::sync::mpsc::Sender<Publish>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    fn start(shared: Arc<Shared>) -> std::io::Result<Publisher> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cti-publish".into())
            .spawn(move || {
                ON_WRITER.with(|c| c.set(true));
                for message in rx {
                    match message {
                        Publish::Batch(p) => apply(&shared, *p),
                        Publish::Flush(done) => drop(done.send(())),
                    }
                }
            })?;
        Ok(Publisher {
            queue: Some(tx),
            thread: Some(thread),
        })
    }

    fn publish(&self, p: Publication) {
        if let Some(q) = &self.queue {
            let _ = q.send(Publish::Batch(Box::new(p)));
        }
    }

    /// Waits until everything sent so far is published.
    fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if let Some(q) = &self.queue {
            if q.send(Publish::Flush(tx)).is_ok() {
                let _ = rx.recv();
            }
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn apply(shared: &Shared, p: Publication) {
    {
        let mut view = shared.view.write().unwrap_or_else(|e| e.into_inner());
        for name in p.new_names {
            let id = view.names.len() as PlayerId + 1;
            view.ids.insert(name.clone(), id);
            view.names.push(name);
        }
        view.aggregates.apply(&p.deltas);
        for e in p.recent {
            view.recent.push_front(e);
        }
        view.recent.truncate(RECENT_KEEP as usize);
        view.updated_at = p.now;
    }
    shared.expiry_due.store(p.due, Ordering::Release);
    for (reply, claimed) in p.replies.into_iter().zip(p.claimed) {
        reply(Ok(claimed));
    }
    p.waiters.into_iter().for_each(|w| w(Ok(())));
}

fn stage_and_commit(
    db: &mut Db,
    s: &mut Staged,
    requests: &[(Ipv4Addr, &str)],
    now: Micros,
) -> Result<(Deltas, Vec<Claimed>)> {
    let batch = db.begin()?;
    let mut deltas = Deltas::default();
    expire(&batch, &mut s.cursors, &mut deltas, now)?;
    let mut claimed = Vec::with_capacity(requests.len());
    for &(ip, nick) in requests {
        let player = s.player(&batch, nick)?;
        let ip_u32 = u32::from(ip);
        let previous = batch.owner(ip_u32)?;
        s.last_seq += 1;
        let event = Event {
            seq: s.last_seq,
            ip: ip_u32,
            player,
            at: now,
        };
        batch.record(&event)?;
        claim::claim(
            &mut deltas,
            &s.cursors,
            crate::addr::block_of(ip),
            previous,
            player,
        );
        claimed.push(Claimed {
            ip,
            name: s.names[player as usize - 1].clone(),
            at: now,
            seq: event.seq,
        });
    }
    s.last_at = now;
    write_aggregates(&batch, &mut s.aggregates, &deltas)?;
    batch.put_cursors(&s.cursors)?;
    let prune = s.cursors.get(Window::Year).min(s.last_seq - RECENT_KEEP);
    batch.finish(now, prune)?;
    Ok((deltas, claimed))
}

impl Staged {
    fn player(&mut self, batch: &Batch<'_>, nick: &str) -> Result<PlayerId> {
        if let Some(id) = self.ids.get(nick) {
            return Ok(*id);
        }
        let id = self.names.len() as PlayerId + 1;
        batch.add_player(id, nick)?;
        let name: Arc<str> = nick.into();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        Ok(id)
    }
}

/// Moves every window's cursor up to `now`, uncounting claims that slid out.
fn expire(
    batch: &Batch<'_>,
    cursors: &mut Cursors,
    deltas: &mut Deltas,
    now: Micros,
) -> Result<()> {
    for w in Window::SLIDING {
        let Some(len) = w.length() else { continue };
        for gone in batch.expiring(cursors.get(w), now - len)? {
            if gone.current {
                let block = (gone.event.ip >> 24) as u8;
                claim::expire(deltas, w, block, gone.event.player);
            }
            cursors.set(w, gone.event.seq);
        }
    }
    Ok(())
}

/// Applies `deltas` to the staged aggregates and writes the rows that changed:
/// `all` tallies, what has lapsed from each sliding window, and holders.
fn write_aggregates(batch: &Batch<'_>, aggregates: &mut Aggregates, deltas: &Deltas) -> Result<()> {
    let lapsed_before: Vec<[u32; 5]> = deltas
        .keys()
        .map(|&(b, p)| lapsed(aggregates, b, p))
        .collect();
    let blocks: Vec<u8> = deltas
        .keys()
        .map(|(b, _)| *b)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let holders_before: Vec<[Option<Holder>; 6]> =
        blocks.iter().map(|&b| holders(aggregates, b)).collect();
    aggregates.apply(deltas);
    for ((&(b, p), d), before) in deltas.iter().zip(lapsed_before) {
        if d[Window::All.index()] != 0 {
            batch.put_tally(b, p, aggregates.block(b).count(Window::All, p))?;
        }
        let after = lapsed(aggregates, b, p);
        for (i, w) in Window::SLIDING.into_iter().enumerate() {
            if after[i] != before[i] {
                batch.put_lapsed(w, b, p, after[i])?;
            }
        }
    }
    for (&b, before) in blocks.iter().zip(holders_before) {
        let after = holders(aggregates, b);
        for w in Window::EVERY {
            if after[w.index()] != before[w.index()] {
                batch.put_holder(w, b, after[w.index()])?;
            }
        }
    }
    Ok(())
}

fn holders(aggregates: &Aggregates, block: u8) -> [Option<Holder>; 6] {
    Window::EVERY.map(|w| Holder::of(&aggregates.leader(w, block)))
}

/// Per sliding window, how many of `player`'s addresses in `block` have left it.
fn lapsed(aggregates: &Aggregates, block: u8, player: PlayerId) -> [u32; 5] {
    let counts = aggregates.block(block).counts(player);
    let all = counts[Window::All.index()];
    Window::SLIDING.map(|w| all.saturating_sub(counts[w.index()]))
}
