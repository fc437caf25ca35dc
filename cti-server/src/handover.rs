//! A re-exec: the running process starts its replacement with the
//! listening sockets (see `listen`) and a socket pair to talk over. The new
//! process says `prepared` once it has everything but the store (its
//! configuration, certificate and sockets), then `ready` once it has opened
//! the store and serves. In between, the running process stops taking
//! requests and closes the store: one writer at a time, never two.
//!
//! If the new process exits or says nothing in time, the running one ends
//! it and goes on serving.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Child;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The variable that tells a new process which descriptor talks to the
/// process it replaces.
pub const ENV: &str = "CTI_HANDOVER_FD";

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("cannot start {program}: {error}")]
    Spawn { program: String, error: io::Error },
    #[error("the new process exited before it was {0}")]
    Exited(&'static str),
    #[error("the new process was not {0} within {1:?}")]
    Silent(&'static str, Duration),
    #[error("the new process said {0:?}")]
    Unexpected(String),
    #[error("talking to the new process: {0}")]
    Io(#[from] io::Error),
}

/// The new process, as the running one sees it.
pub struct Successor {
    child: Child,
    talk: BufReader<tokio::net::UnixStream>,
}

impl Successor {
    /// Starts `program` with `args` and `sockets` (named descriptors).
    pub fn start(
        program: &Path,
        args: &[OsString],
        sockets: &[(RawFd, &str)],
    ) -> Result<Successor, HandoverError> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let fd = 3 + sockets.len();
        let env = [(ENV, OsString::from(fd.to_string()))];
        let child = crate::listen::spawn_with_sockets(
            program,
            args,
            &env,
            sockets,
            Some(theirs.as_raw_fd()),
        )
        .map_err(|error| HandoverError::Spawn {
            program: program.display().to_string(),
            error,
        })?;
        // Only the child holds its end now: its exit reads as the end.
        drop(theirs);
        ours.set_nonblocking(true)?;
        let talk = BufReader::new(tokio::net::UnixStream::from_std(ours)?);
        Ok(Successor { child, talk })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resolves when the new process has everything but the store.
    pub async fn prepared(&mut self, limit: Duration) -> Result<(), HandoverError> {
        self.expect("prepared", limit).await
    }

    /// Resolves when the new process has the store and serves.
    pub async fn ready(&mut self, limit: Duration) -> Result<(), HandoverError> {
        self.expect("ready", limit).await
    }

    async fn expect(&mut self, word: &'static str, limit: Duration) -> Result<(), HandoverError> {
        let mut line = String::new();
        let read = tokio::time::timeout(limit, self.talk.read_line(&mut line))
            .await
            .map_err(|_| HandoverError::Silent(word, limit))??;
        match line.trim_end() {
            _ if read == 0 => Err(HandoverError::Exited(word)),
            said if said == word => Ok(()),
            said => Err(HandoverError::Unexpected(said.to_string())),
        }
    }

    /// Ends a new process that failed or is no longer wanted (by its pid)
    /// and waits for it, so that it holds nothing (the store's lock) after.
    pub async fn abandon(mut self) {
        let _ = self.child.kill();
        let mut child = self.child;
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    }
}

/// The process being replaced, as the new one sees it.
pub struct Predecessor(std::os::unix::net::UnixStream);

impl Predecessor {
    /// The descriptor `CTI_HANDOVER_FD` names, if this process was started
    /// by a re-exec; the variable is removed.
    ///
    /// # Safety
    /// Changes the environment: call it before any other thread exists.
    pub unsafe fn take() -> Result<Option<Predecessor>, String> {
        let Some(value) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        std::env::remove_var(ENV);
        let fd: RawFd = value
            .to_str()
            .and_then(|v| v.parse().ok())
            .filter(|fd| *fd >= 3)
            .ok_or_else(|| format!("{ENV}={value:?} is not a descriptor"))?;
        // SAFETY: `stat` is plain old data; all zeroes is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on any number is harmless; `st` is ours to fill.
        let fstat_ok = unsafe { libc::fstat(fd, &mut st) } == 0;
        let is_socket = fstat_ok && st.st_mode & libc::S_IFMT == libc::S_IFSOCK;
        if !is_socket {
            return Err(format!("{ENV}={fd} is not an open socket"));
        }
        // SAFETY: passed to this process to own; checked to be a socket.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // Not passed on to any process this one starts.
        // SAFETY: plain descriptor call.
        unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        Ok(Some(Predecessor(owned.into())))
    }

    /// Everything but the store is in place.
    pub fn prepared(&mut self) -> io::Result<()> {
        self.0.write_all(b"prepared\n")
    }

    /// The store is open and the sockets are served.
    pub fn ready(mut self) -> io::Result<()> {
        self.0.write_all(b"ready\n")
    }
}
