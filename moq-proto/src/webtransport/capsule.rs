//! Capsules (RFC 9297 §3.2) on the WebTransport CONNECT stream, carried in DATA frames.
//!
//! `Type (i)`, `Length (i)`, `Value`. The only one we act on is CLOSE_WEBTRANSPORT_SESSION
//! (draft-ietf-webtrans-http3-02 §5, and later): a 32-bit application code and a UTF-8 reason
//! of at most 1024 bytes. DRAIN_WEBTRANSPORT_SESSION (draft -07+) is noted; every other type is
//! skipped by its length without being buffered (RFC 9297 §3.2).

use bytes::{Buf, BytesMut};

use crate::coding::{Sink, get_varint, put_varint, varint_len};

/// CLOSE_WEBTRANSPORT_SESSION.
pub const CLOSE_WEBTRANSPORT_SESSION: u64 = 0x2843;
/// DRAIN_WEBTRANSPORT_SESSION.
pub const DRAIN_WEBTRANSPORT_SESSION: u64 = 0x78ae;
/// The longest close reason allowed (draft-ietf-webtrans-http3 §5; QUICHE refuses longer).
pub const MAX_CLOSE_REASON: usize = 1024;

/// A capsule we understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capsule {
    /// The peer closes the session.
    Close {
        /// The application error code.
        code: u32,
        /// Why (lossy UTF-8).
        reason: String,
    },
    /// The peer asks to wind the session down.
    Drain,
}

/// A capsule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapsuleError {
    /// A CLOSE capsule shorter than its code, or with a reason over 1024 bytes.
    #[error("malformed CLOSE_WEBTRANSPORT_SESSION capsule")]
    MalformedClose,
}

/// The close capsule for `code` and `reason` (the reason is cut to 1024 bytes on a character
/// boundary).
pub fn encode_close<S: Sink + ?Sized>(sink: &mut S, code: u32, reason: &str) {
    let reason = truncate(reason, MAX_CLOSE_REASON);
    let len = 4 + reason.len() as u64;
    let _ = put_varint(sink, CLOSE_WEBTRANSPORT_SESSION);
    let _ = put_varint(sink, len);
    sink.put_slice(&code.to_be_bytes());
    sink.put_slice(reason.as_bytes());
}

