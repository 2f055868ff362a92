//! The quinn-proto engine (feature `quinn`): one `quinn_proto::Endpoint`, its connections, one
//! MOQ session per connection, and the endpoint's [`Node`] — still sans-IO.
//!
//! # Contract
//!
//! - Inputs: [`Endpoint::handle_datagram`] for every received UDP datagram (with its source,
//!   the local IP it arrived on and its ECN bits) and [`Endpoint::handle_timeout`].
//! - Application calls: [`Endpoint::connect`], [`Endpoint::node`] (publish, subscribe,
//!   announcements: see [`Node`]), [`Endpoint::close`].
//! - After any input or application call, drain [`Endpoint::poll_transmit`] until `None` (it
//!   first applies what the sessions asked for), then [`Endpoint::poll_event`], then read
//!   [`Endpoint::poll_timeout`].
//!
//! # Example
//!
//! Two engines, a server and a client, exchanging datagrams through a `Vec` instead of a
//! socket, on a clock that only moves when both are idle: the shape of any embedding (a real
//! one reads a socket and sleeps until `poll_timeout`; `moq-proto/examples/custom_loop.rs`).
//!
//! ```
//! use std::net::{Ipv4Addr, SocketAddr};
//! use std::time::{Instant, SystemTime};
//!
//! use bytes::BytesMut;
//! use moq_proto::node::{NodeEvent, SubscriptionEvent};
//! use moq_proto::quic::{Certificate, Endpoint, EngineConfig, EngineEvent, Verification};
//! use moq_proto::session::SubscribeParams;
//! use moq_proto::wire::{Path, TrackInfo};
//!
//! /// Everything `from` wants to send, delivered to `to` at once.
//! fn deliver(from: &mut Endpoint, from_addr: SocketAddr, to: &mut Endpoint, now: Instant) -> bool {
//!     let mut buf = Vec::new();
//!     let mut sent = false;
//!     while let Some(transmit) = from.poll_transmit(now, &mut buf) {
//!         let datagram = BytesMut::from(&buf[..transmit.size]);
//!         to.handle_datagram(now, from_addr, None, None, datagram);
//!         sent = true;
//!     }
//!     sent
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (server_addr, client_addr): (SocketAddr, SocketAddr) =
//!     ((Ipv4Addr::LOCALHOST, 4443).into(), (Ipv4Addr::LOCALHOST, 50000).into());
//! let mut now = Instant::now();
//!
//! let mut config = EngineConfig::new(Default::default());
//! config.certificate = Some(Certificate::generate(&["localhost".into()], SystemTime::now())?);
//! let mut server = Endpoint::new(config)?;
//! let mut config = EngineConfig::new(Default::default());
//! let pin = server.certificate_hash().ok_or("no certificate")?;
//! config.verification = Verification::PinnedSha256(vec![pin]);
//! let mut client = Endpoint::new(config)?;
//!
//! // The server publishes one group; the client dials and subscribes (announcements route it).
//! let path = Path::new("demo")?;
//! let broadcast = server.node().publish(now, &path)?;
//! let track = server.node().create_track(broadcast, "seconds", TrackInfo::default())?;
//! let seq = server.node().append_group(now, track)?;
//! server.node().write_frame(now, track, seq, 0, "12:00".into())?;
//! server.node().finish_group(now, track, seq);
//! client.connect(now, server_addr, "localhost", "/")?;
//! let subscription = client.node().subscribe(now, &path, "seconds", SubscribeParams::default());
//!
//! let mut received = None;
//! while received.is_none() {
//!     // Drain the transmits of both sides (each delivery is an input to the other side).
//!     while deliver(&mut client, client_addr, &mut server, now)
//!         | deliver(&mut server, server_addr, &mut client, now)
//!     {}
//!     // Drain the events.
//!     while let Some(event) = client.poll_event() {
//!         if let EngineEvent::Node(NodeEvent::Subscription {
//!             id,
//!             event: SubscriptionEvent::Frame { payload, .. },
//!         }) = event
//!             && id == subscription
//!         {
//!             received = Some(payload);
//!         }
//!     }
//!     while server.poll_event().is_some() {}
//!     // Idle: move the clock to the earliest deadline and fire the timers.
//!     if received.is_none() {
//!         let next = [client.poll_timeout(), server.poll_timeout()].into_iter().flatten().min();
//!         now = next.ok_or("stalled")?.max(now);
//!         client.handle_timeout(now);
//!         server.handle_timeout(now);
//!     }
//! }
//! assert_eq!(received.as_deref(), Some(&b"12:00"[..]));
//! # Ok(())
//! # }
//! ```
//!
//! # How quinn-proto is driven
//!
//! Every `Incoming` is accepted, refused or retried by the accept policy (never dropped
//! silently); endpoint and connection events are routed both ways; drained connections are
//! removed; `Chunks::finalize` is always called; the GSO segment count is passed on every
//! `poll_transmit`; ECN is passed through; payloads go out with `write_chunks` (zero-copy).
//! A session's stream opens wait for `StreamEvent::Available` when quinn-proto has no credit,
//! highest priority first; writes that quinn-proto cannot take yet wait for
//! `StreamEvent::Writable`.

