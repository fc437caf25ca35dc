//! The pages in a real browser: headless Chromium (Debian's, driven over
//! chromedriver's WebDriver HTTP API on loopback) loads them from a running
//! `cti-server`. The home page shows the 256-cell grid and changes without a
//! reload when another client claims; the leaders' colours are told apart;
//! a square's details show on click, tap or keyboard focus; everything fits
//! a 375 px wide phone. `scripts/install-deps` installs chromium and
//! chromium-driver; under CI=true their absence is a failure.

mod common;

use common::{Binary, JSON};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One exchange with a JSON body and `extra` header lines; returns the
/// status and the JSON (`null` for none).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    extra: &[&str],
) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let headers = [&[JSON, "Content-Type: application/json"][..], extra].concat();
    let reply = test_kit::http::call(addr, method, path, &headers, &body);
    let json = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, json)
}

/// A server on loopback; it believes `X-Forwarded-For` from loopback, so
/// that tests can claim from many addresses.
fn start_server() -> Binary {
    let flags = ["--claims-per-minute", "0", "--net24-claims-per-minute", "0"];
    Binary::start(
        &[&flags[..], &["--trusted-proxy", "127.0.0.0/8"]].concat(),
        &[],
    )
}

fn wait_for<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    test_kit::wait::until(what, Duration::from_secs(30), probe)
}

/// Whether the browser tests can run here (in CI they must).
fn browser_available() -> bool {
    test_kit::tools_present(&[("chromium", "--version"), ("chromedriver", "--version")])
}

/// chromedriver on a loopback port, stopped when dropped.
struct Driver {
    _proc: Proc,
    addr: SocketAddr,
}

/// A child process, killed when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Driver {
    fn start() -> Driver {
        let port = test_kit::process::free_port();
        let proc = Proc(
            Command::new("chromedriver")
                .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for("chromedriver", || {
            std::net::TcpStream::connect(addr).ok().and_then(|_| {
                (http(addr, "GET", "/status", None, &[]).1["value"]["ready"] == true).then_some(())
            })
        });
        Driver { _proc: proc, addr }
    }
}

/// A browser session, deleted when dropped; `phone` emulates a screen of
/// that width in CSS pixels.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl<'a> Session<'a> {
    fn new(driver: &'a Driver, profile: &std::path::Path, phone: Option<u32>) -> Session<'a> {
        let mut options = serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--disable-quic", "--window-size=1280,1000",
                     format!("--user-data-dir={}", profile.display())]
        });
        if let Some(width) = phone {
            options["mobileEmulation"] = serde_json::json!({"deviceMetrics": {"width": width, "height": 800, "pixelRatio": 2, "touch": true}});
        }
        let caps =
            serde_json::json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}});
        let (status, created) = http(driver.addr, "POST", "/session", Some(&caps), &[]);
        assert_eq!(status, 200, "{created}");
        let id = created["value"]["sessionId"].as_str().unwrap().to_string();
        Session { driver, id }
    }

    fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, v) = http(
            self.driver.addr,
            "POST",
            &format!("/session/{}{path}", self.id),
            Some(&body),
            &[],
        );
        assert_eq!(status, 200, "{path}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.post("/url", serde_json::json!({ "url": url }));
    }

    fn run(&self, script: &str) -> serde_json::Value {
        self.post(
            "/execute/sync",
            serde_json::json!({"script": script, "args": []}),
        )
    }

    /// The WebDriver id of the first element matching `css`.
    fn element(&self, css: &str) -> String {
        let found = self.post(
            "/element",
            serde_json::json!({"using": "css selector", "value": css}),
        );
        found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    /// A real click (or tap, under touch emulation) on the element.
    fn click(&self, css: &str) {
        let id = self.element(css);
        self.post(&format!("/element/{id}/click"), serde_json::json!({}));
    }

    /// Types `keys` into the element (WebDriver key codes for arrows).
    fn keys(&self, css: &str, keys: &str) {
        let id = self.element(css);
        self.post(
            &format!("/element/{id}/value"),
            serde_json::json!({ "text": keys }),
        );
    }
}

