//! WebTransport connections in the engine: the glue between quinn-proto, the sans-IO HTTP/3
//! layer ([`H3Conn`]) and the connection's MOQ session.
//!
//! A connection that negotiated ALPN `h3` gets an [`H3Conn`]; its stream events go through the
//! layer (see `conn.rs`), which keeps the HTTP/3 streams and routes WebTransport streams to the
//! MOQ session, created once the CONNECT exchange establishes the session.

use std::time::Instant;

use quinn_proto::ConnectionHandle;

use super::{ConnectFailure, Endpoint, EngineEvent, SessionRoot};
use crate::session::Side;
use crate::webtransport::{H3Config, H3Conn, H3Event, SessionInput};
use crate::wire::Version;

impl Endpoint {
    /// The handshake of a connection on ALPN `h3` completed: start its HTTP/3 layer.
    pub(super) fn start_webtransport(&mut self, now: Instant, handle: ConnectionHandle) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        let h3 = match conn.side {
            Side::Server => H3Conn::server(H3Config::default()),
            Side::Client => {
                let Some(request) = conn.wt_request.clone() else {
                    // We never offer h3 without a request to send.
                    conn.quic
                        .close(now, 0u32.into(), "no WebTransport request".into());
                    return;
                };
                H3Conn::client(H3Config::default(), request)
            }
        };
        conn.wt = Some(Box::new(h3));
        self.wt_drive(now, handle);
    }

    /// Apply everything the connection's HTTP/3 layer produced: transport commands, events,
    /// and held-back session inputs.
    pub(super) fn wt_drive(&mut self, now: Instant, handle: ConnectionHandle) {
        loop {
            let Some(conn) = self.conns.get_mut(&handle) else {
                return;
            };
            let has_session = conn.peer.is_some();
            let Some(h3) = conn.wt.as_deref_mut() else {
                return;
            };
            if let Some(command) = h3.poll_command() {
                self.apply(now, handle, command);
                continue;
            }
            if let Some(event) = h3.poll_event() {
                self.wt_event(now, handle, event);
                continue;
            }
            if has_session && let Some(input) = h3.poll_session_input() {
                self.wt_session_input(now, handle, input);
                continue;
            }
            break;
        }
        self.refresh_timer(handle);
    }

    fn wt_event(&mut self, now: Instant, handle: ConnectionHandle, event: H3Event) {
        match event {
            H3Event::Request(request) => {
                let version = request.choose(&self.cfg.server_versions);
                let Some(h3) = self.h3(handle) else {
                    return;
                };
                match version {
                    Some(version) => h3.accept(now, version),
                    None => {
                        tracing::debug!(offered = ?request.protocols, "no common MOQ version");
                        h3.reject(now, 400);
                    }
                }
            }
            H3Event::Established { version, path } => {
                self.wt_established(now, handle, version, &path);
            }
            H3Event::Refused { reason } => {
                if let Some(conn) = self.conns.get_mut(&handle) {
                    conn.lost = true;
                    if conn.side == Side::Client {
                        self.events.push_back(EngineEvent::ConnectFailed {
                            conn: handle,
                            error: ConnectFailure::Refused(reason),
                        });
                    }
                }
            }
        }
    }

    /// The WebTransport session is up: attach its MOQ session to the node.
    fn wt_established(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        version: Version,
        path: &str,
    ) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        let Some(h3) = conn.wt.as_deref() else {
            return;
        };
        let side = conn.side;
        let mut config = self.cfg.session.clone();
        config.version = version;
        config.side = side;
        // Over WebTransport the path is the CONNECT's, never a SETUP parameter (draft-05
        // §7.3.2), and every datagram carries the quarter stream ID.
        config.setup_path = None;
        config.datagram_prefix = h3.datagram_prefix();
        let root = match side {
            Side::Client => SessionRoot::Client,
            // The CONNECT path roots the session; its `?query` may carry a token.
            Side::Server => SessionRoot::Server(Some(path)),
        };
        self.attach_session(now, handle, config, root);
    }

    fn wt_session_input(&mut self, now: Instant, handle: ConnectionHandle, input: SessionInput) {
        match input {
            SessionInput::StreamOpened { stream, dir } => {
                self.session_input(now, handle, |s, now| {
                    s.handle_stream_opened(now, stream, dir)
                });
            }
            SessionInput::StreamData { stream, data, fin } => {
                self.session_input(now, handle, |s, now| {
                    s.handle_stream_data(now, stream, data, fin)
                });
            }
            SessionInput::Datagram { data } => {
                self.session_input(now, handle, |s, now| s.handle_datagram(now, data));
            }
            SessionInput::ConnectionLost { code, reason } => {
                self.session_input(now, handle, |s, now| {
                    s.handle_connection_lost(now, code, &reason)
                });
            }
        }
    }
}
