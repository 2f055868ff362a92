//! The session object: stream table, command and event queues, dispatch by stream type.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use slotmap::SlotMap;

use super::announce::{Interest, Listener};
use super::publisher::{GroupSend, Serve};
use super::requests::{
    FetchOut, FetchServe, GoawayState, ProbeState, SetupState, TrackQuery, TrackServe,
};
use super::subscriber::{GroupRecv, GroupRecvId, Subscription};
use super::types::*;
use crate::codes::{SessionCode, StreamCode};
use crate::coding::{DecodeError, EncodeError, LenCounter, Sink};
use crate::fxhash::{FxHashMap, FxHashSet};
use crate::wire::{BiStreamType, Message, StreamReader, UniStreamType, Version};

/// Where a stream we asked for stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum StreamRef {
    /// Waiting for the transport to grant credit.
    Pending(OpenToken),
    /// Open.
    Open(StreamId),
    /// Our send side is finished or reset.
    #[default]
    Closed,
}

/// What a stream is for, which decides how its bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    IncomingBi,
    IncomingUni,
    SetupSend,
    SetupRecv,
    ServeRequest,
    Serve(ServeId),
    Subscribe(SubscriptionId),
    GroupHeader,
    GroupRecv(GroupRecvId),
    GroupSend(GroupSendId),
    ListenerRequest,
    Listener(ListenerId),
    Interest(InterestId),
    FetchRequest,
    FetchServe(FetchServeId),
    Fetch(FetchId),
    TrackRequest,
    TrackServe(TrackServeId),
    TrackQuery(TrackQueryId),
    ProbeResponder,
    ProbeRequester,
    GoawayRecv,
    GoawaySend,
    /// Read and discard until the peer closes.
    Ignore,
}

/// What a role handler wants next.
pub(super) enum Flow {
    /// Need more bytes (or nothing more to do now).
    Wait,
    /// The stream changed role; keep reading.
    Next(Role),
}

pub(super) struct Stream {
    pub(super) role: Role,
    pub(super) reader: StreamReader,
    pub(super) send_open: bool,
    pub(super) recv_open: bool,
}

pub(super) struct PendingOpen {
    pub(super) role: Role,
    pub(super) buffer: Vec<Bytes>,
    pub(super) bytes: usize,
    pub(super) fin: bool,
}

/// Groups a session gave up while serving subscribers, by reason (running totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// Older than the max latency when a newer group existed (reset with 0x34 Old).
    pub groups_expired: u64,
    /// Skipped because the transport was too far behind (0x5 Too Far Behind).
    pub groups_shed: u64,
    /// Stopped by the subscriber (STOP_SENDING).
    pub groups_stopped: u64,
}

/// One MOQ Lite session. See the [module docs](super) for the contract.
pub struct Session {
    pub(super) cfg: Config,
    pub(super) version: Version,
    pub(super) closed: bool,
    pub(super) commands: VecDeque<Command>,
    pub(super) events: VecDeque<Event>,
    /// lite-05 server: events held until the client's SETUP arrives.
    pub(super) deferred: VecDeque<Event>,
    pub(super) awaiting_setup: bool,
    arena: BytesMut,
    next_token: u64,
    pub(super) streams: FxHashMap<StreamId, Stream>,
    pub(super) pending: FxHashMap<OpenToken, PendingOpen>,
    /// Subscribe streams whose final FIN (the end of a subscription we served) is not yet
    /// acknowledged: until it is, the subscriber may not know the track ended, so we are
    /// still delivering (a publisher that closed now could lose that end).
    pub(super) unacked_ends: FxHashSet<StreamId>,
    pub(super) pending_bytes: usize,
    /// Bytes the transport holds that it could not accept yet (last reported).
    pub(super) send_backlog: usize,
    /// Groups given up while serving (for metrics).
    pub(super) delivery: DeliveryStats,

    pub(super) subs: SlotMap<SubscriptionId, Subscription>,
    pub(super) sub_by_wire: FxHashMap<u64, SubscriptionId>,
    pub(super) next_sub_wire: u64,
    pub(super) group_recvs: SlotMap<GroupRecvId, GroupRecv>,

    pub(super) serves: SlotMap<ServeId, Serve>,
    pub(super) serve_by_wire: FxHashMap<u64, ServeId>,
    pub(super) group_sends: SlotMap<GroupSendId, GroupSend>,

