//! The subscriber role: our SUBSCRIBEs, the publisher's responses, group streams and
//! datagrams (docs/wire.md §3.2, §3.7, §3.8).

use std::time::Instant;

use bytes::Bytes;

use super::core::{CONTROL_PRIORITY, Flow, Role, Session, StreamRef};
use super::types::*;
use crate::codes::StreamCode;
use crate::coding::DecodeError;
use crate::wire::{
    BiStreamType, Datagram, FrameDecoder, FrameItem, GroupHeader, Path, StreamReader, Subscribe,
    SubscribeResponse, SubscribeUpdate,
};

slotmap::new_key_type! {
    /// A group stream we are receiving.
    pub(crate) struct GroupRecvId;
}

/// How many recent group sequences a subscription remembers to de-duplicate datagrams.
const RECENT_GROUPS: usize = 32;

pub(crate) struct Subscription {
    pub(super) wire_id: u64,
    pub(super) stream: StreamRef,
    pub(super) ok: bool,
    /// The publisher finished (`Some(None)`) or reset (`Some(Some(code))`) the stream.
    pub(super) publisher_done: Option<Option<StreamCode>>,
    /// Group streams still being received.
    pub(super) open_groups: usize,
    /// Recently seen group sequences (streams and datagrams), a ring.
    recent: [u64; RECENT_GROUPS],
    recent_len: usize,
    recent_next: usize,
}

impl Subscription {
    fn remember(&mut self, seq: u64) -> bool {
        if self.recent[..self.recent_len].contains(&seq) {
            return false;
        }
        self.recent[self.recent_next] = seq;
        self.recent_next = (self.recent_next + 1) % RECENT_GROUPS;
        self.recent_len = (self.recent_len + 1).min(RECENT_GROUPS);
        true
    }
}

pub(crate) struct GroupRecv {
    sub: SubscriptionId,
    seq: u64,
    stream: crate::session::StreamId,
    frames: FrameDecoder,
}

impl Session {
    /// Refuse new requests after close or GOAWAY.
    pub(super) fn check_request(&self) -> Result<(), RequestError> {
        if self.closed {
            Err(RequestError::Closed)
        } else if self.goaway.received || self.goaway.sent {
            Err(RequestError::GoingAway)
        } else {
            Ok(())
        }
    }

    /// Subscribe to `track` of `broadcast` (relative to the session root).
    ///
    /// The Subscribe ID is registered before anything is sent, because group streams can
    /// overtake the publisher's response.
    pub fn subscribe(
        &mut self,
        broadcast: Path,
        track: &str,
        params: SubscribeParams,
    ) -> Result<SubscriptionId, RequestError> {
        self.check_request()?;
        if self.subs.len() >= self.cfg.max_subscriptions {
            return Err(RequestError::TooMany("subscriptions"));
        }
        let wire_id = self.next_sub_wire;
        let message = Subscribe {
            id: wire_id,
            broadcast,
            track: track.to_string(),
            priority: params.priority,
            ordered: params.ordered,
            max_latency: params.max_latency,
            start: params.start,
            end: params.end,
        };
        let bytes = self.encode_message(Some(BiStreamType::Subscribe.code() as u8), &message)?;
        self.next_sub_wire += 1;
        let id = self.subs.insert(Subscription {
            wire_id,
            stream: StreamRef::Closed,
            ok: false,
            publisher_done: None,
            open_groups: 0,
            recent: [0; RECENT_GROUPS],
            recent_len: 0,
            recent_next: 0,
        });
        self.sub_by_wire.insert(wire_id, id);
        let stream = self.open_stream(super::Dir::Bi, Role::Subscribe(id), CONTROL_PRIORITY);
        self.subs[id].stream = stream;
        self.write(stream, bytes);
        Ok(id)
    }

