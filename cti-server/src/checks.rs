//! What every request must satisfy before it is routed: a target and header
//! fields of bounded size, no body beyond what any route reads, and on
//! HTTP/1.1 exactly one valid `Host` (RFC 9112 §3.2).
//!
//! The size limits sit below hyper's own (a 64 KiB target, 100 fields, a
//! ~400 KiB head), so that an oversized request gets the service's error
//! format; only a request past hyper's limits, or one hyper cannot parse,
//! gets hyper's bare `400`/`414`/`431` with an empty body.

use crate::error::ApiError;
use hyper::header::{self, HeaderMap};
use hyper::http::uri::Authority;
use hyper::{StatusCode, Uri, Version};

/// Longest request target accepted (414 beyond).
pub const MAX_URI: usize = 8 * 1024;
/// Largest request body accepted (413 beyond); only `/claim` takes a body,
/// and ignores it.
pub const MAX_BODY: u64 = 64 * 1024;
/// Most header fields (431 beyond).
pub const MAX_FIELDS: usize = 64;
/// Most bytes of header names and values together (431 beyond).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

pub fn admit(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let target_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target_len > MAX_URI {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "The request target is too long.",
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_FIELDS || bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "The request's header fields are too large (at most {MAX_FIELDS} fields and {MAX_HEADER_BYTES} bytes)."
            ),
        ));
    }
    host(version, headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "The request body is too large.",
        ));
    }
    Ok(())
}

/// One `Host`, which an HTTP/1.1 request must send; its value an authority
/// (or empty, as for a target without one). HTTP/2 names the authority in
/// its own pseudo-header.
fn host(version: Version, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let valid = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => false,
        (None, _) => version != Version::HTTP_11,
        (Some(v), None) => {
            v.is_empty()
                || (v
                    .as_bytes()
                    .iter()
                    .all(|b| !b.is_ascii_whitespace() && *b != b'@')
                    && Authority::try_from(v.as_bytes()).is_ok())
        }
    };
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_host",
            "An HTTP/1.1 request needs exactly one valid Host header field.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn hosts(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::HOST, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn host_rules() {
        let ok = |v: Version, h: &[&'static str]| host(v, &hosts(h)).is_ok();
        assert!(ok(Version::HTTP_11, &["example.com"]));
        assert!(ok(Version::HTTP_11, &["127.0.0.1:8080"]));
        assert!(ok(Version::HTTP_11, &["[::1]:80"]));
        assert!(ok(Version::HTTP_11, &[""]));
        assert!(!ok(Version::HTTP_11, &[]));
        assert!(!ok(Version::HTTP_11, &["a", "a"]));
        assert!(!ok(Version::HTTP_11, &["a b"]));
        assert!(!ok(Version::HTTP_11, &["user@host"]));
        assert!(!ok(Version::HTTP_11, &["host/path"]));
        assert!(ok(Version::HTTP_10, &[]));
        assert!(ok(Version::HTTP_2, &[]));
        assert!(!ok(Version::HTTP_10, &["a", "b"]));
    }
}
