//! The Huffman code of HPACK, reused by QPACK for string literals.
//!
//! RFC 9204 §4.1.2 (QPACK string literals) uses the static Huffman code of RFC 7541 §5.2,
//! whose table is RFC 7541 Appendix B. This module is sans-IO and allocation-bounded:
//! [`decode`] never appends more than its `max_len` bytes, and it rejects every malformed
//! input RFC 7541 §5.2 names (an EOS symbol in the string, padding longer than 7 bits, and
//! padding that is not the most significant bits of the EOS code) with a [`HuffmanError`]
//! instead of panicking.
//!
//! The code is canonical (RFC 7541 Appendix B, citing `[CANONICAL]`): for each length the
//! codes are consecutive integers assigned in symbol order, and each length's first code is
//! `(first + count) << 1` of the previous length. [`decode`] therefore needs no tree: it
//! finds the length of the next code by comparing a 32-bit window of the input against one
//! left-aligned limit per length, then indexes a symbol list sorted by `(length, symbol)`.
//! The per-length tables are computed at compile time from `CODES`, and a compile-time
//! check rejects a table that is not exactly that canonical, complete code.

/// The length in bits of the shortest code in the table.
const MIN_LEN: usize = 5;

/// The length in bits of the longest code in the table (which includes EOS).
const MAX_LEN: usize = 30;

/// The EOS symbol's number: one past the last byte value.
const EOS: u16 = 256;

/// The longest padding RFC 7541 §5.2 allows after the last code.
const MAX_PADDING: u32 = 7;

/// Why a Huffman-coded string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    /// The string contains the EOS symbol, which RFC 7541 §5.2 forbids inside a string.
    #[error("Huffman-coded string contains the EOS symbol")]
    Eos,
    /// The bits after the last complete code are all ones but number more than seven.
    #[error("Huffman padding is longer than 7 bits")]
    PaddingTooLong,
    /// The bits after the last complete code are not all ones (not a prefix of the EOS
    /// code); this is also how a string cut in the middle of a code shows up.
    #[error("Huffman padding is not a prefix of the EOS code")]
    InvalidPadding,
    /// The decoded string would be longer than the caller's limit.
    #[error("Huffman-decoded string is longer than the limit")]
    TooLong,
}

