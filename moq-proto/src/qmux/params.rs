//! QMux transport parameters (draft-ietf-quic-qmux-01 §4): the subset of QUIC's (RFC 9000
//! §18) QMux permits, DATAGRAM's `max_datagram_frame_size` (RFC 9221) and QMux's
//! `max_record_size`, carried in the QX_TRANSPORT_PARAMETERS frame.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::coding::{get_varint, put_varint, varint_len};

/// max_idle_timeout (milliseconds).
const MAX_IDLE_TIMEOUT: u64 = 0x01;
/// initial_max_data.
const INITIAL_MAX_DATA: u64 = 0x04;
/// initial_max_stream_data_bidi_local.
const INITIAL_MAX_STREAM_DATA_BIDI_LOCAL: u64 = 0x05;
/// initial_max_stream_data_bidi_remote.
const INITIAL_MAX_STREAM_DATA_BIDI_REMOTE: u64 = 0x06;
/// initial_max_stream_data_uni.
const INITIAL_MAX_STREAM_DATA_UNI: u64 = 0x07;
/// initial_max_streams_bidi.
const INITIAL_MAX_STREAMS_BIDI: u64 = 0x08;
/// initial_max_streams_uni.
const INITIAL_MAX_STREAMS_UNI: u64 = 0x09;
/// max_datagram_frame_size (RFC 9221 §3).
const MAX_DATAGRAM_FRAME_SIZE: u64 = 0x20;
/// max_record_size (draft-ietf-quic-qmux-01 §4.2).
const MAX_RECORD_SIZE: u64 = 0x0571_c594_29cd_0845;

/// The record size every peer accepts before it says more (draft-ietf-quic-qmux-01 §4.2).
pub const DEFAULT_MAX_RECORD_SIZE: u64 = 16382;
/// The largest encoded parameter block we read.
pub const MAX_PARAMS_LEN: usize = 4096;

/// QUIC version 1 parameters QMux forbids (connection IDs, addresses, ACK tuning).
fn forbidden(id: u64) -> bool {
    matches!(id, 0x00 | 0x02 | 0x03 | 0x0a..=0x10)
}

/// Bad transport parameters: TRANSPORT_PARAMETER_ERROR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// The block does not parse.
    #[error("malformed transport parameters")]
    Malformed,
    /// A parameter QMux forbids.
    #[error("forbidden transport parameter {0:#x}")]
    Forbidden(u64),
    /// A parameter given twice.
    #[error("duplicate transport parameter {0:#x}")]
    Duplicate(u64),
    /// A value out of its range.
    #[error("transport parameter {0:#x} out of range")]
    Range(u64),
    /// Longer than [`MAX_PARAMS_LEN`].
    #[error("transport parameters longer than {MAX_PARAMS_LEN} bytes")]
    TooLong,
}

/// The parameters one endpoint declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportParams {
    /// Idle timeout; `None` = none.
    pub max_idle_timeout: Option<Duration>,
    /// Connection-level credit.
    pub initial_max_data: u64,
    /// Credit on bidirectional streams the declaring endpoint opens.
    pub initial_max_stream_data_bidi_local: u64,
    /// Credit on bidirectional streams the other endpoint opens.
    pub initial_max_stream_data_bidi_remote: u64,
    /// Credit on unidirectional streams the other endpoint opens.
    pub initial_max_stream_data_uni: u64,
    /// Bidirectional streams the other endpoint may open.
    pub initial_max_streams_bidi: u64,
    /// Unidirectional streams the other endpoint may open.
    pub initial_max_streams_uni: u64,
    /// Largest DATAGRAM frame accepted; 0 = datagrams not supported.
    pub max_datagram_frame_size: u64,
    /// Largest record payload accepted.
    pub max_record_size: u64,
}

impl Default for TransportParams {
    /// What an endpoint that sent nothing has: no credit, no streams, no datagrams.
    fn default() -> Self {
        Self {
            max_idle_timeout: None,
            initial_max_data: 0,
            initial_max_stream_data_bidi_local: 0,
            initial_max_stream_data_bidi_remote: 0,
            initial_max_stream_data_uni: 0,
            initial_max_streams_bidi: 0,
            initial_max_streams_uni: 0,
            max_datagram_frame_size: 0,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
        }
    }
}

fn put_param(out: &mut BytesMut, id: u64, value: u64) {
    let _ = put_varint(out, id);
    let _ = put_varint(out, varint_len(value) as u64);
    let _ = put_varint(out, value.min(crate::coding::MAX_VARINT));
}

