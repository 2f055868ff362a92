//! Routing session events through the origin: announcements, subscriptions, upstream data,
//! FETCH and TRACK.

use std::time::Instant;

use bytes::Bytes;

use super::events::FetchEvent;
use super::{
    Consumer, ConsumerId, FetchProgress, FetchSink, Node, NodeEvent, Owner, WatchOwner, Watcher,
};
use crate::auth::AuthRequest;
use crate::codes::SessionCode;
use crate::codes::StreamCode;
use crate::origin::{AnnounceChange, BroadcastId, GroupState, PeerId, Route, TrackEnd, TrackId};
use crate::session::{
    Event, FetchServeId, GroupEnd, ListenerId, ServeId, SubscribeParams, TrackServeId,
};
use crate::wire::{Path, TrackInfo};

impl Node {
    pub(super) fn on_session_event(&mut self, now: Instant, peer: PeerId, event: Event) {
        match event {
            Event::Setup { path, .. } => {
                let needs_root = self.peers.get(peer).is_some_and(|p| p.root.is_none());
                if needs_root {
                    // The SETUP Path (with its `?query`: a token) roots a lite-05 raw QUIC
                    // session.
                    self.admit(now, peer, path.as_deref().unwrap_or_default());
                }
            }

            // ----- our subscriptions upstream -----
            Event::SubscribeOk { id, info } => {
                let Some(track) = self.upstream_track(peer, id) else {
                    return;
                };
                if let Some(start) = info.start {
                    // (lite-05's OK may come after the first groups: each is its own stream.)
                    self.upstream_started(track, start);
                }
                if let Some(publisher) = info.publisher
                    && let Some(t) = self.origin.track_mut(track)
                    && t.info().is_none()
                {
                    // The reference's lite-03/04 SUBSCRIBE_OK carries max latency 0 ("unknown",
                    // docs/wire.md §3.2): retention 0 would evict every open non-latest group at
                    // once, so keep the default retention then (docs/wire.md §5.13).
                    let max_latency = if publisher.max_latency.is_zero() {
                        crate::origin::track::DEFAULT_RETENTION
                    } else {
                        publisher.max_latency
                    };
                    t.set_info(TrackInfo {
                        priority: publisher.priority,
                        ordered: publisher.ordered,
                        max_latency,
                        timescale: 1000,
                    });
                }
                self.accept_waiting(track);
            }
            Event::GroupStart { id, seq: raw } => {
                let Some(track) = self.upstream_track(peer, id) else {
                    return;
                };
                let mapped = self.map_upstream_seq(track, raw, true);
                if let Some(seq) = mapped
                    && self.origin.start_group(now, track, seq).is_ok()
                {
                    if let Some(links) = self.links.get_mut(track) {
                        links.failed_routes.clear();
                        links.finished_at = None;
                        links.finished_origin = None;
                    }
                    self.accept_waiting(track);
                    self.group_started(now, track, seq);
                    self.enforce_cache(now, track);
                } else if let Some(p) = self.peers.get_mut(peer) {
                    // A duplicate (e.g. already received as a datagram) or after the end.
                    p.session.stop_group(id, raw);
                    self.touch(peer);
                }
            }
            Event::FrameStart {
                id,
                seq: raw,
                timestamp,
                size,
                chunk,
                ..
            } => {
                let Some(track) = self.upstream_track(peer, id) else {
                    return;
                };
                let Some(seq) = self.map_upstream_seq(track, raw, false) else {
                    return;
                };
                let ts = timestamp.unwrap_or_else(|| self.arrival_timestamp(now));
                let appended = self
                    .origin
                    .track_mut(track)
                    .map(|t| t.append_frame(seq, ts, size, chunk.clone()));
                match appended {
                    Some(Ok(())) => {
                        self.frame_started(now, track, seq, ts, size, &chunk);
                        // The byte budget holds for relayed groups as for local ones.
                        self.enforce_cache(now, track);
                    }
                    Some(Err(crate::origin::GroupError::TooLarge)) => self.abort_upstream_group(
                        now,
                        peer,
                        id,
                        track,
                        (raw, seq),
                        StreamCode::GROUP_TOO_LARGE,
                    ),
                    _ => {}
                }
            }
            Event::FramePayload { id, seq, chunk, .. } => {
                let Some(track) = self.upstream_track(peer, id) else {
                    return;
                };
                let Some(seq) = self.map_upstream_seq(track, seq, false) else {
                    return;
                };
                let appended = self
                    .origin
                    .track_mut(track)
                    .map(|t| t.append_payload(seq, chunk.clone()));
                if let Some(Ok(())) = appended {
                    self.payload_added(now, track, seq, &chunk);
                }
            }
            Event::GroupEnd { id, seq, end } => {
                let Some(track) = self.upstream_track(peer, id) else {
                    return;
                };
                let Some(seq) = self.map_upstream_seq(track, seq, false) else {
                    return;
                };
                let state = match end {
                    GroupEnd::Finished => GroupState::Finished,
                    GroupEnd::Reset(code) | GroupEnd::Stopped(code) => GroupState::Aborted(code),
                };
                self.group_closed(now, track, seq, state);
            }
            Event::Datagram {
                id,
                seq,
                timestamp,
                payload,
            } => {
                let Some(track) = self.upstream_track(peer, id) else {
                    return;
                };
                let Some(seq) = self.map_upstream_seq(track, seq, true) else {
                    return;
                };
                self.datagram_group(now, track, seq, timestamp, payload);
            }
            Event::GroupsDropped {
                id,
                start,
                end,
                code,
            } => {
                let Some(track) = self.upstream_track(peer, id) else {
                    return;
                };
                let (Some(start), Some(end)) = (
                    self.map_upstream_seq(track, start, false),
                    self.map_upstream_seq(track, end, false),
                ) else {
                    return;
                };
                self.forward_drop(track, start, end, code);
            }
            Event::SubscribeEnd { id, end } => {
                if let Some(track) = self.upstream_track(peer, id) {
                    // Remembered; consumers end when the upstream subscription closes.
                    let end = self.map_upstream_seq(track, end, false);
                    if let Some(links) = self.links.get_mut(track) {
                        links.upstream_end = end;
                    }
                }
            }
            Event::SubscriptionClosed { id, error } => {
                let track = self
                    .peers
                    .get_mut(peer)
                    .and_then(|p| p.upstream.remove(&id));
                let Some(track) = track else {
                    return;
                };
                let latest_end = self
                    .origin
                    .track(track)
                    .and_then(|t| t.latest())
                    .map_or(0, |l| l + 1);
                let mut clean_end = None;
                let mut may_fail_over = true;
                if let Some(links) = self.links.get_mut(track) {
                    links.upstream = None;
                    let end = links.upstream_end.take();
                    if error.is_none() {
                        clean_end = Some(end.unwrap_or(latest_end));
                        // One publisher of the broadcast said goodbye: while a route from
                        // another publisher is left (active/active), the track goes on
                        // from there; another path to the same publisher would only end
                        // too (or, with stale routes, lead back to us).
                        links.finished_origin = links.upstream_origin;
                        may_fail_over = links.finished_origin.is_some();
                    }
                }
                if may_fail_over
                    && self.fail_over(now, track, peer, error.unwrap_or(StreamCode::CANCEL))
                {
                    if let Some(links) = self.links.get_mut(track)
                        && let Some(end) = clean_end
                    {
                        links.finished_at.get_or_insert(end);
                    }
                    return;
                }
                let end = self.lost_upstream_end(track, error.unwrap_or(StreamCode::CANCEL));
                let end = match (clean_end, end) {
                    (Some(end), TrackEnd::Aborted(_)) => TrackEnd::Finished { end },
                    (_, end) => end,
                };
                self.track_ended(now, track, end);
            }

            // ----- announcements from the peer -----
            Event::Announced {
                path, hops, active, ..
            } => {
                let Some(abs) = self.absolute(peer, &path) else {
                    return;
                };
                let allowed = self
                    .peers
                    .get(peer)
                    .is_some_and(|p| p.grant.as_ref().is_none_or(|g| g.may_publish(&abs)));
                if !allowed {
                    // Outside the session's publish grant: dropped, as the reference does.
                    if active {
                        self.stats.auth_refused_requests += 1;
                        tracing::debug!(%abs, "announcement outside the session's grant");
                    }
                    return;
                }
                if active {
                    if self.cfg.hop_id != 0 && hops.contains(&self.cfg.hop_id) {
                        tracing::debug!(%abs, "ignoring an announcement that loops through us");
                        return;
                    }
                    if let Ok((broadcast, change)) =
                        self.origin.add_route(&abs, Route { peer, hops })
                    {
                        self.announce_change(now, broadcast, change);
                    }
                } else if let Some(broadcast) = self.origin.find(&abs) {
                    let change = self.origin.remove_route(broadcast, peer);
                    self.announce_change(now, broadcast, change);
                }
            }
            Event::InterestClosed { id, .. } => {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.interests.retain(|i| *i != id);
                }
                self.drop_routes_of(now, peer);
            }

            // ----- requests from the peer -----
            Event::Subscribe {
                id,
                broadcast,
                track,
                params,
            } => self.on_subscribe(now, peer, id, &broadcast, &track, params),
            Event::SubscribeUpdate { id, params } => {
                if let Some(&consumer) = self.peers.get(peer).and_then(|p| p.serves.get(&id)) {
                    self.update_consumer(now, consumer, params);
                }
            }
            Event::ServeClosed { id } => {
                if let Some(consumer) = self.peers.get_mut(peer).and_then(|p| p.serves.remove(&id))
                {
                    self.detach(consumer);
                }
            }
            Event::AnnounceRequest { id, prefix, .. } => {
                self.on_announce_request(peer, id, &prefix)
            }
            Event::ListenerClosed { id } => {
                if let Some(watch) = self
                    .peers
                    .get_mut(peer)
                    .and_then(|p| p.listeners.remove(&id))
                {
                    self.watchers.remove(watch);
                }
            }
            Event::Fetch {
                id,
                broadcast,
                track,
                priority,
                group,
            } => self.on_fetch(now, peer, id, &broadcast, &track, priority, group),
            Event::FetchServeClosed { id } => {
                for links in self.links.values_mut() {
                    links.fetches.retain(|f| !(f.peer == peer && f.fetch == id));
                }
                // An upstream fetch piped to it stays; its frames are dropped on arrival.
            }
            Event::TrackRequest {
                id,
                broadcast,
                track,
            } => self.on_track_request(peer, id, &broadcast, &track),

            // ----- answers to our FETCH / TRACK -----
            Event::FetchFrameStart {
                id,
                timestamp,
                size,
                chunk,
                remaining,
            } => self.pipe_fetch(now, peer, id, Some((timestamp, size)), chunk, remaining),
            Event::FetchFramePayload {
                id,
                chunk,
                remaining,
            } => self.pipe_fetch(now, peer, id, None, chunk, remaining),
            Event::FetchClosed { id, error } => self.pipe_fetch_closed(peer, id, error),
            Event::TrackInfo { id, result } => self.on_track_info(peer, id, result),

            // ----- session-wide -----
            Event::ProbeReport { bitrate, rtt } => {
                self.events
                    .push_back(NodeEvent::ProbeReport { peer, bitrate, rtt })
            }
            Event::Goaway { uri } => self.events.push_back(NodeEvent::Goaway { peer, uri }),
            Event::Closed {
                code,
                reason,
                local,
            } => self.on_closed(now, peer, code, reason, local),
        }
    }

    /// A server-side session's request path (`path?query`) is known: admit it (ask the
    /// authorizer, if any) and root it there, or close it as unauthorized.
    pub(super) fn admit(&mut self, now: Instant, peer: PeerId, request: &str) {
        let (raw_path, query) = match request.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (request, None),
        };
        let Some(authorizer) = self.cfg.authorizer.clone() else {
            let root = Path::new(raw_path).unwrap_or_else(|_| Path::root());
            return self.set_root(now, peer, root);
        };
        let verdict = Path::new(raw_path)
            .map_err(|e| crate::auth::AuthError::Malformed(format!("path: {e}")))
            .and_then(|path| {
                let grant = authorizer.authorize(&AuthRequest {
                    path: &path,
                    query,
                    now_unix: self.unix_time(now),
                })?;
                Ok((path, grant))
            });
        match verdict {
            Ok((root, grant)) => {
                if let Some(expires) = grant.expires {
                    let left = expires.saturating_sub(self.unix_time(now));
                    let at = now + std::time::Duration::from_secs(left);
                    self.grant_expiry.push(std::cmp::Reverse((at, peer)));
                }
                if let Some(p) = self.peers.get_mut(peer) {
                    p.grant = Some(grant);
                }
                self.set_root(now, peer, root);
            }
            Err(err) => {
                tracing::info!(%err, path = raw_path, "session refused");
                self.stats.auth_refused_sessions += 1;
                if let Some(p) = self.peers.get_mut(peer) {
                    p.session
                        .close(SessionCode::UNAUTHORIZED, &format!("unauthorized: {err}"));
                    self.touch(peer);
                }
                self.events
                    .push_back(NodeEvent::Refused { peer, error: err });
            }
        }
    }

    /// Whether `peer` may subscribe to the origin path `path` (counted when not).
    pub(super) fn may_subscribe(&mut self, peer: PeerId, path: &Path) -> bool {
        let allowed = self
            .peers
            .get(peer)
            .is_some_and(|p| p.grant.as_ref().is_none_or(|g| g.may_subscribe(path)));
        if !allowed {
            self.stats.auth_refused_requests += 1;
        }
        allowed
    }

    /// A session's root became known: it is usable.
    pub(super) fn set_root(&mut self, _now: Instant, peer: PeerId, root: Path) {
        let hop = self.cfg.hop_id;
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        // A session that may publish nothing here is never asked for announcements.
        let publishes = p.grant.as_ref().is_none_or(|g| g.publishes_under(&root));
        p.root = Some(root);
        if self.cfg.announce_on_connect
            && publishes
            && let Ok(interest) = p.session.request_announcements(Path::root(), hop)
        {
            p.interests.push(interest);
        }
        self.touch(peer);
        self.events.push_back(NodeEvent::SessionReady { peer });
    }

    /// Whether `peer`'s grant lets it learn of / subscribe to the origin path `path`.
    fn grant_allows_subscribe(&self, peer: PeerId, path: &Path) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.grant.as_ref().is_none_or(|g| g.may_subscribe(path)))
    }

    /// A path on `peer`'s session, made absolute in the origin.
    pub(super) fn absolute(&self, peer: PeerId, path: &Path) -> Option<Path> {
        self.peers.get(peer)?.root.as_ref()?.join(path).ok()
    }

    /// An origin path as seen on `peer`'s session (`None` if outside its root).
    pub(super) fn relative(&self, peer: PeerId, path: &Path) -> Option<Path> {
        path.strip_prefix(self.peers.get(peer)?.root.as_ref()?)
    }

    fn upstream_track(&self, peer: PeerId, id: crate::session::SubscriptionId) -> Option<TrackId> {
        self.peers.get(peer)?.upstream.get(&id).copied()
    }

    /// Accept consumers that were waiting for the upstream to answer.
    fn accept_waiting(&mut self, track: TrackId) {
        let consumers = self
            .links
            .get(track)
            .map(|l| l.consumers.clone())
            .unwrap_or_default();
        for consumer in consumers {
            self.accept_consumer(consumer);
        }
    }

    /// Stop an upstream group (`raw`: its sequence upstream; `seq`: ours).
    fn abort_upstream_group(
        &mut self,
        now: Instant,
        peer: PeerId,
        id: crate::session::SubscriptionId,
        track: TrackId,
        (raw, seq): (u64, u64),
        code: StreamCode,
    ) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.session.stop_group(id, raw);
            self.touch(peer);
        }
        self.group_closed(now, track, seq, GroupState::Aborted(code));
    }

    /// A group sequence from the track's upstream, in the track's numbering (see
    /// [`super::Remap`]); `first` is true for a group's start, which fixes a pending shift.
    /// `None`: a group the track does not take (older than the failover).
    fn map_upstream_seq(&mut self, track: TrackId, seq: u64, first: bool) -> Option<u64> {
        // Every upstream chunk passes here: one table lookup unless a failover is pending.
        let remap = self
            .links
            .get(track)
            .map_or(super::Remap::None, |l| l.remap);
        match remap {
            super::Remap::None => Some(seq),
            super::Remap::Shift { from, to } => {
                (seq >= from).then(|| to.saturating_add(seq - from))
            }
            super::Remap::Pending if first => {
                // The new source's first group follows the last one we had, with no gap
                // (subscribers would wait for the missing numbers).
                let latest = self.origin.track(track).and_then(|t| t.latest());
                let to = latest.map_or(seq, |l| l + 1);
                if let Some(links) = self.links.get_mut(track) {
                    links.remap = super::Remap::Shift { from: seq, to };
                }
                Some(to)
            }
            super::Remap::Pending => None,
        }
    }

    /// The upstream of a remote track with subscribers failed (`code`) through `failed`:
    /// subscribe through another route of the broadcast if there is one (another relay, or
    /// another publisher of the same broadcast: active/active), keeping every subscriber.
    /// Open groups of the lost source are aborted; the new source's groups continue the
    /// numbering. False when no other route is left (the track ends).
    pub(super) fn fail_over(
        &mut self,
        now: Instant,
        track: TrackId,
        failed: PeerId,
        code: StreamCode,
    ) -> bool {
        let Some(links) = self.links.get_mut(track) else {
            return false;
        };
        if links.consumers.is_empty() {
            return false;
        }
        if !links.failed_routes.contains(&failed) {
            links.failed_routes.push(failed);
        }
        let params = self
            .links
            .get(track)
            .and_then(|l| l.consumers.first())
            .and_then(|&c| self.consumers.get(c))
            .map(|c| SubscribeParams {
                start: None,
                end: None,
                ..c.params
            })
            .unwrap_or_default();
        if !self.has_usable_route(track, None) {
            return false;
        }
        let open: Vec<u64> = self
            .origin
            .track(track)
            .map(|t| t.open_groups().collect())
            .unwrap_or_default();
        for seq in open {
            self.group_closed(now, track, seq, GroupState::Aborted(code));
        }
        if let Some(links) = self.links.get_mut(track) {
            links.remap = super::Remap::Pending;
        }
        match self.ensure_upstream(track, params) {
            Ok(()) => {
                tracing::debug!(?track, "failed over to another route");
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the track's broadcast has a route an upstream may take now (see
    /// `Links::may_take`), other than through `except`.
    fn has_usable_route(&self, track: TrackId, except: Option<PeerId>) -> bool {
        let Some(links) = self.links.get(track) else {
            return false;
        };
        self.origin
            .track(track)
            .and_then(|t| self.origin.broadcast(t.broadcast()))
            .is_some_and(|b| {
                b.routes()
                    .iter()
                    .any(|r| Some(r.peer) != except && links.may_take(r))
            })
    }

    /// How a track ends when its upstream is lost (`code`) and no route is left: aborted,
    /// unless it failed over from a source that had finished it cleanly and no group came
    /// since (then finished where that source said).
    fn lost_upstream_end(&self, track: TrackId, code: StreamCode) -> TrackEnd {
        match self.links.get(track).and_then(|l| l.finished_at) {
            Some(end) => TrackEnd::Finished { end },
            None => TrackEnd::Aborted(code),
        }
    }

    /// A peer subscribes to a track that we receive from that same peer: serving it would
    /// feed the track round the two of us. Move our upstream to another route (the peer's
    /// own route then leads to the source, not back to us); false when there is none.
    fn reroute_away_from(&mut self, now: Instant, track: TrackId, peer: PeerId) -> bool {
        let Some(links) = self.links.get_mut(track) else {
            return true;
        };
        let Some((upstream, sub)) = links.upstream else {
            // No upstream right now (a local track, or one between two sources): the next
            // one must not go through the peer asking.
            if !links.failed_routes.contains(&peer) {
                links.failed_routes.push(peer);
            }
            return true;
        };
        if upstream != peer {
            return true;
        }
        if links.consumers.is_empty() || !self.has_usable_route(track, Some(peer)) {
            return false;
        }
        if let Some(links) = self.links.get_mut(track) {
            links.upstream = None;
            links.upstream_end = None;
        }
        if let Some(p) = self.peers.get_mut(peer) {
            p.upstream.remove(&sub);
            p.session.unsubscribe(sub);
            self.touch(peer);
        }
        tracing::debug!(?track, "a peer subscribed to what it feeds us: rerouting");
        if self.fail_over(now, track, peer, StreamCode::CANCEL) {
            return true;
        }
        let end = self.lost_upstream_end(track, StreamCode::CANCEL);
        self.track_ended(now, track, end);
        false
    }

    pub(super) fn enforce_cache(&mut self, now: Instant, track: TrackId) {
        for seq in self.origin.enforce(now, track) {
            self.group_closed(now, track, seq, GroupState::Aborted(StreamCode::EVICTED));
        }
    }

    /// A whole single-frame group (a datagram): cache it and deliver it, as a datagram to
    /// lite-05 subscribers when it fits, else as a stream.
    pub(super) fn datagram_group(
        &mut self,
        now: Instant,
        track: TrackId,
        seq: u64,
        ts: u64,
        payload: Bytes,
    ) {
        if self.origin.start_group(now, track, seq).is_err() {
            return;
        }
        if let Some(t) = self.origin.track_mut(track) {
            let _ = t.append_frame(seq, ts, payload.len() as u64, payload.clone());
            t.close_group(seq, GroupState::Finished);
        }
        self.accept_waiting(track);
        let consumers = self
            .links
            .get(track)
            .map(|l| l.consumers.clone())
            .unwrap_or_default();
        for consumer in consumers {
            let sent = match self.consumers.get(consumer).map(|c| (c.owner, c.accepted)) {
                Some((Owner::Serve(peer, serve), true)) => self
                    .peers
                    .get_mut(peer)
                    .is_some_and(|p| p.session.send_datagram(serve, seq, ts, &payload)),
                _ => false,
            };
            if sent {
                if let Some(Owner::Serve(peer, _)) = self.consumers.get(consumer).map(|c| c.owner) {
                    self.touch(peer);
                }
            } else {
                self.replay_group(now, consumer, track, seq);
            }
        }
        self.enforce_cache(now, track);
    }

    /// Forward SUBSCRIBE_DROP to every consumer.
    fn forward_drop(&mut self, track: TrackId, start: u64, end: u64, code: StreamCode) {
        let consumers = self
            .links
            .get(track)
            .map(|l| l.consumers.clone())
            .unwrap_or_default();
        for consumer in consumers {
            self.drop_for(consumer, start, end, code);
        }
    }

    // ------------------------------------------------------------------------------------
    // Announcements

    /// Tell every watcher about a broadcast's change.
    pub(super) fn announce_change(
        &mut self,
        now: Instant,
        broadcast: BroadcastId,
        change: AnnounceChange,
    ) {
        let Some(b) = self.origin.broadcast(broadcast) else {
            return;
        };
        let path = b.path().clone();
        let hops = b.hops().to_vec();
        let source = b.best_route().map(|r| r.peer);
        let active = match change {
            AnnounceChange::None => return,
            AnnounceChange::Active | AnnounceChange::Rerouted => true,
            AnnounceChange::Ended => false,
        };
        let watchers: Vec<(super::WatchId, Watcher)> = self
            .watchers
            .iter()
            .filter(|(_, w)| path.has_prefix(&w.prefix))
            .map(|(k, w)| (k, w.clone()))
            .collect();
        for (watch, watcher) in watchers {
            match watcher.owner {
                WatchOwner::Peer(peer, listener) => {
                    // Never announce a broadcast back to the session it came from; if the best
                    // route now comes from that session, withdraw what we announced to it
                    // (poisoned reverse), or two relays would keep each other's stale route
                    // alive after the origin is gone.
                    let active_here = active && source != Some(peer);
                    let Some(rel) = self.relative(peer, &path) else {
                        continue;
                    };
                    if !self.grant_allows_subscribe(peer, &path) {
                        continue;
                    }
                    if let Some(p) = self.peers.get_mut(peer) {
                        let _ = p.session.announce(listener, &rel, active_here, &hops);
                        self.touch(peer);
                    }
                }
                WatchOwner::Local => {
                    if change != AnnounceChange::Rerouted {
                        self.events.push_back(NodeEvent::Announced {
                            watch,
                            path: path.clone(),
                            active,
                        });
                    }
                }
            }
        }
        if active {
            self.resolve_pending_locals(now, &path);
        } else {
            self.origin.collect(broadcast);
        }
    }

    /// The peer's announcements are gone: remove its routes.
    fn drop_routes_of(&mut self, now: Instant, peer: PeerId) {
        for broadcast in self.origin.routed_through(peer) {
            let change = self.origin.remove_route(broadcast, peer);
            self.announce_change(now, broadcast, change);
            self.origin.collect(broadcast);
        }
    }

    fn on_announce_request(&mut self, peer: PeerId, listener: ListenerId, prefix: &Path) {
        let Some(abs) = self.absolute(peer, prefix) else {
            return;
        };
        let watch = self.watchers.insert(Watcher {
            prefix: abs.clone(),
            owner: WatchOwner::Peer(peer, listener),
        });
        let entries: Vec<(Path, Vec<u64>)> = self
            .origin
            .active_under(&abs)
            .filter(|b| b.best_route().is_none_or(|r| r.peer != peer))
            .filter(|b| self.grant_allows_subscribe(peer, b.path()))
            .filter_map(|b| Some((self.relative(peer, b.path())?, b.hops().to_vec())))
            .collect();
        if let Some(p) = self.peers.get_mut(peer) {
            p.listeners.insert(listener, watch);
            let _ = p.session.announce_initial(
                listener,
                entries.iter().map(|(path, hops)| (path, hops.as_slice())),
            );
        }
        self.touch(peer);
    }

    // ------------------------------------------------------------------------------------
    // Subscriptions from peers

    fn on_subscribe(
        &mut self,
        now: Instant,
        peer: PeerId,
        serve: ServeId,
        broadcast: &Path,
        track: &str,
        params: SubscribeParams,
    ) {
        let reject = |node: &mut Node, code: StreamCode| {
            if let Some(p) = node.peers.get_mut(peer) {
                p.session.reject_serve(serve, code);
                node.touch(peer);
            }
        };
        let Some(abs) = self.absolute(peer, broadcast) else {
            return reject(self, StreamCode::UNROUTABLE);
        };
        if !self.may_subscribe(peer, &abs) {
            return reject(self, StreamCode::UNAUTHORIZED);
        }
        let track_id = match self.resolve_track(now, &abs, track, params, Some(peer)) {
            Ok(t) => t,
            Err(code) => return reject(self, code),
        };
        let consumer = self.consumers.insert(Consumer {
            track: track_id,
            owner: Owner::Serve(peer, serve),
            params,
            accepted: false,
            start: None,
            begins_at: None,
            last: None,
            outstanding: super::deliver::tracked_range_for(params),
            passed_end: false,
            groups: Vec::new(),
        });
        if let Some(p) = self.peers.get_mut(peer) {
            p.serves.insert(serve, consumer);
        }
        self.begin_consumer(now, consumer);
    }

    /// Accept at once when the track is live here; otherwise wait for the upstream's answer.
    pub(super) fn begin_consumer(&mut self, now: Instant, consumer: ConsumerId) {
        let Some(track) = self.consumers.get(consumer).map(|c| c.track) else {
            return;
        };
        let begins_at = self.initial_start(consumer);
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.begins_at = begins_at;
        }
        let live = self.origin.track(track).is_some_and(|t| {
            let local = self
                .origin
                .broadcast(t.broadcast())
                .is_some_and(|b| b.is_local());
            local || t.latest().is_some()
        });
        // The upstream answered already (it accepted the consumers waiting then): a later
        // consumer is accepted at once too, not only when the first group arrives.
        let answered = self.links.get(track).is_some_and(|l| {
            l.consumers.iter().any(|&c| {
                c != consumer && self.consumers.get(c).is_some_and(|other| other.accepted)
            })
        });
        if live || answered {
            self.accept_consumer(consumer);
        }
        self.attach(now, consumer);
        self.refresh_upstream(track);
    }

    /// Where a new consumer's delivery begins, if known now: the start it asked for; else the
    /// newest group (the first cached from there, or the next if it is gone); else, with no
    /// group yet, where the source starts: the next group of a local track, or the upstream's
    /// answer for a remote one (`None` until it comes).
    fn initial_start(&self, consumer: ConsumerId) -> Option<u64> {
        let c = self.consumers.get(consumer)?;
        let t = self.origin.track(c.track)?;
        let asked = c.params.start;
        if let Some(latest) = t.latest() {
            // What is held starts at the oldest cached group; older ones are gone (an asked
            // start below it is dropped as evicted).
            let from = asked.unwrap_or(latest);
            let cached = t.groups().map(|g| g.seq()).find(|&s| s >= from);
            let oldest = t.groups().next().map_or(latest + 1, |g| g.seq());
            return Some(match asked {
                Some(start) => start.max(oldest),
                None => cached.unwrap_or(latest + 1),
            });
        }
        let local = self
            .origin
            .broadcast(t.broadcast())
            .is_some_and(|b| b.is_local());
        let source_start = if local {
            Some(t.next_seq())
        } else {
            // The upstream's answer: where the source really starts (an asked start may be
            // gone there).
            self.links.get(c.track).and_then(|l| l.served_start)
        }?;
        Some(asked.map_or(source_start, |start| start.max(source_start)))
    }

    /// The upstream said where it starts: consumers of the track still waiting to know
    /// where they begin, begin there.
    fn upstream_started(&mut self, track: TrackId, start: u64) {
        let Some(links) = self.links.get_mut(track) else {
            return;
        };
        if links.served_start.is_some() || links.remap != super::Remap::None {
            return;
        }
        links.served_start = Some(start);
        let consumers = links.consumers.clone();
        for consumer in consumers {
            let Some(c) = self.consumers.get_mut(consumer) else {
                continue;
            };
            if c.begins_at.is_some() {
                continue;
            }
            let start = c.params.start.map_or(start, |asked| asked.max(start));
            c.begins_at = Some(start);
            let (owner, accepted) = (c.owner, c.accepted);
            match owner {
                Owner::Serve(peer, serve) => {
                    if accepted && let Some(p) = self.peers.get_mut(peer) {
                        p.session.serve_start_known(serve, start);
                    }
                }
                Owner::Local(id) => {
                    if accepted {
                        self.events.push_back(NodeEvent::Subscription {
                            id,
                            event: super::SubscriptionEvent::Start { group: start },
                        });
                    }
                }
            }
        }
    }

    /// Find (or create, for a remote broadcast) a track, opening the shared upstream
    /// subscription if there is none. Errors are stream codes.
    pub(super) fn resolve_track(
        &mut self,
        now: Instant,
        path: &Path,
        name: &str,
        params: SubscribeParams,
        from: Option<PeerId>,
    ) -> Result<TrackId, StreamCode> {
        let broadcast = self.origin.find(path).ok_or(StreamCode::UNROUTABLE)?;
        let b = self
            .origin
            .broadcast(broadcast)
            .ok_or(StreamCode::UNROUTABLE)?;
        if let Some(track) = b.track(name) {
            let ended = self.origin.track(track).and_then(|t| t.ended());
            if ended.is_none() || b.is_local() {
                if ended.is_some() {
                    return Err(StreamCode::NOT_FOUND);
                }
                if let Some(from) = from
                    && !self.reroute_away_from(now, track, from)
                {
                    return Err(StreamCode::UNROUTABLE);
                }
                self.ensure_upstream(track, params)?;
                return Ok(track);
            }
        }
        if b.is_local() {
            return Err(StreamCode::NOT_FOUND);
        }
        let route = b.best_route().ok_or(StreamCode::UNROUTABLE)?.clone();
        if Some(route.peer) == from {
            // Subscribing a peer to its own broadcast through us would loop.
            return Err(StreamCode::UNROUTABLE);
        }
        let track = self
            .origin
            .create_track(broadcast, name, None)
            .map_err(|_| StreamCode::NOT_FOUND)?;
        self.links.insert(track, Default::default());
        self.ensure_upstream(track, params)?;
        Ok(track)
    }

    /// Open the upstream subscription for a remote track that has none.
    fn ensure_upstream(
        &mut self,
        track: TrackId,
        params: SubscribeParams,
    ) -> Result<(), StreamCode> {
        let t = self.origin.track(track).ok_or(StreamCode::NOT_FOUND)?;
        let broadcast = t.broadcast();
        let b = self
            .origin
            .broadcast(broadcast)
            .ok_or(StreamCode::UNROUTABLE)?;
        if b.is_local() {
            return Ok(());
        }
        if self.links.get(track).is_some_and(|l| l.upstream.is_some()) {
            return Ok(());
        }
        // The route with the fewest hops, skipping those that just failed for this track.
        let links = self.links.get(track);
        let route = b
            .routes()
            .iter()
            .filter(|r| links.is_none_or(|l| l.may_take(r)))
            .min_by_key(|r| r.hops.len())
            .ok_or(StreamCode::UNROUTABLE)?
            .clone();
        let path = b.path().clone();
        let name = t.name().to_string();
        let rel = self
            .relative(route.peer, &path)
            .ok_or(StreamCode::UNROUTABLE)?;
        let want_info = t.info().is_none();
        let p = self
            .peers
            .get_mut(route.peer)
            .ok_or(StreamCode::UNROUTABLE)?;
        // The first subscriber's start goes upstream (a past start is then served by the
        // source's cache); the range end is each consumer's own business.
        let upstream = SubscribeParams {
            end: None,
            ..params
        };
        let sub = p
            .session
            .subscribe(rel.clone(), &name, upstream)
            .map_err(|_| StreamCode::UNROUTABLE)?;
        p.upstream.insert(sub, track);
        // lite-05: ask for TRACK_INFO alongside (the timescale and retention).
        let query = if want_info && p.session.version().is_lite05() {
            p.session.track_info(rel, &name).ok()
        } else {
            None
        };
        if let Some(query) = query {
            p.track_queries.insert(query, track);
        }
        let links = self.links.entry(track).map(|e| e.or_default());
        if let Some(links) = links {
            links.upstream = Some((route.peer, sub));
            links.upstream_origin = route.origin();
            links.upstream_params = Some((params.priority, params.max_latency));
            links.upstream_start = params.start;
            if let Some(query) = query {
                links.info_query = Some((route.peer, query));
            }
        }
        self.touch(route.peer);
        Ok(())
    }

    // ------------------------------------------------------------------------------------
    // TRACK

    fn on_track_request(&mut self, peer: PeerId, id: TrackServeId, broadcast: &Path, name: &str) {
        let reply = |node: &mut Node, result: Result<TrackInfo, StreamCode>| {
            if let Some(p) = node.peers.get_mut(peer) {
                p.session.track_info_reply(id, result);
                node.touch(peer);
            }
        };
        let Some(abs) = self.absolute(peer, broadcast) else {
            return reply(self, Err(StreamCode::UNROUTABLE));
        };
        if !self.may_subscribe(peer, &abs) {
            return reply(self, Err(StreamCode::UNAUTHORIZED));
        }
        let Some(b) = self
            .origin
            .find(&abs)
            .and_then(|b| self.origin.broadcast(b))
        else {
            return reply(self, Err(StreamCode::UNROUTABLE));
        };
        if let Some(info) = b
            .track(name)
            .and_then(|t| self.origin.track(t))
            .and_then(|t| t.info())
        {
            return reply(self, Ok(info));
        }
        if b.is_local() {
            return reply(self, Err(StreamCode::NOT_FOUND));
        }
        let Some(route) = b.best_route().cloned() else {
            return reply(self, Err(StreamCode::UNROUTABLE));
        };
        let upstream_05 = self
            .peers
            .get(route.peer)
            .is_some_and(|p| p.session.version().is_lite05());
        if !upstream_05 || route.peer == peer {
            // A lite-03/04 source has no TRACK: answer with the defaults (arrival-stamped ms).
            return reply(self, Ok(TrackInfo::default()));
        }
        let Some(bid) = self.origin.find(&abs) else {
            return reply(self, Err(StreamCode::UNROUTABLE));
        };
        let Ok(track) = self.origin.create_track(bid, name, None) else {
            return reply(self, Err(StreamCode::NOT_FOUND));
        };
        let links = self.links.entry(track).map(|e| e.or_default());
        let Some(links) = links else {
            return reply(self, Err(StreamCode::NOT_FOUND));
        };
        links.info_waiters.push((peer, id));
        if links.info_query.is_none() {
            let path = self.relative(route.peer, &abs);
            if let (Some(path), Some(p)) = (path, self.peers.get_mut(route.peer))
                && let Ok(query) = p.session.track_info(path, name)
            {
                p.track_queries.insert(query, track);
                if let Some(links) = self.links.get_mut(track) {
                    links.info_query = Some((route.peer, query));
                }
                self.touch(route.peer);
            }
        }
    }

    fn on_track_info(
        &mut self,
        peer: PeerId,
        id: crate::session::TrackQueryId,
        result: Result<TrackInfo, StreamCode>,
    ) {
        let Some(track) = self
            .peers
            .get_mut(peer)
            .and_then(|p| p.track_queries.remove(&id))
        else {
            return;
        };
        if let Ok(info) = result
            && let Some(t) = self.origin.track_mut(track)
        {
            t.set_info(info);
            // The track resolved upstream: subscribers waiting for it can be accepted.
            self.accept_waiting(track);
        }
        let waiters = match self.links.get_mut(track) {
            Some(links) => {
                links.info_query = None;
                std::mem::take(&mut links.info_waiters)
            }
            None => Vec::new(),
        };
        for (waiter, serve) in waiters {
            if let Some(p) = self.peers.get_mut(waiter) {
                p.session.track_info_reply(serve, result);
                self.touch(waiter);
            }
        }
        self.release_if_unused(track);
    }

    // ------------------------------------------------------------------------------------
    // FETCH

    #[allow(clippy::too_many_arguments)]
    fn on_fetch(
        &mut self,
        now: Instant,
        peer: PeerId,
        id: FetchServeId,
        broadcast: &Path,
        name: &str,
        priority: u8,
        seq: u64,
    ) {
        let reject = |node: &mut Node, code: StreamCode| {
            if let Some(p) = node.peers.get_mut(peer) {
                p.session.fetch_reject(id, code);
                node.touch(peer);
            }
        };
        let Some(abs) = self.absolute(peer, broadcast) else {
            return reject(self, StreamCode::UNROUTABLE);
        };
        if !self.may_subscribe(peer, &abs) {
            return reject(self, StreamCode::UNAUTHORIZED);
        }
        let Some(bid) = self.origin.find(&abs) else {
            return reject(self, StreamCode::UNROUTABLE);
        };
        let track = self.origin.broadcast(bid).and_then(|b| b.track(name));
        if let Some(track) = track
            && self
                .origin
                .track(track)
                .is_some_and(|t| t.group(seq).is_some())
        {
            let links = self.links.entry(track).map(|e| e.or_default());
            if let Some(links) = links {
                links.fetches.push(FetchProgress {
                    peer,
                    fetch: id,
                    seq,
                    frame: 0,
                    chunk: 0,
                });
            }
            self.serve_fetch_progress(now, track, seq);
            return;
        }
        // Not cached: ask upstream, piping the reply through.
        let route = self
            .origin
            .broadcast(bid)
            .and_then(|b| b.best_route().cloned());
        let Some(route) = route.filter(|r| r.peer != peer) else {
            return reject(self, StreamCode::NOT_FOUND);
        };
        let Some(rel) = self.relative(route.peer, &abs) else {
            return reject(self, StreamCode::UNROUTABLE);
        };
        let Some(p) = self.peers.get_mut(route.peer) else {
            return reject(self, StreamCode::UNROUTABLE);
        };
        match p.session.fetch(rel, name, priority, seq) {
            Ok(upstream) => {
                p.fetches.insert(upstream, FetchSink::Peer(peer, id));
                self.touch(route.peer);
            }
            Err(_) => reject(self, StreamCode::UNROUTABLE),
        }
    }

    /// Push what is cached of fetched groups to the peers fetching them.
    pub(super) fn serve_fetch_progress(&mut self, _now: Instant, track: TrackId, seq: u64) {
        self.local_fetch_progress(track, seq);
        let Some(links) = self.links.get_mut(track) else {
            return;
        };
        if !links.fetches.iter().any(|f| f.seq == seq) {
            return;
        }
        let mut fetches = std::mem::take(&mut links.fetches);
        let Some(group) = self.origin.track(track).and_then(|t| t.group(seq)) else {
            // Evicted before it could be served.
            for f in fetches.iter().filter(|f| f.seq == seq) {
                if let Some(p) = self.peers.get_mut(f.peer) {
                    p.session.fetch_reject(f.fetch, StreamCode::EVICTED);
                }
            }
            fetches.retain(|f| f.seq != seq);
            if let Some(links) = self.links.get_mut(track) {
                links.fetches = fetches;
            }
            return;
        };
        let mut touched = Vec::new();
        fetches.retain_mut(|f| {
            if f.seq != seq {
                return true;
            }
            let Some(p) = self.peers.get_mut(f.peer) else {
                return false;
            };
            touched.push(f.peer);
            let frames = group.frames();
            while f.frame < frames.len() {
                let chunks = group.frame_chunks(f.frame);
                if f.chunk == 0 {
                    if chunks.is_empty() && !group.frame_complete(f.frame) {
                        // Its first bytes have not arrived: send the header with them, or
                        // `chunk` would count a chunk that was never sent.
                        return true;
                    }
                    let first = chunks.first().cloned().unwrap_or_default();
                    let meta = frames[f.frame];
                    if !p
                        .session
                        .fetch_frame(f.fetch, meta.timestamp, meta.size, first)
                    {
                        return false;
                    }
                    f.chunk = 1;
                }
                while f.chunk < chunks.len() {
                    p.session.fetch_payload(f.fetch, chunks[f.chunk].clone());
                    f.chunk += 1;
                }
                if !group.frame_complete(f.frame) {
                    return true;
                }
                f.frame += 1;
                f.chunk = 0;
            }
            match group.state() {
                GroupState::Open => true,
                GroupState::Finished => {
                    p.session.fetch_finish(f.fetch);
                    false
                }
                GroupState::Aborted(code) => {
                    p.session.fetch_reject(f.fetch, code);
                    false
                }
            }
        });
        if let Some(links) = self.links.get_mut(track) {
            links.fetches.extend(fetches);
        }
        for peer in touched {
            self.touch(peer);
        }
        self.release_if_unused(track);
    }

    /// Hand local FETCHes of group `seq` the frames now complete, and end them with the group.
    pub(super) fn local_fetch_progress(&mut self, track: TrackId, seq: u64) {
        let Some(links) = self.links.get_mut(track) else {
            return;
        };
        if !links.local_fetches.iter().any(|(_, s, _)| *s == seq) {
            return;
        }
        let mut fetches = std::mem::take(&mut links.local_fetches);
        let group = self.origin.track(track).and_then(|t| t.group(seq));
        let events = &mut self.events;
        let slots = &mut self.local_fetches;
        fetches.retain_mut(|(id, s, next)| {
            if *s != seq {
                return true;
            }
            let Some(group) = group else {
                slots.remove(*id);
                events.push_back(NodeEvent::Fetch {
                    id: *id,
                    event: FetchEvent::Closed {
                        error: Some(StreamCode::EVICTED),
                    },
                });
                return false;
            };
            while *next < group.frames().len() && group.frame_complete(*next) {
                events.push_back(NodeEvent::Fetch {
                    id: *id,
                    event: FetchEvent::Frame {
                        timestamp: group.frames()[*next].timestamp,
                        payload: group.frame_payload(*next),
                    },
                });
                *next += 1;
            }
            let error = match group.state() {
                GroupState::Open => return true,
                GroupState::Finished => None,
                GroupState::Aborted(code) => Some(code),
            };
            slots.remove(*id);
            events.push_back(NodeEvent::Fetch {
                id: *id,
                event: FetchEvent::Closed { error },
            });
            false
        });
        if let Some(links) = self.links.get_mut(track) {
            links.local_fetches.extend(fetches);
        }
    }

    fn pipe_fetch(
        &mut self,
        _now: Instant,
        peer: PeerId,
        id: crate::session::FetchId,
        header: Option<(Option<u64>, u64)>,
        chunk: Bytes,
        remaining: u64,
    ) {
        let Some(sink) = self
            .peers
            .get(peer)
            .and_then(|p| p.fetches.get(&id))
            .copied()
        else {
            return;
        };
        match sink {
            FetchSink::Peer(down, serve) => {
                let ts = header.and_then(|(ts, _)| ts).unwrap_or(0);
                if let Some(p) = self.peers.get_mut(down) {
                    match header {
                        Some((_, size)) => p.session.fetch_frame(serve, ts, size, chunk),
                        None => p.session.fetch_payload(serve, chunk),
                    };
                    self.touch(down);
                }
            }
            FetchSink::Local(local) => self.local_fetch_data(local, header, chunk, remaining),
        }
    }

    fn pipe_fetch_closed(
        &mut self,
        peer: PeerId,
        id: crate::session::FetchId,
        error: Option<StreamCode>,
    ) {
        let Some(sink) = self.peers.get_mut(peer).and_then(|p| p.fetches.remove(&id)) else {
            return;
        };
        match sink {
            FetchSink::Peer(down, serve) => {
                if let Some(p) = self.peers.get_mut(down) {
                    match error {
                        None => p.session.fetch_finish(serve),
                        Some(code) => p.session.fetch_reject(serve, code),
                    }
                    self.touch(down);
                }
            }
            FetchSink::Local(local) => {
                self.local_fetches.remove(local);
                self.events.push_back(NodeEvent::Fetch {
                    id: local,
                    event: FetchEvent::Closed { error },
                });
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // Session gone

    fn on_closed(
        &mut self,
        now: Instant,
        peer: PeerId,
        code: SessionCode,
        reason: String,
        local: bool,
    ) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        p.closed = true;
        let serves: Vec<ConsumerId> = p.serves.drain().map(|(_, c)| c).collect();
        let listeners: Vec<super::WatchId> = p.listeners.drain().map(|(_, w)| w).collect();
        let upstream: Vec<TrackId> = p.upstream.drain().map(|(_, t)| t).collect();
        let fetches: Vec<FetchSink> = p.fetches.drain().map(|(_, f)| f).collect();
        p.track_queries.clear();
        p.interests.clear();
        for watch in listeners {
            self.watchers.remove(watch);
        }
        for consumer in serves {
            self.detach(consumer);
        }
        for track in upstream {
            if let Some(links) = self.links.get_mut(track) {
                links.upstream = None;
            }
            if !self.fail_over(now, track, peer, StreamCode::CANCEL) {
                let end = self.lost_upstream_end(track, StreamCode::CANCEL);
                self.track_ended(now, track, end);
            }
        }
        for sink in fetches {
            match sink {
                FetchSink::Peer(down, serve) => {
                    if let Some(p) = self.peers.get_mut(down) {
                        p.session.fetch_reject(serve, StreamCode::CANCEL);
                        self.touch(down);
                    }
                }
                FetchSink::Local(local) => {
                    self.local_fetches.remove(local);
                    self.events.push_back(NodeEvent::Fetch {
                        id: local,
                        event: FetchEvent::Closed {
                            error: Some(StreamCode::CANCEL),
                        },
                    });
                }
            }
        }
        // Pending TRACK answers waiting on this peer, and waiters from it.
        let tracks: Vec<TrackId> = self.links.keys().collect();
        for track in tracks {
            let mut orphaned = Vec::new();
            if let Some(links) = self.links.get_mut(track) {
                links.fetches.retain(|f| f.peer != peer);
                links.info_waiters.retain(|(w, _)| *w != peer);
                if links.info_query.is_some_and(|(q, _)| q == peer) {
                    links.info_query = None;
                    orphaned = std::mem::take(&mut links.info_waiters);
                }
            }
            for (waiter, serve) in orphaned {
                if let Some(p) = self.peers.get_mut(waiter) {
                    p.session.track_info_reply(serve, Err(StreamCode::CANCEL));
                    self.touch(waiter);
                }
            }
            self.release_if_unused(track);
        }
        self.drop_routes_of(now, peer);
        self.events.push_back(NodeEvent::SessionClosed {
            peer,
            code,
            reason,
            local,
        });
    }
}
