//! TLS: the certificate chain and key from PEM files, re-read when the files
//! change (or on SIGHUP) without a restart; with none given, a self-signed
//! certificate made at start. ALPN offers `h2` and `http/1.1`; TLS 1.2 and
//! 1.3; session resumption by cache and tickets. The server picks the
//! cipher suite: AES-128-GCM with SHA-256 first (see `suites`).

use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error("{0} holds no certificate")]
    NoCertificate(String),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
}

pub struct Tls {
    files: Option<Files>,
    current: RwLock<Arc<ServerConfig>>,
    fingerprint: RwLock<String>,
    /// Whether the leaf certificate names itself as its issuer.
    self_signed: AtomicBool,
    stamps: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl Tls {
    /// Loads `files`, or makes a self-signed certificate for localhost.
    pub fn new(files: Option<Files>) -> Result<Tls, TlsError> {
        let (certs, key) = match &files {
            Some(f) => read(f)?,
            None => self_signed()?,
        };
        let fingerprint = fingerprint(&certs[0]);
        let tls = Tls {
            stamps: Mutex::new(files.as_ref().and_then(stamps)),
            files,
            self_signed: AtomicBool::new(self_issued(&certs[0])),
            current: RwLock::new(server_config(certs, key)?),
            fingerprint: RwLock::new(fingerprint),
        };
        Ok(tls)
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    /// SHA-256 of the leaf certificate, as `AB:CD:...`.
    pub fn fingerprint(&self) -> String {
        self.fingerprint
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the certificate was made at start (no files given).
    pub fn generated(&self) -> bool {
        self.files.is_none()
    }

    /// Whether the certificate is its own issuer (generated at start, or a
    /// self-signed file): browsers do not trust it, so no HSTS with it.
    pub fn self_signed(&self) -> bool {
        self.self_signed.load(Ordering::Relaxed)
    }

    /// Re-reads the files. On failure the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        let (certs, key) = read(files)?;
        let fp = fingerprint(&certs[0]);
        let self_signed = self_issued(&certs[0]);
        let config = server_config(certs, key)?;
        self.self_signed.store(self_signed, Ordering::Relaxed);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        *self.fingerprint.write().unwrap_or_else(|p| p.into_inner()) = fp;
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = stamps(files);
        Ok(())
    }

    /// Reloads when either file's modification time has changed.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let Some(files) = &self.files else {
            return Ok(false);
        };
        let now = stamps(files);
        if now.is_none() || now == *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }
}

fn stamps(f: &Files) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&f.cert)?, m(&f.key)?))
}

