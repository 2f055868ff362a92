//! Bad input: every malformed, truncated, oversized or out-of-version input fails with the
//! exact typed error, through both the whole-buffer decoders and the incremental readers.

mod common;

use bytes::Bytes;
use common::*;
use moq_proto::coding::{
    Cursor, DecodeError, EncodeError, Limits, MAX_FRAME_SIZE, MAX_GOAWAY_URI, MAX_GROUP_FRAMES,
    MAX_GROUP_SIZE, MAX_HOPS, MAX_MESSAGE_SIZE, MAX_PATH_LEN, MAX_PATH_SEGMENTS,
    MAX_SETUP_PARAMETERS, MAX_SETUP_PATH_LEN, MAX_SETUP_SIZE, MAX_TRACK_NAME_LEN, MAX_VARINT,
    put_optional, put_varint,
};
use moq_proto::wire::{
    Announce, AnnounceOk, AnnounceRequest, AnnounceStatus, BiStreamType, Datagram, Fetch,
    FrameDecoder, FrameHeader, FrameItem, Goaway, GroupHeader, GroupItem, GroupStreamReader,
    Message, Path, ProbeLevel, Setup, StreamReader, Subscribe, SubscribeDrop, SubscribeEnd,
    SubscribeOk, SubscribeResponse, SubscribeStart, SubscribeUpdate, TrackInfo, TrackRequest,
    UniStreamType, Version,
};
use proptest::collection::vec;
use proptest::prelude::*;

const L03: Version = Version::Lite03;
const L04: Version = Version::Lite04;
const L05: Version = Version::Lite05;

/// A body builder for hand-made (usually malformed) messages.
#[derive(Debug, Default, Clone)]
struct B(Vec<u8>);

impl B {
    fn new() -> Self {
        Self::default()
    }
    /// A minimal varint.
    fn v(mut self, value: u64) -> Self {
        put_varint(&mut self.0, value).expect("fits");
        self
    }
    /// A raw byte.
    fn b(mut self, byte: u8) -> Self {
        self.0.push(byte);
        self
    }
    /// A length-prefixed byte string.
    fn s(self, bytes: &[u8]) -> Self {
        let mut out = self.v(bytes.len() as u64);
        out.0.extend_from_slice(bytes);
        out
    }
    /// Raw bytes.
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    /// `Message Length` + body.
    fn msg(&self) -> Vec<u8> {
        Framed::with(&[], self.0.len() as u64, &self.0)
    }
    /// `Type` + `Message Length` + body.
    fn typed(&self, ty: u64) -> Vec<u8> {
        let mut t = Vec::new();
        put_varint(&mut t, ty).expect("fits");
        Framed::with(&t, self.0.len() as u64, &self.0)
    }
}

fn dec<M: Message>(bytes: &[u8], version: Version) -> Result<M, DecodeError> {
    M::decode(&mut Cursor::new(bytes), version)
}

/// Decode via a stream reader fed the whole buffer.
fn read<M: Message>(bytes: &[u8], version: Version) -> Result<Option<M>, DecodeError> {
    let mut reader = StreamReader::new();
    reader.push(Bytes::copy_from_slice(bytes));
    reader.read_message::<M>(version, &Limits::default())
}

/// Assert that both the cursor decoder and the stream reader give exactly `err`.
fn both<M: Message + std::fmt::Debug>(bytes: &[u8], version: Version, err: DecodeError) {
    assert_eq!(
        dec::<M>(bytes, version).unwrap_err(),
        err,
        "decode {version}"
    );
    assert_eq!(
        read::<M>(bytes, version).unwrap_err(),
        err,
        "reader {version}"
    );
}

fn too_large(what: &'static str, size: u64, max: u64) -> DecodeError {
    DecodeError::TooLarge { what, size, max }
}

