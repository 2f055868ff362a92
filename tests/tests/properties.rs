//! Property tests over random scripts run on the in-memory [`Sim`].
//!
//! Each case builds a small network (a publisher, an optional relay, one to three other
//! nodes) on a random wire version and runs a random script of operations on it: publish and
//! unpublish broadcasts, append / write / finish / abort groups, single-frame datagram groups,
//! end tracks, subscribe from any node with random parameters, unsubscribe, resubscribe,
//! disconnect / close / reconnect links and advance virtual time. After every operation the
//! network is run to quiescence and every node's events are checked:
//!
//! - (a) a subscription sees each group start once, after `Ready`; frames arrive only inside a
//!   started, not yet ended group, in order, each exactly the payload (and, where the timestamp
//!   travels, the timestamp) published at that (group, index); a group that ends `Finished`
//!   delivered every frame of a group the publisher finished;
//! - (b) nothing is reported for a subscription after its `Closed` event or after the
//!   application unsubscribed;
//! - a resolved subscription is closed once its source is gone (unpublished, track ended, or a
//!   link on the way down);
//! - (c) at the end of the script, once every open group is finished: every group a live
//!   subscription saw start has ended, and every group published inside a live subscription's
//!   range and not older than the track's latest group when the subscription resolved was
//!   delivered (started), dropped (`Dropped`), or the subscription closed. Not owed: groups
//!   already aborted when it resolved, and groups below the explicit start a node's shared
//!   upstream subscription on its way was opened with (a node forwards its first consumer's
//!   start upstream, a design choice);
//! - (d) after unsubscribing everything, unpublishing everything, waiting past the cache
//!   retention and disconnecting every link, every node is idle (no leak).
//!
//! Cases are seeded (fixed proptest RNG seed), so a run is deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_harness::testing::{Mode, Rng, Sim, node_config};
use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::node::{LocalSubId, NodeEvent, SubscriptionEvent};
use moq_proto::origin::{BroadcastId, GroupState, TrackId};
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{Path, TrackInfo, Version};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};

/// Broadcast paths the publisher may publish.
const PATHS: [&str; 2] = ["live/a", "live/b"];
/// Track names: the first two are created with every broadcast, the third never exists.
const TRACKS: [&str; 3] = ["video", "audio", "missing"];
/// The publisher is always node 0; with a relay, the relay is node 1.
const PUBLISHER: usize = 0;
const RELAY: usize = 1;

#[derive(Debug, Clone)]
enum Op {
    Publish {
        b: u8,
    },
    Unpublish {
        b: u8,
    },
    AppendGroup {
        b: u8,
        t: u8,
    },
    WriteFrames {
        b: u8,
        t: u8,
        g: u8,
        count: u8,
        size: u16,
    },
    FinishGroup {
        b: u8,
        t: u8,
        g: u8,
    },
    AbortGroup {
        b: u8,
        t: u8,
        g: u8,
    },
    DatagramGroup {
        b: u8,
        t: u8,
        size: u16,
    },
    EndTrack {
        b: u8,
        t: u8,
    },
    Subscribe {
        node: u8,
        b: u8,
        t: u8,
        priority: u8,
        ordered: bool,
        latency_ms: u16,
        start: Option<i8>,
        end: Option<u8>,
    },
    Unsubscribe {
        pick: u8,
    },
    Resubscribe {
        pick: u8,
    },
    Disconnect {
        link: u8,
    },
    CloseLink {
        link: u8,
    },
    Reconnect {
        link: u8,
    },
    Advance {
        ms: u16,
    },
}

