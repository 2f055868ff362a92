//! A raw peer for driving one [`Session`] directly: the test plays the transport and the other
//! endpoint by hand. It grants every [`Command::Open`] with a fresh [`StreamId`] (unless told
//! not to), records everything the session writes per stream, and decodes it back with the
//! wire decoders. Time is virtual: a fixed start instant plus durations.
//!
//! The harness also checks transport-level invariants on every command: no write or FIN after
//! a stream's send side was finished or reset, no reset after the stream was reset or
//! acknowledged (a reset after FIN, QUIC's "Data Sent" state, is allowed), no write to a peer's
//! uni stream, no command on a stream nobody opened.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::coding::{Cursor, Limits, put_varint, zigzag_encode};
use moq_proto::session::{
    Command, Config, Dir, Event, OpenToken, Session, Side, StreamId, SubscriptionId,
};
use moq_proto::wire::{
    FrameItem, GroupHeader, GroupItem, GroupStreamReader, Message, Path, ProbeLevel, Setup,
    StreamReader, SubscribeResponse, Version,
};

/// Every version, oldest first.
pub const VERSIONS: [Version; 3] = [Version::Lite03, Version::Lite04, Version::Lite05];

/// A normalised path.
pub fn p(s: &str) -> Path {
    Path::new(s).expect("valid path")
}

/// A session config with our test defaults.
pub fn cfg(v: Version, side: Side) -> Config {
    Config::new(v, side)
}

/// Encode a size-prefixed message.
pub fn enc<M: Message>(m: &M, v: Version) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out, v).expect("encodable");
    out
}

/// A stream type byte followed by a message.
pub fn typed<M: Message>(ty: u8, m: &M, v: Version) -> Vec<u8> {
    let mut out = vec![ty];
    m.encode(&mut out, v).expect("encodable");
    out
}

/// A subscribe response (type, length, body).
pub fn resp(r: SubscribeResponse, v: Version) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out, v).expect("encodable");
    out
}

/// One frame: lite-05 zigzag timestamp delta, size, payload.
pub fn frame(v: Version, delta: i64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if v.is_lite05() {
        put_varint(&mut out, zigzag_encode(delta)).expect("varint");
    }
    put_varint(&mut out, payload.len() as u64).expect("varint");
    out.extend_from_slice(payload);
    out
}

/// A whole group stream: `00`, GROUP, frames `(delta, payload)`.
pub fn group_bytes(v: Version, sub: u64, seq: u64, frames: &[(i64, &[u8])]) -> Vec<u8> {
    let mut out = typed(
        0,
        &GroupHeader {
            subscribe_id: sub,
            sequence: seq,
        },
        v,
    );
    for (delta, payload) in frames {
        out.extend(frame(v, *delta, payload));
    }
    out
}

/// One SETUP parameter with a varint value.
pub fn param_varint(id: u64, value: u64) -> Vec<u8> {
    let mut value_bytes = Vec::new();
    put_varint(&mut value_bytes, value).expect("varint");
    param_bytes(id, &value_bytes)
}

/// One SETUP parameter with raw bytes.
pub fn param_bytes(id: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, id).expect("varint");
    put_varint(&mut out, value.len() as u64).expect("varint");
    out.extend_from_slice(value);
    out
}

/// A whole Setup stream (`01` + SETUP) built from raw parameters.
pub fn setup_stream(params: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    put_varint(&mut body, params.len() as u64).expect("varint");
    for param in params {
        body.extend_from_slice(param);
    }
    let mut out = vec![0x01];
    put_varint(&mut out, body.len() as u64).expect("varint");
    out.extend(body);
    out
}

/// A tiny deterministic PRNG (xorshift64*), for garbage inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One stream open the session asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub token: OpenToken,
    pub dir: Dir,
    pub priority: i32,
    /// Set once granted.
    pub stream: Option<StreamId>,
}

