//! The Subscribe stream's messages (draft-lcurley-moq-lite-03 §5.1.2, §7.5-§7.8;
//! draft-lcurley-moq-lite-05 §5.1.2, §7.7-§7.13; docs/wire.md §3.2, §4.4-§4.6).
//!
//! The requester sends [`Subscribe`] then any number of [`SubscribeUpdate`] (no type prefix).
//! The publisher answers with typed messages, `Type (i)` **before** `Message Length (i)`
//! ([`SubscribeResponse`]):
//!
//! | type | lite-03 / lite-04 | lite-05 |
//! |---|---|---|
//! | 0 | SUBSCRIBE_OK ([`SubscribeOk`]) | SUBSCRIBE_OK with a plain start group ([`SubscribeStart`]) |
//! | 1 | SUBSCRIBE_DROP ([`SubscribeDrop`]) | SUBSCRIBE_END ([`SubscribeEnd`]) |
//! | 2 | — | SUBSCRIBE_DROP ([`SubscribeDrop`]) |
//!
//! Start and End Group in SUBSCRIBE, SUBSCRIBE_UPDATE and the 03/04 SUBSCRIBE_OK are optional
//! (`n + 1`, 0 = none); every other group field is a plain absolute sequence.

use std::time::Duration;

use super::message::encode_typed;
use super::{Message, Path, Version};
use crate::coding::{
    Cursor, DecodeError, EncodeError, Limits, MAX_TRACK_NAME_LEN, Sink, put_byte, put_duration,
    put_flag, put_optional, put_string, put_varint,
};

/// SUBSCRIBE: the first message on a Subscribe stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Unique per session, never reused.
    pub id: u64,
    /// Broadcast path relative to the session root.
    pub broadcast: Path,
    /// Track name (opaque, not normalised).
    pub track: String,
    /// Subscriber priority; higher goes first.
    pub priority: u8,
    /// True: oldest group first; false: newest first.
    pub ordered: bool,
    /// Groups older than this behind the latest may be dropped. Zero means "latest group only".
    pub max_latency: Duration,
    /// First group wanted; `None` = the latest.
    pub start: Option<u64>,
    /// Last group wanted, inclusive; `None` = unbounded.
    pub end: Option<u64>,
}

impl Message for Subscribe {
    const NAME: &'static str = "SUBSCRIBE";

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        put_varint(sink, self.id)?;
        self.broadcast.encode_path(sink)?;
        put_track_name(sink, &self.track)?;
        put_byte(sink, self.priority);
        put_flag(sink, self.ordered);
        put_duration(sink, self.max_latency)?;
        put_optional(sink, self.start)?;
        put_optional(sink, self.end)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            id: cursor.varint()?,
            broadcast: Path::decode(cursor, "broadcast path")?,
            track: cursor.string("track name", MAX_TRACK_NAME_LEN)?.to_string(),
            priority: cursor.byte()?,
            ordered: cursor.flag()?,
            max_latency: cursor.duration()?,
            start: cursor.optional()?,
            end: cursor.optional()?,
        })
    }
}

/// SUBSCRIBE_UPDATE: replaces all five subscriber values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeUpdate {
    /// New subscriber priority (applies to in-flight groups too).
    pub priority: u8,
    /// New ordered flag.
    pub ordered: bool,
    /// New max latency.
    pub max_latency: Duration,
    /// New start group; `None` re-pins to the latest.
    pub start: Option<u64>,
    /// New end group (inclusive); `None` = unbounded.
    pub end: Option<u64>,
}

impl Message for SubscribeUpdate {
    const NAME: &'static str = "SUBSCRIBE_UPDATE";

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        put_byte(sink, self.priority);
        put_flag(sink, self.ordered);
        put_duration(sink, self.max_latency)?;
        put_optional(sink, self.start)?;
        put_optional(sink, self.end)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            priority: cursor.byte()?,
            ordered: cursor.flag()?,
            max_latency: cursor.duration()?,
            start: cursor.optional()?,
            end: cursor.optional()?,
        })
    }
}

/// lite-03/04 SUBSCRIBE_OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOk {
    /// Publisher priority.
    pub priority: u8,
    /// Publisher ordered flag.
    pub ordered: bool,
    /// Publisher max latency.
    pub max_latency: Duration,
    /// First group served; `None` = not yet known.
    pub start: Option<u64>,
    /// Last group served, inclusive; `None` = unbounded.
    pub end: Option<u64>,
}

impl Message for SubscribeOk {
    const NAME: &'static str = "SUBSCRIBE_OK";

    fn supported(version: Version) -> bool {
        !version.is_lite05()
    }

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        put_byte(sink, self.priority);
        put_flag(sink, self.ordered);
        put_duration(sink, self.max_latency)?;
        put_optional(sink, self.start)?;
        put_optional(sink, self.end)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            priority: cursor.byte()?,
            ordered: cursor.flag()?,
            max_latency: cursor.duration()?,
            start: cursor.optional()?,
            end: cursor.optional()?,
        })
    }
}

