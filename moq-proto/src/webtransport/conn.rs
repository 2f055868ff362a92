//! [`H3Conn`]: HTTP/3 and one WebTransport session over one QUIC connection, sans-IO.
//!
//! The engine feeds it every stream event of the connection and applies its
//! [`TransportCommand`]s; the layer keeps the HTTP/3 streams (control, QPACK, CONNECT) to
//! itself and hands everything else to the MOQ session, with the WebTransport prefixes
//! removed, through the [`Route`] each input returns (the hot path: no copy, no allocation)
//! or, for streams and datagrams that arrived before the session existed, through
//! [`H3Conn::poll_session_input`].
//!
//! Server: SETTINGS out; the client's SETTINGS and CONNECT in (in either order: a CONNECT
//! waits for the SETTINGS); [`H3Event::Request`] to the application, which answers with
//! [`H3Conn::accept`] (200 and `wt-protocol`) or [`H3Conn::reject`]; then
//! [`H3Event::Established`]. Client: SETTINGS out; once the server's SETTINGS allow
//! WebTransport, CONNECT on the first bidirectional stream; the response gives
//! [`H3Event::Established`] or [`H3Event::Refused`].
//!
//! Closing: the MOQ session's close becomes a CLOSE_WEBTRANSPORT_SESSION capsule and a FIN
//! on the CONNECT stream; the QUIC connection closes (with the mapped code) once that FIN is
//! acknowledged, the peer answers, or [`H3Config::close_linger`] passes. A peer's capsule or
//! FIN ends the session with its code. The control streams stay open until the connection
//! closes (closing one is `H3_CLOSED_CRITICAL_STREAM`, and browsers then lose the close code).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::capsule::{self, Capsule, CapsuleReader};
use super::connect::{ConnectRequest, ConnectResponse};
use super::error_codes::{self, h3};
use super::frame::{self, FrameEvent, FrameReader, Handling};
use super::qpack;
use super::settings::{OUR_MAX_FIELD_SECTION, Settings};
use crate::codes::{SessionCode, StreamCode};
use crate::coding::{get_varint, put_varint};
use crate::fxhash::FxHashMap;
use crate::session::{Command, Dir, OpenToken, Side, StreamId};
use crate::wire::Version;

/// Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2, draft-ietf-webtrans-http3 §4.1).
const CONTROL_STREAM: u64 = 0x00;
const PUSH_STREAM: u64 = 0x01;
const QPACK_ENCODER_STREAM: u64 = 0x02;
const QPACK_DECODER_STREAM: u64 = 0x03;
const WEBTRANSPORT_UNI_STREAM: u64 = 0x54;
/// The signal value that opens a WebTransport bidirectional stream.
const WEBTRANSPORT_BIDI_STREAM: u64 = 0x41;

/// Tokens of our own opens (control and CONNECT streams) have this bit; the MOQ session's
/// tokens count up from 0 and never reach it.
const INTERNAL_TOKEN: u64 = 1 << 63;

/// Highest send priority: HTTP/3 control data never waits behind media.
const CONTROL_PRIORITY: i32 = i32::MAX;

/// Largest HEADERS frame accepted (the field section cap plus QPACK's overhead).
const MAX_HEADERS_FRAME: usize = OUR_MAX_FIELD_SECTION as usize + 1024;
/// Largest control-stream frame accepted (SETTINGS, GOAWAY; others are skipped).
const MAX_CONTROL_FRAME: usize = 4096;

/// What the layer asks of the QUIC connection. Codes are the values on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportCommand {
    /// Open a stream when credit allows, then call the owner's `handle_open_granted`.
    Open {
        /// Names the request.
        token: OpenToken,
        /// Direction.
        dir: Dir,
        /// Send priority, higher first.
        priority: i32,
    },
    /// Forget an open not granted yet.
    CancelOpen {
        /// The request.
        token: OpenToken,
    },
    /// Append bytes to a stream.
    Write {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
    },
    /// FIN a stream's send side.
    Finish {
        /// The stream.
        stream: StreamId,
    },
    /// RESET_STREAM.
    Reset {
        /// The stream.
        stream: StreamId,
        /// Wire code.
        code: u64,
    },
    /// STOP_SENDING.
    Stop {
        /// The stream.
        stream: StreamId,
        /// Wire code.
        code: u64,
    },
    /// Change a stream's send priority.
    SetPriority {
        /// The stream.
        stream: StreamId,
        /// Higher first.
        priority: i32,
    },
    /// Send a datagram.
    SendDatagram {
        /// The whole datagram.
        data: Bytes,
    },
    /// Close the connection (CONNECTION_CLOSE with an application code).
    Close {
        /// Wire code.
        code: u64,
        /// Reason.
        reason: String,
    },
}

impl TransportCommand {
    /// A MOQ session's command on raw QUIC: stream codes go out in the WebTransport mapping,
    /// as the reference stack expects even without WebTransport (docs/wire.md §6); the
    /// session close code goes out as it is.
    pub fn from_session(command: Command) -> Self {
        match command {
            Command::Open {
                token,
                dir,
                priority,
            } => Self::Open {
                token,
                dir,
                priority,
            },
            Command::CancelOpen { token } => Self::CancelOpen { token },
            Command::Write { stream, data } => Self::Write { stream, data },
            Command::Finish { stream } => Self::Finish { stream },
            Command::Reset { stream, code } => Self::Reset {
                stream,
                code: error_codes::stream_code_to_wire(code),
            },
            Command::Stop { stream, code } => Self::Stop {
                stream,
                code: error_codes::stream_code_to_wire(code),
            },
            Command::SetPriority { stream, priority } => Self::SetPriority { stream, priority },
            Command::SendDatagram { data } => Self::SendDatagram { data },
            Command::Close { code, reason } => Self::Close {
                code: code.0,
                reason,
            },
        }
    }
}