/// The raw-peer harness around one session.
pub struct Raw {
    pub s: Session,
    pub v: Version,
    pub t0: Instant,
    pub now: Instant,
    /// Grant every `Open` as soon as it is seen.
    pub auto_grant: bool,
    next_local: u64,
    next_peer: u64,
    /// Commands since the last [`Raw::take_cmds`].
    pub cmds: Vec<Command>,
    /// Every command ever, for failure messages.
    pub history: Vec<Command>,
    /// Events since the last [`Raw::take_events`].
    pub events: Vec<Event>,
    /// Every open request, in order.
    pub opens: Vec<Opened>,
    pub cancelled: Vec<OpenToken>,
    pub written: HashMap<StreamId, Vec<u8>>,
    read_pos: HashMap<StreamId, usize>,
    pub finished: HashSet<StreamId>,
    /// Streams whose data the test declared acknowledged ([`Raw::ack`]).
    pub acked: HashSet<StreamId>,
    pub resets: HashMap<StreamId, StreamCode>,
    pub stops: HashMap<StreamId, StreamCode>,
    pub priority: HashMap<StreamId, i32>,
    pub datagrams: Vec<Bytes>,
    pub closed: Option<(SessionCode, String)>,
    /// Streams the peer opened, with their direction.
    pub peer_streams: HashMap<StreamId, Dir>,
    /// Streams we opened (granted), with their direction.
    pub local_streams: HashMap<StreamId, Dir>,
}

impl Raw {
    pub fn new(config: Config) -> Self {
        let t0 = Instant::now();
        let v = config.version;
        let s = Session::new(config, t0);
        let mut raw = Self {
            s,
            v,
            t0,
            now: t0,
            auto_grant: true,
            next_local: 1000,
            next_peer: 1,
            cmds: Vec::new(),
            history: Vec::new(),
            events: Vec::new(),
            opens: Vec::new(),
            cancelled: Vec::new(),
            written: HashMap::new(),
            read_pos: HashMap::new(),
            finished: HashSet::new(),
            acked: HashSet::new(),
            resets: HashMap::new(),
            stops: HashMap::new(),
            priority: HashMap::new(),
            datagrams: Vec::new(),
            closed: None,
            peer_streams: HashMap::new(),
            local_streams: HashMap::new(),
        };
        raw.pump();
        raw
    }

    /// A session of `v`/`side` with default config and, on lite-05, the SETUP exchange done
    /// (the peer's SETUP has Probe = Report; as a client peer it sends Path `/`). Logs cleared.
    pub fn ready(v: Version, side: Side) -> Self {
        Self::ready_with(cfg(v, side))
    }

    /// As [`Raw::ready`] with a custom config.
    pub fn ready_with(config: Config) -> Self {
        let side = config.side;
        let mut raw = Self::new(config);
        if raw.v.is_lite05() {
            let setup = Setup {
                probe: ProbeLevel::Report,
                path: (side == Side::Server).then(|| "/".to_string()),
                role: None,
            };
            let id = raw.peer_uni();
            raw.send_fin(id, &typed(0x01, &setup, raw.v));
            assert!(
                matches!(raw.events.first(), Some(Event::Setup { .. })),
                "{:?}",
                raw.events
            );
        }
        raw.clear();
        raw
    }

    /// Forget logged commands and events.
    pub fn clear(&mut self) {
        self.cmds.clear();
        self.events.clear();
    }

    // ---------------------------------------------------------------------------------------
    // Driving

