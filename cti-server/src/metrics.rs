//! Prometheus metrics on the operator listener, encoded by the
//! `prometheus-client` crate in the text format 0.0.4: the build, HTTP
//! requests by route and status, event-stream listeners, the connection
//! families (`conn`), the core serving the store (`game`) and the core's own
//! counters (claims committed, refused and failed, commit batch sizes and
//! durations). The edge registers its families beside these.
//!
//! The request path only adds to atomics where the thing is counted; a
//! [`Collector`] reads them at each scrape, so a request takes no lock and
//! allocates nothing for the metrics.

use crate::route::{Route, LABELS as ROUTES};
use crate::App;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The statuses counted apart, and their labels; the last stands for any
/// other code.
const STATUSES: [(u16, &str); 16] = [
    (200, "200"),
    (204, "204"),
    (206, "206"),
    (301, "301"),
    (304, "304"),
    (308, "308"),
    (400, "400"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (413, "413"),
    (414, "414"),
    (429, "429"),
    (500, "500"),
    (503, "503"),
    (0, "other"),
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
    pub fn record(&self, route: &Route, status: u16) {
        let s = STATUSES
            .iter()
            .position(|(code, _)| *code == status)
            .unwrap_or(STATUSES.len() - 1);
        self.0[route.label_index()][s].fetch_add(1, Relaxed);
    }

    /// Requests answered since start, whatever their route and status.
    pub fn total(&self) -> u64 {
        self.0.iter().flatten().map(|n| n.load(Relaxed)).sum()
    }

    /// The pairs seen so far (a family of every pair would be mostly zeros).
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let rows = ROUTES.iter().zip(&self.0).flat_map(|(route, row)| {
            STATUSES
                .iter()
                .zip(row)
                .filter_map(move |((_, status), n)| {
                    let n = n.load(Relaxed);
                    (n > 0).then_some(([("route", *route), ("status", *status)], n))
                })
        });
        let help = "HTTP requests answered, by route and status.";
        counters(e, "http_requests", help, rows)
    }
}

/// The registry of a binary: prefix `cti_`, the build, and what `app`
/// counts. The edge registers its own collector beside.
pub fn registry(app: Arc<App>) -> Registry {
    let mut registry = Registry::with_prefix("cti");
    let build = [("version", env!("CARGO_PKG_VERSION"))];
    // The registry adds the full stop.
    registry.register("build", "The version of this build", Info::new(build));
    registry.register_collector(Box::new(AppMetrics(app)));
    registry
}

/// `registry` in the Prometheus text format ([`CONTENT_TYPE`]).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, registry) {
        tracing::error!(error = %e, "encoding the metrics failed");
    }
    text
}

/// What the app counts, read at each scrape.
struct AppMetrics(Arc<App>);

impl fmt::Debug for AppMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppMetrics")
    }
}

impl Collector for AppMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let app = &self.0;
        app.requests.encode(&mut e)?;
        let listeners = app.events.listeners();
        gauge(
            &mut e,
            "event_listeners",
            "Open /api/stream listeners.",
            listeners,
        )?;
        app.connections.encode(&mut e)?;
        app.game().encode(&mut e)?;
        match app.store().and_then(|s| Ok(s.stats_json()?)) {
            Ok(json) => core_stats(&mut e, &json),
            // No store while it is handed over or after a failed swap.
            Err(_) => Ok(()),
        }
    }
}

/// A counter without labels.
pub fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

/// A gauge without labels.
pub fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl TryInto<i64>,
) -> fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    let value = value.try_into().unwrap_or(i64::MAX);
    ConstGauge::new(value).encode(metric)
}

/// An info family: `labels` with the value 1 (the name gains `_info`).
pub fn info(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &impl EncodeLabelSet,
) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Info)?
        .encode_info(labels)
}

