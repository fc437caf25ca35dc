//! Routing: which answer each method and route get, and the header fields
//! every answer carries. Game data comes from the core as JSON; this module
//! only picks the call, the status and the headers.

use crate::claim::{self, LengthUnknown};
use crate::error::ApiError;
use crate::http_cache::{self, Representation};
use crate::query::{self, param, percent_decode};
use crate::responses::{empty, error_json, status_only, text, with_type, CSP};
use crate::route::Route;
use crate::{assets::Asset, checks, client_addr, compat, App, Body};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use std::net::IpAddr;

/// Shared reads: any cache may keep them for a second, then revalidate.
const READ_CACHING: &str = "public, max-age=1";
/// Newest claims the ipv4.games `/recent` lists.
const COMPAT_RECENT: u32 = 50;
/// Request fields a cross-origin script may send (validators included).
const CORS_REQUEST_HEADERS: &str = "Accept, Content-Type, If-None-Match, If-Modified-Since";

pub async fn handle(app: &App, peer: Option<IpAddr>, req: Request<Incoming>) -> Response<Body> {
    let route = Route::parse(req.uri().path());
    let head = req.method() == Method::HEAD;
    let mut resp = match checks::admit(req.version(), req.uri(), req.headers()) {
        Ok(()) => dispatch(app, peer, &route, &req).await,
        Err(e) => error(&route, req.headers(), &e),
    };
    app.requests.record(&route, resp.status().as_u16());
    common_headers(&route, resp.headers_mut());
    if head {
        resp = without_body(resp);
    }
    resp
}

async fn dispatch(
    app: &App,
    peer: Option<IpAddr>,
    route: &Route<'_>,
    req: &Request<Incoming>,
) -> Response<Body> {
    let (method, headers) = (req.method(), req.headers());
    let Some(allow) = route.allow() else {
        return error(route, headers, &ApiError::not_found());
    };
    match (route, method) {
        (_, &Method::OPTIONS) => preflight(route, allow),
        (Route::Claim { .. }, &Method::GET | &Method::POST | &Method::HEAD) => {
            let nick = query::claim_name(route, req.uri().query().unwrap_or(""));
            claim::claim(app, peer, headers, nick, method != Method::HEAD).await
        }
        (_, &Method::GET | &Method::HEAD) => read(app, peer, route, req)
            .await
            .unwrap_or_else(|e| error(route, headers, &e)),
        _ => {
            let mut r = error(
                route,
                headers,
                &ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed here: use {allow}."),
                ),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            r
        }
    }
}

