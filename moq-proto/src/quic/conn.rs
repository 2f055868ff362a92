//! Driving one quinn-proto connection: its events into the session, the session's commands
//! into quinn-proto.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn_proto::{ConnectionHandle, ReadError, StreamEvent, VarInt, WriteError};

use super::{ConnectFailure, Endpoint, EngineEvent};
use crate::codes::{SessionCode, StreamCode};
use crate::origin::PeerId;
use crate::session::{Command, Dir, OpenToken, Side, StreamId, TransportStats};
use crate::webtransport::connect::ConnectRequest;
use crate::webtransport::{H3Conn, Route, TransportCommand, error_codes};

/// How often transport statistics are fed to the session (for PROBE reports).
const STATS_INTERVAL: Duration = Duration::from_millis(100);

/// Data quinn-proto could not take yet, waiting for `StreamEvent::Writable`.
#[derive(Default)]
struct Blocked {
    chunks: VecDeque<Bytes>,
    /// The bytes in `chunks`.
    bytes: usize,
    finish: bool,
}

impl Blocked {
    fn push(&mut self, data: Bytes) {
        self.bytes += data.len();
        self.chunks.push_back(data);
    }

    /// Hand quinn-proto what it takes; returns the bytes it took. On an error (the stream is
    /// gone) the caller drops the whole queue.
    fn write(&mut self, send: &mut quinn_proto::SendStream<'_>) -> Result<usize, WriteError> {
        let written = write_until_blocked(send, &mut self.chunks)?;
        self.bytes -= written;
        Ok(written)
    }
}

pub(super) struct Conn {
    pub(super) quic: quinn_proto::Connection,
    pub(super) side: Side,
    pub(super) peer: Option<PeerId>,
    pub(super) version: Option<crate::wire::Version>,
    pub(super) url_path: Option<String>,
    /// Client: the host name the server's certificate is verified for.
    pub(super) server_name: Option<String>,
    /// WebTransport (ALPN `h3`): the HTTP/3 layer between QUIC and the MOQ session.
    pub(super) wt: Option<Box<H3Conn>>,
    /// Client over WebTransport: the CONNECT to send once the handshake completes.
    pub(super) wt_request: Option<ConnectRequest>,
    /// Opens waiting for stream credit, per direction, in ascending priority (the next to grant
    /// is the last).
    opens: [Vec<(OpenToken, i32)>; 2],
    blocked: HashMap<quinn_proto::StreamId, Blocked>,
    /// The bytes in `blocked`.
    pub(super) blocked_bytes: usize,
    /// The backlog last reported to the session.
    reported_backlog: usize,
    last_stats: Option<Instant>,
    pub(super) lost: bool,
    /// Listed in the endpoint's active queue.
    pub(super) active: bool,
    /// The deadline last recorded in the endpoint's timer heap.
    pub(super) timer: Option<Instant>,
}

impl Conn {
    /// Write to a stream, queueing behind earlier blocked data or whatever quinn-proto
    /// refuses; returns the bytes newly queued.
    fn write(&mut self, id: quinn_proto::StreamId, data: Bytes) -> usize {
        let len = data.len();
        if let Some(blocked) = self.blocked.get_mut(&id) {
            blocked.push(data);
            self.blocked_bytes += len;
            return len;
        }
        let mut blocked = Blocked::default();
        blocked.push(data);
        match blocked.write(&mut self.quic.send_stream(id)) {
            Ok(_) if blocked.chunks.is_empty() => 0,
            Ok(_) => {
                let queued = blocked.bytes;
                self.blocked_bytes += queued;
                self.blocked.insert(id, blocked);
                queued
            }
            Err(err) => {
                tracing::trace!(%err, "write on a closed stream");
                0
            }
        }
    }