    /// Drain commands and events until both are empty.
    pub fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(cmd) = self.s.poll_command() {
                progressed = true;
                self.cmds.push(cmd.clone());
                self.history.push(cmd.clone());
                self.apply(cmd);
            }
            while let Some(event) = self.s.poll_event() {
                progressed = true;
                self.events.push(event);
            }
            // Grant after the whole batch was read, as a transport would: an Open cancelled
            // in the same batch is never granted.
            if self.auto_grant {
                for open in self.pending_opens() {
                    progressed = true;
                    self.grant_now(open.token);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Open {
                token,
                dir,
                priority,
            } => {
                assert!(
                    !self.opens.iter().any(|o| o.token == token),
                    "token {token:?} reused"
                );
                self.opens.push(Opened {
                    token,
                    dir,
                    priority,
                    stream: None,
                });
            }
            Command::CancelOpen { token } => {
                let open = self
                    .opens
                    .iter()
                    .find(|o| o.token == token)
                    .expect("CancelOpen for an unknown token");
                // After a close, every pending open is cancelled; a granted one must not be.
                assert!(open.stream.is_none(), "CancelOpen for a granted stream");
                self.cancelled.push(token);
            }
            Command::Write { stream, data } => {
                self.check_send_side(stream, "Write");
                self.written
                    .entry(stream)
                    .or_default()
                    .extend_from_slice(&data);
            }
            Command::Finish { stream } => {
                self.check_send_side(stream, "Finish");
                self.finished.insert(stream);
            }
            Command::Reset { stream, code } => {
                assert!(
                    !self.acked.contains(&stream) && !self.resets.contains_key(&stream),
                    "Reset after {stream:?} was reset or acknowledged: {:?}",
                    self.history_of(stream)
                );
                self.resets.insert(stream, code);
            }
            Command::Stop { stream, code } => {
                assert!(
                    !self.stops.contains_key(&stream),
                    "second Stop for {stream:?}"
                );
                self.stops.insert(stream, code);
            }
            Command::SetPriority { stream, priority } => {
                assert!(
                    self.local_streams.contains_key(&stream),
                    "SetPriority on {stream:?}, not a stream we opened"
                );
                self.priority.insert(stream, priority);
            }
            Command::SendDatagram { data } => self.datagrams.push(data),
            Command::Close { code, reason } => {
                assert!(self.closed.is_none(), "second Close");
                self.closed = Some((code, reason));
            }
            _ => panic!("a variant this test does not know"),
        }
    }

    fn check_send_side(&self, stream: StreamId, what: &str) {
        let known = self.local_streams.contains_key(&stream)
            || self.peer_streams.get(&stream) == Some(&Dir::Bi);
        assert!(
            known,
            "{what} on {stream:?}, which has no send side of ours"
        );
        assert!(
            !self.finished.contains(&stream),
            "{what} after FIN on {stream:?}: {:?}",
            self.history_of(stream)
        );
        assert!(
            !self.resets.contains_key(&stream),
            "{what} after reset on {stream:?}: {:?}",
            self.history_of(stream)
        );
    }

    /// Every command so far on `id`.
    pub fn history_of(&self, id: StreamId) -> Vec<&Command> {
        self.history
            .iter()
            .filter(|c| match c {
                Command::Write { stream, .. }
                | Command::Finish { stream }
                | Command::Reset { stream, .. }
                | Command::Stop { stream, .. }
                | Command::SetPriority { stream, .. } => *stream == id,
                _ => false,
            })
            .collect()
    }

    fn grant_now(&mut self, token: OpenToken) -> StreamId {
        let id = StreamId(self.next_local);
        self.next_local += 1;
        let open = self
            .opens
            .iter_mut()
            .find(|o| o.token == token)
            .expect("known token");
        assert!(open.stream.is_none(), "granted twice");
        open.stream = Some(id);
        self.local_streams.insert(id, open.dir);
        self.priority.insert(id, open.priority);
        self.s.handle_open_granted(self.now, token, id);
        id
    }

    /// Grant a pending open now (with `auto_grant` off).
    pub fn grant(&mut self, token: OpenToken) -> StreamId {
        let id = self.grant_now(token);
        self.pump();
        id
    }

    /// Opens not granted nor cancelled yet.
    pub fn pending_opens(&self) -> Vec<Opened> {
        self.opens
            .iter()
            .filter(|o| o.stream.is_none() && !self.cancelled.contains(&o.token))
            .copied()
            .collect()
    }