/// Where the bytes (or other input) for a stream go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To the MOQ session. `opened` is `Some` the first time: call the session's
    /// `handle_stream_opened(stream, dir)` before giving it the chunks (whose WebTransport
    /// prefix has been removed) and the FIN.
    Session {
        /// The stream's direction, the first time.
        opened: Option<Dir>,
    },
    /// Nothing for the session (HTTP/3's own stream, or held until the session exists).
    Consumed,
}

/// An input for the MOQ session that the layer held back (streams and datagrams that arrived
/// before the session was established) or produced itself (the session's end).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionInput {
    /// The peer opened a WebTransport stream.
    StreamOpened {
        /// The stream.
        stream: StreamId,
        /// Its direction.
        dir: Dir,
    },
    /// Bytes of such a stream, in order.
    StreamData {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
        /// The stream ends here.
        fin: bool,
    },
    /// A datagram's payload.
    Datagram {
        /// The payload.
        data: Bytes,
    },
    /// The WebTransport session ended (the peer's capsule or FIN, or an HTTP/3 error).
    ConnectionLost {
        /// The session code.
        code: SessionCode,
        /// Why.
        reason: String,
    },
}

/// Something the application must know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum H3Event {
    /// Server: a WebTransport CONNECT arrived. Answer with [`H3Conn::accept`] or
    /// [`H3Conn::reject`].
    Request(ConnectRequest),
    /// The session is established: start the MOQ session on `version`, rooted at `path`.
    Established {
        /// The negotiated version.
        version: Version,
        /// The CONNECT path (with its query).
        path: String,
    },
    /// Client: the server would not open the session.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Limits and timing.
#[derive(Debug, Clone)]
pub struct H3Config {
    /// Most WebTransport streams held before the session is established; later ones are
    /// refused with `WT_BUFFERED_STREAM_REJECTED`.
    pub max_buffered_streams: usize,
    /// Most bytes held on those streams.
    pub max_buffered_bytes: usize,
    /// Most datagrams held before the session is established; later ones are dropped.
    pub max_buffered_datagrams: usize,
    /// How long a closing session waits for its close to be delivered before the QUIC
    /// connection closes anyway (Chromium waits `min(3 PTO, 2 s)`).
    pub close_linger: Duration,
}

impl Default for H3Config {
    fn default() -> Self {
        Self {
            max_buffered_streams: 32,
            max_buffered_bytes: 256 * 1024,
            max_buffered_datagrams: 32,
            close_linger: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for SETTINGS and the CONNECT exchange.
    Setup,
    /// Server: the CONNECT went to the application.
    Deciding,
    /// The session runs.
    Established(Version),
    /// Our close (or our answer to the peer's) is on its way; the connection closes at the
    /// deadline at the latest.
    Closing,
    /// The connection is closed (or closing for an error).
    Closed,
}

/// Where a peer stream's prefix stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The stream type (uni) or signal / first frame type (bidi).
    Type,
    /// A WebTransport stream: the session ID.
    Session,
}

enum Incoming {
    /// Its type or prefix is not complete yet.
    Unknown {
        dir: Dir,
        stage: Stage,
        head: BytesMut,
    },
    /// The peer's control stream.
    Control { frames: FrameReader, settings: bool },
    /// A QPACK stream: read and discarded.
    Discard,
    /// A request stream (the CONNECT stream).
    Request(Box<RequestStream>),
    /// A WebTransport stream of the session: its bytes go to the MOQ session.
    Session,
    /// A WebTransport stream held until the session exists (data in `H3Conn::buffered`).
    Held,
    /// Refused: whatever still arrives is ignored.
    Refused,
}

struct RequestStream {
    frames: FrameReader,
    capsules: CapsuleReader,
    /// The request (server) or the final response (client) was read.
    headers: bool,
}

impl RequestStream {
    fn new() -> Self {
        Self {
            frames: FrameReader::new(MAX_HEADERS_FRAME),
            capsules: CapsuleReader::default(),
            headers: false,
        }
    }
}

struct HeldStream {
    stream: StreamId,
    dir: Dir,
    session: u64,
    chunks: Vec<Bytes>,
    bytes: usize,
    fin: bool,
}

/// HTTP/3 and one WebTransport session. See the [module docs](self).
pub struct H3Conn {
    side: Side,
    cfg: H3Config,
    state: State,
    commands: VecDeque<TransportCommand>,
    events: VecDeque<H3Event>,
    inputs: VecDeque<SessionInput>,
    next_token: u64,
    control_token: Option<OpenToken>,
    /// Our control stream, once granted.
    control_stream: Option<StreamId>,
    connect_token: Option<OpenToken>,
    /// The CONNECT stream; its ID is the session ID.
    connect: Option<StreamId>,
    /// Our send side of the CONNECT stream is finished.
    connect_finished: bool,
    /// Client: the request to send. Server: the request waiting for the peer's SETTINGS or
    /// for the application's answer.
    request: Option<ConnectRequest>,
    peer_settings: Option<Settings>,
    peer_control: bool,
    streams: FxHashMap<StreamId, Incoming>,
    held: Vec<HeldStream>,
    held_bytes: usize,
    held_datagrams: VecDeque<Bytes>,
    /// Cached stream prefixes for the session's own streams (uni, bidi).
    prefixes: Option<(Bytes, Bytes)>,
    /// Quarter stream ID as a varint: the HTTP datagram prefix.
    datagram_prefix: Bytes,
    close_deadline: Option<Instant>,
    close_code: u64,
    close_reason: String,
}

impl std::fmt::Debug for H3Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Conn")
            .field("side", &self.side)
            .field("state", &self.state)
            .field("connect", &self.connect)
            .finish()
    }
}