/// The Huffman code of RFC 7541 Appendix B, indexed by symbol (bytes `0..=255`, then EOS at
/// 256): `(code, length in bits)`, with the code aligned on the least significant bit.
///
/// Generated from the RFC's table (the "code as hex" and "len" columns, checked against the
/// "code as bits" column).
const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),     // 0
    (0x7fffd8, 23),   // 1
    (0xfffffe2, 28),  // 2
    (0xfffffe3, 28),  // 3
    (0xfffffe4, 28),  // 4
    (0xfffffe5, 28),  // 5
    (0xfffffe6, 28),  // 6
    (0xfffffe7, 28),  // 7
    (0xfffffe8, 28),  // 8
    (0xffffea, 24),   // 9
    (0x3ffffffc, 30), // 10
    (0xfffffe9, 28),  // 11
    (0xfffffea, 28),  // 12
    (0x3ffffffd, 30), // 13
    (0xfffffeb, 28),  // 14
    (0xfffffec, 28),  // 15
    (0xfffffed, 28),  // 16
    (0xfffffee, 28),  // 17
    (0xfffffef, 28),  // 18
    (0xffffff0, 28),  // 19
    (0xffffff1, 28),  // 20
    (0xffffff2, 28),  // 21
    (0x3ffffffe, 30), // 22
    (0xffffff3, 28),  // 23
    (0xffffff4, 28),  // 24
    (0xffffff5, 28),  // 25
    (0xffffff6, 28),  // 26
    (0xffffff7, 28),  // 27
    (0xffffff8, 28),  // 28
    (0xffffff9, 28),  // 29
    (0xffffffa, 28),  // 30
    (0xffffffb, 28),  // 31
    (0x14, 6),        // 32 ' '
    (0x3f8, 10),      // 33 '!'
    (0x3f9, 10),      // 34 '"'
    (0xffa, 12),      // 35 '#'
    (0x1ff9, 13),     // 36 '$'
    (0x15, 6),        // 37 '%'
    (0xf8, 8),        // 38 '&'
    (0x7fa, 11),      // 39 '''
    (0x3fa, 10),      // 40 '('
    (0x3fb, 10),      // 41 ')'
    (0xf9, 8),        // 42 '*'
    (0x7fb, 11),      // 43 '+'
    (0xfa, 8),        // 44 ','
    (0x16, 6),        // 45 '-'
    (0x17, 6),        // 46 '.'
    (0x18, 6),        // 47 '/'
    (0x0, 5),         // 48 '0'
    (0x1, 5),         // 49 '1'
    (0x2, 5),         // 50 '2'
    (0x19, 6),        // 51 '3'
    (0x1a, 6),        // 52 '4'
    (0x1b, 6),        // 53 '5'
    (0x1c, 6),        // 54 '6'
    (0x1d, 6),        // 55 '7'
    (0x1e, 6),        // 56 '8'
    (0x1f, 6),        // 57 '9'
    (0x5c, 7),        // 58 ':'
    (0xfb, 8),        // 59 ';'
    (0x7ffc, 15),     // 60 '<'
    (0x20, 6),        // 61 '='
    (0xffb, 12),      // 62 '>'
    (0x3fc, 10),      // 63 '?'
    (0x1ffa, 13),     // 64 '@'
    (0x21, 6),        // 65 'A'
    (0x5d, 7),        // 66 'B'
    (0x5e, 7),        // 67 'C'
    (0x5f, 7),        // 68 'D'
    (0x60, 7),        // 69 'E'
    (0x61, 7),        // 70 'F'
    (0x62, 7),        // 71 'G'
    (0x63, 7),        // 72 'H'
    (0x64, 7),        // 73 'I'
    (0x65, 7),        // 74 'J'
    (0x66, 7),        // 75 'K'
    (0x67, 7),        // 76 'L'
    (0x68, 7),        // 77 'M'
    (0x69, 7),        // 78 'N'
    (0x6a, 7),        // 79 'O'
    (0x6b, 7),        // 80 'P'
    (0x6c, 7),        // 81 'Q'
    (0x6d, 7),        // 82 'R'
    (0x6e, 7),        // 83 'S'
    (0x6f, 7),        // 84 'T'
    (0x70, 7),        // 85 'U'
    (0x71, 7),        // 86 'V'
    (0x72, 7),        // 87 'W'
    (0xfc, 8),        // 88 'X'
    (0x73, 7),        // 89 'Y'
    (0xfd, 8),        // 90 'Z'
    (0x1ffb, 13),     // 91 '['
    (0x7fff0, 19),    // 92 '\'
    (0x1ffc, 13),     // 93 ']'
    (0x3ffc, 14),     // 94 '^'
    (0x22, 6),        // 95 '_'
    (0x7ffd, 15),     // 96 '`'
    (0x3, 5),         // 97 'a'
    (0x23, 6),        // 98 'b'
    (0x4, 5),         // 99 'c'
    (0x24, 6),        // 100 'd'
    (0x5, 5),         // 101 'e'
    (0x25, 6),        // 102 'f'
    (0x26, 6),        // 103 'g'
    (0x27, 6),        // 104 'h'
    (0x6, 5),         // 105 'i'
    (0x74, 7),        // 106 'j'
    (0x75, 7),        // 107 'k'
    (0x28, 6),        // 108 'l'
    (0x29, 6),        // 109 'm'
    (0x2a, 6),        // 110 'n'
    (0x7, 5),         // 111 'o'
    (0x2b, 6),        // 112 'p'
    (0x76, 7),        // 113 'q'
    (0x2c, 6),        // 114 'r'
    (0x8, 5),         // 115 's'
    (0x9, 5),         // 116 't'
    (0x2d, 6),        // 117 'u'
    (0x77, 7),        // 118 'v'
    (0x78, 7),        // 119 'w'
    (0x79, 7),        // 120 'x'
    (0x7a, 7),        // 121 'y'
    (0x7b, 7),        // 122 'z'
    (0x7ffe, 15),     // 123 '{'
    (0x7fc, 11),      // 124 '|'
    (0x3ffd, 14),     // 125 '}'
    (0x1ffd, 13),     // 126 '~'
    (0xffffffc, 28),  // 127
    (0xfffe6, 20),    // 128
    (0x3fffd2, 22),   // 129
    (0xfffe7, 20),    // 130
    (0xfffe8, 20),    // 131
    (0x3fffd3, 22),   // 132
    (0x3fffd4, 22),   // 133
    (0x3fffd5, 22),   // 134
    (0x7fffd9, 23),   // 135
    (0x3fffd6, 22),   // 136
    (0x7fffda, 23),   // 137
    (0x7fffdb, 23),   // 138
    (0x7fffdc, 23),   // 139
    (0x7fffdd, 23),   // 140
    (0x7fffde, 23),   // 141
    (0xffffeb, 24),   // 142
    (0x7fffdf, 23),   // 143
    (0xffffec, 24),   // 144
    (0xffffed, 24),   // 145
    (0x3fffd7, 22),   // 146
    (0x7fffe0, 23),   // 147
    (0xffffee, 24),   // 148
    (0x7fffe1, 23),   // 149
    (0x7fffe2, 23),   // 150
    (0x7fffe3, 23),   // 151
    (0x7fffe4, 23),   // 152
    (0x1fffdc, 21),   // 153
    (0x3fffd8, 22),   // 154
    (0x7fffe5, 23),   // 155
    (0x3fffd9, 22),   // 156
    (0x7fffe6, 23),   // 157
    (0x7fffe7, 23),   // 158
    (0xffffef, 24),   // 159
    (0x3fffda, 22),   // 160
    (0x1fffdd, 21),   // 161
    (0xfffe9, 20),    // 162
    (0x3fffdb, 22),   // 163
    (0x3fffdc, 22),   // 164
    (0x7fffe8, 23),   // 165
    (0x7fffe9, 23),   // 166
    (0x1fffde, 21),   // 167
    (0x7fffea, 23),   // 168
    (0x3fffdd, 22),   // 169
    (0x3fffde, 22),   // 170
    (0xfffff0, 24),   // 171
    (0x1fffdf, 21),   // 172
    (0x3fffdf, 22),   // 173
    (0x7fffeb, 23),   // 174
    (0x7fffec, 23),   // 175
    (0x1fffe0, 21),   // 176
    (0x1fffe1, 21),   // 177
    (0x3fffe0, 22),   // 178
    (0x1fffe2, 21),   // 179
    (0x7fffed, 23),   // 180
    (0x3fffe1, 22),   // 181
    (0x7fffee, 23),   // 182
    (0x7fffef, 23),   // 183
    (0xfffea, 20),    // 184
    (0x3fffe2, 22),   // 185
    (0x3fffe3, 22),   // 186
    (0x3fffe4, 22),   // 187
    (0x7ffff0, 23),   // 188
    (0x3fffe5, 22),   // 189
    (0x3fffe6, 22),   // 190
    (0x7ffff1, 23),   // 191
    (0x3ffffe0, 26),  // 192
    (0x3ffffe1, 26),  // 193
    (0xfffeb, 20),    // 194
    (0x7fff1, 19),    // 195
    (0x3fffe7, 22),   // 196
    (0x7ffff2, 23),   // 197
    (0x3fffe8, 22),   // 198
    (0x1ffffec, 25),  // 199
    (0x3ffffe2, 26),  // 200
    (0x3ffffe3, 26),  // 201
    (0x3ffffe4, 26),  // 202
    (0x7ffffde, 27),  // 203
    (0x7ffffdf, 27),  // 204
    (0x3ffffe5, 26),  // 205
    (0xfffff1, 24),   // 206
    (0x1ffffed, 25),  // 207
    (0x7fff2, 19),    // 208
    (0x1fffe3, 21),   // 209
    (0x3ffffe6, 26),  // 210
    (0x7ffffe0, 27),  // 211
    (0x7ffffe1, 27),  // 212
    (0x3ffffe7, 26),  // 213
    (0x7ffffe2, 27),  // 214
    (0xfffff2, 24),   // 215
    (0x1fffe4, 21),   // 216
    (0x1fffe5, 21),   // 217
    (0x3ffffe8, 26),  // 218
    (0x3ffffe9, 26),  // 219
    (0xffffffd, 28),  // 220
    (0x7ffffe3, 27),  // 221
    (0x7ffffe4, 27),  // 222
    (0x7ffffe5, 27),  // 223
    (0xfffec, 20),    // 224
    (0xfffff3, 24),   // 225
    (0xfffed, 20),    // 226
    (0x1fffe6, 21),   // 227
    (0x3fffe9, 22),   // 228
    (0x1fffe7, 21),   // 229
    (0x1fffe8, 21),   // 230
    (0x7ffff3, 23),   // 231
    (0x3fffea, 22),   // 232
    (0x3fffeb, 22),   // 233
    (0x1ffffee, 25),  // 234
    (0x1ffffef, 25),  // 235
    (0xfffff4, 24),   // 236
    (0xfffff5, 24),   // 237
    (0x3ffffea, 26),  // 238
    (0x7ffff4, 23),   // 239
    (0x3ffffeb, 26),  // 240
    (0x7ffffe6, 27),  // 241
    (0x3ffffec, 26),  // 242
    (0x3ffffed, 26),  // 243
    (0x7ffffe7, 27),  // 244
    (0x7ffffe8, 27),  // 245
    (0x7ffffe9, 27),  // 246
    (0x7ffffea, 27),  // 247
    (0x7ffffeb, 27),  // 248
    (0xffffffe, 28),  // 249
    (0x7ffffec, 27),  // 250
    (0x7ffffed, 27),  // 251
    (0x7ffffee, 27),  // 252
    (0x7ffffef, 27),  // 253
    (0x7fffff0, 27),  // 254
    (0x3ffffee, 26),  // 255
    (0x3fffffff, 30), // EOS
];

