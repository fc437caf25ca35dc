//! Issue 14 through the edge binary: the core swapped in place (SIGUSR2 and
//! `POST /admin/core`) while 8 clients claim over kept TLS connections with
//! PROXY v2 headers; refused swaps; a re-exec on the same sockets under the
//! same load (SIGUSR1 and `POST /admin/reexec`); new processes that fail,
//! before and after the store is handed over; socket activation.

#[path = "../../cti-ffi/tests/support/cores.rs"]
mod cores;

#[path = "support/upgrading.rs"]
mod upgrading;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use upgrading::{nick, wait_ended, Edge, Load, Tally};

const CLIENTS: usize = 8;

/// Flags for the load: the test's PROXY headers from loopback name
/// 10.0.0.x, a trusted HTTP proxy whose X-Forwarded-For names each claim's
/// address; no claim rate limits.
const LOAD_FLAGS: &[&str] = &[
    "--db",
    "up.db",
    "--proxy-from",
    "127.0.0.1",
    "--trusted-proxy",
    "10.0.0.0/8",
    "--claims-per-minute",
    "0",
    "--net24-claims-per-minute",
    "0",
];

fn edge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cti-edge"))
}

/// Every request answered 2xx, and every acknowledged claim in the store.
fn assert_nothing_lost(edge: &Edge, tally: &Tally) {
    assert_eq!(
        *tally.failed.lock().unwrap(),
        Vec::<String>::new(),
        "every request gets a 2xx"
    );
    assert_eq!(tally.refused.load(Relaxed), 0, "no connection refused");
    for (i, acked) in tally.acked.iter().enumerate() {
        let acked = acked.lock().unwrap().len() as u64;
        assert!(acked > 0);
        assert_eq!(edge.owned_by(&nick(i)), acked, "client {i}'s claims");
    }
}

#[test]
fn the_core_is_swapped_under_load_without_closing_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let second = cores::patched_core(dir.path(), &release("2"));
    let third = cores::patched_core(dir.path(), &release("3"));
    let core_file = format!("--core-file={}", second.display());
    let args = [LOAD_FLAGS, &[core_file.as_str()]].concat();
    let edge = Edge::start(&edge_bin(), dir.path(), &args, &[]);
    assert_eq!(edge.statusz("core_version"), cti_ffi::version());
    assert_eq!(edge.statusz("core_swaps"), "0");
    let load = Load::start(edge.addr, CLIENTS);
    load.progress(20, Duration::from_secs(30));

    // SIGUSR2: the --core-file.
    edge.signal(edge.pid(), "-USR2");
    let swapped = edge.wait_log("core swapped", Duration::from_secs(20));
    assert_eq!(swapped["fields"]["version"], release("2"));
    load.progress(20, Duration::from_secs(30));

    // The admin endpoint: the file named in the body.
    let (status, answer) = edge.admin("core", &third.display().to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "swapped");
    assert_eq!(answer["version"], release("3"));
    assert_eq!(answer["path"], third.display().to_string());
    load.progress(20, Duration::from_secs(30));
    let tally = load.stop();

    assert_nothing_lost(&edge, &tally);
    assert_eq!(
        tally.reconnects.load(Relaxed),
        0,
        "every connection stayed open"
    );
    assert_eq!(tally.dropped.load(Relaxed), 0);
    assert_eq!(edge.statusz("core_version"), release("3"));
    assert_eq!(edge.statusz("core_path"), third.display().to_string());
    assert_eq!(edge.statusz("core_swaps"), "2");
    let metrics = edge.metrics_text();
    let info = format!(
        "cti_core_info{{version=\"{}\",path=\"{}\"}} 1",
        release("3"),
        third.display()
    );
    for line in [&info, "cti_core_swaps_total 2", "cti_core_files_loaded 2"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    eprintln!(
        "swap under load: {} claims, slowest request {} ms",
        tally.acked_total(),
        tally.slowest_us.load(Relaxed) / 1000
    );
}

/// The linked release with its last part replaced by `last` (same length).
fn release(last: &str) -> String {
    let current = cti_ffi::version();
    let (head, _) = current.rsplit_once('.').unwrap();
    let patched = format!("{head}.{last}");
    assert_eq!(patched.len(), current.len());
    patched
}

#[test]
fn refused_swaps_are_logged_and_the_old_core_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a library").unwrap();
    let cases = [
        (
            cores::stub_core(dir.path(), 1, Some("cti_subscribe")),
            "no function cti_subscribe",
        ),
        (cores::stub_core(dir.path(), 2, None), "ABI is 2.x"),
        (text, "cannot load"),
        (dir.path().join("missing.so"), "cannot read"),
    ];
    let edge = Edge::start(&edge_bin(), dir.path(), LOAD_FLAGS, &[]);
    let path = cti_ffi::Api::linked_path().unwrap();
    for (n, (file, reason)) in cases.iter().enumerate() {
        let (status, answer) = edge.admin("core", &file.display().to_string());
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["result"], "refused");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(reason), "{error}");
        assert_eq!(answer["version"], cti_ffi::version());
        let logged = edge.wait_log("core swap refused", Duration::from_secs(5));
        assert!(
            logged["fields"]["error"].as_str().unwrap().contains(reason),
            "{logged}"
        );
        assert_eq!(logged["fields"]["path"], file.display().to_string());
        // Still serving, with the old core.
        assert_eq!(edge.claim(Ipv4Addr::new(1, 2, 3, n as u8), "still"), 200);
        assert_eq!(edge.statusz("core_version"), cti_ffi::version());
        assert_eq!(edge.statusz("core_path"), path.display().to_string());
    }
    assert_eq!(edge.owned_by("still"), cases.len() as u64);
    assert_eq!(edge.statusz("core_swaps"), "0");
    let refusals = edge
        .log_lines()
        .iter()
        .filter(|l| {
            l["fields"]["message"].as_str() == Some("core swap refused; the old core keeps serving")
        })
        .count();
    assert_eq!(refusals, cases.len());
    // An action that does not exist, and a GET.
    assert_eq!(edge.admin("nothing", "").0, 404);
}

