//! Group streams (uni 0x0; draft-lcurley-moq-lite-03 §6.3.1, §7.11-§7.12;
//! draft-lcurley-moq-lite-05 §6.3.2, §7.17-§7.18; docs/wire.md §3.7, §4.12): `GROUP{subscribe_id, sequence}` (size-prefixed),
//! then FRAMEs, then FIN.
//!
//! A FRAME is not size-prefixed: lite-03/04 send `Size (i)` + payload; lite-05 sends
//! `Timestamp Delta (i)` (zigzag of `ts - previous_ts`, the baseline 0 at the start of every
//! group stream and FETCH reply) + `Size (i)` + payload. Size counts only the payload and is
//! capped by [`Limits::max_frame_size`].

use super::{Message, Version};
use crate::coding::{
    Cursor, DecodeError, EncodeError, Limits, MAX_VARINT, Sink, put_varint, varint_len,
    zigzag_decode, zigzag_encode,
};

/// GROUP: the header of a group stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupHeader {
    /// The subscription this group belongs to.
    pub subscribe_id: u64,
    /// The group sequence (plain).
    pub sequence: u64,
}

impl Message for GroupHeader {
    const NAME: &'static str = "GROUP";

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        put_varint(sink, self.subscribe_id)?;
        put_varint(sink, self.sequence)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            subscribe_id: cursor.varint()?,
            sequence: cursor.varint()?,
        })
    }
}

/// The header in front of every frame payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// lite-05: the signed change from the previous frame's timestamp (0 on 03/04).
    pub timestamp_delta: i64,
    /// Payload bytes that follow.
    pub size: u64,
}

/// The reference keeps deltas within ±2^61 so their zigzag fits a varint.
const MAX_DELTA: i64 = (1 << 61) - 1;
const MIN_DELTA: i64 = -(1 << 61);

impl FrameHeader {
    /// Bytes the header takes on the wire.
    pub fn encoded_len(&self, version: Version) -> usize {
        let ts = if version.is_lite05() {
            varint_len(zigzag_encode(self.timestamp_delta))
        } else {
            0
        };
        ts + varint_len(self.size)
    }

    /// Write the header.
    pub fn encode<S: Sink + ?Sized>(
        &self,
        sink: &mut S,
        version: Version,
    ) -> Result<(), EncodeError> {
        // Check the size before writing the delta, so a refused header leaves the sink untouched.
        if self.size > MAX_VARINT {
            return Err(EncodeError::VarIntOverflow(self.size));
        }
        if version.is_lite05() {
            if !(MIN_DELTA..=MAX_DELTA).contains(&self.timestamp_delta) {
                return Err(EncodeError::InvalidValue {
                    what: "timestamp delta",
                    value: self.timestamp_delta.unsigned_abs(),
                });
            }
            put_varint(sink, zigzag_encode(self.timestamp_delta))?;
        } else if self.timestamp_delta != 0 {
            return Err(EncodeError::UnsupportedVersion {
                what: "frame timestamp",
                version,
            });
        }
        put_varint(sink, self.size)
    }

    /// Read a header with the default limits.
    pub fn decode(cursor: &mut Cursor<'_>, version: Version) -> Result<Self, DecodeError> {
        Self::decode_with(cursor, version, &Limits::default())
    }

    /// Read a header; [`DecodeError::Short`] leaves the cursor untouched.
    pub fn decode_with(
        cursor: &mut Cursor<'_>,
        version: Version,
        limits: &Limits,
    ) -> Result<Self, DecodeError> {
        let mut probe = *cursor;
        let timestamp_delta = if version.is_lite05() {
            zigzag_decode(probe.varint()?)
        } else {
            0
        };
        let size = probe.varint()?;
        if size > limits.frame_size() {
            return Err(DecodeError::TooLarge {
                what: "frame",
                size,
                max: limits.frame_size(),
            });
        }
        *cursor = probe;
        Ok(Self {
            timestamp_delta,
            size,
        })
    }

    /// How many header bytes are needed, judging from the bytes seen so far (`None` until the
    /// first byte of each varint is present).
    pub fn needed_len(prefix: &[u8], version: Version) -> Option<usize> {
        let first = *prefix.first()?;
        let ts_len = crate::coding::varint_len_from_first(first);
        if !version.is_lite05() {
            return Some(ts_len);
        }
        let second = *prefix.get(ts_len)?;
        Some(ts_len + crate::coding::varint_len_from_first(second))
    }
}

/// lite-05 timestamp delta state for one group stream or FETCH reply (baseline 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timestamps {
    previous: u64,
}

impl Timestamps {
    /// A fresh baseline of 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The delta to send for absolute timestamp `ts`, advancing the baseline.
    pub fn delta_for(&mut self, ts: u64) -> Result<i64, EncodeError> {
        if ts > MAX_VARINT {
            return Err(EncodeError::VarIntOverflow(ts));
        }
        let delta = i128::from(ts) - i128::from(self.previous);
        let delta = i64::try_from(delta)
            .ok()
            .filter(|d| (MIN_DELTA..=MAX_DELTA).contains(d))
            .ok_or(EncodeError::InvalidValue {
                what: "timestamp delta",
                value: ts,
            })?;
        self.previous = ts;
        Ok(delta)
    }

    /// The absolute timestamp for a received delta, advancing the baseline.
    pub fn apply(&mut self, delta: i64) -> Result<u64, DecodeError> {
        let ts = i128::from(self.previous) + i128::from(delta);
        if !(0..=i128::from(MAX_VARINT)).contains(&ts) {
            return Err(DecodeError::TimestampOutOfRange(delta));
        }
        self.previous = ts as u64;
        Ok(self.previous)
    }
}
