//! The ABI as a program loading the library at run time sees it: every
//! function the header declares resolves in the built `libcti_core.so`, the
//! version function agrees with the header, and nothing else is exported.

use libloading::{Library, Symbol};
use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, CStr};

fn header() -> String {
    std::fs::read_to_string(cti::workspace_root().join("include/cti_core.h")).unwrap()
}

/// Names of the functions the header declares (`name(` after a return type).
fn declared_functions(h: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in h
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('*') && !l.starts_with("/*"))
    {
        if let Some(open) = line
            .find("cti_")
            .filter(|_| line.contains('(') && !line.starts_with("typedef"))
        {
            let name: String = line[open..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if line[open + name.len()..].starts_with('(') {
                names.insert(name);
            }
        }
    }
    names
}

fn define(h: &str, name: &str) -> u32 {
    h.lines()
        .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("{name} not in the header"))
        .trim()
        .parse()
        .unwrap()
}

fn enum_value(h: &str, name: &str) -> c_int {
    h.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("{name} not in the header"))
        .trim_end_matches(',')
        .parse()
        .unwrap()
}

#[test]
fn every_declared_function_resolves_and_the_version_agrees() {
    let h = header();
    let functions = declared_functions(&h);
    assert!(
        functions.len() >= 15,
        "parsed too few functions: {functions:?}"
    );
    let lib = unsafe { Library::new(cti::core_library()) }.expect("load libcti_core.so");
    for f in &functions {
        let sym: Result<Symbol<*const ()>, _> = unsafe { lib.get(f.as_bytes()) };
        assert!(sym.is_ok(), "{f} is declared but not exported");
    }
    let version: Symbol<unsafe extern "C" fn() -> u32> =
        unsafe { lib.get(b"cti_abi_version") }.unwrap();
    let expect = (define(&h, "CTI_ABI_MAJOR") << 16) | define(&h, "CTI_ABI_MINOR");
    assert_eq!(unsafe { version() }, expect);
}

#[test]
fn exports_are_exactly_the_declared_functions() {
    let h = header();
    let out = std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(cti::core_library())
        .output()
        .expect("nm");
    let exported: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("T"))
        .filter_map(|l| l.split_whitespace().nth(2).map(String::from))
        .collect();
    assert_eq!(exported, declared_functions(&h));
}

#[test]
fn result_codes_in_the_header_are_what_the_library_returns() {
    let h = header();
    let lib = unsafe { Library::new(cti::core_library()) }.unwrap();
    type Validate = unsafe extern "C" fn(*const c_char) -> c_int;
    type Ranks = unsafe extern "C" fn(*const (), *const c_char, *mut *mut c_char) -> c_int;
    let validate: Symbol<Validate> = unsafe { lib.get(b"cti_validate_nick") }.unwrap();
    let ranks: Symbol<Ranks> = unsafe { lib.get(b"cti_ranks_json") }.unwrap();
    let last_error: Symbol<unsafe extern "C" fn() -> *const c_char> =
        unsafe { lib.get(b"cti_last_error") }.unwrap();
    unsafe {
        assert_eq!(validate(c"fine".as_ptr()), enum_value(&h, "CTI_RESULT_OK"));
        assert_eq!(
            validate(c"not fine".as_ptr()),
            enum_value(&h, "CTI_RESULT_INVALID_NICK")
        );
        assert_eq!(
            validate(std::ptr::null()),
            enum_value(&h, "CTI_RESULT_INVALID_ARGUMENT")
        );
        assert_eq!(
            validate(c"\xff\xfe".as_ptr()),
            enum_value(&h, "CTI_RESULT_INVALID_ARGUMENT")
        );
        assert!(CStr::from_ptr(last_error())
            .to_str()
            .unwrap()
            .contains("UTF-8"));
        let mut out = std::ptr::null_mut();
        assert_eq!(
            ranks(std::ptr::null(), std::ptr::null(), &mut out),
            enum_value(&h, "CTI_RESULT_INVALID_ARGUMENT")
        );
        assert!(out.is_null());
    }
}
