//! Serving connections, the same for both binaries: the limits and timeouts,
//! the accept loop with its caps, and graceful shutdown. HTTP on one
//! connection is in `http_conn`. `cti-server` hands it TCP streams;
//! `cti-edge` hands it what is left after the PROXY header and TLS.

use crate::caps::{ConnectionCaps, Refused, SourceSlot};
use crate::local_streams::Streams;
use crate::{metrics, Cidr};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;
use prometheus_client::encoding::DescriptorEncoder;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Connection limits and timeouts (the flags of both binaries).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most open connections.
    pub max_connections: usize,
    /// Most open connections per /24 (IPv4) or /64 (IPv6).
    pub max_per_network: usize,
    /// Most open connections per client address.
    pub max_per_address: usize,
    /// For a request's headers (a new connection's first request included).
    pub request_timeout: Duration,
    /// With no request in flight this long, a connection is closed: an
    /// HTTP/1.1 keep-alive between requests, HTTP/2 with GOAWAY.
    pub idle_timeout: Duration,
    /// A connection this old is closed gracefully (HTTP/1.1 after the
    /// current response, HTTP/2 with GOAWAY).
    pub max_age: Duration,
    /// A write that makes no progress this long ends the connection.
    pub write_timeout: Duration,
}

impl Settings {
    pub const MAX_CONNECTIONS: usize = 20_000;
    pub const MAX_PER_NETWORK: usize = 256;
    pub const MAX_PER_ADDRESS: usize = 64;
    pub const REQUEST_TIMEOUT: u64 = 30;
    pub const IDLE_TIMEOUT: u64 = 60;
    pub const MAX_AGE: u64 = 600;
    pub const WRITE_TIMEOUT: u64 = 30;
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_connections: Settings::MAX_CONNECTIONS,
            max_per_network: Settings::MAX_PER_NETWORK,
            max_per_address: Settings::MAX_PER_ADDRESS,
            request_timeout: Duration::from_secs(Settings::REQUEST_TIMEOUT),
            idle_timeout: Duration::from_secs(Settings::IDLE_TIMEOUT),
            max_age: Duration::from_secs(Settings::MAX_AGE),
            write_timeout: Duration::from_secs(Settings::WRITE_TIMEOUT),
        }
    }
}

/// Most concurrent HTTP/2 streams on one connection.
const MAX_STREAMS: u32 = 128;
/// Bytes HTTP/2 buffers per stream for a client slow to take them
/// (hyper's default is 400 KiB).
const H2_SEND_BUFFER: usize = 64 * 1024;

/// Every connection's limits and counters, and the HTTP server settings.
pub struct Connections {
    pub settings: Settings,
    pub caps: ConnectionCaps,
    pub(crate) h1: http1::Builder,
    metrics: Counters,
}

/// What the server asks of its open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainState {
    /// Serve as usual.
    Serving,
    /// Another process takes the listening socket over: every connection
    /// is to end without a client ever having a request cut. HTTP/1.1
    /// answers its next request with `Connection: close` (a client then
    /// opens a new connection, which the other process accepts), a parked
    /// one closes now, HTTP/2 gets GOAWAY. Reversible: a failed hand-over
    /// goes back to `Serving`.
    Handover,
    /// Shutting down: every connection finishes what is in flight and closes.
    Stop,
}

/// Tells a connection what the server asks of it ([`DrainState`]).
#[derive(Clone)]
pub struct Drain(watch::Receiver<DrainState>);

impl Drain {
    /// Resolves when the server stops or hands over.
    pub async fn started(&mut self) {
        let _ = self.0.wait_for(|s| *s != DrainState::Serving).await;
    }

    /// Resolves when the server stops.
    pub async fn stopping(&mut self) {
        let _ = self.0.wait_for(|s| *s == DrainState::Stop).await;
    }

    pub fn state(&self) -> DrainState {
        *self.0.borrow()
    }
}

/// The server's side of [`Drain`]: what it asks of the connections it
/// accepted, and whether they have all ended.
pub struct Draining(watch::Sender<DrainState>);

impl Default for Draining {
    fn default() -> Draining {
        Draining(watch::Sender::new(DrainState::Serving))
    }
}

impl Draining {
    /// A new connection's side.
    pub fn drain(&self) -> Drain {
        Drain(self.0.subscribe())
    }

    pub fn set(&self, state: DrainState) {
        self.0.send_replace(state);
    }

    /// Connections accepted and not yet ended.
    pub fn open(&self) -> usize {
        self.0.receiver_count()
    }

    /// Waits at most `limit` for every connection to end; whether they did.
    pub async fn finished(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.0.closed()).await.is_ok()
    }
}

/// Why the server ended (or parked) a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Shutdown,
    Idle,
    Age,
    /// HTTP/1.1 between requests: hyper's connection is taken down, the
    /// socket stays (see `http_conn`).
    Park,
}

impl Connections {
    pub fn new(settings: Settings) -> Connections {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(settings.request_timeout);
        Connections {
            caps: ConnectionCaps::new(
                settings.max_connections,
                settings.max_per_network,
                settings.max_per_address,
            ),
            settings,
            h1,
            metrics: Counters::default(),
        }
    }