/// The size of [`encode_close`]'s output.
pub fn close_len(reason: &str) -> usize {
    let reason = truncate(reason, MAX_CLOSE_REASON);
    let len = 4 + reason.len();
    varint_len(CLOSE_WEBTRANSPORT_SESSION) + varint_len(len as u64) + len
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Incremental capsule reader: feed the DATA payload of the CONNECT stream, take capsules.
#[derive(Debug, Default)]
pub struct CapsuleReader {
    buf: BytesMut,
    /// Bytes of an ignored capsule still to discard.
    skip: u64,
}

impl CapsuleReader {
    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feed DATA payload bytes; returns the capsules they complete.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<Capsule>, CapsuleError> {
        let mut out = Vec::new();
        loop {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                data = &data[n..];
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(out);
                }
            }
            self.buf.extend_from_slice(data);
            data = &[];
            let mut view = &self.buf[..];
            let (Ok(ty), Ok(len)) = (get_varint(&mut view), get_varint(&mut view)) else {
                return Ok(out);
            };
            let header = self.buf.len() - view.len();
            // DRAIN has no value; one that claims a value is skipped like an unknown capsule,
            // so nothing but a CLOSE (at most 1028 bytes) is ever buffered.
            let known =
                ty == CLOSE_WEBTRANSPORT_SESSION || (ty == DRAIN_WEBTRANSPORT_SESSION && len == 0);
            if !known {
                // Skip what is buffered of it, then the rest as it arrives.
                self.buf.advance(header);
                let have = (self.buf.len() as u64).min(len);
                self.buf.advance(have as usize);
                self.skip = len - have;
                if self.buf.is_empty() {
                    return Ok(out);
                }
                continue;
            }
            if ty == CLOSE_WEBTRANSPORT_SESSION && !(4..=4 + MAX_CLOSE_REASON as u64).contains(&len)
            {
                return Err(CapsuleError::MalformedClose);
            }
            let len = len as usize;
            if view.len() < len {
                return Ok(out);
            }
            self.buf.advance(header);
            let value = self.buf.split_to(len);
            out.push(match ty {
                CLOSE_WEBTRANSPORT_SESSION => Capsule::Close {
                    code: u32::from_be_bytes([value[0], value[1], value[2], value[3]]),
                    reason: String::from_utf8_lossy(&value[4..]).into_owned(),
                },
                _ => Capsule::Drain,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_round_trips_in_any_chunking_among_unknown_capsules() {
        let mut wire = Vec::new();
        // An unknown capsule (GREASE-like type 0x29), then DRAIN, then CLOSE.
        put_varint(&mut wire, 0x29).expect("varint");
        put_varint(&mut wire, 5).expect("varint");
        wire.extend_from_slice(b"ignor");
        put_varint(&mut wire, DRAIN_WEBTRANSPORT_SESSION).expect("varint");
        put_varint(&mut wire, 0).expect("varint");
        encode_close(&mut wire, 0x42, "bye now");
        assert_eq!(close_len("bye now"), wire.len() - 9 - 3);
        for size in 1..=wire.len() {
            let mut reader = CapsuleReader::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(size) {
                got.extend(reader.push(chunk).expect("valid"));
            }
            assert_eq!(
                got,
                vec![
                    Capsule::Drain,
                    Capsule::Close {
                        code: 0x42,
                        reason: "bye now".into()
                    }
                ],
                "chunk size {size}"
            );
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn the_close_capsule_bytes_match_the_draft_layout() {
        let mut wire = Vec::new();
        encode_close(&mut wire, 7, "ok");
        // 0x2843 as a 2-byte varint (0x68 0x43), length 6, code 7 (u32 BE), "ok".
        assert_eq!(wire, [0x68, 0x43, 0x06, 0, 0, 0, 7, b'o', b'k']);
    }

    #[test]
    fn long_reasons_are_cut_and_bad_closes_refused() {
        let long = "é".repeat(1000); // 2000 bytes
        let mut wire = Vec::new();
        encode_close(&mut wire, 1, &long);
        let got = CapsuleReader::default().push(&wire).expect("valid");
        let Capsule::Close { reason, .. } = &got[0] else {
            panic!("{got:?}")
        };
        assert!(reason.len() <= MAX_CLOSE_REASON && reason.chars().all(|c| c == 'é'));
        // A close without a full code, and one whose reason is too long.
        let mut short = Vec::new();
        put_varint(&mut short, CLOSE_WEBTRANSPORT_SESSION).expect("varint");
        put_varint(&mut short, 3).expect("varint");
        assert_eq!(
            CapsuleReader::default().push(&short),
            Err(CapsuleError::MalformedClose)
        );
        let mut long = Vec::new();
        put_varint(&mut long, CLOSE_WEBTRANSPORT_SESSION).expect("varint");
        put_varint(&mut long, 4 + 1025).expect("varint");
        assert_eq!(
            CapsuleReader::default().push(&long),
            Err(CapsuleError::MalformedClose)
        );
    }

    #[test]
    fn a_huge_unknown_capsule_is_skipped_without_buffering() {
        let mut reader = CapsuleReader::default();
        let mut wire = Vec::new();
        put_varint(&mut wire, 0x1234).expect("varint");
        put_varint(&mut wire, 1 << 30).expect("varint");
        assert!(reader.push(&wire).expect("ok").is_empty());
        for _ in 0..16 {
            assert!(reader.push(&[0u8; 4096]).expect("ok").is_empty());
            assert_eq!(reader.buffered(), 0);
        }
    }
}
