//! The C ABI of `libcti_core.so`; cbindgen turns this file into `include/cti_core.h`.
//!
//! Conventions: every function returns a `CtiResult` (or a value that cannot
//! fail); on failure `cti_last_error()` gives a sentence for a person. Strings
//! going in are NUL-terminated UTF-8; strings coming out (`char **out`) belong
//! to the caller, who frees them with `cti_string_free`. NULL or non-UTF-8
//! arguments give `CTI_RESULT_INVALID_ARGUMENT`. No panic crosses this
//! boundary: one is caught and reported as `CTI_RESULT_PANIC`.

use crate::error::Error;
use crate::render::{self, ClaimJson};
use crate::window::Window;
use crate::Store;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Major version of this ABI: bumped on any incompatible change, and the
/// number in the library's SONAME (`libcti_core.so.1`).
pub const CTI_ABI_MAJOR: u32 = 1;
/// Minor version: bumped when functions are added.
pub const CTI_ABI_MINOR: u32 = 0;

/// Result codes. `CTI_RESULT_OK` is zero; every other value is an error.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtiResult {
    Ok = 0,
    /// A NULL pointer, non-UTF-8 text or an out-of-range number.
    InvalidArgument = 1,
    /// The nickname breaks the rules (1-40 of `A-Z a-z 0-9 @ / : . ^ + ! - _ *`).
    InvalidNick = 2,
    /// The client address is not an IP address.
    InvalidAddress = 3,
    /// The client address is IPv6 (and not IPv4-mapped): it cannot claim.
    NotIpv4 = 4,
    /// The window is not one of hour, day, week, month, year, all.
    UnknownWindow = 5,
    /// The player has no claims.
    NotFound = 6,
    /// The store cannot commit (disk full, read-only, locked): nothing was stored.
    Unavailable = 7,
    /// The store could not be opened, or its schema is newer than this library.
    OpenFailed = 8,
    /// The store is closing.
    Closed = 9,
    /// `cti_check` found aggregates that disagree with the claims.
    Inconsistent = 10,
    /// An internal error (a caught panic).
    Panic = 11,
    /// Too many claims from the address or its /24; `cti_last_retry_after()`
    /// says how many seconds to wait. Nothing was stored.
    RateLimited = 12,
}

/// Claim rate limits: token buckets per client address and per /24. A rate
/// of 0 turns that limit off. Memory for the buckets is fixed.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtiLimits {
    /// Claims per minute refilled into each address's bucket.
    pub per_address_per_minute: u32,
    /// Claims an address may make at once.
    pub per_address_burst: u32,
    /// Claims per minute refilled into each /24's bucket.
    pub per_net24_per_minute: u32,
    /// Claims a /24 may make at once.
    pub per_net24_burst: u32,
}

/// An open store. Thread-safe: any number of threads may use one handle at
/// once, except that `cti_store_close` must not race with other calls on it.
pub struct CtiStore {
    store: Store,
}

/// Completion of `cti_claim_async`, called once on a thread of the library
/// after the claim is committed (and visible to reads) or has failed. `text` is the claim as
/// JSON on `CTI_RESULT_OK`, else the error message; it is valid only during
/// the call. The callback must return quickly and must not close the store.
pub type CtiClaimCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, result: CtiResult, text: *const c_char)>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static RETRY_AFTER: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn code(e: &Error) -> CtiResult {
    match e {
        Error::Nick(_) => CtiResult::InvalidNick,
        Error::Addr(crate::addr::AddrError::NotIpv4(_)) => CtiResult::NotIpv4,
        Error::Addr(_) => CtiResult::InvalidAddress,
        Error::UnknownWindow(_) => CtiResult::UnknownWindow,
        Error::NotFound(_) => CtiResult::NotFound,
        Error::Unavailable(_) => CtiResult::Unavailable,
        Error::Open { .. } | Error::Schema { .. } => CtiResult::OpenFailed,
        Error::Inconsistent(_) => CtiResult::Inconsistent,
        Error::Argument(_) => CtiResult::InvalidArgument,
        Error::RateLimited { .. } => CtiResult::RateLimited,
        Error::Closed => CtiResult::Closed,
    }
}

