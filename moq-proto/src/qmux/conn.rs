//! One QMux connection, sans-IO: QUIC's stream model (IDs, flow control, stream limits,
//! resets, datagrams) over an ordered byte stream, as the MOQ session's transport.
//!
//! Records come in through [`QmuxConn::handle_record`]; frames to send come out of
//! [`QmuxConn::poll_frame`], one per record (as every known peer sends them, and as draft-00
//! requires over WebSocket). The caller pulls frames only when its socket has room, so data the
//! session wrote waits here, where the scheduler sends the highest-priority stream first
//! (round-robin among equals) and [`QmuxConn::backlog`] tells the session how much waits.
//!
//! Compatibility rules learnt from the deployed peers (`@moq/qmux`, the `qmux` crates), beyond
//! the draft: MAX_* frames never decrease (a decreasing one kills a Rust peer); FIN travels in
//! the last data frame or an empty STREAM frame; a STOP_SENDING is answered with a
//! RESET_STREAM of the same code; QX_PING is never sent on draft-00 (its peers reject unknown
//! frames); an application close on draft-00 carries an extra zero byte, which both a correct
//! draft-00 reader (one frame per message, trailing bytes ignored) and qmux 0.0.7 (which
//! expects a frame-type field there) parse.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::frame::{self, Frame, FrameError, Frames, StreamKind, error_code};
use super::params::{DEFAULT_MAX_RECORD_SIZE, TransportParams};
use crate::codes::{SessionCode, StreamCode};
use crate::fxhash::FxHashMap;
use crate::session::{Command, Dir, OpenToken, Side, StreamId};

/// The largest STREAM payload we put in one frame: the ceiling every deployed peer accepts
/// (qmux 0.0.7 refuses more than 16360).
pub const MAX_STREAM_PAYLOAD: usize = 16352;
/// Draft-00's fixed frame-size limit.
const DRAFT00_MAX_FRAME: usize = 16384;
/// Datagrams waiting to be sent; more are dropped (they are unreliable anyway).
const MAX_QUEUED_DATAGRAMS: usize = 64;
/// QX_PINGs in flight whose send time we remember (for RTT samples).
const MAX_PINGS_IN_FLIGHT: usize = 8;

/// The QMux draft a connection speaks (named by the WebSocket subprotocol's `qmux-0N.`
/// prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Draft {
    /// draft-ietf-quic-qmux-00: one frame per message, no QX_PING.
    Qmux00,
    /// draft-ietf-quic-qmux-01: records, QX_PING, `max_record_size`.
    Qmux01,
    /// draft-ietf-quic-qmux-02: as -01; transport parameters first is enforced.
    Qmux02,
}

impl Draft {
    /// The subprotocol prefix (`qmux-01`).
    pub fn prefix(self) -> &'static str {
        match self {
            Draft::Qmux00 => "qmux-00",
            Draft::Qmux01 => "qmux-01",
            Draft::Qmux02 => "qmux-02",
        }
    }

    /// The draft a prefix names.
    pub fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix {
            "qmux-00" => Draft::Qmux00,
            "qmux-01" => Draft::Qmux01,
            "qmux-02" => Draft::Qmux02,
            _ => return None,
        })
    }

    /// The largest record (WebSocket message) a peer may send us.
    pub fn max_record(self, params: &TransportParams) -> usize {
        match self {
            Draft::Qmux00 => DRAFT00_MAX_FRAME,
            _ => params.max_record_size.min(usize::MAX as u64) as usize,
        }
    }
}

/// Limits and timers of a connection.
#[derive(Debug, Clone)]
pub struct QmuxConfig {
    /// Connection-level receive window.
    pub max_data: u64,
    /// Per-stream receive window.
    pub max_stream_data: u64,
    /// Streams of each kind the peer may have open at once.
    pub max_streams: u64,
    /// The idle timeout we declare.
    pub idle_timeout: Duration,
    /// Send a QX_PING after this long without sending anything (draft-01/02).
    pub keep_alive: Duration,
    /// Largest DATAGRAM frame we accept; 0 refuses datagrams.
    pub max_datagram_frame_size: u64,
}

impl Default for QmuxConfig {
    fn default() -> Self {
        Self {
            max_data: 16 * 1024 * 1024,
            max_stream_data: 1024 * 1024,
            max_streams: 1000,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            max_datagram_frame_size: DEFAULT_MAX_RECORD_SIZE,
        }
    }
}

/// Something the session must learn.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QmuxEvent {
    /// The peer opened a stream.
    StreamOpened {
        /// The stream.
        id: StreamId,
        /// Its direction.
        dir: Dir,
    },
    /// Stream data in order (possibly empty with `fin`).
    StreamData {
        /// The stream.
        id: StreamId,
        /// The bytes.
        data: Bytes,
        /// The stream ends here.
        fin: bool,
    },
    /// The peer abandoned its send side.
    StreamReset {
        /// The stream.
        id: StreamId,
        /// The application code.
        code: StreamCode,
    },
    /// The peer wants no more data (the stream was reset for it already).
    StopSending {
        /// The stream.
        id: StreamId,
        /// The application code.
        code: StreamCode,
    },
    /// A stream requested with [`Command::Open`] exists now.
    OpenGranted {
        /// The request.
        token: OpenToken,
        /// The stream.
        id: StreamId,
    },
    /// The whole send side of a stream (its FIN included) went to the transport.
    StreamFinished {
        /// The stream.
        id: StreamId,
    },
    /// A datagram.
    Datagram(Bytes),
    /// An RTT sample from a QX_PING answer.
    Rtt(Duration),
    /// The connection ended: the peer closed it (`code` is the application's for an
    /// application close), or it broke the protocol and we closed it.
    Closed {
        /// The session code to report.
        code: SessionCode,
        /// Why, for people.
        reason: String,
        /// True when the peer closed at the application level (a graceful close).
        application: bool,
    },
}

/// A frame to put in one record: `head` then `body` (a STREAM frame's payload, zero-copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFrame {
    /// The frame, or a STREAM frame's header.
    pub head: BytesMut,
    /// A STREAM frame's payload.
    pub body: Bytes,
}