/// A family of counters, one per label set (every set with the same keys).
pub fn counters<S: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (S, u64)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, n) in rows {
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The core's counters and histograms, from its `stats_json`.
fn core_stats(e: &mut DescriptorEncoder, json: &str) -> fmt::Result {
    let Ok(s) = serde_json::from_str::<serde_json::Value>(json) else {
        return Ok(());
    };
    for (name, help) in [
        (
            "live_players",
            "Players in memory: with an address, or in the recent list.",
        ),
        (
            "block_players",
            "(block, player) pairs with an address: the size of the counts in memory.",
        ),
        ("queued", "Claims and other jobs waiting for the writer."),
    ] {
        gauge(e, name, help, s[name].as_u64().unwrap_or(0))?;
    }
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
        counter(e, name, help, s[name].as_u64().unwrap_or(0))?;
    }
    let batch = Histogram::from_core(&s["batch_size"], 1.0);
    batch.encode(
        e,
        "commit_batch_size",
        "Claims per committed transaction.",
        None,
    )?;
    // The core counts microseconds; Prometheus wants seconds.
    let duration = Histogram::from_core(&s["commit_latency_us"], 1e6);
    let help = "Time to stage and commit a transaction.";
    duration.encode(e, "commit_duration", help, Some(&Unit::Seconds))
}

/// A histogram as the encoder takes it: the count in each bucket alone
/// (the encoder makes them cumulative), the last bucket `+Inf`.
#[derive(Debug, PartialEq)]
struct Histogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// From the core's JSON: cumulative `buckets` of `[bound, count]`,
    /// `count` and `sum`; bounds and sum divided by `per_unit` (a division keeps 250 / 1e6 exactly 0.00025).
    fn from_core(h: &serde_json::Value, per_unit: f64) -> Histogram {
        let count = h["count"].as_u64().unwrap_or(0);
        let mut buckets = Vec::new();
        let mut below = 0;
        for b in h["buckets"].as_array().into_iter().flatten() {
            let (bound, total) = (b[0].as_f64().unwrap_or(0.0), b[1].as_u64().unwrap_or(0));
            // Read while claims commit, a bucket may be ahead of the one
            // before it or of `count`: the encoded buckets never go down.
            buckets.push((bound / per_unit, total.saturating_sub(below)));
            below = below.max(total);
        }
        buckets.push((f64::INFINITY, count.saturating_sub(below)));
        let sum = h["sum"].as_f64().unwrap_or(0.0) / per_unit;
        Histogram {
            sum,
            count,
            buckets,
        }
    }

    fn encode(
        &self,
        e: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
    ) -> fmt::Result {
        let mut metric = e.encode_descriptor(name, help, unit, MetricType::Histogram)?;
        metric.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_histograms_become_per_bucket_counts_in_seconds() {
        let core = serde_json::json!({
            "buckets": [[250, 1], [500, 3], [1000, 3]],
            "count": 5,
            "sum": 2600,
        });
        let h = Histogram::from_core(&core, 1e6);
        assert_eq!(h.count, 5);
        assert!((h.sum - 0.0026).abs() < 1e-12, "{}", h.sum);
        let bounds: Vec<f64> = h.buckets.iter().map(|b| b.0).collect();
        assert_eq!(bounds, [250e-6, 500e-6, 1000e-6, f64::INFINITY]);
        let counts: Vec<u64> = h.buckets.iter().map(|b| b.1).collect();
        assert_eq!(counts, [1, 2, 0, 2]);
    }

    #[test]
    fn a_bucket_read_ahead_of_the_count_does_not_underflow() {
        let core = serde_json::json!({"buckets": [[1, 4]], "count": 3, "sum": 3});
        let h = Histogram::from_core(&core, 1.0);
        assert_eq!(h.buckets, [(1.0, 4), (f64::INFINITY, 0)]);
    }

    #[test]
    fn core_families_are_named_by_the_conventions() {
        #[derive(Debug)]
        struct Core;
        impl Collector for Core {
            fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
                let json = serde_json::json!({
                    "claims_committed": 2,
                    "batch_size": {"buckets": [[1, 2]], "count": 2, "sum": 2},
                    "commit_latency_us": {"buckets": [[250, 2]], "count": 2, "sum": 300},
                });
                core_stats(&mut e, &json.to_string())
            }
        }
        let mut registry = Registry::with_prefix("cti");
        registry.register_collector(Box::new(Core));
        let text = encode(&registry);
        for line in [
            "# TYPE cti_claims_committed_total counter",
            "cti_claims_committed_total 2",
            "cti_claims_failed_total 0",
            "# TYPE cti_commit_duration_seconds histogram",
            "cti_commit_duration_seconds_bucket{le=\"0.00025\"} 2",
            "cti_commit_duration_seconds_bucket{le=\"+Inf\"} 2",
            "cti_commit_duration_seconds_sum 0.0003",
            "cti_commit_duration_seconds_count 2",
            "cti_commit_batch_size_bucket{le=\"1\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
