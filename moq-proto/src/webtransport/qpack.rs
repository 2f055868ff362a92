//! QPACK field sections (RFC 9204 §4.5) with the static table only.
//!
//! We advertise a dynamic table capacity of 0, so a conforming peer never references the
//! dynamic table (RFC 9204 §3.2.3); any reference to it, or a non-zero Required Insert Count,
//! is `QPACK_DECOMPRESSION_FAILED`. Decoding handles every representation that needs no dynamic
//! table: indexed static lines, literals with a static name reference, and literals with a
//! literal name, with Huffman-coded strings (browsers Huffman-code whenever it is shorter).
//! Encoding uses static references where they match and plain literals otherwise, never
//! Huffman.
//!
//! Every field line is charged `name + value + 32` bytes (RFC 9114 §4.2.2) against the caller's
//! cap, and no string is decoded past it.

use super::huffman::{self, HuffmanError};
use super::qpack_static;

/// A field section could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QpackError {
    /// The block ended inside a representation.
    #[error("field section truncated")]
    Truncated,
    /// A reference to the dynamic table (we allow none).
    #[error("reference to the QPACK dynamic table")]
    DynamicReference,
    /// A static index past the table.
    #[error("static table index {0} does not exist")]
    BadIndex(u64),
    /// An integer longer than 62 bits.
    #[error("integer overflow")]
    Overflow,
    /// A Huffman string that does not decode.
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
    /// The section is larger than the cap.
    #[error("field section larger than {0} bytes")]
    TooLarge(usize),
}

/// Decode a field section into (name, value) pairs in order. Names and values are taken as
/// UTF-8, invalid sequences replaced.
pub fn decode(block: &[u8], max_section: usize) -> Result<Vec<(String, String)>, QpackError> {
    let mut buf = block;
    let required_insert_count = prefix_int(&mut buf, 8)?;
    if required_insert_count != 0 {
        return Err(QpackError::DynamicReference);
    }
    // Sign bit and Delta Base: meaningless without a dynamic table.
    let _ = prefix_int(&mut buf, 7)?;
    let mut fields = Vec::new();
    let mut size = 0usize;
    // Charge a line against the cap (RFC 9114 §4.2.2: name + value + 32).
    let charge = |size: &mut usize, name: &str, value: &str| -> Result<(), QpackError> {
        *size = size
            .saturating_add(name.len())
            .saturating_add(value.len())
            .saturating_add(32);
        if *size > max_section {
            return Err(QpackError::TooLarge(max_section));
        }
        Ok(())
    };
    while let Some(&first) = buf.first() {
        if first & 0x80 != 0 {
            // Indexed field line: 1 T index(6+).
            if first & 0x40 == 0 {
                return Err(QpackError::DynamicReference);
            }
            let index = prefix_int(&mut buf, 6)?;
            let (name, value) = qpack_static::get(index).ok_or(QpackError::BadIndex(index))?;
            charge(&mut size, name, value)?;
            fields.push((name.to_string(), value.to_string()));
        } else if first & 0x40 != 0 {
            // Literal with name reference: 01 N T index(4+), then the value.
            if first & 0x10 == 0 {
                return Err(QpackError::DynamicReference);
            }
            let index = prefix_int(&mut buf, 4)?;
            let (name, _) = qpack_static::get(index).ok_or(QpackError::BadIndex(index))?;
            let value = string(&mut buf, 7, max_section.saturating_sub(size))?;
            charge(&mut size, name, &value)?;
            fields.push((name.to_string(), value));
        } else if first & 0x20 != 0 {
            // Literal with literal name: 001 N H len(3+) name, then the value.
            let name = string(&mut buf, 3, max_section.saturating_sub(size))?;
            let value = string(&mut buf, 7, max_section.saturating_sub(size + name.len()))?;
            charge(&mut size, &name, &value)?;
            fields.push((name, value));
        } else {
            // 0001xxxx indexed post-base, 0000xxxx literal with post-base name: dynamic only.
            return Err(QpackError::DynamicReference);
        }
    }
    Ok(fields)
}

/// Encode `fields` as a field section: static references where the table has the line or the
/// name, literals otherwise.
pub fn encode(fields: &[(&str, &str)], out: &mut Vec<u8>) {
    // Required Insert Count 0, Delta Base 0.
    out.extend_from_slice(&[0x00, 0x00]);
    for (name, value) in fields {
        match qpack_static::find(name, value) {
            Some((index, true)) => put_prefix_int(out, 0xc0, 6, index),
            Some((index, false)) => {
                put_prefix_int(out, 0x50, 4, index);
                put_string(out, 7, value.as_bytes());
            }
            None => {
                // Literal with literal name: 001 N=0 H=0, then the name length.
                put_string(out, 3, name.as_bytes());
                put_string(out, 7, value.as_bytes());
            }
        }
    }
}

