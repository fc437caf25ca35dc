//! The C ABI of `libcti_core.so`; cbindgen turns this file into `include/cti_core.h`.
//!
//! Conventions: every function returns a `CtiResult` (or a value that cannot
//! fail); on failure `cti_last_error()` gives a sentence for a person. Strings
//! going in are NUL-terminated UTF-8; strings coming out (`char **out`) belong
//! to the caller, who frees them with `cti_string_free`. NULL or non-UTF-8
//! arguments give `CTI_RESULT_INVALID_ARGUMENT`. No panic crosses this
//! boundary: one is caught and reported as `CTI_RESULT_PANIC`.
//!
//! The rules for embedders (threads, one writer per file, read-only
//! handles, fork, what a callback may call) open the header: they are written
//! once, in `cbindgen.toml`'s `header`.

use crate::error::Error;
use crate::render::{self, ClaimJson};
use crate::window::Window;
use crate::{Limits, NickLimits, Query, Store, Subscription, RANKS_ALL};
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Major version of this ABI: bumped on any incompatible change, and the
/// number in the library's SONAME (`libcti_core.so.1`).
pub const CTI_ABI_MAJOR: u32 = 1;
/// Minor version: bumped when functions or result codes are added.
pub const CTI_ABI_MINOR: u32 = 2;

/// Longest `cti_last_error()` message, in bytes; longer ones are cut.
pub const CTI_LAST_ERROR_MAX: usize = 1024;

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
    /// The store cannot commit (disk full, read-only, locked by SQLite, the
    /// writer's queue full, the database changed by another program):
    /// nothing was stored. Try again later.
    Unavailable = 7,
    /// The store could not be opened: no such file (read-only opens), not a
    /// cti database (it is left untouched), or a schema newer than this library.
    OpenFailed = 8,
    /// The store is closing.
    Closed = 9,
    /// `cti_check` found aggregates that disagree with the claims.
    Inconsistent = 10,
    /// An internal error (a caught panic).
    Panic = 11,
    /// Too many claims (or new names) from the address or its /24;
    /// `cti_last_retry_after()` says how many seconds to wait. Nothing was stored.
    RateLimited = 12,
    /// Another handle (in this process or another, named in the message)
    /// has the store open for writing.
    Locked = 13,
    /// The handle was opened by another process (this one is a fork child).
    Forked = 14,
    /// The call would wait for the library's own callback thread, from which
    /// it was made.
    WrongThread = 15,
    /// The handle was opened read-only: it cannot claim.
    ReadOnly = 16,
}

/// Claim rate limits: token buckets per client address and per /24. A rate
/// of 0 turns that limit off; a rate above 0 needs a burst of at least 1.
/// Memory for the buckets is fixed.
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

/// Limits on claims by names that own nothing yet (each such name costs
/// memory while it owns an address): rates per hour, per address and per /24.
/// A rate of 0 turns that limit off; a rate above 0 needs a burst of at least 1.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtiNickLimits {
    pub per_address_per_hour: u32,
    pub per_address_burst: u32,
    pub per_net24_per_hour: u32,
    pub per_net24_burst: u32,
}

/// An open store.
pub struct CtiStore {
    store: Store,
}

/// A subscription to a store's commit events (see `cti_subscribe`).
pub struct CtiSubscription {
    _sub: Subscription,
}

/// Completion of `cti_claim_async`, called once on a thread of the library
/// after the claim is committed (and visible to reads) or has failed. `text` is the claim as
/// JSON on `CTI_RESULT_OK`, else the error message; it is valid only during
/// the call. See the top of this header for what the callback may call.
pub type CtiClaimCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, result: CtiResult, text: *const c_char)>;

/// A commit event for `cti_subscribe`; `json` is valid only during the call.
pub type CtiEventCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, json: *const c_char)>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static RETRY_AFTER: Cell<u32> = const { Cell::new(0) };
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
        Error::Locked { .. } => CtiResult::Locked,
        Error::Inconsistent(_) => CtiResult::Inconsistent,
        Error::Argument(_) => CtiResult::InvalidArgument,
        Error::RateLimited { .. } => CtiResult::RateLimited,
        Error::ReadOnly => CtiResult::ReadOnly,
        Error::Forked(_) => CtiResult::Forked,
        Error::WrongThread(_) => CtiResult::WrongThread,
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

