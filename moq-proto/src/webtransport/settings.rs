//! HTTP/3 SETTINGS (RFC 9114 §7.2.4) with the WebTransport identifiers browsers and the
//! reference peers look for.
//!
//! We send what moq-dev's relay runs against Chromium in production: extended CONNECT
//! (RFC 9220), HTTP datagrams in both the RFC 9297 and the draft-04 codepoint, and the
//! WebTransport enable / max-sessions settings of draft-ietf-webtrans-http3-02 and -07.
//! Newer draft codepoints (0x14e9cd29, 0x2c7cf000) are not sent: they invite draft-13+
//! semantics (flow-control capsules, RESET_STREAM_AT) this crate does not implement.

use crate::coding::{DecodeError, Sink, get_varint, put_varint};

/// QPACK dynamic table capacity (we leave it at 0: no dynamic table).
pub const QPACK_MAX_TABLE_CAPACITY: u64 = 0x1;
/// Largest field section the sender accepts.
pub const MAX_FIELD_SECTION_SIZE: u64 = 0x6;
/// QPACK blocked streams (0).
pub const QPACK_BLOCKED_STREAMS: u64 = 0x7;
/// Extended CONNECT (RFC 9220).
pub const ENABLE_CONNECT_PROTOCOL: u64 = 0x8;
/// HTTP datagrams (RFC 9297).
pub const H3_DATAGRAM: u64 = 0x33;
/// HTTP datagrams, draft-ietf-masque-h3-datagram-04 codepoint.
pub const H3_DATAGRAM_DRAFT04: u64 = 0xff_d277;
/// WebTransport enabled (draft-ietf-webtrans-http3-02).
pub const ENABLE_WEBTRANSPORT: u64 = 0x2b60_3742;
/// WebTransport max sessions, pre-draft-07 codepoint.
pub const WEBTRANSPORT_MAX_SESSIONS_DRAFT06: u64 = 0x2b60_3743;
/// WebTransport max sessions (draft-ietf-webtrans-http3-07 to -12).
pub const WEBTRANSPORT_MAX_SESSIONS: u64 = 0xc671_706a;

/// The largest field section we accept (and advertise).
pub const OUR_MAX_FIELD_SECTION: u64 = 16 * 1024;

/// Most settings read from one frame; a peer sending more is refused.
pub const MAX_SETTINGS: usize = 64;

/// A SETTINGS frame could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The payload is not a sequence of varint pairs.
    #[error("malformed SETTINGS")]
    Malformed,
    /// An identifier appeared twice (RFC 9114 §7.2.4).
    #[error("SETTINGS identifier {0:#x} appears twice")]
    Duplicate(u64),
    /// An HTTP/2 setting identifier, reserved in HTTP/3 (RFC 9114 §7.2.4.1).
    #[error("SETTINGS identifier {0:#x} is reserved")]
    Reserved(u64),
    /// More identifiers than we keep.
    #[error("more than {MAX_SETTINGS} SETTINGS")]
    TooMany,
}

/// A set of settings, in the order received or to be sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    entries: Vec<(u64, u64)>,
}

impl Settings {
    /// What we send: extended CONNECT, HTTP datagrams, WebTransport (draft-02 and -07
    /// codepoints, one session), a 16 KiB field section limit and no QPACK dynamic table.
    pub fn ours() -> Self {
        Self {
            entries: vec![
                (MAX_FIELD_SECTION_SIZE, OUR_MAX_FIELD_SECTION),
                (ENABLE_CONNECT_PROTOCOL, 1),
                (H3_DATAGRAM, 1),
                (H3_DATAGRAM_DRAFT04, 1),
                (WEBTRANSPORT_MAX_SESSIONS, 1),
                (WEBTRANSPORT_MAX_SESSIONS_DRAFT06, 1),
                (ENABLE_WEBTRANSPORT, 1),
            ],
        }
    }

    /// A setting's value, if present.
    pub fn get(&self, id: u64) -> Option<u64> {
        self.entries.iter().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }

    /// Every (identifier, value), in order.
    pub fn entries(&self) -> &[(u64, u64)] {
        &self.entries
    }

    /// True when the peer supports HTTP datagrams and WebTransport (the check browsers and
    /// moq-dev's peers make: a datagram setting and either WebTransport setting).
    pub fn supports_webtransport(&self) -> bool {
        let datagrams =
            self.get(H3_DATAGRAM) == Some(1) || self.get(H3_DATAGRAM_DRAFT04) == Some(1);
        let webtransport = self.get(ENABLE_WEBTRANSPORT) == Some(1)
            || self.get(WEBTRANSPORT_MAX_SESSIONS).is_some_and(|n| n > 0);
        datagrams && webtransport
    }

