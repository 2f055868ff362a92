//! Fan-out: delivering a track's groups to its consumers, live and from the cache.

use std::time::Instant;

use bytes::Bytes;

use super::events::SubscriptionEvent;
use super::{ConsumerId, Links, Node, NodeEvent, Owner, Sink};
use crate::codes::StreamCode;
use crate::origin::{GroupState, TrackEnd, TrackId};
use crate::session::SubscribeParams;

/// Bounded ranges up to this many groups are accounted for group by group.
const MAX_TRACKED_RANGE: u64 = 4096;

/// The groups an explicit bounded range expects (`None` when the start is "latest").
pub(super) fn tracked_range_for(
    params: SubscribeParams,
) -> Option<std::collections::BTreeSet<u64>> {
    tracked_range(params.start?, params.end)
}

/// The set of groups a bounded range still expects, if it is small enough to track.
fn tracked_range(start: u64, end: Option<u64>) -> Option<std::collections::BTreeSet<u64>> {
    let end = end?;
    (end >= start && end - start < MAX_TRACKED_RANGE).then(|| (start..=end).collect())
}

impl Node {
    /// Register a consumer on its track and replay the cache: the latest group unless it asked
    /// for an earlier start, then every later cached group.
    pub(super) fn attach(&mut self, now: Instant, consumer: ConsumerId) {
        let Some(c) = self.consumers.get(consumer) else {
            return;
        };
        let track = c.track;
        let requested = c.params.start;
        if let Some(entry) = self.links.entry(track) {
            entry.or_default().consumers.push(consumer);
        }
        let Some(t) = self.origin.track(track) else {
            return;
        };
        let first = match requested {
            Some(start) => Some(start),
            None => t.latest(),
        };
        let Some(first) = first else {
            // Nothing cached yet: every group from now on is new to this consumer, in whatever
            // order the network delivers them (a group whose first packet was lost can arrive
            // after a newer one), so do not let the first arrival pin the start.
            if let Some(c) = self.consumers.get_mut(consumer) {
                c.start.get_or_insert(0);
            }
            return;
        };
        let seqs: Vec<u64> = t
            .groups()
            .map(|g| g.seq())
            .filter(|s| *s >= first)
            .collect();
        let oldest = t.groups().next().map(|g| g.seq());
        // Groups asked for that are older than anything still held will never come.
        if let (Some(start), Some(oldest)) = (requested, oldest)
            && start < oldest
        {
            let end = self
                .consumers
                .get(consumer)
                .and_then(|c| c.params.end)
                .map_or(oldest - 1, |e| e.min(oldest - 1));
            if end >= start {
                self.drop_for(consumer, start, end, StreamCode::EVICTED);
            }
        }
        for seq in seqs {
            self.replay_group(now, consumer, track, seq);
        }
        if let (Some(end), Some(oldest)) = (
            self.consumers.get(consumer).and_then(|c| c.params.end),
            oldest,
        ) && end < oldest
        {
            // The whole bounded range is gone: nothing more will come.
            self.end_consumer(consumer, end + 1, None);
        }
    }

    /// Tell one consumer that groups `start..=end` will never come.
    pub(super) fn drop_for(
        &mut self,
        consumer: ConsumerId,
        start: u64,
        end: u64,
        code: StreamCode,
    ) {
        self.report_drop(consumer, start, end, code);
        // Dropped groups are accounted for: a bounded range may now be complete.
        let first = self
            .consumers
            .get_mut(consumer)
            .and_then(|c| c.outstanding.as_mut())
            .and_then(|o| {
                let gone: Vec<u64> = o.range(start..=end).copied().collect();
                for seq in &gone {
                    o.remove(seq);
                }
                gone.first().copied()
            });
        if let Some(seq) = first {
            self.finish_if_bounded(consumer, seq);
        }
    }