/// Keeps a message to at most `CTI_LAST_ERROR_MAX` bytes, on a character boundary.
fn capped(mut msg: String) -> String {
    if msg.len() > CTI_LAST_ERROR_MAX {
        let mut end = CTI_LAST_ERROR_MAX - 3;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
        msg.push_str("...");
    }
    msg
}

fn set_last_error(msg: String) {
    LAST_ERROR.with(|l| *l.borrow_mut() = c_text(capped(msg)));
}

/// Runs `body`, turning errors and panics into result codes.
fn guard(body: impl FnOnce() -> Result<(), Error>) -> CtiResult {
    RETRY_AFTER.with(|r| r.set(0));
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CtiResult::Ok,
        Ok(Err(e)) => {
            set_last_error(e.to_string());
            if let Error::RateLimited { retry_after, .. } = e {
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
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::Argument(format!("{what} is NULL")));
    }
    // SAFETY: not NULL, and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::Argument(format!("{what} is not valid UTF-8")))
}

/// # Safety
/// `p` is NULL or a live handle from `cti_store_open*`.
unsafe fn handle<'a>(p: *const CtiStore) -> Result<&'a Store, Error> {
    // SAFETY: NULL or a live handle, by the caller's contract.
    unsafe { p.as_ref() }
        .map(|h| &h.store)
        .ok_or_else(|| Error::Argument("store is NULL".into()))
}

/// Clears `*out` first so that callers can free it on every path.
///
/// # Safety
/// `out` is NULL or writable.
unsafe fn clear<T>(out: *mut *mut T) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::Argument("out is NULL".into()));
    }
    // SAFETY: not NULL and writable by the caller's contract.
    unsafe { *out = std::ptr::null_mut() };
    Ok(())
}

/// # Safety
/// `out` is non-NULL and writable (checked by `clear` before).
unsafe fn give(out: *mut *mut c_char, s: &str) {
    // SAFETY: as above; the string is freed by `cti_string_free`.
    unsafe { *out = c_text(s.to_string()).into_raw() };
}

/// NULL means the `all` window.
///
/// # Safety
/// `p` is NULL or a C string.
unsafe fn window(p: *const c_char) -> Result<Window, Error> {
    if p.is_null() {
        return Ok(Window::All);
    }
    // SAFETY: a C string by the caller's contract.
    let name = unsafe { text(p, "window") }?;
    Window::parse(name).ok_or_else(|| Error::UnknownWindow(name.chars().take(32).collect()))
}

/// Reads `*p`, a struct the caller passes by pointer.
///
/// # Safety
/// `p` is NULL or points to a valid `T`.
unsafe fn arg<T: Copy>(p: *const T, what: &str) -> Result<T, Error> {
    // SAFETY: NULL or valid by the caller's contract.
    unsafe { p.as_ref() }
        .copied()
        .ok_or_else(|| Error::Argument(format!("{what} is NULL")))
}

/// Writes a rendering of `store` to `*out`.
///
/// # Safety
/// `store` is NULL or live; `out` is NULL or writable.
unsafe fn render_to(
    store: *const CtiStore,
    out: *mut *mut c_char,
    query: impl FnOnce() -> Result<Query, Error>,
) -> CtiResult {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        unsafe { clear(out) }?;
        // SAFETY: as above.
        let json = unsafe { handle(store) }?.json(query()?)?;
        // SAFETY: `out` was checked by `clear`.
        unsafe { give(out, &json) };
        Ok(())
    })
}

/// `(CTI_ABI_MAJOR << 16) | CTI_ABI_MINOR` of the loaded library.
#[no_mangle]
pub extern "C" fn cti_abi_version() -> u32 {
    (CTI_ABI_MAJOR << 16) | CTI_ABI_MINOR
}

/// The newest database schema this library reads and writes. A store it
/// opened for writing has been upgraded to this schema.
#[no_mangle]
pub extern "C" fn cti_schema_version() -> u32 {
    crate::store::SCHEMA_VERSION as u32
}

/// The release, behind a marker that finds it in the library's file: a
/// packager (or a test) can tell the version of a core file without loading it.
static RELEASE: &str = concat!("CTI_CORE_RELEASE=", env!("CARGO_PKG_VERSION"), "\0");

/// The library's release, e.g. "0.1.0". Static: do not free.
#[no_mangle]
pub extern "C" fn cti_version() -> *const c_char {
    RELEASE["CTI_CORE_RELEASE=".len()..].as_ptr().cast()
}

