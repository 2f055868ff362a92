//! QUIC variable-length integers (RFC 9000 §16).
//!
//! The two high bits of the first byte give the length (1, 2, 4 or 8 bytes); the rest is the
//! value, big-endian. We always encode the shortest form and accept any form on decode (both
//! peers do: `40 05` is 5). Values above 2^62 - 1 cannot be encoded.

use super::{DecodeError, EncodeError, Sink};

/// The largest value a varint can carry: 2^62 - 1.
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// Bytes the minimal encoding of `value` takes (8 for anything above 2^30 - 1).
#[inline]
pub fn varint_len(value: u64) -> usize {
    if value < (1 << 6) {
        1
    } else if value < (1 << 14) {
        2
    } else if value < (1 << 30) {
        4
    } else {
        8
    }
}

/// Bytes a varint occupies, read from its first byte.
#[inline]
pub fn varint_len_from_first(first: u8) -> usize {
    1 << (first >> 6)
}

/// Append the minimal encoding of `value`.
#[inline]
pub fn put_varint<S: Sink + ?Sized>(sink: &mut S, value: u64) -> Result<(), EncodeError> {
    if value > MAX_VARINT {
        return Err(EncodeError::VarIntOverflow(value));
    }
    match varint_len(value) {
        1 => sink.put_slice(&[value as u8]),
        2 => sink.put_slice(&((value as u16) | 0x4000).to_be_bytes()),
        4 => sink.put_slice(&((value as u32) | 0x8000_0000).to_be_bytes()),
        _ => sink.put_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes()),
    }
    Ok(())
}

/// Decode one varint from the front of `buf`, advancing it.
///
/// Returns [`DecodeError::Short`] (and leaves `buf` untouched) if the varint is incomplete.
#[inline]
pub fn get_varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let first = *buf.first().ok_or(DecodeError::Short)?;
    let len = varint_len_from_first(first);
    if buf.len() < len {
        return Err(DecodeError::Short);
    }
    let mut value = u64::from(first & 0x3f);
    for byte in &buf[1..len] {
        value = (value << 8) | u64::from(*byte);
    }
    *buf = &buf[len..];
    Ok(value)
}

/// Zigzag-encode a signed value (lite-05 timestamp deltas): 0→0, −1→1, 1→2, −2→3.
#[inline]
pub fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag_encode`].
#[inline]
pub fn zigzag_decode(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v).expect("encodable");
        out
    }

    #[test]
    fn rfc9000_examples() {
        // RFC 9000 appendix A.1.
        let mut b: &[u8] = &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c];
        assert_eq!(get_varint(&mut b), Ok(151_288_809_941_952_652));
        let mut b: &[u8] = &[0x9d, 0x7f, 0x3e, 0x7d];
        assert_eq!(get_varint(&mut b), Ok(494_878_333));
        let mut b: &[u8] = &[0x7b, 0xbd];
        assert_eq!(get_varint(&mut b), Ok(15_293));
        let mut b: &[u8] = &[0x25];
        assert_eq!(get_varint(&mut b), Ok(37));
        assert_eq!(
            enc(151_288_809_941_952_652),
            [0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]
        );
        assert_eq!(enc(494_878_333), [0x9d, 0x7f, 0x3e, 0x7d]);
        assert_eq!(enc(15_293), [0x7b, 0xbd]);
        assert_eq!(enc(37), [0x25]);
    }

    #[test]
    fn minimal_encoding_at_boundaries() {
        for (v, len) in [
            (0, 1),
            (63, 1),
            (64, 2),
            (16_383, 2),
            (16_384, 4),
            ((1 << 30) - 1, 4),
            (1 << 30, 8),
            (MAX_VARINT, 8),
        ] {
            let bytes = enc(v);
            assert_eq!(bytes.len(), len, "value {v}");
            let mut slice = bytes.as_slice();
            assert_eq!(get_varint(&mut slice), Ok(v));
            assert!(slice.is_empty());
        }
    }

    #[test]
    fn non_minimal_accepted() {
        let mut b: &[u8] = &[0x40, 0x05];
        assert_eq!(get_varint(&mut b), Ok(5));
        let mut b: &[u8] = &[0xc0, 0, 0, 0, 0, 0, 0, 0x05];
        assert_eq!(get_varint(&mut b), Ok(5));
    }

    #[test]
    fn overflow_rejected() {
        assert_eq!(
            put_varint(&mut Vec::new(), MAX_VARINT + 1),
            Err(EncodeError::VarIntOverflow(MAX_VARINT + 1))
        );
        assert!(put_varint(&mut Vec::new(), u64::MAX).is_err());
    }

    #[test]
    fn short_leaves_input_untouched() {
        let bytes = [0x80, 0x01, 0x02];
        let mut b: &[u8] = &bytes;
        assert_eq!(get_varint(&mut b), Err(DecodeError::Short));
        assert_eq!(b.len(), 3);
        let mut empty: &[u8] = &[];
        assert_eq!(get_varint(&mut empty), Err(DecodeError::Short));
    }

    #[test]
    fn zigzag_examples() {
        for (s, u) in [
            (0i64, 0u64),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (1000, 2000),
            (-10, 19),
            (33, 66),
        ] {
            assert_eq!(zigzag_encode(s), u);
            assert_eq!(zigzag_decode(u), s);
        }
        assert_eq!(zigzag_decode(zigzag_encode(i64::MIN)), i64::MIN);
        assert_eq!(zigzag_decode(zigzag_encode(i64::MAX)), i64::MAX);
    }
}
