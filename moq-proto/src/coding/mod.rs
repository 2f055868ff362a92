//! Primitive encodings shared by every MOQ Lite message (draft-lcurley-moq-lite §"Encoding").
//!
//! Rules implemented here:
//! - **Varints** `(i)`: QUIC variable-length integers, RFC 9000 §16. Encoded minimally; any
//!   length accepted on decode; values above 2^62 - 1 are not encodable ([`put_varint`]).
//! - **Single bytes** `(8)`: priorities (u8, higher is more important) and the Ordered flag,
//!   written as 0/1 and read as "non-zero is true" ([`Cursor::byte`], [`Cursor::flag`]).
//! - **Strings** `(s)`: varint byte length, then UTF-8; every string has a cap
//!   ([`Cursor::string`]).
//! - **Optional groups**: 0 means none and `n + 1` means group `n` ([`put_optional`]).
//! - **Durations**: varint milliseconds, sub-millisecond parts truncated ([`put_duration`]).
//! - **Zigzag** for lite-05 timestamp deltas ([`zigzag_encode`]).
//! - **Size-prefixed messages**: `Message Length (i)` then a body that must be consumed exactly:
//!   a body that ends mid-field is [`DecodeError::Truncated`], leftover bytes are
//!   [`DecodeError::TrailingBytes`] ([`Cursor::sized`], [`Cursor::finish`]).
//!
//! [`DecodeError::Short`] is the only error that means "wait for more bytes".

mod cursor;
mod error;
mod limits;
mod sink;
mod varint;

pub use cursor::Cursor;
pub use error::{DecodeError, EncodeError};
pub use limits::*;
pub use sink::{
    LenCounter, Sink, put_byte, put_bytes, put_duration, put_flag, put_optional, put_string,
};
pub use varint::{
    MAX_VARINT, get_varint, put_varint, varint_len, varint_len_from_first, zigzag_decode,
    zigzag_encode,
};
