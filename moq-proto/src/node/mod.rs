//! A node: one [`Origin`] with any number of [`Session`]s attached, plus the local application.
//!
//! This is the transport-agnostic endpoint that the QUIC engine (`quic`, feature `quinn`) and
//! the in-memory test harness wrap. Everything a relay does happens here, with no relay-specific code path:
//!
//! - Announcements flow from the origin to every session (and local watcher) that asked,
//!   filtered by prefix, never back to the session a route came from, and skipping routes
//!   through the requester's Exclude Hop.
//! - Broadcasts announced by a peer become remote broadcasts in the origin (loops are cut by
//!   dropping any route whose hop list already holds our hop ID).
//! - A subscription to a remote track opens **one** upstream subscription, shared by every
//!   downstream subscriber and released when the last one leaves.
//! - Groups fan out to subscribers as they arrive (cut-through: each chunk is forwarded at
//!   once), and a late joiner is served from the cache, from the latest group unless it asked
//!   for an earlier start.
//!
//! The sans-IO contract is the session's: feed transport input for a peer with
//! [`Node::input`], then drain [`Node::next_ready_peer`] / [`Node::poll_command`] and
//! [`Node::poll_event`], then read [`Node::poll_timeout`].

mod deliver;
mod events;
mod local;
mod metrics;
mod routing;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use crate::codes::{SessionCode, StreamCode};
use slotmap::{SecondaryMap, SlotMap};

pub use events::{FetchEvent, LocalFetchId, LocalSubId, NodeEvent, SubscriptionEvent, WatchId};
pub use local::PublishError;
pub(crate) use metrics::add_delivery;
pub use metrics::{BroadcastMetrics, NodeGauges};

use crate::auth::{Authorizer, Grant};
use crate::origin::{Origin, OriginConfig, PeerId, TrackId};
use crate::session::{
    Command, Config, FetchId, FetchServeId, GroupSendId, InterestId, ListenerId, ServeId, Session,
    SubscribeParams, SubscriptionId, TrackQueryId, TrackServeId,
};
use crate::wire::Path;

slotmap::new_key_type! {
    /// One subscriber of a track: a peer's subscription or a local one.
    pub struct ConsumerId;
}

/// Node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Our hop ID, random in `[1, 2^53)`; 0 disables loop detection.
    pub hop_id: u64,
    /// Cache and table caps.
    pub origin: OriginConfig,
    /// Ask every peer for all its announcements as soon as the session is usable (what the
    /// reference relay does toward its clients, and clients toward the relay).
    pub announce_on_connect: bool,
    /// How long a session may drain after GOAWAY before it is closed with 0x10.
    pub goaway_drain: Duration,
    /// Admits server-side sessions and limits what they may publish and subscribe
    /// ([`crate::auth`]); `None` lets every session do everything.
    pub authorizer: Option<std::sync::Arc<dyn Authorizer>>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            hop_id: 0,
            origin: OriginConfig::default(),
            announce_on_connect: true,
            goaway_drain: Duration::from_secs(10),
            authorizer: None,
        }
    }
}

/// What a consumer's groups go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Serve(PeerId, ServeId),
    Local(LocalSubId),
}

/// Where one group is being delivered for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Stream(GroupSendId),
    /// Local: index of the next frame to hand out.
    Local(usize),
}

#[derive(Debug)]
struct Consumer {
    track: TrackId,
    owner: Owner,
    params: SubscribeParams,
    /// Accepted toward the subscriber (SUBSCRIBE_OK / Ready sent).
    accepted: bool,
    /// First group delivered; older groups are skipped.
    start: Option<u64>,
    /// Where delivery begins as the subscriber is told it (lite-05 SUBSCRIBE_OK, lite-03/04
    /// SUBSCRIBE_OK's start, [`SubscriptionEvent::Start`]): the start asked for, the newest
    /// cached group, or, on a track with no group yet, where its source starts. `None` until
    /// known; then told once.
    begins_at: Option<u64>,
    /// Highest group opened so far (a bounded consumer is done once it reached its end).
    last: Option<u64>,
    /// A bounded range's groups not yet accounted for (delivered, aborted or dropped); `None`
    /// until the start is known, or for ranges too long to track one by one.
    outstanding: Option<std::collections::BTreeSet<u64>>,
    /// A group past the range's end appeared: the source has moved on.
    passed_end: bool,
    /// Groups in delivery.
    groups: Vec<(u64, Sink)>,
}

