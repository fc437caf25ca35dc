//! The `cti-server` binary as an operator runs it: no flags needed, the URL
//! printed, a database created in the working directory, `--help` with the
//! core's default limits, the claim limits and limits on new names from
//! flags and environment, and a clean exit 0 on SIGTERM after finishing
//! in-flight requests.

mod common;

use common::{Binary, JSON};
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
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
        assert!(help.contains(&format!("env: {env}")), "{env}:\n{help}");
    }
}

/// Every limit flag, its variable and its value in the core's defaults.
fn limit_flags() -> Vec<(&'static str, &'static str, u32)> {
    let (claims, names) = cti_ffi::default_limits().unwrap();
    vec![
        (
            "--claims-per-minute",
            "CTI_CLAIMS_PER_MINUTE",
            claims.per_address_per_minute,
        ),
        ("--claim-burst", "CTI_CLAIM_BURST", claims.per_address_burst),
        (
            "--net24-claims-per-minute",
            "CTI_NET24_CLAIMS_PER_MINUTE",
            claims.per_net24_per_minute,
        ),
        (
            "--net24-claim-burst",
            "CTI_NET24_CLAIM_BURST",
            claims.per_net24_burst,
        ),
        (
            "--new-names-per-hour",
            "CTI_NEW_NAMES_PER_HOUR",
            names.per_address_per_hour,
        ),
        (
            "--new-name-burst",
            "CTI_NEW_NAME_BURST",
            names.per_address_burst,
        ),
        (
            "--net24-new-names-per-hour",
            "CTI_NET24_NEW_NAMES_PER_HOUR",
            names.per_net24_per_hour,
        ),
        (
            "--net24-new-name-burst",
            "CTI_NET24_NEW_NAME_BURST",
            names.per_net24_burst,
        ),
    ]
}

#[test]
fn help_shows_each_limit_with_the_cores_default() {
    let help = help();
    for (flag, env, default) in limit_flags() {
        // The flag's entry: its line, and those up to the next flag's.
        let lines: Vec<&str> = help.lines().map(str::trim).collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("{flag} <")))
            .unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        let rest = &lines[at + 1..];
        let end = rest
            .iter()
            .position(|l| l.starts_with('-'))
            .unwrap_or(rest.len());
        let entry = rest[..end].join(" ");
        assert!(
            entry.contains(&format!("[default: the core's, {default}]")),
            "{flag}: {entry}"
        );
        assert!(entry.contains(&format!("env: {env}")), "{flag}: {entry}");
    }
}

/// The status of a claim for `name` from `ip` (through the trusted proxy).
fn claim(server: &Binary, ip: &str, name: &str) -> u16 {
    let xff = format!("X-Forwarded-For: {ip}");
    server
        .get(&format!("/claim?name={name}"), &[JSON, &xff])
        .status
}

const CLAIMS_OFF: [&str; 6] = [
    "--trusted-proxy",
    "127.0.0.1",
    "--claims-per-minute",
    "0",
    "--net24-claims-per-minute",
    "0",
];

#[test]
fn new_names_are_limited_per_address_by_flag() {
    let flags = ["--new-names-per-hour", "1", "--new-name-burst", "1"];
    let server = Binary::start(&[&CLAIMS_OFF[..], &flags].concat(), &[]);
    assert_eq!(claim(&server, "198.51.100.1", "first"), 200);
    assert_eq!(
        claim(&server, "198.51.100.1", "second"),
        429,
        "a second new name"
    );
    assert_eq!(
        claim(&server, "198.51.100.1", "first"),
        200,
        "not a new name"
    );
    assert_eq!(
        claim(&server, "198.51.100.2", "third"),
        200,
        "another address"
    );
}

#[test]
fn new_names_are_limited_per_net24_by_environment() {
    let env = [
        ("CTI_NET24_NEW_NAMES_PER_HOUR", "1"),
        ("CTI_NET24_NEW_NAME_BURST", "2"),
    ];
    let server = Binary::start(&CLAIMS_OFF, &env);
    assert_eq!(claim(&server, "198.51.100.1", "a"), 200);
    assert_eq!(claim(&server, "198.51.100.2", "b"), 200);
    assert_eq!(
        claim(&server, "198.51.100.3", "c"),
        429,
        "the /24's burst of 2"
    );
    assert_eq!(claim(&server, "198.51.101.1", "d"), 200, "another /24");
}

#[test]
fn claim_limits_come_from_flags_and_environment() {
    let env = [("CTI_CLAIM_BURST", "2")];
    let flags = ["--trusted-proxy", "127.0.0.1", "--claims-per-minute", "1"];
    let server = Binary::start(&flags, &env);
    for _ in 0..2 {
        assert_eq!(claim(&server, "198.51.100.1", "a"), 200);
    }
    assert_eq!(claim(&server, "198.51.100.1", "a"), 429, "a burst of 2");
    let server = Binary::start(&CLAIMS_OFF, &[]);
    for _ in 0..20 {
        assert_eq!(claim(&server, "198.51.100.1", "a"), 200, "no claim limit");
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
    // The core checks the limits: a rate without a burst admits nothing.
    let (code, err) = refused(&["--new-name-burst", "0"], &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("limits on new names") && err.contains("burst"),
        "{err}"
    );
    let (code, err) = refused(&[], &[("CTI_NET24_CLAIM_BURST", "0")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("claim limits") && err.contains("/24"), "{err}");
    let (code, err) = refused(&["--claim-burst", "-1"], &[]);
    assert_eq!(code, Some(2), "{err}");
}
