//! Shared proptest strategies for every wire message, and [`Msg`], a uniform wrapper over the
//! control messages so a test can encode, decode and stream-read any of them generically.
//!
//! Every strategy produces only values that are valid for the version it is given, so
//! `decode(encode(x)) == x` must hold for all of them.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::Bytes;
use moq_proto::coding::{
    Cursor, DecodeError, EncodeError, Limits, MAX_FRAME_SIZE, MAX_GOAWAY_URI, MAX_HOPS,
    MAX_PATH_SEGMENTS, MAX_VARINT, Sink, get_varint, put_varint,
};
use moq_proto::wire::{
    Announce, AnnounceOk, AnnounceRequest, AnnounceStatus, Datagram, Fetch, FrameHeader, Goaway,
    GroupHeader, Message, Path, Probe, ProbeLevel, Role, Setup, StreamReader, Subscribe,
    SubscribeDrop, SubscribeEnd, SubscribeOk, SubscribeResponse, SubscribeStart, SubscribeUpdate,
    TrackInfo, TrackRequest, Version,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// Every version, oldest first.
pub const VERSIONS: [Version; 3] = [Version::Lite03, Version::Lite04, Version::Lite05];

/// The largest delta a lite-05 frame header can carry: zigzag must fit a varint.
pub const MAX_DELTA: i64 = (1 << 61) - 1;
/// The smallest such delta.
pub const MIN_DELTA: i64 = -(1 << 61);

/// Any version.
pub fn version() -> BoxedStrategy<Version> {
    prop::sample::select(VERSIONS.to_vec()).boxed()
}

/// A version from `versions` paired with a value from `f(version)`.
pub fn versioned<T: std::fmt::Debug + Clone + 'static, S: Strategy<Value = T> + 'static>(
    versions: &[Version],
    f: fn(Version) -> S,
) -> BoxedStrategy<(Version, T)> {
    prop::sample::select(versions.to_vec())
        .prop_flat_map(move |v| (Just(v), f(v)))
        .boxed()
}

/// Any varint value, spread evenly over the four encoded lengths and their boundaries.
pub fn varint() -> BoxedStrategy<u64> {
    prop_oneof![
        0u64..64,
        64u64..16_384,
        16_384u64..(1 << 30),
        (1u64 << 30)..=MAX_VARINT,
        prop::sample::select(vec![
            0,
            1,
            63,
            64,
            16_383,
            16_384,
            (1 << 30) - 1,
            1 << 30,
            MAX_VARINT - 1,
            MAX_VARINT
        ]),
    ]
    .boxed()
}

/// An optional group (`n + 1` on the wire, so at most 2^62 - 2).
pub fn optional_group() -> BoxedStrategy<Option<u64>> {
    prop::option::of(varint().prop_map(|v| v.min(MAX_VARINT - 1))).boxed()
}

/// A whole-millisecond duration whose millisecond count fits a varint.
pub fn duration() -> BoxedStrategy<Duration> {
    varint().prop_map(Duration::from_millis).boxed()
}

/// One path segment: any non-empty text without `/`.
pub fn segment() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-z0-9]{1,6}",
        "[^/]{1,6}",
        // Near-miss prefixes for segment-aware matching.
        prop::sample::select(vec!["a".to_string(), "ab".to_string(), "a.b".to_string()]),
    ]
    .boxed()
}

/// Segments of a valid path (0 to 32 of them).
pub fn segments() -> BoxedStrategy<Vec<String>> {
    prop_oneof![vec(segment(), 0..=4), vec(segment(), 0..=MAX_PATH_SEGMENTS),].boxed()
}

/// A normalised path.
pub fn path() -> BoxedStrategy<Path> {
    segments()
        .prop_map(|s| Path::new(&s.join("/")).expect("at most 32 short segments"))
        .boxed()
}

/// A track name: opaque UTF-8, not normalised (slashes and all).
pub fn track_name() -> BoxedStrategy<String> {
    prop_oneof!["[a-z/]{0,12}", "(?s).{0,16}"].boxed()
}

/// Arbitrary UTF-8 text, sometimes long.
pub fn text(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        4 => "(?s).{0,24}",
        1 => (0..=max).prop_map(|n| "u".repeat(n)),
    ]
    .boxed()
}

