//! What the cti-edge tests share: the `cti-edge` binary run as an operator
//! runs it (its URL, certificate fingerprint, metrics and log), and the edge
//! in process over a store of its own. Clients come from `test_kit`.

#![allow(dead_code)] // each test file takes what it needs

use cti_edge::conn::{Edge, PlainHttp, Timeouts};
use cti_edge::tls::{Files, Tls};
use cti_server::{App, Config};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use test_kit::in_process::InProcess;
use test_kit::process::Running;

pub const BIN: &str = env!("CARGO_BIN_EXE_cti-edge");

/// A running `cti-edge` in a directory of its own (where its database and
/// any certificate files are), with its metrics listener when `--metrics`
/// is among the flags.
pub struct Binary {
    pub running: Running,
    pub addr: SocketAddr,
    /// The fingerprint of the certificate it printed.
    pub fingerprint: String,
    /// The line with its URL.
    pub banner: String,
    pub metrics: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl Binary {
    /// Runs it in a new directory where `files` are written first, with
    /// `CTI_LISTEN` on an ephemeral port, `RUST_LOG=info` and `args`.
    pub fn start(args: &[&str], files: &[(&str, &str)]) -> Binary {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Binary::start_in(dir, args)
    }

    /// As `start`, in `dir` as it is.
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Binary {
        let env = [("CTI_LISTEN", "127.0.0.1:0"), ("RUST_LOG", "info")];
        let mut prefixes = vec!["serving https://"];
        if args.contains(&"--metrics") {
            prefixes.push("metrics: http://");
        }
        let running = Running::start(BIN, dir.path(), args, &env, &prefixes);
        let banner = running.lines[0].clone();
        let fingerprint = banner
            .split("SHA-256 ")
            .nth(1)
            .unwrap_or_else(|| panic!("no fingerprint in {banner}"))
            .trim()
            .trim_end_matches(')')
            .to_string();
        Binary {
            addr: running.addrs[0],
            metrics: running.addrs.get(1).copied(),
            running,
            fingerprint,
            banner,
            dir,
        }
    }

    /// The metric sample `name` (labels included).
    pub fn metric(&self, name: &str) -> u64 {
        test_kit::metrics::metric(self.metrics.expect("started with --metrics"), name)
    }

    pub fn stderr(&self) -> String {
        self.running.stderr()
    }
}

/// Runs `cti-edge --check-config args` in `dir`: success, and what it said.
pub fn check_config(dir: &Path, args: &[&str]) -> (bool, String) {
    test_kit::process::output(BIN, dir, &[&["--check-config"], args].concat())
}

/// The edge in process: PROXY headers from `trusted`, `plain` HTTP, and the
/// certificate `files` (self-signed when `None`); claim limits off.
pub struct InProcessEdge {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    pub tls: Arc<Tls>,
    _server: InProcess<Arc<App>>,
    _dir: tempfile::TempDir,
}

impl InProcessEdge {
    pub fn start(trusted: &[&str], plain: PlainHttp, files: Option<Files>) -> InProcessEdge {
        let dir = tempfile::tempdir().unwrap();
        let store = cti_ffi::Store::open(dir.path().join("edge.db")).unwrap();
        store.set_limits(cti_ffi::Limits::OFF).unwrap();
        let tls = Arc::new(Tls::new(files).unwrap());
        let proxy_from = trusted.iter().map(|c| c.parse().unwrap()).collect();
        let mut config = Config::default();
        config.connections.request_timeout = Duration::from_secs(5);
        config.connections.max_connections = 1000;
        config.connections.max_per_address = 100;
        let for_edge = tls.clone();
        let server = InProcess::start("127.0.0.1:0", move |listener, shutdown| {
            let app = App::new(store, config);
            let edge = Arc::new(Edge {
                app: app.clone(),
                tls: for_edge,
                proxy_from,
                plain,
                timeouts: Timeouts {
                    proxy_header: Duration::from_secs(3),
                    handshake: Duration::from_secs(3),
                },
                metrics: Default::default(),
                access_log: false,
                hsts: None,
            });
            let grace = Duration::from_secs(2);
            (app, cti_edge::conn::serve(listener, edge, shutdown, grace))
        });
        InProcessEdge {
            addr: server.addr,
            app: server.state.clone(),
            tls,
            _server: server,
            _dir: dir,
        }
    }

    /// The addresses of the recent claims, newest first.
    pub fn recent_ips(&self) -> Vec<String> {
        let store = self.app.store().unwrap();
        let v: serde_json::Value = serde_json::from_str(&store.recent_json(500).unwrap()).unwrap();
        v["claims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["ip"].as_str().unwrap().to_string())
            .collect()
    }

    /// Writes `prefix` then a plain claim request; returns what came back.
    pub fn plain_claim(&self, prefix: &[u8], nick: &str) -> String {
        let request = format!(
            "GET /claim?name={nick} HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        );
        exchange_to_close(self.addr, &[prefix, request.as_bytes()].concat())
    }
}

/// Writes `bytes` (a write the edge refuses is fine) and reads until the
/// close: what came back, possibly nothing.
pub fn exchange_to_close(addr: SocketAddr, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `cert` into `dir`; the edge's files for it.
pub fn write_cert(dir: &Path, cert: &test_kit::tls::Cert) -> Files {
    cert.write(dir);
    Files {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

/// A connection that sends `bytes` and reads once: what the edge answered
/// first ("" if it closed instead); the connection stays open.
pub fn first_answer(addr: SocketAddr, bytes: &[u8]) -> (std::net::TcpStream, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}