mod conn;
mod link;
mod threads;
pub mod tls;
mod url;
mod websocket;
mod webtransport;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codes::SessionCode;
use bytes::BytesMut;
pub use quinn_proto::{ConnectionHandle, EcnCodepoint, Transmit};
use quinn_proto::{DatagramEvent, TransportConfig, VarInt};

pub use self::link::LinkMessage;
pub use self::threads::{CID_LEN, ThreadSlot, owner_of};
pub use self::url::{MoqUrl, Scheme, UrlError};
use conn::Conn;
pub use tls::{Certificate, CertificateProblem, TlsError, UntrustedCertificate, Verification};

use crate::fxhash::FxHashMap;
use crate::node::{Node, NodeConfig, NodeEvent};
use crate::origin::PeerId;
use crate::session::{self, Side};
use crate::webtransport::connect::ConnectRequest;
use crate::wire::{Path, Version};

/// The default keep-alive interval. QUIC closes a connection that hears nothing for the
/// smaller of both peers' idle timeouts; a quiet subscription (a track that publishes every
/// few seconds, a session that only waits for announcements) must not die of it. 3 s is
/// under a third of the shortest idle timeout in the MOQ ecosystem (the reference relay's
/// 10 s), so a lost PING is survived, and costs one small packet per quiet connection.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(3);

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The node (hop ID, cache caps, announce behaviour).
    pub node: NodeConfig,
    /// Accept connections with this certificate (`None`: client only).
    pub certificate: Option<Certificate>,
    /// How our outgoing connections verify servers.
    pub verification: Verification,
    /// Versions a server accepts, in preference order (the server's order wins on raw QUIC;
    /// over WebTransport the client's first supported choice wins, as with the reference).
    pub server_versions: Vec<Version>,
    /// A server also accepts WebTransport (ALPN `h3`) on the same port.
    pub webtransport: bool,
    /// A server also accepts WebSocket (QMux) upgrades handed to
    /// [`Endpoint::accept_websocket`] (from the relay's TCP listener).
    pub websocket: bool,
    /// Versions a client offers, newest first.
    pub client_versions: Vec<Version>,
    /// Template for every session (version and side are filled in per connection).
    pub session: session::Config,
    /// Most connections at once; further handshakes are refused.
    pub max_connections: usize,
    /// Ask unvalidated clients to retry (address validation) before accepting.
    pub retry: bool,
    /// Most datagrams per GSO batch (the driver sets it from the socket).
    pub max_gso_segments: usize,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Keep-alive interval: how long a connection may stay silent before it sends a PING.
    /// The idle timeout that applies is the smaller of both peers' and quinn-proto does not
    /// tell which the peer asked for, so this must stay below a third of the shortest idle
    /// timeout a peer may use, not only ours. See [`DEFAULT_KEEP_ALIVE`].
    pub keep_alive: Option<Duration>,
    /// Concurrent streams the peer may open, per direction. quinn-proto keeps state for every
    /// stream the peer is allowed to open, so this costs memory per connection (about 1 MB
    /// per connection at 10 000); credit is returned as streams end, so it bounds concurrency,
    /// not the total.
    pub max_streams: u32,
    /// Most bytes a connection may hold written and not yet acknowledged, across its
    /// streams (quinn-proto's send window). It bounds what a peer that stops reading pins
    /// in memory, on top of the session's `max_send_backlog`; it must cover the
    /// bandwidth-delay product of the fastest path a connection should fill. `None` keeps
    /// quinn-proto's default (10 MB).
    pub send_window: Option<u64>,
    /// Seed for quinn-proto's RNG (deterministic tests); `None` uses the OS.
    pub rng_seed: Option<[u8; 32]>,
    /// Ask peers (QUIC ACK frequency extension, where they support it) to acknowledge only
    /// every this many ack-eliciting packets instead of every second one. A relay sending to
    /// many subscribers spends much of its time on their acknowledgements; `None` keeps the
    /// QUIC default.
    pub ack_eliciting_threshold: Option<u32>,
    /// One of several endpoints sharing a UDP port (one per thread): the connection IDs we
    /// issue name this one, so that [`owner_of`] can route a datagram that arrived on another
    /// thread's socket. `None` for an endpoint alone on its port.
    pub thread: Option<ThreadSlot>,
}

