//! HTTP conformance (RFC 9110/9112) of the service, one test per finding of
//! issue 17, each over raw TCP so that no client library adds, merges or
//! hides a byte. Every test here failed on the code before the fix.

mod common;

use common::{Reply, Server, JSON};

/// The fingerprinted script the home page links to.
fn script_path(s: &Server) -> String {
    let home = s.get("/", &[]).text();
    home.split("src=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string()
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Item 1: an answer that depends on who asks is never stored by a shared cache.
#[test]
fn answers_that_depend_on_the_client_are_private() {
    let s = Server::plain();
    for (what, r) in [
        ("GET /api/ip", s.get("/api/ip", &[])),
        ("HEAD /api/ip", s.head("/api/ip", &[])),
        ("GET /ip", s.get("/ip", &[])),
        ("claim", s.get("/claim?name=alice", &[JSON])),
        ("claim error", s.get("/claim?name=bad%20name", &[JSON])),
    ] {
        let cc = r.header("cache-control");
        assert!(
            has_token(cc, "private") && has_token(cc, "no-store") && !has_token(cc, "public"),
            "{what}: Cache-Control {cc:?}"
        );
    }
}

/// Item 2: HEAD, OPTIONS and TRACE never claim; GET and POST do.
#[test]
fn safe_methods_never_claim() {
    let s = Server::plain();
    let head = s.head("/claim?name=alice", &["Accept: text/plain"]);
    assert_eq!(s.claims_committed(), 0, "HEAD claimed");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        head.header("content-length"),
        Some(
            "The land at 127.0.0.1 was claimed for alice.\n"
                .len()
                .to_string()
                .as_str()
        ),
        "HEAD answers what GET would"
    );
    assert!(head.body.is_empty());
    assert_eq!(s.head("/claim?name=alice", &[JSON]).status, 200);
    assert_eq!(
        s.head("/claim?name=bad%20name", &[JSON]).status,
        400,
        "HEAD refuses what GET would refuse"
    );
    let preflight = s.call(
        "OPTIONS",
        "/claim?name=alice",
        &[
            "Origin: https://example.com",
            "Access-Control-Request-Method: GET",
        ],
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(has_token(
        preflight.header("access-control-allow-methods"),
        "GET"
    ));
    let bare = s.call("OPTIONS", "/claim", &["Origin: https://example.com"]);
    assert_eq!(bare.status, 204, "a preflight needs no name");
    let trace = s.call("TRACE", "/claim?name=alice", &[]);
    assert_eq!(trace.status, 405);
    assert!(has_token(trace.header("allow"), "GET") && !has_token(trace.header("allow"), "TRACE"));
    assert_eq!(s.call("TRACE", "/claim/alice", &[]).status, 405);
    assert_eq!(s.claims_committed(), 0, "no safe method claimed");
    assert!(s.get("/api/recent", &[]).json()["claims"]
        .as_array()
        .unwrap()
        .is_empty());

    assert_eq!(s.get("/claim?name=alice", &[JSON]).status, 200);
    assert_eq!(s.claims_committed(), 1);
    let post = s.call("POST", "/claim?name=bob", &[JSON, "Content-Length: 0"]);
    assert_eq!(
        (post.status, post.json()["name"].as_str()),
        (200, Some("bob"))
    );
    assert_eq!(s.claims_committed(), 2, "POST claims (documented)");
}

/// Item 3: `q=0` in any spelling refuses an encoding.
#[test]
fn refused_encodings_are_not_sent() {
    let s = Server::plain();
    let js = script_path(&s);
    for refused in [
        "gzip;q=0",
        "gzip; q=0.000",
        "gzip;Q=0",
        "gzip ; q=0",
        "gzip;q=0.0",
        "*;q=0",
        "identity, gzip;q=0",
        "gzip;q=0, *",
    ] {
        let r = s.get(&js, &[&format!("Accept-Encoding: {refused}")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), None, "{refused}");
    }
    for accepted in [
        "gzip",
        "GZIP;q=0.001",
        "*",
        "gzip;q=1.000",
        "deflate, gzip;q=0.5",
    ] {
        let r = s.get(&js, &[&format!("Accept-Encoding: {accepted}")]);
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{accepted}");
    }
}

/// Item 4: gzip and identity are two representations with two strong tags.
#[test]
fn each_encoding_has_its_own_strong_etag() {
    let s = Server::plain();
    for path in [script_path(&s), "/".to_string()] {
        let gz = s.get(&path, &["Accept-Encoding: gzip"]);
        let id = s.get(&path, &[]);
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
        let (gz_tag, id_tag) = (gz.header("etag").unwrap(), id.header("etag").unwrap());
        assert_ne!(gz_tag, id_tag, "{path}");
        assert!(!gz_tag.starts_with("W/") && !id_tag.starts_with("W/"));
        for r in [&gz, &id] {
            assert!(has_token(r.header("vary"), "Accept-Encoding"), "{path}");
        }
        let again = s.get(
            &path,
            &["Accept-Encoding: gzip", &format!("If-None-Match: {gz_tag}")],
        );
        assert_eq!((again.status, again.header("etag")), (304, Some(gz_tag)));
        let other = s.get(
            &path,
            &["Accept-Encoding: gzip", &format!("If-None-Match: {id_tag}")],
        );
        assert_eq!(
            other.status, 200,
            "{path}: the identity tag does not validate gzip"
        );
        assert_eq!(
            s.get(&path, &[&format!("If-None-Match: {id_tag}")]).status,
            304
        );
    }
}

/// Item 5: list-valued fields are the combination of all their lines.
#[test]
fn list_fields_combine_across_lines() {
    let s = Server::plain();
    let tag = s
        .get("/api/blocks", &[])
        .header("etag")
        .unwrap()
        .to_string();
    let r = s.get(
        "/api/blocks",
        &["If-None-Match: \"other\"", &format!("If-None-Match: {tag}")],
    );
    assert_eq!(r.status, 304, "the second If-None-Match line counts");
    let r = s.get(
        "/api/blocks",
        &[&format!("If-None-Match: \"a,b\", W/{tag}")],
    );
    assert_eq!(r.status, 304, "a comma inside a tag does not split it");
    let r = s.get(
        "/claim?name=alice",
        &["Accept: text/html;q=0.1", "Accept: application/json"],
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let js = script_path(&s);
    let r = s.get(&js, &["Accept-Encoding: identity", "Accept-Encoding: gzip"]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = s.get(&js, &["Accept-Encoding: gzip", "Accept-Encoding: *;q=0"]);
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "gzip named explicitly wins over *"
    );
}

/// Item 6: HTTP/1.1 needs exactly one valid Host (RFC 9112 §3.2).
#[test]
fn host_is_required_exactly_once() {
    let s = Server::plain();
    for (what, req) in [
        ("no Host", "GET /api/blocks HTTP/1.1\r\nConnection: close\r\n\r\n".to_string()),
        (
            "two Host lines",
            "GET /api/blocks HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n".into(),
        ),
        (
            "an invalid Host",
            "GET /api/blocks HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n".into(),
        ),
        (
            "a claim without Host",
            "GET /claim?name=nohost HTTP/1.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n".into(),
        ),
    ] {
        let r = Reply::parse(&s.send(req.as_bytes()));
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(r.json()["error"], "bad_host", "{what}");
    }
    assert_eq!(s.claims_committed(), 0);
    let r = Reply::parse(&s.send(b"GET /api/blocks HTTP/1.0\r\n\r\n"));
    assert_eq!(r.status, 200, "HTTP/1.0 may leave Host out");
    let r = Reply::parse(&s.send(
        b"GET http://example.com/api/blocks HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    ));
    assert_eq!(r.status, 200, "absolute form");
}

/// Item 7: HEAD sends the header fields GET would, Content-Length included.
#[test]
fn head_has_the_content_length_of_get() {
    let s = Server::plain();
    assert_eq!(s.get("/claim?name=alice", &[JSON]).status, 200);
    let js = script_path(&s);
    for (path, extra) in [
        ("/", None),
        ("/about", None),
        (js.as_str(), None),
        (js.as_str(), Some("Accept-Encoding: gzip")),
        ("/api/blocks", None),
        ("/api/ranks", None),
        ("/api/recent", None),
        ("/api/ip", None),
        ("/api/users/alice", None),
        ("/score", None),
        ("/recent", None),
        ("/ip", None),
        ("/healthz", None),
        ("/nope", None),
    ] {
        let headers: Vec<&str> = extra.into_iter().collect();
        let get = s.get(path, &headers);
        let head = s.head(path, &headers);
        assert_eq!(head.status, get.status, "{path}");
        assert!(head.body.is_empty(), "{path}");
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str()),
            "{path} {extra:?}"
        );
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
    }
}

/// Item 8: API errors are readable cross-origin; preflights tell the truth.
#[test]
fn cors_covers_errors_and_preflights_are_honest() {
    let s = Server::plain();
    for (path, status) in [
        ("/api/nope", 404),
        ("/api/ranks?window=fortnight", 400),
        ("/api/users/nobody", 404),
        ("/api/recent?limit=x", 400),
    ] {
        let r = s.get(path, &["Origin: https://example.com"]);
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{path}");
    }
    let r = s.call("POST", "/api/blocks", &["Content-Length: 0"]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let preflight = s.call(
        "OPTIONS",
        "/api/blocks",
        &[
            "Origin: https://example.com",
            "Access-Control-Request-Method: GET",
            "Access-Control-Request-Headers: if-none-match",
        ],
    );
    assert_eq!(preflight.status, 204);
    let methods = preflight.header("access-control-allow-methods");
    assert!(
        has_token(methods, "GET") && !has_token(methods, "POST"),
        "{methods:?}"
    );
    assert!(!has_token(preflight.header("allow"), "POST"));
    assert!(has_token(
        preflight.header("access-control-allow-headers"),
        "If-None-Match"
    ));
    let unknown = s.call("OPTIONS", "/nope", &["Origin: https://example.com"]);
    assert_eq!(unknown.status, 404);
}

/// Item 9: requests too large for the service get the format of every other
/// error (JSON, or HTML for a browser claiming) before hyper's bare limits.
#[test]
fn oversized_requests_get_a_readable_error() {
    let s = Server::plain();
    let many: Vec<String> = (0..80).map(|i| format!("X-Filler-{i}: {i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = s.get("/api/blocks", &many);
    assert_eq!(r.status, 431);
    assert_eq!(r.json()["error"], "headers_too_large");
    let big = format!("X-Big: {}", "b".repeat(20 * 1024));
    let r = s.get("/api/blocks", &[&big]);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (431, Some("headers_too_large"))
    );
    let mut browser = many.clone();
    browser.push("Accept: text/html");
    let r = s.get("/claim?name=alice", &browser);
    assert_eq!(r.status, 431);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = s.get(&format!("/api/blocks?x={}", "a".repeat(9000)), &[]);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (414, Some("uri_too_long"))
    );
    assert_eq!(s.claims_committed(), 0);
}

/// Item 11 (the service's half): a read's validators come from its data
/// alone (the body's hash, the core's time of the data), so repeated reads of
/// unchanged data get 304 by either validator once the data has settled.
#[test]
fn validators_come_from_the_data() {
    let s = Server::plain();
    assert_eq!(s.get("/claim?name=alice", &[JSON]).status, 200);
    std::thread::sleep(http_settled());
    for path in ["/api/blocks", "/api/ranks", "/api/ranks?window=hour"] {
        let first = s.get(path, &["Accept-Encoding: gzip"]);
        let again = s.get(path, &["Accept-Encoding: gzip"]);
        let tag = first.header("etag").unwrap();
        assert_eq!(Some(tag), again.header("etag"), "{path}");
        let lm = first
            .header("last-modified")
            .unwrap_or_else(|| panic!("{path}: no Last-Modified"));
        let since = |date: &str| s.get(path, &[&format!("If-Modified-Since: {date}")]).status;
        assert_eq!(since(lm), 304, "{path}");
        let t = httpdate::parse_http_date(lm).unwrap();
        assert_eq!(
            since(&httpdate::fmt_http_date(
                t - std::time::Duration::from_secs(1)
            )),
            200
        );
        assert_eq!(since("not a date"), 200, "{path}");
        let r = s.get(
            path,
            &["Accept-Encoding: gzip", &format!("If-None-Match: {tag}")],
        );
        assert_eq!((r.status, r.header("etag")), (304, Some(tag)), "{path}");
        assert_eq!(
            r.header("last-modified"),
            Some(lm),
            "{path}: a 304 repeats the validators"
        );
    }
    assert_eq!(s.get("/claim?name=bob", &[JSON]).status, 200);
    let r = s.get("/api/blocks", &[]);
    assert_eq!(
        r.header("last-modified"),
        None,
        "data that may still change this second"
    );
}

/// How long after a change the tests wait for `Last-Modified` to be offered.
fn http_settled() -> std::time::Duration {
    cti_server::http_cache::SETTLED + std::time::Duration::from_millis(1100)
}

/// Item 11 (the core's half): the data's time, and so every validator, is
/// untouched by a health check, a same-owner re-claim within the hour, or
/// the passing of time on an endpoint whose data did not change.
#[test]
fn validators_ignore_what_does_not_change_the_answer() {
    let s = Server::plain();
    assert_eq!(s.get("/claim?name=alice", &[JSON]).status, 200);
    let reads = [
        "/api/blocks",
        "/api/ranks",
        "/api/ranks?window=hour",
        "/api/recent",
        "/api/users/alice",
        "/score",
        "/score/hour",
        "/recent",
    ];
    let tags: Vec<String> = reads
        .iter()
        .map(|p| {
            s.get(p, &[])
                .header("etag")
                .unwrap_or_else(|| panic!("{p}: no ETag"))
                .to_string()
        })
        .collect();
    assert_eq!(s.get("/healthz", &[]).status, 200);
    assert_eq!(
        s.get("/claim?name=alice", &[JSON]).status,
        200,
        "the same owner again"
    );
    for (path, tag) in reads.iter().zip(&tags) {
        let r = s.get(path, &[&format!("If-None-Match: {tag}")]);
        assert_eq!(
            r.status, 304,
            "{path}: a health check or a same-owner re-claim changed it"
        );
    }
    assert_eq!(s.get("/claim?name=bob", &[JSON]).status, 200);
    for (path, tag) in reads
        .iter()
        .zip(&tags)
        .filter(|(p, _)| !p.contains("users"))
    {
        let r = s.get(path, &[&format!("If-None-Match: {tag}")]);
        assert_eq!(r.status, 200, "{path}: a new owner changes it");
    }
}
