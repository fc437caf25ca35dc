//! What the `cti-server` and `cti-edge` binaries share: their common flags
//! (database, claim limits, HTTP proxies, connection limits and timeouts,
//! metrics, logging), the runtime around `main`, and the shutdown signals.

use crate::client_addr::{ForwardedHeader, TrustedProxies};
use crate::conn::Settings;
use crate::{stream, Cidr, Config};
use clap::Args;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The flags both binaries take.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The SQLite database file (created if missing).
    #[arg(long, env = "CTI_DB", default_value = "cti.db")]
    pub db: PathBuf,
    #[command(flatten)]
    pub proxies: HttpProxies,
    #[command(flatten)]
    pub limits: ClaimLimits,
    #[command(flatten)]
    pub connections: ConnectionFlags,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "CTI_GRACE", default_value_t = 10)]
    pub grace: u64,
    /// Serve Prometheus metrics on this (operator-only) address; off by default.
    #[arg(long, env = "CTI_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "CTI_LOG_JSON")]
    pub log_json: bool,
}

impl Common {
    /// Opens the store with the claim limits and limits on new names applied.
    pub fn open_store(&self) -> Result<cti_ffi::Store, String> {
        let store = cti_ffi::Store::open(&self.db)
            .map_err(|e| format!("opening {}: {e}", self.db.display()))?;
        self.limits.apply(&store).map_err(|e| e.to_string())?;
        Ok(store)
    }

    pub fn config(&self) -> Config {
        Config {
            trusted_proxies: self.proxies.trusted(),
            connections: self.connections.settings(),
            event_streams: self.connections.event_streams(),
            db_path: Some(self.db.clone()),
            store_setup: Some(self.limits.setup()),
        }
    }

    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace)
    }
}

/// Connection caps and timeouts.
#[derive(Debug, Clone, Args)]
pub struct ConnectionFlags {
    /// Most open connections.
    #[arg(long, env = "CTI_MAX_CONNECTIONS", default_value_t = Settings::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most open connections per client /24 (IPv4) or /64 (IPv6).
    #[arg(long, env = "CTI_MAX_PER_NETWORK", default_value_t = Settings::MAX_PER_NETWORK)]
    pub max_per_network: usize,
    /// Most open connections per client address.
    #[arg(long, env = "CTI_MAX_PER_SOURCE", default_value_t = Settings::MAX_PER_ADDRESS)]
    pub max_per_source: usize,
    /// Seconds for a request's headers (a new connection's first request
    /// included).
    #[arg(long, env = "CTI_REQUEST_TIMEOUT", default_value_t = Settings::REQUEST_TIMEOUT)]
    pub request_timeout: u64,
    /// Seconds a connection may wait for its next request (HTTP/1.1
    /// keep-alive) or have no stream open (HTTP/2: then GOAWAY).
    #[arg(long, env = "CTI_IDLE_TIMEOUT", default_value_t = Settings::IDLE_TIMEOUT)]
    pub idle_timeout: u64,
    /// Seconds after which a connection is closed gracefully, however busy.
    #[arg(long, env = "CTI_MAX_CONNECTION_AGE", default_value_t = Settings::MAX_AGE)]
    pub max_connection_age: u64,
    /// Seconds a write may wait on a client that reads nothing.
    #[arg(long, env = "CTI_WRITE_TIMEOUT", default_value_t = Settings::WRITE_TIMEOUT)]
    pub write_timeout: u64,
    /// Most open /api/stream listeners.
    #[arg(long, env = "CTI_MAX_EVENT_STREAMS", default_value_t = stream::Caps::DEFAULT_TOTAL)]
    pub max_event_streams: usize,
    /// Most open /api/stream listeners per client /24 or /64.
    #[arg(
        long,
        env = "CTI_MAX_EVENT_STREAMS_PER_NETWORK",
        default_value_t = stream::Caps::DEFAULT_PER_NETWORK
    )]
    pub max_event_streams_per_network: usize,
}

