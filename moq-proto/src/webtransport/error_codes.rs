//! The WebTransport mapping of application error codes into the HTTP/3 code space
//! (draft-ietf-webtrans-http3-07 §4.3 and later; draft-02 defined it for 8-bit codes only).
//!
//! A 32-bit application code `n` travels in RESET_STREAM, STOP_SENDING (and the QUIC close of a
//! WebTransport connection) as `0x52e4a40fa8db + n + n / 0x1e`, which skips the HTTP/3
//! reserved "GREASE" codepoints `0x1f * k + 0x21`.

use crate::codes::StreamCode;

/// HTTP/3 and QPACK error codes (RFC 9114 §8.1, RFC 9204 §6), and WebTransport's own (the
/// WebTransport-over-HTTP/3 drafts). These travel raw, never through the application mapping.
pub mod h3 {
    /// No error.
    pub const NO_ERROR: u64 = 0x100;
    /// A protocol error with no more specific code.
    pub const GENERAL_PROTOCOL_ERROR: u64 = 0x101;
    /// An internal error.
    pub const INTERNAL_ERROR: u64 = 0x102;
    /// A stream type or stream the peer may not open.
    pub const STREAM_CREATION_ERROR: u64 = 0x103;
    /// A control or QPACK stream was closed.
    pub const CLOSED_CRITICAL_STREAM: u64 = 0x104;
    /// A frame that is not allowed where it arrived.
    pub const FRAME_UNEXPECTED: u64 = 0x105;
    /// A malformed frame.
    pub const FRAME_ERROR: u64 = 0x106;
    /// The peer is generating excessive load.
    pub const EXCESSIVE_LOAD: u64 = 0x107;
    /// A stream or push ID used wrongly.
    pub const ID_ERROR: u64 = 0x108;
    /// A malformed SETTINGS frame.
    pub const SETTINGS_ERROR: u64 = 0x109;
    /// The control stream did not begin with SETTINGS.
    pub const MISSING_SETTINGS: u64 = 0x10a;
    /// A request refused without any processing.
    pub const REQUEST_REJECTED: u64 = 0x10b;
    /// A request cancelled.
    pub const REQUEST_CANCELLED: u64 = 0x10c;
    /// A request stream ended before the request was complete.
    pub const REQUEST_INCOMPLETE: u64 = 0x10d;
    /// A malformed HTTP message.
    pub const MESSAGE_ERROR: u64 = 0x10e;
    /// The CONNECT request failed.
    pub const CONNECT_ERROR: u64 = 0x10f;
    /// A QPACK field section could not be decoded (e.g. a dynamic-table reference).
    pub const QPACK_DECOMPRESSION_FAILED: u64 = 0x200;
    /// An HTTP datagram with an invalid quarter stream ID (RFC 9297 §2.1).
    pub const DATAGRAM_ERROR: u64 = 0x33;
    /// A WebTransport stream arrived before its session and could not be buffered.
    pub const WT_BUFFERED_STREAM_REJECTED: u64 = 0x3994_bd84;
    /// A WebTransport stream for a session that does not exist (any more).
    pub const WT_SESSION_GONE: u64 = 0x170d_7b68;
}

/// The first HTTP/3 code of the WebTransport range (application code 0).
pub const FIRST: u64 = 0x52e4_a40f_a8db;
/// The last HTTP/3 code of the WebTransport range (application code `u32::MAX`).
pub const LAST: u64 = 0x52e5_ac98_3162;

/// The HTTP/3 code carrying application code `n`.
pub const fn to_http3(n: u32) -> u64 {
    FIRST + n as u64 + (n / 0x1e) as u64
}

/// The application code an HTTP/3 code carries, if it is in the WebTransport range and not a
/// reserved codepoint.
pub const fn from_http3(code: u64) -> Option<u32> {
    if code < FIRST || code > LAST {
        return None;
    }
    let h = code - FIRST;
    if h % 0x1f == 0x1e {
        return None;
    }
    let n = h - h / 0x1f;
    if n > u32::MAX as u64 {
        return None;
    }
    Some(n as u32)
}

/// A stream code as it goes out in RESET_STREAM or STOP_SENDING: mapped when it fits 32 bits
/// (the reference stack maps even on raw QUIC, docs/wire.md §6), raw otherwise.
pub fn stream_code_to_wire(code: StreamCode) -> u64 {
    match u32::try_from(code.0) {
        Ok(n) => to_http3(n),
        Err(_) => code.0,
    }
}

/// A stream code as it arrived: mapped back when it is in the WebTransport range, taken as is
/// otherwise (a raw-QUIC peer such as gomoqt sends raw codes).
pub fn stream_code_from_wire(code: u64) -> StreamCode {
    match from_http3(code) {
        Some(n) => StreamCode(u64::from(n)),
        None => StreamCode(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_round_trips_and_matches_the_draft_examples() {
        for n in [0u32, 1, 0x1d, 0x1e, 0x1f, 0x34, 64, 1000, u32::MAX] {
            assert_eq!(from_http3(to_http3(n)), Some(n));
        }
        assert_eq!(to_http3(0), 0x52e4_a40f_a8db);
        assert_eq!(to_http3(1), 0x52e4_a40f_a8dc);
        assert_eq!(to_http3(0x34), 0x52e4_a40f_a910);
        assert_eq!(to_http3(64), 0x52e4_a40f_a91d);
        assert_eq!(to_http3(u32::MAX), LAST);
        // Reserved codepoints inside the range carry nothing.
        assert_eq!(from_http3(FIRST + 0x1e), None);
        assert_eq!(from_http3(FIRST - 1), None);
        assert_eq!(from_http3(LAST + 1), None);
        // Raw codes (gomoqt) are taken as they are.
        assert_eq!(stream_code_from_wire(0x34), StreamCode(0x34));
        assert_eq!(stream_code_from_wire(to_http3(0x34)), StreamCode::OLD);
        assert_eq!(stream_code_to_wire(StreamCode(1 << 40)), 1 << 40);
    }
}