impl OutFrame {
    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Never true: every frame has a type.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
struct SendHalf {
    queue: VecDeque<Bytes>,
    queued: usize,
    /// Bytes handed to the transport.
    offset: u64,
    /// The peer's credit for this stream.
    max: u64,
    fin: bool,
    /// FIN or RESET_STREAM sent: nothing more goes out.
    done: bool,
    priority: i32,
    /// Listed in the ready queue.
    ready: bool,
}

#[derive(Debug)]
struct RecvHalf {
    received: u64,
    /// The credit we gave.
    max: u64,
    /// The last credit we sent (MAX_STREAM_DATA queued when `max` moved past it).
    advertised: u64,
    /// FIN or RESET_STREAM arrived.
    done: bool,
    /// We sent STOP_SENDING: discard what arrives.
    stopped: bool,
}

#[derive(Debug, Default)]
struct Stream {
    send: Option<SendHalf>,
    recv: Option<RecvHalf>,
}

impl Stream {
    fn finished(&self) -> bool {
        self.send.as_ref().is_none_or(|s| s.done) && self.recv.as_ref().is_none_or(|r| r.done)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A close frame waits to be sent.
    Closing,
    /// Nothing more is sent or received.
    Closed,
}

/// A QMux connection. See the [module docs](self).
#[derive(Debug)]
pub struct QmuxConn {
    side: Side,
    draft: Draft,
    config: QmuxConfig,
    local: TransportParams,
    peer: Option<TransportParams>,
    params_sent: bool,
    /// Any frame arrived (draft-02: the first must be the transport parameters).
    received_any: bool,
    state: State,
    close_frame: Option<Frame>,
    streams: FxHashMap<u64, Stream>,
    /// Streams we opened, per kind (bidi, uni).
    local_opened: [u64; 2],
    /// Streams we may open, per kind (the peer's MAX_STREAMS).
    local_limit: [u64; 2],
    /// Streams the peer opened, per kind.
    peer_opened: [u64; 2],
    /// Streams the peer may open, per kind (our MAX_STREAMS).
    peer_limit: [u64; 2],
    /// The last MAX_STREAMS sent, per kind.
    peer_limit_advertised: [u64; 2],
    /// Opens waiting for stream credit, per kind, in ascending priority.
    opens: [Vec<(OpenToken, i32)>; 2],
    /// Connection credit: the peer's MAX_DATA and what we sent.
    send_max: u64,
    sent: u64,
    /// Connection receive window: our credit, the last one sent, what arrived.
    recv_max: u64,
    recv_advertised: u64,
    received: u64,
    /// Streams whose MAX_STREAM_DATA must be sent.
    credit_updates: Vec<u64>,
    control: VecDeque<Frame>,
    datagrams: VecDeque<Bytes>,
    /// Streams with something to send, by priority (highest last), round-robin within.
    ready: BTreeMap<i32, VecDeque<u64>>,
    /// Bytes written and not sent yet.
    backlog: usize,
    events: VecDeque<QmuxEvent>,
    ping_seq: u64,
    pings: VecDeque<(u64, Instant)>,
    ping_answer: Option<u64>,
    last_ping_request: Option<u64>,
    last_send: Option<Instant>,
    /// When to look at the keep-alive next: moves only when it fires, so sending does not
    /// churn the caller's timers.
    keepalive_at: Option<Instant>,
}

fn kind_index(dir: Dir) -> usize {
    match dir {
        Dir::Bi => 0,
        Dir::Uni => 1,
    }
}

/// (initiated by the server, unidirectional, index) of a stream ID (RFC 9000 §2.1).
fn split_id(id: u64) -> (bool, bool, u64) {
    (id & 1 != 0, id & 2 != 0, id >> 2)
}

fn make_id(server: bool, uni: bool, index: u64) -> u64 {
    index << 2 | u64::from(uni) << 1 | u64::from(server)
}

/// Why we close the connection: a transport error code and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation(u64, String);

impl From<FrameError> for Violation {
    fn from(err: FrameError) -> Self {
        Violation(err.code(), err.to_string())
    }
}

fn violation(code: u64, reason: impl Into<String>) -> Violation {
    Violation(code, reason.into())
}

impl QmuxConn {
    /// A connection for `side`, speaking `draft`, ready to send its transport parameters.
    pub fn new(side: Side, draft: Draft, config: QmuxConfig) -> Self {
        let local = TransportParams {
            max_idle_timeout: Some(config.idle_timeout),
            initial_max_data: config.max_data,
            initial_max_stream_data_bidi_local: config.max_stream_data,
            initial_max_stream_data_bidi_remote: config.max_stream_data,
            initial_max_stream_data_uni: config.max_stream_data,
            initial_max_streams_bidi: config.max_streams,
            initial_max_streams_uni: config.max_streams,
            // Draft-00 peers know no DATAGRAM (the reference leaves it out there too).
            max_datagram_frame_size: match draft {
                Draft::Qmux00 => 0,
                _ => config.max_datagram_frame_size,
            },
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
        };
        Self {
            side,
            draft,
            local,
            peer: None,
            params_sent: false,
            received_any: false,
            state: State::Open,
            close_frame: None,
            streams: FxHashMap::default(),
            local_opened: [0; 2],
            local_limit: [0; 2],
            peer_opened: [0; 2],
            peer_limit: [config.max_streams; 2],
            peer_limit_advertised: [config.max_streams; 2],
            opens: [Vec::new(), Vec::new()],
            send_max: 0,
            sent: 0,
            recv_max: config.max_data,
            recv_advertised: config.max_data,
            received: 0,
            credit_updates: Vec::new(),
            control: VecDeque::new(),
            datagrams: VecDeque::new(),
            ready: BTreeMap::new(),
            backlog: 0,
            events: VecDeque::new(),
            ping_seq: 0,
            pings: VecDeque::new(),
            ping_answer: None,
            last_ping_request: None,
            last_send: None,
            keepalive_at: None,
            config,
        }
    }

    /// The draft in use.
    pub fn draft(&self) -> Draft {
        self.draft
    }

    /// The largest record the peer may send us (the caller's message cap).
    pub fn max_record(&self) -> usize {
        self.draft.max_record(&self.local)
    }

    /// Bytes the session wrote that are not sent yet.
    pub fn backlog(&self) -> usize {
        self.backlog
    }

    /// Closed: nothing more will be sent (after a close, once its frame went out).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Open: neither side has closed (a close frame may still be waiting to go out).
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Streams in the table (bounded by the stream limits).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<QmuxEvent> {
        self.events.pop_front()
    }

    /// When [`QmuxConn::handle_timeout`] must run (the keep-alive).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.draft == Draft::Qmux00 || self.state != State::Open {
            return None;
        }
        self.keepalive_at
    }

