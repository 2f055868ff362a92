//! RFC 6455 §5 framing: an incremental decoder that reassembles messages and answers the
//! control frames' rules, and an encoder.
//!
//! The decoder enforces what a peer must get right (RFC 6455 §5.1-§5.5): client frames are
//! masked and server frames are not, reserved bits are zero (no extension is negotiated),
//! control frames carry at most 125 bytes and are never fragmented, a continuation follows a
//! started message and a new message does not interrupt one. Every message is capped; a close
//! frame's code and reason are validated (§7.4, §5.5.1). Violations are typed errors carrying
//! the close code to answer with.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest control-frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Largest frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER: usize = 14;

/// Close codes (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A data type the endpoint cannot accept (text where binary is expected).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Data inconsistent with the message type (invalid UTF-8 in text or a close reason).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A policy violation.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// An unexpected condition on the server.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// A frame's opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continues a fragmented message.
    Continuation,
    /// A UTF-8 text message.
    Text,
    /// A binary message.
    Binary,
    /// Close.
    Close,
    /// Ping (answered with a pong carrying the same payload).
    Ping,
    /// Pong.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Which end of the connection this decoder or encoder serves: it decides who masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We accepted the connection: peer frames must be masked, ours are not.
    Server,
    /// We opened the connection: our frames are masked, the peer's must not be.
    Client,
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The last frame of its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, if masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub len: u64,
}

/// A peer broke the framing rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A reserved bit set without a negotiated extension.
    #[error("reserved bits set: {0:#x}")]
    ReservedBits(u8),
    /// An opcode RFC 6455 leaves reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A client frame without a mask, or a server frame with one.
    #[error("frame masking wrong for its direction (masked: {masked})")]
    Masking {
        /// Whether the offending frame was masked.
        masked: bool,
    },
    /// A control frame longer than 125 bytes or fragmented.
    #[error("invalid control frame ({0})")]
    Control(&'static str),
    /// A 64-bit length with the top bit set, or a length not in its shortest form.
    #[error("invalid payload length")]
    Length,
    /// A continuation without a message, or a new message inside a fragmented one.
    #[error("fragmentation out of order: {0}")]
    Fragmentation(&'static str),
    /// A message larger than the cap.
    #[error("message larger than {0} bytes")]
    TooBig(usize),
    /// A close frame with a one-byte payload, a code that may not be sent, or a reason that
    /// is not UTF-8; or a text message that is not UTF-8.
    #[error("invalid payload: {0}")]
    Payload(&'static str),
}

impl FrameError {
    /// The close code to answer the peer with (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooBig(_) => close_code::MESSAGE_TOO_BIG,
            FrameError::Payload(_) => close_code::INVALID_PAYLOAD,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// A whole message, or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping to answer with a pong of the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer closes: its code (`None` for an empty close frame) and reason.
    Close(Option<u16>, String),
}

/// Read a frame header from the start of `buf`: `Ok(None)` while incomplete.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits((b0 & 0x70) >> 4));
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(FrameError::ReservedOpcode(b0 & 0x0F))?;
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = u16::from_be_bytes([bytes[0], bytes[1]]) as u64;
            if len < 126 {
                return Err(FrameError::Length);
            }
            (len, 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut raw = [0u8; 8];
            raw.copy_from_slice(bytes);
            let len = u64::from_be_bytes(raw);
            if len >> 63 != 0 || len <= u16::MAX as u64 {
                return Err(FrameError::Length);
            }
            (len, 10)
        }
        len => (len as u64, 2),
    };
    let mask = if masked {
        let Some(bytes) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        None
    };
    Ok(Some((
        FrameHeader {
            fin: b0 & 0x80 != 0,
            opcode,
            mask,
            len,
        },
        at,
    )))
}

/// XOR `data` with `mask`, the key's byte `offset` first (RFC 6455 §5.3).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[(offset + i) & 3];
    }
}

