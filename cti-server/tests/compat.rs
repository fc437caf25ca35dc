//! The ipv4.games endpoints as its clients use them (issue 11): `/ip`,
//! `/statusz`, the original page paths, form-decoded names and the claim
//! sentence. Raw requests over TCP, a real store.

mod common;

use common::{Reply, Server, JSON};
use cti_server::Config;
use std::io::{Read, Write};

#[test]
fn ip_is_the_bare_dotted_quad() {
    let s = Server::plain();
    let r = s.get("/ip", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "127.0.0.1", "no newline");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
}

#[test]
fn ip_refuses_an_ipv6_client_in_plain_words() {
    let s = Server::start_on("[::1]:0", Config::default(), None);
    let r = s.get("/ip", &[]);
    assert_eq!(r.status, 400);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(r.text().contains("IPv4"), "{}", r.text());
    assert_eq!(
        s.get("/claim?name=six", &[JSON]).json()["error"],
        "not_ipv4"
    );
    let head = s.head("/claim?name=six", &[JSON]);
    assert_eq!(head.status, 400, "HEAD refuses as GET does");
}

#[test]
fn the_original_page_paths_serve_the_pages() {
    let s = Server::plain();
    for (alias, page) in [
        ("/index.html", "/"),
        ("/about.html", "/about"),
        ("/user.html?name=bob", "/player?name=bob"),
    ] {
        let (a, p) = (s.get(alias, &[]), s.get(page, &[]));
        assert_eq!((a.status, p.status), (200, 200), "{alias}");
        assert_eq!(a.body, p.body, "{alias}");
        let canonical = page.split('?').next().unwrap();
        assert_eq!(
            a.header("link"),
            Some(format!("<{canonical}>; rel=\"canonical\"").as_str()),
            "{alias}"
        );
        assert_eq!(p.header("link"), None, "{page} is the canonical one");
    }
}

#[test]
fn statusz_is_public_plain_counters() {
    let limits = cti_ffi::Limits {
        per_address_per_minute: 1,
        per_address_burst: 1,
        ..cti_ffi::Limits::OFF
    };
    let s = Server::start(Config::default(), Some(limits));
    assert_eq!(s.get("/claim?name=alice", &[JSON]).status, 200);
    assert_eq!(s.get("/claim?name=alice", &[JSON]).status, 429);
    // A keep-alive connection, answered once (so surely accepted) and held
    // open while /statusz is read on another.
    let mut held = std::net::TcpStream::connect(s.addr).unwrap();
    held.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"ok\n") {
        let mut buf = [0u8; 512];
        let n = held.read(&mut buf).unwrap();
        assert!(n > 0, "closed");
        seen.extend_from_slice(&buf[..n]);
    }
    let r = s.get("/statusz", &[]);
    drop(held);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    assert!(!text.contains("127.0.0.1"), "no addresses: {text}");
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("claims_committed"), 1);
    assert_eq!(value("claims_rate_limited"), 1);
    assert_eq!(
        value("requests_served"),
        3,
        "the two claims and the health check before it"
    );
    assert!(value("connections_open") >= 2, "{text}");
    assert!(value("store_bytes") > 0);
    assert!(value("uptime_seconds") < 600);
    assert!(text.lines().all(|l| l.split(' ').count() == 2), "{text}");
}

#[test]
fn a_plus_in_the_query_is_a_space() {
    let s = Server::plain();
    let r = s.get("/claim?name=a+b", &[JSON]);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_name"))
    );
    let r = s.get("/claim?name=a%2Bb", &[JSON]);
    assert_eq!((r.status, r.json()["name"].as_str()), (200, Some("a+b")));
    let r = s.get("/claim/c+d", &[JSON]);
    assert_eq!(
        (r.status, r.json()["name"].as_str()),
        (200, Some("c+d")),
        "the path keeps +"
    );
    assert_eq!(s.get("/api/users/c+d", &[]).status, 200);
    assert_eq!(s.claims_committed(), 2);
}

#[test]
fn the_claim_says_whose_land_it_is() {
    let s = Server::plain();
    let r = s.get("/claim?name=x%2By", &["Accept: text/plain"]);
    assert_eq!(r.text(), "The land at 127.0.0.1 was claimed for x+y.\n");
    let r = s.get("/claim?name=bob", &["Accept: text/html"]);
    let page = r.text();
    assert!(
        page.contains(
            "The land at 127.0.0.1 was claimed for <a href=\"/player?name=bob\">bob</a>."
        ),
        "{page}"
    );
    let r = Reply::parse(
        &s.send(b"GET /claim?name=x%2By HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    );
    assert!(
        r.text().contains("<a href=\"/player?name=x%2By\">x+y</a>"),
        "the link survives form decoding: {}",
        r.text()
    );
}

/// A poller of `/score*` and `/recent` gets 304s, by `If-None-Match` and by
/// `If-Modified-Since`, while nothing changes; `now` is the data's time.
#[test]
fn pollers_get_304_while_nothing_changes() {
    let s = Server::plain();
    assert_eq!(s.get("/claim?name=alice", &[JSON]).status, 200);
    std::thread::sleep(cti_server::http_cache::SETTLED + std::time::Duration::from_millis(1100));
    for path in [
        "/score",
        "/score/hour",
        "/score/day",
        "/score/week",
        "/score/month",
        "/recent",
    ] {
        let first = s.get(path, &[]);
        let now = first.json()["now"].clone();
        let again = s.get(path, &[]);
        assert_eq!(
            again.json()["now"],
            now,
            "{path}: now is the time of the data"
        );
        let tag = first.header("etag").unwrap();
        assert_eq!(again.header("etag"), Some(tag), "{path}");
        assert_eq!(
            s.get(path, &[&format!("If-None-Match: {tag}")]).status,
            304,
            "{path}"
        );
        let lm = first
            .header("last-modified")
            .unwrap_or_else(|| panic!("{path}: no Last-Modified"));
        assert_eq!(
            s.get(path, &[&format!("If-Modified-Since: {lm}")]).status,
            304,
            "{path}"
        );
        let secs = now[0].as_u64().unwrap();
        assert_eq!(
            httpdate::parse_http_date(lm).unwrap(),
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            "{path}: Last-Modified is the second of now"
        );
    }
}
