//! `cti-server`: the game over plain HTTP/1.1 and h2c, for running behind an
//! HTTP reverse proxy (or locally). For TLS and the PROXY protocol, run
//! `cti-edge`.

use clap::Parser;
use cti_server::cli::{self, ClaimLimits};
use cti_server::{App, Config};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Capture The IP: the HTTP game server (plain HTTP/1.1 and h2c).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CTI_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The SQLite database file (created if missing).
    #[arg(long, env = "CTI_DB", default_value = "cti.db")]
    db: PathBuf,
    #[command(flatten)]
    proxies: cli::HttpProxies,
    #[command(flatten)]
    limits: ClaimLimits,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "CTI_GRACE", default_value_t = 10)]
    grace: u64,
    /// Serve Prometheus metrics on this (operator-only) address; off by default.
    #[arg(long, env = "CTI_METRICS")]
    metrics: Option<SocketAddr>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "CTI_LOG_JSON")]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(args.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => fail(&msg),
    }
}

fn fail(msg: &str) -> ExitCode {
    tracing::error!("{msg}");
    eprintln!("cti-server: {msg}");
    ExitCode::FAILURE
}

async fn run(args: Args) -> Result<(), String> {
    let store = cti_ffi::Store::open(&args.db)
        .map_err(|e| format!("opening {}: {e}", args.db.display()))?;
    args.limits
        .apply(&store)
        .map_err(|e| format!("setting claim limits: {e}"))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let app = App::new(
        store,
        Config {
            trusted_proxies: args.proxies.trusted(),
            db_path: Some(args.db.clone()),
        },
    );
    tracing::info!(db = %args.db.display(), core = cti_ffi::version(), "cti-server listening on http://{local}/");
    println!("cti-server: serving http://{local}/");
    cti_server::serve(
        listener,
        app,
        cli::shutdown_signal(),
        Duration::from_secs(args.grace),
    )
    .await
    .map_err(|e| format!("serving: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}