impl EngineConfig {
    /// Defaults: every version, system roots, 1 000 concurrent streams per direction, 30 s idle
    /// timeout with [`DEFAULT_KEEP_ALIVE`] keep-alives.
    pub fn new(node: NodeConfig) -> Self {
        Self {
            node,
            certificate: None,
            verification: Verification::SystemRoots,
            server_versions: Version::ALL.to_vec(),
            webtransport: true,
            websocket: true,
            client_versions: Version::ALL.to_vec(),
            session: session::Config::new(Version::Lite05, Side::Client),
            max_connections: 10_000,
            retry: false,
            max_gso_segments: 1,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            max_streams: 1_000,
            send_window: None,
            rng_seed: None,
            thread: None,
            ack_eliciting_threshold: None,
        }
    }
}

/// What carries a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// MOQ directly over QUIC (ALPN `moq-lite-0N`).
    Quic,
    /// WebTransport over HTTP/3 over QUIC.
    WebTransport,
    /// WebSocket (QMux) over TCP, with or without TLS.
    WebSocket,
    /// An in-process link between two endpoints of one process (threads of one relay).
    InProcess,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Quic => "quic",
            TransportKind::WebTransport => "webtransport",
            TransportKind::WebSocket => "websocket",
            TransportKind::InProcess => "in-process",
        })
    }
}

/// Why the engine could not be built or a connection started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// quinn-proto refused the crypto configuration.
    #[error("quic crypto config: {0}")]
    Crypto(String),
    /// quinn-proto refused to start the connection.
    #[error("connect: {0}")]
    Connect(#[from] quinn_proto::ConnectError),
    /// No version to offer.
    #[error("no version configured")]
    NoVersion,
}

/// Something the application must know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// A connection completed its handshake and its MOQ session is attached as `peer`.
    Connected {
        /// The connection.
        conn: ConnectionHandle,
        /// The node peer.
        peer: PeerId,
        /// The agreed version.
        version: Version,
        /// The remote address.
        remote: SocketAddr,
        /// Whether we dialled.
        side: Side,
    },
    /// An outgoing connection failed before the session started.
    ConnectFailed {
        /// The connection.
        conn: ConnectionHandle,
        /// Why.
        error: ConnectFailure,
    },
    /// A connection ended.
    Disconnected {
        /// The connection.
        conn: ConnectionHandle,
        /// Its peer, if its session had started.
        peer: Option<PeerId>,
        /// Why.
        reason: String,
    },
    /// A node event (announcements, subscriptions, fetches, session events).
    Node(NodeEvent),
}

/// Why an outgoing connection failed before its session started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The client's [`Verification`] refused the server's certificate.
    #[error(transparent)]
    UntrustedCertificate(#[from] UntrustedCertificate),
    /// Client and server have no MOQ version (ALPN) in common.
    #[error("no common MOQ version (ALPN): {0}")]
    NoCommonVersion(String),
    /// The server would not open the WebTransport or WebSocket session (no such endpoint,
    /// an HTTP error status such as 401 for a refused token, or no version in common).
    #[error("session refused: {0}")]
    Refused(String),
    /// The handshake failed otherwise (timeout, refused, transport or TLS error), as text.
    #[error("{0}")]
    Transport(String),
}