/// Per-track glue: who consumes it, where it comes from.
#[derive(Debug, Default)]
struct Links {
    consumers: Vec<ConsumerId>,
    /// Our subscription toward the peer the track comes from.
    upstream: Option<(PeerId, SubscriptionId)>,
    /// TRACK request in flight upstream, and the peers' TRACK requests waiting on it.
    info_query: Option<(PeerId, TrackQueryId)>,
    info_waiters: Vec<(PeerId, TrackServeId)>,
    /// Peers' FETCHes being served from a group still arriving: (peer, fetch, seq, next frame,
    /// chunks of that frame already sent).
    fetches: Vec<FetchProgress>,
    /// Local FETCHes of a group still arriving: (fetch, seq, next frame to hand out).
    local_fetches: Vec<(LocalFetchId, u64, usize)>,
    /// Priority and max latency last sent upstream (the most demanding consumer's).
    upstream_params: Option<(u8, Duration)>,
    /// The start group the upstream subscription asked for (kept on updates: a start of
    /// "latest" in SUBSCRIBE_UPDATE would re-pin it).
    upstream_start: Option<u64>,
    /// Frames and payload bytes delivered to peers (metrics).
    frames_out: u64,
    bytes_out: u64,
    /// Peers whose upstream subscription failed since the last group arrived: a failover
    /// tries the other routes first.
    failed_routes: Vec<PeerId>,
    /// Group renumbering after a failover to another source.
    remap: Remap,
    /// The end (in the track's numbering) the current upstream announced before closing
    /// cleanly; taken when the subscription closes.
    upstream_end: Option<u64>,
    /// The track's end when a source finished it cleanly and the track failed over to
    /// another route: if no route then delivers a group, the track ends as that source said
    /// (finished), not aborted.
    finished_at: Option<u64>,
    /// The first group the upstream subscription serves, as its SUBSCRIBE_OK said (in the
    /// track's numbering); consumers of a track with no group yet begin there.
    served_start: Option<u64>,
    /// Where the current upstream's route says the track comes from.
    upstream_origin: Option<crate::origin::RouteOrigin>,
    /// A source that finished the track: until a group arrives, a failover takes only a
    /// route from another origin (another publisher), never another path to that one.
    finished_origin: Option<crate::origin::RouteOrigin>,
}

impl Links {
    /// Whether an upstream may go through `route` now: not one that failed since the last
    /// group, nor, after a publisher finished the track, another path to that publisher.
    fn may_take(&self, route: &crate::origin::Route) -> bool {
        !self.failed_routes.contains(&route.peer)
            && self
                .finished_origin
                .is_none_or(|finished| route.origin().is_some_and(|o| o != finished))
    }
}

/// How group sequences from the current upstream map to the track's: after a failover to
/// another publisher of the same broadcast (whose numbering is its own), groups continue
/// after the last one seen, so subscribers never see a sequence go back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Remap {
    /// The original source: sequences as they are.
    #[default]
    None,
    /// Failed over; the new source's first group fixes the shift.
    Pending,
    /// The new source's group `from` is our `to`, and so on up; its groups below `from`
    /// (older ones arriving late) are not taken.
    Shift { from: u64, to: u64 },
}

#[derive(Debug, Clone, Copy)]
struct FetchProgress {
    peer: PeerId,
    fetch: FetchServeId,
    seq: u64,
    frame: usize,
    chunk: usize,
}

