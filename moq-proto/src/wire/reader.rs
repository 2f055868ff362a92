//! Incremental stream decoding.
//!
//! A [`StreamReader`] is fed a stream's bytes as they arrive, in chunks of any size (down to
//! one byte), and yields exactly what a whole-buffer decode would. Headers (stream types,
//! size-prefixed messages, frame headers) are decoded in place when they sit inside one chunk;
//! only a header split across chunks is copied, into a scratch buffer that never grows beyond
//! the header's own capped size. Frame payloads are handed out as zero-copy slices of the input
//! chunks ([`FrameDecoder`]). A declared length is never allocated up front: memory follows the
//! bytes that actually arrived.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::{
    BiStreamType, FrameHeader, GroupHeader, Message, SubscribeResponse, Timestamps, UniStreamType,
    Version,
};
use crate::coding::{Cursor, DecodeError, Limits, varint_len_from_first};

/// Buffers one stream's unread bytes and decodes from them.
#[derive(Debug, Default)]
pub struct StreamReader {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    fin: bool,
    scratch: BytesMut,
}

impl StreamReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes (zero-copy; empty chunks are ignored).
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.buffered += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Record the end of the stream (FIN).
    pub fn finish(&mut self) {
        self.fin = true;
    }

    /// Whether FIN was received.
    pub fn fin_received(&self) -> bool {
        self.fin
    }

    /// Unread bytes held, including a partially assembled header.
    pub fn buffered(&self) -> usize {
        self.buffered + self.scratch.len()
    }

    /// True once FIN arrived and every byte was consumed.
    pub fn is_finished(&self) -> bool {
        self.fin && self.buffered() == 0
    }

    /// True when FIN arrived with an incomplete item still buffered.
    pub fn is_truncated(&self) -> bool {
        self.fin && self.buffered() > 0
    }

    /// Drop everything buffered (used when a stream is abandoned).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.buffered = 0;
        self.scratch.clear();
    }

    /// Decode one header whose total length `needed` derives from its first bytes.
    ///
    /// `needed(prefix)` returns `Ok(None)` while the length is not yet known, `Ok(Some(n))` once
    /// it is, or an error (for instance a declared length above its cap). `decode` then gets
    /// exactly `n` contiguous bytes. Returns `Ok(None)` when more input is needed.
    pub fn decode_header<T>(
        &mut self,
        needed: impl Fn(&[u8]) -> Result<Option<usize>, DecodeError>,
        decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.scratch.is_empty() {
            let Some(front) = self.chunks.front_mut() else {
                return Ok(None);
            };
            if let Some(n) = needed(front)?
                && n <= front.len()
            {
                let value = decode(&front[..n])?;
                self.consume_front(n);
                return Ok(Some(value));
            }
            if self.chunks.len() == 1 {
                // The header may still fit once the next chunk arrives; copy nothing yet.
                return Ok(None);
            }
        }
        // The header spans chunks: gather exactly its bytes into the scratch buffer.
        loop {
            let target = match needed(&self.scratch)? {
                Some(n) if self.scratch.len() >= n => break,
                Some(n) => n,
                // One more byte tells us more about the length.
                None => self.scratch.len() + 1,
            };
            let Some(front) = self.chunks.front_mut() else {
                return Ok(None);
            };
            let take = (target - self.scratch.len()).min(front.len());
            self.scratch.extend_from_slice(&front[..take]);
            self.consume_front(take);
        }
        let result = decode(&self.scratch);
        self.scratch.clear();
        result.map(Some)
    }

    fn consume_front(&mut self, n: usize) {
        if let Some(front) = self.chunks.front_mut() {
            front.advance(n);
            self.buffered -= n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
    }

    /// Read a bidi stream type.
    pub fn read_bi_type(&mut self, version: Version) -> Result<Option<BiStreamType>, DecodeError> {
        self.decode_header(varint_needed, |b| {
            BiStreamType::decode(&mut Cursor::new(b), version)
        })
    }

    /// Read a uni stream type.
    pub fn read_uni_type(
        &mut self,
        version: Version,
    ) -> Result<Option<UniStreamType>, DecodeError> {
        self.decode_header(varint_needed, |b| {
            UniStreamType::decode(&mut Cursor::new(b), version)
        })
    }

    /// Read one size-prefixed message.
    pub fn read_message<M: Message>(
        &mut self,
        version: Version,
        limits: &Limits,
    ) -> Result<Option<M>, DecodeError> {
        let max = M::max_size(limits);
        self.decode_header(
            |b| sized_needed(b, M::NAME, max),
            |b| M::decode_with(&mut Cursor::new(b), version, limits),
        )
    }

    /// Read one typed subscribe response (`Type`, `Length`, body).
    pub fn read_subscribe_response(
        &mut self,
        version: Version,
        limits: &Limits,
    ) -> Result<Option<SubscribeResponse>, DecodeError> {
        let max = limits.message_size();
        self.decode_header(
            |b| {
                let Some(&first) = b.first() else {
                    return Ok(None);
                };
                let ty_len = varint_len_from_first(first);
                match sized_needed(
                    b.get(ty_len..).unwrap_or_default(),
                    "subscribe response",
                    max,
                )? {
                    Some(n) if b.len() >= ty_len => Ok(Some(ty_len + n)),
                    _ => Ok(None),
                }
            },
            |b| SubscribeResponse::decode_with(&mut Cursor::new(b), version, limits),
        )
    }

    /// Read one frame header.
    pub fn read_frame_header(
        &mut self,
        version: Version,
        limits: &Limits,
    ) -> Result<Option<FrameHeader>, DecodeError> {
        self.decode_header(
            |b| Ok(FrameHeader::needed_len(b, version)),
            |b| FrameHeader::decode_with(&mut Cursor::new(b), version, limits),
        )
    }

    /// Take up to `max` payload bytes as a zero-copy slice of the front chunk.
    pub fn read_payload(&mut self, max: usize) -> Option<Bytes> {
        debug_assert!(
            self.scratch.is_empty(),
            "payload read with a partial header pending"
        );
        if max == 0 {
            return None;
        }
        let front = self.chunks.front_mut()?;
        let n = max.min(front.len());
        let out = front.split_to(n);
        self.buffered -= n;
        if front.is_empty() {
            self.chunks.pop_front();
        }
        Some(out)
    }
}

