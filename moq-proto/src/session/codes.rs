//! Error codes (WIRE.md §6). The reference uses two disjoint spaces: session codes (in
//! CONNECTION_CLOSE or a WebTransport session close) and stream codes (in RESET_STREAM and
//! STOP_SENDING). The same number means different things in each.

/// Session close codes.
pub mod session {
    /// Normal close.
    pub const NO_ERROR: u64 = 0x0;
    /// Internal error, transport failure, or a peer reset an Announce stream we opened.
    pub const INTERNAL: u64 = 0x1;
    /// Not authorised.
    pub const UNAUTHORIZED: u64 = 0x2;
    /// Decode errors, duplicate SETUP or parameters, a second GOAWAY, a 03/04 duplicate active.
    pub const PROTOCOL_VIOLATION: u64 = 0x3;
    /// The GOAWAY drain deadline passed.
    pub const GOAWAY_TIMEOUT: u64 = 0x10;
    /// A timeout.
    pub const TIMEOUT: u64 = 0x11;
    /// No version could be negotiated.
    pub const VERSION: u64 = 0x15;
    /// Application codes start here (`64 + n`).
    pub const APP_BASE: u64 = 64;
}

/// Stream reset / stop-sending codes.
pub mod stream {
    /// Internal error; also a SETUP stream on 03/04 or a uni stream before SETUP.
    pub const INTERNAL: u64 = 0x0;
    /// Cancelled: writer dropped, unsubscribe, unknown bidi type, unknown Subscribe ID on GROUP.
    pub const CANCEL: u64 = 0x1;
    /// Delivery timeout.
    pub const DELIVERY_TIMEOUT: u64 = 0x2;
    /// The session is closing (the reference also uses it for unauthorised requests).
    pub const SESSION_CLOSED: u64 = 0x3;
    /// Going away.
    pub const GOING_AWAY: u64 = 0x4;
    /// The subscriber is too far behind.
    pub const TOO_FAR_BEHIND: u64 = 0x5;
    /// Malformed content (decode error in a group, bytes on a probe stream).
    pub const MALFORMED_TRACK: u64 = 0x12;
    /// A control response did not come in time.
    pub const CONTROL_TIMEOUT: u64 = 0x31;
    /// A group exceeded its size or frame-count cap.
    pub const GROUP_TOO_LARGE: u64 = 0x32;
    /// Broadcast or track not found.
    pub const NOT_FOUND: u64 = 0x33;
    /// The group expired (max latency).
    pub const OLD: u64 = 0x34;
    /// Evicted from the cache.
    pub const EVICTED: u64 = 0x35;
    /// Broadcast not announced / not routable.
    pub const UNROUTABLE: u64 = 0x36;
    /// Wrong size.
    pub const WRONG_SIZE: u64 = 0x37;
    /// A frame exceeded its size cap.
    pub const FRAME_TOO_LARGE: u64 = 0x38;
    /// Timestamps went backwards or out of range.
    pub const TIMESTAMP_MISMATCH: u64 = 0x39;
}
