//! Error codes, typed by where they travel (docs/wire.md §6).
//!
//! MOQ Lite uses two disjoint code spaces, and the same number means different things in each:
//! a [`SessionCode`] closes a whole session (the QUIC CONNECTION_CLOSE application code, or a
//! WebTransport session close), a [`StreamCode`] aborts one stream (RESET_STREAM and
//! STOP_SENDING). Keeping them apart in the types means a stream code can never close a
//! session by mistake. Both are plain numbers on the wire; the constants are the values the
//! reference implementation uses (draft-lcurley-moq-lite-05 leaves most of them to
//! implementations).
//!
//! This module sits below both the session and the origin: a cached group aborted with
//! [`StreamCode::EVICTED`] needs no session to say so.

use std::fmt;

/// A session close code (CONNECTION_CLOSE application code, or a WebTransport session close).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SessionCode(pub u64);

impl SessionCode {
    /// Normal close.
    pub const NO_ERROR: Self = Self(0x0);
    /// Internal error, transport failure, or a peer reset an Announce stream we opened.
    pub const INTERNAL: Self = Self(0x1);
    /// Not authorised.
    pub const UNAUTHORIZED: Self = Self(0x2);
    /// Decode errors, duplicate SETUP or parameters, a second GOAWAY, a 03/04 duplicate active.
    pub const PROTOCOL_VIOLATION: Self = Self(0x3);
    /// The GOAWAY drain deadline passed.
    pub const GOAWAY_TIMEOUT: Self = Self(0x10);
    /// A timeout.
    pub const TIMEOUT: Self = Self(0x11);
    /// No version could be negotiated.
    pub const VERSION: Self = Self(0x15);
    /// Application codes start here (`64 + n`).
    pub const APP_BASE: u64 = 64;

    /// An application-defined code `n` (sent as `64 + n`).
    pub const fn app(n: u64) -> Self {
        Self(Self::APP_BASE.saturating_add(n))
    }

    /// The number on the wire.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// The code's name, for the ones this crate knows.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::NO_ERROR => "no error",
            Self::INTERNAL => "internal error",
            Self::UNAUTHORIZED => "unauthorized",
            Self::PROTOCOL_VIOLATION => "protocol violation",
            Self::GOAWAY_TIMEOUT => "goaway timeout",
            Self::TIMEOUT => "timeout",
            Self::VERSION => "no common version",
            _ => return None,
        })
    }
}

/// A stream code (RESET_STREAM and STOP_SENDING).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamCode(pub u64);

impl StreamCode {
    /// Internal error; also a SETUP stream on 03/04 or a uni stream before SETUP.
    pub const INTERNAL: Self = Self(0x0);
    /// Cancelled: writer dropped, unsubscribe, unknown bidi type, unknown Subscribe ID on GROUP.
    pub const CANCEL: Self = Self(0x1);
    /// Delivery timeout.
    pub const DELIVERY_TIMEOUT: Self = Self(0x2);
    /// The session is closing (the reference also uses it for unauthorised requests).
    pub const SESSION_CLOSED: Self = Self(0x3);
    /// Going away.
    pub const GOING_AWAY: Self = Self(0x4);
    /// A request outside the session's grant: the reference relay resets it with 0x3
    /// (its Session Closed code), so we do too (docs/wire.md §6).
    pub const UNAUTHORIZED: Self = Self(0x3);
    /// The subscriber is too far behind.
    pub const TOO_FAR_BEHIND: Self = Self(0x5);
    /// Malformed content (decode error in a group, bytes on a probe stream).
    pub const MALFORMED_TRACK: Self = Self(0x12);
    /// A control response did not come in time.
    pub const CONTROL_TIMEOUT: Self = Self(0x31);
    /// A group exceeded its size or frame-count cap.
    pub const GROUP_TOO_LARGE: Self = Self(0x32);
    /// Broadcast or track not found.
    pub const NOT_FOUND: Self = Self(0x33);
    /// The group expired (max latency).
    pub const OLD: Self = Self(0x34);
    /// Evicted from the cache.
    pub const EVICTED: Self = Self(0x35);
    /// Broadcast not announced / not routable.
    pub const UNROUTABLE: Self = Self(0x36);
    /// Wrong size.
    pub const WRONG_SIZE: Self = Self(0x37);
    /// A frame exceeded its size cap.
    pub const FRAME_TOO_LARGE: Self = Self(0x38);
    /// Timestamps went backwards or out of range.
    pub const TIMESTAMP_MISMATCH: Self = Self(0x39);
    /// Application codes start here (`64 + n`).
    pub const APP_BASE: u64 = 64;

    /// An application-defined code `n` (sent as `64 + n`).
    pub const fn app(n: u64) -> Self {
        Self(Self::APP_BASE.saturating_add(n))
    }

    /// The number on the wire.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// The code's name, for the ones this crate knows.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::INTERNAL => "internal error",
            Self::CANCEL => "cancelled",
            Self::DELIVERY_TIMEOUT => "delivery timeout",
            Self::SESSION_CLOSED => "session closed",
            Self::GOING_AWAY => "going away",
            Self::TOO_FAR_BEHIND => "too far behind",
            Self::MALFORMED_TRACK => "malformed track",
            Self::CONTROL_TIMEOUT => "control timeout",
            Self::GROUP_TOO_LARGE => "group too large",
            Self::NOT_FOUND => "not found",
            Self::OLD => "old (expired)",
            Self::EVICTED => "evicted",
            Self::UNROUTABLE => "unroutable",
            Self::WRONG_SIZE => "wrong size",
            Self::FRAME_TOO_LARGE => "frame too large",
            Self::TIMESTAMP_MISMATCH => "timestamp mismatch",
            _ => return None,
        })
    }
}

macro_rules! code_fmt {
    ($ty:ident) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#x})", stringify!($ty), self.0)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{:#x} ({name})", self.0),
                    None if self.0 >= Self::APP_BASE => {
                        write!(f, "{:#x} (application {})", self.0, self.0 - Self::APP_BASE)
                    }
                    None => write!(f, "{:#x}", self.0),
                }
            }
        }

        impl fmt::LowerHex for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl From<$ty> for u64 {
            fn from(code: $ty) -> u64 {
                code.0
            }
        }
    };
}

code_fmt!(SessionCode);
code_fmt!(StreamCode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_known_codes_and_app_codes() {
        assert_eq!(StreamCode::OLD.to_string(), "0x34 (old (expired))");
        assert_eq!(SessionCode::app(2).to_string(), "0x42 (application 2)");
        assert_eq!(StreamCode(0x20).to_string(), "0x20");
        assert_eq!(format!("{:?}", SessionCode::VERSION), "SessionCode(0x15)");
    }
}
