//! A binary of this workspace as a test runs it: started with flags and
//! environment in a directory, the addresses it prints read (within a time
//! limit), its standard error kept in a file to read at any time, signals,
//! a bounded wait for its exit; killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a binary gets to print its addresses.
const START_LIMIT: Duration = Duration::from_secs(10);

pub struct Running {
    child: Option<Child>,
    /// The address after each prefix asked for, in order.
    pub addrs: Vec<SocketAddr>,
    /// The whole line each address was read from.
    pub lines: Vec<String>,
    stderr: PathBuf,
    _logs: tempfile::TempDir,
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
        let logs = tempfile::tempdir().expect("a directory for the log");
        let stderr = logs.path().join("stderr.log");
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("the log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        // Read on a thread, so that a binary that never prints a line fails
        // the test instead of hanging it; it drains the rest afterwards.
        let (tx, rx) = std::sync::mpsc::channel();
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        std::thread::spawn(move || {
            out.lines()
                .map_while(Result::ok)
                .for_each(|l| drop(tx.send(l)))
        });
        let mut found: Vec<Option<(SocketAddr, String)>> = vec![None; prefixes.len()];
        let deadline = Instant::now() + START_LIMIT;
        while found.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                panic!("{bin} did not print {prefixes:?}; its stderr:\n{log}");
            };
            for (slot, prefix) in found.iter_mut().zip(prefixes) {
                if slot.is_none() {
                    *slot = address_after(&line, prefix).map(|a| (a, line.clone()));
                }
            }
        }
        let (addrs, lines) = found.into_iter().flatten().unzip();
        Running {
            child: Some(child),
            addrs,
            lines,
            stderr,
            _logs: logs,
        }
    }

    /// The first address it printed.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// What it wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `signal` (such as `-TERM`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("still running").id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {pid}");
    }

    /// Whether it has not exited yet.
    pub fn running(&mut self) -> bool {
        let child = self.child.as_mut().expect("not waited for");
        child.try_wait().expect("try_wait").is_none()
    }

    /// Waits, at most `limit`, for it to exit.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut().expect("not waited for");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and the exit reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address right after `prefix` in `line`, up to a `/` or a space.
fn address_after(line: &str, prefix: &str) -> Option<SocketAddr> {
    let rest = line.split(prefix).nth(1)?;
    rest.split(['/', ' ']).next()?.parse().ok()
}

/// A port free on 127.0.0.1 just now, for a program that must be told one.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// Runs `bin args` in `dir` to its end: success, and stdout then stderr.
pub fn output(bin: &str, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[cfg(test)]
mod tests {
    use super::address_after;

    #[test]
    fn addresses_are_read_after_their_prefix() {
        let line = "cti-edge: serving https://127.0.0.1:8443/ (certificate SHA-256 AA)";
        let https = address_after(line, "serving https://");
        assert_eq!(https, Some("127.0.0.1:8443".parse().unwrap()));
        let metrics = address_after("metrics: http://[::1]:9100/metrics", "metrics: http://");
        assert_eq!(metrics, Some("[::1]:9100".parse().unwrap()));
        assert_eq!(address_after(line, "serving http://"), None);
    }
}
