//! The core's functions as one table of pointers, so that every call goes
//! through the same code whichever copy of the core serves it: the one the
//! binary was linked with (`ldd` shows it), or a newer file loaded at run
//! time with `libloading` to replace it in place.
//!
//! The list of functions is written once, in `core_api!` below; it makes the
//! `extern "C"` declarations, the table and the loader.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// Opaque store handle.
#[repr(C)]
pub struct CtiStore {
    _private: [u8; 0],
}

/// Opaque subscription handle.
#[repr(C)]
pub struct CtiSubscription {
    _private: [u8; 0],
}

/// `CtiLimits` of the header: claims per minute, per address and per /24.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub per_address_per_minute: u32,
    pub per_address_burst: u32,
    pub per_net24_per_minute: u32,
    pub per_net24_burst: u32,
}

/// `CtiNickLimits` of the header: claims by names new to the board, per hour.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NickLimits {
    pub per_address_per_hour: u32,
    pub per_address_burst: u32,
    pub per_net24_per_hour: u32,
    pub per_net24_burst: u32,
}

impl Limits {
    /// Every claim limit off (the header: a rate of 0 turns a limit off).
    pub const OFF: Limits = Limits {
        per_address_per_minute: 0,
        per_address_burst: 0,
        per_net24_per_minute: 0,
        per_net24_burst: 0,
    };
}

pub type ClaimCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, result: c_int, text: *const c_char)>;
pub type EventCallback = Option<unsafe extern "C" fn(user_data: *mut c_void, json: *const c_char)>;

/// Where a table's functions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The library the binary was linked with.
    Linked,
    /// A file loaded at run time (the path given, not the private copy).
    Loaded(PathBuf),
}

macro_rules! core_api {
    ($( fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?; )*) => {
        mod linked {
            use super::*;
            #[link(name = "cti_core")]
            extern "C" {
                $( pub fn $name($($arg: $ty),*) $(-> $ret)?; )*
            }
        }

        /// Every function of `include/cti_core.h`.
        pub struct Api {
            $( pub $name: unsafe extern "C" fn($($ty),*) $(-> $ret)?, )*
            pub origin: Origin,
        }

        impl Api {
            /// Names of every function the table holds.
            pub const FUNCTIONS: &'static [&'static str] = &[$(stringify!($name)),*];

            fn from_linked() -> Api {
                Api { $( $name: linked::$name, )* origin: Origin::Linked }
            }

            /// # Safety
            /// `lib` is a cti core whose symbols have the header's types.
            unsafe fn from_library(lib: &libloading::Library, origin: Origin) -> Result<Api, LoadError> {
                Ok(Api {
                    $( $name: {
                        let name = concat!(stringify!($name), "\0").as_bytes();
                        // SAFETY: the type is the header's, by the caller's contract.
                        let symbol = unsafe {
                            lib.get::<unsafe extern "C" fn($($ty),*) $(-> $ret)?>(name)
                        };
                        *symbol.map_err(|_| LoadError::Missing(stringify!($name)))?
                    }, )*
                    origin,
                })
            }
        }
    };
}

core_api! {
    fn cti_abi_version() -> u32;
    fn cti_schema_version() -> u32;
    fn cti_version() -> *const c_char;
    fn cti_last_error() -> *const c_char;
    fn cti_last_retry_after() -> u32;
    fn cti_limits_default(out: *mut Limits) -> c_int;
    fn cti_nick_limits_default(out: *mut NickLimits) -> c_int;
    fn cti_store_set_limits(store: *const CtiStore, limits: *const Limits) -> c_int;
    fn cti_store_set_nick_limits(store: *const CtiStore, limits: *const NickLimits) -> c_int;
    fn cti_string_free(s: *mut c_char);
    fn cti_store_open(path: *const c_char, out: *mut *mut CtiStore) -> c_int;
    fn cti_store_open_readonly(path: *const c_char, out: *mut *mut CtiStore) -> c_int;
    fn cti_store_close(store: *mut CtiStore);
    fn cti_claim(store: *const CtiStore, ip: *const c_char, nick: *const c_char, out: *mut *mut c_char) -> c_int;
    fn cti_claim_async(store: *const CtiStore, ip: *const c_char, nick: *const c_char, callback: ClaimCallback, user_data: *mut c_void) -> c_int;
    fn cti_subscribe(store: *const CtiStore, callback: EventCallback, user_data: *mut c_void, out: *mut *mut CtiSubscription) -> c_int;
    fn cti_unsubscribe(sub: *mut CtiSubscription);
    fn cti_blocks_json(store: *const CtiStore, window: *const c_char, out: *mut *mut c_char) -> c_int;
    fn cti_ranks_json(store: *const CtiStore, window: *const c_char, out: *mut *mut c_char) -> c_int;
    fn cti_ranks_top_json(store: *const CtiStore, window: *const c_char, limit: u32, out: *mut *mut c_char) -> c_int;
    fn cti_recent_json(store: *const CtiStore, limit: u32, out: *mut *mut c_char) -> c_int;
    fn cti_user_json(store: *const CtiStore, nick: *const c_char, window: *const c_char, out: *mut *mut c_char) -> c_int;
    fn cti_score_compat_json(store: *const CtiStore, window: *const c_char, out: *mut *mut c_char) -> c_int;
    fn cti_recent_compat_json(store: *const CtiStore, limit: u32, out: *mut *mut c_char) -> c_int;
    fn cti_stats_json(store: *const CtiStore, out: *mut *mut c_char) -> c_int;
    fn cti_validate_nick(nick: *const c_char) -> c_int;
    fn cti_health(store: *const CtiStore) -> c_int;
    fn cti_check(store: *const CtiStore) -> c_int;
}