/// The message of the last failure on this thread, "" if none, at most
/// `CTI_LAST_ERROR_MAX` bytes. Valid until the next failing call on this
/// thread; do not free.
#[no_mangle]
pub extern "C" fn cti_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// Seconds to wait after the last call on this thread, when it returned
/// `CTI_RESULT_RATE_LIMITED` (for an HTTP `Retry-After`); 0 after any other
/// result.
#[no_mangle]
pub extern "C" fn cti_last_retry_after() -> u32 {
    RETRY_AFTER.with(|r| r.get())
}

/// The default claim limits (what a new store uses): 60 per minute with a
/// burst of 10 per address, 1200 per minute with a burst of 512 per /24.
/// Returns `CTI_RESULT_INVALID_ARGUMENT` if `out` is NULL.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cti_limits_default(out: *mut CtiLimits) -> CtiResult {
    guard(|| {
        let l = Limits::default();
        // SAFETY: NULL or writable by the caller's contract.
        let out = unsafe { out.as_mut() }.ok_or_else(|| Error::Argument("out is NULL".into()))?;
        *out = CtiLimits {
            per_address_per_minute: l.per_address_per_minute,
            per_address_burst: l.per_address_burst,
            per_net24_per_minute: l.per_net24_per_minute,
            per_net24_burst: l.per_net24_burst,
        };
        Ok(())
    })
}

/// The default limits on new names: 30 an hour with a burst of 10 per
/// address, 240 an hour with a burst of 60 per /24.
/// Returns `CTI_RESULT_INVALID_ARGUMENT` if `out` is NULL.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cti_nick_limits_default(out: *mut CtiNickLimits) -> CtiResult {
    guard(|| {
        let l = NickLimits::default();
        // SAFETY: NULL or writable by the caller's contract.
        let out = unsafe { out.as_mut() }.ok_or_else(|| Error::Argument("out is NULL".into()))?;
        *out = CtiNickLimits {
            per_address_per_hour: l.per_address_per_hour,
            per_address_burst: l.per_address_burst,
            per_net24_per_hour: l.per_net24_per_hour,
            per_net24_burst: l.per_net24_burst,
        };
        Ok(())
    })
}

/// Replaces the store's claim rate limits (see `cti_limits_default`).
/// Returns OK, INVALID_ARGUMENT (NULL, or a rate with a burst of 0: nothing
/// changes), FORKED, PANIC.
///
/// # Safety
/// `store` is NULL or valid; `limits` is NULL or points to a `CtiLimits`.
#[no_mangle]
pub unsafe extern "C" fn cti_store_set_limits(
    store: *const CtiStore,
    limits: *const CtiLimits,
) -> CtiResult {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let l = unsafe { arg(limits, "limits") }?;
        // SAFETY: as above.
        unsafe { handle(store) }?.set_limits(Limits {
            per_address_per_minute: l.per_address_per_minute,
            per_address_burst: l.per_address_burst,
            per_net24_per_minute: l.per_net24_per_minute,
            per_net24_burst: l.per_net24_burst,
        })
    })
}

/// Replaces the store's limits on new names (see `cti_nick_limits_default`).
/// Returns OK, INVALID_ARGUMENT (NULL, or a rate with a burst of 0: nothing
/// changes), FORKED, PANIC.
///
/// # Safety
/// `store` is NULL or valid; `limits` is NULL or points to a `CtiNickLimits`.
#[no_mangle]
pub unsafe extern "C" fn cti_store_set_nick_limits(
    store: *const CtiStore,
    limits: *const CtiNickLimits,
) -> CtiResult {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let l = unsafe { arg(limits, "limits") }?;
        // SAFETY: as above.
        unsafe { handle(store) }?.set_nick_limits(NickLimits {
            per_address_per_hour: l.per_address_per_hour,
            per_address_burst: l.per_address_burst,
            per_net24_per_hour: l.per_net24_per_hour,
            per_net24_burst: l.per_net24_burst,
        })
    })
}

/// Frees a string this library returned. NULL is ignored.
///
/// # Safety
/// `s` must come from this library and not have been freed.
#[no_mangle]
pub unsafe extern "C" fn cti_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: made by `CString::into_raw` in this library, freed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { CString::from_raw(s) })));
    }
}

/// Opens the store at `path` (a SQLite file, created with mode 0600 if
/// missing) for writing into `*out`. An empty file becomes a store; a
/// non-empty file that is not a cti store is refused and left untouched.
/// Returns OK, INVALID_ARGUMENT, OPEN_FAILED (with the reason), LOCKED
/// (another handle writes it: the message names the process), UNAVAILABLE
/// (a schema upgrade could not commit), PANIC.
///
/// # Safety
/// `path` is a C string; `out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn cti_store_open(path: *const c_char, out: *mut *mut CtiStore) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    unsafe { open_with(path, out, Store::open) }
}

