//! The local application's side of a node: publishing into the origin, subscribing,
//! watching announcements, fetching.

use std::time::Instant;

use bytes::Bytes;

use super::events::{FetchEvent, LocalFetchId, LocalSubId, NodeEvent, SubscriptionEvent, WatchId};
use super::{Consumer, ConsumerId, FetchSink, Node, Owner, WatchOwner, Watcher};
use crate::codes::StreamCode;
use crate::origin::{
    BroadcastId, GroupError, GroupState, OriginError, TrackEnd, TrackId, track::join,
};
use crate::session::SubscribeParams;
use crate::wire::{Path, TrackInfo};

pub(super) struct LocalSub {
    path: Path,
    track: String,
    params: SubscribeParams,
    pub(super) consumer: Option<ConsumerId>,
}

pub(super) struct LocalFetch {
    timestamp: u64,
    pieces: Vec<Bytes>,
}

/// Why a local publishing call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The origin refused it.
    #[error(transparent)]
    Origin(#[from] OriginError),
    /// The group is not open (finished, aborted, evicted, or never started).
    #[error("group {0} is not open")]
    GroupClosed(u64),
    /// The group would exceed 32 MiB or 8192 frames; it was aborted.
    #[error("group {0} too large")]
    GroupTooLarge(u64),
    /// The path is not valid.
    #[error(transparent)]
    Path(#[from] crate::wire::PathError),
}

impl Node {
    /// Publish a broadcast and announce it to every interested peer.
    pub fn publish(&mut self, now: Instant, path: &Path) -> Result<BroadcastId, PublishError> {
        let (broadcast, change) = self.origin.publish(path)?;
        self.announce_change(now, broadcast, change);
        self.pump(now);
        Ok(broadcast)
    }

    /// Stop publishing a broadcast: its tracks end and it is announced as ended.
    pub fn unpublish(&mut self, now: Instant, broadcast: BroadcastId) {
        for track in self.origin.tracks_of(broadcast) {
            let end = self.origin.track(track).map_or(0, |t| t.next_seq());
            if self
                .origin
                .track(track)
                .is_some_and(|t| t.ended().is_none())
            {
                self.track_ended(now, track, TrackEnd::Finished { end });
            }
            self.origin.remove_track(track);
            self.links.remove(track);
        }
        let change = self.origin.unpublish(broadcast);
        self.announce_change(now, broadcast, change);
        self.origin.collect(broadcast);
        self.pump(now);
    }

    /// Add a track to a local broadcast.
    pub fn create_track(
        &mut self,
        broadcast: BroadcastId,
        name: &str,
        info: TrackInfo,
    ) -> Result<TrackId, PublishError> {
        if !self
            .origin
            .broadcast(broadcast)
            .is_some_and(|b| b.is_local())
        {
            return Err(OriginError::NotFound.into());
        }
        let track = self.origin.create_track(broadcast, name, Some(info))?;
        self.links.entry(track).map(|e| e.or_default());
        Ok(track)
    }

    /// Begin the next group of a local track; returns its sequence.
    pub fn append_group(&mut self, now: Instant, track: TrackId) -> Result<u64, PublishError> {
        let seq = self
            .origin
            .track(track)
            .ok_or(OriginError::NotFound)?
            .next_seq();
        self.start_group(now, track, seq)?;
        Ok(seq)
    }

    /// Begin group `seq` of a local track (sequences need not be contiguous).
    pub fn start_group(
        &mut self,
        now: Instant,
        track: TrackId,
        seq: u64,
    ) -> Result<(), PublishError> {
        self.origin.start_group(now, track, seq)?;
        self.group_started(now, track, seq);
        self.enforce_cache(now, track);
        self.pump(now);
        Ok(())
    }

    /// Append a whole frame with timestamp `ts` (track timescale units) to group `seq`.
    pub fn write_frame(
        &mut self,
        now: Instant,
        track: TrackId,
        seq: u64,
        ts: u64,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        let t = self.origin.track_mut(track).ok_or(OriginError::NotFound)?;
        let size = payload.len() as u64;
        match t.append_frame(seq, ts, size, payload.clone()) {
            Ok(()) => {}
            Err(GroupError::TooLarge) => {
                self.group_closed(
                    now,
                    track,
                    seq,
                    GroupState::Aborted(StreamCode::GROUP_TOO_LARGE),
                );
                self.pump(now);
                return Err(PublishError::GroupTooLarge(seq));
            }
            Err(_) => return Err(PublishError::GroupClosed(seq)),
        }
        self.frame_started(now, track, seq, ts, size, &payload);
        self.enforce_cache(now, track);
        self.pump(now);
        Ok(())
    }

    /// Finish group `seq`.
    pub fn finish_group(&mut self, now: Instant, track: TrackId, seq: u64) {
        self.group_closed(now, track, seq, GroupState::Finished);
        self.pump(now);
    }

    /// Abort group `seq` with a stream error code.
    pub fn abort_group(&mut self, now: Instant, track: TrackId, seq: u64, code: StreamCode) {
        self.group_closed(now, track, seq, GroupState::Aborted(code));
        self.pump(now);
    }

    /// Publish a whole single-frame group, as a lite-05 datagram to subscribers that can take
    /// one (at most 1200 bytes), else as a stream.
    pub fn write_datagram_group(
        &mut self,
        now: Instant,
        track: TrackId,
        seq: u64,
        ts: u64,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        if self.origin.track(track).is_none() {
            return Err(OriginError::NotFound.into());
        }
        self.datagram_group(now, track, seq, ts, payload);
        self.pump(now);
        Ok(())
    }

    /// End a local track: every subscriber's subscription finishes cleanly.
    pub fn end_track(&mut self, now: Instant, track: TrackId) {
        let end = self.origin.track(track).map_or(0, |t| t.next_seq());
        self.track_ended(now, track, TrackEnd::Finished { end });
        self.pump(now);
    }

    // ------------------------------------------------------------------------------------
    // Subscribing

    /// Subscribe to a track. If the broadcast is not known yet, the subscription waits for it
    /// to be announced. Progress arrives as [`NodeEvent::Subscription`].
    pub fn subscribe(
        &mut self,
        now: Instant,
        path: &Path,
        track: &str,
        params: SubscribeParams,
    ) -> LocalSubId {
        let id = self.locals.insert(LocalSub {
            path: path.clone(),
            track: track.to_string(),
            params,
            consumer: None,
        });
        if self
            .origin
            .find(path)
            .and_then(|b| self.origin.broadcast(b))
            .is_some_and(|b| b.is_active())
        {
            self.start_local(now, id);
        }
        self.pump(now);
        id
    }

    /// Change a local subscription's priority, latency or range. Cached groups a widened
    /// range admits are delivered; the upstream follows the most demanding subscriber.
    pub fn update_subscription(&mut self, now: Instant, id: LocalSubId, params: SubscribeParams) {
        let Some(local) = self.locals.get_mut(id) else {
            return;
        };
        local.params = params;
        if let Some(consumer) = local.consumer {
            self.update_consumer(now, consumer, params);
        }
        self.pump(now);
    }

    /// Cancel a local subscription (no further event for it).
    pub fn unsubscribe(&mut self, now: Instant, id: LocalSubId) {
        if let Some(local) = self.locals.remove(id)
            && let Some(consumer) = local.consumer
        {
            self.detach(consumer);
        }
        self.pump(now);
    }

    fn start_local(&mut self, now: Instant, id: LocalSubId) {
        let Some(local) = self.locals.get(id) else {
            return;
        };
        let (path, name, params) = (local.path.clone(), local.track.clone(), local.params);
        match self.resolve_track(now, &path, &name, params, None) {
            Ok(track) => {
                let consumer = self.consumers.insert(Consumer {
                    track,
                    owner: Owner::Local(id),
                    params,
                    accepted: false,
                    start: None,
                    begins_at: None,
                    last: None,
                    outstanding: super::deliver::tracked_range_for(params),
                    passed_end: false,
                    groups: Vec::new(),
                });
                if let Some(local) = self.locals.get_mut(id) {
                    local.consumer = Some(consumer);
                }
                self.begin_consumer(now, consumer);
            }
            Err(code) => {
                self.locals.remove(id);
                self.events.push_back(NodeEvent::Subscription {
                    id,
                    event: SubscriptionEvent::Closed { error: Some(code) },
                });
            }
        }
    }

    /// A broadcast became active: start the local subscriptions waiting for it.
    pub(super) fn resolve_pending_locals(&mut self, now: Instant, path: &Path) {
        let waiting: Vec<LocalSubId> = self
            .locals
            .iter()
            .filter(|(_, l)| l.consumer.is_none() && &l.path == path)
            .map(|(k, _)| k)
            .collect();
        for id in waiting {
            self.start_local(now, id);
        }
    }

    // ------------------------------------------------------------------------------------
    // Announcements

    /// Watch broadcasts under `prefix`: every active one is reported at once, then changes.
    pub fn announced(&mut self, prefix: &Path) -> WatchId {
        let watch = self.watchers.insert(Watcher {
            prefix: prefix.clone(),
            owner: WatchOwner::Local,
        });
        let active: Vec<Path> = self
            .origin
            .active_under(prefix)
            .map(|b| b.path().clone())
            .collect();
        for path in active {
            self.events.push_back(NodeEvent::Announced {
                watch,
                path,
                active: true,
            });
        }
        watch
    }

    /// Stop watching.
    pub fn unwatch(&mut self, watch: WatchId) {
        self.watchers.remove(watch);
    }

    // ------------------------------------------------------------------------------------
    // Fetch

    /// FETCH one group: from the cache if it holds it complete, else from the broadcast's
    /// source. Progress arrives as [`NodeEvent::Fetch`].
    pub fn fetch(
        &mut self,
        now: Instant,
        path: &Path,
        track: &str,
        priority: u8,
        seq: u64,
    ) -> LocalFetchId {
        let id = self.local_fetches.insert(LocalFetch {
            timestamp: 0,
            pieces: Vec::new(),
        });
        let broadcast = self.origin.find(path);
        let track_id = broadcast
            .and_then(|b| self.origin.broadcast(b))
            .and_then(|b| b.track(track));
        let cached = track_id
            .and_then(|t| self.origin.track(t))
            .and_then(|t| t.group(seq))
            .map(|g| g.state());
        if let (Some(track_id), Some(_)) = (track_id, cached) {
            // Cached (complete or still arriving): served from the origin as it fills.
            if let Some(links) = self.links.entry(track_id).map(|e| e.or_default()) {
                links.local_fetches.push((id, seq, 0));
            }
            self.local_fetch_progress(track_id, seq);
            return id;
        }
        let route = broadcast
            .and_then(|b| self.origin.broadcast(b))
            .and_then(|b| b.best_route().cloned());
        let started = route.and_then(|route| {
            let rel = self.relative(route.peer, path)?;
            let p = self.peers.get_mut(route.peer)?;
            let upstream = p.session.fetch(rel, track, priority, seq).ok()?;
            p.fetches.insert(upstream, FetchSink::Local(id));
            Some(route.peer)
        });
        match started {
            Some(peer) => {
                self.touch(peer);
                self.pump(now);
            }
            None => {
                self.local_fetches.remove(id);
                self.events.push_back(NodeEvent::Fetch {
                    id,
                    event: FetchEvent::Closed {
                        error: Some(StreamCode::NOT_FOUND),
                    },
                });
            }
        }
        id
    }

    /// Reassemble an upstream FETCH reply into whole frames for the application.
    pub(super) fn local_fetch_data(
        &mut self,
        id: LocalFetchId,
        header: Option<(Option<u64>, u64)>,
        chunk: Bytes,
        remaining: u64,
    ) {
        let Some(fetch) = self.local_fetches.get_mut(id) else {
            return;
        };
        if let Some((ts, _)) = header {
            fetch.timestamp = ts.unwrap_or(0);
            fetch.pieces.clear();
        }
        if !chunk.is_empty() {
            fetch.pieces.push(chunk);
        }
        if remaining == 0 {
            let payload = join(&fetch.pieces);
            fetch.pieces.clear();
            let timestamp = fetch.timestamp;
            self.events.push_back(NodeEvent::Fetch {
                id,
                event: FetchEvent::Frame { timestamp, payload },
            });
        }
    }
}
