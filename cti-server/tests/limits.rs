//! Issue 13.2 against the `cti-server` binary (the edge runs the same code,
//! see cti-edge/tests/limits.rs): slowloris cut by the request timeout,
//! caps per /24 and per address, HTTP/2 idle connections closed with GOAWAY,
//! the maximum connection age, the write timeout, event-stream caps that
//! free a place when its connection closes, and `--metrics` (issue 17 item 10).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use test_kit::client::{tcp_from, Sender, Transport};
use test_kit::runtime;
use test_kit::wait::dribble;

/// A running `cti-server` with its metrics listener and `args`.
fn start(args: &[&str]) -> common::Binary {
    common::Binary::start(&[&["--metrics", "127.0.0.1:0"], args].concat(), &[])
}

/// One keep-alive `GET /api/ip`: the status line, or "" when the server
/// closed the connection.
async fn ask(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if s.write_all(b"GET /api/ip HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return String::new();
    }
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    let n = read.expect("an answer or a close within 10 s").unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn metrics_flag_opens_its_listener() {
    let s = start(&[]);
    runtime().block_on(async {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        assert!(ask(&mut c).await.contains("200"));
        assert_eq!(
            s.metric("cti_http_requests_total{route=\"api_ip\",status=\"200\"}"),
            1
        );
        assert_eq!(s.metric("cti_connections_open"), 1);
        // Idle after its answer: parked.
        s.metric_becomes("cti_connections_parked", 1, Duration::from_secs(5));
        // The core's gauges: nobody has claimed yet.
        for gauge in ["cti_live_players", "cti_block_players", "cti_queued"] {
            assert_eq!(s.metric(gauge), 0, "{gauge}");
        }
    });
}

#[test]
fn slowloris_is_cut_by_the_request_timeout_while_others_are_served() {
    let s = start(&["--request-timeout", "2"]);
    let addr = s.addr;
    runtime().block_on(async move {
        let mut slow = tokio::task::JoinSet::new();
        for i in 0..8 {
            let header: &[u8] = if i % 2 == 0 {
                b"GET /api/ip HTTP/1.1\r\nHost: x\r\nX-Slow: "
            } else {
                b"" // nothing but filler: not even a request line
            };
            slow.spawn(async move {
                let c = tcp_from("127.0.0.2", addr).await;
                dribble(
                    c,
                    header,
                    Duration::from_millis(250),
                    Duration::from_secs(12),
                )
                .await
            });
        }
        let started = Instant::now();
        let mut served = 0;
        while started.elapsed() < Duration::from_secs(3) {
            let mut c = tcp_from("127.0.1.1", addr).await;
            assert!(ask(&mut c).await.contains("200"));
            served += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served >= 10, "only {served} answers in 3 s");
        while let Some(closed) = slow.join_next().await {
            let took = closed
                .unwrap()
                .expect("a slow client still open after 12 s");
            assert!(
                took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
                "closed after {took:?} with a 2 s request timeout"
            );
        }
    });
}

#[test]
fn connections_are_capped_per_network_and_per_address() {
    let s = start(&["--max-per-network", "3", "--max-per-source", "2"]);
    runtime().block_on(async {
        let mut held = Vec::new();
        for (source, served) in [
            ("127.0.0.2", true),
            ("127.0.0.2", true),
            ("127.0.0.2", false), // a third from one address
            ("127.0.0.3", true),  // the third in 127.0.0.0/24
            ("127.0.0.4", false), // a fourth address in the /24
            ("127.0.1.1", true),  // another /24
        ] {
            let mut c = tcp_from(source, s.addr).await;
            let answer = ask(&mut c).await;
            assert_eq!(answer.contains("200"), served, "{source}: {answer:?}");
            held.push(c);
        }
        assert_eq!(
            s.metric("cti_connections_refused_total{cap=\"address\"}"),
            1
        );
        assert_eq!(
            s.metric("cti_connections_refused_total{cap=\"network\"}"),
            1
        );
        // A closed connection gives its place back.
        held.remove(0);
        s.metric_becomes("cti_connections_open", 3, Duration::from_secs(5));
        let mut c = tcp_from("127.0.0.4", s.addr).await;
        assert!(ask(&mut c).await.contains("200"));
    });
}

/// An HTTP/2 (h2c) connection to `addr`, and the task that ends with it.
async fn h2c(addr: SocketAddr) -> (Sender, test_kit::client::Connection) {
    let plain = Transport::Plain { h2: true };
    test_kit::client::connect(addr, None, &[], plain)
        .await
        .unwrap()
}

/// `GET path` read to the end: the status.
async fn h2_get(send: &mut Sender, path: &str) -> Result<u16, String> {
    send.fetch(path).await.map(|(status, _)| status)
}

#[test]
fn an_idle_http2_connection_gets_goaway_although_it_answers_pings() {
    let s = start(&["--idle-timeout", "2", "--request-timeout", "1"]);
    runtime().block_on(async {
        let (mut send, conn) = h2c(s.addr).await;
        assert_eq!(h2_get(&mut send, "/api/ip").await.unwrap(), 200);
        let idle = Instant::now();
        // hyper's client answers the server's keep-alive pings (every
        // second here); the connection still ends, cleanly, after 2 s idle.
        let ended = tokio::time::timeout(Duration::from_secs(10), conn)
            .await
            .expect("an idle HTTP/2 connection still open after 10 s");
        let took = idle.elapsed();
        assert!(ended.unwrap().is_ok(), "a graceful GOAWAY, not an error");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
            "closed after {took:?} idle"
        );
        assert_eq!(s.metric("cti_connections_closed_total{reason=\"idle\"}"), 1);
    });
}

