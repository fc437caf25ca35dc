//! Issue 13.1 over a real socket: behind a trusted HTTP proxy only the header
//! the operator names counts, read from the right, so a client cannot pick
//! the address it claims by sending its own `Forwarded` or `X-Forwarded-For`.

mod common;

use common::{Binary, JSON};
use std::process::Command;

/// `cti-server` trusting 127.0.0.1 as its proxy, with `env`.
fn start(env: &[(&str, &str)]) -> Binary {
    Binary::start(&["--trusted-proxy", "127.0.0.1"], env)
}

/// The JSON answer to a claim sent with `headers`.
fn claim(server: &Binary, nick: &str, headers: &[&str]) -> serde_json::Value {
    let headers = [&[JSON][..], headers].concat();
    server.get(&format!("/claim?name={nick}"), &headers).json()
}

#[test]
fn behind_nginx_a_clients_own_forwarded_header_claims_nothing() {
    // As behind nginx: the proxy (127.0.0.1 here) appends to X-Forwarded-For
    // and passes the client's Forwarded header through.
    let s = start(&[]);
    let both = ["Forwarded: for=8.8.8.8", "X-Forwarded-For: 203.0.113.9"];
    assert_eq!(claim(&s, "a", &both)["ip"], "203.0.113.9");
    // The client sent its own X-Forwarded-For; the proxy appended the real one.
    let stacked = ["X-Forwarded-For: 8.8.4.4, 203.0.113.10"];
    assert_eq!(claim(&s, "b", &stacked)["ip"], "203.0.113.10");
    let split = ["X-Forwarded-For: 8.8.4.4", "X-Forwarded-For: 203.0.113.11"];
    assert_eq!(claim(&s, "c", &split)["ip"], "203.0.113.11");
    // Only Forwarded: the named header is missing, so the proxy asked itself.
    assert_eq!(
        claim(&s, "d", &["Forwarded: for=8.8.8.8"])["ip"],
        "127.0.0.1"
    );
    // A garbage hop where the client should be: no address, no claim.
    let r = claim(&s, "e", &["X-Forwarded-For: 8.8.8.8, nonsense"]);
    assert_eq!(r["error"], "no_client_address", "{r}");
}

#[test]
fn the_operator_can_name_forwarded_or_x_real_ip() {
    let s = start(&[("CTI_FORWARDED_HEADER", "forwarded")]);
    let both = [
        "Forwarded: for=8.8.8.8, for=\"203.0.113.20:4000\"",
        "X-Forwarded-For: 8.8.4.4",
    ];
    assert_eq!(claim(&s, "a", &both)["ip"], "203.0.113.20");
    let s = start(&[("CTI_FORWARDED_HEADER", "x-real-ip")]);
    let both = ["X-Real-IP: 203.0.113.21", "X-Forwarded-For: 8.8.4.4"];
    assert_eq!(claim(&s, "b", &both)["ip"], "203.0.113.21");
    let out = Command::new(env!("CARGO_BIN_EXE_cti-server"))
        .args(["--forwarded-header", "via"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("x-forwarded-for") && err.contains("x-real-ip"),
        "{err}"
    );
}
