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

use clap::Parser;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_kit::client::{self, Sender, Transport};

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
    /// The local address to connect from (the balancer address the edge
    /// trusts, when other clients share the machine).
    #[arg(long)]
    bind: Option<Ipv4Addr>,
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
    /// Longest wait from starting a connection to its first answer: what
    /// a client sees of a pause (an accept backlog included).
    slowest_first_answer_us: AtomicU64,
}

async fn one_connection(
    args: &Args,
    config: &Arc<rustls::ClientConfig>,
    index: u32,
    tally: &Tally,
) -> Result<(), String> {
    let client = SocketAddr::new(source(index).into(), 40000);
    let header = test_kit::proxy::v2_proxy(client, args.target, &[]);
    let connecting = Instant::now();
    let mut send = open(args.target, args.bind, config, &header).await?;
    let mut latencies = Vec::with_capacity(args.per_connection as usize);
    for k in 0..args.per_connection {
        let nick = format!("load{}", (index + k) % args.nicks);
        let last = k + 1 == args.per_connection;
        let connection = if last { "close" } else { "keep-alive" };
        let headers = [("accept", "application/json"), ("connection", connection)];
        let started = Instant::now();
        let resp = send.get(&format!("/claim?name={nick}"), &headers).await?;
        let ok = resp.status().is_success();
        client::body(resp).await?;
        latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if k == 0 {
            let waited = connecting.elapsed().as_micros() as u64;
            tally.slowest_first_answer_us.fetch_max(waited, Relaxed);
        }
        if ok {
            tally.acknowledged.fetch_add(1, Relaxed);
        } else {
            tally.refused.fetch_add(1, Relaxed);
        }
    }
    tally.latencies_us.lock().unwrap().extend(latencies);
    Ok(())
}

/// A TCP connection (from `bind`, if given) that sends `header`, then TLS
/// and HTTP/1.1 over it.
async fn open(
    target: SocketAddr,
    bind: Option<Ipv4Addr>,
    config: &Arc<rustls::ClientConfig>,
    header: &[u8],
) -> Result<Sender, String> {
    let from = bind.map(IpAddr::V4);
    let (send, _) = client::connect(target, from, header, Transport::Tls(config)).await?;
    Ok(send)
}

/// The lines both modes print the same way: claims acknowledged and their
/// rate, refused, failed (`failed` says what failed: a connection, or a
/// claim on a kept HTTP/2 connection), and the latency percentiles.
fn print_claims(tally: &Tally, elapsed: f64, failed: &str) {
    let acknowledged = tally.acknowledged.load(Relaxed);
    let mut lat = std::mem::take(&mut *tally.latencies_us.lock().unwrap());
    lat.sort_unstable();
    println!(
        "acknowledged claims: {acknowledged} ({:.0}/s)  refused: {}  {failed}: {}",
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
    bind: Option<Ipv4Addr>,
    config: &Arc<rustls::ClientConfig>,
) -> Result<u64, String> {
    // A LOCAL header: reads need no client address.
    let mut send = open(target, bind, config, &test_kit::proxy::v2_local()).await?;
    let (_, body) = send.fetch("/api/blocks").await?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if !v["blocks"].is_array() {
        return Err(format!("no blocks in /api/blocks: {v}"));
    }
    Ok(test_kit::total_claims(&v))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Arc::new(Args::parse());
    if args.h2_streams > 0 {
        return h2_balancer::run(args).await;
    }
    // Every synthetic client is a new client: no session resumption.
    let config = test_kit::tls::load_client(&[b"http/1.1"]);
    let before = claimed_addresses(args.target, args.bind, &config).await?;

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
    let after = claimed_addresses(args.target, args.bind, &config).await?;

    println!(
        "{} connections x {} claim(s) each, {:.1} s, {} synthetic sources",
        args.connections, args.per_connection, elapsed, sources
    );
    print_claims(&tally, elapsed, "failed connections");
    println!(
        "longest wait for a first answer ms (connecting included): {:.2}",
        tally.slowest_first_answer_us.load(Relaxed) as f64 / 1000.0
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
    use super::{claimed_addresses, print_claims, source, Args, Tally};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use test_kit::client::{self, Sender, Transport};

    /// The balancer's own address, which `source` never gives (240/4 is
    /// reserved): the edge must trust it as an HTTP proxy.
    pub const BALANCER: Ipv4Addr = Ipv4Addr::new(240, 0, 0, 1);

    pub async fn run(args: Arc<Args>) -> Result<(), String> {
        let config = test_kit::tls::load_client(&[b"h2"]);
        // The count is read over HTTP/1.1, as the other loads read it.
        let h1_config = test_kit::tls::load_client(&[b"http/1.1"]);
        let before = claimed_addresses(args.target, args.bind, &h1_config).await?;
        let tally = Arc::new(Tally::default());
        let next = Arc::new(AtomicU64::new(args.first_source as u64));
        let balancer = SocketAddr::new(BALANCER.into(), 40000);
        let header = test_kit::proxy::v2_proxy(balancer, args.target, &[]);
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..args.connections {
            let from = args.bind.map(IpAddr::V4);
            let (sender, _conn) =
                client::connect(args.target, from, &header, Transport::Tls(&config)).await?;
            let Sender::Http2(send) = sender else {
                return Err("the edge did not agree to HTTP/2".into());
            };
            for _ in 0..args.h2_streams {
                let (args, tally, next) = (args.clone(), tally.clone(), next.clone());
                let send = send.clone();
                workers.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let index = next.fetch_add(1, Relaxed) as u32;
                        let mut sender = Sender::Http2(send.clone());
                        if let Err(e) = claim(&args, &mut sender, index, &tally).await {
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
        let after = claimed_addresses(args.target, args.bind, &h1_config).await?;
        println!(
            "HTTP/2: {} connections x {} claims in flight, {elapsed:.1} s, {sources} synthetic sources",
            args.connections, args.h2_streams
        );
        print_claims(&tally, elapsed, "failed claims");
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
    async fn claim(
        args: &Args,
        send: &mut Sender,
        index: u32,
        tally: &Tally,
    ) -> Result<(), String> {
        let path = format!("/claim?name=load{}", index % args.nicks);
        let client = source(index).to_string();
        let headers = [("accept", "application/json"), ("x-forwarded-for", &client)];
        let started = Instant::now();
        let resp = send.get(&path, &headers).await?;
        let ok = resp.status().is_success();
        client::body(resp).await?;
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
