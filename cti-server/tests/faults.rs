//! A full disk under a running `cti-server`: claims and `/healthz` answer
//! 503 and nothing is acknowledged, reads keep working, and both recover
//! once space is back. The database lives on a small tmpfs (needs root to
//! mount; CI runs as root, and there its absence is a failure).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Tmpfs(tempfile::TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str, xff: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let status = r
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, r.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

#[test]
fn full_disk_gives_503_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(dir.path())
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs (run as root)"
        );
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    }
    let fs = Tmpfs(dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cti-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--trusted-proxy",
            "127.0.0.1",
            "--claims-per-minute",
            "0",
            "--net24-claims-per-minute",
            "0",
            "--db",
        ])
        .arg(fs.0.path().join("game.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Proc(child);
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('/')
        .to_string();

    for i in 0..50 {
        assert_eq!(
            get(&addr, "/claim?name=before", &format!("20.0.0.{i}")).0,
            200
        );
    }
    assert_eq!(get(&addr, "/healthz", "1.1.1.1").0, 200);
    // Fill the filesystem.
    let filler = fs.0.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    while f.write_all(&[0u8; 65536]).is_ok() {}
    let _ = f.write_all(&[0u8; 512]);
    drop(f);

    // The disk is probed at most every 2 s (a health check is cheap): a full
    // disk shows within that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(&addr, "/healthz", "1.1.1.1").0 != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "healthz still 200 on a full disk"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut refused = 0;
    let mut acked_during = 0;
    for i in 0..2000u32 {
        let (status, body) = get(
            &addr,
            "/claim?name=during",
            &format!("21.{}.{}.1", i / 256, i % 256),
        );
        match status {
            503 => {
                refused += 1;
                assert!(body.contains("\"error\":\"unavailable\""), "{body}");
            }
            200 => acked_during += 1,
            other => panic!("unexpected {other}: {body}"),
        }
        if refused >= 20 {
            break;
        }
    }
    assert!(refused >= 20, "claims kept succeeding on a full disk");
    let (status, ranks) = get(&addr, "/api/ranks", "1.1.1.1");
    assert_eq!(status, 200, "reads keep working");
    assert!(ranks.contains("\"name\":\"before\""), "{ranks}");

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        get(&addr, "/claim?name=after", "22.0.0.1").0,
        200,
        "claims work again"
    );
    assert_eq!(get(&addr, "/healthz", "1.1.1.1").0, 200);
    let (_, blocks) = get(&addr, "/api/blocks", "1.1.1.1");
    let v: serde_json::Value = serde_json::from_str(&blocks).unwrap();
    let total: u64 = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total,
        50 + acked_during + 1,
        "exactly the acknowledged claims are stored"
    );
}
