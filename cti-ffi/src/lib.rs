//! Safe Rust access to `libcti_core.so`, linked dynamically (`ldd` lists it).
//!
//! This crate holds no game logic: it converts strings, owns the handle and
//! turns result codes into [`Error`]. Answers are the library's JSON text.

pub mod sys;

pub use sys::Limits;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::ptr::{self, NonNull};
use thiserror::Error;

/// What kind of failure a result code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    InvalidNick,
    InvalidAddress,
    NotIpv4,
    UnknownWindow,
    NotFound,
    Unavailable,
    OpenFailed,
    Closed,
    Inconsistent,
    Panic,
    /// Too many claims from the address or its /24 (see `Error::retry_after`).
    RateLimited,
    /// A code this wrapper does not know (a newer library).
    Other(c_int),
}

impl ErrorKind {
    fn from_code(rc: c_int) -> ErrorKind {
        use ErrorKind::*;
        const KINDS: [ErrorKind; 12] = [
            InvalidArgument,
            InvalidNick,
            InvalidAddress,
            NotIpv4,
            UnknownWindow,
            NotFound,
            Unavailable,
            OpenFailed,
            Closed,
            Inconsistent,
            Panic,
            RateLimited,
        ];
        usize::try_from(rc - 1)
            .ok()
            .and_then(|i| KINDS.get(i).copied())
            .unwrap_or(Other(rc))
    }
}

/// A failure reported by the library, with its sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// Seconds to wait, for `RateLimited`.
    pub retry_after: Option<u32>,
}

impl Error {
    fn argument(what: &str) -> Error {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} contains a NUL byte"),
        )
    }

    fn new(kind: ErrorKind, message: String) -> Error {
        Error {
            kind,
            message,
            retry_after: None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn check(rc: c_int) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: cti_last_error always returns a valid C string owned by the library.
    let message = unsafe { CStr::from_ptr(sys::cti_last_error()) }
        .to_string_lossy()
        .into_owned();
    let mut e = Error::new(ErrorKind::from_code(rc), message);
    if e.kind == ErrorKind::RateLimited {
        // SAFETY: no arguments; reads this thread's value.
        e.retry_after = Some(unsafe { sys::cti_last_retry_after() });
    }
    Err(e)
}

fn c_string(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::argument(what))
}

fn c_window(window: Option<&str>) -> Result<Option<CString>> {
    window.map(|w| c_string(w, "window")).transpose()
}

fn as_ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(ptr::null(), |c| c.as_ptr())
}

/// Takes ownership of a string the library returned.
///
/// # Safety
/// `p` is NULL or a string from the library, not yet freed.
unsafe fn take_string(p: *mut c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    sys::cti_string_free(p);
    s
}

/// Calls a library function that fills `char **out`.
fn out_string(call: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<String> {
    let mut out: *mut c_char = ptr::null_mut();
    let rc = call(&mut out);
    // SAFETY: the library set `out` to NULL or to a string it allocated.
    let s = unsafe { take_string(out) };
    check(rc).map(|()| s)
}

/// `(major, minor)` of the loaded library's ABI.
pub fn abi_version() -> (u32, u32) {
    // SAFETY: no arguments.
    let v = unsafe { sys::cti_abi_version() };
    (v >> 16, v & 0xffff)
}

/// The loaded library's release.
pub fn version() -> &'static str {
    // SAFETY: a static NUL-terminated string.
    unsafe { CStr::from_ptr(sys::cti_version()) }
        .to_str()
        .unwrap_or("?")
}

/// Checks a nickname against the game's rules.
pub fn validate_nick(nick: &str) -> Result<()> {
    let nick = c_string(nick, "nick")?;
    // SAFETY: a valid C string.
    check(unsafe { sys::cti_validate_nick(nick.as_ptr()) })
}

/// An open store; closed when dropped. `Send + Sync`: the library's handle is thread-safe.
pub struct Store {
    raw: NonNull<sys::CtiStore>,
}

// SAFETY: the C ABI documents the handle as thread-safe for every call but
// close, which only Drop makes (with exclusive access).
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

type ClaimFn = Box<dyn FnOnce(Result<String>) + Send>;

unsafe extern "C" fn claim_done(user_data: *mut c_void, rc: c_int, text: *const c_char) {
    // SAFETY: user_data is the Box leaked by claim_with, given back exactly once.
    let done = Box::from_raw(user_data.cast::<ClaimFn>());
    let text = if text.is_null() {
        String::new()
    } else {
        CStr::from_ptr(text).to_string_lossy().into_owned()
    };
    let result = if rc == 0 {
        Ok(text)
    } else {
        Err(Error::new(ErrorKind::from_code(rc), text))
    };
    // A panic must not unwind into the library's thread.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(result)));
}

