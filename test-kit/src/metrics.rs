//! Single values from a Prometheus metrics listener.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The whole text at `GET /metrics`.
pub fn text(metrics: SocketAddr) -> String {
    let reply = crate::http::get(metrics, "/metrics", &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// The value of the sample `name` (with its labels, as written) at `metrics`.
pub fn metric(metrics: SocketAddr, name: &str) -> u64 {
    let text = text(metrics);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Waits (bounded by `limit`) until the metric `name` reads `want`;
/// returns how long that took.
pub fn metric_becomes(metrics: SocketAddr, name: &str, want: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = metric(metrics, name);
        if now == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{name} is {now} after {limit:?}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