type Loaded = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn read(f: &Files) -> Result<Loaded, TlsError> {
    let err = |p: &Path, e: rustls_pki_types::pem::Error| TlsError::Read {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(&f.cert)
        .map_err(|e| err(&f.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&f.cert, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(f.cert.display().to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(&f.key).map_err(|e| err(&f.key, e))?;
    Ok((certs, key))
}

fn self_signed() -> Result<Loaded, TlsError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((vec![generated.cert.der().clone()], key))
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites(),
        ..rustls::crypto::ring::default_provider()
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(16 * 1024);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// ring's cipher suites, AES-128-GCM (with SHA-256) first. Clients
/// (OpenSSL's default, browsers' too) mostly list AES-256-GCM-SHA384 first,
/// and ring computes SHA-384 without the CPU's help on AMD processors (its
/// SHA-512 code takes AVX only on Intel) while SHA-256 has the SHA
/// extensions: a new connection's key schedule with SHA-384 cost about a
/// tenth of the edge's time (docs/performance.md). AES-128-GCM is the suite
/// every TLS 1.3 peer must support.
fn suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    let first = [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    let mut suites = rustls::crypto::ring::DEFAULT_CIPHER_SUITES.to_vec();
    // Stable: the others keep ring's order.
    suites.sort_by_key(|s| !first.contains(s));
    suites
}

/// Whether a DER certificate's issuer is its subject. Reads the outer
/// structure only: Certificate { TBSCertificate { [0] version, serial,
/// signature, issuer, validity, subject, ... }, ... }.
fn self_issued(cert: &CertificateDer<'_>) -> bool {
    let fields = || {
        let (_, certificate, _) = der(cert.as_ref())?;
        let (_, tbs, _) = der(certificate)?;
        let (tag, _, after_version) = der(tbs)?;
        let serial = if tag == 0xa0 { after_version } else { tbs };
        let (_, _, rest) = der(serial)?;
        let (_, _, rest) = der(rest)?; // signature algorithm
        let (_, issuer, rest) = der(rest)?;
        let (_, _, rest) = der(rest)?; // validity
        let (_, subject, _) = der(rest)?;
        Some(issuer == subject)
    };
    fields().unwrap_or(false)
}

/// One DER element: (tag, contents, what follows).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, &b| l << 8 | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_kit::tls::Cert;

    /// The files `cert.pem` and `key.pem` in `dir` (which may not exist).
    fn files_in(dir: &Path) -> Files {
        Files {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    #[test]
    fn self_signed_and_reload_from_files() {
        let tls = Tls::new(None).unwrap();
        assert!(tls.self_signed());
        assert_eq!(tls.fingerprint().len(), 32 * 3 - 1);

        let dir = tempfile::tempdir().unwrap();
        Cert::self_signed("one.test").write(dir.path());
        let files = files_in(dir.path());
        let tls = Tls::new(Some(files.clone())).unwrap();
        let first = tls.fingerprint();
        assert!(!tls.reload_if_changed().unwrap(), "unchanged files");
        // A rewrite within the same clock tick keeps the modification time:
        // set a later one rather than wait for the clock.
        let stamp = std::fs::metadata(&files.cert).unwrap().modified().unwrap();
        Cert::self_signed("two.test").write(dir.path());
        for path in [&files.cert, &files.key] {
            test_kit::tls::set_modified(path, stamp + std::time::Duration::from_secs(1));
        }
        assert!(tls.reload_if_changed().unwrap());
        assert_ne!(tls.fingerprint(), first);
        std::fs::write(&files.key, "not a key").unwrap();
        assert!(tls.reload().is_err(), "a bad key is refused");
        assert_ne!(tls.fingerprint(), first, "the good certificate stays");
    }

    #[test]
    fn a_certificate_that_issued_itself_is_self_signed() {
        // One signed by a CA is not: tests/limits.rs (HSTS) has it.
        let dir = tempfile::tempdir().unwrap();
        let cert = Cert::self_signed("localhost");
        cert.write(dir.path());
        let tls = Tls::new(Some(files_in(dir.path()))).unwrap();
        assert!(tls.self_signed() && !tls.generated(), "a self-signed file");
        assert!(self_issued(&cert.der));
        assert!(!self_issued(&CertificateDer::from(vec![0x30, 0x82, 0xff])));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = Tls::new(Some(files_in(&dir.path().join("missing"))))
            .err()
            .unwrap();
        assert!(e.to_string().contains("missing"), "{e}");
        std::fs::write(dir.path().join("cert.pem"), "").unwrap();
        assert!(matches!(
            Tls::new(Some(files_in(dir.path()))),
            Err(TlsError::NoCertificate(_))
        ));
    }

    /// The suite a handshake in memory between `client` and the edge settles.
    fn negotiated(tls: &Tls, client: Arc<rustls::ClientConfig>) -> rustls::CipherSuite {
        let server = tls.current.read().unwrap().clone();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(client, name).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            c.write_tls(&mut wire).unwrap();
            let mut wire = &wire[..];
            while !wire.is_empty() {
                s.read_tls(&mut wire).unwrap();
            }
            s.process_new_packets().unwrap();
            let mut wire = Vec::new();
            s.write_tls(&mut wire).unwrap();
            let mut wire = &wire[..];
            while !wire.is_empty() {
                c.read_tls(&mut wire).unwrap();
            }
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        s.negotiated_cipher_suite().unwrap().suite()
    }

    #[test]
    fn the_server_picks_aes_128_gcm_over_a_client_that_lists_aes_256_first() {
        use rustls::CipherSuite as C;
        let tls = Tls::new(None).unwrap();
        // ring's client order, like OpenSSL's, starts with AES-256-GCM-SHA384.
        let client = test_kit::tls::load_client(&[b"h2"]);
        assert_eq!(negotiated(&tls, client), C::TLS13_AES_128_GCM_SHA256);
        let (tls12, _) = test_kit::tls::client(None, &[&rustls::version::TLS12], &[]);
        assert_eq!(
            negotiated(&tls, tls12),
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        );
        // A client without AES-128-GCM still gets a suite it offers.
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256],
            ..rustls::crypto::ring::default_provider()
        };
        let (_, any_cert) = test_kit::tls::client(None, &[], &[]);
        let only_chacha = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(any_cert)
            .with_no_client_auth();
        let suite = negotiated(&tls, Arc::new(only_chacha));
        assert_eq!(suite, C::TLS13_CHACHA20_POLY1305_SHA256);
    }
}