    pub(super) interests: SlotMap<InterestId, Interest>,
    pub(super) listeners: SlotMap<ListenerId, Listener>,
    pub(super) fetches: SlotMap<FetchId, FetchOut>,
    pub(super) fetch_serves: SlotMap<FetchServeId, FetchServe>,
    pub(super) track_queries: SlotMap<TrackQueryId, TrackQuery>,
    pub(super) track_serves: SlotMap<TrackServeId, TrackServe>,

    pub(super) probe: ProbeState,
    pub(super) goaway: GoawayState,
    pub(super) setup: SetupState,
}

/// Most events held back while a lite-05 server waits for the client's SETUP.
const MAX_DEFERRED_EVENTS: usize = 4096;

/// Control streams get the highest send priority, so they never starve behind media.
pub(super) const CONTROL_PRIORITY: i32 = i32::MAX;

/// Control-stream writes shorter than this join the previous write queued for the stream.
const COALESCE_BELOW: usize = 512;
/// The largest write that coalescing builds.
const COALESCED_MAX: usize = 16 * 1024;
/// The first allocation of a coalesced write.
const COALESCED_CAPACITY: usize = 4 * 1024;

impl Session {
    /// A new session for `config.version`. On lite-05 it immediately asks to open its SETUP
    /// stream.
    pub fn new(config: Config, _now: Instant) -> Self {
        let version = config.version;
        let mut session = Self {
            awaiting_setup: version.is_lite05() && config.side == Side::Server,
            version,
            closed: false,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            deferred: VecDeque::new(),
            arena: BytesMut::new(),
            next_token: 0,
            streams: FxHashMap::default(),
            pending: FxHashMap::default(),
            unacked_ends: FxHashSet::default(),
            pending_bytes: 0,
            send_backlog: 0,
            delivery: DeliveryStats::default(),
            subs: SlotMap::with_key(),
            sub_by_wire: FxHashMap::default(),
            next_sub_wire: 0,
            group_recvs: SlotMap::with_key(),
            serves: SlotMap::with_key(),
            serve_by_wire: FxHashMap::default(),
            group_sends: SlotMap::with_key(),
            interests: SlotMap::with_key(),
            listeners: SlotMap::with_key(),
            fetches: SlotMap::with_key(),
            fetch_serves: SlotMap::with_key(),
            track_queries: SlotMap::with_key(),
            track_serves: SlotMap::with_key(),
            probe: ProbeState::default(),
            goaway: GoawayState::default(),
            setup: SetupState::default(),
            cfg: config,
        };
        if version.is_lite05() {
            session.send_setup();
        }
        session
    }

    /// The negotiated version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// True once the session is closed (locally or by the peer).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True when no request, subscription or stream state is left (used by tests to prove
    /// cleanup).
    pub fn is_idle(&self) -> bool {
        self.subs.is_empty()
            && self.sub_by_wire.is_empty()
            && self.group_recvs.is_empty()
            && self.serves.is_empty()
            && self.serve_by_wire.is_empty()
            && self.group_sends.is_empty()
            && self.interests.is_empty()
            && self.listeners.is_empty()
            && self.fetches.is_empty()
            && self.fetch_serves.is_empty()
            && self.track_queries.is_empty()
            && self.track_serves.is_empty()
            && self.pending.is_empty()
            && self.pending_bytes == 0
            && self.streams.values().all(|s| {
                matches!(
                    s.role,
                    Role::SetupSend
                        | Role::SetupRecv
                        | Role::ProbeResponder
                        | Role::ProbeRequester
                        | Role::GoawayRecv
                        | Role::GoawaySend
                )
            })
    }

    /// True while we still serve something to the peer: a subscription, a group stream not
    /// yet acknowledged, a subscription's end not yet acknowledged, or a FETCH.
    pub fn is_delivering(&self) -> bool {
        !self.serves.is_empty()
            || !self.group_sends.is_empty()
            || !self.fetch_serves.is_empty()
            || !self.unacked_ends.is_empty()
    }

