//! The HTTP service of Capture The IP: routes, pages and headers around the
//! game core, which it reaches only through `cti-ffi` (`libcti_core.so`).
//! The `cti-server` binary serves it over plain HTTP/1.1 and h2c; `cti-edge`
//! serves the same service behind TLS and the PROXY protocol.

pub mod activity;
pub mod assets;
pub mod caps;
pub mod cidr;
pub mod cli;
pub mod client_addr;
pub mod conn;
pub mod error;
pub mod http_cache;
pub mod http_conn;
pub mod metrics;
pub mod negotiate;
pub mod rewind;
pub mod routes;
pub mod stream;
pub mod write_timeout;

pub use cidr::Cidr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Response body of every route (an event stream never fails either).
pub type Body = BoxBody<Bytes, Infallible>;

/// Most recent claims `/api/recent` gives.
pub const RECENT_MAX: u32 = 500;

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// HTTP proxies whose forwarding header (the one named) is believed.
    pub trusted_proxies: client_addr::TrustedProxies,
    /// Connection caps and timeouts.
    pub connections: conn::Settings,
    /// Caps on `/api/stream` listeners.
    pub event_streams: stream::Caps,
}

/// The state every connection shares.
pub struct App {
    store: Arc<cti_ffi::Store>,
    pub config: Config,
    pub events: stream::Broadcaster,
    pub requests: metrics::Requests,
    pub connections: conn::Connections,
}

impl App {
    /// Wraps an open store. Inside a tokio runtime this also starts the
    /// event-stream upkeep (pings, block-ownership events).
    pub fn new(store: cti_ffi::Store, config: Config) -> Arc<App> {
        let app = Arc::new(App {
            store: Arc::new(store),
            events: stream::Broadcaster::new(config.event_streams),
            requests: metrics::Requests::default(),
            connections: conn::Connections::new(config.connections),
            config,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(watch_blocks(Arc::downgrade(&app)));
        }
        app
    }

    pub fn store(&self) -> &cti_ffi::Store {
        &self.store
    }

    fn store_handle(&self) -> Arc<cti_ffi::Store> {
        self.store.clone()
    }

    /// Ends the event streams so that a graceful shutdown can finish.
    pub fn shutdown(&self) {
        self.events.close();
    }

    /// Accepts on `listener` and runs `handle` on each connection until
    /// `shutdown`; then ends the event streams and gives open connections
    /// `grace` (see [`conn::Connections::accept`]).
    pub async fn accept<H, F>(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
        handle: H,
    ) where
        H: Fn(tokio::net::TcpStream, SocketAddr, conn::Drain) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = || self.shutdown();
        self.connections
            .accept(listener, shutdown, grace, stop, handle)
            .await;
    }
}

/// Sends a `blocks` event when a block changes hands, and pings listeners.
async fn watch_blocks(app: std::sync::Weak<App>) {
    let mut last: Option<Vec<serde_json::Value>> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade() else { return };
        n += 1;
        if n.is_multiple_of(30) {
            app.events.ping();
        }
        if app.events.listeners() == 0 {
            last = None;
            continue;
        }
        let Ok(json) = app.store.blocks_json(None) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) else {
            continue;
        };
        let holders: Vec<serde_json::Value> = v["blocks"]
            .as_array()
            .map(|bs| {
                bs.iter()
                    .map(|b| serde_json::json!([b["holder"], b["tied"]]))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(prev) = &last {
            let changed: Vec<_> = (0..holders.len())
                .filter(|&i| prev.get(i) != holders.get(i))
                .map(|i| serde_json::json!({"block": i, "holder": holders[i][0], "tied": holders[i][1]}))
                .collect();
            if !changed.is_empty() {
                app.events.send(
                    "blocks",
                    &serde_json::json!({ "changed": changed }).to_string(),
                );
            }
        }
        last = Some(holders);
    }
}

/// One connection's service. `peer` is the address the transport vouches
/// for: the socket's, or the PROXY-protocol source; `None` when the
/// connection has no client address (a PROXY `LOCAL` health check).
pub fn service(app: &Arc<App>, peer: Option<SocketAddr>) -> Service {
    Service {
        app: app.clone(),
        peer: peer.map(|p| p.ip()),
    }
}

#[derive(Clone)]
pub struct Service {
    app: Arc<App>,
    peer: Option<IpAddr>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let (app, peer) = (self.app.clone(), self.peer);
        Box::pin(async move { Ok(routes::handle(&app, peer, req).await) })
    }
}

/// Serves plain HTTP/1.1 and h2c (told apart by the HTTP/2 preface) until
/// `shutdown` resolves, then lets open requests finish for up to `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let handle = |tcp, peer: SocketAddr, drain| {
        let app = app.clone();
        async move {
            let proxies = &app.config.trusted_proxies.ranges;
            let Ok(_source) = app.connections.admit(Some(peer.ip()), proxies) else {
                return;
            };
            let service = service(&app, Some(peer));
            app.connections.serve_http(tcp, None, service, drain).await;
        }
    };
    app.accept(listener, shutdown, grace, handle).await;
}