/// Length of a varint once its first byte is known.
fn varint_needed(prefix: &[u8]) -> Result<Option<usize>, DecodeError> {
    Ok(prefix.first().map(|&b| varint_len_from_first(b)))
}

/// Total length of a size-prefixed message once its length varint is complete; rejects a
/// declared length above `max` before any of the body is buffered.
fn sized_needed(
    prefix: &[u8],
    what: &'static str,
    max: usize,
) -> Result<Option<usize>, DecodeError> {
    let mut cursor = Cursor::new(prefix);
    match cursor.varint() {
        Ok(len) if len > max as u64 => Err(DecodeError::TooLarge {
            what,
            size: len,
            max: max as u64,
        }),
        Ok(len) => Ok(Some(prefix.len() - cursor.remaining() + len as usize)),
        Err(DecodeError::Short) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One step of a frame sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameItem {
    /// A frame begins: its absolute timestamp (lite-05; 0 before) and payload size. A size of 0
    /// means the frame is already complete.
    Header {
        /// Absolute timestamp in track timescale units (0 on lite-03/04).
        timestamp: u64,
        /// Payload size in bytes.
        size: u64,
    },
    /// A piece of the current frame's payload, a zero-copy slice of the received bytes.
    Payload {
        /// The bytes.
        chunk: Bytes,
        /// Payload bytes of this frame still to come after `chunk` (0 = frame complete).
        remaining: u64,
    },
    /// FIN on a frame boundary: the sequence is complete.
    End,
}

/// Decodes FRAMEs (the body of a group stream after its header, or a FETCH reply).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    version: Version,
    remaining: u64,
    timestamps: Timestamps,
    frames: u64,
    total: u64,
    ended: bool,
}

impl FrameDecoder {
    /// A decoder at a frame boundary with a timestamp baseline of 0.
    pub fn new(version: Version) -> Self {
        Self {
            version,
            remaining: 0,
            timestamps: Timestamps::new(),
            frames: 0,
            total: 0,
            ended: false,
        }
    }

    /// Frames begun so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next item, `Ok(None)` if more input is needed.
    ///
    /// Enforces the frame size, group size and frame count caps of `limits`; a FIN inside a
    /// frame is [`DecodeError::Truncated`].
    pub fn read(
        &mut self,
        reader: &mut StreamReader,
        limits: &Limits,
    ) -> Result<Option<FrameItem>, DecodeError> {
        if self.ended {
            return Ok(None);
        }
        if self.remaining > 0 {
            let max = usize::try_from(self.remaining).unwrap_or(usize::MAX);
            if let Some(chunk) = reader.read_payload(max) {
                self.remaining -= chunk.len() as u64;
                return Ok(Some(FrameItem::Payload {
                    chunk,
                    remaining: self.remaining,
                }));
            }
            if reader.fin_received() {
                return Err(DecodeError::Truncated { what: "frame" });
            }
            return Ok(None);
        }
        if reader.is_finished() {
            self.ended = true;
            return Ok(Some(FrameItem::End));
        }
        let Some(header) = reader.read_frame_header(self.version, limits)? else {
            if reader.is_truncated() {
                return Err(DecodeError::Truncated {
                    what: "frame header",
                });
            }
            return Ok(None);
        };
        self.frames += 1;
        if self.frames > limits.group_frames() {
            return Err(DecodeError::TooLarge {
                what: "group frames",
                size: self.frames,
                max: limits.group_frames(),
            });
        }
        self.total = self.total.saturating_add(header.size);
        if self.total > limits.group_size() {
            return Err(DecodeError::TooLarge {
                what: "group",
                size: self.total,
                max: limits.group_size(),
            });
        }
        let timestamp = if self.version.is_lite05() {
            self.timestamps.apply(header.timestamp_delta)?
        } else {
            0
        };
        self.remaining = header.size;
        Ok(Some(FrameItem::Header {
            timestamp,
            size: header.size,
        }))
    }
}

/// One step of a whole group stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupItem {
    /// The GROUP header.
    Header(GroupHeader),
    /// A frame event.
    Frame(FrameItem),
}

