//! TLS for the engine: rustls on the ring provider.
//!
//! Servers use certificates from PEM files or a generated development certificate (ECDSA P-256,
//! valid for at most 14 days so a browser can pin its SHA-256 with
//! `serverCertificateHashes`). Clients verify the server against the system roots, a given CA,
//! a pinned certificate SHA-256, or — explicitly insecure — not at all.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

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
    /// A server configuration needs a certificate and none was given.
    #[error("no certificate configured")]
    NoCertificate,
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
#[non_exhaustive]
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

/// Build a rustls client config offering `alpns`; refused certificates are recorded in `log`.
pub(crate) fn client_config(
    verification: &Verification,
    alpns: Vec<Vec<u8>>,
    log: Arc<RefusalLog>,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let roots = |certs: Vec<CertificateDer<'static>>| -> Result<VerifyMode, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(certs);
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::NoRoots(e.to_string()))?;
        Ok(VerifyMode::WebPki(verifier))
    };
    let mode = match verification {
        Verification::SystemRoots => {
            let loaded = rustls_native_certs::load_native_certs();
            if loaded.certs.is_empty() {
                return Err(TlsError::NoRoots(
                    loaded
                        .errors
                        .first()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "empty trust store".into()),
                ));
            }
            roots(loaded.certs)?
        }
        Verification::Ca(certs) => roots(certs.clone())?,
        Verification::PinnedSha256(hashes) => VerifyMode::Pinned(hashes.clone()),
        Verification::DangerousInsecure => VerifyMode::Insecure,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            mode,
            provider,
            log,
        }))
        .with_no_client_auth();
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
    // Stateless resumption tickets: the ticket carries the session state, encrypted with a
    // rotating key, so a relay keeps no memory per client that ever connected (rustls'
    // default server cache holds up to 256 sessions, about 320 bytes each).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}

/// Why a client refused a server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Self-signed (a development certificate, such as `moq relay`'s generated one).
    SelfSigned,
    /// Issued by a CA the client does not trust.
    UnknownIssuer,
    /// Past its validity period.
    Expired,
    /// Not valid yet.
    NotYetValid,
    /// Not issued for the host name dialled.
    WrongName,
    /// Its SHA-256 is not among the pinned hashes.
    NotPinned,
    /// Something else, as rustls put it.
    Other(String),
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SelfSigned => f.write_str("it is self-signed"),
            Self::UnknownIssuer => f.write_str("its issuer is unknown"),
            Self::Expired => f.write_str("it has expired"),
            Self::NotYetValid => f.write_str("it is not valid yet"),
            Self::WrongName => f.write_str("it is not valid for this host name"),
            Self::NotPinned => f.write_str("its SHA-256 is not the pinned one"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// A server certificate the client's [`Verification`] refused, with what a user needs to
/// decide: trust it by pinning its SHA-256 ([`Verification::PinnedSha256`]), trust its CA
/// ([`Verification::Ca`]), or, for local testing only, skip verification
/// ([`Verification::DangerousInsecure`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server certificate for {server_name} is not trusted: {problem} (sha256 {})", hex(.sha256))]
pub struct UntrustedCertificate {
    /// The host name dialled.
    pub server_name: String,
    /// SHA-256 of the certificate (what `--tls-cert-hash` and browsers pin).
    pub sha256: [u8; 32],
    /// Why it was refused.
    pub problem: CertificateProblem,
}

/// The latest certificate refusals, so a failed connection can say why in a typed error
/// (quinn-proto only carries the TLS alert and text). Bounded.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog(Mutex<VecDeque<UntrustedCertificate>>);

/// Refusals remembered; more than this many connections failing at once is not a case where
/// the details matter.
const REFUSALS_KEPT: usize = 16;

impl RefusalLog {
    fn record(&self, refusal: UntrustedCertificate) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= REFUSALS_KEPT {
            log.pop_front();
        }
        log.push_back(refusal);
    }

    /// The latest refusal for `server_name`, removed from the log.
    pub(crate) fn take(&self, server_name: &str) -> Option<UntrustedCertificate> {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let index = log.iter().rposition(|r| r.server_name == server_name)?;
        log.remove(index)
    }
}

enum VerifyMode {
    /// The web PKI against these roots.
    WebPki(Arc<WebPkiServerVerifier>),
    /// Only these certificate hashes.
    Pinned(Vec<[u8; 32]>),
    /// Anything.
    Insecure,
}

