//! The edge's own metric families: PROXY header outcomes and TLS handshakes.
//! Rendered after `cti_server::metrics` (which has the connection families).

use crate::proxy::ProxyError;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Default)]
pub struct EdgeMetrics {
    proxy: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    pub tls_handshakes: AtomicU64,
    pub tls_failures: AtomicU64,
}

impl EdgeMetrics {
    /// A header accepted: `v1`, `v2`, or `local` (no client address).
    pub fn proxy_ok(&self, kind: &'static str) {
        self.count_proxy("accepted", kind);
    }

    pub fn proxy_refused(&self, reason: &'static str) {
        self.count_proxy("refused", reason);
    }

    fn count_proxy(&self, outcome: &'static str, label: &'static str) {
        let mut proxy = self.proxy.lock().unwrap_or_else(|p| p.into_inner());
        *proxy.entry((outcome, label)).or_default() += 1;
    }

    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP cti_proxy_headers_total PROXY protocol headers by outcome.\n# TYPE cti_proxy_headers_total counter\n");
        for ((outcome, kind), n) in self.proxy.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let label = if *outcome == "accepted" {
                "kind"
            } else {
                "reason"
            };
            let _ = writeln!(
                out,
                "cti_proxy_headers_total{{outcome=\"{outcome}\",{label}=\"{kind}\"}} {n}"
            );
        }
        for (name, help, kind, v) in [
            (
                "cti_tls_handshakes_total",
                "TLS handshakes completed.",
                "counter",
                &self.tls_handshakes,
            ),
            (
                "cti_tls_handshake_failures_total",
                "TLS handshakes failed or timed out.",
                "counter",
                &self.tls_failures,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
    }
}

/// The `reason` label of a refused header.
pub fn reason(e: &ProxyError) -> &'static str {
    match e {
        ProxyError::Missing => "missing",
        ProxyError::V1TooLong => "v1_too_long",
        ProxyError::V1Malformed(_) => "v1_malformed",
        ProxyError::V2Version(_) => "v2_version",
        ProxyError::V2Command(_) => "v2_command",
        ProxyError::V2TooLong(_) => "v2_too_long",
        ProxyError::V2Malformed(_) => "v2_malformed",
        ProxyError::Tlv(_) => "tlv",
        ProxyError::Checksum => "crc32c",
        ProxyError::Eof => "eof",
        ProxyError::Timeout(_) => "timeout",
        ProxyError::Io(_) => "io",
    }
}
