//! Stopping the `cti-edge` binary: SIGTERM stops accepting at once, lets the
//! response in flight finish and exits 0; SIGINT with a client that never
//! reads exits 0 when the grace period is over.

mod common;

use common::Binary;
use rustls::version::TLS13;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use test_kit::tls;

/// `GET /api/blocks` over HTTP/2 with a 1 KiB stream window: the 15 KiB
/// answer stays in flight until its body is read.
async fn stalled_blocks(
    addr: SocketAddr,
    fingerprint: &str,
) -> hyper::Response<hyper::body::Incoming> {
    use http_body_util::Empty;
    let (config, _) = tls::client(Some(fingerprint), &[&TLS13], &[b"h2"]);
    let stream = tls::connect(addr, &config).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(1024)
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("https://localhost/api/blocks")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    send.send_request(req).await.unwrap()
}

#[test]
fn sigterm_stops_accepting_finishes_the_in_flight_response_and_exits_0() {
    let mut edge = Binary::start(&["--grace", "30"], &[]);
    let (addr, fp) = (edge.addr, edge.fingerprint.clone());
    let rt = test_kit::runtime();
    let resp = rt.block_on(stalled_blocks(addr, &fp));
    assert_eq!(resp.status(), 200);
    edge.running.signal("-TERM");
    // The listener closes at once; the process stays for the response.
    test_kit::wait::eventually("no more accepting", Duration::from_secs(10), || {
        TcpStream::connect(addr).is_err()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        edge.running.running(),
        "exited with a response in flight:\n{}",
        edge.stderr()
    );
    let body = rt.block_on(async {
        let body = tokio::time::timeout(Duration::from_secs(10), test_kit::client::body(resp));
        body.await
            .expect("body within 10 s")
            .expect("the whole body")
    });
    let blocks: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(blocks["blocks"].as_array().unwrap().len(), 256);
    let started = Instant::now();
    let status = edge.running.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", edge.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited when the response was done, not at the end of the grace period"
    );
}

#[test]
fn sigint_with_a_stuck_client_exits_0_after_the_grace_period() {
    let mut edge = Binary::start(&["--grace", "1"], &[]);
    let (addr, fp) = (edge.addr, edge.fingerprint.clone());
    let rt = test_kit::runtime();
    let _resp = rt.block_on(stalled_blocks(addr, &fp));
    let started = Instant::now();
    edge.running.signal("-INT");
    let status = edge.running.wait(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", edge.stderr());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for the grace period: {:?}",
        started.elapsed()
    );
    assert!(
        edge.stderr().contains("grace period over"),
        "{}",
        edge.stderr()
    );
}

/// A client that connected just before the server began to stop (TLS done,
/// its first request not yet sent) still gets that request answered, with
/// `Connection: close`: it cannot know, and closing on it fails a request
/// that was never refused. The same holds for a re-exec's hand-over.
#[test]
fn a_connection_accepted_before_sigterm_gets_its_first_request_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut edge = Binary::start(&["--grace", "30"], &[]);
    let (addr, fp) = (edge.addr, edge.fingerprint.clone());
    let rt = test_kit::runtime();
    let (config, _) = tls::client(Some(&fp), &[&TLS13], &[b"http/1.1"]);
    let mut stream = rt.block_on(tls::connect(addr, &config)).unwrap();
    edge.running.signal("-TERM");
    test_kit::wait::eventually("no more accepting", Duration::from_secs(10), || {
        TcpStream::connect(addr).is_err()
    });
    std::thread::sleep(Duration::from_millis(100));
    let answer = rt.block_on(async {
        stream
            .write_all(b"GET /api/ip HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let status = edge.running.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", edge.stderr());
}
