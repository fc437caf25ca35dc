//! The C ABI with arbitrary bytes: every entry point that takes text gets
//! pieces of the input (invalid UTF-8 and empty strings included), plus NULL
//! pointers. Nothing may crash or leak; results must be one of the codes.

#![no_main]

use cti_core::abi::*;
use libfuzzer_sys::fuzz_target;
use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::OnceLock;

struct Handle(*mut CtiStore);
// SAFETY: the store handle is documented as thread-safe.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

fn store() -> *const CtiStore {
    static STORE: OnceLock<Handle> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("cti-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = CString::new(dir.join("fuzz.db").to_str().unwrap()).unwrap();
            let mut s = ptr::null_mut();
            assert_eq!(
                unsafe { cti_store_open(path.as_ptr(), &mut s) },
                CtiResult::Ok
            );
            Handle(s)
        })
        .0
}

/// Up to four C strings cut from the input at 0xff bytes; a part starting
/// with 0xfe stands for NULL.
fn parts(data: &[u8]) -> Vec<Option<CString>> {
    data.split(|b| *b == 0xff)
        .take(4)
        .map(|p| {
            if p.first() == Some(&0xfe) {
                return None;
            }
            let end = p.iter().position(|b| *b == 0).unwrap_or(p.len());
            Some(CString::new(&p[..end]).unwrap())
        })
        .collect()
}

fn ptr_of(p: Option<&Option<CString>>) -> *const c_char {
    p.and_then(|c| c.as_ref())
        .map_or(ptr::null(), |c| c.as_ptr())
}

/// A failed call leaves `*out` NULL; whatever it holds is freed.
fn take(out: *mut c_char, rc: CtiResult) {
    if rc != CtiResult::Ok {
        assert!(out.is_null(), "{rc:?} with a string");
    }
    unsafe { cti_string_free(out) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let p = parts(rest);
    let (a, b, c) = (ptr_of(p.first()), ptr_of(p.get(1)), ptr_of(p.get(2)));
    let s = if op & 0x80 != 0 { ptr::null() } else { store() };
    let mut out: *mut c_char = ptr::null_mut();
    unsafe {
        let rc = match op % 12 {
            0 => cti_claim(s, a, b, &mut out),
            1 => cti_blocks_json(s, a, &mut out),
            2 => cti_ranks_json(s, a, &mut out),
            3 => cti_recent_json(s, u32::from_le_bytes([op, 0, 0, 0]), &mut out),
            4 => cti_user_json(s, a, b, &mut out),
            5 => cti_score_compat_json(s, c, &mut out),
            6 => cti_validate_nick(a),
            7 => cti_recent_compat_json(s, 7, &mut out),
            8 => {
                // Arbitrary new-name limits: taken only when every rate above
                // 0 has a burst of at least 1, refused otherwise.
                let n = rest.iter().take(4).copied().collect::<Vec<_>>();
                let limits = CtiNickLimits {
                    per_address_per_hour: u32::from(*n.first().unwrap_or(&0)),
                    per_address_burst: u32::from(*n.get(1).unwrap_or(&0)),
                    per_net24_per_hour: u32::from(*n.get(2).unwrap_or(&0)),
                    per_net24_burst: u32::from(*n.get(3).unwrap_or(&0)),
                };
                cti_store_set_nick_limits(s, &limits)
            }
            9 => {
                // Read-only opens never create or change a file.
                let mut r = ptr::null_mut();
                let rc = cti_store_open_readonly(a, &mut r);
                assert_eq!(rc == CtiResult::Ok, !r.is_null());
                cti_store_close(r);
                rc
            }
            10 => {
                let mut sub = ptr::null_mut();
                let rc = cti_subscribe(s, None, ptr::null_mut(), &mut sub);
                assert_eq!(rc, CtiResult::InvalidArgument, "a NULL callback");
                assert!(sub.is_null());
                rc
            }
            _ => cti_user_json(s, a, c, &mut out),
        };
        take(out, rc);
        let msg = cti_last_error();
        assert!(!msg.is_null());
    }
});
