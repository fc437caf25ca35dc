//! The edge's own metric families, registered beside `cti_server::metrics`
//! (which has the connection families): PROXY headers accepted by kind and
//! refused by reason, and TLS handshakes. Each is an atomic counter bumped
//! where the connection is handled and read at each scrape.

use crate::proxy::ProxyError;
use cti_server::metrics::{counter, counters};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A PROXY header accepted: which version, or `Local` (a health check of
/// the balancer, no client address).
#[derive(Clone, Copy)]
pub enum Header {
    V1,
    V2,
    Local,
}

/// The `kind` labels, in the order of [`Header`].
const KINDS: [&str; 3] = ["v1", "v2", "local"];

/// The `reason` labels of a refused header, in the order of [`reason`].
const REASONS: [&str; 13] = [
    "missing",
    "v1_too_long",
    "v1_malformed",
    "v2_version",
    "v2_command",
    "v2_too_long",
    "v2_malformed",
    "tlv",
    "crc32c",
    "eof",
    "timeout",
    "io",
    "untrusted_source",
];

#[derive(Debug, Default)]
pub struct EdgeMetrics {
    accepted: [AtomicU64; KINDS.len()],
    refused: [AtomicU64; REASONS.len()],
    pub tls_handshakes: AtomicU64,
    pub tls_failures: AtomicU64,
}

impl EdgeMetrics {
    pub fn proxy_ok(&self, kind: Header) {
        self.accepted[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn proxy_refused(&self, e: &ProxyError) {
        self.refused[reason(e)].fetch_add(1, Relaxed);
    }

    /// A PROXY header from a peer not in `--proxy-from` (refused).
    pub fn untrusted_header(&self) {
        self.refused[REASONS.len() - 1].fetch_add(1, Relaxed);
    }
}

/// Where the `reason` label of a refused header is in [`REASONS`].
fn reason(e: &ProxyError) -> usize {
    match e {
        ProxyError::Missing => 0,
        ProxyError::V1TooLong => 1,
        ProxyError::V1Malformed(_) => 2,
        ProxyError::V2Version(_) => 3,
        ProxyError::V2Command(_) => 4,
        ProxyError::V2TooLong(_) => 5,
        ProxyError::V2Malformed(_) => 6,
        ProxyError::Tlv(_) => 7,
        ProxyError::Checksum => 8,
        ProxyError::Eof => 9,
        ProxyError::Timeout(_) => 10,
        ProxyError::Io(_) => 11,
    }
}

/// `(label, value)` rows of one family, every label value listed (zeros
/// too, so that a rate over them starts at the first scrape).
fn rows<'a, const N: usize>(
    key: &'static str,
    values: &'a [&'static str; N],
    counts: &'a [AtomicU64; N],
) -> impl Iterator<Item = ([(&'static str, &'static str); 1], u64)> + 'a {
    values
        .iter()
        .zip(counts)
        .map(move |(v, n)| ([(key, *v)], n.load(Relaxed)))
}

impl Collector for EdgeMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let accepted = rows("kind", &KINDS, &self.accepted);
        let help = "PROXY protocol headers accepted, by kind.";
        counters(&mut e, "proxy_headers", help, accepted)?;
        let refused = rows("reason", &REASONS, &self.refused);
        let help = "PROXY protocol headers refused (the connection closed), by reason.";
        counters(&mut e, "proxy_headers_refused", help, refused)?;
        let handshakes = self.tls_handshakes.load(Relaxed);
        counter(
            &mut e,
            "tls_handshakes",
            "TLS handshakes completed.",
            handshakes,
        )?;
        let failures = self.tls_failures.load(Relaxed);
        let help = "TLS handshakes failed or timed out.";
        counter(&mut e, "tls_handshake_failures", help, failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_own_reason() {
        let errors = [
            ProxyError::Missing,
            ProxyError::V1TooLong,
            ProxyError::V1Malformed("x"),
            ProxyError::V2Version(1),
            ProxyError::V2Command(2),
            ProxyError::V2TooLong(3),
            ProxyError::V2Malformed(String::new()),
            ProxyError::Tlv(String::new()),
            ProxyError::Checksum,
            ProxyError::Eof,
            ProxyError::Timeout(std::time::Duration::ZERO),
            ProxyError::Io(String::new()),
        ];
        let mut seen: Vec<usize> = errors.iter().map(reason).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), errors.len(), "two errors share a reason");
        assert!(
            seen.iter().all(|i| *i < REASONS.len() - 1),
            "untrusted_source is kept apart"
        );
    }
}
