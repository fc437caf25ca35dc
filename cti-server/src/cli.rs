//! What the `cti-server` and `cti-edge` binaries share: the claim-limit
//! and HTTP-proxy flags, logging, and the shutdown signals.

use crate::client_addr::{ForwardedHeader, TrustedProxies};
use crate::Cidr;
use clap::Args;

/// HTTP proxies in front, and the one header they write.
#[derive(Debug, Clone, Args)]
pub struct HttpProxies {
    /// An HTTP proxy (CIDR or address) whose --forwarded-header is believed;
    /// repeat the flag or separate with commas. Name the proxies' own
    /// addresses (/32s), not the whole network they live in.
    #[arg(
        long = "trusted-proxy",
        env = "CTI_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<Cidr>,
    /// The one header the trusted proxies write the client address into
    /// (read from the right; any other forwarding header is ignored).
    #[arg(
        long,
        env = "CTI_FORWARDED_HEADER",
        value_enum,
        default_value = "x-forwarded-for"
    )]
    pub forwarded_header: ForwardedHeader,
}

impl HttpProxies {
    pub fn trusted(&self) -> TrustedProxies {
        TrustedProxies {
            ranges: self.trusted_proxies.clone(),
            header: self.forwarded_header,
        }
    }
}

/// Claim rate limits, each also readable from its `CTI_...` variable.
#[derive(Debug, Clone, Args)]
pub struct ClaimLimits {
    /// Claims per minute per client address (0: no limit).
    #[arg(long, env = "CTI_CLAIMS_PER_MINUTE", default_value_t = 60)]
    pub claims_per_minute: u32,
    /// Claims an address may make at once.
    #[arg(long, env = "CTI_CLAIM_BURST", default_value_t = 10)]
    pub claim_burst: u32,
    /// Claims per minute per /24 (0: no limit).
    #[arg(long, env = "CTI_NET24_CLAIMS_PER_MINUTE", default_value_t = 1200)]
    pub net24_claims_per_minute: u32,
    /// Claims a /24 may make at once.
    #[arg(long, env = "CTI_NET24_CLAIM_BURST", default_value_t = 512)]
    pub net24_claim_burst: u32,
}

impl ClaimLimits {
    pub fn apply(&self, store: &cti_ffi::Store) -> Result<(), cti_ffi::Error> {
        store.set_limits(cti_ffi::Limits {
            per_address_per_minute: self.claims_per_minute,
            per_address_burst: self.claim_burst,
            per_net24_per_minute: self.net24_claims_per_minute,
            per_net24_burst: self.net24_claim_burst,
        })
    }
}

/// Starts the operator-only metrics listener when `addr` is given.
pub async fn metrics_listener(
    addr: Option<std::net::SocketAddr>,
    render: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
) -> Result<(), String> {
    let Some(addr) = addr else { return Ok(()) };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("metrics on http://{local}/metrics");
    println!("metrics: http://{local}/metrics");
    tokio::spawn(crate::metrics::serve(listener, render));
    Ok(())
}

/// Logs to stderr, human-readable or as JSON lines; `RUST_LOG` filters.
pub fn init_logging(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight requests"),
        _ = int.recv() => tracing::info!("SIGINT: finishing in-flight requests"),
    }
}