/// Write a frame header.
pub fn encode_header(header: &FrameHeader, out: &mut impl BufMut) {
    out.put_u8(if header.fin { 0x80 } else { 0 } | header.opcode.bits());
    let mask_bit = if header.mask.is_some() { 0x80 } else { 0 };
    match header.len {
        len @ 0..=125 => out.put_u8(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.put_u8(mask_bit | 126);
            out.put_u16(len as u16);
        }
        len => {
            out.put_u8(mask_bit | 127);
            out.put_u64(len);
        }
    }
    if let Some(mask) = header.mask {
        out.put_slice(&mask);
    }
}

/// Encode one whole frame into `out`, masking with `mask` if given.
pub fn encode_frame(
    opcode: Opcode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut BytesMut,
) {
    let header = FrameHeader {
        fin,
        opcode,
        mask,
        len: payload.len() as u64,
    };
    out.reserve(MAX_HEADER + payload.len());
    encode_header(&header, out);
    let start = out.len();
    out.put_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask, 0);
    }
}

/// The payload of a close frame: the code and the reason (cut to fit 125 bytes on a
/// character boundary).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn parse_close(payload: &[u8]) -> Result<Message, FrameError> {
    match payload.len() {
        0 => Ok(Message::Close(None, String::new())),
        1 => Err(FrameError::Payload("one-byte close payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !valid_close_code(code) {
                return Err(FrameError::Payload("close code not allowed"));
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| FrameError::Payload("close reason is not UTF-8"))?;
            Ok(Message::Close(Some(code), reason.to_string()))
        }
    }
}

/// An incremental frame decoder: bytes in, whole messages and control frames out.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message: usize,
    buf: BytesMut,
    /// The frame being read: its header, once complete.
    frame: Option<FrameHeader>,
    /// The fragmented message being reassembled: its opcode and the parts so far.
    partial: Option<(Opcode, BytesMut)>,
}

impl Decoder {
    /// A decoder for `role`'s side, refusing messages over `max_message` bytes.
    pub fn new(role: Role, max_message: usize) -> Self {
        Self {
            role,
            max_message,
            buf: BytesMut::new(),
            frame: None,
            partial: None,
        }
    }

