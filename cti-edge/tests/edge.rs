//! The edge over real sockets: PROXY headers from a trusted source (valid,
//! hostile, split, sharing a write with the ClientHello), a header from an
//! untrusted source, TLS with HTTP/2, plain HTTP, and certificate reload.

mod common;

use common::{write_cert, InProcessEdge as EdgeServer};
use cti_edge::conn::PlainHttp;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use test_kit::proxy::{self, v2, PROXY, TCP4};
use test_kit::tls::Cert;

/// The address block of a TCP4 connection from `src`:1234 to 127.0.0.1:443.
fn v4(src: [u8; 4]) -> Vec<u8> {
    let src = SocketAddr::from((src, 1234));
    proxy::addresses(src, "127.0.0.1:443".parse().unwrap()).1
}

#[test]
fn trusted_balancer_headers_carry_the_client_address() {
    let e = EdgeServer::start(&["127.0.0.0/8"], PlainHttp::Allow, None);
    let r = e.plain_claim(b"PROXY TCP4 198.51.100.1 127.0.0.1 5555 443\r\n", "v1");
    assert!(
        r.contains("The land at 198.51.100.1 was claimed for v1."),
        "{r}"
    );
    let r = e.plain_claim(&v2(PROXY, TCP4, &v4([198, 51, 100, 2]), &[]), "v2");
    assert!(r.contains("198.51.100.2"), "{r}");
    let r = e.plain_claim(b"PROXY TCP6 ::ffff:198.51.100.3 ::1 5555 443\r\n", "mapped");
    assert!(r.contains("The land at 198.51.100.3 was claimed"), "{r}");
    let r = e.plain_claim(b"PROXY TCP6 2001:db8::1 ::1 5555 443\r\n", "six");
    assert!(r.contains("400") && r.contains("IPv6"), "{r}");
    let r = e.plain_claim(&proxy::v2_local(), "local");
    assert!(
        r.contains("400") && r.contains("no client address"),
        "LOCAL cannot claim: {r}"
    );
    let r = e.plain_claim(b"PROXY UNKNOWN\r\n", "unknown");
    assert!(r.contains("400"), "{r}");
    let mut s = TcpStream::connect(e.addr).unwrap();
    s.write_all(&proxy::v2_local()).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "a LOCAL health check reads: {out}"
    );
    assert_eq!(
        e.recent_ips(),
        ["198.51.100.3", "198.51.100.2", "198.51.100.1"]
    );
}

#[test]
fn hostile_headers_close_the_connection_without_effect() {
    let e = EdgeServer::start(&["127.0.0.0/8"], PlainHttp::Allow, None);
    let long_v1 = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120], b"\r\n"].concat();
    let mut bad_version = v2(PROXY, TCP4, &v4([198, 51, 100, 9]), &[]);
    bad_version[12] = 0x31;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "v1 without CRLF",
            b"PROXY TCP4 198.51.100.9 127.0.0.1 1 2\n".to_vec(),
        ),
        ("v1 over 107 bytes", long_v1),
        (
            "v1 bad address",
            b"PROXY TCP4 198.51.100.999 127.0.0.1 1 2\r\n".to_vec(),
        ),
        (
            "v1 +port",
            b"PROXY TCP4 198.51.100.9 127.0.0.1 +1 2\r\n".to_vec(),
        ),
        ("v2 bad version", bad_version),
        ("v2 bad command", v2(2, TCP4, &v4([198, 51, 100, 9]), &[])),
        (
            "v2 short of the addresses",
            v2(PROXY, TCP4, &v4([198, 51, 100, 9])[..6], &[]),
        ),
        (
            "v2 TLV overrun",
            v2(PROXY, TCP4, &v4([198, 51, 100, 9]), &[0x05, 0, 50, b'x']),
        ),
        (
            "v2 bad CRC32C",
            v2(
                PROXY,
                TCP4,
                &v4([198, 51, 100, 9]),
                &[0x03, 0, 4, 1, 2, 3, 4],
            ),
        ),
        ("no header from a trusted source", Vec::new()),
    ];
    for (what, header) in cases {
        let r = e.plain_claim(&header, "evil");
        assert!(!r.contains("HTTP/1.1 200"), "{what}: {r}");
    }
    let unix = e.plain_claim(&v2(PROXY, proxy::UNIX_STREAM, &[0u8; 216], &[]), "unix");
    assert!(
        unix.contains("400"),
        "AF_UNIX has no client address: {unix}"
    );
    assert!(e.recent_ips().is_empty(), "nothing was claimed");
}

#[test]
fn header_from_an_untrusted_source_is_refused() {
    let e = EdgeServer::start(&["10.0.0.0/8"], PlainHttp::Allow, None);
    let r = e.plain_claim(b"PROXY TCP4 198.51.100.1 127.0.0.1 5555 443\r\n", "spoof");
    assert!(r.is_empty(), "{r}");
    let r = e.plain_claim(&v2(PROXY, TCP4, &v4([198, 51, 100, 1]), &[]), "spoof2");
    assert!(r.is_empty(), "{r}");
    let r = e.plain_claim(b"", "direct");
    assert!(
        r.contains("The land at 127.0.0.1 was claimed for direct."),
        "direct clients still work: {r}"
    );
    assert_eq!(e.recent_ips(), ["127.0.0.1"]);
}

