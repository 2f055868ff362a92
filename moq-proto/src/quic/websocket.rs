//! WebSocket (QMux) connections in the engine: MOQ sessions over TCP that are the same
//! citizens of the node as QUIC ones.
//!
//! The caller owns the TCP (or TLS) socket: it completes the HTTP upgrade with
//! [`Endpoint::accept_websocket`] (server) or after its own handshake registers the
//! connection with [`Endpoint::connect_websocket`] (client), then feeds what it reads to
//! [`Endpoint::handle_websocket_data`] and writes what
//! [`Endpoint::poll_websocket_transmit`] returns. [`Endpoint::poll_websocket_wake`] names the
//! connections that have something new to write. Their handles share the
//! [`ConnectionHandle`] type with QUIC connections, from a range quinn-proto never reaches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use quinn_proto::ConnectionHandle;

use super::tls::{self, TlsError, UntrustedCertificate};
use super::{Endpoint, EngineEvent, SessionRoot};
use crate::codes::SessionCode;
use crate::http1::{Request, Response};
use crate::origin::PeerId;
use crate::qmux::{Draft, QmuxConfig, QmuxEvent, WsQmux, WsState, subprotocol};
use crate::session::{Command, Side, TransportStats};
use crate::websocket::handshake::{self, HandshakeError};
use crate::wire::{Path, Version};

/// The first WebSocket connection handle: quinn-proto's handles are slab indices, far below.
const WS_HANDLE_BASE: usize = 1 << (usize::BITS - 2);

/// One WebSocket connection.
pub(super) struct WsConn {
    pub(super) transport: WsQmux,
    pub(super) side: Side,
    pub(super) peer: Option<PeerId>,
    pub(super) version: Version,
    pub(super) remote: SocketAddr,
    /// The deadline last recorded in the endpoint's timer heap.
    pub(super) timer: Option<Instant>,
    reported_backlog: usize,
    /// The session learnt that the connection ended.
    lost: bool,
    /// Listed in the endpoint's wake queue.
    listed: bool,
}

/// Whether `handle` names a WebSocket connection.
pub(super) fn is_websocket(handle: ConnectionHandle) -> bool {
    handle.0 >= WS_HANDLE_BASE
}

