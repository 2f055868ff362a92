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
use moq_proto::auth::token::{TokenAuthorizer, VerifyingKey};
use moq_proto::auth::{Authorizer, Pattern, Public};
use moq_proto::codes::SessionCode;
use moq_proto::http1;
use moq_proto::node::NodeConfig;
use moq_proto::quic::tls;
use moq_tokio::{
    Certificate, DEFAULT_KEEP_ALIVE, DriverConfig, Endpoint, EngineConfig, HttpApi, HttpHandler,
    OriginConfig, TokioRuntime,
};

use crate::common::{Common, Error, random_hop_id, shutdown_signal};

/// `moq relay` flags. Every flag can also come from `MOQ_<FLAG>` (e.g. `MOQ_LISTEN`,
/// `MOQ_AUTH_PUBLIC`) or from a TOML file (`--config`).
#[derive(Args, Debug)]
pub(crate) struct RelayArgs {
    /// Read flags from this TOML file (keys are flag names; see docs/relay.toml). The
    /// command line wins over the environment, which wins over the file.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// UDP address to listen on.
    #[arg(long, default_value = "[::]:4443", env = "MOQ_LISTEN")]
    pub(crate) listen: SocketAddr,

    /// Threads serving the UDP port (default 1; `0` = one per available core). Each has its own
    /// socket on the port (SO_REUSEPORT), QUIC engine and origin; they are linked in-process
    /// by MOQ sessions (one upstream subscription per thread and track, payloads shared, not
    /// copied), and a datagram reaching the wrong thread is handed to its connection's.
    #[arg(long, value_name = "N", default_value_t = 1, env = "MOQ_THREADS")]
    pub(crate) threads: u8,

