//! The session's public vocabulary: identifiers, commands, events, configuration and errors.

use std::time::Duration;

use bytes::Bytes;

use crate::codes::{SessionCode, StreamCode};
use crate::coding::Limits;
use crate::wire::{Path, ProbeLevel, Role, TrackInfo, Version};

/// A transport stream identifier, opaque to the session (quinn-proto's `StreamId` as u64, or
/// whatever the transport uses). Unique per connection, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// A request to open a stream, answered by [`super::Session::handle_open_granted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenToken(pub u64);

/// Stream direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Bidirectional.
    Bi,
    /// Unidirectional.
    Uni,
}

slotmap::new_key_type! {
    /// A subscription this session made (we are the subscriber).
    pub struct SubscriptionId;
    /// A peer's subscription this session serves (we are the publisher).
    pub struct ServeId;
    /// One group stream we send for a [`ServeId`].
    pub struct GroupSendId;
    /// An announce request we sent (we want the peer's announcements).
    pub struct InterestId;
    /// An announce request the peer sent (the peer wants ours).
    pub struct ListenerId;
    /// A FETCH we sent.
    pub struct FetchId;
    /// A FETCH the peer sent.
    pub struct FetchServeId;
    /// A TRACK request we sent.
    pub struct TrackQueryId;
    /// A TRACK request the peer sent.
    pub struct TrackServeId;
}

/// The subscriber's knobs, carried by SUBSCRIBE and SUBSCRIBE_UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeParams {
    /// Subscriber priority; higher goes first.
    pub priority: u8,
    /// True: oldest group first. False: newest first.
    pub ordered: bool,
    /// Non-latest groups older than this are dropped. Zero means "latest group only".
    pub max_latency: Duration,
    /// First group wanted; `None` for the latest.
    pub start: Option<u64>,
    /// Last group wanted, inclusive; `None` for unbounded.
    pub end: Option<u64>,
}

impl Default for SubscribeParams {
    /// Priority 128, newest first, 5 s (the reference's track default; never 0, which the
    /// reference reads as "latest only"), from the latest group, unbounded.
    fn default() -> Self {
        Self {
            priority: 128,
            ordered: false,
            max_latency: Duration::from_millis(5000),
            start: None,
            end: None,
        }
    }
}

/// The publisher's own delivery preferences, from a lite-03/04 SUBSCRIBE_OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherParams {
    /// Publisher priority (a tie-breaker after the subscriber's).
    pub priority: u8,
    /// True: the publisher prefers oldest group first.
    pub ordered: bool,
    /// How long the publisher keeps non-latest groups.
    pub max_latency: Duration,
}

/// What the publisher told us in its first response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOkInfo {
    /// lite-03/04 only: the publisher's preferences.
    pub publisher: Option<PublisherParams>,
    /// The first group served, if known (lite-05 always; lite-03/04 when resolved).
    pub start: Option<u64>,
    /// The last group served (lite-03/04 OK only).
    pub end: Option<u64>,
}

/// Transport statistics fed to the session for PROBE reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransportStats {
    /// Estimated send bitrate in bits per second (e.g. congestion window / RTT); 0 = unknown.
    pub bitrate: u64,
    /// Smoothed RTT; zero = unknown.
    pub rtt: Duration,
}

/// How a group stream we were receiving ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupEnd {
    /// FIN on a frame boundary: every frame arrived.
    Finished,
    /// The publisher reset the stream with this code (0x34 Old when it expired).
    Reset(StreamCode),
    /// We abandoned it: malformed content, or the subscription went away. The code is what we
    /// sent in STOP_SENDING.
    Stopped(StreamCode),
}