    /// True when the peer accepts extended CONNECT (a server must say so; RFC 9220 §3).
    pub fn enables_connect_protocol(&self) -> bool {
        self.get(ENABLE_CONNECT_PROTOCOL) == Some(1)
    }

    /// Decode a SETTINGS payload: unknown (and GREASE) identifiers are kept but mean nothing;
    /// duplicates and HTTP/2 identifiers are refused.
    pub fn decode(payload: &[u8]) -> Result<Self, SettingsError> {
        let mut buf = payload;
        let mut entries = Vec::new();
        while !buf.is_empty() {
            let id = get_varint(&mut buf).map_err(|_| SettingsError::Malformed)?;
            let value = get_varint(&mut buf).map_err(|_| SettingsError::Malformed)?;
            if matches!(id, 0x0 | 0x2 | 0x3 | 0x4 | 0x5) {
                return Err(SettingsError::Reserved(id));
            }
            if entries.iter().any(|(i, _)| *i == id) {
                return Err(SettingsError::Duplicate(id));
            }
            if entries.len() >= MAX_SETTINGS {
                return Err(SettingsError::TooMany);
            }
            entries.push((id, value));
        }
        Ok(Self { entries })
    }

    /// Append the payload (without the frame header).
    pub fn encode<S: Sink + ?Sized>(&self, sink: &mut S) {
        for (id, value) in &self.entries {
            // Identifiers and values are constants below 2^62.
            let _ = put_varint(sink, *id);
            let _ = put_varint(sink, *value);
        }
    }
}

impl From<SettingsError> for DecodeError {
    fn from(error: SettingsError) -> Self {
        match error {
            SettingsError::Duplicate(id) => DecodeError::DuplicateParameter(id),
            SettingsError::Reserved(id) => DecodeError::InvalidValue {
                what: "setting identifier",
                value: id,
            },
            _ => DecodeError::InvalidValue {
                what: "SETTINGS",
                value: 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_round_trip_and_satisfy_both_checks() {
        let mut wire = Vec::new();
        Settings::ours().encode(&mut wire);
        let back = Settings::decode(&wire).expect("decodes");
        assert_eq!(back, Settings::ours());
        assert!(back.supports_webtransport());
        assert!(back.enables_connect_protocol());
        // The draft-02 enable setting is there: without it Chromium fails with
        // ERR_METHOD_NOT_SUPPORTED and Firefox never sends CONNECT.
        assert_eq!(back.get(ENABLE_WEBTRANSPORT), Some(1));
        // Never the draft-13+ codepoints.
        assert_eq!(back.get(0x14e9_cd29), None);
        assert_eq!(back.get(0x2c7c_f000), None);
    }

    #[test]
    fn chrome_settings_with_grease_are_accepted() {
        // What Chrome sends (0x1=65536, 0x6=16384, 0x7=100, 0x33=1, 0xffd277=1,
        // 0x2b603742=1) plus a GREASE identifier 0x1f*3+0x21 = 0x7e.
        let mut wire = Vec::new();
        for (id, value) in [
            (0x1u64, 65536u64),
            (0x6, 16384),
            (0x7, 100),
            (0x33, 1),
            (0xff_d277, 1),
            (0x2b60_3742, 1),
            (0x7e, 77),
        ] {
            put_varint(&mut wire, id).expect("varint");
            put_varint(&mut wire, value).expect("varint");
        }
        let settings = Settings::decode(&wire).expect("accepted");
        assert!(settings.supports_webtransport());
        assert!(!settings.enables_connect_protocol()); // a client need not send it
        assert_eq!(settings.get(0x7e), Some(77));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(
            Settings::decode(&[0x33, 0x01, 0x33, 0x01]),
            Err(SettingsError::Duplicate(0x33))
        );
        assert_eq!(
            Settings::decode(&[0x02, 0x01]),
            Err(SettingsError::Reserved(0x2))
        );
        assert_eq!(Settings::decode(&[0x33]), Err(SettingsError::Malformed));
        let mut many = Vec::new();
        for id in 0..=MAX_SETTINGS as u64 {
            put_varint(&mut many, 0x100 + id).expect("varint");
            put_varint(&mut many, 0).expect("varint");
        }
        assert_eq!(Settings::decode(&many), Err(SettingsError::TooMany));
        // Without datagrams, no WebTransport.
        let only_wt = Settings::decode(&[0xab, 0x60, 0x37, 0x42, 0x01]).expect("decodes");
        assert_eq!(only_wt.get(ENABLE_WEBTRANSPORT), Some(1));
        assert!(!only_wt.supports_webtransport());
    }
}
