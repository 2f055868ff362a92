//! lite-05 DATAGRAM (draft-lcurley-moq-lite-05 §6.4; docs/wire.md §3.8, §4.13): one QUIC datagram carries one whole single-frame
//! group: `Subscribe ID (i)`, `Group Sequence (i)`, absolute `Timestamp (i)`, then the payload
//! (all remaining bytes). No type byte and no length. Bodies above 1200 bytes are never sent
//! and, by default, dropped on receipt.

use bytes::Bytes;

use super::Version;
use crate::coding::{
    Cursor, DecodeError, EncodeError, MAX_DATAGRAM_SIZE, Sink, put_varint, varint_len,
};

/// A decoded datagram. The payload is a zero-copy slice of the received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The subscription.
    pub subscribe_id: u64,
    /// The group sequence (plain).
    pub sequence: u64,
    /// Absolute timestamp in track timescale units.
    pub timestamp: u64,
    /// The single frame's payload.
    pub payload: Bytes,
}

impl Datagram {
    /// Header bytes in front of the payload.
    pub fn header_len(&self) -> usize {
        varint_len(self.subscribe_id) + varint_len(self.sequence) + varint_len(self.timestamp)
    }

    /// Write the header (the caller appends the payload), checking the whole body against
    /// [`MAX_DATAGRAM_SIZE`].
    pub fn encode_header<S: Sink + ?Sized>(
        &self,
        sink: &mut S,
        version: Version,
    ) -> Result<(), EncodeError> {
        if !version.is_lite05() {
            return Err(EncodeError::UnsupportedVersion {
                what: "datagram",
                version,
            });
        }
        let size = self.header_len() + self.payload.len();
        if size > MAX_DATAGRAM_SIZE {
            return Err(EncodeError::TooLarge {
                what: "datagram",
                size: size as u64,
                max: MAX_DATAGRAM_SIZE as u64,
            });
        }
        // Check every field before writing any, so a refused header leaves the sink untouched.
        for value in [self.subscribe_id, self.sequence, self.timestamp] {
            if value > crate::coding::MAX_VARINT {
                return Err(EncodeError::VarIntOverflow(value));
            }
        }
        put_varint(sink, self.subscribe_id)?;
        put_varint(sink, self.sequence)?;
        put_varint(sink, self.timestamp)
    }

    /// Decode a whole datagram body of at most `max_size` bytes.
    pub fn decode(body: &Bytes, version: Version, max_size: usize) -> Result<Self, DecodeError> {
        if !version.is_lite05() {
            return Err(DecodeError::UnsupportedVersion {
                what: "datagram",
                version,
            });
        }
        if body.len() > max_size {
            return Err(DecodeError::TooLarge {
                what: "datagram",
                size: body.len() as u64,
                max: max_size as u64,
            });
        }
        let mut cursor = Cursor::new(body);
        let inside = |e: DecodeError| e.inside("datagram");
        let subscribe_id = cursor.varint().map_err(inside)?;
        let sequence = cursor.varint().map_err(inside)?;
        let timestamp = cursor.varint().map_err(inside)?;
        let payload = body.slice(body.len() - cursor.remaining()..);
        Ok(Self {
            subscribe_id,
            sequence,
            timestamp,
            payload,
        })
    }
}
