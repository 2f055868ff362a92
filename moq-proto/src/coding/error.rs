//! Typed codec errors.

use thiserror::Error;

/// Why a decode did not produce a value.
///
/// [`DecodeError::Short`] alone means "not enough bytes yet": the same input with more bytes
/// appended may decode. Every other variant means the bytes are invalid and never will.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// More bytes are needed; nothing is wrong with what arrived so far.
    #[error("need more bytes")]
    Short,
    /// A size-prefixed message ended in the middle of a field.
    #[error("{what}: message body ends in the middle of a field")]
    Truncated {
        /// The message being decoded.
        what: &'static str,
    },
    /// A size-prefixed message had bytes left over after its last field.
    #[error("{what}: {remaining} trailing bytes after the last field")]
    TrailingBytes {
        /// The message being decoded.
        what: &'static str,
        /// Bytes left over inside the declared length.
        remaining: usize,
    },
    /// A declared length or count is above its cap.
    #[error("{what} too large: {size} > {max}")]
    TooLarge {
        /// What was too large (a message, a frame, a string, ...).
        what: &'static str,
        /// The size the peer declared.
        size: u64,
        /// The cap it exceeded.
        max: u64,
    },
    /// A string field was not valid UTF-8.
    #[error("{what}: invalid UTF-8")]
    InvalidUtf8 {
        /// The field.
        what: &'static str,
    },
    /// A field held a value outside its domain (an enum, a flag, a zero timescale, ...).
    #[error("invalid {what}: {value}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// A stream began with a type this version does not define.
    #[error("unknown stream type {0:#x}")]
    UnknownStreamType(u64),
    /// A typed message carried a type this version does not define.
    #[error("unknown {what} type {value:#x}")]
    UnknownMessageType {
        /// The message family (e.g. "subscribe response").
        what: &'static str,
        /// The type value.
        value: u64,
    },
    /// A SETUP parameter ID appeared twice.
    #[error("duplicate parameter {0:#x}")]
    DuplicateParameter(u64),
    /// A non-zero hop ID appeared twice in one hop list.
    #[error("duplicate hop id {0}")]
    DuplicateHop(u64),
    /// The message or stream does not exist in the negotiated version.
    #[error("{what} is not part of {version}")]
    UnsupportedVersion {
        /// The message or stream kind.
        what: &'static str,
        /// The version in use.
        version: crate::wire::Version,
    },
    /// A lite-05 timestamp delta moved the timestamp below zero or past the varint range.
    #[error("timestamp delta {0} leaves the valid range")]
    TimestampOutOfRange(i64),
}

impl DecodeError {
    /// True when more input may turn this into a success.
    pub fn is_short(&self) -> bool {
        matches!(self, DecodeError::Short)
    }

    /// Inside a size-prefixed body "need more" is impossible: it means the body was truncated.
    pub(crate) fn inside(self, what: &'static str) -> Self {
        match self {
            DecodeError::Short => DecodeError::Truncated { what },
            other => other,
        }
    }
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An integer does not fit a QUIC varint (2^62 - 1 at most).
    #[error("value {0} does not fit a varint")]
    VarIntOverflow(u64),
    /// A length or count is above the cap the peer enforces.
    #[error("{what} too large: {size} > {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// A field holds a value that cannot be sent (a zero timescale, a duplicate hop, ...).
    #[error("invalid {what}: {value}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// The message does not exist in this version.
    #[error("{what} is not part of {version}")]
    UnsupportedVersion {
        /// The message.
        what: &'static str,
        /// The version asked for.
        version: crate::wire::Version,
    },
}