    /// Certificate chain (PEM); needs --tls-key.
    #[arg(
        long,
        requires = "tls_key",
        conflicts_with = "tls_generate",
        env = "MOQ_TLS_CERT"
    )]
    pub(crate) tls_cert: Option<PathBuf>,

    /// Private key (PEM); needs --tls-cert.
    #[arg(long, requires = "tls_cert", env = "MOQ_TLS_KEY")]
    pub(crate) tls_key: Option<PathBuf>,

    /// Generate a development certificate for these comma-separated hostnames.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "localhost",
        env = "MOQ_TLS_GENERATE"
    )]
    pub(crate) tls_generate: Vec<String>,

    /// Verify `?jwt=` tokens with this key (repeatable): a JWK as `moq-token-cli` writes it
    /// (base64url or JSON; a private key works too), a JWK set (`{"keys": [...]}`), or a
    /// PEM public key (its key ID is the file name without extension). A token's `kid`
    /// picks the key. Sessions without a token get the --auth-public* grants, if any.
    #[arg(long, value_name = "FILE", env = "MOQ_AUTH_KEY", value_delimiter = ',')]
    pub(crate) auth_key: Vec<PathBuf>,

    /// Anyone may publish and subscribe to broadcasts matching these patterns, without a
    /// token (comma-separated or repeated; `*` one segment, `**` any number, e.g. `anon/**`).
    #[arg(
        long,
        value_name = "PATTERN",
        env = "MOQ_AUTH_PUBLIC",
        value_delimiter = ','
    )]
    pub(crate) auth_public: Vec<String>,

    /// Anyone may subscribe to broadcasts matching these patterns, without a token.
    #[arg(
        long,
        value_name = "PATTERN",
        env = "MOQ_AUTH_PUBLIC_SUBSCRIBE",
        value_delimiter = ','
    )]
    pub(crate) auth_public_subscribe: Vec<String>,

    /// Anyone may publish broadcasts matching these patterns, without a token.
    #[arg(
        long,
        value_name = "PATTERN",
        env = "MOQ_AUTH_PUBLIC_PUBLISH",
        value_delimiter = ','
    )]
    pub(crate) auth_public_publish: Vec<String>,

    /// Link to another relay (repeatable); hop IDs prevent announcement loops.
    #[arg(
        long,
        value_name = "URL",
        env = "MOQ_CLUSTER_CONNECT",
        value_delimiter = ','
    )]
    pub(crate) cluster_connect: Vec<String>,

    /// A file holding the token this relay presents on its --cluster-connect links (added
    /// to each URL as `?jwt=`, unless the URL has one).
    #[arg(long, value_name = "FILE", env = "MOQ_CLUSTER_TOKEN")]
    pub(crate) cluster_token: Option<PathBuf>,

    /// Most bytes cached per track for late joiners (the latest group is always kept).
    #[arg(long, value_name = "BYTES", default_value_t = 32 * 1024 * 1024, env = "MOQ_CACHE_CAPACITY")]
    pub(crate) cache_capacity: u64,

    /// Ask peers to acknowledge every N ack-eliciting packets (QUIC ACK frequency extension;
    /// peers without it ignore the request). Fewer acknowledgements from many subscribers
    /// save the relay CPU; 1 keeps QUIC's default of every second packet.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64), env = "MOQ_ACK_THRESHOLD")]
    pub(crate) ack_threshold: u32,

    /// Concurrent streams each peer may open per direction (subscriptions and announce
    /// requests on bidirectional streams, groups in flight on unidirectional ones). Every
    /// allowed stream costs memory per connection, so keep it near what peers really use.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(16..=100_000), env = "MOQ_MAX_STREAMS")]
    pub(crate) max_streams: u32,

    /// TCP address of the plain-HTTP listener (`GET /certificate.sha256` for browsers and
    /// `http://` clients, `ws://` WebSocket sessions, and the HTTP API: `/health`,
    /// `/announced/{prefix}`, `/fetch/{broadcast}/{track}`, `/metrics`); default: the QUIC
    /// address and port, over TCP.
    #[arg(
        long,
        value_name = "ADDR",
        conflicts_with = "no_web_http",
        env = "MOQ_WEB_HTTP_LISTEN"
    )]
    pub(crate) web_http_listen: Option<SocketAddr>,

    /// TCP address of an HTTPS listener with the relay's certificate (or --web-https-cert):
    /// `wss://` WebSocket sessions, `https://…/certificate.sha256` and the HTTP API (for
    /// production, with a certificate browsers trust). Off by default.
    #[arg(long, value_name = "ADDR", env = "MOQ_WEB_HTTPS_LISTEN")]
    pub(crate) web_https_listen: Option<SocketAddr>,

    /// Certificate chain (PEM) of the HTTPS listener, if not the relay's; needs
    /// --web-https-key.
    #[arg(long, requires = "web_https_key", env = "MOQ_WEB_HTTPS_CERT")]
    pub(crate) web_https_cert: Option<PathBuf>,

    /// Private key (PEM) of the HTTPS listener; needs --web-https-cert.
    #[arg(long, requires = "web_https_cert", env = "MOQ_WEB_HTTPS_KEY")]
    pub(crate) web_https_key: Option<PathBuf>,

    /// No plain-HTTP listener (and so no `ws://` either).
    #[arg(long, env = "MOQ_NO_WEB_HTTP")]
    pub(crate) no_web_http: bool,

    /// Refuse WebSocket upgrades on the HTTP listener (by default browsers without
    /// WebTransport, and clients on networks that block UDP, reach the relay over WebSocket
    /// with QMux: `ws://host:port/`).
    #[arg(long, env = "MOQ_NO_WEBSOCKET")]
    pub(crate) no_websocket: bool,

    /// No HTTP API (`/health`, `/announced`, `/fetch`, `/metrics`) on the HTTP listeners.
    #[arg(long, env = "MOQ_NO_HTTP_API")]
    pub(crate) no_http_api: bool,

    /// Per-broadcast metrics for at most this many broadcasts (the most watched).
    #[arg(long, default_value_t = 50, env = "MOQ_METRICS_BROADCASTS")]
    pub(crate) metrics_broadcasts: usize,

    /// Seconds of silence after which a peer is taken for gone (keep-alives go every third
    /// of it): how fast a dead client, or a dead relay in a cluster, is noticed.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=600), env = "MOQ_IDLE_TIMEOUT")]
    pub(crate) idle_timeout: u64,

    /// Seconds to drain after GOAWAY on Ctrl-C or SIGTERM before closing.
    #[arg(long, default_value_t = 10, env = "MOQ_DRAIN")]
    pub(crate) drain: u64,

    /// On shutdown, send clients this URL in GOAWAY (another relay to reconnect to).
    #[arg(long, value_name = "URL", env = "MOQ_GOAWAY_URL")]
    pub(crate) goaway_url: Option<String>,
}