impl ConnectionFlags {
    pub fn settings(&self) -> Settings {
        Settings {
            max_connections: self.max_connections,
            max_per_network: self.max_per_network,
            max_per_address: self.max_per_source,
            request_timeout: Duration::from_secs(self.request_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            max_age: Duration::from_secs(self.max_connection_age),
            write_timeout: Duration::from_secs(self.write_timeout),
        }
    }

    pub fn event_streams(&self) -> stream::Caps {
        stream::Caps {
            total: self.max_event_streams,
            per_network: self.max_event_streams_per_network,
        }
    }
}

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

/// Claim rate limits and limits on new names, each also readable from its
/// `CTI_...` variable. The core owns the defaults: a flag not given keeps
/// the core's value, which `--help` shows as the core reports it (see
/// [`parse`]).
#[derive(Debug, Clone, Args)]
pub struct ClaimLimits {
    /// Claims per minute per client address (0: no limit).
    #[arg(long, env = "CTI_CLAIMS_PER_MINUTE")]
    pub claims_per_minute: Option<u32>,
    /// Claims an address may make at once.
    #[arg(long, env = "CTI_CLAIM_BURST")]
    pub claim_burst: Option<u32>,
    /// Claims per minute per /24 (0: no limit).
    #[arg(long, env = "CTI_NET24_CLAIMS_PER_MINUTE")]
    pub net24_claims_per_minute: Option<u32>,
    /// Claims a /24 may make at once.
    #[arg(long, env = "CTI_NET24_CLAIM_BURST")]
    pub net24_claim_burst: Option<u32>,
    /// Claims per hour per client address by names that own nothing yet (0: no limit).
    #[arg(long, env = "CTI_NEW_NAMES_PER_HOUR")]
    pub new_names_per_hour: Option<u32>,
    /// Claims by new names an address may make at once.
    #[arg(long, env = "CTI_NEW_NAME_BURST")]
    pub new_name_burst: Option<u32>,
    /// Claims per hour per /24 by names that own nothing yet (0: no limit).
    #[arg(long, env = "CTI_NET24_NEW_NAMES_PER_HOUR")]
    pub net24_new_names_per_hour: Option<u32>,
    /// Claims by new names a /24 may make at once.
    #[arg(long, env = "CTI_NET24_NEW_NAME_BURST")]
    pub net24_new_name_burst: Option<u32>,
}

/// Both kinds of limit, as the core takes them.
type CoreLimits = (cti_ffi::Limits, cti_ffi::NickLimits);

/// Where one flag's value sits among the core's limits.
type LimitField = fn(&mut CoreLimits) -> &mut u32;

/// Each limit flag (its argument id) and its value among the core's
/// limits, in the order of [`ClaimLimits::given`].
const LIMIT_FLAGS: [(&str, LimitField); 8] = [
    ("claims_per_minute", |l| &mut l.0.per_address_per_minute),
    ("claim_burst", |l| &mut l.0.per_address_burst),
    ("net24_claims_per_minute", |l| &mut l.0.per_net24_per_minute),
    ("net24_claim_burst", |l| &mut l.0.per_net24_burst),
    ("new_names_per_hour", |l| &mut l.1.per_address_per_hour),
    ("new_name_burst", |l| &mut l.1.per_address_burst),
    ("net24_new_names_per_hour", |l| &mut l.1.per_net24_per_hour),
    ("net24_new_name_burst", |l| &mut l.1.per_net24_burst),
];

impl ClaimLimits {
    /// The flags' values in the order of [`LIMIT_FLAGS`].
    fn given(&self) -> [Option<u32>; 8] {
        [
            self.claims_per_minute,
            self.claim_burst,
            self.net24_claims_per_minute,
            self.net24_claim_burst,
            self.new_names_per_hour,
            self.new_name_burst,
            self.net24_new_names_per_hour,
            self.net24_new_name_burst,
        ]
    }

    /// Sets the core's default limits with the flags given laid over them
    /// on `store`; the core checks them.
    pub fn apply(&self, store: &cti_ffi::Store) -> Result<(), cti_ffi::Error> {
        let mut limits = cti_ffi::default_limits()?;
        for (given, (_, value)) in self.given().into_iter().zip(LIMIT_FLAGS) {
            if let Some(given) = given {
                *value(&mut limits) = given;
            }
        }
        let context = |what: &'static str| {
            move |mut e: cti_ffi::Error| {
                e.message = format!("{what}: {}", e.message);
                e
            }
        };
        store
            .set_limits(limits.0)
            .map_err(context("setting claim limits"))?;
        store
            .set_nick_limits(limits.1)
            .map_err(context("setting limits on new names"))
    }
}

/// Parses the command line of `P` (which flattens [`Common`]), its help
/// showing the core's default for every limit flag.
pub fn parse<P: clap::Parser>() -> P {
    let mut command = P::command();
    if let Ok(mut defaults) = cti_ffi::default_limits() {
        for (id, value) in LIMIT_FLAGS {
            let default = *value(&mut defaults);
            command = command.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: the core's, {default}]"))
            });
        }
    }
    let matches = command.get_matches();
    P::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

impl ClaimLimits {
    /// `apply` for every store opened later (through another core).
    pub fn setup(&self) -> crate::game::StoreSetup {
        let limits = self.clone();
        crate::game::StoreSetup(std::sync::Arc::new(move |store| limits.apply(store)))
    }
}

/// Runs `work` on a multi-threaded runtime after setting up logging; a
/// failure is logged, printed as `NAME: message` and exits 1.
pub fn main(
    name: &str,
    log_json: bool,
    work: impl Future<Output = Result<(), String>>,
) -> ExitCode {
    init_logging(log_json);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|runtime| runtime.block_on(work));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            tracing::error!("{msg}");
            eprintln!("{name}: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Binds the listening socket.
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("listening on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, local))
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