// ---------------------------------------------------------------------------------------------
// Truncation, trailing bytes and oversized lengths, for every message of every version.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Cut at every offset (so the body, and maybe the length or type, is incomplete): the
    /// decoder says `Short` and leaves the cursor untouched; the stream reader waits.
    #[test]
    fn every_prefix_is_short((v, m) in any_message()) {
        let bytes = m.encode(v).unwrap();
        let limits = Limits::default();
        for cut in 0..bytes.len() {
            let mut cursor = Cursor::new(&bytes[..cut]);
            prop_assert_eq!(m.decode_like(&mut cursor, v, &limits), Err(DecodeError::Short), "cut {}", cut);
            prop_assert_eq!(cursor.remaining(), cut);
            let mut reader = StreamReader::new();
            reader.push(Bytes::copy_from_slice(&bytes[..cut]));
            prop_assert_eq!(m.read_like(&mut reader, v, &limits), Ok(None));
            prop_assert_eq!(reader.buffered(), cut);
        }
    }

    /// A length prefix claiming less than the body needs cuts it inside a field: `Truncated`
    /// naming the message, from both the decoder and the reader.
    #[test]
    fn short_declared_length_is_truncated((v, m) in any_message()) {
        let bytes = m.encode(v).unwrap();
        let framed = Framed::split(&m, &bytes);
        let limits = Limits::default();
        let expected = DecodeError::Truncated { what: m.name() };
        // Every cut for small bodies; a spread of cuts for long ones.
        let n = framed.body.len();
        let step = (n / 64).max(1);
        for k in (0..n).step_by(step).chain(n.checked_sub(1)) {
            let cut = Framed::with(&framed.ty, k as u64, &framed.body[..k]);
            let mut cursor = Cursor::new(&cut);
            prop_assert_eq!(m.decode_like(&mut cursor, v, &limits), Err(expected.clone()), "k {}", k);
            let mut reader = StreamReader::new();
            reader.push(Bytes::from(cut));
            prop_assert_eq!(m.read_like(&mut reader, v, &limits), Err(expected.clone()));
        }
    }

    /// Bytes left inside the declared length after the last field: `TrailingBytes`.
    #[test]
    fn trailing_bytes_in_body((v, m) in any_message(), extra in vec(any::<u8>(), 1..16)) {
        let bytes = m.encode(v).unwrap();
        let framed = Framed::split(&m, &bytes);
        let mut body = framed.body.clone();
        body.extend_from_slice(&extra);
        let padded = Framed::with(&framed.ty, body.len() as u64, &body);
        let expected = DecodeError::TrailingBytes { what: m.name(), remaining: extra.len() };
        let limits = Limits::default();
        prop_assert_eq!(m.decode_like(&mut Cursor::new(&padded), v, &limits), Err(expected.clone()));
        let mut reader = StreamReader::new();
        reader.push(Bytes::from(padded));
        prop_assert_eq!(m.read_like(&mut reader, v, &limits), Err(expected));
    }

    /// A declared length above the cap is refused as soon as the length varint is complete,
    /// with three body bytes present, by both the decoder and the reader fed byte by byte.
    #[test]
    fn oversized_length_rejected_immediately(
        (v, m) in any_message(),
        declared in prop_oneof![
            Just(60u64 << 20),
            Just(64u64 << 20),
            Just((64u64 << 20) + 1),
            Just(MAX_VARINT),
            (64u64 << 10)..=MAX_VARINT,
        ],
        raise in any::<bool>(),
    ) {
        let limits = if raise {
            Limits { max_message_size: usize::MAX, ..Limits::default() }
        } else {
            Limits::default()
        };
        let max = m.max_size(&limits) as u64;
        prop_assert!(max <= MAX_MESSAGE_SIZE as u64);
        let bytes = m.encode(v).unwrap();
        let framed = Framed::split(&m, &bytes);
        let mut input = framed.ty.clone();
        put_varint(&mut input, declared).unwrap();
        let header_len = input.len();
        input.extend_from_slice(&[1, 2, 3]);

        let mut cursor = Cursor::new(&input);
        let got = m.decode_like(&mut cursor, v, &limits);
        if declared > max {
            prop_assert_eq!(got, Err(too_large(m.name(), declared, max)));
        } else {
            prop_assert_eq!(got, Err(DecodeError::Short));
        }
        prop_assert_eq!(cursor.remaining(), input.len());

        let reader_what = if m.is_typed() { "subscribe response" } else { m.name() };
        let mut reader = StreamReader::new();
        for (i, byte) in input.iter().enumerate() {
            reader.push(Bytes::copy_from_slice(&[*byte]));
            let got = m.read_like(&mut reader, v, &limits);
            if i + 1 >= header_len && declared > max {
                prop_assert_eq!(got, Err(too_large(reader_what, declared, max)));
                break;
            }
            prop_assert_eq!(got, Ok(None), "byte {}", i);
            prop_assert!(reader.buffered() <= i + 1);
        }
    }
}

#[test]
fn sixty_mib_with_three_bytes() {
    let mut input = Vec::new();
    put_varint(&mut input, 60 << 20).unwrap();
    input.extend_from_slice(&[1, 2, 3]);
    let err = too_large("SUBSCRIBE", 60 << 20, 64 << 10);
    assert_eq!(dec::<Subscribe>(&input, L03), Err(err.clone()));
    assert_eq!(read::<Subscribe>(&input, L03), Err(err));
    // Under the reference's 64 MiB cap it is merely incomplete; above it, refused.
    let max = Limits {
        max_message_size: MAX_MESSAGE_SIZE,
        ..Limits::default()
    };
    let mut cursor = Cursor::new(&input);
    assert_eq!(
        Subscribe::decode_with(&mut cursor, L03, &max),
        Err(DecodeError::Short)
    );
    let mut reader = StreamReader::new();
    reader.push(Bytes::from(input));
    assert_eq!(reader.read_message::<Subscribe>(L03, &max), Ok(None));
    let mut big = Vec::new();
    put_varint(&mut big, (64 << 20) + 1).unwrap();
    assert_eq!(
        Subscribe::decode_with(&mut Cursor::new(&big), L03, &max),
        Err(too_large("SUBSCRIBE", (64 << 20) + 1, 64 << 20))
    );
    // SETUP has its own 64 KiB cap whatever the limits say.
    let mut setup = Vec::new();
    put_varint(&mut setup, (64 << 10) + 1).unwrap();
    assert_eq!(
        Setup::decode_with(&mut Cursor::new(&setup), L05, &max),
        Err(too_large("SETUP", (64 << 10) + 1, MAX_SETUP_SIZE as u64))
    );
}

// ---------------------------------------------------------------------------------------------
// Stream and message types.