    /// Retry a blocked stream now that quinn-proto may take more (FIN once it is all
    /// written); returns the bytes that left the queue.
    fn unblock(&mut self, id: quinn_proto::StreamId) -> usize {
        let Some(blocked) = self.blocked.get_mut(&id) else {
            return 0;
        };
        let mut send = self.quic.send_stream(id);
        match blocked.write(&mut send) {
            Ok(written) if !blocked.chunks.is_empty() => {
                self.blocked_bytes -= written;
                written
            }
            Ok(written) => {
                if blocked.finish {
                    let _ = send.finish();
                }
                self.blocked_bytes -= written;
                written + self.drop_blocked(id)
            }
            // The stream is gone: nothing queued for it will be sent.
            Err(_) => self.drop_blocked(id),
        }
    }

    /// Drop a stream's blocked queue; returns its bytes.
    fn drop_blocked(&mut self, id: quinn_proto::StreamId) -> usize {
        let bytes = self.blocked.remove(&id).map_or(0, |b| b.bytes);
        self.blocked_bytes -= bytes;
        bytes
    }

    /// Drop every blocked queue (the connection is gone); returns their bytes.
    fn drop_all_blocked(&mut self) -> usize {
        self.blocked.clear();
        std::mem::take(&mut self.blocked_bytes)
    }

    pub(super) fn new(quic: quinn_proto::Connection, side: Side, url_path: Option<String>) -> Self {
        Self {
            quic,
            side,
            peer: None,
            version: None,
            url_path,
            server_name: None,
            wt: None,
            wt_request: None,
            opens: [Vec::new(), Vec::new()],
            blocked: HashMap::new(),
            blocked_bytes: 0,
            reported_backlog: 0,
            last_stats: None,
            lost: false,
            active: false,
            timer: None,
        }
    }
}

/// Write queued chunks until they are all taken or quinn-proto reports `Blocked`.
///
/// A write that only partly fits returns `Ok` without registering the stream for a
/// `Writable` event; only a write refused outright does. So a partial write is retried at
/// once, which either takes more or is refused (and registered).
fn write_until_blocked(
    send: &mut quinn_proto::SendStream<'_>,
    chunks: &mut VecDeque<Bytes>,
) -> Result<usize, WriteError> {
    let mut total = 0;
    while !chunks.is_empty() {
        match send.write_chunks(chunks.make_contiguous()) {
            Ok(written) => {
                total += written.bytes;
                chunks.drain(..written.chunks);
                // A partly written chunk was advanced in place; drop it once empty.
                while chunks.front().is_some_and(Bytes::is_empty) {
                    chunks.pop_front();
                }
            }
            Err(WriteError::Blocked) => return Ok(total),
            Err(err) => return Err(err),
        }
    }
    Ok(total)
}

fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::Bi => 0,
        Dir::Uni => 1,
    }
}

fn quic_dir(dir: Dir) -> quinn_proto::Dir {
    match dir {
        Dir::Bi => quinn_proto::Dir::Bi,
        Dir::Uni => quinn_proto::Dir::Uni,
    }
}

fn session_id(id: quinn_proto::StreamId) -> StreamId {
    StreamId(u64::from(id))
}

fn quic_id(id: StreamId) -> Option<quinn_proto::StreamId> {
    VarInt::from_u64(id.0).ok().map(quinn_proto::StreamId::from)
}

fn varint(code: u64) -> VarInt {
    VarInt::from_u64(code).unwrap_or(VarInt::MAX)
}

fn peer_stream_code(code: VarInt) -> StreamCode {
    error_codes::stream_code_from_wire(code.into_inner())
}

impl Endpoint {
    /// Route a connection's endpoint events and application events until both are empty.
    pub(super) fn drive(&mut self, now: Instant, handle: ConnectionHandle) {
        let mut drained = false;
        loop {
            let Some(conn) = self.conns.get_mut(&handle) else {
                return;
            };
            let mut progressed = false;
            while let Some(event) = conn.quic.poll_endpoint_events() {
                progressed = true;
                drained |= event.is_drained();
                if let Some(reply) = self.quic.handle_event(handle, event) {
                    conn.quic.handle_event(reply);
                }
            }
            let Some(event) = conn.quic.poll() else {
                if !progressed {
                    break;
                }
                continue;
            };
            self.connection_event(now, handle, event);
        }
        if drained {
            // quinn-proto has freed the handle: the next incoming connection may get it, so
            // our state for this one goes now (its last events were handled above), not at
            // the next transmit poll.
            self.reap(now, handle);
            return;
        }
        self.feed_stats(now, handle);
        self.wake(handle);
        self.refresh_timer(handle);
    }

