//! TLS as a test's client speaks it: the server's certificate accepted by
//! its SHA-256 fingerprint (the one the edge prints), or any certificate
//! for load generation, the handshake signatures checked either way; and
//! certificates to serve, self-signed or signed by a throwaway CA.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// SHA-256 of a DER certificate as `AB:CD:...`, the form the edge prints.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Accepts the certificate with the fingerprint wanted (any, without one),
/// and remembers the fingerprint of every certificate presented.
#[derive(Debug)]
pub struct Pinned {
    want: Option<String>,
    seen: Mutex<Vec<String>>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn algorithms(&self) -> &rustls::crypto::WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }

    /// Fingerprints of the certificates presented so far, oldest first.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity.as_ref());
        let refused = self.want.as_ref().is_some_and(|w| *w != presented);
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(presented.clone());
        if refused {
            return Err(rustls::Error::General(format!("fingerprint {presented}")));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

/// A client offering `versions` (all safe ones when empty) and `alpn`,
/// accepting only the certificate `pin` (any, when `None`). Sessions are
/// resumed, as a browser would.
pub fn client(
    pin: Option<&str>,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> (Arc<rustls::ClientConfig>, Arc<Pinned>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pinned = Arc::new(Pinned {
        want: pin.map(str::to_string),
        seen: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let builder = if versions.is_empty() {
        builder.with_safe_default_protocol_versions()
    } else {
        builder.with_protocol_versions(versions)
    };
    let mut config = builder
        .expect("ring supports these versions")
        .dangerous()
        .with_custom_certificate_verifier(pinned.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(config), pinned)
}

/// Load generation on loopback against any certificate: offers `alpn`,
/// never resumes (each connection is a new client).
pub fn load_client(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let (config, _) = client(None, &[], alpn);
    let mut config = Arc::unwrap_or_clone(config);
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// TCP to `addr`, then a TLS handshake for `localhost` with `config`.
pub async fn connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> Result<Stream, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    handshake(tcp, config).await
}

/// A TLS handshake for `localhost` with `config` over `io`.
pub async fn handshake<I>(
    io: I,
    config: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<I>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let name = ServerName::try_from("localhost").expect("a valid name");
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, io)
        .await
        .map_err(|e| e.to_string())
}

/// A certificate and its key, to serve.
pub struct Cert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Cert {
    /// Self-signed, for `localhost` and `name`.
    pub fn self_signed(name: &str) -> Cert {
        let names = vec!["localhost".to_string(), name.to_string()];
        let g = rcgen::generate_simple_self_signed(names).expect("a certificate");
        Cert {
            cert_pem: g.cert.pem(),
            key_pem: g.signing_key.serialize_pem(),
            der: g.cert.der().clone(),
        }
    }

    /// For `localhost`, signed by a throwaway CA (so not self-signed).
    pub fn ca_signed() -> Cert {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "cti test CA");
        let issuer = Issuer::new(ca, KeyPair::generate().expect("a CA key"));
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string()]).expect("leaf parameters");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().expect("a key");
        let cert = leaf.signed_by(&key, &issuer).expect("a signed certificate");
        Cert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// Its SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.der.as_ref())
    }

    /// Writes `cert.pem` and `key.pem` into `dir`.
    pub fn write(&self, dir: &Path) {
        std::fs::write(dir.join("cert.pem"), &self.cert_pem).expect("write cert.pem");
        std::fs::write(dir.join("key.pem"), &self.key_pem).expect("write key.pem");
    }
}

/// Sets `path`'s modification time: a rewrite within one clock tick keeps
/// the old one, so a test moves it rather than sleep.
pub fn set_modified(path: &Path, time: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