#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    version: Version,
    relay: bool,
    /// Nodes besides the publisher and the relay.
    others: usize,
    ops: Vec<Op>,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let latency = prop_oneof![Just(0u16), Just(5000u16), 0..6000u16, 0..300u16];
    prop_oneof![
        3 => any::<u8>().prop_map(|b| Op::Publish { b }),
        1 => any::<u8>().prop_map(|b| Op::Unpublish { b }),
        6 => (any::<u8>(), any::<u8>()).prop_map(|(b, t)| Op::AppendGroup { b, t }),
        10 => (any::<u8>(), any::<u8>(), any::<u8>(), 1..4u8, 0..3000u16)
            .prop_map(|(b, t, g, count, size)| Op::WriteFrames { b, t, g, count, size }),
        3 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(b, t, g)| Op::FinishGroup { b, t, g }),
        1 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(b, t, g)| Op::AbortGroup { b, t, g }),
        1 => (any::<u8>(), any::<u8>(), 0..1500u16).prop_map(|(b, t, size)| Op::DatagramGroup { b, t, size }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(b, t)| Op::EndTrack { b, t }),
        7 => (
            (any::<u8>(), any::<u8>(), any::<u8>()),
            (any::<u8>(), any::<bool>(), latency),
            (
                proptest::option::weighted(0.3, -2..4i8),
                proptest::option::weighted(0.2, 0..4u8)
            )
        )
            .prop_map(|((node, b, t), (priority, ordered, latency_ms), (start, end))| {
                Op::Subscribe { node, b, t, priority, ordered, latency_ms, start, end }
            }),
        1 => any::<u8>().prop_map(|pick| Op::Unsubscribe { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Resubscribe { pick }),
        1 => any::<u8>().prop_map(|link| Op::Disconnect { link }),
        1 => any::<u8>().prop_map(|link| Op::CloseLink { link }),
        2 => any::<u8>().prop_map(|link| Op::Reconnect { link }),
        3 => prop_oneof![0..200u16, 0..7000u16].prop_map(|ms| Op::Advance { ms }),
    ]
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    (
        any::<u64>(),
        0..3usize,
        any::<bool>(),
        0..3usize,
        proptest::bool::weighted(0.85),
        proptest::collection::vec(op_strategy(), 1..40),
    )
        .prop_map(
            |(seed, v, relay, others, publish_first, mut ops)| Scenario {
                ops: {
                    if publish_first {
                        ops.insert(0, Op::Publish { b: 0 });
                    }
                    ops
                },
                seed,
                version: [Version::Lite03, Version::Lite04, Version::Lite05][v],
                relay,
                // 2..=4 nodes in all: with a relay 1..=2 others, without 1..=3.
                others: if relay { 1 + others % 2 } else { 1 + others },
            },
        )
}

// ---------------------------------------------------------------------------------------------
// The model: what was published, and what each subscription saw
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct GroupRec {
    frames: Vec<(u64, Bytes)>,
    state: GroupState,
}

#[derive(Debug)]
struct TrackRec {
    id: TrackId,
    groups: BTreeMap<u64, GroupRec>,
    ended: bool,
}

impl TrackRec {
    fn latest(&self) -> Option<u64> {
        self.groups.keys().next_back().copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    Live,
    Closed,
    Unsubscribed,
}

#[derive(Debug, Default)]
struct SeenGroup {
    frames: usize,
    ended: Option<GroupState>,
}

#[derive(Debug)]
struct SubRec {
    node: usize,
    id: LocalSubId,
    b: usize,
    t: usize,
    params: SubscribeParams,
    state: SubState,
    ready: bool,
    /// Set once the subscription could resolve: (epoch, first group required).
    threshold: Option<(u32, u64)>,
    /// Groups already aborted when it resolved: not owed (a node that never received an
    /// aborted group has nothing to report about it to a later subscriber).
    aborted_before: BTreeSet<u64>,
    /// Groups below this are not owed either: a node shares one upstream subscription per
    /// track, opened with its first consumer's start, so when a subscription with an explicit
    /// start (possibly in the future) opened it, a later one that wants the latest group only
    /// gets groups from that start on, while the upstream lasts (a design choice of the node).
    shadow: u64,
    groups: HashMap<u64, SeenGroup>,
    dropped: Vec<(u64, u64)>,
    /// Where the node said the subscription starts.
    start: Option<u64>,
    /// Publish epochs whose frames match everything delivered so far.
    epochs: Option<BTreeSet<u32>>,
}

#[derive(Debug)]
struct LinkRec {
    client: usize,
    server: usize,
    sim: usize,
    alive: bool,
}

struct World {
    sim: Sim,
    start: Instant,
    version: Version,
    relay: bool,
    nodes: usize,
    links: Vec<LinkRec>,
    epoch: u32,
    /// Published broadcasts: (epoch, id).
    pubs: [Option<(u32, BroadcastId)>; 2],
    records: HashMap<(usize, usize, u32), TrackRec>,
    subs: Vec<SubRec>,
    by_id: HashMap<(usize, LocalSubId), usize>,
    next_frame: u64,
    /// The start each node's shared upstream subscription per (track, epoch) was opened
    /// with (by its first consumer), while it has consumers.
    upstreams: HashMap<(usize, usize, usize, u32), Option<u64>>,
    /// The operation being checked, for messages.
    step: String,
}

type Check = Result<(), String>;

/// A track chosen by `t`, mostly the first one.
fn pick_track(t: u8) -> usize {
    usize::from(t % 4 == 3)
}

fn payload(uid: u64, size: usize) -> Bytes {
    let mut rng = Rng::new(uid);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(size);
    Bytes::from(out)
}

impl World {
    fn new(s: &Scenario) -> Self {
        let start = Instant::now();
        let mut sim = Sim::new(s.seed, start, Mode::Shuffle);
        sim.max_chunk = 1 + (s.seed % 700) as usize;
        let nodes = 1 + usize::from(s.relay) + s.others;
        for n in 0..nodes {
            sim.add_node(node_config(s.seed.wrapping_mul(31).wrapping_add(n as u64)));
        }
        let mut world = World {
            sim,
            start,
            version: s.version,
            relay: s.relay,
            nodes,
            links: Vec::new(),
            epoch: 0,
            pubs: [None, None],
            records: HashMap::new(),
            subs: Vec::new(),
            by_id: HashMap::new(),
            next_frame: 0,
            upstreams: HashMap::new(),
            step: "setup".into(),
        };
        let hub = if s.relay { RELAY } else { PUBLISHER };
        if s.relay {
            world.add_link(PUBLISHER, RELAY);
        }
        for n in (hub + 1)..nodes {
            world.add_link(n, hub);
        }
        world
    }