    /// How many entries each of the session's tables holds: for leak checks, metrics, and
    /// the fuzzer's memory-cap check. Every table of the session is in it (the compiler
    /// checks: this function names every field of `Session`).
    pub fn tables(&self) -> SessionTables {
        let Self {
            cfg: _,
            version: _,
            closed: _,
            commands,
            events,
            deferred,
            awaiting_setup: _,
            arena: _,
            next_token: _,
            streams,
            pending,
            unacked_ends,
            pending_bytes,
            send_backlog: _,
            delivery: _,
            subs,
            sub_by_wire,
            next_sub_wire: _,
            group_recvs,
            serves,
            serve_by_wire,
            group_sends,
            interests,
            listeners,
            fetches,
            fetch_serves,
            track_queries,
            track_serves,
            probe: _,
            goaway: _,
            setup: _,
        } = self;
        SessionTables {
            streams: streams.len(),
            pending_opens: pending.len(),
            pending_bytes: *pending_bytes,
            unacked_ends: unacked_ends.len(),
            subscriptions: subs.len().max(sub_by_wire.len()),
            group_recvs: group_recvs.len(),
            serves: serves.len().max(serve_by_wire.len()),
            group_sends: group_sends.len(),
            interests: interests.len(),
            listeners: listeners.len(),
            fetches: fetches.len(),
            fetch_serves: fetch_serves.len(),
            track_queries: track_queries.len(),
            track_serves: track_serves.len(),
            commands: commands.len(),
            events: events.len() + deferred.len(),
        }
    }

    // ------------------------------------------------------------------------------------
    // Outputs

    /// The next command for the transport.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        [
            self.publisher_deadline(),
            self.probe.deadline(),
            self.goaway.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ------------------------------------------------------------------------------------
    // Inputs

    /// The peer opened a stream.
    pub fn handle_stream_opened(&mut self, _now: Instant, id: StreamId, dir: Dir) {
        if self.closed || self.streams.contains_key(&id) {
            return;
        }
        if self.streams.len() >= self.cfg.max_streams {
            // Over the cap: refuse this one stream, the session carries on.
            self.commands.push_back(Command::Stop {
                stream: id,
                code: StreamCode::CANCEL,
            });
            if dir == Dir::Bi {
                self.commands.push_back(Command::Reset {
                    stream: id,
                    code: StreamCode::CANCEL,
                });
            }
            return;
        }
        let (role, send_open) = match dir {
            Dir::Bi => (Role::IncomingBi, true),
            Dir::Uni => (Role::IncomingUni, false),
        };
        self.streams.insert(
            id,
            Stream {
                role,
                reader: StreamReader::new(),
                send_open,
                recv_open: true,
            },
        );
    }

    /// Ordered bytes arrived on a stream; `fin` marks its end.
    pub fn handle_stream_data(&mut self, now: Instant, id: StreamId, data: Bytes, fin: bool) {
        self.handle_stream_chunks(now, id, std::iter::once(data), fin);
    }