/// Opens an existing store for reading only, beside a writer in this or
/// another process (or none). Its reads see the writer's commits within a
/// quarter of a second and slide the windows as of now; claims and
/// subscriptions return READ_ONLY. Returns OK, INVALID_ARGUMENT, OPEN_FAILED,
/// PANIC.
///
/// # Safety
/// `path` is a C string; `out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn cti_store_open_readonly(
    path: *const c_char,
    out: *mut *mut CtiStore,
) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    unsafe { open_with(path, out, Store::open_readonly) }
}

/// # Safety
/// As `cti_store_open`.
unsafe fn open_with(
    path: *const c_char,
    out: *mut *mut CtiStore,
    open: fn(&Path) -> Result<Store, Error>,
) -> CtiResult {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        unsafe { clear(out) }?;
        // SAFETY: as above.
        let store = open(Path::new(unsafe { text(path, "path") }?))?;
        // SAFETY: `out` was checked by `clear`.
        unsafe { *out = Box::into_raw(Box::new(CtiStore { store })) };
        Ok(())
    })
}

/// Commits what is queued and closes the store. NULL is ignored. In a forked
/// child the handle is only forgotten (the parent's store is not touched).
///
/// # Safety
/// `store` comes from `cti_store_open*`, is closed once, and no other call on
/// it is running or will run; not called from a claim callback.
#[no_mangle]
pub unsafe extern "C" fn cti_store_close(store: *mut CtiStore) {
    if !store.is_null() {
        // SAFETY: a handle from `Box::into_raw`, closed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(store) })));
    }
}

/// Claims address `ip` (dotted quad, or `::ffff:a.b.c.d`) for `nick`, and
/// returns once the claim is committed to disk. On success `*out_json`
/// (if `out_json` is not NULL) receives `{"ip","name","block","claimed_at"}`.
/// The current owner claiming again within 3,600 s of their claim changes
/// nothing and gets the existing claim back.
/// Returns OK, INVALID_ARGUMENT, INVALID_NICK, INVALID_ADDRESS, NOT_IPV4,
/// RATE_LIMITED, UNAVAILABLE, CLOSED, READ_ONLY, FORKED, WRONG_THREAD, PANIC.
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
            // SAFETY: not NULL, writable by the caller's contract.
            unsafe { *out_json = std::ptr::null_mut() };
        }
        // SAFETY: the caller's contract, passed on.
        let (store, ip, nick) = unsafe { (handle(store)?, text(ip, "ip")?, text(nick, "nick")?) };
        let claimed = store.claim(ip, nick)?;
        if !out_json.is_null() {
            let json = render::to_json(&ClaimJson::from_claimed(&claimed));
            // SAFETY: checked above.
            unsafe { give(out_json, &json) };
        }
        Ok(())
    })
}

/// A pointer the caller vouches may travel to the library's threads.
struct UserData(*mut c_void);
// SAFETY: the callers of cti_claim_async and cti_subscribe vouch that
// user_data may be used from the library's threads (documented on each).
unsafe impl Send for UserData {}

impl UserData {
    /// Taken by method so that closures capture the whole `Send` wrapper.
    fn get(&self) -> *mut c_void {
        self.0
    }
}

/// Queues a claim and returns at once; `callback` runs on a library thread
/// after the commit (see the top of this header for what it may call). If
/// this returns other than `CTI_RESULT_OK`, the callback is never called.
/// Returns OK, INVALID_ARGUMENT, INVALID_NICK, INVALID_ADDRESS, NOT_IPV4,
/// RATE_LIMITED, UNAVAILABLE (queue full), CLOSED, READ_ONLY, FORKED, PANIC;
/// the callback gets OK or UNAVAILABLE.
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
            let (rc, msg) = match result {
                Ok(c) => (CtiResult::Ok, render::to_json(&ClaimJson::from_claimed(&c))),
                Err(e) => (code(&e), e.to_string()),
            };
            let msg = c_text(msg);
            // SAFETY: the caller's callback with its own user_data.
            unsafe { callback(user_data.get(), rc, msg.as_ptr()) };
        };
        // SAFETY: the caller's contract, passed on.
        let (store, ip, nick) = unsafe { (handle(store)?, text(ip, "ip")?, text(nick, "nick")?) };
        store.claim_with(ip, nick, Box::new(done))
    })
}

