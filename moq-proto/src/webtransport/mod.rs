//! HTTP/3 and WebTransport as a sans-IO layer under the MOQ session.
//!
//! Browsers reach MOQ through WebTransport over HTTP/3 (draft-ietf-webtrans-http3; Chromium
//! speaks draft-02 and -07). The QUIC connection negotiates ALPN `h3`; each side opens an
//! HTTP/3 control stream with SETTINGS; the client sends an extended CONNECT
//! (`:protocol webtransport`) on its first bidirectional stream; the server answers 200 and the
//! CONNECT stream stays open for the session's life. WebTransport streams then carry a short
//! prefix (uni `0x54`, bidi `0x41`, followed by the session ID) and datagrams a quarter stream
//! ID; after that they are the MOQ session's ordered byte streams and datagrams, unchanged.
//!
//! [`H3Conn`] is that layer for one connection, client or server, with the crate's usual
//! contract (`handle_*` in, `poll_*` out, time passed in). It never touches a QUIC library:
//! the engine feeds it the connection's stream events and applies its
//! [`TransportCommand`]s. The pieces:
//!
//! - [`frame`]: HTTP/3 framing; [`settings`]: SETTINGS; [`capsule`]: capsules on the CONNECT
//!   stream; [`qpack`] with [`huffman`] and [`qpack_static`]: field sections without a dynamic
//!   table; [`connect`]: the CONNECT request and response and version negotiation;
//!   [`error_codes`]: HTTP/3 codes and the WebTransport mapping of application codes.

pub mod capsule;
pub mod conn;
pub mod connect;
pub mod error_codes;
pub mod frame;
pub mod huffman;
pub mod qpack;
pub mod qpack_static;
pub mod settings;

pub use conn::{H3Config, H3Conn, H3Event, Route, SessionInput, TransportCommand};
