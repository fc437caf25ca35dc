//! The safe wrapper over the dynamically linked library: concurrency, the
//! non-blocking claim, and errors for bad input.

use cti_ffi::{ErrorKind, Store};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("t.db")).unwrap();
    (dir, store)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn many_threads_claim_at_once() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let threads: Vec<_> = (0..16u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..250u32 {
                    let ip = format!("{}.{}.{}.{}", t + 1, i / 256, i % 256, t);
                    store.claim(&ip, &format!("t{}", t % 4)).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let blocks = json(&store.blocks_json(None).unwrap());
    assert_eq!(test_kit::total_claims(&blocks), 16 * 250);
    for t in 0..16usize {
        assert_eq!(blocks["blocks"][t + 1]["holder"], format!("t{}", t % 4));
    }
    store.check().unwrap();
}

#[test]
fn non_blocking_claims_call_back_after_commit() {
    let (_dir, store) = open();
    let (tx, rx) = mpsc::channel();
    for i in 0..1000u32 {
        let tx = tx.clone();
        store
            .claim_with(&format!("9.0.{}.{}", i / 256, i % 256), "async", move |r| {
                tx.send(r).unwrap()
            })
            .unwrap();
    }
    for _ in 0..1000 {
        let claim = json(&rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap());
        assert_eq!(claim["name"], "async");
        assert_eq!(claim["block"], 9);
    }
    let ranks = json(&store.ranks_json(Some("hour")).unwrap());
    assert_eq!(ranks["rankings"][0]["claims"], 1000);
}

#[test]
fn refused_non_blocking_claim_never_calls_back() {
    let (_dir, store) = open();
    let (tx, rx) = mpsc::channel::<()>();
    let err = store
        .claim_with("1.2.3.4", "bad nick", move |_| tx.send(()).unwrap())
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidNick);
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
}

#[test]
fn errors_carry_kind_and_message() {
    let (_dir, store) = open();
    let e = store.claim("1.2.3.4", "no spaces").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidNick);
    assert!(e.message.contains("' '"), "{}", e.message);
    assert_eq!(
        store.claim("2001:db8::1", "ok").unwrap_err().kind,
        ErrorKind::NotIpv4
    );
    assert_eq!(
        store.claim("1.2.3", "ok").unwrap_err().kind,
        ErrorKind::InvalidAddress
    );
    assert_eq!(
        store.claim("1.2.3.4", "nul\0").unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        store.ranks_json(Some("fortnight")).unwrap_err().kind,
        ErrorKind::UnknownWindow
    );
    assert_eq!(
        store.user_json("ghost", None).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        cti_ffi::validate_nick("ok_nick").map_err(|e| e.kind),
        Ok(())
    );
    assert!(json(&store.recent_json(50).unwrap())["claims"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn open_failure_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let e = Store::open(dir.path().join("missing/dir/t.db"))
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::OpenFailed);
    assert!(e.message.contains("missing"), "{}", e.message);
}

#[test]
fn abi_version_matches_this_wrapper() {
    assert_eq!(cti_ffi::abi_version().0, 1);
    assert_eq!(cti_ffi::version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn rate_limit_reports_retry_after_and_can_be_changed() {
    let (_dir, store) = open();
    store
        .set_limits(cti_ffi::Limits {
            per_address_per_minute: 30,
            per_address_burst: 1,
            ..cti_ffi::Limits::OFF
        })
        .unwrap();
    store.claim("5.5.5.5", "first").unwrap();
    let e = store.claim("5.5.5.5", "second").unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_after, Some(2), "{}", e.message);
    let (tx, rx) = mpsc::channel::<()>();
    let e = store
        .claim_with("5.5.5.5", "third", move |_| tx.send(()).unwrap())
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(
        rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "refused claim called back"
    );
    let blocks = json(&store.blocks_json(None).unwrap());
    assert_eq!(blocks["blocks"][5]["holder"], "first");
    store.set_limits(cti_ffi::Limits::OFF).unwrap();
    store.claim("5.5.5.5", "fourth").unwrap();
}

#[test]
fn stats_count_commits_and_refusals() {
    let (_dir, store) = open();
    for i in 0..5 {
        store.claim(&format!("6.0.0.{i}"), "counted").unwrap();
    }
    store
        .set_limits(cti_ffi::Limits {
            per_address_per_minute: 1,
            per_address_burst: 1,
            ..cti_ffi::Limits::OFF
        })
        .unwrap();
    store.claim("6.0.1.1", "counted").unwrap();
    assert!(store.claim("6.0.1.1", "counted").is_err());
    let s = json(&store.stats_json().unwrap());
    assert_eq!(s["claims_committed"], 6);
    assert_eq!(s["claims_rate_limited"], 1);
    assert_eq!(s["batch_size"]["sum"], 6);
    assert!(s["commits"].as_u64().unwrap() >= 1);
    assert_eq!(s["commit_latency_us"]["count"], s["commits"]);
}