/// A hop list valid for `version`: a bare count (all zeros) on 03; on 04/05 at most 32 IDs
/// with no non-zero duplicate (zeros may repeat).
pub fn hops(version: Version) -> BoxedStrategy<Vec<u64>> {
    if !version.has_hops() {
        return (0..=MAX_HOPS).prop_map(|n| vec![0; n]).boxed();
    }
    vec(prop_oneof![Just(0u64), 1u64..=8, varint()], 0..=MAX_HOPS)
        .prop_map(|raw| {
            let mut out: Vec<u64> = Vec::with_capacity(raw.len());
            for hop in raw {
                if hop == 0 || !out.contains(&hop) {
                    out.push(hop);
                }
            }
            out
        })
        .boxed()
}

/// ANNOUNCE_PLEASE / INTEREST / REQUEST (no Exclude Hop on 03).
pub fn announce_request(version: Version) -> BoxedStrategy<AnnounceRequest> {
    (path(), varint())
        .prop_map(move |(prefix, hop)| AnnounceRequest {
            prefix,
            exclude_hop: if version.has_hops() { hop } else { 0 },
        })
        .boxed()
}

/// ANNOUNCE_OK (05).
pub fn announce_ok(_: Version) -> BoxedStrategy<AnnounceOk> {
    (varint(), varint())
        .prop_map(|(hop_id, active_count)| AnnounceOk {
            hop_id,
            active_count,
        })
        .boxed()
}

/// An announce status valid for `version` (Restart only on 05).
pub fn announce_status(version: Version) -> BoxedStrategy<AnnounceStatus> {
    let mut statuses = vec![AnnounceStatus::Ended, AnnounceStatus::Active];
    if version.is_lite05() {
        statuses.push(AnnounceStatus::Restart);
    }
    prop::sample::select(statuses).boxed()
}

/// ANNOUNCE / ANNOUNCE_BROADCAST.
pub fn announce(version: Version) -> BoxedStrategy<Announce> {
    (announce_status(version), path(), hops(version))
        .prop_map(|(status, suffix, hops)| Announce {
            status,
            suffix,
            hops,
        })
        .boxed()
}

/// SUBSCRIBE.
pub fn subscribe(_: Version) -> BoxedStrategy<Subscribe> {
    (
        varint(),
        path(),
        track_name(),
        any::<u8>(),
        any::<bool>(),
        duration(),
        optional_group(),
        optional_group(),
    )
        .prop_map(
            |(id, broadcast, track, priority, ordered, max_latency, start, end)| Subscribe {
                id,
                broadcast,
                track,
                priority,
                ordered,
                max_latency,
                start,
                end,
            },
        )
        .boxed()
}

/// SUBSCRIBE_UPDATE.
pub fn subscribe_update(_: Version) -> BoxedStrategy<SubscribeUpdate> {
    (
        any::<u8>(),
        any::<bool>(),
        duration(),
        optional_group(),
        optional_group(),
    )
        .prop_map(
            |(priority, ordered, max_latency, start, end)| SubscribeUpdate {
                priority,
                ordered,
                max_latency,
                start,
                end,
            },
        )
        .boxed()
}

/// lite-03/04 SUBSCRIBE_OK.
pub fn subscribe_ok() -> BoxedStrategy<SubscribeOk> {
    (
        any::<u8>(),
        any::<bool>(),
        duration(),
        optional_group(),
        optional_group(),
    )
        .prop_map(|(priority, ordered, max_latency, start, end)| SubscribeOk {
            priority,
            ordered,
            max_latency,
            start,
            end,
        })
        .boxed()
}

/// SUBSCRIBE_DROP (start <= end).
pub fn subscribe_drop() -> BoxedStrategy<SubscribeDrop> {
    (varint(), varint(), varint())
        .prop_map(|(a, b, error)| SubscribeDrop {
            start: a.min(b),
            end: a.max(b),
            error,
        })
        .boxed()
}

