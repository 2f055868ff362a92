//! Every cap the codec enforces, in one place.
//!
//! Constants carry the reference implementation's numbers (moq-net 0.3.18) where it has them;
//! the ones a deployment may want to tune live in [`Limits`], whose defaults are never looser
//! than the constants.

/// The reference's hard cap on any control message body: 64 MiB. [`Limits::max_message_size`]
/// may be raised up to this, never beyond.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Our default cap on a control message body: 64 KiB.
///
/// Every legitimate lite message is far smaller (paths are at most 32 segments, hop lists 32
/// entries, a GOAWAY URI 8 KiB), and a control message must be buffered whole before it can be
/// decoded, so the default keeps per-stream memory small. Raise it in [`Limits`] if a peer needs.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// The cap on a lite-05 SETUP body (reference: 64 KiB).
pub const MAX_SETUP_SIZE: usize = 64 * 1024;

/// The cap on the number of SETUP parameters (reference: 64).
pub const MAX_SETUP_PARAMETERS: u64 = 64;

/// The cap on path segments after normalisation (reference: 32).
pub const MAX_PATH_SEGMENTS: usize = 32;

/// The cap on a broadcast path or prefix in bytes. The reference has none beyond the message
/// size; we bound it so one path cannot pin a large share of a session's memory.
pub const MAX_PATH_LEN: usize = 4096;

/// The cap on a track name in bytes (ours, for the same reason as [`MAX_PATH_LEN`]).
pub const MAX_TRACK_NAME_LEN: usize = 4096;

/// The cap on hop-list entries (reference: 32).
pub const MAX_HOPS: usize = 32;

/// Hop IDs we generate stay below 2^53, because older JavaScript peers reject larger values.
pub const MAX_HOP_ID: u64 = (1 << 53) - 1;

/// The cap on a GOAWAY URI in bytes (reference: 8192).
pub const MAX_GOAWAY_URI: usize = 8192;

/// The reference's cap on one frame payload: 32 MiB (the group is aborted with 0x38).
pub const MAX_FRAME_SIZE: u64 = 32 * 1024 * 1024;

/// The reference's cap on a group's total payload: 32 MiB (the group is aborted with 0x32).
pub const MAX_GROUP_SIZE: u64 = 32 * 1024 * 1024;

/// The reference's cap on frames in one group: 8192 (the group is aborted with 0x32).
pub const MAX_GROUP_FRAMES: u64 = 8192;

/// The largest datagram body we send, and by default accept (draft: 1200 bytes).
pub const MAX_DATAGRAM_SIZE: usize = 1200;

/// The cap on a SETUP Path parameter in bytes.
pub const MAX_SETUP_PATH_LEN: usize = 8192;

/// Tunable codec limits.
///
/// A `Limits` is validated on use: values above the hard constants are clamped to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest control message body accepted (default [`DEFAULT_MAX_MESSAGE_SIZE`], at most
    /// [`MAX_MESSAGE_SIZE`]).
    pub max_message_size: usize,
    /// Largest frame payload accepted (default and maximum [`MAX_FRAME_SIZE`]).
    pub max_frame_size: u64,
    /// Largest total payload of one group (default and maximum [`MAX_GROUP_SIZE`]).
    pub max_group_size: u64,
    /// Most frames in one group (default and maximum [`MAX_GROUP_FRAMES`]).
    pub max_group_frames: u64,
    /// Largest datagram body accepted on receive (default [`MAX_DATAGRAM_SIZE`]).
    pub max_datagram_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: MAX_FRAME_SIZE,
            max_group_size: MAX_GROUP_SIZE,
            max_group_frames: MAX_GROUP_FRAMES,
            max_datagram_size: MAX_DATAGRAM_SIZE,
        }
    }
}

impl Limits {
    /// The message cap actually enforced.
    pub fn message_size(&self) -> usize {
        self.max_message_size.min(MAX_MESSAGE_SIZE)
    }

    /// The frame cap actually enforced.
    pub fn frame_size(&self) -> u64 {
        self.max_frame_size.min(MAX_FRAME_SIZE)
    }

    /// The group size cap actually enforced.
    pub fn group_size(&self) -> u64 {
        self.max_group_size.min(MAX_GROUP_SIZE)
    }

    /// The group frame-count cap actually enforced.
    pub fn group_frames(&self) -> u64 {
        self.max_group_frames.min(MAX_GROUP_FRAMES)
    }
}
