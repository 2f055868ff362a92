//! A decoding cursor over a contiguous byte slice.

use std::time::Duration;

use super::{DecodeError, get_varint};

/// Reads fields from the front of a byte slice.
///
/// Running out of bytes is [`DecodeError::Short`]; inside a size-prefixed body the message
/// decoders turn that into [`DecodeError::Truncated`].
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Read a varint.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        get_varint(&mut self.buf)
    }

    /// Read a varint and check it against `max`.
    pub fn varint_max(&mut self, what: &'static str, max: u64) -> Result<u64, DecodeError> {
        let value = self.varint()?;
        if value > max {
            return Err(DecodeError::TooLarge {
                what,
                size: value,
                max,
            });
        }
        Ok(value)
    }

    /// Read one raw byte.
    #[inline]
    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&first, rest) = self.buf.split_first().ok_or(DecodeError::Short)?;
        self.buf = rest;
        Ok(first)
    }

    /// Read a raw-byte flag: zero is false, anything else true (both peers accept any value).
    pub fn flag(&mut self) -> Result<bool, DecodeError> {
        Ok(self.byte()? != 0)
    }

    /// Read exactly `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Short);
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    /// Read a length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.varint_max(what, max as u64)?;
        // `len <= max`, and `max` is a usize.
        self.take(len as usize)
    }

    /// Read a length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, what: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let raw = self.bytes(what, max)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { what })
    }

    /// Read an optional group number: 0 is none, `n + 1` is `Some(n)`.
    pub fn optional(&mut self) -> Result<Option<u64>, DecodeError> {
        Ok(self.varint()?.checked_sub(1))
    }

    /// Read a duration in varint milliseconds.
    pub fn duration(&mut self) -> Result<Duration, DecodeError> {
        Ok(Duration::from_millis(self.varint()?))
    }

    /// Read a `Message Length (i)` prefix and return a cursor over exactly that body.
    ///
    /// A declared length above `max` is rejected at once, before any of the body arrives.
    pub fn sized(&mut self, what: &'static str, max: usize) -> Result<Cursor<'a>, DecodeError> {
        let mut probe = *self;
        let len = probe.varint_max(what, max as u64)?;
        let body = probe.take(len as usize)?;
        *self = probe;
        Ok(Cursor { buf: body })
    }

    /// Require that the body has been consumed exactly.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            remaining => Err(DecodeError::TrailingBytes { what, remaining }),
        }
    }
}
