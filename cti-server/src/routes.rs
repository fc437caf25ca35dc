//! Routing: which answer each method and path get. Game data comes from the
//! core as JSON; this module only picks the call, the status and the headers.

use crate::error::ApiError;
use crate::negotiate::{self, Format};
use crate::{assets, client_addr, http_cache, App, Body};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use std::net::IpAddr;

/// Longest request target accepted (414 beyond).
pub const MAX_URI: usize = 8 * 1024;
/// Largest request body accepted (413 beyond); no route reads one.
pub const MAX_BODY: u64 = 64 * 1024;

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// A 1×1 transparent GIF: the answer to `/claim` from an `<img>`.
const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

pub async fn handle(app: &App, peer: Option<IpAddr>, req: Request<Incoming>) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let mut resp = match route(app, peer, &req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    app.requests.record(
        crate::metrics::route_label(req.uri().path()),
        resp.status().as_u16(),
    );
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "referrer-policy",
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    if head {
        resp = resp.map(|_| empty());
    }
    resp
}

async fn route(
    app: &App,
    peer: Option<IpAddr>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let uri = req.uri();
    let target_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target_len > MAX_URI {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "The request target is too long.",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "The request body is too large.",
        ));
    }
    // Absolute-form targets (as proxies send them) route by their path too.
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let headers = req.headers();
    if let Some(nick) = claim_nick(path, query) {
        return Ok(claim(app, peer, headers, nick).await);
    }
    if req.method() == Method::OPTIONS {
        return Ok(preflight());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut e = error_response(&ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed here: use GET or HEAD.", req.method()),
        ));
        e.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        return Ok(e);
    }
    let client = || client_addr::resolve(peer, headers, &app.config.trusted_proxies).map(canonical);
    let store = &app.store;
    let api = |json: Result<String, cti_ffi::Error>| {
        json.map(|j| cached_json(headers, j))
            .map_err(ApiError::from)
    };
    match path {
        "/api/ip" => {
            let ip = client().ok_or_else(no_address)?;
            Ok(cached_json(
                headers,
                serde_json::json!({ "ip": ip }).to_string(),
            ))
        }
        "/api/recent" => api(store.recent_json(limit(query, 50)?)),
        "/api/blocks" => api(store.blocks_json(param(query, "window")?.as_deref())),
        "/api/ranks" => api(store.ranks_json(param(query, "window")?.as_deref())),
        "/api/stream" => app
            .events
            .subscribe(client_addr::resolve(
                peer,
                headers,
                &app.config.trusted_proxies,
            ))
            .map(event_stream)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Too many live listeners; poll instead.",
                )
            }),
        "/healthz" => health(app).await,
        "/score" => api(store.score_compat_json(None)),
        "/score/hour" | "/score/day" | "/score/week" | "/score/month" => {
            api(store.score_compat_json(path.strip_prefix("/score/")))
        }
        "/recent" => api(store.recent_compat_json(50)),
        "/ip" => Ok(text(
            StatusCode::OK,
            format!("{}\n", client().ok_or_else(no_address)?),
        )),
        p if p.starts_with("/api/users/") => {
            let nick = percent_decode(&p["/api/users/".len()..])?;
            api(store.user_json(&nick, param(query, "window")?.as_deref()))
        }
        p => static_asset(headers, p),
    }
}

fn no_address() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "no_client_address",
        "This connection carries no client address (a load balancer health check), so it cannot claim.",
    )
}

/// `::ffff:a.b.c.d` is shown (and claims) as `a.b.c.d`.
pub fn canonical(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(ip.to_string(), |v4| v4.to_string()),
        v4 => v4.to_string(),
    }
}

async fn claim(
    app: &App,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    nick: Result<String, ApiError>,
) -> Response<Body> {
    let format = negotiate::claim_format(headers);
    let result = async {
        let nick = nick?;
        let ip = client_addr::resolve(peer, headers, &app.config.trusted_proxies)
            .map(canonical)
            .ok_or_else(no_address)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The core answers from its own thread after the commit: no runtime
        // thread waits on the disk.
        app.store
            .claim_with(&ip, &nick, move |r| drop(tx.send(r)))?;
        let json = rx.await.map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The store is closing.",
            )
        })??;
        app.events.send("claim", &json);
        Ok::<_, ApiError>(json)
    }
    .await;
    let mut resp = match (result, format) {
        (Ok(json), Format::Json) => with_type(StatusCode::OK, "application/json", json),
        (Ok(json), Format::Text) => text(StatusCode::OK, format!("{}\n", claimed_sentence(&json))),
        (Ok(_), Format::Image) => with_type(StatusCode::OK, "image/gif", PIXEL.to_vec()),
        (Ok(json), Format::Html) => html_page(StatusCode::OK, "Claimed", &claimed_sentence(&json)),
        (Err(e), Format::Html) => {
            let mut r = html_page(e.status, "Not claimed", &e.message);
            retry_after(&mut r, &e);
            r
        }
        (Err(e), _) => error_response(&e),
    };
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

fn claimed_sentence(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    format!(
        "The IP {} was claimed for {}.",
        v["ip"].as_str().unwrap_or("?"),
        v["name"].as_str().unwrap_or("?")
    )
}

