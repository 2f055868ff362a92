//! The publisher role: serving a peer's subscriptions with ranked, expiring group streams
//! (docs/wire.md §3.2, §3.7, §5.6-§5.8, §5.12, §5.13).
//!
//! **Ranking.** Every group stream gets a QUIC send priority (higher first) built from, most
//! significant first: the subscriber priority (8 bits), the publisher priority (8 bits), the
//! subscription's age rank (5 bits; older subscriptions first, as the reference ranks by lowest
//! Subscribe ID) and the group's offset from its subscription's base sequence (11 bits; newest
//! first, or oldest first when the subscriber asked for ordered delivery). A group's priority
//! depends only on its own sequence, so a new group never changes the live ones' priorities;
//! subscriptions coming and going, a SUBSCRIBE_UPDATE, or (every 2048 groups at most) a new
//! base re-rank a subscription's groups and the changes go out as [`Command::SetPriority`].
//! Like the reference's 255-rank cut-off, ranks beyond the field widths share a value.
//!
//! **Expiry.** A group is never expired while it is the newest. Once a newer group exists, it
//! expires when its arrival age (now minus its first byte's arrival) or, on lite-05, its
//! timestamp age (the newest group's first timestamp minus its own, in milliseconds) reaches
//! the subscriber's max latency: whichever is larger decides. An expired group whose stream is
//! open is reset with 0x34 (Old), even if it was finished but not yet acknowledged (its bytes
//! may still wait in the transport's send buffer); one still waiting for stream credit is
//! dropped for free and reported with SUBSCRIBE_DROP.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::core::{Flow, Role, Session, StreamRef};
use super::live_groups::LiveGroups;
use super::types::*;
use crate::codes::StreamCode;
use crate::wire::{
    Datagram, FrameHeader, GroupHeader, Message, StreamReader, Subscribe, SubscribeDrop,
    SubscribeEnd, SubscribeOk, SubscribeResponse, SubscribeStart, SubscribeUpdate, Timestamps,
    TrackInfo, UniStreamType,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServeState {
    /// SUBSCRIBE arrived; waiting for the application to accept or reject.
    Requested,
    /// Serving groups.
    Active,
}

pub(crate) struct Serve {
    wire_id: u64,
    stream: crate::session::StreamId,
    params: SubscribeParams,
    state: ServeState,
    info: TrackInfo,
    ok_sent: bool,
    /// lite-05: the first group to be served when known before it opens (a track with no
    /// group yet starts where its source starts, which need not be the first to arrive).
    start_hint: Option<u64>,
    /// Group streams not yet fully delivered (acknowledged) or reset.
    groups: LiveGroups,
    /// The track's end (exclusive), once the application ends the subscription.
    end: Option<u64>,
    /// Age rank bits (older subscriptions rank higher).
    age_rank: u8,
    /// Group ranks are offsets of the sequence from this base.
    group_base: u64,
    /// No rebase is tried before this sequence: when live groups span more than the rank
    /// range, a rebase cannot help and must not cost a scan per new group.
    next_rebase: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    Sending,
    /// FIN sent; waiting for the acknowledgement.
    Finished,
}

pub(crate) struct GroupSend {
    serve: ServeId,
    seq: u64,
    pub(super) stream: StreamRef,
    first_ts: Option<u64>,
    timestamps: Timestamps,
    frame_remaining: u64,
    state: SendState,
    priority: i32,
    /// The priority the Open command asked for.
    open_priority: i32,
    /// When its first byte reached us.
    arrival: Instant,
}

impl GroupSend {
    /// FIN sent, acknowledgement pending.
    pub(super) fn awaiting_ack(&self) -> bool {
        self.state == SendState::Finished
    }

    /// Still abortable: being written, or (even if fully written) still waiting for stream
    /// credit, in which case it can be dropped without touching the network.
    fn abortable(&self) -> bool {
        self.state == SendState::Sending || matches!(self.stream, StreamRef::Pending(_))
    }
}

/// The group stream type byte.
const GROUP_TYPE: u8 = UniStreamType::Group.code() as u8;

impl Session {
    // ------------------------------------------------------------------------------------
    // Incoming SUBSCRIBE

    pub(super) fn read_subscribe_request(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        reader: &mut StreamReader,
    ) -> Flow {
        let subscribe = match reader.read_message::<Subscribe>(self.version, &self.cfg.limits) {
            Ok(Some(s)) => s,
            Ok(None) => return self.wait_or_truncated(id, reader, true),
            Err(err) => {
                self.violation(format!("SUBSCRIBE: {err}"));
                return Flow::Wait;
            }
        };
        if self.serve_by_wire.contains_key(&subscribe.id) {
            tracing::debug!(id = subscribe.id, "duplicate subscribe id");
            self.refuse_stream(id, StreamCode::CANCEL);
            return Flow::Wait;
        }
        if self.serves.len() >= self.cfg.max_subscriptions {
            tracing::debug!("too many subscriptions from the peer");
            self.refuse_stream(id, StreamCode::CANCEL);
            return Flow::Wait;
        }
        let params = SubscribeParams {
            priority: subscribe.priority,
            ordered: subscribe.ordered,
            max_latency: subscribe.max_latency,
            start: subscribe.start,
            end: subscribe.end,
        };
        let serve = self.serves.insert(Serve {
            wire_id: subscribe.id,
            stream: id,
            params,
            state: ServeState::Requested,
            info: TrackInfo::default(),
            ok_sent: false,
            start_hint: None,
            groups: LiveGroups::default(),
            end: None,
            age_rank: 0,
            group_base: 0,
            next_rebase: 0,
        });
        self.serve_by_wire.insert(subscribe.id, serve);
        self.emit(Event::Subscribe {
            id: serve,
            broadcast: subscribe.broadcast,
            track: subscribe.track,
            params,
        });
        Flow::Next(Role::Serve(serve))
    }

    pub(super) fn read_serve(
        &mut self,
        now: Instant,
        id: crate::session::StreamId,
        serve: ServeId,
        reader: &mut StreamReader,
    ) -> Flow {
        loop {
            if !self.serves.contains_key(serve) {
                return Flow::Next(Role::Ignore);
            }
            match reader.read_message::<SubscribeUpdate>(self.version, &self.cfg.limits) {
                Ok(Some(update)) => {
                    let params = SubscribeParams {
                        priority: update.priority,
                        ordered: update.ordered,
                        max_latency: update.max_latency,
                        start: update.start,
                        end: update.end,
                    };
                    if let Some(s) = self.serves.get_mut(serve) {
                        s.params = params;
                    }
                    self.rank_groups(serve);
                    self.expire_serve(now, serve);
                    self.emit(Event::SubscribeUpdate { id: serve, params });
                }
                Ok(None) if reader.is_finished() => {
                    // Subscriber FIN: unsubscribe. Answer with our FIN, cancel the groups.
                    self.recv_done(id);
                    self.serve_peer_closed(now, serve, None);
                    return Flow::Wait;
                }
                Ok(None) => return self.wait_or_truncated(id, reader, true),
                Err(err) => {
                    self.violation(format!("SUBSCRIBE_UPDATE: {err}"));
                    return Flow::Wait;
                }
            }
        }
    }

    /// The subscriber cancelled (FIN, `code: None`) or reset the subscription.
    pub(super) fn serve_peer_closed(
        &mut self,
        _now: Instant,
        serve: ServeId,
        code: Option<StreamCode>,
    ) {
        let Some(s) = self.serves.get(serve) else {
            return;
        };
        let stream = s.stream;
        match code {
            None => self.finish(StreamRef::Open(stream)),
            Some(_) => {
                self.close_send_quietly(stream, StreamCode::CANCEL);
                self.stop_stream(stream, StreamCode::CANCEL);
            }
        }
        self.remove_serve(serve, StreamCode::CANCEL);
    }

    /// Forget a serve, resetting its unfinished groups with `code`.
    fn remove_serve(&mut self, serve: ServeId, code: StreamCode) {
        let Some(s) = self.serves.remove(serve) else {
            return;
        };
        self.serve_by_wire.remove(&s.wire_id);
        for group in s.groups.into_ids() {
            if let Some(g) = self.group_sends.remove(group) {
                if g.abortable() {
                    self.reset(g.stream, code);
                } else if let StreamRef::Open(id) = g.stream {
                    // Already fully written; just stop tracking its acknowledgement.
                    self.set_role(id, Role::Ignore);
                    self.send_done(id);
                }
            }
        }
        self.rank_serves();
        self.emit(Event::ServeClosed { id: serve });
    }

    // ------------------------------------------------------------------------------------
    // Application answers

    /// Accept a subscription with the track's properties. `start` is the first group it will
    /// be served, if known (the newest cached group, or where the source of a track with no
    /// group yet starts): lite-03/04 report it in SUBSCRIBE_OK; lite-05 sends SUBSCRIBE_OK
    /// with the first group opened, or this start if lower (a later group can arrive first).
    pub fn accept_serve(
        &mut self,
        id: ServeId,
        info: TrackInfo,
        start: Option<u64>,
    ) -> Result<(), RequestError> {
        let version = self.version;
        let Some(serve) = self.serves.get_mut(id) else {
            return Err(RequestError::Unknown);
        };
        if serve.state != ServeState::Requested {
            return Ok(());
        }
        serve.state = ServeState::Active;
        serve.info = info;
        serve.start_hint = start;
        let stream = serve.stream;
        if !version.is_lite05() {
            // lite-03/04: exactly one OK, right away.
            let ok = SubscribeOk {
                priority: info.priority,
                ordered: info.ordered,
                max_latency: info.max_latency,
                start: serve.params.start.or(start),
                end: serve.params.end,
            };
            serve.ok_sent = true;
            let bytes = self.encode(|sink| SubscribeResponse::Ok(ok).encode(sink, version))?;
            self.write(StreamRef::Open(stream), bytes);
        }
        self.rank_serves();
        Ok(())
    }

    /// The first group of an accepted subscription became known (its source told where it
    /// starts) before any group was served: lite-05's SUBSCRIBE_OK will say it. Nothing to do
    /// on lite-03/04, whose OK went out on acceptance.
    pub fn serve_start_known(&mut self, id: ServeId, start: u64) {
        if let Some(serve) = self.serves.get_mut(id)
            && !serve.ok_sent
        {
            serve.start_hint.get_or_insert(start);
        }
    }

    /// lite-05: SUBSCRIBE_OK says where delivery starts, just before the first group (`seq`)
    /// goes out: the known start if lower (a later group can arrive first). Once per
    /// subscription; `None` if it could not be encoded.
    fn send_start_ok(&mut self, id: ServeId, seq: u64) -> Option<()> {
        let version = self.version;
        let serve = self.serves.get_mut(id)?;
        if serve.ok_sent {
            return Some(());
        }
        serve.ok_sent = true;
        let stream = serve.stream;
        let group = serve.start_hint.map_or(seq, |start| start.min(seq));
        let response = SubscribeResponse::Start(SubscribeStart { group });
        let bytes = self.encode(|sink| response.encode(sink, version)).ok()?;
        self.write(StreamRef::Open(stream), bytes);
        Some(())
    }

    /// Reject a subscription: reset the stream with `code` (0x36 Unroutable, 0x33 NotFound...).
    pub fn reject_serve(&mut self, id: ServeId, code: StreamCode) {
        let Some(serve) = self.serves.get(id) else {
            return;
        };
        let stream = serve.stream;
        self.refuse_stream(stream, code);
        if let Some(s) = self.serves.remove(id) {
            self.serve_by_wire.remove(&s.wire_id);
        }
        self.rank_serves();
    }

    /// The subscription's parameters as last sent by the subscriber.
    pub fn serve_params(&self, id: ServeId) -> Option<SubscribeParams> {
        self.serves.get(id).map(|s| s.params)
    }

    /// End a subscription cleanly: no group at or after `end` will be served.
    ///
    /// Call it once every group below `end` that will be served has been opened. On lite-05 it
    /// sends SUBSCRIBE_END (exclusive, as the reference does); the subscribe stream is then
    /// finished once every group stream was delivered or reset.
    pub fn end_serve(&mut self, id: ServeId, end: u64) {
        let version = self.version;
        let Some(serve) = self.serves.get_mut(id) else {
            return;
        };
        if serve.end.is_some() {
            return;
        }
        serve.end = Some(end);
        let stream = serve.stream;
        if version.is_lite05() {
            let response = SubscribeResponse::End(SubscribeEnd { group: end });
            if let Ok(bytes) = self.encode(|sink| response.encode(sink, version)) {
                self.write(StreamRef::Open(stream), bytes);
            }
        }
        self.try_finish_serve(id);
    }

    /// Abort a subscription: reset the subscribe stream and every group with `code`.
    pub fn abort_serve(&mut self, id: ServeId, code: StreamCode) {
        let Some(serve) = self.serves.get(id) else {
            return;
        };
        let stream = serve.stream;
        self.refuse_stream(stream, code);
        self.remove_serve(id, code);
    }

    /// Tell the subscriber that groups `start..=end` will never come.
    pub fn drop_groups(&mut self, id: ServeId, start: u64, end: u64, code: StreamCode) {
        let version = self.version;
        let Some(serve) = self.serves.get(id) else {
            return;
        };
        let stream = serve.stream;
        let response = SubscribeResponse::Drop(SubscribeDrop {
            start,
            end,
            error: code.0,
        });
        if let Ok(bytes) = self.encode(|sink| response.encode(sink, version)) {
            self.write(StreamRef::Open(stream), bytes);
        }
    }

    fn try_finish_serve(&mut self, id: ServeId) {
        let Some(serve) = self.serves.get(id) else {
            return;
        };
        if serve.end.is_none() || !serve.groups.is_empty() {
            return;
        }
        let stream = serve.stream;
        if self.streams.get(&stream).is_some_and(|s| s.send_open) {
            self.unacked_ends.insert(stream);
        }
        self.finish(StreamRef::Open(stream));
        if let Some(s) = self.serves.remove(id) {
            self.serve_by_wire.remove(&s.wire_id);
        }
        self.rank_serves();
        self.emit(Event::ServeClosed { id });
    }

    // ------------------------------------------------------------------------------------
    // Groups

    /// Whether `seq` is inside the subscriber's requested range.
    pub fn serve_wants(&self, id: ServeId, seq: u64) -> bool {
        self.serves.get(id).is_some_and(|s| {
            s.state == ServeState::Active
                && s.end.is_none()
                && s.params.start.is_none_or(|start| seq >= start)
                && s.params.end.is_none_or(|end| seq <= end)
        })
    }

    /// Open a group stream for subscription `id`. `arrival` is when the group's first byte
    /// reached us and `first_ts` its first frame's timestamp, if known (both drive expiry).
    ///
    /// Returns `None` when the subscription does not want this group (outside its range,
    /// ended, or gone).
    pub fn open_group(
        &mut self,
        now: Instant,
        id: ServeId,
        seq: u64,
        arrival: Instant,
        first_ts: Option<u64>,
    ) -> Option<GroupSendId> {
        if !self.serve_wants(id, seq) {
            return None;
        }
        if self.over_send_budget() {
            self.shed_waiting_groups(id);
        }
        let version = self.version;
        self.send_start_ok(id, seq)?;
        let serve = self.serves.get_mut(id)?;
        let wire_id = serve.wire_id;
        let header = GroupHeader {
            subscribe_id: wire_id,
            sequence: seq,
        };
        let bytes = self
            .encode(|sink| {
                sink.put_u8(GROUP_TYPE);
                header.encode(sink, version)
            })
            .ok()?;
        let group = self.group_sends.insert(GroupSend {
            serve: id,
            seq,
            stream: StreamRef::Closed,
            first_ts,
            timestamps: Timestamps::new(),
            frame_remaining: 0,
            state: SendState::Sending,
            priority: 0,
            open_priority: 0,
            arrival,
        });
        let rebase = {
            let s = &mut self.serves[id];
            let fresh = s.groups.is_empty();
            // Group ranks are offsets from a base sequence; a new base is taken when none is
            // live, or when the offset no longer fits (then every live group is re-ranked).
            let rebase =
                !fresh && seq.saturating_sub(s.group_base) > GROUP_MAX && seq >= s.next_rebase;
            if fresh {
                s.group_base = seq;
            }
            s.groups.insert(group, seq, arrival);
            if let (Some(ts), true) = (first_ts, version.is_lite05()) {
                s.groups.set_first_timestamp(group, seq, ts);
            }
            rebase
        };
        if rebase {
            self.serves[id].next_rebase = seq.saturating_add(GROUP_MAX / 2);
            let lowest = self.serves[id]
                .groups
                .by_arrival()
                .filter_map(|(_, _, k)| self.group_sends.get(k))
                .map(|g| g.seq)
                .min();
            self.serves[id].group_base = lowest.unwrap_or(seq);
            self.rank_groups(id);
        }
        let priority = self.group_priority(id, group);
        let stream = self.open_stream(super::Dir::Uni, Role::GroupSend(group), priority);
        let g = &mut self.group_sends[group];
        g.stream = stream;
        g.priority = priority;
        g.open_priority = priority;
        self.write(stream, bytes);
        self.expire_serve(now, id);
        self.group_sends.contains_key(group).then_some(group)
    }

    /// Start a frame of `size` bytes with timestamp `ts` (track timescale units; ignored before
    /// lite-05), carrying its first payload bytes in `chunk` (may be empty, or the whole
    /// payload). Returns false if the group is gone (expired, stopped, cancelled).
    pub fn write_frame(
        &mut self,
        now: Instant,
        group: GroupSendId,
        ts: u64,
        size: u64,
        chunk: Bytes,
    ) -> bool {
        let version = self.version;
        let Some(g) = self.group_sends.get_mut(group) else {
            return false;
        };
        debug_assert_eq!(g.frame_remaining, 0, "previous frame incomplete");
        debug_assert!(chunk.len() as u64 <= size);
        if self.send_backlog.saturating_add(self.pending_bytes) > self.cfg.max_send_backlog
            && self
                .serves
                .get(g.serve)
                .and_then(|s| s.groups.newest())
                .is_some_and(|(newest, _)| g.seq < newest)
        {
            // The transport is far behind: skip to the newest group rather than queue more of
            // an older one.
            self.abort_group(group, StreamCode::TOO_FAR_BEHIND);
            return false;
        }
        let timestamp_delta = if version.is_lite05() {
            match g.timestamps.delta_for(ts) {
                Ok(delta) => delta,
                Err(_) => {
                    let serve = g.serve;
                    self.abort_group(group, StreamCode::TIMESTAMP_MISMATCH);
                    let _ = serve;
                    return false;
                }
            }
        } else {
            0
        };
        let first_frame = g.first_ts.is_none();
        if first_frame {
            g.first_ts = Some(ts);
        }
        g.frame_remaining = size - chunk.len() as u64;
        let (stream, serve, seq) = (g.stream, g.serve, g.seq);
        if first_frame
            && version.is_lite05()
            && let Some(s) = self.serves.get_mut(serve)
        {
            s.groups.set_first_timestamp(group, seq, ts);
        }
        let header = FrameHeader {
            timestamp_delta,
            size,
        };
        let Ok(bytes) = self.encode(|sink| header.encode(sink, version)) else {
            return false;
        };
        self.write(stream, bytes);
        if !chunk.is_empty() {
            self.write(stream, chunk);
        }
        if first_frame && version.is_lite05() {
            // A newer first timestamp may age older groups out.
            self.expire_serve(now, serve);
        }
        true
    }

    /// More payload for the frame in progress.
    pub fn write_payload(&mut self, group: GroupSendId, chunk: Bytes) -> bool {
        let Some(g) = self.group_sends.get_mut(group) else {
            return false;
        };
        debug_assert!(chunk.len() as u64 <= g.frame_remaining);
        g.frame_remaining = g.frame_remaining.saturating_sub(chunk.len() as u64);
        let stream = g.stream;
        self.write(stream, chunk);
        true
    }

    /// Finish a group stream (FIN after the last frame).
    pub fn finish_group(&mut self, group: GroupSendId) {
        let Some(g) = self.group_sends.get_mut(group) else {
            return;
        };
        if g.state != SendState::Sending {
            return;
        }
        g.state = SendState::Finished;
        let stream = g.stream;
        self.finish(stream);
    }

    /// Bytes held for the peer beyond what it takes (written and not accepted by the
    /// transport, or buffered for streams still waiting for credit) exceed
    /// [`Config::max_send_backlog`](super::Config::max_send_backlog).
    fn over_send_budget(&self) -> bool {
        self.send_backlog.saturating_add(self.pending_bytes) > self.cfg.max_send_backlog
    }

    /// A new group of subscription `id` arrives while over the send budget: its older
    /// groups still waiting for a stream (the peer grants no stream credit, e.g. it does not
    /// read) give way, as older groups behind a blocked transport do. They never reached
    /// the network, so dropping them costs nothing and bounds what a stalled peer pins.
    fn shed_waiting_groups(&mut self, id: ServeId) {
        let Some(serve) = self.serves.get(id) else {
            return;
        };
        let waiting: Vec<GroupSendId> = serve
            .groups
            .by_arrival()
            .filter(|&(_, _, group)| {
                self.group_sends
                    .get(group)
                    .is_some_and(|g| matches!(g.stream, StreamRef::Pending(_)))
            })
            .map(|(_, _, group)| group)
            .collect();
        for group in waiting {
            self.abort_group(group, StreamCode::TOO_FAR_BEHIND);
        }
    }

    /// Abort a group stream with `code` (the publisher abandoned the group).
    pub fn abort_group(&mut self, group: GroupSendId, code: StreamCode) {
        let Some(g) = self.group_sends.remove(group) else {
            return;
        };
        if code == StreamCode::TOO_FAR_BEHIND {
            self.delivery.groups_shed += 1;
        }
        if g.abortable() {
            if matches!(g.stream, StreamRef::Pending(_)) {
                // It never reached the network: tell the subscriber it will not come, as an
                // expired group waiting for credit is reported.
                self.drop_groups(g.serve, g.seq, g.seq, code);
            }
            self.reset(g.stream, code);
        }
        self.forget_group(g.serve, group);
    }

    fn forget_group(&mut self, serve: ServeId, group: GroupSendId) {
        let group_sends = &self.group_sends;
        if let Some(s) = self.serves.get_mut(serve) {
            s.groups.remove(group, |k| group_sends.contains_key(k));
            self.try_finish_serve(serve);
        }
    }

    /// Send a whole single-frame group as a lite-05 datagram. Returns false (nothing sent) if
    /// the subscription does not want it, the version has no datagrams, or it would exceed
    /// 1200 bytes; the caller then uses a stream.
    pub fn send_datagram(&mut self, id: ServeId, seq: u64, ts: u64, payload: &Bytes) -> bool {
        let version = self.version;
        if !version.is_lite05() || !self.serve_wants(id, seq) {
            return false;
        }
        let Some(serve) = self.serves.get_mut(id) else {
            return false;
        };
        let datagram = Datagram {
            subscribe_id: serve.wire_id,
            sequence: seq,
            timestamp: ts,
            payload: payload.clone(),
        };
        if datagram.header_len() + payload.len() > crate::coding::MAX_DATAGRAM_SIZE {
            return false;
        }
        let _ = self.send_start_ok(id, seq);
        let prefix = self.cfg.datagram_prefix.clone();
        let Ok(data) = self.encode(|sink| {
            sink.put_slice(&prefix);
            datagram.encode_header(sink, version)?;
            sink.put_slice(&datagram.payload);
            Ok(())
        }) else {
            return false;
        };
        self.commands.push_back(Command::SendDatagram { data });
        true
    }

    pub(super) fn group_send_opened(&mut self, _now: Instant, group: GroupSendId) {
        // The priority may have changed while the open was pending (the transport opened it
        // with the one in the Open command).
        if let Some(g) = self.group_sends.get(group)
            && g.priority != g.open_priority
        {
            let (stream, priority) = (g.stream, g.priority);
            self.set_priority(stream, priority);
        }
    }

    pub(super) fn group_send_acked(&mut self, _now: Instant, group: GroupSendId) {
        let Some(g) = self.group_sends.get(group) else {
            return;
        };
        if g.state != SendState::Finished {
            return;
        }
        let serve = g.serve;
        self.group_sends.remove(group);
        self.forget_group(serve, group);
    }

    pub(super) fn group_send_stopped(
        &mut self,
        _now: Instant,
        group: GroupSendId,
        _code: StreamCode,
    ) {
        // The transport already reset the stream in answer to STOP_SENDING.
        if let Some(g) = self.group_sends.remove(group) {
            self.forget_group(g.serve, group);
        }
    }

    // ------------------------------------------------------------------------------------
    // Ranking

    fn group_priority(&self, serve: ServeId, group: GroupSendId) -> i32 {
        match (self.serves.get(serve), self.group_sends.get(group)) {
            (Some(s), Some(g)) => rank(s, g.seq),
            _ => 0,
        }
    }

    /// Recompute the priority of every live group of `serve` (after a rebase, or a change of
    /// the subscriber's or publisher's priority, order or age rank), emitting changes.
    fn rank_groups(&mut self, serve: ServeId) {
        let Some(count) = self.serves.get(serve).map(|s| s.groups.slots()) else {
            return;
        };
        for i in 0..count {
            let Some(group) = self.serves.get(serve).and_then(|s| s.groups.get(i)) else {
                break;
            };
            let priority = self.group_priority(serve, group);
            let Some(g) = self.group_sends.get_mut(group) else {
                continue;
            };
            if g.priority != priority {
                g.priority = priority;
                let stream = g.stream;
                self.set_priority(stream, priority);
            }
        }
    }

    /// Recompute every subscription's age rank (older first), re-ranking groups that moved.
    fn rank_serves(&mut self) {
        let mut order: Vec<(u64, ServeId)> =
            self.serves.iter().map(|(k, s)| (s.wire_id, k)).collect();
        order.sort_unstable();
        for (rank, (_, serve)) in order.into_iter().enumerate() {
            let bits = AGE_MAX - rank.min(usize::from(AGE_MAX)) as u8;
            let Some(s) = self.serves.get_mut(serve) else {
                continue;
            };
            if s.age_rank != bits {
                s.age_rank = bits;
                self.rank_groups(serve);
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // Expiry

    /// Expire groups of `serve` that a newer group has aged out. Both indexes are sorted, so
    /// each scan stops at the first group too young to expire.
    fn expire_serve(&mut self, now: Instant, serve: ServeId) {
        let Some(s) = self.serves.get(serve) else {
            return;
        };
        let max_latency = s.params.max_latency;
        let timescale = s.info.timescale.max(1);
        let Some((newest_seq, newest_id)) = s.groups.newest() else {
            return;
        };
        if self
            .latest_only_grace(max_latency, newest_id)
            .is_some_and(|until| now < until)
        {
            return;
        }
        // Every group still tracked is expirable, including one finished but not yet
        // acknowledged: the transport may still hold (and retransmit) its bytes.
        let expires = |seq: u64, id: GroupSendId| {
            seq < newest_seq
                && self
                    .group_sends
                    .get(id)
                    .is_some_and(|g| expirable(g, max_latency))
        };
        let mut expired = Vec::new();
        for (arrival, seq, id) in s.groups.by_arrival() {
            if now.saturating_duration_since(arrival) < max_latency {
                break;
            }
            if expires(seq, id) {
                expired.push(id);
            }
        }
        let newest_ts = self.group_sends.get(newest_id).and_then(|g| g.first_ts);
        if let (true, Some(newest_ts)) = (self.version.is_lite05(), newest_ts) {
            for (ts, seq, id) in s.groups.by_timestamp() {
                if timestamp_age(newest_ts, ts, timescale) < max_latency {
                    break;
                }
                if expires(seq, id) {
                    expired.push(id);
                }
            }
        }
        // A group expired by both ages is listed twice; the second expiry finds it gone.
        for group in expired {
            self.expire_group(serve, group);
        }
    }

    fn expire_group(&mut self, serve: ServeId, group: GroupSendId) {
        let Some(g) = self.group_sends.remove(group) else {
            return;
        };
        self.delivery.groups_expired += 1;
        match g.stream {
            StreamRef::Pending(_) => {
                // Never hit the network: drop it for free and say so.
                self.reset(g.stream, StreamCode::OLD);
                self.drop_groups(serve, g.seq, g.seq, StreamCode::OLD);
            }
            StreamRef::Open(id) if g.awaiting_ack() => {
                // FIN sent but not acknowledged: reset it anyway, so stale bytes still queued
                // in the transport stop competing with newer groups (RESET_STREAM is allowed
                // in QUIC's "Data Sent" state).
                self.commands.push_back(Command::Reset {
                    stream: id,
                    code: StreamCode::OLD,
                });
                self.send_done(id);
            }
            _ => self.reset(g.stream, StreamCode::OLD),
        }
        self.forget_group(serve, group);
    }

    pub(super) fn expire_groups(&mut self, now: Instant) {
        let serves: Vec<ServeId> = self.serves.keys().collect();
        for serve in serves {
            self.expire_serve(now, serve);
        }
    }

    /// The earliest instant a live, non-newest group will reach its max latency (the first
    /// such group in arrival order).
    pub(super) fn publisher_deadline(&self) -> Option<Instant> {
        self.serves
            .values()
            .filter_map(|s| {
                let (newest, newest_id) = s.groups.newest()?;
                let max_latency = s.params.max_latency;
                let grace = self.latest_only_grace(max_latency, newest_id);
                let (arrival, _, _) = s.groups.by_arrival().find(|(_, seq, id)| {
                    *seq < newest
                        && self
                            .group_sends
                            .get(*id)
                            .is_some_and(|g| expirable(g, max_latency))
                })?;
                // A max latency beyond the clock's range never expires anything.
                let due = arrival.checked_add(max_latency)?;
                Some(grace.map_or(due, |until| due.max(until)))
            })
            .min()
    }

    /// With max latency 0 ("latest group only"), older groups expire only
    /// [`LATEST_ONLY_GRACE`] after the newest group began: a group's FIN travels on its own
    /// stream and may reach us just after the next group's first bytes, and resetting a group
    /// its publisher was finishing kills moq-net 0.1 subscribers (see [`expirable`]).
    fn latest_only_grace(&self, max_latency: Duration, newest: GroupSendId) -> Option<Instant> {
        if !max_latency.is_zero() {
            return None;
        }
        let arrival = self.group_sends.get(newest)?.arrival;
        arrival.checked_add(LATEST_ONLY_GRACE)
    }
}

/// How long older groups survive the newest one's start at max latency 0.
const LATEST_ONLY_GRACE: Duration = Duration::from_millis(500);

/// Whether expiry may reset `g`. With max latency 0, a group already completely written (FIN
/// sent, acknowledgement pending) is left to finish: the reference never resets a group after
/// its FIN, and moq-net 0.1 peers (moq-clock 0.10.21) always subscribe with max latency 0 and
/// fail the whole subscription on any group reset, e.g. of the previous minute's clock group.
fn expirable(g: &GroupSend, max_latency: Duration) -> bool {
    !(max_latency.is_zero() && g.awaiting_ack())
}

/// How far `mine` lies behind `newest` (lite-05 timestamps in `timescale` units per second).
fn timestamp_age(newest: u64, mine: u64, timescale: u64) -> Duration {
    let units = newest.saturating_sub(mine);
    let millis = u128::from(units) * 1000 / u128::from(timescale);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// Bits of a group's rank within its subscription.
const GROUP_BITS: u32 = 11;
/// The largest group offset from the base that keeps its own rank.
const GROUP_MAX: u64 = (1 << GROUP_BITS) - 1;
/// The largest subscription age rank (older subscriptions first).
const AGE_MAX: u8 = 31;

/// A group stream's send priority, higher first. From the most significant bits: subscriber
/// priority (8), publisher priority (8), subscription age rank (5), the group's offset from its
/// subscription's base sequence (11; newer higher, or older higher when ordered). A group's
/// priority depends only on its own sequence, so a new group never re-ranks the live ones; a
/// rebase is needed once every 2048 groups at most.
fn rank(s: &Serve, seq: u64) -> i32 {
    let offset = seq.saturating_sub(s.group_base).min(GROUP_MAX) as u32;
    let group = if s.params.ordered {
        GROUP_MAX as u32 - offset
    } else {
        offset
    };
    let value = (u32::from(s.params.priority) << 24)
        | (u32::from(s.info.priority) << 16)
        | (u32::from(s.age_rank) << GROUP_BITS)
        | group;
    // Map the unsigned order onto i32 (quinn-proto's priority type), keeping the order.
    (value ^ 0x8000_0000) as i32
}