impl Session<'_> {
    /// Waits until `script` returns `want`.
    fn until(&self, what: &str, script: &str, want: impl Into<serde_json::Value>) {
        let want = want.into();
        wait_for(what, || (self.run(script) == want).then_some(()));
    }

    /// Opens the home page of `server` and waits for its 80 held squares
    /// (the board `populate` makes).
    fn populated_board(&self, server: SocketAddr) {
        self.go(&format!("http://{server}/"));
        let held = "return document.querySelectorAll('#grid .cell.held').length";
        self.until("the board", held, 80);
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        http(
            self.driver.addr,
            "DELETE",
            &format!("/session/{}", self.id),
            None,
            &[],
        );
    }
}

#[test]
fn home_page_shows_the_grid_and_updates_live() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let running = start_server();
    let server = running.addr;
    let driver = Driver::start();
    let browser = Session::new(&driver, &dir.path().join("chrome-profile"), None);
    let run = |script: &str| browser.run(script);
    browser.go(&format!("http://{server}/"));
    let cells = "return document.querySelectorAll('#grid .cell').length";
    browser.until("256 cells", cells, 256);
    let live = "return document.querySelector('#live').classList.contains('on')";
    browser.until("the live stream", live, true);
    let marker = run("window.__loadMarker = 'same page'; return window.__loadMarker");
    assert_eq!(marker, "same page");
    assert_eq!(
        run("return document.querySelectorAll('#grid .cell')[127].dataset.holder || null"),
        serde_json::Value::Null
    );

    // Another client claims 127.0.0.1 for a new name.
    let (status, claim) = http(server, "GET", "/claim?name=browser_test", None, &[]);
    assert_eq!(status, 200, "{claim}");

    let holder = "return document.querySelectorAll('#grid .cell')[127].dataset.holder || null";
    browser.until("the grid to show the new holder", holder, "browser_test");
    let recent = "return document.querySelector('#recent').textContent.includes('browser_test')";
    browser.until("the recent list", recent, true);
    let ranks =
        "return document.querySelector('#ranks tbody').textContent.includes('browser_test')";
    browser.until("the leaderboard", ranks, true);
    assert_eq!(
        run("return window.__loadMarker || null"),
        "same page",
        "the page was reloaded"
    );
}

/// Claims `ip` for `nick` through the server's trust in loopback proxies.
fn claim_from(server: SocketAddr, ip: &str, nick: &str) {
    let xff = format!("X-Forwarded-For: {ip}");
    let (status, v) = http(server, "GET", &format!("/claim?name={nick}"), None, &[&xff]);
    assert_eq!(status, 200, "{v}");
}

/// The hue, in degrees, of a CSS `rgb(r, g, b)` colour.
fn hue(css: &str) -> f64 {
    let v: Vec<f64> = css
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .take(3)
        .map(|x| x.trim().parse::<f64>().unwrap() / 255.0)
        .collect();
    let (r, g, b) = (v[0], v[1], v[2]);
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let d = max - min;
    assert!(d > 0.0, "{css} is grey: it has no hue");
    let h = if max == r {
        ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    };
    h * 60.0
}

/// A name as long as names go, which must wrap rather than widen the page.
const LONG_NAME: &str = "a_rather_long_player_name_for_the_phone";

/// Twelve holders (player0 holds twelve blocks, player11 one), one with a
/// long name, a tied block, and a crowded block with a holder and two others.
fn populate(server: SocketAddr) {
    for p in 0..12u32 {
        for k in 0..(12 - p) {
            claim_from(
                server,
                &format!("{}.{}.0.1", 1 + p * 12 + k, p),
                &format!("player{p}"),
            );
        }
    }
    claim_from(server, "220.0.0.1", LONG_NAME);
    claim_from(server, "200.0.0.1", "tie_a");
    claim_from(server, "200.0.0.2", "tie_b");
    for (i, nick) in [
        "crowd_a", "crowd_a", "crowd_a", "crowd_b", "crowd_b", "crowd_c",
    ]
    .iter()
    .enumerate()
    {
        claim_from(server, &format!("210.0.0.{}", i + 1), nick);
    }
}

/// A profile directory, a server holding `populate`'s board, and
/// chromedriver; `None` where the browser tests cannot run.
fn populated() -> Option<(tempfile::TempDir, Binary, Driver)> {
    if !browser_available() {
        return None;
    }
    let server = start_server();
    populate(server.addr);
    Some((tempfile::tempdir().unwrap(), server, Driver::start()))
}

