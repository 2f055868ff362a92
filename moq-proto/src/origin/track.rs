//! Tracks, their cached groups, and frames stored as received chunks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{BroadcastId, OriginError};
use crate::codes::StreamCode;
use crate::coding::{MAX_GROUP_FRAMES, MAX_GROUP_SIZE};
use crate::wire::TrackInfo;

/// Cache retention before TRACK_INFO says otherwise (the reference retains 5 s).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(5);

/// How a track ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackEnd {
    /// Cleanly: no group at or after `end` will exist.
    Finished {
        /// The first group that will never exist.
        end: u64,
    },
    /// Aborted with a stream error code.
    Aborted(StreamCode),
}

/// A group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// Frames may still be appended.
    Open,
    /// Complete.
    Finished,
    /// Abandoned with a stream error code.
    Aborted(StreamCode),
}

/// Where one frame's payload sits in its group's chunk list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Absolute timestamp in track timescale units.
    pub timestamp: u64,
    /// Payload size.
    pub size: u64,
    first_chunk: u32,
}

/// One cached group: frames stored as the chunks they arrived in.
#[derive(Debug)]
pub struct Group {
    seq: u64,
    arrival: Instant,
    first_ts: Option<u64>,
    chunks: Vec<Bytes>,
    frames: Vec<FrameMeta>,
    bytes: u64,
    frame_remaining: u64,
    state: GroupState,
}

impl Group {
    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// When its first byte reached this endpoint.
    pub fn arrival(&self) -> Instant {
        self.arrival
    }

    /// Its first frame's timestamp.
    pub fn first_timestamp(&self) -> Option<u64> {
        self.first_ts
    }

    /// Open, finished or aborted.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Frames begun so far.
    pub fn frames(&self) -> &[FrameMeta] {
        &self.frames
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Payload bytes still expected for the last frame.
    pub fn frame_remaining(&self) -> u64 {
        self.frame_remaining
    }

    /// The chunks received so far for frame `index`.
    pub fn frame_chunks(&self, index: usize) -> &[Bytes] {
        let Some(frame) = self.frames.get(index) else {
            return &[];
        };
        let start = frame.first_chunk as usize;
        let end = self
            .frames
            .get(index + 1)
            .map(|next| next.first_chunk as usize)
            .unwrap_or(self.chunks.len());
        &self.chunks[start..end]
    }

    /// Whether frame `index` has all its payload.
    pub fn frame_complete(&self, index: usize) -> bool {
        index + 1 < self.frames.len()
            || (index + 1 == self.frames.len() && self.frame_remaining == 0)
    }

    /// Frame `index`'s payload as one `Bytes`: zero-copy when it arrived in one chunk,
    /// otherwise the chunks are joined (one allocation).
    pub fn frame_payload(&self, index: usize) -> Bytes {
        join(self.frame_chunks(index))
    }

    fn reset(&mut self, seq: u64, arrival: Instant) {
        self.seq = seq;
        self.arrival = arrival;
        self.first_ts = None;
        self.chunks.clear();
        self.frames.clear();
        self.bytes = 0;
        self.frame_remaining = 0;
        self.state = GroupState::Open;
    }
}

/// Join chunks into one `Bytes` (zero-copy for zero or one chunk).
pub fn join(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut out = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for chunk in many {
                out.extend_from_slice(chunk);
            }
            out.freeze()
        }
    }
}

/// A track: its properties and its cached groups, newest last.
#[derive(Debug)]
pub struct Track {
    broadcast: BroadcastId,
    name: Arc<str>,
    info: Option<TrackInfo>,
    groups: VecDeque<Group>,
    cached_bytes: u64,
    latest: Option<u64>,
    ended: Option<TrackEnd>,
    /// An evicted group kept to reuse its vectors, so steady-state groups do not allocate.
    spare: Option<Group>,
    /// The eviction deadline already in the origin's timer heap.
    pub(super) scheduled: Option<Instant>,
}

impl Track {
    pub(super) fn new(broadcast: BroadcastId, name: Arc<str>, info: Option<TrackInfo>) -> Self {
        Self {
            broadcast,
            name,
            info,
            groups: VecDeque::new(),
            cached_bytes: 0,
            latest: None,
            ended: None,
            spare: None,
            scheduled: None,
        }
    }

