//! QMux frames: the QUIC version 1 frames QMux permits (draft-ietf-quic-qmux-01 §3, RFC 9000
//! §19), the DATAGRAM frame (RFC 9221), and QMux's own QX_TRANSPORT_PARAMETERS and QX_PING.
//!
//! A QMux record's payload is a sequence of frames; over WebSocket one binary message is one
//! record's payload (no Size prefix: the message delimits it). STREAM data is a zero-copy slice
//! of the record. A frame the draft forbids (ACK, CRYPTO, PING, connection IDs, paths) or does
//! not know is a FRAME_ENCODING_ERROR.

use bytes::{Bytes, BytesMut};

use crate::coding::{DecodeError, Sink, get_varint, put_varint, varint_len};

/// QX_TRANSPORT_PARAMETERS (draft-ietf-quic-qmux-01 §3.2): `ff 51 53 30 0d 0a 0d 0a` on the wire
/// (`"\xffQS0\r\n\r\n"`: neither HTTP/1.1 nor HTTP/2 can start so).
pub const QX_TRANSPORT_PARAMETERS: u64 = 0x3f51_5330_0d0a_0d0a;
/// QX_PING asking for an answer (draft-ietf-quic-qmux-01 §3.3).
pub const QX_PING: u64 = 0x348c_6752_9ef8_c7bd;
/// QX_PING answering one.
pub const QX_PING_RESPONSE: u64 = 0x348c_6752_9ef8_c7be;

/// Transport error codes (RFC 9000 §20.1) QMux closes with.
pub mod error_code {
    /// No error.
    pub const NO_ERROR: u64 = 0x0;
    /// An internal error.
    pub const INTERNAL_ERROR: u64 = 0x1;
    /// More data than the advertised credit.
    pub const FLOW_CONTROL_ERROR: u64 = 0x3;
    /// A stream beyond the advertised limit.
    pub const STREAM_LIMIT_ERROR: u64 = 0x4;
    /// A frame for a stream in a state that does not allow it.
    pub const STREAM_STATE_ERROR: u64 = 0x5;
    /// A final size that changed or was exceeded.
    pub const FINAL_SIZE_ERROR: u64 = 0x6;
    /// A malformed, forbidden or unknown frame, or a truncated record.
    pub const FRAME_ENCODING_ERROR: u64 = 0x7;
    /// Bad transport parameters, or QX_TRANSPORT_PARAMETERS not first.
    pub const TRANSPORT_PARAMETER_ERROR: u64 = 0x8;
    /// Any other violation (STREAM data out of order, among others).
    pub const PROTOCOL_VIOLATION: u64 = 0xa;
}

/// Which streams a MAX_STREAMS or STREAMS_BLOCKED frame counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Bidirectional.
    Bidi,
    /// Unidirectional.
    Uni,
}

/// A frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// PADDING (one byte).
    Padding,
    /// RESET_STREAM: the sender abandons a stream.
    ResetStream {
        /// The stream.
        id: u64,
        /// Application error code.
        code: u64,
        /// Bytes sent before the reset.
        final_size: u64,
    },
    /// STOP_SENDING: the receiver wants no more.
    StopSending {
        /// The stream.
        id: u64,
        /// Application error code.
        code: u64,
    },
    /// STREAM data.
    Stream {
        /// The stream.
        id: u64,
        /// Offset of `data` in the stream; `None` when the frame omits it (draft-00 peers
        /// such as qmux 0.0.7 send no offsets: the data continues the stream).
        offset: Option<u64>,
        /// The bytes (a slice of the record).
        data: Bytes,
        /// The last bytes of the stream.
        fin: bool,
    },
    /// MAX_DATA: connection credit.
    MaxData(u64),
    /// MAX_STREAM_DATA: stream credit.
    MaxStreamData {
        /// The stream.
        id: u64,
        /// The new limit.
        max: u64,
    },
    /// MAX_STREAMS: how many streams the peer may open.
    MaxStreams {
        /// Which kind.
        kind: StreamKind,
        /// The cumulative count.
        max: u64,
    },
    /// DATA_BLOCKED.
    DataBlocked(u64),
    /// STREAM_DATA_BLOCKED.
    StreamDataBlocked {
        /// The stream.
        id: u64,
        /// The limit it hit.
        max: u64,
    },
    /// STREAMS_BLOCKED.
    StreamsBlocked {
        /// Which kind.
        kind: StreamKind,
        /// The limit it hit.
        max: u64,
    },
    /// CONNECTION_CLOSE: a transport error (`frame_type` set) or the application's close.
    ConnectionClose {
        /// True for the application variant (0x1d).
        application: bool,
        /// The error code.
        code: u64,
        /// The frame type that caused a transport error.
        frame_type: Option<u64>,
        /// The reason phrase.
        reason: Bytes,
    },
    /// DATAGRAM (RFC 9221).
    Datagram(Bytes),
    /// QX_TRANSPORT_PARAMETERS: the encoded parameters ([`super::params`]).
    TransportParameters(Bytes),
    /// QX_PING asking for an answer.
    Ping(u64),
    /// QX_PING answering.
    PingResponse(u64),
}

