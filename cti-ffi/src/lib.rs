//! Safe Rust access to `libcti_core.so`, linked dynamically (`ldd` lists it).
//!
//! This crate holds no game logic: it converts strings, owns the handles and
//! turns result codes into [`Error`]. Answers are the library's JSON text.
//! Every call goes through a table of function pointers ([`Api`]): the linked
//! core's, or a newer core's loaded at run time to replace it in place.

pub mod api;

pub use api::{Api, Limits, LoadError, NickLimits, Origin};

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::ptr::{self, NonNull};
use thiserror::Error;

/// What kind of failure a result code is (the header's `CTI_RESULT_*`).
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
    /// Another handle has the store open for writing.
    Locked,
    /// The handle belongs to the parent of this forked process.
    Forked,
    /// The call was made on the library's callback thread.
    WrongThread,
    /// The handle is read-only.
    ReadOnly,
    /// A code this wrapper does not know (a newer library).
    Other(c_int),
}

impl ErrorKind {
    /// Maps a result code by its value in the header.
    pub fn from_code(rc: c_int) -> ErrorKind {
        use ErrorKind::*;
        match rc {
            1 => InvalidArgument,
            2 => InvalidNick,
            3 => InvalidAddress,
            4 => NotIpv4,
            5 => UnknownWindow,
            6 => NotFound,
            7 => Unavailable,
            8 => OpenFailed,
            9 => Closed,
            10 => Inconsistent,
            11 => Panic,
            12 => RateLimited,
            13 => Locked,
            14 => Forked,
            15 => WrongThread,
            16 => ReadOnly,
            other => Other(other),
        }
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

/// Turns a result code of `api` into a `Result`, with that core's message.
fn check(api: &Api, rc: c_int) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: cti_last_error always returns a valid C string owned by the library.
    let message = unsafe { CStr::from_ptr((api.cti_last_error)()) }
        .to_string_lossy()
        .into_owned();
    let mut e = Error::new(ErrorKind::from_code(rc), message);
    if e.kind == ErrorKind::RateLimited {
        // SAFETY: no arguments; reads this thread's value.
        e.retry_after = Some(unsafe { (api.cti_last_retry_after)() });
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

/// Calls a function of `api` that fills `char **out`, and takes the string.
fn out_string(api: &Api, call: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<String> {
    let mut out: *mut c_char = ptr::null_mut();
    let rc = call(&mut out);
    let s = if out.is_null() {
        String::new()
    } else {
        // SAFETY: the library set `out` to a string it allocated, freed once here.
        let s = unsafe { CStr::from_ptr(out) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: as above.
        unsafe { (api.cti_string_free)(out) };
        s
    };
    check(api, rc).map(|()| s)
}

/// `(major, minor)` of the linked library's ABI.
pub fn abi_version() -> (u32, u32) {
    Api::linked().abi()
}

/// The linked library's release.
pub fn version() -> &'static str {
    Api::linked().version()
}

/// Checks a nickname against the game's rules.
pub fn validate_nick(nick: &str) -> Result<()> {
    let api = Api::linked();
    let nick = c_string(nick, "nick")?;
    // SAFETY: a valid C string.
    check(api, unsafe { (api.cti_validate_nick)(nick.as_ptr()) })
}

/// The core's default claim limits and limits on new names.
pub fn default_limits() -> Result<(Limits, NickLimits)> {
    let api = Api::linked();
    let (mut l, mut n) = (Limits::default(), NickLimits::default());
    // SAFETY: valid out pointers.
    check(api, unsafe { (api.cti_limits_default)(&mut l) })?;
    // SAFETY: as above.
    check(api, unsafe { (api.cti_nick_limits_default)(&mut n) })?;
    Ok((l, n))
}

/// An open store; closed when dropped. `Send + Sync`: the library's handle is thread-safe.
pub struct Store {
    api: &'static Api,
    raw: NonNull<api::CtiStore>,
}

// SAFETY: the C ABI documents the handle as thread-safe for every call but
// close, which only Drop makes (with exclusive access).
unsafe impl Send for Store {}
// SAFETY: as above.
unsafe impl Sync for Store {}

type ClaimFn = Box<dyn FnOnce(Result<String>) + Send>;

unsafe extern "C" fn claim_done(user_data: *mut c_void, rc: c_int, text: *const c_char) {
    // SAFETY: user_data is the Box leaked by claim_with, given back exactly once.
    let done = unsafe { Box::from_raw(user_data.cast::<ClaimFn>()) };
    let text = if text.is_null() {
        String::new()
    } else {
        // SAFETY: the library passes a valid C string for the call's duration.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    };
    let result = if rc == 0 {
        Ok(text)
    } else {
        Err(Error::new(ErrorKind::from_code(rc), text))
    };
    // A panic must not unwind into the library's thread.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(result)));
}

type EventFn = Box<dyn FnMut(&str) + Send>;

unsafe extern "C" fn event(user_data: *mut c_void, json: *const c_char) {
    // SAFETY: user_data is the Box owned by the Subscription, alive until
    // cti_unsubscribe has returned; the library calls one event at a time.
    let deliver = unsafe { &mut *user_data.cast::<EventFn>() };
    if !json.is_null() {
        // SAFETY: a valid C string for the call's duration.
        let text = unsafe { CStr::from_ptr(json) }.to_string_lossy();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deliver(&text)));
    }
}

impl Store {
    /// Opens the store at `path` for writing with the linked core.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(Api::linked(), path)
    }

    /// Opens the store at `path` for reading only with the linked core.
    pub fn open_readonly(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_readonly_with(Api::linked(), path)
    }

    /// Opens the store at `path` for writing with the core `api`.
    pub fn open_with(api: &'static Api, path: impl AsRef<Path>) -> Result<Store> {
        Store::open_by(api, path.as_ref(), api.cti_store_open)
    }

    pub fn open_readonly_with(api: &'static Api, path: impl AsRef<Path>) -> Result<Store> {
        Store::open_by(api, path.as_ref(), api.cti_store_open_readonly)
    }

    fn open_by(
        api: &'static Api,
        path: &Path,
        open: unsafe extern "C" fn(*const c_char, *mut *mut api::CtiStore) -> c_int,
    ) -> Result<Store> {
        let path = path.to_str().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{} is not valid UTF-8", path.display()),
            )
        })?;
        let path = c_string(path, "path")?;
        let mut raw = ptr::null_mut();
        // SAFETY: valid C string and out pointer.
        check(api, unsafe { open(path.as_ptr(), &mut raw) })?;
        NonNull::new(raw)
            .map(|raw| Store { api, raw })
            .ok_or_else(|| Error::new(ErrorKind::OpenFailed, "the core returned no handle".into()))
    }

    /// The core this store is served by.
    pub fn api(&self) -> &'static Api {
        self.api
    }

    fn raw(&self) -> *const api::CtiStore {
        self.raw.as_ptr()
    }

    fn out(&self, call: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<String> {
        out_string(self.api, call)
    }

    /// Claims `ip` for `nick`, blocking until committed; returns the claim JSON.
    pub fn claim(&self, ip: &str, nick: &str) -> Result<String> {
        let (ip, nick) = (c_string(ip, "ip")?, c_string(nick, "nick")?);
        let f = self.api.cti_claim;
        // SAFETY: valid handle and C strings.
        self.out(|out| unsafe { f(self.raw(), ip.as_ptr(), nick.as_ptr(), out) })
    }

    /// Queues a claim without blocking; `done` runs on a library thread once
    /// the claim is committed (and visible to reads) or failed. Bad input is
    /// refused here, and `done` is then dropped uncalled.
    pub fn claim_with<F>(&self, ip: &str, nick: &str, done: F) -> Result<()>
    where
        F: FnOnce(Result<String>) + Send + 'static,
    {
        let (ip, nick) = (c_string(ip, "ip")?, c_string(nick, "nick")?);
        let boxed: Box<ClaimFn> = Box::new(Box::new(done));
        let data = Box::into_raw(boxed);
        // SAFETY: valid handle and strings; `data` is reclaimed by claim_done, or below.
        let rc = unsafe {
            (self.api.cti_claim_async)(
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
        check(self.api, rc)
    }

    /// Calls `f` with each commit event (JSON, see `cti_subscribe`) on a
    /// thread of the library, until the subscription is dropped.
    pub fn subscribe<F>(&self, f: F) -> Result<Subscription>
    where
        F: FnMut(&str) + Send + 'static,
    {
        let data = Box::into_raw(Box::new(Box::new(f) as EventFn));
        let mut raw = ptr::null_mut();
        // SAFETY: valid handle and out pointer; `data` lives until the
        // Subscription is dropped (after cti_unsubscribe), or is freed below.
        let rc =
            unsafe { (self.api.cti_subscribe)(self.raw(), Some(event), data.cast(), &mut raw) };
        if let Err(e) = check(self.api, rc) {
            // SAFETY: the library refused and will not call back.
            drop(unsafe { Box::from_raw(data) });
            return Err(e);
        }
        Ok(Subscription {
            api: self.api,
            raw,
            data,
        })
    }

    fn window_json(
        &self,
        f: unsafe extern "C" fn(*const api::CtiStore, *const c_char, *mut *mut c_char) -> c_int,
        window: Option<&str>,
    ) -> Result<String> {
        let w = c_window(window)?;
        // SAFETY: valid handle; window NULL or a C string.
        self.out(|out| unsafe { f(self.raw(), as_ptr(&w), out) })
    }

    pub fn blocks_json(&self, window: Option<&str>) -> Result<String> {
        self.window_json(self.api.cti_blocks_json, window)
    }

    pub fn ranks_json(&self, window: Option<&str>) -> Result<String> {
        self.window_json(self.api.cti_ranks_json, window)
    }

    /// The first `limit` rows of the ranking (`ranked` counts them all).
    pub fn ranks_top_json(&self, window: Option<&str>, limit: u32) -> Result<String> {
        let w = c_window(window)?;
        let f = self.api.cti_ranks_top_json;
        // SAFETY: valid handle; window NULL or a C string.
        self.out(|out| unsafe { f(self.raw(), as_ptr(&w), limit, out) })
    }

    pub fn score_compat_json(&self, window: Option<&str>) -> Result<String> {
        self.window_json(self.api.cti_score_compat_json, window)
    }

    pub fn recent_json(&self, limit: u32) -> Result<String> {
        let f = self.api.cti_recent_json;
        // SAFETY: valid handle.
        self.out(|out| unsafe { f(self.raw(), limit, out) })
    }

    pub fn recent_compat_json(&self, limit: u32) -> Result<String> {
        let f = self.api.cti_recent_compat_json;
        // SAFETY: valid handle.
        self.out(|out| unsafe { f(self.raw(), limit, out) })
    }

    pub fn user_json(&self, nick: &str, window: Option<&str>) -> Result<String> {
        let (nick, w) = (c_string(nick, "nick")?, c_window(window)?);
        let f = self.api.cti_user_json;
        // SAFETY: valid handle and strings.
        self.out(|out| unsafe { f(self.raw(), nick.as_ptr(), as_ptr(&w), out) })
    }

    /// Replaces the claim rate limits (a rate of 0 turns that limit off).
    pub fn set_limits(&self, limits: Limits) -> Result<()> {
        // SAFETY: valid handle and struct.
        check(self.api, unsafe {
            (self.api.cti_store_set_limits)(self.raw(), &limits)
        })
    }

    /// Replaces the limits on new names (a rate of 0 turns that limit off).
    pub fn set_nick_limits(&self, limits: NickLimits) -> Result<()> {
        // SAFETY: valid handle and struct.
        check(self.api, unsafe {
            (self.api.cti_store_set_nick_limits)(self.raw(), &limits)
        })
    }

    /// Counters for metrics (see `cti_stats_json` in the header).
    pub fn stats_json(&self) -> Result<String> {
        let f = self.api.cti_stats_json;
        // SAFETY: valid handle.
        self.out(|out| unsafe { f(self.raw(), out) })
    }

    /// `Ok` while the store can commit (cheap: see `cti_health`).
    pub fn health(&self) -> Result<()> {
        // SAFETY: valid handle.
        check(self.api, unsafe { (self.api.cti_health)(self.raw()) })
    }

    /// Recounts the aggregates from the claims and compares.
    pub fn check(&self) -> Result<()> {
        // SAFETY: valid handle.
        check(self.api, unsafe { (self.api.cti_check)(self.raw()) })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle is ours alone here and closed once.
        unsafe { (self.api.cti_store_close)(self.raw.as_ptr()) }
    }
}

/// A subscription to a store's commit events; ends when dropped. Drop it
/// before the store.
pub struct Subscription {
    api: &'static Api,
    raw: *mut api::CtiSubscription,
    data: *mut EventFn,
}

// SAFETY: the handle may be ended from any thread; `data` is only touched by
// the library's delivery thread until then, and freed after.
unsafe impl Send for Subscription {}
// SAFETY: nothing can be done through `&Subscription`: it has no methods.
unsafe impl Sync for Subscription {}

impl Drop for Subscription {
    fn drop(&mut self) {
        // SAFETY: ended once; no callback runs after cti_unsubscribe returns
        // (unless dropped from inside the callback, which must not happen:
        // the closure would free itself while running).
        unsafe { (self.api.cti_unsubscribe)(self.raw) };
        // SAFETY: made by Box::into_raw in subscribe, freed once.
        drop(unsafe { Box::from_raw(self.data) });
    }
}
