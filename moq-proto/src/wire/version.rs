//! Wire versions and their ALPN / WebTransport subprotocol names.
//!
//! From lite-03 on there is no version handshake: the version is whatever ALPN (raw QUIC) or
//! `wt-protocol` (WebTransport) the two sides agreed on. The wire codes exist only for
//! completeness; they are never sent.

use std::fmt;
use std::str::FromStr;

/// A MOQ Lite wire version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Version {
    /// draft-lcurley-moq-lite-03, ALPN `moq-lite-03`.
    Lite03,
    /// draft-lcurley-moq-lite-04, ALPN `moq-lite-04`.
    Lite04,
    /// draft-lcurley-moq-lite-05, ALPN `moq-lite-05`.
    Lite05,
}

impl Version {
    /// Every supported version, newest first (the order a client offers them).
    pub const ALL: [Version; 3] = [Version::Lite05, Version::Lite04, Version::Lite03];

    /// The ALPN token on raw QUIC, which is also the WebTransport subprotocol name.
    pub const fn alpn(self) -> &'static str {
        match self {
            Version::Lite03 => "moq-lite-03",
            Version::Lite04 => "moq-lite-04",
            Version::Lite05 => "moq-lite-05",
        }
    }

    /// The draft's version code (0xff0dad03..05). Never sent on the wire from lite-03 on.
    pub const fn code(self) -> u32 {
        match self {
            Version::Lite03 => 0xff0d_ad03,
            Version::Lite04 => 0xff0d_ad04,
            Version::Lite05 => 0xff0d_ad05,
        }
    }

    /// Parse an ALPN token or WebTransport subprotocol name.
    pub fn from_alpn(alpn: &[u8]) -> Option<Version> {
        Version::ALL
            .into_iter()
            .find(|v| v.alpn().as_bytes() == alpn)
    }

    /// lite-04 added hop lists, Exclude Hop, GOAWAY and the PROBE RTT field.
    pub const fn has_hops(self) -> bool {
        !matches!(self, Version::Lite03)
    }

    /// lite-04 added the Goaway stream.
    pub const fn has_goaway(self) -> bool {
        !matches!(self, Version::Lite03)
    }

    /// lite-05 added SETUP, ANNOUNCE_OK, TRACK, SUBSCRIBE_END, frame timestamps and datagrams.
    pub const fn is_lite05(self) -> bool {
        matches!(self, Version::Lite05)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.alpn())
    }
}

/// The string was not one of `moq-lite-03`, `moq-lite-04`, `moq-lite-05`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown version {0:?}: expected moq-lite-03, moq-lite-04 or moq-lite-05")]
pub struct UnknownVersion(pub String);

impl FromStr for Version {
    type Err = UnknownVersion;

    /// Accepts the ALPN form (`moq-lite-05`) and the short forms `05`, `lite-05`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let short = s
            .strip_prefix("moq-lite-")
            .or_else(|| s.strip_prefix("lite-"))
            .unwrap_or(s);
        match short {
            "03" => Ok(Version::Lite03),
            "04" => Ok(Version::Lite04),
            "05" => Ok(Version::Lite05),
            _ => Err(UnknownVersion(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_round_trip() {
        for v in Version::ALL {
            assert_eq!(Version::from_alpn(v.alpn().as_bytes()), Some(v));
            assert_eq!(v.alpn().parse::<Version>(), Ok(v));
            assert_eq!(v.to_string(), v.alpn());
        }
        assert_eq!(Version::from_alpn(b"moq-lite-06"), None);
        assert_eq!(Version::from_alpn(b"h3"), None);
        assert!("moq-lite-06".parse::<Version>().is_err());
        assert_eq!("05".parse::<Version>(), Ok(Version::Lite05));
        assert_eq!(Version::Lite04.code(), 0xff0dad04);
    }
}
