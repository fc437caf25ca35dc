//! Issue 13.1 over a real socket: behind a trusted HTTP proxy only the header
//! the operator names counts, read from the right, so a client cannot pick
//! the address it claims by sending its own `Forwarded` or `X-Forwarded-For`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `cti-server`, killed when dropped.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cti-server"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("fwd.db"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.split("http://").nth(1).expect("prints its URL");
    let addr = addr.trim().trim_end_matches('/').to_string();
    Server(child, addr)
}

/// The JSON answer to a claim sent with `headers`.
fn claim(addr: &str, nick: &str, headers: &str) -> serde_json::Value {
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
    let s = start(dir.path(), &["--trusted-proxy", "127.0.0.1"]);
    let both = "Forwarded: for=8.8.8.8\r\nX-Forwarded-For: 203.0.113.9\r\n";
    assert_eq!(claim(&s.1, "a", both)["ip"], "203.0.113.9");
    // The client sent its own X-Forwarded-For; the proxy appended the real one.
    let stacked = "X-Forwarded-For: 8.8.4.4, 203.0.113.10\r\n";
    assert_eq!(claim(&s.1, "b", stacked)["ip"], "203.0.113.10");
    let split = "X-Forwarded-For: 8.8.4.4\r\nX-Forwarded-For: 203.0.113.11\r\n";
    assert_eq!(claim(&s.1, "c", split)["ip"], "203.0.113.11");
    // Only Forwarded: the named header is missing, so the proxy asked itself.
    assert_eq!(
        claim(&s.1, "d", "Forwarded: for=8.8.8.8\r\n")["ip"],
        "127.0.0.1"
    );
    // A garbage hop where the client should be: no address, no claim.
    let r = claim(&s.1, "e", "X-Forwarded-For: 8.8.8.8, nonsense\r\n");
    assert_eq!(r["error"], "no_client_address", "{r}");
}

#[test]
fn the_operator_can_name_forwarded_or_x_real_ip() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        dir.path(),
        &[
            "--trusted-proxy",
            "127.0.0.1",
            "--forwarded-header",
            "forwarded",
        ],
    );
    let both = "Forwarded: for=8.8.8.8, for=\"203.0.113.20:4000\"\r\nX-Forwarded-For: 8.8.4.4\r\n";
    assert_eq!(claim(&s.1, "a", both)["ip"], "203.0.113.20");
    drop(s);
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cti-server"))
        .env("CTI_FORWARDED_HEADER", "x-real-ip")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--trusted-proxy",
            "127.0.0.1",
            "--db",
        ])
        .arg(dir.path().join("real.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('/');
    let s = Server(child, addr.to_string());
    let both = "X-Real-IP: 203.0.113.21\r\nX-Forwarded-For: 8.8.4.4\r\n";
    assert_eq!(claim(&s.1, "b", both)["ip"], "203.0.113.21");
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