/// A prefix integer (RFC 7541 §5.1) in the low `bits` bits of the first byte.
fn prefix_int(buf: &mut &[u8], bits: u8) -> Result<u64, QpackError> {
    let (&first, rest) = buf.split_first().ok_or(QpackError::Truncated)?;
    let mask = u8::MAX >> (8 - bits);
    let mut value = u64::from(first & mask);
    let mut rest = rest;
    if value == u64::from(mask) {
        let mut shift = 0u32;
        loop {
            let (&byte, tail) = rest.split_first().ok_or(QpackError::Truncated)?;
            rest = tail;
            if shift > 56 {
                return Err(QpackError::Overflow);
            }
            value = value
                .checked_add(u64::from(byte & 0x7f) << shift)
                .ok_or(QpackError::Overflow)?;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if value > crate::coding::MAX_VARINT {
            return Err(QpackError::Overflow);
        }
    }
    *buf = rest;
    Ok(value)
}

/// A string literal whose H bit sits just above a `bits`-bit length prefix; at most `max`
/// bytes once decoded.
fn string(buf: &mut &[u8], bits: u8, max: usize) -> Result<String, QpackError> {
    let first = *buf.first().ok_or(QpackError::Truncated)?;
    let huffman_coded = first & (1 << bits) != 0;
    let len = prefix_int(buf, bits)?;
    let len = usize::try_from(len).map_err(|_| QpackError::Overflow)?;
    if buf.len() < len {
        return Err(QpackError::Truncated);
    }
    let (raw, rest) = buf.split_at(len);
    *buf = rest;
    if huffman_coded {
        let mut out = Vec::new();
        huffman::decode(raw, &mut out, max).map_err(|e| match e {
            HuffmanError::TooLong => QpackError::TooLarge(max),
            other => QpackError::Huffman(other),
        })?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    } else {
        if raw.len() > max {
            return Err(QpackError::TooLarge(max));
        }
        Ok(String::from_utf8_lossy(raw).into_owned())
    }
}

/// Append a prefix integer: `pattern` holds the bits above the prefix.
fn put_prefix_int(out: &mut Vec<u8>, pattern: u8, bits: u8, value: u64) {
    let mask = u8::MAX >> (8 - bits);
    if value < u64::from(mask) {
        out.push(pattern | value as u8);
        return;
    }
    out.push(pattern | mask);
    let mut rest = value - u64::from(mask);
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Append a string literal without Huffman coding, its length in a `bits`-bit prefix. For the
/// 3-bit (literal name) form the representation's leading `001` is included.
fn put_string(out: &mut Vec<u8>, bits: u8, bytes: &[u8]) {
    let pattern = if bits == 3 { 0x20 } else { 0x00 };
    put_prefix_int(out, pattern, bits, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_integers_follow_rfc7541_c1() {
        // C.1.1: 10 in a 5-bit prefix; C.1.2: 1337 in a 5-bit prefix; C.1.3: 42 in 8 bits.
        let mut out = Vec::new();
        put_prefix_int(&mut out, 0, 5, 10);
        assert_eq!(out, [0x0a]);
        out.clear();
        put_prefix_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        assert_eq!(prefix_int(&mut &out[..], 5), Ok(1337));
        out.clear();
        put_prefix_int(&mut out, 0, 8, 42);
        assert_eq!(out, [0x2a]);
        // Overlong continuation is an overflow, never a panic.
        let long = [
            0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(prefix_int(&mut &long[..], 5), Err(QpackError::Overflow));
        assert_eq!(
            prefix_int(&mut &[0x1f, 0x80][..], 5),
            Err(QpackError::Truncated)
        );
    }

    #[test]
    fn rfc9204_appendix_b1_literal_with_name_reference() {
        // RFC 9204 B.1: ":path /index.html" as a literal with static name reference 1.
        let block = [
            0x00, 0x00, 0x51, 0x0b, 0x2f, 0x69, 0x6e, 0x64, 0x65, 0x78, 0x2e, 0x68, 0x74, 0x6d,
            0x6c,
        ];
        assert_eq!(
            decode(&block, 4096).expect("decodes"),
            vec![(":path".into(), "/index.html".into())]
        );
    }

    #[test]
    fn round_trip_of_a_webtransport_request() {
        let fields = [
            (":method", "CONNECT"),
            (":scheme", "https"),
            (":authority", "localhost:4443"),
            (":path", "/anon?jwt=abc"),
            (":protocol", "webtransport"),
            ("origin", "https://example.com"),
            ("wt-available-protocols", "\"moq-lite-05\", \"moq-lite-04\""),
        ];
        let mut block = Vec::new();
        encode(&fields, &mut block);
        // :method CONNECT and :scheme https are single static references.
        assert_eq!(&block[..4], &[0x00, 0x00, 0xcf, 0xd7]);
        let back = decode(&block, 16 * 1024).expect("decodes");
        let expected: Vec<(String, String)> = fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(back, expected);
        // Every truncation fails cleanly (or decodes a prefix of the lines).
        for end in 0..block.len() {
            let _ = decode(&block[..end], 16 * 1024);
        }
        // The cap applies: name + value + 32 per line.
        assert_eq!(decode(&block, 64), Err(QpackError::TooLarge(64)));
    }

    #[test]
    fn huffman_coded_values_decode() {
        // A literal with static name reference 0 (:authority) and the RFC 7541 C.4.1
        // Huffman string for "www.example.com".
        let block = [
            0x00, 0x00, 0x50, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90,
            0xf4, 0xff,
        ];
        assert_eq!(
            decode(&block, 4096).expect("decodes"),
            vec![(":authority".into(), "www.example.com".into())]
        );
    }

    #[test]
    fn dynamic_references_are_refused() {
        // Required Insert Count 1.
        assert_eq!(
            decode(&[0x01, 0x00], 4096),
            Err(QpackError::DynamicReference)
        );
        // Indexed dynamic line, post-base index, post-base name, dynamic name reference.
        for line in [0x80u8, 0x10, 0x00, 0x40] {
            assert_eq!(
                decode(&[0x00, 0x00, line, 0x00], 4096),
                Err(QpackError::DynamicReference),
                "{line:#x}"
            );
        }
        // A static index past the table.
        assert_eq!(
            decode(&[0x00, 0x00, 0xff, 0x24], 4096),
            Err(QpackError::BadIndex(99))
        );
    }
}
