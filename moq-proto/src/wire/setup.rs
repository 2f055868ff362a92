//! SETUP (lite-05, uni stream 0x1; draft-lcurley-moq-lite-05 §6.3.1, §7.3; docs/wire.md §3.9,
//! §4.9).
//!
//! `Parameter Count (i)` then `Count × {ID (i), Length (i), Value}`. At most 64 parameters, a
//! 64 KiB body, no duplicate IDs; unknown IDs (the reference also sends Role 0x3, Cost 0x4 and
//! Hop 0x5) are skipped; order is free. A varint-valued parameter must hold exactly one varint.

use super::{Message, Version};
use crate::coding::{
    Cursor, DecodeError, EncodeError, Limits, MAX_SETUP_PARAMETERS, MAX_SETUP_PATH_LEN,
    MAX_SETUP_SIZE, Sink, put_varint, varint_len,
};

/// SETUP parameter IDs.
pub mod param {
    /// Probe level (varint).
    pub const PROBE: u64 = 0x1;
    /// Path (raw UTF-8, client only).
    pub const PATH: u64 = 0x2;
    /// Role (varint, client only).
    pub const ROLE: u64 = 0x3;
    /// Cost (lite-06; ignored on 05).
    pub const COST: u64 = 0x4;
    /// Hop / Origin ID (lite-06; the reference sends it on 05 too; ignored).
    pub const HOP: u64 = 0x5;
}

/// How much probing a side supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub enum ProbeLevel {
    /// 0 or absent: no probing; a Probe stream from the peer is reset.
    #[default]
    None,
    /// 1: reports the current estimate.
    Report,
    /// 2 (and, as in the reference, anything larger): may also raise the send rate.
    Increase,
}

impl ProbeLevel {
    fn from_code(code: u64) -> Self {
        match code {
            0 => ProbeLevel::None,
            1 => ProbeLevel::Report,
            _ => ProbeLevel::Increase,
        }
    }

    fn code(self) -> u64 {
        match self {
            ProbeLevel::None => 0,
            ProbeLevel::Report => 1,
            ProbeLevel::Increase => 2,
        }
    }
}

/// The client's declared role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Role {
    /// 0 (and any unknown value): both publisher and subscriber.
    #[default]
    Both,
    /// 1: publisher only.
    Publisher,
    /// 2: subscriber only.
    Subscriber,
}

impl Role {
    fn from_code(code: u64) -> Self {
        match code {
            1 => Role::Publisher,
            2 => Role::Subscriber,
            _ => Role::Both,
        }
    }

    fn code(self) -> u64 {
        match self {
            Role::Both => 0,
            Role::Publisher => 1,
            Role::Subscriber => 2,
        }
    }
}

/// SETUP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Setup {
    /// The sender's probe level ([`ProbeLevel::None`] is sent as no parameter).
    pub probe: ProbeLevel,
    /// Client only: the session path on raw QUIC (may carry a `?query`, as the reference
    /// accepts).
    pub path: Option<String>,
    /// Client only: its role.
    pub role: Option<Role>,
}

fn put_varint_param<S: Sink + ?Sized>(
    sink: &mut S,
    id: u64,
    value: u64,
) -> Result<(), EncodeError> {
    put_varint(sink, id)?;
    put_varint(sink, varint_len(value) as u64)?;
    put_varint(sink, value)
}

fn varint_param(value: &[u8], what: &'static str) -> Result<u64, DecodeError> {
    let mut cursor = Cursor::new(value);
    let v = cursor.varint().map_err(|e| e.inside(what))?;
    cursor.finish(what)?;
    Ok(v)
}

impl Message for Setup {
    const NAME: &'static str = "SETUP";

    fn supported(version: Version) -> bool {
        version.is_lite05()
    }

    fn max_size(_: &Limits) -> usize {
        MAX_SETUP_SIZE
    }

    fn encode_body<S: Sink + ?Sized>(&self, sink: &mut S, _: Version) -> Result<(), EncodeError> {
        let count = u64::from(self.probe != ProbeLevel::None)
            + u64::from(self.path.is_some())
            + u64::from(self.role.is_some());
        put_varint(sink, count)?;
        if self.probe != ProbeLevel::None {
            put_varint_param(sink, param::PROBE, self.probe.code())?;
        }
        if let Some(path) = &self.path {
            if path.len() > MAX_SETUP_PATH_LEN {
                return Err(EncodeError::TooLarge {
                    what: "SETUP path",
                    size: path.len() as u64,
                    max: MAX_SETUP_PATH_LEN as u64,
                });
            }
            put_varint(sink, param::PATH)?;
            put_varint(sink, path.len() as u64)?;
            sink.put_slice(path.as_bytes());
        }
        if let Some(role) = self.role {
            put_varint_param(sink, param::ROLE, role.code())?;
        }
        Ok(())
    }

    fn decode_body(cursor: &mut Cursor<'_>, _: Version) -> Result<Self, DecodeError> {
        let count = cursor.varint_max("SETUP parameters", MAX_SETUP_PARAMETERS)?;
        let mut seen = [0u64; MAX_SETUP_PARAMETERS as usize];
        let mut setup = Setup::default();
        for i in 0..count as usize {
            let id = cursor.varint()?;
            if seen[..i].contains(&id) {
                return Err(DecodeError::DuplicateParameter(id));
            }
            seen[i] = id;
            let len = cursor.varint_max("SETUP parameter", MAX_SETUP_SIZE as u64)?;
            let value = cursor.take(len as usize)?;
            match id {
                param::PROBE => {
                    setup.probe = ProbeLevel::from_code(varint_param(value, "probe parameter")?);
                }
                param::PATH => {
                    if value.len() > MAX_SETUP_PATH_LEN {
                        return Err(DecodeError::TooLarge {
                            what: "SETUP path",
                            size: value.len() as u64,
                            max: MAX_SETUP_PATH_LEN as u64,
                        });
                    }
                    let path = std::str::from_utf8(value)
                        .map_err(|_| DecodeError::InvalidUtf8 { what: "SETUP path" })?;
                    setup.path = Some(path.to_string());
                }
                param::ROLE => {
                    setup.role = Some(Role::from_code(varint_param(value, "role parameter")?));
                }
                _ => {}
            }
        }
        Ok(setup)
    }
}