fn c_text(s: String) -> CString {
    CString::new(s).unwrap_or_else(|e| {
        let mut bytes = e.into_vec();
        bytes.retain(|b| *b != 0);
        CString::new(bytes).unwrap_or_default()
    })
}

fn set_last_error(msg: String) {
    LAST_ERROR.with(|l| *l.borrow_mut() = c_text(msg));
}

/// Runs `body`, turning errors and panics into result codes.
fn guard(body: impl FnOnce() -> Result<(), Error>) -> CtiResult {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CtiResult::Ok,
        Ok(Err(e)) => {
            set_last_error(e.to_string());
            if let Error::RateLimited { retry_after } = e {
                RETRY_AFTER.with(|r| r.set(retry_after));
            }
            code(&e)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last_error(format!("internal error in libcti_core: {what}"));
            CtiResult::Panic
        }
    }
}

/// Borrows a C string argument as UTF-8.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::Argument(format!("{what} is NULL")));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Error::Argument(format!("{what} is not valid UTF-8")))
}

unsafe fn handle<'a>(p: *const CtiStore) -> Result<&'a Store, Error> {
    p.as_ref()
        .map(|h| &h.store)
        .ok_or_else(|| Error::Argument("store is NULL".into()))
}

/// Clears `*out` first so that callers can free it on every path.
unsafe fn clear(out: *mut *mut c_char) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::Argument("out is NULL".into()));
    }
    *out = std::ptr::null_mut();
    Ok(())
}

unsafe fn give(out: *mut *mut c_char, s: String) {
    *out = c_text(s).into_raw();
}

/// NULL means the `all` window.
unsafe fn window(p: *const c_char) -> Result<Window, Error> {
    if p.is_null() {
        return Ok(Window::All);
    }
    let name = text(p, "window")?;
    Window::parse(name).ok_or_else(|| Error::UnknownWindow(name.chars().take(32).collect()))
}

/// `(CTI_ABI_MAJOR << 16) | CTI_ABI_MINOR` of the loaded library.
#[no_mangle]
pub extern "C" fn cti_abi_version() -> u32 {
    (CTI_ABI_MAJOR << 16) | CTI_ABI_MINOR
}

/// The library's release, e.g. "0.1.0". Static: do not free.
#[no_mangle]
pub extern "C" fn cti_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last failure on this thread, "" if none. Valid until
/// the next failing call on this thread; do not free.
#[no_mangle]
pub extern "C" fn cti_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// Seconds to wait after the last `CTI_RESULT_RATE_LIMITED` on this thread
/// (for an HTTP `Retry-After`); 0 if there was none.
#[no_mangle]
pub extern "C" fn cti_last_retry_after() -> u32 {
    RETRY_AFTER.with(|r| r.get())
}

/// Replaces the store's claim rate limits (on by default: 60 per minute with
/// a burst of 10 per address, 1200 per minute with a burst of 512 per /24).
///
/// # Safety
/// `store` is NULL or valid; `limits` is NULL or points to a `CtiLimits`.
#[no_mangle]
pub unsafe extern "C" fn cti_store_set_limits(
    store: *const CtiStore,
    limits: *const CtiLimits,
) -> CtiResult {
    guard(|| {
        let l = limits
            .as_ref()
            .ok_or_else(|| Error::Argument("limits is NULL".into()))?;
        handle(store)?.set_limits(crate::Limits {
            per_address_per_minute: l.per_address_per_minute,
            per_address_burst: l.per_address_burst,
            per_net24_per_minute: l.per_net24_per_minute,
            per_net24_burst: l.per_net24_burst,
        });
        Ok(())
    })
}

