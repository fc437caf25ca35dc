//! Which route a request path names, decided once per request: the router
//! dispatches on it, the metrics label requests with it, and the header
//! policy (methods, CORS, privacy) is read from it.

use crate::assets::{self, Asset};

/// A route. Path parts it carries are raw (still percent-encoded).
#[derive(Clone, Copy)]
pub enum Route<'a> {
    /// `/claim?name=NICK` (`path_nick` is `None`) or `/claim/NICK`.
    Claim {
        path_nick: Option<&'a str>,
    },
    ApiIp,
    ApiRecent,
    ApiBlocks,
    ApiRanks,
    ApiStream,
    ApiUser(&'a str),
    Healthz,
    /// ipv4.games' `/score` and `/score/WINDOW`.
    Score(Option<&'static str>),
    /// ipv4.games' `/recent`.
    Recent,
    /// ipv4.games' `/ip`.
    Ip,
    Statusz,
    /// An embedded page or asset; `canonical` is set when the path is an
    /// alias (`/index.html` for `/`).
    Static {
        asset: &'static Asset,
        canonical: Option<&'static str>,
    },
    /// A path under `/api/` that names nothing (answered with CORS open).
    ApiNotFound,
    NotFound,
}

/// Every metrics label, in a fixed order (the last one for anything else).
pub const LABELS: [&str; 11] = [
    "claim",
    "api_ip",
    "api_recent",
    "api_blocks",
    "api_ranks",
    "api_stream",
    "api_users",
    "healthz",
    "compat",
    "page",
    "other",
];

/// ipv4.games' page names and the pages that answer them.
const ALIASES: [(&str, &str); 3] = [
    ("/index.html", "/"),
    ("/about.html", "/about"),
    ("/user.html", "/player"),
];

impl<'a> Route<'a> {
    pub fn parse(path: &'a str) -> Route<'a> {
        match path {
            "/claim" => Route::Claim { path_nick: None },
            "/api/ip" => Route::ApiIp,
            "/api/recent" => Route::ApiRecent,
            "/api/blocks" => Route::ApiBlocks,
            "/api/ranks" => Route::ApiRanks,
            "/api/stream" => Route::ApiStream,
            "/healthz" => Route::Healthz,
            "/score" => Route::Score(None),
            "/score/hour" => Route::Score(Some("hour")),
            "/score/day" => Route::Score(Some("day")),
            "/score/week" => Route::Score(Some("week")),
            "/score/month" => Route::Score(Some("month")),
            "/score/year" => Route::Score(Some("year")),
            "/score/all" => Route::Score(Some("all")),
            "/recent" => Route::Recent,
            "/ip" => Route::Ip,
            "/statusz" => Route::Statusz,
            p => {
                if let Some(nick) = p.strip_prefix("/claim/") {
                    return Route::Claim {
                        path_nick: Some(nick),
                    };
                }
                if let Some(nick) = p.strip_prefix("/api/users/") {
                    return Route::ApiUser(nick);
                }
                if p.starts_with("/api/") {
                    return Route::ApiNotFound;
                }
                Route::statics(p)
            }
        }
    }

    fn statics(path: &str) -> Route<'a> {
        let canonical = ALIASES
            .iter()
            .find(|(alias, _)| *alias == path)
            .map(|(_, page)| *page);
        match assets::get(canonical.unwrap_or(path)) {
            Some(asset) => Route::Static { asset, canonical },
            None => Route::NotFound,
        }
    }

    /// The methods this route answers (the `Allow` field), `None` for a path
    /// that does not exist.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            Route::NotFound | Route::ApiNotFound => None,
            Route::Claim { .. } => Some("GET, HEAD, POST, OPTIONS"),
            _ => Some("GET, HEAD, OPTIONS"),
        }
    }

    /// Whether any origin may read the answers (the API and the ipv4.games
    /// endpoints, errors included).
    pub fn cors(&self) -> bool {
        matches!(
            self,
            Route::Claim { .. }
                | Route::ApiIp
                | Route::ApiRecent
                | Route::ApiBlocks
                | Route::ApiRanks
                | Route::ApiStream
                | Route::ApiUser(_)
                | Route::ApiNotFound
                | Route::Score(_)
                | Route::Recent
                | Route::Ip
        )
    }

    /// Whether the answer depends on who asks: never stored by a shared cache.
    pub fn private(&self) -> bool {
        matches!(self, Route::Claim { .. } | Route::ApiIp | Route::Ip)
    }

    /// The metrics label: one of [`LABELS`].
    pub fn label(&self) -> &'static str {
        LABELS[self.label_index()]
    }

    /// Where [`Route::label`] is in [`LABELS`] (the metrics count by index).
    pub fn label_index(&self) -> usize {
        match self {
            Route::Claim { .. } => 0,
            Route::ApiIp => 1,
            Route::ApiRecent => 2,
            Route::ApiBlocks => 3,
            Route::ApiRanks => 4,
            Route::ApiStream => 5,
            Route::ApiUser(_) => 6,
            Route::Healthz => 7,
            Route::Score(_) | Route::Recent | Route::Ip | Route::Statusz => 8,
            Route::Static { .. } => 9,
            Route::NotFound | Route::ApiNotFound => 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_labels() {
        let label = |p: &str| Route::parse(p).label();
        assert_eq!(label("/claim"), "claim");
        assert_eq!(label("/claim/bob"), "claim");
        assert_eq!(label("/claimx"), "other");
        assert_eq!(label("/api/users/bob"), "api_users");
        assert_eq!(label("/score/hour"), "compat");
        assert_eq!(label("/score/fortnight"), "other");
        assert_eq!(label("/statusz"), "compat");
        assert_eq!(label("/"), "page");
        assert_eq!(label("/index.html"), "page");
        assert_eq!(label("/nope"), "other");
        for p in ["/", "/api/ip", "/claim", "/score", "/nope", "/user.html"] {
            assert!(LABELS.contains(&label(p)), "{p}");
        }
        assert!(matches!(
            Route::parse("/user.html"),
            Route::Static {
                canonical: Some("/player"),
                ..
            }
        ));
        assert!(matches!(
            Route::parse("/claim/a%2Bb"),
            Route::Claim {
                path_nick: Some("a%2Bb")
            }
        ));
    }

    #[test]
    fn methods_and_privacy() {
        assert_eq!(Route::parse("/nope").allow(), None);
        assert!(Route::parse("/claim").allow().unwrap().contains("POST"));
        assert!(!Route::parse("/api/blocks")
            .allow()
            .unwrap()
            .contains("POST"));
        assert!(Route::parse("/api/ip").private() && Route::parse("/ip").private());
        assert!(!Route::parse("/api/blocks").private());
        assert!(Route::parse("/api/nope").cors() && Route::parse("/api/nope").allow().is_none());
        assert!(!Route::parse("/").cors());
    }
}