/// Where an upstream FETCH's reply goes.
#[derive(Debug, Clone, Copy)]
enum FetchSink {
    Peer(PeerId, FetchServeId),
    Local(LocalFetchId),
}

struct Peer {
    session: Session,
    /// Broadcast paths on this session are relative to this root (`None` until known).
    root: Option<Path>,
    /// A server-side session admitted by the authorizer: what it may do (`None`: anything).
    grant: Option<Grant>,
    closed: bool,
    /// A link to another endpoint of this process (a thread of the same relay): left out of
    /// the node's figures, which count what the relay as a whole does.
    internal: bool,
    ready_flag: bool,
    timer_flag: bool,
    /// The deadline last recorded in the node's timer heap.
    deadline: Option<Instant>,
    upstream: crate::fxhash::FxHashMap<SubscriptionId, TrackId>,
    serves: crate::fxhash::FxHashMap<ServeId, ConsumerId>,
    listeners: crate::fxhash::FxHashMap<ListenerId, WatchId>,
    interests: Vec<InterestId>,
    fetches: crate::fxhash::FxHashMap<FetchId, FetchSink>,
    track_queries: crate::fxhash::FxHashMap<TrackQueryId, TrackId>,
}

/// Who watches announcements under a prefix.
#[derive(Debug, Clone)]
struct Watcher {
    prefix: Path,
    owner: WatchOwner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchOwner {
    Peer(PeerId, ListenerId),
    Local,
}

/// An origin and its sessions. See the [module docs](self).
pub struct Node {
    cfg: NodeConfig,
    epoch: Option<Instant>,
    origin: Origin,
    peers: SlotMap<PeerId, Peer>,
    consumers: SlotMap<ConsumerId, Consumer>,
    links: SecondaryMap<TrackId, Links>,
    watchers: SlotMap<WatchId, Watcher>,
    locals: SlotMap<LocalSubId, local::LocalSub>,
    local_fetches: SlotMap<LocalFetchId, local::LocalFetch>,
    events: VecDeque<NodeEvent>,
    /// Peers whose session may have commands or events to drain.
    ready: VecDeque<PeerId>,
    /// Peers whose session deadline must be re-read.
    timer_dirty: Vec<PeerId>,
    /// Session deadlines, earliest first; an entry is stale unless it equals the peer's.
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    /// When grants expire, earliest first.
    grant_expiry: BinaryHeap<Reverse<(Instant, PeerId)>>,
    /// The wall clock: an instant and the Unix time then (for token expiry).
    wall_clock: Option<(Instant, Duration)>,
    /// Counters for metrics.
    stats: NodeStats,
}

/// Running totals of what a node has done (for metrics; never reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Sessions refused by the authorizer (bad, expired or missing token, no access).
    pub auth_refused_sessions: u64,
    /// Requests refused for lack of rights (announcements dropped, subscriptions, fetches and
    /// track queries refused).
    pub auth_refused_requests: u64,
    /// Sessions closed because their grant expired.
    pub auth_expired_sessions: u64,
    /// Frames received from publishers (peers and local).
    pub frames_in: u64,
    /// Payload bytes received from publishers.
    pub bytes_in: u64,
    /// Frames delivered to peers' subscriptions.
    pub frames_out: u64,
    /// Payload bytes delivered to peers' subscriptions.
    pub bytes_out: u64,
    /// Groups given up toward subscribers, by reason, summed over sessions (including ended ones).
    pub delivery: crate::session::DeliveryStats,
}

