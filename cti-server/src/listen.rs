//! Listening sockets passed from one process to the next, the systemd way
//! (`sd_listen_fds(3)`): descriptors from 3 on, `LISTEN_FDS` of them,
//! `LISTEN_PID` the receiving process, `LISTEN_FDNAMES` their names. Both
//! binaries take them (socket activation, or a re-exec of the edge), and
//! the edge gives its own to the binary that replaces it.
//!
//! Names: [`OPERATOR`] (`metrics`) is the operator listener (`--metrics`);
//! any other name (systemd's default is the socket unit's) is the service
//! port, of which there is one.

use std::ffi::{c_int, CString, OsStr, OsString};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

/// The service port's name when this program passes it on.
pub const SERVICE: &str = "listen";
/// The operator listener's name (metrics and `/admin`).
pub const OPERATOR: &str = "metrics";
/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST: RawFd = 3;

/// The sockets this process was given (none, unless started by systemd's
/// socket activation or by a re-exec).
#[derive(Debug, Default)]
pub struct Inherited {
    pub service: Option<std::net::TcpListener>,
    pub operator: Option<std::net::TcpListener>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("LISTEN_FDS: {0}")]
    Environment(io::Error),
    #[error("passed descriptor {fd} ({name}) is not a listening TCP socket")]
    NotListening { fd: RawFd, name: String },
    #[error("more than one service socket was passed ({0} and {1}); cti listens on one")]
    TwoServices(String, String),
    #[error("{what} on {addr}: {error}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        error: io::Error,
    },
}

impl Inherited {
    /// Takes the descriptors of `LISTEN_FDS` (when `LISTEN_PID` is this
    /// process) and removes the variables, so that they reach no child.
    ///
    /// # Safety
    /// Changes the environment: call it before any other thread exists
    /// (first thing in `main`).
    pub unsafe fn take() -> Result<Inherited, ListenError> {
        // SAFETY: the caller's contract (no other thread yet).
        let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
            .map_err(ListenError::Environment)?;
        let mut inherited = Inherited::default();
        let mut service_name = String::new();
        for (fd, name) in fds {
            if !is_listening_tcp(fd) {
                return Err(ListenError::NotListening { fd, name });
            }
            // SAFETY: passed to this process to own; checked to be a socket.
            let listener = std::net::TcpListener::from(unsafe { OwnedFd::from_raw_fd(fd) });
            if name == OPERATOR {
                inherited.operator = Some(listener);
            } else if inherited.service.is_some() {
                return Err(ListenError::TwoServices(service_name, name));
            } else {
                inherited.service = Some(listener);
                service_name = name;
            }
        }
        Ok(inherited)
    }

    /// Both listeners a binary serves on: the service port and the
    /// operator listener (see [`Inherited::service`], [`Inherited::operator`]).
    pub async fn listeners(
        &mut self,
        service: SocketAddr,
        operator: Option<SocketAddr>,
    ) -> Result<Listeners, ListenError> {
        Ok(Listeners {
            service: self.service(service).await?,
            operator: self.operator(operator).await?,
        })
    }

    /// The service port: the one passed, else a new one bound to `addr`.
    pub async fn service(
        &mut self,
        addr: SocketAddr,
    ) -> Result<(tokio::net::TcpListener, SocketAddr), ListenError> {
        listener(self.service.take(), addr, "listening").await
    }

    /// The operator listener: the one passed, else one bound to `addr` if
    /// given.
    pub async fn operator(
        &mut self,
        addr: Option<SocketAddr>,
    ) -> Result<Option<(tokio::net::TcpListener, SocketAddr)>, ListenError> {
        match (self.operator.take(), addr) {
            (None, None) => Ok(None),
            (passed, addr) => {
                let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
                listener(passed, addr, "operator listener").await.map(Some)
            }
        }
    }
}

/// A listener and the address it listens on.
pub type Listener = (tokio::net::TcpListener, SocketAddr);

/// What [`Inherited::listeners`] gives.
pub struct Listeners {
    pub service: Listener,
    pub operator: Option<Listener>,
}

async fn listener(
    passed: Option<std::net::TcpListener>,
    addr: SocketAddr,
    what: &'static str,
) -> Result<(tokio::net::TcpListener, SocketAddr), ListenError> {
    let error = |error| ListenError::Bind { what, addr, error };
    let listener = match passed {
        Some(l) => {
            l.set_nonblocking(true).map_err(error)?;
            let l = tokio::net::TcpListener::from_std(l).map_err(error)?;
            tracing::info!(local = ?l.local_addr().ok(), "{what}: a passed socket");
            l
        }
        None => tokio::net::TcpListener::bind(addr).await.map_err(error)?,
    };
    let local = listener.local_addr().map_err(error)?;
    Ok((listener, local))
}

