//! Capture The IP, the core: the game's rules, its SQLite store and
//! aggregates, JSON renderings, and the C ABI of `libcti_core.so` (module
//! [`abi`], header `include/cti_core.h`).
//!
//! Everything that decides the game lives in this crate. Frontends reach it
//! only through the C ABI, never by linking this crate as a Rust library.

pub mod abi;
pub mod addr;
pub mod aggregates;
pub mod claim;
pub mod error;
pub mod limits;
pub mod nick;
pub mod render;
pub mod stats;
pub mod store;
pub mod window;
pub mod writer;

pub use error::{Error, Result};
pub use limits::Limits;
pub use window::{Clock, ManualClock, Micros, SystemClock, Window};
pub use writer::Claimed;

use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLockReadGuard};
use std::thread::JoinHandle;
use writer::{ClaimDone, Job, Shared, View, Writer};

/// Longest list `recent` gives.
pub const RECENT_MAX: usize = store::RECENT_KEEP as usize;

/// An open store. Thread-safe: claims from many threads are committed together.
pub struct Store {
    jobs: Mutex<Option<Sender<Job>>>,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    limiter: limits::Limiter,
    /// Beside the database: `health` writes and removes it to see that the
    /// filesystem takes new data (SQLite can commit small transactions into
    /// WAL space it already holds on a full disk).
    probe: std::path::PathBuf,
    thread: Option<JoinHandle<()>>,
    _checkpointer: store::Checkpointer,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, using the system clock.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with_clock(path, Arc::new(SystemClock))
    }

    pub fn open_with_clock(path: &Path, clock: Arc<dyn Clock>) -> Result<Store> {
        let db = store::Db::open(path)?;
        let loaded = db.load()?;
        let (writer, shared) = Writer::new(db, loaded, clock.clone())?;
        let checkpointer = store::Checkpointer::start(path)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cti-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Store {
            jobs: Mutex::new(Some(tx)),
            shared,
            clock,
            limiter: limits::Limiter::default(),
            probe: probe_path(path),
            thread: Some(thread),
            _checkpointer: checkpointer,
        })
    }

    fn send(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.as_ref()
            .ok_or(Error::Closed)?
            .send(job)
            .map_err(|_| Error::Closed)
    }

    /// Validates a claim and queues it; `done` runs on a library thread once
    /// the claim is committed (or failed). Invalid input is refused here and
    /// `done` is then never called.
    pub fn claim_with(&self, ip: &str, nick: &str, done: ClaimDone) -> Result<()> {
        let ip = addr::parse_client(ip)?;
        nick::validate(nick)?;
        self.limiter.admit(ip, self.clock.now()).map_err(|wait| {
            self.shared.stats.rate_limited();
            Error::RateLimited {
                retry_after: limits::retry_after_secs(wait),
            }
        })?;
        self.send(Job::Claim {
            ip,
            nick: nick.to_string(),
            done,
        })
    }

    /// Claims `ip` for `nick` and waits until the claim is on disk.
    pub fn claim(&self, ip: &str, nick: &str) -> Result<Claimed> {
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
    pub fn set_limits(&self, limits: Limits) {
        self.limiter.set(limits);
    }

    /// `Ok` while the store can commit: commits a transaction, and writes and
    /// syncs a small file beside the database.
    pub fn health(&self) -> Result<()> {
        if writer::on_writer_thread() {
            return Ok(());
        }
        self.wait(Job::Sync)?;
        write_probe(&self.probe)
            .map_err(|e| Error::Unavailable(format!("cannot write beside the database: {e}")))
    }

    /// Recounts every aggregate from the claims table and compares.
    pub fn check(&self) -> Result<()> {
        if writer::on_writer_thread() {
            return Err(Error::Closed);
        }
        self.wait(Job::Check)
    }

    /// The state as of the last commit, with the windows slid up to now.
    fn view(&self) -> RwLockReadGuard<'_, View> {
        let due = self
            .shared
            .expiry_due
            .load(std::sync::atomic::Ordering::Acquire);
        if due <= self.clock.now() && !writer::on_writer_thread() {
            // A claim has slid out of a window: let the writer commit that first,
            // so reads are exact. If the store cannot commit, read what there is.
            let _ = self.wait(Job::Sync);
        }
        self.shared.view.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn blocks(&self, window: Window) -> render::BlocksJson {
        render::blocks(&self.view(), window)
    }

    pub fn ranks(&self, window: Window) -> render::RanksJson {
        render::ranks(&self.view(), window)
    }

    pub fn recent(&self, limit: usize) -> render::RecentJson {
        render::recent(&self.view(), limit.min(RECENT_MAX))
    }

    /// A player's standing per block in `window`; `NotFound` without claims there.
    pub fn user(&self, nick: &str, window: Window) -> Result<render::UserJson> {
        nick::validate(nick)?;
        let view = self.view();
        match view.id(nick).map(|id| render::user(&view, window, id)) {
            Some(u) if !u.standing.is_empty() => Ok(u),
            _ => Err(Error::NotFound(nick.to_string())),
        }
    }

    /// Counters since the store was opened.
    pub fn stats(&self) -> stats::StatsJson {
        self.shared.stats.snapshot()
    }

    pub fn score_compat(&self, window: Window) -> render::ScoreCompat {
        render::score_compat(&self.view(), window, self.clock.now())
    }

    pub fn recent_compat(&self, limit: usize) -> render::RecentCompat {
        render::recent_compat(&self.view(), limit.min(RECENT_MAX), self.clock.now())
    }
}

/// Size of the health probe: about what a large batch adds to the WAL.
const PROBE_BYTES: usize = 256 * 1024;

fn probe_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-probe");
    db.with_file_name(name)
}

fn write_probe(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let result = std::fs::File::create(path).and_then(|mut f| {
        f.write_all(&[0u8; PROBE_BYTES])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(path);
    result
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the queue lets the writer commit what is queued and stop.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.take() {
            if !writer::on_writer_thread() {
                let _ = t.join();
            }
        }
    }
}