#[test]
fn the_board_tells_players_apart_and_works_on_a_phone() {
    let Some((dir, running, driver)) = populated() else {
        return;
    };
    let server = running.addr;

    // Desktop: the ten leaders' squares are at least 20 degrees of hue apart.
    let desktop = Session::new(&driver, &dir.path().join("desktop"), None);
    desktop.populated_board(server);
    let rows = "return document.querySelectorAll('#ranks tbody tr').length";
    desktop.until("the leaderboard", rows, 14);
    let colours = desktop.run(
        "const top = [...document.querySelectorAll('#ranks tbody tr')].slice(0, 10)
           .map((tr) => tr.querySelector('a').textContent);
         return top.map((name) => [name, getComputedStyle(
           [...document.querySelectorAll('#grid .cell')].find((c) => c.dataset.holder === name)).backgroundColor]);",
    );
    let colours: Vec<(String, f64)> = colours
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_string(),
                hue(pair[1].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(colours.len(), 10);
    for (i, (a, ha)) in colours.iter().enumerate() {
        for (b, hb) in &colours[i + 1..] {
            let d = (ha - hb).abs();
            let d = d.min(360.0 - d);
            assert!(
                d >= 20.0,
                "{a} ({ha:.1}°) and {b} ({hb:.1}°) are {d:.1}° apart"
            );
        }
    }

    // Phone: nothing wider than the screen, squares big enough to tap, and
    // a square's holder, count and total shown on a tap and on the keyboard.
    let phone = Session::new(&driver, &dir.path().join("phone"), Some(375));
    phone.populated_board(server);
    let recent = "return document.querySelectorAll('#recent li').length";
    phone.until("the recent claims", recent, 30);
    assert_eq!(
        phone.run("return document.documentElement.clientWidth"),
        375
    );
    assert_eq!(
        phone.run("return document.documentElement.scrollWidth"),
        375,
        "the page is wider than the phone"
    );
    let cell =
        phone.run("return document.querySelector('#grid .cell').getBoundingClientRect().width");
    assert!(cell.as_f64().unwrap() >= 18.0, "squares of {cell} px");
    let clipped = phone.run(
        "const box = (e) => e.getBoundingClientRect();
         const within = (e, p) => box(e).left >= box(p).left - 0.5 && box(e).right <= box(p).right + 0.5;
         return [...document.querySelectorAll('#recent li > *, #ranks td, #ranks th')]
           .filter((e) => !within(e, document.body) || e.scrollWidth > e.clientWidth + 1).length;",
    );
    assert_eq!(clipped, 0, "recent claims or leaderboard cut off");
    // List markers cannot be measured, and numbers in the margin were cut
    // off: the recent claims have none.
    assert_eq!(
        phone.run("return getComputedStyle(document.querySelector('#recent li')).listStyleType"),
        "none"
    );
    phone.click("#grid .cell:nth-child(2)");
    let info = || phone.run("return document.querySelector('#block-info').textContent");
    wait_for("block 1's details", || {
        let text = info();
        let text = text.as_str().unwrap_or("");
        (text.contains("Block 1") && text.contains("player0") && text.contains("1 of the 1"))
            .then_some(())
    });
    phone.keys("#grid .cell:nth-child(2)", "\u{E014}");
    wait_for("block 2's details after ArrowRight", || {
        info()
            .as_str()
            .unwrap_or("")
            .contains("Block 2 ")
            .then_some(())
    });
    phone.click("#grid .cell:nth-child(201)");
    wait_for("the tied block", || {
        info().as_str().unwrap_or("").contains("Tied").then_some(())
    });
}

/// The runner-up of a block comes from `/score`, which lists every player
/// in every block where they have an address.
#[test]
fn a_square_names_its_runner_up() {
    let Some((dir, running, driver)) = populated() else {
        return;
    };
    let server = running.addr;
    let browser = Session::new(&driver, &dir.path().join("profile"), None);
    browser.populated_board(server);
    browser.click("#grid .cell:nth-child(211)");
    wait_for("block 210's runner-up", || {
        let text = browser.run("return document.querySelector('#block-info').textContent");
        let text = text.as_str().unwrap_or("");
        (text.contains("crowd_a holds it with 3 of the 6")
            && text.contains("Runner-up: crowd_b with 2.")
            && text.contains("crowd_c 1"))
        .then_some(())
    });
}
