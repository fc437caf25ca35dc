//! Claim load through the edge as a TCP balancer would bring it: every
//! connection starts with a PROXY v2 header naming a different synthetic
//! client address, then TLS, then `GET /claim` (HTTP/1.1 keep-alive, or one
//! claim per connection). Reports acknowledged (durable: a 2xx is a commit)
//! claims per second and latencies, then checks the store's own count.
//!
//!   cargo run --release -p cti-edge --example claim_load -- \
//!       --target 127.0.0.1:8443 --connections 64 --seconds 10 --per-connection 1
//!
//! The edge must list this machine in `--proxy-from`; turn its claim rate
//! limits off (`--claims-per-minute 0 --net24-claims-per-minute 0`) to measure
//! the commit path rather than the limiter.
//!
//! `--h2-streams N` is another load: an HTTP/2 balancer (PROXY source
//! `BALANCER`, which the edge must list in `--trusted-proxy`) keeps
//! `--connections` connections open and N claims in flight on each, every
//! claim for a different synthetic client named in `X-Forwarded-For`.

#[path = "common/mod.rs"]
mod common;

use clap::Parser;
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::ServerName;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Parser)]
struct Args {
    /// The edge (host:port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    target: SocketAddr,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Claims per connection (each connection is one synthetic source).
    #[arg(long, default_value_t = 1)]
    per_connection: u32,
    /// Distinct nicknames to claim for.
    #[arg(long, default_value_t = 16)]
    nicks: u32,
    /// First synthetic source index (to keep runs from reclaiming).
    #[arg(long, default_value_t = 0)]
    first_source: u32,
    /// HTTP/2 balancer mode: claims in flight on each connection (0: off).
    #[arg(long, default_value_t = 0)]
    h2_streams: usize,
}

/// The `i`th synthetic client address, distinct for every `i` below
/// 223 * 2^24: the /8 cycles through 1..=223 and the low 24 bits are `i / 223`
/// times an odd constant (a bijection modulo 2^24), so consecutive clients
/// land in different /24s.
fn source(i: u32) -> Ipv4Addr {
    let a = 1 + i % 223;
    let low = (i / 223).wrapping_mul(0x9E37_79B1) & 0xff_ffff;
    Ipv4Addr::from((a << 24) | low)
}