/// Calls `callback` on a thread of its own with each event of the store, in
/// order, as JSON: `{"event":N,"kind":"commit"|"slide","at",
/// "claims":[{"ip","name","block","claimed_at"}],
/// "holders":[{"window","block","holder","tied","claims","total"}]}` — a
/// commit's claims and the (window, block) leaders it changed, or a window
/// sliding that changed leaders. A subscriber more than 1024 events behind
/// loses the oldest ones and next gets `{"kind":"gap","dropped":N}`: the
/// store never waits for a subscriber. Unsubscribe before closing the store.
/// Returns OK, INVALID_ARGUMENT, READ_ONLY, FORKED, UNAVAILABLE, PANIC.
///
/// # Safety
/// `store` is NULL or valid; `out` is writable; `user_data` must be usable
/// from another thread until `cti_unsubscribe` has returned.
#[no_mangle]
pub unsafe extern "C" fn cti_subscribe(
    store: *const CtiStore,
    callback: CtiEventCallback,
    user_data: *mut c_void,
    out: *mut *mut CtiSubscription,
) -> CtiResult {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        unsafe { clear(out) }?;
        let callback = callback.ok_or_else(|| Error::Argument("callback is NULL".into()))?;
        let user_data = UserData(user_data);
        let deliver = move |json: &str| {
            let json = c_text(json.to_string());
            // SAFETY: the caller's callback with its own user_data.
            unsafe { callback(user_data.get(), json.as_ptr()) };
        };
        // SAFETY: as above.
        let sub = unsafe { handle(store) }?.subscribe(Box::new(deliver))?;
        // SAFETY: `out` was checked by `clear`.
        unsafe { *out = Box::into_raw(Box::new(CtiSubscription { _sub: sub })) };
        Ok(())
    })
}

/// Ends a subscription: once this returns no callback of it is running or
/// will run (unless called from its own callback: then the current call
/// finishes and no other starts). NULL is ignored.
///
/// # Safety
/// `sub` comes from `cti_subscribe` and is ended once.
#[no_mangle]
pub unsafe extern "C" fn cti_unsubscribe(sub: *mut CtiSubscription) {
    if !sub.is_null() {
        // SAFETY: a handle from `Box::into_raw`, ended once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(sub) })));
    }
}

/// `{"window","updated_at","blocks":[256 × {"block","holder","tied","claims","total"}]}`.
/// `window` NULL means `all`; `updated_at` is when the window's data last changed.
/// Returns OK, INVALID_ARGUMENT, UNKNOWN_WINDOW, FORKED, PANIC.
///
/// # Safety
/// Pointers are NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_blocks_json(
    store: *const CtiStore,
    window_name: *const c_char,
    out: *mut *mut c_char,
) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    unsafe { render_to(store, out, || Ok(Query::Blocks(window(window_name)?))) }
}

/// `{"window","updated_at","ranked","rankings":[{"rank","name","blocks","claims"}]}`:
/// every holder and every player with at least 10 addresses in the window,
/// by blocks held, then addresses (`claims`), then name in byte order;
/// `ranked` counts them. `window` NULL means `all`. Returns as `cti_blocks_json`.
///
/// # Safety
/// Pointers are NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_ranks_json(
    store: *const CtiStore,
    window_name: *const c_char,
    out: *mut *mut c_char,
) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    unsafe { cti_ranks_top_json(store, window_name, RANKS_ALL, out) }
}

/// As `cti_ranks_json`, with only the first `limit` rows in `rankings` (a
/// leaderboard's top); `ranked` still counts every row. Cheaper than the
/// whole ranking when many players are ranked. Since ABI 1.2.
///
/// # Safety
/// Pointers are NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_ranks_top_json(
    store: *const CtiStore,
    window_name: *const c_char,
    limit: u32,
    out: *mut *mut c_char,
) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    unsafe { render_to(store, out, || Ok(Query::Ranks(window(window_name)?, limit))) }
}

/// `{"updated_at","claims":[{"ip","name","block","claimed_at"}]}`: the newest
/// current claims, one per address (its current owner), newest first, at most
/// `limit` (capped at 500). Returns OK, INVALID_ARGUMENT, FORKED, PANIC.
///
/// # Safety
/// `store` is NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_recent_json(
    store: *const CtiStore,
    limit: u32,
    out: *mut *mut c_char,
) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    unsafe { render_to(store, out, || Ok(Query::Recent(limit as usize))) }
}