/// A request toward the peer that the session refuses to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The session is closed.
    #[error("session closed")]
    Closed,
    /// The peer sent GOAWAY (or we did): no new requests.
    #[error("session is going away")]
    GoingAway,
    /// The negotiated version has no such request.
    #[error("not supported on {0}")]
    Unsupported(Version),
    /// A per-session cap was reached.
    #[error("too many {0}")]
    TooMany(&'static str),
    /// The handle does not name a live request.
    #[error("unknown or finished request")]
    Unknown,
    /// The peer's SETUP did not enable this (lite-05 probe level).
    #[error("the peer did not enable {0}")]
    NotEnabled(&'static str),
    /// The message could not be encoded (a name too long, a value out of range).
    #[error(transparent)]
    Encode(#[from] crate::coding::EncodeError),
}

/// The size of each of a session's tables, from [`super::Session::tables`]. Every count is
/// bounded by a cap in [`Config`] (or, for queues, drained by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SessionTables {
    /// Streams tracked (both directions; at most `max_streams` of the peer's).
    pub streams: usize,
    /// Our stream opens waiting for transport credit.
    pub pending_opens: usize,
    /// Bytes written to those streams before they opened (at most `max_pending_bytes`).
    pub pending_bytes: usize,
    /// Subscribe streams whose final FIN is not acknowledged yet.
    pub unacked_ends: usize,
    /// Our subscriptions (at most `max_subscriptions`).
    pub subscriptions: usize,
    /// Group streams we are receiving.
    pub group_recvs: usize,
    /// The peer's subscriptions we serve (at most `max_subscriptions`).
    pub serves: usize,
    /// Group streams we are sending.
    pub group_sends: usize,
    /// Our announce requests (at most `max_announce_requests`).
    pub interests: usize,
    /// The peer's announce requests (at most `max_announce_requests`).
    pub listeners: usize,
    /// Our FETCHes (at most `max_requests`).
    pub fetches: usize,
    /// The peer's FETCHes we serve (at most `max_requests`).
    pub fetch_serves: usize,
    /// Our TRACK requests (at most `max_requests`).
    pub track_queries: usize,
    /// The peer's TRACK requests (at most `max_requests`).
    pub track_serves: usize,
    /// Commands not drained yet.
    pub commands: usize,
    /// Events not drained yet, including those held until a lite-05 client's SETUP.
    pub events: usize,
}

impl SessionTables {
    /// Every count with its name, in declaration order (the destructuring below makes a new
    /// field a compile error here until it is listed).
    pub fn entries(&self) -> [(&'static str, usize); 16] {
        let Self {
            streams,
            pending_opens,
            pending_bytes,
            unacked_ends,
            subscriptions,
            group_recvs,
            serves,
            group_sends,
            interests,
            listeners,
            fetches,
            fetch_serves,
            track_queries,
            track_serves,
            commands,
            events,
        } = *self;
        [
            ("streams", streams),
            ("pending_opens", pending_opens),
            ("pending_bytes", pending_bytes),
            ("unacked_ends", unacked_ends),
            ("subscriptions", subscriptions),
            ("group_recvs", group_recvs),
            ("serves", serves),
            ("group_sends", group_sends),
            ("interests", interests),
            ("listeners", listeners),
            ("fetches", fetches),
            ("fetch_serves", fetch_serves),
            ("track_queries", track_queries),
            ("track_serves", track_serves),
            ("commands", commands),
            ("events", events),
        ]
    }
}

impl std::fmt::Display for SessionTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, count)) in self.entries().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={count}")?;
        }
        Ok(())
    }
}

/// Which end of the connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// We dialled: on lite-05 we send the SETUP Path.
    Client,
    /// We accepted: on lite-05 we wait for the client's SETUP before serving.
    Server,
}

/// Session configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The negotiated wire version.
    pub version: Version,
    /// Client or server.
    pub side: Side,
    /// Our hop ID (random in `[1, 2^53)`; 0 = unknown). Sent in ANNOUNCE_OK (05) and appended
    /// to hop lists (04).
    pub hop_id: u64,
    /// Client, lite-05 raw QUIC: the SETUP Path parameter (e.g. `/anon`).
    pub setup_path: Option<String>,
    /// Client, lite-05: the SETUP Role parameter, if any.
    pub setup_role: Option<Role>,
    /// lite-05: the probe level we advertise (we answer Probe streams at level Report or above).
    pub probe_level: ProbeLevel,
    /// Codec caps.
    pub limits: Limits,
    /// Most concurrent subscriptions in each direction.
    pub max_subscriptions: usize,
    /// Most concurrent announce requests in each direction.
    pub max_announce_requests: usize,
    /// Most broadcasts the peer may keep active on one announce stream; one more closes the
    /// session with a protocol violation.
    pub max_announced: usize,
    /// Most concurrent FETCH and TRACK requests in each direction.
    pub max_requests: usize,
    /// Most streams tracked at once (both directions); excess incoming streams are reset.
    pub max_streams: usize,
    /// Most unread bytes buffered per stream (a partial header); beyond it the stream is
    /// treated as malformed.
    pub max_stream_buffer: usize,
    /// Most bytes buffered for streams still waiting for transport credit.
    pub max_pending_bytes: usize,
    /// Bytes put in front of every datagram we send (WebTransport: the quarter stream ID
    /// of the session, RFC 9297 §2.1); empty on raw QUIC. Encoded in the same buffer as the
    /// datagram, so it costs no copy.
    pub datagram_prefix: bytes::Bytes,
    /// Most bytes the transport may hold unaccepted (see
    /// [`super::Session::handle_send_backlog`]), together with the bytes buffered for group
    /// streams still waiting for stream credit, before the session sheds groups: past it, a
    /// frame for a group that is not its subscription's newest aborts that group
    /// ([`StreamCode::TOO_FAR_BEHIND`]) instead of queueing behind the backlog, and a new
    /// group drops its subscription's older groups still waiting for a stream, so a
    /// subscriber that cannot keep up (or grants no stream credit) skips to the live edge
    /// and costs bounded memory.
    pub max_send_backlog: usize,
}