/// Why a core file was not taken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadError {
    #[error("cannot read {path}: {message}")]
    Copy { path: String, message: String },
    #[error("cannot load {path} as a library: {message}")]
    Open { path: String, message: String },
    #[error("the library has no function {0}: not a cti core, or too old")]
    Missing(&'static str),
    #[error("the library's ABI is {found}.x; this program needs {expected}.x")]
    AbiMajor { found: u32, expected: u32 },
    #[error("the library reads database schemas up to {found}; the store is at {needed}")]
    Schema { found: u32, needed: u32 },
}

static LINKED: std::sync::OnceLock<Api> = std::sync::OnceLock::new();
/// Names the private copies of loaded files.
static COPIES: AtomicU64 = AtomicU64::new(0);
/// Libraries loaded (and deliberately never unloaded) by this process.
static KEPT: AtomicU64 = AtomicU64::new(0);

impl Api {
    /// The core this binary was linked with.
    pub fn linked() -> &'static Api {
        LINKED.get_or_init(Api::from_linked)
    }

    /// Loads the core at `path` to take over from `current`: every function
    /// must be there, with the same ABI major and a schema at least as new.
    /// The file is copied to a private path first (glibc hands back the old
    /// mapping for a path it has loaded before) and opened `RTLD_LOCAL`. The
    /// library is never unloaded: a thread may still be in it.
    pub fn load(path: &Path, current: &Api) -> Result<&'static Api, LoadError> {
        let shown = path.display().to_string();
        let n = COPIES.fetch_add(1, Ordering::Relaxed);
        let private = std::env::temp_dir().join(format!("cti-core-{}-{n}.so", std::process::id()));
        std::fs::copy(path, &private).map_err(|e| LoadError::Copy {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
        // SAFETY: loading runs the library's initialisers; a cti core has
        // none beyond Rust's own.
        let opened = unsafe { libloading::os::unix::Library::open(Some(&private), flags) };
        let _ = std::fs::remove_file(&private);
        let lib: libloading::Library = opened
            .map_err(|e| LoadError::Open {
                path: shown.clone(),
                message: e.to_string(),
            })?
            .into();
        // SAFETY: a library exporting these names is a cti core, whose
        // functions have the header's types; checked by version below.
        let api = unsafe { Api::from_library(&lib, Origin::Loaded(path.to_path_buf())) }?;
        let (found, expected) = (api.abi().0, current.abi().0);
        if found != expected {
            return Err(LoadError::AbiMajor { found, expected });
        }
        // SAFETY: no arguments.
        let (schema, needed) =
            unsafe { ((api.cti_schema_version)(), (current.cti_schema_version)()) };
        if schema < needed {
            return Err(LoadError::Schema {
                found: schema,
                needed,
            });
        }
        std::mem::forget(lib);
        KEPT.fetch_add(1, Ordering::Relaxed);
        Ok(Box::leak(Box::new(api)))
    }

    /// The file the linked core was mapped from, as the dynamic linker
    /// resolved the declared link (from `/proc/self/maps`). After a package
    /// upgrade replaced that file, this is where the new one is.
    pub fn linked_path() -> Option<PathBuf> {
        // Make sure the library is mapped (it is, for any binary that links it).
        let _ = Api::linked();
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines()
            .filter_map(|l| l.splitn(6, ' ').nth(5).map(str::trim))
            .map(|p| p.strip_suffix(" (deleted)").unwrap_or(p))
            .find(|p| {
                Path::new(p)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("libcti_core.so"))
            })
            .map(PathBuf::from)
    }

    /// How many core files this process has loaded (and kept mapped).
    pub fn loaded_count() -> u64 {
        KEPT.load(Ordering::Relaxed)
    }

    /// `(major, minor)` of this core's ABI.
    pub fn abi(&self) -> (u32, u32) {
        // SAFETY: no arguments.
        let v = unsafe { (self.cti_abi_version)() };
        (v >> 16, v & 0xffff)
    }

    /// This core's release.
    pub fn version(&self) -> &'static str {
        // SAFETY: a static NUL-terminated string that lives as long as the
        // library, which is never unloaded.
        unsafe { CStr::from_ptr((self.cti_version)()) }
            .to_str()
            .unwrap_or("?")
    }
}
