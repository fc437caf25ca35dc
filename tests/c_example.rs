//! The C examples (`examples/claim.c`, `examples/subscribe.c`), compiled with
//! the system C compiler against the header and the built library, run as a C
//! user would run them, and under valgrind.

mod common;

use std::process::Command;

/// Runs an example with a fresh database; its stdout.
fn run(example: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let exe = common::compile(dir.path(), example, &[]);
    let out = Command::new(&exe)
        .arg(dir.path().join("game.db"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json_after(stdout: &str, label: &str) -> serde_json::Value {
    let l = stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label}: {stdout}"));
    serde_json::from_str(l.trim()).unwrap()
}

#[test]
fn c_example_claims_and_reads_holders_and_rankings() {
    let stdout = run("examples/claim.c");
    let line = |label: &str| json_after(&stdout, label);
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
fn c_subscriber_example_prints_every_commit_in_order() {
    common::check_subscriber_example(&run("examples/subscribe.c"));
}

#[test]
fn c_examples_are_valgrind_clean() {
    let dir = tempfile::tempdir().unwrap();
    for example in ["examples/claim.c", "examples/subscribe.c"] {
        let exe = common::compile(dir.path(), example, &[]);
        let db = dir.path().join(format!("{}.db", exe.display()));
        common::valgrind(&exe, &[db.as_os_str()]);
    }
}