/// Decodes a whole group stream from its first byte: type `0x0`, GROUP, FRAMEs, FIN.
#[derive(Debug)]
pub struct GroupStreamReader {
    version: Version,
    limits: Limits,
    reader: StreamReader,
    state: GroupState,
}

#[derive(Debug)]
enum GroupState {
    Type,
    Header,
    Frames(FrameDecoder),
}

impl GroupStreamReader {
    /// A reader for a uni stream expected to be a group stream.
    pub fn new(version: Version, limits: Limits) -> Self {
        Self {
            version,
            limits,
            reader: StreamReader::new(),
            state: GroupState::Type,
        }
    }

    /// Feed received bytes; `fin` marks the end of the stream.
    pub fn push(&mut self, chunk: Bytes, fin: bool) {
        self.reader.push(chunk);
        if fin {
            self.reader.finish();
        }
    }

    /// The next item, `Ok(None)` if more input is needed.
    pub fn read(&mut self) -> Result<Option<GroupItem>, DecodeError> {
        loop {
            match &mut self.state {
                GroupState::Type => match self.reader.read_uni_type(self.version)? {
                    Some(UniStreamType::Group) => self.state = GroupState::Header,
                    Some(UniStreamType::Setup) => return Err(DecodeError::UnknownStreamType(1)),
                    None => return self.short("stream type"),
                },
                GroupState::Header => {
                    return match self
                        .reader
                        .read_message::<GroupHeader>(self.version, &self.limits)?
                    {
                        Some(header) => {
                            self.state = GroupState::Frames(FrameDecoder::new(self.version));
                            Ok(Some(GroupItem::Header(header)))
                        }
                        None => self.short("GROUP"),
                    };
                }
                GroupState::Frames(frames) => {
                    return Ok(frames
                        .read(&mut self.reader, &self.limits)?
                        .map(GroupItem::Frame));
                }
            }
        }
    }

    fn short(&self, what: &'static str) -> Result<Option<GroupItem>, DecodeError> {
        if self.reader.fin_received() {
            Err(DecodeError::Truncated { what })
        } else {
            Ok(None)
        }
    }
}
