//! One MOQ Lite session over "ordered byte streams + datagrams", transport-agnostic.
//!
//! A [`Session`] is the whole protocol for one connection, in both roles at once (either side
//! may announce, publish and subscribe), for the version it was created with. It never touches
//! a socket, a clock or an executor.
//!
//! # The sans-IO contract
//!
//! The [crate docs](crate#the-run-loop) give the run loop; this is the session's part of it.
//!
//! **Inputs** (transport → session), with `now` where time matters:
//!
//! | call | when |
//! |---|---|
//! | [`handle_stream_opened`](Session::handle_stream_opened) | the peer opened a stream |
//! | [`handle_stream_data`](Session::handle_stream_data) | ordered bytes arrived (zero-copy), with FIN |
//! | [`handle_stream_chunks`](Session::handle_stream_chunks) | the same for several chunks of one stream at once (one lookup, one decoding pass) |
//! | [`handle_stream_reset`](Session::handle_stream_reset) | RESET_STREAM from the peer |
//! | [`handle_stop_sending`](Session::handle_stop_sending) | STOP_SENDING from the peer |
//! | [`handle_stream_finished`](Session::handle_stream_finished) | everything we sent on a stream, FIN included, was acknowledged |
//! | [`handle_open_granted`](Session::handle_open_granted) | a [`Command::Open`] got a stream |
//! | [`handle_datagram`](Session::handle_datagram) | a datagram arrived |
//! | [`handle_stats`](Session::handle_stats) | transport estimates (for PROBE reports) |
//! | [`handle_send_backlog`](Session::handle_send_backlog) | bytes the transport could not accept yet (recorded only; past `Config::max_send_backlog` older groups are shed) |
//! | [`handle_timeout`](Session::handle_timeout) | the instant [`poll_timeout`](Session::poll_timeout) named has come |
//! | [`handle_connection_lost`](Session::handle_connection_lost) | the connection is gone |
//!
//! **Outputs**, drained after every input or application call until empty:
//! [`poll_command`](Session::poll_command) yields [`Command`]s for the transport (open with a
//! priority and a token, write `Bytes`, finish, reset, stop, set priority, send a datagram,
//! close), [`poll_event`](Session::poll_event) yields [`Event`]s for the application, then
//! [`poll_timeout`](Session::poll_timeout) says when to call `handle_timeout` next.
//!
//! **Application calls**, grouped:
//!
//! - subscribing: [`subscribe`](Session::subscribe),
//!   [`update_subscription`](Session::update_subscription),
//!   [`unsubscribe`](Session::unsubscribe), [`stop_group`](Session::stop_group);
//! - serving the peer's subscriptions: [`accept_serve`](Session::accept_serve),
//!   [`reject_serve`](Session::reject_serve), [`open_group`](Session::open_group),
//!   [`write_frame`](Session::write_frame), [`write_payload`](Session::write_payload),
//!   [`finish_group`](Session::finish_group), [`abort_group`](Session::abort_group),
//!   [`send_datagram`](Session::send_datagram), [`drop_groups`](Session::drop_groups),
//!   [`end_serve`](Session::end_serve), [`abort_serve`](Session::abort_serve);
//! - announcements: [`request_announcements`](Session::request_announcements),
//!   [`cancel_announcements`](Session::cancel_announcements) (ours), and
//!   [`announce_initial`](Session::announce_initial), [`announce`](Session::announce),
//!   [`close_listener`](Session::close_listener) (answering the peer's);
//! - one-shot requests: [`fetch`](Session::fetch), [`cancel_fetch`](Session::cancel_fetch),
//!   [`track_info`](Session::track_info); answering them: [`fetch_frame`](Session::fetch_frame),
//!   [`fetch_payload`](Session::fetch_payload), [`fetch_finish`](Session::fetch_finish),
//!   [`fetch_reject`](Session::fetch_reject), [`track_info_reply`](Session::track_info_reply);
//! - session-wide: [`probe`](Session::probe), [`goaway`](Session::goaway),
//!   [`close`](Session::close).
//!
//! **Events that need an answer** (the peer waits until the application makes the call):
//! [`Event::Subscribe`] (`accept_serve` or `reject_serve`), [`Event::AnnounceRequest`]
//! (`announce_initial`), [`Event::Fetch`] (`fetch_*`), [`Event::TrackRequest`]
//! (`track_info_reply`). Every other event is information. A [`crate::node::Node`] answers all
//! of them from its origin, which is what most embedders want.
//!
//! **Rules:**
//!
//! - Opening a stream is a request: [`Command::Open`] carries a token and a priority; the
//!   transport calls `handle_open_granted(token, id)` when stream credit allows (highest priority
//!   first), or never if [`Command::CancelOpen`] arrives first. Data written before the grant is
//!   buffered in the session, so a group that expires while waiting for credit is dropped
//!   without touching the network.
//! - Stream IDs are the transport's. Data for an ID the session does not know (never opened, or
//!   already closed) is ignored.
//! - After [`Event::Closed`] the session emits nothing but [`Command::CancelOpen`], has no
//!   timer, and ignores every input.
//! - Nothing the peer sends can panic the session or grow its memory without bound: malformed
//!   control streams close the session with [`SessionCode::PROTOCOL_VIOLATION`], malformed
//!   group streams are stopped alone, and every table has a cap in [`Config`]
//!   ([`Session::tables`] reports their sizes).

mod announce;
mod core;
mod live_groups;
mod publisher;
mod requests;
mod subscriber;
mod types;

pub use self::core::{DeliveryStats, Session};
pub use crate::codes::{SessionCode, StreamCode};
pub use types::*;