#[test]
fn unknown_stream_types() {
    let bi_known = |code: u64, v: Version| match code {
        1..=4 => true,
        5 => v.has_goaway(),
        6 => v.is_lite05(),
        _ => false,
    };
    let uni_known = |code: u64, v: Version| code == 0 || (code == 1 && v.is_lite05());
    let codes: Vec<u64> = (0..=0x45)
        .chain([0x3fff, 0x4000, 1 << 30, MAX_VARINT])
        .collect();
    for v in VERSIONS {
        for &code in &codes {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, code).unwrap();
            let bi = BiStreamType::decode(&mut Cursor::new(&bytes), v);
            let uni = UniStreamType::decode(&mut Cursor::new(&bytes), v);
            let mut r = StreamReader::new();
            r.push(Bytes::copy_from_slice(&bytes));
            let bi_read = r.read_bi_type(v);
            let mut r = StreamReader::new();
            r.push(Bytes::copy_from_slice(&bytes));
            let uni_read = r.read_uni_type(v);
            if bi_known(code, v) {
                let t = bi.unwrap();
                assert_eq!(t.code(), code);
                assert!(t.supported(v));
                assert_eq!(bi_read, Ok(Some(t)));
            } else {
                assert_eq!(
                    bi,
                    Err(DecodeError::UnknownStreamType(code)),
                    "bi {code:#x} {v}"
                );
                assert_eq!(bi_read, Err(DecodeError::UnknownStreamType(code)));
            }
            if uni_known(code, v) {
                assert_eq!(uni.unwrap().code(), code);
                assert_eq!(uni_read.unwrap().unwrap().code(), code);
            } else {
                assert_eq!(
                    uni,
                    Err(DecodeError::UnknownStreamType(code)),
                    "uni {code:#x} {v}"
                );
                assert_eq!(uni_read, Err(DecodeError::UnknownStreamType(code)));
            }
            // A group stream reader accepts only type 0 (a Setup stream is not a group).
            let mut g = GroupStreamReader::new(v, Limits::default());
            g.push(Bytes::copy_from_slice(&bytes), false);
            let got = g.read();
            if code == 0 {
                assert_eq!(got, Ok(None));
            } else {
                assert_eq!(got, Err(DecodeError::UnknownStreamType(code)));
            }
        }
    }
    // The cases the reference cares about, spelled out.
    for (v, code) in [(L03, 0), (L04, 0), (L05, 0), (L03, 5), (L03, 6), (L04, 6)] {
        assert_eq!(
            BiStreamType::from_code(code, v),
            Err(DecodeError::UnknownStreamType(code))
        );
    }
    for v in VERSIONS {
        assert_eq!(
            BiStreamType::from_code(7, v),
            Err(DecodeError::UnknownStreamType(7))
        );
        assert_eq!(
            UniStreamType::from_code(7, v),
            Err(DecodeError::UnknownStreamType(7))
        );
    }
    for v in [L03, L04] {
        assert_eq!(
            UniStreamType::from_code(1, v),
            Err(DecodeError::UnknownStreamType(1))
        );
    }
    // Non-minimal type encodings are still read (gomoqt writes one byte; we accept any form).
    assert_eq!(
        BiStreamType::decode(&mut Cursor::new(&[0x40, 0x02]), L03),
        Ok(BiStreamType::Subscribe)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A subscribe response type the version does not define: `UnknownMessageType`.
    #[test]
    fn unknown_subscribe_response_types(
        v in version(),
        ty in prop_oneof![2u64..64, varint()],
        body in vec(any::<u8>(), 0..8),
    ) {
        let first_unknown = if v.is_lite05() { 3 } else { 2 };
        prop_assume!(ty >= first_unknown);
        let bytes = B::new().raw(&body).typed(ty);
        let err = DecodeError::UnknownMessageType { what: "subscribe response", value: ty };
        prop_assert_eq!(SubscribeResponse::decode(&mut Cursor::new(&bytes), v), Err(err.clone()));
        let mut r = StreamReader::new();
        r.push(Bytes::from(bytes));
        prop_assert_eq!(r.read_subscribe_response(v, &Limits::default()), Err(err));
    }
}

#[test]
fn subscribe_response_types_per_version() {
    // Type 2 is SUBSCRIBE_DROP on 05 and unknown before.
    let drop = B::new().v(5).v(7).v(0).typed(2);
    assert_eq!(
        SubscribeResponse::decode(&mut Cursor::new(&drop), L05),
        Ok(SubscribeResponse::Drop(SubscribeDrop {
            start: 5,
            end: 7,
            error: 0
        }))
    );
    for v in [L03, L04] {
        assert_eq!(
            SubscribeResponse::decode(&mut Cursor::new(&drop), v),
            Err(DecodeError::UnknownMessageType {
                what: "subscribe response",
                value: 2
            })
        );
    }
    // Type 1 is DROP on 03/04 and END on 05.
    let one = B::new().v(5).v(7).v(0).typed(1);
    assert!(matches!(
        SubscribeResponse::decode(&mut Cursor::new(&one), L04),
        Ok(SubscribeResponse::Drop(_))
    ));
    assert_eq!(
        SubscribeResponse::decode(&mut Cursor::new(&one), L05),
        Err(DecodeError::TrailingBytes {
            what: "SUBSCRIBE_END",
            remaining: 2
        })
    );
}

// ---------------------------------------------------------------------------------------------
// UTF-8.

