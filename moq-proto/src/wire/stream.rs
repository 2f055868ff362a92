//! Stream types (draft-lcurley-moq-lite-03 §7.2, draft-lcurley-moq-lite-05 §7.2; docs/wire.md
//! §3): the bare varint that opens every stream.
//!
//! | bidi | type | versions | | uni | type | versions |
//! |---|---|---|---|---|---|---|
//! | Announce | 0x1 | 03+ | | Group | 0x0 | 03+ |
//! | Subscribe | 0x2 | 03+ | | Setup | 0x1 | 05 |
//! | Fetch | 0x3 | 03+ (the reference serves it on 05 only) | | | | |
//! | Probe | 0x4 | 03+ | | | | |
//! | Goaway | 0x5 | 04+ | | | | |
//! | Track | 0x6 | 05 | | | | |
//!
//! The legacy bidi Session stream (0x0) and anything else is unknown: the receiver resets that
//! one stream, which is not fatal to the session. Types are always encoded minimally because
//! gomoqt reads them as one raw byte.

use super::Version;
use crate::coding::{Cursor, DecodeError, Sink};

/// The type of a bidirectional stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BiStreamType {
    /// Announce (0x1): the side that wants announcements opens it.
    Announce,
    /// Subscribe (0x2): opened by the subscriber.
    Subscribe,
    /// Fetch (0x3): one group, opened by the subscriber.
    Fetch,
    /// Probe (0x4): bitrate (and from 04 RTT) reports.
    Probe,
    /// Goaway (0x5, lite-04+).
    Goaway,
    /// Track (0x6, lite-05): TRACK request, TRACK_INFO reply.
    Track,
}

/// The type of a unidirectional stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UniStreamType {
    /// Group (0x0): one group of one subscription.
    Group,
    /// Setup (0x1, lite-05): exactly one per side.
    Setup,
}

impl BiStreamType {
    /// The wire value.
    pub const fn code(self) -> u64 {
        match self {
            BiStreamType::Announce => 0x1,
            BiStreamType::Subscribe => 0x2,
            BiStreamType::Fetch => 0x3,
            BiStreamType::Probe => 0x4,
            BiStreamType::Goaway => 0x5,
            BiStreamType::Track => 0x6,
        }
    }

    /// Whether the stream type exists in `version`.
    pub const fn supported(self, version: Version) -> bool {
        match self {
            BiStreamType::Goaway => version.has_goaway(),
            BiStreamType::Track => version.is_lite05(),
            _ => true,
        }
    }

    /// Map a wire value, rejecting types `version` does not define.
    pub fn from_code(code: u64, version: Version) -> Result<Self, DecodeError> {
        let ty = match code {
            0x1 => BiStreamType::Announce,
            0x2 => BiStreamType::Subscribe,
            0x3 => BiStreamType::Fetch,
            0x4 => BiStreamType::Probe,
            0x5 => BiStreamType::Goaway,
            0x6 => BiStreamType::Track,
            _ => return Err(DecodeError::UnknownStreamType(code)),
        };
        if ty.supported(version) {
            Ok(ty)
        } else {
            Err(DecodeError::UnknownStreamType(code))
        }
    }

    /// Decode the type at the start of a bidi stream.
    pub fn decode(cursor: &mut Cursor<'_>, version: Version) -> Result<Self, DecodeError> {
        Self::from_code(cursor.varint()?, version)
    }

    /// Encode the type (minimal varint, always one byte).
    pub fn encode<S: Sink + ?Sized>(self, sink: &mut S) {
        sink.put_u8(self.code() as u8);
    }
}

impl UniStreamType {
    /// The wire value.
    pub const fn code(self) -> u64 {
        match self {
            UniStreamType::Group => 0x0,
            UniStreamType::Setup => 0x1,
        }
    }

    /// Map a wire value, rejecting types `version` does not define.
    pub fn from_code(code: u64, version: Version) -> Result<Self, DecodeError> {
        match code {
            0x0 => Ok(UniStreamType::Group),
            0x1 if version.is_lite05() => Ok(UniStreamType::Setup),
            _ => Err(DecodeError::UnknownStreamType(code)),
        }
    }

    /// Decode the type at the start of a uni stream.
    pub fn decode(cursor: &mut Cursor<'_>, version: Version) -> Result<Self, DecodeError> {
        Self::from_code(cursor.varint()?, version)
    }

    /// Encode the type (one byte).
    pub fn encode<S: Sink + ?Sized>(self, sink: &mut S) {
        // Both codes are below 64, so one byte is the minimal varint.
        sink.put_u8(self.code() as u8);
    }
}