/// Frame types QUIC defines and QMux forbids (draft-ietf-quic-qmux-01 §3).
fn forbidden(ty: u64) -> bool {
    matches!(
        ty,
        0x01 | 0x02 | 0x03 | 0x06 | 0x07 | 0x18 | 0x19 | 0x1a | 0x1b | 0x1e
    )
}

/// A record that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame the draft forbids.
    #[error("forbidden frame type {0:#x}")]
    Forbidden(u64),
    /// A frame type nobody defined.
    #[error("unknown frame type {0:#x}")]
    Unknown(u64),
    /// The record ended inside a frame.
    #[error("frame {0:#x} truncated")]
    Truncated(u64),
    /// A field out of range (offset + length past 2^62, a stream count past 2^60).
    #[error("frame {0:#x}: field out of range")]
    Range(u64),
}

impl FrameError {
    /// The transport error code to close with.
    pub fn code(&self) -> u64 {
        error_code::FRAME_ENCODING_ERROR
    }
}

/// Largest offset + length of a stream (RFC 9000 §19.8).
const MAX_STREAM_OFFSET: u64 = (1 << 62) - 1;
/// Largest MAX_STREAMS / STREAMS_BLOCKED value (RFC 9000 §19.11).
const MAX_STREAM_COUNT: u64 = 1 << 60;

/// Iterates over the frames of one record payload.
#[derive(Debug)]
pub struct Frames {
    record: Bytes,
    at: usize,
}

impl Frames {
    /// The frames in `record`.
    pub fn new(record: Bytes) -> Self {
        Self { record, at: 0 }
    }
}

impl Iterator for Frames {
    type Item = Result<Frame, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.record.len() {
            return None;
        }
        let result = decode(&self.record, &mut self.at);
        if result.is_err() {
            // Nothing after a bad frame can be trusted.
            self.at = self.record.len();
        }
        Some(result)
    }
}

