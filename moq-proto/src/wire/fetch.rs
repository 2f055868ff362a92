//! FETCH (draft-lcurley-moq-lite-03 §5.1.3, §7.9; draft-lcurley-moq-lite-05 §5.1.3, §7.14;
//! docs/wire.md §3.3, §4.7): one group by sequence, answered with bare FRAMEs then FIN.
//!
//! The layout is the same on 03, 04 and 05; the reference serves it only on 05. There is no
//! FETCH_OK: errors are a stream reset.

use super::subscribe::put_track_name;
use super::{Message, Path, Version};
use crate::coding::{
    Cursor, DecodeError, EncodeError, MAX_TRACK_NAME_LEN, Sink, put_byte, put_varint,
};

/// FETCH: request one group of one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// Broadcast path relative to the session root.
    pub broadcast: Path,
    /// Track name.
    pub track: String,
    /// Subscriber priority.
    pub priority: u8,
    /// The group wanted (plain absolute sequence).
    pub group: u64,
}

impl Message for Fetch {
    const NAME: &'static str = "FETCH";

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        self.broadcast.encode_path(sink)?;
        put_track_name(sink, &self.track)?;
        put_byte(sink, self.priority);
        put_varint(sink, self.group)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            broadcast: Path::decode(cursor, "broadcast path")?,
            track: cursor.string("track name", MAX_TRACK_NAME_LEN)?.to_string(),
            priority: cursor.byte()?,
            group: cursor.varint()?,
        })
    }
}
