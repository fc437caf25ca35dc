//! `--metrics`: the operator listener answers with every family the issue
//! lists, counting what the edge actually did.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn metrics_listener_reports_every_family() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cti-edge"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--claim-burst",
            "1",
            "--db",
        ])
        .arg(dir.path().join("m.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let _guard = Proc(child);
    let (mut metrics, mut edge) = (String::new(), String::new());
    while metrics.is_empty() || edge.is_empty() {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "no URLs printed");
        if let Some(rest) = line.split("metrics: http://").nth(1) {
            metrics = rest.trim().trim_end_matches("/metrics").to_string();
        }
        if let Some(rest) = line.split("serving https://").nth(1) {
            edge = rest.split('/').next().unwrap().to_string();
        }
    }
    let claim =
        b"GET /claim?name=m HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\nConnection: close\r\n\r\n";
    assert!(get(&edge, claim).contains("200 OK"));
    assert!(
        get(&edge, claim).contains("429"),
        "second claim over the burst"
    );
    assert!(
        get(
            &edge,
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n\r\n"
        )
        .is_empty(),
        "untrusted header refused"
    );
    let tls = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", &format!("https://{edge}/api/ip")])
        .status();
    assert!(tls.is_ok_and(|s| s.success()), "curl over TLS");
    let text = get(
        &metrics,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    for expected in [
        "cti_http_requests_total{route=\"claim\",status=\"200\"} 1",
        "cti_http_requests_total{route=\"claim\",status=\"429\"} 1",
        "cti_http_requests_total{route=\"api_ip\",status=\"200\"} 1",
        "cti_claims_committed_total 1",
        "cti_claims_rate_limited_total 1",
        "cti_commit_batch_size_bucket{le=\"1\"}",
        "cti_commit_latency_microseconds_count",
        "cti_proxy_headers_total{outcome=\"refused\",reason=\"untrusted_source\"} 1",
        "cti_tls_handshakes_total 1",
        "cti_tls_handshake_failures_total 0",
        "cti_connections_open",
        "# TYPE cti_commit_batch_size histogram",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
