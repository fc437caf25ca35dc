//! The edge under systemd, checked without systemd: the notify protocol on
//! a datagram socket the test binds as `NOTIFY_SOCKET` (READY, RELOADING
//! around SIGHUP, MAINPID from a re-exec'd process, STOPPING), sockets
//! passed the `LISTEN_FDS` way (socket activation), and the unit files
//! checked by `systemd-analyze verify` where it exists.

#[path = "support/upgrading.rs"]
mod upgrading;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use upgrading::{wait_ended, Edge};

fn edge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cti-edge"))
}

/// The next notification (one datagram), within 20 s.
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let n = socket.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_notify_protocol_tells_ready_reloading_mainpid_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let notify = path.display().to_string();
    let mut edge = Edge::start(
        &edge_bin(),
        dir.path(),
        &["--db", "n.db", "--proxy-from", "127.0.0.1"],
        &[("NOTIFY_SOCKET", &notify)],
    );
    // Sent after the store opened and the socket listened: the address
    // was printed, and the service answers.
    assert_eq!(next(&socket), "READY=1\n");
    assert_eq!(edge.get("/healthz").0, 200);

    edge.signal(edge.pid(), "-HUP");
    let reloading = next(&socket);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next(&socket), "READY=1\n");

    let (status, answer) = edge.admin("reexec", "");
    assert_eq!(status, 200, "{answer}");
    let successor = answer["pid"].as_u64().unwrap() as u32;
    edge.successors.push(successor);
    assert!(next(&socket).starts_with("RELOADING=1\n"));
    assert_eq!(next(&socket), format!("MAINPID={successor}\nREADY=1\n"));
    // The old process exits without STOPPING=1: the service goes on.
    assert!(edge.wait_exit(Duration::from_secs(20)).success());
    assert_eq!(edge.get("/healthz").0, 200);

    edge.signal(successor, "-TERM");
    assert_eq!(next(&socket), "STOPPING=1\n");
    wait_ended(successor, Duration::from_secs(20));
    socket.set_nonblocking(true).unwrap();
    let mut rest = [0u8; 64];
    assert!(socket.recv(&mut rest).is_err(), "nothing else was sent");
}

#[test]
fn a_passed_socket_is_served_and_a_bad_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let db = dir.path().join("a.db");
    let args = ["--db".into(), db.into_os_string()];
    let mut child = cti_server::listen::spawn_with_sockets(
        &edge_bin(),
        &args,
        &[],
        &[(listener.as_raw_fd(), "cti-edge.socket")],
        None,
    )
    .unwrap();
    drop(listener);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Connections made before the edge is up wait in the backlog.
    let answered = runtime.block_on(async {
        let config = test_kit::tls::load_client(&[b"http/1.1"]);
        let (mut sender, _) =
            test_kit::client::connect(addr, None, &[], test_kit::client::Transport::Tls(&config))
                .await
                .unwrap();
        sender.fetch("/api/ip").await.unwrap()
    });
    assert_eq!(answered.0, 200);
    let _ = child.kill();
    let _ = child.wait();

    // A descriptor that is not a listening TCP socket: refused at start.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut child = cti_server::listen::spawn_with_sockets(
        &edge_bin(),
        &args,
        &[],
        &[(udp.as_raw_fd(), "cti-edge.socket")],
        None,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
}

/// The units as installed, with the built binary in place of
/// /usr/bin/cti-edge (verify checks that the command exists).
fn units(dir: &Path) -> Vec<PathBuf> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let bin = edge_bin().display().to_string();
    ["cti-edge.service", "cti-edge.socket"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(deploy.join(name)).unwrap();
            let out = dir.join(name);
            std::fs::write(&out, text.replace("/usr/bin/cti-edge", &bin)).unwrap();
            out
        })
        .collect()
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no systemd-analyze (Debian package systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = units(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on unknown keys and bad values too: it only warns.
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains(&*dir.path().to_string_lossy()))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{said}");
}
