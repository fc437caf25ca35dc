//! Loading a core at run time: a newer copy is taken and serves the same
//! store; a file that is not a cti core of this ABI is refused with a reason.

use cti_ffi::{Api, LoadError, Store};
use std::path::{Path, PathBuf};

/// A copy of the linked core whose release reads `version` (same length as
/// the real one): a real library, another version.
fn patched_core(dir: &Path, version: &str) -> PathBuf {
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
fn stub_core(dir: &Path, major: u32, without: Option<&str>) -> PathBuf {
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

#[test]
fn a_newer_copy_serves_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let store = Store::open(&db).unwrap();
    store.claim("1.2.3.4", "before").unwrap();
    drop(store);
    let newer = Api::load(&patched_core(dir.path(), "9.9.9"), Api::linked()).unwrap();
    assert_eq!(newer.version(), "9.9.9");
    assert_eq!(
        cti_ffi::version(),
        Api::linked().version(),
        "the linked one is untouched"
    );
    let store = Store::open_with(newer, &db).unwrap();
    assert_eq!(store.api().version(), "9.9.9");
    store.claim("1.2.3.5", "after").unwrap();
    let recent: serde_json::Value = serde_json::from_str(&store.recent_json(10).unwrap()).unwrap();
    assert_eq!(recent["claims"].as_array().unwrap().len(), 2);
    store.check().unwrap();
    assert!(Api::loaded_count() >= 1);
}

#[test]
fn files_that_are_not_a_core_of_this_abi_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a library").unwrap();
    type Expected = fn(&LoadError) -> bool;
    let cases: Vec<(PathBuf, Expected)> = vec![
        (dir.path().join("missing.so"), |e| {
            matches!(e, LoadError::Copy { .. })
        }),
        (text, |e| matches!(e, LoadError::Open { .. })),
        (stub_core(dir.path(), 1, Some("cti_subscribe")), |e| {
            *e == LoadError::Missing("cti_subscribe")
        }),
        (stub_core(dir.path(), 1, None), |e| {
            // The stub's cti_schema_version answers 0: older than the store's.
            matches!(e, LoadError::Schema { found: 0, .. })
        }),
        (stub_core(dir.path(), 2, None), |e| {
            *e == LoadError::AbiMajor {
                found: 2,
                expected: 1,
            }
        }),
    ];
    for (path, expected) in cases {
        let err = Api::load(&path, Api::linked()).err().expect("refused");
        assert!(expected(&err), "{}: {err}", path.display());
    }
}
