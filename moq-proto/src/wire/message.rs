//! The size-prefixed message framing shared by every control message.

use bytes::{Bytes, BytesMut};

use super::Version;
use crate::coding::{
    Cursor, DecodeError, EncodeError, LenCounter, Limits, MAX_MESSAGE_SIZE, Sink, put_varint,
};

/// A control message: `Message Length (i)` followed by a body of exactly that many bytes.
///
/// Implementors write the body; the provided methods add the length prefix, enforce the size
/// cap as soon as the prefix is read, and require the body to be consumed exactly.
pub trait Message: Sized {
    /// The message name used in errors.
    const NAME: &'static str;

    /// Whether the message exists in `version`.
    fn supported(_version: Version) -> bool {
        true
    }

    /// The largest body accepted under `limits`.
    fn max_size(limits: &Limits) -> usize {
        limits.message_size()
    }

    /// Write the body (no length prefix).
    fn encode_body<S: Sink + ?Sized>(
        &self,
        sink: &mut S,
        version: Version,
    ) -> Result<(), EncodeError>;

    /// Read the body from a cursor that holds exactly the declared length.
    fn decode_body(cursor: &mut Cursor<'_>, version: Version) -> Result<Self, DecodeError>;

    /// Write the length prefix and the body.
    fn encode<S: Sink + ?Sized>(&self, sink: &mut S, version: Version) -> Result<(), EncodeError> {
        if !Self::supported(version) {
            return Err(EncodeError::UnsupportedVersion {
                what: Self::NAME,
                version,
            });
        }
        let mut counter = LenCounter::default();
        self.encode_body(&mut counter, version)?;
        if counter.0 > MAX_MESSAGE_SIZE {
            return Err(EncodeError::TooLarge {
                what: Self::NAME,
                size: counter.0 as u64,
                max: MAX_MESSAGE_SIZE as u64,
            });
        }
        put_varint(sink, counter.0 as u64)?;
        self.encode_body(sink, version)
    }

    /// Decode one size-prefixed message with the default [`Limits`].
    fn decode(cursor: &mut Cursor<'_>, version: Version) -> Result<Self, DecodeError> {
        Self::decode_with(cursor, version, &Limits::default())
    }

    /// Decode one size-prefixed message.
    ///
    /// [`DecodeError::Short`] (cursor untouched) until the whole body is present; a declared
    /// length above the cap fails at once.
    fn decode_with(
        cursor: &mut Cursor<'_>,
        version: Version,
        limits: &Limits,
    ) -> Result<Self, DecodeError> {
        if !Self::supported(version) {
            return Err(DecodeError::UnsupportedVersion {
                what: Self::NAME,
                version,
            });
        }
        let mut body = cursor.sized(Self::NAME, Self::max_size(limits))?;
        let message = Self::decode_body(&mut body, version).map_err(|e| e.inside(Self::NAME))?;
        body.finish(Self::NAME)?;
        Ok(message)
    }

    /// Encode into a fresh buffer (convenience for tests and cold paths).
    fn to_bytes(&self, version: Version) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf, version)?;
        Ok(buf.freeze())
    }
}

/// Encode a typed message: `Type (i)`, then `Message Length (i)`, then the body. The type
/// comes before the length and the length excludes it (subscribe responses, docs/wire.md §4.6).
pub(crate) fn encode_typed<S: Sink + ?Sized, M: Message>(
    sink: &mut S,
    ty: u64,
    message: &M,
    version: Version,
) -> Result<(), EncodeError> {
    // Validate before writing the type, so a refused message leaves the sink untouched.
    message.encode(&mut LenCounter::default(), version)?;
    put_varint(sink, ty)?;
    message.encode(sink, version)
}