    /// The HTTP/2 settings, with `streams` running the connection's streams
    /// (one executor per connection: see `local_streams`).
    pub(crate) fn h2(&self, streams: Streams) -> http2::Builder<Streams> {
        let mut h2 = http2::Builder::new(streams);
        h2.timer(TokioTimer::new())
            .keep_alive_interval(Some(self.settings.request_timeout))
            .keep_alive_timeout(self.settings.request_timeout)
            .max_concurrent_streams(MAX_STREAMS)
            .max_send_buf_size(H2_SEND_BUFFER);
        h2
    }

    /// Accepts until `shutdown`, runs `handle` on each connection the total
    /// cap lets in, then calls `stop` and gives open connections `grace`.
    pub async fn accept<H, F>(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
        stop: impl FnOnce(),
        handle: H,
    ) where
        H: Fn(TcpStream, SocketAddr, Drain) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let draining = Draining::default();
        self.accept_until(&listener, &draining, shutdown, &handle)
            .await;
        drop(listener);
        stop();
        Connections::finish(&draining, grace).await;
    }

    /// Accepts on `listener` until `until` resolves (and gives its value),
    /// running `handle` on each connection the total cap lets in; the
    /// connections take their [`Drain`] from `draining`. The listener stays
    /// open: accepting can go on later (after a failed hand-over).
    pub async fn accept_until<H, F, T>(
        &self,
        listener: &TcpListener,
        draining: &Draining,
        until: impl Future<Output = T>,
        handle: &H,
    ) -> T
    where
        H: Fn(TcpStream, SocketAddr, Drain) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::pin!(until);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                done = &mut until => return done,
            };
            let slot = match self.caps.open() {
                Ok(slot) => slot,
                Err(cap) => {
                    self.refused(cap, peer.ip());
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            // The drain is taken now, so that shutdown also waits for
            // connections still before HTTP (a PROXY header, a handshake).
            // Boxed: a future moved into an async block and awaited there
            // is stored twice.
            let work = Box::pin(handle(tcp, peer, draining.drain()));
            tokio::spawn(async move {
                work.await;
                drop(slot);
            });
        }
    }

    /// Tells every connection to stop and gives them `grace` to finish.
    pub async fn finish(draining: &Draining, grace: Duration) {
        draining.set(DrainState::Stop);
        if !draining.finished(grace).await {
            tracing::warn!("grace period over; closing the remaining connections");
        }
    }

    /// Counts a connection from `client` against its network and address,
    /// or refuses it. A connection without a client address (a PROXY
    /// health check) or from a trusted HTTP proxy (it carries many clients)
    /// counts only in the total.
    pub fn admit(
        &self,
        client: Option<IpAddr>,
        http_proxies: &[Cidr],
    ) -> Result<Option<SourceSlot>, Refused> {
        let Some(ip) = client.filter(|ip| !Cidr::any(http_proxies, *ip)) else {
            return Ok(None);
        };
        self.caps
            .source(ip)
            .map(Some)
            .inspect_err(|cap| self.refused(*cap, ip))
    }

    pub(crate) fn parked(&self) -> Parked<'_> {
        self.metrics.parked.fetch_add(1, Relaxed);
        Parked(&self.metrics.parked)
    }

    pub(crate) fn count(&self, why: Ending) {
        if let Some(n) = self.metrics.ended.get(why as usize) {
            n.fetch_add(1, Relaxed);
        }
    }

    fn refused(&self, cap: Refused, ip: IpAddr) {
        self.metrics.refused[cap as usize].fetch_add(1, Relaxed);
        tracing::debug!(%ip, "connection refused at {cap}");
    }

    pub(crate) fn ended(&self, e: &(dyn std::error::Error + 'static)) {
        let timed_out = std::iter::successors(Some(e), |e| e.source()).any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
        if timed_out {
            self.metrics.write_timeouts.fetch_add(1, Relaxed);
        }
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }

    /// The connection families (see `metrics`).
    pub fn encode(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let open = self.caps.open_connections();
        metrics::gauge(e, "connections_open", "Open client connections.", open)?;
        let parked = self.metrics.parked.load(Relaxed);
        let help = "Idle HTTP/1.1 connections holding no HTTP state.";
        metrics::gauge(e, "connections_parked", help, parked)?;
        let refused = [Refused::Total, Refused::Network, Refused::Address].map(|cap| {
            let n = self.metrics.refused[cap as usize].load(Relaxed);
            ([("cap", cap.label())], n)
        });
        let help = "Connections closed at a cap.";
        metrics::counters(e, "connections_refused", help, refused)?;
        let closed = [
            ("shutdown", &self.metrics.ended[Ending::Shutdown as usize]),
            ("idle", &self.metrics.ended[Ending::Idle as usize]),
            ("max_age", &self.metrics.ended[Ending::Age as usize]),
            ("write_timeout", &self.metrics.write_timeouts),
        ]
        .map(|(reason, n)| ([("reason", reason)], n.load(Relaxed)));
        let help = "Connections the server closed, by reason.";
        metrics::counters(e, "connections_closed", help, closed)
    }
}

#[derive(Default)]
struct Counters {
    refused: [AtomicU64; 3],
    ended: [AtomicU64; 3],
    write_timeouts: AtomicU64,
    parked: AtomicU64,
}

/// Counts a connection as parked while it lives.
pub(crate) struct Parked<'a>(&'a AtomicU64);

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
