//! One writer per store: an exclusive advisory lock (`flock`) on a file beside
//! the database, held for as long as the store is open for writing. The
//! kernel drops it when the holder's process ends, however it ends, so a
//! crashed writer never blocks the next one. The holder writes its process
//! id into the file so that a refused opener can say who holds it.
//!
//! `flock` locks belong to an open file description: a second open in the
//! same process is refused just like one from another process.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct WriterLock {
    file: File,
    path: PathBuf,
    /// This lock made the file (nobody had opened the store here before).
    created: bool,
    /// The process that took the lock: only it gives the lock up.
    owner: u32,
}

/// `game.db` -> `game.db-lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    crate::files::beside(db, "-lock")
}

impl WriterLock {
    pub fn acquire(db: &Path) -> Result<WriterLock> {
        let path = lock_path(db);
        let open_err = |e: std::io::Error| Error::Open {
            path: db.display().to_string(),
            message: format!("lock file {}: {e}", path.display()),
        };
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(open_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: db.display().to_string(),
                    holder: holder(&mut file),
                })
            }
            Err(TryLockError::Error(e)) => return Err(open_err(e)),
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(open_err)?;
        Ok(WriterLock {
            file,
            path,
            created,
            owner: std::process::id(),
        })
    }

    /// Gives the lock up after an open that failed, removing the lock file
    /// if this open made it: a refused file keeps nothing new beside it.
    pub fn discard(self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for WriterLock {
    /// Unlocks before the descriptor closes. A child forked by any thread of
    /// this process holds a copy of the descriptor until it execs or exits,
    /// and the lock belongs to the file description they share: closing
    /// ours alone would leave the store locked for that while, and a reopen
    /// in this process refused. A forked child dropping its copy does not
    /// unlock: the lock is the parent's.
    fn drop(&mut self) {
        if std::process::id() == self.owner {
            let _ = self.file.unlock();
        }
    }
}

/// "process 1234", from what the holder wrote.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.take(32).read_to_string(&mut text);
    match text.trim().parse::<u32>() {
        Ok(pid) if pid == std::process::id() => format!("this process ({pid})"),
        Ok(pid) => format!("process {pid}"),
        Err(_) => "another process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_the_same_process_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.db");
        let first = WriterLock::acquire(&db).unwrap();
        let err = WriterLock::acquire(&db).err().unwrap();
        let pid = std::process::id();
        assert!(
            matches!(&err, Error::Locked { holder, .. } if holder.contains(&pid.to_string())),
            "{err}"
        );
        drop(first);
        WriterLock::acquire(&db).unwrap();
    }

    #[test]
    fn a_forked_child_holding_the_descriptor_does_not_keep_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.db");
        let lock = WriterLock::acquire(&db).unwrap();
        // What any thread's fork-then-exec does for a moment (and a fork
        // without exec for good): the child holds every descriptor.
        // SAFETY: the child only calls async-signal-safe functions.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            // SAFETY: async-signal-safe calls only, in the forked child.
            unsafe {
                libc::sleep(5);
                libc::_exit(0);
            }
        }
        drop(lock);
        let again = WriterLock::acquire(&db);
        // SAFETY: `child` is our own child's process id.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        again.unwrap();
    }
}