    fn add_link(&mut self, client: usize, server: usize) {
        let sim = self.sim.connect(client, server, self.version, "/");
        self.links.push(LinkRec {
            client,
            server,
            sim,
            alive: true,
        });
    }

    fn now(&self) -> Instant {
        self.sim.now()
    }

    fn elapsed_ms(&self) -> u64 {
        self.now().duration_since(self.start).as_millis() as u64
    }

    /// The link that connects `node` toward the publisher.
    fn uplink(&self, node: usize) -> Option<&LinkRec> {
        self.links.iter().find(|l| l.client == node)
    }

    /// Whether a subscription on `node` can reach the publisher now.
    fn reachable(&self, node: usize) -> bool {
        if node == PUBLISHER {
            return true;
        }
        let up = |n: usize| self.uplink(n).is_some_and(|l| l.alive);
        if self.relay && node != RELAY {
            up(node) && up(RELAY)
        } else {
            up(node)
        }
    }

    /// A published broadcast chosen by `b`, mostly the first one: (index, epoch).
    fn pick_broadcast(&self, b: u8) -> Option<(usize, u32)> {
        let live: Vec<(usize, u32)> = (0..2)
            .filter_map(|i| self.pubs[i].map(|(e, _)| (i, e)))
            .collect();
        (!live.is_empty()).then(|| live[usize::from(b % 4 == 3) % live.len()])
    }

    fn track(&mut self, b: u8, t: u8) -> Option<&mut TrackRec> {
        let (bi, epoch) = self.pick_broadcast(b)?;
        self.records
            .get_mut(&(bi, pick_track(t), epoch))
            .filter(|r| !r.ended)
    }

    /// An open group of a track, chosen by `g`.
    fn pick_open(track: &TrackRec, g: u8) -> Option<u64> {
        let open: Vec<u64> = track
            .groups
            .iter()
            .filter(|(_, r)| r.state == GroupState::Open)
            .map(|(s, _)| *s)
            .collect();
        (!open.is_empty()).then(|| open[g as usize % open.len()])
    }

    // -----------------------------------------------------------------------------------------
    // Operations

