//! The raw declarations of `include/cti_core.h`, linked dynamically.
//! Result codes stay plain integers here; `crate::ErrorKind` names them.

use std::ffi::{c_char, c_int, c_void};

/// Opaque store handle.
#[repr(C)]
pub struct CtiStore {
    _private: [u8; 0],
}

/// `CtiLimits` of the header.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_address_per_minute: u32,
    pub per_address_burst: u32,
    pub per_net24_per_minute: u32,
    pub per_net24_burst: u32,
}

pub type Callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, result: c_int, text: *const c_char)>;

#[link(name = "cti_core")]
extern "C" {
    pub fn cti_abi_version() -> u32;
    pub fn cti_version() -> *const c_char;
    pub fn cti_last_error() -> *const c_char;
    pub fn cti_last_retry_after() -> u32;
    pub fn cti_store_set_limits(store: *const CtiStore, limits: *const Limits) -> c_int;
    pub fn cti_string_free(s: *mut c_char);
    pub fn cti_store_open(path: *const c_char, out: *mut *mut CtiStore) -> c_int;
    pub fn cti_store_close(store: *mut CtiStore);
    pub fn cti_claim(
        store: *const CtiStore,
        ip: *const c_char,
        nick: *const c_char,
        out: *mut *mut c_char,
    ) -> c_int;
    pub fn cti_claim_async(
        store: *const CtiStore,
        ip: *const c_char,
        nick: *const c_char,
        callback: Callback,
        user_data: *mut c_void,
    ) -> c_int;
    pub fn cti_blocks_json(
        store: *const CtiStore,
        window: *const c_char,
        out: *mut *mut c_char,
    ) -> c_int;
    pub fn cti_ranks_json(
        store: *const CtiStore,
        window: *const c_char,
        out: *mut *mut c_char,
    ) -> c_int;
    pub fn cti_recent_json(store: *const CtiStore, limit: u32, out: *mut *mut c_char) -> c_int;
    pub fn cti_user_json(
        store: *const CtiStore,
        nick: *const c_char,
        window: *const c_char,
        out: *mut *mut c_char,
    ) -> c_int;
    pub fn cti_score_compat_json(
        store: *const CtiStore,
        window: *const c_char,
        out: *mut *mut c_char,
    ) -> c_int;
    pub fn cti_recent_compat_json(
        store: *const CtiStore,
        limit: u32,
        out: *mut *mut c_char,
    ) -> c_int;
    pub fn cti_stats_json(store: *const CtiStore, out: *mut *mut c_char) -> c_int;
    pub fn cti_validate_nick(nick: *const c_char) -> c_int;
    pub fn cti_health(store: *const CtiStore) -> c_int;
    pub fn cti_check(store: *const CtiStore) -> c_int;
}
