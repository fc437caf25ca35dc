//! The client side that the workspace's tests, examples and benchmarks
//! share, written once: a binary of this workspace run as an operator runs
//! it ([`process`]), its Prometheus metrics ([`metrics`]), raw HTTP/1.1 over
//! TCP ([`http`]), an HTTP/1.1 or HTTP/2 client over TCP or TLS ([`client`]),
//! TLS with the server's certificate pinned ([`tls`]), PROXY protocol
//! headers ([`proxy`]), a server run in process on its own thread
//! ([`in_process`]), the store read with the `sqlite3` shell ([`sqlite`]),
//! and bounded waits ([`wait`]).
//!
//! It never names `cti-core` or the frontends: a test says what it serves
//! and this crate talks to it, as a client would. Being test code, it
//! panics with a message on what a test cannot go on from.

pub mod client;
pub mod http;
pub mod in_process;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod sqlite;
pub mod tls;
pub mod wait;

/// A current-thread tokio runtime with time and I/O, for a test's client side.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A two-thread tokio runtime, for clients that must make progress while
/// others are busy.
pub fn runtime_two_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Claims in all blocks of an `/api/blocks` answer (the sum of the totals).
pub fn total_claims(blocks: &serde_json::Value) -> u64 {
    blocks["blocks"]
        .as_array()
        .expect("an /api/blocks answer")
        .iter()
        .filter_map(|b| b["total"].as_u64())
        .sum()
}

/// Whether each `(command, argument)` runs and succeeds here. Outside CI a
/// missing one skips the test (say so, and return false); in CI it fails
/// it, since `scripts/install-deps` installs them.
pub fn tools_present(tools: &[(&str, &str)]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(cmd, arg)| {
            !std::process::Command::new(cmd)
                .arg(arg)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(cmd, _)| *cmd)
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing:?} required in CI (scripts/install-deps installs them)"
    );
    eprintln!("skipped: {missing:?} not installed (run scripts/install-deps)");
    false
}