    fn apply(&mut self, op: &Op) -> Check {
        self.step = format!("{op:?} at {} ms", self.elapsed_ms());
        let now = self.now();
        match *op {
            Op::Publish { b } => {
                let bi = b as usize % 2;
                if self.pubs[bi].is_none() {
                    let path = Path::new(PATHS[bi]).unwrap();
                    let id = self.sim.nodes[PUBLISHER].publish(now, &path).unwrap();
                    self.epoch += 1;
                    self.pubs[bi] = Some((self.epoch, id));
                    for (ti, name) in TRACKS.iter().take(2).enumerate() {
                        let info = TrackInfo {
                            max_latency: Duration::from_millis(1000 + 2000 * ti as u64),
                            ..TrackInfo::default()
                        };
                        let track = self.sim.nodes[PUBLISHER]
                            .create_track(id, name, info)
                            .unwrap();
                        self.records.insert(
                            (bi, ti, self.epoch),
                            TrackRec {
                                id: track,
                                groups: BTreeMap::new(),
                                ended: false,
                            },
                        );
                    }
                }
            }
            Op::Unpublish { b } => {
                if let Some((bi, _)) = self.pick_broadcast(b) {
                    let (_, id) = self.pubs[bi].take().unwrap();
                    self.sim.nodes[PUBLISHER].unpublish(now, id);
                }
            }
            Op::AppendGroup { b, t } => {
                if let Some(track) = self.track(b, t) {
                    let id = track.id;
                    let seq = self.sim.nodes[PUBLISHER]
                        .append_group(now, id)
                        .map_err(|e| format!("append_group: {e}"))?;
                    self.track(b, t).unwrap().groups.insert(
                        seq,
                        GroupRec {
                            frames: Vec::new(),
                            state: GroupState::Open,
                        },
                    );
                }
            }
            Op::WriteFrames {
                b,
                t,
                g,
                count,
                size,
            } => {
                let Some(track) = self.track(b, t) else {
                    return Ok(());
                };
                let id = track.id;
                let seq = match Self::pick_open(track, g) {
                    Some(seq) => seq,
                    None => {
                        // No open group: begin one.
                        let seq = self.sim.nodes[PUBLISHER]
                            .append_group(now, id)
                            .map_err(|e| format!("append_group: {e}"))?;
                        self.track(b, t).unwrap().groups.insert(
                            seq,
                            GroupRec {
                                frames: Vec::new(),
                                state: GroupState::Open,
                            },
                        );
                        seq
                    }
                };
                for i in 0..count {
                    let size = (size as usize >> i) + i as usize;
                    self.next_frame += 1;
                    let data = payload(self.next_frame, size);
                    let ts = self.elapsed_ms() * 10 + i as u64;
                    match self.sim.nodes[PUBLISHER].write_frame(now, id, seq, ts, data.clone()) {
                        Ok(()) => {
                            let group = self.track(b, t).unwrap().groups.get_mut(&seq).unwrap();
                            group.frames.push((ts, data));
                        }
                        Err(e) => return Err(format!("write_frame on open group {seq}: {e}")),
                    }
                    // Interleave delivery with writing, sometimes.
                    if i % 2 == 1 {
                        self.sim.run();
                    }
                }
            }
            Op::FinishGroup { b, t, g } => {
                if let Some(track) = self.track(b, t)
                    && let Some(seq) = Self::pick_open(track, g)
                {
                    let id = track.id;
                    track.groups.get_mut(&seq).unwrap().state = GroupState::Finished;
                    self.sim.nodes[PUBLISHER].finish_group(now, id, seq);
                }
            }
            Op::AbortGroup { b, t, g } => {
                if let Some(track) = self.track(b, t)
                    && let Some(seq) = Self::pick_open(track, g)
                {
                    let id = track.id;
                    let code = StreamCode::CANCEL;
                    track.groups.get_mut(&seq).unwrap().state = GroupState::Aborted(code);
                    self.sim.nodes[PUBLISHER].abort_group(now, id, seq, code);
                }
            }
            Op::DatagramGroup { b, t, size } => {
                if let Some(track) = self.track(b, t) {
                    let id = track.id;
                    let seq = track.latest().map_or(0, |l| l + 1);
                    self.next_frame += 1;
                    let data = payload(self.next_frame, size as usize);
                    let ts = self.elapsed_ms() * 10;
                    self.sim.nodes[PUBLISHER]
                        .write_datagram_group(now, id, seq, ts, data.clone())
                        .map_err(|e| format!("write_datagram_group: {e}"))?;
                    self.track(b, t).unwrap().groups.insert(
                        seq,
                        GroupRec {
                            frames: vec![(ts, data)],
                            state: GroupState::Finished,
                        },
                    );
                }
            }
            Op::EndTrack { b, t } => {
                if let Some(track) = self.track(b, t) {
                    let id = track.id;
                    track.ended = true;
                    self.sim.nodes[PUBLISHER].end_track(now, id);
                }
            }
            Op::Subscribe {
                node,
                b,
                t,
                priority,
                ordered,
                latency_ms,
                start,
                end,
            } => {
                let node = node as usize % self.nodes;
                // Mostly a published broadcast; sometimes either path, published or not.
                let bi = match self.pick_broadcast(b) {
                    Some((bi, _)) if b % 8 != 7 => bi,
                    _ => usize::from(b % 2 == 1),
                };
                let ti = if t % 16 == 15 { 2 } else { pick_track(t) };
                let base = self.pubs[bi]
                    .and_then(|(e, _)| self.records.get(&(bi, ti, e)))
                    .and_then(|r| r.latest())
                    .unwrap_or(0);
                let start = start.map(|d| base.saturating_add_signed(i64::from(d)));
                let end = end.map(|d| start.unwrap_or(base) + u64::from(d));
                let params = SubscribeParams {
                    priority,
                    ordered,
                    max_latency: Duration::from_millis(u64::from(latency_ms)),
                    start,
                    end,
                };
                self.subscribe(node, bi, ti, params);
            }
            Op::Unsubscribe { pick } => {
                if let Some(ix) = self.pick_sub(pick) {
                    self.unsubscribe(ix);
                }
            }
            Op::Resubscribe { pick } => {
                if let Some(ix) = self.pick_sub(pick) {
                    self.unsubscribe(ix);
                    let s = &self.subs[ix];
                    let (node, b, t, params) = (s.node, s.b, s.t, s.params);
                    self.subscribe(node, b, t, params);
                }
            }
            Op::Disconnect { link } => {
                if let Some(l) = self.pick_link(link, true) {
                    self.links[l].alive = false;
                    let sim_link = self.links[l].sim;
                    self.sim.disconnect(sim_link);
                }
            }
            Op::CloseLink { link } => {
                if let Some(l) = self.pick_link(link, true) {
                    self.links[l].alive = false;
                    let end = self.sim.ends(self.links[l].sim)[(link as usize / 7) % 2];
                    self.sim.nodes[end.node].close_session(
                        now,
                        end.peer,
                        SessionCode(SessionCode::APP_BASE + 1),
                        "bye",
                    );
                }
            }
            Op::Reconnect { link } => {
                if let Some(l) = self.pick_link(link, false) {
                    let (client, server) = (self.links[l].client, self.links[l].server);
                    self.links[l].sim = self.sim.connect(client, server, self.version, "/");
                    self.links[l].alive = true;
                }
            }
            Op::Advance { ms } => self.sim.advance(Duration::from_millis(u64::from(ms))),
        }
        self.sim.run();
        self.settle()
    }

