//! PROBE (draft-lcurley-moq-lite-03 §5.1.4, §7.10; draft-lcurley-moq-lite-05 §5.1.5, §7.15;
//! docs/wire.md §3.5, §4.10): from the requester a target bitrate, from the responder the
//! current estimate. lite-04 added the smoothed RTT in milliseconds (0 = unknown).

use super::{Message, Version};
use crate::coding::{Cursor, DecodeError, EncodeError, Sink, put_varint};

/// PROBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Bits per second (0 = unknown).
    pub bitrate: u64,
    /// 04+: smoothed RTT in milliseconds (0 = unknown). Not sent on 03 and read back as 0.
    pub rtt_ms: u64,
}

impl Message for Probe {
    const NAME: &'static str = "PROBE";

    fn encode_body<S: Sink + ?Sized>(
        &self,
        sink: &mut S,
        version: Version,
    ) -> Result<(), EncodeError> {
        put_varint(sink, self.bitrate)?;
        if version.has_hops() {
            put_varint(sink, self.rtt_ms)?;
        }
        Ok(())
    }

    fn decode_body(cursor: &mut Cursor<'_>, version: Version) -> Result<Self, DecodeError> {
        let bitrate = cursor.varint()?;
        let rtt_ms = if version.has_hops() {
            cursor.varint()?
        } else {
            0
        };
        Ok(Self { bitrate, rtt_ms })
    }
}
