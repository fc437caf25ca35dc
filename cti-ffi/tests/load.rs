//! Loading a core at run time: a newer copy is taken and serves the same
//! store; a file that is not a cti core of this ABI is refused with a reason.

use cti_ffi::{Api, LoadError, Store};
use std::path::PathBuf;

#[path = "support/cores.rs"]
mod cores;

use cores::{patched_core, stub_core};

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