impl H3Conn {
    /// The server side of a connection that negotiated `h3`: opens the control stream.
    pub fn server(cfg: H3Config) -> Self {
        let mut conn = Self::new(Side::Server, cfg, None);
        conn.open_control();
        conn
    }

    /// The client side: opens the control stream, and sends `request` once the server's
    /// SETTINGS allow WebTransport.
    pub fn client(cfg: H3Config, request: ConnectRequest) -> Self {
        let mut conn = Self::new(Side::Client, cfg, Some(request));
        conn.open_control();
        conn
    }

    fn new(side: Side, cfg: H3Config, request: Option<ConnectRequest>) -> Self {
        Self {
            side,
            cfg,
            state: State::Setup,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            inputs: VecDeque::new(),
            next_token: 0,
            control_token: None,
            control_stream: None,
            connect_token: None,
            connect: None,
            connect_finished: false,
            request,
            peer_settings: None,
            peer_control: false,
            streams: FxHashMap::default(),
            held: Vec::new(),
            held_bytes: 0,
            held_datagrams: VecDeque::new(),
            prefixes: None,
            datagram_prefix: Bytes::new(),
            close_deadline: None,
            close_code: h3::NO_ERROR,
            close_reason: String::new(),
        }
    }

    /// The negotiated version, once established.
    pub fn version(&self) -> Option<Version> {
        match self.state {
            State::Established(version) => Some(version),
            _ => None,
        }
    }

    /// The session ID (the CONNECT stream's ID), once known.
    pub fn session_id(&self) -> Option<u64> {
        self.connect.map(|id| id.0)
    }

    /// The bytes every MOQ datagram must start with (the quarter stream ID), once established:
    /// give them to the session's `Config::datagram_prefix`.
    pub fn datagram_prefix(&self) -> Bytes {
        self.datagram_prefix.clone()
    }

    /// True once the connection is closed or closing for good.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    // ------------------------------------------------------------------------------------
    // Outputs

    /// The next command for the QUIC connection.
    pub fn poll_command(&mut self) -> Option<TransportCommand> {
        self.commands.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<H3Event> {
        self.events.pop_front()
    }

    /// The next held-back input for the MOQ session (drain after [`H3Event::Established`] and
    /// after every input).
    pub fn poll_session_input(&mut self) -> Option<SessionInput> {
        self.inputs.pop_front()
    }

    /// When [`H3Conn::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.close_deadline
    }

    // ------------------------------------------------------------------------------------
    // Inputs