fn invalid_utf8() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            vec![0xff],
            vec![0xc3],
            vec![0xc0, 0xaf],
            vec![0xed, 0xa0, 0x80],
            vec![0xf4, 0x90, 0x80, 0x80],
            b"demo/\xfe".to_vec(),
        ]),
        vec(any::<u8>(), 1..12).prop_filter("invalid", |b| std::str::from_utf8(b).is_err()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Non-UTF-8 in every string field: paths, track names, the GOAWAY URI, the SETUP path.
    #[test]
    fn invalid_utf8_rejected(bad in invalid_utf8(), v in version()) {
        let utf8 = |what| DecodeError::InvalidUtf8 { what };
        let mut req = B::new().s(&bad);
        if v.has_hops() {
            req = req.v(0);
        }
        both::<AnnounceRequest>(&req.msg(), v, utf8("announce prefix"));
        both::<Announce>(&B::new().b(1).s(&bad).v(0).msg(), v, utf8("announce suffix"));
        let sub = |path: &[u8], track: &[u8]| {
            B::new().v(1).s(path).s(track).b(0).b(0).v(0).v(0).v(0).msg()
        };
        both::<Subscribe>(&sub(&bad, b"t"), v, utf8("broadcast path"));
        both::<Subscribe>(&sub(b"/a", &bad), v, utf8("track name"));
        let fetch = |path: &[u8], track: &[u8]| B::new().s(path).s(track).b(0).v(0).msg();
        both::<Fetch>(&fetch(&bad, b"t"), v, utf8("broadcast path"));
        both::<Fetch>(&fetch(b"/a", &bad), v, utf8("track name"));
        if v.has_goaway() {
            both::<Goaway>(&B::new().s(&bad).msg(), v, utf8("GOAWAY URI"));
        }
        if v.is_lite05() {
            both::<TrackRequest>(&B::new().s(&bad).s(b"t").msg(), v, utf8("broadcast path"));
            both::<TrackRequest>(&B::new().s(b"/a").s(&bad).msg(), v, utf8("track name"));
            // Parameter count 1, ID 2 (Path), Length, raw bytes.
            both::<Setup>(&B::new().v(1).v(2).s(&bad).msg(), v, utf8("SETUP path"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Caps on strings, paths, hops and parameters.

#[test]
fn string_and_path_caps() {
    for v in VERSIONS {
        // Track name: 4096 bytes pass, 4097 are refused from the length alone.
        let sub = |track: &[u8]| {
            B::new()
                .v(1)
                .s(b"/a")
                .s(track)
                .b(0)
                .b(0)
                .v(0)
                .v(0)
                .v(0)
                .msg()
        };
        assert!(dec::<Subscribe>(&sub(&[b't'; MAX_TRACK_NAME_LEN]), v).is_ok());
        both::<Subscribe>(
            &sub(&[b't'; MAX_TRACK_NAME_LEN + 1]),
            v,
            too_large("track name", 4097, 4096),
        );
        // Path: 33 segments → TooLarge; slashes do not count toward the byte cap but the raw
        // string is capped at twice the path cap.
        let segs33 = vec!["x"; MAX_PATH_SEGMENTS + 1].join("/");
        let fetch = |path: &[u8]| B::new().s(path).s(b"t").b(0).v(0).msg();
        both::<Fetch>(
            &fetch(segs33.as_bytes()),
            v,
            too_large("path segments", 33, 32),
        );
        let segs32 = format!("//{}//", vec!["x"; MAX_PATH_SEGMENTS].join("///"));
        assert!(dec::<Fetch>(&fetch(segs32.as_bytes()), v).is_ok());
        both::<Fetch>(
            &fetch(&[b'a'; MAX_PATH_LEN + 1]),
            v,
            too_large("path", 4097, 4096),
        );
        let slashes = format!("{}{}", "/".repeat(MAX_PATH_LEN), "a".repeat(MAX_PATH_LEN));
        assert!(dec::<Fetch>(&fetch(slashes.as_bytes()), v).is_ok());
        both::<Fetch>(
            &fetch(&[b'/'; 2 * MAX_PATH_LEN + 1]),
            v,
            too_large("broadcast path", 8193, 8192),
        );
        let mut req = B::new().s(&vec![b'p'; MAX_PATH_LEN + 1]);
        if v.has_hops() {
            req = req.v(0);
        }
        both::<AnnounceRequest>(&req.msg(), v, too_large("path", 4097, 4096));
        both::<Announce>(
            &B::new().b(1).s(segs33.as_bytes()).v(0).msg(),
            v,
            too_large("path segments", 33, 32),
        );
    }
    // GOAWAY URI: 8192 pass, 8193 refused.
    for v in [L04, L05] {
        assert!(dec::<Goaway>(&B::new().s(&[b'u'; MAX_GOAWAY_URI]).msg(), v).is_ok());
        both::<Goaway>(
            &B::new().s(&[b'u'; MAX_GOAWAY_URI + 1]).msg(),
            v,
            too_large("GOAWAY URI", 8193, 8192),
        );
    }
    // TRACK: the same caps.
    both::<TrackRequest>(
        &B::new().s(b"/a").s(&[b't'; MAX_TRACK_NAME_LEN + 1]).msg(),
        L05,
        too_large("track name", 4097, 4096),
    );
}

#[test]
fn encode_side_caps() {
    let long_track = "t".repeat(MAX_TRACK_NAME_LEN + 1);
    let sub = Subscribe {
        id: 0,
        broadcast: Path::root(),
        track: long_track.clone(),
        priority: 0,
        ordered: false,
        max_latency: std::time::Duration::ZERO,
        start: None,
        end: None,
    };
    assert_eq!(
        sub.to_bytes(L03),
        Err(EncodeError::TooLarge {
            what: "track name",
            size: 4097,
            max: 4096
        })
    );
    let fetch = Fetch {
        broadcast: Path::root(),
        track: long_track,
        priority: 0,
        group: 0,
    };
    assert!(matches!(
        fetch.to_bytes(L05),
        Err(EncodeError::TooLarge { .. })
    ));
    let goaway = Goaway {
        uri: "u".repeat(MAX_GOAWAY_URI + 1),
    };
    assert_eq!(
        goaway.to_bytes(L04),
        Err(EncodeError::TooLarge {
            what: "GOAWAY URI",
            size: 8193,
            max: 8192
        })
    );
    let setup = Setup {
        path: Some("p".repeat(MAX_SETUP_PATH_LEN + 1)),
        ..Setup::default()
    };
    assert_eq!(
        setup.to_bytes(L05),
        Err(EncodeError::TooLarge {
            what: "SETUP path",
            size: 8193,
            max: 8192
        })
    );
    // Optional groups are `n + 1`: the largest varint is not expressible.
    let update = SubscribeUpdate {
        priority: 0,
        ordered: false,
        max_latency: std::time::Duration::ZERO,
        start: Some(MAX_VARINT),
        end: None,
    };
    assert!(matches!(
        update.to_bytes(L03),
        Err(EncodeError::VarIntOverflow(_))
    ));
    assert_eq!(
        put_optional(&mut Vec::new(), Some(MAX_VARINT - 1)),
        Ok(()),
        "2^62 - 2 is the largest group"
    );
    // Plain varint fields above 2^62 - 1.
    let probe = moq_proto::wire::Probe {
        bitrate: MAX_VARINT + 1,
        rtt_ms: 0,
    };
    assert_eq!(
        probe.to_bytes(L04),
        Err(EncodeError::VarIntOverflow(MAX_VARINT + 1))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A hop count above 32 is refused from the count alone, on every version.
    #[test]
    fn hop_count_cap(v in version(), count in prop_oneof![33u64..100, varint()]) {
        prop_assume!(count > MAX_HOPS as u64);
        let bytes = B::new().b(1).s(b"cam").v(count).msg();
        both::<Announce>(&bytes, v, too_large("hop list", count, 32));
    }

    /// A duplicate non-zero hop is refused (04/05); zeros may repeat.
    #[test]
    fn duplicate_hops(
        v in prop::sample::select(vec![L04, L05]),
        before in vec(prop_oneof![Just(0u64), 100u64..200], 0..10),
        dup in 1u64..=MAX_VARINT,
        between in vec(prop_oneof![Just(0u64), 300u64..400], 0..10),
        after in vec(any::<u64>().prop_map(|h| h & MAX_VARINT), 0..10),
    ) {
        prop_assume!(!before.contains(&dup) && !between.contains(&dup));
        let mut hops = before.clone();
        hops.push(dup);
        // Make `before` duplicate-free apart from zeros.
        let mut seen = Vec::new();
        hops.retain(|h| *h == 0 || { let new = !seen.contains(h); seen.push(*h); new });
        hops.extend(&between);
        hops.push(dup);
        hops.extend(&after);
        prop_assume!(hops.len() <= MAX_HOPS);
        let mut body = B::new().b(1).s(b"cam").v(hops.len() as u64);
        for h in &hops {
            body = body.v(*h);
        }
        // Expect the first non-zero ID that repeats an earlier one.
        let first = hops.iter().enumerate()
            .find(|(i, h)| **h != 0 && hops[..*i].contains(h))
            .map(|(_, h)| *h)
            .unwrap();
        both::<Announce>(&body.msg(), v, DecodeError::DuplicateHop(first));
        let announce = Announce { status: AnnounceStatus::Active, suffix: Path::new("cam").unwrap(), hops };
        prop_assert_eq!(announce.to_bytes(v), Err(EncodeError::InvalidValue { what: "duplicate hop id", value: first }));
    }

    /// Any number of zero hops (up to the cap) is fine.
    #[test]
    fn zero_hops_repeat(v in version(), n in 0usize..=MAX_HOPS, id in 1u64..1000) {
        let mut hops = vec![0; n];
        if v.has_hops() && n > 0 {
            hops[n / 2] = id;
        }
        let a = Announce { status: AnnounceStatus::Active, suffix: Path::root(), hops };
        let bytes = a.to_bytes(v).unwrap();
        let got = dec::<Announce>(&bytes, v).unwrap();
        prop_assert_eq!(got.hops.len(), n);
        if v.has_hops() {
            prop_assert_eq!(got, a);
        }
    }
}

#[test]
fn hop_list_encode_cap() {
    for v in VERSIONS {
        let a = Announce {
            status: AnnounceStatus::Active,
            suffix: Path::root(),
            hops: vec![0; MAX_HOPS + 1],
        };
        assert_eq!(
            a.to_bytes(v),
            Err(EncodeError::TooLarge {
                what: "hop list",
                size: 33,
                max: 32
            })
        );
    }
}

#[test]
fn announce_status_values() {
    for v in VERSIONS {
        for status in 0u8..=255 {
            let bytes = B::new().b(status).s(b"cam").v(0).msg();
            let got = dec::<Announce>(&bytes, v);
            match (status, v.is_lite05()) {
                (0, _) => assert_eq!(got.unwrap().status, AnnounceStatus::Ended),
                (1, _) => assert_eq!(got.unwrap().status, AnnounceStatus::Active),
                (2, true) => assert_eq!(got.unwrap().status, AnnounceStatus::Restart),
                _ => assert_eq!(
                    got,
                    Err(DecodeError::InvalidValue {
                        what: "announce status",
                        value: u64::from(status)
                    }),
                    "{status} {v}"
                ),
            }
        }
    }
    for v in [L03, L04] {
        let a = Announce {
            status: AnnounceStatus::Restart,
            suffix: Path::root(),
            hops: Vec::new(),
        };
        assert_eq!(
            a.to_bytes(v),
            Err(EncodeError::InvalidValue {
                what: "announce status",
                value: 2
            })
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SETUP parameters.

/// A SETUP parameter with a valid value for its ID.
fn setup_param() -> impl Strategy<Value = (u64, Vec<u8>)> {
    prop_oneof![
        (0u64..=2).prop_map(|l| (1u64, B::new().v(l).0)),
        "[a-z/]{0,8}".prop_map(|p| (2u64, p.into_bytes())),
        (0u64..=5).prop_map(|r| (3u64, B::new().v(r).0)),
        (4u64..=MAX_VARINT, vec(any::<u8>(), 0..4)),
    ]
}

fn setup_body(params: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut b = B::new().v(params.len() as u64);
    for (id, value) in params {
        b = b.v(*id).s(value);
    }
    b.msg()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any repeated ID, known or unknown: `DuplicateParameter` naming the first repeat.
    #[test]
    fn duplicate_setup_parameter(
        params in vec(setup_param(), 1..20),
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
    ) {
        let mut params = params;
        let dup = params[pick.index(params.len())].clone();
        params.insert(at.index(params.len() + 1), dup);
        prop_assume!(params.len() <= MAX_SETUP_PARAMETERS as usize);
        let first = params.iter().enumerate()
            .find(|(i, (id, _))| params[..*i].iter().any(|(other, _)| other == id))
            .map(|(_, (id, _))| *id)
            .unwrap();
        both::<Setup>(&setup_body(&params), L05, DecodeError::DuplicateParameter(first));
    }

    /// More than 64 parameters is refused from the count alone.
    #[test]
    fn too_many_setup_parameters(count in prop_oneof![65u64..200, varint()]) {
        prop_assume!(count > MAX_SETUP_PARAMETERS);
        let bytes = B::new().v(count).v(9).v(0).msg();
        both::<Setup>(&bytes, L05, too_large("SETUP parameters", count, 64));
    }
}

#[test]
fn setup_parameter_values() {
    // Exactly 64 unknown parameters are fine.
    let params: Vec<(u64, Vec<u8>)> = (0..64).map(|i| (100 + i, vec![i as u8])).collect();
    assert_eq!(
        dec::<Setup>(&setup_body(&params), L05),
        Ok(Setup::default())
    );
    // A varint parameter must hold exactly one varint.
    both::<Setup>(
        &setup_body(&[(1, vec![1, 0])]),
        L05,
        DecodeError::TrailingBytes {
            what: "probe parameter",
            remaining: 1,
        },
    );
    both::<Setup>(
        &setup_body(&[(3, vec![0x40, 0x02, 0xff])]),
        L05,
        DecodeError::TrailingBytes {
            what: "role parameter",
            remaining: 1,
        },
    );
    both::<Setup>(
        &setup_body(&[(1, vec![])]),
        L05,
        DecodeError::Truncated {
            what: "probe parameter",
        },
    );
    both::<Setup>(
        &setup_body(&[(3, vec![0x80, 0])]),
        L05,
        DecodeError::Truncated {
            what: "role parameter",
        },
    );
    // A non-minimal varint value is fine.
    let setup = dec::<Setup>(&setup_body(&[(1, varint_of_len(1, 8))]), L05).unwrap();
    assert_eq!(setup.probe, ProbeLevel::Report);
    // A parameter length above the SETUP cap is refused from the length alone.
    let bytes = B::new().v(1).v(9).v((64 << 10) + 1).msg();
    both::<Setup>(
        &bytes,
        L05,
        too_large("SETUP parameter", (64 << 10) + 1, 64 << 10),
    );
    // The Path parameter is capped at 8 KiB.
    let bytes = setup_body(&[(2, vec![b'/'; MAX_SETUP_PATH_LEN + 1])]);
    both::<Setup>(&bytes, L05, too_large("SETUP path", 8193, 8192));
    let bytes = setup_body(&[(2, vec![b'/'; MAX_SETUP_PATH_LEN])]);
    assert!(dec::<Setup>(&bytes, L05).is_ok());
    // A parameter value running past the body is a truncated SETUP.
    let bytes = B::new().v(1).v(9).v(5).raw(&[1, 2]).msg();
    both::<Setup>(&bytes, L05, DecodeError::Truncated { what: "SETUP" });
}

// ---------------------------------------------------------------------------------------------
// Values out of domain; messages outside their version.

#[test]
fn zero_timescale() {
    let bytes = B::new().b(127).b(0).v(5000).v(0).msg();
    both::<TrackInfo>(
        &bytes,
        L05,
        DecodeError::InvalidValue {
            what: "timescale",
            value: 0,
        },
    );
    let info = TrackInfo {
        timescale: 0,
        ..TrackInfo::default()
    };
    assert_eq!(
        info.to_bytes(L05),
        Err(EncodeError::InvalidValue {
            what: "timescale",
            value: 0
        })
    );
    assert!(
        TrackInfo::default().to_bytes(L05).is_ok(),
        "the default timescale is non-zero"
    );
}

#[test]
fn drop_range_reversed() {
    for (v, ty) in [(L03, 1), (L04, 1), (L05, 2)] {
        let bytes = B::new().v(7).v(5).v(0).typed(ty);
        assert_eq!(
            SubscribeResponse::decode(&mut Cursor::new(&bytes), v),
            Err(DecodeError::InvalidValue {
                what: "drop range end",
                value: 5
            })
        );
        let drop = SubscribeResponse::Drop(SubscribeDrop {
            start: 7,
            end: 5,
            error: 0,
        });
        assert_eq!(
            drop.encode(&mut Vec::new(), v),
            Err(EncodeError::InvalidValue {
                what: "drop range end",
                value: 5
            })
        );
    }
}

#[test]
fn messages_outside_their_version() {
    fn unsupported<M: Message + std::fmt::Debug + PartialEq>(m: M, v: Version) {
        assert_eq!(
            m.to_bytes(v),
            Err(EncodeError::UnsupportedVersion {
                what: M::NAME,
                version: v
            })
        );
        // Decoding is refused before the length is even read.
        for bytes in [&[][..], &[0x00][..], &[0x01, 0x00][..]] {
            assert_eq!(
                dec::<M>(bytes, v),
                Err(DecodeError::UnsupportedVersion {
                    what: M::NAME,
                    version: v
                })
            );
        }
    }
    for v in [L03, L04] {
        unsupported(
            AnnounceOk {
                hop_id: 0,
                active_count: 0,
            },
            v,
        );
        unsupported(
            TrackRequest {
                broadcast: Path::root(),
                track: String::new(),
            },
            v,
        );
        unsupported(TrackInfo::default(), v);
        unsupported(Setup::default(), v);
        unsupported(SubscribeStart { group: 0 }, v);
        unsupported(SubscribeEnd { group: 0 }, v);
        let dg = Datagram {
            subscribe_id: 0,
            sequence: 0,
            timestamp: 0,
            payload: Bytes::new(),
        };
        assert_eq!(
            dg.encode_header(&mut Vec::new(), v),
            Err(EncodeError::UnsupportedVersion {
                what: "datagram",
                version: v
            })
        );
        assert_eq!(
            Datagram::decode(&Bytes::from_static(&[0, 0, 0]), v, 1200),
            Err(DecodeError::UnsupportedVersion {
                what: "datagram",
                version: v
            })
        );
        let ts = FrameHeader {
            timestamp_delta: 1,
            size: 0,
        };
        assert_eq!(
            ts.encode(&mut Vec::new(), v),
            Err(EncodeError::UnsupportedVersion {
                what: "frame timestamp",
                version: v
            })
        );
    }
    unsupported(Goaway { uri: String::new() }, L03);
    unsupported(
        SubscribeOk {
            priority: 0,
            ordered: false,
            max_latency: std::time::Duration::ZERO,
            start: None,
            end: None,
        },
        L05,
    );
}

// ---------------------------------------------------------------------------------------------
// Datagrams.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A datagram cut inside its header is Truncated; cut inside the payload it is just shorter.
    #[test]
    fn datagram_prefixes(d in datagram(), cut in any::<prop::sample::Index>()) {
        let mut body = Vec::new();
        d.encode_header(&mut body, L05).unwrap();
        let header_len = body.len();
        body.extend_from_slice(&d.payload);
        let k = cut.index(body.len() + 1);
        let got = Datagram::decode(&Bytes::copy_from_slice(&body[..k]), L05, 1200);
        if k < header_len {
            prop_assert_eq!(got, Err(DecodeError::Truncated { what: "datagram" }));
        } else {
            prop_assert_eq!(got.unwrap().payload.len(), k - header_len);
        }
    }
}

#[test]
fn datagram_size_caps() {
    let body = Bytes::from(vec![0u8; 1201]);
    assert_eq!(
        Datagram::decode(&body, L05, 1200),
        Err(too_large("datagram", 1201, 1200))
    );
    assert!(Datagram::decode(&body, L05, 1201).is_ok());
    let dg = Datagram {
        subscribe_id: 1,
        sequence: 2,
        timestamp: 3,
        payload: Bytes::from(vec![0u8; 1198]),
    };
    assert_eq!(
        dg.encode_header(&mut Vec::new(), L05),
        Err(EncodeError::TooLarge {
            what: "datagram",
            size: 1201,
            max: 1200
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Frames and group streams.

/// Drive a group stream reader over `chunks` (FIN after the last) until an error or the end.
fn drive_group(
    version: Version,
    limits: Limits,
    chunks: &[Bytes],
    fin: bool,
) -> Result<Vec<GroupItem>, DecodeError> {
    let mut reader = GroupStreamReader::new(version, limits);
    let mut items = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        reader.push(chunk.clone(), fin && i + 1 == chunks.len());
        while let Some(item) = reader.read()? {
            let end = item == GroupItem::Frame(FrameItem::End);
            items.push(item);
            if end {
                return Ok(items);
            }
        }
    }
    if fin && chunks.is_empty() {
        reader.push(Bytes::new(), true);
        while let Some(item) = reader.read()? {
            items.push(item);
        }
    }
    Ok(items)
}

fn frame_bytes(version: Version, delta: i64, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    FrameHeader {
        timestamp_delta: delta,
        size,
    }
    .encode(&mut out, version)
    .unwrap();
    out
}

fn group_prefix() -> Vec<u8> {
    let mut out = vec![0x00];
    GroupHeader {
        subscribe_id: 1,
        sequence: 2,
    }
    .encode(&mut out, L03)
    .unwrap();
    out
}

#[test]
fn frame_size_cap() {
    for v in VERSIONS {
        let over = MAX_FRAME_SIZE + 1;
        let err = too_large("frame", over, MAX_FRAME_SIZE);
        let header = frame_bytes(v, 0, over);
        assert_eq!(
            FrameHeader::decode(&mut Cursor::new(&header), v),
            Err(err.clone())
        );
        let mut r = StreamReader::new();
        r.push(Bytes::from(header.clone()));
        assert_eq!(r.read_frame_header(v, &Limits::default()), Err(err.clone()));
        let mut r = StreamReader::new();
        r.push(Bytes::from(header.clone()));
        assert_eq!(
            FrameDecoder::new(v).read(&mut r, &Limits::default()),
            Err(err.clone())
        );
        let mut stream = group_prefix();
        stream.extend(&header);
        assert_eq!(
            drive_group(v, Limits::default(), &[Bytes::from(stream)], false),
            Err(err)
        );
        // The largest varint too, and a tighter configured cap.
        let huge = frame_bytes(v, 0, MAX_VARINT);
        assert_eq!(
            FrameHeader::decode(&mut Cursor::new(&huge), v),
            Err(too_large("frame", MAX_VARINT, MAX_FRAME_SIZE))
        );
        let tight = Limits {
            max_frame_size: 100,
            ..Limits::default()
        };
        let header = frame_bytes(v, 0, 101);
        assert_eq!(
            FrameHeader::decode_with(&mut Cursor::new(&header), v, &tight),
            Err(too_large("frame", 101, 100))
        );
        // A configured cap above the hard one is clamped.
        let loose = Limits {
            max_frame_size: u64::MAX,
            ..Limits::default()
        };
        assert_eq!(
            FrameHeader::decode_with(&mut Cursor::new(&frame_bytes(v, 0, over)), v, &loose),
            Err(too_large("frame", over, MAX_FRAME_SIZE))
        );
        // Exactly the cap is accepted.
        assert!(
            FrameHeader::decode(&mut Cursor::new(&frame_bytes(v, 0, MAX_FRAME_SIZE)), v).is_ok()
        );
    }
}

#[test]
fn group_frame_count_cap() {
    for v in VERSIONS {
        let mut stream = group_prefix();
        for _ in 0..MAX_GROUP_FRAMES {
            stream.extend(frame_bytes(v, 0, 0));
        }
        // 8192 empty frames are fine.
        let items = drive_group(v, Limits::default(), &[Bytes::from(stream.clone())], true)
            .expect("8192 frames");
        assert_eq!(items.len(), 1 + MAX_GROUP_FRAMES as usize + 1);
        stream.extend(frame_bytes(v, 0, 0));
        assert_eq!(
            drive_group(v, Limits::default(), &[Bytes::from(stream)], true),
            Err(too_large(
                "group frames",
                MAX_GROUP_FRAMES + 1,
                MAX_GROUP_FRAMES
            ))
        );
    }
}

#[test]
fn group_size_cap() {
    for v in VERSIONS {
        // Two 20 MiB frames: the second header already breaks the 32 MiB group cap, so only the
        // first payload has to arrive (as one zero-copy chunk).
        let frame = 20u64 << 20;
        let mut head = group_prefix();
        head.extend(frame_bytes(v, 0, frame));
        let payload = Bytes::from(vec![0u8; frame as usize]);
        let second = Bytes::from(frame_bytes(v, 0, frame));
        assert_eq!(
            drive_group(
                v,
                Limits::default(),
                &[Bytes::from(head), payload, second],
                false
            ),
            Err(too_large("group", 2 * frame, MAX_GROUP_SIZE))
        );
        // A tighter configured cap.
        let tight = Limits {
            max_group_size: 10,
            ..Limits::default()
        };
        let mut stream = group_prefix();
        stream.extend(frame_bytes(v, 0, 6));
        stream.extend([0; 6]);
        stream.extend(frame_bytes(v, 0, 5));
        assert_eq!(
            drive_group(v, tight, &[Bytes::from(stream)], false),
            Err(too_large("group", 11, 10))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// FIN at every offset of a group stream: on a frame boundary the group ends; anywhere else
    /// the error is `Truncated` naming the unit that was cut.
    #[test]
    fn fin_at_every_offset(
        v in version(),
        header in group_header(L03),
        sizes in vec(0usize..6, 0..5),
        one_byte in any::<bool>(),
    ) {
        // Build the stream and remember which unit each byte belongs to.
        let mut bytes = vec![0x00];
        let mut unit = vec!["stream type"];
        let mut h = Vec::new();
        header.encode(&mut h, v).unwrap();
        unit.extend(std::iter::repeat_n("GROUP", h.len()));
        bytes.extend(h);
        let mut boundaries = vec![bytes.len()];
        for (i, size) in sizes.iter().enumerate() {
            let fh = frame_bytes(v, if v.is_lite05() { i as i64 * 33 } else { 0 }, *size as u64);
            unit.extend(std::iter::repeat_n("frame header", fh.len()));
            bytes.extend(fh);
            unit.extend(std::iter::repeat_n("frame", *size));
            bytes.extend(std::iter::repeat_n(0xab, *size));
            boundaries.push(bytes.len());
        }
        for cut in 0..=bytes.len() {
            let chunks: Vec<Bytes> = if one_byte {
                bytes[..cut].iter().map(|b| Bytes::copy_from_slice(&[*b])).collect()
            } else {
                vec![Bytes::copy_from_slice(&bytes[..cut])]
            };
            let got = drive_group(v, Limits::default(), &chunks, true);
            if boundaries.contains(&cut) {
                let items = got.unwrap();
                prop_assert_eq!(items.last(), Some(&GroupItem::Frame(FrameItem::End)));
                let frames = items.iter().filter(|i| matches!(i, GroupItem::Frame(FrameItem::Header { .. }))).count();
                prop_assert_eq!(frames, boundaries.iter().position(|b| *b == cut).unwrap());
            } else {
                // A cut byte belongs to the unit of the byte just after the cut.
                prop_assert_eq!(got, Err(DecodeError::Truncated { what: unit[cut] }), "cut {}", cut);
            }
        }
    }
}

#[test]
fn fin_inside_fetch_reply_frame() {
    // FrameDecoder alone (a FETCH reply): FIN inside a payload, then inside a header.
    for v in VERSIONS {
        let mut bytes = frame_bytes(v, 0, 4);
        bytes.extend([1, 2]);
        let mut r = StreamReader::new();
        r.push(Bytes::from(bytes));
        r.finish();
        let mut d = FrameDecoder::new(v);
        let limits = Limits::default();
        assert!(matches!(
            d.read(&mut r, &limits),
            Ok(Some(FrameItem::Header { size: 4, .. }))
        ));
        assert!(matches!(
            d.read(&mut r, &limits),
            Ok(Some(FrameItem::Payload { remaining: 2, .. }))
        ));
        assert_eq!(
            d.read(&mut r, &limits),
            Err(DecodeError::Truncated { what: "frame" })
        );

        let header = frame_bytes(v, 0, 300);
        let mut r = StreamReader::new();
        r.push(Bytes::copy_from_slice(&header[..header.len() - 1]));
        r.finish();
        assert_eq!(
            FrameDecoder::new(v).read(&mut r, &limits),
            Err(DecodeError::Truncated {
                what: "frame header"
            })
        );
    }
}

#[test]
fn timestamp_out_of_range() {
    let limits = Limits::default();
    // A negative first delta would put the timestamp below zero.
    let mut r = StreamReader::new();
    r.push(Bytes::from(frame_bytes(L05, -1, 0)));
    assert_eq!(
        FrameDecoder::new(L05).read(&mut r, &limits),
        Err(DecodeError::TimestampOutOfRange(-1))
    );
    // Three maximal forward deltas leave the varint range.
    let max = (1i64 << 61) - 1;
    let mut r = StreamReader::new();
    for _ in 0..3 {
        r.push(Bytes::from(frame_bytes(L05, max, 0)));
    }
    let mut d = FrameDecoder::new(L05);
    assert!(d.read(&mut r, &limits).unwrap().is_some());
    assert!(d.read(&mut r, &limits).unwrap().is_some());
    assert_eq!(
        d.read(&mut r, &limits),
        Err(DecodeError::TimestampOutOfRange(max))
    );
    // The encoder refuses deltas whose zigzag would not fit a varint.
    for delta in [max + 1, -(1i64 << 61) - 1, i64::MIN, i64::MAX] {
        assert!(matches!(
            FrameHeader {
                timestamp_delta: delta,
                size: 0
            }
            .encode(&mut Vec::new(), L05),
            Err(EncodeError::InvalidValue {
                what: "timestamp delta",
                ..
            })
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding is all-or-nothing: a refused value leaves the sink untouched.

#[test]
fn encode_errors_leave_the_sink_untouched() {
    let prefix = [0xee, 0xee];
    let check = |what: &str, f: &dyn Fn(&mut Vec<u8>) -> Result<(), EncodeError>| {
        let mut sink = prefix.to_vec();
        assert!(f(&mut sink).is_err(), "{what} should fail");
        assert_eq!(sink, prefix, "{what} wrote before failing");
    };
    let bad_drop = SubscribeResponse::Drop(SubscribeDrop {
        start: 7,
        end: 5,
        error: 0,
    });
    for v in VERSIONS {
        check("reversed drop", &|s| bad_drop.encode(s, v));
    }
    let ok = SubscribeResponse::Ok(SubscribeOk {
        priority: 0,
        ordered: false,
        max_latency: std::time::Duration::ZERO,
        start: None,
        end: None,
    });
    check("03/04 OK on 05", &|s| ok.encode(s, L05));
    check("05 END on 04", &|s| {
        SubscribeResponse::End(SubscribeEnd { group: 1 }).encode(s, L04)
    });
    check("END overflow", &|s| {
        SubscribeResponse::End(SubscribeEnd {
            group: MAX_VARINT + 1,
        })
        .encode(s, L05)
    });
    for v in VERSIONS {
        check("frame size overflow", &|s| {
            FrameHeader {
                timestamp_delta: 0,
                size: MAX_VARINT + 1,
            }
            .encode(s, v)
        });
    }
    for (id, seq, ts) in [
        (MAX_VARINT + 1, 0, 0),
        (0, MAX_VARINT + 1, 0),
        (0, 0, MAX_VARINT + 1),
    ] {
        check("datagram overflow", &|s| {
            Datagram {
                subscribe_id: id,
                sequence: seq,
                timestamp: ts,
                payload: Bytes::new(),
            }
            .encode_header(s, L05)
        });
    }
    check("message field overflow", &|s| {
        moq_proto::wire::Probe {
            bitrate: 1,
            rtt_ms: MAX_VARINT + 1,
        }
        .encode(s, L04)
    });
}
