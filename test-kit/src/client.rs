//! An HTTP/1.1 or HTTP/2 client over TCP or TLS (what ALPN chose), with
//! whatever bytes a test puts before it (a PROXY header), from a chosen
//! loopback address.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

/// The task driving a connection: finished when the connection ended,
/// with its error if it did not end cleanly.
pub type Connection = JoinHandle<Result<(), String>>;

/// A kept connection: HTTP/1.1 or HTTP/2.
pub enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// How to speak to the server after the TCP connection (and PROXY header).
pub enum Transport<'a> {
    /// TLS with this configuration; HTTP/2 if ALPN says so.
    Tls(&'a Arc<rustls::ClientConfig>),
    /// Plain HTTP/1.1, or HTTP/2 with prior knowledge (h2c).
    Plain { h2: bool },
}

/// A TCP connection to `to` from the loopback address `source` (so that
/// per-address caps tell clients apart).
pub async fn tcp_from(source: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let from: IpAddr = source.parse().expect("a source address");
    bound(Some(from), to)
        .await
        .unwrap_or_else(|e| panic!("{source} to {to}: {e}"))
}

async fn bound(from: Option<IpAddr>, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(to).await
}

/// TCP to `target` (from the local address `from`, if given), then
/// `header` (a PROXY header, or nothing), then `transport`, with the
/// connection's task spawned.
pub async fn connect(
    target: SocketAddr,
    from: Option<IpAddr>,
    header: &[u8],
    transport: Transport<'_>,
) -> Result<(Sender, Connection), String> {
    let mut tcp = bound(from, target).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).ok();
    tcp.write_all(header).await.map_err(|e| e.to_string())?;
    match transport {
        Transport::Plain { h2 } => http(tcp, h2).await,
        Transport::Tls(config) => {
            let tls = crate::tls::handshake(tcp, config).await?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            http(tls, h2).await
        }
    }
}

/// HTTP/2 (`h2`) or HTTP/1.1 over `io`, the connection task spawned.
pub async fn http<I>(io: I, h2: bool) -> Result<(Sender, Connection), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    if h2 {
        let executor = hyper_util::rt::TokioExecutor::new();
        let (send, conn) = hyper::client::conn::http2::handshake(executor, io)
            .await
            .map_err(|e| e.to_string())?;
        let task = tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) });
        Ok((Sender::Http2(send), task))
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        let task = tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) });
        Ok((Sender::Http1(send), task))
    }
}

impl Sender {
    /// Sends `method path` with `headers` (and `Host: localhost`); the body
    /// of the answer is left to the caller (an event stream never ends).
    pub async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let sent = match self {
            Sender::Http1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
            Sender::Http2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
        };
        sent.map_err(|e| e.to_string())
    }

    /// `GET path` with `headers`; see [`Sender::send`].
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        self.send(hyper::Method::GET, path, headers).await
    }

    /// `GET path` read to the end: status and body.
    pub async fn fetch(&mut self, path: &str) -> Result<(u16, Bytes), String> {
        let resp = self.get(path, &[]).await?;
        let status = resp.status().as_u16();
        Ok((status, body(resp).await?))
    }
}

/// The whole body of `resp`.
pub async fn body(resp: hyper::Response<hyper::body::Incoming>) -> Result<Bytes, String> {
    let collected = resp.into_body().collect().await;
    Ok(collected.map_err(|e| e.to_string())?.to_bytes())
}