/// The sans-IO QUIC endpoint. See the [module docs](self).
pub struct Endpoint {
    quic: quinn_proto::Endpoint,
    server: Option<Arc<quinn_proto::ServerConfig>>,
    client: Option<quinn_proto::ClientConfig>,
    cfg: EngineConfig,
    conns: FxHashMap<ConnectionHandle, Conn>,
    /// WebSocket (QMux) connections, keyed by handles from their own range.
    ws: FxHashMap<ConnectionHandle, websocket::WsConn>,
    next_ws: usize,
    /// WebSocket connections with something new to write.
    ws_wake: VecDeque<ConnectionHandle>,
    /// Bytes WebSocket sessions wrote that are not sent yet.
    ws_backlog: usize,
    /// In-process links, keyed by handles from their own range.
    links: FxHashMap<ConnectionHandle, link::LinkConn>,
    next_link: usize,
    /// Links with messages to carry.
    link_wake: VecDeque<ConnectionHandle>,
    /// Bytes sent on links that the other ends have not taken yet.
    link_backlog: usize,
    /// Connections that may have something to send, each listed once (round-robin).
    active: VecDeque<ConnectionHandle>,
    /// Connection timers, earliest first; an entry is stale unless it equals the
    /// connection's current deadline.
    timers: BinaryHeap<Reverse<(Instant, ConnectionHandle)>>,
    by_peer: FxHashMap<PeerId, ConnectionHandle>,
    node: Node,
    responses: VecDeque<(Transmit, Vec<u8>)>,
    events: VecDeque<EngineEvent>,
    scratch: Vec<u8>,
    cert_hash: Option<[u8; 32]>,
    /// Bytes written by sessions that quinn-proto has not accepted yet.
    blocked_bytes: usize,
    /// Reused buffer for the chunks of one stream read.
    read_batch: Vec<bytes::Bytes>,
    /// Server certificates our client verification refused, for typed connect errors.
    refusals: Arc<tls::RefusalLog>,
    /// [`Endpoint::close`] was called: new connections are refused, so that clients
    /// redialling at once cannot keep a closing endpoint from finishing.
    closing: bool,
}

impl Endpoint {
    /// Build the engine.
    pub fn new(cfg: EngineConfig) -> Result<Self, EngineError> {
        let transport = Arc::new(transport_config(&cfg));
        let server = match &cfg.certificate {
            Some(cert) => {
                // MOQ versions first (the server's order wins on raw QUIC), then h3.
                let mut alpns: Vec<Vec<u8>> = cfg
                    .server_versions
                    .iter()
                    .map(|v| v.alpn().as_bytes().to_vec())
                    .collect();
                if cfg.webtransport {
                    alpns.push(H3_ALPN.to_vec());
                }
                let tls = tls::server_config(cert, alpns)?;
                let crypto = quinn_proto::crypto::rustls::QuicServerConfig::try_from(tls)
                    .map_err(|e| EngineError::Crypto(e.to_string()))?;
                let mut server = quinn_proto::ServerConfig::with_crypto(Arc::new(crypto));
                server.transport_config(transport.clone());
                Some(Arc::new(server))
            }
            None => None,
        };
        let mut endpoint_config = quinn_proto::EndpointConfig::default();
        if let Some(seed) = cfg.rng_seed {
            endpoint_config.rng_seed(Some(seed));
        }
        if let Some(slot) = cfg.thread {
            let seed = cfg.rng_seed;
            endpoint_config.cid_generator(move || Box::new(threads::ThreadCids::new(slot, seed)));
        }
        let quic =
            quinn_proto::Endpoint::new(Arc::new(endpoint_config), server.clone(), true, None);
        let cert_hash = cfg.certificate.as_ref().map(Certificate::sha256);
        let refusals = Arc::new(tls::RefusalLog::default());
        let client = if cfg.client_versions.is_empty() {
            None
        } else {
            let alpns = cfg
                .client_versions
                .iter()
                .map(|v| v.alpn().as_bytes().to_vec())
                .collect();
            Some(client_config(
                &cfg.verification,
                alpns,
                transport,
                refusals.clone(),
            )?)
        };
        Ok(Self {
            node: Node::new(cfg.node.clone()),
            quic,
            server,
            client,
            cfg,
            conns: FxHashMap::default(),
            ws: FxHashMap::default(),
            next_ws: 0,
            ws_wake: VecDeque::new(),
            ws_backlog: 0,
            links: FxHashMap::default(),
            next_link: 0,
            link_wake: VecDeque::new(),
            link_backlog: 0,
            active: VecDeque::new(),
            timers: BinaryHeap::new(),
            by_peer: FxHashMap::default(),
            responses: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            cert_hash,
            blocked_bytes: 0,
            read_batch: Vec::new(),
            refusals,
            closing: false,
        })
    }

    /// The node: publish, subscribe, watch announcements. Drain [`Endpoint::poll_transmit`]
    /// after using it.
    pub fn node(&mut self) -> &mut Node {
        &mut self.node
    }