async fn health(app: &App) -> Result<Response<Body>, ApiError> {
    let store = app.store_handle();
    let result = tokio::task::spawn_blocking(move || store.health())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "health check failed",
            )
        })?;
    result.map_err(ApiError::from)?;
    let mut r = text(StatusCode::OK, "ok\n".into());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

fn static_asset(headers: &HeaderMap, path: &str) -> Result<Response<Body>, ApiError> {
    let asset = assets::get(path).ok_or_else(ApiError::not_found)?;
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut r = if http_cache::not_modified(headers, &asset.etag, None) {
        status_only(StatusCode::NOT_MODIFIED)
    } else {
        let gzip = accepts_gzip(headers)
            .then_some(asset.gzip.as_ref())
            .flatten();
        let mut r = with_type(
            StatusCode::OK,
            asset.content_type,
            gzip.unwrap_or(&asset.body).clone(),
        );
        if gzip.is_some() {
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        r
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&asset.etag).expect("etag is ASCII"),
    );
    if asset.content_type.starts_with("text/html") {
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    }
    Ok(r)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|e| {
                let mut parts = e.split(';');
                parts
                    .next()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case("gzip"))
                    && !parts.any(|p| p.trim().replace(' ', "") == "q=0")
            })
        })
}

/// A read-API answer: short caching, an ETag, CORS open.
fn cached_json(headers: &HeaderMap, json: String) -> Response<Body> {
    let tag = http_cache::etag(json.as_bytes());
    let mut r = if http_cache::not_modified(headers, &tag, None) {
        status_only(StatusCode::NOT_MODIFIED)
    } else {
        with_type(StatusCode::OK, "application/json", json)
    };
    let h = r.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&tag).expect("etag is ASCII"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=1"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

fn event_stream(body: crate::stream::EventBody) -> Response<Body> {
    let mut r = Response::new(body.boxed());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

fn preflight() -> Response<Body> {
    let mut r = status_only(StatusCode::NO_CONTENT);
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Accept, Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    r
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = with_type(e.status, "application/json", e.json());
    retry_after(&mut r, e);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn retry_after(r: &mut Response<Body>, e: &ApiError) {
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

fn html_page(status: StatusCode, title: &str, sentence: &str) -> Response<Body> {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} — Capture The IP</title></head>\n\
         <body><h1>{t}</h1><p>{s}</p><p><a href=\"/\">See the blocks</a></p></body></html>\n",
        t = escape_html(title),
        s = escape_html(sentence)
    );
    let mut r = with_type(status, "text/html; charset=utf-8", page);
    r.headers_mut()
        .insert("content-security-policy", HeaderValue::from_static(CSP));
    r
}

/// Escapes every character that could open markup or an attribute.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", body)
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// The nickname a claim request names (`/claim?name=NICK` or `/claim/NICK`),
/// percent-decoded; `None` when the path is not a claim. Whether the name
/// is allowed is the core's decision.
pub fn claim_nick(path: &str, query: &str) -> Option<Result<String, ApiError>> {
    if let Some(nick) = path.strip_prefix("/claim/") {
        return Some(percent_decode(nick));
    }
    (path == "/claim").then(|| {
        param(query, "name")?.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_name",
                "Add ?name=YOURNAME to claim.",
            )
        })
    })
}

/// The value of `key` in a query string, percent-decoded (`+` stays `+`:
/// it is a legal nickname character).
fn param(query: &str, key: &str) -> Result<Option<String>, ApiError> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .transpose()
}

fn limit(query: &str, default: u32) -> Result<u32, ApiError> {
    match param(query, "limit")? {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .map(|n| n.min(crate::RECENT_MAX))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_limit",
                    "limit must be a whole number from 0 to 500.",
                )
            }),
    }
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_encoding",
            "The name is not valid percent-encoded UTF-8.",
        )
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly: `u8::from_str_radix` would also take "+1".
            let digit = |j: usize| {
                bytes
                    .get(i + j)
                    .and_then(|b| char::from(*b).to_digit(16))
                    .ok_or_else(bad)
            };
            out.push((digit(1)? * 16 + digit(2)?) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_and_escaping() {
        assert_eq!(percent_decode("a%2Fb+c").unwrap(), "a/b+c");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err(), "not UTF-8");
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%+1").is_err(), "a sign is not a hex digit");
        assert!(percent_decode("%-1").is_err());
        assert_eq!(claim_nick("/claim/a%2Bb", "").unwrap().unwrap(), "a+b");
        assert_eq!(claim_nick("/claim", "name=x").unwrap().unwrap(), "x");
        assert!(claim_nick("/claim", "").unwrap().is_err());
        assert!(claim_nick("/claimx", "name=x").is_none());
        assert_eq!(
            param("x=1&name=bob%40home", "name").unwrap().as_deref(),
            Some("bob@home")
        );
        assert_eq!(param("name", "name").unwrap().as_deref(), Some(""));
        assert_eq!(param("x=1", "name").unwrap(), None);
        assert_eq!(
            escape_html("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        assert_eq!(canonical("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
        assert_eq!(canonical("::1".parse().unwrap()), "::1");
    }

    #[test]
    fn pixel_is_a_gif() {
        assert!(PIXEL.starts_with(b"GIF89a") && PIXEL.ends_with(b";"));
    }
}
