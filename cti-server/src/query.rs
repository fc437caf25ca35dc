//! Decoding what a request target carries: query parameters (form encoding,
//! so `+` is a space, as ipv4.games reads them), path segments (percent
//! encoding only, so `/claim/a+b` keeps its plus), and the reverse for links.

use crate::error::ApiError;
use crate::route::Route;
use hyper::StatusCode;

/// The nickname a claim request names (`/claim?name=NICK` or `/claim/NICK`),
/// decoded; `None` when the path is not a claim. Whether the name is allowed
/// is the core's decision.
pub fn claim_nick(path: &str, query: &str) -> Option<Result<String, ApiError>> {
    let route = Route::parse(path);
    matches!(route, Route::Claim { .. }).then(|| claim_name(&route, query))
}

/// The nickname of a claim route: from the path (percent-decoded only) or
/// from the query's `name` (form-decoded).
pub fn claim_name(route: &Route<'_>, query: &str) -> Result<String, ApiError> {
    match route {
        Route::Claim {
            path_nick: Some(nick),
        } => percent_decode(nick),
        _ => param(query, "name")?.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_name",
                "Add ?name=YOURNAME to claim.",
            )
        }),
    }
}

/// The value of `key` in a query string, form-decoded: `+` is a space and
/// `%2B` a plus. The first occurrence wins.
pub fn param(query: &str, key: &str) -> Result<Option<String>, ApiError> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(&v.replace('+', " ")))
        .transpose()
}

/// `limit=N` for the recent lists: `default` when absent. Any whole number
/// is taken (one past `u32::MAX` as `u32::MAX`): the core caps the length.
pub fn limit(query: &str, default: u32) -> Result<u32, ApiError> {
    let Some(v) = param(query, "limit")? else {
        return Ok(default);
    };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            "limit must be a whole number.",
        ));
    }
    Ok(v.parse().unwrap_or(u32::MAX))
}

/// Percent-decoding to UTF-8 (`+` stays `+`: it is a legal nickname character).
pub fn percent_decode(s: &str) -> Result<String, ApiError> {
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

/// Encodes `s` as a query value: everything but letters, digits and `-._~`
/// is percent-encoded (so a `+` survives form decoding).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c").unwrap(), "a/b+c");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err(), "not UTF-8");
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%+1").is_err(), "a sign is not a hex digit");
        assert!(percent_decode("%-1").is_err());
    }

    #[test]
    fn claim_names_from_path_and_query() {
        assert_eq!(claim_nick("/claim/a%2Bb", "").unwrap().unwrap(), "a+b");
        assert_eq!(claim_nick("/claim/a+b", "").unwrap().unwrap(), "a+b");
        assert_eq!(claim_nick("/claim", "name=x").unwrap().unwrap(), "x");
        assert_eq!(claim_nick("/claim", "name=a+b").unwrap().unwrap(), "a b");
        assert_eq!(claim_nick("/claim", "name=a%2Bb").unwrap().unwrap(), "a+b");
        assert!(claim_nick("/claim", "").unwrap().is_err());
        assert!(claim_nick("/claimx", "name=x").is_none());
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            param("x=1&name=bob%40home", "name").unwrap().as_deref(),
            Some("bob@home")
        );
        assert_eq!(param("name", "name").unwrap().as_deref(), Some(""));
        assert_eq!(param("x=1", "name").unwrap(), None);
        assert_eq!(
            param("window=all+", "window").unwrap().as_deref(),
            Some("all ")
        );
        assert_eq!(limit("", 50).unwrap(), 50);
        assert_eq!(limit("limit=9999", 50).unwrap(), 9999);
        assert_eq!(
            limit("limit=99999999999999999999999", 50).unwrap(),
            u32::MAX
        );
        for bad in ["limit=-1", "limit=+1", "limit=", "limit=1.5", "limit=x"] {
            assert!(limit(bad, 50).is_err(), "{bad}");
        }
    }

    #[test]
    fn encoding_round_trips_through_form_decoding() {
        for nick in ["a+b", "x@y/z:1.^!-_*", "plain"] {
            let q = format!("name={}", encode_component(nick));
            assert_eq!(param(&q, "name").unwrap().as_deref(), Some(nick));
        }
        assert_eq!(encode_component("a+b c"), "a%2Bb%20c");
    }
}
