//! What the HTTP tests share: an in-process server on a loopback ephemeral
//! port with a real store in a temp dir, raw HTTP/1.1 exchanges over TCP (so
//! no client library hides the bytes), and a parsed reply.

#![allow(dead_code)]

use cti_server::{App, Config};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

pub const JSON: &str = "Accept: application/json";

pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Rate limits off: tests claim as fast as they like.
pub const NO_LIMITS: cti_ffi::Limits = cti_ffi::Limits {
    per_address_per_minute: 0,
    per_address_burst: 0,
    per_net24_per_minute: 0,
    per_net24_burst: 0,
};

impl Server {
    /// Serves on `bind` (e.g. `127.0.0.1:0` or `[::1]:0`).
    pub fn start_on(bind: &str, config: Config, limits: Option<cti_ffi::Limits>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("http.db");
        let store = cti_ffi::Store::open(&db).unwrap();
        store.set_limits(limits.unwrap_or(NO_LIMITS)).unwrap();
        let config = Config {
            db_path: Some(db),
            ..config
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let bind = bind.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&bind).await.unwrap();
                let app = App::new(store, config);
                ready_tx
                    .send((listener.local_addr().unwrap(), app.clone()))
                    .unwrap();
                cti_server::serve(
                    listener,
                    app,
                    async { drop(stopped.await) },
                    Duration::from_secs(2),
                )
                .await;
            });
        });
        let (addr, app) = ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            addr,
            app,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn start(config: Config, limits: Option<cti_ffi::Limits>) -> Server {
        Server::start_on("127.0.0.1:0", config, limits)
    }

    pub fn plain() -> Server {
        Server::start(Config::default(), None)
    }

    /// Sends `bytes` as they are and reads until the server closes.
    pub fn send(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        buf
    }

    /// A raw HTTP/1.1 request with `Host` and `Connection: close` added.
    pub fn raw(&self, request_line: &str, headers: &[&str]) -> Reply {
        let mut req = format!(
            "{request_line}\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        Reply::parse(&self.send(req.as_bytes()))
    }

    pub fn get(&self, path: &str, headers: &[&str]) -> Reply {
        self.raw(&format!("GET {path} HTTP/1.1"), headers)
    }

    pub fn head(&self, path: &str, headers: &[&str]) -> Reply {
        self.raw(&format!("HEAD {path} HTTP/1.1"), headers)
    }

    /// Claims committed to the store so far, from the core's own counters.
    pub fn claims_committed(&self) -> u64 {
        let stats: serde_json::Value =
            serde_json::from_str(&self.app.store().unwrap().stats_json().unwrap()).unwrap();
        stats["claims_committed"].as_u64().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn parse(raw: &[u8]) -> Reply {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
        let head = std::str::from_utf8(&raw[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
        {
            body = dechunk(&body);
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + n]);
        b = &b[end + 4 + n..];
    }
}