    fn pick_sub(&self, pick: u8) -> Option<usize> {
        let live: Vec<usize> = (0..self.subs.len())
            .filter(|&i| self.subs[i].state == SubState::Live)
            .collect();
        (!live.is_empty()).then(|| live[pick as usize % live.len()])
    }

    fn pick_link(&self, pick: u8, alive: bool) -> Option<usize> {
        let links: Vec<usize> = (0..self.links.len())
            .filter(|&i| self.links[i].alive == alive)
            .collect();
        (!links.is_empty()).then(|| links[pick as usize % links.len()])
    }

    fn subscribe(&mut self, node: usize, b: usize, t: usize, params: SubscribeParams) {
        let now = self.now();
        let path = Path::new(PATHS[b]).unwrap();
        let id = self.sim.nodes[node].subscribe(now, &path, TRACKS[t], params);
        self.by_id.insert((node, id), self.subs.len());
        self.subs.push(SubRec {
            node,
            id,
            b,
            t,
            params,
            state: SubState::Live,
            ready: false,
            threshold: None,
            aborted_before: BTreeSet::new(),
            shadow: 0,
            groups: HashMap::new(),
            dropped: Vec::new(),
            start: None,
            epochs: None,
        });
    }

    fn unsubscribe(&mut self, ix: usize) {
        // Events were drained after the previous operation: anything reported from now on is
        // after the unsubscribe.
        let now = self.now();
        let s = &mut self.subs[ix];
        s.state = SubState::Unsubscribed;
        let (node, id) = (s.node, s.id);
        self.sim.nodes[node].unsubscribe(now, id);
    }

    // -----------------------------------------------------------------------------------------
    // Checks

    /// Drain and check every node's events, bring the model in line with the origin, and
    /// check that subscriptions whose source went away are closed.
    fn settle(&mut self) -> Check {
        for node in 0..self.nodes {
            for event in self.sim.events(node) {
                self.on_event(node, event)?;
            }
        }
        self.sync_groups();
        self.release_upstreams();
        for ix in 0..self.subs.len() {
            let s = &self.subs[ix];
            if s.state != SubState::Live || s.t == 2 {
                continue;
            }
            let current = self.pubs[s.b].map(|(e, _)| e);
            let track_live = current
                .and_then(|e| self.records.get(&(s.b, s.t, e)))
                .is_some_and(|r| !r.ended);
            let reachable = self.reachable(s.node);
            match s.threshold {
                Some((epoch, _)) => {
                    if Some(epoch) != current || !track_live || !reachable {
                        return Err(format!(
                            "subscription #{ix} {s:?} is still live after its source went away \
                             (published epoch {current:?}, track live {track_live}, reachable {reachable})"
                        ));
                    }
                }
                None => {
                    if track_live && reachable {
                        let epoch = current.unwrap();
                        let record = &self.records[&(s.b, s.t, epoch)];
                        let latest = record.latest().unwrap_or(0);
                        let aborted = record
                            .groups
                            .iter()
                            .filter(|(_, g)| matches!(g.state, GroupState::Aborted(_)))
                            .map(|(seq, _)| *seq)
                            .collect();
                        let shadow = self.open_upstreams(ix, epoch);
                        self.subs[ix].threshold = Some((epoch, latest));
                        self.subs[ix].aborted_before = aborted;
                        self.subs[ix].shadow = shadow;
                    }
                }
            }
        }
        Ok(())
    }