impl Node {
    /// A node with an empty origin.
    pub fn new(config: NodeConfig) -> Self {
        Self {
            origin: Origin::new(config.origin.clone()),
            cfg: config,
            epoch: None,
            peers: SlotMap::with_key(),
            consumers: SlotMap::with_key(),
            links: SecondaryMap::new(),
            watchers: SlotMap::with_key(),
            locals: SlotMap::with_key(),
            local_fetches: SlotMap::with_key(),
            events: VecDeque::new(),
            ready: VecDeque::new(),
            timer_dirty: Vec::new(),
            timers: BinaryHeap::new(),
            grant_expiry: BinaryHeap::new(),
            wall_clock: None,
            stats: NodeStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// The origin (read-only; publish through the node so subscribers are notified).
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Attach a session. `root` is the path its broadcast paths are relative to: the request
    /// path for a server (`None` on a lite-05 server until the client's SETUP names it), the
    /// root for a client.
    pub fn add_session(&mut self, now: Instant, mut config: Config, root: Option<Path>) -> PeerId {
        self.epoch.get_or_insert(now);
        config.hop_id = self.cfg.hop_id;
        let session = Session::new(config, now);
        let peer = self.peers.insert(Peer {
            session,
            root: None,
            grant: None,
            closed: false,
            internal: false,
            ready_flag: false,
            timer_flag: false,
            deadline: None,
            upstream: Default::default(),
            serves: Default::default(),
            listeners: Default::default(),
            interests: Vec::new(),
            fetches: Default::default(),
            track_queries: Default::default(),
        });
        if let Some(root) = root {
            self.set_root(now, peer, root);
        }
        self.touch(peer);
        self.pump(now);
        peer
    }

    /// Attach a server-side session: `request` is the path (with its `?query`) the client
    /// asked for (the WebTransport CONNECT or WebSocket request path, `/` for raw QUIC before
    /// lite-05), or `None` until lite-05's SETUP names it. With an
    /// [authorizer](NodeConfig::authorizer) the session is admitted (or closed with
    /// [`SessionCode::UNAUTHORIZED`]) once the path is known.
    pub fn add_server_session(
        &mut self,
        now: Instant,
        config: Config,
        request: Option<&str>,
    ) -> PeerId {
        let peer = self.add_session(now, config, None);
        if let Some(request) = request {
            self.admit(now, peer, request);
            self.pump(now);
        }
        peer
    }

    /// Tell the node the wall-clock time (Unix time since the epoch) at `now`, for token
    /// expiry; the drivers do this when they start. Without it, Unix time is taken as
    /// `now` minus the first instant the node saw (fine for tests without expiry).
    pub fn set_wall_clock(&mut self, now: Instant, unix: Duration) {
        self.wall_clock = Some((now, unix));
    }

    /// The Unix time at `now`, in seconds, by the wall clock the node was given.
    pub fn unix_time(&self, now: Instant) -> u64 {
        match self.wall_clock {
            Some((at, unix)) => now
                .checked_duration_since(at)
                .map_or_else(|| unix.saturating_sub(at - now), |d| unix + d)
                .as_secs(),
            None => self
                .epoch
                .map_or(0, |e| now.saturating_duration_since(e).as_secs()),
        }
    }

    /// What a peer's session was granted (`None`: unrestricted, or not admitted yet).
    pub fn grant(&self, peer: PeerId) -> Option<&Grant> {
        self.peers.get(peer)?.grant.as_ref()
    }

    /// The authorizer sessions are admitted by, if any.
    pub fn authorizer(&self) -> Option<&dyn Authorizer> {
        self.cfg.authorizer.as_deref()
    }

    /// A peer's root path, once known.
    pub fn root(&self, peer: PeerId) -> Option<&Path> {
        self.peers.get(peer)?.root.as_ref()
    }

    /// The session of a peer (read-only; feed input through [`Node::input`]).
    pub fn session(&self, peer: PeerId) -> Option<&Session> {
        self.peers.get(peer).map(|p| &p.session)
    }

    /// Every attached peer.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys()
    }

    /// Feed transport input to a peer's session, then route whatever it produced.
    pub fn input(&mut self, now: Instant, peer: PeerId, f: impl FnOnce(&mut Session, Instant)) {
        self.epoch.get_or_insert(now);
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        f(&mut p.session, now);
        self.touch(peer);
        self.pump(now);
    }

    /// Mark a session as a link to another endpoint of this process (see
    /// [`crate::quic::Endpoint::open_link`]): its sessions, subscriptions and frames are left
    /// out of [`Node::stats`], [`Node::gauges`] and [`Node::broadcast_metrics`], so that the
    /// figures of the threads of one relay add up to what the relay does.
    pub fn set_internal(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.internal = true;
        }
    }

