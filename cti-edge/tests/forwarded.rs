//! Issue 13.1 through the edge binary: with `--trusted-proxy` (an HTTP proxy
//! in front of the edge) only `--forwarded-header` is read, from the right.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cti-edge` with `args`; returns it and its `host:port`.
fn start(dir: &std::path::Path, args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cti-edge"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("fwd.db"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("serving https://") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "no URL printed");
    }
    let addr = line
        .split("https://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    (Proc(child), addr.to_string())
}

/// The address `/api/ip` reports for a plain request carrying `headers`.
fn seen_ip(addr: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let (_edge, addr) = start(dir.path(), &["--trusted-proxy", "127.0.0.1"]);
    let forged = "Forwarded: for=8.8.8.8\r\nX-Forwarded-For: 9.9.9.9, 203.0.113.5\r\n";
    assert_eq!(seen_ip(&addr, forged), "203.0.113.5");
    let dir = tempfile::tempdir().unwrap();
    let (_edge, addr) = start(
        dir.path(),
        &[
            "--trusted-proxy",
            "127.0.0.1",
            "--forwarded-header",
            "forwarded",
        ],
    );
    let forged = "X-Forwarded-For: 8.8.8.8\r\nForwarded: for=9.9.9.9, for=203.0.113.6\r\n";
    assert_eq!(seen_ip(&addr, forged), "203.0.113.6");
}