/// lite-05 SUBSCRIBE_OK (the reference's SUBSCRIBE_START): where delivery actually starts.
/// Groups between the requested start and this one are implicitly dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeStart {
    /// The first group served (plain absolute sequence).
    pub group: u64,
}

impl Message for SubscribeStart {
    const NAME: &'static str = "SUBSCRIBE_OK";

    fn supported(version: Version) -> bool {
        version.is_lite05()
    }

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        put_varint(sink, self.group)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            group: cursor.varint()?,
        })
    }
}

/// lite-05 SUBSCRIBE_END: no group at or after `group` will come (exclusive, as the reference
/// and lite-06 send it; 0 = the track had no groups). gomoqt v0.18 sends it inclusive, so a
/// receiver must still accept a group equal to `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeEnd {
    /// The first group that will never come.
    pub group: u64,
}

impl Message for SubscribeEnd {
    const NAME: &'static str = "SUBSCRIBE_END";

    fn supported(version: Version) -> bool {
        version.is_lite05()
    }

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        put_varint(sink, self.group)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            group: cursor.varint()?,
        })
    }
}

/// SUBSCRIBE_DROP: groups `start..=end` will never be delivered.
///
/// Both bounds are plain (gomoqt v0.17 writes them `+1` on lite-04, docs/wire.md §7.6; we follow the
/// reference and the draft).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeDrop {
    /// First dropped group.
    pub start: u64,
    /// Last dropped group, inclusive.
    pub end: u64,
    /// Why (0 = simply unavailable; otherwise a stream error code).
    pub error: u64,
}

impl Message for SubscribeDrop {
    const NAME: &'static str = "SUBSCRIBE_DROP";

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        if self.end < self.start {
            return Err(EncodeError::InvalidValue {
                what: "drop range end",
                value: self.end,
            });
        }
        put_varint(sink, self.start)?;
        put_varint(sink, self.end)?;
        put_varint(sink, self.error)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        let start = cursor.varint()?;
        let end = cursor.varint()?;
        let error = cursor.varint()?;
        if end < start {
            return Err(DecodeError::InvalidValue {
                what: "drop range end",
                value: end,
            });
        }
        Ok(Self { start, end, error })
    }
}

/// A publisher's reply on a Subscribe stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeResponse {
    /// lite-03/04 SUBSCRIBE_OK (type 0).
    Ok(SubscribeOk),
    /// lite-05 SUBSCRIBE_OK (type 0).
    Start(SubscribeStart),
    /// lite-05 SUBSCRIBE_END (type 1).
    End(SubscribeEnd),
    /// SUBSCRIBE_DROP (type 1 on 03/04, type 2 on 05).
    Drop(SubscribeDrop),
}

impl SubscribeResponse {
    /// Write `Type (i)`, `Message Length (i)`, body.
    pub fn encode<S: Sink + ?Sized>(
        &self,
        sink: &mut S,
        version: Version,
    ) -> Result<(), EncodeError> {
        match self {
            SubscribeResponse::Ok(m) => encode_typed(sink, 0, m, version),
            SubscribeResponse::Start(m) => encode_typed(sink, 0, m, version),
            SubscribeResponse::End(m) => encode_typed(sink, 1, m, version),
            SubscribeResponse::Drop(m) => {
                let ty = if version.is_lite05() { 2 } else { 1 };
                encode_typed(sink, ty, m, version)
            }
        }
    }

    /// Decode one typed response with the default limits.
    pub fn decode(cursor: &mut Cursor<'_>, version: Version) -> Result<Self, DecodeError> {
        Self::decode_with(cursor, version, &Limits::default())
    }

    /// Decode one typed response. [`DecodeError::Short`] leaves the cursor untouched.
    pub fn decode_with(
        cursor: &mut Cursor<'_>,
        version: Version,
        limits: &Limits,
    ) -> Result<Self, DecodeError> {
        let mut probe = *cursor;
        let ty = probe.varint()?;
        let response = match (ty, version.is_lite05()) {
            (0, false) => {
                SubscribeResponse::Ok(SubscribeOk::decode_with(&mut probe, version, limits)?)
            }
            (1, false) => {
                SubscribeResponse::Drop(SubscribeDrop::decode_with(&mut probe, version, limits)?)
            }
            (0, true) => {
                SubscribeResponse::Start(SubscribeStart::decode_with(&mut probe, version, limits)?)
            }
            (1, true) => {
                SubscribeResponse::End(SubscribeEnd::decode_with(&mut probe, version, limits)?)
            }
            (2, true) => {
                SubscribeResponse::Drop(SubscribeDrop::decode_with(&mut probe, version, limits)?)
            }
            (value, _) => {
                return Err(DecodeError::UnknownMessageType {
                    what: "subscribe response",
                    value,
                });
            }
        };
        *cursor = probe;
        Ok(response)
    }
}

pub(crate) fn put_track_name<S: Sink + ?Sized>(
    sink: &mut S,
    track: &str,
) -> Result<(), EncodeError> {
    if track.len() > MAX_TRACK_NAME_LEN {
        return Err(EncodeError::TooLarge {
            what: "track name",
            size: track.len() as u64,
            max: MAX_TRACK_NAME_LEN as u64,
        });
    }
    put_string(sink, track)
}
