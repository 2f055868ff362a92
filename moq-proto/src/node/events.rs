//! What the node reports to the application.

use std::time::Duration;

use bytes::Bytes;

use crate::codes::{SessionCode, StreamCode};
use crate::origin::{GroupState, PeerId};
use crate::wire::{Path, TrackInfo};

slotmap::new_key_type! {
    /// A subscription made by the local application.
    pub struct LocalSubId;
    /// A FETCH made by the local application.
    pub struct LocalFetchId;
    /// A prefix the application (or a peer) watches for announcements.
    pub struct WatchId;
}

/// Progress of a local subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    /// The track resolved: the publisher accepted, or the track is local.
    Ready {
        /// Its properties, when known.
        info: Option<TrackInfo>,
    },
    /// Where delivery begins: no group below `group` will come (groups from there on may
    /// still arrive out of order). Reported once, when known: at once for a local track or a
    /// cached one, else when the upstream's SUBSCRIBE_OK says where it starts (lite-05
    /// always; lite-03/04 when the publisher resolved it; a group may arrive before it).
    Start {
        /// The first group.
        group: u64,
    },
    /// A group began.
    Group {
        /// Its sequence.
        seq: u64,
    },
    /// A whole frame.
    Frame {
        /// Group sequence.
        seq: u64,
        /// Timestamp in track timescale units (arrival milliseconds for lite-03/04 sources).
        timestamp: u64,
        /// The payload (zero-copy when it arrived in one chunk).
        payload: Bytes,
    },
    /// A group ended (finished, or aborted with a code such as 0x34 Old).
    GroupEnd {
        /// Group sequence.
        seq: u64,
        /// How.
        state: GroupState,
    },
    /// Groups `start..=end` will never come.
    Dropped {
        /// First group.
        start: u64,
        /// Last group, inclusive.
        end: u64,
        /// Error code.
        code: StreamCode,
    },
    /// The subscription is over: `None` when the track ended cleanly.
    Closed {
        /// Error code, if any.
        error: Option<StreamCode>,
    },
}

/// Progress of a local FETCH.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchEvent {
    /// A whole frame of the group.
    Frame {
        /// Timestamp.
        timestamp: u64,
        /// Payload.
        payload: Bytes,
    },
    /// The fetch is over: `None` when the whole group arrived.
    Closed {
        /// Error code, if any.
        error: Option<StreamCode>,
    },
}

/// Something the application must know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A session is usable (its root path is known).
    SessionReady {
        /// The peer.
        peer: PeerId,
    },
    /// A server-side session was refused by the authorizer (it is being closed with
    /// [`SessionCode::UNAUTHORIZED`]).
    Refused {
        /// The peer.
        peer: PeerId,
        /// Why.
        error: crate::auth::AuthError,
    },
    /// A session closed.
    SessionClosed {
        /// The peer.
        peer: PeerId,
        /// Session error code.
        code: SessionCode,
        /// Reason.
        reason: String,
        /// True when we closed it.
        local: bool,
    },
    /// A peer sent GOAWAY.
    Goaway {
        /// The peer.
        peer: PeerId,
        /// Where to reconnect (empty = the same URL).
        uri: String,
    },
    /// A PROBE report from a peer.
    ProbeReport {
        /// The peer.
        peer: PeerId,
        /// Bits per second.
        bitrate: u64,
        /// Smoothed RTT.
        rtt: Duration,
    },
    /// A broadcast under a watched prefix became active or ended.
    Announced {
        /// The watch.
        watch: WatchId,
        /// The broadcast path.
        path: Path,
        /// Active or ended.
        active: bool,
    },
    /// A local subscription progressed.
    Subscription {
        /// The subscription.
        id: LocalSubId,
        /// What happened.
        event: SubscriptionEvent,
    },
    /// A local FETCH progressed.
    Fetch {
        /// The fetch.
        id: LocalFetchId,
        /// What happened.
        event: FetchEvent,
    },
}