    /// SHA-256 of our certificate, if we serve.
    pub fn certificate_hash(&self) -> Option<[u8; 32]> {
        self.cert_hash
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Bytes the sessions wrote that quinn-proto could not take yet (flow control or its send
    /// window is full). Publishers use it for backpressure.
    pub fn buffered_bytes(&self) -> usize {
        self.blocked_bytes + self.ws_backlog + self.link_backlog
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len() + self.ws.len()
    }

    /// The connection carrying a peer's session.
    pub fn connection_of(&self, peer: PeerId) -> Option<ConnectionHandle> {
        self.by_peer.get(&peer).copied()
    }

    /// quinn-proto's statistics for a connection (RTT, congestion window, losses, ...).
    pub fn connection_stats(&self, conn: ConnectionHandle) -> Option<quinn_proto::ConnectionStats> {
        self.conns.get(&conn).map(|c| c.quic.stats())
    }

    /// Every connection handle.
    pub fn connections(&self) -> Vec<ConnectionHandle> {
        self.conns.keys().chain(self.ws.keys()).copied().collect()
    }

    /// The version agreed on a connection.
    pub fn version_of(&self, conn: ConnectionHandle) -> Option<Version> {
        if let Some(link) = self.links.get(&conn) {
            return Some(link.version);
        }
        match self.ws.get(&conn) {
            Some(ws) => Some(ws.version),
            None => self.conns.get(&conn).and_then(|c| c.version),
        }
    }

    /// What carries a connection: raw QUIC, WebTransport or WebSocket.
    pub fn transport_of(&self, conn: ConnectionHandle) -> Option<TransportKind> {
        if self.ws.contains_key(&conn) {
            return Some(TransportKind::WebSocket);
        }
        if self.links.contains_key(&conn) {
            return Some(TransportKind::InProcess);
        }
        let c = self.conns.get(&conn)?;
        Some(if c.wt.is_some() || c.wt_request.is_some() {
            TransportKind::WebTransport
        } else {
            TransportKind::Quic
        })
    }

    /// Dial `remote` (verifying it as `server_name`) over raw QUIC with the configured
    /// versions. `path` is the URL path: sent in SETUP on lite-05, not sent on lite-03/04.
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        server_name: &str,
        path: &str,
    ) -> Result<ConnectionHandle, EngineError> {
        self.dial(now, Dial::new(remote, server_name, path))
    }

    /// Dial over raw QUIC offering only `versions` (newest first), e.g. to pin one.
    pub fn connect_versions(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        server_name: &str,
        path: &str,
        versions: &[Version],
    ) -> Result<ConnectionHandle, EngineError> {
        let mut dial = Dial::new(remote, server_name, path);
        dial.versions = versions.to_vec();
        if versions.is_empty() {
            return Err(EngineError::NoVersion);
        }
        self.dial(now, dial)
    }

    /// Dial as `dial` says: raw QUIC or WebTransport, these versions, this verification.
    pub fn dial(&mut self, now: Instant, dial: Dial) -> Result<ConnectionHandle, EngineError> {
        let versions = if dial.versions.is_empty() {
            self.cfg.client_versions.clone()
        } else {
            dial.versions.clone()
        };
        if versions.is_empty() {
            return Err(EngineError::NoVersion);
        }
        let custom =
            !dial.versions.is_empty() || dial.verification.is_some() || dial.webtransport.is_some();
        let client = match (&self.client, custom) {
            (Some(client), false) => client.clone(),
            _ => {
                let verification = dial.verification.as_ref().unwrap_or(&self.cfg.verification);
                let alpns = match &dial.webtransport {
                    // Over WebTransport the versions travel in the CONNECT; QUIC says h3.
                    Some(_) => vec![H3_ALPN.to_vec()],
                    None => versions
                        .iter()
                        .map(|v| v.alpn().as_bytes().to_vec())
                        .collect(),
                };
                client_config(
                    verification,
                    alpns,
                    Arc::new(transport_config(&self.cfg)),
                    self.refusals.clone(),
                )?
            }
        };
        let (handle, connection) =
            self.quic
                .connect(now, client, dial.remote, &dial.server_name)?;
        let path = if dial.path.is_empty() {
            "/".to_string()
        } else {
            dial.path.clone()
        };
        let mut conn = Conn::new(connection, Side::Client, Some(path.clone()));
        conn.server_name = Some(dial.server_name.clone());
        if let Some(authority) = &dial.webtransport {
            conn.wt_request = Some(ConnectRequest::new(authority, &path, &versions));
        }
        self.conns.insert(handle, conn);
        self.wake(handle);
        Ok(handle)
    }

    /// Hand everything the sessions queued to quinn-proto now (no I/O: it fills quinn's send
    /// buffers, so [`Endpoint::buffered_bytes`] reflects real backpressure). `poll_transmit`
    /// does this too; async handles call it after each application call.
    pub fn apply_commands(&mut self, now: Instant) {
        self.flush(now);
    }

    /// Close every connection with `code` and `reason`.
    pub fn close(&mut self, now: Instant, code: SessionCode, reason: &str) {
        self.closing = true;
        let peers: Vec<PeerId> = self.by_peer.keys().copied().collect();
        for peer in peers {
            self.node.close_session(now, peer, code, reason);
        }
        for conn in self.conns.values_mut() {
            if conn.peer.is_none() {
                conn.quic.close(
                    now,
                    VarInt::from_u64(code.0).unwrap_or(VarInt::MAX),
                    reason.as_bytes().to_vec().into(),
                );
            }
        }
        let handles: Vec<ConnectionHandle> = self.conns.keys().copied().collect();
        for handle in handles {
            self.wake(handle);
        }
        self.flush(now);
    }

    /// Send GOAWAY on every session (lite-04+; `uri` empty = "reconnect here") and close them
    /// with 0x10 after the node's drain period.
    pub fn goaway(&mut self, now: Instant, uri: &str) {
        self.node.goaway(now, uri);
        self.flush(now);
    }

    /// A UDP datagram arrived.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local_ip: Option<IpAddr>,
        ecn: Option<EcnCodepoint>,
        data: BytesMut,
    ) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        match self.quic.handle(now, remote, local_ip, ecn, data, &mut buf) {
            Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                if let Some(conn) = self.conns.get_mut(&handle) {
                    conn.quic.handle_event(event);
                    self.drive(now, handle);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => self.incoming(now, incoming, &mut buf),
            Some(DatagramEvent::Response(transmit)) => {
                self.queue_response(transmit, &buf);
            }
            None => {}
        }
        self.scratch = buf;
        self.flush(now);
    }

