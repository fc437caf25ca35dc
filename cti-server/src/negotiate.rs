//! Content negotiation (RFC 9110 §12): what a `/claim` answer looks like,
//! from `Accept` (players embed claims as images, scripts want text or JSON,
//! browsers get a page), and whether a body may be sent gzip-encoded, from
//! `Accept-Encoding`. Each list field is read across all its field lines.

use hyper::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    Text,
    Image,
}

/// All field lines of a list-valued field, combined as one list (RFC 9110 §5.3).
pub fn combined(headers: &HeaderMap, name: &str) -> Option<String> {
    let lines: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!lines.is_empty()).then(|| lines.join(","))
}

/// The members of a list field: each value (lowercased) and its weight in
/// thousandths. A member whose weight does not follow the grammar is left out.
fn weighted(list: &str) -> impl Iterator<Item = (String, u16)> + '_ {
    list.split(',').filter_map(|member| {
        let mut parts = member.split(';');
        let value = parts.next()?.trim().to_ascii_lowercase();
        if value.is_empty() {
            return None;
        }
        let mut q = 1000;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("q") {
                q = qvalue(v.trim())?;
            }
        }
        Some((value, q))
    })
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
pub fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The acceptable format with the highest weight (ties: the first listed);
/// HTML when nothing matches or nothing is asked.
pub fn claim_format(headers: &HeaderMap) -> Format {
    let Some(accept) = combined(headers, "accept") else {
        return Format::Html;
    };
    let mut best: Option<(u16, Format)> = None;
    for (range, q) in weighted(&accept) {
        let format = match range.as_str() {
            "text/html" | "application/xhtml+xml" => Format::Html,
            "application/json" => Format::Json,
            "text/plain" => Format::Text,
            r if r.starts_with("image/") => Format::Image,
            _ => continue,
        };
        if q > 0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, format));
        }
    }
    best.map_or(Format::Html, |(_, f)| f)
}

/// Whether a gzip-encoded body is acceptable and not less wanted than the
/// identity one: `gzip` (or `x-gzip`) by name, else `*`; `q=0` refuses.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let Some(list) = combined(headers, "accept-encoding") else {
        return false;
    };
    let (mut gzip, mut any, mut identity) = (None, None, None);
    for (coding, q) in weighted(&list) {
        let slot = match coding.as_str() {
            "gzip" | "x-gzip" => &mut gzip,
            "*" => &mut any,
            "identity" => &mut identity,
            _ => continue,
        };
        slot.get_or_insert(q);
    }
    let q = gzip.or(any).unwrap_or(0);
    q > 0 && identity.is_none_or(|i| q >= i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn h(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    fn f(accept: &'static str) -> Format {
        claim_format(&h("accept", &[accept]))
    }

    #[test]
    fn picks_by_quality_then_order() {
        assert_eq!(claim_format(&HeaderMap::new()), Format::Html);
        assert_eq!(f("*/*"), Format::Html);
        assert_eq!(f("application/json"), Format::Json);
        assert_eq!(f("text/plain"), Format::Text);
        assert_eq!(f("image/webp,image/*,*/*;q=0.8"), Format::Image);
        assert_eq!(
            f("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            Format::Html
        );
        assert_eq!(f("text/html;q=0.5, application/json"), Format::Json);
        assert_eq!(f("application/json;q=0"), Format::Html);
        assert_eq!(f("application/json;Q=0.000"), Format::Html);
        assert_eq!(f("text/plain;charset=utf-8;q=0.9"), Format::Text);
        assert_eq!(
            claim_format(&h("accept", &["text/html;q=0.1", "application/json"])),
            Format::Json
        );
    }

    #[test]
    fn qvalues_follow_the_grammar() {
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0.000"), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.001"), Some(1));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        for bad in ["1.001", "2", "0.0001", ".5", "0.x", "", "-0", "01"] {
            assert_eq!(qvalue(bad), None, "{bad}");
        }
    }

    #[test]
    fn gzip_is_refused_by_any_spelling_of_zero() {
        let ae = |v: &'static str| accepts_gzip(&h("accept-encoding", &[v]));
        for refused in [
            "gzip;q=0",
            "gzip; q=0.000",
            "gzip;Q=0",
            "*;q=0",
            "identity",
            "",
        ] {
            assert!(!ae(refused), "{refused}");
        }
        for accepted in ["gzip", "GZIP;q=0.001", "*", "x-gzip", "br, gzip;q=0.5"] {
            assert!(ae(accepted), "{accepted}");
        }
        assert!(!ae("gzip;q=0.5, identity"), "identity is preferred");
        assert!(!ae("gzip;q=2"), "not a qvalue: the member is ignored");
        assert!(accepts_gzip(&h("accept-encoding", &["identity", "gzip"])));
        assert!(accepts_gzip(&h("accept-encoding", &["gzip", "*;q=0"])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
