//! Helpers shared by the multi-node `scenario_*` tests (not a test target itself).
#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_harness::testing::{Mode, Sim, node_config};
use moq_proto::codes::StreamCode;
use moq_proto::node::{
    FetchEvent, LocalFetchId, LocalSubId, NodeConfig, NodeEvent, SubscriptionEvent, WatchId,
};
use moq_proto::origin::TrackId;
use moq_proto::wire::{Path, Version};

/// Seeds every scenario runs with.
pub const SEEDS: std::ops::Range<u64> = 0..40;

/// Names one run in assertion messages.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub version: Version,
    pub seed: u64,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} seed {}", self.version, self.seed)
    }
}

/// Every (version, seed) pair.
pub fn runs() -> impl Iterator<Item = Run> {
    Version::ALL
        .into_iter()
        .flat_map(|version| SEEDS.map(move |seed| Run { version, seed }))
}

/// A shuffling simulator with `n` nodes using default configs (distinct hop IDs).
pub fn sim(seed: u64, n: usize) -> Sim {
    sim_with(seed, n, |_, c| c)
}

/// A shuffling simulator with `n` nodes whose configs `f(index, default)` may adjust.
pub fn sim_with(seed: u64, n: usize, f: impl Fn(usize, NodeConfig) -> NodeConfig) -> Sim {
    let mut sim = Sim::new(seed, Instant::now(), Mode::Shuffle);
    for i in 0..n {
        let cfg = f(i, node_config(seed * 31 + i as u64 + 1));
        sim.add_node(cfg);
    }
    sim
}

pub fn path(s: &str) -> Path {
    Path::new(s).unwrap()
}

/// Events of local subscription `id`, in order.
pub fn sub_events(events: &[NodeEvent], id: LocalSubId) -> Vec<SubscriptionEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Subscription { id: i, event } if *i == id => Some(event.clone()),
            _ => None,
        })
        .collect()
}

/// `(group, timestamp, payload)` of every frame of a subscription.
pub fn frames(events: &[SubscriptionEvent]) -> Vec<(u64, u64, Bytes)> {
    events
        .iter()
        .filter_map(|e| match e {
            SubscriptionEvent::Frame {
                seq,
                timestamp,
                payload,
            } => Some((*seq, *timestamp, payload.clone())),
            _ => None,
        })
        .collect()
}

/// Groups begun (in order).
pub fn groups(events: &[SubscriptionEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            SubscriptionEvent::Group { seq } => Some(*seq),
            _ => None,
        })
        .collect()
}

/// Where the node said each subscription starts (`Start` events; one expected).
pub fn starts(events: &[SubscriptionEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            SubscriptionEvent::Start { group } => Some(*group),
            _ => None,
        })
        .collect()
}

/// The Closed event, if any.
pub fn closed(events: &[SubscriptionEvent]) -> Option<Option<StreamCode>> {
    events.iter().find_map(|e| match e {
        SubscriptionEvent::Closed { error } => Some(*error),
        _ => None,
    })
}

/// `(path, active)` announcements of a local watch, in order.
pub fn announced(events: &[NodeEvent], watch: WatchId) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Announced {
                watch: w,
                path,
                active,
            } if *w == watch => Some((path.as_str().to_string(), *active)),
            _ => None,
        })
        .collect()
}

/// Events of local FETCH `id`.
pub fn fetch_events(events: &[NodeEvent], id: LocalFetchId) -> Vec<FetchEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Fetch { id: i, event } if *i == id => Some(event.clone()),
            _ => None,
        })
        .collect()
}

/// The payload of frame `f` of group `g` (recognisable, varying sizes).
pub fn payload(g: u64, f: u64) -> Bytes {
    let mut v = format!("g{g}f{f}:").into_bytes();
    v.resize(
        v.len() + ((g * 7 + f * 13) % 50) as usize,
        b'0' + (f % 10) as u8,
    );
    Bytes::from(v)
}

/// Publish a whole group of `frames` frames on a local track (timestamps `ts0 + f`), run.
pub fn write_group(sim: &mut Sim, node: usize, track: TrackId, frames: u64, ts0: u64) -> u64 {
    let now = sim.now();
    let seq = sim.nodes[node].append_group(now, track).unwrap();
    for f in 0..frames {
        sim.nodes[node]
            .write_frame(now, track, seq, ts0 + f, payload(seq, f))
            .unwrap();
    }
    sim.nodes[node].finish_group(now, track, seq);
    sim.run();
    seq
}

/// The session summary of a node's peer.
pub fn session_summary(sim: &Sim, node: usize, link: usize) -> String {
    let end = sim.ends(link).into_iter().find(|e| e.node == node).unwrap();
    sim.nodes[node]
        .session(end.peer)
        .map(|s| s.tables().to_string())
        .unwrap_or_else(|| "gone".into())
}

/// Disconnect `links`, let time pass, and check every node is idle.
pub fn teardown(sim: &mut Sim, links: &[usize], run: Run) {
    sim.advance(Duration::from_secs(1));
    for &l in links {
        sim.disconnect(l);
    }
    sim.advance(Duration::from_secs(10));
    assert_idle(sim, run);
}

/// Every node is idle (its state summary on failure).
pub fn assert_idle(sim: &Sim, run: Run) {
    for (i, node) in sim.nodes.iter().enumerate() {
        assert!(
            node.is_idle(),
            "{run}: node {i} not idle: {}",
            node.state_summary()
        );
    }
}
