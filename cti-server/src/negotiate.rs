//! What a `/claim` answer looks like, from the `Accept` header: players embed
//! claims as images, scripts want text or JSON, browsers get a page.

use hyper::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    Text,
    Image,
}

/// The acceptable format with the highest q-value (ties: the first listed);
/// HTML when nothing matches or nothing is asked.
pub fn claim_format(headers: &HeaderMap) -> Format {
    let accept = headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let mut best: Option<(f32, Format)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let format = match range.as_str() {
            "text/html" | "application/xhtml+xml" => Format::Html,
            "application/json" => Format::Json,
            "text/plain" => Format::Text,
            r if r.starts_with("image/") => Format::Image,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, format));
        }
    }
    best.map_or(Format::Html, |(_, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn f(accept: &'static str) -> Format {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static(accept));
        claim_format(&h)
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
    }
}