    /// Forget the upstream subscriptions of nodes left without consumers: a node's own
    /// resolved live subscriptions, and for the relay every other node's too (they reach the
    /// publisher through it).
    fn release_upstreams(&mut self) {
        let subs = &self.subs;
        let relay = self.relay;
        self.upstreams.retain(|&(node, b, t, epoch), _| {
            subs.iter().any(|o| {
                o.state == SubState::Live
                    && (o.node == node || (relay && node == RELAY && o.node != PUBLISHER))
                    && (o.b, o.t) == (b, t)
                    && o.threshold.is_some_and(|(e, _)| e == epoch)
            })
        });
    }

    /// Subscription `ix` resolves: it opens the upstream subscriptions on its way that do not
    /// exist yet, with its start. Returns the first group it can get through them: the
    /// largest start they were opened with.
    fn open_upstreams(&mut self, ix: usize, epoch: u32) -> u64 {
        let s = &self.subs[ix];
        if s.node == PUBLISHER {
            return 0;
        }
        let mut path = vec![s.node];
        if self.relay && s.node != RELAY {
            path.push(RELAY);
        }
        let (b, t, start) = (s.b, s.t, s.params.start);
        path.into_iter()
            .map(|n| *self.upstreams.entry((n, b, t, epoch)).or_insert(start))
            .map(|start| start.unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// Groups the origin closed on its own (evicted, ended with the track) are closed in the
    /// model too.
    fn sync_groups(&mut self) {
        let origin = self.sim.nodes[PUBLISHER].origin();
        for ((b, _, epoch), track) in self.records.iter_mut() {
            let current = self.pubs[*b].is_some_and(|(e, _)| e == *epoch);
            let t = origin.track(track.id).filter(|_| current);
            if t.is_none() {
                track.ended = true;
            }
            for (seq, group) in track.groups.iter_mut() {
                if group.state != GroupState::Open {
                    continue;
                }
                group.state = match t.and_then(|t| t.group(*seq)) {
                    Some(g) => g.state(),
                    None => GroupState::Aborted(StreamCode::EVICTED),
                };
            }
        }
    }

    fn on_event(&mut self, node: usize, event: NodeEvent) -> Check {
        let NodeEvent::Subscription { id, event } = event else {
            return Ok(());
        };
        let step = &self.step;
        let Some(&ix) = self.by_id.get(&(node, id)) else {
            return Err(format!(
                "{step}: node {node}: event for an unknown subscription {id:?}: {event:?}"
            ));
        };
        let version = self.version;
        let s = &mut self.subs[ix];
        let ctx = format!(
            "{step}: node {node} subscription #{ix} ({:?}): {event:?}",
            s.params
        );
        match s.state {
            SubState::Live => {}
            SubState::Closed => return Err(format!("{ctx}: event after Closed")),
            SubState::Unsubscribed => return Err(format!("{ctx}: event after unsubscribe")),
        }
        match event {
            SubscriptionEvent::Ready { .. } => {
                if s.ready {
                    return Err(format!("{ctx}: second Ready"));
                }
                s.ready = true;
            }
            SubscriptionEvent::Group { seq } => {
                if !s.ready {
                    return Err(format!("{ctx}: group before Ready"));
                }
                if s.groups.contains_key(&seq) {
                    return Err(format!("{ctx}: group {seq} started twice"));
                }
                if s.params.start.is_some_and(|st| seq < st)
                    || s.params.end.is_some_and(|e| seq > e)
                {
                    return Err(format!("{ctx}: group {seq} outside the requested range"));
                }
                s.groups.insert(seq, SeenGroup::default());
            }
            SubscriptionEvent::Frame {
                seq,
                timestamp,
                payload,
            } => {
                let Some(g) = s.groups.get_mut(&seq) else {
                    return Err(format!("{ctx}: frame of a group never started"));
                };
                if g.ended.is_some() {
                    return Err(format!("{ctx}: frame after the group ended"));
                }
                let index = g.frames;
                g.frames += 1;
                let check_ts = version.is_lite05() || node == PUBLISHER;
                let (b, t) = (s.b, s.t);
                let candidates: BTreeSet<u32> = match &s.epochs {
                    Some(c) => c.clone(),
                    None => self
                        .records
                        .keys()
                        .filter(|(rb, rt, _)| *rb == b && *rt == t)
                        .map(|(_, _, e)| *e)
                        .collect(),
                };
                let matching: BTreeSet<u32> = candidates
                    .into_iter()
                    .filter(|e| {
                        self.records
                            .get(&(b, t, *e))
                            .and_then(|r| r.groups.get(&seq))
                            .and_then(|g| g.frames.get(index))
                            .is_some_and(|(ts, p)| *p == payload && (!check_ts || *ts == timestamp))
                    })
                    .collect();
                if matching.is_empty() {
                    let published: Vec<(u32, Option<(u64, usize)>)> = self
                        .records
                        .iter()
                        .filter(|((rb, rt, _), _)| *rb == b && *rt == t)
                        .map(|((_, _, e), r)| {
                            (
                                *e,
                                r.groups
                                    .get(&seq)
                                    .and_then(|g| g.frames.get(index))
                                    .map(|(ts, p)| (*ts, p.len())),
                            )
                        })
                        .collect();
                    return Err(format!(
                        "{ctx}: frame {index} of group {seq} ({} bytes, ts {timestamp}) is not \
                         what was published (epoch: (ts, len)) {published:?}",
                        payload.len()
                    ));
                }
                self.subs[ix].epochs = Some(matching);
            }
            SubscriptionEvent::GroupEnd { seq, state } => {
                let Some(g) = s.groups.get_mut(&seq) else {
                    return Err(format!("{ctx}: end of a group never started"));
                };
                if g.ended.is_some() {
                    return Err(format!("{ctx}: group ended twice"));
                }
                g.ended = Some(state);
                if state == GroupState::Finished {
                    let frames = g.frames;
                    let (b, t) = (s.b, s.t);
                    let complete = self.records.iter().any(|((rb, rt, e), r)| {
                        *rb == b
                            && *rt == t
                            && s.epochs.as_ref().is_none_or(|c| c.contains(e))
                            && r.groups.get(&seq).is_some_and(|g| {
                                g.state == GroupState::Finished && g.frames.len() == frames
                            })
                    });
                    if !complete {
                        return Err(format!(
                            "{ctx}: group finished after {frames} frames, but no finished group \
                             {seq} with that many frames was published"
                        ));
                    }
                }
            }
            SubscriptionEvent::Dropped { start, end, .. } => s.dropped.push((start, end)),
            SubscriptionEvent::Start { group } => {
                // Told once, and never before an explicit start (after it when the groups
                // asked for are gone).
                if s.start.replace(group).is_some() {
                    return Err(format!("{ctx}: a second Start ({group})"));
                }
                if s.params.start.is_some_and(|asked| group < asked) {
                    return Err(format!(
                        "{ctx}: Start {group}, but {:?} was asked",
                        s.params.start
                    ));
                }
            }
            SubscriptionEvent::Closed { .. } => s.state = SubState::Closed,
            _ => panic!("a variant this test does not know"),
        }
        Ok(())
    }

    /// (c): finish every open group, then every live subscription must have seen every group
    /// it was owed, and every group it saw start must have ended.
    fn check_complete(&mut self) -> Check {
        self.step = "final check".into();
        let now = self.now();
        let open: Vec<(TrackId, u64)> = self
            .records
            .values()
            .filter(|r| !r.ended)
            .flat_map(|r| {
                r.groups
                    .iter()
                    .filter(|(_, g)| g.state == GroupState::Open)
                    .map(|(s, _)| (r.id, *s))
            })
            .collect();
        for (track, seq) in open {
            self.sim.nodes[PUBLISHER].finish_group(now, track, seq);
        }
        for r in self.records.values_mut().filter(|r| !r.ended) {
            for g in r.groups.values_mut() {
                if g.state == GroupState::Open {
                    g.state = GroupState::Finished;
                }
            }
        }
        self.sim.run();
        self.settle()?;
        for (ix, s) in self.subs.iter().enumerate() {
            if s.state != SubState::Live {
                continue;
            }
            if let Some((seq, _)) = s.groups.iter().find(|(_, g)| g.ended.is_none()) {
                return Err(format!(
                    "subscription #{ix} {s:?}: group {seq} started but never ended"
                ));
            }
            let Some((epoch, threshold)) = s.threshold else {
                continue;
            };
            let from = threshold.max(s.params.start.unwrap_or(0));
            let to = s.params.end.unwrap_or(u64::MAX);
            let Some(record) = self.records.get(&(s.b, s.t, epoch)) else {
                continue;
            };
            let owed = record.groups.keys().copied().filter(|q| {
                (from..=to).contains(q) && *q >= s.shadow && !s.aborted_before.contains(q)
            });
            for seq in owed {
                let delivered = s.groups.contains_key(&seq);
                let dropped = s.dropped.iter().any(|(a, b)| (*a..=*b).contains(&seq));
                if !delivered && !dropped {
                    return Err(format!(
                        "subscription #{ix} on node {} (params {:?}, resolved at epoch {epoch} \
                         from group {threshold}) never got group {seq}, nor a drop for it; \
                         saw {:?}, dropped {:?}; published {:?}",
                        s.node,
                        s.params,
                        s.groups.keys().collect::<BTreeSet<_>>(),
                        s.dropped,
                        record
                            .groups
                            .iter()
                            .map(|(q, g)| (*q, g.frames.len(), g.state))
                            .collect::<Vec<_>>()
                    ));
                }
            }
        }
        Ok(())
    }

    /// (d): close everything, then every node must be idle.
    fn teardown(&mut self) -> Check {
        self.step = "teardown".into();
        let now = self.now();
        for ix in 0..self.subs.len() {
            if self.subs[ix].state == SubState::Live {
                self.unsubscribe(ix);
            }
        }
        for b in 0..2 {
            if let Some((_, id)) = self.pubs[b].take() {
                self.sim.nodes[PUBLISHER].unpublish(now, id);
            }
        }
        self.sim.run();
        self.settle()?;
        self.sim.advance(Duration::from_secs(15));
        self.settle()?;
        for l in 0..self.links.len() {
            if self.links[l].alive {
                self.links[l].alive = false;
                let sim_link = self.links[l].sim;
                self.sim.disconnect(sim_link);
            }
        }
        self.settle()?;
        for n in 0..self.nodes {
            if !self.sim.nodes[n].is_idle() {
                return Err(format!(
                    "node {n} is not idle after teardown: {}",
                    self.sim.nodes[n].state_summary()
                ));
            }
        }
        Ok(())
    }
}

fn run(s: &Scenario) -> Check {
    let mut world = World::new(s);
    world.settle()?;
    for op in &s.ops {
        world.apply(op)?;
    }
    world.check_complete()?;
    world.teardown()
}

/// 128 cases from a fixed seed; `PROPTEST_CASES` and `PROPTEST_RNG_SEED` override them to
/// explore further.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 128;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x6d6f_712d_7273);
    }
    config.failure_persistence = Some(Box::new(FileFailurePersistence::Off));
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_scripts_keep_delivery_invariants(s in scenario_strategy()) {
        let outcome = run(&s);
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

/// `Config::max_pending_bytes` bounds what waits for stream credit: a group whose stream is
/// never granted is given up (SUBSCRIBE_DROP, open cancelled) once the cap is reached, instead
/// of buffering without bound.
#[test]
fn pending_bytes_cap_drops_groups() {
    use moq_proto::session::{Command, Config, Dir, Event, Session, Side, StreamId};
    use moq_proto::wire::{BiStreamType, Message, Subscribe};

    let now = Instant::now();
    let mut config = Config::new(Version::Lite04, Side::Server);
    config.max_pending_bytes = 1000;
    let mut session = Session::new(config, now);
    let mut request = vec![BiStreamType::Subscribe.code() as u8];
    Subscribe {
        id: 0,
        broadcast: Path::new("a").unwrap(),
        track: "t".into(),
        priority: 0,
        ordered: false,
        max_latency: Duration::from_secs(60),
        start: None,
        end: None,
    }
    .encode(&mut request, Version::Lite04)
    .unwrap();
    session.handle_stream_opened(now, StreamId(0), Dir::Bi);
    session.handle_stream_data(now, StreamId(0), Bytes::from(request), false);
    let serve = match session.poll_event() {
        Some(Event::Subscribe { id, .. }) => id,
        other => panic!("expected a SUBSCRIBE, got {other:?}"),
    };
    session
        .accept_serve(serve, TrackInfo::default(), None)
        .unwrap();
    let group = session.open_group(now, serve, 0, now, None).unwrap();
    assert!(session.write_frame(now, group, 0, 600, Bytes::from(vec![1; 600])));
    while session.poll_command().is_some() {}
    // The stream is never granted: the next frame would exceed the cap.
    session.write_frame(now, group, 0, 600, Bytes::from(vec![2; 600]));
    let commands: Vec<Command> = std::iter::from_fn(|| session.poll_command()).collect();
    assert!(
        commands
            .iter()
            .any(|c| matches!(c, Command::CancelOpen { .. })),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| matches!(
            c,
            Command::Write {
                stream: StreamId(0),
                ..
            }
        )),
        "no SUBSCRIBE_DROP: {commands:?}"
    );
    assert!(!session.write_payload(group, Bytes::new()));
    assert!(session.tables().pending_opens == 0, "{}", session.tables());
}
