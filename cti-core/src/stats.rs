//! Counters of a store for operators: claims committed, batches and their
//! sizes, commit latency, failures and refusals. Frontends render them (for
//! example as Prometheus metrics); the core only counts.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the batch-size histogram buckets (claims per transaction).
pub const BATCH_BOUNDS: [u64; 8] = [1, 4, 16, 64, 256, 1024, 4096, 16384];
/// Upper bounds of the commit-latency histogram buckets, in microseconds.
pub const LATENCY_BOUNDS_US: [u64; 10] = [
    250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// A cumulative histogram in the Prometheus style: `counts[i]` observations
/// were at most `bounds[i]`; `count` and `sum` cover all of them.
struct Histogram<const N: usize> {
    counts: [AtomicU64; N],
    count: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Histogram<N> {
    fn observe(&self, bounds: &[u64; N], value: u64) {
        for (b, c) in bounds.iter().zip(&self.counts) {
            if value <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    fn snapshot(&self, bounds: &[u64; N]) -> HistogramJson {
        HistogramJson {
            buckets: bounds
                .iter()
                .zip(&self.counts)
                .map(|(b, c)| (*b, c.load(Relaxed)))
                .collect(),
            count: self.count.load(Relaxed),
            sum: self.sum.load(Relaxed),
        }
    }
}

#[derive(Default)]
pub struct Stats {
    claims_committed: AtomicU64,
    claims_failed: AtomicU64,
    claims_rate_limited: AtomicU64,
    commits: AtomicU64,
    commits_failed: AtomicU64,
    disk_probes: AtomicU64,
    batch_size: Histogram<8>,
    commit_latency: Histogram<10>,
}

impl Stats {
    pub fn committed(&self, claims: usize, took: Duration) {
        self.commits.fetch_add(1, Relaxed);
        self.claims_committed.fetch_add(claims as u64, Relaxed);
        if claims > 0 {
            self.batch_size.observe(&BATCH_BOUNDS, claims as u64);
        }
        self.commit_latency
            .observe(&LATENCY_BOUNDS_US, took.as_micros() as u64);
    }

    pub fn failed(&self, claims: usize) {
        self.commits_failed.fetch_add(1, Relaxed);
        self.claims_failed.fetch_add(claims as u64, Relaxed);
    }

    /// The health check wrote and synced its probe file.
    pub fn probed(&self) {
        self.disk_probes.fetch_add(1, Relaxed);
    }

    pub fn rate_limited(&self) {
        self.claims_rate_limited.fetch_add(1, Relaxed);
    }

    /// Transactions committed so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Relaxed)
    }

    pub fn snapshot(&self, gauges: Gauges) -> StatsJson {
        StatsJson {
            gauges,
            claims_committed: self.claims_committed.load(Relaxed),
            claims_failed: self.claims_failed.load(Relaxed),
            claims_rate_limited: self.claims_rate_limited.load(Relaxed),
            commits: self.commits.load(Relaxed),
            commits_failed: self.commits_failed.load(Relaxed),
            disk_probes: self.disk_probes.load(Relaxed),
            batch_size: self.batch_size.snapshot(&BATCH_BOUNDS),
            commit_latency_us: self.commit_latency.snapshot(&LATENCY_BOUNDS_US),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct HistogramJson {
    /// `[upper bound, cumulative count]`
    pub buckets: Vec<(u64, u64)>,
    pub count: u64,
    pub sum: u64,
}

/// Values of the moment, gathered by the store for a snapshot.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Gauges {
    /// Players in memory: owning an address or in the recent list.
    pub live_players: u64,
    /// (block, player) pairs with an address: the size of the counts in memory.
    pub block_players: u64,
    /// Claims and other jobs waiting for the writer.
    pub queued: u64,
    /// Commit events handed to subscribers, and dropped for slow ones.
    pub events_delivered: u64,
    pub events_dropped: u64,
    /// Failed reads of the lapse schedule (the windows then slide late).
    pub schedule_load_errors: u64,
}

#[derive(Debug, Serialize)]
pub struct StatsJson {
    #[serde(flatten)]
    pub gauges: Gauges,
    pub claims_committed: u64,
    pub claims_failed: u64,
    pub claims_rate_limited: u64,
    pub commits: u64,
    pub commits_failed: u64,
    /// Writes of the health check's probe file.
    pub disk_probes: u64,
    pub batch_size: HistogramJson,
    pub commit_latency_us: HistogramJson,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let s = Stats::default();
        s.committed(3, Duration::from_micros(300));
        s.committed(100, Duration::from_millis(7));
        s.failed(5);
        s.rate_limited();
        let j = s.snapshot(Gauges::default());
        assert_eq!(
            (
                j.claims_committed,
                j.commits,
                j.claims_failed,
                j.commits_failed
            ),
            (103, 2, 5, 1)
        );
        assert_eq!(j.claims_rate_limited, 1);
        assert_eq!(j.batch_size.buckets[0], (1, 0));
        assert_eq!(j.batch_size.buckets[1], (4, 1));
        assert_eq!(j.batch_size.buckets[4], (256, 2));
        assert_eq!((j.batch_size.count, j.batch_size.sum), (2, 103));
        assert_eq!(j.commit_latency_us.buckets[0], (250, 0));
        assert_eq!(j.commit_latency_us.buckets[1], (500, 1));
        assert_eq!(j.commit_latency_us.buckets[5], (10_000, 2));
    }
}
