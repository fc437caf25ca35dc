//! `cti-server`: the game over plain HTTP/1.1 and h2c, for running behind an
//! HTTP reverse proxy (or locally). For TLS and the PROXY protocol, run
//! `cti-edge`.

use clap::Parser;
use cti_server::listen::{Inherited, ListenError};
use cti_server::App;
use cti_server::{cli, metrics, notify, operator};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// Capture The IP: the HTTP game server (plain HTTP/1.1 and h2c).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CTI_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    common: cli::Common,
}

fn main() -> ExitCode {
    let args = cli::parse::<Args>();
    // SAFETY: no other thread exists yet.
    let inherited = unsafe { Inherited::take() };
    cli::main("cti-server", args.common.log_json, run(args, inherited))
}

async fn run(args: Args, inherited: Result<Inherited, ListenError>) -> Result<(), String> {
    let mut inherited = inherited.map_err(|e| e.to_string())?;
    let common = &args.common;
    let store = common.open_store()?;
    let bound = inherited
        .listeners(args.listen, common.metrics)
        .await
        .map_err(|e| e.to_string())?;
    let ((listener, local), operator) = (bound.service, bound.operator);
    let app = App::new(store, common.config());
    let registry = metrics::registry(app.clone());
    let render = Arc::new(move || metrics::encode(&registry));
    operator::start(operator, render, None, Default::default());
    tracing::info!(db = %common.db.display(), core = cti_ffi::version(), "cti-server listening on http://{local}/");
    println!("cti-server: serving http://{local}/");
    notify::ready(false);
    let shutdown = async {
        cli::shutdown_signal().await;
        notify::stopping();
    };
    cti_server::serve(listener, app, shutdown, common.grace()).await;
    tracing::info!("stopped");
    Ok(())
}
