//! Durability under crashes: `cti-server` takes concurrent claims over HTTP
//! and is killed with SIGKILL at random moments, 20 times. After each
//! restart every claim that got a 2xx is on disk, and the stored aggregates
//! equal a recount of the claims table (`cti_check`).

mod common;

use common::Binary;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CYCLES: u32 = 20;
const CLIENTS: u32 = 8;

/// The server on the database in `dir`, believing `X-Forwarded-For` from
/// loopback, with no claim limits.
fn start(dir: &Path) -> Binary {
    let flags = ["--trusted-proxy", "127.0.0.1", "--claims-per-minute", "0"];
    let flags = [&flags[..], &["--net24-claims-per-minute", "0"]].concat();
    Binary::start_in(dir, &flags, &[])
}

/// One claim for `ip` (via a trusted X-Forwarded-For); true on a 2xx.
fn claim(addr: SocketAddr, ip: &str, nick: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "GET /claim?name={nick} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nX-Forwarded-For: {ip}\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 2")
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_claim() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cti.db");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let next = Arc::new(AtomicU32::new(1));
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut total_lost = 0;
    for cycle in 0..CYCLES {
        let mut server = start(dir.path());
        let addr = server.addr;
        let running = Arc::new(AtomicBool::new(true));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (addr, acked, next, running) =
                    (addr, acked.clone(), next.clone(), running.clone());
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while running.load(Ordering::Relaxed) && Instant::now() < deadline {
                        // Fresh addresses, so a later claim never overwrites an acknowledged one.
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n).to_string();
                        let nick = format!("c{c}");
                        if claim(addr, &ip, &nick) {
                            acked.lock().unwrap().push((ip, nick));
                        }
                    }
                })
            })
            .collect();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 300));
        server.running.kill(); // SIGKILL, mid-load
        running.store(false, Ordering::Relaxed);
        clients.into_iter().for_each(|t| t.join().unwrap());

        let on_disk = test_kit::sqlite::owners(&db);
        let acked = acked.lock().unwrap();
        let lost: Vec<_> = acked
            .iter()
            .filter(|(ip, nick)| on_disk.get(ip) != Some(nick))
            .collect();
        total_lost += lost.len();
        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} acknowledged claims lost, e.g. {:?}",
            lost.len(),
            lost[0]
        );
        let store = cti_ffi::Store::open(&db).unwrap();
        store
            .check()
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
    }
    let acked = acked.lock().unwrap().len();
    assert!(
        acked > 100 * CYCLES as usize / 10,
        "only {acked} claims acknowledged over {CYCLES} cycles"
    );
    println!(
        "crash test: {acked} acknowledged claims over {CYCLES} SIGKILL cycles, lost {total_lost}"
    );
}
