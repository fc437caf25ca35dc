//! A binary of this workspace as a test runs it: started with flags in a
//! directory, the addresses it prints read (within a time limit), killed
//! when dropped; and single values from its Prometheus metrics listener.
//! Shared by the cti-server and cti-edge tests (`#[path]`).

#![allow(dead_code)] // each test file takes what it needs

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Running {
    child: Child,
    /// The address after each prefix asked for, in order.
    pub addrs: Vec<SocketAddr>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Runs `bin` with `args` and `env` in `dir` and waits for a printed
    /// line with each of `prefixes` (such as `serving http://`) followed by
    /// an address.
    pub fn start(
        bin: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        prefixes: &[&str],
    ) -> Running {
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Read on a thread, so that a binary that never prints a line fails
        // the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            out.lines()
                .map_while(Result::ok)
                .for_each(|l| drop(tx.send(l)))
        });
        let mut addrs: Vec<Option<SocketAddr>> = vec![None; prefixes.len()];
        while addrs.iter().any(Option::is_none) {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) else {
                let _ = child.kill();
                panic!("{bin} did not print {prefixes:?}");
            };
            for (addr, prefix) in addrs.iter_mut().zip(prefixes) {
                let found = line
                    .split(prefix)
                    .nth(1)
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|a| a.parse().ok());
                *addr = addr.or(found);
            }
        }
        Running {
            child,
            addrs: addrs.into_iter().flatten().collect(),
        }
    }
}

/// The value of the metric line `name` (with its labels) at `metrics`.
pub fn metric(metrics: SocketAddr, name: &str) -> u64 {
    let mut s = std::net::TcpStream::connect(metrics).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

/// Waits (bounded by `limit`) until the metric `name` reads `want`;
/// returns how long that took.
pub fn metric_becomes(metrics: SocketAddr, name: &str, want: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = metric(metrics, name);
        if now == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{name} is {now} after {limit:?}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