pub(crate) async fn run(common: &Common, args: RelayArgs) -> Result<(), Error> {
    let certificate = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Certificate::load_pem(cert, key)?,
        _ => Certificate::generate(&args.tls_generate, SystemTime::now())?,
    };
    let hash = tls::hex(&certificate.sha256());
    let authorizer = authorizer(&args)?;
    let mut config = EngineConfig::new(NodeConfig {
        hop_id: random_hop_id(),
        goaway_drain: Duration::from_secs(args.drain),
        authorizer: authorizer.clone(),
        origin: OriginConfig {
            max_cache_bytes: args.cache_capacity,
            ..OriginConfig::default()
        },
        ..NodeConfig::default()
    });
    config.certificate = Some(certificate);
    config.server_versions = common.versions();
    config.client_versions = common.versions();
    config.verification = common.verification()?;
    config.ack_eliciting_threshold = (args.ack_threshold > 1).then_some(args.ack_threshold);
    config.max_streams = args.max_streams;
    config.websocket = !args.no_websocket;
    config.idle_timeout = Duration::from_secs(args.idle_timeout);
    // Quiet peers must not idle out, whichever side's idle timeout is the shorter.
    config.keep_alive = Some((Duration::from_secs(args.idle_timeout) / 3).min(DEFAULT_KEEP_ALIVE));
    // Not one per core by default yet: in a cluster, a relay on several threads can flap a
    // broadcast's announcement (withdrawn and announced again) when another relay dies, as
    // its threads' routes through each other are withdrawn one after the other.
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(255)),
        n => usize::from(n),
    };
    let endpoints = if threads == 1 {
        Endpoint::bind(
            Arc::new(TokioRuntime),
            args.listen,
            config,
            DriverConfig::default(),
        )
        .map(|endpoint| vec![endpoint])
    } else {
        moq_tokio::bind_threads(args.listen, config, DriverConfig::default(), threads)
    }
    .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let endpoint = endpoints[0].clone();
    let port = endpoint.local_addr().port();
    let host = args
        .tls_generate
        .first()
        .filter(|_| args.tls_cert.is_none())
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    println!("moq relay listening on {}", endpoint.local_addr());
    println!(
        "threads: {threads} (one socket, QUIC engine and origin each{})",
        if threads == 1 {
            ""
        } else {
            ", linked in-process"
        }
    );
    println!("url: moqt://{host}:{port}/ (raw QUIC) and https://{host}:{port}/ (WebTransport)");
    match &authorizer {
        None => println!("auth: none (anyone may publish and subscribe anything)"),
        Some(_) => println!(
            "auth: {} key(s); public publish {:?}, public subscribe {:?}",
            args.auth_key.len(),
            public_patterns(&args.auth_public, &args.auth_public_publish),
            public_patterns(&args.auth_public, &args.auth_public_subscribe),
        ),
    }
    let mut api = HttpApi::default();
    api.metrics_broadcasts = args.metrics_broadcasts;
    api.extra_metrics = Some(process_metrics);
    api.threads = endpoints[1..].to_vec();
    let api_note = if args.no_http_api {
        ""
    } else {
        ", /health, /announced/{prefix}, /fetch/{broadcast}/{track}, /metrics"
    };
    if !args.no_web_http {
        let addr = args
            .web_http_listen
            .unwrap_or_else(|| SocketAddr::new(args.listen.ip(), port));
        let fingerprint = hash.clone();
        let handler: HttpHandler =
            Arc::new(move |request| http1::certificate_route(request, Some(&fingerprint)));
        let bound = if args.no_http_api {
            endpoint.serve_http(addr, handler)
        } else {
            endpoint.serve_http_api(addr, handler, api.clone())
        }
        .map_err(|e| format!("cannot listen for HTTP on TCP {addr}: {e}"))?;
        println!(
            "http: http://{host}:{}/certificate.sha256 (browsers pin this hash; http:// URLs fetch it){api_note}",
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
        let own = match (&args.web_https_cert, &args.web_https_key) {
            (Some(cert), Some(key)) => Some(Certificate::load_pem(cert, key)?),
            _ => None,
        };
        // What WebTransport clients pin is the QUIC certificate, whatever this listener's.
        let fingerprint = hash.clone();
        let handler: HttpHandler =
            Arc::new(move |request| http1::certificate_route(request, Some(&fingerprint)));
        let bound = if args.no_http_api && own.is_none() {
            endpoint.serve_https(addr, handler)
        } else {
            let api = api.clone();
            endpoint.serve_https_api(addr, handler, api, own.as_ref())
        }
        .map_err(|e| format!("cannot listen for HTTPS on TCP {addr}: {e}"))?;
        println!(
            "https: https://{host}:{}/ (wss:// WebSocket over TLS){api_note}",
            bound.port()
        );
    }
    println!("certificate sha256: {hash}");

    let cluster_token = match &args.cluster_token {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --cluster-token {}: {e}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    for url in args.cluster_connect.clone() {
        let url = with_token(&url, cluster_token.as_deref());
        tokio::spawn(cluster_link(endpoint.clone(), url));
    }

    tokio::spawn(trim_when_idle(endpoints.clone()));

    let accepts: Vec<_> = endpoints
        .iter()
        .enumerate()
        .map(|(thread, endpoint)| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                while let Some(session) = endpoint.accept().await {
                    tracing::info!(remote = %session.remote(), version = %session.version(), thread, "session");
                    // The session lives until it closes; its task holds the handle.
                    tokio::spawn(async move {
                        let reason = session.closed().await;
                        tracing::info!(remote = %session.remote(), %reason, "session ended");
                    });
                }
            })
        })
        .collect();

    shutdown_signal().await;
    eprintln!(
        "moq relay: shutting down (GOAWAY, draining up to {} s; Ctrl-C again to stop now)",
        args.drain
    );
    for endpoint in &endpoints {
        endpoint.goaway(args.goaway_url.as_deref().unwrap_or(""));
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(args.drain) + Duration::from_millis(500)) => {}
        _ = drained(&endpoints) => {}
        _ = crate::common::signals_above(1) => {}
    }
    for endpoint in &endpoints {
        endpoint.close(SessionCode(0), "relay shutting down");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        for endpoint in &endpoints {
            endpoint.closed().await;
        }
    })
    .await;
    for accept in accepts {
        accept.abort();
    }
    Ok(())
}