    /// Grant every pending open, oldest first.
    pub fn grant_all(&mut self) -> Vec<StreamId> {
        let pending = self.pending_opens();
        pending.into_iter().map(|o| self.grant(o.token)).collect()
    }

    /// The stream granted for the most recent open.
    pub fn last_opened(&self) -> StreamId {
        self.opens
            .last()
            .and_then(|o| o.stream)
            .expect("last open granted")
    }

    /// Streams we opened (granted) in `dir`, in open order.
    pub fn opened(&self, dir: Dir) -> Vec<StreamId> {
        self.opens
            .iter()
            .filter(|o| o.dir == dir)
            .filter_map(|o| o.stream)
            .collect()
    }

    /// The peer opens a bidi stream.
    pub fn peer_bi(&mut self) -> StreamId {
        self.peer_open(Dir::Bi)
    }

    /// The peer opens a uni stream.
    pub fn peer_uni(&mut self) -> StreamId {
        self.peer_open(Dir::Uni)
    }

    fn peer_open(&mut self, dir: Dir) -> StreamId {
        let id = StreamId(self.next_peer);
        self.next_peer += 1;
        self.peer_streams.insert(id, dir);
        self.s.handle_stream_opened(self.now, id, dir);
        self.pump();
        id
    }

    /// Peer bytes on a stream.
    pub fn send(&mut self, id: StreamId, data: &[u8]) {
        self.s
            .handle_stream_data(self.now, id, Bytes::copy_from_slice(data), false);
        self.pump();
    }

    /// Peer bytes then FIN.
    pub fn send_fin(&mut self, id: StreamId, data: &[u8]) {
        self.s
            .handle_stream_data(self.now, id, Bytes::copy_from_slice(data), true);
        self.pump();
    }

    /// Peer bytes one at a time (then FIN if asked).
    pub fn send_bytewise(&mut self, id: StreamId, data: &[u8], fin: bool) {
        for b in data {
            self.send(id, &[*b]);
        }
        if fin {
            self.fin(id);
        }
    }

    /// Peer FIN with no data.
    pub fn fin(&mut self, id: StreamId) {
        self.send_fin(id, &[]);
    }

    /// A new peer bidi stream carrying `data`.
    pub fn peer_bi_with(&mut self, data: &[u8]) -> StreamId {
        let id = self.peer_bi();
        self.send(id, data);
        id
    }

    /// A new peer uni stream carrying `data` (with FIN when `fin`).
    pub fn peer_uni_with(&mut self, data: &[u8], fin: bool) -> StreamId {
        let id = self.peer_uni();
        if fin {
            self.send_fin(id, data);
        } else {
            self.send(id, data);
        }
        id
    }

    /// RESET_STREAM from the peer.
    pub fn peer_reset(&mut self, id: StreamId, code: StreamCode) {
        self.s.handle_stream_reset(self.now, id, code);
        self.pump();
    }

    /// STOP_SENDING from the peer.
    pub fn peer_stop(&mut self, id: StreamId, code: StreamCode) {
        self.s.handle_stop_sending(self.now, id, code);
        self.pump();
    }

    /// Everything we sent on `id` was acknowledged.
    pub fn ack(&mut self, id: StreamId) {
        // Only a FIN can be acknowledged in full (tests also feed bogus acks as garbage).
        if self.finished.contains(&id) {
            self.acked.insert(id);
        }
        self.s.handle_stream_finished(self.now, id);
        self.pump();
    }

    /// A datagram from the peer.
    pub fn datagram(&mut self, data: &[u8]) {
        self.s
            .handle_datagram(self.now, Bytes::copy_from_slice(data));
        self.pump();
    }

