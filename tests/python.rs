//! Runs the Python module's unittest suite against the built library, so that
//! `cargo test` covers the Python binding too, and the Python example as a
//! user would run it, so that it cannot rot.

mod common;

use std::process::{Command, Output};

fn python(args: &[&std::ffi::OsStr]) -> Output {
    let root = cti::workspace_root();
    Command::new("python3")
        .args(args)
        .env("CTI_CORE_LIB", cti::core_library())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(root)
        .output()
        .expect("python3")
}

#[test]
fn python_binding_tests_pass() {
    let tests = cti::workspace_root().join("python/tests");
    let out = python(&[
        "-m".as_ref(),
        "unittest".as_ref(),
        "discover".as_ref(),
        "-v".as_ref(),
        "-s".as_ref(),
        tests.as_os_str(),
    ]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python tests failed:\n{report}");
    assert!(report.contains("\nOK"), "{report}");
    let ran = report
        .lines()
        .find(|l| l.starts_with("Ran "))
        .unwrap_or_default();
    assert!(!ran.starts_with("Ran 0 "), "no python test ran: {report}");
    println!("python: {ran}");
}

#[test]
fn python_subscriber_example_prints_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let example = cti::workspace_root().join("python/examples/subscribe.py");
    let db = dir.path().join("game.db");
    let out = python(&[example.as_os_str(), db.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::check_subscriber_example(&stdout);
}
