//! Every MOQ Lite message of lite-03, lite-04 and lite-05, as typed structs with encode and
//! decode (draft-lcurley-moq-lite-03 §7, draft-lcurley-moq-lite-05 §7; byte-level reference in docs/wire.md §4).
//!
//! - [`Version`]: the three versions and their ALPN / WebTransport subprotocol names.
//! - [`BiStreamType`], [`UniStreamType`]: the varint that opens every stream, per version.
//! - Control messages implement [`Message`] (`Message Length (i)` + exact body):
//!   [`AnnounceRequest`], [`AnnounceOk`], [`Announce`], [`Subscribe`], [`SubscribeUpdate`],
//!   [`Fetch`], [`Probe`], [`Goaway`], [`TrackRequest`], [`TrackInfo`], [`GroupHeader`],
//!   [`Setup`]. Subscribe responses are typed: [`SubscribeResponse`].
//! - [`FrameHeader`] and [`Datagram`] are not size-prefixed.
//! - [`Path`]: normalised broadcast paths, segment-aware prefixes.
//! - [`StreamReader`], [`FrameDecoder`], [`GroupStreamReader`]: incremental decoding of streams
//!   arriving in arbitrary chunks, zero-copy for payloads.
//!
//! A message that does not exist in a version fails to encode and to decode with
//! `UnsupportedVersion`.

mod announce;
mod datagram;
mod fetch;
mod goaway;
mod group;
mod message;
mod path;
mod probe;
mod reader;
mod setup;
mod stream;
mod subscribe;
mod track;
mod version;

pub use announce::{Announce, AnnounceOk, AnnounceRequest, AnnounceStatus};
pub use datagram::Datagram;
pub use fetch::Fetch;
pub use goaway::Goaway;
pub use group::{FrameHeader, GroupHeader, Timestamps};
pub use message::Message;
pub use path::{Path, PathError};
pub use probe::Probe;
pub use reader::{FrameDecoder, FrameItem, GroupItem, GroupStreamReader, StreamReader};
pub use setup::{ProbeLevel, Role, Setup, param};
pub use stream::{BiStreamType, UniStreamType};
pub use subscribe::{
    Subscribe, SubscribeDrop, SubscribeEnd, SubscribeOk, SubscribeResponse, SubscribeStart,
    SubscribeUpdate,
};
pub use track::{TrackInfo, TrackRequest};
pub use version::{UnknownVersion, Version};