    /// The broadcast it belongs to.
    pub fn broadcast(&self) -> BroadcastId {
        self.broadcast
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its properties, once known.
    pub fn info(&self) -> Option<TrackInfo> {
        self.info
    }

    /// Set its properties (from TRACK_INFO or SUBSCRIBE_OK).
    pub fn set_info(&mut self, info: TrackInfo) {
        self.info = Some(info);
    }

    /// The newest group sequence seen.
    pub fn latest(&self) -> Option<u64> {
        self.latest
    }

    /// How it ended, if it did.
    pub fn ended(&self) -> Option<TrackEnd> {
        self.ended
    }

    /// The next sequence for a locally published group.
    pub fn next_seq(&self) -> u64 {
        self.latest.map_or(0, |l| l + 1)
    }

    /// Cached groups, oldest first.
    pub fn groups(&self) -> impl DoubleEndedIterator<Item = &Group> + ExactSizeIterator {
        self.groups.iter()
    }

    /// A cached group.
    pub fn group(&self, seq: u64) -> Option<&Group> {
        self.index_of(seq).ok().map(|i| &self.groups[i])
    }

    /// Bytes held by the cache.
    pub fn cached_bytes(&self) -> u64 {
        self.cached_bytes
    }

    /// How long non-latest groups are kept.
    pub fn retention(&self) -> Duration {
        self.info.map_or(DEFAULT_RETENTION, |i| i.max_latency)
    }

    fn index_of(&self, seq: u64) -> Result<usize, usize> {
        self.groups.binary_search_by_key(&seq, |g| g.seq)
    }

    fn group_mut(&mut self, seq: u64) -> Option<&mut Group> {
        self.index_of(seq).ok().map(|i| &mut self.groups[i])
    }

    /// Begin group `seq`. Groups may arrive out of order, but never twice, and never after
    /// the track ended, except up to a clean end's group (it may arrive before them).
    pub fn start_group(&mut self, now: Instant, seq: u64) -> Result<(), OriginError> {
        match self.ended {
            // A lite-05 SUBSCRIBE_END can overtake the group streams below it (the reference
            // sends it as soon as the track ends), so those are still accepted, and a group
            // equal to the end too: gomoqt's END is inclusive (docs/wire.md §5.7).
            Some(TrackEnd::Finished { end }) if seq <= end => {}
            Some(_) => return Err(OriginError::Ended),
            None => {}
        }
        let index = match self.index_of(seq) {
            Ok(_) => return Err(OriginError::Stale(seq)),
            Err(index) => index,
        };
        let group = match self.spare.take() {
            Some(mut spare) => {
                spare.reset(seq, now);
                spare
            }
            // Size the new group like the previous one, so appending frames does not grow
            // (and reallocate) the vectors while the group is live.
            None => Group {
                seq,
                arrival: now,
                first_ts: None,
                chunks: Vec::with_capacity(self.groups.back().map_or(0, |g| g.chunks.len())),
                frames: Vec::with_capacity(self.groups.back().map_or(0, |g| g.frames.len())),
                bytes: 0,
                frame_remaining: 0,
                state: GroupState::Open,
            },
        };
        self.groups.insert(index, group);
        self.latest = Some(self.latest.map_or(seq, |l| l.max(seq)));
        Ok(())
    }

    /// Begin a frame in group `seq` with its first payload bytes.
    pub fn append_frame(
        &mut self,
        seq: u64,
        timestamp: u64,
        size: u64,
        chunk: Bytes,
    ) -> Result<(), GroupError> {
        let group = self.group_mut(seq).ok_or(GroupError::Gone)?;
        if group.state != GroupState::Open || group.frame_remaining != 0 {
            return Err(GroupError::Misuse);
        }
        if group.frames.len() as u64 >= MAX_GROUP_FRAMES {
            return Err(GroupError::TooLarge);
        }
        if group.bytes + size > MAX_GROUP_SIZE || (chunk.len() as u64) > size {
            return Err(GroupError::TooLarge);
        }
        if group.first_ts.is_none() {
            group.first_ts = Some(timestamp);
        }
        group.frames.push(FrameMeta {
            timestamp,
            size,
            first_chunk: group.chunks.len() as u32,
        });
        group.frame_remaining = size - chunk.len() as u64;
        group.bytes += size;
        if !chunk.is_empty() {
            group.chunks.push(chunk);
        }
        self.cached_bytes += size;
        Ok(())
    }

    /// Append payload to the frame in progress.
    pub fn append_payload(&mut self, seq: u64, chunk: Bytes) -> Result<(), GroupError> {
        let group = self.group_mut(seq).ok_or(GroupError::Gone)?;
        if group.state != GroupState::Open || (chunk.len() as u64) > group.frame_remaining {
            return Err(GroupError::Misuse);
        }
        group.frame_remaining -= chunk.len() as u64;
        if !chunk.is_empty() {
            group.chunks.push(chunk);
        }
        Ok(())
    }

    /// Mark group `seq` finished (or aborted with `code`). Returns false if it is not open.
    pub fn close_group(&mut self, seq: u64, state: GroupState) -> bool {
        let Some(group) = self.group_mut(seq) else {
            return false;
        };
        if group.state != GroupState::Open {
            return false;
        }
        if state == GroupState::Finished && group.frame_remaining != 0 {
            group.state = GroupState::Aborted(StreamCode::WRONG_SIZE);
        } else {
            group.state = state;
        }
        true
    }

    /// Mark the track ended.
    pub fn end(&mut self, end: TrackEnd) {
        if self.ended.is_none() {
            self.ended = Some(end);
        }
    }

    /// Groups still open (so subscribers can be told when the track aborts).
    pub fn open_groups(&self) -> impl Iterator<Item = u64> + '_ {
        self.groups
            .iter()
            .filter(|g| g.state == GroupState::Open)
            .map(|g| g.seq)
    }

