//! Whether a store can commit, cheaply enough to ask on every `/healthz`.
//!
//! The answer comes from state the writer keeps (alive, not diverged, queue
//! not full, no commit stuck) plus a probe of the disk: writing and syncing a
//! file beside the database, since SQLite can commit small transactions into
//! WAL space it already holds on a full disk. The probe runs at most every
//! [`PROBE_EVERY`], one at a time; callers in between share its result.

use crate::error::{Error, Result};
use crate::stats::Stats;
use crate::window::Micros;
use crate::writer::{WriterState, QUEUE};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two probes of the disk.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// A commit running longer than this makes the store unhealthy.
pub const STALLED_AFTER: Micros = 10_000_000;
/// Size of the probe: about what a large batch adds to the WAL.
const PROBE_BYTES: usize = 256 * 1024;

/// The writer's own view of itself.
pub fn from_state(state: &WriterState, now: Micros) -> Result<()> {
    if state.diverged.load(Ordering::Acquire) {
        return Err(Error::Unavailable(
            "another program changed the database since this store opened it; reopen the store"
                .into(),
        ));
    }
    if !state.alive.load(Ordering::Acquire) {
        return Err(Error::Unavailable("the writer thread has stopped".into()));
    }
    if state.queued.load(Ordering::Acquire) >= QUEUE {
        return Err(Error::Unavailable("the writer's queue is full".into()));
    }
    let since = state.busy_since.load(Ordering::Acquire);
    if since != 0 && now - since > STALLED_AFTER {
        return Err(Error::Unavailable(format!(
            "a commit has been running for {} s",
            (now - since) / 1_000_000
        )));
    }
    Ok(())
}

struct Probe {
    at: Instant,
    result: Result<()>,
    /// Commits made when it ran: a failed probe is retried as soon as a
    /// commit succeeds (the disk may have room again).
    commits: u64,
}

pub struct Health {
    path: PathBuf,
    last: Mutex<Option<Probe>>,
}

impl Health {
    pub fn new(db: &Path) -> Health {
        Health {
            path: crate::files::beside(db, "-probe"),
            last: Mutex::new(None),
        }
    }

    pub fn probe(&self, stats: &Stats) -> Result<()> {
        // Held while probing: a second caller waits for this result.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let commits = stats.commits();
        if let Some(p) = last.as_ref() {
            if p.at.elapsed() < PROBE_EVERY && (p.result.is_ok() || p.commits == commits) {
                return p.result.clone();
            }
        }
        stats.probed();
        let result = write_probe(&self.path)
            .map_err(|e| Error::Unavailable(format!("cannot write beside the database: {e}")));
        *last = Some(Probe {
            at: Instant::now(),
            result: result.clone(),
            commits,
        });
        result
    }
}

fn write_probe(path: &Path) -> std::io::Result<()> {
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| {
            f.write_all(&[0u8; PROBE_BYTES])?;
            f.sync_all()
        });
    let _ = std::fs::remove_file(path);
    result
}
