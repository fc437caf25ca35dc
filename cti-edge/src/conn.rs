//! One connection through the edge: the PROXY header from a trusted balancer
//! (refused from anyone else), then TLS or plain HTTP told apart by the first
//! byte (0x16 opens a TLS handshake), then the `cti-server` service with the
//! real client address.

use crate::limits::{Limits, Timeouts};
use crate::proxy::{self, ProxyError};
use crate::rewind::Rewind;
use crate::tls::Tls;
use cti_server::{App, Cidr};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What to do with plain HTTP (a first byte other than 0x16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlainHttp {
    /// Serve it like HTTPS (many claim scripts use http://).
    Allow,
    /// Answer every request with a redirect to https://.
    Redirect,
    /// Close the connection.
    Off,
}

pub struct Edge {
    pub app: Arc<App>,
    pub tls: Arc<Tls>,
    /// Load balancers that must send a PROXY header.
    pub proxy_from: Vec<Cidr>,
    pub plain: PlainHttp,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub metrics: crate::metrics::EdgeMetrics,
    /// Log every request (with the balancer's unique id, when it sends one).
    pub access_log: bool,
}

/// Who a connection is for, as far as the edge knows.
#[derive(Debug, Clone)]
struct Who {
    /// The client address: the PROXY source, or the socket's peer; `None`
    /// for a `LOCAL`/`UNKNOWN` header (a health check).
    client: Option<SocketAddr>,
    /// The balancer's unique-id TLV (HAProxy `proxy-v2-options unique-id`).
    unique_id: Option<Arc<str>>,
}

/// The `cti-server` service, logging each request when `who` is set.
#[derive(Clone)]
struct Logged {
    inner: cti_server::Service,
    who: Option<Who>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Logged {
    type Response = <cti_server::Service as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Response;
    type Error = std::convert::Infallible;
    type Future = <cti_server::Service as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Future;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let Some(who) = self.who.clone() else {
            return self.inner.call(req);
        };
        let (method, version) = (req.method().clone(), req.version());
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.to_string());
        let started = std::time::Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await?;
            tracing::info!(
                target: "access",
                client = %who.client.map_or_else(|| "-".to_string(), |c| c.to_string()),
                unique_id = who.unique_id.as_deref().unwrap_or("-"),
                %method,
                target = %target,
                version = ?version,
                status = response.status().as_u16(),
                micros = started.elapsed().as_micros() as u64,
                "request"
            );
            Ok(response)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("PROXY header: {0}")]
    Proxy(#[from] ProxyError),
    #[error("a PROXY header from {0}, which is not a trusted balancer")]
    UntrustedHeader(SocketAddr),
    #[error("too many connections from {0}")]
    SourceCap(std::net::IpAddr),
    #[error("TLS handshake: {0}")]
    Handshake(String),
    #[error("no data within {0:?}")]
    Silent(Duration),
    #[error("plain HTTP is turned off")]
    PlainOff,
    #[error("reading: {0}")]
    Io(#[from] std::io::Error),
}

/// Accepts until `shutdown`, then gives open requests `grace` to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    edge: Arc<Edge>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(slot) = edge.limits.open() else {
                    edge.metrics.refused_at_cap.fetch_add(1, Relaxed);
                    tracing::warn!(%peer, "connection cap reached; closing");
                    continue;
                };
                // Subscribed now, so that shutdown also waits for connections
                // still in their PROXY header or TLS handshake.
                let (edge, watcher) = (edge.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let _open = edge.app.connections.open();
                    edge.metrics.open.fetch_add(1, Relaxed);
                    if let Err(e) = connection(&edge, watcher, tcp, peer).await {
                        tracing::debug!(%peer, error = %e, "connection closed");
                    }
                    edge.metrics.open.fetch_sub(1, Relaxed);
                    drop(slot);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    edge.app.shutdown();
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing the remaining connections");
    }
}

