//! Shared helpers for the workspace integration tests (see `tests/tests/`).

pub mod http;
pub mod impair;
pub mod loopback;
pub mod media;
pub mod netns;
pub mod netsim;
pub mod persistent;
pub mod process;
pub mod threads;

pub mod alloc;

/// Parse a hex string with optional whitespace (`"01 0a ff"`) into bytes.
pub fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {text:?}"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(s, 16).expect("hex digit")
        })
        .collect()
}
