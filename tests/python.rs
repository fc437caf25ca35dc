//! Runs the Python module's unittest suite against the built library, so that
//! `cargo test` covers the Python binding too.

use std::process::Command;

#[test]
fn python_binding_tests_pass() {
    let root = cti::workspace_root();
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(root.join("python/tests"))
        .env("CTI_CORE_LIB", cti::core_library())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(root)
        .output()
        .expect("python3");
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
