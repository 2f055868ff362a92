//! QMux (draft-ietf-quic-qmux-00/-01/-02) as a sans-IO layer: QUIC's streams, flow control and
//! datagrams over one ordered byte stream, so a MOQ session runs unchanged where UDP does not
//! reach. Over WebSocket ([`crate::websocket`]) one binary message carries one record's frames,
//! and the subprotocol names the QMux draft and the MOQ version together
//! (`qmux-01.moq-lite-05`, see [`subprotocol`]).
//!
//! - [`frame`]: the frames (QUIC's, DATAGRAM, QX_TRANSPORT_PARAMETERS, QX_PING);
//! - [`params`]: transport parameters;
//! - [`conn`]: one connection ([`QmuxConn`]): stream IDs, limits, credit, resets, priority
//!   scheduling, keep-alive;
//! - [`subprotocol`]: the WebSocket subprotocol negotiation;
//! - [`ws`]: QMux over an upgraded WebSocket ([`WsQmux`]), bytes in and out.

pub mod conn;
pub mod frame;
pub mod params;
pub mod subprotocol;
pub mod ws;

pub use conn::{Draft, OutFrame, QmuxConfig, QmuxConn, QmuxEvent};
pub use params::TransportParams;
pub use ws::{WsQmux, WsState};
