//! Prometheus text metrics on an operator-only listener: HTTP requests by
//! route and status, and the core's counters (claims committed, commit batch
//! sizes and latency, rate-limit refusals). The edge adds its own families.

use crate::route::LABELS as ROUTES;
use crate::App;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

const STATUSES: [u16; 16] = [
    200, 204, 206, 301, 304, 308, 400, 403, 404, 405, 413, 414, 429, 500, 503, 0,
];

/// Requests by (route, status): lock-free counters, one per pair.
pub struct Requests([[AtomicU64; STATUSES.len()]; ROUTES.len()]);

impl Default for Requests {
    fn default() -> Self {
        Requests(std::array::from_fn(|_| {
            std::array::from_fn(|_| AtomicU64::new(0))
        }))
    }
}

impl Requests {
    pub fn record(&self, route: &'static str, status: u16) {
        let r = ROUTES
            .iter()
            .position(|x| *x == route)
            .unwrap_or(ROUTES.len() - 1);
        // Status 0 stands for any code not listed.
        let s = STATUSES
            .iter()
            .position(|x| *x == status)
            .unwrap_or(STATUSES.len() - 1);
        self.0[r][s].fetch_add(1, Relaxed);
    }

    /// Requests answered since start, whatever their route and status.
    pub fn total(&self) -> u64 {
        self.0.iter().flatten().map(|n| n.load(Relaxed)).sum()
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP cti_http_requests_total HTTP requests by route and status.\n# TYPE cti_http_requests_total counter\n");
        for (route, row) in ROUTES.iter().zip(&self.0) {
            for (status, n) in STATUSES
                .iter()
                .zip(row)
                .map(|(s, n)| (s, n.load(Relaxed)))
                .filter(|(_, n)| *n > 0)
            {
                let status = if *status == 0 {
                    "other".to_string()
                } else {
                    status.to_string()
                };
                let _ = writeln!(
                    out,
                    "cti_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
    }
}

/// Everything `cti-server` knows, as Prometheus text.
pub fn render(app: &App) -> String {
    let mut out = String::new();
    app.requests.render(&mut out);
    let _ = writeln!(out, "# HELP cti_event_listeners Open /api/stream listeners.\n# TYPE cti_event_listeners gauge\ncti_event_listeners {}", app.events.listeners());
    app.connections.render(&mut out);
    if let Ok(json) = app.store().and_then(|s| Ok(s.stats_json()?)) {
        core(&mut out, &json);
    }
    app.game().render(&mut out);
    out
}

fn core(out: &mut String, json: &str) {
    let Ok(s) = serde_json::from_str::<serde_json::Value>(json) else {
        return;
    };
    for (name, help) in [
        ("claims_committed", "Claims committed to disk."),
        (
            "claims_failed",
            "Claims refused because the store could not commit.",
        ),
        ("claims_rate_limited", "Claims refused by the rate limits."),
        ("commits", "Transactions committed."),
        ("commits_failed", "Transactions that failed."),
    ] {
        let _ = writeln!(
            out,
            "# HELP cti_{name}_total {help}\n# TYPE cti_{name}_total counter\ncti_{name}_total {}",
            s[name]
        );
    }
    for (name, key, help) in [
        (
            "cti_commit_batch_size",
            "batch_size",
            "Claims per committed transaction.",
        ),
        (
            "cti_commit_latency_microseconds",
            "commit_latency_us",
            "Time to stage and commit a transaction.",
        ),
    ] {
        let h = &s[key];
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for b in h["buckets"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {}", b[0], b[1]);
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            h["count"], h["sum"], h["count"]
        );
    }
}

/// Serves `GET /metrics` with whatever `render` gives, until the task ends
/// (the operator listener without admin actions).
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) {
    crate::operator::serve(listener, render, None, Default::default()).await;
}
