//! Where encoders write, and the field writers every message uses.

use std::time::Duration;

use bytes::BytesMut;

use super::{EncodeError, put_varint};

/// A byte sink for encoders.
///
/// Implemented for `BytesMut`, `Vec<u8>` and [`LenCounter`]; messages are encoded once into a
/// counter to learn their length prefix, then into the real buffer, so nothing is shifted or
/// allocated twice.
pub trait Sink {
    /// Append bytes.
    fn put_slice(&mut self, bytes: &[u8]);

    /// Append one byte.
    fn put_u8(&mut self, byte: u8) {
        self.put_slice(&[byte]);
    }
}

impl Sink for BytesMut {
    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A sink that only counts bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct LenCounter(pub usize);

impl Sink for LenCounter {
    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Append a string: varint byte length, then the UTF-8 bytes.
pub fn put_string<S: Sink + ?Sized>(sink: &mut S, value: &str) -> Result<(), EncodeError> {
    put_bytes(sink, value.as_bytes())
}

/// Append a byte string: varint length, then the bytes.
pub fn put_bytes<S: Sink + ?Sized>(sink: &mut S, value: &[u8]) -> Result<(), EncodeError> {
    put_varint(sink, value.len() as u64)?;
    sink.put_slice(value);
    Ok(())
}

/// Append an optional group number: 0 for none, `n + 1` for `Some(n)`.
pub fn put_optional<S: Sink + ?Sized>(sink: &mut S, value: Option<u64>) -> Result<(), EncodeError> {
    match value {
        None => put_varint(sink, 0),
        Some(n) => put_varint(
            sink,
            n.checked_add(1).ok_or(EncodeError::VarIntOverflow(n))?,
        ),
    }
}

/// Append a duration as varint milliseconds (sub-millisecond parts are truncated, as the
/// reference implementation does).
pub fn put_duration<S: Sink + ?Sized>(sink: &mut S, value: Duration) -> Result<(), EncodeError> {
    let millis = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
    put_varint(sink, millis)
}

/// Append a single raw byte field.
pub fn put_byte<S: Sink + ?Sized>(sink: &mut S, value: u8) {
    sink.put_u8(value);
}

/// Append a boolean flag as a raw byte (0 or 1).
pub fn put_flag<S: Sink + ?Sized>(sink: &mut S, value: bool) {
    sink.put_u8(u8::from(value));
}