#[test]
fn split_header_and_slow_header() {
    let e = EdgeServer::start(&["127.0.0.0/8"], PlainHttp::Allow, None);
    let mut s = TcpStream::connect(e.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for part in [
        &b"PROXY TCP4 198.51"[..],
        b".100.4 127.0.0.1 1 2\r",
        b"\nGET /api/ip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        s.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains(r#"{"ip":"198.51.100.4"}"#), "{out}");
    // A header that never completes is cut by the timeout (3 s here).
    let mut slow = TcpStream::connect(e.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"PROXY TCP4 1.2").unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = slow.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(started.elapsed() < Duration::from_secs(9));
    // Meanwhile others are served.
    assert!(e
        .plain_claim(b"PROXY TCP4 198.51.100.5 127.0.0.1 1 2\r\n", "other")
        .contains("200"));
}

/// A TLS client over a socket whose first write carries `prefix` too (the
/// PROXY header and the ClientHello in one segment), speaking HTTP/2 and
/// accepting only `cert`.
fn tls_get(addr: SocketAddr, prefix: Vec<u8>, path: &str, cert: &Cert) -> (hyper::Version, String) {
    let pin = cert.fingerprint();
    test_kit::runtime().block_on(async move {
        let (config, _) = test_kit::tls::client(Some(&pin), &[], &[b"h2"]);
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let io = FirstWritePrefix { prefix, inner: tcp };
        let stream = test_kit::tls::handshake(io, &config).await.unwrap();
        let (mut sender, _) = test_kit::client::http(stream, true).await.unwrap();
        let resp = sender.get(path, &[]).await.unwrap();
        let version = resp.version();
        let body = test_kit::client::body(resp).await.unwrap();
        (version, String::from_utf8_lossy(&body).into_owned())
    })
}

/// Puts `prefix` in front of the first write.
struct FirstWritePrefix {
    prefix: Vec<u8>,
    inner: tokio::net::TcpStream,
}

impl tokio::io::AsyncRead for FirstWritePrefix {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for FirstWritePrefix {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.prefix.is_empty() {
            return std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        }
        // Blocking write of prefix + data in one syscall (test helper).
        let mut all = std::mem::take(&mut self.prefix);
        all.extend_from_slice(data);
        let mut std_stream = self.inner.try_clone_std();
        std_stream.write_all(&all)?;
        std::task::Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

trait TryCloneStd {
    fn try_clone_std(&self) -> std::mem::ManuallyDrop<std::net::TcpStream>;
}

impl TryCloneStd for tokio::net::TcpStream {
    /// A blocking view of the same socket, not closed on drop.
    fn try_clone_std(&self) -> std::mem::ManuallyDrop<std::net::TcpStream> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: the descriptor is open for as long as `self` is, and the
        // view is never dropped (ManuallyDrop), so it is closed once, by `self`.
        let view = unsafe { std::net::TcpStream::from_raw_fd(self.as_raw_fd()) };
        std::mem::ManuallyDrop::new(view)
    }
}

#[test]
fn http2_over_tls_with_the_header_and_client_hello_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::self_signed("one.test");
    let files = write_cert(dir.path(), &cert);
    let e = EdgeServer::start(&["127.0.0.0/8"], PlainHttp::Off, Some(files));
    let header = b"PROXY TCP4 198.51.100.7 127.0.0.1 1 2\r\n".to_vec();
    let (version, body) = tls_get(e.addr, header, "/claim?name=tls2", &cert);
    assert_eq!(version, hyper::Version::HTTP_2);
    assert!(body.contains("198.51.100.7"), "{body}");
    assert!(
        e.plain_claim(b"PROXY TCP4 198.51.100.8 127.0.0.1 1 2\r\n", "plain")
            .is_empty(),
        "plain HTTP is off"
    );
}

#[test]
fn certificate_reload_is_seen_by_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let first = Cert::self_signed("first.test");
    let files = write_cert(dir.path(), &first);
    let e = EdgeServer::start(&[], PlainHttp::Allow, Some(files));
    assert!(tls_get(e.addr, Vec::new(), "/api/ip", &first)
        .1
        .contains("127.0.0.1"));
    let before = e.tls.fingerprint();
    let cert = dir.path().join("cert.pem");
    let stamp = std::fs::metadata(&cert).unwrap().modified().unwrap();
    let second = Cert::self_signed("second.test");
    second.write(dir.path());
    // A rewrite within the same clock tick keeps the modification time, and
    // the reload looks at that time: set a later one instead of sleeping.
    for f in [cert, dir.path().join("key.pem")] {
        test_kit::tls::set_modified(&f, stamp + Duration::from_secs(1));
    }
    assert!(e.tls.reload_if_changed().unwrap());
    assert_ne!(e.tls.fingerprint(), before);
    assert!(
        tls_get(e.addr, Vec::new(), "/api/ip", &second)
            .1
            .contains("127.0.0.1"),
        "the new certificate is served"
    );
}

#[test]
fn redirect_mode_sends_plain_http_to_https() {
    let e = EdgeServer::start(&[], PlainHttp::Redirect, None);
    let r = e.plain_claim(b"", "x");
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    assert!(r.contains("Location: https://x/claim?name=x"), "{r}");
    assert!(e.recent_ips().is_empty());
}
