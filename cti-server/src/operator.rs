//! The operator listener (`--metrics`, or a passed `metrics` socket):
//! `GET /metrics` (Prometheus text), and `POST /admin/ACTION` answered by
//! the binary's admin handler (the edge swaps its core and re-execs) for
//! loopback peers only: anyone else gets 403 and nothing happens.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// What `GET /metrics` answers.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;
/// An admin answer: a status and a JSON body.
pub type AdminFuture = Pin<Box<dyn Future<Output = (StatusCode, String)> + Send>>;
/// Answers `POST /admin/ACTION` given `ACTION` and the request body.
pub type Admin = Arc<dyn Fn(String, Bytes) -> AdminFuture + Send + Sync>;

/// Largest admin request body (a file path).
const BODY_LIMIT: usize = 4096;

/// Connections that have asked an admin action, until they close (a
/// process about to exit lets them have their answer first).
#[derive(Clone, Default)]
pub struct AdminConnections(Arc<AtomicUsize>);

impl AdminConnections {
    /// Waits, at most `limit`, until no admin connection is open.
    pub async fn closed(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.0.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Serves the operator listener until the task ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: Render,
    admin: Option<Admin>,
    admins: AdminConnections,
) {
    use hyper_util::rt::TokioIo;
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (render, admin, admins) = (render.clone(), admin.clone(), admins.clone());
        tokio::spawn(async move {
            let asked = Arc::new(AtomicBool::new(false));
            let counted = asked.clone();
            let counter = admins.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (render, admin, asked, admins) =
                    (render.clone(), admin.clone(), asked.clone(), admins.clone());
                async move {
                    if req.uri().path().starts_with("/admin/") && !asked.swap(true, Relaxed) {
                        admins.0.fetch_add(1, Relaxed);
                    }
                    Ok::<_, Infallible>(answer(req, peer, &render, admin.as_ref()).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            if counted.load(Relaxed) {
                counter.0.fetch_sub(1, Relaxed);
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    peer: SocketAddr,
    render: &Render,
    admin: Option<&Admin>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path == "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from(render())));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        return r;
    }
    let Some(action) = path.strip_prefix("/admin/") else {
        return text(StatusCode::NOT_FOUND, "see /metrics\n");
    };
    let (status, json) = match admin {
        None => error(StatusCode::NOT_FOUND, "this program has no admin actions"),
        Some(_) if !loopback(peer.ip()) => error(
            StatusCode::FORBIDDEN,
            "admin actions are taken from loopback only",
        ),
        Some(_) if req.method() != Method::POST => {
            error(StatusCode::METHOD_NOT_ALLOWED, "admin actions are POSTed")
        }
        Some(admin) => match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
            Ok(body) => admin(action.to_string(), body.to_bytes()).await,
            Err(_) => error(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large"),
        },
    };
    let mut r = Response::new(Full::new(Bytes::from(json)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON error answer for an admin request.
pub fn error(status: StatusCode, message: &str) -> (StatusCode, String) {
    let json = serde_json::json!({ "result": "refused", "error": message });
    (status, json.to_string())
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

/// Loopback, also as an IPv4-mapped IPv6 address.
fn loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Starts the operator listener on `listener`, if there is one.
pub fn start(
    listener: Option<(tokio::net::TcpListener, SocketAddr)>,
    render: Render,
    admin: Option<Admin>,
    admins: AdminConnections,
) {
    let Some((listener, local)) = listener else {
        return;
    };
    tracing::info!("metrics on http://{local}/metrics");
    println!("metrics: http://{local}/metrics");
    tokio::spawn(serve(listener, render, admin, admins));
}
