//! For the tests that build C programs: compile against the generated header
//! and the built library (found through an rpath, as a C user would link it),
//! and run under valgrind's memcheck; and the check of what the subscriber
//! examples print. Each test file uses only some of these.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Compiles `source` (relative to the workspace root) into `dir`, with `libs`
/// (e.g. `-lsqlite3`) after the core library.
pub fn compile(dir: &Path, source: &str, libs: &[&str]) -> PathBuf {
    let root = cti::workspace_root();
    let deps = cti::core_library().parent().unwrap().to_path_buf();
    let name = Path::new(source).file_stem().unwrap();
    let exe = dir.join(name);
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-g"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join(source))
        .arg("-L")
        .arg(&deps)
        .arg("-lcti_core")
        .args(libs)
        .arg(format!("-Wl,-rpath,{}", deps.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "cc {source} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Runs `exe args` under memcheck (definite leaks are errors), or `None` when
/// valgrind is missing outside CI (in CI that fails: `scripts/install-deps`
/// installs it).
pub fn valgrind(exe: &Path, args: &[&std::ffi::OsStr]) -> Option<Output> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "valgrind is missing (scripts/install-deps installs it)"
        );
        eprintln!("skipped: valgrind is not installed");
        return None;
    }
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
            "-q",
        ])
        .arg(exe)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "valgrind found errors or leaks:\n{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !stderr.contains("Invalid read") && !stderr.contains("definitely lost"),
        "{stderr}"
    );
    Some(out)
}

/// Checks what a subscriber example (`examples/subscribe.c`,
/// `python/examples/subscribe.py`) printed: four commit events, numbered
/// from 1, with the example's claims in order and bob taking block 10 in
/// every window; the reader's view of block 10; both refusals; `ok`.
pub fn check_subscriber_example(stdout: &str) {
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("event "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let numbers: Vec<u64> = events
        .iter()
        .map(|e| e["event"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4], "{stdout}");
    assert!(events.iter().all(|e| e["kind"] == "commit"), "{stdout}");
    let claims: Vec<(&str, &str)> = events
        .iter()
        .flat_map(|e| e["claims"].as_array().unwrap())
        .map(|c| (c["ip"].as_str().unwrap(), c["name"].as_str().unwrap()))
        .collect();
    let expect = [
        ("10.0.0.1", "alice"),
        ("10.0.0.2", "alice"),
        ("10.0.0.3", "bob"),
        ("10.0.0.1", "bob"),
    ];
    assert_eq!(claims, expect, "{stdout}");
    let stolen = events[3]["holders"].as_array().unwrap();
    assert_eq!(stolen.len(), 6, "all six windows: {stdout}");
    assert!(stolen
        .iter()
        .all(|h| h["block"] == 10 && h["holder"] == "bob"));
    let reader = stdout
        .lines()
        .find_map(|l| l.strip_prefix("reader "))
        .unwrap_or_else(|| panic!("no reader line: {stdout}"));
    let block: serde_json::Value = serde_json::from_str(reader).unwrap();
    assert_eq!(block["holder"], "bob", "{stdout}");
    assert_eq!(block["total"], 3, "{stdout}");
    assert!(
        stdout.contains("read-only: the store was opened read-only"),
        "{stdout}"
    );
    assert!(
        stdout.contains("locked: ") && stdout.contains("one writer per store"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}
