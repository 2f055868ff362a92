//! HTTP/3 frames (RFC 9114 §7): `Type (i)`, `Length (i)`, then `Length` bytes of payload.
//!
//! Only the framing is here; what each frame means is up to the stream that carries it
//! ([`super::conn`]). Unknown and reserved ("GREASE", `0x1f * N + 0x21`) frame types are skipped
//! by their length, never buffered (RFC 9114 §9).

use bytes::{Buf, Bytes, BytesMut};

use crate::coding::{DecodeError, Sink, get_varint, put_varint, varint_len};

/// DATA: request payload; on a WebTransport CONNECT stream it carries capsules.
pub const DATA: u64 = 0x0;
/// HEADERS: a QPACK-encoded field section.
pub const HEADERS: u64 = 0x1;
/// CANCEL_PUSH (control stream).
pub const CANCEL_PUSH: u64 = 0x3;
/// SETTINGS (control stream, first frame, once).
pub const SETTINGS: u64 = 0x4;
/// PUSH_PROMISE (request streams, server to client).
pub const PUSH_PROMISE: u64 = 0x5;
/// GOAWAY (control stream).
pub const GOAWAY: u64 = 0x7;
/// MAX_PUSH_ID (control stream, client to server).
pub const MAX_PUSH_ID: u64 = 0xd;

/// HTTP/2 frame types that HTTP/3 reserves: receiving one is `H3_FRAME_UNEXPECTED` (RFC 9114
/// §7.2.8).
pub fn is_reserved_http2(ty: u64) -> bool {
    matches!(ty, 0x2 | 0x6 | 0x8 | 0x9)
}

/// Append a whole frame with `payload` to `sink`.
pub fn encode<S: Sink + ?Sized>(sink: &mut S, ty: u64, payload: &[u8]) {
    encode_header(sink, ty, payload.len() as u64);
    sink.put_slice(payload);
}

/// Append a frame header announcing `len` bytes of payload.
pub fn encode_header<S: Sink + ?Sized>(sink: &mut S, ty: u64, len: u64) {
    // Both values are far below 2^62 (frame types we send are constants, lengths are buffer
    // sizes), so encoding cannot fail.
    let _ = put_varint(sink, ty);
    let _ = put_varint(sink, len);
}

/// The size of a frame header announcing `len` payload bytes.
pub fn header_len(ty: u64, len: u64) -> usize {
    varint_len(ty) + varint_len(len)
}

/// A frame header: its type and payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Frame type.
    pub ty: u64,
    /// Payload length.
    pub len: u64,
}

/// Read a frame header from the front of `buf`, advancing it. [`DecodeError::Short`] (with
/// `buf` untouched) when it is incomplete.
pub fn decode_header(buf: &mut &[u8]) -> Result<FrameHeader, DecodeError> {
    let mut peek = *buf;
    let ty = get_varint(&mut peek)?;
    let len = get_varint(&mut peek)?;
    *buf = peek;
    Ok(FrameHeader { ty, len })
}

/// What [`FrameReader::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    /// A whole frame whose payload was buffered (types the caller asked to collect).
    Frame {
        /// Frame type.
        ty: u64,
        /// The payload.
        payload: Bytes,
    },
    /// Part of a streamed frame's payload (types the caller asked to stream, e.g. DATA).
    Chunk {
        /// Frame type.
        ty: u64,
        /// Payload bytes, in order.
        data: Bytes,
    },
    /// A frame of a type the caller skips began (its payload is discarded as it arrives).
    Skipped {
        /// Frame type.
        ty: u64,
    },
}

/// How a [`FrameReader`] treats a frame type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Buffer the whole payload (at most the reader's cap) and report it as one frame.
    Collect,
    /// Report the payload as it arrives, without buffering.
    Stream,
    /// Discard the payload.
    Skip,
}

/// A frame was larger than the reader's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HTTP/3 frame {ty:#x} of {len} bytes is larger than {max}")]
pub struct FrameTooLarge {
    /// Frame type.
    pub ty: u64,
    /// Its declared length.
    pub len: u64,
    /// The cap.
    pub max: usize,
}

/// Incremental frame reader for one stream: feed chunks with [`FrameReader::push`], take frames
/// with [`FrameReader::next`]. Collected payloads are bounded by `max_frame`; skipped and
/// streamed payloads are never buffered.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max_frame: usize,
    /// The frame whose payload is being streamed or skipped, and the bytes left of it.
    current: Option<(u64, Handling, u64)>,
}

