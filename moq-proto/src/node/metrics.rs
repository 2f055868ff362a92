//! What a node holds and has done, for an operator's metrics: counters ([`NodeStats`]), live
//! gauges ([`NodeGauges`]) and per-broadcast figures ([`BroadcastMetrics`]). Read on demand
//! (a scrape walks the tables once); nothing here costs on the data path but the counters.

use super::{Node, NodeStats, Owner};
use crate::origin::{BroadcastId, PeerId};
use crate::session::DeliveryStats;
use crate::wire::Path;

/// What a node holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeGauges {
    /// Sessions attached (not yet removed).
    pub sessions: usize,
    /// Subscriptions served to peers.
    pub subscriptions: usize,
    /// Subscriptions of the local application.
    pub local_subscriptions: usize,
    /// Announce requests (prefix watches) from peers.
    pub announce_requests: usize,
    /// Active broadcasts (announced here).
    pub broadcasts: usize,
    /// Tracks held.
    pub tracks: usize,
    /// Groups cached.
    pub groups: usize,
    /// Payload bytes cached.
    pub cache_bytes: u64,
    /// Upstream subscriptions (toward publishers or other relays).
    pub upstream_subscriptions: usize,
}

/// One broadcast, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastMetrics {
    /// Its path in the origin.
    pub path: Path,
    /// Peers' subscriptions to its tracks (a viewer leaves when its session ends).
    pub viewers: usize,
    /// Frames delivered to peers from its tracks (while they are held).
    pub frames_out: u64,
    /// Payload bytes delivered to peers from its tracks (while they are held).
    pub bytes_out: u64,
    /// Bytes the transport could not accept yet, summed over the sessions watching it.
    pub send_backlog: u64,
    /// Groups given up (expired or shed) by the sessions watching it.
    pub groups_skipped: u64,
}

impl Node {
    /// Running totals, including sessions already removed.
    pub fn stats(&self) -> NodeStats {
        let mut stats = self.stats;
        for p in self.peers.values() {
            add_delivery(&mut stats.delivery, p.session.delivery_stats());
        }
        stats
    }

    /// What the node holds right now.
    pub fn gauges(&self) -> NodeGauges {
        let mut gauges = NodeGauges {
            sessions: self.peers.values().filter(|p| !p.internal).count(),
            local_subscriptions: self.locals.len(),
            ..NodeGauges::default()
        };
        for c in self.consumers.values() {
            if let Owner::Serve(peer, _) = c.owner
                && !self.is_internal(peer)
            {
                gauges.subscriptions += 1;
            }
        }
        gauges.announce_requests = self
            .watchers
            .values()
            .filter(
                |w| matches!(w.owner, super::WatchOwner::Peer(peer, ..) if !self.is_internal(peer)),
            )
            .count();
        for (_, b) in self.origin.broadcasts() {
            if b.is_active() {
                gauges.broadcasts += 1;
            }
        }
        for (track, links) in self.links.iter() {
            let _ = links;
            if let Some(t) = self.origin.track(track) {
                gauges.tracks += 1;
                gauges.groups += t.groups().len();
                gauges.cache_bytes += t.cached_bytes();
            }
        }
        gauges.upstream_subscriptions = self
            .links
            .values()
            .filter(|l| l.upstream.is_some_and(|(peer, _)| !self.is_internal(peer)))
            .count();
        gauges
    }

    /// Per-broadcast figures for the `limit` broadcasts with the most viewers (ties: the
    /// most bytes delivered), most watched first.
    pub fn broadcast_metrics(&self, limit: usize) -> Vec<BroadcastMetrics> {
        let mut by_broadcast: crate::fxhash::FxHashMap<
            BroadcastId,
            (BroadcastMetrics, Vec<PeerId>),
        > = Default::default();
        for (track, links) in self.links.iter() {
            let Some(t) = self.origin.track(track) else {
                continue;
            };
            let Some(b) = self.origin.broadcast(t.broadcast()) else {
                continue;
            };
            let (entry, peers) = by_broadcast.entry(t.broadcast()).or_insert_with(|| {
                (
                    BroadcastMetrics {
                        path: b.path().clone(),
                        viewers: 0,
                        frames_out: 0,
                        bytes_out: 0,
                        send_backlog: 0,
                        groups_skipped: 0,
                    },
                    Vec::new(),
                )
            });
            entry.frames_out += links.frames_out;
            entry.bytes_out += links.bytes_out;
            for &consumer in &links.consumers {
                if let Some(Owner::Serve(peer, _)) = self.consumers.get(consumer).map(|c| c.owner)
                    && !self.is_internal(peer)
                {
                    entry.viewers += 1;
                    if !peers.contains(&peer) {
                        peers.push(peer);
                    }
                }
            }
        }
        let mut out: Vec<BroadcastMetrics> = by_broadcast
            .into_values()
            .map(|(mut m, peers)| {
                for peer in peers {
                    if let Some(p) = self.peers.get(peer) {
                        m.send_backlog += p.session.send_backlog() as u64;
                        let d = p.session.delivery_stats();
                        m.groups_skipped += d.groups_expired + d.groups_shed;
                    }
                }
                m
            })
            .collect();
        out.sort_by(|a, b| {
            b.viewers
                .cmp(&a.viewers)
                .then(b.bytes_out.cmp(&a.bytes_out))
                .then(a.path.as_str().cmp(b.path.as_str()))
        });
        out.truncate(limit);
        out
    }
}

pub(crate) fn add_delivery(total: &mut DeliveryStats, more: DeliveryStats) {
    total.groups_expired += more.groups_expired;
    total.groups_shed += more.groups_shed;
    total.groups_stopped += more.groups_stopped;
}