    /// Time passed: a closing session's linger may be over.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.close_deadline.is_some_and(|at| at <= now) {
            self.close_now();
        }
    }

    /// The peer opened a stream.
    pub fn handle_stream_opened(&mut self, _now: Instant, stream: StreamId, dir: Dir) {
        if self.state == State::Closed {
            return;
        }
        self.streams.entry(stream).or_insert(Incoming::Unknown {
            dir,
            stage: Stage::Type,
            head: BytesMut::new(),
        });
    }

    /// Bytes arrived on a stream. `chunks` may be changed in place (a prefix removed); when
    /// the result is [`Route::Session`] hand what is left of them, and `fin`, to the session.
    pub fn handle_stream_data(
        &mut self,
        now: Instant,
        stream: StreamId,
        chunks: &mut Vec<Bytes>,
        fin: bool,
    ) -> Route {
        if self.state == State::Closed {
            chunks.clear();
            return Route::Consumed;
        }
        let Some(entry) = self.streams.get_mut(&stream) else {
            // A stream the session opened: its replies are the session's.
            return Route::Session { opened: None };
        };
        match entry {
            Incoming::Session => {
                if fin {
                    self.streams.remove(&stream);
                }
                Route::Session { opened: None }
            }
            Incoming::Unknown { .. } => self.classify(now, stream, chunks, fin),
            Incoming::Control { .. } => {
                self.read_control(now, stream, chunks, fin);
                Route::Consumed
            }
            Incoming::Request(_) => {
                self.read_request(now, stream, chunks, fin);
                Route::Consumed
            }
            Incoming::Held => {
                self.hold_more(stream, chunks, fin);
                Route::Consumed
            }
            Incoming::Discard => {
                chunks.clear();
                if fin {
                    self.streams.remove(&stream);
                    self.critical_stream_closed();
                }
                Route::Consumed
            }
            Incoming::Refused => {
                chunks.clear();
                if fin {
                    self.streams.remove(&stream);
                }
                Route::Consumed
            }
        }
    }

    /// The peer reset a stream with wire code `code`; `Some` is the stream code to give the
    /// session.
    pub fn handle_stream_reset(
        &mut self,
        now: Instant,
        stream: StreamId,
        code: u64,
    ) -> Option<StreamCode> {
        if self.state == State::Closed {
            return None;
        }
        match self.streams.remove(&stream) {
            None | Some(Incoming::Session) => Some(error_codes::stream_code_from_wire(code)),
            Some(Incoming::Control { .. } | Incoming::Discard) => {
                self.critical_stream_closed();
                None
            }
            Some(Incoming::Request(_)) => {
                if Some(stream) == self.connect {
                    self.session_ended(now, SessionCode::INTERNAL, "CONNECT stream reset");
                }
                None
            }
            Some(Incoming::Held) => {
                self.drop_held(stream);
                None
            }
            Some(Incoming::Unknown { .. } | Incoming::Refused) => None,
        }
    }

    /// The peer asked us to stop sending on a stream; `Some` is the code for the session.
    pub fn handle_stop_sending(
        &mut self,
        now: Instant,
        stream: StreamId,
        code: u64,
    ) -> Option<StreamCode> {
        if self.state == State::Closed {
            return None;
        }
        if Some(stream) == self.connect {
            self.session_ended(now, SessionCode::INTERNAL, "CONNECT stream stopped");
            return None;
        }
        if self.control_token.is_some() && self.is_our_control(stream) {
            self.critical_stream_closed();
            return None;
        }
        match self.streams.get(&stream) {
            None | Some(Incoming::Session) => Some(error_codes::stream_code_from_wire(code)),
            _ => None,
        }
    }

    /// Everything we sent on a stream was acknowledged; `true` when the session should know.
    pub fn handle_stream_finished(&mut self, _now: Instant, stream: StreamId) -> bool {
        if Some(stream) == self.connect {
            if self.state == State::Closing {
                self.close_now();
            }
            return false;
        }
        !self.is_our_control(stream)
    }

    /// A stream we asked for was granted. `Some` is the session's token, to pass on to the
    /// session's `handle_open_granted` (the WebTransport prefix is already written).
    pub fn handle_open_granted(
        &mut self,
        _now: Instant,
        token: OpenToken,
        stream: StreamId,
    ) -> Option<OpenToken> {
        if self.state == State::Closed {
            return None;
        }
        if token.0 & INTERNAL_TOKEN != 0 {
            if Some(token) == self.control_token {
                self.control_stream = Some(stream);
                let mut data = Vec::with_capacity(32);
                let _ = put_varint(&mut data, CONTROL_STREAM);
                let mut payload = Vec::new();
                Settings::ours().encode(&mut payload);
                frame::encode(&mut data, frame::SETTINGS, &payload);
                self.write(stream, data.into());
            } else if Some(token) == self.connect_token {
                self.send_connect(stream);
            } else {
                self.emit(TransportCommand::Reset {
                    stream,
                    code: h3::REQUEST_CANCELLED,
                });
            }
            return None;
        }
        let Some((uni, bidi)) = &self.prefixes else {
            // No session yet (or any more): the open is stale.
            self.emit(TransportCommand::Reset {
                stream,
                code: h3::REQUEST_CANCELLED,
            });
            return None;
        };
        // QUIC stream IDs carry their direction in bit 1 (RFC 9000 §2.1).
        let prefix = if stream.0 & 0x2 != 0 { uni } else { bidi }.clone();
        self.write(stream, prefix);
        Some(token)
    }

    /// A datagram arrived; `Some` is the payload for the session (prefix removed).
    pub fn handle_datagram(&mut self, _now: Instant, mut data: Bytes) -> Option<Bytes> {
        // After the close nothing more reaches the session (see the state match below).
        match self.state {
            State::Established(_) => {
                let quarter = get_varint(&mut &data[..]).ok()?;
                let session = self.session_id()?;
                if quarter.checked_mul(4) != Some(session) {
                    return None;
                }
                data.advance(self.datagram_prefix.len());
                Some(data)
            }
            State::Setup | State::Deciding => {
                if self.held_datagrams.len() < self.cfg.max_buffered_datagrams {
                    self.held_datagrams.push_back(data);
                }
                None
            }
            State::Closing | State::Closed => None,
        }
    }

    // ------------------------------------------------------------------------------------
    // Application calls

    /// Pass a MOQ session command to the transport (stream codes mapped; a close becomes the
    /// WebTransport close handshake).
    pub fn send(&mut self, now: Instant, command: Command) {
        if self.state == State::Closed {
            return;
        }
        if let Command::Close { code, reason } = command {
            let code = u32::try_from(code.0).unwrap_or(u32::MAX);
            self.close_session(now, code, &reason);
            return;
        }
        self.emit(TransportCommand::from_session(command));
    }

    /// Server: accept the pending CONNECT with `version`.
    pub fn accept(&mut self, now: Instant, version: Version) {
        if self.state != State::Deciding {
            return;
        }
        let (Some(connect), Some(request)) = (self.connect, self.request.take()) else {
            return;
        };
        let response = ConnectResponse {
            status: 200,
            protocol: Some(version.alpn().to_string()),
            form: request.form,
        };
        self.send_headers(connect, &response.to_fields());
        self.establish(now, version, request.path);
    }

    /// Server: refuse the pending CONNECT with an HTTP status (4xx); the connection closes
    /// once the answer is delivered.
    pub fn reject(&mut self, now: Instant, status: u16) {
        if self.state != State::Deciding {
            return;
        }
        let Some(connect) = self.connect else {
            return;
        };
        self.request = None;
        let response = ConnectResponse {
            status,
            protocol: None,
            form: Default::default(),
        };
        self.send_headers(connect, &response.to_fields());
        self.finish_connect();
        self.start_closing(now, h3::NO_ERROR, "request refused");
    }

    // ------------------------------------------------------------------------------------
    // Internals

    /// Queue a command for the transport; nothing follows the connection's close.
    fn emit(&mut self, command: TransportCommand) {
        if self.state != State::Closed {
            self.commands.push_back(command);
        }
    }

    fn open_control(&mut self) {
        let token = self.internal_token();
        self.control_token = Some(token);
        self.emit(TransportCommand::Open {
            token,
            dir: Dir::Uni,
            priority: CONTROL_PRIORITY,
        });
    }

    fn internal_token(&mut self) -> OpenToken {
        self.next_token += 1;
        OpenToken(INTERNAL_TOKEN | self.next_token)
    }

    fn is_our_control(&self, stream: StreamId) -> bool {
        self.control_stream == Some(stream)
    }

    fn write(&mut self, stream: StreamId, data: Bytes) {
        self.emit(TransportCommand::Write { stream, data });
    }

    fn send_headers(&mut self, stream: StreamId, fields: &[(&str, String)]) {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let mut block = Vec::new();
        qpack::encode(&fields, &mut block);
        let mut data = Vec::with_capacity(block.len() + 8);
        frame::encode(&mut data, frame::HEADERS, &block);
        self.write(stream, data.into());
    }

    fn send_connect(&mut self, stream: StreamId) {
        self.connect = Some(stream);
        self.streams
            .insert(stream, Incoming::Request(Box::new(RequestStream::new())));
        if let Some(request) = self.request.clone() {
            self.send_headers(stream, &request.to_fields());
        }
    }

    fn finish_connect(&mut self) {
        if let Some(connect) = self.connect
            && !self.connect_finished
        {
            self.connect_finished = true;
            self.emit(TransportCommand::Finish { stream: connect });
        }
    }

    /// An HTTP/3 connection error: close with `code`.
    fn fail(&mut self, code: u64, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        tracing::debug!(code, reason, "HTTP/3 connection error");
        if self.side == Side::Client && !matches!(self.state, State::Established(_)) {
            self.events.push_back(H3Event::Refused {
                reason: reason.to_string(),
            });
        }
        self.close_code = code;
        self.close_reason = reason.to_string();
        self.close_now();
    }

    fn critical_stream_closed(&mut self) {
        if !matches!(self.state, State::Closing | State::Closed) {
            self.fail(h3::CLOSED_CRITICAL_STREAM, "a critical stream was closed");
        }
    }

    fn close_now(&mut self) {
        self.close_deadline = None;
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.commands.push_back(TransportCommand::Close {
            code: self.close_code,
            reason: std::mem::take(&mut self.close_reason),
        });
    }

    fn start_closing(&mut self, now: Instant, code: u64, reason: &str) {
        if matches!(self.state, State::Closing | State::Closed) {
            return;
        }
        self.state = State::Closing;
        self.close_code = code;
        self.close_reason = reason.to_string();
        self.close_deadline = now.checked_add(self.cfg.close_linger);
        if self.close_deadline.is_none() {
            self.close_now();
        }
    }

    /// Our side closes the session: the capsule and a FIN on the CONNECT stream, then the
    /// QUIC close once delivered.
    fn close_session(&mut self, now: Instant, code: u32, reason: &str) {
        match (self.state, self.connect) {
            (State::Established(_), Some(connect)) if !self.connect_finished => {
                let mut capsule = Vec::with_capacity(capsule::close_len(reason));
                capsule::encode_close(&mut capsule, code, reason);
                let mut data = Vec::with_capacity(capsule.len() + 8);
                frame::encode(&mut data, frame::DATA, &capsule);
                self.write(connect, data.into());
                self.finish_connect();
                self.start_closing(now, error_codes::to_http3(code), reason);
            }
            (State::Closing | State::Closed, _) => {}
            _ => {
                self.close_code = error_codes::to_http3(code);
                self.close_reason = reason.to_string();
                self.close_now();
            }
        }
    }

    /// The peer ended the session (capsule, FIN, reset): tell the MOQ session, answer with
    /// our FIN, and close the connection after the linger.
    fn session_ended(&mut self, now: Instant, code: SessionCode, reason: &str) {
        if matches!(self.state, State::Established(_)) {
            self.inputs.push_back(SessionInput::ConnectionLost {
                code,
                reason: reason.to_string(),
            });
        } else if self.side == Side::Client && self.state == State::Setup {
            self.events.push_back(H3Event::Refused {
                reason: reason.to_string(),
            });
        }
        self.finish_connect();
        self.start_closing(now, h3::NO_ERROR, reason);
    }

    fn establish(&mut self, _now: Instant, version: Version, path: String) {
        let Some(session) = self.session_id() else {
            return;
        };
        self.state = State::Established(version);
        let prefix = |ty: u64| {
            let mut out = Vec::with_capacity(10);
            let _ = put_varint(&mut out, ty);
            let _ = put_varint(&mut out, session);
            Bytes::from(out)
        };
        self.prefixes = Some((
            prefix(WEBTRANSPORT_UNI_STREAM),
            prefix(WEBTRANSPORT_BIDI_STREAM),
        ));
        let mut quarter = Vec::with_capacity(8);
        let _ = put_varint(&mut quarter, session / 4);
        self.datagram_prefix = quarter.into();
        self.events
            .push_back(H3Event::Established { version, path });
        // Release what arrived early.
        for held in std::mem::take(&mut self.held) {
            self.held_bytes -= held.bytes;
            if held.session != session {
                self.refuse(held.stream, held.dir, h3::WT_SESSION_GONE);
                continue;
            }
            self.streams.insert(held.stream, Incoming::Session);
            self.inputs.push_back(SessionInput::StreamOpened {
                stream: held.stream,
                dir: held.dir,
            });
            let last = held.chunks.len();
            for (i, data) in held.chunks.into_iter().enumerate() {
                self.inputs.push_back(SessionInput::StreamData {
                    stream: held.stream,
                    data,
                    fin: held.fin && i + 1 == last,
                });
            }
            if held.fin && last == 0 {
                self.inputs.push_back(SessionInput::StreamData {
                    stream: held.stream,
                    data: Bytes::new(),
                    fin: true,
                });
            }
            if held.fin {
                self.streams.remove(&held.stream);
            }
        }
        for datagram in std::mem::take(&mut self.held_datagrams) {
            if let Some(data) = self.handle_datagram(_now, datagram) {
                self.inputs.push_back(SessionInput::Datagram { data });
            }
        }
    }

    /// Refuse a peer stream: STOP_SENDING, and RESET_STREAM of a bidirectional one.
    fn refuse(&mut self, stream: StreamId, dir: Dir, code: u64) {
        self.emit(TransportCommand::Stop { stream, code });
        if dir == Dir::Bi {
            self.emit(TransportCommand::Reset { stream, code });
        }
        self.streams.insert(stream, Incoming::Refused);
    }

    /// Work out what a new peer stream is from its first bytes.
    fn classify(
        &mut self,
        now: Instant,
        stream: StreamId,
        chunks: &mut Vec<Bytes>,
        fin: bool,
    ) -> Route {
        loop {
            let Some(Incoming::Unknown {
                dir,
                stage: stage_ref,
                head,
            }) = self.streams.get_mut(&stream)
            else {
                return Route::Consumed;
            };
            let (dir, stage) = (*dir, *stage_ref);
            // The request stream's first frame type must stay for the frame reader.
            let consume = !(dir == Dir::Bi && stage == Stage::Type);
            let Some(value) = take_varint(head, chunks, consume) else {
                if fin {
                    // Ended before its prefix: nothing to do with it.
                    self.streams.remove(&stream);
                }
                return Route::Consumed;
            };
            if dir == Dir::Bi && stage == Stage::Type && value == WEBTRANSPORT_BIDI_STREAM {
                // The signal of a WebTransport stream: consume it, the session ID follows.
                take_varint(head, chunks, true);
                *stage_ref = Stage::Session;
                continue;
            }
            match (dir, stage) {
                (Dir::Uni, Stage::Type) => match value {
                    CONTROL_STREAM => {
                        if self.peer_control {
                            self.fail(h3::STREAM_CREATION_ERROR, "a second control stream");
                            return Route::Consumed;
                        }
                        self.peer_control = true;
                        self.streams.insert(
                            stream,
                            Incoming::Control {
                                frames: FrameReader::new(MAX_CONTROL_FRAME),
                                settings: false,
                            },
                        );
                        self.read_control(now, stream, chunks, fin);
                        return Route::Consumed;
                    }
                    QPACK_ENCODER_STREAM | QPACK_DECODER_STREAM => {
                        self.streams.insert(stream, Incoming::Discard);
                        chunks.clear();
                        return Route::Consumed;
                    }
                    WEBTRANSPORT_UNI_STREAM => {
                        if let Some(Incoming::Unknown { stage, .. }) = self.streams.get_mut(&stream)
                        {
                            *stage = Stage::Session;
                        }
                    }
                    PUSH_STREAM => {
                        // We never allow pushes (no MAX_PUSH_ID).
                        self.fail(h3::ID_ERROR, "a push stream without MAX_PUSH_ID");
                        return Route::Consumed;
                    }
                    _ => {
                        // Unknown and reserved stream types are refused alone (RFC 9114 §6.2).
                        self.refuse(stream, dir, h3::STREAM_CREATION_ERROR);
                        chunks.clear();
                        return Route::Consumed;
                    }
                },
                (Dir::Bi, Stage::Type) => return self.request_stream(now, stream, chunks, fin),
                (_, Stage::Session) => return self.session_stream(stream, dir, value, chunks, fin),
            }
        }
    }

    /// A peer bidirectional stream that starts with an HTTP/3 frame: a request.
    fn request_stream(
        &mut self,
        now: Instant,
        stream: StreamId,
        chunks: &mut Vec<Bytes>,
        fin: bool,
    ) -> Route {
        let head = match self.streams.remove(&stream) {
            Some(Incoming::Unknown { head, .. }) => head,
            _ => BytesMut::new(),
        };
        if self.side == Side::Client {
            // Servers do not open request streams.
            self.refuse(stream, Dir::Bi, h3::STREAM_CREATION_ERROR);
            return Route::Consumed;
        }
        if self.connect.is_some() || self.state != State::Setup {
            // One session per connection.
            self.refuse(stream, Dir::Bi, h3::REQUEST_REJECTED);
            return Route::Consumed;
        }
        self.connect = Some(stream);
        let mut request = RequestStream::new();
        request.frames.push(&head);
        self.streams
            .insert(stream, Incoming::Request(Box::new(request)));
        self.read_request(now, stream, chunks, fin);
        Route::Consumed
    }

    /// A WebTransport stream of session `session`.
    fn session_stream(
        &mut self,
        stream: StreamId,
        dir: Dir,
        session: u64,
        chunks: &mut Vec<Bytes>,
        fin: bool,
    ) -> Route {
        match self.state {
            State::Established(_) if self.session_id() == Some(session) => {
                if fin {
                    self.streams.remove(&stream);
                } else {
                    self.streams.insert(stream, Incoming::Session);
                }
                Route::Session { opened: Some(dir) }
            }
            State::Setup | State::Deciding => {
                let bytes: usize = chunks.iter().map(Bytes::len).sum();
                if self.held.len() >= self.cfg.max_buffered_streams
                    || self.held_bytes + bytes > self.cfg.max_buffered_bytes
                {
                    self.refuse(stream, dir, h3::WT_BUFFERED_STREAM_REJECTED);
                    chunks.clear();
                    return Route::Consumed;
                }
                self.held_bytes += bytes;
                self.held.push(HeldStream {
                    stream,
                    dir,
                    session,
                    chunks: std::mem::take(chunks),
                    bytes,
                    fin,
                });
                self.streams.insert(stream, Incoming::Held);
                Route::Consumed
            }
            _ => {
                self.refuse(stream, dir, h3::WT_SESSION_GONE);
                chunks.clear();
                Route::Consumed
            }
        }
    }

    fn hold_more(&mut self, stream: StreamId, chunks: &mut Vec<Bytes>, fin: bool) {
        let bytes: usize = chunks.iter().map(Bytes::len).sum();
        let Some(index) = self.held.iter().position(|h| h.stream == stream) else {
            chunks.clear();
            return;
        };
        if self.held_bytes + bytes > self.cfg.max_buffered_bytes {
            let held = self.held.swap_remove(index);
            self.held_bytes -= held.bytes;
            self.refuse(stream, held.dir, h3::WT_BUFFERED_STREAM_REJECTED);
            chunks.clear();
            return;
        }
        self.held_bytes += bytes;
        let held = &mut self.held[index];
        held.bytes += bytes;
        held.chunks.append(chunks);
        held.fin |= fin;
    }

    fn drop_held(&mut self, stream: StreamId) {
        if let Some(index) = self.held.iter().position(|h| h.stream == stream) {
            let held = self.held.swap_remove(index);
            self.held_bytes -= held.bytes;
        }
    }

    fn read_control(&mut self, now: Instant, stream: StreamId, chunks: &mut Vec<Bytes>, fin: bool) {
        let Some(Incoming::Control { frames, .. }) = self.streams.get_mut(&stream) else {
            return;
        };
        for chunk in chunks.drain(..) {
            frames.push(&chunk);
        }
        loop {
            let Some(Incoming::Control { frames, settings }) = self.streams.get_mut(&stream) else {
                return;
            };
            let first = !*settings;
            let event = frames.next(|ty| match ty {
                frame::SETTINGS | frame::GOAWAY => Handling::Collect,
                frame::DATA | frame::HEADERS | frame::PUSH_PROMISE => Handling::Collect,
                ty if frame::is_reserved_http2(ty) => Handling::Collect,
                _ => Handling::Skip,
            });
            let event = match event {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(err) => {
                    self.fail(h3::EXCESSIVE_LOAD, &err.to_string());
                    return;
                }
            };
            let ty = match &event {
                FrameEvent::Frame { ty, .. }
                | FrameEvent::Chunk { ty, .. }
                | FrameEvent::Skipped { ty } => *ty,
            };
            if first && ty != frame::SETTINGS {
                self.fail(
                    h3::MISSING_SETTINGS,
                    "the control stream must begin with SETTINGS",
                );
                return;
            }
            match event {
                FrameEvent::Frame {
                    ty: frame::SETTINGS,
                    payload,
                } => {
                    if !first {
                        self.fail(h3::FRAME_UNEXPECTED, "a second SETTINGS frame");
                        return;
                    }
                    if let Some(Incoming::Control { settings, .. }) = self.streams.get_mut(&stream)
                    {
                        *settings = true;
                    }
                    tracing::trace!(payload = ?payload, "peer SETTINGS");
                    match Settings::decode(&payload) {
                        Ok(settings) => self.on_settings(now, settings),
                        Err(err) => {
                            self.fail(h3::SETTINGS_ERROR, &err.to_string());
                            return;
                        }
                    }
                }
                FrameEvent::Frame {
                    ty: frame::GOAWAY, ..
                }
                | FrameEvent::Skipped { .. } => {}
                _ => {
                    self.fail(
                        h3::FRAME_UNEXPECTED,
                        "a frame not allowed on the control stream",
                    );
                    return;
                }
            }
        }
        if fin {
            self.critical_stream_closed();
        }
    }

    fn on_settings(&mut self, now: Instant, settings: Settings) {
        let supports = settings.supports_webtransport();
        let extended_connect = settings.enables_connect_protocol();
        self.peer_settings = Some(settings);
        match self.side {
            Side::Client => {
                if !supports || !extended_connect {
                    self.fail(h3::NO_ERROR, "the server does not offer WebTransport");
                    return;
                }
                let token = self.internal_token();
                self.connect_token = Some(token);
                self.emit(TransportCommand::Open {
                    token,
                    dir: Dir::Bi,
                    priority: CONTROL_PRIORITY,
                });
            }
            Side::Server => {
                // A CONNECT that came first waited for these.
                if let Some(request) = self.request.clone()
                    && self.state == State::Setup
                {
                    self.present_request(now, request);
                }
            }
        }
    }

    /// Server: hand a CONNECT to the application, or refuse it when the client cannot do
    /// WebTransport.
    fn present_request(&mut self, now: Instant, request: ConnectRequest) {
        let Some(settings) = &self.peer_settings else {
            // Wait for SETTINGS (draft-ietf-webtrans-http3 §3.1).
            self.request = Some(request);
            return;
        };
        if !settings.supports_webtransport() {
            self.state = State::Deciding;
            self.reject(now, 400);
            return;
        }
        self.request = Some(request.clone());
        self.state = State::Deciding;
        self.events.push_back(H3Event::Request(request));
    }

    fn read_request(&mut self, now: Instant, stream: StreamId, chunks: &mut Vec<Bytes>, fin: bool) {
        let Some(Incoming::Request(request)) = self.streams.get_mut(&stream) else {
            return;
        };
        for chunk in chunks.drain(..) {
            request.frames.push(&chunk);
        }
        loop {
            let Some(Incoming::Request(request)) = self.streams.get_mut(&stream) else {
                return;
            };
            let event = request.frames.next(|ty| match ty {
                frame::HEADERS => Handling::Collect,
                frame::DATA => Handling::Stream,
                frame::PUSH_PROMISE
                | frame::SETTINGS
                | frame::GOAWAY
                | frame::MAX_PUSH_ID
                | frame::CANCEL_PUSH => Handling::Collect,
                ty if frame::is_reserved_http2(ty) => Handling::Collect,
                _ => Handling::Skip,
            });
            let event = match event {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(err) => {
                    self.fail(h3::EXCESSIVE_LOAD, &err.to_string());
                    return;
                }
            };
            match event {
                FrameEvent::Frame {
                    ty: frame::HEADERS,
                    payload,
                } => {
                    if request.headers {
                        continue; // trailers: nothing for us
                    }
                    tracing::trace!(block = ?payload, "HEADERS field section");
                    let fields = match qpack::decode(&payload, OUR_MAX_FIELD_SECTION as usize) {
                        Ok(fields) => fields,
                        Err(err) => {
                            self.fail(h3::QPACK_DECOMPRESSION_FAILED, &err.to_string());
                            return;
                        }
                    };
                    match self.side {
                        Side::Server => {
                            request.headers = true;
                            self.on_request(now, stream, &fields);
                        }
                        Side::Client => self.on_response(now, stream, &fields),
                    }
                }
                FrameEvent::Chunk {
                    ty: frame::DATA,
                    data,
                } => {
                    if !request.headers {
                        self.fail(h3::FRAME_UNEXPECTED, "DATA before HEADERS");
                        return;
                    }
                    match request.capsules.push(&data) {
                        Ok(capsules) => {
                            for capsule in capsules {
                                self.on_capsule(now, capsule);
                            }
                        }
                        Err(err) => {
                            self.fail(h3::MESSAGE_ERROR, &err.to_string());
                            return;
                        }
                    }
                }
                FrameEvent::Skipped { .. } => {}
                _ => {
                    self.fail(
                        h3::FRAME_UNEXPECTED,
                        "a frame not allowed on a request stream",
                    );
                    return;
                }
            }
        }
        if fin {
            self.streams.remove(&stream);
            if Some(stream) == self.connect {
                self.session_ended(now, SessionCode::NO_ERROR, "the peer ended the session");
            }
        }
    }

    fn on_request(&mut self, now: Instant, stream: StreamId, fields: &[(String, String)]) {
        match ConnectRequest::from_fields(fields) {
            Ok(request) => self.present_request(now, request),
            Err(err) => {
                tracing::debug!(%err, "refused an HTTP/3 request");
                self.state = State::Deciding;
                self.connect = Some(stream);
                self.reject(now, err.status());
            }
        }
    }

    fn on_response(&mut self, now: Instant, stream: StreamId, fields: &[(String, String)]) {
        let response = match ConnectResponse::from_fields(fields) {
            Ok(response) => response,
            Err(err) => {
                self.fail(h3::MESSAGE_ERROR, &err.to_string());
                return;
            }
        };
        if (100..200).contains(&response.status) {
            return; // interim
        }
        if let Some(Incoming::Request(request)) = self.streams.get_mut(&stream) {
            request.headers = true;
        }
        if !(200..300).contains(&response.status) {
            self.fail(
                h3::NO_ERROR,
                &format!(
                    "the server answered CONNECT with status {}",
                    response.status
                ),
            );
            return;
        }
        let offered: Vec<Version> = self
            .request
            .as_ref()
            .map(|r| {
                r.protocols
                    .iter()
                    .filter_map(|p| Version::from_alpn(p.as_bytes()))
                    .collect()
            })
            .unwrap_or_default();
        let version = match response
            .protocol
            .as_deref()
            .and_then(|p| Version::from_alpn(p.as_bytes()))
        {
            Some(v) if offered.contains(&v) => Some(v),
            Some(_) => None,
            // No wt-protocol: only unambiguous when we offered one version.
            None if offered.len() == 1 => offered.first().copied(),
            None => None,
        };
        let Some(version) = version else {
            self.fail(
                h3::NO_ERROR,
                &format!(
                    "the server chose no version we offered (wt-protocol {:?})",
                    response.protocol
                ),
            );
            return;
        };
        let path = self
            .request
            .as_ref()
            .map(|r| r.path.clone())
            .unwrap_or_default();
        self.establish(now, version, path);
    }

    fn on_capsule(&mut self, now: Instant, capsule: Capsule) {
        match capsule {
            Capsule::Close { code, reason } => {
                self.session_ended(now, SessionCode(u64::from(code)), &reason);
            }
            // MOQ has its own GOAWAY; the drain request changes nothing here.
            Capsule::Drain => {}
        }
    }
}

