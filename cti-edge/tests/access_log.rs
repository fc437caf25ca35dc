//! `--access-log`: a line per request naming the client a balancer's PROXY
//! header carried and the balancer's unique id (HAProxy's TLV).

mod common;

use common::Binary;
use std::net::SocketAddr;
use std::time::Duration;
use test_kit::proxy;

#[test]
fn access_log_names_the_client_and_the_balancers_unique_id() {
    let edge = Binary::start(
        &["--proxy-from", "127.0.0.1", "--access-log", "--log-json"],
        &[],
    );
    let client: SocketAddr = "198.51.100.20:4321".parse().unwrap();
    let unique_id = proxy::tlv(proxy::UNIQUE_ID, b"req-7f3a-0001");
    let header = proxy::v2_proxy(client, edge.addr, &unique_id);
    let request = test_kit::http::request(edge.addr, "GET", "/api/ip", &[], "");
    let reply = test_kit::http::exchange(edge.addr, &[&header, request.as_bytes()].concat());
    assert_eq!(reply.text(), r#"{"ip":"198.51.100.20"}"#);
    let line = test_kit::wait::until("the access log line", Duration::from_secs(10), || {
        let log = edge.stderr();
        let line = log.lines().find(|l| l.contains("req-7f3a-0001"))?;
        Some(line.to_string())
    });
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    let fields = &entry["fields"];
    assert_eq!(entry["target"], "access");
    assert_eq!(fields["unique_id"], "req-7f3a-0001");
    assert_eq!(fields["client"], "198.51.100.20:4321");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["target"], "/api/ip");
}