    /// Bytes received and not yet decoded (bounded by one frame header plus one message).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.partial.as_ref().map_or(0, |(_, p)| p.len())
    }

    /// Bytes from the peer.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next message or control frame, `Ok(None)` when more bytes are needed. After an
    /// error the connection must be closed with [`FrameError::close_code`].
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        loop {
            let header = match self.frame {
                Some(header) => header,
                None => {
                    let Some((header, len)) = decode_header(&self.buf)? else {
                        return Ok(None);
                    };
                    self.check(&header)?;
                    self.buf.advance(len);
                    self.frame = Some(header);
                    header
                }
            };
            // Checked against the cap, so it fits in memory.
            let len = header.len as usize;
            if self.buf.len() < len {
                // Reserve for the rest of the frame, once.
                self.buf.reserve(len - self.buf.len());
                return Ok(None);
            }
            self.frame = None;
            let mut payload = self.buf.split_to(len);
            if let Some(mask) = header.mask {
                apply_mask(&mut payload, mask, 0);
            }
            if let Some(message) = self.complete(header, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// The header's rules, before its payload is buffered.
    fn check(&self, header: &FrameHeader) -> Result<(), FrameError> {
        let masked = header.mask.is_some();
        if masked != (self.role == Role::Server) {
            return Err(FrameError::Masking { masked });
        }
        if header.opcode.is_control() {
            if !header.fin {
                return Err(FrameError::Control("fragmented"));
            }
            if header.len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(FrameError::Control("longer than 125 bytes"));
            }
            return Ok(());
        }
        let so_far = match (&self.partial, header.opcode) {
            (None, Opcode::Continuation) => {
                return Err(FrameError::Fragmentation("continuation without a message"));
            }
            (Some(_), Opcode::Text | Opcode::Binary) => {
                return Err(FrameError::Fragmentation(
                    "new message inside a fragmented one",
                ));
            }
            (Some((_, parts)), _) => parts.len() as u64,
            (None, _) => 0,
        };
        if so_far.saturating_add(header.len) > self.max_message as u64 {
            return Err(FrameError::TooBig(self.max_message));
        }
        Ok(())
    }

    fn complete(
        &mut self,
        header: FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<Message>, FrameError> {
        let (opcode, payload) = match header.opcode {
            Opcode::Ping => return Ok(Some(Message::Ping(payload.freeze()))),
            Opcode::Pong => return Ok(Some(Message::Pong(payload.freeze()))),
            Opcode::Close => return parse_close(&payload).map(Some),
            Opcode::Continuation => {
                let Some((opcode, mut parts)) = self.partial.take() else {
                    return Err(FrameError::Fragmentation("continuation without a message"));
                };
                parts.unsplit(payload);
                if !header.fin {
                    self.partial = Some((opcode, parts));
                    return Ok(None);
                }
                (opcode, parts)
            }
            opcode if !header.fin => {
                self.partial = Some((opcode, payload));
                return Ok(None);
            }
            opcode => (opcode, payload),
        };
        let payload = payload.freeze();
        match opcode {
            Opcode::Text => {
                std::str::from_utf8(&payload)
                    .map_err(|_| FrameError::Payload("text message is not UTF-8"))?;
                Ok(Some(Message::Text(payload)))
            }
            _ => Ok(Some(Message::Binary(payload))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn decode_all(role: Role, bytes: &[u8]) -> Result<Vec<Message>, FrameError> {
        let mut decoder = Decoder::new(role, 1 << 20);
        decoder.push(bytes);
        let mut out = Vec::new();
        while let Some(message) = decoder.next_message()? {
            out.push(message);
        }
        Ok(out)
    }

    #[test]
    fn rfc6455_5_7_examples() {
        // A single-frame unmasked text message.
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_all(Role::Client, &unmasked).unwrap(),
            vec![Message::Text(Bytes::from_static(b"Hello"))]
        );
        // A single-frame masked text message.
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(Role::Server, &masked).unwrap(),
            vec![Message::Text(Bytes::from_static(b"Hello"))]
        );
        // A fragmented unmasked text message.
        let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            decode_all(Role::Client, &fragmented).unwrap(),
            vec![Message::Text(Bytes::from_static(b"Hello"))]
        );
        // Unmasked ping, and a masked pong answering it.
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_all(Role::Client, &ping).unwrap(),
            vec![Message::Ping(Bytes::from_static(b"Hello"))]
        );
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(Role::Server, &pong).unwrap(),
            vec![Message::Pong(Bytes::from_static(b"Hello"))]
        );
        // 256 bytes binary in a single unmasked frame: 16-bit length.
        let mut big = vec![0x82, 0x7E, 0x01, 0x00];
        big.extend(std::iter::repeat_n(0xAB, 256));
        assert_eq!(
            decode_all(Role::Client, &big).unwrap(),
            vec![Message::Binary(Bytes::from(vec![0xAB; 256]))]
        );
        // 64 KiB binary in a single unmasked frame: 64-bit length.
        let mut huge = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        huge.extend(std::iter::repeat_n(0xCD, 65536));
        assert_eq!(
            decode_all(Role::Client, &huge).unwrap(),
            vec![Message::Binary(Bytes::from(vec![0xCD; 65536]))]
        );
    }

    #[test]
    fn encoder_writes_the_rfc_examples() {
        let mut out = BytesMut::new();
        encode_frame(Opcode::Text, true, b"Hello", None, &mut out);
        assert_eq!(&out[..], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(Opcode::Text, true, b"Hello", Some(MASK), &mut out);
        assert_eq!(
            &out[..],
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
        out.clear();
        encode_frame(Opcode::Binary, true, &[0xAB; 256], None, &mut out);
        assert_eq!(&out[..4], &[0x82, 0x7E, 0x01, 0x00]);
        out.clear();
        encode_frame(Opcode::Binary, true, &[0; 65536], None, &mut out);
        assert_eq!(&out[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let mut wire = BytesMut::new();
        encode_frame(Opcode::Binary, false, b"abc", Some(MASK), &mut wire);
        encode_frame(Opcode::Ping, true, b"p", Some(MASK), &mut wire);
        encode_frame(
            Opcode::Continuation,
            true,
            b"def",
            Some([1, 2, 3, 4]),
            &mut wire,
        );
        let close = close_payload(1000, "bye");
        encode_frame(Opcode::Close, true, &close, Some(MASK), &mut wire);
        let whole = decode_all(Role::Server, &wire).unwrap();
        let mut decoder = Decoder::new(Role::Server, 1 << 20);
        let mut trickled = Vec::new();
        for byte in wire.iter() {
            decoder.push(&[*byte]);
            while let Some(message) = decoder.next_message().unwrap() {
                trickled.push(message);
            }
        }
        assert_eq!(whole, trickled);
        assert_eq!(
            whole,
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Binary(Bytes::from_static(b"abcdef")),
                Message::Close(Some(1000), "bye".into()),
            ]
        );
    }

    #[test]
    fn bad_frames_are_typed_errors_with_close_codes() {
        let cases: &[(Role, &[u8], FrameError)] = &[
            (Role::Client, &[0xC2, 0x00], FrameError::ReservedBits(4)),
            (Role::Client, &[0x83, 0x00], FrameError::ReservedOpcode(3)),
            (Role::Client, &[0x8B, 0x00], FrameError::ReservedOpcode(0xB)),
            // A client frame must be masked; a server frame must not.
            (
                Role::Server,
                &[0x82, 0x00],
                FrameError::Masking { masked: false },
            ),
            (
                Role::Client,
                &[0x82, 0x80, 1, 2, 3, 4],
                FrameError::Masking { masked: true },
            ),
            (
                Role::Client,
                &[0x09, 0x00],
                FrameError::Control("fragmented"),
            ),
            (
                Role::Client,
                &[0x89, 0x7E, 0x00, 0x7E],
                FrameError::Control("longer than 125 bytes"),
            ),
            (Role::Client, &[0x82, 0x7E, 0x00, 0x10], FrameError::Length),
            (
                Role::Client,
                &[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0],
                FrameError::Length,
            ),
            (
                Role::Client,
                &[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
                FrameError::Length,
            ),
            (
                Role::Client,
                &[0x80, 0x00],
                FrameError::Fragmentation("continuation without a message"),
            ),
            (
                Role::Client,
                &[0x02, 0x00, 0x82, 0x00],
                FrameError::Fragmentation("new message inside a fragmented one"),
            ),
            (
                Role::Client,
                &[0x88, 0x01, 0x03],
                FrameError::Payload("one-byte close payload"),
            ),
            (
                Role::Client,
                &[0x88, 0x02, 0x03, 0xED],
                FrameError::Payload("close code not allowed"),
            ),
            (
                Role::Client,
                &[0x88, 0x03, 0x03, 0xE8, 0xFF],
                FrameError::Payload("close reason is not UTF-8"),
            ),
            (
                Role::Client,
                &[0x81, 0x01, 0xFF],
                FrameError::Payload("text message is not UTF-8"),
            ),
        ];
        for (role, bytes, expected) in cases {
            assert_eq!(
                decode_all(*role, bytes).as_ref(),
                Err(expected),
                "{bytes:02x?}"
            );
        }
        assert_eq!(
            FrameError::Payload("x").close_code(),
            close_code::INVALID_PAYLOAD
        );
        assert_eq!(FrameError::Length.close_code(), close_code::PROTOCOL_ERROR);
    }

    #[test]
    fn message_cap_counts_every_fragment_before_buffering() {
        let mut decoder = Decoder::new(Role::Client, 100);
        let mut wire = BytesMut::new();
        encode_frame(Opcode::Binary, false, &[0; 60], None, &mut wire);
        // The second fragment's header alone pushes past the cap: refused before its payload.
        wire.extend_from_slice(&[0x80, 60]);
        decoder.push(&wire);
        assert_eq!(decoder.next_message(), Err(FrameError::TooBig(100)));
        // A header announcing 2^62 bytes is refused at once, nothing reserved.
        let mut decoder = Decoder::new(Role::Client, 100);
        decoder.push(&[0x82, 0x7F, 0x40, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decoder.next_message(), Err(FrameError::TooBig(100)));
        assert!(decoder.buffered() <= MAX_HEADER);
    }

    #[test]
    fn close_reason_is_cut_on_a_character_boundary() {
        let reason = "é".repeat(100);
        let payload = close_payload(1000, &reason);
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        assert_eq!(
            parse_close(&payload).unwrap(),
            Message::Close(Some(1000), "é".repeat(61))
        );
    }
}
