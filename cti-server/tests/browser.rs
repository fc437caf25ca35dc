//! The home page in a real browser: headless Chromium (Debian's, driven over
//! chromedriver's WebDriver HTTP API on loopback) loads the page from a
//! running `cti-server`, shows the 256-cell grid, and changes without a
//! reload when another client claims. `scripts/install-deps` installs
//! chromium and chromium-driver; under CI=true their absence is a failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange with a JSON body; returns status and JSON.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the head, then exactly Content-Length bytes: a peer may keep the
    // connection open whatever we asked.
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start_server(dir: &std::path::Path) -> (Proc, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cti-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--claims-per-minute",
            "0",
            "--db",
        ])
        .arg(dir.join("browser.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split("http://")
        .nth(1)
        .expect("the server prints its URL")
        .trim()
        .trim_end_matches('/');
    (Proc(child), url.parse().unwrap())
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn home_page_shows_the_grid_and_updates_live() {
    if !(have("chromium") && have("chromedriver")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver are required in CI (scripts/install-deps)"
        );
        eprintln!("skipped: chromium or chromedriver is not installed (run scripts/install-deps)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_server, server) = start_server(dir.path());
    let port = free_port();
    let _driver = Proc(
        Command::new("chromedriver")
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let driver: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("chromedriver", || {
        TcpStream::connect(driver).ok().and_then(|_| {
            (http(driver, "GET", "/status", None).1["value"]["ready"] == true).then_some(())
        })
    });
    let profile = dir.path().join("chrome-profile");
    let caps = serde_json::json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic", format!("--user-data-dir={}", profile.display())]
    }}}});
    let (status, created) = http(driver, "POST", "/session", Some(&caps));
    assert_eq!(status, 200, "{created}");
    let session = created["value"]["sessionId"].as_str().unwrap().to_string();
    let run = |script: &str| -> serde_json::Value {
        let (_, v) = http(
            driver,
            "POST",
            &format!("/session/{session}/execute/sync"),
            Some(&serde_json::json!({"script": script, "args": []})),
        );
        v["value"].clone()
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (status, v) = http(
            driver,
            "POST",
            &format!("/session/{session}/url"),
            Some(&serde_json::json!({"url": format!("http://{server}/")})),
        );
        assert_eq!(status, 200, "{v}");
        wait_for("256 cells", || {
            (run("return document.querySelectorAll('#grid .cell').length") == 256).then_some(())
        });
        wait_for("the live stream", || {
            (run("return document.querySelector('#live').classList.contains('on')") == true)
                .then_some(())
        });
        let marker = run("window.__loadMarker = 'same page'; return window.__loadMarker");
        assert_eq!(marker, "same page");
        assert_eq!(
            run("return document.querySelectorAll('#grid .cell')[127].dataset.holder || null"),
            serde_json::Value::Null
        );

        // Another client claims 127.0.0.1 for a new name.
        let (status, claim) = http(server, "GET", "/claim?name=browser_test", None);
        assert_eq!(status, 200, "{claim}");

        wait_for("the grid to show the new holder", || {
            (run("return document.querySelectorAll('#grid .cell')[127].dataset.holder || null")
                == "browser_test")
                .then_some(())
        });
        wait_for("the recent list", || {
            (run("return document.querySelector('#recent').textContent.includes('browser_test')")
                == true)
                .then_some(())
        });
        wait_for("the leaderboard", || {
            (run("return document.querySelector('#ranks tbody').textContent.includes('browser_test')") == true).then_some(())
        });
        assert_eq!(
            run("return window.__loadMarker || null"),
            "same page",
            "the page was reloaded"
        );
    }));
    http(driver, "DELETE", &format!("/session/{session}"), None);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
