//! WebSocket (RFC 6455) as a sans-IO layer: the opening handshake over HTTP/1.1
//! ([`handshake`]) and the framing ([`frame`]). The relay's TCP listener upgrades to it for
//! browsers without WebTransport; QMux ([`crate::qmux`]) then carries a whole MOQ session in
//! its binary messages.

pub mod frame;
pub mod handshake;

pub use frame::{Decoder, FrameError, Message, Opcode, Role};
pub use handshake::{Accepted, ClientHandshake, HandshakeError};
