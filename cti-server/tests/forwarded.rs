//! Issue 13.1 over a real socket: behind a trusted HTTP proxy only the header
//! the operator names counts, read from the right, so a client cannot pick
//! the address it claims by sending its own `Forwarded` or `X-Forwarded-For`.

#[path = "support/running.rs"]
mod running;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// `cti-server` trusting 127.0.0.1 as its proxy, with `env`.
fn start(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> (running::Running, SocketAddr) {
    let args = ["--listen", "127.0.0.1:0", "--db", "fwd.db"];
    let args = [&args[..], &["--trusted-proxy", "127.0.0.1"]].concat();
    let bin = env!("CARGO_BIN_EXE_cti-server");
    let running = running::Running::start(bin, dir.path(), &args, env, &["serving http://"]);
    let addr = running.addrs[0];
    (running, addr)
}

/// The JSON answer to a claim sent with `headers`.
fn claim(addr: SocketAddr, nick: &str, headers: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /claim?name={nick} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|_| panic!("{reply}"))
}

#[test]
fn behind_nginx_a_clients_own_forwarded_header_claims_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // As behind nginx: the proxy (127.0.0.1 here) appends to X-Forwarded-For
    // and passes the client's Forwarded header through.
    let (_s, addr) = start(&dir, &[]);
    let both = "Forwarded: for=8.8.8.8\r\nX-Forwarded-For: 203.0.113.9\r\n";
    assert_eq!(claim(addr, "a", both)["ip"], "203.0.113.9");
    // The client sent its own X-Forwarded-For; the proxy appended the real one.
    let stacked = "X-Forwarded-For: 8.8.4.4, 203.0.113.10\r\n";
    assert_eq!(claim(addr, "b", stacked)["ip"], "203.0.113.10");
    let split = "X-Forwarded-For: 8.8.4.4\r\nX-Forwarded-For: 203.0.113.11\r\n";
    assert_eq!(claim(addr, "c", split)["ip"], "203.0.113.11");
    // Only Forwarded: the named header is missing, so the proxy asked itself.
    assert_eq!(
        claim(addr, "d", "Forwarded: for=8.8.8.8\r\n")["ip"],
        "127.0.0.1"
    );
    // A garbage hop where the client should be: no address, no claim.
    let r = claim(addr, "e", "X-Forwarded-For: 8.8.8.8, nonsense\r\n");
    assert_eq!(r["error"], "no_client_address", "{r}");
}

#[test]
fn the_operator_can_name_forwarded_or_x_real_ip() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, addr) = start(&dir, &[("CTI_FORWARDED_HEADER", "forwarded")]);
    let both = "Forwarded: for=8.8.8.8, for=\"203.0.113.20:4000\"\r\nX-Forwarded-For: 8.8.4.4\r\n";
    assert_eq!(claim(addr, "a", both)["ip"], "203.0.113.20");
    let dir = tempfile::tempdir().unwrap();
    let (_s, addr) = start(&dir, &[("CTI_FORWARDED_HEADER", "x-real-ip")]);
    let both = "X-Real-IP: 203.0.113.21\r\nX-Forwarded-For: 8.8.4.4\r\n";
    assert_eq!(claim(addr, "b", both)["ip"], "203.0.113.21");
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