    /// Apply the accept policy to a new connection attempt.
    fn incoming(&mut self, now: Instant, incoming: quinn_proto::Incoming, buf: &mut Vec<u8>) {
        if self.server.is_none() || self.closing || self.conns.len() >= self.cfg.max_connections {
            let transmit = self.quic.refuse(incoming, buf);
            self.queue_response(transmit, buf);
            return;
        }
        if self.cfg.retry && !incoming.remote_address_validated() && incoming.may_retry() {
            match self.quic.retry(incoming, buf) {
                Ok(transmit) => self.queue_response(transmit, buf),
                Err(err) => self.quic.ignore(err.into_incoming()),
            }
            return;
        }
        match self.quic.accept(incoming, now, buf, None) {
            Ok((handle, connection)) => {
                let stale = self
                    .conns
                    .insert(handle, Conn::new(connection, Side::Server, None));
                if let Some(peer) = stale.and_then(|old| old.peer) {
                    // Never expected (a drained connection is reaped before quinn-proto can
                    // reuse its handle), but a session left behind would never be freed.
                    tracing::warn!(
                        ?handle,
                        "connection handle reused before its state was freed"
                    );
                    self.by_peer.remove(&peer);
                    self.node.remove_peer(now, peer);
                }
                self.drive(now, handle);
            }
            Err(err) => {
                tracing::debug!(cause = %err.cause, "refused incoming connection");
                if let Some(transmit) = err.response {
                    self.queue_response(transmit, buf);
                }
            }
        }
    }