#[test]
fn connections_are_closed_gracefully_at_their_maximum_age() {
    let s = start(&["--max-connection-age", "2"]);
    runtime().block_on(async {
        // HTTP/2: busy all along (a request every 100 ms), never idle.
        let (mut send, conn) = h2c(s.addr).await;
        let opened = Instant::now();
        let mut answered = 0;
        while !conn.is_finished() && opened.elapsed() < Duration::from_secs(10) {
            // After GOAWAY a new request is refused by the client itself;
            // every request the server took is answered.
            match h2_get(&mut send, "/api/ip").await {
                Ok(status) => {
                    assert_eq!(status, 200);
                    answered += 1;
                }
                Err(e) => assert!(opened.elapsed() >= Duration::from_millis(1900), "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = opened.elapsed();
        assert!(conn.await.unwrap().is_ok(), "closed with GOAWAY");
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
            "HTTP/2 connection lived {took:?}"
        );
        assert!(answered >= 10, "{answered}");

        // HTTP/1.1 keep-alive: the answer at the age says `Connection: close`.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let opened = Instant::now();
        let mut last = String::new();
        loop {
            assert!(
                opened.elapsed() < Duration::from_secs(10),
                "still open: {last}"
            );
            if c.write_all(b"GET /api/ip HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_err()
            {
                break;
            }
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            last = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            assert!(last.starts_with("http/1.1 200"), "{last}");
            if last.contains("connection: close") {
                assert_eq!(c.read(&mut buf).await.unwrap_or(0), 0, "closed after it");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = opened.elapsed();
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
            "HTTP/1.1 connection lived {took:?}"
        );
        assert_eq!(
            s.metric("cti_connections_closed_total{reason=\"max_age\"}"),
            2
        );
    });
}

#[test]
fn a_client_that_stops_reading_is_cut_by_the_write_timeout() {
    let s = start(&["--write-timeout", "2"]);
    runtime().block_on(async {
        use tokio::io::AsyncWriteExt;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut c = socket.connect(s.addr).await.unwrap();
        // Many pipelined requests for a 15 KiB answer, and never a read.
        let request = b"GET /api/blocks HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
        let _ = tokio::time::timeout(Duration::from_secs(5), c.write_all(&request)).await;
        let took = s.metric_becomes(
            "cti_connections_closed_total{reason=\"write_timeout\"}",
            1,
            Duration::from_secs(20),
        );
        assert!(took < Duration::from_secs(15), "{took:?}");
        s.metric_becomes("cti_connections_open", 0, Duration::from_secs(5));
        drop(c);
    });
}

/// Opens `/api/stream` as a client behind the trusted proxy (127.0.0.1)
/// at `client`; returns the status and the open connection.
async fn stream_for(addr: SocketAddr, client: &str) -> (String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /api/stream HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {client}\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let status = String::from_utf8_lossy(&buf[..n]);
    (status.lines().next().unwrap_or_default().to_string(), c)
}

#[test]
fn event_streams_are_capped_per_network_and_freed_when_their_connection_closes() {
    let s = start(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--max-event-streams-per-network",
        "2",
        "--max-event-streams",
        "3",
    ]);
    runtime().block_on(async {
        let (a, one) = stream_for(s.addr, "198.51.100.1").await;
        let (b, _two) = stream_for(s.addr, "::ffff:198.51.100.2").await;
        assert!(a.contains("200") && b.contains("200"), "{a} {b}");
        let (c, _) = stream_for(s.addr, "198.51.100.3").await;
        assert!(c.contains("503"), "a third stream from the /24: {c}");
        let (d, _other) = stream_for(s.addr, "203.0.113.1").await;
        assert!(d.contains("200"), "another network: {d}");
        let (e, _) = stream_for(s.addr, "192.0.2.1").await;
        assert!(e.contains("503"), "the total cap: {e}");
        assert_eq!(s.metric("cti_event_listeners"), 3);
        // The place is free once the connection closes: no event or ping
        // (every 15 s) has to come first.
        drop(one);
        let took = s.metric_becomes("cti_event_listeners", 2, Duration::from_secs(5));
        assert!(took < Duration::from_secs(5));
        let (f, _) = stream_for(s.addr, "198.51.100.4").await;
        assert!(f.contains("200"), "{f}");
    });
}

#[test]
fn pipelined_requests_are_all_answered_across_parking() {
    // More pipelined requests than hyper's read buffer holds: the bytes it
    // read but did not use when parked come back before the unread ones.
    let s = start(&[]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = 1000;
    let request = b"GET /api/ip HTTP/1.1\r\nHost: x\r\n\r\n".repeat(n);
    let mut writer = c.try_clone().unwrap();
    let sending = std::thread::spawn(move || writer.write_all(&request));
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    while count(&seen, b"HTTP/1.1 200 OK") < n {
        let got = c.read(&mut buf).unwrap();
        assert!(
            got > 0,
            "closed after {} answers",
            count(&seen, b"HTTP/1.1 200 OK")
        );
        seen.extend_from_slice(&buf[..got]);
    }
    sending.join().unwrap().unwrap();
    assert_eq!(count(&seen, b"HTTP/1.1 "), n, "nothing but 200s");
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}
