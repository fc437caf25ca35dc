//! `--metrics`: the operator listener answers with every family the issue
//! lists, counting what the edge actually did.

mod common;

use common::Binary;
use std::process::Command;

fn send(addr: std::net::SocketAddr, request: &[u8]) -> String {
    String::from_utf8_lossy(&test_kit::http::send(addr, request)).into_owned()
}

#[test]
fn metrics_listener_reports_every_family() {
    let flags = ["--metrics", "127.0.0.1:0", "--claim-burst", "1"];
    let binary = Binary::start(&flags, &[]);
    let (edge, metrics) = (binary.addr, binary.metrics.unwrap());
    let claim =
        b"GET /claim?name=m HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\nConnection: close\r\n\r\n";
    assert!(send(edge, claim).contains("200 OK"));
    assert!(
        send(edge, claim).contains("429"),
        "second claim over the burst"
    );
    assert!(
        send(
            edge,
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n\r\n"
        )
        .is_empty(),
        "untrusted header refused"
    );
    let tls = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", &format!("https://{edge}/api/ip")])
        .status();
    assert!(tls.is_ok_and(|s| s.success()), "curl over TLS");
    let text = test_kit::metrics::text(metrics);
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