/// `{"name","window","updated_at","blocks_held","claims","standing":[{"block","rank","of","tied","claims"}]}`;
/// NOT_FOUND if `nick` has no claims in the window (NULL: `all`).
/// Returns OK, INVALID_ARGUMENT, INVALID_NICK, UNKNOWN_WINDOW, NOT_FOUND, FORKED, PANIC.
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
        // SAFETY: the caller's contract, passed on.
        unsafe { clear(out) }?;
        // SAFETY: as above.
        let (store, nick, w) =
            unsafe { (handle(store)?, text(nick, "nick")?, window(window_name)?) };
        let json = render::to_json(&store.user(nick, w)?);
        // SAFETY: `out` was checked by `clear`.
        unsafe { give(out, &json) };
        Ok(())
    })
}

/// ipv4.games' `/score`: `{"now":[sec,nsec],"score":{"NICK":[[block,count],...]}}`
/// with every player owning an address in the window and their count in every
/// block where they have one; `now` is when the window's data last changed.
/// Returns as `cti_blocks_json`.
///
/// # Safety
/// Pointers are NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_score_compat_json(
    store: *const CtiStore,
    window_name: *const c_char,
    out: *mut *mut c_char,
) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    unsafe { render_to(store, out, || Ok(Query::Score(window(window_name)?))) }
}

/// ipv4.games' `/recent`: `{"now":[sec,nsec],"recent":[[ip_as_u32,"nick",unix_secs],...]}`,
/// the newest current claims as `cti_recent_json`; `now` is when that list
/// last changed. Returns as `cti_recent_json`.
///
/// # Safety
/// `store` is NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_recent_compat_json(
    store: *const CtiStore,
    limit: u32,
    out: *mut *mut c_char,
) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    unsafe { render_to(store, out, || Ok(Query::RecentCompat(limit as usize))) }
}

/// Counters since the store was opened, for metrics:
/// `{"live_players","block_players","queued","events_delivered","events_dropped","schedule_load_errors",
///   "claims_committed","claims_failed","claims_rate_limited","commits","commits_failed",
///   "batch_size":{"buckets":[[le,count],...],"count","sum"},"commit_latency_us":{...}}`
/// (histogram buckets are cumulative). Returns OK, INVALID_ARGUMENT, FORKED, PANIC.
///
/// # Safety
/// `store` is NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn cti_stats_json(
    store: *const CtiStore,
    out: *mut *mut c_char,
) -> CtiResult {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        unsafe { clear(out) }?;
        // SAFETY: as above.
        let json = render::to_json(&unsafe { handle(store) }?.stats()?);
        // SAFETY: `out` was checked by `clear`.
        unsafe { give(out, &json) };
        Ok(())
    })
}

/// Checks a nickname against the rules without claiming anything.
/// Returns OK, INVALID_ARGUMENT, INVALID_NICK, PANIC.
///
/// # Safety
/// `nick` is NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn cti_validate_nick(nick: *const c_char) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    guard(|| Ok(crate::nick::validate(unsafe { text(nick, "nick") }?)?))
}

/// `CTI_RESULT_OK` while the store can commit. Cheap: it answers from the
/// writer's state (running, queue not full, no commit stuck, the file not
/// changed by another program) and a write-and-sync probe of the disk made at
/// most every 2 s and shared between callers; it commits a transaction only
/// while the last commit failed. On a read-only handle: OK while the file
/// can be read. Returns OK, UNAVAILABLE, INVALID_ARGUMENT, FORKED,
/// WRONG_THREAD, CLOSED, PANIC.
///
/// # Safety
/// `store` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cti_health(store: *const CtiStore) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    guard(|| unsafe { handle(store) }?.health())
}

/// Writes the snapshot of the aggregates that is due next, then recounts
/// every aggregate from the claims table and compares it with the stored
/// ones, the writer's and the readers' (as of now): INCONSISTENT names the
/// first difference. Takes time in proportion to the addresses stored.
/// Returns OK, INCONSISTENT, UNAVAILABLE, INVALID_ARGUMENT, READ_ONLY,
/// FORKED, WRONG_THREAD, CLOSED, PANIC.
///
/// # Safety
/// `store` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cti_check(store: *const CtiStore) -> CtiResult {
    // SAFETY: the caller's contract, passed on.
    guard(|| unsafe { handle(store) }?.check())
}