/// Every subscribe response valid in `version`.
pub fn subscribe_response(version: Version) -> BoxedStrategy<SubscribeResponse> {
    if version.is_lite05() {
        prop_oneof![
            varint().prop_map(|group| SubscribeResponse::Start(SubscribeStart { group })),
            varint().prop_map(|group| SubscribeResponse::End(SubscribeEnd { group })),
            subscribe_drop().prop_map(SubscribeResponse::Drop),
        ]
        .boxed()
    } else {
        prop_oneof![
            subscribe_ok().prop_map(SubscribeResponse::Ok),
            subscribe_drop().prop_map(SubscribeResponse::Drop),
        ]
        .boxed()
    }
}

/// FETCH.
pub fn fetch(_: Version) -> BoxedStrategy<Fetch> {
    (path(), track_name(), any::<u8>(), varint())
        .prop_map(|(broadcast, track, priority, group)| Fetch {
            broadcast,
            track,
            priority,
            group,
        })
        .boxed()
}

/// PROBE (no RTT on 03).
pub fn probe(version: Version) -> BoxedStrategy<Probe> {
    (varint(), varint())
        .prop_map(move |(bitrate, rtt)| Probe {
            bitrate,
            rtt_ms: if version.has_hops() { rtt } else { 0 },
        })
        .boxed()
}

/// GOAWAY (04+).
pub fn goaway(_: Version) -> BoxedStrategy<Goaway> {
    text(MAX_GOAWAY_URI).prop_map(|uri| Goaway { uri }).boxed()
}

/// TRACK (05).
pub fn track_request(_: Version) -> BoxedStrategy<TrackRequest> {
    (path(), track_name())
        .prop_map(|(broadcast, track)| TrackRequest { broadcast, track })
        .boxed()
}

/// TRACK_INFO (05; the timescale is never zero).
pub fn track_info(_: Version) -> BoxedStrategy<TrackInfo> {
    (any::<u8>(), any::<bool>(), duration(), varint())
        .prop_map(|(priority, ordered, max_latency, timescale)| TrackInfo {
            priority,
            ordered,
            max_latency,
            timescale: timescale.max(1),
        })
        .boxed()
}

/// GROUP.
pub fn group_header(_: Version) -> BoxedStrategy<GroupHeader> {
    (varint(), varint())
        .prop_map(|(subscribe_id, sequence)| GroupHeader {
            subscribe_id,
            sequence,
        })
        .boxed()
}

/// A probe level.
pub fn probe_level() -> BoxedStrategy<ProbeLevel> {
    prop::sample::select(vec![
        ProbeLevel::None,
        ProbeLevel::Report,
        ProbeLevel::Increase,
    ])
    .boxed()
}

/// A role.
pub fn role() -> BoxedStrategy<Role> {
    prop::sample::select(vec![Role::Both, Role::Publisher, Role::Subscriber]).boxed()
}

/// SETUP (05).
pub fn setup(_: Version) -> BoxedStrategy<Setup> {
    (
        probe_level(),
        prop::option::of(prop_oneof!["/[a-z/]{0,16}(\\?[a-z=&]{0,8})?", text(8192)]),
        prop::option::of(role()),
    )
        .prop_map(|(probe, path, role)| Setup { probe, path, role })
        .boxed()
}

/// A frame header valid for `version` whose size passes the default frame cap.
pub fn frame_header(version: Version) -> BoxedStrategy<FrameHeader> {
    let delta = if version.is_lite05() {
        prop_oneof![
            -1000i64..1000,
            MIN_DELTA..=MAX_DELTA,
            prop::sample::select(vec![MIN_DELTA, MAX_DELTA, 0, -1, 1]),
        ]
        .boxed()
    } else {
        Just(0i64).boxed()
    };
    let size = prop_oneof![0u64..100, 0..=MAX_FRAME_SIZE, Just(MAX_FRAME_SIZE)];
    (delta, size)
        .prop_map(|(timestamp_delta, size)| FrameHeader {
            timestamp_delta,
            size,
        })
        .boxed()
}

/// A lite-05 datagram that fits 1200 bytes.
pub fn datagram() -> BoxedStrategy<Datagram> {
    (
        varint(),
        varint(),
        varint(),
        vec(any::<u8>(), 0..=1176usize),
    )
        .prop_map(|(subscribe_id, sequence, timestamp, payload)| Datagram {
            subscribe_id,
            sequence,
            timestamp,
            payload: Bytes::from(payload),
        })
        .boxed()
}

