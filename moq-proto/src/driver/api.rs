//! The async handles.

use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Runtime;
use super::http::HttpHandler;
use super::http_api::HttpApi;
use super::shared::{Connect, Shared, State, SubSlot, WatchSlot};
use super::task::Driver;
use crate::codes::{SessionCode, StreamCode};
use crate::node::{LocalSubId, PublishError, WatchId};
use crate::origin::{BroadcastId, GroupState, PeerId, TrackId};
use crate::quic::{
    ConnectFailure, Dial, EngineConfig, EngineError, MoqUrl, Scheme, UrlError, Verification, tls,
};
use crate::session::SubscribeParams;
use crate::wire::{Path, PathError, TrackInfo, Version};

/// Where a development server publishes its certificate's SHA-256 (moq-dev's convention).
const CERT_HASH_PATH: &str = "/certificate.sha256";

/// Limits of the async layer.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Publishers wait while more than this many bytes wait for quinn-proto.
    pub max_buffered: usize,
    /// Most payload bytes buffered per subscription for a slow reader; beyond it the oldest
    /// buffered group is dropped.
    pub max_subscription_buffer: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            max_buffered: 16 * 1024 * 1024,
            max_subscription_buffer: 16 * 1024 * 1024,
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not usable.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// `http://`: the certificate hash could not be fetched from the server's HTTP port.
    #[error("cannot get the certificate hash of {url}: {reason}")]
    CertificateHash {
        /// The URL dialled.
        url: String,
        /// Why.
        reason: String,
    },
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host name.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// The engine refused to start it.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The handshake failed: an untrusted certificate, no common version, unreachable,
    /// timeout.
    #[error("connection to {url} failed: {failure}")]
    Failed {
        /// The URL dialled.
        url: String,
        /// Why.
        failure: ConnectFailure,
    },
    /// The endpoint is closed.
    #[error("endpoint closed")]
    Closed,
}

/// How a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionEnd {
    /// The track ended cleanly: every group was delivered or accounted for.
    Finished,
    /// The publisher (or a relay on the way) reset it with this code, e.g.
    /// [`StreamCode::UNROUTABLE`] when nobody publishes the broadcast.
    Failed(StreamCode),
}

impl std::fmt::Display for SubscriptionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Finished => f.write_str("track finished"),
            Self::Failed(code) => write!(f, "subscription failed with code {code}"),
        }
    }
}

/// One frame read from a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Timestamp in track timescale units (arrival milliseconds for lite-03/04 sources).
    pub timestamp: u64,
    /// The payload.
    pub payload: Bytes,
}