/// Whether `fd` is a TCP socket in the listening state.
fn is_listening_tcp(fd: RawFd) -> bool {
    let option = |level: c_int, name: c_int| {
        let mut value: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: valid pointers to an int and its size.
        let rc = unsafe {
            libc::getsockopt(fd, level, name, (&mut value as *mut c_int).cast(), &mut len)
        };
        (rc == 0).then_some(value)
    };
    option(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1)
        && option(libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && matches!(
            option(libc::SOL_SOCKET, libc::SO_DOMAIN),
            Some(libc::AF_INET | libc::AF_INET6)
        )
}

/// Starts `program` with `args` and the environment of this process, plus
/// `env`, with `sockets` passed the systemd way (as 3, 4, ...; `LISTEN_PID`
/// is the child's pid) and `extra` placed right after them (at
/// `3 + sockets.len()`, not counted in `LISTEN_FDS`).
///
/// Between `fork` and `exec` only async-signal-safe work is done: the
/// environment and arguments are prepared before, the child writes its
/// pid's digits into a buffer it owns, moves the descriptors with
/// `fcntl`/`dup2`, and calls `execve` itself.
pub fn spawn_with_sockets(
    program: &Path,
    args: &[OsString],
    env: &[(&str, OsString)],
    sockets: &[(RawFd, &str)],
    extra: Option<RawFd>,
) -> io::Result<Child> {
    let names: Vec<&str> = sockets.iter().map(|(_, n)| *n).collect();
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !is_listen_var(k) && !env.iter().any(|(e, _)| OsStr::new(e) == k))
        .collect();
    vars.extend(env.iter().map(|(k, v)| (OsString::from(k), v.clone())));
    vars.push(("LISTEN_FDS".into(), sockets.len().to_string().into()));
    vars.push(("LISTEN_FDNAMES".into(), names.join(":").into()));
    let mut fds: Vec<RawFd> = sockets.iter().map(|(fd, _)| *fd).collect();
    fds.extend(extra);
    let exec = Exec::new(program, args, &vars, fds)?;
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: `Exec::run` is async-signal-safe (see there).
    unsafe { command.pre_exec(move || exec.run()) };
    command.spawn()
}

fn is_listen_var(k: &OsStr) -> bool {
    matches!(
        k.as_bytes(),
        b"LISTEN_FDS" | b"LISTEN_PID" | b"LISTEN_FDNAMES"
    )
}

/// `LISTEN_PID=` and room for any pid's digits.
const PID_VAR: &[u8] = b"LISTEN_PID=";
const PID_DIGITS: usize = 10;

/// Everything `execve` needs, made before the fork.
struct Exec {
    program: CString,
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` and its digits, written in the child: allocated here,
    /// reached only through this pointer, freed on drop.
    pid_var: *mut u8,
    fds: Vec<RawFd>,
}

// SAFETY: the pointers point into allocations this value owns; it is only
// used by the forked child (a copy) and dropped by the parent.
unsafe impl Send for Exec {}
// SAFETY: as above; `run` is only called in the child.
unsafe impl Sync for Exec {}

impl Exec {
    fn new(
        program: &Path,
        args: &[OsString],
        vars: &[(OsString, OsString)],
        fds: Vec<RawFd>,
    ) -> io::Result<Exec> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| io::Error::other("a NUL byte in an argument"))
        };
        let program = c(program.as_os_str().as_bytes())?;
        let mut strings = vec![program.clone()];
        for a in args {
            strings.push(c(a.as_bytes())?);
        }
        let argc = strings.len();
        for (k, v) in vars {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            strings.push(c(&kv)?);
        }
        let mut pid = PID_VAR.to_vec();
        pid.resize(PID_VAR.len() + PID_DIGITS + 1, 0);
        let pid_var = Box::into_raw(pid.into_boxed_slice()).cast::<u8>();
        let ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        let mut argv = ptrs[..argc].to_vec();
        argv.push(std::ptr::null());
        let mut envp = ptrs[argc..].to_vec();
        envp.push(pid_var.cast_const().cast());
        envp.push(std::ptr::null());
        Ok(Exec {
            program,
            _strings: strings,
            argv,
            envp,
            pid_var,
            fds,
        })
    }

    /// In the child: `LISTEN_PID`, the descriptors in place, `execve`.
    /// Async-signal-safe: no allocation, no lock, only `getpid`, `fcntl`,
    /// `dup2` and `execve`.
    fn run(&self) -> io::Result<()> {
        // SAFETY: getpid cannot fail.
        let mut pid = unsafe { libc::getpid() } as u32;
        let mut digits = [0u8; PID_DIGITS];
        let mut n = 0;
        loop {
            digits[PID_DIGITS - 1 - n] = b'0' + (pid % 10) as u8;
            n += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        for (i, d) in digits[PID_DIGITS - n..].iter().enumerate() {
            // SAFETY: inside the buffer (PID_VAR + PID_DIGITS + NUL), which
            // is zeroed, so the string stays terminated.
            unsafe { *self.pid_var.add(PID_VAR.len() + i) = *d };
        }
        // Every source first goes above the target range (close-on-exec),
        // so that no target overwrites a source not yet moved.
        let top = FIRST + self.fds.len() as RawFd;
        let mut moved = [0 as RawFd; 16];
        if self.fds.len() > moved.len() {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        for (i, fd) in self.fds.iter().enumerate() {
            // SAFETY: plain descriptor calls.
            moved[i] = cvt(unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, top) })?;
        }
        for (i, fd) in moved[..self.fds.len()].iter().enumerate() {
            // dup2 leaves the target without close-on-exec: it is passed.
            // SAFETY: as above.
            cvt(unsafe { libc::dup2(*fd, FIRST + i as RawFd) })?;
        }
        // SAFETY: NUL-terminated strings and NULL-terminated arrays, all
        // alive (owned by self).
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            )
        };
        Err(io::Error::last_os_error())
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        let len = PID_VAR.len() + PID_DIGITS + 1;
        // SAFETY: made by Box::into_raw of a slice of this length, freed once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.pid_var, len)) });
    }
}

fn cvt(rc: c_int) -> io::Result<c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The program this process runs, as a path to start again: the file
/// `/proc/self/exe` names, without the " (deleted)" an upgrade that
/// replaced the file leaves there.
pub fn current_exe() -> io::Result<std::path::PathBuf> {
    let link = std::fs::read_link("/proc/self/exe")?;
    let bytes = link.as_os_str().as_bytes();
    Ok(match bytes.strip_suffix(b" (deleted)") {
        Some(path) => OsStr::from_bytes(path).into(),
        None => link,
    })
}