impl Store {
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_str().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{} is not valid UTF-8", path.as_ref().display()),
            )
        })?;
        let path = c_string(path, "path")?;
        let mut raw = ptr::null_mut();
        // SAFETY: valid C string and out pointer.
        check(unsafe { sys::cti_store_open(path.as_ptr(), &mut raw) })?;
        NonNull::new(raw).map(|raw| Store { raw }).ok_or_else(|| {
            Error::new(
                ErrorKind::OpenFailed,
                "cti_store_open returned no handle".into(),
            )
        })
    }

    fn raw(&self) -> *const sys::CtiStore {
        self.raw.as_ptr()
    }

    /// Claims `ip` for `nick`, blocking until committed; returns the claim JSON.
    pub fn claim(&self, ip: &str, nick: &str) -> Result<String> {
        let (ip, nick) = (c_string(ip, "ip")?, c_string(nick, "nick")?);
        // SAFETY: valid handle and C strings.
        out_string(|out| unsafe { sys::cti_claim(self.raw(), ip.as_ptr(), nick.as_ptr(), out) })
    }

    /// Queues a claim without blocking; `done` runs on the library's writer
    /// thread once the claim is committed (and visible to reads) or failed. Bad input is refused
    /// here, and `done` is then dropped uncalled.
    pub fn claim_with<F>(&self, ip: &str, nick: &str, done: F) -> Result<()>
    where
        F: FnOnce(Result<String>) + Send + 'static,
    {
        let (ip, nick) = (c_string(ip, "ip")?, c_string(nick, "nick")?);
        let boxed: Box<ClaimFn> = Box::new(Box::new(done));
        let data = Box::into_raw(boxed);
        // SAFETY: valid handle and strings; `data` is reclaimed by claim_done, or below.
        let rc = unsafe {
            sys::cti_claim_async(
                self.raw(),
                ip.as_ptr(),
                nick.as_ptr(),
                Some(claim_done),
                data.cast(),
            )
        };
        if rc != 0 {
            // SAFETY: the library refused the call and will not call back.
            drop(unsafe { Box::from_raw(data) });
        }
        check(rc)
    }

    pub fn blocks_json(&self, window: Option<&str>) -> Result<String> {
        let w = c_window(window)?;
        // SAFETY: valid handle; window NULL or a C string.
        out_string(|out| unsafe { sys::cti_blocks_json(self.raw(), as_ptr(&w), out) })
    }

    pub fn ranks_json(&self, window: Option<&str>) -> Result<String> {
        let w = c_window(window)?;
        // SAFETY: as above.
        out_string(|out| unsafe { sys::cti_ranks_json(self.raw(), as_ptr(&w), out) })
    }

    pub fn recent_json(&self, limit: u32) -> Result<String> {
        // SAFETY: valid handle.
        out_string(|out| unsafe { sys::cti_recent_json(self.raw(), limit, out) })
    }

    pub fn user_json(&self, nick: &str, window: Option<&str>) -> Result<String> {
        let (nick, w) = (c_string(nick, "nick")?, c_window(window)?);
        // SAFETY: valid handle and strings.
        out_string(|out| unsafe { sys::cti_user_json(self.raw(), nick.as_ptr(), as_ptr(&w), out) })
    }

    pub fn score_compat_json(&self, window: Option<&str>) -> Result<String> {
        let w = c_window(window)?;
        // SAFETY: as above.
        out_string(|out| unsafe { sys::cti_score_compat_json(self.raw(), as_ptr(&w), out) })
    }

    pub fn recent_compat_json(&self, limit: u32) -> Result<String> {
        // SAFETY: valid handle.
        out_string(|out| unsafe { sys::cti_recent_compat_json(self.raw(), limit, out) })
    }

    /// Replaces the claim rate limits (a rate of 0 turns that limit off).
    pub fn set_limits(&self, limits: sys::Limits) -> Result<()> {
        // SAFETY: valid handle and struct.
        check(unsafe { sys::cti_store_set_limits(self.raw(), &limits) })
    }

    /// Counters for metrics (see `cti_stats_json` in the header).
    pub fn stats_json(&self) -> Result<String> {
        // SAFETY: valid handle.
        out_string(|out| unsafe { sys::cti_stats_json(self.raw(), out) })
    }

    /// `Ok` while the store can commit (runs a real transaction).
    pub fn health(&self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::cti_health(self.raw()) })
    }

    /// Recounts the aggregates from the claims and compares.
    pub fn check(&self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::cti_check(self.raw()) })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle is ours alone here and closed once.
        unsafe { sys::cti_store_close(self.raw.as_ptr()) }
    }
}
