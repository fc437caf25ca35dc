//! Client pieces the edge's load tools and tests share: a TLS client for a
//! loopback edge with any certificate, PROXY v2 headers for synthetic
//! clients, and one GET over HTTP/1.1 or HTTP/2 on a kept connection.

#![allow(dead_code)] // each user takes what it needs

use http_body_util::{BodyExt, Empty};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Load generation on loopback against a self-signed server: the chain is
/// not checked, the handshake signatures are.
#[derive(Debug)]
pub struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration offering `alpn`, without session resumption
/// (each connection is a new client).
pub fn client_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A PROXY v2 `PROXY` header from `src` (IPv4 or IPv6) to `dst`.
pub fn proxy_v2(src: IpAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = cti_edge::proxy::V2_SIGNATURE.to_vec();
    let addresses = match (src, dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => [s.octets().to_vec(), d.octets().to_vec()],
        (IpAddr::V4(s), IpAddr::V6(d)) => {
            [s.to_ipv6_mapped().octets().to_vec(), d.octets().to_vec()]
        }
        (IpAddr::V6(s), IpAddr::V4(d)) => {
            [s.octets().to_vec(), d.to_ipv6_mapped().octets().to_vec()]
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => [s.octets().to_vec(), d.octets().to_vec()],
    };
    let family = if addresses[0].len() == 4 { 0x11 } else { 0x21 };
    let length = (2 * addresses[0].len() + 4) as u16;
    h.extend_from_slice(&[0x21, family]);
    h.extend_from_slice(&length.to_be_bytes());
    h.extend_from_slice(&addresses.concat());
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

/// A kept connection: HTTP/1.1 or HTTP/2, as ALPN chose.
pub enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>),
}

/// How to speak to the server after the TCP connection (and PROXY header).
pub enum Transport<'a> {
    /// TLS with this configuration; HTTP/2 if ALPN says so.
    Tls(&'a Arc<rustls::ClientConfig>),
    /// Plain HTTP/1.1, or HTTP/2 with prior knowledge (h2c).
    Plain { h2: bool },
}

/// TCP to `target` (from the local address `from`, if given), then
/// `header` (a PROXY header, or nothing), then `transport`. The connection
/// task is spawned; its end is reported on the returned receiver.
pub async fn connect(
    target: SocketAddr,
    from: Option<Ipv4Addr>,
    header: &[u8],
    transport: Transport<'_>,
) -> Result<(Sender, tokio::sync::oneshot::Receiver<()>), String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(ip) = from {
        socket
            .bind(SocketAddr::new(ip.into(), 0))
            .map_err(|e| e.to_string())?;
    }
    let mut tcp = socket.connect(target).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).ok();
    tcp.write_all(header).await.map_err(|e| e.to_string())?;
    match transport {
        Transport::Plain { h2 } => handshake(tcp, h2).await,
        Transport::Tls(config) => {
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            handshake(tls, h2).await
        }
    }
}

async fn handshake<I>(
    io: I,
    h2: bool,
) -> Result<(Sender, tokio::sync::oneshot::Receiver<()>), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let (ended, on_end) = tokio::sync::oneshot::channel();
    let sender = if h2 {
        let (send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
            let _ = ended.send(());
        });
        Sender::Http2(send)
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
            let _ = ended.send(());
        });
        Sender::Http1(send)
    };
    Ok((sender, on_end))
}

impl Sender {
    /// Sends `GET path`, returns the status and the response; the body is
    /// left to the caller (an event stream never ends).
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let mut req = hyper::Request::get(path).header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::<bytes::Bytes>::new()).unwrap();
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

    /// `GET path` read to the end: status and body.
    pub async fn fetch(&mut self, path: &str) -> Result<(u16, bytes::Bytes), String> {
        let resp = self.get(path, &[]).await?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}