    /// Time passed: queue a QX_PING if we have been silent for the keep-alive interval.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(at) = self.poll_timeout() else {
            return;
        };
        if at > now {
            return;
        }
        let silent_until = self.last_send.map_or(now, |t| t + self.config.keep_alive);
        if silent_until > now {
            // Something went out meanwhile: look again when the silence would be long enough.
            self.keepalive_at = Some(silent_until);
            return;
        }
        let seq = self.ping_seq;
        self.ping_seq += 1;
        self.control.push_back(Frame::Ping(seq));
        if self.pings.len() == MAX_PINGS_IN_FLIGHT {
            self.pings.pop_front();
        }
        self.pings.push_back((seq, now));
        self.last_send = Some(now);
        self.keepalive_at = Some(now + self.config.keep_alive);
    }

    // ----- from the session -----

    /// Apply a session command.
    pub fn apply(&mut self, command: Command) {
        if self.state != State::Open {
            return;
        }
        match command {
            Command::Open {
                token,
                dir,
                priority,
            } => self.open(token, dir, priority),
            Command::CancelOpen { token } => {
                for queue in &mut self.opens {
                    queue.retain(|(t, _)| *t != token);
                }
            }
            Command::Write { stream, data } => self.write(stream.0, data),
            Command::Finish { stream } => {
                if let Some(send) = self.send_half(stream.0)
                    && !send.fin
                {
                    send.fin = true;
                    self.schedule(stream.0);
                }
            }
            Command::Reset { stream, code } => self.reset(stream.0, code.0),
            Command::Stop { stream, code } => {
                let id = stream.0;
                if let Some(recv) = self.streams.get_mut(&id).and_then(|s| s.recv.as_mut())
                    && !recv.done
                    && !recv.stopped
                {
                    recv.stopped = true;
                    self.control
                        .push_back(Frame::StopSending { id, code: code.0 });
                }
            }
            Command::SetPriority { stream, priority } => self.set_priority(stream.0, priority),
            Command::SendDatagram { data } => {
                let max = self.peer.map_or(0, |p| p.max_datagram_frame_size) as usize;
                // The frame: type, length, payload.
                let fits = data.len() + 1 + crate::coding::varint_len(data.len() as u64) <= max;
                if fits && self.datagrams.len() < MAX_QUEUED_DATAGRAMS {
                    self.datagrams.push_back(data);
                }
            }
            Command::Close { code, reason } => self.close(code, &reason),
        }
    }

    /// Close with an application code (APPLICATION_CLOSE); the frame is sent next.
    pub fn close(&mut self, code: SessionCode, reason: &str) {
        if self.state != State::Open {
            return;
        }
        let mut reason = Bytes::copy_from_slice(reason.as_bytes());
        if self.draft == Draft::Qmux00 {
            reason = Bytes::new();
        }
        self.close_frame = Some(Frame::ConnectionClose {
            application: true,
            code: code.0,
            frame_type: None,
            reason,
        });
        self.state = State::Closing;
    }

    /// The transport under us ended (EOF, WebSocket close, idle timeout).
    pub fn handle_transport_closed(&mut self, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        let was_open = self.state == State::Open;
        self.state = State::Closed;
        self.drop_send_state();
        if was_open {
            self.events.push_back(QmuxEvent::Closed {
                code: SessionCode::INTERNAL,
                reason: reason.to_string(),
                application: false,
            });
        }
    }

    /// Close with a transport error (the caller's framing broke, e.g. an oversized message).
    pub fn fail(&mut self, code: u64, reason: &str) {
        self.violate(Violation(code, reason.to_string()));
    }

    fn open(&mut self, token: OpenToken, dir: Dir, priority: i32) {
        let kind = kind_index(dir);
        if self.opens[kind].is_empty() && self.local_opened[kind] < self.local_limit[kind] {
            self.grant(token, dir, priority);
            return;
        }
        let queue = &mut self.opens[kind];
        let at = queue.partition_point(|(_, p)| *p < priority);
        queue.insert(at, (token, priority));
    }

    fn grant(&mut self, token: OpenToken, dir: Dir, priority: i32) {
        let kind = kind_index(dir);
        let index = self.local_opened[kind];
        self.local_opened[kind] += 1;
        let uni = dir == Dir::Uni;
        let id = make_id(self.side == Side::Server, uni, index);
        let peer = self.peer.unwrap_or_default();
        let max = if uni {
            peer.initial_max_stream_data_uni
        } else {
            peer.initial_max_stream_data_bidi_remote
        };
        let stream = Stream {
            send: Some(SendHalf::new(max, priority)),
            recv: (!uni).then(|| RecvHalf::new(self.local.initial_max_stream_data_bidi_local)),
        };
        self.streams.insert(id, stream);
        self.events.push_back(QmuxEvent::OpenGranted {
            token,
            id: StreamId(id),
        });
    }

    fn grant_waiting(&mut self) {
        for (kind, dir) in [(0, Dir::Bi), (1, Dir::Uni)] {
            while self.local_opened[kind] < self.local_limit[kind] {
                let Some((token, priority)) = self.opens[kind].pop() else {
                    break;
                };
                self.grant(token, dir, priority);
            }
        }
    }

    fn send_half(&mut self, id: u64) -> Option<&mut SendHalf> {
        live_send(&mut self.streams, id)
    }

    fn write(&mut self, id: u64, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let Some(send) = live_send(&mut self.streams, id) else {
            return;
        };
        if send.fin {
            return;
        }
        send.queued += data.len();
        self.backlog += data.len();
        send.queue.push_back(data);
        self.schedule(id);
    }

    fn reset(&mut self, id: u64, code: u64) {
        let Some(send) = live_send(&mut self.streams, id) else {
            return;
        };
        self.backlog -= send.queued;
        send.queue.clear();
        send.queued = 0;
        send.done = true;
        let final_size = send.offset;
        self.control.push_back(Frame::ResetStream {
            id,
            code,
            final_size,
        });
        self.retire_if_finished(id);
    }

    fn set_priority(&mut self, id: u64, priority: i32) {
        let Some(send) = self.send_half(id) else {
            return;
        };
        let old = send.priority;
        send.priority = priority;
        if old == priority || !send.ready {
            return;
        }
        if let Some(level) = self.ready.get_mut(&old) {
            level.retain(|s| *s != id);
            if level.is_empty() {
                self.ready.remove(&old);
            }
        }
        self.ready.entry(priority).or_default().push_back(id);
    }

    /// List a stream as having something to send, unless it is listed or blocked on its
    /// own credit.
    fn schedule(&mut self, id: u64) {
        let Some(send) = self.send_half(id) else {
            return;
        };
        let blocked = send.queued > 0 && send.offset >= send.max;
        if send.ready || blocked || (send.queued == 0 && !send.fin) {
            return;
        }
        send.ready = true;
        let priority = send.priority;
        self.ready.entry(priority).or_default().push_back(id);
    }

    fn drop_send_state(&mut self) {
        self.ready.clear();
        self.control.clear();
        self.datagrams.clear();
        for stream in self.streams.values_mut() {
            if let Some(send) = stream.send.as_mut() {
                send.queue.clear();
                send.queued = 0;
            }
        }
        self.backlog = 0;
    }

    // ----- to the transport -----

    /// The next frame to send, one per record; `None` when there is nothing (or no credit).
    pub fn poll_frame(&mut self, now: Instant) -> Option<OutFrame> {
        let frame = self.next_frame()?;
        self.last_send = Some(now);
        if self.keepalive_at.is_none() {
            self.keepalive_at = Some(now + self.config.keep_alive);
        }
        Some(frame)
    }

    fn next_frame(&mut self) -> Option<OutFrame> {
        if self.state == State::Closed {
            return None;
        }
        if !self.params_sent {
            self.params_sent = true;
            return Some(whole(&Frame::TransportParameters(self.local.encode())));
        }
        if self.state == State::Closing {
            self.state = State::Closed;
            self.drop_send_state();
            let frame = self.close_frame.take()?;
            let mut out = whole(&frame);
            if self.draft == Draft::Qmux00
                && matches!(
                    frame,
                    Frame::ConnectionClose {
                        application: true,
                        ..
                    }
                )
            {
                // See the module docs: parsable by correct draft-00 readers and by qmux 0.0.7.
                out.head.extend_from_slice(&[0]);
            }
            return Some(out);
        }
        if let Some(frame) = self.next_control() {
            return Some(whole(&frame));
        }
        if let Some(data) = self.datagrams.pop_front() {
            return Some(whole(&Frame::Datagram(data)));
        }
        self.next_stream_frame()
    }

    fn next_control(&mut self) -> Option<Frame> {
        if let Some(frame) = self.control.pop_front() {
            return Some(frame);
        }
        if let Some(seq) = self.ping_answer.take() {
            return Some(Frame::PingResponse(seq));
        }
        if self.recv_max > self.recv_advertised {
            self.recv_advertised = self.recv_max;
            return Some(Frame::MaxData(self.recv_max));
        }
        for (kind, stream_kind) in [(0, StreamKind::Bidi), (1, StreamKind::Uni)] {
            if self.peer_limit[kind] > self.peer_limit_advertised[kind] {
                self.peer_limit_advertised[kind] = self.peer_limit[kind];
                return Some(Frame::MaxStreams {
                    kind: stream_kind,
                    max: self.peer_limit[kind],
                });
            }
        }
        while let Some(id) = self.credit_updates.pop() {
            if let Some(recv) = self.streams.get_mut(&id).and_then(|s| s.recv.as_mut())
                && !recv.done
                && recv.max > recv.advertised
            {
                recv.advertised = recv.max;
                return Some(Frame::MaxStreamData { id, max: recv.max });
            }
        }
        None
    }

    /// The largest STREAM payload that fits the peer's record size after a header.
    fn max_payload(&self, header: usize) -> usize {
        let record = match self.draft {
            Draft::Qmux00 => DRAFT00_MAX_FRAME,
            _ => self
                .peer
                .map_or(DEFAULT_MAX_RECORD_SIZE, |p| p.max_record_size)
                .min(1 << 20) as usize,
        };
        record.saturating_sub(header).min(MAX_STREAM_PAYLOAD)
    }

    fn next_stream_frame(&mut self) -> Option<OutFrame> {
        let conn_credit = self.send_max.saturating_sub(self.sent);
        let levels: Vec<i32> = self.ready.keys().rev().copied().collect();
        for level in levels {
            let len = self.ready.get(&level).map_or(0, VecDeque::len);
            for _ in 0..len {
                let Some(id) = self.ready.get_mut(&level).and_then(VecDeque::pop_front) else {
                    break;
                };
                match self.stream_frame(id, conn_credit) {
                    Pick::Frame(frame, again) => {
                        if again {
                            self.ready.entry(level).or_default().push_back(id);
                        } else {
                            self.unready(id);
                        }
                        self.prune(level);
                        return Some(frame);
                    }
                    Pick::Wait => self.ready.entry(level).or_default().push_back(id),
                    Pick::Drop => self.unready(id),
                }
            }
            self.prune(level);
        }
        None
    }

    fn prune(&mut self, level: i32) {
        if self.ready.get(&level).is_some_and(VecDeque::is_empty) {
            self.ready.remove(&level);
        }
    }

    fn unready(&mut self, id: u64) {
        if let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) {
            send.ready = false;
        }
    }

    fn stream_frame(&mut self, id: u64, conn_credit: u64) -> Pick {
        let header_guess = frame::stream_header_len(id, u32::MAX as u64, 0xFFFF);
        let max_payload = self.max_payload(header_guess);
        let Some(send) = self
            .streams
            .get_mut(&id)
            .and_then(|s| s.send.as_mut())
            .filter(|s| !s.done)
        else {
            return Pick::Drop;
        };
        let stream_credit = send.max.saturating_sub(send.offset);
        if send.queued > 0 && stream_credit == 0 {
            // Blocked on the stream's own credit: MAX_STREAM_DATA lists it again.
            return Pick::Drop;
        }
        if send.queued > 0 && conn_credit == 0 {
            return Pick::Wait;
        }
        let n = (send.queued as u64)
            .min(stream_credit)
            .min(conn_credit)
            .min(max_payload as u64) as usize;
        let body = take(&mut send.queue, n);
        send.queued -= n;
        let offset = send.offset;
        send.offset += n as u64;
        let fin = send.fin && send.queued == 0;
        if fin {
            send.done = true;
        }
        let again = !fin && send.queued > 0 && send.offset < send.max;
        self.backlog -= n;
        self.sent += n as u64;
        let mut head = BytesMut::with_capacity(16);
        frame::encode_stream_header(&mut head, id, offset, n, fin);
        if fin {
            self.events
                .push_back(QmuxEvent::StreamFinished { id: StreamId(id) });
            self.retire_if_finished(id);
        }
        Pick::Frame(OutFrame { head, body }, again)
    }

    // ----- from the transport -----

    /// One record (a WebSocket message's payload).
    pub fn handle_record(&mut self, now: Instant, record: Bytes) {
        if self.state == State::Closed {
            return;
        }
        for result in Frames::new(record) {
            let outcome = result
                .map_err(Violation::from)
                .and_then(|f| self.handle_frame(now, f));
            if let Err(v) = outcome {
                self.violate(v);
                return;
            }
            if self.state == State::Closed {
                return;
            }
            // Draft-00 carries one frame per message; what follows is ignored, as the
            // deployed draft-00 readers do.
            if self.draft == Draft::Qmux00 {
                return;
            }
        }
    }

    fn violate(&mut self, Violation(code, reason): Violation) {
        if self.state == State::Closed {
            return;
        }
        tracing::debug!(code, %reason, "QMux protocol violation");
        let was_open = self.state == State::Open;
        self.close_frame = Some(Frame::ConnectionClose {
            application: false,
            code,
            frame_type: Some(0),
            reason: Bytes::copy_from_slice(reason.as_bytes()),
        });
        self.state = State::Closing;
        if was_open {
            self.events.push_back(QmuxEvent::Closed {
                code: SessionCode::PROTOCOL_VIOLATION,
                reason: format!("QMux: {reason}"),
                application: false,
            });
        }
    }

    fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), Violation> {
        let first = !self.received_any;
        self.received_any = true;
        if first && self.draft == Draft::Qmux02 && !matches!(frame, Frame::TransportParameters(_)) {
            return Err(violation(
                error_code::PROTOCOL_VIOLATION,
                "first frame is not QX_TRANSPORT_PARAMETERS",
            ));
        }
        match frame {
            Frame::Padding | Frame::DataBlocked(_) | Frame::StreamDataBlocked { .. } => {}
            Frame::StreamsBlocked { .. } => {}
            Frame::TransportParameters(body) => self.handle_params(&body)?,
            Frame::Stream {
                id,
                offset,
                data,
                fin,
            } => self.handle_stream(id, offset, data, fin)?,
            Frame::ResetStream {
                id,
                code,
                final_size,
            } => self.handle_reset(id, code, final_size)?,
            Frame::StopSending { id, code } => self.handle_stop_sending(id, code)?,
            Frame::MaxData(max) => self.send_max = self.send_max.max(max),
            Frame::MaxStreamData { id, max } => {
                let (server, uni, _) = split_id(id);
                if uni && server != (self.side == Side::Server) {
                    return Err(violation(
                        error_code::STREAM_STATE_ERROR,
                        "MAX_STREAM_DATA for a receive-only stream",
                    ));
                }
                if let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut())
                    && max > send.max
                {
                    send.max = max;
                    self.schedule(id);
                }
            }
            Frame::MaxStreams { kind, max } => {
                let kind = match kind {
                    StreamKind::Bidi => 0,
                    StreamKind::Uni => 1,
                };
                self.local_limit[kind] = self.local_limit[kind].max(max);
                self.grant_waiting();
            }
            Frame::ConnectionClose {
                application,
                code,
                reason,
                ..
            } => {
                let reason = String::from_utf8_lossy(&reason).into_owned();
                self.state = State::Closed;
                self.drop_send_state();
                self.events.push_back(QmuxEvent::Closed {
                    code: if application {
                        SessionCode(code)
                    } else {
                        SessionCode::PROTOCOL_VIOLATION
                    },
                    reason,
                    application,
                });
            }
            Frame::Datagram(data) => {
                let max = self.local.max_datagram_frame_size;
                if max == 0 {
                    return Err(violation(
                        error_code::PROTOCOL_VIOLATION,
                        "DATAGRAM without max_datagram_frame_size",
                    ));
                }
                if data.len() as u64 > max {
                    return Err(violation(
                        error_code::PROTOCOL_VIOLATION,
                        "DATAGRAM too large",
                    ));
                }
                self.events.push_back(QmuxEvent::Datagram(data));
            }
            Frame::Ping(seq) => {
                if self.draft == Draft::Qmux02 && self.last_ping_request.is_some_and(|s| seq <= s) {
                    return Err(violation(
                        error_code::PROTOCOL_VIOLATION,
                        "QX_PING sequence not increasing",
                    ));
                }
                self.last_ping_request = Some(seq);
                // Several requests before we answer: one answer, the largest (draft-01 §3.3).
                self.ping_answer = Some(self.ping_answer.map_or(seq, |s| s.max(seq)));
            }
            Frame::PingResponse(seq) => {
                if let Some(at) = self.pings.iter().position(|(s, _)| *s == seq) {
                    let (_, sent) = self.pings[at];
                    self.pings.drain(..=at);
                    self.events
                        .push_back(QmuxEvent::Rtt(now.saturating_duration_since(sent)));
                } else if self.draft == Draft::Qmux02 && seq >= self.ping_seq {
                    return Err(violation(
                        error_code::PROTOCOL_VIOLATION,
                        "QX_PING answer for a ping never sent",
                    ));
                }
            }
        }
        Ok(())
    }

    fn handle_params(&mut self, body: &[u8]) -> Result<(), Violation> {
        if self.peer.is_some() {
            return Err(violation(
                error_code::PROTOCOL_VIOLATION,
                "second QX_TRANSPORT_PARAMETERS",
            ));
        }
        let params = TransportParams::decode(body)
            .map_err(|e| violation(error_code::TRANSPORT_PARAMETER_ERROR, e.to_string()))?;
        self.peer = Some(params);
        self.send_max = self.send_max.max(params.initial_max_data);
        self.local_limit[0] = self.local_limit[0].max(params.initial_max_streams_bidi);
        self.local_limit[1] = self.local_limit[1].max(params.initial_max_streams_uni);
        // Streams the peer opened before its parameters arrived get their credit now.
        let ids: Vec<u64> = self.streams.keys().copied().collect();
        for id in ids {
            let (server, uni, _) = split_id(id);
            let ours = server == (self.side == Side::Server);
            let initial = match (ours, uni) {
                (true, true) => params.initial_max_stream_data_uni,
                (true, false) => params.initial_max_stream_data_bidi_remote,
                (false, _) => params.initial_max_stream_data_bidi_local,
            };
            if let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut())
                && initial > send.max
            {
                send.max = initial;
                self.schedule(id);
            }
        }
        self.grant_waiting();
        Ok(())
    }

    /// The stream a peer frame names: opens peer streams up to it (within our limit);
    /// `Ok(false)` for a stream already retired (late frames are ignored).
    fn peer_frame_stream(&mut self, id: u64) -> Result<bool, Violation> {
        if self.streams.contains_key(&id) {
            return Ok(true);
        }
        let (server, uni, index) = split_id(id);
        let kind = usize::from(uni);
        if server == (self.side == Side::Server) {
            // Ours: it exists unless we never opened it.
            if index >= self.local_opened[kind] {
                return Err(violation(
                    error_code::STREAM_STATE_ERROR,
                    format!("frame for stream {id}, which we never opened"),
                ));
            }
            return Ok(false);
        }
        if index < self.peer_opened[kind] {
            return Ok(false);
        }
        if index >= self.peer_limit[kind] {
            return Err(violation(
                error_code::STREAM_LIMIT_ERROR,
                format!("stream {id} beyond the limit of {}", self.peer_limit[kind]),
            ));
        }
        let peer = self.peer.unwrap_or_default();
        let dir = if uni { Dir::Uni } else { Dir::Bi };
        for i in self.peer_opened[kind]..=index {
            let sid = make_id(server, uni, i);
            let stream = Stream {
                send: (!uni).then(|| SendHalf::new(peer.initial_max_stream_data_bidi_local, 0)),
                recv: Some(RecvHalf::new(if uni {
                    self.local.initial_max_stream_data_uni
                } else {
                    self.local.initial_max_stream_data_bidi_remote
                })),
            };
            self.streams.insert(sid, stream);
            self.events.push_back(QmuxEvent::StreamOpened {
                id: StreamId(sid),
                dir,
            });
        }
        self.peer_opened[kind] = index + 1;
        Ok(true)
    }

    fn recv_half_of(&mut self, id: u64, what: &str) -> Result<Option<&mut RecvHalf>, Violation> {
        let (server, uni, _) = split_id(id);
        if uni && server == (self.side == Side::Server) {
            return Err(violation(
                error_code::STREAM_STATE_ERROR,
                format!("{what} on our send-only stream {id}"),
            ));
        }
        if !self.peer_frame_stream(id)? {
            return Ok(None);
        }
        Ok(self
            .streams
            .get_mut(&id)
            .and_then(|s| s.recv.as_mut())
            .filter(|r| !r.done))
    }

    fn handle_stream(
        &mut self,
        id: u64,
        offset: Option<u64>,
        data: Bytes,
        fin: bool,
    ) -> Result<(), Violation> {
        let window = self.config.max_stream_data;
        let len = data.len() as u64;
        let (stopped, top_up) = {
            let Some(recv) = self.recv_half_of(id, "STREAM")? else {
                return Ok(());
            };
            if offset.is_some_and(|o| o != recv.received) {
                return Err(violation(
                    error_code::PROTOCOL_VIOLATION,
                    format!("STREAM data out of order on stream {id}"),
                ));
            }
            let end = recv.received + len;
            if end > recv.max {
                return Err(violation(
                    error_code::FLOW_CONTROL_ERROR,
                    format!("stream {id} past its credit"),
                ));
            }
            recv.received = end;
            recv.done = fin;
            // Delivered at once, so the credit returns at once: top up when half is used.
            let top_up = !fin && recv.max - end < window / 2;
            if top_up {
                recv.max = end + window;
            }
            (recv.stopped, top_up)
        };
        if top_up {
            self.credit_updates.push(id);
        }
        self.received += len;
        if self.received > self.recv_max {
            return Err(violation(
                error_code::FLOW_CONTROL_ERROR,
                "connection past its credit",
            ));
        }
        self.top_up_connection();
        if !stopped {
            self.events.push_back(QmuxEvent::StreamData {
                id: StreamId(id),
                data,
                fin,
            });
        }
        if fin {
            self.retire_if_finished(id);
        }
        Ok(())
    }

    fn top_up_connection(&mut self) {
        let window = self.config.max_data;
        if self.recv_max - self.received < window / 2 {
            self.recv_max = self.received + window;
        }
    }

    fn handle_reset(&mut self, id: u64, code: u64, final_size: u64) -> Result<(), Violation> {
        let Some(recv) = self.recv_half_of(id, "RESET_STREAM")? else {
            return Ok(());
        };
        // Some senders report 0; count what actually arrived (as the deployed peers do).
        let final_size = final_size.max(recv.received);
        if final_size > recv.max {
            return Err(violation(
                error_code::FLOW_CONTROL_ERROR,
                format!("stream {id} final size past its credit"),
            ));
        }
        let extra = final_size - recv.received;
        recv.received = final_size;
        recv.done = true;
        self.received += extra;
        if self.received > self.recv_max {
            return Err(violation(
                error_code::FLOW_CONTROL_ERROR,
                "connection past its credit",
            ));
        }
        self.top_up_connection();
        self.events.push_back(QmuxEvent::StreamReset {
            id: StreamId(id),
            code: StreamCode(code),
        });
        self.retire_if_finished(id);
        Ok(())
    }

    fn handle_stop_sending(&mut self, id: u64, code: u64) -> Result<(), Violation> {
        let (server, uni, _) = split_id(id);
        if uni && server != (self.side == Side::Server) {
            return Err(violation(
                error_code::STREAM_STATE_ERROR,
                format!("STOP_SENDING on receive-only stream {id}"),
            ));
        }
        if !self.peer_frame_stream(id)? || self.send_half(id).is_none() {
            // Stale, or after our FIN: nothing to stop.
            return Ok(());
        }
        // Answer with a reset of the same code, dropping what waits (RFC 9000 §3.5).
        self.reset(id, code);
        self.events.push_back(QmuxEvent::StopSending {
            id: StreamId(id),
            code: StreamCode(code),
        });
        Ok(())
    }

    /// Forget a stream whose both halves ended; a peer stream's slot returns to the peer.
    fn retire_if_finished(&mut self, id: u64) {
        if !self.streams.get(&id).is_some_and(Stream::finished) {
            return;
        }
        self.streams.remove(&id);
        let (server, uni, _) = split_id(id);
        if server != (self.side == Side::Server) {
            self.peer_limit[usize::from(uni)] += 1;
        }
    }
}

