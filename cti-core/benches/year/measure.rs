//! What the bench reads about the process and the store between weeks.

use std::path::{Path, PathBuf};

/// Resident memory of this process, in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The store's files: the database and its write-ahead log.
pub struct Files {
    pub db: PathBuf,
    pub wal: PathBuf,
}

impl Files {
    pub fn new(db: &Path) -> Files {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Files {
            db: db.to_path_buf(),
            wal: wal.into(),
        }
    }

    /// Bytes of the database file and of the WAL.
    pub fn sizes(&self) -> (u64, u64) {
        let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        (len(&self.db), len(&self.wal))
    }
}

/// Distinct addresses the store holds: one row of `claims` each. Read on a
/// read-only connection of its own, beside the store's writer.
pub struct Addresses(rusqlite::Connection);

impl Addresses {
    pub fn open(db: &Path) -> Addresses {
        let conn =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("a read-only connection to the store");
        Addresses(conn)
    }

    pub fn count(&self) -> u64 {
        self.0
            .query_row("SELECT count(*) FROM claims", [], |r| r.get(0))
            .expect("counting the stored addresses")
    }
}
