//! What the cti-server tests share: the service in process on a loopback
//! ephemeral port with a real store in a temp dir, spoken to in raw HTTP/1.1
//! (`test_kit::http`), and the `cti-server` binary run as an operator runs it.

#![allow(dead_code)] // each test file takes what it needs

use cti_server::{App, Config};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use test_kit::in_process::InProcess;
use test_kit::process::Running;

pub use test_kit::http::Reply;

pub const JSON: &str = "Accept: application/json";

/// The service in process, over a store of its own.
pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    _server: InProcess<Arc<App>>,
    _dir: tempfile::TempDir,
}

/// Rate limits off: tests claim as fast as they like.
pub const NO_LIMITS: cti_ffi::Limits = cti_ffi::Limits::OFF;

impl Server {
    /// Serves on `bind` (e.g. `127.0.0.1:0` or `[::1]:0`) with the claim
    /// `limits` (none when `None`).
    pub fn start_on(bind: &str, config: Config, limits: Option<cti_ffi::Limits>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("http.db");
        let store = cti_ffi::Store::open(&db).unwrap();
        store.set_limits(limits.unwrap_or(NO_LIMITS)).unwrap();
        let config = Config {
            db_path: Some(db),
            ..config
        };
        let server = InProcess::start(bind, move |listener, shutdown| {
            let app = App::new(store, config);
            let serving =
                cti_server::serve(listener, app.clone(), shutdown, Duration::from_secs(2));
            (app, serving)
        });
        Server {
            addr: server.addr,
            app: server.state.clone(),
            _server: server,
            _dir: dir,
        }
    }

    pub fn start(config: Config, limits: Option<cti_ffi::Limits>) -> Server {
        Server::start_on("127.0.0.1:0", config, limits)
    }

    pub fn plain() -> Server {
        Server::start(Config::default(), None)
    }

    /// Believes `X-Forwarded-For` from loopback, so that a test can claim
    /// from any address.
    pub fn behind_loopback_proxy() -> Server {
        Server::start(
            Config {
                trusted_proxies: cti_server::client_addr::TrustedProxies {
                    ranges: vec!["127.0.0.0/8".parse().unwrap()],
                    ..Default::default()
                },
                ..Config::default()
            },
            None,
        )
    }

    /// Sends `bytes` as they are and reads until the server closes.
    pub fn send(&self, bytes: &[u8]) -> Vec<u8> {
        test_kit::http::send(self.addr, bytes)
    }

    /// `method path` with `Host`, `Connection: close` and `headers`, read
    /// to the close (so a `HEAD` answer is read right).
    pub fn call(&self, method: &str, path: &str, headers: &[&str]) -> Reply {
        let request = test_kit::http::request(self.addr, method, path, headers, "");
        Reply::parse(&self.send(request.as_bytes()))
    }

    pub fn get(&self, path: &str, headers: &[&str]) -> Reply {
        self.call("GET", path, headers)
    }

    pub fn head(&self, path: &str, headers: &[&str]) -> Reply {
        self.call("HEAD", path, headers)
    }

    /// Claims committed to the store so far, from the core's own counters.
    pub fn claims_committed(&self) -> u64 {
        let stats: serde_json::Value =
            serde_json::from_str(&self.app.store().unwrap().stats_json().unwrap()).unwrap();
        stats["claims_committed"].as_u64().unwrap()
    }
}

/// The `cti-server` binary in a directory (the database there, `cti.db`),
/// with its metrics listener when `--metrics` is among the flags.
pub struct Binary {
    pub running: Running,
    pub addr: SocketAddr,
    pub metrics: Option<SocketAddr>,
    _own: Option<tempfile::TempDir>,
}

impl Binary {
    /// Runs it in a new directory with `--listen 127.0.0.1:0 --db cti.db`,
    /// then `args`, and `env`.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Binary {
        let dir = tempfile::tempdir().unwrap();
        let binary = Binary::start_in(dir.path(), args, env);
        Binary {
            _own: Some(dir),
            ..binary
        }
    }

    /// As `start`, in `dir` (the database may already be there).
    pub fn start_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Binary {
        let base = ["--listen", "127.0.0.1:0", "--db", "cti.db"];
        let args = [&base[..], args].concat();
        let mut prefixes = vec!["serving http://"];
        if args.contains(&"--metrics") {
            prefixes.push("metrics: http://");
        }
        let bin = env!("CARGO_BIN_EXE_cti-server");
        let running = Running::start(bin, dir, &args, env, &prefixes);
        Binary {
            addr: running.addrs[0],
            metrics: running.addrs.get(1).copied(),
            running,
            _own: None,
        }
    }

    /// The metric sample `name` (labels included).
    pub fn metric(&self, name: &str) -> u64 {
        test_kit::metrics::metric(self.metrics.expect("started with --metrics"), name)
    }

    pub fn metric_becomes(&self, name: &str, want: u64, limit: Duration) -> Duration {
        let metrics = self.metrics.expect("started with --metrics");
        test_kit::metrics::metric_becomes(metrics, name, want, limit)
    }

    /// `GET path` with `headers` (one a line).
    pub fn get(&self, path: &str, headers: &[&str]) -> Reply {
        test_kit::http::get(self.addr, path, headers)
    }
}
