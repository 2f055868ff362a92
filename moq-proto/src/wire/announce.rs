//! The Announce stream's messages (draft-lcurley-moq-lite-03 §5.1.1, §7.4;
//! draft-lcurley-moq-lite-05 §5.1.1, §7.4-§7.6; docs/wire.md §3.1, §4.1-§4.3).
//!
//! - [`AnnounceRequest`]: ANNOUNCE_PLEASE (03: prefix), ANNOUNCE_INTEREST (04) and
//!   ANNOUNCE_REQUEST (05): prefix and Exclude Hop.
//! - [`AnnounceOk`] (05 only): the publisher's first reply, its hop ID and the count of initial
//!   active broadcasts.
//! - [`Announce`]: ANNOUNCE (03/04) / ANNOUNCE_BROADCAST (05): status as **one raw byte** (the
//!   reference reads it that way), the path suffix, and the hops: a bare count on 03, a list of
//!   at most [`MAX_HOPS`] IDs with no duplicate non-zero ID on 04/05.

use super::{Message, Path, Version};
use crate::coding::{Cursor, DecodeError, EncodeError, MAX_HOPS, Sink, put_varint};

/// A request for announcements under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// Only broadcasts under this prefix are announced.
    pub prefix: Path,
    /// 04+: skip routes whose hop list contains this ID (0 = none). Not sent on 03.
    pub exclude_hop: u64,
}

impl Message for AnnounceRequest {
    const NAME: &'static str = "announce request";

    fn encode_body<S: Sink + ?Sized>(
        &self,
        sink: &mut S,
        version: Version,
    ) -> Result<(), EncodeError> {
        self.prefix.encode_prefix(sink)?;
        if version.has_hops() {
            put_varint(sink, self.exclude_hop)?;
        }
        Ok(())
    }

    fn decode_body(cursor: &mut Cursor<'_>, version: Version) -> Result<Self, DecodeError> {
        let prefix = Path::decode(cursor, "announce prefix")?;
        let exclude_hop = if version.has_hops() {
            cursor.varint()?
        } else {
            0
        };
        Ok(Self {
            prefix,
            exclude_hop,
        })
    }
}

/// lite-05: the publisher's first reply on an Announce stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceOk {
    /// The sender's hop ID (0 = unknown); the implicit last entry of every hop list after it.
    pub hop_id: u64,
    /// How many ANNOUNCE_BROADCAST(active) messages follow as the initial set.
    pub active_count: u64,
}

impl Message for AnnounceOk {
    const NAME: &'static str = "ANNOUNCE_OK";

    fn supported(version: Version) -> bool {
        version.is_lite05()
    }

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        put_varint(sink, self.hop_id)?;
        put_varint(sink, self.active_count)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            hop_id: cursor.varint()?,
            active_count: cursor.varint()?,
        })
    }
}

/// Whether a broadcast is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AnnounceStatus {
    /// 0: the broadcast ended.
    Ended,
    /// 1: the broadcast is active (on 05 a repeat replaces the previous route).
    Active,
    /// 2 (05 only): a restart; the reference decodes it as active and never sends it.
    Restart,
}

impl AnnounceStatus {
    /// The wire byte.
    pub const fn code(self) -> u8 {
        match self {
            AnnounceStatus::Ended => 0,
            AnnounceStatus::Active => 1,
            AnnounceStatus::Restart => 2,
        }
    }

    /// True for Active and Restart.
    pub const fn is_active(self) -> bool {
        !matches!(self, AnnounceStatus::Ended)
    }
}

/// ANNOUNCE (03/04) / ANNOUNCE_BROADCAST (05).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// Active, ended or (05) restart.
    pub status: AnnounceStatus,
    /// The broadcast path relative to the request's prefix.
    pub suffix: Path,
    /// The hop list. On 03 only its length travels (the IDs read back as 0); on 04 it runs from
    /// the origin to the sender inclusive; on 05 it excludes the sender.
    pub hops: Vec<u64>,
}

impl Message for Announce {
    const NAME: &'static str = "announce";

    fn encode_body<S: Sink + ?Sized>(
        &self,
        sink: &mut S,
        version: Version,
    ) -> Result<(), EncodeError> {
        if self.status == AnnounceStatus::Restart && !version.is_lite05() {
            return Err(EncodeError::InvalidValue {
                what: "announce status",
                value: 2,
            });
        }
        sink.put_u8(self.status.code());
        self.suffix.encode_suffix(sink)?;
        encode_hops(sink, &self.hops, version)
    }

    fn decode_body(cursor: &mut Cursor<'_>, version: Version) -> Result<Self, DecodeError> {
        let status = match cursor.byte()? {
            0 => AnnounceStatus::Ended,
            1 => AnnounceStatus::Active,
            2 if version.is_lite05() => AnnounceStatus::Restart,
            other => {
                return Err(DecodeError::InvalidValue {
                    what: "announce status",
                    value: u64::from(other),
                });
            }
        };
        let suffix = Path::decode(cursor, "announce suffix")?;
        let hops = decode_hops(cursor, version)?;
        Ok(Self {
            status,
            suffix,
            hops,
        })
    }
}

/// Write a hop list: the count alone on 03, count then IDs on 04/05.
pub(crate) fn encode_hops<S: Sink + ?Sized>(
    sink: &mut S,
    hops: &[u64],
    version: Version,
) -> Result<(), EncodeError> {
    if hops.len() > MAX_HOPS {
        return Err(EncodeError::TooLarge {
            what: "hop list",
            size: hops.len() as u64,
            max: MAX_HOPS as u64,
        });
    }
    put_varint(sink, hops.len() as u64)?;
    if version.has_hops() {
        if let Some(dup) = first_duplicate_hop(hops) {
            return Err(EncodeError::InvalidValue {
                what: "duplicate hop id",
                value: dup,
            });
        }
        for hop in hops {
            put_varint(sink, *hop)?;
        }
    }
    Ok(())
}

fn decode_hops(cursor: &mut Cursor<'_>, version: Version) -> Result<Vec<u64>, DecodeError> {
    let count = cursor.varint_max("hop list", MAX_HOPS as u64)? as usize;
    if !version.has_hops() {
        return Ok(vec![0; count]);
    }
    let mut hops = Vec::with_capacity(count);
    for _ in 0..count {
        hops.push(cursor.varint()?);
    }
    if let Some(dup) = first_duplicate_hop(&hops) {
        return Err(DecodeError::DuplicateHop(dup));
    }
    Ok(hops)
}

/// The first non-zero ID that appears twice (zero, "unknown", may repeat). Lists are at most
/// 32 long, so the quadratic scan beats hashing.
fn first_duplicate_hop(hops: &[u64]) -> Option<u64> {
    hops.iter()
        .enumerate()
        .find(|(i, hop)| **hop != 0 && hops[..*i].contains(hop))
        .map(|(_, hop)| *hop)
}