    /// Several consecutive chunks of one stream at once (what one transport read returns);
    /// `fin` marks the end after the last. Equivalent to one `handle_stream_data` per chunk,
    /// with one stream lookup and one decoding pass.
    pub fn handle_stream_chunks(
        &mut self,
        now: Instant,
        id: StreamId,
        chunks: impl IntoIterator<Item = Bytes>,
        fin: bool,
    ) {
        if self.closed {
            return;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if !stream.recv_open {
            return;
        }
        for chunk in chunks {
            stream.reader.push(chunk);
        }
        if fin {
            stream.reader.finish();
        }
        let mut reader = std::mem::take(&mut stream.reader);
        let mut role = stream.role;
        loop {
            match self.read_stream(now, id, role, &mut reader) {
                Flow::Wait => break,
                Flow::Next(next) => {
                    role = next;
                    match self.streams.get_mut(&id) {
                        Some(s) => s.role = next,
                        None => break,
                    }
                }
            }
            if self.closed {
                return;
            }
        }
        if let Some(stream) = self.streams.get_mut(&id)
            && stream.recv_open
        {
            if reader.buffered() > self.cfg.max_stream_buffer {
                // A header larger than anything legitimate: treat it as malformed.
                self.malformed(
                    id,
                    stream_role_is_control(role),
                    "stream buffer cap exceeded",
                );
                return;
            }
            stream.reader = reader;
        }
    }

    /// The peer reset its send side of a stream with `code`.
    pub fn handle_stream_reset(&mut self, now: Instant, id: StreamId, code: StreamCode) {
        if self.closed {
            return;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if !stream.recv_open {
            return;
        }
        let role = stream.role;
        self.recv_done(id);
        self.on_peer_reset(now, id, role, code);
    }

    /// Groups this session gave up while serving, by reason (running totals).
    pub fn delivery_stats(&self) -> DeliveryStats {
        self.delivery
    }

    /// Bytes the transport could not accept yet, as last reported.
    pub fn send_backlog(&self) -> usize {
        self.send_backlog
    }

    /// The peer asked us to stop sending on a stream.
    pub fn handle_stop_sending(&mut self, now: Instant, id: StreamId, code: StreamCode) {
        if self.unacked_ends.remove(&id) {
            self.forget_if_done(id);
        }
        if self.closed {
            return;
        }
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        if !stream.send_open {
            return;
        }
        let role = stream.role;
        // A stopped send side must be reset; echo the code.
        self.commands.push_back(Command::Reset { stream: id, code });
        self.send_done(id);
        self.on_peer_stop(now, id, role, code);
    }

    /// Everything we sent on a stream, FIN included, was acknowledged.
    pub fn handle_stream_finished(&mut self, now: Instant, id: StreamId) {
        self.unacked_ends.remove(&id);
        if self.closed {
            return;
        }
        if let Some(Role::GroupSend(group)) = self.streams.get(&id).map(|s| s.role) {
            self.group_send_acked(now, group);
        }
        // Other roles have nothing to wait for: their state went when the FIN was sent.
        if let Some(stream) = self.streams.get(&id)
            && !stream.send_open
            && !stream.recv_open
        {
            self.streams.remove(&id);
        }
    }

    /// A [`Command::Open`] was fulfilled with stream `id`.
    pub fn handle_open_granted(&mut self, now: Instant, token: OpenToken, id: StreamId) {
        let Some(open) = self.pending.remove(&token) else {
            // Cancelled meanwhile (or closed): the transport should not have granted it.
            if !self.closed {
                self.commands.push_back(Command::Reset {
                    stream: id,
                    code: StreamCode::CANCEL,
                });
            }
            return;
        };
        self.pending_bytes -= open.bytes;
        if self.closed {
            return;
        }
        let recv_open = role_is_bidi(open.role);
        self.streams.insert(
            id,
            Stream {
                role: open.role,
                reader: StreamReader::new(),
                send_open: true,
                recv_open,
            },
        );
        self.bind_stream(now, open.role, token, id);
        for data in open.buffer {
            self.push_write(id, data);
        }
        if open.fin {
            self.commands.push_back(Command::Finish { stream: id });
            self.send_done(id);
        }
    }

    /// The transport now holds `bytes` of our writes that it could not accept yet (flow
    /// control or congestion). Only recorded: past [`Config::max_send_backlog`] the next frame
    /// of an older group aborts that group.
    pub fn handle_send_backlog(&mut self, bytes: usize) {
        self.send_backlog = bytes;
    }

    /// A datagram arrived.
    pub fn handle_datagram(&mut self, now: Instant, data: Bytes) {
        if self.closed {
            return;
        }
        self.on_datagram(now, data);
    }

    /// Time passed: expire groups, re-send probe reports, enforce the GOAWAY deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.expire_groups(now);
        self.probe_timeout(now);
        if self.goaway.deadline().is_some_and(|d| d <= now) {
            self.close(SessionCode::GOAWAY_TIMEOUT, "goaway deadline passed");
        }
    }

    /// New transport statistics (for PROBE reports).
    pub fn handle_stats(&mut self, now: Instant, stats: TransportStats) {
        if self.closed {
            return;
        }
        self.probe_stats(now, stats);
    }

    /// The connection is gone (closed by the peer, timed out, or lost).
    pub fn handle_connection_lost(&mut self, _now: Instant, code: SessionCode, reason: &str) {
        if self.closed {
            return;
        }
        self.shutdown(code, reason.to_string(), false);
    }

    /// Close the session with a code and a reason.
    pub fn close(&mut self, code: SessionCode, reason: &str) {
        if self.closed {
            return;
        }
        self.commands.push_back(Command::Close {
            code,
            reason: reason.to_string(),
        });
        self.shutdown(code, reason.to_string(), true);
    }

    fn shutdown(&mut self, code: SessionCode, reason: String, local: bool) {
        self.closed = true;
        // Every handle dies with the session; drop all state at once.
        self.streams.clear();
        self.unacked_ends.clear();
        for (token, _) in self.pending.drain() {
            self.commands.push_back(Command::CancelOpen { token });
        }
        self.pending_bytes = 0;
        self.subs.clear();
        self.sub_by_wire.clear();
        self.group_recvs.clear();
        self.serves.clear();
        self.serve_by_wire.clear();
        self.group_sends.clear();
        self.interests.clear();
        self.listeners.clear();
        self.fetches.clear();
        self.fetch_serves.clear();
        self.track_queries.clear();
        self.track_serves.clear();
        self.deferred.clear();
        self.events.push_back(Event::Closed {
            code,
            reason,
            local,
        });
    }

    /// Close with PROTOCOL_VIOLATION.
    pub(super) fn violation(&mut self, reason: impl std::fmt::Display) {
        let reason = reason.to_string();
        tracing::debug!(%reason, "protocol violation");
        self.close(SessionCode::PROTOCOL_VIOLATION, &reason);
    }

    // ------------------------------------------------------------------------------------
    // Dispatch

    fn read_stream(
        &mut self,
        now: Instant,
        id: StreamId,
        role: Role,
        reader: &mut StreamReader,
    ) -> Flow {
        match role {
            Role::IncomingBi => match reader.read_bi_type(self.version) {
                Ok(Some(ty)) => Flow::Next(match ty {
                    BiStreamType::Announce => Role::ListenerRequest,
                    BiStreamType::Subscribe => Role::ServeRequest,
                    BiStreamType::Fetch => Role::FetchRequest,
                    BiStreamType::Probe => Role::ProbeResponder,
                    BiStreamType::Goaway => Role::GoawayRecv,
                    BiStreamType::Track => Role::TrackRequest,
                }),
                Ok(None) => self.wait_or_truncated(id, reader, false),
                Err(err) => {
                    // Unknown type: reset this one stream, not the session.
                    tracing::debug!(%err, "unknown bidi stream type");
                    self.refuse_stream(id, StreamCode::CANCEL);
                    Flow::Wait
                }
            },
            Role::IncomingUni => match reader.read_uni_type(self.version) {
                Ok(Some(UniStreamType::Group)) => Flow::Next(Role::GroupHeader),
                Ok(Some(UniStreamType::Setup)) if self.setup_seen() => {
                    self.violation("second SETUP stream");
                    Flow::Wait
                }
                Ok(Some(UniStreamType::Setup)) => Flow::Next(Role::SetupRecv),
                Ok(None) => self.wait_or_truncated(id, reader, false),
                Err(err) => {
                    tracing::debug!(%err, "unknown uni stream type");
                    // The reference answers a SETUP stream on 03/04 with STOP_SENDING 0x0.
                    let code = match err {
                        DecodeError::UnknownStreamType(1) => StreamCode::INTERNAL,
                        _ => StreamCode::CANCEL,
                    };
                    self.stop_stream(id, code);
                    Flow::Wait
                }
            },
            Role::SetupRecv => self.read_setup(now, id, reader),
            Role::ServeRequest => self.read_subscribe_request(now, id, reader),
            Role::Serve(serve) => self.read_serve(now, id, serve, reader),
            Role::Subscribe(sub) => self.read_subscribe_responses(now, id, sub, reader),
            Role::GroupHeader => self.read_group_header(now, id, reader),
            Role::GroupRecv(group) => self.read_group(now, id, group, reader),
            Role::ListenerRequest => self.read_announce_request(now, id, reader),
            Role::Listener(listener) => self.read_listener(now, id, listener, reader),
            Role::Interest(interest) => self.read_announcements(now, id, interest, reader),
            Role::FetchRequest => self.read_fetch_request(now, id, reader),
            Role::FetchServe(fetch) => self.read_fetch_serve(now, id, fetch, reader),
            Role::Fetch(fetch) => self.read_fetch_reply(now, id, fetch, reader),
            Role::TrackRequest => self.read_track_request(now, id, reader),
            Role::TrackServe(track) => self.read_track_serve(now, id, track, reader),
            Role::TrackQuery(query) => self.read_track_reply(now, id, query, reader),
            Role::ProbeResponder => self.read_probe_responder(now, id, reader),
            Role::ProbeRequester => self.read_probe_reports(now, id, reader),
            Role::GoawayRecv => self.read_goaway(now, id, reader),
            Role::SetupSend | Role::GroupSend(_) | Role::GoawaySend | Role::Ignore => {
                reader.clear();
                if reader.fin_received() {
                    self.recv_done(id);
                }
                Flow::Wait
            }
        }
    }

    fn on_peer_reset(&mut self, now: Instant, id: StreamId, role: Role, code: StreamCode) {
        match role {
            Role::Serve(serve) => self.serve_peer_closed(now, serve, Some(code)),
            Role::Subscribe(sub) => self.subscription_reset(now, sub, code),
            Role::GroupRecv(group) => self.group_recv_reset(now, group, code),
            Role::Listener(listener) => self.listener_peer_closed(listener, Some(code)),
            Role::Interest(interest) => self.interest_peer_closed(interest, Some(code)),
            Role::FetchServe(fetch) => self.fetch_serve_cancelled(fetch),
            Role::Fetch(fetch) => self.fetch_failed(fetch, code),
            Role::TrackServe(track) => self.track_serve_cancelled(track),
            Role::TrackQuery(query) => self.track_query_failed(query, code),
            Role::SetupRecv => self.violation("SETUP stream reset"),
            // An Announce stream the peer opened is never reset, even before its request.
            Role::ListenerRequest => self.finish(StreamRef::Open(id)),
            Role::IncomingBi
            | Role::ServeRequest
            | Role::FetchRequest
            | Role::TrackRequest
            | Role::GoawayRecv => {
                // Nothing was set up yet (or nothing depends on it): close our side too.
                self.close_send_quietly(id, StreamCode::CANCEL);
            }
            Role::ProbeResponder | Role::ProbeRequester => {
                // Forget the probe stream so no report is written to it and a new one may open.
                self.probe_stream_closed(id);
                self.close_send_quietly(id, StreamCode::CANCEL);
            }
            Role::IncomingUni
            | Role::GroupHeader
            | Role::SetupSend
            | Role::GroupSend(_)
            | Role::GoawaySend
            | Role::Ignore => {}
        }
        let _ = now;
    }

    fn on_peer_stop(&mut self, now: Instant, id: StreamId, role: Role, code: StreamCode) {
        match role {
            Role::GroupSend(group) => {
                self.delivery.groups_stopped += 1;
                self.group_send_stopped(now, group, code)
            }
            Role::Serve(serve) => self.serve_peer_closed(now, serve, Some(code)),
            Role::Subscribe(sub) => self.subscription_reset(now, sub, code),
            Role::Listener(listener) => self.listener_peer_closed(listener, Some(code)),
            Role::Interest(interest) => self.interest_peer_closed(interest, Some(code)),
            Role::FetchServe(fetch) => self.fetch_serve_cancelled(fetch),
            Role::Fetch(fetch) => self.fetch_failed(fetch, code),
            Role::TrackServe(track) => self.track_serve_cancelled(track),
            Role::TrackQuery(query) => self.track_query_failed(query, code),
            Role::ProbeResponder | Role::ProbeRequester => {
                self.probe_stream_closed(id);
                self.stop_stream(id, StreamCode::CANCEL);
            }
            _ => {
                if let Some(stream) = self.streams.get(&id)
                    && stream.recv_open
                {
                    self.stop_stream(id, StreamCode::CANCEL);
                }
            }
        }
    }

    /// Attach a freshly granted stream to the entity that asked for it.
    fn bind_stream(&mut self, now: Instant, role: Role, token: OpenToken, id: StreamId) {
        let bound = StreamRef::Open(id);
        let matches = |r: &StreamRef| *r == StreamRef::Pending(token);
        match role {
            Role::Subscribe(sub) => {
                if let Some(s) = self.subs.get_mut(sub).filter(|s| matches(&s.stream)) {
                    s.stream = bound;
                }
            }
            Role::GroupSend(group) => {
                if let Some(g) = self
                    .group_sends
                    .get_mut(group)
                    .filter(|g| matches(&g.stream))
                {
                    g.stream = bound;
                }
                self.group_send_opened(now, group);
            }
            Role::Interest(interest) => {
                if let Some(i) = self
                    .interests
                    .get_mut(interest)
                    .filter(|i| matches(&i.stream))
                {
                    i.stream = bound;
                }
            }
            Role::Fetch(fetch) => {
                if let Some(f) = self.fetches.get_mut(fetch).filter(|f| matches(&f.stream)) {
                    f.stream = bound;
                }
            }
            Role::TrackQuery(query) => {
                if let Some(q) = self
                    .track_queries
                    .get_mut(query)
                    .filter(|q| matches(&q.stream))
                {
                    q.stream = bound;
                }
            }
            Role::ProbeRequester => self.probe.requester = bound,
            _ => {}
        }
    }

    // ------------------------------------------------------------------------------------
    // Stream helpers shared by every role

    /// Ask the transport for a stream; `role` decides how it is read once open.
    pub(super) fn open_stream(&mut self, dir: Dir, role: Role, priority: i32) -> StreamRef {
        let token = OpenToken(self.next_token);
        self.next_token += 1;
        self.pending.insert(
            token,
            PendingOpen {
                role,
                buffer: Vec::new(),
                bytes: 0,
                fin: false,
            },
        );
        self.commands.push_back(Command::Open {
            token,
            dir,
            priority,
        });
        StreamRef::Pending(token)
    }

    /// Write bytes to a stream we opened (or the send side of a peer's bidi stream).
    pub(super) fn write(&mut self, target: StreamRef, data: Bytes) {
        match target {
            StreamRef::Open(stream) => self.push_write(stream, data),
            StreamRef::Pending(token) => {
                let over = self.pending_bytes + data.len() > self.cfg.max_pending_bytes;
                if let Some(Role::GroupSend(group)) = self.pending.get(&token).map(|o| o.role)
                    && over
                {
                    // `max_pending_bytes` is reached: give this group up as if it had expired
                    // (SUBSCRIBE_DROP, the open cancelled) rather than buffer without bound.
                    self.abort_group(group, StreamCode::TOO_FAR_BEHIND);
                } else if let Some(open) = self.pending.get_mut(&token) {
                    open.bytes += data.len();
                    self.pending_bytes += data.len();
                    open.buffer.push(data);
                }
            }
            StreamRef::Closed => {}
        }
    }

    /// Queue a write. On control streams a small write joins the previous one queued for
    /// the same stream (one copy of a few bytes): a burst of announcements or responses
    /// then reaches the transport as a few chunks instead of thousands, which matters
    /// because a QUIC stack keeps one segment per chunk until it is acknowledged, and
    /// quinn-proto looks segments up linearly for every packet it builds. Group and fetch
    /// payloads are never copied.
    fn push_write(&mut self, stream: StreamId, data: Bytes) {
        // Cheapest tests first: this runs for every write, media included.
        if data.len() < COALESCE_BELOW
            && let Some(Command::Write {
                stream: last,
                data: previous,
            }) = self.commands.back_mut()
            && *last == stream
            && previous.len() + data.len() <= COALESCED_MAX
            && self
                .streams
                .get(&stream)
                .is_some_and(|s| !matches!(s.role, Role::GroupSend(_) | Role::FetchServe(_)))
        {
            let mut merged = match std::mem::take(previous).try_into_mut() {
                // A buffer merged earlier: append in place.
                Ok(merged) => merged,
                Err(shared) => {
                    let mut merged = BytesMut::with_capacity(COALESCED_CAPACITY);
                    merged.extend_from_slice(&shared);
                    merged
                }
            };
            merged.extend_from_slice(&data);
            *previous = merged.freeze();
            return;
        }
        self.commands.push_back(Command::Write { stream, data });
    }

    /// FIN a send side.
    pub(super) fn finish(&mut self, target: StreamRef) {
        match target {
            StreamRef::Open(stream) => {
                // Never FIN a send side that was already finished or reset (e.g. reset in
                // answer to STOP_SENDING just before the role's cleanup FINs it).
                if self.streams.get(&stream).is_some_and(|s| s.send_open) {
                    self.commands.push_back(Command::Finish { stream });
                    self.send_done(stream);
                }
            }
            StreamRef::Pending(token) => {
                if let Some(open) = self.pending.get_mut(&token) {
                    open.fin = true;
                }
            }
            StreamRef::Closed => {}
        }
    }

    /// Reset a send side (or forget a pending open).
    pub(super) fn reset(&mut self, target: StreamRef, code: StreamCode) {
        match target {
            StreamRef::Open(stream) => self.close_send_quietly(stream, code),
            StreamRef::Pending(token) => {
                if let Some(open) = self.pending.remove(&token) {
                    self.pending_bytes -= open.bytes;
                    self.commands.push_back(Command::CancelOpen { token });
                }
            }
            StreamRef::Closed => {}
        }
    }

    /// Reset our send side of `id` if it is still open.
    pub(super) fn close_send_quietly(&mut self, id: StreamId, code: StreamCode) {
        if self.streams.get(&id).is_some_and(|s| s.send_open) {
            self.commands.push_back(Command::Reset { stream: id, code });
            self.send_done(id);
        }
    }

    /// STOP_SENDING the peer's side of `id` and forget what it buffered.
    pub(super) fn stop_stream(&mut self, id: StreamId, code: StreamCode) {
        if self.streams.get(&id).is_some_and(|s| s.recv_open) {
            self.commands.push_back(Command::Stop { stream: id, code });
            self.recv_done(id);
        }
    }

    /// Refuse a peer's stream in both directions.
    pub(super) fn refuse_stream(&mut self, id: StreamId, code: StreamCode) {
        self.stop_stream(id, code);
        self.close_send_quietly(id, code);
    }

    /// Change the priority of an open stream.
    pub(super) fn set_priority(&mut self, target: StreamRef, priority: i32) {
        if let StreamRef::Open(stream) = target {
            self.commands
                .push_back(Command::SetPriority { stream, priority });
        }
    }

    /// Our send side is done.
    pub(super) fn send_done(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.send_open = false;
            // A finished group stream stays until its acknowledgement says it was delivered.
            let awaiting_ack = match stream.role {
                Role::GroupSend(group) => self
                    .group_sends
                    .get(group)
                    .is_some_and(|g| g.awaiting_ack()),
                _ => false,
            };
            let awaiting_ack = awaiting_ack || self.unacked_ends.contains(&id);
            if !stream.recv_open && !awaiting_ack {
                self.streams.remove(&id);
            }
        }
    }