/// The decoding tables derived from [`CODES`] (see the module documentation).
struct Canonical {
    /// For each length, the first (smallest) code of that length.
    first: [u32; MAX_LEN + 1],
    /// For each length, where its symbols start in `symbols`.
    offset: [u16; MAX_LEN + 1],
    /// For each length `L`, one past its last code, left-aligned in 32 bits: a 32-bit window
    /// below `limit[L]` (and not below `limit[L - 1]`) starts with a code of length `L`.
    limit: [u64; MAX_LEN + 1],
    /// Every symbol, sorted by code length and then by symbol.
    symbols: [u16; 257],
    /// Whether [`CODES`] is exactly the canonical code these tables describe, and complete.
    valid: bool,
}

/// Derives the decoding tables from [`CODES`] and checks the table against them.
const fn canonical() -> Canonical {
    let mut count = [0u32; MAX_LEN + 1];
    let mut valid = true;
    let mut sym = 0;
    while sym < CODES.len() {
        let len = CODES[sym].1 as usize;
        if len < MIN_LEN || len > MAX_LEN {
            valid = false;
        } else {
            count[len] += 1;
        }
        sym += 1;
    }

    let mut first = [0u32; MAX_LEN + 1];
    let mut offset = [0u16; MAX_LEN + 1];
    let mut limit = [0u64; MAX_LEN + 1];
    let mut symbols = [0u16; 257];
    let mut code: u64 = 0;
    let mut next: usize = 0;
    let mut len = 1;
    while len <= MAX_LEN {
        // `code` only overflows 32 bits for an over-full (non-prefix) table; reject that.
        if code + count[len] as u64 > 1 << len {
            valid = false;
            break;
        }
        first[len] = code as u32;
        offset[len] = next as u16;
        limit[len] = (code + count[len] as u64) << (32 - len);
        // The symbols of this length, in symbol order, must hold consecutive codes.
        let mut sym = 0;
        while sym < CODES.len() {
            if CODES[sym].1 as usize == len {
                let expected = first[len] as u64 + (next - offset[len] as usize) as u64;
                if CODES[sym].0 as u64 != expected {
                    valid = false;
                }
                symbols[next] = sym as u16;
                next += 1;
            }
            sym += 1;
        }
        code = (code + count[len] as u64) << 1;
        len += 1;
    }
    // A complete code uses every 30-bit pattern: the last limit is exactly 2^32.
    if limit[MAX_LEN] != 1 << 32 || next != CODES.len() {
        valid = false;
    }
    // EOS is the all-ones code of the maximum length (RFC 7541 §5.2 relies on it for padding).
    if CODES[EOS as usize].0 != (1 << MAX_LEN) - 1 || CODES[EOS as usize].1 as usize != MAX_LEN {
        valid = false;
    }
    Canonical {
        first,
        offset,
        limit,
        symbols,
        valid,
    }
}

