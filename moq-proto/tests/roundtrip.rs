//! Property tests: every message of every version round-trips, encodes canonically, and
//! decodes from exactly the bytes it encoded to; plus the laws of the primitive encodings
//! (varints, zigzag, timestamps, durations) and of paths.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use moq_proto::coding::{
    Cursor, DecodeError, EncodeError, LenCounter, Limits, MAX_PATH_LEN, MAX_PATH_SEGMENTS,
    MAX_VARINT, get_varint, put_varint, varint_len, varint_len_from_first, zigzag_decode,
    zigzag_encode,
};
use moq_proto::wire::{
    Announce, AnnounceStatus, Datagram, FrameHeader, Message, Path, PathError, ProbeLevel, Role,
    Setup, SubscribeUpdate, Timestamps, Version, param,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Round-trip `msg` through every encode and decode entry point.
fn check_message(version: Version, msg: Msg, trailing: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let bytes = msg.encode(version).expect("valid message encodes");

    // Every sink sees the same bytes; the counter sees their length.
    let mut counter = LenCounter::default();
    msg.encode_into(&mut counter, version).unwrap();
    prop_assert_eq!(counter.0, bytes.len());
    let mut buf = BytesMut::new();
    msg.encode_into(&mut buf, version).unwrap();
    prop_assert_eq!(&buf[..], &bytes[..]);
    if let Msg::Announce(m) = &msg {
        prop_assert_eq!(m.to_bytes(version).unwrap(), Bytes::from(bytes.clone()));
    }

    // The length prefix covers exactly the body.
    let framed = Framed::split(&msg, &bytes);
    prop_assert_eq!(framed.len as usize, framed.body.len());
    prop_assert!(framed.body.len() <= msg.max_size(&limits));

    // Decode: equal value, every byte consumed, nothing past the message touched.
    let mut input = bytes.clone();
    input.extend_from_slice(trailing);
    let mut cursor = Cursor::new(&input);
    let decoded = msg.decode_like(&mut cursor, version, &limits);
    prop_assert_eq!(decoded.as_ref(), Ok(&msg));
    prop_assert_eq!(cursor.remaining(), trailing.len());
    prop_assert_eq!(cursor.rest(), trailing);

    // Canonical: re-encoding the decoded value gives the same bytes.
    prop_assert_eq!(decoded.unwrap().encode(version).unwrap(), bytes.clone());

    // A non-minimal length prefix decodes the same.
    for len in [2usize, 4, 8] {
        if varint_len(framed.len) > len {
            continue;
        }
        let mut alt = framed.ty.clone();
        alt.extend(varint_of_len(framed.len, len));
        alt.extend_from_slice(&framed.body);
        let mut cursor = Cursor::new(&alt);
        prop_assert_eq!(
            msg.decode_like(&mut cursor, version, &limits),
            Ok(msg.clone())
        );
        prop_assert!(cursor.is_empty());
    }

    // The stream reader agrees with the whole-buffer decode.
    let mut reader = moq_proto::wire::StreamReader::new();
    reader.push(Bytes::from(input.clone()));
    prop_assert_eq!(
        msg.read_like(&mut reader, version, &limits),
        Ok(Some(msg.clone()))
    );
    prop_assert_eq!(reader.buffered(), trailing.len());
    Ok(())
}

fn trailing() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_message_round_trips((v, m) in any_message(), t in trailing()) {
        check_message(v, m, &t)?;
    }

    #[test]
    fn announce_request_round_trips((v, m) in versioned(&VERSIONS, announce_request), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn announce_ok_round_trips((v, m) in versioned(&[Version::Lite05], announce_ok), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn announce_round_trips((v, m) in versioned(&VERSIONS, announce), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn subscribe_round_trips((v, m) in versioned(&VERSIONS, subscribe), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn subscribe_update_round_trips((v, m) in versioned(&VERSIONS, subscribe_update), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn subscribe_response_round_trips((v, m) in versioned(&VERSIONS, subscribe_response), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn fetch_round_trips((v, m) in versioned(&VERSIONS, fetch), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn probe_round_trips((v, m) in versioned(&VERSIONS, probe), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn goaway_round_trips((v, m) in versioned(&[Version::Lite04, Version::Lite05], goaway), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn track_request_round_trips((v, m) in versioned(&[Version::Lite05], track_request), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn track_info_round_trips((v, m) in versioned(&[Version::Lite05], track_info), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn group_header_round_trips((v, m) in versioned(&VERSIONS, group_header), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    #[test]
    fn setup_round_trips((v, m) in versioned(&[Version::Lite05], setup), t in trailing()) {
        check_message(v, m.into(), &t)?;
    }

    /// lite-03 sends only the hop count: any IDs come back as that many zeros.
    #[test]
    fn lite03_hops_are_a_count(
        status in announce_status(Version::Lite03),
        suffix in path(),
        ids in vec(varint(), 0..=32),
    ) {
        let sent = Announce { status, suffix, hops: ids.clone() };
        let bytes = sent.to_bytes(Version::Lite03).unwrap();
        let got = Announce::decode(&mut Cursor::new(&bytes), Version::Lite03).unwrap();
        prop_assert_eq!(got.hops, vec![0; ids.len()]);
        prop_assert_eq!(got.suffix, sent.suffix);
        prop_assert_eq!(got.status, sent.status);
    }

    /// Durations travel as whole milliseconds: the sub-millisecond part is truncated.
    #[test]
    fn durations_truncate_to_millis(
        v in version(),
        millis in 0u64..=(u64::MAX / 1_000_000),
        nanos in 0u32..1_000_000,
    ) {
        let max_latency = Duration::from_millis(millis) + Duration::from_nanos(u64::from(nanos));
        let update = SubscribeUpdate { priority: 1, ordered: false, max_latency, start: None, end: None };
        let bytes = update.to_bytes(v).unwrap();
        let got = SubscribeUpdate::decode(&mut Cursor::new(&bytes), v).unwrap();
        prop_assert_eq!(got.max_latency, Duration::from_millis(millis));
        prop_assert_eq!(got.max_latency.subsec_nanos() % 1_000_000, 0);
    }

    /// A duration whose millisecond count does not fit a varint fails to encode.
    #[test]
    fn durations_above_varint_range_fail(v in version(), millis in (MAX_VARINT + 1)..=u64::MAX) {
        let update = SubscribeUpdate {
            priority: 0, ordered: false, max_latency: Duration::from_millis(millis), start: None, end: None,
        };
        prop_assert_eq!(update.to_bytes(v), Err(EncodeError::VarIntOverflow(millis)));
    }

    /// SETUP parameters may come in any order, with unknown IDs (the reference sends 0x3-0x5
    /// and more) interleaved; they are skipped.
    #[test]
    fn setup_params_any_order_unknown_skipped(
        s in setup(Version::Lite05),
        unknown in prop::collection::btree_map(4u64..=MAX_VARINT, vec(any::<u8>(), 0..6), 0..8),
        order_seed in vec(any::<u16>(), 16),
        long_varints in any::<bool>(),
    ) {
        let mut params: Vec<(u64, Vec<u8>)> = Vec::new();
        let varint_value = |v: u64| {
            if long_varints { varint_of_len(v, 8) } else {
                let mut out = Vec::new();
                put_varint(&mut out, v).unwrap();
                out
            }
        };
        match s.probe {
            ProbeLevel::None => {}
            ProbeLevel::Report => params.push((param::PROBE, varint_value(1))),
            ProbeLevel::Increase => params.push((param::PROBE, varint_value(2))),
        }
        if let Some(p) = &s.path {
            params.push((param::PATH, p.as_bytes().to_vec()));
        }
        if let Some(role) = s.role {
            let code = match role { Role::Both => 0, Role::Publisher => 1, Role::Subscriber => 2 };
            params.push((param::ROLE, varint_value(code)));
        }
        params.extend(unknown);
        // Deterministic shuffle driven by the generated seed.
        let mut keyed: Vec<(u16, (u64, Vec<u8>))> =
            params.into_iter().enumerate().map(|(i, p)| (order_seed[i % 16] ^ i as u16, p)).collect();
        keyed.sort_by_key(|(k, _)| *k);
        let mut body = Vec::new();
        put_varint(&mut body, keyed.len() as u64).unwrap();
        for (_, (id, value)) in &keyed {
            put_varint(&mut body, *id).unwrap();
            put_varint(&mut body, value.len() as u64).unwrap();
            body.extend_from_slice(value);
        }
        let bytes = Framed::with(&[], body.len() as u64, &body);
        let mut cursor = Cursor::new(&bytes);
        prop_assert_eq!(Setup::decode(&mut cursor, Version::Lite05), Ok(s));
        prop_assert!(cursor.is_empty());
    }

    /// Probe levels above 2 read as Increase, unknown roles as Both (as the reference does).
    #[test]
    fn setup_out_of_range_values(probe in 3u64..=MAX_VARINT, role in 3u64..=MAX_VARINT) {
        let mut body = vec![2];
        for (id, v) in [(param::PROBE, probe), (param::ROLE, role)] {
            let mut value = Vec::new();
            put_varint(&mut value, v).unwrap();
            put_varint(&mut body, id).unwrap();
            put_varint(&mut body, value.len() as u64).unwrap();
            body.extend(value);
        }
        let bytes = Framed::with(&[], body.len() as u64, &body);
        let got = Setup::decode(&mut Cursor::new(&bytes), Version::Lite05).unwrap();
        prop_assert_eq!(got, Setup { probe: ProbeLevel::Increase, path: None, role: Some(Role::Both) });
    }
}

// ---------------------------------------------------------------------------------------------
// Frames and datagrams (not size-prefixed).

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frame_header_round_trips((v, h) in versioned(&VERSIONS, frame_header), t in trailing()) {
        let mut bytes = Vec::new();
        h.encode(&mut bytes, v).unwrap();
        prop_assert_eq!(bytes.len(), h.encoded_len(v));
        prop_assert_eq!(FrameHeader::needed_len(&bytes, v), Some(bytes.len()));
        let header_len = bytes.len();
        bytes.extend_from_slice(&t);
        let mut cursor = Cursor::new(&bytes);
        prop_assert_eq!(FrameHeader::decode(&mut cursor, v), Ok(h));
        prop_assert_eq!(cursor.remaining(), t.len());
        // Every strict prefix is Short and leaves the cursor untouched.
        for cut in 0..header_len {
            let mut cursor = Cursor::new(&bytes[..cut]);
            prop_assert_eq!(FrameHeader::decode(&mut cursor, v), Err(DecodeError::Short));
            prop_assert_eq!(cursor.remaining(), cut);
            if let Some(n) = FrameHeader::needed_len(&bytes[..cut], v) {
                prop_assert!(n == header_len || n > cut);
            }
        }
    }

    #[test]
    fn datagram_round_trips(d in datagram()) {
        let mut body = Vec::new();
        d.encode_header(&mut body, Version::Lite05).unwrap();
        prop_assert_eq!(body.len(), d.header_len());
        body.extend_from_slice(&d.payload);
        let body = Bytes::from(body);
        let got = Datagram::decode(&body, Version::Lite05, 1200).unwrap();
        prop_assert_eq!(&got, &d);
        // Zero-copy: the payload is a slice of the received body.
        let range = body.as_ptr_range();
        prop_assert!(got.payload.is_empty() || (range.start <= got.payload.as_ptr()
            && got.payload.as_ptr_range().end <= range.end));
    }
}

// ---------------------------------------------------------------------------------------------
// Varints, zigzag, timestamps.

fn encode_varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, v).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn varint_round_trips(v in varint(), t in trailing()) {
        let mut bytes = encode_varint(v);
        let n = bytes.len();
        prop_assert_eq!(n, varint_len(v));
        prop_assert_eq!(varint_len_from_first(bytes[0]), n);
        bytes.extend_from_slice(&t);
        let mut slice = bytes.as_slice();
        prop_assert_eq!(get_varint(&mut slice), Ok(v));
        prop_assert_eq!(slice, &t[..]);
        // Minimality: the value does not fit the next shorter form.
        let shorter_max = match n { 1 => None, 2 => Some(63), 4 => Some(16_383), _ => Some((1u64 << 30) - 1) };
        if let Some(max) = shorter_max {
            prop_assert!(v > max);
        }
        // Every strict prefix is Short and leaves the input untouched.
        for cut in 0..n {
            let mut slice = &bytes[..cut];
            prop_assert_eq!(get_varint(&mut slice), Err(DecodeError::Short));
            prop_assert_eq!(slice.len(), cut);
        }
    }

    #[test]
    fn varint_non_minimal_forms_decode_the_same(v in varint(), len in prop::sample::select(vec![1usize, 2, 4, 8])) {
        prop_assume!(varint_len(v) <= len);
        let bytes = varint_of_len(v, len);
        prop_assert_eq!(bytes.len(), len);
        let mut slice = bytes.as_slice();
        prop_assert_eq!(get_varint(&mut slice), Ok(v));
        prop_assert!(slice.is_empty());
    }

    #[test]
    fn varint_any_bytes_decode_in_range(bytes in vec(any::<u8>(), 1..=8)) {
        let mut slice = bytes.as_slice();
        match get_varint(&mut slice) {
            Ok(v) => {
                prop_assert!(v <= MAX_VARINT);
                prop_assert_eq!(bytes.len() - slice.len(), varint_len_from_first(bytes[0]));
            }
            Err(e) => {
                prop_assert_eq!(e, DecodeError::Short);
                prop_assert!(bytes.len() < varint_len_from_first(bytes[0]));
            }
        }
    }

    #[test]
    fn varint_overflow_rejected(v in (MAX_VARINT + 1)..=u64::MAX) {
        let mut out = Vec::new();
        prop_assert_eq!(put_varint(&mut out, v), Err(EncodeError::VarIntOverflow(v)));
        prop_assert!(out.is_empty());
    }

    #[test]
    fn zigzag_is_a_bijection(s in any::<i64>(), u in any::<u64>()) {
        prop_assert_eq!(zigzag_decode(zigzag_encode(s)), s);
        prop_assert_eq!(zigzag_encode(zigzag_decode(u)), u);
        // Small magnitudes get small codes: |s| maps to 2|s| or 2|s| - 1.
        let mag = s.unsigned_abs();
        if mag < (1 << 62) {
            let expected = if s < 0 { 2 * mag - 1 } else { 2 * mag };
            prop_assert_eq!(zigzag_encode(s), expected);
        }
    }

    #[test]
    fn zigzag_of_delta_range_fits_a_varint(s in MIN_DELTA..=MAX_DELTA) {
        prop_assert!(zigzag_encode(s) <= MAX_VARINT);
        prop_assert!(zigzag_decode(zigzag_encode(s)) == s);
    }

    #[test]
    fn zigzag_of_any_varint_is_a_valid_delta(u in varint()) {
        let s = zigzag_decode(u);
        prop_assert!((MIN_DELTA..=MAX_DELTA).contains(&s));
    }
}

/// Timestamps spread so consecutive deltas sometimes exceed ±2^61.
fn timestamp_sequence() -> impl Strategy<Value = Vec<u64>> {
    vec(
        prop_oneof![
            4 => 0u64..10_000,
            2 => varint(),
            1 => prop::sample::select(vec![0, MAX_VARINT, 1 << 61, (1 << 61) - 1, (1 << 61) + 1]),
        ],
        0..32,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `delta_for` and `apply` are inverse, through the wire encoding; a delta outside
    /// ±2^61 is refused by the sender and leaves its baseline untouched.
    #[test]
    fn timestamps_delta_apply_inverse(ts in timestamp_sequence()) {
        let mut tx = Timestamps::new();
        let mut rx = Timestamps::new();
        let mut previous = 0u64;
        for t in ts {
            let expected = i128::from(t) - i128::from(previous);
            match tx.delta_for(t) {
                Ok(delta) => {
                    prop_assert_eq!(i128::from(delta), expected);
                    let header = FrameHeader { timestamp_delta: delta, size: 0 };
                    let mut bytes = Vec::new();
                    header.encode(&mut bytes, Version::Lite05).unwrap();
                    let decoded = FrameHeader::decode(&mut Cursor::new(&bytes), Version::Lite05).unwrap();
                    prop_assert_eq!(decoded, header);
                    prop_assert_eq!(rx.apply(decoded.timestamp_delta), Ok(t));
                    previous = t;
                }
                Err(e) => {
                    prop_assert!(expected > i128::from(MAX_DELTA) || expected < i128::from(MIN_DELTA),
                        "refused an encodable delta {expected}: {e:?}");
                    // Nothing advanced: the next timestamp is relative to the old baseline.
                }
            }
        }
    }

    #[test]
    fn timestamps_refuse_above_varint(t in (MAX_VARINT + 1)..=u64::MAX) {
        let mut tx = Timestamps::new();
        prop_assert_eq!(tx.delta_for(t), Err(EncodeError::VarIntOverflow(t)));
        prop_assert_eq!(tx.delta_for(5), Ok(5));
    }

    /// The receiver refuses a delta leaving [0, 2^62 - 1] and keeps its baseline.
    #[test]
    fn timestamps_apply_out_of_range(base in varint(), delta in MIN_DELTA..=MAX_DELTA) {
        let mut rx = Timestamps::new();
        // Reach `base` in steps that each fit a delta.
        let mut at = 0u64;
        while at < base {
            let step = (base - at).min(MAX_DELTA as u64);
            at = rx.apply(step as i64).unwrap();
        }
        prop_assert_eq!(at, base);
        let target = i128::from(base) + i128::from(delta);
        let got = rx.apply(delta);
        if (0..=i128::from(MAX_VARINT)).contains(&target) {
            prop_assert_eq!(got, Ok(target as u64));
        } else {
            prop_assert_eq!(got, Err(DecodeError::TimestampOutOfRange(delta)));
            prop_assert_eq!(rx.apply(0), Ok(base));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths.

fn segs(p: &Path) -> Vec<&str> {
    if p.is_empty() {
        Vec::new()
    } else {
        p.as_str().split('/').collect()
    }
}

/// Join segments with runs of 1-3 slashes and optional leading / trailing runs.
fn messy(segments: &[String], seps: &[u8]) -> String {
    let slashes = |i: usize| "/".repeat(usize::from(seps[i % seps.len()] % 3));
    let mut out = slashes(0);
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push_str(&"/".repeat(1 + usize::from(seps[(i + 1) % seps.len()] % 3)));
        }
        out.push_str(s);
    }
    out.push_str(&slashes(segments.len() + 7));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Normalisation trims and collapses slashes, is idempotent, and keeps the segments.
    #[test]
    fn path_normalisation(s in segments(), seps in vec(any::<u8>(), 1..8)) {
        let raw = messy(&s, &seps);
        let p = Path::new(&raw).unwrap();
        prop_assert_eq!(p.as_str(), s.join("/"));
        prop_assert_eq!(segs(&p), s.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(p.segment_count(), s.len());
        prop_assert!(!p.as_str().starts_with('/'));
        prop_assert!(!p.as_str().ends_with('/'));
        prop_assert!(!p.as_str().contains("//"));
        prop_assert_eq!(Path::new(p.as_str()).unwrap(), p.clone());
        prop_assert_eq!(Path::new(&format!("/{p}/")).unwrap(), p.clone());
        prop_assert_eq!(p.as_str().parse::<Path>().unwrap(), p.clone());
        prop_assert_eq!(p.is_empty(), s.is_empty());
    }

    /// More than 32 segments are refused, however they are padded.
    #[test]
    fn path_segment_cap(extra in 1usize..8, seps in vec(any::<u8>(), 1..8)) {
        let s: Vec<String> = (0..MAX_PATH_SEGMENTS + extra).map(|i| format!("s{i}")).collect();
        prop_assert_eq!(Path::new(&messy(&s, &seps)), Err(PathError::TooManySegments(s.len())));
    }

    /// Every outbound form decodes back to the same path.
    #[test]
    fn path_wire_forms(p in path()) {
        for form in 0..3 {
            let mut bytes = Vec::new();
            match form {
                0 => p.encode_path(&mut bytes).unwrap(),
                1 => p.encode_prefix(&mut bytes).unwrap(),
                _ => p.encode_suffix(&mut bytes).unwrap(),
            }
            let mut cursor = Cursor::new(&bytes);
            prop_assert_eq!(Path::decode(&mut cursor, "path"), Ok(p.clone()));
            prop_assert!(cursor.is_empty());
        }
        let mut bytes = Vec::new();
        p.encode_path(&mut bytes).unwrap();
        let mut slice = bytes.as_slice();
        let len = get_varint(&mut slice).unwrap() as usize;
        prop_assert_eq!(len, slice.len());
        prop_assert_eq!(slice[0], b'/');
        let mut bytes = Vec::new();
        p.encode_prefix(&mut bytes).unwrap();
        let mut slice = bytes.as_slice();
        get_varint(&mut slice).unwrap();
        prop_assert!(slice.starts_with(b"/") && slice.ends_with(b"/"));
    }

    /// Segment-aware prefixes, strip and join agree with the segment-list model.
    #[test]
    fn path_prefix_strip_join(a in path(), b in path(), k in any::<prop::sample::Index>()) {
        let sa = segs(&a);
        let sb = segs(&b);
        // has_prefix ⇔ segment-list prefix.
        let model = sb.len() <= sa.len() && sa[..sb.len()] == sb[..];
        prop_assert_eq!(a.has_prefix(&b), model);
        prop_assert_eq!(a.strip_prefix(&b).is_some(), model);
        if let Some(rest) = a.strip_prefix(&b) {
            prop_assert_eq!(segs(&rest), sa[sb.len()..].to_vec());
            prop_assert_eq!(b.join(&rest).unwrap(), a.clone());
        }
        // Every segment prefix of `a` is a prefix; strip then join rebuilds `a`.
        let cut = k.index(sa.len() + 1);
        let prefix = Path::new(&sa[..cut].join("/")).unwrap();
        prop_assert!(a.has_prefix(&prefix));
        let suffix = a.strip_prefix(&prefix).unwrap();
        prop_assert_eq!(suffix.segment_count(), sa.len() - cut);
        prop_assert_eq!(prefix.join(&suffix).unwrap(), a.clone());
        // Extending the last segment of a prefix breaks the match (`a` is not a prefix of `ab`).
        if cut > 0 {
            let mut longer: Vec<String> = sa[..cut].iter().map(|s| s.to_string()).collect();
            longer[cut - 1].push('x');
            let near = Path::new(&longer.join("/")).unwrap();
            prop_assert!(!a.has_prefix(&near));
            prop_assert_eq!(a.strip_prefix(&near), None);
        }
        // Identities.
        prop_assert!(a.has_prefix(&Path::root()));
        prop_assert_eq!(a.strip_prefix(&Path::root()), Some(a.clone()));
        prop_assert_eq!(a.strip_prefix(&a), Some(Path::root()));
        prop_assert_eq!(a.join(&Path::root()).unwrap(), a.clone());
        prop_assert_eq!(Path::root().join(&a).unwrap(), a.clone());
        // Join: fits iff the segment total fits; then it strips back.
        match a.join(&b) {
            Ok(j) => {
                prop_assert!(sa.len() + sb.len() <= MAX_PATH_SEGMENTS);
                prop_assert_eq!(j.segment_count(), sa.len() + sb.len());
                prop_assert!(j.has_prefix(&a));
                prop_assert_eq!(j.strip_prefix(&a), Some(b.clone()));
                prop_assert_eq!(Path::new(j.as_str()).unwrap(), j.clone());
            }
            Err(e) => {
                // Generated paths are far below the byte cap, so only the segment cap bites.
                prop_assert!(sa.len() + sb.len() > MAX_PATH_SEGMENTS);
                prop_assert_eq!(e, PathError::TooManySegments(sa.len() + sb.len()));
            }
        }
    }

    /// Join is associative when everything fits.
    #[test]
    fn path_join_associative(a in path(), b in path(), c in path()) {
        let left = a.join(&b).and_then(|ab| ab.join(&c));
        let right = b.join(&c).and_then(|bc| a.join(&bc));
        if let (Ok(l), Ok(r)) = (&left, &right) {
            prop_assert_eq!(l, r);
        } else {
            prop_assert!(left.is_err() && right.is_err());
        }
    }
}

#[test]
fn path_length_cap() {
    let ok = "a".repeat(MAX_PATH_LEN);
    assert_eq!(Path::new(&ok).unwrap().as_str().len(), MAX_PATH_LEN);
    let long = "a".repeat(MAX_PATH_LEN + 1);
    assert_eq!(Path::new(&long), Err(PathError::TooLong(MAX_PATH_LEN + 1)));
    // Slashes that normalisation removes do not count.
    let padded = format!("///{ok}///");
    assert!(Path::new(&padded).is_ok());
    let two = Path::new(&"b".repeat(MAX_PATH_LEN / 2)).unwrap();
    assert_eq!(two.join(&two), Err(PathError::TooLong(MAX_PATH_LEN + 1)));
}

#[test]
fn announce_status_codes() {
    for (status, code, active) in [
        (AnnounceStatus::Ended, 0, false),
        (AnnounceStatus::Active, 1, true),
        (AnnounceStatus::Restart, 2, true),
    ] {
        assert_eq!(status.code(), code);
        assert_eq!(status.is_active(), active);
    }
}