/// An endpoint: a UDP socket, a QUIC engine and its origin, driven in the background.
///
/// Cloning is cheap; every clone is the same endpoint.
#[derive(Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
    runtime: Arc<dyn Runtime>,
    local_addr: SocketAddr,
    epoch: Instant,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Endpoint {
    /// Bind `addr` and start the driver. With a certificate in `config` it accepts
    /// connections; it can always dial.
    pub fn bind(
        runtime: Arc<dyn Runtime>,
        addr: SocketAddr,
        config: EngineConfig,
        driver: DriverConfig,
    ) -> io::Result<Self> {
        let socket = runtime.bind_udp(addr)?;
        Self::bind_socket(runtime, socket, config, driver)
    }

    /// Start an endpoint on a socket the caller bound (one of several sharing a port with
    /// [`Runtime::bind_udp_shared`], say). The driver runs where `runtime` spawns it.
    pub fn bind_socket(
        runtime: Arc<dyn Runtime>,
        socket: Arc<dyn super::AsyncUdpSocket>,
        mut config: EngineConfig,
        driver: DriverConfig,
    ) -> io::Result<Self> {
        let local_addr = socket.local_addr()?;
        config.max_gso_segments = socket.max_transmit_segments();
        let mut engine =
            crate::quic::Endpoint::new(config).map_err(|e| io::Error::other(e.to_string()))?;
        // Token expiry is in Unix time; the sans-IO node learns the wall clock from us.
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        engine.node().set_wall_clock(runtime.now(), unix);
        let shared = Arc::new(Shared::new(State::new(engine, driver)));
        runtime.spawn(Box::pin(Driver::new(
            shared.clone(),
            socket,
            runtime.clone(),
        )));
        Ok(Self {
            epoch: runtime.now(),
            shared,
            runtime,
            local_addr,
        })
    }

    /// A client endpoint on an ephemeral port (IPv6 dual-stack, else IPv4).
    pub fn client(runtime: Arc<dyn Runtime>, config: EngineConfig) -> io::Result<Self> {
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);
        match Self::bind(runtime.clone(), v6, config.clone(), DriverConfig::default()) {
            Ok(endpoint) => Ok(endpoint),
            Err(_) => Self::bind(
                runtime,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                config,
                DriverConfig::default(),
            ),
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// SHA-256 of our certificate, if we serve.
    pub fn certificate_hash(&self) -> Option<[u8; 32]> {
        self.shared.lock().engine.certificate_hash()
    }

    /// Run `f` on the engine (and its node), then let the driver send what it produced.
    /// Private: `f` runs under the endpoint's lock, so a handle used inside it would deadlock.
    pub(super) fn with_engine<R>(
        &self,
        f: impl FnOnce(&mut crate::quic::Endpoint, Instant) -> R,
    ) -> R {
        let now = self.runtime.now();
        let mut state = self.shared.lock();
        let result = f(&mut state.engine, now);
        state.engine.apply_commands(now);
        state.wake_driver();
        result
    }

    /// Run `f` on the node (the origin, stats, grants) under the endpoint's lock. `f` must
    /// not use this endpoint's handles: they take the same lock (a deadlock).
    pub fn with_node<R>(&self, f: impl FnOnce(&mut crate::node::Node, Instant) -> R) -> R {
        self.with_state(|state, now| f(state.engine.node(), now))
    }

    /// The runtime the endpoint runs on (its timers and tasks).
    pub(super) fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// The runtime's clock.
    pub(super) fn runtime_now(&self) -> Instant {
        self.runtime.now()
    }

    /// `future`'s output, or `None` once `deadline` passed.
    pub(super) async fn until<T>(
        &self,
        deadline: Instant,
        future: std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + '_>>,
    ) -> Option<T> {
        let mut future = future;
        let mut timer = self.runtime.new_timer(deadline);
        poll_fn(|cx| {
            if let Poll::Ready(v) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    pub(super) fn with_state<R>(&self, f: impl FnOnce(&mut State, Instant) -> R) -> R {
        let now = self.runtime.now();
        let mut state = self.shared.lock();
        let result = f(&mut state, now);
        state.engine.apply_commands(now);
        state.wake_driver();
        result
    }

    /// Connect to `moqt://host:port/path`, offering every configured version.
    pub async fn connect(&self, url: &str) -> Result<Session, ConnectError> {
        self.connect_versions(url, &[]).await
    }

    /// Connect offering only `versions` (newest first; empty = the configured list).
    ///
    /// `moqt://` dials MOQ over QUIC, `https://` over WebTransport, and `http://` over
    /// WebTransport after fetching `http://host:port/certificate.sha256` and pinning that
    /// hash (for development servers with a generated certificate).
    pub async fn connect_versions(
        &self,
        url: &str,
        versions: &[Version],
    ) -> Result<Session, ConnectError> {
        let parsed = MoqUrl::parse(url)?;
        if parsed.scheme.is_websocket() {
            let addrs = self.resolve_all(&parsed).await?;
            return self.connect_websocket(&parsed, addrs, versions).await;
        }
        let remote = self.resolve(&parsed).await?;
        let mut dial = Dial::new(remote, &parsed.host, &parsed.path);
        dial.versions = versions.to_vec();
        if parsed.scheme.is_webtransport() {
            dial.webtransport = Some(parsed.authority());
        }
        if parsed.scheme == Scheme::Http {
            dial.verification = Some(self.fetch_certificate_hash(&parsed, remote).await?);
        }
        let handle = self.with_state(|state, now| {
            if state.closed {
                return Err(ConnectError::Closed);
            }
            let handle = state.engine.dial(now, dial)?;
            state.connects.insert(handle, Connect::Pending(None));
            Ok(handle)
        })?;
        self.connected(handle, &parsed).await
    }

    /// Connect as browsers do on networks that may block UDP: `url` (QUIC or WebTransport)
    /// first and, if it has not connected `delay` later, a WebSocket to the same host and
    /// port as well (`https://` and `moqt://` race `wss://`, `http://` races `ws://`); the
    /// first session wins and the other attempt is closed. A `ws://`/`wss://` URL just
    /// connects.
    pub async fn connect_racing(
        &self,
        url: &str,
        versions: &[Version],
        delay: Duration,
    ) -> Result<Session, ConnectError> {
        let parsed = MoqUrl::parse(url)?;
        if parsed.scheme.is_websocket() {
            return self.connect_versions(url, versions).await;
        }
        let fallback = MoqUrl {
            scheme: match parsed.scheme {
                Scheme::Http => Scheme::Ws,
                _ => Scheme::Wss,
            },
            ..parsed.clone()
        };
        let attempt = |url: String| {
            let endpoint = self.clone();
            let versions = versions.to_vec();
            async move { endpoint.connect_versions(&url, &versions).await }
        };
        let mut first = Box::pin(attempt(url.to_string()));
        let mut second = Box::pin(attempt(fallback.to_string()));
        let mut timer = self.runtime.new_timer(self.runtime.now() + delay);
        let mut waited = false;
        let mut first_result = None;
        let mut second_result = None;
        let (winner, loser) = poll_fn(|cx| {
            if first_result.is_none()
                && let Poll::Ready(result) = first.as_mut().poll(cx)
            {
                first_result = Some(result);
            }
            if !waited && timer.as_mut().poll(cx).is_ready() {
                waited = true;
            }
            // The fallback starts after the delay, or at once when the first attempt failed.
            let start_second = waited || matches!(first_result, Some(Err(_)));
            if start_second
                && second_result.is_none()
                && let Poll::Ready(result) = second.as_mut().poll(cx)
            {
                second_result = Some(result);
            }
            match (&first_result, &second_result) {
                (Some(Ok(_)), _) => Poll::Ready((first_result.take(), Some(1))),
                (_, Some(Ok(_))) => Poll::Ready((second_result.take(), Some(0))),
                (Some(Err(_)), Some(Err(_))) => Poll::Ready((first_result.take(), None)),
                _ => Poll::Pending,
            }
        })
        .await;
        // A losing attempt still under way may yet connect: let it finish in the background
        // and drop (close) its session.
        match loser {
            Some(1) if second_result.is_none() && waited => {
                self.runtime.spawn(Box::pin(async move {
                    let _ = second.await;
                }));
            }
            Some(0) if first_result.is_none() => {
                self.runtime.spawn(Box::pin(async move {
                    let _ = first.await;
                }));
            }
            _ => {}
        }
        winner.unwrap_or(Err(ConnectError::Closed))
    }

    /// Wait for the connection `handle` to attach its session.
    async fn connected(
        &self,
        handle: crate::quic::ConnectionHandle,
        url: &MoqUrl,
    ) -> Result<Session, ConnectError> {
        let result = poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.closed {
                state.connects.remove(&handle);
                return Poll::Ready(Err(ConnectError::Closed));
            }
            match state.connects.get_mut(&handle) {
                Some(Connect::Pending(waker)) => {
                    *waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                Some(Connect::Done(_)) => match state.connects.remove(&handle) {
                    Some(Connect::Done(result)) => {
                        Poll::Ready(result.map_err(|failure| ConnectError::Failed {
                            url: url.to_string(),
                            failure,
                        }))
                    }
                    _ => Poll::Ready(Err(ConnectError::Closed)),
                },
                None => Poll::Ready(Err(ConnectError::Closed)),
            }
        })
        .await?;
        let (peer, version, remote) = result;
        Ok(Session {
            endpoint: self.clone(),
            peer,
            version,
            remote,
        })
    }

    /// `ws://`: upgrade a TCP connection to WebSocket offering `qmux-0N.<version>` for each
    /// version, then run the session over QMux.
    async fn connect_websocket(
        &self,
        url: &MoqUrl,
        addrs: Vec<SocketAddr>,
        versions: &[Version],
    ) -> Result<Session, ConnectError> {
        let failed = |failure: ConnectFailure| ConnectError::Failed {
            url: url.to_string(),
            failure,
        };
        let tls = match url.scheme {
            Scheme::Wss => {
                let config = self
                    .shared
                    .lock()
                    .engine
                    .tcp_tls_client_config()
                    .map_err(|e| failed(ConnectFailure::Transport(e.to_string())))?;
                Some((config, url.host.clone()))
            }
            _ => None,
        };
        let versions = match versions {
            [] => self.shared.lock().engine.config().client_versions.clone(),
            given => given.to_vec(),
        };
        let (stream, remote, protocol, leftover) = super::websocket::handshake(
            self.runtime.clone(),
            &addrs,
            tls,
            &url.authority(),
            &url.path,
            &versions,
        )
        .await
        .map_err(|err| {
            // Our verifier recorded why it refused the server's certificate, if it did.
            let refusal = self
                .shared
                .lock()
                .engine
                .take_certificate_refusal(&url.host);
            failed(match (refusal, err.kind()) {
                (Some(refusal), _) => ConnectFailure::UntrustedCertificate(refusal),
                (None, io::ErrorKind::InvalidData) => ConnectFailure::Refused(err.to_string()),
                (None, _) => ConnectFailure::Transport(err.to_string()),
            })
        })?;
        let handle = self.with_state(|state, now| {
            if state.closed {
                return Err(ConnectError::Closed);
            }
            let handle = state
                .engine
                .connect_websocket(now, remote, &protocol)
                .ok_or_else(|| {
                    failed(ConnectFailure::NoCommonVersion(format!(
                        "the server chose WebSocket subprotocol {protocol:?}"
                    )))
                })?;
            state.connects.insert(handle, Connect::Pending(None));
            Ok(handle)
        })?;
        self.runtime.spawn(Box::pin(super::websocket::run(
            self.shared.clone(),
            self.runtime.clone(),
            stream,
            handle,
            leftover,
            true,
        )));
        self.connected(handle, url).await
    }

    /// `GET /certificate.sha256` from the server's TCP port: the hash to pin.
    async fn fetch_certificate_hash(
        &self,
        url: &MoqUrl,
        remote: SocketAddr,
    ) -> Result<Verification, ConnectError> {
        let failed = |reason: String| ConnectError::CertificateHash {
            url: url.to_string(),
            reason,
        };
        let tcp = tcp_address(remote);
        let (status, body) =
            super::http::get(self.runtime.clone(), tcp, &url.authority(), CERT_HASH_PATH)
                .await
                .map_err(|e| failed(e.to_string()))?;
        if status != 200 {
            return Err(failed(format!("HTTP status {status}")));
        }
        let text = String::from_utf8_lossy(&body);
        let hash = tls::parse_hash(text.trim()).map_err(|e| failed(e.to_string()))?;
        Ok(Verification::PinnedSha256(vec![hash]))
    }

    /// Serve plain HTTP on TCP `addr` with `handler` (a relay's `/certificate.sha256`, and
    /// its other HTTP endpoints): one request per connection, capped, with a deadline, at
    /// most 256 connections at once; WebSocket upgrades (`ws://`) become MOQ sessions when
    /// the engine's `websocket` is on. Returns the bound address.
    pub fn serve_http(&self, addr: SocketAddr, handler: HttpHandler) -> io::Result<SocketAddr> {
        self.serve_tcp(addr, handler, None, None)
    }

    /// [`Endpoint::serve_http`] with the relay's [HTTP API](HttpApi) (`/health`,
    /// `/announced/…`, `/fetch/…`, `/metrics`) answered before `handler`.
    pub fn serve_http_api(
        &self,
        addr: SocketAddr,
        handler: HttpHandler,
        api: HttpApi,
    ) -> io::Result<SocketAddr> {
        self.serve_tcp(addr, handler, None, Some(Arc::new(api)))
    }

    /// HTTPS with the HTTP API, on the endpoint's certificate or on `certificate` (a
    /// separate HTTPS listener with its own, e.g. one browsers trust).
    pub fn serve_https_api(
        &self,
        addr: SocketAddr,
        handler: HttpHandler,
        api: HttpApi,
        certificate: Option<&crate::quic::tls::Certificate>,
    ) -> io::Result<SocketAddr> {
        let config = match certificate {
            Some(certificate) => {
                crate::quic::tls::server_config(certificate, vec![b"http/1.1".to_vec()])
                    .map(Arc::new)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            }
            None => self
                .shared
                .lock()
                .engine
                .tcp_tls_server_config()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        };
        self.serve_tcp(addr, handler, Some(config), Some(Arc::new(api)))
    }

    /// [`Endpoint::serve_http`] over TLS with the endpoint's certificate: `https://` and
    /// `wss://` (for browsers and clients on networks that block UDP, with a certificate they
    /// trust). Returns the bound address.
    pub fn serve_https(&self, addr: SocketAddr, handler: HttpHandler) -> io::Result<SocketAddr> {
        let config = self
            .shared
            .lock()
            .engine
            .tcp_tls_server_config()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.serve_tcp(addr, handler, Some(config), None)
    }

    fn serve_tcp(
        &self,
        addr: SocketAddr,
        handler: HttpHandler,
        tls: Option<Arc<rustls::ServerConfig>>,
        api: Option<Arc<HttpApi>>,
    ) -> io::Result<SocketAddr> {
        let listener = self.runtime.bind_tcp(addr)?;
        let local = listener.local_addr()?;
        let runtime = self.runtime.clone();
        let shared = self.shared.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let endpoint = self.clone();
        self.runtime.spawn(Box::pin(async move {
            loop {
                let accepted = poll_fn(|cx| {
                    if shared.lock().closed {
                        return Poll::Ready(None);
                    }
                    match listener.poll_accept(cx) {
                        Poll::Ready(result) => Poll::Ready(Some(result)),
                        Poll::Pending => {
                            // The endpoint's close wakes this too.
                            let mut state = shared.lock();
                            if !state.close_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                                state.close_waiters.push(cx.waker().clone());
                            }
                            Poll::Pending
                        }
                    }
                })
                .await;
                let (stream, remote) = match accepted {
                    None => return,
                    Some(Ok((stream, remote))) => match &tls {
                        None => (stream, remote),
                        Some(config) => {
                            match super::tls_stream::TlsStream::server(stream, config.clone()) {
                                Ok(tls) => {
                                    (Box::new(tls) as Box<dyn super::AsyncTcpStream>, remote)
                                }
                                Err(err) => {
                                    tracing::debug!(%err, "TLS accept");
                                    continue;
                                }
                            }
                        }
                    },
                    Some(Err(err)) => {
                        tracing::debug!(%err, "HTTP accept");
                        continue;
                    }
                };
                if active.load(Ordering::Relaxed) >= super::http::MAX_HTTP_CONNECTIONS {
                    continue; // dropped: closes it
                }
                active.fetch_add(1, Ordering::Relaxed);
                let api = api.clone().map(|api| (endpoint.clone(), api));
                runtime.spawn(Box::pin(super::http::serve_connection(
                    runtime.clone(),
                    shared.clone(),
                    stream,
                    remote,
                    handler.clone(),
                    api,
                    active.clone(),
                )));
            }
        }));
        Ok(local)
    }

    /// The address to dial for `url`: an IP literal as it is, a name through the runtime's
    /// resolver (never a blocking lookup on the executor).
    async fn resolve(&self, url: &MoqUrl) -> Result<SocketAddr, ConnectError> {
        let addrs = self.resolve_all(url).await?;
        self.pick_udp_address(url, addrs)
    }

    /// Every address of `url`'s host (an IP literal as it is), in the resolver's order.
    async fn resolve_all(&self, url: &MoqUrl) -> Result<Vec<SocketAddr>, ConnectError> {
        let addrs = match url.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, url.port)],
            Err(_) => self
                .runtime
                .resolve(url.host.clone(), url.port)
                .await
                .map_err(|e| ConnectError::Resolve {
                    host: url.host.clone(),
                    reason: e.to_string(),
                })?,
        };
        Ok(addrs)
    }

    /// The address our UDP socket can reach (its family, or IPv4 through a mapped address).
    fn pick_udp_address(
        &self,
        url: &MoqUrl,
        addrs: Vec<SocketAddr>,
    ) -> Result<SocketAddr, ConnectError> {
        let v6_socket = self.local_addr.is_ipv6();
        let pick = addrs
            .iter()
            .find(|a| a.is_ipv6() == v6_socket)
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| ConnectError::Resolve {
                host: url.host.clone(),
                reason: "no address".into(),
            })?;
        // A dual-stack IPv6 socket reaches IPv4 peers through mapped addresses.
        Ok(match (v6_socket, pick) {
            (true, SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => pick,
        })
    }

    /// The next session a peer opened to us (`None` once the endpoint is closed).
    pub async fn accept(&self) -> Option<Session> {
        let (peer, version, remote) = poll_fn(|cx| {
            let mut state = self.shared.lock();
            if let Some(next) = state.accepts.pop_front() {
                return Poll::Ready(Some(next));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            state.accept_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Some(Session {
            endpoint: self.clone(),
            peer,
            version,
            remote,
        })
    }

    /// Publish a broadcast at `path` (announced to every interested peer).
    pub fn publish(&self, path: &str) -> Result<BroadcastPublisher, PublishError> {
        let path = parse_path(path)?;
        let id = self.with_state(|state, now| state.engine.node().publish(now, &path))?;
        Ok(BroadcastPublisher {
            endpoint: self.clone(),
            id,
        })
    }

    /// Subscribe to a track with default parameters (latest group on, 5 s max latency).
    pub fn subscribe(&self, broadcast: &str, track: &str) -> Result<Subscription, PathError> {
        self.subscribe_with(broadcast, track, SubscribeParams::default())
    }

    /// Subscribe to a track. It starts once the broadcast is announced.
    pub fn subscribe_with(
        &self,
        broadcast: &str,
        track: &str,
        params: SubscribeParams,
    ) -> Result<Subscription, PathError> {
        let path = Path::new(broadcast)?;
        let id = self.with_state(|state, now| {
            let id = state.engine.node().subscribe(now, &path, track, params);
            state.subs.entry(id).or_insert_with(SubSlot::default);
            // Events may already be queued for it (a local track): route them now.
            while let Some(event) = state.engine.poll_event() {
                state.dispatch(event);
            }
            id
        });
        Ok(Subscription {
            endpoint: self.clone(),
            id,
        })
    }

    /// Watch broadcasts under `prefix`: the active ones first, then changes.
    pub fn announced(&self, prefix: &str) -> Result<Announcements, PathError> {
        let prefix = Path::new(prefix)?;
        let watch = self.with_state(|state, _| {
            let watch = state.engine.node().announced(&prefix);
            state.watches.insert(watch, WatchSlot::default());
            while let Some(event) = state.engine.poll_event() {
                state.dispatch(event);
            }
            watch
        });
        Ok(Announcements {
            endpoint: self.clone(),
            watch,
        })
    }

    /// Send GOAWAY to every peer (lite-04+); sessions close after the drain period.
    pub fn goaway(&self, uri: &str) {
        self.with_state(|state, now| state.engine.goaway(now, uri));
    }

    /// Close every connection and stop the driver once they are gone.
    pub fn close(&self, code: SessionCode, reason: &str) {
        self.with_state(|state, now| {
            state.engine.close(now, code, reason);
            state.closed = true;
            state.wake_all();
        });
    }

    /// Wait until the driver has stopped (after [`Endpoint::close`] and the connections drained).
    pub async fn closed(&self) {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.closed && state.engine.connection_count() == 0 {
                return Poll::Ready(());
            }
            state.writers.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Wait until everything published was delivered: no session still serves a
    /// subscription or waits for a group's acknowledgement, and nothing is buffered.
    pub async fn flushed(&self) {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.closed
                || (!state.engine.node().is_delivering() && state.engine.buffered_bytes() == 0)
            {
                return Poll::Ready(());
            }
            state.idle_waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Milliseconds since the endpoint started (the default frame timestamp).
    fn millis(&self) -> u64 {
        u64::try_from(
            self.runtime
                .now()
                .saturating_duration_since(self.epoch)
                .as_millis(),
        )
        .unwrap_or(u64::MAX)
    }

    /// Wait while too many bytes are waiting for the transport.
    async fn backpressure(&self) {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.engine.buffered_bytes() <= state.cfg.max_buffered || state.closed {
                return Poll::Ready(());
            }
            state.writers.push(cx.waker().clone());
            state.wake_driver();
            Poll::Pending
        })
        .await
    }
}

fn parse_path(path: &str) -> Result<Path, PublishError> {
    Ok(Path::new(path)?)
}

/// A MOQ session over one connection. Dropping it closes the connection.
pub struct Session {
    endpoint: Endpoint,
    peer: PeerId,
    version: Version,
    remote: SocketAddr,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("version", &self.version)
            .field("remote", &self.remote)
            .finish()
    }
}

impl Session {
    /// The agreed version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// What carries the session: raw QUIC, WebTransport or WebSocket (`None` once its
    /// connection is gone).
    pub fn transport(&self) -> Option<crate::quic::TransportKind> {
        let state = self.endpoint.shared.lock();
        let conn = state.engine.connection_of(self.peer)?;
        state.engine.transport_of(conn)
    }

    /// The node's handle for this peer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The GOAWAY URI if the peer sent one.
    pub fn goaway(&self) -> Option<String> {
        self.endpoint
            .shared
            .lock()
            .sessions
            .get(&self.peer)
            .and_then(|s| s.goaway.clone())
    }

    /// Close with a code and a reason.
    pub fn close(&self, code: SessionCode, reason: &str) {
        let peer = self.peer;
        self.endpoint
            .with_engine(|engine, now| engine.node().close_session(now, peer, code, reason));
    }

    /// Wait until the session is closed; returns why.
    pub async fn closed(&self) -> String {
        session_closed(&self.endpoint, self.peer).await
    }

    /// Wait for the peer's GOAWAY (or the close, whichever comes first); returns the URI.
    pub async fn goaway_received(&self) -> Option<String> {
        session_goaway(&self.endpoint, self.peer).await
    }

    /// True once the session is closed.
    pub fn is_closed(&self) -> bool {
        session_is_closed(&self.endpoint, self.peer)
    }

    /// A handle that watches this session (its end, GOAWAY) without keeping it open:
    /// dropping the watcher does nothing, dropping the [`Session`] still closes it.
    pub fn watcher(&self) -> SessionWatcher {
        SessionWatcher {
            endpoint: self.endpoint.clone(),
            peer: self.peer,
        }
    }
}

/// Watches a [`Session`] without owning it (see [`Session::watcher`]).
#[derive(Clone)]
pub struct SessionWatcher {
    endpoint: Endpoint,
    peer: PeerId,
}

impl std::fmt::Debug for SessionWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWatcher").finish_non_exhaustive()
    }
}

