//! `cti-edge`: the production frontend. Behind a TCP load balancer that sends
//! the PROXY protocol (or facing clients directly), it terminates TLS itself
//! and serves the game over HTTP/1.1 and HTTP/2 on one port, plain HTTP too.

use clap::Parser;
use cti_edge::conn::{Edge, PlainHttp, Timeouts};
use cti_edge::tls::{Files, Tls};
use cti_edge::upgrade::Upgrades;
use cti_ffi::Api;
use cti_server::handover::Predecessor;
use cti_server::listen::Inherited;
use cti_server::operator::AdminConnections;
use cti_server::{cli, game, metrics, notify};
use cti_server::{App, Cidr};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Capture The IP edge: PROXY protocol, TLS, HTTP/1.1 and HTTP/2.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CTI_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// A load balancer (CIDR or address) that must send a PROXY v1/v2 header;
    /// repeat or separate with commas. Others must not send one. Name the
    /// balancers' own addresses, not their whole network.
    #[arg(long = "proxy-from", env = "CTI_PROXY_FROM", value_delimiter = ',')]
    proxy_from: Vec<Cidr>,
    /// PEM certificate chain; with --tls-key. Without both, a self-signed
    /// certificate is made at start.
    #[arg(long, env = "CTI_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "CTI_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Plain HTTP on the same port: serve it, redirect it to HTTPS, or refuse it.
    #[arg(long, env = "CTI_PLAIN_HTTP", value_enum, default_value = "allow")]
    plain_http: PlainHttp,
    /// Seconds for a balancer's PROXY header (at least 3).
    #[arg(long, env = "CTI_PROXY_TIMEOUT", default_value_t = 5)]
    proxy_timeout: u64,
    /// Seconds for the TLS handshake.
    #[arg(long, env = "CTI_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    handshake_timeout: u64,
    /// Strict-Transport-Security max-age (seconds) on HTTPS answers, sent
    /// only while the certificate is not self-signed; 0 sends none.
    #[arg(long, env = "CTI_HSTS_MAX_AGE", default_value_t = 31_536_000)]
    hsts_max_age: u64,
    #[command(flatten)]
    common: cli::Common,
    /// Check the configuration (certificate, key, database) and exit.
    #[arg(long)]
    check_config: bool,
    /// Log every request (target `access`: client, PROXY unique id, method,
    /// target, status, time taken).
    #[arg(long, env = "CTI_ACCESS_LOG")]
    access_log: bool,
    /// The core library SIGUSR2 (or an empty POST /admin/core) swaps in;
    /// default: the file the linked core was loaded from, which a package
    /// upgrade replaces.
    #[arg(long, env = "CTI_CORE_FILE")]
    core_file: Option<PathBuf>,
    /// Seconds a re-exec'd process gets to be prepared, then to serve (and
    /// to wait for the store to be handed over).
    #[arg(long, env = "CTI_UPGRADE_TIMEOUT", default_value_t = 30)]
    upgrade_timeout: u64,
}

fn main() -> ExitCode {
    let args = cli::parse::<Args>();
    // SAFETY: no other thread exists yet (both change the environment).
    let inherited = unsafe { Inherited::take() }.map_err(|e| e.to_string());
    // SAFETY: still the only thread.
    let predecessor = unsafe { Predecessor::take() };
    let log_json = args.common.log_json;
    let work = async move { run(args, inherited?, predecessor?).await };
    cli::main("cti-edge", log_json, work)
}

async fn run(
    args: Args,
    mut inherited: Inherited,
    mut predecessor: Option<Predecessor>,
) -> Result<(), String> {
    if args.proxy_timeout < cti_edge::proxy::MIN_TIMEOUT.as_secs() {
        return Err(format!(
            "--proxy-timeout must be at least {} s",
            cti_edge::proxy::MIN_TIMEOUT.as_secs()
        ));
    }
    let files = args
        .tls_cert
        .clone()
        .zip(args.tls_key.clone())
        .map(|(cert, key)| Files { cert, key });
    let tls = Arc::new(Tls::new(files).map_err(|e| e.to_string())?);
    let common = &args.common;
    if args.check_config {
        common
            .open_store()?
            .health()
            .map_err(|e| format!("the store cannot commit: {e}"))?;
        println!(
            "cti-edge: configuration ok (certificate {})",
            tls.fingerprint()
        );
        return Ok(());
    }
    let bound = inherited
        .listeners(args.listen, common.metrics)
        .await
        .map_err(|e| e.to_string())?;
    let ((listener, local), operator) = (bound.service, bound.operator);
    let timeout = Duration::from_secs(args.upgrade_timeout);
    let store = match predecessor.as_mut() {
        // Replacing a running edge: everything else is in place; the store
        // is free once the old process has closed it.
        Some(old) => {
            old.prepared()
                .map_err(|e| format!("telling the old process: {e}"))?;
            let setup = common.limits.setup();
            game::open_when_free(Api::linked(), &common.db, Some(&setup), timeout)
                .map_err(|e| format!("opening {}: {e}", common.db.display()))?
        }
        None => common.open_store()?,
    };
    let app = App::new(store, common.config());
    spawn_reloader(tls.clone());
    let edge = Arc::new(Edge {
        app,
        tls: tls.clone(),
        proxy_from: args.proxy_from.clone(),
        plain: args.plain_http,
        timeouts: Timeouts {
            proxy_header: Duration::from_secs(args.proxy_timeout),
            handshake: Duration::from_secs(args.handshake_timeout),
        },
        metrics: Default::default(),
        access_log: args.access_log,
        hsts: Edge::hsts(args.hsts_max_age),
    });
    let core_file = args.core_file.clone().or_else(Api::linked_path);
    let (upgrades, requests) = Upgrades::new(edge.clone(), core_file, timeout);
    upgrades.on_signals()?;
    let mut registry = metrics::registry(edge.app.clone());
    registry.register_collector(Box::new(edge.metrics.clone()));
    let render = Arc::new(move || metrics::encode(&registry));
    let operator_fd = operator.as_ref().map(|(l, _)| l.as_raw_fd());
    let admins = AdminConnections::default();
    let admin = cti_edge::admin::handler(upgrades.clone());
    cti_server::operator::start(operator, render, Some(admin), admins.clone());
    let kind = if tls.generated() {
        "self-signed certificate"
    } else {
        "certificate"
    };
    let game = edge.app.game();
    tracing::info!(
        db = %common.db.display(),
        proxy_from = ?args.proxy_from,
        core = game.core().version(),
        core_path = %game.core_path().unwrap_or_default().display(),
        "cti-edge listening on https://{local}/"
    );
    println!(
        "cti-edge: serving https://{local}/ ({kind} SHA-256 {})",
        tls.fingerprint()
    );
    notify::ready(predecessor.is_some());
    if let Some(old) = predecessor {
        old.ready()
            .map_err(|e| format!("telling the old process: {e}"))?;
    }
    cti_edge::upgrade::serve(
        upgrades,
        requests,
        listener,
        operator_fd,
        common.grace(),
        admins,
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// Re-reads the certificate when its files change, and on SIGHUP.
fn spawn_reloader(tls: Arc<Tls>) {
    tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            let result = if forced {
                notify::reloading();
                let result = tls.reload().map(|()| true);
                notify::ready(false);
                result
            } else {
                tls.reload_if_changed()
            };
            match result {
                Ok(true) => {
                    tracing::info!(fingerprint = %tls.fingerprint(), "certificate reloaded")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "certificate reload failed; keeping the current one")
                }
            }
        }
    });
}
