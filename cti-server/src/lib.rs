//! The HTTP service of Capture The IP: routes, pages and headers around the
//! game core, which it reaches only through `cti-ffi` (`libcti_core.so`).
//! The `cti-server` binary serves it over plain HTTP/1.1 and h2c; `cti-edge`
//! serves the same service behind TLS and the PROXY protocol.

pub mod activity;
pub mod assets;
pub mod caps;
pub mod checks;
pub mod cidr;
pub mod claim;
pub mod cli;
pub mod client_addr;
pub mod compat;
pub mod conn;
pub mod error;
pub mod game;
pub mod handover;
pub mod http_cache;
pub mod http_conn;
pub mod listen;
pub mod local_streams;
pub mod metrics;
pub mod negotiate;
pub mod notify;
pub mod operator;
pub mod query;
pub mod responses;
pub mod rewind;
pub mod route;
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
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Response body of every route (an event stream never fails either).
pub type Body = BoxBody<Bytes, Infallible>;

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// HTTP proxies whose forwarding header (the one named) is believed.
    pub trusted_proxies: client_addr::TrustedProxies,
    /// The database file, for the store's size in `/statusz` and core swaps.
    pub db_path: Option<PathBuf>,
    /// Connection caps and timeouts.
    pub connections: conn::Settings,
    /// Caps on `/api/stream` listeners.
    pub event_streams: stream::Caps,
    /// Applied to the store whenever it is opened again (a core swap).
    pub store_setup: Option<game::StoreSetup>,
}

/// The state every connection shares.
pub struct App {
    game: game::Game,
    pub config: Config,
    pub events: Arc<stream::Broadcaster>,
    pub requests: metrics::Requests,
    /// Open client connections, their caps and settings.
    pub connections: conn::Connections,
    pub started: Instant,
    json_cache: http_cache::JsonCache,
}

impl App {
    /// Wraps an open store. Its commit events feed `/api/stream`; inside a
    /// tokio runtime this also starts the stream's pings.
    pub fn new(store: cti_ffi::Store, config: Config) -> Arc<App> {
        let events = Arc::new(stream::Broadcaster::new(config.event_streams));
        let app = Arc::new(App {
            game: game::Game::new(
                store,
                config.db_path.clone(),
                events.clone(),
                config.store_setup.clone(),
            ),
            events,
            requests: metrics::Requests::default(),
            connections: conn::Connections::new(config.connections),
            started: Instant::now(),
            json_cache: http_cache::JsonCache::default(),
            config,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(ping(Arc::downgrade(&app)));
        }
        app
    }

    /// The store, once a core swap in progress is over (requests wait for
    /// it without holding a runtime thread); 503 in the one case there is
    /// none: a swap or hand-over that could reopen it with no core.
    pub async fn store_ready(&self) -> Result<Arc<cti_ffi::Store>, error::ApiError> {
        self.game.store().await.ok_or_else(not_open)
    }

    /// The store now, without waiting; 503 also during a core swap. For
    /// callers that must not wait (metrics); requests use `store_ready`.
    pub fn store(&self) -> Result<Arc<cti_ffi::Store>, error::ApiError> {
        self.game.store_now().ok_or_else(not_open)
    }

    /// The store and the core serving it.
    pub fn game(&self) -> &game::Game {
        &self.game
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

fn not_open() -> error::ApiError {
    error::ApiError::new(
        hyper::StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "The game's store is not open.",
    )
}

/// Keeps idle event streams (and proxies in between) from timing out.
async fn ping(app: std::sync::Weak<App>) {
    let mut tick = tokio::time::interval(stream::PING_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade() else { return };
        app.events.ping();
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
