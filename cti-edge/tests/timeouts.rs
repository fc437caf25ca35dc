//! Timeouts at the `cti-edge` binary: idle keep-alive connections, request
//! headers that never end, stalled handshakes and silent connections are
//! closed; slow clients (slowloris) on the PROXY header, the handshake and
//! the request are cut while other clients are served.

mod common;

use common::{first_answer, Binary};
use rustls::version::TLS13;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use test_kit::client::tcp_from;
use test_kit::tls;
use test_kit::wait::dribble;

#[test]
fn idle_and_handshake_timeouts_close_connections() {
    let edge = Binary::start(
        &[
            "--request-timeout",
            "1",
            "--idle-timeout",
            "1",
            "--handshake-timeout",
            "1",
        ],
        &[],
    );
    let closes_within = |mut s: TcpStream, what: &str| {
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(5),
            "{what}: closed after {took:?}"
        );
    };
    let connect = || {
        let s = TcpStream::connect(edge.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // Idle after a kept-alive request.
    let (s, r) = first_answer(edge.addr, b"GET /api/ip HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.contains("200 OK"), "{r}");
    closes_within(s, "idle keep-alive");
    // Request headers that never end.
    let mut s = connect();
    s.write_all(b"GET /api/ip HTTP/1.1\r\nHost: x\r\n").unwrap();
    closes_within(s, "unfinished request headers");
    // A TLS record start and then nothing.
    let mut s = connect();
    s.write_all(&[0x16, 0x03, 0x01]).unwrap();
    closes_within(s, "stalled TLS handshake");
    // A connection that sends nothing at all.
    closes_within(connect(), "silent connection");
}

#[test]
fn slowloris_on_header_handshake_and_request_is_cut_while_others_are_served() {
    let edge = Binary::start(
        &[
            "--proxy-from",
            "127.0.0.2",
            "--proxy-timeout",
            "3",
            "--handshake-timeout",
            "2",
            "--request-timeout",
            "2",
        ],
        &[],
    );
    let addr = edge.addr;
    let (http1, _) = tls::client(None, &[&TLS13], &[b"http/1.1"]);
    let (any, _) = tls::client(None, &[&TLS13], &[b"h2", b"http/1.1"]);
    let (gap, limit) = (Duration::from_millis(250), Duration::from_secs(12));
    test_kit::runtime().block_on(async move {
        let mut slow = tokio::task::JoinSet::new();
        for _ in 0..16 {
            // A trusted balancer's PROXY header, a byte at a time.
            slow.spawn(async move {
                let s = tcp_from("127.0.0.2", addr).await;
                let header = b"PROXY TCP4 198.51.100.1 127.0.0.1 1000 443\r\n";
                ("PROXY header", 3, dribble(s, header, gap, limit).await)
            });
            // A TLS record announcing a 512-byte ClientHello, a byte at a time.
            slow.spawn(async move {
                let s = tcp_from("127.0.0.3", addr).await;
                let hello = [
                    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
                ];
                ("TLS handshake", 2, dribble(s, &hello, gap, limit).await)
            });
            // A finished handshake, then request headers a byte at a time.
            let config = http1.clone();
            slow.spawn(async move {
                let tcp = tcp_from("127.0.0.4", addr).await;
                let stream = tls::handshake(tcp, &config).await.unwrap();
                let request = b"GET /api/ip HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
                (
                    "HTTP request",
                    2,
                    dribble(stream, request, gap, limit).await,
                )
            });
        }
        // Meanwhile a client elsewhere gets answers, a new TLS connection each.
        let mut served = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            let from = Some("127.0.0.5".parse().unwrap());
            let transport = test_kit::client::Transport::Tls(&any);
            let answer = tokio::time::timeout(Duration::from_secs(5), async {
                let (mut sender, _) = test_kit::client::connect(addr, from, &[], transport)
                    .await
                    .unwrap();
                sender.fetch("/api/ip").await.unwrap()
            })
            .await
            .expect("a normal client waited over 5 s while slow clients held connections");
            assert_eq!(&answer.1[..], br#"{"ip":"127.0.0.5"}"#);
            served += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served >= 10, "only {served} requests served in 4 s");
        while let Some(done) = slow.join_next().await {
            let (what, timeout, closed) = done.unwrap();
            let took = closed.unwrap_or_else(|| panic!("{what}: still open after {limit:?}"));
            let timeout = Duration::from_secs(timeout);
            assert!(
                took + Duration::from_millis(300) >= timeout
                    && took < timeout + Duration::from_secs(4),
                "{what}: closed after {took:?}, timeout {timeout:?}"
            );
        }
    });
    drop(edge);
}