impl SessionWatcher {
    /// Wait until the session is closed; returns why.
    pub async fn closed(&self) -> String {
        session_closed(&self.endpoint, self.peer).await
    }

    /// Wait for the peer's GOAWAY (or the close, whichever comes first); returns the URI.
    pub async fn goaway_received(&self) -> Option<String> {
        session_goaway(&self.endpoint, self.peer).await
    }

    /// True once the session is closed.
    pub fn is_closed(&self) -> bool {
        session_is_closed(&self.endpoint, self.peer)
    }
}

async fn session_closed(endpoint: &Endpoint, peer: PeerId) -> String {
    poll_fn(|cx| {
        let mut state = endpoint.shared.lock();
        let closed_endpoint = state.closed;
        let slot = state.sessions.entry(peer).or_default();
        if let Some(reason) = &slot.closed {
            return Poll::Ready(reason.clone());
        }
        if closed_endpoint {
            return Poll::Ready("endpoint closed".into());
        }
        slot.wakers.push(cx.waker().clone());
        Poll::Pending
    })
    .await
}

async fn session_goaway(endpoint: &Endpoint, peer: PeerId) -> Option<String> {
    poll_fn(|cx| {
        let mut state = endpoint.shared.lock();
        let slot = state.sessions.entry(peer).or_default();
        if let Some(uri) = &slot.goaway {
            return Poll::Ready(Some(uri.clone()));
        }
        if slot.closed.is_some() {
            return Poll::Ready(None);
        }
        slot.wakers.push(cx.waker().clone());
        Poll::Pending
    })
    .await
}

