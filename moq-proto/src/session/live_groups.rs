//! The groups one subscription is still sending, indexed for expiry.
//!
//! Expiry asks, on every new group and every timeout, which non-newest groups are older than
//! the subscriber's max latency, by arrival age and (lite-05) by timestamp age. A subscriber
//! that falls behind can have thousands of live groups, so a scan of all of them per new group
//! would make an overloaded relay slower the further behind it is. Here the groups are kept
//! sorted by arrival and by first timestamp (both almost always arrive in order, so insertion
//! is an append), and a scan stops at the first group too young to expire.
//!
//! Removal is lazy: a removed group's entries stay until they reach the front or the index is
//! compacted (when at most half of it is live), so removal is amortised O(1) and entries are
//! checked for liveness by the caller.

use std::collections::VecDeque;
use std::time::Instant;

use super::types::GroupSendId;

/// Entries kept beyond twice the live count before compacting.
const SLACK: usize = 16;

#[derive(Debug, Clone, Copy)]
struct ByArrival {
    arrival: Instant,
    seq: u64,
    id: GroupSendId,
}

#[derive(Debug, Clone, Copy)]
struct ByTimestamp {
    ts: u64,
    seq: u64,
    id: GroupSendId,
}

/// A subscription's live group streams (sent, not yet acknowledged, reset or stopped).
#[derive(Debug, Default)]
pub(super) struct LiveGroups {
    by_arrival: VecDeque<ByArrival>,
    by_timestamp: VecDeque<ByTimestamp>,
    live: usize,
    /// The live group with the highest sequence: never expired.
    newest: Option<(u64, GroupSendId)>,
}

impl LiveGroups {
    /// Live groups.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.live
    }

    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The highest live sequence and its group.
    pub(super) fn newest(&self) -> Option<(u64, GroupSendId)> {
        self.newest
    }

    /// Track a new group.
    pub(super) fn insert(&mut self, id: GroupSendId, seq: u64, arrival: Instant) {
        let entry = ByArrival { arrival, seq, id };
        let at = self.by_arrival.partition_point(|e| e.arrival <= arrival);
        self.by_arrival.insert(at, entry);
        self.live += 1;
        if self.newest.is_none_or(|(newest, _)| seq > newest) {
            self.newest = Some((seq, id));
        }
    }

    /// Record a group's first timestamp (lite-05 timestamp expiry).
    pub(super) fn set_first_timestamp(&mut self, id: GroupSendId, seq: u64, ts: u64) {
        let at = self.by_timestamp.partition_point(|e| e.ts <= ts);
        self.by_timestamp.insert(at, ByTimestamp { ts, seq, id });
    }

    /// Stop tracking `id`, which `is_live` must already report as gone; `is_live` tells the
    /// other entries apart.
    pub(super) fn remove(&mut self, id: GroupSendId, is_live: impl Fn(GroupSendId) -> bool) {
        self.live = self.live.saturating_sub(1);
        if self.newest.is_some_and(|(_, newest)| newest == id) {
            self.newest = self
                .by_arrival
                .iter()
                .filter(|e| is_live(e.id))
                .max_by_key(|e| e.seq)
                .map(|e| (e.seq, e.id));
        }
        while self.by_arrival.front().is_some_and(|e| !is_live(e.id)) {
            self.by_arrival.pop_front();
        }
        while self.by_timestamp.front().is_some_and(|e| !is_live(e.id)) {
            self.by_timestamp.pop_front();
        }
        if self.by_arrival.len() > 2 * self.live + SLACK {
            self.by_arrival.retain(|e| is_live(e.id));
        }
        if self.by_timestamp.len() > 2 * self.live + SLACK {
            self.by_timestamp.retain(|e| is_live(e.id));
        }
    }

    /// Every tracked group, oldest arrival first, as `(arrival, seq, id)`; may include removed
    /// groups.
    pub(super) fn by_arrival(&self) -> impl Iterator<Item = (Instant, u64, GroupSendId)> + '_ {
        self.by_arrival.iter().map(|e| (e.arrival, e.seq, e.id))
    }

    /// Groups with a first timestamp, oldest timestamp first, as `(ts, seq, id)`; may include
    /// removed groups.
    pub(super) fn by_timestamp(&self) -> impl Iterator<Item = (u64, u64, GroupSendId)> + '_ {
        self.by_timestamp.iter().map(|e| (e.ts, e.seq, e.id))
    }

    /// The `i`th tracked group in arrival order (may be removed); stable while nothing is
    /// inserted or removed, for loops that need `&mut` access between items.
    pub(super) fn get(&self, i: usize) -> Option<GroupSendId> {
        self.by_arrival.get(i).map(|e| e.id)
    }

    /// Entries in arrival order, live or not (the bound for [`Self::get`]).
    pub(super) fn slots(&self) -> usize {
        self.by_arrival.len()
    }

    /// Every tracked group, consuming the index (may include removed groups).
    pub(super) fn into_ids(self) -> impl Iterator<Item = GroupSendId> {
        self.by_arrival.into_iter().map(|e| e.id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use slotmap::SlotMap;

    use super::*;

    #[test]
    fn newest_and_lazy_removal() {
        let mut keys: SlotMap<GroupSendId, ()> = SlotMap::with_key();
        let t0 = Instant::now();
        let mut groups = LiveGroups::default();
        let ids: Vec<GroupSendId> = (0..100).map(|_| keys.insert(())).collect();
        for (seq, id) in ids.iter().enumerate() {
            groups.insert(*id, seq as u64, t0 + Duration::from_millis(seq as u64));
            groups.set_first_timestamp(*id, seq as u64, seq as u64 * 10);
        }
        assert_eq!(groups.newest(), Some((99, ids[99])));
        // Remove all but a few, in an arbitrary order; the newest is recomputed.
        let keep: HashSet<usize> = [3, 50, 60].into_iter().collect();
        for i in (0..100).rev().filter(|i| !keep.contains(i)) {
            keys.remove(ids[i]);
            groups.remove(ids[i], |id| keys.contains_key(id));
        }
        assert_eq!(groups.len(), 3);
        assert_eq!(groups.newest(), Some((60, ids[60])));
        let live: Vec<u64> = groups
            .by_arrival()
            .filter(|(_, _, id)| keys.contains_key(*id))
            .map(|(_, seq, _)| seq)
            .collect();
        assert_eq!(live, [3, 50, 60]);
        // Compacted: bounded by twice the live count plus the slack.
        assert!(groups.slots() <= 2 * 3 + SLACK);
        assert!(groups.by_timestamp().count() <= 2 * 3 + SLACK);
    }

    #[test]
    fn out_of_order_arrivals_stay_sorted() {
        let mut keys: SlotMap<GroupSendId, ()> = SlotMap::with_key();
        let t0 = Instant::now();
        let mut groups = LiveGroups::default();
        for (seq, ms) in [(0u64, 30u64), (1, 10), (2, 20), (3, 0)] {
            let id = keys.insert(());
            groups.insert(id, seq, t0 + Duration::from_millis(ms));
            groups.set_first_timestamp(id, seq, 100 - ms);
        }
        let arrivals: Vec<u64> = groups.by_arrival().map(|(_, seq, _)| seq).collect();
        assert_eq!(arrivals, [3, 1, 2, 0]);
        let stamps: Vec<u64> = groups.by_timestamp().map(|(ts, _, _)| ts).collect();
        assert_eq!(stamps, [70, 80, 90, 100]);
        assert_eq!(groups.newest().map(|(seq, _)| seq), Some(3));
    }
}
