//! The `cti-edge` binary as an operator runs it: the zero-config start
//! (self-signed certificate, printed URL and fingerprint), TLS 1.2 and 1.3
//! with ALPN and session resumption, SIGTERM finishing an in-flight response
//! and exiting 0, SIGHUP and file-change certificate reloads, the access log
//! with the balancer's unique id, `--help` and `--check-config`, connection
//! caps, and timeouts that cut slow clients (slowloris) while others are served.

use hyper::Version;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `cti-edge`, killed if the test ends early.
struct Edge {
    child: Option<Child>,
    addr: SocketAddr,
    /// The fingerprint it printed.
    fingerprint: String,
    banner: String,
    stderr: PathBuf,
}

impl Edge {
    /// Starts the binary in `dir` with `args` (and `CTI_LISTEN` on a free port).
    fn start(dir: &Path, args: &[&str]) -> Edge {
        let stderr = dir.join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_cti-edge"))
            .args(args)
            .current_dir(dir)
            .env("CTI_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        while !banner.contains("serving https://") {
            banner.clear();
            if out.read_line(&mut banner).unwrap() == 0 {
                let _ = child.kill();
                panic!(
                    "cti-edge printed no URL; stderr:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
        }
        let addr = banner
            .split("https://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap()
            .parse()
            .unwrap();
        let fingerprint = banner
            .split("SHA-256 ")
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches(')')
            .to_string();
        Edge {
            child: Some(child),
            addr,
            fingerprint,
            banner,
            stderr,
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Waits (bounded) for the process to exit.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "cti-edge did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Accepts exactly the certificate with the given SHA-256 (the printed one),
/// remembering the fingerprint of what the server presented.
#[derive(Debug)]
struct Pinned {
    want: Option<String>,
    seen: Mutex<Vec<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = sha256_hex(end_entity.as_ref());
        self.seen.lock().unwrap().push(fp.clone());
        match &self.want {
            Some(w) if *w != fp => Err(rustls::Error::General(format!("fingerprint {fp}"))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client(
    want: Option<&str>,
    version: &'static rustls::SupportedProtocolVersion,
    alpn: &[&[u8]],
) -> (Arc<rustls::ClientConfig>, Arc<Pinned>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pinned = Arc::new(Pinned {
        want: want.map(str::to_string),
        seen: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(pinned.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(config), pinned)
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Tls {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// One GET over `tls` in whichever HTTP version ALPN chose.
async fn get(tls: Tls, path: &str) -> (Version, String) {
    use http_body_util::{BodyExt, Empty};
    let io = hyper_util::rt::TokioIo::new(tls);
    let h2 = io.inner().get_ref().1.alpn_protocol() == Some(b"h2");
    let req = hyper::Request::get(format!("https://localhost{path}"))
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let version = resp.version();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (version, String::from_utf8_lossy(&body).into_owned())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn zero_config_serves_https_with_a_printed_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // No flags; only the port comes from CTI_LISTEN (8443 may be taken here).
    let edge = Edge::start(dir.path(), &[]);
    assert!(edge.banner.contains("self-signed"), "{}", edge.banner);
    assert_eq!(edge.fingerprint.len(), 32 * 3 - 1, "{}", edge.banner);
    assert!(
        dir.path().join("cti.db").exists(),
        "default --db is ./cti.db"
    );
    let fp = edge.fingerprint.clone();
    runtime().block_on(async move {
        // TLS 1.3 with HTTP/2 by ALPN, pinned to the printed fingerprint.
        let (config, pinned) = client(Some(&fp), &rustls::version::TLS13, &[b"h2", b"http/1.1"]);
        let tls = connect(edge.addr, &config).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(
            get(tls, "/api/ip").await,
            (Version::HTTP_2, r#"{"ip":"127.0.0.1"}"#.into())
        );
        assert_eq!(*pinned.seen.lock().unwrap(), vec![fp.clone()]);
        // The same config resumes the session (tickets in TLS 1.3).
        let again = connect(edge.addr, &config).await;
        assert_eq!(
            again.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );

        // TLS 1.2 with HTTP/1.1 only, resumed on the second connection too.
        let (config, _) = client(Some(&fp), &rustls::version::TLS12, &[b"http/1.1"]);
        let tls = connect(edge.addr, &config).await;
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_eq!(get(tls, "/api/ip").await.0, Version::HTTP_11);
        let again = connect(edge.addr, &config).await;
        assert_eq!(
            again.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );

        // A client pinned to another certificate refuses this one.
        let (config, _) = client(Some("00:11"), &rustls::version::TLS13, &[b"h2"]);
        let tcp = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
        let refused = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await;
        assert!(refused.is_err(), "the pin is checked");
    });
}

/// `GET /api/blocks` over HTTP/2 with a 1 KiB stream window: the 15 KiB
/// answer stays in flight until its body is read.
async fn stalled_blocks(
    addr: SocketAddr,
    fingerprint: &str,
) -> hyper::Response<hyper::body::Incoming> {
    use http_body_util::Empty;
    let (config, _) = client(Some(fingerprint), &rustls::version::TLS13, &[b"h2"]);
    let tls = connect(addr, &config).await;
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(1024)
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("https://localhost/api/blocks")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    send.send_request(req).await.unwrap()
}

#[test]
fn sigterm_stops_accepting_finishes_the_in_flight_response_and_exits_0() {
    use http_body_util::BodyExt;
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(dir.path(), &["--grace", "30"]);
    let (addr, fp) = (edge.addr, edge.fingerprint.clone());
    let rt = runtime();
    let resp = rt.block_on(stalled_blocks(addr, &fp));
    assert_eq!(resp.status(), 200);
    edge.signal("-TERM");
    // The listener closes at once; the process stays for the response.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        edge.running(),
        "exited with a response in flight:\n{}",
        edge.stderr()
    );
    let body = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
            .await
            .expect("body within 10 s")
            .expect("the whole body")
            .to_bytes()
    });
    let blocks: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(blocks["blocks"].as_array().unwrap().len(), 256);
    let started = Instant::now();
    let status = edge.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", edge.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited when the response was done, not at the end of the grace period"
    );
}

#[test]
fn sigint_with_a_stuck_client_exits_0_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(dir.path(), &["--grace", "1"]);
    let (addr, fp) = (edge.addr, edge.fingerprint.clone());
    let rt = runtime();
    let _resp = rt.block_on(stalled_blocks(addr, &fp));
    let started = Instant::now();
    edge.signal("-INT");
    let status = edge.wait(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", edge.stderr());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for the grace period: {:?}",
        started.elapsed()
    );
    assert!(
        edge.stderr().contains("grace period over"),
        "{}",
        edge.stderr()
    );
}

fn write_cert(dir: &Path, name: &str) -> String {
    let g = rcgen::generate_simple_self_signed(vec!["localhost".into(), name.into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), g.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), g.signing_key.serialize_pem()).unwrap();
    sha256_hex(g.cert.der())
}

/// The fingerprint of the certificate new connections get.
fn served(addr: SocketAddr) -> String {
    runtime().block_on(async {
        let (config, pinned) = client(None, &rustls::version::TLS13, &[b"h2"]);
        drop(connect(addr, &config).await);
        let seen = pinned.seen.lock().unwrap();
        seen.last().cloned().unwrap()
    })
}

fn set_modified(path: &Path, time: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

fn eventually(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn certificates_reload_on_sighup_and_on_file_change() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path(), "first.test");
    let edge = Edge::start(
        dir.path(),
        &["--tls-cert", "cert.pem", "--tls-key", "key.pem"],
    );
    assert_eq!(edge.fingerprint, first);
    assert!(!edge.banner.contains("self-signed"), "{}", edge.banner);
    assert_eq!(served(edge.addr), first);

    // New files with the old modification times, swapped in by rename: only
    // the signal can reveal them.
    let next = dir.path().join("next");
    std::fs::create_dir(&next).unwrap();
    let second = write_cert(&next, "second.test");
    let stamp = std::fs::metadata(dir.path().join("cert.pem"))
        .unwrap()
        .modified()
        .unwrap();
    for f in ["cert.pem", "key.pem"] {
        set_modified(&next.join(f), stamp);
        std::fs::rename(next.join(f), dir.path().join(f)).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(served(edge.addr), first, "unchanged times: no reload yet");
    edge.signal("-HUP");
    eventually("SIGHUP reload", Duration::from_secs(10), || {
        served(edge.addr) == second
    });

    // A plain rewrite is noticed by the file watch, without a signal. Its
    // modification time is set past the old one rather than waited for.
    let third = write_cert(dir.path(), "third.test");
    for f in ["cert.pem", "key.pem"] {
        set_modified(&dir.path().join(f), stamp + Duration::from_secs(1));
    }
    eventually("reload on change", Duration::from_secs(10), || {
        served(edge.addr) == third
    });

    // A broken key is refused and the current certificate stays.
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    edge.signal("-HUP");
    eventually("the failure logged", Duration::from_secs(10), || {
        edge.stderr().contains("certificate reload failed")
    });
    assert_eq!(served(edge.addr), third);
}

/// A PROXY v2 header for `src` with HAProxy's unique-id TLV.
fn v2_with_unique_id(src: [u8; 4], id: &[u8]) -> Vec<u8> {
    let mut payload: Vec<u8> = [src, [127, 0, 0, 1]].concat();
    payload.extend_from_slice(&4321u16.to_be_bytes());
    payload.extend_from_slice(&443u16.to_be_bytes());
    payload.push(0x05);
    payload.extend_from_slice(&(id.len() as u16).to_be_bytes());
    payload.extend_from_slice(id);
    let mut h = cti_edge::proxy::V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&payload);
    h
}

#[test]
fn access_log_names_the_client_and_the_balancers_unique_id() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(
        dir.path(),
        &["--proxy-from", "127.0.0.1", "--access-log", "--log-json"],
    );
    let mut s = TcpStream::connect(edge.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = v2_with_unique_id([198, 51, 100, 20], b"req-7f3a-0001");
    bytes.extend_from_slice(b"GET /api/ip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(&bytes).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains(r#"{"ip":"198.51.100.20"}"#), "{out}");
    let mut line = None;
    eventually("the access log line", Duration::from_secs(10), || {
        line = edge
            .stderr()
            .lines()
            .find(|l| l.contains("req-7f3a-0001"))
            .map(str::to_string);
        line.is_some()
    });
    let entry: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
    let fields = &entry["fields"];
    assert_eq!(entry["target"], "access");
    assert_eq!(fields["unique_id"], "req-7f3a-0001");
    assert_eq!(fields["client"], "198.51.100.20:4321");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["target"], "/api/ip");
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_cti-edge"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--listen", "CTI_LISTEN"),
        ("--db", "CTI_DB"),
        ("--proxy-from", "CTI_PROXY_FROM"),
        ("--tls-cert", "CTI_TLS_CERT"),
        ("--tls-key", "CTI_TLS_KEY"),
        ("--plain-http", "CTI_PLAIN_HTTP"),
        ("--proxy-timeout", "CTI_PROXY_TIMEOUT"),
        ("--handshake-timeout", "CTI_HANDSHAKE_TIMEOUT"),
        ("--request-timeout", "CTI_REQUEST_TIMEOUT"),
        ("--max-connections", "CTI_MAX_CONNECTIONS"),
        ("--max-per-source", "CTI_MAX_PER_SOURCE"),
        ("--grace", "CTI_GRACE"),
        ("--access-log", "CTI_ACCESS_LOG"),
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
        assert!(
            help.contains(&format!("env: {env}")),
            "{env} missing:\n{help}"
        );
    }
    assert!(help.contains("127.0.0.1:8443"), "{help}");
    assert!(help.contains("--check-config"), "{help}");
}

fn check_config(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cti-edge"))
        .arg("--check-config")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn check_config_accepts_good_settings_and_names_the_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let fp = write_cert(dir.path(), "ok.test");
    let tls = ["--tls-cert", "cert.pem", "--tls-key", "key.pem"];
    let (ok, text) = check_config(dir.path(), &tls);
    assert!(
        ok && text.contains("configuration ok") && text.contains(&fp),
        "{text}"
    );

    // A key that does not belong to the certificate.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    write_cert(&other, "other.test");
    let (ok, text) = check_config(
        dir.path(),
        &["--tls-cert", "cert.pem", "--tls-key", "other/key.pem"],
    );
    assert!(!ok, "mismatched key accepted: {text}");

    let (ok, text) = check_config(
        dir.path(),
        &["--tls-cert", "missing.pem", "--tls-key", "key.pem"],
    );
    assert!(!ok && text.contains("missing.pem"), "{text}");
    let (ok, text) = check_config(dir.path(), &["--proxy-timeout", "2"]);
    assert!(!ok && text.contains("at least 3"), "{text}");
    let (ok, text) = check_config(dir.path(), &["--proxy-from", "10.0.0.0/99"]);
    assert!(!ok && text.contains("10.0.0.0/99"), "{text}");
    let (ok, text) = check_config(dir.path(), &["--db", "no/such/dir/cti.db"]);
    assert!(!ok && text.contains("no/such/dir"), "{text}");
    let (ok, text) = check_config(dir.path(), &["--tls-cert", "cert.pem"]);
    assert!(
        !ok && text.contains("--tls-key"),
        "a certificate needs its key: {text}"
    );
}

/// A connection that sends `bytes` and then reads what comes back until
/// the edge answers or closes (bounded).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn proxied_get(src: &str) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 1000 443\r\nGET /api/ip HTTP/1.1\r\nHost: x\r\n\r\n")
        .into_bytes()
}

#[test]
fn connection_caps_per_client_address_and_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(
        dir.path(),
        &[
            "--proxy-from",
            "127.0.0.1",
            "--max-per-source",
            "2",
            "--max-connections",
            "4",
        ],
    );
    // Two kept-alive connections for one client address are its cap.
    let (a, r) = exchange(edge.addr, &proxied_get("198.51.100.30"));
    assert!(r.contains(r#"{"ip":"198.51.100.30"}"#), "{r}");
    let (b, r) = exchange(edge.addr, &proxied_get("198.51.100.30"));
    assert!(r.contains("200 OK"), "{r}");
    let (_, r) = exchange(edge.addr, &proxied_get("198.51.100.30"));
    assert_eq!(r, "", "a third connection for the same client is closed");
    let (c, r) = exchange(edge.addr, &proxied_get("198.51.100.31"));
    assert!(
        r.contains(r#"{"ip":"198.51.100.31"}"#),
        "another client is served: {r}"
    );
    let (d, r) = exchange(edge.addr, &proxied_get("198.51.100.32"));
    assert!(r.contains("200 OK"), "{r}");
    // Four open connections: the fifth is closed whoever it is for.
    let (_, r) = exchange(edge.addr, &proxied_get("198.51.100.33"));
    assert_eq!(r, "", "over the total cap");
    drop((a, b));
    eventually("a freed slot", Duration::from_secs(10), || {
        exchange(edge.addr, &proxied_get("198.51.100.30"))
            .1
            .contains("200 OK")
    });
    drop((c, d));
}

#[test]
fn idle_and_handshake_timeouts_close_connections() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(
        dir.path(),
        &[
            "--request-timeout",
            "1",
            "--idle-timeout",
            "1",
            "--handshake-timeout",
            "1",
        ],
    );
    let closes_within = |mut s: TcpStream, what: &str| {
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(5),
            "{what}: closed after {took:?}"
        );
    };
    // Idle after a kept-alive request.
    let (s, r) = exchange(edge.addr, b"GET /api/ip HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.contains("200 OK"), "{r}");
    closes_within(s, "idle keep-alive");
    // Request headers that never end.
    let mut s = TcpStream::connect(edge.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/ip HTTP/1.1\r\nHost: x\r\n").unwrap();
    closes_within(s, "unfinished request headers");
    // A TLS record start and then nothing.
    let mut s = TcpStream::connect(edge.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0x16, 0x03, 0x01]).unwrap();
    closes_within(s, "stalled TLS handshake");
    // A connection that sends nothing at all.
    let s = TcpStream::connect(edge.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    closes_within(s, "silent connection");
}

/// A TCP connection to `to` from the loopback address `source` (each kind of
/// slow client gets its own, so per-address caps do not mix them up).
async fn tcp_from(source: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `prefix` one byte every `gap` (then filler bytes) and never
/// finishes: returns how long the edge took to close the connection, or
/// `None` if it was still open after `limit`.
async fn dribble<S>(mut s: S, prefix: &[u8], gap: Duration, limit: Duration) -> Option<Duration>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut buf = [0u8; 512];
    for i in 0.. {
        if started.elapsed() > limit {
            return None;
        }
        let byte = prefix.get(i).copied().unwrap_or(b'a');
        if s.write_all(&[byte]).await.is_err() || s.flush().await.is_err() {
            return Some(started.elapsed());
        }
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {} // an error page, say: the close still has to come
            },
            _ = tokio::time::sleep(gap) => {}
        }
    }
    unreachable!()
}

#[test]
fn slowloris_on_header_handshake_and_request_is_cut_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(
        dir.path(),
        &[
            "--proxy-from",
            "127.0.0.2",
            "--proxy-timeout",
            "3",
            "--handshake-timeout",
            "2",
            "--request-timeout",
            "2",
        ],
    );
    let addr = edge.addr;
    let (http1, _) = client(None, &rustls::version::TLS13, &[b"http/1.1"]);
    let (any, _) = client(None, &rustls::version::TLS13, &[b"h2", b"http/1.1"]);
    let (gap, limit) = (Duration::from_millis(250), Duration::from_secs(12));
    runtime().block_on(async move {
        let mut slow = tokio::task::JoinSet::new();
        for _ in 0..16 {
            // A trusted balancer's PROXY header, a byte at a time.
            slow.spawn(async move {
                let s = tcp_from("127.0.0.2", addr).await;
                let header = b"PROXY TCP4 198.51.100.1 127.0.0.1 1000 443\r\n";
                ("PROXY header", 3, dribble(s, header, gap, limit).await)
            });
            // A TLS record announcing a 512-byte ClientHello, a byte at a time.
            slow.spawn(async move {
                let s = tcp_from("127.0.0.3", addr).await;
                let hello = [
                    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
                ];
                ("TLS handshake", 2, dribble(s, &hello, gap, limit).await)
            });
            // A finished handshake, then request headers a byte at a time.
            let config = http1.clone();
            slow.spawn(async move {
                let tcp = tcp_from("127.0.0.4", addr).await;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                    .unwrap();
                let request = b"GET /api/ip HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
                ("HTTP request", 2, dribble(tls, request, gap, limit).await)
            });
        }
        // Meanwhile a client elsewhere gets answers, a new TLS connection each.
        let mut served = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            let tcp = tcp_from("127.0.0.5", addr).await;
            let tls = tokio_rustls::TlsConnector::from(any.clone())
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let answer = tokio::time::timeout(Duration::from_secs(5), get(tls, "/api/ip"))
                .await
                .expect("a normal client waited over 5 s while slow clients held connections");
            assert_eq!(answer.1, r#"{"ip":"127.0.0.5"}"#);
            served += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served >= 10, "only {served} requests served in 4 s");
        while let Some(done) = slow.join_next().await {
            let (what, timeout, closed) = done.unwrap();
            let took = closed.unwrap_or_else(|| panic!("{what}: still open after {limit:?}"));
            let timeout = Duration::from_secs(timeout);
            assert!(
                took + Duration::from_millis(300) >= timeout
                    && took < timeout + Duration::from_secs(4),
                "{what}: closed after {took:?}, timeout {timeout:?}"
            );
        }
    });
    drop(edge);
}
