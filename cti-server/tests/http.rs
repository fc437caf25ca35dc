//! The HTTP interface over real sockets, against a real store in a temp dir.

mod common;

use common::{Server, JSON};
use cti_server::Config;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn claim_answers_follow_accept() {
    let s = Server::plain();
    let r = s.get("/claim?name=alice", &[JSON]);
    assert_eq!(r.status, 200);
    let c = r.json();
    assert_eq!(
        (c["ip"].as_str(), c["name"].as_str(), c["block"].as_u64()),
        (Some("127.0.0.1"), Some("alice"), Some(127))
    );
    assert!(c["claimed_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
    assert_eq!(r.header("vary"), Some("Accept"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    let r = s.get("/claim/bob", &["Accept: text/plain"]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "The land at 127.0.0.1 was claimed for bob.\n")
    );
    let r = s.get(
        "/claim?name=carol",
        &["Accept: image/webp,image/*,*/*;q=0.8"],
    );
    assert_eq!(r.header("content-type"), Some("image/gif"));
    assert!(r.body.starts_with(b"GIF89a"));
    let r = s.get("/claim?name=dave", &[]);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(
        r.text().contains(
            "The land at 127.0.0.1 was claimed for <a href=\"/player?name=dave\">dave</a>."
        ),
        "{}",
        r.text()
    );
    let r = s.call("POST", "/claim?name=erin", &[JSON, "Content-Length: 0"]);
    assert_eq!(
        (r.status, r.json()["name"].as_str()),
        (200, Some("erin")),
        "POST claims too"
    );
    let r = s.call("GET", "http://example.invalid/claim?name=frank", &[JSON]);
    assert_eq!(
        (r.status, r.json()["name"].as_str()),
        (200, Some("frank")),
        "absolute form"
    );
}

#[test]
fn bad_claims_get_clear_errors_and_pages_never_carry_markup() {
    let s = Server::plain();
    let r = s.get("/claim?name=%3Cscript%3Ealert(1)%3C/script%3E", &[]);
    assert_eq!(r.status, 400);
    let page = r.text();
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains("&lt;"), "{page}");
    let r = s.get("/claim?name=bad%20name", &[JSON]);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_name"))
    );
    assert!(r.json()["message"].as_str().unwrap().contains("' '"));
    let r = s.get("/claim", &[JSON]);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("missing_name"))
    );
    let r = s.get("/claim?name=%ZZ", &[JSON]);
    assert_eq!(r.status, 400);
    let r = s.get(&format!("/claim?name={}", "x".repeat(41)), &[JSON]);
    assert_eq!(r.status, 400);
    assert!(
        s.get("/api/recent", &[]).json()["claims"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing stored"
    );
}

