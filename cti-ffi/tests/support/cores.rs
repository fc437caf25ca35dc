//! Core files for tests that load one at run time: a real newer copy of
//! the linked core (another release), and stubs that must be refused.
//! Shared by the cti-ffi and cti-edge tests (`#[path]`).

#![allow(dead_code)] // each test file takes what it needs

use cti_ffi::Api;
use std::path::{Path, PathBuf};

/// A copy of the linked core whose release reads `version` (same length as
/// the real one): a real library, another version.
pub fn patched_core(dir: &Path, version: &str) -> PathBuf {
    let linked = Api::linked_path().expect("the linked core's file");
    let mut bytes = std::fs::read(&linked).unwrap();
    let current = format!("CTI_CORE_RELEASE={}\0", cti_ffi::version());
    let wanted = format!("CTI_CORE_RELEASE={version}\0");
    assert_eq!(current.len(), wanted.len(), "same length, so nothing moves");
    let at = bytes
        .windows(current.len())
        .position(|w| w == current.as_bytes())
        .expect("the release marker in the library file");
    bytes[at..at + wanted.len()].copy_from_slice(wanted.as_bytes());
    let out = dir.join(format!("libcti_core-{version}.so"));
    std::fs::write(&out, bytes).unwrap();
    out
}

/// A shared library with every function name of the core (or all but
/// `without`), whose `cti_abi_version` says `major`.
pub fn stub_core(dir: &Path, major: u32, without: Option<&str>) -> PathBuf {
    let mut c = String::new();
    for name in Api::FUNCTIONS.iter().filter(|n| Some(**n) != without) {
        if *name == "cti_abi_version" {
            c.push_str(&format!(
                "unsigned {name}(void) {{ return {major}u << 16; }}\n"
            ));
        } else {
            c.push_str(&format!("int {name}(void) {{ return 0; }}\n"));
        }
    }
    let src = dir.join(format!("stub{major}.c"));
    let lib = dir.join(format!("libstub{major}-{}.so", without.unwrap_or("every")));
    std::fs::write(&src, c).unwrap();
    let ok = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cc failed");
    lib
}