/// A `GET` (or `HEAD`) of anything but a claim.
async fn read(
    app: &App,
    peer: Option<IpAddr>,
    route: &Route<'_>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let headers = req.headers();
    if let Route::ApiIp = route {
        // Needs no store: not held up by a core swap, nor by its lock.
        let ip = client_addr::resolve(peer, headers, &app.config.trusted_proxies)
            .ok_or_else(client_addr::no_address)?;
        // An address needs no JSON escaping.
        let json = format!(r#"{{"ip":"{ip}"}}"#);
        return Ok(with_type(StatusCode::OK, "application/json", json));
    }
    let query = req.uri().query().unwrap_or("");
    let store = app.store_ready().await?;
    let window = || param(query, "window");
    let shared = |json: String| {
        http_cache::respond(headers, app.json_cache.representation(json, READ_CACHING))
    };
    Ok(match *route {
        // The core caps the length: its limit is not repeated here.
        Route::ApiRecent => shared(store.recent_json(query::limit(query, 50)?)?),
        Route::ApiBlocks => shared(store.blocks_json(window()?.as_deref())?),
        // No limit is the whole ranking (the core's cache key for it too).
        Route::ApiRanks => {
            shared(store.ranks_top_json(window()?.as_deref(), query::limit(query, u32::MAX)?)?)
        }
        Route::ApiUser(raw) => {
            shared(store.user_json(&percent_decode(raw)?, window()?.as_deref())?)
        }
        Route::Score(w) => shared(store.score_compat_json(w)?),
        Route::Recent => shared(store.recent_compat_json(COMPAT_RECENT)?),
        Route::ApiStream => {
            let client = client_addr::resolve(peer, headers, &app.config.trusted_proxies);
            event_stream(app, client, req.method() == Method::HEAD)?
        }
        Route::Healthz => health(app).await?,
        Route::Ip => compat::ip(app, peer, headers),
        Route::Statusz => compat::statusz(app, &store)?,
        Route::Static { asset, canonical } => static_asset(headers, asset, canonical),
        // ApiIp is answered above, without the store.
        Route::ApiIp | Route::Claim { .. } | Route::ApiNotFound | Route::NotFound => {
            return Err(ApiError::not_found())
        }
    })
}

/// An error in the form the route answers in: JSON, or a page for a
/// browser that claims.
fn error(route: &Route<'_>, headers: &HeaderMap, e: &ApiError) -> Response<Body> {
    match route {
        Route::Claim { .. } => claim::error(headers, e),
        _ => error_json(e),
    }
}

/// The fields every answer of a route carries, errors included.
fn common_headers(route: &Route<'_>, h: &mut HeaderMap) {
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "referrer-policy",
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    if route.cors() {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    if route.private() {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
}

/// The answer to `HEAD`: GET's header fields, `Content-Length` included
/// when the body's length is known, and no body.
fn without_body(mut resp: Response<Body>) -> Response<Body> {
    let bodiless = matches!(
        resp.status(),
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
    ) || resp.status().is_informational();
    let known = resp.extensions().get::<LengthUnknown>().is_none();
    if let (false, true, Some(n)) = (bodiless, known, resp.body().size_hint().exact()) {
        resp.headers_mut()
            .entry(header::CONTENT_LENGTH)
            .or_insert(HeaderValue::from(n));
    }
    resp.map(|_| empty())
}

/// `OPTIONS`: the methods the route answers; for a cross-origin route, a
/// CORS preflight that allows exactly those.
fn preflight(route: &Route<'_>, allow: &'static str) -> Response<Body> {
    let mut r = status_only(StatusCode::NO_CONTENT);
    let h = r.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(allow));
    if route.cors() {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(allow),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(CORS_REQUEST_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    r
}

async fn health(app: &App) -> Result<Response<Body>, ApiError> {
    let store = app.store_ready().await?;
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
    let mut r = text(StatusCode::OK, "ok\n");
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Server-sent events; a `HEAD` gets the header fields without becoming a
/// listener.
/// `client` is the listener's address, for the per-network cap on streams.
fn event_stream(app: &App, client: Option<IpAddr>, head: bool) -> Result<Response<Body>, ApiError> {
    let body = if head {
        empty()
    } else {
        app.events
            .subscribe(client)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Too many live listeners; poll instead.",
                )
            })?
            .boxed()
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if head {
        r.extensions_mut().insert(LengthUnknown);
    }
    Ok(r)
}

fn static_asset(
    headers: &HeaderMap,
    asset: &'static Asset,
    canonical: Option<&'static str>,
) -> Response<Body> {
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut r = http_cache::respond(
        headers,
        Representation {
            content_type: asset.content_type,
            body: bytes::Bytes::from_static(&asset.body),
            gzip: asset.gzip.as_deref().map(bytes::Bytes::from_static),
            etag: asset.etag.clone(),
            last_modified: None,
            cache_control: cache,
        },
    );
    let h = r.headers_mut();
    if asset.content_type.starts_with("text/html") {
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    }
    if let Some(v) =
        canonical.and_then(|c| HeaderValue::from_str(&format!("<{c}>; rel=\"canonical\"")).ok())
    {
        h.insert(header::LINK, v);
    }
    r
}