#[test]
fn a_reexec_under_load_refuses_no_connection_and_loses_no_claim() {
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(&edge_bin(), dir.path(), LOAD_FLAGS, &[]);
    let first = edge.pid();
    let load = Load::start(edge.addr, CLIENTS);
    load.progress(20, Duration::from_secs(30));

    let (status, answer) = edge.admin("reexec", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "reexeced");
    let second = answer["pid"].as_u64().unwrap() as u32;
    edge.successors.push(second);
    assert_ne!(second, first);
    // The old process drains and exits 0; the new one serves.
    assert!(edge.wait_exit(Duration::from_secs(20)).success());
    load.progress(20, Duration::from_secs(30));

    // Again by signal, to the process that now serves.
    edge.signal(second, "-USR1");
    let handed = edge.wait_log("re-exec: the new process serves", Duration::from_secs(30));
    let third = handed["fields"]["pid"].as_u64().unwrap() as u32;
    edge.successors.push(third);
    wait_ended(second, Duration::from_secs(20));
    load.progress(20, Duration::from_secs(30));
    let tally = load.stop();

    assert_nothing_lost(&edge, &tally);
    assert_eq!(tally.dropped.load(Relaxed), 0, "no connection cut");
    assert!(
        tally.reconnects.load(Relaxed) >= CLIENTS as u64,
        "the old processes closed their connections after an answer"
    );
    eprintln!(
        "re-exec under load: {} claims, {} reconnects, slowest request {} ms",
        tally.acked_total(),
        tally.reconnects.load(Relaxed),
        tally.slowest_us.load(Relaxed) / 1000
    );
    edge.signal(third, "-TERM");
    wait_ended(third, Duration::from_secs(20));
}

/// Replaces the file at `path` (a running binary cannot be written over).
fn replace(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    let mut perms = std::fs::metadata(&next).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&next, perms).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[test]
fn a_new_process_that_fails_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of the binary, to be replaced under the running process.
    let bin = dir.path().join("cti-edge");
    std::fs::copy(edge_bin(), &bin).unwrap();
    let lib_dir = cti_ffi::Api::linked_path().unwrap();
    let lib_dir = lib_dir.parent().unwrap().display().to_string();
    let env = [
        ("LD_LIBRARY_PATH", lib_dir.as_str()),
        ("CTI_DB", "up.db"),
        ("CTI_UPGRADE_TIMEOUT", "3"),
    ];
    let mut edge = Edge::start(&bin, dir.path(), &["--proxy-from", "127.0.0.1"], &env);
    let real = edge_bin().display().to_string();
    let failures = [
        // Not a working binary at all.
        (
            "#!/bin/sh\nexit 3\n".to_string(),
            "exited before it was prepared",
        ),
        // A flag the new binary does not know.
        (
            format!("#!/bin/sh\nexec {real} --no-such-flag \"$@\"\n"),
            "exited before it was prepared",
        ),
        // A bad flag in the environment.
        (
            format!("#!/bin/sh\nCTI_PLAIN_HTTP=bogus exec {real} \"$@\"\n"),
            "exited before it was prepared",
        ),
        // Fails after the old process closed the store: it opens it again.
        (
            format!("#!/bin/sh\nCTI_DB=/nonexistent/up.db exec {real} \"$@\"\n"),
            "exited before it was ready",
        ),
        // Never gets ready: ended after --upgrade-timeout.
        (
            "#!/bin/sh\nexec sleep 60\n".to_string(),
            "not prepared within",
        ),
    ];
    for (n, (script, why)) in failures.iter().enumerate() {
        replace(&bin, script);
        let (status, answer) = edge.admin("reexec", "");
        assert_eq!(status, 500, "{answer}");
        assert_eq!(answer["result"], "failed");
        assert!(answer["error"].as_str().unwrap().contains(why), "{answer}");
        assert_eq!(answer["pid"], edge.pid());
        assert!(edge.child.as_mut().unwrap().try_wait().unwrap().is_none());
        // Still serving, claims included.
        let client = Ipv4Addr::new(9, 9, 9, n as u8);
        assert_eq!(edge.claim(client, "stays"), 200, "after {script}");
        assert_eq!(edge.statusz("core_version"), cti_ffi::version());
    }
    assert_eq!(edge.owned_by("stays"), failures.len() as u64);
    // The real binary again: the re-exec goes through, the store has it all.
    std::fs::copy(edge_bin(), dir.path().join("fresh")).unwrap();
    std::fs::rename(dir.path().join("fresh"), &bin).unwrap();
    let (status, answer) = edge.admin("reexec", "");
    assert_eq!(status, 200, "{answer}");
    let next = answer["pid"].as_u64().unwrap() as u32;
    edge.successors.push(next);
    assert!(edge.wait_exit(Duration::from_secs(20)).success());
    assert_eq!(edge.owned_by("stays"), failures.len() as u64);
    edge.signal(next, "-TERM");
    wait_ended(next, Duration::from_secs(20));
}