    fn queue_response(&mut self, transmit: Transmit, buf: &[u8]) {
        let data = buf[..transmit.size].to_vec();
        self.responses.push_back((transmit, data));
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, handle))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if websocket::is_websocket(handle) {
                if self.ws.get(&handle).is_some_and(|c| c.timer == Some(at)) {
                    self.websocket_timeout(now, handle);
                }
                continue;
            }
            let Some(conn) = self.conns.get_mut(&handle) else {
                continue;
            };
            if conn.timer != Some(at) {
                continue;
            }
            conn.timer = None;
            conn.quic.handle_timeout(now);
            if let Some(h3) = conn.wt.as_deref_mut() {
                h3.handle_timeout(now);
            }
            self.wt_drive(now, handle);
            self.drive(now, handle);
        }
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        self.flush(now);
    }

    /// Whether a UDP transmit may be waiting (a QUIC connection was woken or a stateless
    /// response is queued): the driver that owns the socket should run.
    pub fn wants_udp_transmit(&self) -> bool {
        !self.active.is_empty() || !self.responses.is_empty()
    }

    /// The next datagram(s) to send, written into `buf`. GSO batches carry `segment_size`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.flush(now);
        if let Some((transmit, data)) = self.responses.pop_front() {
            buf.clear();
            buf.extend_from_slice(&data);
            return Some(transmit);
        }
        // Only connections something happened to are asked; each one that sent goes to the
        // back of the line, so connections take turns.
        while let Some(handle) = self.active.pop_front() {
            let Some(conn) = self.conns.get_mut(&handle) else {
                continue;
            };
            buf.clear();
            // Ask for the GSO batch size every time: the socket may have changed it.
            let transmit = conn
                .quic
                .poll_transmit(now, self.cfg.max_gso_segments.max(1), buf);
            self.refresh_timer(handle);
            match transmit {
                Some(transmit) => {
                    self.active.push_back(handle);
                    return Some(transmit);
                }
                None => {
                    if let Some(conn) = self.conns.get_mut(&handle) {
                        conn.active = false;
                    }
                    self.reap(now, handle);
                }
            }
        }
        None
    }

    /// When [`Endpoint::handle_timeout`] must be called next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop stale entries so the top is a real deadline.
        while let Some(Reverse((at, handle))) = self.timers.peek().copied() {
            if self.is_current_timer(at, handle) {
                break;
            }
            self.timers.pop();
        }
        let conns = self.timers.peek().map(|Reverse((at, _))| *at);
        [conns, self.node.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        self.node.poll_event().map(EngineEvent::Node)
    }

    /// Update the GSO batch size (the driver learns it from the socket).
    pub fn set_max_gso_segments(&mut self, segments: usize) {
        self.cfg.max_gso_segments = segments.max(1);
    }

    /// Mark a connection as possibly having something to send.
    pub(super) fn wake(&mut self, handle: ConnectionHandle) {
        if let Some(conn) = self.conns.get_mut(&handle)
            && !conn.active
        {
            conn.active = true;
            self.active.push_back(handle);
        }
    }

    /// Record a connection's current deadline in the timer heap if it changed.
    pub(super) fn refresh_timer(&mut self, handle: ConnectionHandle) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        // The HTTP/3 layer's close linger shares the connection's timer.
        let deadline = match (
            conn.quic.poll_timeout(),
            conn.wt.as_deref().and_then(|h3| h3.poll_timeout()),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if deadline != conn.timer {
            conn.timer = deadline;
            if let Some(at) = deadline {
                self.push_timer(at, handle);
            }
        }
    }

    /// Whether `at` is still `handle`'s deadline (a changed deadline leaves its old entry
    /// in the heap until then).
    fn is_current_timer(&self, at: Instant, handle: ConnectionHandle) -> bool {
        match self.ws.get(&handle) {
            Some(ws) => ws.timer == Some(at),
            None => self.conns.get(&handle).is_some_and(|c| c.timer == Some(at)),
        }
    }

    /// Record a connection's new deadline. Every change pushes an entry and stale ones
    /// leave only when their time comes, so a busy connection leaves about one per change
    /// over its keep-alive interval behind; once stale entries outnumber live ones they are
    /// swept, which keeps the heap (and the capacity it leaves) near the connection count
    /// instead of the packet rate, at a constant amortized cost per push.
    pub(super) fn push_timer(&mut self, at: Instant, handle: ConnectionHandle) {
        self.timers.push(Reverse((at, handle)));
        if self.timers.len() > 2 * (self.conns.len() + self.ws.len()) + 64 {
            let mut timers = std::mem::take(&mut self.timers).into_vec();
            timers.retain(|Reverse((at, handle))| self.is_current_timer(*at, *handle));
            self.timers = BinaryHeap::from(timers);
        }
    }

    /// Forget a connection once quinn-proto has drained it.
    pub(super) fn reap(&mut self, now: Instant, handle: ConnectionHandle) {
        if !self.conns.get(&handle).is_some_and(|c| c.quic.is_drained()) {
            return;
        }
        let removed = self.conns.remove(&handle);
        if let Some(conn) = &removed {
            self.blocked_bytes -= conn.blocked_bytes;
        }
        if let Some(peer) = removed.and_then(|conn| conn.peer) {
            self.by_peer.remove(&peer);
            self.node.remove_peer(now, peer);
        }
    }

    /// The session for a connection whose handshake completed.
    fn start_session(&mut self, now: Instant, handle: ConnectionHandle) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        let alpn = conn
            .quic
            .crypto_session()
            .handshake_data()
            .and_then(|d| {
                d.downcast::<quinn_proto::crypto::rustls::HandshakeData>()
                    .ok()
            })
            .and_then(|d| d.protocol);
        if alpn.as_deref() == Some(H3_ALPN) {
            self.start_webtransport(now, handle);
            return;
        }
        let Some(version) = alpn.as_deref().and_then(Version::from_alpn) else {
            tracing::debug!(?alpn, "no common MOQ version");
            conn.quic.close(
                now,
                VarInt::from_u64(SessionCode::VERSION.0).unwrap_or(VarInt::MAX),
                "no common version".into(),
            );
            return;
        };
        let side = conn.side;
        let mut config = self.cfg.session.clone();
        config.version = version;
        config.side = side;
        let root = match side {
            Side::Client => {
                if version.is_lite05() {
                    config.setup_path = conn.url_path.clone();
                }
                SessionRoot::Client
            }
            // Raw QUIC before lite-05 has no path: the session is rooted at `/`.
            Side::Server if !version.is_lite05() => SessionRoot::Server(Some("/")),
            Side::Server => SessionRoot::Server(None),
        };
        self.attach_session(now, handle, config, root);
    }

    /// Give a connection its MOQ session (`config` carries the version and side) and report
    /// it connected.
    pub(super) fn attach_session(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        config: session::Config,
        root: SessionRoot<'_>,
    ) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        let (version, side) = (config.version, config.side);
        conn.version = Some(version);
        let remote = conn.quic.remote_address();
        let peer = root.attach(&mut self.node, now, config);
        if let Some(conn) = self.conns.get_mut(&handle) {
            conn.peer = Some(peer);
        }
        self.by_peer.insert(peer, handle);
        self.events.push_back(EngineEvent::Connected {
            conn: handle,
            peer,
            version,
            remote,
            side,
        });
    }
}

