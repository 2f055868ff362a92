//! TLS for the engine: rustls on the ring provider.
//!
//! Servers use certificates from PEM files or a generated development certificate (ECDSA P-256,
//! valid for at most 14 days so a browser can pin its SHA-256 with
//! `serverCertificateHashes`). Clients verify the server against the system roots, a given CA,
//! a pinned certificate SHA-256, or — explicitly insecure — not at all.

use std::fmt;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Development certificates are valid for 14 days at most (the WebTransport
/// `serverCertificateHashes` limit), starting a minute in the past to absorb clock skew.
pub const DEV_CERT_VALIDITY: Duration = Duration::from_secs(14 * 24 * 3600 - 120);

/// TLS setup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file held no usable certificate or key.
    #[error("{0}")]
    Pem(String),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The system trust store could not be loaded.
    #[error("no usable system root certificates: {0}")]
    NoRoots(String),
    /// A certificate hash was not 32 bytes of hex.
    #[error("certificate hash must be 64 hex digits (SHA-256)")]
    BadHash,
}

/// A certificate chain and its private key.
pub struct Certificate {
    /// The chain, end-entity first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("chain", &self.chain.len())
            .field("sha256", &hex(&self.sha256()))
            .finish()
    }
}

impl Clone for Certificate {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Certificate {
    /// Generate a self-signed ECDSA P-256 development certificate for `hostnames`, valid from
    /// `now` minus a minute for [`DEV_CERT_VALIDITY`].
    pub fn generate(hostnames: &[String], now: SystemTime) -> Result<Self, TlsError> {
        let mut params = rcgen::CertificateParams::new(hostnames.to_vec())?;
        let start = now.checked_sub(Duration::from_secs(60)).unwrap_or(now);
        params.not_before = time::OffsetDateTime::from(start);
        params.not_after = time::OffsetDateTime::from(start + DEV_CERT_VALIDITY);
        let mut name = rcgen::DistinguishedName::new();
        name.push(
            rcgen::DnType::CommonName,
            hostnames.first().cloned().unwrap_or_else(|| "moq".into()),
        );
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }

    /// Load a chain and a key from PEM files.
    pub fn load_pem(cert: &FsPath, key: &FsPath) -> Result<Self, TlsError> {
        let read = |path: &FsPath| {
            std::fs::read(path).map_err(|source| TlsError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(TlsError::Pem(format!(
                "{}: no certificate found",
                cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| TlsError::Pem(format!("{}: {e}", key.display())))?;
        Ok(Self { chain, key })
    }

    /// The chain and key as PEM text.
    pub fn to_pem(&self) -> (String, String) {
        let chain = self
            .chain
            .iter()
            .map(|c| pem("CERTIFICATE", c.as_ref()))
            .collect::<String>();
        let key = match &self.key {
            PrivateKeyDer::Pkcs8(k) => pem("PRIVATE KEY", k.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(k) => pem("EC PRIVATE KEY", k.secret_sec1_der()),
            PrivateKeyDer::Pkcs1(k) => pem("RSA PRIVATE KEY", k.secret_pkcs1_der()),
            _ => String::new(),
        };
        (chain, key)
    }

    /// SHA-256 of the end-entity certificate (what browsers pin).
    pub fn sha256(&self) -> [u8; 32] {
        self.chain
            .first()
            .map(|c| sha256(c.as_ref()))
            .unwrap_or_default()
    }
}

/// SHA-256 of some bytes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse 64 hex digits (colons allowed, as browsers print them).
pub fn parse_hash(text: &str) -> Result<[u8; 32], TlsError> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return Err(TlsError::BadHash);
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| TlsError::BadHash)?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| TlsError::BadHash)?;
    }
    Ok(out)
}

fn pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The ring crypto provider every config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How a client checks the server's certificate.
#[derive(Clone)]
pub enum Verification {
    /// The operating system's trust store.
    SystemRoots,
    /// Certificates from a PEM file (one or more CAs).
    Ca(Vec<CertificateDer<'static>>),
    /// Only a server whose end-entity certificate has this SHA-256 (signatures are still
    /// checked against that certificate's key).
    PinnedSha256(Vec<[u8; 32]>),
    /// No verification at all. Insecure: for local testing only.
    DangerousInsecure,
}

impl fmt::Debug for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verification::SystemRoots => f.write_str("SystemRoots"),
            Verification::Ca(c) => write!(f, "Ca({} certs)", c.len()),
            Verification::PinnedSha256(h) => write!(
                f,
                "PinnedSha256({:?})",
                h.iter().map(|h| hex(h)).collect::<Vec<_>>()
            ),
            Verification::DangerousInsecure => f.write_str("DangerousInsecure"),
        }
    }
}

impl Verification {
    /// Load CA certificates from a PEM file.
    pub fn ca_file(path: &FsPath) -> Result<Self, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(TlsError::Pem(format!(
                "{}: no certificate found",
                path.display()
            )));
        }
        Ok(Verification::Ca(certs))
    }
}

/// Build a rustls client config offering `alpns`.
pub fn client_config(
    verification: &Verification,
    alpns: Vec<Vec<u8>>,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut config = match verification {
        Verification::SystemRoots => {
            let mut roots = rustls::RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(loaded.certs);
            if added == 0 {
                return Err(TlsError::NoRoots(
                    loaded
                        .errors
                        .first()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "empty trust store".into()),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verification::Ca(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs {
                roots.add(cert.clone())?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verification::PinnedSha256(hashes) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CustomVerifier {
                pinned: Some(hashes.clone()),
                provider,
            }))
            .with_no_client_auth(),
        Verification::DangerousInsecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CustomVerifier {
                pinned: None,
                provider,
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpns;
    Ok(config)
}

/// Build a rustls server config with `certificate`, accepting `alpns` in preference order.
pub fn server_config(
    certificate: &Certificate,
    alpns: Vec<Vec<u8>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certificate.chain.clone(), certificate.key.clone_key())?;
    config.alpn_protocols = alpns;
    config.max_early_data_size = 0;
    Ok(config)
}

/// A verifier that replaces the web PKI: accepts certificates by pinned SHA-256, or any
/// certificate (insecure). Handshake signatures are always checked with the certificate's key.
#[derive(Debug)]
struct CustomVerifier {
    /// `None`: accept any certificate.
    pinned: Option<Vec<[u8; 32]>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CustomVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pinned {
            Some(hashes) if !hashes.contains(&sha256(end_entity.as_ref())) => {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_round_trips_through_pem() {
        let cert =
            Certificate::generate(&["localhost".into()], SystemTime::now()).expect("generated");
        let (chain, key) = cert.to_pem();
        assert!(chain.starts_with("-----BEGIN CERTIFICATE-----\n"));
        let dir = std::env::temp_dir().join(format!("moq-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("c.pem"), chain).expect("write");
        std::fs::write(dir.join("k.pem"), key).expect("write");
        let loaded = Certificate::load_pem(&dir.join("c.pem"), &dir.join("k.pem")).expect("loads");
        assert_eq!(loaded.sha256(), cert.sha256());
        assert!(server_config(&loaded, vec![b"moq-lite-05".to_vec()]).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hash_parsing() {
        let h = [0xabu8; 32];
        assert_eq!(parse_hash(&hex(&h)).expect("valid"), h);
        let colons = hex(&h)
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).expect("ascii"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_hash(&colons).expect("valid"), h);
        assert!(parse_hash("abc").is_err());
    }
}
