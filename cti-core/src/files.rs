//! The files a store keeps beside its database, and their permissions.
//!
//! The database holds a history of which address played under which name, so
//! a new database is created readable by its owner only (0600). SQLite gives
//! the `-wal` and `-shm` files it creates the mode of the database file, so
//! they follow.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `dir/game.db` + `-lock` -> `dir/game.db-lock`.
pub fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    db.with_file_name(name)
}

/// Creates `path` empty with mode 0600 unless it exists. Returns whether it
/// was created.
pub fn create_private(path: &Path) -> std::io::Result<bool> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// What is at `path`: nothing, an empty file, or a non-empty regular file.
/// Anything else (a directory, a device such as `/dev/null`) is refused.
pub fn inspect(path: &Path) -> Result<Kind, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Kind::Missing),
        Err(e) => Err(e.to_string()),
        Ok(m) if !m.is_file() => Err("not a regular file".into()),
        Ok(m) if m.len() == 0 => Ok(Kind::Empty),
        Ok(_) => Ok(Kind::Data),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    Empty,
    Data,
}
