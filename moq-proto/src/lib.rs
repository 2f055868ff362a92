//! # moq-proto
//!
//! A sans-IO implementation of Media over QUIC Lite (draft-lcurley-moq-lite), wire versions
//! moq-lite-03, -04 and -05. Nothing here touches a socket, a clock or an executor.
//!
//! - [`coding`]: QUIC varints, strings, optional integers, durations, size-prefixed messages,
//!   typed decode errors and every size cap.
//! - [`wire`]: every message of every version, stream types, paths and the incremental stream
//!   reader.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codes;
pub mod coding;
#[cfg(feature = "driver")]
pub mod driver;
mod fxhash;
pub mod node;
pub mod origin;
#[cfg(feature = "quinn")]
pub mod quic;
pub mod session;
pub mod webtransport;
pub mod wire;