    /// Send SUBSCRIBE_UPDATE: new priority, order, latency and range.
    pub fn update_subscription(
        &mut self,
        id: SubscriptionId,
        params: SubscribeParams,
    ) -> Result<(), RequestError> {
        if self.closed {
            return Err(RequestError::Closed);
        }
        let stream = match self.subs.get(id) {
            Some(sub) if sub.publisher_done.is_none() => sub.stream,
            _ => return Err(RequestError::Unknown),
        };
        let update = SubscribeUpdate {
            priority: params.priority,
            ordered: params.ordered,
            max_latency: params.max_latency,
            start: params.start,
            end: params.end,
        };
        let bytes = self.encode_message(None, &update)?;
        self.write(stream, bytes);
        Ok(())
    }

    /// Cancel a subscription: FIN our side (the publisher answers with its FIN), and stop
    /// every group stream still arriving. No event for it follows except
    /// [`Event::SubscriptionClosed`], at once.
    pub fn unsubscribe(&mut self, id: SubscriptionId) {
        let Some(sub) = self.subs.remove(id) else {
            return;
        };
        self.sub_by_wire.remove(&sub.wire_id);
        match sub.stream {
            StreamRef::Pending(_) => self.reset(sub.stream, StreamCode::CANCEL),
            StreamRef::Open(stream) => {
                self.set_role(stream, Role::Ignore);
                self.finish(sub.stream);
            }
            StreamRef::Closed => {}
        }
        self.stop_groups_of(id, StreamCode::CANCEL, false);
        self.emit(Event::SubscriptionClosed { id, error: None });
    }

    /// Stop every group stream of `sub`, optionally reporting each as stopped.
    fn stop_groups_of(&mut self, sub: SubscriptionId, code: StreamCode, report: bool) {
        let groups: Vec<GroupRecvId> = self
            .group_recvs
            .iter()
            .filter(|(_, g)| g.sub == sub)
            .map(|(k, _)| k)
            .collect();
        for key in groups {
            if let Some(group) = self.group_recvs.remove(key) {
                self.stop_stream(group.stream, code);
                if report {
                    self.emit(Event::GroupEnd {
                        id: sub,
                        seq: group.seq,
                        end: GroupEnd::Stopped(code),
                    });
                }
            }
        }
        if let Some(s) = self.subs.get_mut(sub) {
            s.open_groups = 0;
        }
    }

    pub(super) fn read_subscribe_responses(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        sub: SubscriptionId,
        reader: &mut StreamReader,
    ) -> Flow {
        loop {
            if !self.subs.contains_key(sub) {
                return Flow::Next(Role::Ignore);
            }
            match reader.read_subscribe_response(self.version, &self.cfg.limits) {
                Ok(Some(response)) => {
                    if let Err(reason) = self.on_subscribe_response(sub, response) {
                        self.violation(reason);
                        return Flow::Wait;
                    }
                }
                Ok(None) if reader.is_finished() => {
                    self.recv_done(id);
                    self.subscription_publisher_done(sub, None);
                    return Flow::Wait;
                }
                Ok(None) => return self.wait_or_truncated(id, reader, true),
                Err(err) => {
                    self.violation(format!("subscribe response: {err}"));
                    return Flow::Wait;
                }
            }
        }
    }