/// Any control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// ANNOUNCE_PLEASE / INTEREST / REQUEST.
    AnnounceRequest(AnnounceRequest),
    /// ANNOUNCE_OK.
    AnnounceOk(AnnounceOk),
    /// ANNOUNCE / ANNOUNCE_BROADCAST.
    Announce(Announce),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBSCRIBE_UPDATE.
    SubscribeUpdate(SubscribeUpdate),
    /// A typed subscribe response.
    Response(SubscribeResponse),
    /// FETCH.
    Fetch(Fetch),
    /// PROBE.
    Probe(Probe),
    /// GOAWAY.
    Goaway(Goaway),
    /// TRACK.
    TrackRequest(TrackRequest),
    /// TRACK_INFO.
    TrackInfo(TrackInfo),
    /// GROUP.
    GroupHeader(GroupHeader),
    /// SETUP.
    Setup(Setup),
}

macro_rules! msg_from {
    ($($v:ident),*) => {$(
        impl From<$v> for Msg {
            fn from(m: $v) -> Self {
                Msg::$v(m)
            }
        }
    )*};
}
msg_from!(
    AnnounceRequest,
    AnnounceOk,
    Announce,
    Subscribe,
    SubscribeUpdate,
    Fetch,
    Probe,
    Goaway,
    TrackRequest,
    TrackInfo,
    GroupHeader,
    Setup
);

impl From<SubscribeResponse> for Msg {
    fn from(m: SubscribeResponse) -> Self {
        Msg::Response(m)
    }
}

/// Run `$plain` with `$T` bound to the concrete [`Message`] type (and `$m` to the value) for
/// plain messages, or `$typed` with `$r` bound to the [`SubscribeResponse`].
macro_rules! dispatch {
    ($self:expr, |$m:pat_param, $T:ident| $plain:expr, |$r:pat_param| $typed:expr) => {
        match $self {
            Msg::AnnounceRequest($m) => {
                type $T = AnnounceRequest;
                $plain
            }
            Msg::AnnounceOk($m) => {
                type $T = AnnounceOk;
                $plain
            }
            Msg::Announce($m) => {
                type $T = Announce;
                $plain
            }
            Msg::Subscribe($m) => {
                type $T = Subscribe;
                $plain
            }
            Msg::SubscribeUpdate($m) => {
                type $T = SubscribeUpdate;
                $plain
            }
            Msg::Fetch($m) => {
                type $T = Fetch;
                $plain
            }
            Msg::Probe($m) => {
                type $T = Probe;
                $plain
            }
            Msg::Goaway($m) => {
                type $T = Goaway;
                $plain
            }
            Msg::TrackRequest($m) => {
                type $T = TrackRequest;
                $plain
            }
            Msg::TrackInfo($m) => {
                type $T = TrackInfo;
                $plain
            }
            Msg::GroupHeader($m) => {
                type $T = GroupHeader;
                $plain
            }
            Msg::Setup($m) => {
                type $T = Setup;
                $plain
            }
            Msg::Response($r) => $typed,
        }
    };
}

