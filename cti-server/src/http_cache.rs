//! Validators and conditional requests, one mechanism for every read: a
//! representation is a body (and maybe its gzip encoding), a strong `ETag`
//! per encoding from the body's hash, and a `Last-Modified` from the time
//! of the data the core reports; `If-None-Match` and `If-Modified-Since`
//! get `304 Not Modified` while the client's copy is current (RFC 9110 §13).

use crate::negotiate;
use crate::responses::{status_only, with_type};
use crate::Body;
use bytes::Bytes;
use flate2::write::GzEncoder;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A quoted strong entity tag for `body`: stable across runs (SipHash with
/// fixed keys), so restarts do not invalidate clients' copies.
pub fn etag(body: &[u8]) -> String {
    let mut h = std::hash::DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

/// The tag of the gzip encoding of the body tagged `identity`: another
/// representation, so another strong tag (RFC 9110 §8.8.3.3).
pub fn gzip_etag(identity: &str) -> String {
    format!("{}-gz\"", identity.trim_end_matches('"'))
}

/// gzip of `body`, when that is smaller.
pub fn gzip(body: &[u8], level: flate2::Compression) -> Option<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), level);
    gz.write_all(body)
        .and_then(|()| gz.finish())
        .ok()
        .filter(|g| g.len() < body.len())
}

/// One resource's answer before negotiation.
pub struct Representation {
    pub content_type: &'static str,
    pub body: Bytes,
    pub gzip: Option<Bytes>,
    /// The identity body's tag.
    pub etag: String,
    pub last_modified: Option<SystemTime>,
    pub cache_control: &'static str,
}

/// The answer to a GET or HEAD of `rep`: the encoding the client accepts,
/// its tag, and `304` when the client's copy is current. Vary, ETag,
/// Last-Modified and Cache-Control are the same on a 200 and a 304.
pub fn respond(request: &HeaderMap, rep: Representation) -> Response<Body> {
    let gzip = rep.gzip.filter(|_| negotiate::accepts_gzip(request));
    let tag = match gzip {
        Some(_) => gzip_etag(&rep.etag),
        None => rep.etag,
    };
    let mut r = if not_modified(request, &tag, rep.last_modified) {
        status_only(StatusCode::NOT_MODIFIED)
    } else {
        let encoded = gzip.is_some();
        let mut r = with_type(StatusCode::OK, rep.content_type, gzip.unwrap_or(rep.body));
        if encoded {
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        r
    };
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(rep.cache_control),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = rep
        .last_modified
        .and_then(|t| HeaderValue::from_str(&httpdate::fmt_http_date(t)).ok())
    {
        h.insert(header::LAST_MODIFIED, v);
    }
    r
}

/// Whether the client's copy is current. `If-None-Match` (all its lines,
/// weak comparison) wins over `If-Modified-Since` (RFC 9110 §13.2.2); the
/// latter counts only with exactly one valid date and a known time.
pub fn not_modified(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    if let Some(list) = negotiate::combined(headers, "if-none-match") {
        return list.trim() == "*"
            || entity_tags(&list).is_some_and(|tags| tags.iter().any(|t| weak_eq(t, etag)));
    }
    let mut since = headers.get_all(header::IF_MODIFIED_SINCE).iter();
    let (Some(since), None) = (since.next(), since.next()) else {
        return false;
    };
    let since = since
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok());
    matches!((modified, since), (Some(m), Some(s)) if m <= s)
}

/// The tags of an `If-None-Match` list (`W/"x", "y,z"`), or `None` when the
/// field does not follow the grammar. Tags may hold commas.
fn entity_tags(list: &str) -> Option<Vec<&str>> {
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(tags);
        }
        let prefix = if rest.starts_with("W/") { 2 } else { 0 };
        let end = rest[prefix..].strip_prefix('"')?.find('"')?;
        let (tag, after) = rest.split_at(prefix + end + 2);
        tags.push(tag);
        rest = after.trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
}

/// Weak comparison: the opaque tags are equal, whatever `W/` says.
fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

/// How long the data must have been stable before its time is offered as
/// `Last-Modified`. An HTTP date has whole seconds, so a client given the
/// time of data that can still change within that second would be told
/// `304` about a later change; the core stamps a batch before its commit is
/// visible, so the margin also covers a slow commit.
pub const SETTLED: Duration = Duration::from_secs(2);

/// The `Last-Modified` of data last changed at `changed`, read at `now`:
/// its second, once settled.
pub fn last_modified(changed: SystemTime, now: SystemTime) -> Option<SystemTime> {
    let secs = changed.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let second = UNIX_EPOCH + Duration::from_secs(secs);
    (now >= second + Duration::from_secs(1) + SETTLED).then_some(second)
}