fn session_is_closed(endpoint: &Endpoint, peer: PeerId) -> bool {
    let state = endpoint.shared.lock();
    state.closed
        || state
            .sessions
            .get(&peer)
            .is_some_and(|s| s.closed.is_some())
}

impl Drop for Session {
    fn drop(&mut self) {
        let peer = self.peer;
        self.endpoint.with_state(|state, now| {
            let open = state.sessions.get(&peer).is_none_or(|s| s.closed.is_none());
            if open {
                state.engine.node().close_session(
                    now,
                    peer,
                    SessionCode::NO_ERROR,
                    "session dropped",
                );
            }
            state.sessions.remove(&peer);
        });
    }
}

/// A locally published broadcast. Dropping it unpublishes it.
pub struct BroadcastPublisher {
    endpoint: Endpoint,
    id: BroadcastId,
}

impl BroadcastPublisher {
    /// Add a track.
    pub fn create_track(
        &self,
        name: &str,
        info: TrackInfo,
    ) -> Result<TrackPublisher, PublishError> {
        let id = self.id;
        let track = self
            .endpoint
            .with_engine(|engine, _| engine.node().create_track(id, name, info))?;
        Ok(TrackPublisher {
            endpoint: self.endpoint.clone(),
            id: track,
        })
    }
}