/// The ALPN of HTTP/3, which WebTransport runs over.
const H3_ALPN: &[u8] = b"h3";

fn transport_config(cfg: &EngineConfig) -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport.max_concurrent_bidi_streams(VarInt::from_u32(cfg.max_streams));
    transport.max_concurrent_uni_streams(VarInt::from_u32(cfg.max_streams));
    transport.max_idle_timeout(quinn_proto::IdleTimeout::try_from(cfg.idle_timeout).ok());
    transport.keep_alive_interval(cfg.keep_alive);
    transport.datagram_receive_buffer_size(Some(1024 * 1024));
    if let Some(window) = cfg.send_window {
        transport.send_window(window);
    }
    if let Some(threshold) = cfg.ack_eliciting_threshold {
        let mut ack = quinn_proto::AckFrequencyConfig::default();
        ack.ack_eliciting_threshold(VarInt::from_u32(threshold));
        transport.ack_frequency_config(Some(ack));
    }
    transport
}

fn client_config(
    verification: &Verification,
    alpns: Vec<Vec<u8>>,
    transport: Arc<TransportConfig>,
    refusals: Arc<tls::RefusalLog>,
) -> Result<quinn_proto::ClientConfig, EngineError> {
    let tls = tls::client_config(verification, alpns, refusals)?;
    let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| EngineError::Crypto(e.to_string()))?;
    let mut client = quinn_proto::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport);
    Ok(client)
}

/// Where a new session is rooted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionRoot<'a> {
    /// We dialled: rooted at `/` (the path travels to the server).
    Client,
    /// We accepted: the client's request path and query, or `None` until lite-05's SETUP.
    Server(Option<&'a str>),
}

impl SessionRoot<'_> {
    fn attach(self, node: &mut Node, now: Instant, config: session::Config) -> PeerId {
        match self {
            SessionRoot::Client => node.add_session(now, config, Some(Path::root())),
            SessionRoot::Server(request) => node.add_server_session(now, config, request),
        }
    }
}

/// How to dial a server: the address, the name its certificate must carry, the URL path,
/// and optionally WebTransport, versions and a verification for this connection only.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Dial {
    /// Where.
    pub remote: SocketAddr,
    /// The host name the certificate must be valid for.
    pub server_name: String,
    /// The URL path (and query): the session root on the server.
    pub path: String,
    /// WebTransport (HTTP/3 CONNECT) with this `:authority` instead of raw QUIC.
    pub webtransport: Option<String>,
    /// Versions to offer, newest first; empty for the endpoint's configured list.
    pub versions: Vec<Version>,
    /// Verify the server this way instead of the endpoint's configured verification.
    pub verification: Option<Verification>,
}

impl Dial {
    /// Raw QUIC to `remote`, verified as `server_name`, rooted at `path`.
    pub fn new(remote: SocketAddr, server_name: &str, path: &str) -> Self {
        Self {
            remote,
            server_name: server_name.to_string(),
            path: path.to_string(),
            webtransport: None,
            versions: Vec::new(),
            verification: None,
        }
    }
}
