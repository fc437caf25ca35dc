//! `tests/c/embedding.c`: the embedding rules of the header exercised by a C
//! program (one writer per store across processes, read-only handles beside a
//! writer in another process, kill -9 of the writer, foreign files left byte
//! for byte, fork, also while other threads are inside SQLite, callback
//! restrictions, subscriptions, and the result codes each function
//! documents). Its sections are listed in the program.

mod common;

use std::process::Command;

const SECTIONS: [&str; 12] = [
    "abi",
    "open",
    "foreign",
    "writer_lock",
    "kill9",
    "fork",
    "fork_busy",
    "callback",
    "subscribe",
    "codes",
    "tamper",
    "flood",
];

#[test]
fn c_embedding_rules_hold() {
    let dir = tempfile::tempdir().unwrap();
    let exe = common::compile(dir.path(), "tests/c/embedding.c", &["-lsqlite3"]);
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = Command::new(&exe)
        .arg("all")
        .arg(&work)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for section in SECTIONS {
        assert!(
            stdout.lines().any(|l| l == format!("PASS {section}")),
            "{section} did not pass:\n{stdout}\n{stderr}"
        );
    }
    println!("{stdout}");
}

/// The sections that run in one process under memcheck (fork's child keeps
/// the parent's threads and leaks them by design; the others spend their time
/// in other processes or in a 66k-claim flood).
#[test]
fn c_embedding_is_valgrind_clean() {
    let dir = tempfile::tempdir().unwrap();
    let exe = common::compile(dir.path(), "tests/c/embedding.c", &["-lsqlite3"]);
    let sections = "abi,callback,subscribe,codes";
    let Some(out) = common::valgrind(&exe, &[sections.as_ref(), dir.path().as_os_str()]) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PASS ")).count(),
        4,
        "{stdout}"
    );
}
