//! TLS at the `cti-edge` binary: the zero-config start (a self-signed
//! certificate, its fingerprint printed), TLS 1.2 and 1.3 with ALPN and
//! session resumption, a client pinned to the printed fingerprint, and
//! certificate reloads on SIGHUP and on a file change.

mod common;

use common::Binary;
use hyper::Version;
use rustls::version::{TLS12, TLS13};
use rustls::{HandshakeKind, ProtocolVersion};
use std::net::SocketAddr;
use std::time::Duration;
use test_kit::client;
use test_kit::tls::{self, Cert};

/// One GET over `stream` in whichever HTTP version ALPN chose.
async fn get(stream: tls::Stream, path: &str) -> (Version, String) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let (mut sender, _) = client::http(stream, h2).await.unwrap();
    let resp = sender.get(path, &[]).await.unwrap();
    let version = resp.version();
    let body = client::body(resp).await.unwrap();
    (version, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn zero_config_serves_https_with_a_printed_self_signed_certificate() {
    // No flags; only the port comes from CTI_LISTEN (8443 may be taken here).
    let edge = Binary::start(&[], &[]);
    assert!(edge.banner.contains("self-signed"), "{}", edge.banner);
    assert_eq!(edge.fingerprint.len(), 32 * 3 - 1, "{}", edge.banner);
    assert!(
        edge.dir.path().join("cti.db").exists(),
        "default --db is ./cti.db"
    );
    let (addr, fp) = (edge.addr, edge.fingerprint.clone());
    test_kit::runtime().block_on(async move {
        // TLS 1.3 with HTTP/2 by ALPN, pinned to the printed fingerprint.
        let (config, pinned) = tls::client(Some(&fp), &[&TLS13], &[b"h2", b"http/1.1"]);
        let stream = tls::connect(addr, &config).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(
            get(stream, "/api/ip").await,
            (Version::HTTP_2, r#"{"ip":"127.0.0.1"}"#.into())
        );
        assert_eq!(pinned.seen(), vec![fp.clone()]);
        // The same config resumes the session (tickets in TLS 1.3).
        let again = tls::connect(addr, &config).await.unwrap();
        assert_eq!(
            again.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed)
        );

        // TLS 1.2 with HTTP/1.1 only, resumed on the second connection too.
        let (config, _) = tls::client(Some(&fp), &[&TLS12], &[b"http/1.1"]);
        let stream = tls::connect(addr, &config).await.unwrap();
        let version = stream.get_ref().1.protocol_version();
        assert_eq!(version, Some(ProtocolVersion::TLSv1_2));
        assert_eq!(get(stream, "/api/ip").await.0, Version::HTTP_11);
        let again = tls::connect(addr, &config).await.unwrap();
        assert_eq!(
            again.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed)
        );

        // A client pinned to another certificate refuses this one.
        let (config, _) = tls::client(Some("00:11"), &[&TLS13], &[b"h2"]);
        assert!(
            tls::connect(addr, &config).await.is_err(),
            "the pin is checked"
        );
    });
}

/// The fingerprint of the certificate new connections get.
fn served(addr: SocketAddr) -> String {
    test_kit::runtime().block_on(async {
        let (config, pinned) = tls::client(None, &[&TLS13], &[b"h2"]);
        drop(tls::connect(addr, &config).await.unwrap());
        pinned.seen().pop().unwrap()
    })
}

#[test]
fn certificates_reload_on_sighup_and_on_file_change() {
    let dir = tempfile::tempdir().unwrap();
    let first = Cert::self_signed("first.test");
    first.write(dir.path());
    let edge = Binary::start_in(dir, &["--tls-cert", "cert.pem", "--tls-key", "key.pem"]);
    let dir = edge.dir.path();
    assert_eq!(edge.fingerprint, first.fingerprint());
    assert!(!edge.banner.contains("self-signed"), "{}", edge.banner);
    assert_eq!(served(edge.addr), first.fingerprint());

    // New files with the old modification times, swapped in by rename: only
    // the signal can reveal them.
    let next = dir.join("next");
    std::fs::create_dir(&next).unwrap();
    let second = Cert::self_signed("second.test");
    second.write(&next);
    let stamp = std::fs::metadata(dir.join("cert.pem"))
        .unwrap()
        .modified()
        .unwrap();
    for f in ["cert.pem", "key.pem"] {
        tls::set_modified(&next.join(f), stamp);
        std::fs::rename(next.join(f), dir.join(f)).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        served(edge.addr),
        first.fingerprint(),
        "unchanged times: no reload yet"
    );
    edge.running.signal("-HUP");
    test_kit::wait::eventually("SIGHUP reload", Duration::from_secs(10), || {
        served(edge.addr) == second.fingerprint()
    });

    // A plain rewrite is noticed by the file watch, without a signal. Its
    // modification time is set past the old one rather than waited for.
    let third = Cert::self_signed("third.test");
    third.write(dir);
    for f in ["cert.pem", "key.pem"] {
        tls::set_modified(&dir.join(f), stamp + Duration::from_secs(1));
    }
    test_kit::wait::eventually("reload on change", Duration::from_secs(10), || {
        served(edge.addr) == third.fingerprint()
    });

    // A broken key is refused and the current certificate stays.
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    edge.running.signal("-HUP");
    test_kit::wait::eventually("the failure logged", Duration::from_secs(10), || {
        edge.stderr().contains("certificate reload failed")
    });
    assert_eq!(served(edge.addr), third.fingerprint());
}