    /// Whether a track's upstream is another endpoint of this process.
    fn fed_internally(&self, track: TrackId) -> bool {
        self.links
            .get(track)
            .and_then(|l| l.upstream)
            .and_then(|(peer, _)| self.peers.get(peer))
            .is_some_and(|p| p.internal)
    }

    fn is_internal(&self, peer: PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.internal)
    }

    /// Tell a peer's session how many of its bytes the transport could not accept yet
    /// ([`Session::handle_send_backlog`]); only recorded, nothing is routed.
    pub fn set_send_backlog(&mut self, peer: PeerId, bytes: usize) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.session.handle_send_backlog(bytes);
        }
    }

    /// The next peer that may have commands to drain (each peer is listed once until drained).
    pub fn next_ready_peer(&mut self) -> Option<PeerId> {
        while let Some(peer) = self.ready.pop_front() {
            if let Some(p) = self.peers.get_mut(peer) {
                p.ready_flag = false;
                return Some(peer);
            }
        }
        None
    }

    /// The next command for a peer's transport.
    pub fn poll_command(&mut self, peer: PeerId) -> Option<Command> {
        self.peers.get_mut(peer)?.session.poll_command()
    }

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // The heap's top may be stale (a session's deadline moved): early, never late.
        let sessions = self.timers.peek().map(|Reverse((at, _))| *at);
        let grants = self.grant_expiry.peek().map(|Reverse((at, _))| *at);
        [sessions, grants, self.origin.next_eviction()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passed: session timers, grant expiry and cache eviction.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, peer))) = self.grant_expiry.peek().copied() {
            if at > now {
                break;
            }
            self.grant_expiry.pop();
            if let Some(p) = self.peers.get_mut(peer)
                && !p.closed
            {
                self.stats.auth_expired_sessions += 1;
                p.session.close(SessionCode::UNAUTHORIZED, "token expired");
                self.touch(peer);
            }
        }
        while let Some(Reverse((at, peer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(p) = self.peers.get_mut(peer)
                && p.deadline == Some(at)
            {
                p.deadline = None;
                p.session.handle_timeout(now);
                self.touch(peer);
            }
        }
        for (track, seq) in self.origin.evict(now) {
            self.group_closed(
                now,
                track,
                seq,
                crate::origin::GroupState::Aborted(StreamCode::EVICTED),
            );
        }
        self.pump(now);
    }

    /// Detach a peer whose connection is gone (call after its [`Command::Close`] was sent or
    /// the transport reported the loss). Its state is released.
    pub fn remove_peer(&mut self, now: Instant, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(peer)
            && !p.closed
        {
            p.session
                .handle_connection_lost(now, SessionCode::NO_ERROR, "removed");
            self.touch(peer);
            self.pump(now);
        }
        if let Some(p) = self.peers.remove(peer) {
            metrics::add_delivery(&mut self.stats.delivery, p.session.delivery_stats());
        }
    }

    /// Send GOAWAY on every session (lite-04+) and close each after the drain period; links to
    /// other endpoints of this process (see [`Node::set_internal`]) are left open.
    pub fn goaway(&mut self, now: Instant, uri: &str) {
        let peers: Vec<PeerId> = self.peers.keys().collect();
        for peer in peers {
            // Links between threads of this process stay up while clients drain: they carry
            // what those clients still receive.
            if let Some(p) = self.peers.get_mut(peer)
                && !p.internal
            {
                let _ = p.session.goaway(now, uri, self.cfg.goaway_drain);
                self.touch(peer);
            }
        }
        self.pump(now);
    }

    /// Close a peer's session.
    pub fn close_session(&mut self, now: Instant, peer: PeerId, code: SessionCode, reason: &str) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.session.close(code, reason);
            self.touch(peer);
        }
        self.pump(now);
    }

    /// True when no broadcast, track, subscriber, watcher or request is held (leak checks).
    pub fn is_idle(&self) -> bool {
        self.origin.is_empty()
            && self.consumers.is_empty()
            && self.links.is_empty()
            && self.watchers.is_empty()
            && self.locals.is_empty()
            && self.local_fetches.is_empty()
            && self.peers.values().all(|p| {
                p.session.is_idle()
                    && p.upstream.is_empty()
                    && p.serves.is_empty()
                    && p.listeners.is_empty()
                    && p.fetches.is_empty()
                    && p.track_queries.is_empty()
            })
    }

    /// How many subscribers (peers' subscriptions and local ones) a track has.
    pub fn subscriber_count(&self, track: TrackId) -> usize {
        self.links.get(track).map_or(0, |l| l.consumers.len())
    }

    /// True while any session still delivers something to its peer (see
    /// [`Session::is_delivering`]); a publisher waits for this before exiting.
    pub fn is_delivering(&self) -> bool {
        self.peers
            .values()
            .any(|p| !p.closed && p.session.is_delivering())
    }

    /// A description of what is held, for debugging leaks.
    pub fn state_summary(&self) -> String {
        let (b, t) = self.origin.len();
        let mut out = format!(
            "broadcasts={b} tracks={t} consumers={} links={} watchers={} locals={} local_fetches={}",
            self.consumers.len(),
            self.links.len(),
            self.watchers.len(),
            self.locals.len(),
            self.local_fetches.len()
        );
        for (k, p) in &self.peers {
            out.push_str(&format!(
                "\n  {k:?}: upstream={} serves={} listeners={} interests={} fetches={} queries={} session[{}]",
                p.upstream.len(),
                p.serves.len(),
                p.listeners.len(),
                p.interests.len(),
                p.fetches.len(),
                p.track_queries.len(),
                p.session.tables()
            ));
        }
        out
    }

    /// Mark a peer as having output (and events) to process.
    fn touch(&mut self, peer: PeerId) {
        self.touch_output(peer);
        if let Some(p) = self.peers.get_mut(peer)
            && !p.timer_flag
        {
            p.timer_flag = true;
            self.timer_dirty.push(peer);
        }
    }

    /// Mark a peer as having commands to drain, when only frame data was written (which does
    /// not move its timers): the fan-out hot path.
    fn touch_output(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(peer)
            && !p.ready_flag
        {
            p.ready_flag = true;
            self.ready.push_back(peer);
        }
    }

    /// Re-read the deadline of every session something happened to.
    fn refresh_timers(&mut self) {
        for peer in std::mem::take(&mut self.timer_dirty) {
            let Some(p) = self.peers.get_mut(peer) else {
                continue;
            };
            p.timer_flag = false;
            let deadline = p.session.poll_timeout();
            if deadline != p.deadline {
                p.deadline = deadline;
                if let Some(at) = deadline {
                    self.timers.push(Reverse((at, peer)));
                }
            }
        }
    }

    /// Route every pending session event until none is left.
    fn pump(&mut self, now: Instant) {
        let mut i = 0;
        // `ready` doubles as the work list: events are processed for every listed peer, and
        // the list is left intact for the transport to drain commands.
        while i < self.ready.len() {
            let peer = self.ready[i];
            while let Some(event) = self
                .peers
                .get_mut(peer)
                .and_then(|p| p.session.poll_event())
            {
                self.on_session_event(now, peer, event);
            }
            i += 1;
        }
        self.refresh_timers();
    }

    /// Milliseconds since the node started: the timestamp given to frames from lite-03/04
    /// peers, which carry none (as the reference stamps them on arrival).
    fn arrival_timestamp(&self, now: Instant) -> u64 {
        let epoch = self.epoch.unwrap_or(now);
        u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
    }
}