/// The client's certificate verifier: the web PKI, pinned hashes or nothing, recording every
/// refusal with the certificate's hash. Handshake signatures are always checked with the
/// certificate's key.
struct Verifier {
    mode: VerifyMode,
    provider: Arc<CryptoProvider>,
    log: Arc<RefusalLog>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.mode {
            VerifyMode::WebPki(_) => "web PKI",
            VerifyMode::Pinned(_) => "pinned",
            VerifyMode::Insecure => "insecure",
        };
        f.debug_struct("Verifier").field("mode", &mode).finish()
    }
}

impl Verifier {
    fn refuse(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        problem: CertificateProblem,
    ) -> rustls::Error {
        let refusal = UntrustedCertificate {
            server_name: server_name.to_str().into_owned(),
            sha256: sha256(end_entity.as_ref()),
            problem,
        };
        self.log.record(refusal.clone());
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(refusal))))
    }
}

/// What a web PKI error means for a user.
fn classify(error: &rustls::Error, end_entity: &[u8]) -> CertificateProblem {
    let rustls::Error::InvalidCertificate(error) = error else {
        return CertificateProblem::Other(error.to_string());
    };
    match error {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            CertificateProblem::Expired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            CertificateProblem::NotYetValid
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            CertificateProblem::WrongName
        }
        // A self-signed certificate surfaces as an unknown issuer, or (webpki trying the
        // certificate's own signature against an unrelated root) as a signature error.
        _ if is_self_signed(end_entity) => CertificateProblem::SelfSigned,
        CertificateError::UnknownIssuer => CertificateProblem::UnknownIssuer,
        other => CertificateProblem::Other(format!("{other:?}")),
    }
}

/// True when the certificate's issuer and subject names are the same (DER-equal).
fn is_self_signed(der: &[u8]) -> bool {
    issuer_and_subject(der).is_some_and(|(issuer, subject)| issuer == subject)
}

/// The issuer and subject Name fields of an X.509 certificate (RFC 5280 §4.1), raw DER.
fn issuer_and_subject(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (certificate, _) = der_element(der, 0x30)?;
    let (tbs, _) = der_element(certificate, 0x30)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, optional.
    if rest.first() == Some(&0xa0) {
        rest = der_element(rest, 0xa0)?.1;
    }
    rest = der_element(rest, 0x02)?.1; // serialNumber
    rest = der_element(rest, 0x30)?.1; // signature algorithm
    let issuer_start = rest;
    rest = der_element(rest, 0x30)?.1;
    let issuer = &issuer_start[..issuer_start.len() - rest.len()];
    rest = der_element(rest, 0x30)?.1; // validity
    let subject_start = rest;
    rest = der_element(rest, 0x30)?.1;
    let subject = &subject_start[..subject_start.len() - rest.len()];
    Some((issuer, subject))
}

/// One DER element with tag `tag`: its contents and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, mut rest) = rest.split_first()?;
    let len = if len0 < 0x80 {
        usize::from(len0)
    } else {
        let count = usize::from(len0 & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[count..];
        len
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.mode {
            VerifyMode::WebPki(inner) => inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map_err(|e| {
                    let problem = classify(&e, end_entity.as_ref());
                    self.refuse(end_entity, server_name, problem)
                }),
            VerifyMode::Pinned(hashes) if !hashes.contains(&sha256(end_entity.as_ref())) => {
                Err(self.refuse(end_entity, server_name, CertificateProblem::NotPinned))
            }
            VerifyMode::Pinned(_) | VerifyMode::Insecure => Ok(ServerCertVerified::assertion()),
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
    fn dev_certificate_is_recognised_as_self_signed() {
        let cert =
            Certificate::generate(&["localhost".into()], SystemTime::now()).expect("generated");
        let der = cert.chain[0].as_ref();
        let (issuer, subject) = issuer_and_subject(der).expect("parses");
        assert!(!issuer.is_empty() && issuer == subject);
        assert!(is_self_signed(der));
        // Any truncation is refused, never a panic.
        for end in 0..der.len() {
            let _ = issuer_and_subject(&der[..end]);
        }
    }

    #[test]
    fn dev_certificates_suit_server_certificate_hashes() {
        // Chromium pins only ECDSA P-256/P-384 or Ed25519 certificates valid for at most 14
        // days (WebTransport `serverCertificateHashes`).
        assert!(DEV_CERT_VALIDITY <= Duration::from_secs(14 * 24 * 3600));
        let cert =
            Certificate::generate(&["localhost".into()], SystemTime::now()).expect("generated");
        let der = cert.chain[0].as_ref();
        let ec_public_key = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        let prime256v1 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(has(&ec_public_key) && has(&prime256v1));
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
