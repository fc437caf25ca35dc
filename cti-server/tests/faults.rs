//! A full disk under a running `cti-server`: claims and `/healthz` answer
//! 503 and nothing is acknowledged, reads keep working, and both recover
//! once space is back. The database lives on a small tmpfs (needs root to
//! mount; CI runs as root, and there its absence is a failure).

mod common;

use common::{Binary, JSON};
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;

struct Tmpfs(tempfile::TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// `GET path` from the client `xff` (through the trusted proxy): the status
/// and the body.
fn get(addr: SocketAddr, path: &str, xff: &str) -> (u16, String) {
    let xff = format!("X-Forwarded-For: {xff}");
    let r = test_kit::http::get(addr, path, &[JSON, &xff]);
    (r.status, r.text())
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
    let flags = ["--trusted-proxy", "127.0.0.1", "--claims-per-minute", "0"];
    let flags = [&flags[..], &["--net24-claims-per-minute", "0"]].concat();
    let server = Binary::start_in(fs.0.path(), &flags, &[]);
    let addr = server.addr;

    for i in 0..50 {
        assert_eq!(
            get(addr, "/claim?name=before", &format!("20.0.0.{i}")).0,
            200
        );
    }
    assert_eq!(get(addr, "/healthz", "1.1.1.1").0, 200);
    // Fill the filesystem.
    let filler = fs.0.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    while f.write_all(&[0u8; 65536]).is_ok() {}
    let _ = f.write_all(&[0u8; 512]);
    drop(f);

    // The disk is probed at most every 2 s (a health check is cheap): a full
    // disk shows within that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(addr, "/healthz", "1.1.1.1").0 != 503 {
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
            addr,
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
    let (status, ranks) = get(addr, "/api/ranks", "1.1.1.1");
    assert_eq!(status, 200, "reads keep working");
    assert!(ranks.contains("\"name\":\"before\""), "{ranks}");

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        get(addr, "/claim?name=after", "22.0.0.1").0,
        200,
        "claims work again"
    );
    assert_eq!(get(addr, "/healthz", "1.1.1.1").0, 200);
    let (_, blocks) = get(addr, "/api/blocks", "1.1.1.1");
    let total = test_kit::total_claims(&serde_json::from_str(&blocks).unwrap());
    assert_eq!(
        total,
        50 + acked_during + 1,
        "exactly the acknowledged claims are stored"
    );
}
