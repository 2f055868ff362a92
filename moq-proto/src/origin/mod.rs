//! The origin: every broadcast an endpoint can serve, as broadcasts → tracks → groups →
//! frames, with a byte-bounded cache per track.
//!
//! A broadcast is **local** (published by this endpoint's application) or **remote** (learned
//! from a peer's announcements, with one route per peer and its hop list). A track holds the
//! groups it has cached: always the latest, plus older ones while they are within the track's
//! max latency (the publisher's cache retention; 5 s by default as in the reference) and the
//! byte budget. Frames are stored as zero-copy `Bytes` chunks exactly as they arrived, so a
//! frame that spans network chunks is never copied; fan-out to N subscribers clones
//! reference counts only.
//!
//! The origin is pure data. [`crate::node::Node`] attaches sessions and the application to it.

pub mod track;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use slotmap::SlotMap;

pub use track::{FrameMeta, Group, GroupError, GroupState, Track, TrackEnd};

use crate::wire::{Path, TrackInfo};

slotmap::new_key_type! {
    /// A broadcast in the origin.
    pub struct BroadcastId;
    /// A track in the origin.
    pub struct TrackId;
    /// A peer (one session) of the endpoint.
    pub struct PeerId;
}

/// Where a remote broadcast can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The session that announced it.
    pub peer: PeerId,
    /// Hops from the origin to that peer, inclusive.
    pub hops: Vec<u64>,
}

/// Where a route says a broadcast comes from, to tell apart two publishers of the same
/// broadcast (active/active) from two paths to one publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOrigin {
    /// The first hop of the route's list: the publisher's or its first relay's hop ID.
    Hop(u64),
    /// A route with no hops: the announcing session is the publisher.
    Peer(PeerId),
}

impl Route {
    /// The route's origin; `None` when its list does not say (lite-03 carries only a count,
    /// which reads back as zero IDs).
    pub fn origin(&self) -> Option<RouteOrigin> {
        match self.hops.first() {
            None => Some(RouteOrigin::Peer(self.peer)),
            Some(0) => None,
            Some(&hop) => Some(RouteOrigin::Hop(hop)),
        }
    }
}

/// A broadcast: a path, its source, its tracks.
#[derive(Debug)]
pub struct Broadcast {
    path: Path,
    local: bool,
    routes: Vec<Route>,
    tracks: HashMap<Arc<str>, TrackId>,
}

impl Broadcast {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when this endpoint's application publishes it.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// True while it is published locally or reachable through a peer.
    pub fn is_active(&self) -> bool {
        self.local || !self.routes.is_empty()
    }

    /// The route used to reach it: `None` for local broadcasts; otherwise the route with the
    /// fewest hops (the earliest on a tie).
    pub fn best_route(&self) -> Option<&Route> {
        if self.local {
            return None;
        }
        self.routes.iter().min_by_key(|r| r.hops.len())
    }

    /// Hops to announce for it: empty for local, the best route's otherwise.
    pub fn hops(&self) -> &[u64] {
        self.best_route()
            .map(|r| r.hops.as_slice())
            .unwrap_or_default()
    }

    /// Every route known.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Its tracks by name.
    pub fn track(&self, name: &str) -> Option<TrackId> {
        self.tracks.get(name).copied()
    }

    /// Number of tracks held.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }
}

/// Origin-wide caps.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Most cached bytes per track (the latest group is always kept).
    pub max_cache_bytes: u64,
    /// Most broadcasts known at once.
    pub max_broadcasts: usize,
    /// Most tracks held at once.
    pub max_tracks: usize,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            max_cache_bytes: 32 * 1024 * 1024,
            max_broadcasts: 100_000,
            max_tracks: 1_000_000,
        }
    }
}

/// Why an origin operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// A cap in [`OriginConfig`] was reached.
    #[error("too many {0}")]
    TooMany(&'static str),
    /// The broadcast is already published locally.
    #[error("broadcast {0} is already published")]
    Duplicate(Path),
    /// No such broadcast or track.
    #[error("not found")]
    NotFound,
    /// The track has ended.
    #[error("track ended")]
    Ended,
    /// Group sequences must increase.
    #[error("group {0} is not newer than the latest")]
    Stale(u64),
}

/// What changed about a broadcast's announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceChange {
    /// Nothing visible changed.
    None,
    /// It became active.
    Active,
    /// Still active, through a different best route (lite-05 re-announces it).
    Rerouted,
    /// It ended.
    Ended,
}

/// The set of broadcasts an endpoint can serve.
#[derive(Debug, Default)]
pub struct Origin {
    config: OriginConfig,
    by_path: HashMap<Path, BroadcastId>,
    broadcasts: SlotMap<BroadcastId, Broadcast>,
    tracks: SlotMap<TrackId, Track>,
    evictions: BinaryHeap<Reverse<(Instant, TrackId)>>,
}