/// Frees a string this library returned. NULL is ignored.
///
/// # Safety
/// `s` must come from this library and not have been freed.
#[no_mangle]
pub unsafe extern "C" fn cti_string_free(s: *mut c_char) {
    if !s.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(CString::from_raw(s))));
    }
}

/// Opens the store at `path` (a SQLite file, created if missing) into `*out`.
///
/// # Safety
/// `path` is a C string; `out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn cti_store_open(path: *const c_char, out: *mut *mut CtiStore) -> CtiResult {
    guard(|| {
        if out.is_null() {
            return Err(Error::Argument("out is NULL".into()));
        }
        *out = std::ptr::null_mut();
        let store = Store::open(Path::new(text(path, "path")?))?;
        *out = Box::into_raw(Box::new(CtiStore { store }));
        Ok(())
    })
}

/// Commits what is queued and closes the store. NULL is ignored.
///
/// # Safety
/// `store` comes from `cti_store_open`, is closed once, and no other call on it
/// is running or will run.
#[no_mangle]
pub unsafe extern "C" fn cti_store_close(store: *mut CtiStore) {
    if !store.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(store))));
    }
}

/// Claims address `ip` (dotted quad, or `::ffff:a.b.c.d`) for `nick`, and
/// returns once the claim is committed to disk. On success `*out_json`
/// (if `out_json` is not NULL) receives `{"ip","name","block","claimed_at"}`.
///
/// # Safety
/// Pointers are NULL or valid; `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cti_claim(
    store: *const CtiStore,
    ip: *const c_char,
    nick: *const c_char,
    out_json: *mut *mut c_char,
) -> CtiResult {
    guard(|| {
        if !out_json.is_null() {
            *out_json = std::ptr::null_mut();
        }
        let claimed = handle(store)?.claim(text(ip, "ip")?, text(nick, "nick")?)?;
        if !out_json.is_null() {
            give(
                out_json,
                render::to_json(&ClaimJson::from_claimed(&claimed)),
            );
        }
        Ok(())
    })
}

struct UserData(*mut c_void);
// SAFETY: the caller of cti_claim_async vouches that user_data may be used
// from the library's threads (documented on the function).
unsafe impl Send for UserData {}

/// Queues a claim and returns at once; `callback` runs on a library thread
/// after the commit. If this returns other than `CTI_RESULT_OK` (bad input,
/// closed store), the callback is never called.
///
/// # Safety
/// Pointers are NULL or valid; `user_data` must be usable from another thread
/// until the callback has run.
#[no_mangle]
pub unsafe extern "C" fn cti_claim_async(
    store: *const CtiStore,
    ip: *const c_char,
    nick: *const c_char,
    callback: CtiClaimCallback,
    user_data: *mut c_void,
) -> CtiResult {
    guard(|| {
        let callback = callback.ok_or_else(|| Error::Argument("callback is NULL".into()))?;
        let user_data = UserData(user_data);
        let done = move |result: Result<crate::Claimed, Error>| {
            let data = user_data;
            let (rc, msg) = match result {
                Ok(c) => (CtiResult::Ok, render::to_json(&ClaimJson::from_claimed(&c))),
                Err(e) => (code(&e), e.to_string()),
            };
            let msg = c_text(msg);
            callback(data.0, rc, msg.as_ptr());
        };
        handle(store)?.claim_with(text(ip, "ip")?, text(nick, "nick")?, Box::new(done))
    })
}

/// `{"window","updated_at","blocks":[256 × {"block","holder","tied","claims","total"}]}`.
/// `window` NULL means `all`.
///
/// # Safety
/// Pointers are NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_blocks_json(
    store: *const CtiStore,
    window_name: *const c_char,
    out: *mut *mut c_char,
) -> CtiResult {
    guard(|| {
        clear(out)?;
        let json = render::to_json(&handle(store)?.blocks(window(window_name)?));
        give(out, json);
        Ok(())
    })
}

