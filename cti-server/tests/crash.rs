//! Durability under crashes: `cti-server` takes concurrent claims over HTTP
//! and is killed with SIGKILL at random moments, 20 times. After each
//! restart every claim that got a 2xx is on disk, and the stored aggregates
//! equal a recount of the claims table (`cti_check`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CYCLES: u32 = 20;
const CLIENTS: u32 = 8;

fn start(db: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cti-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--trusted-proxy",
            "127.0.0.1",
            "--claims-per-minute",
            "0",
        ])
        .args(["--net24-claims-per-minute", "0", "--db"])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .expect("URL")
        .trim()
        .trim_end_matches('/')
        .to_string();
    (child, addr)
}

/// One claim for `ip` (via a trusted X-Forwarded-For); true on a 2xx.
fn claim(addr: &str, ip: &str, nick: &str) -> bool {
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

fn owners(db: &std::path::Path) -> HashMap<String, String> {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(
            "SELECT (ip>>24)||'.'||((ip>>16)&255)||'.'||((ip>>8)&255)||'.'||(ip&255), p.name \
             FROM claims c JOIN players p ON p.id = c.player;",
        )
        .output()
        .expect("sqlite3 shell (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('|')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect()
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_claim() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let next = Arc::new(AtomicU32::new(1));
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut total_lost = 0;
    for cycle in 0..CYCLES {
        let (mut server, addr) = start(&db);
        let running = Arc::new(AtomicBool::new(true));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (addr, acked, next, running) =
                    (addr.clone(), acked.clone(), next.clone(), running.clone());
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while running.load(Ordering::Relaxed) && Instant::now() < deadline {
                        // Fresh addresses, so a later claim never overwrites an acknowledged one.
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n).to_string();
                        let nick = format!("c{c}");
                        if claim(&addr, &ip, &nick) {
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
        server.kill().unwrap(); // SIGKILL, mid-load
        server.wait().unwrap();
        running.store(false, Ordering::Relaxed);
        clients.into_iter().for_each(|t| t.join().unwrap());

        let on_disk = owners(&db);
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
