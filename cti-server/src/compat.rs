//! The ipv4.games text endpoints: `/ip` (the caller's bare address) and
//! `/statusz` (public counters, one `name value` line each). `/score` and
//! `/recent` are JSON reads like the API's (see `routes`).

use crate::error::ApiError;
use crate::responses::text;
use crate::{client_addr, App, Body};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};
use std::fmt::Write;
use std::net::IpAddr;

/// The dotted quad the server sees, no newline; 400 with a short reason
/// for an IPv6 client (the original page shows its IPv6 notice on any
/// non-200) or a connection without an address.
pub fn ip(app: &App, peer: Option<IpAddr>, headers: &HeaderMap) -> Response<Body> {
    match client_addr::client_ipv4(peer, headers, &app.config.trusted_proxies) {
        Ok(v4) => text(StatusCode::OK, v4.to_string()),
        Err(e) => text(e.status, format!("{}\n", e.message)),
    }
}

/// Counters for anyone: no addresses, no secrets; then the serving core's
/// release and file (which a core swap changes).
pub fn statusz(app: &App, store: &cti_ffi::Store) -> Result<Response<Body>, ApiError> {
    let stats: serde_json::Value = serde_json::from_str(&store.stats_json()?).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the core's counters are not JSON: {e}"),
        )
    })?;
    let count = |k: &str| stats[k].as_u64().unwrap_or(0);
    let mut out = String::new();
    for (name, value) in [
        ("uptime_seconds", app.started.elapsed().as_secs()),
        ("claims_committed", count("claims_committed")),
        ("claims_rate_limited", count("claims_rate_limited")),
        (
            "connections_open",
            app.connections.caps.open_connections() as u64,
        ),
        ("requests_served", app.requests.total()),
        ("store_bytes", store_bytes(app)),
    ] {
        let _ = writeln!(out, "{name} {value}");
    }
    let game = app.game();
    let path = game.core_path().unwrap_or_default();
    let _ = writeln!(out, "core_version {}", store.api().version());
    let _ = writeln!(out, "core_path {}", path.display());
    let _ = writeln!(out, "core_swaps {}", game.swaps());
    let mut r = text(StatusCode::OK, out);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The database and its write-ahead log on disk, in bytes (0 when the
/// service was not told where the store lives).
fn store_bytes(app: &App) -> u64 {
    let Some(db) = &app.config.db_path else {
        return 0;
    };
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    [db.as_os_str(), wal.as_os_str()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}