impl Drop for BroadcastPublisher {
    fn drop(&mut self) {
        let id = self.id;
        self.endpoint
            .with_engine(|engine, now| engine.node().unpublish(now, id));
    }
}

/// A track of a local broadcast. Dropping it ends the track.
pub struct TrackPublisher {
    endpoint: Endpoint,
    id: TrackId,
}

impl TrackPublisher {
    /// Begin the next group.
    pub fn append_group(&self) -> Result<GroupPublisher, PublishError> {
        let id = self.id;
        let seq = self
            .endpoint
            .with_engine(|engine, now| engine.node().append_group(now, id))?;
        Ok(GroupPublisher {
            endpoint: self.endpoint.clone(),
            track: id,
            seq,
            done: false,
        })
    }

    /// How many subscribers the track has now (a relay counts once, however many it serves).
    pub fn subscribers(&self) -> usize {
        let id = self.id;
        self.endpoint
            .with_engine(|engine, _| engine.node().subscriber_count(id))
    }

    /// Wait until the track has at least one subscriber.
    pub async fn subscribed(&self) {
        let id = self.id;
        poll_fn(|cx| {
            let mut state = self.endpoint.shared.lock();
            if state.closed || state.engine.node().subscriber_count(id) > 0 {
                return Poll::Ready(());
            }
            state.idle_waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Publish a whole single-frame group (as a datagram to lite-05 subscribers when it fits).
    pub fn write_single(&self, payload: Bytes) -> Result<u64, PublishError> {
        let id = self.id;
        let ts = self.endpoint.millis();
        self.endpoint.with_engine(|engine, now| {
            let node = engine.node();
            let seq = node
                .origin()
                .track(id)
                .map(|t| t.next_seq())
                .ok_or(PublishError::Origin(crate::origin::OriginError::NotFound))?;
            node.write_datagram_group(now, id, seq, ts, payload)?;
            Ok(seq)
        })
    }
}

impl Drop for TrackPublisher {
    fn drop(&mut self) {
        let id = self.id;
        self.endpoint
            .with_engine(|engine, now| engine.node().end_track(now, id));
    }
}

/// A group being written. Dropping it finishes the group.
pub struct GroupPublisher {
    endpoint: Endpoint,
    track: TrackId,
    seq: u64,
    done: bool,
}

impl GroupPublisher {
    /// The group's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Append a frame stamped with milliseconds since the endpoint started. Waits while the
    /// transport has too much unsent data (backpressure).
    pub async fn write_frame(&mut self, payload: Bytes) -> Result<(), PublishError> {
        let ts = self.endpoint.millis();
        self.write_frame_at(ts, payload).await
    }

    /// Append a frame with an explicit timestamp (track timescale units).
    pub async fn write_frame_at(
        &mut self,
        timestamp: u64,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        self.endpoint.backpressure().await;
        let (track, seq) = (self.track, self.seq);
        self.endpoint.with_engine(|engine, now| {
            engine
                .node()
                .write_frame(now, track, seq, timestamp, payload)
        })
    }

    /// Finish the group.
    pub fn finish(mut self) {
        self.close(None);
    }

    /// Abort the group with a stream error code.
    pub fn abort(mut self, code: StreamCode) {
        self.close(Some(code));
    }

    fn close(&mut self, code: Option<StreamCode>) {
        if self.done {
            return;
        }
        self.done = true;
        let (track, seq) = (self.track, self.seq);
        self.endpoint.with_engine(|engine, now| match code {
            None => engine.node().finish_group(now, track, seq),
            Some(code) => engine.node().abort_group(now, track, seq, code),
        });
    }
}

impl Drop for GroupPublisher {
    fn drop(&mut self) {
        self.close(None);
    }
}

/// A subscription: an async sequence of groups. Dropping it unsubscribes.
pub struct Subscription {
    endpoint: Endpoint,
    id: LocalSubId,
}

impl Subscription {
    /// The next group (`None` once the subscription is over; see [`Subscription::end`]).
    pub async fn next_group(&mut self) -> Option<GroupReader> {
        let seq = poll_fn(|cx| {
            let mut state = self.endpoint.shared.lock();
            let closed = state.closed;
            let Some(sub) = state.subs.get_mut(&self.id) else {
                return Poll::Ready(None);
            };
            if let Some(seq) = sub.new_groups.pop_front() {
                return Poll::Ready(Some(seq));
            }
            if sub.closed.is_some() || closed {
                return Poll::Ready(None);
            }
            sub.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Some(GroupReader {
            endpoint: self.endpoint.clone(),
            sub: self.id,
            seq,
        })
    }

    /// Wait until the track resolved (publisher accepted); returns its properties if known,
    /// or how the subscription ended before that.
    pub async fn ready(&mut self) -> Result<Option<TrackInfo>, SubscriptionEnd> {
        poll_fn(|cx| {
            let mut state = self.endpoint.shared.lock();
            let Some(sub) = state.subs.get_mut(&self.id) else {
                return Poll::Ready(Err(SubscriptionEnd::Failed(StreamCode::CANCEL)));
            };
            if sub.ready {
                return Poll::Ready(Ok(sub.info));
            }
            if let Some(error) = sub.closed {
                return Poll::Ready(Err(error));
            }
            sub.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// How the subscription ended; `None` while it is live.
    pub fn end(&self) -> Option<SubscriptionEnd> {
        self.slot(|s| s.closed)
    }

    /// The first group this subscription delivers, once known: no lower group will come,
    /// while groups from there on may arrive out of order (each is its own stream). Known at
    /// once for a local or cached track; otherwise when the publisher's SUBSCRIBE_OK says
    /// where it starts (lite-05 always; lite-03/04 only when the publisher resolved it, and
    /// the reference relay never does there). A reader that prints groups in order can wait
    /// for this group rather than guess how long an overtaken one may take.
    pub fn start(&self) -> Option<u64> {
        self.slot(|s| s.start)
    }

    /// Read this subscription's state (`None` once it is gone).
    fn slot<T>(&self, read: impl FnOnce(&super::shared::SubSlot) -> Option<T>) -> Option<T> {
        self.endpoint
            .shared
            .lock()
            .subs
            .get(&self.id)
            .and_then(read)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let id = self.id;
        self.endpoint.with_state(|state, now| {
            state.subs.remove(&id);
            state.engine.node().unsubscribe(now, id);
        });
    }
}

/// One group of a subscription: an async sequence of frames. Dropping it discards the rest.
pub struct GroupReader {
    endpoint: Endpoint,
    sub: LocalSubId,
    seq: u64,
}

impl GroupReader {
    /// The group's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The next frame (`None` at the end of the group; see [`GroupReader::end`]).
    pub async fn read_frame(&mut self) -> Option<Frame> {
        poll_fn(|cx| {
            let mut state = self.endpoint.shared.lock();
            let closed = state.closed;
            let Some(sub) = state.subs.get_mut(&self.sub) else {
                return Poll::Ready(None);
            };
            let sub_closed = sub.closed.is_some();
            let Some(group) = sub.groups.get_mut(&self.seq) else {
                // Dropped for a slow reader, or the subscription is gone.
                return Poll::Ready(None);
            };
            if let Some(frame) = group.frames.pop_front() {
                sub.buffered -= frame.payload.len();
                return Poll::Ready(Some(frame));
            }
            if group.end.is_some() || sub_closed || closed {
                return Poll::Ready(None);
            }
            group.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// How the group ended, once it has (`None` while open, or if it was dropped).
    pub fn end(&self) -> Option<GroupState> {
        let state = self.endpoint.shared.lock();
        state.subs.get(&self.sub)?.groups.get(&self.seq)?.end
    }
}

impl Drop for GroupReader {
    fn drop(&mut self) {
        let mut state = self.endpoint.shared.lock();
        if let Some(sub) = state.subs.get_mut(&self.sub)
            && let Some(group) = sub.groups.remove(&self.seq)
        {
            sub.buffered -= group.frames.iter().map(|f| f.payload.len()).sum::<usize>();
        }
    }
}

/// Announcements under a prefix. Dropping it stops watching.
pub struct Announcements {
    endpoint: Endpoint,
    watch: WatchId,
}

impl Announcements {
    /// The next change: a broadcast path and whether it is now active.
    pub async fn next(&mut self) -> Option<(Path, bool)> {
        poll_fn(|cx| {
            let mut state = self.endpoint.shared.lock();
            let closed = state.closed;
            let Some(slot) = state.watches.get_mut(&self.watch) else {
                return Poll::Ready(None);
            };
            if let Some(item) = slot.queue.pop_front() {
                return Poll::Ready(Some(item));
            }
            if closed {
                return Poll::Ready(None);
            }
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Drop for Announcements {
    fn drop(&mut self) {
        let watch = self.watch;
        self.endpoint.with_state(|state, _| {
            state.watches.remove(&watch);
            state.engine.node().unwatch(watch);
        });
    }
}

/// A UDP address in the TCP family: an IPv4 peer behind a mapped IPv6 address.
fn tcp_address(remote: SocketAddr) -> SocketAddr {
    match remote {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => remote,
        },
        v4 => v4,
    }
}
