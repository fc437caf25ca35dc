//! The web pages, embedded in the binary. CSS, JS and the icon are served
//! under fingerprinted names (`/assets/app.<hash>.css`) with a year of
//! caching; pages refer to them through `{{name}}` placeholders filled in at
//! start, and are revalidated with their ETag. Text is gzipped once, at start.

use crate::http_cache;
use std::collections::HashMap;
use std::sync::OnceLock;

pub struct Asset {
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// gzip of `body`, when that is smaller.
    pub gzip: Option<Vec<u8>>,
    /// The tag of `body` (the gzip encoding has its own, derived from it).
    pub etag: String,
    /// Fingerprinted: never changes under this name.
    pub immutable: bool,
}

const STATIC: [(&str, &str, &[u8]); 3] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/app.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../web/favicon.svg"),
    ),
];

const PAGES: [(&str, &str); 3] = [
    ("/", include_str!("../web/index.html")),
    ("/player", include_str!("../web/player.html")),
    ("/about", include_str!("../web/about.html")),
];

fn asset(content_type: &'static str, body: Vec<u8>, immutable: bool) -> Asset {
    let gzip = http_cache::gzip(&body, flate2::Compression::best());
    let etag = http_cache::etag(&body);
    Asset {
        content_type,
        body,
        gzip,
        etag,
        immutable,
    }
}

/// Every servable path and its asset.
fn table() -> &'static HashMap<String, Asset> {
    static TABLE: OnceLock<HashMap<String, Asset>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = HashMap::new();
        let mut names = Vec::new();
        for (name, content_type, body) in STATIC {
            let hash = http_cache::etag(body);
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
            let path = format!("/assets/{stem}.{}.{ext}", &hash[1..13]);
            names.push((format!("{{{{{name}}}}}"), path.clone()));
            table.insert(path, asset(content_type, body.to_vec(), true));
        }
        for (path, html) in PAGES {
            let html = names
                .iter()
                .fold(html.to_string(), |h, (placeholder, url)| {
                    h.replace(placeholder, url)
                });
            table.insert(
                path.to_string(),
                asset("text/html; charset=utf-8", html.into_bytes(), false),
            );
        }
        let icon = table
            .iter()
            .find(|(p, _)| p.starts_with("/assets/favicon."))
            .map(|(_, a)| a.body.clone());
        if let Some(icon) = icon {
            table.insert("/favicon.ico".into(), asset("image/svg+xml", icon, false));
        }
        table
    })
}

pub fn get(path: &str) -> Option<&'static Asset> {
    table().get(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_link_fingerprinted_assets_that_exist() {
        let home = std::str::from_utf8(&get("/").unwrap().body)
            .unwrap()
            .to_string();
        assert!(!home.contains("{{"), "unfilled placeholder");
        let css = home
            .split("href=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            css.starts_with("/assets/app.") && css.ends_with(".css"),
            "{css}"
        );
        let a = get(css).unwrap();
        assert!(a.immutable && a.gzip.is_some());
        assert!(
            get("/about").is_some() && get("/player").is_some() && get("/favicon.ico").is_some()
        );
        assert!(get("/assets/app.css").is_none(), "only fingerprinted names");
    }
}
