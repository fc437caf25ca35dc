//! End to end through a real HAProxy (Debian's, installed by
//! scripts/install-deps): `send-proxy-v2` with CRC32C and unique-id over TLS,
//! `send-proxy` (v1) over plain HTTP, HAProxy forging the client source with
//! `tcp-request connection set-src`, health checks sending `LOCAL`; and
//! `curl --haproxy-protocol` straight to the edge.

mod common;

use common::Binary;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use test_kit::process::free_port;

/// HAProxy, stopped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-m", "10"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The edge behind HAProxy on 127.0.0.1, logging every request as JSON.
fn start_edge() -> Binary {
    let flags = ["--proxy-from", "127.0.0.1", "--claims-per-minute", "0"];
    Binary::start(&[&flags[..], &["--access-log", "--log-json"]].concat(), &[])
}

/// The access log entry for `target` (bounded wait: the line is written
/// after the answer).
fn access_log(edge: &Binary, target: &str) -> serde_json::Value {
    test_kit::wait::until("the access log line", Duration::from_secs(10), || {
        edge.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["target"] == "access" && v["fields"]["target"] == target)
    })
}

fn server_states(sock: &std::path::Path) -> String {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return String::new();
    };
    let _ = s.write_all(b"show stat\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn claims_through_haproxy_carry_the_forged_sources() {
    if !test_kit::tools_present(&[("haproxy", "-v"), ("curl", "--version")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let running = start_edge();
    let edge = running.addr.port();
    let (v2_port, v1_port) = (free_port(), free_port());
    let sock = dir.path().join("admin.sock");
    let cfg = format!(
        "global\n    stats socket {sock} mode 600 level admin\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         \x20   unique-id-format %{{+X}}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid\n\
         frontend v2\n    bind 127.0.0.1:{v2_port}\n    tcp-request connection set-src ipv4(203.0.113.10)\n    default_backend edge_v2\n\
         frontend v1\n    bind 127.0.0.1:{v1_port}\n    tcp-request connection set-src ipv4(203.0.113.11)\n    default_backend edge_v1\n\
         backend edge_v2\n    server edge 127.0.0.1:{edge} send-proxy-v2 proxy-v2-options crc32c,unique-id check check-send-proxy inter 300ms\n\
         backend edge_v1\n    server edge 127.0.0.1:{edge} send-proxy check check-send-proxy inter 300ms\n",
        sock = sock.display()
    );
    std::fs::write(dir.path().join("haproxy.cfg"), &cfg).unwrap();
    let check = Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(dir.path().join("haproxy.cfg"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}\n{cfg}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _haproxy = Proc(
        Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(dir.path().join("haproxy.cfg"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Health checks (PROXY LOCAL) must bring both servers up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stat = server_states(&sock);
        let up = stat
            .lines()
            .filter(|l| l.starts_with("edge_v") && l.contains(",edge,") && l.contains(",UP,"))
            .count();
        if up == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health checks never passed:\n{stat}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let v2 = curl(&[
        "-k",
        "-H",
        "Accept: text/plain",
        &format!("https://127.0.0.1:{v2_port}/claim?name=via_v2"),
    ]);
    assert_eq!(v2, "The land at 203.0.113.10 was claimed for via_v2.\n");
    // HAProxy's unique-id TLV reaches the access log (the format starts with
    // the client address in hex: 203.0.113.10 is CB00710A).
    let access = access_log(&running, "/claim?name=via_v2");
    let unique_id = access["fields"]["unique_id"].as_str().unwrap();
    assert!(unique_id.starts_with("CB00710A:"), "{access}");
    assert_eq!(
        access["fields"]["client"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("203.0.113.10")
    );
    let h2 = curl(&[
        "-k",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        &format!("https://127.0.0.1:{v2_port}/api/ip"),
    ]);
    assert_eq!(h2, "2");
    let v1 = curl(&[
        "-H",
        "Accept: text/plain",
        &format!("http://127.0.0.1:{v1_port}/claim?name=via_v1"),
    ]);
    assert_eq!(v1, "The land at 203.0.113.11 was claimed for via_v1.\n");
    let direct = curl(&[
        "--haproxy-protocol",
        &format!("http://127.0.0.1:{edge}/api/ip"),
    ]);
    assert_eq!(direct, r#"{"ip":"127.0.0.1"}"#, "curl's v1 header");
    let without = curl(&[&format!("http://127.0.0.1:{edge}/api/ip")]);
    assert!(
        !without.contains("\"ip\""),
        "a trusted source must send a header: {without}"
    );
}

#[test]
fn the_deploy_example_is_a_valid_haproxy_configuration() {
    if !test_kit::tools_present(&[("haproxy", "-v")]) {
        return;
    }
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg");
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(text.contains("send-proxy-v2") && text.contains("check-send-proxy"));
    // The socket directory may not exist here: check a copy without it.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("haproxy.cfg");
    std::fs::write(
        &copy,
        text.replace(
            "/run/haproxy/admin.sock",
            &dir.path().join("admin.sock").display().to_string(),
        ),
    )
    .unwrap();
    let out = Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
