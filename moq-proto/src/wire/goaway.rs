//! GOAWAY (lite-04+; draft-lcurley-moq-lite-05 §5.1.6, §7.16; docs/wire.md §3.6, §4.11): one field, the new session URI (at most 8192
//! bytes, may be empty; from the reference relay empty means "reconnect to the same URL").

use super::{Message, Version};
use crate::coding::{Cursor, DecodeError, EncodeError, MAX_GOAWAY_URI, Sink, put_string};

/// GOAWAY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goaway {
    /// Where to reconnect; empty for "the same endpoint" / "no redirect".
    pub uri: String,
}

impl Message for Goaway {
    const NAME: &'static str = "GOAWAY";

    fn supported(version: Version) -> bool {
        version.has_goaway()
    }

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        if self.uri.len() > MAX_GOAWAY_URI {
            return Err(EncodeError::TooLarge {
                what: "GOAWAY URI",
                size: self.uri.len() as u64,
                max: MAX_GOAWAY_URI as u64,
            });
        }
        put_string(sink, &self.uri)
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            uri: cursor.string("GOAWAY URI", MAX_GOAWAY_URI)?.to_string(),
        })
    }
}
