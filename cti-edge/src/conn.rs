//! One connection through the edge: the PROXY header from a trusted balancer
//! (refused from anyone else), then TLS or plain HTTP told apart by the first
//! byte (0x16 opens a TLS handshake), then the `cti-server` service with the
//! real client address.

use crate::metrics::Header;
use crate::proxy::{self, ProxyError};
use crate::small_reads::SmallReads;
use crate::tls::Tls;
use cti_server::caps::Refused;
use cti_server::conn::Drain;
use cti_server::http_conn::Protocol;
use cti_server::rewind::Rewind;
use cti_server::{App, Cidr};
use hyper::header::HeaderValue;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// The timeouts before HTTP; the rest are the shared connection settings
/// (`App::connections`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the PROXY header from a balancer.
    pub proxy_header: Duration,
    /// For the TLS handshake (and for the first bytes of a connection).
    pub handshake: Duration,
}

pub struct Edge {
    pub app: Arc<App>,
    pub tls: Arc<Tls>,
    /// Load balancers that must send a PROXY header.
    pub proxy_from: Vec<Cidr>,
    pub plain: PlainHttp,
    pub timeouts: Timeouts,
    pub metrics: Arc<crate::metrics::EdgeMetrics>,
    /// Log every request (with the balancer's unique id, when it sends one).
    pub access_log: bool,
    /// `Strict-Transport-Security` for HTTPS answers while the certificate
    /// is not self-signed; `None` to send none.
    pub hsts: Option<HeaderValue>,
}

impl Edge {
    /// The HSTS value for `max_age` seconds (0: none).
    pub fn hsts(max_age: u64) -> Option<HeaderValue> {
        (max_age > 0)
            .then(|| format!("max-age={max_age}"))
            .and_then(|v| HeaderValue::try_from(v).ok())
    }
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

/// The `cti-server` service, with what only the edge adds: the access log
/// line (when `who` is set) and HSTS over TLS.
#[derive(Clone)]
struct EdgeService {
    inner: cti_server::Service,
    who: Option<Who>,
    hsts: Option<HeaderValue>,
}

type Inner = cti_server::Service;
type Req = hyper::Request<hyper::body::Incoming>;

impl hyper::service::Service<Req> for EdgeService {
    type Response = <Inner as hyper::service::Service<Req>>::Response;
    type Error = std::convert::Infallible;
    type Future = <Inner as hyper::service::Service<Req>>::Future;

    fn call(&self, req: Req) -> Self::Future {
        if self.who.is_none() && self.hsts.is_none() {
            return self.inner.call(req);
        }
        let (who, hsts) = (self.who.clone(), self.hsts.clone());
        let (method, version) = (req.method().clone(), req.version());
        let target = who.as_ref().map(|_| {
            req.uri()
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.to_string())
        });
        let started = std::time::Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut response = answer.await?;
            if let Some(hsts) = hsts {
                response
                    .headers_mut()
                    .insert(hyper::header::STRICT_TRANSPORT_SECURITY, hsts);
            }
            if let Some(who) = who {
                tracing::info!(
                    target: "access",
                    client = %who.client.map_or_else(|| "-".to_string(), |c| c.to_string()),
                    unique_id = who.unique_id.as_deref().unwrap_or("-"),
                    %method,
                    target = %target.unwrap_or_default(),
                    version = ?version,
                    status = response.status().as_u16(),
                    micros = started.elapsed().as_micros() as u64,
                    "request"
                );
            }
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
    #[error("refused at {0}")]
    Cap(#[from] Refused),
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
    let handler = |tcp, peer, drain| handle(edge.clone(), tcp, peer, drain);
    edge.app.accept(listener, shutdown, grace, handler).await;
}

/// Serves one accepted connection to its end.
pub async fn handle(edge: Arc<Edge>, tcp: TcpStream, peer: SocketAddr, drain: Drain) {
    if let Err(e) = connection(&edge, drain, tcp, peer).await {
        tracing::debug!(%peer, error = %e, "connection closed");
    }
}

async fn connection(
    edge: &Edge,
    drain: Drain,
    mut tcp: TcpStream,
    peer: SocketAddr,
) -> Result<(), ConnError> {
    let trusted = Cidr::any(&edge.proxy_from, peer.ip());
    let (who, mut head) = if trusted {
        let (header, rest) = proxy::read(&mut tcp, edge.timeouts.proxy_header)
            .await
            .inspect_err(|e| edge.metrics.proxy_refused(e))?;
        edge.metrics
            .proxy_ok(match (header.source, header.version) {
                (None, _) => Header::Local,
                (_, 1) => Header::V1,
                _ => Header::V2,
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
    // The client counts against its network and address (a proxied client
    // against its own, a health check only in the total).
    let connections = &edge.app.connections;
    let http_proxies = &edge.app.config.trusted_proxies.ranges;
    let _source = connections.admit(who.client.map(|c| c.ip()), http_proxies)?;
    first_bytes(&mut tcp, &mut head, edge.timeouts.handshake).await?;
    if !trusted && proxy::looks_like_header(&head) {
        edge.metrics.untrusted_header();
        return Err(ConnError::UntrustedHeader(peer));
    }
    let tls = head.first() == Some(&0x16);
    let io = Rewind::new(head, tcp);
    let service = |hsts| EdgeService {
        inner: cti_server::service(&edge.app, who.client),
        who: edge.access_log.then(|| who.clone()),
        hsts,
    };
    if tls {
        // Boxed: the TLS state (1.2 KiB) is then not copied into every
        // future that serves the connection, nor kept in this one.
        let acceptor = edge.tls.acceptor();
        let accept = Box::pin(async move { acceptor.accept(io).await.map(Box::new) });
        let stream = tokio::time::timeout(edge.timeouts.handshake, accept)
            .await
            .map_err(|_| ConnError::Handshake("timed out".into()))
            .and_then(|r| r.map_err(|e| ConnError::Handshake(e.to_string())))
            .inspect_err(|_| {
                edge.metrics.tls_failures.fetch_add(1, Relaxed);
            })?;
        edge.metrics.tls_handshakes.fetch_add(1, Relaxed);
        let hsts = edge.hsts.clone().filter(|_| !edge.tls.self_signed());
        let protocol = Protocol::from_alpn(stream.get_ref().1.alpn_protocol());
        let stream = SmallReads(stream);
        let serve = connections.serve_http(stream, protocol, service(hsts), drain);
        Box::pin(serve).await;
        return Ok(());
    }
    match edge.plain {
        PlainHttp::Allow => Box::pin(connections.serve_http(io, None, service(None), drain)).await,
        PlainHttp::Redirect => redirect(io, connections.settings.request_timeout).await?,
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
        while head.is_empty()
            || (proxy::looks_like_header(head) && head.len() < proxy::V2_SIGNATURE.len())
        {
            head.reserve(2048);
            if tcp.read_buf(head).await? == 0 {
                return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        Ok(())
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| ConnError::Silent(limit))?
}

/// Answers one plain request with a permanent redirect to HTTPS.
async fn redirect<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
    limit: Duration,
) -> Result<(), ConnError> {
    let mut buf = Vec::new();
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            buf.reserve(1024);
            if io.read_buf(&mut buf).await? == 0 {
                break;
            }
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