    fn on_subscribe_response(
        &mut self,
        id: SubscriptionId,
        response: SubscribeResponse,
    ) -> Result<(), &'static str> {
        let Some(sub) = self.subs.get_mut(id) else {
            return Ok(());
        };
        match response {
            SubscribeResponse::Ok(ok) => {
                // lite-03/04: the first OK accepts; later ones (resolving the start) are
                // reported again so the application learns the start group.
                sub.ok = true;
                self.emit(Event::SubscribeOk {
                    id,
                    info: SubscribeOkInfo {
                        publisher: Some(PublisherParams {
                            priority: ok.priority,
                            ordered: ok.ordered,
                            max_latency: ok.max_latency,
                        }),
                        start: ok.start,
                        end: ok.end,
                    },
                });
            }
            SubscribeResponse::Start(start) => {
                if sub.ok {
                    return Err("second SUBSCRIBE_OK");
                }
                sub.ok = true;
                self.emit(Event::SubscribeOk {
                    id,
                    info: SubscribeOkInfo {
                        publisher: None,
                        start: Some(start.group),
                        end: None,
                    },
                });
            }
            SubscribeResponse::End(end) => {
                self.emit(Event::SubscribeEnd { id, end: end.group });
            }
            SubscribeResponse::Drop(drop) => {
                if !self.version.is_lite05() && !sub.ok {
                    return Err("SUBSCRIBE_DROP before SUBSCRIBE_OK");
                }
                self.emit(Event::GroupsDropped {
                    id,
                    start: drop.start,
                    end: drop.end,
                    code: StreamCode(drop.error),
                });
            }
        }
        Ok(())
    }

    /// The publisher reset (or stopped) the subscribe stream.
    pub(super) fn subscription_reset(
        &mut self,
        _now: Instant,
        sub: SubscriptionId,
        code: StreamCode,
    ) {
        let Some(s) = self.subs.get(sub) else {
            return;
        };
        let stream = s.stream;
        self.reset(stream, StreamCode::CANCEL);
        if let StreamRef::Open(id) = stream {
            self.stop_stream(id, StreamCode::CANCEL);
        }
        self.stop_groups_of(sub, StreamCode::CANCEL, true);
        self.subscription_publisher_done(sub, Some(code));
    }

    fn subscription_publisher_done(&mut self, sub: SubscriptionId, error: Option<StreamCode>) {
        let Some(s) = self.subs.get_mut(sub) else {
            return;
        };
        s.publisher_done = Some(error);
        if error.is_none() {
            // When the peer closes its send side, close ours too.
            let stream = s.stream;
            self.finish(stream);
        }
        self.try_close_subscription(sub);
    }

    fn try_close_subscription(&mut self, sub: SubscriptionId) {
        let Some(s) = self.subs.get(sub) else {
            return;
        };
        let Some(error) = s.publisher_done else {
            return;
        };
        if s.open_groups > 0 {
            return;
        }
        self.sub_by_wire.remove(&s.wire_id);
        self.subs.remove(sub);
        self.emit(Event::SubscriptionClosed { id: sub, error });
    }

    pub(super) fn read_group_header(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        reader: &mut StreamReader,
    ) -> Flow {
        let header = match reader.read_message::<GroupHeader>(self.version, &self.cfg.limits) {
            Ok(Some(header)) => header,
            Ok(None) => return self.wait_or_truncated(id, reader, false),
            Err(err) => {
                self.malformed(id, false, format!("GROUP: {err}"));
                return Flow::Wait;
            }
        };
        let Some(&sub) = self.sub_by_wire.get(&header.subscribe_id) else {
            // Unknown or cancelled subscription: stop it, as the reference does (0x1).
            self.stop_stream(id, StreamCode::CANCEL);
            return Flow::Wait;
        };
        let Some(s) = self.subs.get_mut(sub) else {
            self.stop_stream(id, StreamCode::CANCEL);
            return Flow::Wait;
        };
        s.open_groups += 1;
        s.remember(header.sequence);
        let group = self.group_recvs.insert(GroupRecv {
            sub,
            seq: header.sequence,
            stream: id,
            frames: FrameDecoder::new(self.version),
        });
        self.emit(Event::GroupStart {
            id: sub,
            seq: header.sequence,
        });
        Flow::Next(Role::GroupRecv(group))
    }

    pub(super) fn read_group(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        key: GroupRecvId,
        reader: &mut StreamReader,
    ) -> Flow {
        let lite05 = self.version.is_lite05();
        loop {
            let Some(group) = self.group_recvs.get_mut(key) else {
                return Flow::Next(Role::Ignore);
            };
            let (sub, seq) = (group.sub, group.seq);
            match group.frames.read(reader, &self.cfg.limits) {
                Ok(Some(FrameItem::Header { timestamp, size })) => {
                    // Hand out the header together with the first payload bytes when present.
                    let (chunk, remaining) =
                        match (size > 0).then(|| group.frames.read(reader, &self.cfg.limits)) {
                            Some(Ok(Some(FrameItem::Payload { chunk, remaining }))) => {
                                (chunk, remaining)
                            }
                            Some(Err(err)) => {
                                self.group_malformed(key, err);
                                return Flow::Wait;
                            }
                            _ => (Bytes::new(), size),
                        };
                    self.emit(Event::FrameStart {
                        id: sub,
                        seq,
                        timestamp: lite05.then_some(timestamp),
                        size,
                        chunk,
                        remaining,
                    });
                }
                Ok(Some(FrameItem::Payload { chunk, remaining })) => {
                    self.emit(Event::FramePayload {
                        id: sub,
                        seq,
                        chunk,
                        remaining,
                    });
                }
                Ok(Some(FrameItem::End)) => {
                    self.recv_done(id);
                    self.finish_group_recv(key, GroupEnd::Finished);
                    return Flow::Wait;
                }
                Ok(None) => return Flow::Wait,
                Err(err) => {
                    self.group_malformed(key, err);
                    return Flow::Wait;
                }
            }
        }
    }

    fn group_malformed(&mut self, key: GroupRecvId, err: DecodeError) {
        let code = match &err {
            DecodeError::TooLarge { what: "frame", .. } => StreamCode::FRAME_TOO_LARGE,
            DecodeError::TooLarge { .. } => StreamCode::GROUP_TOO_LARGE,
            DecodeError::TimestampOutOfRange(_) => StreamCode::TIMESTAMP_MISMATCH,
            _ => StreamCode::MALFORMED_TRACK,
        };
        tracing::debug!(%err, "malformed group stream");
        if let Some(group) = self.group_recvs.get(key) {
            let stream = group.stream;
            self.stop_stream(stream, code);
        }
        self.finish_group_recv(key, GroupEnd::Stopped(code));
    }

    fn finish_group_recv(&mut self, key: GroupRecvId, end: GroupEnd) {
        let Some(group) = self.group_recvs.remove(key) else {
            return;
        };
        self.emit(Event::GroupEnd {
            id: group.sub,
            seq: group.seq,
            end,
        });
        if let Some(sub) = self.subs.get_mut(group.sub) {
            sub.open_groups = sub.open_groups.saturating_sub(1);
        }
        self.try_close_subscription(group.sub);
    }

    pub(super) fn group_recv_reset(&mut self, _now: Instant, key: GroupRecvId, code: StreamCode) {
        self.finish_group_recv(key, GroupEnd::Reset(code));
    }

    /// Stop receiving one group of a subscription (the subscription carries on).
    pub fn stop_group(&mut self, id: SubscriptionId, seq: u64) {
        let found = self
            .group_recvs
            .iter()
            .find(|(_, g)| g.sub == id && g.seq == seq)
            .map(|(k, g)| (k, g.stream));
        if let Some((key, stream)) = found {
            self.stop_stream(stream, StreamCode::CANCEL);
            self.finish_group_recv(key, GroupEnd::Stopped(StreamCode::CANCEL));
        }
    }

    pub(super) fn on_datagram(&mut self, _now: Instant, data: Bytes) {
        let datagram =
            match Datagram::decode(&data, self.version, self.cfg.limits.max_datagram_size) {
                Ok(d) => d,
                Err(err) => {
                    // Unreliable and unauthenticated by the stream layer: drop it, never fail.
                    tracing::trace!(%err, "dropping datagram");
                    return;
                }
            };
        let Some(&sub) = self.sub_by_wire.get(&datagram.subscribe_id) else {
            return;
        };
        let Some(s) = self.subs.get_mut(sub) else {
            return;
        };
        if !s.remember(datagram.sequence) {
            return;
        }
        self.emit(Event::Datagram {
            id: sub,
            seq: datagram.sequence,
            timestamp: datagram.timestamp,
            payload: datagram.payload,
        });
    }
}
