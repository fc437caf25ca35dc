//! Building answers: bodies with their type, errors as JSON (or a small page
//! for a browser that claims), and the escaping every page uses.

use crate::error::ApiError;
use crate::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// The policy of every page this service writes.
pub const CSP: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Header fields an answer may end up with (its own, the ones every route
/// adds, HSTS, then hyper's Date and Content-Length): room for them in one
/// allocation. An empty map grew twice per answer, a few percent of an
/// HTTP/2 request's time (docs/performance.md).
const HEADER_ROOM: usize = 12;

/// An answer with `status` and `body`, its header map sized once.
fn response(status: StatusCode, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().reserve(HEADER_ROOM);
    r
}

pub fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = response(status, full(body.into()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", body)
}

pub fn status_only(status: StatusCode) -> Response<Body> {
    response(status, empty())
}

pub fn full(body: Bytes) -> Body {
    Full::new(body).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// `{"error","message"}` with the error's status; never stored.
pub fn error_json(e: &ApiError) -> Response<Body> {
    let mut r = with_type(e.status, "application/json", e.json());
    retry_after(&mut r, e);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The same error as a small page, for a browser that claims.
pub fn error_page(e: &ApiError) -> Response<Body> {
    let mut r = html_page(e.status, "Not claimed", &escape_html(&e.message));
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

/// A page with `title` (escaped here) and `paragraph`, markup the caller
/// has already escaped.
pub fn html_page(status: StatusCode, title: &str, paragraph: &str) -> Response<Body> {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} — Capture The IP</title></head>\n\
         <body><h1>{t}</h1><p>{paragraph}</p><p><a href=\"/\">See the blocks</a></p></body></html>\n",
        t = escape_html(title),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape_html("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
