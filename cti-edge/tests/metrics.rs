//! `--metrics`: the operator listener answers with a well-formed exposition
//! (parsed as a scraper would) whose families count what the edge did.

mod common;

use common::Binary;
use std::process::Command;
use test_kit::metrics::{scrape, Exposition};

fn send(addr: std::net::SocketAddr, request: &[u8]) -> String {
    String::from_utf8_lossy(&test_kit::http::send(addr, request)).into_owned()
}

/// How much `selector` grew from `before` to `after`.
fn grew(before: &Exposition, after: &Exposition, selector: &str) -> f64 {
    after.count(selector) - before.count(selector)
}

#[test]
fn metrics_count_what_the_edge_did() {
    let flags = ["--metrics", "127.0.0.1:0", "--claim-burst", "1"];
    let binary = Binary::start(&flags, &[]);
    let (edge, metrics) = (binary.addr, binary.metrics.unwrap());
    let before = scrape(metrics);
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
    let after = scrape(metrics);

    for (selector, by) in [
        (
            "cti_http_requests_total{route=\"claim\",status=\"200\"}",
            1.0,
        ),
        (
            "cti_http_requests_total{route=\"claim\",status=\"429\"}",
            1.0,
        ),
        (
            "cti_http_requests_total{route=\"api_ip\",status=\"200\"}",
            1.0,
        ),
        ("cti_claims_committed_total", 1.0),
        ("cti_claims_rate_limited_total", 1.0),
        ("cti_commit_batch_size_bucket{le=\"1\"}", 1.0),
        (
            "cti_proxy_headers_refused_total{reason=\"untrusted_source\"}",
            1.0,
        ),
        (
            "cti_proxy_headers_refused_total{reason=\"v1_malformed\"}",
            0.0,
        ),
        ("cti_proxy_headers_total{kind=\"v1\"}", 0.0),
        ("cti_tls_handshakes_total", 1.0),
        ("cti_tls_handshake_failures_total", 0.0),
    ] {
        assert_eq!(grew(&before, &after, selector), by, "{selector}");
    }
    assert!(grew(&before, &after, "cti_commit_duration_seconds_count") >= 1.0);
    let build = format!(
        "cti_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(after.value(&build), Some(1.0));
    let core = &after.samples_of("cti_core_info").collect::<Vec<_>>();
    assert_eq!(core.len(), 1);
    assert_eq!(core[0].labels["version"], cti_ffi::version());
    for (family, kind) in [
        ("cti_proxy_headers_total", "counter"),
        ("cti_proxy_headers_refused_total", "counter"),
        ("cti_connections_open", "gauge"),
        ("cti_commit_duration_seconds", "histogram"),
    ] {
        assert_eq!(after.families[family].kind, kind, "{family}");
    }
}
