//! The files a store keeps beside its database, and their permissions.
//!
//! The database holds a history of which address played under which name, so
//! a new database is created readable by its owner only (0600). SQLite gives
//! the `-wal` and `-shm` files it creates the mode of the database file, so
//! they follow.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// The database files stores of this process have open, by (device,
/// inode), with how many stores hold each.
///
/// POSIX drops every lock a process holds on a file when any descriptor on
/// that file is closed. SQLite keeps a shared lock on a WAL database for as
/// long as a connection is open; another process's last close deletes the
/// WAL when it can take that lock away. So once a store has a file open,
/// nothing in this process may open and close the file again: its header
/// was checked by the first open, and [`inspect`] trusts that check.
///
/// Locked only through [`with_open_files`].
static OPEN: Mutex<Vec<(FileId, usize)>> = Mutex::new(Vec::new());

type FileId = (u64, u64);

fn file_id(m: &std::fs::Metadata) -> FileId {
    (m.dev(), m.ino())
}

/// Runs `f` on [`OPEN`], locked inside a [`crate::fork::hold`] so that no
/// fork leaves it locked in the child.
fn with_open_files<T>(f: impl FnOnce(&mut Vec<(FileId, usize)>) -> T) -> T {
    let _fork = crate::fork::hold();
    f(&mut OPEN.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A store's hold on its database file, counted in [`OPEN`] until dropped.
#[derive(Debug)]
pub struct Held(FileId);

/// Counts `path` as held by a store until the returned guard is dropped.
/// Taken before SQLite opens the file, so that no header read of
/// [`inspect`] can close a descriptor while SQLite holds a lock.
pub fn hold(path: &Path) -> std::io::Result<Held> {
    let id = file_id(&std::fs::metadata(path)?);
    with_open_files(|open| match open.iter_mut().find(|(held, _)| *held == id) {
        Some((_, count)) => *count += 1,
        None => open.push((id, 1)),
    });
    Ok(Held(id))
}

impl Drop for Held {
    fn drop(&mut self) {
        with_open_files(|open| {
            if let Some(at) = open.iter().position(|(id, _)| *id == self.0) {
                open[at].1 -= 1;
                if open[at].1 == 0 {
                    open.swap_remove(at);
                }
            }
        });
    }
}

/// What is at `path`: nothing, an empty file, or a non-empty regular file
/// that may be a cti store. Anything else (a directory, a device such as
/// `/dev/null`, a file that is not SQLite, a SQLite database some other
/// program made) is refused from its bytes alone, before anything (a lock
/// file, a WAL) is made beside it.
pub fn inspect(path: &Path) -> Result<Kind, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Kind::Missing),
        Err(e) => Err(e.to_string()),
        Ok(m) if !m.is_file() => Err("not a regular file".into()),
        Ok(m) if m.len() == 0 => Ok(Kind::Empty),
        Ok(m) => {
            // Under the lock, so that no store takes its hold (and then
            // SQLite's locks) while the header is read.
            with_open_files(|open| {
                if open.iter().any(|(id, _)| *id == file_id(&m)) {
                    Ok(())
                } else {
                    check_header(path)
                }
            })?;
            Ok(Kind::Data)
        }
    }
}

/// SQLite's file header (the first 100 bytes): its magic, and the fields
/// that tell a cti store (or an empty database) from another program's.
fn check_header(path: &Path) -> Result<(), String> {
    let mut header = [0u8; 100];
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    std::io::Read::read_exact(&mut f, &mut header)
        .map_err(|_| "not a SQLite database (shorter than its header)".to_string())?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err("not a SQLite database".into());
    }
    let field = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (schema_cookie, user_version, app) = (field(40), field(60), field(68));
    // Page 1 as last written to this file. Until a checkpoint copies it from
    // the WAL, a cti store's page 1 may still be the empty one (all zero);
    // a schema-1 store predates application ids. Both get the full check
    // once SQLite has opened the file.
    let ours = app == crate::store::APPLICATION_ID as u32
        || (app == 0 && user_version == 0 && schema_cookie == 0)
        || (app == 0 && user_version == 1);
    if ours {
        return Ok(());
    }
    Err(format!(
        "not a cti store (application_id {app:#x}, user_version {user_version}); refusing to change it"
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    Empty,
    Data,
}