/// Give freed memory back to the system once the relay has had no session for a while.
///
/// glibc keeps what a burst of sessions freed in its arenas (a relay that served 200
/// sessions sat at 51 MB RSS with a live heap of 8 MB; trimming brought it to 14 MB), which
/// reads as a leak to an operator watching RSS. Trimming walks the arenas, so it runs only on
/// the transition to idle, not while sessions come and go.
async fn trim_when_idle(endpoints: Vec<Endpoint>) {
    let mut trimmed = true;
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let sessions = sessions(&endpoints);
        if sessions > 0 {
            trimmed = false;
        } else if !trimmed {
            trimmed = true;
            release_free_memory();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers and only returns free pages to the kernel; it
    // is thread-safe (it locks each arena in turn).
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(released, "idle: returned free memory to the system");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// The process's memory and descriptors for `/metrics`, under the names Prometheus' own
/// clients use, plus the allocator's view: live heap bytes (what the program holds) against
/// resident memory (what the system sees) tells a leak from memory the allocator retains.
fn process_metrics() -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        if let Some(rss) = kib("VmRSS:") {
            gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss * 1024,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            fds.count() as u64,
        );
    }
    if let Some(heap) = live_heap_bytes() {
        gauge(
            "moq_heap_live_bytes",
            "Heap bytes allocated and not freed (glibc mallinfo2: in-use chunks plus mmapped blocks).",
            heap,
        );
    }
    out
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn live_heap_bytes() -> Option<u64> {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value; it locks each
    // arena while it sums it.
    let info = unsafe { libc::mallinfo2() };
    Some((info.uordblks + info.hblkhd) as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn live_heap_bytes() -> Option<u64> {
    None
}

/// Sessions with clients and other relays on every thread (the links between threads are
/// not counted).
fn sessions(endpoints: &[Endpoint]) -> usize {
    endpoints
        .iter()
        .map(|endpoint| endpoint.with_node(|node, _| node.gauges().sessions))
        .sum()
}

/// Resolves once no session is left (every client followed GOAWAY).
async fn drained(endpoints: &[Endpoint]) {
    loop {
        if sessions(endpoints) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `--auth-public` plus the direction's own list.
fn public_patterns(both: &[String], one: &[String]) -> Vec<String> {
    both.iter().chain(one).cloned().collect()
}

fn parse_patterns(flag: &str, texts: Vec<String>) -> Result<Vec<Pattern>, Error> {
    texts
        .into_iter()
        .map(|text| {
            let pattern = Pattern::parse(&text).map_err(|e| format!("--{flag} {text:?}: {e}"))?;
            if !pattern.has_wildcard() {
                return Err(format!(
                    "--{flag} {text:?} names one broadcast; write `{text}/**` for the subtree"
                )
                .into());
            }
            Ok(pattern)
        })
        .collect()
}

/// The authorizer the flags ask for (`None`: no auth flag, everything allowed).
fn authorizer(args: &RelayArgs) -> Result<Option<Arc<dyn Authorizer>>, Error> {
    let public = Public {
        publish: parse_patterns(
            "auth-public-publish",
            public_patterns(&args.auth_public, &args.auth_public_publish),
        )?,
        subscribe: parse_patterns(
            "auth-public-subscribe",
            public_patterns(&args.auth_public, &args.auth_public_subscribe),
        )?,
    };
    if args.auth_key.is_empty() && public.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::new();
    for path in &args.auth_key {
        let text = std::fs::read(path)
            .map_err(|e| format!("cannot read --auth-key {}: {e}", path.display()))?;
        let stem = path.file_stem().and_then(|s| s.to_str());
        keys.extend(
            VerifyingKey::parse_file(&text, stem)
                .map_err(|e| format!("--auth-key {}: {e}", path.display()))?,
        );
    }
    Ok(Some(Arc::new(TokenAuthorizer::new(keys, public))))
}

/// `url` with `?jwt=token` added, unless it has a token already.
fn with_token(url: &str, token: Option<&str>) -> String {
    match token {
        Some(token) if !url.contains("jwt=") => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}jwt={token}")
        }
        _ => url.to_string(),
    }
}

/// Keep a link to another relay, reconnecting with backoff.
async fn cluster_link(endpoint: Endpoint, url: String) {
    let shown = crate::common::redact_token(&url);
    let mut backoff = Duration::from_millis(500);
    loop {
        match endpoint.connect(&url).await {
            Ok(session) => {
                tracing::info!(url = %shown, version = %session.version(), "cluster link up");
                backoff = Duration::from_millis(500);
                let reason = session.closed().await;
                tracing::warn!(url = %shown, %reason, "cluster link down");
            }
            Err(err) => {
                let err = crate::common::explain_connect_error(err);
                tracing::warn!(url = %shown, %err, "cluster link failed");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
