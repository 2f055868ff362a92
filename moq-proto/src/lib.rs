//! # moq-proto
//!
//! A sans-IO implementation of Media over QUIC Lite (draft-lcurley-moq-lite), wire versions
//! moq-lite-03, -04 and -05. It has **no networking code and reads no clock**: bytes, stream
//! events and the current time go in as method calls, and what to send comes out as values to
//! drain. So the same code runs under tokio or smol (`moq-tokio`, `moq-smol`), inside your own
//! event loop, under a fuzzer and in a deterministic network simulator.
//!
//! ## Layers
//!
//! Each layer only uses the ones above it in this list:
//!
//! | module | what it is |
//! |---|---|
//! | [`coding`] | QUIC varints, strings, size-prefixed messages, typed decode errors, every size cap |
//! | [`codes`] | the two error-code spaces: [`codes::SessionCode`] and [`codes::StreamCode`] |
//! | [`wire`] | every message of every version, stream types, paths, the incremental stream reader |
//! | [`session`] | one MOQ session over "ordered byte streams + datagrams", as a state machine |
//! | [`origin`] | broadcasts → tracks → groups → frames, with a byte-bounded cache |
//! | [`node`] | an origin with sessions attached: fan-out, announcements, upstream sharing (a relay) |
//! | `quic` (feature `quinn`) | the quinn-proto engine: TLS, ALPN version negotiation, a node per endpoint |
//! | `driver` (feature `driver`) | runtime-agnostic async handles over the engine |
//! | [`webtransport`] | HTTP/3 and WebTransport as a layer between QUIC and the session, knowing no QUIC library |
//! | [`http1`] | the small HTTP/1.1 side of a relay's TCP port (`/certificate.sha256`) |
//! | `media` (feature `media`) | fragmented MP4 (CMAF) in and out, for media publishers and receivers |
//!
//! ## Which one to embed
//!
//! - **You have your own QUIC stack** (or any transport with ordered streams and datagrams):
//!   drive one [`session::Session`] per connection, and attach it to a [`node::Node`] if you
//!   want the origin, fan-out and announcements.
//! - **You have a UDP socket and a clock**, and want this crate to do QUIC too: drive one
//!   `quic::Endpoint` (feature `quinn`). It owns quinn-proto, every connection and session, and
//!   a node. `moq-proto/examples/custom_loop.rs` is a complete program with a plain
//!   `std::net::UdpSocket` and no async runtime.
//! - **You write an application or a relay** on an async runtime: use `moq-tokio` or
//!   `moq-smol`, whose handles wrap this crate's `driver`.
//!
//! ## The run loop
//!
//! Every state machine here follows one rule, the same at every layer:
//!
//! > **After every input and every application call, drain the outputs until they are empty,
//! > then read `poll_timeout` and call `handle_timeout` no later than that instant.**
//!
//! In order, for a [`session::Session`]:
//!
//! 1. Feed what the transport reports, as it happens: `handle_stream_opened`,
//!    `handle_stream_data` / `handle_stream_chunks`, `handle_stream_reset`,
//!    `handle_stop_sending`, `handle_stream_finished`, `handle_open_granted`, `handle_datagram`,
//!    `handle_stats`, `handle_send_backlog`, `handle_connection_lost`.
//! 2. Make application calls (subscribe, publish groups and frames, answer requests).
//! 3. Drain [`session::Session::poll_command`] and apply each [`session::Command`] to the
//!    transport (open a stream when credit allows, write, finish, reset, stop, set a priority,
//!    send a datagram, close).
//! 4. Drain [`session::Session::poll_event`] and handle each [`session::Event`]; some need an
//!    answer (listed in the [`session`] docs), which is another application call, so go back
//!    to 3 until both queues are empty.
//! 5. Sleep until [`session::Session::poll_timeout`] (or the next input), then call
//!    [`session::Session::handle_timeout`].
//!
//! Time is an [`std::time::Instant`] the caller passes in; it must never go backwards. After a
//! session closed ([`session::Event::Closed`]) it emits nothing more but
//! [`session::Command::CancelOpen`]s, `poll_timeout` returns `None`, and every input is ignored,
//! so the caller can drop it whenever it likes. The QUIC engine has the same shape:
//! `handle_datagram` / `handle_timeout` in, `poll_transmit` / `poll_event` / `poll_timeout` out.
//!
//! Here two sessions talk through a perfect in-memory "transport" that carries each side's
//! commands to the other; the client subscribes, the server answers with one group:
//!
//! ```
//! use std::time::Instant;
//!
//! use bytes::Bytes;
//! use moq_proto::session::{Command, Config, Event, Session, Side, StreamId, SubscribeParams};
//! use moq_proto::wire::{Path, TrackInfo, Version};
//!
//! /// The transport: apply `from`'s commands to the network, which delivers them to `to` at once.
//! fn carry(from: &mut Session, to: &mut Session, next_id: &mut u64, now: Instant) {
//!     while let Some(command) = from.poll_command() {
//!         match command {
//!             Command::Open { token, dir, .. } => {
//!                 // Plenty of stream credit: grant every open at once.
//!                 *next_id += 1;
//!                 let id = StreamId(*next_id);
//!                 from.handle_open_granted(now, token, id);
//!                 to.handle_stream_opened(now, id, dir);
//!             }
//!             Command::Write { stream, data } => to.handle_stream_data(now, stream, data, false),
//!             Command::Finish { stream } => {
//!                 to.handle_stream_data(now, stream, Bytes::new(), true);
//!                 from.handle_stream_finished(now, stream); // acknowledged at once
//!             }
//!             Command::Reset { stream, code } => to.handle_stream_reset(now, stream, code),
//!             Command::Stop { stream, code } => to.handle_stop_sending(now, stream, code),
//!             Command::SendDatagram { data } => to.handle_datagram(now, data),
//!             Command::Close { code, reason } => to.handle_connection_lost(now, code, &reason),
//!             _ => {} // CancelOpen, SetPriority: nothing to deliver
//!         }
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = Instant::now();
//! let mut client = Session::new(Config::new(Version::Lite05, Side::Client), now);
//! let mut server = Session::new(Config::new(Version::Lite05, Side::Server), now);
//! client.subscribe(Path::new("demo/clock")?, "seconds", SubscribeParams::default())?;
//!
//! let (mut next_id, mut received) = (0, Vec::new());
//! loop {
//!     // 3. Drain the commands of both sides into the transport.
//!     carry(&mut client, &mut server, &mut next_id, now);
//!     carry(&mut server, &mut client, &mut next_id, now);
//!     // 4. Drain the events; answering one is an application call, so loop again.
//!     let mut progressed = false;
//!     while let Some(event) = server.poll_event() {
//!         progressed = true;
//!         if let Event::Subscribe { id, .. } = event {
//!             server.accept_serve(id, TrackInfo::default(), None)?;
//!             let group = server.open_group(now, id, 0, now, Some(0)).ok_or("no group")?;
//!             server.write_frame(now, group, 0, 5, Bytes::from_static(b"12:00"));
//!             server.finish_group(group);
//!         }
//!     }
//!     while let Some(event) = client.poll_event() {
//!         progressed = true;
//!         // A frame's payload arrives in chunks, as the transport delivered it (zero-copy).
//!         if let Event::FrameStart { chunk, .. } | Event::FramePayload { chunk, .. } = event {
//!             received.extend_from_slice(&chunk);
//!         }
//!     }
//!     if !progressed {
//!         break;
//!     }
//! }
//! // 5. Nothing is due: no timer runs before the next input.
//! assert!(client.poll_timeout().is_none());
//! assert_eq!(received, b"12:00");
//! # Ok(())
//! # }
//! ```
//!
//! ## Robustness
//!
//! Nothing a peer sends can panic this crate or grow its memory without bound: malformed input
//! resets the offending stream or closes the session with the right code, and every table and
//! buffer has a cap (see [`session::Config`], [`node::NodeConfig`], [`coding::Limits`]).
//! `docs/wire.md` in the repository records, section by section, how this crate reads the
//! drafts and where it follows the reference implementation instead.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod codes;
pub mod coding;
#[cfg(feature = "driver")]
pub mod driver;
mod fxhash;
pub mod http1;
#[cfg(feature = "media")]
pub mod media;
pub mod node;
pub mod origin;
pub mod qmux;
#[cfg(feature = "quinn")]
pub mod quic;
pub mod session;
pub mod websocket;
pub mod webtransport;
pub mod wire;
