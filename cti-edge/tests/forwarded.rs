//! Issue 13.1 through the edge binary: with `--trusted-proxy` (an HTTP proxy
//! in front of the edge) only `--forwarded-header` is read, from the right.

#[path = "../../cti-server/tests/support/running.rs"]
mod running;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The address `/api/ip` reports to a plain request carrying `headers`,
/// from an edge that trusts 127.0.0.1 as an HTTP proxy and takes `args`.
fn seen_ip(args: &[&str], headers: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "--listen",
        "127.0.0.1:0",
        "--db",
        "fwd.db",
        "--trusted-proxy",
        "127.0.0.1",
    ];
    let args = [&base[..], args].concat();
    let bin = env!("CARGO_BIN_EXE_cti-edge");
    let edge = running::Running::start(bin, dir.path(), &args, &[], &["serving https://"]);
    let mut s = TcpStream::connect(edge.addrs[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /api/ip HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{reply}"));
    v["ip"].as_str().unwrap_or_default().to_string()
}

#[test]
fn only_the_named_header_from_the_right() {
    let forged = "Forwarded: for=8.8.8.8\r\nX-Forwarded-For: 9.9.9.9, 203.0.113.5\r\n";
    assert_eq!(seen_ip(&[], forged), "203.0.113.5");
    let forged = "X-Forwarded-For: 8.8.8.8\r\nForwarded: for=9.9.9.9, for=203.0.113.6\r\n";
    let named = ["--forwarded-header", "forwarded"];
    assert_eq!(seen_ip(&named, forged), "203.0.113.6");
}
