//! The `cti-edge` command line: `--help` lists every flag with its
//! environment variable, and `--check-config` accepts good settings and
//! names the bad ones.

mod common;

use common::{check_config, BIN};
use std::process::Command;
use test_kit::tls::Cert;

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--listen", "CTI_LISTEN"),
        ("--db", "CTI_DB"),
        ("--proxy-from", "CTI_PROXY_FROM"),
        ("--tls-cert", "CTI_TLS_CERT"),
        ("--tls-key", "CTI_TLS_KEY"),
        ("--plain-http", "CTI_PLAIN_HTTP"),
        ("--proxy-timeout", "CTI_PROXY_TIMEOUT"),
        ("--handshake-timeout", "CTI_HANDSHAKE_TIMEOUT"),
        ("--request-timeout", "CTI_REQUEST_TIMEOUT"),
        ("--max-connections", "CTI_MAX_CONNECTIONS"),
        ("--max-per-source", "CTI_MAX_PER_SOURCE"),
        ("--grace", "CTI_GRACE"),
        ("--access-log", "CTI_ACCESS_LOG"),
        ("--claims-per-minute", "CTI_CLAIMS_PER_MINUTE"),
        ("--new-names-per-hour", "CTI_NEW_NAMES_PER_HOUR"),
        ("--net24-new-name-burst", "CTI_NET24_NEW_NAME_BURST"),
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
        assert!(
            help.contains(&format!("env: {env}")),
            "{env} missing:\n{help}"
        );
    }
    assert!(help.contains("127.0.0.1:8443"), "{help}");
    assert!(help.contains("--check-config"), "{help}");
}

#[test]
fn check_config_accepts_good_settings_and_names_the_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let cert = Cert::self_signed("ok.test");
    cert.write(dir);
    let tls = ["--tls-cert", "cert.pem", "--tls-key", "key.pem"];
    let (ok, text) = check_config(dir, &tls);
    assert!(
        ok && text.contains("configuration ok") && text.contains(&cert.fingerprint()),
        "{text}"
    );

    // A key that does not belong to the certificate.
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    Cert::self_signed("other.test").write(&other);
    let mismatched = ["--tls-cert", "cert.pem", "--tls-key", "other/key.pem"];
    let (ok, text) = check_config(dir, &mismatched);
    assert!(!ok, "mismatched key accepted: {text}");

    let missing = ["--tls-cert", "missing.pem", "--tls-key", "key.pem"];
    let (ok, text) = check_config(dir, &missing);
    assert!(!ok && text.contains("missing.pem"), "{text}");
    let (ok, text) = check_config(dir, &["--proxy-timeout", "2"]);
    assert!(!ok && text.contains("at least 3"), "{text}");
    let (ok, text) = check_config(dir, &["--proxy-from", "10.0.0.0/99"]);
    assert!(!ok && text.contains("10.0.0.0/99"), "{text}");
    let (ok, text) = check_config(dir, &["--db", "no/such/dir/cti.db"]);
    assert!(!ok && text.contains("no/such/dir"), "{text}");
    let (ok, text) = check_config(dir, &["--tls-cert", "cert.pem"]);
    assert!(
        !ok && text.contains("--tls-key"),
        "a certificate needs its key: {text}"
    );
    let (ok, text) = check_config(dir, &["--net24-new-name-burst", "0"]);
    assert!(
        !ok && text.contains("new names per /24"),
        "a rate without a burst: {text}"
    );
}