impl Config {
    /// Defaults for `version` and `side`.
    pub fn new(version: Version, side: Side) -> Self {
        let limits = Limits::default();
        Self {
            version,
            side,
            hop_id: 0,
            setup_path: None,
            setup_role: None,
            probe_level: ProbeLevel::Report,
            max_stream_buffer: limits.message_size() + 64,
            limits,
            max_subscriptions: 4096,
            max_announce_requests: 256,
            max_announced: 65_536,
            max_requests: 1024,
            max_streams: 20_000,
            max_pending_bytes: 64 * 1024 * 1024,
            max_send_backlog: 4 * 1024 * 1024,
            datagram_prefix: bytes::Bytes::new(),
        }
    }
}

/// An instruction for the transport, drained with [`super::Session::poll_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Open a stream when credit allows, then call `handle_open_granted(token, id)`. Higher
    /// `priority` streams should be granted first.
    Open {
        /// Names the request.
        token: OpenToken,
        /// Direction.
        dir: Dir,
        /// Send priority (higher first), as for [`Command::SetPriority`].
        priority: i32,
    },
    /// Forget a pending [`Command::Open`] that was not granted yet.
    CancelOpen {
        /// The request.
        token: OpenToken,
    },
    /// Append bytes to a stream's send side (zero-copy).
    Write {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
    },
    /// Finish (FIN) a stream's send side after everything written.
    Finish {
        /// The stream.
        stream: StreamId,
    },
    /// Abort a stream's send side (RESET_STREAM).
    Reset {
        /// The stream.
        stream: StreamId,
        /// Stream error code.
        code: StreamCode,
    },
    /// Ask the peer to stop sending on a stream (STOP_SENDING); discard what arrives.
    Stop {
        /// The stream.
        stream: StreamId,
        /// Stream error code.
        code: StreamCode,
    },
    /// Change a stream's send priority (higher first).
    SetPriority {
        /// The stream.
        stream: StreamId,
        /// The new priority.
        priority: i32,
    },
    /// Send an unreliable datagram.
    SendDatagram {
        /// The whole datagram body.
        data: Bytes,
    },
    /// Close the connection.
    Close {
        /// Session error code.
        code: SessionCode,
        /// Human-readable reason.
        reason: String,
    },
}