enum Pick {
    /// A frame; whether the stream stays listed.
    Frame(OutFrame, bool),
    /// Waiting for connection credit: keep it listed.
    Wait,
    /// Nothing to send (or blocked on its own credit): unlist it.
    Drop,
}

impl SendHalf {
    fn new(max: u64, priority: i32) -> Self {
        Self {
            queue: VecDeque::new(),
            queued: 0,
            offset: 0,
            max,
            fin: false,
            done: false,
            priority,
            ready: false,
        }
    }
}

impl RecvHalf {
    fn new(max: u64) -> Self {
        Self {
            received: 0,
            max,
            advertised: max,
            done: false,
            stopped: false,
        }
    }
}

fn live_send(streams: &mut FxHashMap<u64, Stream>, id: u64) -> Option<&mut SendHalf> {
    streams
        .get_mut(&id)
        .and_then(|s| s.send.as_mut())
        .filter(|s| !s.done)
}

fn whole(frame: &Frame) -> OutFrame {
    let mut head = BytesMut::new();
    frame::encode(frame, &mut head);
    OutFrame {
        head,
        body: Bytes::new(),
    }
}

/// The first `n` queued bytes: a slice of the front chunk when it holds them all (zero-copy),
/// else copied together.
fn take(queue: &mut VecDeque<Bytes>, n: usize) -> Bytes {
    if n == 0 {
        return Bytes::new();
    }
    if let Some(front) = queue.front_mut()
        && front.len() >= n
    {
        let out = front.split_to(n);
        if front.is_empty() {
            queue.pop_front();
        }
        return out;
    }
    let mut out = BytesMut::with_capacity(n);
    while out.len() < n {
        let Some(front) = queue.front_mut() else {
            break;
        };
        let want = (n - out.len()).min(front.len());
        out.extend_from_slice(&front.split_to(want));
        if front.is_empty() {
            queue.pop_front();
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(frame: OutFrame) -> Bytes {
        let mut out = frame.head;
        out.extend_from_slice(&frame.body);
        out.freeze()
    }

    /// Move every frame both ways until both are quiet; returns the records A sent.
    fn pump(a: &mut QmuxConn, b: &mut QmuxConn, now: Instant) -> Vec<Bytes> {
        let mut sent = Vec::new();
        loop {
            let mut moved = false;
            while let Some(frame) = a.poll_frame(now) {
                let r = record(frame);
                sent.push(r.clone());
                b.handle_record(now, r);
                moved = true;
            }
            while let Some(frame) = b.poll_frame(now) {
                a.handle_record(now, record(frame));
                moved = true;
            }
            if !moved {
                return sent;
            }
        }
    }

    fn events(conn: &mut QmuxConn) -> Vec<QmuxEvent> {
        std::iter::from_fn(|| conn.poll_event()).collect()
    }

    fn pair(draft: Draft, config: QmuxConfig) -> (QmuxConn, QmuxConn, Instant) {
        let now = Instant::now();
        let mut client = QmuxConn::new(Side::Client, draft, config.clone());
        let mut server = QmuxConn::new(Side::Server, draft, config);
        pump(&mut client, &mut server, now);
        (client, server, now)
    }

    fn open(conn: &mut QmuxConn, token: u64, dir: Dir, priority: i32) -> StreamId {
        conn.apply(Command::Open {
            token: OpenToken(token),
            dir,
            priority,
        });
        match events(conn).pop() {
            Some(QmuxEvent::OpenGranted { id, .. }) => id,
            other => panic!("not granted: {other:?}"),
        }
    }

    /// Everything the receiver got on `id`, and whether it ended.
    fn received(evs: &[QmuxEvent], id: StreamId) -> (Vec<u8>, bool) {
        let mut data = Vec::new();
        let mut fin = false;
        for e in evs {
            if let QmuxEvent::StreamData {
                id: i,
                data: d,
                fin: f,
            } = e
                && *i == id
            {
                data.extend_from_slice(d);
                fin |= *f;
            }
        }
        (data, fin)
    }

    #[test]
    fn transport_parameters_go_first_then_streams_flow() {
        let now = Instant::now();
        let mut client = QmuxConn::new(Side::Client, Draft::Qmux01, QmuxConfig::default());
        let first = record(client.poll_frame(now).unwrap());
        assert!(first.starts_with(b"\xffQS0\r\n\r\n"));
        // No stream credit before the peer's parameters: the open waits.
        client.apply(Command::Open {
            token: OpenToken(1),
            dir: Dir::Uni,
            priority: 0,
        });
        assert!(events(&mut client).is_empty());
        let mut server = QmuxConn::new(Side::Server, Draft::Qmux01, QmuxConfig::default());
        server.handle_record(now, first);
        pump(&mut client, &mut server, now);
        let Some(QmuxEvent::OpenGranted { id, .. }) = events(&mut client).pop() else {
            panic!("open not granted after the parameters");
        };
        assert_eq!(id, StreamId(2), "the client's first uni stream");
        client.apply(Command::Write {
            stream: id,
            data: Bytes::from_static(b"hello "),
        });
        client.apply(Command::Write {
            stream: id,
            data: Bytes::from_static(b"world"),
        });
        client.apply(Command::Finish { stream: id });
        assert_eq!(client.backlog(), 11);
        pump(&mut client, &mut server, now);
        assert_eq!(client.backlog(), 0);
        let evs = events(&mut server);
        assert_eq!(evs[0], QmuxEvent::StreamOpened { id, dir: Dir::Uni });
        assert_eq!(received(&evs, id), (b"hello world".to_vec(), true));
        assert!(events(&mut client).contains(&QmuxEvent::StreamFinished { id }));
        assert_eq!((client.stream_count(), server.stream_count()), (0, 0));
    }

    #[test]
    fn flow_control_holds_data_until_credit_returns() {
        let config = QmuxConfig {
            max_stream_data: 1000,
            max_data: 1500,
            ..QmuxConfig::default()
        };
        let (mut client, mut server, now) = pair(Draft::Qmux01, config);
        let a = open(&mut client, 1, Dir::Uni, 0);
        let b = open(&mut client, 2, Dir::Uni, 0);
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        for id in [a, b] {
            client.apply(Command::Write {
                stream: id,
                data: Bytes::from(payload.clone()),
            });
            client.apply(Command::Finish { stream: id });
        }
        // Without the server answering, at most the connection window leaves.
        let mut sent = 0;
        while let Some(frame) = client.poll_frame(now) {
            sent += frame.body.len();
        }
        assert_eq!(sent, 1500);
        // Restart from scratch and pump normally: credit returns and everything arrives.
        let (mut client, mut server2, now) = pair(
            Draft::Qmux01,
            QmuxConfig {
                max_stream_data: 1000,
                max_data: 1500,
                ..QmuxConfig::default()
            },
        );
        let _ = &mut server;
        let a = open(&mut client, 1, Dir::Uni, 0);
        client.apply(Command::Write {
            stream: a,
            data: Bytes::from(payload.clone()),
        });
        client.apply(Command::Finish { stream: a });
        let records = pump(&mut client, &mut server2, now);
        assert_eq!(received(&events(&mut server2), a), (payload, true));
        assert!(records.iter().all(|r| r.len() <= 16382));
    }

    #[test]
    fn higher_priority_streams_go_first_and_equals_take_turns() {
        let (mut client, mut server, now) = pair(Draft::Qmux01, QmuxConfig::default());
        let low = open(&mut client, 1, Dir::Uni, 0);
        let high = open(&mut client, 2, Dir::Uni, 5);
        let high2 = open(&mut client, 3, Dir::Uni, 5);
        for id in [low, high, high2] {
            client.apply(Command::Write {
                stream: id,
                data: Bytes::from(vec![0u8; 40_000]),
            });
        }
        let mut order = Vec::new();
        while let Some(frame) = client.poll_frame(now) {
            let rec = record(frame);
            let id = frame_stream(&rec);
            order.push(id);
            server.handle_record(now, rec);
        }
        let first_low = order.iter().position(|i| *i == low.0).unwrap();
        assert!(
            order[..first_low]
                .iter()
                .all(|i| *i == high.0 || *i == high2.0)
        );
        assert_eq!(&order[..4], &[high.0, high2.0, high.0, high2.0]);
        // Lowering a priority reorders what is still queued.
        client.apply(Command::SetPriority {
            stream: low,
            priority: 9,
        });
    }

    fn frame_stream(record: &Bytes) -> u64 {
        match Frames::new(record.clone()).next() {
            Some(Ok(Frame::Stream { id, .. })) => id,
            other => panic!("not a stream frame: {other:?}"),
        }
    }

    #[test]
    fn stream_limit_queues_opens_until_a_slot_returns() {
        let config = QmuxConfig {
            max_streams: 2,
            ..QmuxConfig::default()
        };
        let (mut client, mut server, now) = pair(Draft::Qmux01, config);
        let a = open(&mut client, 1, Dir::Uni, 0);
        let _b = open(&mut client, 2, Dir::Uni, 0);
        client.apply(Command::Open {
            token: OpenToken(3),
            dir: Dir::Uni,
            priority: 0,
        });
        assert!(events(&mut client).is_empty(), "third open waits");
        client.apply(Command::Finish { stream: a });
        pump(&mut client, &mut server, now);
        assert!(
            events(&mut client).iter().any(|e| matches!(
                e,
                QmuxEvent::OpenGranted {
                    token: OpenToken(3),
                    ..
                }
            )),
            "the server's MAX_STREAMS frees a slot"
        );
    }

    #[test]
    fn stop_sending_is_answered_with_a_reset_of_the_same_code() {
        let (mut client, mut server, now) = pair(Draft::Qmux01, QmuxConfig::default());
        let id = open(&mut client, 1, Dir::Uni, 0);
        client.apply(Command::Write {
            stream: id,
            data: Bytes::from_static(b"x"),
        });
        pump(&mut client, &mut server, now);
        events(&mut server);
        server.apply(Command::Stop {
            stream: id,
            code: StreamCode(7),
        });
        pump(&mut client, &mut server, now);
        assert!(events(&mut client).contains(&QmuxEvent::StopSending {
            id,
            code: StreamCode(7)
        }));
        assert_eq!(
            events(&mut server),
            vec![QmuxEvent::StreamReset {
                id,
                code: StreamCode(7)
            }]
        );
        assert_eq!((client.stream_count(), server.stream_count()), (0, 0));
    }

    #[test]
    fn application_close_and_ping() {
        let (mut client, mut server, now) = pair(Draft::Qmux01, QmuxConfig::default());
        let later = now + Duration::from_secs(6);
        assert_eq!(client.poll_timeout(), Some(now + Duration::from_secs(5)));
        client.handle_timeout(later);
        let ping = record(client.poll_frame(later).unwrap());
        assert_eq!(
            &ping[..8],
            &[0xf4, 0x8c, 0x67, 0x52, 0x9e, 0xf8, 0xc7, 0xbd]
        );
        server.handle_record(later, ping);
        let answer = record(server.poll_frame(later).unwrap());
        client.handle_record(later + Duration::from_millis(40), answer);
        assert_eq!(
            events(&mut client),
            vec![QmuxEvent::Rtt(Duration::from_millis(40))]
        );
        server.close(SessionCode(0x10), "bye");
        pump(&mut client, &mut server, later);
        assert!(server.is_closed() && client.is_closed());
        assert_eq!(
            events(&mut client),
            vec![QmuxEvent::Closed {
                code: SessionCode(0x10),
                reason: "bye".into(),
                application: true
            }]
        );
    }

    #[test]
    fn draft00_sends_no_ping_and_closes_in_the_compatible_form() {
        let (mut client, mut server, now) = pair(Draft::Qmux00, QmuxConfig::default());
        assert_eq!(client.poll_timeout(), None);
        server.close(SessionCode(0), "ignored on draft-00");
        let close = record(server.poll_frame(now).unwrap());
        assert_eq!(&close[..], &[0x1d, 0x00, 0x00, 0x00]);
        client.handle_record(now, close);
        assert!(matches!(
            events(&mut client).pop(),
            Some(QmuxEvent::Closed {
                application: true,
                ..
            })
        ));
    }

    #[test]
    fn datagrams_round_trip_when_advertised() {
        let (mut client, mut server, now) = pair(Draft::Qmux01, QmuxConfig::default());
        client.apply(Command::SendDatagram {
            data: Bytes::from_static(b"dgram"),
        });
        pump(&mut client, &mut server, now);
        assert_eq!(
            events(&mut server),
            vec![QmuxEvent::Datagram(Bytes::from_static(b"dgram"))]
        );
        // A peer that advertised none gets none: draft-00.
        let (mut client, mut server, now) = pair(Draft::Qmux00, QmuxConfig::default());
        client.apply(Command::SendDatagram {
            data: Bytes::from_static(b"dgram"),
        });
        assert!(pump(&mut client, &mut server, now).is_empty());
    }

    fn violation_code(draft: Draft, records: &[&[u8]]) -> (u64, Vec<QmuxEvent>) {
        let now = Instant::now();
        let config = QmuxConfig {
            max_streams: 4,
            max_stream_data: 10,
            ..QmuxConfig::default()
        };
        let mut server = QmuxConn::new(Side::Server, draft, config);
        let _params = server.poll_frame(now);
        let mut client_params = BytesMut::new();
        frame::encode(
            &Frame::TransportParameters(TransportParams::default().encode()),
            &mut client_params,
        );
        if draft != Draft::Qmux02 {
            server.handle_record(now, client_params.freeze());
        }
        for r in records {
            server.handle_record(now, Bytes::copy_from_slice(r));
        }
        let close = record(server.poll_frame(now).expect("a close frame"));
        let code = match Frames::new(close).next() {
            Some(Ok(Frame::ConnectionClose {
                application: false,
                code,
                ..
            })) => code,
            other => panic!("not a transport close: {other:?}"),
        };
        assert!(server.is_closed());
        (code, events(&mut server))
    }

    #[test]
    fn violations_close_with_the_draft_codes() {
        use error_code::*;
        let cases: &[(&[u8], u64)] = &[
            // 11 bytes on a stream with 10 of credit.
            (b"\x0e\x02\x00\x0bhello world", FLOW_CONTROL_ERROR),
            // Stream index 4 with a limit of 4.
            (&[0x0e, 0x12, 0x00, 0x00], STREAM_LIMIT_ERROR),
            // STREAM on the server's own uni stream (3), never opened.
            (&[0x0e, 0x03, 0x00, 0x00], STREAM_STATE_ERROR),
            // Data at offset 5 on a fresh stream.
            (&[0x0e, 0x02, 0x05, 0x01, 0x00], PROTOCOL_VIOLATION),
            // ACK is forbidden.
            (&[0x02, 0x00, 0x00, 0x00, 0x00], FRAME_ENCODING_ERROR),
            // A second QX_TRANSPORT_PARAMETERS.
            (b"\xffQS0\r\n\r\n\x00", PROTOCOL_VIOLATION),
            // STOP_SENDING on the client's uni stream (receive-only for us).
            (&[0x05, 0x02, 0x00], STREAM_STATE_ERROR),
        ];
        for (bytes, expected) in cases {
            let (code, evs) = violation_code(Draft::Qmux01, &[bytes]);
            assert_eq!(code, *expected, "{bytes:02x?}");
            assert!(
                evs.iter().any(|e| matches!(
                    e,
                    QmuxEvent::Closed {
                        code: SessionCode::PROTOCOL_VIOLATION,
                        application: false,
                        ..
                    }
                )),
                "{evs:?}"
            );
        }
        // Draft-02: the first frame must be the transport parameters.
        let (code, _) = violation_code(Draft::Qmux02, &[&[0x10, 0x01]]);
        assert_eq!(code, PROTOCOL_VIOLATION);
        // Draft-01 tolerates it (as the deployed peers do).
        let now = Instant::now();
        let mut server = QmuxConn::new(Side::Server, Draft::Qmux01, QmuxConfig::default());
        server.handle_record(now, Bytes::from_static(&[0x10, 0x01]));
        assert!(!server.is_closed());
    }

    #[test]
    fn late_frames_on_retired_streams_are_ignored() {
        let (mut client, mut server, now) = pair(Draft::Qmux01, QmuxConfig::default());
        let id = open(&mut client, 1, Dir::Uni, 0);
        client.apply(Command::Finish { stream: id });
        pump(&mut client, &mut server, now);
        // A stale STOP_SENDING after FIN (the reference peers send them) changes nothing.
        server.handle_record(now, Bytes::from_static(&[0x05, 0x02, 0x00]));
        client.handle_record(now, Bytes::from_static(&[0x05, 0x02, 0x00]));
        assert!(!client.is_closed() && !server.is_closed());
        assert!(
            !events(&mut client)
                .iter()
                .any(|e| matches!(e, QmuxEvent::StopSending { .. }))
        );
    }
}