impl Msg {
    /// The name the codec uses in errors for this message.
    pub fn name(&self) -> &'static str {
        dispatch!(self, |_, T| <T as Message>::NAME, |r| match r {
            SubscribeResponse::Ok(_) => SubscribeOk::NAME,
            SubscribeResponse::Start(_) => SubscribeStart::NAME,
            SubscribeResponse::End(_) => SubscribeEnd::NAME,
            SubscribeResponse::Drop(_) => SubscribeDrop::NAME,
            _ => panic!("a variant this test does not know"),
        })
    }

    /// True for the typed subscribe responses (`Type (i)` before the length).
    pub fn is_typed(&self) -> bool {
        matches!(self, Msg::Response(_))
    }

    /// The body cap that applies to this message under `limits`.
    pub fn max_size(&self, limits: &Limits) -> usize {
        dispatch!(self, |_, T| <T as Message>::max_size(limits), |_r| limits
            .message_size())
    }

    /// Encode with the length prefix (and type, for responses).
    pub fn encode(&self, version: Version) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into(&mut out, version)?;
        Ok(out)
    }

    /// Encode into any sink.
    pub fn encode_into<S: Sink + ?Sized>(
        &self,
        sink: &mut S,
        version: Version,
    ) -> Result<(), EncodeError> {
        dispatch!(self, |m, _T| m.encode(sink, version), |r| r
            .encode(sink, version))
    }

    /// Decode a message of the same kind as `self`.
    pub fn decode_like(
        &self,
        cursor: &mut Cursor<'_>,
        version: Version,
        limits: &Limits,
    ) -> Result<Msg, DecodeError> {
        dispatch!(
            self,
            |_, T| T::decode_with(cursor, version, limits).map(Msg::from),
            |_r| SubscribeResponse::decode_with(cursor, version, limits).map(Msg::from)
        )
    }

    /// Read a message of the same kind as `self` from a stream reader.
    pub fn read_like(
        &self,
        reader: &mut StreamReader,
        version: Version,
        limits: &Limits,
    ) -> Result<Option<Msg>, DecodeError> {
        dispatch!(
            self,
            |_, T| reader
                .read_message::<T>(version, limits)
                .map(|m| m.map(Msg::from)),
            |_r| reader
                .read_subscribe_response(version, limits)
                .map(|m| m.map(Msg::from))
        )
    }
}

/// Every control message valid in `version`.
pub fn message(version: Version) -> BoxedStrategy<Msg> {
    let mut options: Vec<BoxedStrategy<Msg>> = vec![
        announce_request(version).prop_map(Msg::from).boxed(),
        announce(version).prop_map(Msg::from).boxed(),
        subscribe(version).prop_map(Msg::from).boxed(),
        subscribe_update(version).prop_map(Msg::from).boxed(),
        subscribe_response(version).prop_map(Msg::from).boxed(),
        fetch(version).prop_map(Msg::from).boxed(),
        probe(version).prop_map(Msg::from).boxed(),
        group_header(version).prop_map(Msg::from).boxed(),
    ];
    if version.has_goaway() {
        options.push(goaway(version).prop_map(Msg::from).boxed());
    }
    if version.is_lite05() {
        options.push(announce_ok(version).prop_map(Msg::from).boxed());
        options.push(track_request(version).prop_map(Msg::from).boxed());
        options.push(track_info(version).prop_map(Msg::from).boxed());
        options.push(setup(version).prop_map(Msg::from).boxed());
    }
    prop::strategy::Union::new(options).boxed()
}

/// A version and a control message valid in it.
pub fn any_message() -> BoxedStrategy<(Version, Msg)> {
    versioned(&VERSIONS, message)
}

/// An encoded control message split into its parts.
#[derive(Debug, Clone)]
pub struct Framed {
    /// The `Type (i)` bytes of a typed message (empty otherwise).
    pub ty: Vec<u8>,
    /// The declared body length.
    pub len: u64,
    /// The body.
    pub body: Vec<u8>,
}

impl Framed {
    /// Split an encoding made by [`Msg::encode`].
    pub fn split(msg: &Msg, bytes: &[u8]) -> Framed {
        let mut rest = bytes;
        let ty = if msg.is_typed() {
            get_varint(&mut rest).expect("type");
            bytes[..bytes.len() - rest.len()].to_vec()
        } else {
            Vec::new()
        };
        let len = get_varint(&mut rest).expect("length");
        assert_eq!(len as usize, rest.len(), "declared length covers the body");
        Framed {
            ty,
            len,
            body: rest.to_vec(),
        }
    }

    /// Reassemble with `body` and a minimal length prefix of `len`.
    pub fn with(ty: &[u8], len: u64, body: &[u8]) -> Vec<u8> {
        let mut out = ty.to_vec();
        put_varint(&mut out, len).expect("length fits");
        out.extend_from_slice(body);
        out
    }
}

/// Encode `value` as a varint of exactly `len` bytes (1, 2, 4 or 8), minimal or not.
pub fn varint_of_len(value: u64, len: usize) -> Vec<u8> {
    let tag: u8 = match len {
        1 => 0,
        2 => 1,
        4 => 2,
        8 => 3,
        _ => panic!("bad varint length {len}"),
    };
    let be = value.to_be_bytes();
    let mut out = be[8 - len..].to_vec();
    out[0] |= tag << 6;
    out
}