    fn connection_event(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        event: quinn_proto::Event,
    ) {
        use quinn_proto::Event;
        match event {
            Event::HandshakeDataReady => {}
            Event::Connected => self.start_session(now, handle),
            Event::ConnectionLost { reason } => {
                // The peer's application close code is the session code (docs/wire.md §6).
                // Over WebTransport it travels in the HTTP/3 mapping (as moq-dev's peers close).
                let webtransport = self
                    .conns
                    .get(&handle)
                    .is_some_and(|c| c.wt.is_some() || c.wt_request.is_some());
                let code = match &reason {
                    quinn_proto::ConnectionError::ApplicationClosed(close) => {
                        let raw = close.error_code.into_inner();
                        match error_codes::from_http3(raw) {
                            Some(n) if webtransport => SessionCode(u64::from(n)),
                            _ => SessionCode(raw),
                        }
                    }
                    _ => SessionCode::INTERNAL,
                };
                let failure = self.classify_failure(handle, &reason);
                self.connection_lost(now, handle, code, failure)
            }
            Event::Stream(StreamEvent::Opened { dir }) => self.accept_streams(now, handle, dir),
            Event::Stream(StreamEvent::Readable { id }) => self.read_stream(now, handle, id),
            Event::Stream(StreamEvent::Writable { id }) => self.unblock(handle, id),
            Event::Stream(StreamEvent::Finished { id }) => {
                let sid = session_id(id);
                let for_session = match self.h3(handle) {
                    Some(h3) => h3.handle_stream_finished(now, sid),
                    None => true,
                };
                if for_session {
                    self.session_input(now, handle, |s, now| s.handle_stream_finished(now, sid));
                }
                self.wt_drive(now, handle);
            }
            Event::Stream(StreamEvent::Stopped { id, error_code }) => {
                if let Some(conn) = self.conns.get_mut(&handle) {
                    self.blocked_bytes -= conn.drop_blocked(id);
                }
                let sid = session_id(id);
                let code = match self.h3(handle) {
                    Some(h3) => h3.handle_stop_sending(now, sid, error_code.into_inner()),
                    None => Some(peer_stream_code(error_code)),
                };
                if let Some(code) = code {
                    self.session_input(now, handle, |s, now| s.handle_stop_sending(now, sid, code));
                }
                self.wt_drive(now, handle);
            }
            Event::Stream(StreamEvent::Available { dir }) => self.grant_waiting(now, handle, dir),
            Event::DatagramReceived => loop {
                let Some(data) = self
                    .conns
                    .get_mut(&handle)
                    .and_then(|c| c.quic.datagrams().recv())
                else {
                    break;
                };
                let data = match self.h3(handle) {
                    Some(h3) => h3.handle_datagram(now, data),
                    None => Some(data),
                };
                if let Some(data) = data {
                    self.session_input(now, handle, |s, now| s.handle_datagram(now, data));
                }
                self.wt_drive(now, handle);
            },
            Event::DatagramsUnblocked => {}
        }
    }

    /// The connection's HTTP/3 layer, if it runs WebTransport.
    pub(super) fn h3(&mut self, handle: ConnectionHandle) -> Option<&mut H3Conn> {
        self.conns.get_mut(&handle)?.wt.as_deref_mut()
    }

    /// Feed a session input for the connection's peer.
    pub(super) fn session_input(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        f: impl FnOnce(&mut crate::session::Session, Instant),
    ) {
        if let Some(peer) = self.conns.get(&handle).and_then(|c| c.peer) {
            self.node.input(now, peer, f);
        }
    }