/// Decode the frame at `record[*at..]`, advancing `at`.
fn decode(record: &Bytes, at: &mut usize) -> Result<Frame, FrameError> {
    let mut buf = &record[*at..];
    let start_len = buf.len();
    let ty = get_varint(&mut buf).map_err(|_| FrameError::Truncated(0))?;
    let truncated = |_: DecodeError| FrameError::Truncated(ty);
    let varint = |buf: &mut &[u8]| get_varint(buf).map_err(truncated);
    let frame = match ty {
        0x00 => Frame::Padding,
        0x04 => Frame::ResetStream {
            id: varint(&mut buf)?,
            code: varint(&mut buf)?,
            final_size: varint(&mut buf)?,
        },
        0x05 => Frame::StopSending {
            id: varint(&mut buf)?,
            code: varint(&mut buf)?,
        },
        0x08..=0x0f => {
            let id = varint(&mut buf)?;
            let offset = if ty & 0x04 != 0 {
                Some(varint(&mut buf)?)
            } else {
                None
            };
            let len = if ty & 0x02 != 0 {
                varint(&mut buf)? as usize
            } else {
                buf.len()
            };
            if len > buf.len() {
                return Err(FrameError::Truncated(ty));
            }
            if offset.unwrap_or(0).saturating_add(len as u64) > MAX_STREAM_OFFSET {
                return Err(FrameError::Range(ty));
            }
            let data_start = *at + (start_len - buf.len());
            buf = &buf[len..];
            Frame::Stream {
                id,
                offset,
                data: record.slice(data_start..data_start + len),
                fin: ty & 0x01 != 0,
            }
        }
        0x10 => Frame::MaxData(varint(&mut buf)?),
        0x11 => Frame::MaxStreamData {
            id: varint(&mut buf)?,
            max: varint(&mut buf)?,
        },
        0x12 | 0x13 | 0x16 | 0x17 => {
            let kind = if ty & 1 == 0 {
                StreamKind::Bidi
            } else {
                StreamKind::Uni
            };
            let max = varint(&mut buf)?;
            if max > MAX_STREAM_COUNT {
                return Err(FrameError::Range(ty));
            }
            if ty < 0x16 {
                Frame::MaxStreams { kind, max }
            } else {
                Frame::StreamsBlocked { kind, max }
            }
        }
        0x14 => Frame::DataBlocked(varint(&mut buf)?),
        0x15 => Frame::StreamDataBlocked {
            id: varint(&mut buf)?,
            max: varint(&mut buf)?,
        },
        0x1c | 0x1d => {
            let code = varint(&mut buf)?;
            let frame_type = if ty == 0x1c {
                Some(varint(&mut buf)?)
            } else {
                None
            };
            let len = varint(&mut buf)? as usize;
            if len > buf.len() {
                return Err(FrameError::Truncated(ty));
            }
            let start = *at + (start_len - buf.len());
            buf = &buf[len..];
            Frame::ConnectionClose {
                application: ty == 0x1d,
                code,
                frame_type,
                reason: record.slice(start..start + len),
            }
        }
        0x30 | 0x31 | QX_TRANSPORT_PARAMETERS => {
            let len = if ty == 0x30 {
                buf.len()
            } else {
                varint(&mut buf)? as usize
            };
            if len > buf.len() {
                return Err(FrameError::Truncated(ty));
            }
            let start = *at + (start_len - buf.len());
            buf = &buf[len..];
            let body = record.slice(start..start + len);
            if ty == QX_TRANSPORT_PARAMETERS {
                Frame::TransportParameters(body)
            } else {
                Frame::Datagram(body)
            }
        }
        QX_PING => Frame::Ping(varint(&mut buf)?),
        QX_PING_RESPONSE => Frame::PingResponse(varint(&mut buf)?),
        ty if forbidden(ty) => return Err(FrameError::Forbidden(ty)),
        ty => return Err(FrameError::Unknown(ty)),
    };
    *at += start_len - buf.len();
    Ok(frame)
}

/// Bytes of a STREAM frame header with an explicit offset and length.
pub fn stream_header_len(id: u64, offset: u64, len: usize) -> usize {
    1 + varint_len(id) + varint_len(offset) + varint_len(len as u64)
}

/// Write a STREAM frame's header (offset and length explicit, as the reference peers send);
/// `len` bytes of data must follow.
pub fn encode_stream_header(out: &mut BytesMut, id: u64, offset: u64, len: usize, fin: bool) {
    out.put_u8(0x0e | u8::from(fin));
    put(out, id);
    put(out, offset);
    put(out, len as u64);
}

/// Values we encode are stream IDs, offsets, counts and codes below 2^62 by construction;
/// anything larger is clamped rather than panicking.
fn put(out: &mut BytesMut, value: u64) {
    let _ = put_varint(out, value.min(crate::coding::MAX_VARINT));
}

