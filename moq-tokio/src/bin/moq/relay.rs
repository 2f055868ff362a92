//! `moq relay`: accept publishers and subscribers, fan out through the origin, cluster.
//!
//! Everything relay-like is the node's generic behaviour: it asks every client for its
//! announcements and re-announces them to the others, shares one upstream subscription per
//! track, caches groups for late joiners, and links to other relays with hop-ID loop
//! avoidance. This file only binds, accepts, dials the cluster and drains on Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Args;
use moq_proto::codes::SessionCode;
use moq_proto::http1;
use moq_proto::node::NodeConfig;
use moq_proto::quic::tls;
use moq_tokio::{Certificate, DriverConfig, Endpoint, EngineConfig, HttpHandler, TokioRuntime};

use crate::common::{Common, Error, random_hop_id, shutdown_signal};

/// `moq relay` flags.
#[derive(Args, Debug)]
pub(crate) struct RelayArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = "[::]:4443")]
    pub(crate) listen: SocketAddr,

    /// Certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key", conflicts_with = "tls_generate")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// Private key (PEM); needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,

    /// Generate a development certificate for these comma-separated hostnames.
    #[arg(long, value_delimiter = ',', default_value = "localhost")]
    pub(crate) tls_generate: Vec<String>,

    /// Link to another relay (repeatable); hop IDs prevent announcement loops.
    #[arg(long, value_name = "URL")]
    pub(crate) cluster_connect: Vec<String>,

    /// Ask peers to acknowledge every N ack-eliciting packets (QUIC ACK frequency extension;
    /// peers without it ignore the request). Fewer acknowledgements from many subscribers
    /// save the relay CPU; 1 keeps QUIC's default of every second packet.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) ack_threshold: u32,

    /// Concurrent streams each peer may open per direction (subscriptions and announce
    /// requests on bidirectional streams, groups in flight on unidirectional ones). Every
    /// allowed stream costs memory per connection, so keep it near what peers really use.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(16..=100_000))]
    pub(crate) max_streams: u32,

    /// TCP address of the plain-HTTP listener (`GET /certificate.sha256` for browsers and
    /// `http://` clients); default: the QUIC address and port, over TCP.
    #[arg(long, value_name = "ADDR", conflicts_with = "no_web_http")]
    pub(crate) web_http_listen: Option<SocketAddr>,

    /// TCP address of an HTTPS listener with the relay's certificate: `wss://` WebSocket
    /// sessions and `https://…/certificate.sha256` (for production, with a certificate
    /// browsers trust). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub(crate) web_https_listen: Option<SocketAddr>,

    /// No plain-HTTP listener (and so no `ws://` either).
    #[arg(long)]
    pub(crate) no_web_http: bool,

    /// Refuse WebSocket upgrades on the HTTP listener (by default browsers without
    /// WebTransport, and clients on networks that block UDP, reach the relay over WebSocket
    /// with QMux: `ws://host:port/`).
    #[arg(long)]
    pub(crate) no_websocket: bool,

    /// Seconds to drain after GOAWAY on Ctrl-C before closing.
    #[arg(long, default_value_t = 10)]
    pub(crate) drain: u64,
}

pub(crate) async fn run(common: &Common, args: RelayArgs) -> Result<(), Error> {
    let certificate = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Certificate::load_pem(cert, key)?,
        _ => Certificate::generate(&args.tls_generate, SystemTime::now())?,
    };
    let hash = tls::hex(&certificate.sha256());
    let mut config = EngineConfig::new(NodeConfig {
        hop_id: random_hop_id(),
        goaway_drain: Duration::from_secs(args.drain),
        ..NodeConfig::default()
    });
    config.certificate = Some(certificate);
    config.server_versions = common.versions();
    config.client_versions = common.versions();
    config.verification = common.verification()?;
    config.ack_eliciting_threshold = (args.ack_threshold > 1).then_some(args.ack_threshold);
    config.max_streams = args.max_streams;
    config.websocket = !args.no_websocket;
    let endpoint = Endpoint::bind(
        Arc::new(TokioRuntime),
        args.listen,
        config,
        DriverConfig::default(),
    )
    .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let port = endpoint.local_addr().port();
    let host = args
        .tls_generate
        .first()
        .filter(|_| args.tls_cert.is_none())
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    println!("moq relay listening on {}", endpoint.local_addr());
    println!("url: moqt://{host}:{port}/ (raw QUIC) and https://{host}:{port}/ (WebTransport)");
    if !args.no_web_http {
        let addr = args
            .web_http_listen
            .unwrap_or_else(|| SocketAddr::new(args.listen.ip(), port));
        let fingerprint = hash.clone();
        let handler: HttpHandler =
            Arc::new(move |request| http1::certificate_route(request, Some(&fingerprint)));
        let bound = endpoint
            .serve_http(addr, handler)
            .map_err(|e| format!("cannot listen for HTTP on TCP {addr}: {e}"))?;
        println!(
            "http: http://{host}:{}/certificate.sha256 (browsers pin this hash; http:// URLs fetch it)",
            bound.port()
        );
        if !args.no_websocket {
            println!(
                "websocket: ws://{host}:{}/ (QMux over TCP, for browsers without WebTransport)",
                bound.port()
            );
        }
    }
    if let Some(addr) = args.web_https_listen {
        let fingerprint = hash.clone();
        let handler: HttpHandler =
            Arc::new(move |request| http1::certificate_route(request, Some(&fingerprint)));
        let bound = endpoint
            .serve_https(addr, handler)
            .map_err(|e| format!("cannot listen for HTTPS on TCP {addr}: {e}"))?;
        println!(
            "https: https://{host}:{}/ (wss:// WebSocket over TLS)",
            bound.port()
        );
    }
    println!("certificate sha256: {hash}");

    for url in args.cluster_connect.clone() {
        tokio::spawn(cluster_link(endpoint.clone(), url));
    }

    let accept = {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            while let Some(session) = endpoint.accept().await {
                tracing::info!(remote = %session.remote(), version = %session.version(), "session");
                // The session lives until it closes; its task holds the handle.
                tokio::spawn(async move {
                    let reason = session.closed().await;
                    tracing::info!(remote = %session.remote(), %reason, "session ended");
                });
            }
        })
    };

    shutdown_signal().await;
    eprintln!(
        "moq relay: shutting down (GOAWAY, draining up to {} s; Ctrl-C again to stop now)",
        args.drain
    );
    endpoint.goaway("");
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(args.drain) + Duration::from_millis(500)) => {}
        _ = shutdown_signal() => {}
    }
    endpoint.close(SessionCode(0), "relay shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.closed()).await;
    accept.abort();
    Ok(())
}

/// Keep a link to another relay, reconnecting with backoff.
async fn cluster_link(endpoint: Endpoint, url: String) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match endpoint.connect(&url).await {
            Ok(session) => {
                tracing::info!(%url, version = %session.version(), "cluster link up");
                backoff = Duration::from_millis(500);
                let reason = session.closed().await;
                tracing::warn!(%url, %reason, "cluster link down");
            }
            Err(err) => {
                let err = crate::common::explain_connect_error(err);
                tracing::warn!(%url, %err, "cluster link failed");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