    /// Why a connection was lost, in the terms a user needs.
    fn classify_failure(
        &self,
        handle: ConnectionHandle,
        reason: &quinn_proto::ConnectionError,
    ) -> ConnectFailure {
        use quinn_proto::ConnectionError;
        // TLS alert 120 (no_application_protocol): the ALPN lists, that is the MOQ versions,
        // have nothing in common.
        let no_alpn = quinn_proto::TransportErrorCode::crypto(120);
        match reason {
            ConnectionError::ConnectionClosed(close) if close.error_code == no_alpn => {
                return ConnectFailure::NoCommonVersion(reason.to_string());
            }
            ConnectionError::TransportError(err) if err.code == no_alpn => {
                return ConnectFailure::NoCommonVersion(reason.to_string());
            }
            _ => {}
        }
        // Our verifier refused the server's certificate: it recorded why.
        if let ConnectionError::TransportError(_) = reason
            && let Some(conn) = self.conns.get(&handle)
            && conn.peer.is_none()
            && let Some(name) = &conn.server_name
            && let Some(refusal) = self.refusals.take(name)
        {
            return ConnectFailure::UntrustedCertificate(refusal);
        }
        ConnectFailure::Transport(reason.to_string())
    }

    fn connection_lost(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        code: SessionCode,
        failure: ConnectFailure,
    ) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        if conn.lost {
            return;
        }
        conn.lost = true;
        self.blocked_bytes -= conn.drop_all_blocked();
        let reason = failure.to_string();
        match conn.peer {
            Some(peer) => {
                self.node.input(now, peer, |s, now| {
                    s.handle_connection_lost(now, code, &reason)
                });
                self.events.push_back(EngineEvent::Disconnected {
                    conn: handle,
                    peer: Some(peer),
                    reason,
                });
            }
            None if conn.side == Side::Client => {
                self.events.push_back(EngineEvent::ConnectFailed {
                    conn: handle,
                    error: failure,
                });
            }
            None => self.events.push_back(EngineEvent::Disconnected {
                conn: handle,
                peer: None,
                reason,
            }),
        }
    }

    fn accept_streams(&mut self, now: Instant, handle: ConnectionHandle, dir: quinn_proto::Dir) {
        let session_dir = match dir {
            quinn_proto::Dir::Bi => Dir::Bi,
            quinn_proto::Dir::Uni => Dir::Uni,
        };
        while let Some(id) = self
            .conns
            .get_mut(&handle)
            .and_then(|c| c.quic.streams().accept(dir))
        {
            let sid = session_id(id);
            match self.h3(handle) {
                // The HTTP/3 layer decides what the stream is from its first bytes.
                Some(h3) => h3.handle_stream_opened(now, sid, session_dir),
                None => self.session_input(now, handle, |s, now| {
                    s.handle_stream_opened(now, sid, session_dir)
                }),
            }
            // Data may already be buffered; quinn-proto does not always signal it separately.
            self.read_stream(now, handle, id);
        }
    }

    /// Read everything readable on a stream into the session, zero-copy.
    fn read_stream(&mut self, now: Instant, handle: ConnectionHandle, id: quinn_proto::StreamId) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        let peer = conn.peer;
        if peer.is_none() && conn.wt.is_none() {
            return;
        }
        let mut recv = conn.quic.recv_stream(id);
        let Ok(mut chunks) = recv.read(true) else {
            return;
        };
        let sid = session_id(id);
        // Collect what one read returns and hand it over in one call: one stream lookup and
        // one decoding pass for all of it. The scratch vector is reused (no allocation).
        let mut batch = std::mem::take(&mut self.read_batch);
        let mut fin = false;
        let mut reset = None;
        loop {
            match chunks.next(usize::MAX) {
                Ok(Some(chunk)) => batch.push(chunk.bytes),
                Ok(None) => {
                    fin = true;
                    break;
                }
                Err(ReadError::Blocked) => break,
                Err(ReadError::Reset(code)) => {
                    reset = Some(code.into_inner());
                    break;
                }
            }
        }
        // Always finalize: it releases flow-control credit to the peer.
        let _ = chunks.finalize();
        let webtransport = conn.wt.is_some();
        let mut opened = None;
        let mut to_session = !batch.is_empty() || fin;
        let reset = match conn.wt.as_deref_mut() {
            Some(h3) => {
                if to_session {
                    match h3.handle_stream_data(now, sid, &mut batch, fin) {
                        Route::Session { opened: o } => opened = o,
                        Route::Consumed => to_session = false,
                    }
                }
                reset.and_then(|code| h3.handle_stream_reset(now, sid, code))
            }
            None => reset.map(error_codes::stream_code_from_wire),
        };
        if let Some(peer) = peer {
            if let Some(dir) = opened {
                self.node
                    .input(now, peer, |s, now| s.handle_stream_opened(now, sid, dir));
            }
            if to_session {
                self.node.input(now, peer, |s, now| {
                    s.handle_stream_chunks(now, sid, batch.drain(..), fin)
                });
            }
            if let Some(code) = reset {
                self.node
                    .input(now, peer, |s, now| s.handle_stream_reset(now, sid, code));
            }
        }
        batch.clear();
        self.read_batch = batch;
        if webtransport {
            self.wt_drive(now, handle);
        }
    }

    /// Retry writes quinn-proto refused earlier.
    fn unblock(&mut self, handle: ConnectionHandle, id: quinn_proto::StreamId) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        self.blocked_bytes -= conn.unblock(id);
        self.report_backlog(handle);
    }

    /// Tell the connection's session how much the transport could not take yet, when it
    /// changed (it sheds old groups when this grows too large).
    pub(super) fn report_backlog(&mut self, handle: ConnectionHandle) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        if conn.blocked_bytes == conn.reported_backlog {
            return;
        }
        conn.reported_backlog = conn.blocked_bytes;
        if let Some(peer) = conn.peer {
            self.node.set_send_backlog(peer, conn.blocked_bytes);
        }
    }

    /// Grant waiting opens now that quinn-proto has credit.
    fn grant_waiting(&mut self, now: Instant, handle: ConnectionHandle, dir: quinn_proto::Dir) {
        let index = match dir {
            quinn_proto::Dir::Bi => 0,
            quinn_proto::Dir::Uni => 1,
        };
        loop {
            let Some(conn) = self.conns.get_mut(&handle) else {
                return;
            };
            if conn.opens[index].is_empty() {
                return;
            }
            let Some(id) = conn.quic.streams().open(dir) else {
                return;
            };
            let Some((token, priority)) = conn.opens[index].pop() else {
                return;
            };
            let _ = conn.quic.send_stream(id).set_priority(priority);
            self.grant_open(now, handle, token, id);
        }
    }

    /// A stream was opened for `token`: the HTTP/3 layer's own, or the session's (after the
    /// layer wrote its WebTransport prefix).
    fn grant_open(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        token: OpenToken,
        id: quinn_proto::StreamId,
    ) {
        let sid = session_id(id);
        let token = match self.h3(handle) {
            Some(h3) => h3.handle_open_granted(now, token, sid),
            None => Some(token),
        };
        if let Some(token) = token {
            self.session_input(now, handle, |s, now| s.handle_open_granted(now, token, sid));
        }
        self.wt_drive(now, handle);
    }

    /// Feed transport statistics to the session for PROBE reports, at most every 100 ms.
    fn feed_stats(&mut self, now: Instant, handle: ConnectionHandle) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        if conn.peer.is_none()
            || conn
                .last_stats
                .is_some_and(|t| now.saturating_duration_since(t) < STATS_INTERVAL)
        {
            return;
        }
        conn.last_stats = Some(now);
        let rtt = conn.quic.rtt();
        let window = conn.quic.congestion_state().window();
        let bitrate = if rtt.is_zero() {
            0
        } else {
            (u128::from(window) * 8 * 1_000_000 / rtt.as_micros().max(1)) as u64
        };
        let stats = TransportStats { bitrate, rtt };
        self.session_input(now, handle, |s, now| s.handle_stats(now, stats));
    }

    /// Apply every command the sessions queued.
    pub(super) fn flush(&mut self, now: Instant) {
        while let Some(peer) = self.node.next_ready_peer() {
            let handle = self.by_peer.get(&peer).copied();
            while let Some(command) = self.node.poll_command(peer) {
                match handle {
                    Some(handle) => self.session_command(now, handle, command),
                    None => tracing::trace!(?command, "dropping a command for a detached session"),
                }
            }
            if let Some(handle) = handle {
                self.report_backlog(handle);
            }
        }
    }

    /// A command of the connection's MOQ session: through the HTTP/3 layer over WebTransport,
    /// straight to quinn-proto otherwise.
    fn session_command(&mut self, now: Instant, handle: ConnectionHandle, command: Command) {
        if super::websocket::is_websocket(handle) {
            self.websocket_command(now, handle, command);
            return;
        }
        if super::link::is_link(handle) {
            self.link_command(now, handle, command);
            return;
        }
        match self.h3(handle) {
            Some(h3) => {
                h3.send(now, command);
                self.wt_drive(now, handle);
            }
            None => self.apply(now, handle, TransportCommand::from_session(command)),
        }
    }

    pub(super) fn apply(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        command: TransportCommand,
    ) {
        self.wake(handle);
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        if conn.lost {
            return;
        }
        match command {
            TransportCommand::Open {
                token,
                dir,
                priority,
            } => {
                let index = dir_index(dir);
                let opened = if conn.opens[index].is_empty() {
                    conn.quic.streams().open(quic_dir(dir))
                } else {
                    None
                };
                match opened {
                    Some(id) => {
                        let _ = conn.quic.send_stream(id).set_priority(priority);
                        self.grant_open(now, handle, token, id);
                    }
                    None => {
                        // No credit: wait for StreamEvent::Available, highest priority first.
                        // Kept in ascending priority so the highest is popped from the end;
                        // among equals the oldest sits last (first out).
                        let queue = &mut conn.opens[index];
                        let at = queue.partition_point(|(_, p)| *p < priority);
                        queue.insert(at, (token, priority));
                    }
                }
            }
            TransportCommand::CancelOpen { token } => {
                for queue in &mut conn.opens {
                    queue.retain(|(t, _)| *t != token);
                }
            }
            TransportCommand::Write { stream, data } => {
                let Some(id) = quic_id(stream) else {
                    return;
                };
                self.blocked_bytes += conn.write(id, data);
            }
            TransportCommand::Finish { stream } => {
                let Some(id) = quic_id(stream) else {
                    return;
                };
                match conn.blocked.get_mut(&id) {
                    Some(blocked) => blocked.finish = true,
                    None => {
                        let _ = conn.quic.send_stream(id).finish();
                    }
                }
            }
            TransportCommand::Reset { stream, code } => {
                let Some(id) = quic_id(stream) else {
                    return;
                };
                self.blocked_bytes -= conn.drop_blocked(id);
                let _ = conn.quic.send_stream(id).reset(varint(code));
            }
            TransportCommand::Stop { stream, code } => {
                if let Some(id) = quic_id(stream) {
                    let _ = conn.quic.recv_stream(id).stop(varint(code));
                }
            }
            TransportCommand::SetPriority { stream, priority } => {
                if let Some(id) = quic_id(stream) {
                    let _ = conn.quic.send_stream(id).set_priority(priority);
                }
            }
            TransportCommand::SendDatagram { data } => {
                if let Err(err) = conn.quic.datagrams().send(data, true) {
                    tracing::trace!(%err, "datagram not sent");
                }
            }
            TransportCommand::Close { code, reason } => {
                conn.quic
                    .close(now, varint(code), Bytes::from(reason.into_bytes()));
            }
        }
    }
}
