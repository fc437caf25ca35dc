//! Durable claims per second through the C ABI (`libcti_core.so`, linked
//! dynamically through cti-ffi), with many concurrent callers claiming random
//! addresses, measured as the store grows; and the time to open a full store.
//!
//! `cargo bench --bench claims -- [--stored 1000000,10000000] [--callers 256]
//!  [--measure 500000] [--db PATH]`
//!
//! Callers are threads that each keep one claim in flight with the blocking
//! call, as C and Python callers do; async frontends behave the same way with
//! one in-flight claim per open request.

use cti_ffi::Store;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

struct Args {
    stored: Vec<u64>,
    callers: u64,
    measure: u64,
    db: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        stored: vec![1_000_000, 10_000_000],
        callers: 256,
        measure: 500_000,
        db: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--stored" => {
                a.stored = value()
                    .split(',')
                    .map(|n| n.parse().expect("number"))
                    .collect()
            }
            "--callers" => a.callers = value().parse().expect("number"),
            "--measure" => a.measure = value().parse().expect("number"),
            "--db" => a.db = Some(value()),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Claims `count` random addresses from `callers` threads; returns claims/s.
fn claim_many(store: &Arc<Store>, count: u64, callers: u64, seed: u64) -> f64 {
    let left = Arc::new(AtomicU64::new(count));
    let start = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|t| {
            let (store, left) = (store.clone(), left.clone());
            std::thread::spawn(move || {
                let mut x = seed ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let ip = std::net::Ipv4Addr::from(x as u32).to_string();
                    let nick = format!("player{}", (x >> 40) % 1000);
                    store.claim(&ip, &nick).expect("claim");
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    count as f64 / start.elapsed().as_secs_f64()
}

fn count_claims(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("sqlite3")
        .arg(path)
        .arg("SELECT count(*) FROM claims")
        .output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir_in(cti::profile_dir()).expect("temp dir");
    let path =
        a.db.clone()
            .map(Into::into)
            .unwrap_or_else(|| dir.path().join("bench.db"));
    println!(
        "libcti_core {} via cti-ffi; {} callers; db {}",
        cti_ffi::version(),
        a.callers,
        path.display()
    );
    let mut store = Arc::new(Store::open(&path).expect("open"));
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    for &target in &a.stored {
        let have = count_claims(&path);
        if have < target {
            let fill = (target - have) * 1005 / 1000; // random addresses collide now and then
            let rate = claim_many(&store, fill, a.callers, seed);
            seed += 1;
            println!("filled {fill} claims at {rate:.0} claims/s");
        }
        let rate = claim_many(&store, a.measure, a.callers, seed);
        seed += 1;
        println!(
            "stored {:>10} claims: {rate:>8.0} durable claims/s over {} claims",
            count_claims(&path),
            a.measure
        );
        drop(store);
        let t = Instant::now();
        let reopened = Store::open(&path).expect("reopen");
        let opened = t.elapsed();
        let mut reads = Vec::new();
        for w in ["all", "hour", "all"] {
            let t = Instant::now();
            reopened.ranks_json(Some(w)).expect("ranks");
            reads.push(format!("{w} {:.1} ms", t.elapsed().as_secs_f64() * 1e3));
        }
        println!(
            "open with {} claims: {:.3} s (then ranking reads: {})",
            count_claims(&path),
            opened.as_secs_f64(),
            reads.join(", ")
        );
        store = Arc::new(reopened);
    }
}