/// The time of the data in a JSON answer of the core: `updated_at` (RFC
/// 3339) or `now` (`[seconds, nanoseconds]`, the ipv4.games shape).
pub fn data_time(json: &str) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Stamped {
        updated_at: Option<String>,
        now: Option<(u64, u32)>,
    }
    let v: Stamped = serde_json::from_str(json).ok()?;
    match (v.updated_at, v.now) {
        (Some(t), _) => humantime::parse_rfc3339(&t).ok(),
        (None, Some((s, ns))) => Some(UNIX_EPOCH + Duration::new(s, ns)),
        _ => None,
    }
}

/// What a JSON body costs to work out once: its gzip and its time, kept
/// for the last few tags so that pollers of unchanged data cost a hash.
struct Derived {
    etag: String,
    gzip: Option<Bytes>,
    time: Option<SystemTime>,
}

/// Bodies remembered (a few per endpoint and window).
const REMEMBERED: usize = 64;

#[derive(Default)]
pub struct JsonCache(Mutex<VecDeque<Derived>>);

impl JsonCache {
    /// The representation of a core JSON answer.
    pub fn representation(&self, json: String, cache_control: &'static str) -> Representation {
        let etag = etag(json.as_bytes());
        let known = self.lookup(&etag);
        let (gzip, time) = known.unwrap_or_else(|| {
            let derived = (
                gzip(json.as_bytes(), flate2::Compression::fast()).map(Bytes::from),
                data_time(&json),
            );
            self.remember(Derived {
                etag: etag.clone(),
                gzip: derived.0.clone(),
                time: derived.1,
            });
            derived
        });
        Representation {
            content_type: "application/json",
            body: Bytes::from(json),
            gzip,
            etag,
            last_modified: time.and_then(|t| last_modified(t, SystemTime::now())),
            cache_control,
        }
    }

    fn lookup(&self, etag: &str) -> Option<(Option<Bytes>, Option<SystemTime>)> {
        let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter()
            .find(|d| d.etag == etag)
            .map(|d| (d.gzip.clone(), d.time))
    }

    fn remember(&self, d: Derived) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() == REMEMBERED {
            seen.pop_front();
        }
        seen.push_back(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn entity_tag_lists() {
        assert_eq!(
            entity_tags(r#""a", W/"b""#),
            Some(vec![r#""a""#, r#"W/"b""#])
        );
        assert_eq!(
            entity_tags(r#""a,b",,"c""#),
            Some(vec![r#""a,b""#, r#""c""#])
        );
        assert_eq!(entity_tags(""), Some(vec![]));
        assert_eq!(entity_tags("abc"), None);
        assert_eq!(entity_tags(r#""a"x"#), None);
        assert_eq!(entity_tags(r#""open"#), None);
        assert_eq!(gzip_etag(r#""abc""#), r#""abc-gz""#);
    }

    #[test]
    fn conditional_requests() {
        let tag = etag(b"body");
        assert!(!not_modified(&HeaderMap::new(), &tag, None));
        let mut m = HeaderMap::new();
        m.append("if-none-match", HeaderValue::from_static(r#""x""#));
        m.append(
            "if-none-match",
            HeaderValue::from_str(&format!("W/{tag}")).unwrap(),
        );
        assert!(not_modified(&m, &tag, None), "second line, weak form");
        assert!(not_modified(&h(&[("if-none-match", "*")]), &tag, None));
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let since = h(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert!(not_modified(&since, &tag, Some(t)));
        assert!(!not_modified(
            &since,
            &tag,
            Some(t + Duration::from_secs(1))
        ));
        assert!(!not_modified(&since, &tag, None), "no time, no 304");
        let both = h(&[
            ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("if-none-match", r#""other""#),
        ]);
        assert!(!not_modified(&both, &tag, Some(t)), "If-None-Match wins");
        let twice = h(&[
            ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(!not_modified(&twice, &tag, Some(t)), "two dates: ignored");
    }

    #[test]
    fn data_times_and_settling() {
        let t = data_time(r#"{"window":"all","updated_at":"2023-11-14T22:13:20.123456Z"}"#);
        assert_eq!(
            t,
            Some(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456))
        );
        let t = data_time(r#"{"now":[1700000000,5],"score":{}}"#);
        assert_eq!(t, Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)));
        assert_eq!(data_time(r#"{"claims":[]}"#), None);
        let changed = UNIX_EPOCH + Duration::from_millis(1_700_000_000_900);
        let second = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            last_modified(changed, changed + Duration::from_millis(500)),
            None
        );
        assert_eq!(
            last_modified(changed, second + Duration::from_secs(3)),
            Some(second)
        );
    }

    #[test]
    fn json_cache_reuses_what_it_derived() {
        let cache = JsonCache::default();
        let json = format!(r#"{{"now":[1,0],"x":"{}"}}"#, "a".repeat(4000));
        let a = cache.representation(json.clone(), "no-cache");
        let b = cache.representation(json, "no-cache");
        assert_eq!(a.etag, b.etag);
        assert!(a.gzip.is_some());
        assert_eq!(a.gzip, b.gzip);
        assert_eq!(a.last_modified, Some(UNIX_EPOCH + Duration::from_secs(1)));
    }
}
