//! The `cti-server` binary as an operator runs it: no flags needed, the URL
//! printed, a database created in the working directory, `--help`, and a
//! clean exit 0 on SIGTERM after finishing in-flight requests.

mod common;

use std::process::Command;
use std::time::Duration;
use test_kit::process::Running;

#[test]
fn runs_without_flags_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // An ephemeral port through the environment: still no flags.
    let bin = env!("CARGO_BIN_EXE_cti-server");
    let env = [("CTI_LISTEN", "127.0.0.1:0")];
    let mut server = Running::start(bin, dir.path(), &[], &env, &["serving http://"]);
    let reply = test_kit::http::get(server.addr(), "/healthz", &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        dir.path().join("cti.db").exists(),
        "the default database is ./cti.db"
    );
    server.signal("-TERM");
    let exit = server.wait(Duration::from_secs(15));
    assert_eq!(exit.code(), Some(0));
    assert!(server.stderr().contains("SIGTERM"), "{}", server.stderr());
}

fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cti-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let help = help();
    for (flag, env) in [
        ("--listen", "CTI_LISTEN"),
        ("--db", "CTI_DB"),
        ("--trusted-proxy", "CTI_TRUSTED_PROXY"),
        ("--log-json", "CTI_LOG_JSON"),
        ("--metrics", "CTI_METRICS"),
        ("--claims-per-minute", "CTI_CLAIMS_PER_MINUTE"),
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
        assert!(help.contains(&format!("env: {env}")), "{env}:\n{help}");
    }
}

/// Runs the binary to its end with `args` (an ephemeral port): the exit
/// status and standard error.
fn refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cti-server"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let (code, err) = refused(&["--trusted-proxy", "10.0.0.0/99"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("prefix /99 is too long"), "{err}");
    let (code, err) = refused(&["--db", "missing/dir/x.db"], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("missing/dir"), "{err}");
}
