//! Issue 13.1 through the edge binary: with `--trusted-proxy` (an HTTP proxy
//! in front of the edge) only `--forwarded-header` is read, from the right.

mod common;

use common::Binary;

/// The address `/api/ip` reports to a plain request carrying `headers`,
/// from an edge that trusts 127.0.0.1 as an HTTP proxy and takes `args`.
fn seen_ip(args: &[&str], headers: &[&str]) -> String {
    let edge = Binary::start(&[&["--trusted-proxy", "127.0.0.1"], args].concat(), &[]);
    let v = test_kit::http::get(edge.addr, "/api/ip", headers).json();
    v["ip"].as_str().unwrap_or_default().to_string()
}

#[test]
fn only_the_named_header_from_the_right() {
    let forged = [
        "Forwarded: for=8.8.8.8",
        "X-Forwarded-For: 9.9.9.9, 203.0.113.5",
    ];
    assert_eq!(seen_ip(&[], &forged), "203.0.113.5");
    let forged = [
        "X-Forwarded-For: 8.8.8.8",
        "Forwarded: for=9.9.9.9, for=203.0.113.6",
    ];
    let named = ["--forwarded-header", "forwarded"];
    assert_eq!(seen_ip(&named, &forged), "203.0.113.6");
}
