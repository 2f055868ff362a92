//! Flags every command shares, and building endpoints from them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use moq_proto::codes::SessionCode;
use moq_proto::node::NodeConfig;
use moq_proto::quic::tls;
use moq_tokio::{
    ConnectError, ConnectFailure, Endpoint, EngineConfig, Session, TokioRuntime, Verification,
    Version,
};

/// An error for the user: one line, no backtrace.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// Shared flags.
#[derive(Args, Debug, Clone)]
pub(crate) struct Common {
    /// Pin one wire version: moq-lite-03, moq-lite-04 or moq-lite-05 (default: offer/accept all).
    #[arg(
        long = "version",
        global = true,
        value_name = "VERSION",
        env = "MOQ_VERSION"
    )]
    pub(crate) version: Option<Version>,

    /// Do not verify the server certificate (insecure; for local testing).
    #[arg(long, global = true, env = "MOQ_TLS_DISABLE_VERIFY")]
    pub(crate) tls_disable_verify: bool,

    /// Accept only a server certificate with this SHA-256 (hex, colons allowed; repeatable).
    #[arg(
        long,
        global = true,
        value_name = "HEX",
        env = "MOQ_TLS_CERT_HASH",
        value_delimiter = ','
    )]
    pub(crate) tls_cert_hash: Vec<String>,

    /// Clients (`pub`, `sub`, `clock`, `announced`): do not reconnect when the session ends
    /// (by default they redial with backoff, follow GOAWAY, and publish and subscribe again).
    #[arg(long, global = true, env = "MOQ_NO_RECONNECT")]
    pub(crate) no_reconnect: bool,

    /// Verify the server against this CA certificate (PEM) instead of the system roots.
    #[arg(long, global = true, value_name = "PEM", env = "MOQ_TLS_ROOT")]
    pub(crate) tls_root: Option<PathBuf>,

    /// Also try WebSocket (QMux over TCP) this many milliseconds after QUIC / WebTransport,
    /// as browsers do, for networks that block UDP: the first to connect wins (`https://`
    /// and `moqt://` URLs race `wss://`, `http://` races `ws://`).
    #[arg(long, global = true, value_name = "MS", env = "MOQ_WEBSOCKET_FALLBACK")]
    pub(crate) websocket_fallback: Option<u64>,

    /// Log level or filter (error, warn, info, debug, trace); RUST_LOG takes precedence.
    #[arg(long, global = true, default_value = "info", env = "MOQ_LOG")]
    pub(crate) log: String,
}

/// Install the tracing subscriber (binaries only; the library never does).
pub(crate) fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a log file or a pipe gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A random hop ID in `[1, 2^53)`, from the OS RNG.
pub(crate) fn random_hop_id() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the clock; hop IDs only need to differ.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    u64::from_le_bytes(bytes) % ((1 << 53) - 1) + 1
}

impl Common {
    /// How clients verify servers, from the flags.
    pub(crate) fn verification(&self) -> Result<Verification, Error> {
        if self.tls_disable_verify {
            return Ok(Verification::DangerousInsecure);
        }
        if !self.tls_cert_hash.is_empty() {
            let hashes = self
                .tls_cert_hash
                .iter()
                .map(|h| tls::parse_hash(h))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Verification::PinnedSha256(hashes));
        }
        if let Some(root) = &self.tls_root {
            return Ok(Verification::ca_file(root)?);
        }
        Ok(Verification::SystemRoots)
    }

    /// The versions to offer or accept.
    pub(crate) fn versions(&self) -> Vec<Version> {
        match self.version {
            Some(v) => vec![v],
            None => Version::ALL.to_vec(),
        }
    }

    /// Engine configuration for a client.
    pub(crate) fn client_config(&self) -> Result<EngineConfig, Error> {
        let mut config = EngineConfig::new(NodeConfig {
            hop_id: random_hop_id(),
            ..NodeConfig::default()
        });
        config.verification = self.verification()?;
        config.client_versions = self.versions();
        Ok(config)
    }

    /// A client endpoint connected to `url`.
    pub(crate) async fn connect(&self, url: &str) -> Result<(Endpoint, Session), Error> {
        let endpoint = Endpoint::client(Arc::new(TokioRuntime), self.client_config()?)?;
        let session = self.dial(&endpoint, url).await?;
        Ok((endpoint, session))
    }

    /// A session to `url` from `endpoint` (racing WebSocket if asked), within 15 s.
    pub(crate) async fn dial(&self, endpoint: &Endpoint, url: &str) -> Result<Session, Error> {
        let connecting = async {
            match self.websocket_fallback {
                Some(ms) => {
                    endpoint
                        .connect_racing(url, &[], Duration::from_millis(ms))
                        .await
                }
                None => endpoint.connect(url).await,
            }
        };
        let session = tokio::time::timeout(Duration::from_secs(15), connecting)
            .await
            .map_err(|_| format!("connection to {url} timed out"))?
            .map_err(explain_connect_error)?;
        let transport = session
            .transport()
            .map_or_else(|| "closed".to_string(), |t| t.to_string());
        let url = redact_token(url);
        tracing::info!(%url, version = %session.version(), %transport, "connected");
        Ok(session)
    }
}