    /// Drop non-latest groups past retention, then the oldest non-latest ones while over
    /// `max_bytes`. A group still open is not dropped for its age, only for the byte budget:
    /// it is still being delivered, and retention bounds caching, not delivery (as in the
    /// reference, docs/wire.md §5.13); under load a burst of small groups can stay open at a relay
    /// for longer than the retention. Returns the sequences of evicted groups still open.
    pub fn evict(&mut self, now: Instant, max_bytes: u64) -> Vec<u64> {
        let retention = self.retention();
        let mut open = Vec::new();
        while self.groups.len() > 1 {
            let Some(oldest) = self.groups.front() else {
                break;
            };
            let aged = now.saturating_duration_since(oldest.arrival) >= retention
                && oldest.state != GroupState::Open;
            if !aged && self.cached_bytes <= max_bytes {
                break;
            }
            if let Some(group) = self.groups.pop_front() {
                if group.state == GroupState::Open {
                    open.push(group.seq);
                }
                self.cached_bytes -= group.bytes;
                // Keep the vectors' capacity for the next group, not the payloads.
                let mut spare = group;
                spare.chunks.clear();
                spare.frames.clear();
                self.spare = Some(spare);
            }
        }
        open
    }

    /// When the oldest non-latest group reaches its retention (`None` while it is still open:
    /// age alone does not evict it, and the next group or frame re-checks once it closed).
    pub fn next_eviction(&self) -> Option<Instant> {
        if self.groups.len() < 2 {
            return None;
        }
        self.groups
            .front()
            .filter(|g| g.state != GroupState::Open)
            // A retention beyond the clock's range (a peer's max latency) never evicts.
            .and_then(|g| g.arrival.checked_add(self.retention()))
    }

    /// Drop every cached group (the track is going away or restarting).
    pub fn clear(&mut self) {
        self.groups.clear();
        self.cached_bytes = 0;
    }
}

/// Why a frame could not be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The group is not cached (evicted, never started).
    #[error("group not cached")]
    Gone,
    /// The group would exceed 32 MiB or 8192 frames.
    #[error("group too large")]
    TooLarge,
    /// The group is closed or the previous frame is incomplete.
    #[error("group closed or frame incomplete")]
    Misuse,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_up_to_a_clean_end_are_accepted_after_it() {
        let now = Instant::now();
        let mut track = Track::new(BroadcastId::default(), "t".into(), None);
        track.start_group(now, 0).expect("group 0");
        // A lite-05 SUBSCRIBE_END (exclusive 3) overtook groups 1 and 2.
        track.end(TrackEnd::Finished { end: 3 });
        assert!(track.start_group(now, 2).is_ok());
        assert!(track.start_group(now, 1).is_ok());
        // gomoqt's END is inclusive: its last group equals the end.
        assert!(track.start_group(now, 3).is_ok());
        assert!(matches!(track.start_group(now, 4), Err(OriginError::Ended)));

        let mut aborted = Track::new(BroadcastId::default(), "t".into(), None);
        aborted.end(TrackEnd::Aborted(StreamCode(1)));
        assert!(matches!(
            aborted.start_group(now, 0),
            Err(OriginError::Ended)
        ));
    }

    #[test]
    fn open_groups_are_evicted_for_bytes_but_not_for_age() {
        let start = Instant::now();
        let mut track = Track::new(BroadcastId::default(), "t".into(), None);
        track.start_group(start, 0).expect("group 0");
        track
            .append_frame(0, 0, 4, Bytes::from_static(b"abcd"))
            .expect("frame");
        track.start_group(start, 1).expect("group 1");
        // Group 0 is still being received, long past retention: kept, and no timer.
        let late = start + DEFAULT_RETENTION * 3;
        assert!(track.evict(late, u64::MAX).is_empty());
        assert_eq!(track.next_eviction(), None);
        assert!(track.group(0).is_some());
        // Once it closes, age applies again.
        assert!(track.close_group(0, GroupState::Finished));
        assert_eq!(track.next_eviction(), Some(start + DEFAULT_RETENTION));
        assert!(track.evict(late, u64::MAX).is_empty());
        assert!(track.group(0).is_none());
        // The byte budget still evicts an open group.
        track
            .append_frame(1, 0, 4, Bytes::from_static(b"abcd"))
            .expect("frame");
        track.start_group(start, 2).expect("group 2");
        assert_eq!(track.evict(start, 0), vec![1]);
    }
}