impl Origin {
    /// An empty origin.
    pub fn new(config: OriginConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    /// The caps.
    pub fn config(&self) -> &OriginConfig {
        &self.config
    }

    /// Look a broadcast up by path.
    pub fn find(&self, path: &Path) -> Option<BroadcastId> {
        self.by_path.get(path).copied()
    }

    /// A broadcast.
    pub fn broadcast(&self, id: BroadcastId) -> Option<&Broadcast> {
        self.broadcasts.get(id)
    }

    /// Every broadcast.
    pub fn broadcasts(&self) -> impl Iterator<Item = (BroadcastId, &Broadcast)> {
        self.broadcasts.iter()
    }

    /// Active broadcasts whose path has `prefix`.
    pub fn active_under<'a>(
        &'a self,
        prefix: &'a Path,
    ) -> impl Iterator<Item = &'a Broadcast> + 'a {
        self.broadcasts
            .values()
            .filter(move |b| b.is_active() && b.path.has_prefix(prefix))
    }

    /// A track.
    pub fn track(&self, id: TrackId) -> Option<&Track> {
        self.tracks.get(id)
    }

    /// A track, mutably.
    pub fn track_mut(&mut self, id: TrackId) -> Option<&mut Track> {
        self.tracks.get_mut(id)
    }

    /// Number of broadcasts and tracks held (for leak checks).
    pub fn len(&self) -> (usize, usize) {
        (self.broadcasts.len(), self.tracks.len())
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.broadcasts.is_empty() && self.tracks.is_empty() && self.by_path.is_empty()
    }

    fn entry(&mut self, path: &Path) -> Result<BroadcastId, OriginError> {
        if let Some(id) = self.by_path.get(path) {
            return Ok(*id);
        }
        if self.broadcasts.len() >= self.config.max_broadcasts {
            return Err(OriginError::TooMany("broadcasts"));
        }
        let id = self.broadcasts.insert(Broadcast {
            path: path.clone(),
            local: false,
            routes: Vec::new(),
            tracks: HashMap::new(),
        });
        self.by_path.insert(path.clone(), id);
        Ok(id)
    }

    /// Publish a broadcast locally.
    pub fn publish(&mut self, path: &Path) -> Result<(BroadcastId, AnnounceChange), OriginError> {
        let id = self.entry(path)?;
        let broadcast = &mut self.broadcasts[id];
        if broadcast.local {
            return Err(OriginError::Duplicate(path.clone()));
        }
        let was_active = broadcast.is_active();
        let old_hops = broadcast.hops().to_vec();
        broadcast.local = true;
        let change = if !was_active {
            AnnounceChange::Active
        } else if !old_hops.is_empty() {
            AnnounceChange::Rerouted
        } else {
            AnnounceChange::None
        };
        Ok((id, change))
    }

    /// Stop publishing a broadcast locally. Its local tracks stay until removed.
    pub fn unpublish(&mut self, id: BroadcastId) -> AnnounceChange {
        let Some(broadcast) = self.broadcasts.get_mut(id) else {
            return AnnounceChange::None;
        };
        if !broadcast.local {
            return AnnounceChange::None;
        }
        broadcast.local = false;
        if broadcast.routes.is_empty() {
            AnnounceChange::Ended
        } else {
            AnnounceChange::Rerouted
        }
    }

    /// Add or replace the route through `peer` for `path`.
    pub fn add_route(
        &mut self,
        path: &Path,
        route: Route,
    ) -> Result<(BroadcastId, AnnounceChange), OriginError> {
        let id = self.entry(path)?;
        let broadcast = &mut self.broadcasts[id];
        let was_active = broadcast.is_active();
        let old_best = broadcast.best_route().cloned();
        broadcast.routes.retain(|r| r.peer != route.peer);
        broadcast.routes.push(route);
        let change = if !was_active {
            AnnounceChange::Active
        } else if !broadcast.local && broadcast.best_route().cloned() != old_best {
            AnnounceChange::Rerouted
        } else {
            AnnounceChange::None
        };
        Ok((id, change))
    }

    /// Remove the route through `peer` for broadcast `id`.
    pub fn remove_route(&mut self, id: BroadcastId, peer: PeerId) -> AnnounceChange {
        let Some(broadcast) = self.broadcasts.get_mut(id) else {
            return AnnounceChange::None;
        };
        let old_best = broadcast.best_route().cloned();
        let before = broadcast.routes.len();
        broadcast.routes.retain(|r| r.peer != peer);
        if broadcast.routes.len() == before {
            return AnnounceChange::None;
        }
        if !broadcast.is_active() {
            AnnounceChange::Ended
        } else if !broadcast.local && broadcast.best_route().cloned() != old_best {
            AnnounceChange::Rerouted
        } else {
            AnnounceChange::None
        }
    }

