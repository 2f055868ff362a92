//! TRACK and TRACK_INFO (lite-05; draft-lcurley-moq-lite-05 §5.1.4, §7.9-§7.10; docs/wire.md
//! §3.4, §4.8).
//!
//! The reference subscriber sends TRACK and waits for TRACK_INFO (it needs the timescale)
//! before it subscribes, so a lite-05 publisher must answer it. The timescale must be non-zero.

use std::time::Duration;

use super::subscribe::put_track_name;
use super::{Message, Path, Version};
use crate::coding::{
    Cursor, DecodeError, EncodeError, MAX_TRACK_NAME_LEN, Sink, put_byte, put_duration, put_flag,
    put_varint,
};

/// TRACK: ask for a track's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRequest {
    /// Broadcast path relative to the session root.
    pub broadcast: Path,
    /// Track name.
    pub track: String,
}

impl Message for TrackRequest {
    const NAME: &'static str = "TRACK";

    fn supported(version: Version) -> bool {
        version.is_lite05()
    }

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        self.broadcast.encode_path(sink)?;
        put_track_name(sink, &self.track)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            broadcast: Path::decode(cursor, "broadcast path")?,
            track: cursor.string("track name", MAX_TRACK_NAME_LEN)?.to_string(),
        })
    }
}

/// TRACK_INFO: a track's publisher-side properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackInfo {
    /// Publisher priority (a tie-breaker; reference default 127).
    pub priority: u8,
    /// Publisher ordered flag.
    pub ordered: bool,
    /// Cache retention for non-latest groups (reference default 5000 ms).
    pub max_latency: Duration,
    /// Timestamp units per second; never zero (reference default 1000).
    pub timescale: u64,
}

impl Default for TrackInfo {
    /// The reference's defaults: priority 127, unordered, 5 s, milliseconds.
    fn default() -> Self {
        Self {
            priority: 127,
            ordered: false,
            max_latency: Duration::from_millis(5000),
            timescale: 1000,
        }
    }
}

impl Message for TrackInfo {
    const NAME: &'static str = "TRACK_INFO";

    fn supported(version: Version) -> bool {
        version.is_lite05()
    }

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        if self.timescale == 0 {
            return Err(EncodeError::InvalidValue {
                what: "timescale",
                value: 0,
            });
        }
        put_byte(sink, self.priority);
        put_flag(sink, self.ordered);
        put_duration(sink, self.max_latency)?;
        put_varint(sink, self.timescale)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        let priority = cursor.byte()?;
        let ordered = cursor.flag()?;
        let max_latency = cursor.duration()?;
        let timescale = cursor.varint()?;
        if timescale == 0 {
            return Err(DecodeError::InvalidValue {
                what: "timescale",
                value: 0,
            });
        }
        Ok(Self {
            priority,
            ordered,
            max_latency,
            timescale,
        })
    }
}