/// The decoding tables, built at compile time.
static TABLES: Canonical = canonical();

// The table must be a complete canonical prefix code with lengths 5..=30, or nothing builds.
const _: () = assert!(
    canonical().valid,
    "the Huffman table is not the canonical RFC code"
);

/// Returns the length in bytes of `input` once Huffman-coded (the last byte padded).
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: usize = input
        .iter()
        .map(|&b| usize::from(CODES[usize::from(b)].1))
        .sum();
    bits.div_ceil(8)
}

/// Huffman-codes `input` and appends it to `out`, padding the last byte with the most
/// significant bits of the EOS code (ones), as RFC 7541 §5.2 requires.
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(input));
    // At most 7 pending bits plus one code of at most 30 bits: always below 64.
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    for &byte in input {
        let (code, len) = CODES[usize::from(byte)];
        acc = (acc << len) | u64::from(code);
        nbits += u32::from(len);
        while nbits >= 8 {
            nbits -= 8;
            out.push((acc >> nbits) as u8);
        }
        acc &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        let pad = 8 - nbits;
        out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
    }
}

/// Decodes the Huffman-coded `input` and appends the result to `out`.
///
/// At most `max_len` bytes are appended (the limit counts only this call's output, not what
/// `out` already holds), and `out` grows by at most that much: a longer result fails with
/// [`HuffmanError::TooLong`]. On any error `out` is left as it was on entry.
///
/// # Errors
///
/// [`HuffmanError::Eos`] if the input contains the EOS symbol,
/// [`HuffmanError::PaddingTooLong`] if more than 7 bits of padding follow the last code,
/// [`HuffmanError::InvalidPadding`] if the trailing bits are not all ones (which includes a
/// string cut inside a code), and [`HuffmanError::TooLong`] if the output exceeds `max_len`.
pub fn decode(input: &[u8], out: &mut Vec<u8>, max_len: usize) -> Result<(), HuffmanError> {
    let start = out.len();
    let result = decode_into(input, out, max_len);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The body of [`decode`], which may leave partial output behind on error.
fn decode_into(input: &[u8], out: &mut Vec<u8>, max_len: usize) -> Result<(), HuffmanError> {
    // Every code is at least 5 bits, which bounds the output by the input.
    let bound = input.len().saturating_mul(8) / MIN_LEN;
    out.reserve(bound.min(max_len));

    let mut produced = 0usize;
    // The unconsumed bits, right-aligned; `nbits` stays below 40.
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    let mut bytes = input.iter();
    loop {
        while nbits < 32 {
            let Some(&byte) = bytes.next() else {
                break;
            };
            acc = (acc << 8) | u64::from(byte);
            nbits += 8;
        }
        if nbits == 0 {
            return Ok(());
        }

        // The next 32 bits, left-aligned; past the end of the input, pad with ones so that a
        // trailing partial code reads as (a prefix of) EOS, the longest code.
        let window = if nbits >= 32 {
            (acc >> (nbits - 32)) as u32
        } else {
            let missing = 32 - nbits;
            ((acc << missing) | ((1 << missing) - 1)) as u32
        };

        let mut len = MIN_LEN;
        while len < MAX_LEN && u64::from(window) >= TABLES.limit[len] {
            len += 1;
        }
        let code_len = len as u32;

        if code_len > nbits {
            // The input is exhausted (otherwise 32 bits would be buffered) and what is left is
            // not a whole code: it must be padding, a short run of ones (RFC 7541 §5.2).
            if acc != (1 << nbits) - 1 {
                return Err(HuffmanError::InvalidPadding);
            }
            if nbits > MAX_PADDING {
                return Err(HuffmanError::PaddingTooLong);
            }
            return Ok(());
        }

        let rank = (window >> (32 - code_len)) - TABLES.first[len];
        let sym = TABLES.symbols[usize::from(TABLES.offset[len]) + rank as usize];
        if sym == EOS {
            return Err(HuffmanError::Eos);
        }
        if produced == max_len {
            return Err(HuffmanError::TooLong);
        }
        out.push(sym as u8);
        produced += 1;
        nbits -= code_len;
        acc &= (1 << nbits) - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a hex string as printed in the RFC (spaces ignored).
    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert_eq!(digits.len() % 2, 0, "odd hex string {s:?}");
        digits
            .chunks(2)
            .map(|pair| {
                let text = std::str::from_utf8(pair).unwrap();
                u8::from_str_radix(text, 16).unwrap()
            })
            .collect()
    }

    fn decode_all(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(input, &mut out, usize::MAX).map(|()| out)
    }

    fn encode_all(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(input, &mut out);
        out
    }

    /// A small deterministic xorshift64 generator, so the tests need no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// Every Huffman-coded literal of RFC 7541 Appendix C.4 (requests) and C.6 (responses).
    const RFC_EXAMPLES: &[(&str, &str)] = &[
        // C.4.1
        ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
        // C.4.2
        ("no-cache", "a8eb 1064 9cbf"),
        // C.4.3
        ("custom-key", "25a8 49e9 5ba9 7d7f"),
        ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
        // C.6.1
        ("302", "6402"),
        ("private", "aec3 771a 4b"),
        (
            "Mon, 21 Oct 2013 20:13:21 GMT",
            "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
        ),
        (
            "https://www.example.com",
            "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
        ),
        // C.6.2
        ("307", "640e ff"),
        // C.6.3
        (
            "Mon, 21 Oct 2013 20:13:22 GMT",
            "d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff",
        ),
        ("gzip", "9bd9 ab"),
        (
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ),
    ];

    #[test]
    fn table_lengths_are_in_range() {
        assert_eq!(CODES.len(), 257);
        for (sym, &(code, len)) in CODES.iter().enumerate() {
            assert!((5..=30).contains(&len), "symbol {sym} has length {len}");
            assert!(u64::from(code) < 1u64 << len, "symbol {sym} code too wide");
        }
        assert_eq!(CODES[256], (0x3fff_ffff, 30), "EOS is thirty ones");
    }

    #[test]
    fn table_is_a_complete_prefix_code() {
        // Kraft sum, in units of 2^-30: exactly one for a complete code.
        let kraft: u64 = CODES.iter().map(|&(_, len)| 1u64 << (30 - len)).sum();
        assert_eq!(kraft, 1 << 30);
        // No code is a prefix of another (left-align both to 30 bits and compare).
        for (a, &(code_a, len_a)) in CODES.iter().enumerate() {
            for (b, &(code_b, len_b)) in CODES.iter().enumerate() {
                if a == b || len_a > len_b {
                    continue;
                }
                assert_ne!(code_b >> (len_b - len_a), code_a, "{a} is a prefix of {b}");
            }
        }
    }

    #[test]
    fn table_is_canonical() {
        assert!(canonical().valid);
        // Within each length, codes are consecutive in symbol order.
        for len in 5..=30u8 {
            let codes: Vec<u32> = CODES.iter().filter(|c| c.1 == len).map(|c| c.0).collect();
            for pair in codes.windows(2) {
                assert_eq!(pair[1], pair[0] + 1, "length {len}");
            }
        }
        // The sorted symbol list is a permutation of 0..=256.
        let mut seen = [false; 257];
        for &sym in &TABLES.symbols {
            assert!(!seen[usize::from(sym)]);
            seen[usize::from(sym)] = true;
        }
    }

    #[test]
    fn table_spot_checks() {
        // RFC 7541 Appendix B's own example: '/' (47) is 011000, 6 bits.
        assert_eq!(CODES[47], (0x18, 6));
        assert_eq!(CODES[0], (0x1ff8, 13));
        assert_eq!(CODES[10], (0x3fff_fffc, 30));
        assert_eq!(CODES[13], (0x3fff_fffd, 30));
        assert_eq!(CODES[22], (0x3fff_fffe, 30));
        assert_eq!(CODES[b' ' as usize], (0x14, 6));
        assert_eq!(CODES[b'0' as usize], (0x0, 5));
        assert_eq!(CODES[b'a' as usize], (0x3, 5));
        assert_eq!(CODES[b'z' as usize], (0x7b, 7));
        assert_eq!(CODES[b'~' as usize], (0x1ffd, 13));
        assert_eq!(CODES[127], (0xfff_fffc, 28));
        assert_eq!(CODES[128], (0xfffe6, 20));
        assert_eq!(CODES[255], (0x3ff_ffee, 26));
    }

    #[test]
    fn rfc7541_appendix_c_examples_decode() {
        for &(text, coded) in RFC_EXAMPLES {
            assert_eq!(decode_all(&hex(coded)).unwrap(), text.as_bytes(), "{text}");
        }
    }

    #[test]
    fn rfc7541_appendix_c_examples_encode() {
        for &(text, coded) in RFC_EXAMPLES {
            let expected = hex(coded);
            assert_eq!(encode_all(text.as_bytes()), expected, "{text}");
            assert_eq!(encoded_len(text.as_bytes()), expected.len(), "{text}");
        }
    }

    #[test]
    fn empty_string() {
        assert_eq!(encoded_len(b""), 0);
        assert!(encode_all(b"").is_empty());
        assert_eq!(decode_all(b""), Ok(Vec::new()));
    }

    #[test]
    fn round_trip_every_byte() {
        for byte in 0..=255u8 {
            let coded = encode_all(&[byte]);
            assert_eq!(coded.len(), encoded_len(&[byte]));
            assert_eq!(decode_all(&coded).unwrap(), [byte], "byte {byte}");
        }
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(decode_all(&encode_all(&all)).unwrap(), all);
        let all_reversed: Vec<u8> = (0..=255u8).rev().collect();
        assert_eq!(
            decode_all(&encode_all(&all_reversed)).unwrap(),
            all_reversed
        );
    }

    #[test]
    fn round_trip_random_strings() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let len = rng.below(200);
            let input = if rng.below(2) == 0 {
                rng.bytes(len)
            } else {
                // Mostly header-like text, where the short codes live.
                let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-_./:;=, ";
                (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect()
            };
            let coded = encode_all(&input);
            assert_eq!(coded.len(), encoded_len(&input));
            assert_eq!(decode_all(&coded).unwrap(), input);
        }
    }

    #[test]
    fn appends_to_existing_output() {
        let mut out = b"prefix:".to_vec();
        decode(&hex("a8eb 1064 9cbf"), &mut out, 8).unwrap();
        assert_eq!(out, b"prefix:no-cache");

        let mut coded = b"xy".to_vec();
        encode(b"no-cache", &mut coded);
        assert_eq!(coded[2..], hex("a8eb 1064 9cbf"));
    }

    #[test]
    fn eos_is_rejected() {
        // EOS alone: thirty ones, then two bits of padding.
        assert_eq!(decode_all(&[0xff; 4]), Err(HuffmanError::Eos));
        // 'a' (00011), EOS, then five bits of padding: 40 bits.
        assert_eq!(
            decode_all(&[0x1f, 0xff, 0xff, 0xff, 0xff]),
            Err(HuffmanError::Eos)
        );
        // EOS in the middle, followed by a valid "no-cache".
        let mut input = vec![0xff; 4];
        input.extend(hex("a8eb 1064 9cbf"));
        assert_eq!(decode_all(&input), Err(HuffmanError::Eos));
    }

    #[test]
    fn padding_longer_than_seven_bits_is_rejected() {
        // Eight ones: a prefix of EOS, but a whole byte of padding.
        assert_eq!(decode_all(&[0xff]), Err(HuffmanError::PaddingTooLong));
        // "302" followed by an extra byte of ones.
        assert_eq!(
            decode_all(&[0x64, 0x02, 0xff]),
            Err(HuffmanError::PaddingTooLong)
        );
        // Up to 29 ones (short of a whole EOS) is still too much padding.
        assert_eq!(
            decode_all(&[0xff, 0xff, 0xff]),
            Err(HuffmanError::PaddingTooLong)
        );
        assert_eq!(
            decode_all(&[0x1f, 0xff, 0xff, 0xff]),
            Err(HuffmanError::PaddingTooLong)
        );
    }

    #[test]
    fn padding_that_is_not_ones_is_rejected() {
        // '0' (00000) then 000 padding.
        assert_eq!(decode_all(&[0x00]), Err(HuffmanError::InvalidPadding));
        // 'a' (00011) then 000 padding, where 11111 would have been right.
        assert_eq!(decode_all(&[0x18]), Err(HuffmanError::InvalidPadding));
        assert_eq!(decode_all(&[0x1f]), Ok(b"a".to_vec()));
        // 'a' then 110: not all ones.
        assert_eq!(decode_all(&[0x1e]), Err(HuffmanError::InvalidPadding));
        // "www.example.com" with its last padding bit flipped.
        let mut coded = hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff");
        if let Some(last) = coded.last_mut() {
            *last ^= 0x01;
        }
        assert!(decode_all(&coded).is_err());
    }

    #[test]
    fn padding_of_one_to_seven_bits_is_accepted() {
        // "000%": 5 + 5 + 5 + 6 = 21 bits, so 3 bits of padding.
        let coded = encode_all(b"000%");
        assert_eq!(coded.len(), 3);
        assert_eq!(coded[2] & 0x07, 0x07);
        assert_eq!(decode_all(&coded).unwrap(), b"000%");
        // "jaa": 7 + 5 + 5 = 17 bits, so 7 bits of padding.
        let coded = encode_all(b"jaa");
        assert_eq!(coded.len(), 3);
        assert_eq!(coded[2] & 0x7f, 0x7f);
        assert_eq!(decode_all(&coded).unwrap(), b"jaa");
        // "0a0a0a0a": 40 bits, so no padding at all.
        let coded = encode_all(b"0a0a0a0a");
        assert_eq!(coded.len(), 5);
        assert_eq!(decode_all(&coded).unwrap(), b"0a0a0a0a");
    }

    #[test]
    fn output_limit() {
        let coded = hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff");
        let mut out = Vec::new();
        assert_eq!(decode(&coded, &mut out, 15), Ok(()));
        assert_eq!(out, b"www.example.com");

        let mut out = b"keep".to_vec();
        assert_eq!(decode(&coded, &mut out, 14), Err(HuffmanError::TooLong));
        assert_eq!(out, b"keep", "output restored on error");

        let mut out = Vec::new();
        assert_eq!(decode(&coded, &mut out, 0), Err(HuffmanError::TooLong));
        assert!(out.is_empty());
        assert_eq!(decode(&[], &mut out, 0), Ok(()));
    }

    #[test]
    fn output_limit_bounds_allocation() {
        // 10,000 bytes of '0' codes decode to 16,000 bytes; a limit of 4 must not reserve
        // room for them.
        let coded = encode_all(&[b'0'; 16_000]);
        assert_eq!(coded.len(), 10_000);
        let mut out = Vec::new();
        assert_eq!(decode(&coded, &mut out, 4), Err(HuffmanError::TooLong));
        assert!(out.is_empty());
        assert!(out.capacity() <= 64, "capacity {}", out.capacity());
    }

    #[test]
    fn errors_restore_output() {
        for bad in [&[0xff_u8; 4][..], &[0xff], &[0x18]] {
            let mut out = b"abc".to_vec();
            assert!(decode(bad, &mut out, usize::MAX).is_err());
            assert_eq!(out, b"abc");
        }
    }

    /// Decoding each prefix of a valid encoding never panics, and when it succeeds it
    /// yields a prefix of the whole string.
    fn check_prefixes(coded: &[u8]) {
        let whole = decode_all(coded).unwrap();
        for end in 0..=coded.len() {
            if let Ok(part) = decode_all(&coded[..end]) {
                assert!(whole.starts_with(&part), "prefix {end} of {coded:02x?}");
            }
        }
    }

    #[test]
    fn truncated_encodings_fail_cleanly() {
        for &(_, coded) in RFC_EXAMPLES {
            check_prefixes(&hex(coded));
        }
        let all: Vec<u8> = (0..=255u8).collect();
        check_prefixes(&encode_all(&all));
        let mut rng = XorShift(42);
        for _ in 0..200 {
            let len = rng.below(64);
            check_prefixes(&encode_all(&rng.bytes(len)));
        }
        // A string cut inside a long code is an error, not a short string.
        let coded = encode_all(&[0x80]);
        assert_eq!(coded.len(), 3);
        assert_eq!(decode_all(&coded[..2]), Err(HuffmanError::InvalidPadding));
        let coded = encode_all(&[0x00]);
        assert_eq!(decode_all(&coded[..1]), Err(HuffmanError::PaddingTooLong));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // Any input either fails or is the unique encoding of what it decodes to (valid
        // padding is fully determined), so re-encoding must give the input back.
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        for _ in 0..20_000 {
            let len = rng.below(12);
            let mut input = rng.bytes(len);
            // Bias towards ones so that long codes, EOS and padding get exercised.
            for byte in &mut input {
                if rng.below(2) == 0 {
                    *byte |= 0xf8;
                }
            }
            let mut out = Vec::new();
            match decode(&input, &mut out, usize::MAX) {
                Ok(()) => assert_eq!(encode_all(&out), input),
                Err(_) => assert!(out.is_empty()),
            }
        }
    }

    #[test]
    fn error_messages() {
        for err in [
            HuffmanError::Eos,
            HuffmanError::PaddingTooLong,
            HuffmanError::InvalidPadding,
            HuffmanError::TooLong,
        ] {
            assert!(!err.to_string().is_empty());
        }
    }
}