    /// Broadcasts with a route through `peer`.
    pub fn routed_through(&self, peer: PeerId) -> Vec<BroadcastId> {
        self.broadcasts
            .iter()
            .filter(|(_, b)| b.routes.iter().any(|r| r.peer == peer))
            .map(|(id, _)| id)
            .collect()
    }

    /// Create a track in a broadcast (or return the existing one).
    pub fn create_track(
        &mut self,
        broadcast: BroadcastId,
        name: &str,
        info: Option<TrackInfo>,
    ) -> Result<TrackId, OriginError> {
        let Some(b) = self.broadcasts.get_mut(broadcast) else {
            return Err(OriginError::NotFound);
        };
        if let Some(id) = b.tracks.get(name) {
            return Ok(*id);
        }
        if self.tracks.len() >= self.config.max_tracks {
            return Err(OriginError::TooMany("tracks"));
        }
        let name: Arc<str> = Arc::from(name);
        let id = self
            .tracks
            .insert(Track::new(broadcast, name.clone(), info));
        b.tracks.insert(name, id);
        Ok(id)
    }

    /// Remove a track and its cache.
    pub fn remove_track(&mut self, id: TrackId) -> Option<Track> {
        let track = self.tracks.remove(id)?;
        if let Some(b) = self.broadcasts.get_mut(track.broadcast()) {
            b.tracks.remove(track.name());
        }
        Some(track)
    }

    /// Remove a broadcast entry that is inactive and has no tracks left. Returns true if removed.
    pub fn collect(&mut self, id: BroadcastId) -> bool {
        let Some(b) = self.broadcasts.get(id) else {
            return false;
        };
        if b.is_active() || !b.tracks.is_empty() {
            return false;
        }
        let path = b.path.clone();
        self.broadcasts.remove(id);
        self.by_path.remove(&path);
        true
    }

    /// Tracks of a broadcast.
    pub fn tracks_of(&self, broadcast: BroadcastId) -> Vec<TrackId> {
        self.broadcasts
            .get(broadcast)
            .map(|b| b.tracks.values().copied().collect())
            .unwrap_or_default()
    }

    /// Begin group `seq` of `track` and schedule its predecessor's eviction.
    pub fn start_group(
        &mut self,
        now: Instant,
        track: TrackId,
        seq: u64,
    ) -> Result<(), OriginError> {
        let t = self.tracks.get_mut(track).ok_or(OriginError::NotFound)?;
        t.start_group(now, seq)?;
        self.schedule(track);
        Ok(())
    }

    /// Make sure the track's next eviction is in the timer heap (once per deadline). Call it
    /// when a track's groups change (a group starts or closes).
    pub fn schedule(&mut self, track: TrackId) {
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        let next = t.next_eviction();
        if next.is_some() && next != t.scheduled {
            t.scheduled = next;
            if let Some(at) = next {
                self.evictions.push(Reverse((at, track)));
            }
        }
    }

    /// Apply `track`'s retention and byte budget now; returns evicted groups that were still
    /// open, so their subscribers can be told.
    pub fn enforce(&mut self, now: Instant, track: TrackId) -> Vec<u64> {
        let max_bytes = self.config.max_cache_bytes;
        let Some(t) = self.tracks.get_mut(track) else {
            return Vec::new();
        };
        // Nothing to do until the oldest group ages out or the budget is exceeded.
        if t.cached_bytes() <= max_bytes && t.next_eviction().is_none_or(|at| at > now) {
            return Vec::new();
        }
        let open = t.evict(now, max_bytes);
        self.schedule(track);
        open
    }

    /// Evict whatever reached its retention by `now`; returns groups evicted while still
    /// open, as `(track, seq)`.
    pub fn evict(&mut self, now: Instant) -> Vec<(TrackId, u64)> {
        let mut open = Vec::new();
        while let Some(Reverse((at, track))) = self.evictions.peek().copied() {
            if at > now {
                break;
            }
            self.evictions.pop();
            if let Some(t) = self.tracks.get_mut(track)
                && t.scheduled == Some(at)
            {
                t.scheduled = None;
            }
            for seq in self.enforce(now, track) {
                open.push((track, seq));
            }
            // A deadline already past that could not be met is not re-armed here (that would
            // spin); the track re-arms when its groups change.
            if self
                .tracks
                .get(track)
                .and_then(|t| t.next_eviction())
                .is_some_and(|at| at > now)
            {
                self.schedule(track);
            }
        }
        open
    }

    /// When the next cached group may reach its retention (possibly early; never late).
    pub fn next_eviction(&self) -> Option<Instant> {
        self.evictions.peek().map(|Reverse((at, _))| *at)
    }
}