impl Endpoint {
    /// The TLS configuration of `wss://` clients: the endpoint's verification, ALPN
    /// `http/1.1` (what a WebSocket upgrade runs over).
    pub fn tcp_tls_client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let config = tls::client_config(
            &self.cfg.verification,
            vec![b"http/1.1".to_vec()],
            self.refusals.clone(),
        )?;
        Ok(Arc::new(config))
    }

    /// The TLS configuration of an HTTPS / `wss://` listener: the endpoint's certificate.
    pub fn tcp_tls_server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certificate = self
            .cfg
            .certificate
            .as_ref()
            .ok_or(TlsError::NoCertificate)?;
        Ok(Arc::new(tls::server_config(
            certificate,
            vec![b"http/1.1".to_vec()],
        )?))
    }

    /// Why our verifier refused `server_name`'s certificate, if it did (once).
    pub fn take_certificate_refusal(&self, server_name: &str) -> Option<UntrustedCertificate> {
        self.refusals.take(server_name)
    }

    fn qmux_config(&self) -> QmuxConfig {
        QmuxConfig {
            max_streams: u64::from(self.cfg.max_streams),
            idle_timeout: self.cfg.idle_timeout,
            keep_alive: self.cfg.keep_alive.unwrap_or(self.cfg.idle_timeout / 3),
            ..QmuxConfig::default()
        }
    }

    /// Answer a WebSocket upgrade request: on success the connection's handle and the
    /// `101 Switching Protocols` to write before anything else; otherwise the HTTP refusal
    /// (no version in common: 400, as the reference relay answers).
    pub fn accept_websocket(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        request: &Request,
    ) -> Result<(ConnectionHandle, Vec<u8>), Response> {
        if !self.cfg.websocket || self.cfg.certificate.is_none() {
            return Err(Response::text(404, "no WebSocket here\n"));
        }
        if self.connection_count() >= self.cfg.max_connections {
            return Err(Response::text(503, "too many connections\n"));
        }
        let versions = self.cfg.server_versions.clone();
        let mut chosen = None;
        let accepted = handshake::accept(request, |offered| {
            match subprotocol::choose(offered, &versions) {
                Some((name, draft, version)) => {
                    chosen = Some((draft, version));
                    Ok(Some(name))
                }
                None => Err(HandshakeError::NoProtocol(offered.join(", "))),
            }
        })
        .map_err(|err| {
            tracing::debug!(%err, "WebSocket upgrade refused");
            handshake::refusal(&err)
        })?;
        let Some((draft, version)) = chosen else {
            return Err(Response::text(400, "no subprotocol\n"));
        };
        // The URL path roots the session; its `?query` may carry a token. A refused client
        // gets 401 before the upgrade, as from the reference relay.
        let root = Path::new(request.path())
            .map_err(|e| Response::text(400, format!("invalid path: {e}\n")))?;
        if let Some(authorizer) = &self.cfg.node.authorizer {
            let query = request.target.split_once('?').map(|(_, q)| q);
            let now_unix = self.node.unix_time(now);
            if let Err(err) = authorizer.authorize(&crate::auth::AuthRequest {
                path: &root,
                query,
                now_unix,
            }) {
                tracing::info!(%err, path = request.path(), "WebSocket session refused");
                return Err(Response::text(401, format!("unauthorized: {err}\n")));
            }
        }
        let handle = self.add_websocket(now, Side::Server, draft, version, remote);
        let mut config = self.cfg.session.clone();
        config.version = version;
        config.side = Side::Server;
        config.setup_path = None;
        config.datagram_prefix = bytes::Bytes::new();
        self.attach_websocket_session(
            now,
            handle,
            config,
            SessionRoot::Server(Some(&request.target)),
        );
        Ok((handle, accepted.response()))
    }

    /// A client WebSocket whose upgrade completed (the server chose `protocol`): attach its
    /// session. `path` is the URL path the upgrade requested.
    pub fn connect_websocket(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        protocol: &str,
    ) -> Option<ConnectionHandle> {
        let (draft, version) = subprotocol::parse(protocol)?;
        let handle = self.add_websocket(now, Side::Client, draft, version, remote);
        let mut config = self.cfg.session.clone();
        config.version = version;
        config.side = Side::Client;
        // The path travels in the upgrade's URL, never in SETUP (as over WebTransport).
        config.setup_path = None;
        config.datagram_prefix = bytes::Bytes::new();
        self.attach_websocket_session(now, handle, config, SessionRoot::Client);
        Some(handle)
    }

    fn add_websocket(
        &mut self,
        now: Instant,
        side: Side,
        draft: Draft,
        version: Version,
        remote: SocketAddr,
    ) -> ConnectionHandle {
        let handle = ConnectionHandle(WS_HANDLE_BASE + self.next_ws);
        self.next_ws += 1;
        let transport = WsQmux::new(side, draft, self.qmux_config(), now, handle.0 as u64);
        self.ws.insert(
            handle,
            WsConn {
                transport,
                side,
                peer: None,
                version,
                remote,
                timer: None,
                reported_backlog: 0,
                lost: false,
                listed: false,
            },
        );
        handle
    }

    fn attach_websocket_session(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        config: crate::session::Config,
        root: SessionRoot<'_>,
    ) {
        let peer = root.attach(&mut self.node, now, config);
        let Some(conn) = self.ws.get_mut(&handle) else {
            return;
        };
        conn.peer = Some(peer);
        self.by_peer.insert(peer, handle);
        self.events.push_back(EngineEvent::Connected {
            conn: handle,
            peer,
            version: conn.version,
            remote: conn.remote,
            side: conn.side,
        });
        self.ws_drive(now, handle);
        self.flush(now);
    }

    /// Bytes read from a WebSocket connection's socket.
    pub fn handle_websocket_data(&mut self, now: Instant, handle: ConnectionHandle, data: &[u8]) {
        let Some(conn) = self.ws.get_mut(&handle) else {
            return;
        };
        conn.transport.handle_data(now, data);
        self.ws_drive(now, handle);
        self.flush(now);
    }

    /// A WebSocket connection's socket ended or failed: the connection is gone.
    pub fn handle_websocket_eof(&mut self, now: Instant, handle: ConnectionHandle, reason: &str) {
        let Some(conn) = self.ws.get_mut(&handle) else {
            return;
        };
        conn.transport.handle_eof(reason);
        self.ws_drive(now, handle);
        self.reap_websocket(now, handle, reason);
        self.flush(now);
    }

    /// Append what to write on a WebSocket connection's socket to `out`. `None` once the
    /// connection is gone; [`WsState::Finished`] once the socket should close after `out` is
    /// written (the connection is then forgotten).
    pub fn poll_websocket_transmit(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        out: &mut Vec<u8>,
    ) -> Option<WsState> {
        self.flush(now);
        let conn = self.ws.get_mut(&handle)?;
        let state = conn.transport.poll_transmit(now, out);
        // Sending may have granted opens or finished streams. The caller asks again until
        // this returns nothing, so the connection need not be listed for waking.
        self.ws_drive_listed(now, handle, false);
        if state == WsState::Finished {
            self.reap_websocket(now, handle, "closed");
        }
        self.flush(now);
        Some(state)
    }

    /// A WebSocket connection with something new to write (each listed once until asked).
    pub fn poll_websocket_wake(&mut self) -> Option<ConnectionHandle> {
        while let Some(handle) = self.ws_wake.pop_front() {
            if let Some(conn) = self.ws.get_mut(&handle) {
                conn.listed = false;
                return Some(handle);
            }
        }
        None
    }

    /// A session command for a WebSocket connection.
    pub(super) fn websocket_command(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        command: Command,
    ) {
        let Some(conn) = self.ws.get_mut(&handle) else {
            return;
        };
        conn.transport.apply(command);
        self.ws_drive(now, handle);
    }

    /// Time passed for a WebSocket connection.
    pub(super) fn websocket_timeout(&mut self, now: Instant, handle: ConnectionHandle) {
        let Some(conn) = self.ws.get_mut(&handle) else {
            return;
        };
        conn.timer = None;
        conn.transport.handle_timeout(now);
        self.ws_drive(now, handle);
    }

    /// Hand the transport's events to the session, report its backlog, refresh its timer and
    /// list it for writing.
    fn ws_drive(&mut self, now: Instant, handle: ConnectionHandle) {
        self.ws_drive_listed(now, handle, true);
    }

    fn ws_drive_listed(&mut self, now: Instant, handle: ConnectionHandle, list: bool) {
        loop {
            let Some(conn) = self.ws.get_mut(&handle) else {
                return;
            };
            let Some(event) = conn.transport.poll_event() else {
                break;
            };
            let Some(peer) = conn.peer else {
                continue;
            };
            match event {
                QmuxEvent::StreamOpened { id, dir } => {
                    self.node
                        .input(now, peer, |s, now| s.handle_stream_opened(now, id, dir));
                }
                QmuxEvent::StreamData { id, data, fin } => {
                    self.node
                        .input(now, peer, |s, now| s.handle_stream_data(now, id, data, fin));
                }
                QmuxEvent::StreamReset { id, code } => {
                    self.node
                        .input(now, peer, |s, now| s.handle_stream_reset(now, id, code));
                }
                QmuxEvent::StopSending { id, code } => {
                    self.node
                        .input(now, peer, |s, now| s.handle_stop_sending(now, id, code));
                }
                QmuxEvent::OpenGranted { token, id } => {
                    self.node
                        .input(now, peer, |s, now| s.handle_open_granted(now, token, id));
                }
                QmuxEvent::StreamFinished { id } => {
                    self.node
                        .input(now, peer, |s, now| s.handle_stream_finished(now, id));
                }
                QmuxEvent::Datagram(data) => {
                    self.node
                        .input(now, peer, |s, now| s.handle_datagram(now, data));
                }
                QmuxEvent::Rtt(rtt) => {
                    // TCP's rate is unknown here; the RTT still serves PROBE.
                    let stats = TransportStats { bitrate: 0, rtt };
                    self.node
                        .input(now, peer, |s, now| s.handle_stats(now, stats));
                }
                QmuxEvent::Closed { code, reason, .. } => {
                    self.websocket_lost(now, handle, code, &reason);
                }
            }
        }
        let Some(conn) = self.ws.get_mut(&handle) else {
            return;
        };
        let backlog = conn.transport.qmux().backlog();
        if backlog != conn.reported_backlog {
            self.ws_backlog = self.ws_backlog + backlog - conn.reported_backlog;
            conn.reported_backlog = backlog;
            if let Some(peer) = conn.peer {
                self.node.set_send_backlog(peer, backlog);
            }
        }
        let deadline = conn.transport.poll_timeout();
        let changed = deadline != conn.timer;
        conn.timer = deadline;
        if list && !conn.listed {
            conn.listed = true;
            self.ws_wake.push_back(handle);
        }
        if changed && let Some(at) = deadline {
            self.push_timer(at, handle);
        }
    }

    /// Tell the session and the application, once, that the connection ended.
    fn websocket_lost(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        code: SessionCode,
        reason: &str,
    ) {
        let Some(conn) = self.ws.get_mut(&handle) else {
            return;
        };
        if conn.lost {
            return;
        }
        conn.lost = true;
        let peer = conn.peer;
        if let Some(peer) = peer {
            self.node.input(now, peer, |s, now| {
                s.handle_connection_lost(now, code, reason)
            });
        }
        self.events.push_back(EngineEvent::Disconnected {
            conn: handle,
            peer,
            reason: reason.to_string(),
        });
    }

    /// Forget a finished connection.
    fn reap_websocket(&mut self, now: Instant, handle: ConnectionHandle, reason: &str) {
        self.websocket_lost(now, handle, SessionCode::NO_ERROR, reason);
        let Some(conn) = self.ws.remove(&handle) else {
            return;
        };
        self.ws_backlog -= conn.reported_backlog;
        if let Some(peer) = conn.peer {
            self.by_peer.remove(&peer);
            self.node.remove_peer(now, peer);
        }
    }
}