/// Read one varint from `head` followed by `chunks`; with `consume`, remove its bytes (from
/// `head` first). When it is incomplete, move everything into `head` (a prefix is at most 8
/// bytes, so this stays tiny) and return `None`.
fn take_varint(head: &mut BytesMut, chunks: &mut Vec<Bytes>, consume: bool) -> Option<u64> {
    let mut window = [0u8; 8];
    let mut filled = head.len().min(8);
    window[..filled].copy_from_slice(&head[..filled]);
    for chunk in chunks.iter() {
        if filled == 8 {
            break;
        }
        let n = (8 - filled).min(chunk.len());
        window[filled..filled + n].copy_from_slice(&chunk[..n]);
        filled += n;
    }
    let mut view = &window[..filled];
    match get_varint(&mut view) {
        Ok(value) => {
            if consume {
                let mut used = filled - view.len();
                let from_head = used.min(head.len());
                head.advance(from_head);
                used -= from_head;
                while used > 0 {
                    let Some(first) = chunks.first_mut() else {
                        break;
                    };
                    let n = used.min(first.len());
                    first.advance(n);
                    used -= n;
                    if first.is_empty() {
                        chunks.remove(0);
                    }
                }
            }
            Some(value)
        }
        Err(_) => {
            for chunk in chunks.drain(..) {
                head.extend_from_slice(&chunk);
            }
            None
        }
    }
}
