//! One MOQ Lite session over "ordered byte streams + datagrams", transport-agnostic.
//!
//! A [`Session`] is the whole protocol for one connection, in both roles at once (either side
//! may announce, publish and subscribe), for the version it was created with. It never touches
//! a socket, a clock or an executor.
//!
//! # The sans-IO contract
//!
//! - **Inputs** are `handle_*` calls, with `now` where time matters:
//!   [`handle_stream_opened`](Session::handle_stream_opened) (the peer opened a stream),
//!   [`handle_stream_data`](Session::handle_stream_data) (ordered bytes, zero-copy, with FIN),
//!   [`handle_stream_reset`](Session::handle_stream_reset) (RESET_STREAM from the peer),
//!   [`handle_stop_sending`](Session::handle_stop_sending) (STOP_SENDING from the peer),
//!   [`handle_stream_finished`](Session::handle_stream_finished) (everything we sent on a
//!   stream, FIN included, was acknowledged), [`handle_open_granted`](Session::handle_open_granted)
//!   (a [`Command::Open`] was fulfilled), [`handle_datagram`](Session::handle_datagram),
//!   [`handle_stats`](Session::handle_stats) (transport estimates for PROBE),
//!   [`handle_send_backlog`](Session::handle_send_backlog) (bytes the transport could not
//!   accept yet; only recorded, it sheds older groups past `Config::max_send_backlog`),
//!   [`handle_timeout`](Session::handle_timeout) and
//!   [`handle_connection_lost`](Session::handle_connection_lost).
//! - **Outputs** are drained: [`poll_command`](Session::poll_command) yields [`Command`]s for the
//!   transport (open with a priority and a token, write `Bytes`, finish, reset, stop, set
//!   priority, send a datagram, close), [`poll_event`](Session::poll_event) yields [`Event`]s for
//!   the application.
//! - After **every** input or application call the caller drains commands and events until
//!   both are empty, then reads [`poll_timeout`](Session::poll_timeout) and calls
//!   `handle_timeout` no later than that instant.
//! - Opening a stream is a request: [`Command::Open`] carries a token and a priority; the
//!   transport calls `handle_open_granted(token, id)` when stream credit allows (highest priority
//!   first), or never if [`Command::CancelOpen`] arrives first. Data written before the grant is
//!   buffered in the session, so a group that expires while waiting for credit is dropped
//!   without touching the network.
//! - Stream IDs are the transport's. Data for an ID the session does not know (never opened, or
//!   already closed) is ignored.
//! - Nothing the peer sends can panic the session or grow its memory without bound: malformed
//!   control streams close the session with [`SessionCode::PROTOCOL_VIOLATION`], malformed
//!   group streams are stopped alone, and every table has a cap in [`Config`].

mod announce;
mod core;
mod live_groups;
mod publisher;
mod requests;
mod subscriber;
mod types;

pub use self::core::Session;
pub use crate::codes::{SessionCode, StreamCode};
pub use types::*;
