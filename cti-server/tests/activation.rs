//! Socket activation of the `cti-server` binary: a listening socket passed
//! the systemd way (`LISTEN_FDS`, `LISTEN_PID`, from descriptor 3) is
//! served, `--listen` is not bound; `READY=1` and `STOPPING=1` reach a
//! `NOTIFY_SOCKET`.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

#[test]
fn a_passed_socket_is_served_and_readiness_told() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The port --listen names stays free: the passed socket is used.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unused_addr = unused.local_addr().unwrap();
    drop(unused);
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let args = [
        "--db".into(),
        dir.path().join("a.db").into_os_string(),
        "--listen".into(),
        unused_addr.to_string().into(),
    ];
    let env = [("NOTIFY_SOCKET", notify_path.clone().into_os_string())];
    let mut child = cti_server::listen::spawn_with_sockets(
        std::path::Path::new(env!("CARGO_BIN_EXE_cti-server")),
        &args,
        &env,
        &[(listener.as_raw_fd(), "cti-server.socket")],
        None,
    )
    .unwrap();
    drop(listener);
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 in time");
    assert_eq!(&buf[..n], b"READY=1\n");

    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        std::net::TcpListener::bind(unused_addr).is_ok(),
        "--listen was not bound"
    );

    // SIGTERM: STOPPING=1, then exit 0.
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let n = notify.recv(&mut buf).expect("STOPPING=1 in time");
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert!(child.wait().unwrap().success());
}
