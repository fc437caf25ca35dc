//! `examples/claim.c`, compiled with the system C compiler against the header
//! and the built library, run as a C user would run it, and under valgrind.

use std::path::{Path, PathBuf};
use std::process::Command;

fn build(dir: &Path) -> PathBuf {
    let root = cti::workspace_root();
    let deps = cti::core_library().parent().unwrap().to_path_buf();
    let exe = dir.join("claim");
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-g"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("examples/claim.c"))
        .arg("-L")
        .arg(&deps)
        .arg("-lcti_core")
        .arg(format!("-Wl,-rpath,{}", deps.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

#[test]
fn c_example_claims_and_reads_holders_and_rankings() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    let out = Command::new(&exe)
        .arg(dir.path().join("game.db"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |label: &str| -> serde_json::Value {
        let l = stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label}: {stdout}"));
        serde_json::from_str(l.trim()).unwrap()
    };
    let blocks = line("blocks ");
    assert_eq!(blocks["blocks"][10]["holder"], "bob", "bob stole 10.0.0.1");
    assert_eq!(blocks["blocks"][10]["claims"], 2);
    assert_eq!(blocks["blocks"][20]["holder"], serde_json::Value::Null);
    assert_eq!(blocks["blocks"][20]["tied"], true);
    let ranks = line("ranks ");
    assert_eq!(ranks["rankings"].as_array().unwrap().len(), 1);
    assert_eq!(ranks["rankings"][0]["name"], "bob");
    assert_eq!(line("async ")["name"], "dave");
    assert!(stdout.contains("bad nick -> 2: invalid name"), "{stdout}");
    assert!(stdout.contains("ipv6 -> 4: "), "{stdout}");
    assert!(stdout.trim_end().ends_with("ok"));
}

#[test]
fn c_example_is_valgrind_clean() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "valgrind is missing (scripts/install-deps installs it)"
        );
        eprintln!("skipped: valgrind is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
        ])
        .args(["--show-leak-kinds=definite", "-q"])
        .arg(&exe)
        .arg(dir.path().join("vg.db"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "valgrind found errors or leaks:\n{stderr}"
    );
    assert!(
        !stderr.contains("Invalid read") && !stderr.contains("definitely lost"),
        "{stderr}"
    );
}