    fn report_drop(&mut self, consumer: ConsumerId, start: u64, end: u64, code: StreamCode) {
        match self.consumers.get(consumer).map(|c| (c.owner, c.accepted)) {
            Some((Owner::Serve(peer, serve), true)) => {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.session.drop_groups(serve, start, end, code);
                    self.touch(peer);
                }
            }
            Some((Owner::Local(id), _)) => self.events.push_back(NodeEvent::Subscription {
                id,
                event: SubscriptionEvent::Dropped { start, end, code },
            }),
            _ => {}
        }
    }

    /// Deliver everything cached of one group to one consumer.
    pub(super) fn replay_group(
        &mut self,
        now: Instant,
        consumer: ConsumerId,
        track: TrackId,
        seq: u64,
    ) {
        if !self.open_for(now, consumer, track, seq) {
            return;
        }
        let Some(group) = self.origin.track(track).and_then(|t| t.group(seq)) else {
            return;
        };
        let state = group.state();
        let frames = group.frames().len();
        for index in 0..frames {
            let Some(group) = self.origin.track(track).and_then(|t| t.group(seq)) else {
                return;
            };
            let meta = group.frames()[index];
            let chunks: Vec<Bytes> = group.frame_chunks(index).to_vec();
            let mut chunks = chunks.into_iter();
            let first = chunks.next().unwrap_or_default();
            self.frame_for(now, consumer, track, seq, meta.timestamp, meta.size, first);
            for chunk in chunks {
                self.payload_for(consumer, track, seq, chunk);
            }
        }
        if state != GroupState::Open {
            self.close_for(consumer, track, seq, state);
        }
    }

    /// Decide whether `consumer` gets group `seq` and open its delivery.
    fn open_for(&mut self, now: Instant, consumer: ConsumerId, track: TrackId, seq: u64) -> bool {
        let Some(c) = self.consumers.get_mut(consumer) else {
            return false;
        };
        // Without an explicit start, the first group delivered is the start (a late joiner
        // begins at the latest group); with one, every group from it is wanted, in any order.
        if c.params.end.is_some_and(|e| seq > e) {
            // At the source groups are created in order, so one past the range means the
            // missing ones will never exist. Through a relay streams interleave: wait for the
            // source's SUBSCRIBE_DROP or the track's end instead.
            let passed = c.passed_end;
            let local = self
                .origin
                .track(track)
                .and_then(|t| self.origin.broadcast(t.broadcast()))
                .is_some_and(|b| b.is_local());
            if local && !passed {
                if let Some(c) = self.consumers.get_mut(consumer) {
                    c.passed_end = true;
                }
                self.finish_if_bounded(consumer, seq);
            }
            return false;
        }
        if c.params.start.is_some_and(|s| seq < s)
            || (c.params.start.is_none() && c.start.is_some_and(|s| seq < s))
            || c.groups.iter().any(|(s, _)| *s == seq)
        {
            return false;
        }
        let owner = c.owner;
        let (arrival, first_ts) = match self.origin.track(track).and_then(|t| t.group(seq)) {
            Some(g) => (g.arrival(), g.first_timestamp()),
            None => (now, None),
        };
        let sink = match owner {
            Owner::Serve(peer, serve) => {
                if !self.consumers[consumer].accepted {
                    self.accept_consumer(consumer);
                }
                let Some(p) = self.peers.get_mut(peer) else {
                    return false;
                };
                match p.session.open_group(now, serve, seq, arrival, first_ts) {
                    Some(group) => {
                        self.touch(peer);
                        Sink::Stream(group)
                    }
                    None => return false,
                }
            }
            Owner::Local(id) => {
                if !self.consumers[consumer].accepted {
                    self.accept_consumer(consumer);
                }
                self.events.push_back(NodeEvent::Subscription {
                    id,
                    event: SubscriptionEvent::Group { seq },
                });
                Sink::Local(0)
            }
        };
        let c = &mut self.consumers[consumer];
        c.start.get_or_insert(seq);
        c.last = Some(c.last.map_or(seq, |l| l.max(seq)));
        c.groups.push((seq, sink));
        if c.outstanding.is_none() {
            c.outstanding = tracked_range(c.params.start.unwrap_or(seq), c.params.end);
        }
        true
    }

    fn sink_of(&self, consumer: ConsumerId, seq: u64) -> Option<Sink> {
        let c = self.consumers.get(consumer)?;
        c.groups
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, sink)| *sink)
    }

    #[allow(clippy::too_many_arguments)]
    fn frame_for(
        &mut self,
        now: Instant,
        consumer: ConsumerId,
        track: TrackId,
        seq: u64,
        ts: u64,
        size: u64,
        chunk: Bytes,
    ) {
        match (
            self.consumers.get(consumer).map(|c| c.owner),
            self.sink_of(consumer, seq),
        ) {
            (Some(Owner::Serve(peer, _)), Some(Sink::Stream(group))) => {
                if let Some(p) = self.peers.get_mut(peer) {
                    if !p.internal {
                        self.stats.frames_out += 1;
                        self.stats.bytes_out += chunk.len() as u64;
                        if let Some(links) = self.links.get_mut(track) {
                            links.frames_out += 1;
                            links.bytes_out += chunk.len() as u64;
                        }
                    }
                    p.session.write_frame(now, group, ts, size, chunk);
                    self.touch_output(peer);
                }
            }
            (Some(Owner::Local(id)), Some(Sink::Local(next))) => {
                self.local_frames(consumer, id, track, seq, next)
            }
            _ => {}
        }
    }

    fn payload_for(&mut self, consumer: ConsumerId, track: TrackId, seq: u64, chunk: Bytes) {
        match (
            self.consumers.get(consumer).map(|c| c.owner),
            self.sink_of(consumer, seq),
        ) {
            (Some(Owner::Serve(peer, _)), Some(Sink::Stream(group))) => {
                if let Some(p) = self.peers.get_mut(peer) {
                    if !p.internal {
                        self.stats.bytes_out += chunk.len() as u64;
                        if let Some(links) = self.links.get_mut(track) {
                            links.bytes_out += chunk.len() as u64;
                        }
                    }
                    p.session.write_payload(group, chunk);
                    self.touch_output(peer);
                }
            }
            (Some(Owner::Local(id)), Some(Sink::Local(next))) => {
                self.local_frames(consumer, id, track, seq, next)
            }
            _ => {}
        }
    }

    fn close_for(&mut self, consumer: ConsumerId, track: TrackId, seq: u64, state: GroupState) {
        let Some(c) = self.consumers.get_mut(consumer) else {
            return;
        };
        let Some(pos) = c.groups.iter().position(|(s, _)| *s == seq) else {
            return;
        };
        let (_, sink) = c.groups.swap_remove(pos);
        let owner = c.owner;
        match (owner, sink) {
            (Owner::Serve(peer, _), Sink::Stream(group)) => {
                if let Some(p) = self.peers.get_mut(peer) {
                    match state {
                        GroupState::Aborted(code) => p.session.abort_group(group, code),
                        _ => p.session.finish_group(group),
                    }
                    self.touch(peer);
                }
            }
            (Owner::Local(id), Sink::Local(next)) => {
                // Put it back so the remaining complete frames go out, then report the end.
                if let Some(c) = self.consumers.get_mut(consumer) {
                    c.groups.push((seq, Sink::Local(next)));
                }
                self.local_frames(consumer, id, track, seq, next);
                if let Some(c) = self.consumers.get_mut(consumer) {
                    c.groups.retain(|(s, _)| *s != seq);
                }
                self.events.push_back(NodeEvent::Subscription {
                    id,
                    event: SubscriptionEvent::GroupEnd { seq, state },
                });
            }
            _ => {}
        }
        self.finish_if_bounded(consumer, seq);
    }

    /// Hand a local consumer every newly complete frame of a group.
    fn local_frames(
        &mut self,
        consumer: ConsumerId,
        id: super::LocalSubId,
        track: TrackId,
        seq: u64,
        mut next: usize,
    ) {
        let Some(group) = self.origin.track(track).and_then(|t| t.group(seq)) else {
            return;
        };
        while next < group.frames().len() && group.frame_complete(next) {
            let meta = group.frames()[next];
            self.events.push_back(NodeEvent::Subscription {
                id,
                event: SubscriptionEvent::Frame {
                    seq,
                    timestamp: meta.timestamp,
                    payload: group.frame_payload(next),
                },
            });
            next += 1;
        }
        if let Some(c) = self.consumers.get_mut(consumer)
            && let Some(entry) = c.groups.iter_mut().find(|(s, _)| *s == seq)
        {
            entry.1 = Sink::Local(next);
        }
    }

    /// A consumer's parameters changed (SUBSCRIBE_UPDATE, or a local update): groups the new
    /// range admits are served from the cache, and the upstream follows the most demanding
    /// consumer's priority and latency.
    pub(super) fn update_consumer(
        &mut self,
        now: Instant,
        consumer: ConsumerId,
        params: SubscribeParams,
    ) {
        let Some(c) = self.consumers.get_mut(consumer) else {
            return;
        };
        let old = c.params;
        c.params = params;
        let track = c.track;
        let first_new = match (old.end, params.end) {
            // The end moved up: groups it used to exclude may be cached already.
            (Some(old_end), Some(new_end)) if new_end > old_end => Some(old_end + 1),
            (Some(old_end), None) => Some(old_end + 1),
            _ => None,
        };
        let first_new = match (first_new, params.start, old.start) {
            // The start moved down: older cached groups are now wanted too.
            (f, Some(new_start), Some(old_start)) if new_start < old_start => {
                Some(f.map_or(new_start, |f| f.min(new_start)))
            }
            (f, _, _) => f,
        };
        if params
            .start
            .is_some_and(|s| old.start.is_none_or(|o| s < o))
            && let Some(c) = self.consumers.get_mut(consumer)
        {
            // An explicit earlier start lifts the "never older than the first delivered" rule.
            c.start = None;
        }
        if let Some(first) = first_new {
            let seqs: Vec<u64> = self
                .origin
                .track(track)
                .map(|t| {
                    t.groups()
                        .map(|g| g.seq())
                        .filter(|s| *s >= first)
                        .collect()
                })
                .unwrap_or_default();
            for seq in seqs {
                self.replay_group(now, consumer, track, seq);
            }
        }
        self.refresh_upstream(track);
    }

    /// Keep the upstream subscription as demanding as the most demanding consumer.
    pub(super) fn refresh_upstream(&mut self, track: TrackId) {
        let Some(links) = self.links.get(track) else {
            return;
        };
        let Some((peer, sub)) = links.upstream else {
            return;
        };
        let wanted = links
            .consumers
            .iter()
            .filter_map(|c| self.consumers.get(*c))
            .map(|c| (c.params.priority, c.params.max_latency))
            .reduce(|a, b| (a.0.max(b.0), a.1.max(b.1)));
        let Some(wanted) = wanted else {
            return;
        };
        if links.upstream_params == Some(wanted) {
            return;
        }
        if let Some(links) = self.links.get_mut(track) {
            links.upstream_params = Some(wanted);
        }
        if let Some(p) = self.peers.get_mut(peer) {
            let start = self.links.get(track).and_then(|l| l.upstream_start);
            let params = SubscribeParams {
                priority: wanted.0,
                max_latency: wanted.1,
                start,
                ..SubscribeParams::default()
            };
            let _ = p.session.update_subscription(sub, params);
            self.touch(peer);
        }
    }

    /// A bounded subscription is complete once every group of its range is accounted for
    /// (delivered, aborted or dropped), or once the source moved past its end with nothing left
    /// in delivery (the missing groups are then reported dropped).
    fn finish_if_bounded(&mut self, consumer: ConsumerId, seq: u64) {
        let Some(c) = self.consumers.get_mut(consumer) else {
            return;
        };
        let Some(end) = c.params.end else {
            return;
        };
        if let Some(outstanding) = c.outstanding.as_mut() {
            outstanding.remove(&seq);
        }
        if !c.groups.is_empty() {
            return;
        }
        let done = match &c.outstanding {
            Some(outstanding) => outstanding.is_empty() || c.passed_end,
            // Untracked (huge) range: done once its end group was opened.
            None => c.last.is_some_and(|l| l >= end) || c.passed_end,
        };
        if !done {
            return;
        }
        let missing: Vec<u64> = c
            .outstanding
            .take()
            .map(|o| o.into_iter().collect())
            .unwrap_or_default();
        for seq in missing {
            // Code 0: simply unavailable (docs/wire.md §4.6).
            self.report_drop(consumer, seq, seq, StreamCode(0));
        }
        self.end_consumer(consumer, end + 1, None);
    }

    /// Tell a consumer its subscription is over (`error: None` = cleanly at `end`) and drop it.
    pub(super) fn end_consumer(
        &mut self,
        consumer: ConsumerId,
        end: u64,
        error: Option<StreamCode>,
    ) {
        let Some(c) = self.consumers.get(consumer) else {
            return;
        };
        match c.owner {
            Owner::Serve(peer, serve) => {
                let accepted = c.accepted;
                if let Some(p) = self.peers.get_mut(peer) {
                    match (error, accepted) {
                        (None, _) => p.session.end_serve(serve, end),
                        (Some(code), true) => p.session.abort_serve(serve, code),
                        (Some(code), false) => p.session.reject_serve(serve, code),
                    }
                    p.serves.remove(&serve);
                    self.touch(peer);
                }
            }
            Owner::Local(id) => {
                self.events.push_back(NodeEvent::Subscription {
                    id,
                    event: SubscriptionEvent::Closed { error },
                });
                if let Some(local) = self.locals.get_mut(id) {
                    local.consumer = None;
                }
                self.locals.remove(id);
            }
        }
        self.detach(consumer);
    }

    /// Remove a consumer; release the track's upstream if it was the last one.
    pub(super) fn detach(&mut self, consumer: ConsumerId) {
        let Some(c) = self.consumers.remove(consumer) else {
            return;
        };
        if let Some(links) = self.links.get_mut(c.track) {
            links.consumers.retain(|k| *k != consumer);
        }
        self.release_if_unused(c.track);
        self.refresh_upstream(c.track);
    }

    /// A remote track nobody uses any more: unsubscribe upstream and forget it.
    pub(super) fn release_if_unused(&mut self, track: TrackId) {
        let Some(t) = self.origin.track(track) else {
            self.links.remove(track);
            return;
        };
        let broadcast = t.broadcast();
        let local = self
            .origin
            .broadcast(broadcast)
            .is_some_and(|b| b.is_local());
        let busy = self.links.get(track).is_some_and(|l| {
            !l.consumers.is_empty()
                || !l.fetches.is_empty()
                || !l.local_fetches.is_empty()
                || !l.info_waiters.is_empty()
        });
        if busy || (local && t.ended().is_none()) {
            return;
        }
        if let Some(links) = self.links.remove(track) {
            if let Some((peer, sub)) = links.upstream
                && let Some(p) = self.peers.get_mut(peer)
            {
                p.upstream.remove(&sub);
                p.session.unsubscribe(sub);
                self.touch(peer);
            }
            if let Some((peer, query)) = links.info_query
                && let Some(p) = self.peers.get_mut(peer)
            {
                p.track_queries.remove(&query);
            }
        }
        self.origin.remove_track(track);
        self.origin.collect(broadcast);
    }

    /// Accept a consumer toward its subscriber.
    pub(super) fn accept_consumer(&mut self, consumer: ConsumerId) {
        let Some(c) = self.consumers.get_mut(consumer) else {
            return;
        };
        if c.accepted {
            return;
        }
        c.accepted = true;
        let (owner, track, begins_at) = (c.owner, c.track, c.begins_at);
        let info = self.origin.track(track).and_then(|t| t.info());
        match owner {
            Owner::Serve(peer, serve) => {
                if let Some(p) = self.peers.get_mut(peer) {
                    let _ = p
                        .session
                        .accept_serve(serve, info.unwrap_or_default(), begins_at);
                    self.touch(peer);
                }
            }
            Owner::Local(id) => {
                self.events.push_back(NodeEvent::Subscription {
                    id,
                    event: SubscriptionEvent::Ready { info },
                });
                if let Some(group) = begins_at {
                    self.events.push_back(NodeEvent::Subscription {
                        id,
                        event: SubscriptionEvent::Start { group },
                    });
                }
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // Live fan-out

    /// A group began on `track`: open it for every consumer that wants it.
    pub(super) fn group_started(&mut self, now: Instant, track: TrackId, seq: u64) {
        let mut i = 0;
        while let Some(consumer) = self.consumer_at(track, i) {
            self.open_for(now, consumer, track, seq);
            i += 1;
        }
    }

    /// A frame began in group `seq`, with `chunk` its first payload bytes.
    pub(super) fn frame_started(
        &mut self,
        now: Instant,
        track: TrackId,
        seq: u64,
        ts: u64,
        size: u64,
        chunk: &Bytes,
    ) {
        if !self.fed_internally(track) {
            self.stats.frames_in += 1;
            self.stats.bytes_in += chunk.len() as u64;
        }
        let mut i = 0;
        while let Some(consumer) = self.consumer_at(track, i) {
            self.frame_for(now, consumer, track, seq, ts, size, chunk.clone());
            i += 1;
        }
        self.serve_fetch_progress(now, track, seq);
    }

    /// More payload for the frame in progress of group `seq`.
    pub(super) fn payload_added(&mut self, now: Instant, track: TrackId, seq: u64, chunk: &Bytes) {
        if !self.fed_internally(track) {
            self.stats.bytes_in += chunk.len() as u64;
        }
        let mut i = 0;
        while let Some(consumer) = self.consumer_at(track, i) {
            self.payload_for(consumer, track, seq, chunk.clone());
            i += 1;
        }
        self.serve_fetch_progress(now, track, seq);
    }

    /// Group `seq` of `track` finished or was aborted.
    pub(super) fn group_closed(
        &mut self,
        now: Instant,
        track: TrackId,
        seq: u64,
        state: GroupState,
    ) {
        if let Some(t) = self.origin.track_mut(track) {
            t.close_group(seq, state);
        }
        // A closed group may now be evicted for its age.
        self.origin.schedule(track);
        let mut i = 0;
        while let Some(consumer) = self.consumer_at(track, i) {
            let before = self.links.get(track).map_or(0, |l| l.consumers.len());
            self.close_for(consumer, track, seq, state);
            // A bounded consumer may have just left the list.
            if self.links.get(track).map_or(0, |l| l.consumers.len()) == before {
                i += 1;
            }
        }
        self.serve_fetch_progress(now, track, seq);
    }

    fn consumer_at(&self, track: TrackId, i: usize) -> Option<ConsumerId> {
        self.links
            .get(track)
            .and_then(|l: &Links| l.consumers.get(i).copied())
    }

    /// The track is over: end every consumer (`None` = cleanly) and forget the track unless it
    /// is a local one that may still be fetched.
    pub(super) fn track_ended(&mut self, now: Instant, track: TrackId, end: TrackEnd) {
        let Some(t) = self.origin.track_mut(track) else {
            return;
        };
        t.end(end);
        let open: Vec<u64> = t.open_groups().collect();
        let code = match end {
            TrackEnd::Aborted(code) => Some(code),
            TrackEnd::Finished { .. } => None,
        };
        for seq in open {
            self.group_closed(
                now,
                track,
                seq,
                GroupState::Aborted(code.unwrap_or(StreamCode::CANCEL)),
            );
        }
        let end_seq = match end {
            TrackEnd::Finished { end } => end,
            TrackEnd::Aborted(_) => self
                .origin
                .track(track)
                .and_then(|t| t.latest())
                .map_or(0, |l| l + 1),
        };
        let consumers = self
            .links
            .get(track)
            .map(|l| l.consumers.clone())
            .unwrap_or_default();
        for consumer in consumers {
            self.end_consumer(consumer, end_seq, code);
        }
        self.release_if_unused(track);
    }
}