/// Append `frame` to `out`.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Padding => out.put_u8(0),
        Frame::ResetStream {
            id,
            code,
            final_size,
        } => {
            out.put_u8(0x04);
            put(out, *id);
            put(out, *code);
            put(out, *final_size);
        }
        Frame::StopSending { id, code } => {
            out.put_u8(0x05);
            put(out, *id);
            put(out, *code);
        }
        Frame::Stream {
            id,
            offset,
            data,
            fin,
        } => {
            match offset {
                Some(offset) => encode_stream_header(out, *id, *offset, data.len(), *fin),
                None => {
                    out.put_u8(0x0a | u8::from(*fin));
                    put(out, *id);
                    put(out, data.len() as u64);
                }
            }
            out.put_slice(data);
        }
        Frame::MaxData(max) => {
            out.put_u8(0x10);
            put(out, *max);
        }
        Frame::MaxStreamData { id, max } => {
            out.put_u8(0x11);
            put(out, *id);
            put(out, *max);
        }
        Frame::MaxStreams { kind, max } => {
            out.put_u8(if *kind == StreamKind::Bidi {
                0x12
            } else {
                0x13
            });
            put(out, *max);
        }
        Frame::DataBlocked(max) => {
            out.put_u8(0x14);
            put(out, *max);
        }
        Frame::StreamDataBlocked { id, max } => {
            out.put_u8(0x15);
            put(out, *id);
            put(out, *max);
        }
        Frame::StreamsBlocked { kind, max } => {
            out.put_u8(if *kind == StreamKind::Bidi {
                0x16
            } else {
                0x17
            });
            put(out, *max);
        }
        Frame::ConnectionClose {
            application,
            code,
            frame_type,
            reason,
        } => {
            out.put_u8(if *application { 0x1d } else { 0x1c });
            put(out, *code);
            if !application {
                put(out, frame_type.unwrap_or(0));
            }
            put(out, reason.len() as u64);
            out.put_slice(reason);
        }
        Frame::Datagram(data) => {
            out.put_u8(0x31);
            put(out, data.len() as u64);
            out.put_slice(data);
        }
        Frame::TransportParameters(params) => {
            put(out, QX_TRANSPORT_PARAMETERS);
            put(out, params.len() as u64);
            out.put_slice(params);
        }
        Frame::Ping(seq) => {
            put(out, QX_PING);
            put(out, *seq);
        }
        Frame::PingResponse(seq) => {
            put(out, QX_PING_RESPONSE);
            put(out, *seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        Frames::new(Bytes::copy_from_slice(bytes)).collect()
    }

    fn round_trip(frame: Frame) {
        let mut out = BytesMut::new();
        encode(&frame, &mut out);
        assert_eq!(decode_all(&out).unwrap(), vec![frame]);
    }

    #[test]
    fn golden_frames_from_the_drafts() {
        // QX_TRANSPORT_PARAMETERS type 0x3f5153300d0a0d0a as an 8-byte varint.
        let mut out = BytesMut::new();
        encode(&Frame::TransportParameters(Bytes::new()), &mut out);
        assert_eq!(&out[..], b"\xffQS0\r\n\r\n\x00");
        // STREAM with offset and length, as @moq/qmux sends them: type 0x0e, id 2, offset 0,
        // length 1, data 0x01; and the FIN-only frame that ends it at offset 13.
        assert_eq!(
            decode_all(&[0x0e, 0x02, 0x00, 0x01, 0x01]).unwrap(),
            vec![Frame::Stream {
                id: 2,
                offset: Some(0),
                data: Bytes::from_static(&[1]),
                fin: false
            }]
        );
        assert_eq!(
            decode_all(&[0x0f, 0x02, 0x0d, 0x00]).unwrap(),
            vec![Frame::Stream {
                id: 2,
                offset: Some(13),
                data: Bytes::new(),
                fin: true
            }]
        );
        // STREAM without offset or length (0x08): offset 0, data to the end of the record.
        assert_eq!(
            decode_all(&[0x08, 0x04, b'h', b'i']).unwrap(),
            vec![Frame::Stream {
                id: 4,
                offset: None,
                data: Bytes::from_static(b"hi"),
                fin: false
            }]
        );
        // STOP_SENDING id 2 code 0; RESET_STREAM; QX_PING 7.
        assert_eq!(
            decode_all(&[0x05, 0x02, 0x00]).unwrap(),
            vec![Frame::StopSending { id: 2, code: 0 }]
        );
        assert_eq!(
            decode_all(&[0x04, 0x03, 0x01, 0x05]).unwrap(),
            vec![Frame::ResetStream {
                id: 3,
                code: 1,
                final_size: 5
            }]
        );
        out.clear();
        encode(&Frame::Ping(7), &mut out);
        assert_eq!(
            &out[..],
            &[0xf4, 0x8c, 0x67, 0x52, 0x9e, 0xf8, 0xc7, 0xbd, 0x07]
        );
        // Several frames in one record.
        assert_eq!(
            decode_all(&[0x10, 0x44, 0x00, 0x00, 0x13, 0x0a]).unwrap(),
            vec![
                Frame::MaxData(0x400),
                Frame::Padding,
                Frame::MaxStreams {
                    kind: StreamKind::Uni,
                    max: 10
                }
            ]
        );
    }

    #[test]
    fn every_frame_round_trips() {
        for frame in [
            Frame::Padding,
            Frame::ResetStream {
                id: 9,
                code: 0x1234,
                final_size: 1 << 40,
            },
            Frame::StopSending { id: 1, code: 3 },
            Frame::Stream {
                id: 0,
                offset: Some(100_000),
                data: Bytes::from_static(b"payload"),
                fin: true,
            },
            Frame::Stream {
                id: 6,
                offset: None,
                data: Bytes::from_static(b"appended"),
                fin: false,
            },
            Frame::MaxData(1 << 30),
            Frame::MaxStreamData { id: 5, max: 77 },
            Frame::MaxStreams {
                kind: StreamKind::Bidi,
                max: 100,
            },
            Frame::DataBlocked(8),
            Frame::StreamDataBlocked { id: 6, max: 9 },
            Frame::StreamsBlocked {
                kind: StreamKind::Uni,
                max: 4,
            },
            Frame::ConnectionClose {
                application: true,
                code: 0x10,
                frame_type: None,
                reason: Bytes::from_static(b"going away"),
            },
            Frame::ConnectionClose {
                application: false,
                code: error_code::FLOW_CONTROL_ERROR,
                frame_type: Some(0x0e),
                reason: Bytes::new(),
            },
            Frame::Datagram(Bytes::from_static(b"dgram")),
            Frame::TransportParameters(Bytes::from_static(&[1, 1, 0])),
            Frame::Ping(1),
            Frame::PingResponse(u32::MAX as u64),
        ] {
            round_trip(frame);
        }
    }

    #[test]
    fn bad_records() {
        // Forbidden: PING, ACK, CRYPTO, NEW_CONNECTION_ID, HANDSHAKE_DONE.
        for ty in [0x01u8, 0x02, 0x06, 0x18, 0x1e] {
            assert_eq!(
                decode_all(&[ty, 0, 0, 0]),
                Err(FrameError::Forbidden(ty as u64))
            );
        }
        assert_eq!(decode_all(&[0x21]), Err(FrameError::Unknown(0x21)));
        // Truncated: a length past the end, a missing field, a cut varint type.
        assert_eq!(
            decode_all(&[0x0e, 0x02, 0x00, 0x05, 1, 2]),
            Err(FrameError::Truncated(0x0e))
        );
        assert_eq!(decode_all(&[0x04, 0x03]), Err(FrameError::Truncated(0x04)));
        assert_eq!(
            decode_all(&[0x1d, 0x00, 0x09]),
            Err(FrameError::Truncated(0x1d))
        );
        assert_eq!(decode_all(&[0x40]), Err(FrameError::Truncated(0)));
        // Offset + length past 2^62 - 1; a stream count past 2^60.
        let mut out = BytesMut::new();
        encode_stream_header(&mut out, 0, MAX_STREAM_OFFSET, 1, false);
        out.put_u8(0);
        assert_eq!(decode_all(&out), Err(FrameError::Range(0x0e)));
        out.clear();
        encode(
            &Frame::MaxStreams {
                kind: StreamKind::Bidi,
                max: MAX_STREAM_COUNT + 1,
            },
            &mut out,
        );
        assert_eq!(decode_all(&out), Err(FrameError::Range(0x12)));
        // A bad frame ends the iteration.
        let mut frames = Frames::new(Bytes::from_static(&[0x02, 0x00]));
        assert!(frames.next().unwrap().is_err());
        assert!(frames.next().is_none());
    }
}
