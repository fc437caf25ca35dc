//! An edge process as the upgrade tests run it: started with flags (its
//! JSON log in a file), its printed addresses, the operator listener's
//! admin actions and metrics, plain requests through PROXY headers, the
//! processes its re-execs started (stopped by pid), and a claim load of
//! keep-alive TLS clients. The test crate includes `examples/common` as
//! `common` next to this file.

#![allow(dead_code)] // each test file takes what it needs

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_kit::client::Transport;

/// A running edge (and the processes its re-execs started), stopped when
/// dropped.
pub struct Edge {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub log: PathBuf,
    /// Processes started by re-execs, to stop at the end.
    pub successors: Vec<u32>,
}

impl Edge {
    /// Starts `bin` in `dir` on ephemeral loopback ports with its operator
    /// listener, logging JSON at info to `dir/edge.log`.
    pub fn start(bin: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Edge {
        let log = dir.join("edge.log");
        let base = [
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--log-json",
        ];
        let mut child = Command::new(bin)
            .args(base)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            out.lines()
                .map_while(Result::ok)
                .for_each(|l| drop(tx.send(l)))
        });
        let (mut addr, mut metrics) = (None, None);
        while addr.is_none() || metrics.is_none() {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
                let _ = child.kill();
                panic!(
                    "the edge printed no addresses; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            addr = addr.or_else(|| after(&line, "serving https://"));
            metrics = metrics.or_else(|| after(&line, "metrics: http://"));
        }
        Edge {
            child: Some(child),
            addr: addr.unwrap(),
            metrics: metrics.unwrap(),
            log,
            successors: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `POST /admin/ACTION` with `body`: status and JSON answer.
    pub fn admin(&self, action: &str, body: &str) -> (u16, serde_json::Value) {
        let request = format!(
            "POST /admin/{action} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, body) = exchange(self.metrics, &[], &request);
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("admin answer {body:?} is not JSON: {e}"));
        (status, json)
    }

    pub fn metrics_text(&self) -> String {
        exchange(
            self.metrics,
            &[],
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .1
    }

    /// `GET path` in plain HTTP behind a PROXY v2 `LOCAL` header.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut local = cti_edge::proxy::V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        exchange(self.addr, &local, &request)
    }

    /// A claim for `nick` from `client` (named in a PROXY v2 header).
    pub fn claim(&self, client: Ipv4Addr, nick: &str) -> u16 {
        let request = format!(
            "GET /claim?name={nick} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        exchange(self.addr, &proxy_v2(client.into(), self.addr), &request).0
    }

    /// A `/statusz` line's value.
    pub fn statusz(&self, key: &str) -> String {
        let (status, text) = self.get("/statusz");
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {key} in /statusz:\n{text}"))
            .to_string()
    }

    /// The players' address counts as the store has them now.
    pub fn owned_by(&self, nick: &str) -> u64 {
        let (status, body) = self.get(&format!("/api/users/{nick}"));
        if status == 404 {
            return 0;
        }
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["claims"].as_u64().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until a log line's message contains `text`.
    pub fn wait_log(&self, text: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log_lines().into_iter().rev().find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
            }) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (bounded) for the first process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the edge did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, pid: u32, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {pid}");
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        for pid in &self.successors {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The address printed after `prefix` in `line`.
fn after(line: &str, prefix: &str) -> Option<SocketAddr> {
    line.split(prefix).nth(1)?.split('/').next()?.parse().ok()
}

/// Whether `pid` has ended (gone, or a zombie nobody reaped).
pub fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Waits (bounded) until `pid` has ended.
pub fn wait_ended(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !ended(pid) {
        assert!(Instant::now() < deadline, "process {pid} did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request on a new connection: `prefix` (a PROXY header), then
/// `request`; status and body.
fn exchange(addr: SocketAddr, prefix: &[u8], request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&[prefix, request.as_bytes()].concat()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The load: clients that claim over kept TLS connections.
#[derive(Default)]
pub struct Tally {
    /// Per client, the addresses acknowledged (2xx).
    pub acked: Vec<Mutex<Vec<Ipv4Addr>>>,
    pub answered: AtomicU64,
    /// Requests without a 2xx answer, with what happened.
    pub failed: Mutex<Vec<String>>,
    /// Connections that could not be opened.
    pub refused: AtomicU64,
    /// Connections the server ended (after `Connection: close`).
    pub reconnects: AtomicU64,
    /// Connections that ended without the server saying so.
    pub dropped: AtomicU64,
    /// Longest time a request took (a pause shows here), in microseconds.
    pub slowest_us: AtomicU64,
}

impl Tally {
    pub fn acked_total(&self) -> usize {
        self.acked.iter().map(|a| a.lock().unwrap().len()).sum()
    }
}

pub struct Load {
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The nick of client `i`.
pub fn nick(i: usize) -> String {
    format!("up{i}")
}

impl Load {
    /// `clients` clients, each one kept TLS connection opened with a PROXY
    /// v2 header from `10.0.0.(i+1)` (a trusted HTTP proxy), claiming a new
    /// address per request (`X-Forwarded-For`) for `up{i}`.
    pub fn start(edge: SocketAddr, clients: usize) -> Load {
        let tally = Arc::new(Tally {
            acked: (0..clients).map(|_| Mutex::default()).collect(),
            ..Tally::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (tally.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let config = test_kit::tls::load_client(&[b"http/1.1"]);
                let workers: Vec<_> = (0..clients)
                    .map(|i| {
                        let (t, s, config) = (t.clone(), s.clone(), config.clone());
                        tokio::spawn(async move { client(edge, i, &config, &t, &s).await })
                    })
                    .collect();
                for w in workers {
                    w.await.unwrap();
                }
            });
        });
        Load {
            tally,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits (bounded) until every client has `n` more claims acknowledged.
    pub fn progress(&self, n: usize, limit: Duration) {
        let start: Vec<usize> = self
            .tally
            .acked
            .iter()
            .map(|a| a.lock().unwrap().len())
            .collect();
        let deadline = Instant::now() + limit;
        while self
            .tally
            .acked
            .iter()
            .zip(&start)
            .any(|(a, s)| a.lock().unwrap().len() < s + n)
        {
            assert!(
                Instant::now() < deadline,
                "no progress; failed: {:?}",
                self.tally.failed.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the clients (each finishes its request in flight).
    pub fn stop(mut self) -> Arc<Tally> {
        self.stop.store(true, Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.tally.clone()
    }
}

/// The `k`th address client `i` claims: block `i + 1`, distinct for all.
fn address(i: usize, k: u32) -> Ipv4Addr {
    Ipv4Addr::from(((i as u32 + 1) << 24) | (k & 0xff_ffff))
}

async fn client(
    edge: SocketAddr,
    i: usize,
    config: &Arc<rustls::ClientConfig>,
    tally: &Tally,
    stop: &AtomicBool,
) {
    let proxy = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1));
    let header = proxy_v2(proxy, edge);
    let path = format!("/claim?name={}", nick(i));
    let mut k = 0u32;
    'connections: while !stop.load(Relaxed) {
        let (mut sender, ended) =
            match test_kit::client::connect(edge, None, &header, Transport::Tls(config)).await {
                Ok(c) => c,
                Err(e) => {
                    tally.refused.fetch_add(1, Relaxed);
                    tally.failed.lock().unwrap().push(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
        while !stop.load(Relaxed) {
            let ip = address(i, k);
            k += 1;
            let started = Instant::now();
            let xff = ip.to_string();
            let headers = [
                ("x-forwarded-for", xff.as_str()),
                ("accept", "application/json"),
            ];
            let answer = sender.get(&path, &headers).await;
            let (status, close) = match answer {
                Ok(resp) => {
                    let close = resp
                        .headers()
                        .get("connection")
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                    let status = resp.status().as_u16();
                    use http_body_util::BodyExt;
                    match resp.into_body().collect().await {
                        Ok(_) => (status, close),
                        Err(e) => {
                            tally.failed.lock().unwrap().push(format!("body: {e}"));
                            tally.dropped.fetch_add(1, Relaxed);
                            continue 'connections;
                        }
                    }
                }
                Err(e) => {
                    tally.failed.lock().unwrap().push(format!("request: {e}"));
                    tally.dropped.fetch_add(1, Relaxed);
                    continue 'connections;
                }
            };
            let took = started.elapsed().as_micros() as u64;
            tally.slowest_us.fetch_max(took, Relaxed);
            tally.answered.fetch_add(1, Relaxed);
            if (200..300).contains(&status) {
                tally.acked[i].lock().unwrap().push(ip);
            } else {
                tally
                    .failed
                    .lock()
                    .unwrap()
                    .push(format!("status {status}"));
            }
            if close {
                tally.reconnects.fetch_add(1, Relaxed);
                continue 'connections;
            }
            if ended.is_finished() {
                tally.dropped.fetch_add(1, Relaxed);
                tally
                    .failed
                    .lock()
                    .unwrap()
                    .push("the connection ended unasked".into());
                continue 'connections;
            }
        }
    }
}

/// A PROXY v2 header that says the client is `src` (port 40000).
fn proxy_v2(src: IpAddr, dst: SocketAddr) -> Vec<u8> {
    test_kit::proxy::v2_proxy(SocketAddr::new(src, 40000), dst, &[])
}