impl TransportParams {
    /// The encoded block (RFC 9000 §18: id, length, value).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        if let Some(timeout) = self.max_idle_timeout {
            put_param(&mut out, MAX_IDLE_TIMEOUT, timeout.as_millis() as u64);
        }
        for (id, value) in [
            (INITIAL_MAX_DATA, self.initial_max_data),
            (
                INITIAL_MAX_STREAM_DATA_BIDI_LOCAL,
                self.initial_max_stream_data_bidi_local,
            ),
            (
                INITIAL_MAX_STREAM_DATA_BIDI_REMOTE,
                self.initial_max_stream_data_bidi_remote,
            ),
            (
                INITIAL_MAX_STREAM_DATA_UNI,
                self.initial_max_stream_data_uni,
            ),
            (INITIAL_MAX_STREAMS_BIDI, self.initial_max_streams_bidi),
            (INITIAL_MAX_STREAMS_UNI, self.initial_max_streams_uni),
        ] {
            put_param(&mut out, id, value);
        }
        if self.max_datagram_frame_size > 0 {
            put_param(
                &mut out,
                MAX_DATAGRAM_FRAME_SIZE,
                self.max_datagram_frame_size,
            );
        }
        if self.max_record_size != DEFAULT_MAX_RECORD_SIZE {
            put_param(&mut out, MAX_RECORD_SIZE, self.max_record_size);
        }
        out.freeze()
    }

    /// Decode a peer's block; unknown parameters are ignored (draft-ietf-quic-qmux-01 §4.1).
    pub fn decode(mut buf: &[u8]) -> Result<Self, ParamsError> {
        if buf.len() > MAX_PARAMS_LEN {
            return Err(ParamsError::TooLong);
        }
        let mut params = Self::default();
        let mut seen: Vec<u64> = Vec::new();
        while !buf.is_empty() {
            let id = get_varint(&mut buf).map_err(|_| ParamsError::Malformed)?;
            let len = get_varint(&mut buf).map_err(|_| ParamsError::Malformed)? as usize;
            if len > buf.len() {
                return Err(ParamsError::Malformed);
            }
            let (mut value_bytes, rest) = buf.split_at(len);
            buf = rest;
            if forbidden(id) {
                return Err(ParamsError::Forbidden(id));
            }
            if seen.contains(&id) {
                return Err(ParamsError::Duplicate(id));
            }
            seen.push(id);
            let known = matches!(
                id,
                0x01 | 0x04..=0x09 | MAX_DATAGRAM_FRAME_SIZE | MAX_RECORD_SIZE
            );
            if !known {
                continue;
            }
            let value = get_varint(&mut value_bytes).map_err(|_| ParamsError::Malformed)?;
            if !value_bytes.is_empty() {
                return Err(ParamsError::Malformed);
            }
            match id {
                MAX_IDLE_TIMEOUT => {
                    params.max_idle_timeout = (value > 0).then(|| Duration::from_millis(value));
                }
                INITIAL_MAX_DATA => params.initial_max_data = value,
                INITIAL_MAX_STREAM_DATA_BIDI_LOCAL => {
                    params.initial_max_stream_data_bidi_local = value;
                }
                INITIAL_MAX_STREAM_DATA_BIDI_REMOTE => {
                    params.initial_max_stream_data_bidi_remote = value;
                }
                INITIAL_MAX_STREAM_DATA_UNI => params.initial_max_stream_data_uni = value,
                INITIAL_MAX_STREAMS_BIDI | INITIAL_MAX_STREAMS_UNI => {
                    if value > 1 << 60 {
                        return Err(ParamsError::Range(id));
                    }
                    if id == INITIAL_MAX_STREAMS_BIDI {
                        params.initial_max_streams_bidi = value;
                    } else {
                        params.initial_max_streams_uni = value;
                    }
                }
                MAX_DATAGRAM_FRAME_SIZE => params.max_datagram_frame_size = value,
                _ => {
                    // max_record_size may only grow (draft-ietf-quic-qmux-01 §4.2).
                    if value < DEFAULT_MAX_RECORD_SIZE {
                        return Err(ParamsError::Range(id));
                    }
                    params.max_record_size = value;
                }
            }
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameters `@moq/qmux` 0.3 sends, as captured from its WebSocket (the frame's type
    /// and length stripped).
    const REFERENCE: &str = "010480007530040480100000050480040000060480040000070480040000\
                             080240640902406420027ffec571c59429cd0845027ffe";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_the_reference_block() {
        let params = TransportParams::decode(&hex(REFERENCE)).unwrap();
        assert_eq!(params.max_idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(params.initial_max_data, 1 << 20);
        assert_eq!(params.initial_max_stream_data_bidi_local, 256 * 1024);
        assert_eq!(params.initial_max_stream_data_bidi_remote, 256 * 1024);
        assert_eq!(params.initial_max_stream_data_uni, 256 * 1024);
        assert_eq!(params.initial_max_streams_bidi, 100);
        assert_eq!(params.initial_max_streams_uni, 100);
        assert_eq!(params.max_datagram_frame_size, 16382);
        assert_eq!(params.max_record_size, 16382);
        // Re-encoded, ours decodes to the same values.
        assert_eq!(TransportParams::decode(&params.encode()).unwrap(), params);
    }

    #[test]
    fn refusals_and_ignored_parameters() {
        // An unknown parameter (0x4000 with two bytes) is skipped.
        let params = TransportParams::decode(&[0x80, 0, 0x40, 0, 2, 0xAA, 0xBB, 0x04, 1, 9]);
        assert_eq!(params.unwrap().initial_max_data, 9);
        assert_eq!(
            TransportParams::decode(&[0x0e, 1, 2]),
            Err(ParamsError::Forbidden(0x0e))
        );
        assert_eq!(
            TransportParams::decode(&[0x04, 1, 2, 0x04, 1, 3]),
            Err(ParamsError::Duplicate(0x04))
        );
        assert_eq!(
            TransportParams::decode(&[0x04, 2, 2]),
            Err(ParamsError::Malformed)
        );
        assert_eq!(
            TransportParams::decode(&[0x04, 2, 2, 3]),
            Err(ParamsError::Malformed)
        );
        // max_record_size below the default.
        let mut small = BytesMut::new();
        put_param(&mut small, MAX_RECORD_SIZE, 100);
        assert_eq!(
            TransportParams::decode(&small),
            Err(ParamsError::Range(MAX_RECORD_SIZE))
        );
        assert_eq!(
            TransportParams::decode(&vec![0; MAX_PARAMS_LEN + 1]),
            Err(ParamsError::TooLong)
        );
    }
}