async fn connection(
    edge: &Edge,
    watcher: Watcher,
    mut tcp: TcpStream,
    peer: SocketAddr,
) -> Result<(), ConnError> {
    let _ = tcp.set_nodelay(true);
    let trusted = Cidr::any(&edge.proxy_from, peer.ip());
    let (who, mut head) = if trusted {
        let (header, rest) = proxy::read(&mut tcp, edge.timeouts.proxy_header)
            .await
            .inspect_err(|e| edge.metrics.proxy_refused(crate::metrics::reason(e)))?;
        edge.metrics
            .proxy_ok(match (header.source, header.version) {
                (None, _) => "local",
                (_, 1) => "v1",
                _ => "v2",
            });
        tracing::debug!(%peer, client = ?header.source, unique_id = header.unique_id.as_deref().unwrap_or("-"), version = header.version, "PROXY header");
        let who = Who {
            client: header.source,
            unique_id: header.unique_id.map(Arc::from),
        };
        (who, rest)
    } else {
        let who = Who {
            client: Some(peer),
            unique_id: None,
        };
        (who, Vec::new())
    };
    let client = who.client;
    // A health check (LOCAL) has no client; a proxied client counts against its own cap.
    let _source = match client {
        Some(c) => Some(
            edge.limits
                .source(c.ip())
                .ok_or(ConnError::SourceCap(c.ip()))?,
        ),
        None => None,
    };
    first_bytes(&mut tcp, &mut head, edge.timeouts.handshake).await?;
    if !trusted && proxy::looks_like_header(&head) {
        edge.metrics.proxy_refused("untrusted_source");
        return Err(ConnError::UntrustedHeader(peer));
    }
    let tls = head.first() == Some(&0x16);
    let io = Rewind::new(head, tcp);
    if tls {
        let accept = edge.tls.acceptor().accept(io);
        let stream = tokio::time::timeout(edge.timeouts.handshake, accept)
            .await
            .map_err(|_| ConnError::Handshake("timed out".into()))
            .and_then(|r| r.map_err(|e| ConnError::Handshake(e.to_string())))
            .inspect_err(|_| {
                edge.metrics.tls_failures.fetch_add(1, Relaxed);
            })?;
        edge.metrics.tls_handshakes.fetch_add(1, Relaxed);
        serve_http(edge, watcher, stream, who).await;
        return Ok(());
    }
    match edge.plain {
        PlainHttp::Allow => serve_http(edge, watcher, io, who).await,
        PlainHttp::Redirect => redirect(io, edge.timeouts.request).await?,
        PlainHttp::Off => return Err(ConnError::PlainOff),
    }
    Ok(())
}

/// Reads until it is clear whether the stream starts with a PROXY header:
/// one byte of TLS, or enough bytes to rule the header out (or in).
async fn first_bytes(
    tcp: &mut TcpStream,
    head: &mut Vec<u8>,
    limit: Duration,
) -> Result<(), ConnError> {
    let work = async {
        let mut chunk = [0u8; 2048];
        while head.is_empty()
            || (proxy::looks_like_header(head) && head.len() < proxy::V2_SIGNATURE.len())
        {
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| ConnError::Silent(limit))?
}

async fn serve_http<S>(edge: &Edge, watcher: Watcher, io: S, who: Who)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.timeouts.request);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(edge.timeouts.request))
        .keep_alive_timeout(edge.timeouts.request)
        .max_concurrent_streams(256);
    let service = Logged {
        inner: cti_server::service(&edge.app, who.client),
        who: edge.access_log.then_some(who.clone()),
    };
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(client = ?who.client, error = %e, "HTTP connection ended");
    }
}

/// Answers one plain request with a permanent redirect to HTTPS.
async fn redirect<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    limit: Duration,
) -> Result<(), ConnError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| ConnError::Silent(limit))??;
    let text = String::from_utf8_lossy(&buf);
    let target = text.split_whitespace().nth(1).unwrap_or("/");
    let path = if target.starts_with('/') { target } else { "/" };
    let host = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim())
        })
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let location = format!("https://{host}{path}");
    let reply = format!(
        "HTTP/1.1 308 Permanent Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    io.write_all(reply.as_bytes()).await?;
    io.shutdown().await?;
    Ok(())
}