#[test]
fn read_api_shapes() {
    let s = Server::plain();
    for n in ["alice", "alice", "bob"] {
        assert_eq!(s.get(&format!("/claim?name={n}"), &[JSON]).status, 200);
    }
    assert_eq!(s.get("/api/ip", &[]).json()["ip"], "127.0.0.1");
    let recent = s.get("/api/recent?limit=1", &[]).json();
    assert_eq!(recent["claims"].as_array().unwrap().len(), 1);
    assert_eq!(recent["claims"][0]["name"], "bob");
    assert_eq!(s.get("/api/recent?limit=x", &[]).status, 400);
    // Past what the core keeps, or past u32: the core caps the length.
    for big in ["501", "99999999999999999999"] {
        let r = s.get(&format!("/api/recent?limit={big}"), &[]);
        assert_eq!(r.status, 200, "limit={big}");
        assert_eq!(r.json()["claims"].as_array().unwrap().len(), 1);
    }
    let blocks = s.get("/api/blocks", &[]).json();
    assert_eq!(blocks["blocks"].as_array().unwrap().len(), 256);
    assert_eq!(blocks["blocks"][127]["holder"], "bob");
    assert!(blocks["updated_at"].as_str().is_some());
    let ranks = s.get("/api/ranks?window=hour", &[]).json();
    assert_eq!(
        (
            ranks["window"].as_str(),
            ranks["rankings"][0]["name"].as_str()
        ),
        (Some("hour"), Some("bob"))
    );
    assert_eq!(
        s.get("/api/ranks?window=fortnight", &[]).json()["error"],
        "unknown_window"
    );
    // A top list: the first rows, with the size of the whole ranking.
    let top = s.get("/api/ranks?window=hour&limit=5", &[]).json();
    assert_eq!(top["rankings"], ranks["rankings"]);
    assert_eq!(top["ranked"], 1);
    let none = s.get("/api/ranks?limit=0", &[]).json();
    assert_eq!(
        (
            none["rankings"].as_array().map(Vec::len),
            none["ranked"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let bad = s.get("/api/ranks?limit=-1", &[]);
    assert_eq!(
        (bad.status, bad.json()["error"].as_str()),
        (400, Some("invalid_limit"))
    );
    let u = s.get("/api/users/bob", &[]).json();
    assert_eq!(
        (
            u["blocks_held"].as_u64(),
            u["standing"][0]["block"].as_u64()
        ),
        (Some(1), Some(127))
    );
    assert_eq!(
        s.get("/api/users/alice", &[]).status,
        404,
        "alice lost her only address"
    );
    assert_eq!(s.get("/api/users/bad%20name", &[]).status, 400);
    let r = s.get("/healthz", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    let score = s.get("/score", &[]).json();
    assert_eq!(score["score"]["bob"], serde_json::json!([[127, 1]]));
    assert_eq!(score["now"].as_array().unwrap().len(), 2);
    assert_eq!(s.get("/score/hour", &[]).status, 200);
    let compat = s.get("/recent", &[]).json();
    assert_eq!(compat["recent"][0][0], 0x7f00_0001u32);
    assert_eq!(s.get("/ip", &[]).text(), "127.0.0.1");
}

#[test]
fn http_semantics() {
    let s = Server::plain();
    let r = s.get("/api/blocks", &[]);
    let tag = r.header("etag").unwrap().to_string();
    assert_eq!(
        s.get("/api/blocks", &[&format!("If-None-Match: {tag}")])
            .status,
        304
    );
    let head = s.call("HEAD", "/api/blocks", &[]);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(s.call("DELETE", "/api/blocks", &[]).status, 405);
    assert!(s
        .call("PUT", "/api/ranks", &["Content-Length: 0"])
        .header("allow")
        .is_some());
    assert_eq!(
        s.call("POST", "/api/ip", &["Content-Length: 100000000"])
            .status,
        413
    );
    assert_eq!(
        s.get(&format!("/api/blocks?x={}", "a".repeat(9000)), &[])
            .status,
        414
    );
    let r = s.get("/nope", &[]);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("not_found"))
    );
}

#[test]
fn pages_and_assets() {
    let s = Server::plain();
    let home = s.get("/", &[]);
    assert_eq!(home.status, 200);
    let html = home.text();
    assert!(html.contains("id=\"grid\""));
    assert!(home
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    assert_eq!(home.header("x-content-type-options"), Some("nosniff"));
    let js = html
        .split("src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let asset = s.get(&js, &["Accept-Encoding: gzip"]);
    assert_eq!(asset.status, 200);
    assert_eq!(asset.header("content-encoding"), Some("gzip"));
    assert!(asset.header("cache-control").unwrap().contains("immutable"));
    let tag = asset.header("etag").unwrap().to_string();
    assert_eq!(
        s.get(
            &js,
            &["Accept-Encoding: gzip", &format!("If-None-Match: {tag}")]
        )
        .status,
        304
    );
    assert_eq!(s.get("/about", &[]).status, 200);
    assert_eq!(s.get("/player?name=bob", &[]).status, 200);
    assert_eq!(s.get("/favicon.ico", &[]).status, 200);
}

#[test]
fn forwarded_headers_count_only_from_trusted_proxies() {
    let trusting = Server::behind_loopback_proxy();
    let r = trusting.get(
        "/claim?name=viaproxy",
        &[JSON, "X-Forwarded-For: 203.0.113.9, 127.0.0.5"],
    );
    assert_eq!(r.json()["ip"], "203.0.113.9");
    let r = trusting.get("/api/ip", &["Forwarded: for=\"198.51.100.7:555\""]);
    assert_eq!(r.json()["ip"], "127.0.0.1", "not the header named");
    let r = trusting.get("/claim?name=v6", &[JSON, "X-Forwarded-For: 2001:db8::1"]);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("not_ipv4"))
    );
    let plain = Server::plain();
    let r = plain.get(
        "/claim?name=spoofer",
        &[JSON, "X-Forwarded-For: 203.0.113.9"],
    );
    assert_eq!(
        r.json()["ip"],
        "127.0.0.1",
        "an untrusted peer's header is ignored"
    );
}

#[test]
fn rate_limited_claims_get_429_with_retry_after() {
    let limits = cti_ffi::Limits {
        per_address_per_minute: 30,
        per_address_burst: 1,
        ..cti_ffi::Limits::OFF
    };
    let s = Server::start(Config::default(), Some(limits));
    assert_eq!(s.get("/claim?name=a", &[JSON]).status, 200);
    let r = s.get("/claim?name=a", &[JSON]);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (429, Some("rate_limited"))
    );
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(
        s.get("/api/blocks", &[]).status,
        200,
        "reads are not limited"
    );
}

#[test]
fn event_stream_delivers_a_claim_from_another_client() {
    let s = Server::plain();
    let mut stream = TcpStream::connect(s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /api/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Wait for the stream to open before claiming.
    while !String::from_utf8_lossy(&seen).contains(": connected") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("text/event-stream"));
    assert_eq!(s.get("/claim?name=streamed", &[JSON]).status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("\"name\":\"streamed\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "no claim event: {}",
            String::from_utf8_lossy(&seen)
        );
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("event: commit"), "{text}");
    // The commit's block changed hands in every window.
    assert!(text.contains("\"holders\":[{\"window\":\"hour\""), "{text}");
}

#[test]
fn h2c_with_prior_knowledge() {
    use http_body_util::{BodyExt, Empty};
    let s = Server::plain();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("http://{}/api/ip", s.addr))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"ip":"127.0.0.1"}"#);
        // HEAD over HTTP/2: GET's length, no body, the stream ends cleanly.
        let head = hyper::Request::head(format!("http://{}/api/blocks", s.addr))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(head).await.unwrap();
        assert_eq!(resp.status(), 200);
        let length = resp.headers()["content-length"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());
        let get = hyper::Request::get(format!("http://{}/api/blocks", s.addr))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let body = send
            .send_request(get)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await;
        assert_eq!(body.unwrap().to_bytes().len().to_string(), length);
    });
}
