//! Opens many TLS connections to a server, makes one request on each
//! (HTTP/1.1 or HTTP/2, by ALPN), and holds them open and idle: the load for
//! measuring memory per idle connection (`benches/edge/idle-memory.sh`).
//! Prints `ready N` once all are idle, then waits for its standard input to
//! close and says how many the server closed meanwhile.
//!
//!   cargo run --release -p cti-edge --example idle_connections -- \
//!       --target 127.0.0.1:8443 --connections 2000 --alpn h2

use clap::Parser;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, Parser)]
struct Args {
    /// The server (host:port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    target: SocketAddr,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// The protocol to ask for: h2 or http/1.1.
    #[arg(long, default_value = "h2")]
    alpn: String,
    /// The request made on each connection.
    #[arg(long, default_value = "/api/ip")]
    path: String,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// Plain TCP instead of TLS (`--alpn h2` then means h2c).
    #[arg(long)]
    plain: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args = Arc::new(Args::parse());
    let config = test_kit::tls::load_client(&[args.alpn.as_bytes()]);
    let gate = Arc::new(tokio::sync::Semaphore::new(args.parallel));
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let (args, config, gate) = (args.clone(), config.clone(), gate.clone());
        opening.spawn(async move {
            let _turn = gate.acquire().await.map_err(|e| e.to_string())?;
            let transport = if args.plain {
                test_kit::client::Transport::Plain {
                    h2: args.alpn == "h2",
                }
            } else {
                test_kit::client::Transport::Tls(&config)
            };
            let (mut sender, ended) =
                test_kit::client::connect(args.target, None, &[], transport).await?;
            let (status, _) = sender.fetch(&args.path).await?;
            if status != 200 {
                return Err(format!("GET {} answered {status}", args.path));
            }
            Ok::<_, String>((sender, ended))
        });
    }
    let mut held = Vec::with_capacity(args.connections);
    while let Some(opened) = opening.join_next().await {
        held.push(opened.map_err(|e| e.to_string())??);
    }
    println!("ready {}", held.len());
    // Hold until told to stop.
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
    let closed = held.iter().filter(|(_, ended)| ended.is_finished()).count();
    println!("closed by the server while held: {closed}");
    Ok(())
}