#[derive(Default)]
struct Tally {
    acknowledged: AtomicU64,
    refused: AtomicU64,
    failed_connections: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

async fn one_connection(
    args: &Args,
    config: &Arc<rustls::ClientConfig>,
    index: u32,
    tally: &Tally,
) -> Result<(), String> {
    let mut send = open(
        args.target,
        config,
        &common::proxy_v2(source(index).into(), args.target),
    )
    .await?;
    let mut latencies = Vec::with_capacity(args.per_connection as usize);
    for k in 0..args.per_connection {
        let nick = format!("load{}", (index + k) % args.nicks);
        let last = k + 1 == args.per_connection;
        let req = hyper::Request::get(format!("/claim?name={nick}"))
            .header("host", "localhost")
            .header("accept", "application/json")
            .header("connection", if last { "close" } else { "keep-alive" })
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let started = Instant::now();
        send.ready().await.map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let ok = resp.status().is_success();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if ok {
            tally.acknowledged.fetch_add(1, Relaxed);
        } else {
            tally.refused.fetch_add(1, Relaxed);
        }
    }
    tally.latencies_us.lock().unwrap().extend(latencies);
    Ok(())
}

/// A TCP connection that sends `header`, then TLS and HTTP/1.1 over it.
async fn open(
    target: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    header: &[u8],
) -> Result<hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>, String> {
    let mut tcp = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).ok();
    tcp.write_all(header).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The number of claimed addresses the edge reports (sum of block totals).
async fn claimed_addresses(
    target: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> Result<u64, String> {
    // A LOCAL header: reads need no client address.
    let mut local = cti_edge::proxy::V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let mut send = open(target, config, &local).await?;
    let req = hyper::Request::get("/api/blocks")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let body = send
        .send_request(req)
        .await
        .map_err(|e| e.to_string())?
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(v["blocks"]
        .as_array()
        .ok_or("no blocks in /api/blocks")?
        .iter()
        .filter_map(|b| b["total"].as_u64())
        .sum())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Arc::new(Args::parse());
    if args.h2_streams > 0 {
        return h2_balancer::run(args).await;
    }
    // Every synthetic client is a new client: no session resumption.
    let config = common::client_config(&[b"http/1.1"]);
    let before = claimed_addresses(args.target, &config).await?;

    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(args.first_source as u64));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.connections {
        let (args, config, tally, next) =
            (args.clone(), config.clone(), tally.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Relaxed) as u32;
                if let Err(e) = one_connection(&args, &config, index, &tally).await {
                    if tally.failed_connections.fetch_add(1, Relaxed) < 3 {
                        eprintln!("connection failed: {e}");
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sources = next.load(Relaxed) - args.first_source as u64;
    let acknowledged = tally.acknowledged.load(Relaxed);
    let mut lat = std::mem::take(&mut *tally.latencies_us.lock().unwrap());
    lat.sort_unstable();
    let after = claimed_addresses(args.target, &config).await?;

    println!(
        "{} connections x {} claim(s) each, {:.1} s, {} synthetic sources",
        args.connections, args.per_connection, elapsed, sources
    );
    println!(
        "acknowledged claims: {acknowledged} ({:.0}/s)  refused: {}  failed connections: {}",
        acknowledged as f64 / elapsed,
        tally.refused.load(Relaxed),
        tally.failed_connections.load(Relaxed)
    );
    println!(
        "claim latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!(
        "claimed addresses in the store: {before} before, {after} after (+{})",
        after - before
    );
    if args.per_connection == 1 && after - before < acknowledged {
        return Err(format!(
            "{acknowledged} claims were acknowledged but only {} new addresses are stored",
            after - before
        ));
    }
    Ok(())
}

/// The HTTP/2 balancer mode (`--h2-streams`): many claims in flight on a
/// few connections, each claim from its own client (`X-Forwarded-For`).
mod h2_balancer {
    use super::{claimed_addresses, common, percentile, source, Args, Tally};
    use http_body_util::{BodyExt, Empty};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// The balancer's own address, which `source` never gives (240/4 is
    /// reserved): the edge must trust it as an HTTP proxy.
    pub const BALANCER: Ipv4Addr = Ipv4Addr::new(240, 0, 0, 1);

    type Send = hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>;

    pub async fn run(args: Arc<Args>) -> Result<(), String> {
        let config = common::client_config(&[b"h2"]);
        // The count is read over HTTP/1.1 (`claimed_addresses` speaks it).
        let h1_config = common::client_config(&[b"http/1.1"]);
        let before = claimed_addresses(args.target, &h1_config).await?;
        let tally = Arc::new(Tally::default());
        let next = Arc::new(AtomicU64::new(args.first_source as u64));
        let header = common::proxy_v2(IpAddr::V4(BALANCER), args.target);
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..args.connections {
            let transport = common::Transport::Tls(&config);
            let (sender, _ended) = common::connect(args.target, None, &header, transport).await?;
            let common::Sender::Http2(send) = sender else {
                return Err("the edge did not agree to HTTP/2".into());
            };
            for _ in 0..args.h2_streams {
                let (args, tally, next, send) =
                    (args.clone(), tally.clone(), next.clone(), send.clone());
                workers.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let index = next.fetch_add(1, Relaxed) as u32;
                        if let Err(e) = claim(&args, send.clone(), index, &tally).await {
                            if tally.failed_connections.fetch_add(1, Relaxed) < 3 {
                                eprintln!("claim failed: {e}");
                            }
                            // The connection is gone: no hot loop of failures.
                            if send.is_closed() {
                                break;
                            }
                        }
                    }
                }));
            }
        }
        for w in workers {
            w.await.map_err(|e| e.to_string())?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let sources = next.load(Relaxed) - args.first_source as u64;
        let acknowledged = tally.acknowledged.load(Relaxed);
        let mut lat = std::mem::take(&mut *tally.latencies_us.lock().unwrap());
        lat.sort_unstable();
        let after = claimed_addresses(args.target, &h1_config).await?;
        println!(
            "HTTP/2: {} connections x {} claims in flight, {elapsed:.1} s, {sources} synthetic sources",
            args.connections, args.h2_streams
        );
        println!(
            "acknowledged claims: {acknowledged} ({:.0}/s)  refused: {}  failed claims: {}",
            acknowledged as f64 / elapsed,
            tally.refused.load(Relaxed),
            tally.failed_connections.load(Relaxed)
        );
        println!(
            "claim latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            percentile(&lat, 0.5),
            percentile(&lat, 0.9),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0)
        );
        println!(
            "claimed addresses in the store: {before} before, {after} after (+{})",
            after - before
        );
        // Every claim is for a new address: each acknowledged one is stored.
        if after - before < acknowledged {
            return Err(format!(
                "{acknowledged} claims were acknowledged but only {} new addresses are stored",
                after - before
            ));
        }
        Ok(())
    }

    /// One claim for synthetic client `index`.
    async fn claim(args: &Args, mut send: Send, index: u32, tally: &Tally) -> Result<(), String> {
        let req = hyper::Request::get(format!("/claim?name=load{}", index % args.nicks))
            .header("accept", "application/json")
            .header("x-forwarded-for", source(index).to_string())
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        send.ready().await.map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let ok = resp.status().is_success();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let took = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        tally.latencies_us.lock().unwrap().push(took);
        let counter = if ok {
            &tally.acknowledged
        } else {
            &tally.refused
        };
        counter.fetch_add(1, Relaxed);
        Ok(())
    }
}