/// Something the application (or the [`crate::node::Node`]) must know, drained with
/// [`super::Session::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// lite-05: the peer's SETUP arrived.
    Setup {
        /// The client's Path parameter.
        path: Option<String>,
        /// The peer's probe level.
        probe: ProbeLevel,
        /// The client's role.
        role: Option<Role>,
    },

    // ----- our subscriptions -----
    /// The publisher accepted a subscription.
    SubscribeOk {
        /// The subscription.
        id: SubscriptionId,
        /// What it said.
        info: SubscribeOkInfo,
    },
    /// A group stream began.
    GroupStart {
        /// The subscription.
        id: SubscriptionId,
        /// Group sequence.
        seq: u64,
    },
    /// A frame began; `chunk` is the start of its payload (possibly empty).
    FrameStart {
        /// The subscription.
        id: SubscriptionId,
        /// Group sequence.
        seq: u64,
        /// Absolute timestamp (lite-05), in track timescale units.
        timestamp: Option<u64>,
        /// Payload size.
        size: u64,
        /// First payload bytes (zero-copy).
        chunk: Bytes,
        /// Bytes still to come for this frame.
        remaining: u64,
    },
    /// More payload of the current frame.
    FramePayload {
        /// The subscription.
        id: SubscriptionId,
        /// Group sequence.
        seq: u64,
        /// Payload bytes (zero-copy).
        chunk: Bytes,
        /// Bytes still to come for this frame.
        remaining: u64,
    },
    /// A group stream ended.
    GroupEnd {
        /// The subscription.
        id: SubscriptionId,
        /// Group sequence.
        seq: u64,
        /// How.
        end: GroupEnd,
    },
    /// lite-05: a whole single-frame group arrived as a datagram.
    Datagram {
        /// The subscription.
        id: SubscriptionId,
        /// Group sequence.
        seq: u64,
        /// Absolute timestamp.
        timestamp: u64,
        /// The payload (zero-copy).
        payload: Bytes,
    },
    /// SUBSCRIBE_DROP: groups `start..=end` will never come.
    GroupsDropped {
        /// The subscription.
        id: SubscriptionId,
        /// First group.
        start: u64,
        /// Last group, inclusive.
        end: u64,
        /// Error code (0 = unavailable).
        code: StreamCode,
    },
    /// lite-05 SUBSCRIBE_END: no group at or after `end` will come (a group equal to `end`
    /// from a peer that sends it inclusive is still accepted).
    SubscribeEnd {
        /// The subscription.
        id: SubscriptionId,
        /// First group that will never come.
        end: u64,
    },
    /// The subscription is over and forgotten: the publisher finished (`error: None`) or
    /// reset it, or we cancelled it and the publisher acknowledged.
    SubscriptionClosed {
        /// The subscription.
        id: SubscriptionId,
        /// The reset code, if it did not end cleanly.
        error: Option<StreamCode>,
    },

    // ----- our announce requests -----
    /// A broadcast under our requested prefix became active (or changed route) or ended.
    Announced {
        /// The request.
        id: InterestId,
        /// Full broadcast path relative to the session root.
        path: Path,
        /// Hop list from the origin to the peer inclusive (zeros where unknown).
        hops: Vec<u64>,
        /// True when active.
        active: bool,
    },
    /// The announce stream closed; every path it announced has ended.
    InterestClosed {
        /// The request.
        id: InterestId,
        /// Reset code, if not a clean FIN.
        error: Option<StreamCode>,
    },

    // ----- requests from the peer (we publish) -----
    /// The peer subscribed. Answer with `accept_serve` or `reject_serve`.
    Subscribe {
        /// Our handle.
        id: ServeId,
        /// Broadcast path relative to the session root.
        broadcast: Path,
        /// Track name.
        track: String,
        /// The subscriber's parameters.
        params: SubscribeParams,
    },
    /// The peer changed a subscription's parameters.
    SubscribeUpdate {
        /// Our handle.
        id: ServeId,
        /// The new parameters.
        params: SubscribeParams,
    },
    /// A subscription we served is over (the peer cancelled, reset, or we ended it and the
    /// stream closed). Its handle is forgotten.
    ServeClosed {
        /// Our handle.
        id: ServeId,
    },
    /// The peer wants our announcements under `prefix`. Answer with `announce_initial`.
    AnnounceRequest {
        /// Our handle.
        id: ListenerId,
        /// The prefix, relative to the session root.
        prefix: Path,
        /// Skip routes whose hop list contains this ID (0 = none).
        exclude_hop: u64,
    },
    /// The peer's announce request is over.
    ListenerClosed {
        /// Our handle.
        id: ListenerId,
    },
    /// The peer wants one group. Answer with `fetch_*` calls.
    Fetch {
        /// Our handle.
        id: FetchServeId,
        /// Broadcast path relative to the session root.
        broadcast: Path,
        /// Track.
        track: String,
        /// Subscriber priority.
        priority: u8,
        /// Group sequence.
        group: u64,
    },
    /// The peer cancelled a FETCH we were serving.
    FetchServeClosed {
        /// Our handle.
        id: FetchServeId,
    },
    /// lite-05: the peer asked for a track's properties. Answer with `track_info_reply`.
    TrackRequest {
        /// Our handle.
        id: TrackServeId,
        /// Broadcast path relative to the session root.
        broadcast: Path,
        /// Track.
        track: String,
    },

    // ----- answers to our FETCH and TRACK -----
    /// A fetched frame began.
    FetchFrameStart {
        /// The fetch.
        id: FetchId,
        /// Absolute timestamp (lite-05).
        timestamp: Option<u64>,
        /// Payload size.
        size: u64,
        /// First payload bytes.
        chunk: Bytes,
        /// Bytes still to come for this frame.
        remaining: u64,
    },
    /// More payload of a fetched frame.
    FetchFramePayload {
        /// The fetch.
        id: FetchId,
        /// Payload bytes.
        chunk: Bytes,
        /// Bytes still to come for this frame.
        remaining: u64,
    },
    /// The fetch is over: `None` when the whole group arrived, else the reset code.
    FetchClosed {
        /// The fetch.
        id: FetchId,
        /// Reset code, if it failed.
        error: Option<StreamCode>,
    },
    /// The answer to a TRACK request: the properties, or the reset code.
    TrackInfo {
        /// The request.
        id: TrackQueryId,
        /// Properties or error code.
        result: Result<TrackInfo, StreamCode>,
    },

    // ----- session-wide -----
    /// A PROBE report from the peer.
    ProbeReport {
        /// Bits per second (0 = unknown).
        bitrate: u64,
        /// Smoothed RTT (zero = unknown; lite-03 never sends it).
        rtt: Duration,
    },
    /// The peer sent GOAWAY: make no new requests; reconnect to `uri` (empty = the same URL).
    Goaway {
        /// Where to go.
        uri: String,
    },
    /// The session is closed; every handle is dead.
    Closed {
        /// Session error code.
        code: SessionCode,
        /// Reason text.
        reason: String,
        /// True when we closed it.
        local: bool,
    },
}