impl FrameReader {
    /// A reader that buffers collected frames up to `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame,
            current: None,
        }
    }

    /// Bytes held but not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Append bytes that arrived.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True when no partial frame is pending (a FIN here is clean).
    pub fn at_boundary(&self) -> bool {
        self.buf.is_empty() && self.current.is_none()
    }

    /// The next frame event, deciding per type with `handling`; `Ok(None)` when more bytes
    /// are needed.
    pub fn next(
        &mut self,
        handling: impl Fn(u64) -> Handling,
    ) -> Result<Option<FrameEvent>, FrameTooLarge> {
        loop {
            if let Some((ty, how, left)) = self.current {
                if left == 0 {
                    self.current = None;
                    continue;
                }
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                let data = self.buf.split_to(take).freeze();
                let left = left - take as u64;
                self.current = (left > 0).then_some((ty, how, left));
                match how {
                    Handling::Stream => return Ok(Some(FrameEvent::Chunk { ty, data })),
                    _ => continue,
                }
            }
            let mut view = &self.buf[..];
            let header = match decode_header(&mut view) {
                Ok(header) => header,
                Err(_) => return Ok(None),
            };
            let header_len = self.buf.len() - view.len();
            match handling(header.ty) {
                Handling::Collect => {
                    if header.len > self.max_frame as u64 {
                        return Err(FrameTooLarge {
                            ty: header.ty,
                            len: header.len,
                            max: self.max_frame,
                        });
                    }
                    let len = header.len as usize;
                    if view.len() < len {
                        return Ok(None);
                    }
                    self.buf.advance(header_len);
                    let payload = self.buf.split_to(len).freeze();
                    return Ok(Some(FrameEvent::Frame {
                        ty: header.ty,
                        payload,
                    }));
                }
                how => {
                    self.buf.advance(header_len);
                    self.current = Some((header.ty, how, header.len));
                    if how == Handling::Skip {
                        return Ok(Some(FrameEvent::Skipped { ty: header.ty }));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_all(reader: &mut FrameReader) -> Vec<FrameEvent> {
        let mut out = Vec::new();
        while let Some(event) = reader
            .next(|ty| match ty {
                DATA => Handling::Stream,
                HEADERS | SETTINGS => Handling::Collect,
                _ => Handling::Skip,
            })
            .expect("within the cap")
        {
            out.push(event);
        }
        out
    }

    #[test]
    fn frames_in_any_chunking_read_the_same() {
        let mut wire = Vec::new();
        encode(&mut wire, SETTINGS, &[0x06, 0x44, 0x00]);
        encode(&mut wire, 0x21, b"grease"); // reserved type: skipped
        encode(&mut wire, HEADERS, b"abc");
        encode(&mut wire, DATA, b"0123456789");
        for size in 1..wire.len() {
            let mut reader = FrameReader::new(64);
            let mut events = Vec::new();
            for chunk in wire.chunks(size) {
                reader.push(chunk);
                events.extend(collect_all(&mut reader));
            }
            let data: Vec<u8> = events
                .iter()
                .filter_map(|e| match e {
                    FrameEvent::Chunk { data, .. } => Some(data.to_vec()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(data, b"0123456789", "chunk size {size}");
            let frames: Vec<_> = events
                .iter()
                .filter(|e| matches!(e, FrameEvent::Frame { .. } | FrameEvent::Skipped { .. }))
                .cloned()
                .collect();
            assert_eq!(
                frames,
                vec![
                    FrameEvent::Frame {
                        ty: SETTINGS,
                        payload: Bytes::from_static(&[0x06, 0x44, 0x00])
                    },
                    FrameEvent::Skipped { ty: 0x21 },
                    FrameEvent::Frame {
                        ty: HEADERS,
                        payload: Bytes::from_static(b"abc")
                    },
                ],
                "chunk size {size}"
            );
            assert!(reader.at_boundary());
        }
    }

    #[test]
    fn a_collected_frame_above_the_cap_is_refused_before_buffering() {
        let mut reader = FrameReader::new(16);
        let mut wire = Vec::new();
        encode_header(&mut wire, HEADERS, 1 << 40);
        reader.push(&wire);
        assert_eq!(
            reader.next(|_| Handling::Collect),
            Err(FrameTooLarge {
                ty: HEADERS,
                len: 1 << 40,
                max: 16
            })
        );
    }

    #[test]
    fn a_huge_skipped_frame_costs_nothing() {
        let mut reader = FrameReader::new(16);
        let mut wire = Vec::new();
        encode_header(&mut wire, 0x21, 1 << 40);
        reader.push(&wire);
        reader.push(&[0u8; 4096]);
        assert_eq!(
            reader.next(|_| Handling::Skip),
            Ok(Some(FrameEvent::Skipped { ty: 0x21 }))
        );
        assert_eq!(reader.next(|_| Handling::Skip), Ok(None));
        assert_eq!(reader.buffered(), 0);
        assert!(!reader.at_boundary());
    }

    #[test]
    fn reserved_http2_types() {
        for ty in [0x2, 0x6, 0x8, 0x9] {
            assert!(is_reserved_http2(ty));
        }
        assert!(!is_reserved_http2(DATA) && !is_reserved_http2(0x21));
    }
}
