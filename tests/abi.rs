//! The ABI as a program loading the library at run time sees it: every
//! function the header declares resolves in the built `libcti_core.so`, the
//! version function agrees with the header, nothing else is exported, and
//! cti-ffi declares each function with the header's signature (the C
//! compiler compares them).

use libloading::{Library, Symbol};
use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, CStr};
use std::path::Path;
use std::process::Command;

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

fn enum_value(h: &str, name: &str) -> c_int {
    h.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("{name} not in the header"))
        .trim_end_matches(',')
        .parse()
        .unwrap()
}

#[test]
fn every_declared_function_resolves() {
    let h = header();
    let functions = declared_functions(&h);
    assert!(
        functions.len() >= 15,
        "parsed too few functions: {functions:?}"
    );
    // SAFETY: the built core; loading it runs no initialiser of its own.
    let lib = unsafe { Library::new(cti::core_library()) }.expect("load libcti_core.so");
    for f in &functions {
        // SAFETY: only the address is looked at, never called.
        let sym: Result<Symbol<*const ()>, _> = unsafe { lib.get(f.as_bytes()) };
        assert!(sym.is_ok(), "{f} is declared but not exported");
    }
}

/// cti-ffi's `extern "C"` block, rendered as C prototypes by build.rs.
const FFI_DECLARATIONS: &str = concat!(env!("OUT_DIR"), "/ffi_declarations.h");

/// Compiles `source` (and links the library when `link`) with the header on
/// the include path; returns the compiler's result and its messages.
fn compile_c(dir: &Path, source: &str, link: bool) -> (bool, String, std::path::PathBuf) {
    let file = dir.join("check.c");
    std::fs::write(&file, source).unwrap();
    let exe = dir.join("check");
    let lib_dir = cti::core_library().parent().unwrap().to_path_buf();
    let mut cc = Command::new("cc");
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(cti::workspace_root().join("include"))
        .arg(&file);
    if link {
        cc.arg("-L")
            .arg(&lib_dir)
            .arg("-lcti_core")
            .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
            .arg("-o")
            .arg(&exe);
    } else {
        cc.arg("-fsyntax-only");
    }
    let out = cc.output().expect("cc");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        exe,
    )
}

#[test]
fn cti_ffi_declares_every_function_as_the_header_does() {
    let ffi = std::fs::read_to_string(FFI_DECLARATIONS).unwrap();
    let ffi_functions = declared_functions(&ffi);
    assert!(
        ffi_functions.len() >= 15,
        "parsed too few functions: {ffi_functions:?}"
    );
    assert!(
        ffi_functions.is_subset(&declared_functions(&header())),
        "cti-ffi declares functions the header does not: {:?}",
        ffi_functions.difference(&declared_functions(&header()))
    );
    // C refuses a second declaration of a function with a different type
    // ("conflicting types"). cti-ffi keeps result codes as plain integers
    // (c_int) where the header has `enum CtiResult`, an int-sized enum, so
    // its `int` is read as that enum.
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "#include \"cti_core.h\"\n#define int enum CtiResult\n#include \"{FFI_DECLARATIONS}\"\n#undef int\n"
    );
    let (ok, messages, _) = compile_c(dir.path(), &source, false);
    assert!(
        ok,
        "cti-ffi/src/api.rs disagrees with the header:\n{messages}"
    );
}

#[test]
fn version_function_agrees_with_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let source = "#include <stdio.h>\n#include \"cti_core.h\"\n\
        int main(void) {\n\
            printf(\"%u.%u %u\\n\", CTI_ABI_MAJOR, CTI_ABI_MINOR, cti_abi_version());\n\
            return cti_abi_version() == ((CTI_ABI_MAJOR << 16) | CTI_ABI_MINOR) ? 0 : 1;\n\
        }\n";
    let (ok, messages, exe) = compile_c(dir.path(), source, true);
    assert!(ok, "{messages}");
    let out = Command::new(exe).output().unwrap();
    assert!(
        out.status.success(),
        "cti_abi_version() is not the header's CTI_ABI_MAJOR.CTI_ABI_MINOR: {}",
        String::from_utf8_lossy(&out.stdout)
    );
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
    // SAFETY: as above.
    let lib = unsafe { Library::new(cti::core_library()) }.unwrap();
    type Validate = unsafe extern "C" fn(*const c_char) -> c_int;
    type Ranks = unsafe extern "C" fn(*const (), *const c_char, *mut *mut c_char) -> c_int;
    // SAFETY: the type is the function's in the header.
    let validate: Symbol<Validate> = unsafe { lib.get(b"cti_validate_nick") }.unwrap();
    // SAFETY: as above.
    let ranks: Symbol<Ranks> = unsafe { lib.get(b"cti_ranks_json") }.unwrap();
    // SAFETY: as above.
    let last_error: Symbol<unsafe extern "C" fn() -> *const c_char> =
        unsafe { lib.get(b"cti_last_error") }.unwrap();
    // SAFETY: the calls pass what the header allows (NULL included, which
    // is refused); `last_error` gives a string valid until the next call.
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

#[test]
fn the_debian_symbols_file_lists_every_function_of_the_header() {
    let symbols =
        std::fs::read_to_string(cti::workspace_root().join("debian/libcti-core1.symbols")).unwrap();
    let listed: BTreeSet<String> = symbols
        .lines()
        .filter_map(|l| {
            l.trim()
                .split_once("@Base")
                .map(|(name, _)| name.to_string())
        })
        .collect();
    assert_eq!(
        listed,
        declared_functions(&header()),
        "debian/libcti-core1.symbols and include/cti_core.h disagree"
    );
}