/// `{"window","updated_at","rankings":[{"rank","name","blocks","claims"}]}`.
/// `window` NULL means `all`.
///
/// # Safety
/// Pointers are NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_ranks_json(
    store: *const CtiStore,
    window_name: *const c_char,
    out: *mut *mut c_char,
) -> CtiResult {
    guard(|| {
        clear(out)?;
        let json = render::to_json(&handle(store)?.ranks(window(window_name)?));
        give(out, json);
        Ok(())
    })
}

/// `{"claims":[{"ip","name","block","claimed_at"}]}`, newest first, at most
/// `limit` (capped at 500).
///
/// # Safety
/// `store` is NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_recent_json(
    store: *const CtiStore,
    limit: u32,
    out: *mut *mut c_char,
) -> CtiResult {
    guard(|| {
        clear(out)?;
        let json = render::to_json(&handle(store)?.recent(limit as usize));
        give(out, json);
        Ok(())
    })
}

/// `{"name","window","blocks_held","claims","standing":[{"block","rank","of","tied","claims"}]}`;
/// `CTI_RESULT_NOT_FOUND` if `nick` has no claims in the window (NULL: `all`).
///
/// # Safety
/// Pointers are NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_user_json(
    store: *const CtiStore,
    nick: *const c_char,
    window_name: *const c_char,
    out: *mut *mut c_char,
) -> CtiResult {
    guard(|| {
        clear(out)?;
        let json =
            render::to_json(&handle(store)?.user(text(nick, "nick")?, window(window_name)?)?);
        give(out, json);
        Ok(())
    })
}

/// ipv4.games' `/score`: `{"now":[sec,nsec],"score":{"NICK":[[block,count],...]}}`.
///
/// # Safety
/// Pointers are NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_score_compat_json(
    store: *const CtiStore,
    window_name: *const c_char,
    out: *mut *mut c_char,
) -> CtiResult {
    guard(|| {
        clear(out)?;
        let json = render::to_json(&handle(store)?.score_compat(window(window_name)?));
        give(out, json);
        Ok(())
    })
}

/// ipv4.games' `/recent`: `{"now":[sec,nsec],"recent":[[ip_as_u32,"nick",unix_secs],...]}`.
///
/// # Safety
/// `store` is NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_recent_compat_json(
    store: *const CtiStore,
    limit: u32,
    out: *mut *mut c_char,
) -> CtiResult {
    guard(|| {
        clear(out)?;
        let json = render::to_json(&handle(store)?.recent_compat(limit as usize));
        give(out, json);
        Ok(())
    })
}

/// Counters since the store was opened, for metrics:
/// `{"claims_committed","claims_failed","claims_rate_limited","commits","commits_failed",
///   "batch_size":{"buckets":[[le,count],...],"count","sum"},"commit_latency_us":{...}}`
/// (histogram buckets are cumulative).
///
/// # Safety
/// `store` is NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_stats_json(
    store: *const CtiStore,
    out: *mut *mut c_char,
) -> CtiResult {
    guard(|| {
        clear(out)?;
        let json = render::to_json(&handle(store)?.stats());
        give(out, json);
        Ok(())
    })
}

/// Checks a nickname against the rules without claiming anything.
///
/// # Safety
/// `nick` is NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn cti_validate_nick(nick: *const c_char) -> CtiResult {
    guard(|| Ok(crate::nick::validate(text(nick, "nick")?)?))
}

/// Commits an empty transaction: `CTI_RESULT_OK` while the store can commit.
///
/// # Safety
/// `store` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cti_health(store: *const CtiStore) -> CtiResult {
    guard(|| handle(store)?.health())
}

/// Recounts every aggregate from the claims table and compares it with the
/// stored and in-memory ones: `CTI_RESULT_INCONSISTENT` names the first difference.
///
/// # Safety
/// `store` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cti_check(store: *const CtiStore) -> CtiResult {
    guard(|| handle(store)?.check())
}