/// A connection error in one line that says what to do: an untrusted certificate names its
/// SHA-256 and the flags that trust it.
pub(crate) fn explain_connect_error(err: ConnectError) -> Error {
    match err {
        ConnectError::Failed {
            url,
            failure: ConnectFailure::UntrustedCertificate(cert),
        } => format!(
            "{}: {cert}; to trust it pass --tls-cert-hash {} (the hash the relay printed), \
             --tls-root <CA PEM> for a CA-issued certificate, or --tls-disable-verify for local \
             testing",
            redact_token(&url),
            tls::hex(&cert.sha256)
        )
        .into(),
        other => redact_token(&other.to_string()).into(),
    }
}

/// Close a client endpoint and wait (briefly) for its connections to close, so the
/// CONNECTION_CLOSE reaches the relay before the process exits. Otherwise the relay only
/// notices at its idle timeout, and keeps announcing what this client published until then.
pub(crate) async fn close(endpoint: &Endpoint) {
    endpoint.close(SessionCode(0), "done");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.closed()).await;
}

/// Signals (Ctrl-C, SIGTERM) received so far, counted by one listener for the whole process:
/// a signal that arrives while no task waits is never lost.
fn signals() -> tokio::sync::watch::Receiver<u64> {
    static SIGNALS: std::sync::OnceLock<tokio::sync::watch::Receiver<u64>> =
        std::sync::OnceLock::new();
    SIGNALS
        .get_or_init(|| {
            let (tx, rx) = tokio::sync::watch::channel(0u64);
            tokio::spawn(async move {
                #[cfg(unix)]
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                loop {
                    #[cfg(unix)]
                    let got = match term.as_mut() {
                        Some(term) => tokio::select! {
                            r = tokio::signal::ctrl_c() => r.is_ok(),
                            r = term.recv() => r.is_some(),
                        },
                        None => tokio::signal::ctrl_c().await.is_ok(),
                    };
                    #[cfg(not(unix))]
                    let got = tokio::signal::ctrl_c().await.is_ok();
                    if !got {
                        return;
                    }
                    tx.send_modify(|n| *n += 1);
                }
            });
            rx
        })
        .clone()
}

/// Start listening for signals (call early: a signal before that ends the process at once).
pub(crate) fn listen_for_signals() {
    let _ = signals();
}

/// Wait for Ctrl-C (or SIGTERM): resolves once one has been received, even earlier.
pub(crate) async fn shutdown_signal() {
    signals_above(0).await;
}

/// Wait until more than `n` signals were received (a second Ctrl-C: `signals_above(1)`).
pub(crate) async fn signals_above(n: u64) {
    let mut rx = signals();
    let _ = rx.wait_for(|count| *count > n).await;
}

/// `text` (a URL, an error) with every `jwt=` token's value hidden: tokens are credentials
/// and never belong in logs.
pub(crate) fn redact_token(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("jwt=") {
        out.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')))
            .unwrap_or(rest.len());
        if end > 0 {
            out.push('…');
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