    /// Forget a stream whose two sides are done and whose acknowledgement no one waits for.
    fn forget_if_done(&mut self, id: StreamId) {
        if self
            .streams
            .get(&id)
            .is_some_and(|s| !s.send_open && !s.recv_open)
        {
            self.streams.remove(&id);
        }
    }

    /// The peer's send side is done (FIN consumed, reset, or we stopped it).
    pub(super) fn recv_done(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.recv_open = false;
            stream.reader.clear();
            if !stream.send_open && !self.unacked_ends.contains(&id) {
                self.streams.remove(&id);
            }
        }
    }

    /// Mark a stream's role (used when a request is parsed).
    pub(super) fn set_role(&mut self, id: StreamId, role: Role) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.role = role;
        }
    }

    /// `Wait`, unless FIN arrived with an incomplete item, which is malformed.
    pub(super) fn wait_or_truncated(
        &mut self,
        id: StreamId,
        reader: &StreamReader,
        control: bool,
    ) -> Flow {
        if reader.is_truncated() {
            self.malformed(id, control, "stream ended inside a message");
        } else if reader.is_finished() {
            // FIN with nothing pending before the first message: the peer gave up.
            self.recv_done(id);
            self.close_send_quietly(id, StreamCode::CANCEL);
        }
        Flow::Wait
    }

    /// Malformed input: a control stream closes the session, a data stream is stopped alone.
    pub(super) fn malformed(
        &mut self,
        id: StreamId,
        control: bool,
        reason: impl std::fmt::Display,
    ) {
        if control {
            self.violation(reason);
        } else {
            tracing::debug!(%reason, "malformed stream");
            self.refuse_stream(id, StreamCode::MALFORMED_TRACK);
        }
    }

    /// Queue an event, holding it back while a lite-05 server waits for SETUP.
    pub(super) fn emit(&mut self, event: Event) {
        if self.awaiting_setup {
            if self.deferred.len() >= MAX_DEFERRED_EVENTS {
                self.violation("too many requests before SETUP");
                return;
            }
            self.deferred.push_back(event);
        } else {
            self.events.push_back(event);
        }
    }

    /// Encode a header into the session arena and split it off as `Bytes`.
    ///
    /// The arena is one allocation reused for every header once the previous ones are
    /// released, so steady-state header writes do not allocate.
    pub(super) fn encode<F>(&mut self, f: F) -> Result<Bytes, EncodeError>
    where
        F: Fn(&mut dyn Sink) -> Result<(), EncodeError>,
    {
        let mut counter = LenCounter::default();
        f(&mut counter)?;
        if self.arena.capacity() - self.arena.len() < counter.0 {
            self.arena.reserve(counter.0.max(ARENA_SIZE));
        }
        f(&mut self.arena)?;
        Ok(self.arena.split().freeze())
    }

    /// Encode a size-prefixed message (optionally after a stream type byte).
    pub(super) fn encode_message<M: Message>(
        &mut self,
        stream_type: Option<u8>,
        message: &M,
    ) -> Result<Bytes, EncodeError> {
        let version = self.version;
        self.encode(|sink| {
            if let Some(ty) = stream_type {
                sink.put_u8(ty);
            }
            message.encode(sink, version)
        })
    }
}

/// Arena chunk size: big enough that refills are rare, small enough to be reclaimed quickly.
const ARENA_SIZE: usize = 16 * 1024;

fn role_is_bidi(role: Role) -> bool {
    !matches!(role, Role::SetupSend | Role::GroupSend(_))
}

fn stream_role_is_control(role: Role) -> bool {
    !matches!(
        role,
        Role::GroupHeader | Role::GroupRecv(_) | Role::Fetch(_) | Role::IncomingUni
    )
}