    /// Move the clock forward and call `handle_timeout`.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.s.handle_timeout(self.now);
        self.pump();
    }

    /// Move the clock to `t0 + at` (never backwards) and call `handle_timeout`.
    pub fn at(&mut self, at: Duration) {
        let target = self.t0 + at;
        assert!(target >= self.now, "time goes forward");
        self.now = target;
        self.s.handle_timeout(self.now);
        self.pump();
    }

    /// Move the clock to `poll_timeout()` and fire it; returns the instant (offset from t0).
    pub fn fire_timeout(&mut self) -> Option<Duration> {
        let at = self.s.poll_timeout()?;
        if at > self.now {
            self.now = at;
        }
        self.s.handle_timeout(self.now);
        self.pump();
        Some(at - self.t0)
    }

    /// `poll_timeout` as an offset from t0.
    pub fn timeout_offset(&self) -> Option<Duration> {
        self.s.poll_timeout().map(|t| t - self.t0)
    }

    // ---------------------------------------------------------------------------------------
    // Reading what the session did

    pub fn take_cmds(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.cmds)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Commands (since the last take) that touch `id`.
    pub fn cmds_on(&self, id: StreamId) -> Vec<Command> {
        self.cmds
            .iter()
            .filter(|c| match c {
                Command::Write { stream, .. }
                | Command::Finish { stream }
                | Command::Reset { stream, .. }
                | Command::Stop { stream, .. }
                | Command::SetPriority { stream, .. } => *stream == id,
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Every byte written to `id` so far.
    pub fn all_written(&self, id: StreamId) -> &[u8] {
        self.written.get(&id).map(Vec::as_slice).unwrap_or_default()
    }

    /// Bytes written to `id` not yet consumed by the `next_*` readers.
    pub fn unread(&self, id: StreamId) -> &[u8] {
        let pos = self.read_pos.get(&id).copied().unwrap_or(0);
        &self.all_written(id)[pos..]
    }

    /// Consume every unread byte of `id`.
    pub fn take_unread(&mut self, id: StreamId) -> Vec<u8> {
        let out = self.unread(id).to_vec();
        *self.read_pos.entry(id).or_default() += out.len();
        out
    }

    fn consume(&mut self, id: StreamId, n: usize) {
        *self.read_pos.entry(id).or_default() += n;
    }

    /// Decode the next varint written to `id` (a stream type).
    pub fn next_varint(&mut self, id: StreamId) -> u64 {
        let buf = self.unread(id);
        let mut cursor = Cursor::new(buf);
        let value = cursor.varint().expect("a varint was written");
        let n = buf.len() - cursor.remaining();
        self.consume(id, n);
        value
    }

    /// Decode the next message written to `id`.
    pub fn next_msg<M: Message>(&mut self, id: StreamId) -> M {
        let buf = self.unread(id);
        let mut cursor = Cursor::new(buf);
        let m = M::decode(&mut cursor, self.v)
            .unwrap_or_else(|e| panic!("{} on {id:?}: {e} (bytes {buf:02x?})", M::NAME));
        let n = buf.len() - cursor.remaining();
        self.consume(id, n);
        m
    }

    /// Decode the next subscribe response written to `id`.
    pub fn next_response(&mut self, id: StreamId) -> SubscribeResponse {
        let buf = self.unread(id);
        let mut cursor = Cursor::new(buf);
        let m = SubscribeResponse::decode(&mut cursor, self.v)
            .unwrap_or_else(|e| panic!("subscribe response on {id:?}: {e} (bytes {buf:02x?})"));
        let n = buf.len() - cursor.remaining();
        self.consume(id, n);
        m
    }

    /// Assert nothing more was written to `id`.
    pub fn assert_drained(&self, id: StreamId) {
        assert!(
            self.unread(id).is_empty(),
            "unexpected bytes on {id:?}: {:02x?}",
            self.unread(id)
        );
    }

    /// Decode a whole group stream we wrote: header and `(timestamp, payload)` frames; the
    /// bool says whether the stream was finished on a frame boundary.
    pub fn group_written(&self, id: StreamId) -> (GroupHeader, Vec<(u64, Vec<u8>)>, bool) {
        let fin = self.finished.contains(&id);
        let mut reader = GroupStreamReader::new(self.v, Limits::default());
        reader.push(Bytes::copy_from_slice(self.all_written(id)), fin);
        let mut header = None;
        let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut ended = false;
        while let Some(item) = reader.read().expect("a well-formed group stream") {
            match item {
                GroupItem::Header(h) => header = Some(h),
                GroupItem::Frame(FrameItem::Header { timestamp, .. }) => {
                    frames.push((timestamp, Vec::new()));
                }
                GroupItem::Frame(FrameItem::Payload { chunk, .. }) => {
                    frames
                        .last_mut()
                        .expect("frame")
                        .1
                        .extend_from_slice(&chunk);
                }
                GroupItem::Frame(FrameItem::End) => ended = true,
            }
        }
        (header.expect("GROUP header"), frames, ended)
    }

    /// Decode bare frames (a FETCH reply we wrote), skipping `skip` bytes of request echo.
    pub fn frames_written(&self, id: StreamId) -> (Vec<(u64, Vec<u8>)>, bool) {
        let fin = self.finished.contains(&id);
        let mut reader = StreamReader::new();
        reader.push(Bytes::copy_from_slice(self.unread(id)));
        if fin {
            reader.finish();
        }
        let mut frames = moq_proto::wire::FrameDecoder::new(self.v);
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut ended = false;
        while let Some(item) = frames
            .read(&mut reader, &Limits::default())
            .expect("well-formed frames")
        {
            match item {
                FrameItem::Header { timestamp, .. } => out.push((timestamp, Vec::new())),
                FrameItem::Payload { chunk, .. } => {
                    out.last_mut().expect("frame").1.extend_from_slice(&chunk);
                }
                FrameItem::End => {
                    ended = true;
                    break;
                }
            }
        }
        (out, ended)
    }

    /// Session close code, if it closed.
    pub fn close_code(&self) -> Option<SessionCode> {
        self.closed.as_ref().map(|(code, _)| *code)
    }

    /// Assert the session closed itself with `code`, and reported it.
    pub fn assert_closed(&self, code: SessionCode) {
        assert_eq!(
            self.close_code(),
            Some(code),
            "closed: {:?}, events {:?}",
            self.closed,
            self.events
        );
        assert!(self.s.is_closed());
        assert!(
            self.events.iter().any(|e| matches!(
                e,
                Event::Closed { code: c, local: true, .. } if *c == code
            )),
            "no Closed event: {:?}",
            self.events
        );
    }

    /// Assert the session is still open.
    pub fn assert_open(&self) {
        assert!(
            !self.s.is_closed(),
            "closed: {:?} {:?}",
            self.closed,
            self.events
        );
    }

    /// Assert every table is empty.
    pub fn assert_idle(&self) {
        assert!(self.s.is_idle(), "not idle: {}", self.s.tables());
    }

    /// Frame and group events for one subscription, as a compact log.
    pub fn media_log(&self, sub: SubscriptionId) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::GroupStart { id, seq } if *id == sub => Some(format!("start {seq}")),
                Event::FrameStart {
                    id,
                    seq,
                    timestamp,
                    size,
                    chunk,
                    remaining,
                } if *id == sub => Some(format!(
                    "frame {seq} ts={timestamp:?} size={size} {:?} rem={remaining}",
                    String::from_utf8_lossy(chunk)
                )),
                Event::FramePayload {
                    id,
                    seq,
                    chunk,
                    remaining,
                } if *id == sub => Some(format!(
                    "payload {seq} {:?} rem={remaining}",
                    String::from_utf8_lossy(chunk)
                )),
                Event::GroupEnd { id, seq, end } if *id == sub => {
                    Some(format!("end {seq} {end:?}"))
                }
                _ => None,
            })
            .collect()
    }
}

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
