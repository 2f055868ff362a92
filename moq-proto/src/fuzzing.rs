//! Harness entry points shared by the cargo-fuzz targets in `fuzz/` and by the corpus replay
//! test, so CI exercises every committed corpus file on stable Rust.
//!
//! Every function takes arbitrary bytes and must not panic on its own account: a failed
//! assertion is how a harness reports a codec bug to libFuzzer (and to the replay test). The
//! common shape is decode → re-encode → decode again → the two decoded values are equal.
//! Decoded *values* are compared, never bytes: decoding accepts non-minimal varints and
//! unnormalised paths, while encoding is canonical (paths as `/a/b`, prefixes as `/a/`).
//!
//! Properties checked for every decoder:
//! - anything that decodes also encodes (a value the codec accepts but cannot send is a bug),
//!   and the re-encoding decodes to an equal value, consuming it exactly;
//! - encoding is canonical: encoding the re-decoded value gives the same bytes again;
//! - every strict prefix of a successfully decoded input is [`DecodeError::Short`], which
//!   leaves the cursor untouched (Short alone means "more bytes may decode").
//!
//! Input layouts:
//! - messages that exist in several versions: byte 0 picks the version (`% 3`: lite-03, 04,
//!   05), the rest is the encoding;
//! - lite-05-only messages (ANNOUNCE_OK, TRACK, TRACK_INFO, SETUP, DATAGRAM): the whole input
//!   is the lite-05 encoding, and lite-03/04 must refuse the same bytes;
//! - the incremental readers: see [`stream_reader`] and [`control_reader`].

// This module is a fuzzing harness: it reports bugs by panicking (assert!, unwrap, expect),
// which is exactly how libFuzzer and the corpus replay test detect them. The crate-wide deny
// of these lints protects library code, which this is not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Debug;

use bytes::Bytes;

use crate::coding::{
    Cursor, DecodeError, EncodeError, Limits, MAX_HOPS, MAX_PATH_LEN, MAX_PATH_SEGMENTS,
};
use crate::wire::{
    Announce, AnnounceOk, AnnounceRequest, AnnounceStatus, BiStreamType, Datagram, Fetch,
    FrameDecoder, FrameHeader, FrameItem, Goaway, GroupHeader, GroupItem, GroupStreamReader,
    Message, Path, PathError, Probe, Setup, StreamReader, Subscribe, SubscribeResponse,
    SubscribeUpdate, Timestamps, TrackInfo, TrackRequest, UniStreamType, Version,
};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// The version selected by a byte: `% 3` → lite-03, lite-04, lite-05.
fn version(byte: u8) -> Version {
    match byte % 3 {
        0 => Version::Lite03,
        1 => Version::Lite04,
        _ => Version::Lite05,
    }
}

/// Split off the version byte.
fn versioned(data: &[u8]) -> Option<(Version, &[u8])> {
    let (&first, rest) = data.split_first()?;
    Some((version(first), rest))
}

/// Small caps, so the fuzzer reaches every limit check with short inputs.
fn tight_limits() -> Limits {
    Limits {
        max_message_size: 32,
        max_frame_size: 64,
        max_group_size: 256,
        max_group_frames: 8,
        max_datagram_size: 64,
    }
}

/// Decode `bytes`; on success check the strict-prefix property, re-encode, decode again and
/// compare. Returns the first decoded value.
fn round_trip<T: PartialEq + Debug>(
    what: &str,
    bytes: &[u8],
    decode: impl Fn(&mut Cursor<'_>) -> Result<T, DecodeError>,
    encode: impl Fn(&T, &mut Vec<u8>) -> Result<(), EncodeError>,
) -> Option<T> {
    let mut cursor = Cursor::new(bytes);
    let first = match decode(&mut cursor) {
        Ok(value) => value,
        Err(err) => {
            if err.is_short() {
                assert_eq!(
                    cursor.remaining(),
                    bytes.len(),
                    "{what}: Short moved the cursor"
                );
            }
            return None;
        }
    };
    let consumed = bytes.len() - cursor.remaining();
    assert!(consumed > 0, "{what}: decoded {first:?} from zero bytes");

    // Every strict prefix must ask for more bytes, and leave the cursor where it was.
    for len in 0..consumed {
        let mut prefix = Cursor::new(&bytes[..len]);
        match decode(&mut prefix) {
            Err(DecodeError::Short) => assert_eq!(
                prefix.remaining(),
                len,
                "{what}: Short moved the cursor on a {len}-byte prefix"
            ),
            other => panic!(
                "{what}: the first {len} of {consumed} bytes of {first:?} gave {other:?}, not Short"
            ),
        }
    }

    let mut encoded = Vec::new();
    if let Err(err) = encode(&first, &mut encoded) {
        panic!("{what}: decoded {first:?} but it does not re-encode: {err}");
    }
    let mut cursor = Cursor::new(&encoded);
    let second = match decode(&mut cursor) {
        Ok(value) => value,
        Err(err) => panic!("{what}: {first:?} re-encoded as {encoded:02x?} fails to decode: {err}"),
    };
    assert!(
        cursor.is_empty(),
        "{what}: {} bytes left after decoding the re-encoding of {first:?}",
        cursor.remaining()
    );
    assert_eq!(first, second, "{what}: value changed across a round trip");

    let mut again = Vec::new();
    encode(&second, &mut again).expect("a re-decoded value encodes");
    assert_eq!(encoded, again, "{what}: encoding is not canonical");
    Some(first)
}

/// [`round_trip`] for a size-prefixed [`Message`] in one version with default limits.
fn message_round_trip<M: Message + PartialEq + Debug>(bytes: &[u8], version: Version) -> Option<M> {
    let limits = Limits::default();
    let decoded = round_trip(
        M::NAME,
        bytes,
        |c| M::decode_with(c, version, &limits),
        |m, out| m.encode(out, version),
    );
    if !M::supported(version) {
        assert!(
            matches!(
                M::decode_with(&mut Cursor::new(bytes), version, &limits),
                Err(DecodeError::UnsupportedVersion { .. })
            ),
            "{} decoded on {version}, which does not define it",
            M::NAME
        );
    }
    decoded
}

/// Byte 0 picks the version; the rest is the message.
fn versioned_message<M: Message + PartialEq + Debug>(data: &[u8]) -> Option<(Version, M)> {
    let (version, rest) = versioned(data)?;
    message_round_trip::<M>(rest, version).map(|m| (version, m))
}

/// The whole input is a lite-05 message; lite-03/04 must refuse to decode the same bytes and
/// to encode whatever lite-05 decoded.
fn lite05_message<M: Message + PartialEq + Debug>(data: &[u8]) -> Option<M> {
    for old in [Version::Lite03, Version::Lite04] {
        assert!(
            matches!(
                M::decode(&mut Cursor::new(data), old),
                Err(DecodeError::UnsupportedVersion { .. })
            ),
            "{} decoded on {old}",
            M::NAME
        );
    }
    let decoded = message_round_trip::<M>(data, Version::Lite05)?;
    for old in [Version::Lite03, Version::Lite04] {
        assert!(
            matches!(
                decoded.encode(&mut Vec::new(), old),
                Err(EncodeError::UnsupportedVersion { .. })
            ),
            "{} encoded on {old}",
            M::NAME
        );
    }
    Some(decoded)
}

// ---------------------------------------------------------------------------------------------
// Stream types and control messages
// ---------------------------------------------------------------------------------------------

/// Stream types, bidi and uni: byte 0 picks the version, the rest is decoded both as a
/// [`BiStreamType`] and as a [`UniStreamType`]; each must round-trip, exist in that version and
/// encode as one byte.
pub fn stream_type(data: &[u8]) {
    let Some((version, rest)) = versioned(data) else {
        return;
    };
    if let Some(ty) = round_trip(
        "bidi stream type",
        rest,
        |c| BiStreamType::decode(c, version),
        |t, out| {
            t.encode(out);
            Ok(())
        },
    ) {
        assert!(ty.supported(version), "{ty:?} decoded on {version}");
        assert_eq!(BiStreamType::from_code(ty.code(), version), Ok(ty));
        let mut out = Vec::new();
        ty.encode(&mut out);
        assert_eq!(out, [ty.code() as u8], "{ty:?} is not one minimal byte");
    }
    if let Some(ty) = round_trip(
        "uni stream type",
        rest,
        |c| UniStreamType::decode(c, version),
        |t, out| {
            t.encode(out);
            Ok(())
        },
    ) {
        assert_eq!(UniStreamType::from_code(ty.code(), version), Ok(ty));
        let mut out = Vec::new();
        ty.encode(&mut out);
        assert_eq!(out, [ty.code() as u8], "{ty:?} is not one minimal byte");
    }
}

/// ANNOUNCE_PLEASE / INTEREST / REQUEST: byte 0 picks the version, the rest is the message.
/// On lite-03 the Exclude Hop does not travel and must read back as 0.
pub fn announce_request(data: &[u8]) {
    if let Some((version, request)) = versioned_message::<AnnounceRequest>(data)
        && !version.has_hops()
    {
        assert_eq!(request.exclude_hop, 0, "lite-03 has no Exclude Hop");
    }
}

/// ANNOUNCE_OK (lite-05 only): the whole input is the message.
pub fn announce_ok(data: &[u8]) {
    lite05_message::<AnnounceOk>(data);
}

/// ANNOUNCE / ANNOUNCE_BROADCAST: byte 0 picks the version, the rest is the message. Hop lists
/// are at most [`MAX_HOPS`] long with no repeated non-zero ID, lite-03 hops read back as 0, and
/// Restart exists only on lite-05.
pub fn announce(data: &[u8]) {
    let Some((version, announce)) = versioned_message::<Announce>(data) else {
        return;
    };
    assert!(announce.hops.len() <= MAX_HOPS, "hop list over the cap");
    if !version.has_hops() {
        assert!(announce.hops.iter().all(|&h| h == 0), "lite-03 hop IDs");
    }
    for (i, hop) in announce.hops.iter().enumerate() {
        assert!(
            *hop == 0 || !announce.hops[..i].contains(hop),
            "duplicate hop {hop} accepted"
        );
    }
    if announce.status == AnnounceStatus::Restart {
        assert!(version.is_lite05(), "Restart decoded on {version}");
    }
}

/// SUBSCRIBE: byte 0 picks the version, the rest is the message.
pub fn subscribe(data: &[u8]) {
    versioned_message::<Subscribe>(data);
}

/// SUBSCRIBE_UPDATE: byte 0 picks the version, the rest is the message.
pub fn subscribe_update(data: &[u8]) {
    versioned_message::<SubscribeUpdate>(data);
}

/// Typed subscribe responses (`Type`, `Length`, body): byte 0 picks the version, the rest is
/// the response. The variant must belong to that version.
pub fn subscribe_response(data: &[u8]) {
    let Some((version, rest)) = versioned(data) else {
        return;
    };
    let limits = Limits::default();
    let Some(response) = round_trip(
        "subscribe response",
        rest,
        |c| SubscribeResponse::decode_with(c, version, &limits),
        |r, out| r.encode(out, version),
    ) else {
        return;
    };
    let lite05_variant = matches!(
        response,
        SubscribeResponse::Start(_) | SubscribeResponse::End(_)
    );
    let old_variant = matches!(response, SubscribeResponse::Ok(_));
    assert!(
        !(lite05_variant && !version.is_lite05() || old_variant && version.is_lite05()),
        "{response:?} decoded on {version}"
    );
}

/// FETCH: byte 0 picks the version, the rest is the message.
pub fn fetch(data: &[u8]) {
    versioned_message::<Fetch>(data);
}

/// PROBE: byte 0 picks the version, the rest is the message. On lite-03 the RTT does not
/// travel and must read back as 0.
pub fn probe(data: &[u8]) {
    if let Some((version, probe)) = versioned_message::<Probe>(data)
        && !version.has_hops()
    {
        assert_eq!(probe.rtt_ms, 0, "lite-03 has no RTT");
    }
}

/// GOAWAY: byte 0 picks the version (lite-03 must refuse it), the rest is the message.
pub fn goaway(data: &[u8]) {
    versioned_message::<Goaway>(data);
}

/// TRACK (lite-05 only): the whole input is the message.
pub fn track_request(data: &[u8]) {
    lite05_message::<TrackRequest>(data);
}

/// TRACK_INFO (lite-05 only): the whole input is the message. The timescale is never zero.
pub fn track_info(data: &[u8]) {
    if let Some(info) = lite05_message::<TrackInfo>(data) {
        assert_ne!(info.timescale, 0, "zero timescale accepted");
    }
}

/// GROUP header: byte 0 picks the version, the rest is the message.
pub fn group_header(data: &[u8]) {
    versioned_message::<GroupHeader>(data);
}

/// FRAME headers: byte 0 picks the version, the rest is decoded as consecutive frame headers
/// (no payloads in between). Each must round-trip, take [`FrameHeader::encoded_len`] bytes once
/// re-encoded, agree with [`FrameHeader::needed_len`], and its timestamp delta must survive
/// [`Timestamps::apply`] followed by [`Timestamps::delta_for`].
pub fn frame_header(data: &[u8]) {
    let Some((version, mut rest)) = versioned(data) else {
        return;
    };
    let limits = Limits::default();
    let mut received = Timestamps::new();
    let mut sent = Timestamps::new();
    while let Some(header) = round_trip(
        "frame header",
        rest,
        |c| FrameHeader::decode_with(c, version, &limits),
        |h, out| h.encode(out, version),
    ) {
        let mut cursor = Cursor::new(rest);
        FrameHeader::decode_with(&mut cursor, version, &limits).expect("decoded once already");
        let consumed = rest.len() - cursor.remaining();
        assert_eq!(
            FrameHeader::needed_len(rest, version),
            Some(consumed),
            "needed_len disagrees with decode for {header:?}"
        );
        let mut encoded = Vec::new();
        header.encode(&mut encoded, version).expect("round-tripped");
        assert_eq!(encoded.len(), header.encoded_len(version));
        if !version.is_lite05() {
            assert_eq!(header.timestamp_delta, 0, "timestamp before lite-05");
        }
        match received.apply(header.timestamp_delta) {
            Ok(ts) => {
                let delta = sent
                    .delta_for(ts)
                    .unwrap_or_else(|e| panic!("timestamp {ts} received but cannot be sent: {e}"));
                assert_eq!(delta, header.timestamp_delta, "timestamp delta changed");
            }
            Err(_) => break,
        }
        rest = cursor.rest();
    }
}

/// DATAGRAM (lite-05 only): the whole input is the datagram body, decoded with the default
/// size cap. The payload must be the tail of the input, and header + payload must re-encode
/// to something that decodes equal.
pub fn datagram(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let max = Limits::default().max_datagram_size;
    for old in [Version::Lite03, Version::Lite04] {
        assert!(
            matches!(
                Datagram::decode(&body, old, max),
                Err(DecodeError::UnsupportedVersion { .. })
            ),
            "datagram decoded on {old}"
        );
    }
    let Ok(first) = Datagram::decode(&body, Version::Lite05, max) else {
        return;
    };
    assert!(data.ends_with(&first.payload), "payload is not the tail");
    assert!(first.header_len() + first.payload.len() <= data.len());
    let mut encoded = Vec::new();
    if let Err(err) = first.encode_header(&mut encoded, Version::Lite05) {
        panic!("datagram {first:?} decoded but does not re-encode: {err}");
    }
    assert_eq!(encoded.len(), first.header_len());
    for old in [Version::Lite03, Version::Lite04] {
        assert!(first.encode_header(&mut Vec::new(), old).is_err());
    }
    encoded.extend_from_slice(&first.payload);
    let second = Datagram::decode(&Bytes::from(encoded), Version::Lite05, max)
        .unwrap_or_else(|e| panic!("re-encoded datagram {first:?} fails to decode: {e}"));
    assert_eq!(first, second, "datagram changed across a round trip");
}

/// SETUP (lite-05 only): the whole input is the message (unknown parameters are dropped on
/// re-encode, so the values, not the bytes, must match).
pub fn setup(data: &[u8]) {
    lite05_message::<Setup>(data);
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

fn segments(path: &Path) -> Vec<&str> {
    if path.is_empty() {
        Vec::new()
    } else {
        path.as_str().split('/').collect()
    }
}

/// Normalise `raw` and check the result against an independent model; round-trip it through
/// all three wire forms.
fn check_path(raw: &str) -> Option<Path> {
    let model_segments: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
    let model = model_segments.join("/");
    let result = Path::new(raw);
    match &result {
        Ok(path) => {
            assert_eq!(path.as_str(), model, "normalising {raw:?}");
            assert!(model.len() <= MAX_PATH_LEN && model_segments.len() <= MAX_PATH_SEGMENTS);
            assert_eq!(path.segment_count(), model_segments.len());
            assert_eq!(path.is_empty(), model.is_empty());
            assert_eq!(
                Path::new(path.as_str()).as_ref(),
                Ok(path),
                "not idempotent"
            );
            assert_eq!(path.to_string(), model);
        }
        Err(PathError::TooLong(len)) => {
            assert_eq!(*len, model.len());
            assert!(*len > MAX_PATH_LEN);
        }
        Err(PathError::TooManySegments(count)) => {
            assert_eq!(*count, model_segments.len());
            assert!(*count > MAX_PATH_SEGMENTS && model.len() <= MAX_PATH_LEN);
        }
    }
    assert_eq!(raw.parse::<Path>(), result);
    let path = result.ok()?;

    type Encoder = fn(&Path, &mut Vec<u8>) -> Result<(), EncodeError>;
    let forms: [(&str, Encoder); 3] = [
        ("path", |p, out| p.encode_path(out)),
        ("prefix", |p, out| p.encode_prefix(out)),
        ("suffix", |p, out| p.encode_suffix(out)),
    ];
    for (form, encode) in forms {
        let mut out = Vec::new();
        encode(&path, &mut out).unwrap_or_else(|e| panic!("{path:?} as a {form}: {e}"));
        let mut cursor = Cursor::new(&out);
        let decoded = Path::decode(&mut cursor, "fuzz path")
            .unwrap_or_else(|e| panic!("{path:?} as a {form} ({out:02x?}) does not decode: {e}"));
        assert!(cursor.is_empty());
        assert_eq!(decoded, path, "{form} form round trip");
    }
    assert!(path.has_prefix(&Path::root()));
    assert!(path.has_prefix(&path));
    assert_eq!(path.strip_prefix(&path), Some(Path::root()));
    assert_eq!(path.strip_prefix(&Path::root()).as_ref(), Some(&path));
    Some(path)
}

/// Prefix, strip and join must agree with each other and with a segment-list model.
fn check_pair(prefix: &Path, path: &Path) {
    let joined = prefix.join(path);
    assert_eq!(
        joined,
        Path::new(&format!("{prefix}/{path}")),
        "join({prefix:?}, {path:?})"
    );
    if let Ok(joined) = &joined {
        assert!(joined.has_prefix(prefix));
        assert_eq!(joined.strip_prefix(prefix).as_ref(), Some(path));
    }

    let prefix_segments = segments(prefix);
    let path_segments = segments(path);
    let model = path_segments.starts_with(&prefix_segments);
    assert_eq!(
        path.has_prefix(prefix),
        model,
        "{prefix:?} prefix of {path:?}"
    );
    match path.strip_prefix(prefix) {
        Some(rest) => {
            assert!(model);
            assert_eq!(segments(&rest), path_segments[prefix_segments.len()..]);
            assert_eq!(prefix.join(&rest).as_ref(), Ok(path));
        }
        None => assert!(!model),
    }
}

/// [`Path`]: byte 0 is a split point, the rest is read as (lossy) UTF-8 and split there into two
/// strings. Each string and the whole is normalised with [`Path::new`] and checked against a
/// model (trim and collapse `/`, the caps), for idempotence, and through the path, prefix and
/// suffix wire forms; then prefix / strip_prefix / join are checked for consistency in both
/// directions.
pub fn path(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut at = usize::from(split).min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let (a, b) = text.split_at(at);
    check_path(&text);
    let (Some(a), Some(b)) = (check_path(a), check_path(b)) else {
        return;
    };
    check_pair(&a, &b);
    check_pair(&b, &a);
    check_pair(&a, &a);
}

// ---------------------------------------------------------------------------------------------
// Incremental readers
// ---------------------------------------------------------------------------------------------

/// Flags byte shared by the reader harnesses.
const FLAG_FIN: u8 = 0x01;
const FLAG_TIGHT: u8 = 0x02;
const FLAG_FETCH: u8 = 0x04;
const FLAG_BYTEWISE: u8 = 0x08;

/// A reader harness input: flags, the chunking plan, and the stream bytes.
struct ReaderInput {
    flags: u8,
    stream: Bytes,
    /// Chunk boundaries as ranges into `stream`, in order, covering it exactly (some may be
    /// empty). Never empty itself.
    chunks: Vec<std::ops::Range<usize>>,
}

impl ReaderInput {
    /// `flags`, then `flags >> 4` chunk-length bytes, then the stream.
    fn parse(data: &[u8]) -> Option<Self> {
        let (&flags, rest) = data.split_first()?;
        let count = usize::from(flags >> 4).min(rest.len());
        let (lens, stream) = rest.split_at(count);
        let mut chunks = Vec::new();
        if flags & FLAG_BYTEWISE != 0 {
            chunks.extend((0..stream.len()).map(|i| i..i + 1));
        } else if lens.iter().all(|&l| l == 0) {
            // Empty pushes first (they must be ignored), then everything at once.
            chunks.extend(lens.iter().map(|_| 0..0));
            chunks.push(0..stream.len());
        } else {
            let mut at = 0;
            for &len in lens.iter().cycle() {
                if at == stream.len() {
                    break;
                }
                let end = (at + usize::from(len)).min(stream.len());
                chunks.push(at..end);
                at = end;
            }
        }
        if chunks.is_empty() {
            chunks.push(0..0);
        }
        Some(Self {
            flags,
            stream: Bytes::copy_from_slice(stream),
            chunks,
        })
    }

    fn limits(&self) -> Limits {
        if self.flags & FLAG_TIGHT != 0 {
            tight_limits()
        } else {
            Limits::default()
        }
    }

    fn chunks(&self) -> impl Iterator<Item = (Bytes, bool)> + '_ {
        let last = self.chunks.len() - 1;
        self.chunks
            .iter()
            .enumerate()
            .map(move |(i, r)| (self.stream.slice(r.clone()), i == last))
    }

    /// The same stream as one chunk.
    fn whole(&self) -> impl Iterator<Item = (Bytes, bool)> + '_ {
        std::iter::once((self.stream.clone(), true))
    }
}

/// A group stream or FETCH reply event, with payload pieces merged per frame.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupEvent {
    Header(GroupHeader),
    Frame { timestamp: u64, size: u64 },
    Payload(Vec<u8>),
    End,
}

/// How a run over the whole input ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Group streams: FIN on a frame boundary. Control streams: every byte consumed.
    Done,
    /// The input is a valid prefix; more bytes are needed.
    Incomplete,
    /// The input is invalid.
    Failed(DecodeError),
}

/// Collects group events, merging payload pieces and checking their bookkeeping.
struct GroupCollector<'a> {
    events: Vec<GroupEvent>,
    frame_left: u64,
    /// The buffer every payload piece must be a zero-copy slice of.
    source: &'a Bytes,
}

impl<'a> GroupCollector<'a> {
    fn new(source: &'a Bytes) -> Self {
        Self {
            events: Vec::new(),
            frame_left: 0,
            source,
        }
    }

    fn frame(&mut self, item: FrameItem) {
        match item {
            FrameItem::Header { timestamp, size } => {
                assert_eq!(self.frame_left, 0, "frame header inside a payload");
                self.frame_left = size;
                self.events.push(GroupEvent::Frame { timestamp, size });
            }
            FrameItem::Payload { chunk, remaining } => {
                assert!(!chunk.is_empty(), "empty payload piece");
                assert_eq!(
                    chunk.len() as u64 + remaining,
                    self.frame_left,
                    "payload bookkeeping"
                );
                let start = self.source.as_ptr() as usize;
                let at = chunk.as_ptr() as usize;
                assert!(
                    at >= start && at + chunk.len() <= start + self.source.len(),
                    "payload piece is a copy, not a slice of the input"
                );
                self.frame_left = remaining;
                match self.events.last_mut() {
                    Some(GroupEvent::Payload(bytes)) => bytes.extend_from_slice(&chunk),
                    _ => self.events.push(GroupEvent::Payload(chunk.to_vec())),
                }
            }
            FrameItem::End => {
                assert_eq!(self.frame_left, 0, "End inside a payload");
                self.events.push(GroupEvent::End);
            }
        }
    }
}

/// Feed `chunks` (the last one carries FIN when `fin`) to a [`GroupStreamReader`], or in fetch
/// mode to a [`StreamReader`] + [`FrameDecoder`], reading every item after each push.
fn run_group_reader(
    version: Version,
    limits: &Limits,
    fetch: bool,
    fin: bool,
    source: &Bytes,
    chunks: impl Iterator<Item = (Bytes, bool)>,
) -> (Vec<GroupEvent>, Outcome) {
    let mut out = GroupCollector::new(source);
    let mut group = GroupStreamReader::new(version, limits.clone());
    let mut reader = StreamReader::new();
    let mut frames = FrameDecoder::new(version);
    for (chunk, last) in chunks {
        let fin_now = fin && last;
        if fetch {
            reader.push(chunk);
            if fin_now {
                reader.finish();
            }
        } else {
            group.push(chunk, fin_now);
        }
        loop {
            let item = if fetch {
                frames
                    .read(&mut reader, limits)
                    .map(|i| i.map(GroupItem::Frame))
            } else {
                group.read()
            };
            match item {
                Ok(Some(GroupItem::Header(header))) => out.events.push(GroupEvent::Header(header)),
                Ok(Some(GroupItem::Frame(FrameItem::End))) => {
                    out.frame(FrameItem::End);
                    assert!(fin_now, "End before FIN");
                    let next = if fetch {
                        frames
                            .read(&mut reader, limits)
                            .map(|i| i.map(GroupItem::Frame))
                    } else {
                        group.read()
                    };
                    assert_eq!(next, Ok(None), "an item after End");
                    return (out.events, Outcome::Done);
                }
                Ok(Some(GroupItem::Frame(frame))) => out.frame(frame),
                Ok(None) => break,
                Err(err) => return (out.events, Outcome::Failed(err)),
            }
        }
    }
    assert!(!fin, "the reader still wants bytes after FIN");
    (out.events, Outcome::Incomplete)
}

/// An independent whole-buffer decode of a group stream (or FETCH reply) with a [`Cursor`],
/// applying the same caps in the same order as the incremental reader.
fn reference_group(
    version: Version,
    limits: &Limits,
    fetch: bool,
    fin: bool,
    stream: &[u8],
) -> (Vec<GroupEvent>, Outcome) {
    let mut events = Vec::new();
    let mut cursor = Cursor::new(stream);
    let short = |what: &'static str| {
        if fin {
            Outcome::Failed(DecodeError::Truncated { what })
        } else {
            Outcome::Incomplete
        }
    };
    if !fetch {
        match UniStreamType::decode(&mut cursor, version) {
            Ok(UniStreamType::Group) => {}
            Ok(UniStreamType::Setup) => {
                return (events, Outcome::Failed(DecodeError::UnknownStreamType(1)));
            }
            Err(DecodeError::Short) => return (events, short("stream type")),
            Err(err) => return (events, Outcome::Failed(err)),
        }
        match GroupHeader::decode_with(&mut cursor, version, limits) {
            Ok(header) => events.push(GroupEvent::Header(header)),
            Err(DecodeError::Short) => return (events, short("GROUP")),
            Err(err) => return (events, Outcome::Failed(err)),
        }
    }
    let mut timestamps = Timestamps::new();
    let mut frames = 0u64;
    let mut total = 0u64;
    loop {
        if cursor.is_empty() {
            if fin {
                events.push(GroupEvent::End);
                return (events, Outcome::Done);
            }
            return (events, Outcome::Incomplete);
        }
        let header = match FrameHeader::decode_with(&mut cursor, version, limits) {
            Ok(header) => header,
            Err(DecodeError::Short) => return (events, short("frame header")),
            Err(err) => return (events, Outcome::Failed(err)),
        };
        frames += 1;
        if frames > limits.group_frames() {
            let err = DecodeError::TooLarge {
                what: "group frames",
                size: frames,
                max: limits.group_frames(),
            };
            return (events, Outcome::Failed(err));
        }
        total = total.saturating_add(header.size);
        if total > limits.group_size() {
            let err = DecodeError::TooLarge {
                what: "group",
                size: total,
                max: limits.group_size(),
            };
            return (events, Outcome::Failed(err));
        }
        let timestamp = if version.is_lite05() {
            match timestamps.apply(header.timestamp_delta) {
                Ok(ts) => ts,
                Err(err) => return (events, Outcome::Failed(err)),
            }
        } else {
            0
        };
        events.push(GroupEvent::Frame {
            timestamp,
            size: header.size,
        });
        let available = cursor.rest();
        if header.size > available.len() as u64 {
            if !available.is_empty() {
                events.push(GroupEvent::Payload(available.to_vec()));
            }
            return (events, short("frame"));
        }
        let payload = cursor.take(header.size as usize).expect("length checked");
        if !payload.is_empty() {
            events.push(GroupEvent::Payload(payload.to_vec()));
        }
    }
}

/// Re-encode the complete part of a decoded group stream (type, header, every frame whose
/// payload fully arrived) and return it with the events a decode of it must give.
fn reencode_group(
    version: Version,
    fetch: bool,
    events: &[GroupEvent],
) -> Option<(Vec<u8>, Vec<GroupEvent>)> {
    let mut out = Vec::new();
    let mut expected = Vec::new();
    let mut timestamps = Timestamps::new();
    let mut i = 0;
    if !fetch {
        let Some(GroupEvent::Header(header)) = events.first() else {
            return None;
        };
        UniStreamType::Group.encode(&mut out);
        header
            .encode(&mut out, version)
            .unwrap_or_else(|e| panic!("decoded {header:?} does not re-encode: {e}"));
        expected.push(GroupEvent::Header(*header));
        i = 1;
    }
    while let Some(GroupEvent::Frame { timestamp, size }) = events.get(i) {
        let payload: &[u8] = match events.get(i + 1) {
            Some(GroupEvent::Payload(bytes)) => bytes,
            _ => &[],
        };
        if payload.len() as u64 != *size {
            break;
        }
        let delta = if version.is_lite05() {
            timestamps
                .delta_for(*timestamp)
                .unwrap_or_else(|e| panic!("timestamp {timestamp} received but not sendable: {e}"))
        } else {
            0
        };
        FrameHeader {
            timestamp_delta: delta,
            size: *size,
        }
        .encode(&mut out, version)
        .unwrap_or_else(|e| panic!("frame header (delta {delta}, size {size}) not encodable: {e}"));
        out.extend_from_slice(payload);
        expected.push(events[i].clone());
        i += 1;
        if !payload.is_empty() {
            expected.push(events[i].clone());
            i += 1;
        }
    }
    expected.push(GroupEvent::End);
    Some((out, expected))
}

/// The incremental group-stream reader.
///
/// Input: byte 0 picks the version; byte 1 holds flags (bit 0: the last chunk carries FIN;
/// bit 1: tight [`Limits`]; bit 2: FETCH-reply mode, bare FRAMEs read with [`StreamReader`] +
/// [`FrameDecoder`] instead of a [`GroupStreamReader`]; bit 3: one byte per chunk) and in its
/// high nibble a count `n`; the next `n` bytes are chunk lengths used cyclically to split the
/// rest, which is the stream.
///
/// The chunked run must give exactly the items (payload pieces merged per frame) and outcome of
/// a one-chunk run, and both must match an independent whole-buffer [`Cursor`] decode. Payload
/// pieces must be zero-copy slices of the input with consistent `remaining` counts, and the
/// complete part of what decoded must re-encode and decode to the same items.
pub fn stream_reader(data: &[u8]) {
    let Some((version, rest)) = versioned(data) else {
        return;
    };
    let Some(input) = ReaderInput::parse(rest) else {
        return;
    };
    let limits = input.limits();
    let fin = input.flags & FLAG_FIN != 0;
    let fetch = input.flags & FLAG_FETCH != 0;

    let chunked = run_group_reader(version, &limits, fetch, fin, &input.stream, input.chunks());
    let whole = run_group_reader(version, &limits, fetch, fin, &input.stream, input.whole());
    assert_eq!(chunked, whole, "chunked and whole-buffer reads differ");
    let reference = reference_group(version, &limits, fetch, fin, &input.stream);
    assert_eq!(whole, reference, "reader and cursor decode differ");

    if let Some((bytes, expected)) = reencode_group(version, fetch, &whole.0) {
        let bytes = Bytes::from(bytes);
        let again = run_group_reader(
            version,
            &Limits::default(),
            fetch,
            true,
            &bytes,
            std::iter::once((bytes.clone(), true)),
        );
        assert_eq!(
            again,
            (expected, Outcome::Done),
            "re-encoded group stream decodes differently"
        );
    }
}

/// An item of a control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ControlItem {
    Bi(BiStreamType),
    Uni(UniStreamType),
    AnnounceRequest(AnnounceRequest),
    AnnounceOk(AnnounceOk),
    Announce(Announce),
    Subscribe(Subscribe),
    SubscribeUpdate(SubscribeUpdate),
    Response(SubscribeResponse),
    Fetch(Fetch),
    Probe(Probe),
    Goaway(Goaway),
    TrackRequest(TrackRequest),
    TrackInfo(TrackInfo),
    Group(GroupHeader),
    Setup(Setup),
}

/// What a control stream expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Bi,
    Uni,
    AnnounceRequest,
    AnnounceOk,
    Announce,
    Subscribe,
    SubscribeUpdate,
    Response,
    Fetch,
    Probe,
    Goaway,
    TrackRequest,
    TrackInfo,
    Group,
    Setup,
}

impl Expect {
    /// The scripts: what one side of each stream reads.
    fn script(selector: u8, version: Version) -> Self {
        match selector % 5 {
            // A responder reading a bidi stream: type, then the request(s).
            0 => Expect::Bi,
            // A uni stream: type, then GROUP or SETUP.
            1 => Expect::Uni,
            // A requester reading announce replies.
            2 if version.is_lite05() => Expect::AnnounceOk,
            2 => Expect::Announce,
            // A subscriber reading subscribe responses.
            3 => Expect::Response,
            // A TRACK requester reading TRACK_INFO.
            _ => Expect::TrackInfo,
        }
    }

    /// What comes after `item`; messages repeat until the stream ends.
    fn next(self, item: &ControlItem) -> Self {
        match item {
            ControlItem::Bi(ty) => match ty {
                BiStreamType::Announce => Expect::AnnounceRequest,
                BiStreamType::Subscribe => Expect::Subscribe,
                BiStreamType::Fetch => Expect::Fetch,
                BiStreamType::Probe => Expect::Probe,
                BiStreamType::Goaway => Expect::Goaway,
                BiStreamType::Track => Expect::TrackRequest,
            },
            ControlItem::Uni(UniStreamType::Group) => Expect::Group,
            ControlItem::Uni(UniStreamType::Setup) => Expect::Setup,
            ControlItem::Subscribe(_) => Expect::SubscribeUpdate,
            ControlItem::AnnounceOk(_) => Expect::Announce,
            _ => self,
        }
    }

    /// Read the next item incrementally.
    fn read(
        self,
        reader: &mut StreamReader,
        version: Version,
        limits: &Limits,
    ) -> Result<Option<ControlItem>, DecodeError> {
        use ControlItem as I;
        Ok(match self {
            Expect::Bi => reader.read_bi_type(version)?.map(I::Bi),
            Expect::Uni => reader.read_uni_type(version)?.map(I::Uni),
            Expect::AnnounceRequest => reader
                .read_message(version, limits)?
                .map(I::AnnounceRequest),
            Expect::AnnounceOk => reader.read_message(version, limits)?.map(I::AnnounceOk),
            Expect::Announce => reader.read_message(version, limits)?.map(I::Announce),
            Expect::Subscribe => reader.read_message(version, limits)?.map(I::Subscribe),
            Expect::SubscribeUpdate => reader
                .read_message(version, limits)?
                .map(I::SubscribeUpdate),
            Expect::Response => reader
                .read_subscribe_response(version, limits)?
                .map(I::Response),
            Expect::Fetch => reader.read_message(version, limits)?.map(I::Fetch),
            Expect::Probe => reader.read_message(version, limits)?.map(I::Probe),
            Expect::Goaway => reader.read_message(version, limits)?.map(I::Goaway),
            Expect::TrackRequest => reader.read_message(version, limits)?.map(I::TrackRequest),
            Expect::TrackInfo => reader.read_message(version, limits)?.map(I::TrackInfo),
            Expect::Group => reader.read_message(version, limits)?.map(I::Group),
            Expect::Setup => reader.read_message(version, limits)?.map(I::Setup),
        })
    }

    /// Decode the next item from a whole buffer.
    fn decode(
        self,
        cursor: &mut Cursor<'_>,
        version: Version,
        limits: &Limits,
    ) -> Result<ControlItem, DecodeError> {
        use ControlItem as I;
        Ok(match self {
            Expect::Bi => I::Bi(BiStreamType::decode(cursor, version)?),
            Expect::Uni => I::Uni(UniStreamType::decode(cursor, version)?),
            Expect::AnnounceRequest => {
                I::AnnounceRequest(Message::decode_with(cursor, version, limits)?)
            }
            Expect::AnnounceOk => I::AnnounceOk(Message::decode_with(cursor, version, limits)?),
            Expect::Announce => I::Announce(Message::decode_with(cursor, version, limits)?),
            Expect::Subscribe => I::Subscribe(Message::decode_with(cursor, version, limits)?),
            Expect::SubscribeUpdate => {
                I::SubscribeUpdate(Message::decode_with(cursor, version, limits)?)
            }
            Expect::Response => {
                I::Response(SubscribeResponse::decode_with(cursor, version, limits)?)
            }
            Expect::Fetch => I::Fetch(Message::decode_with(cursor, version, limits)?),
            Expect::Probe => I::Probe(Message::decode_with(cursor, version, limits)?),
            Expect::Goaway => I::Goaway(Message::decode_with(cursor, version, limits)?),
            Expect::TrackRequest => I::TrackRequest(Message::decode_with(cursor, version, limits)?),
            Expect::TrackInfo => I::TrackInfo(Message::decode_with(cursor, version, limits)?),
            Expect::Group => I::Group(Message::decode_with(cursor, version, limits)?),
            Expect::Setup => I::Setup(Message::decode_with(cursor, version, limits)?),
        })
    }
}

/// Encode one control item.
fn encode_item(item: &ControlItem, out: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
    use ControlItem as I;
    match item {
        I::Bi(ty) => {
            ty.encode(out);
            Ok(())
        }
        I::Uni(ty) => {
            ty.encode(out);
            Ok(())
        }
        I::AnnounceRequest(m) => m.encode(out, version),
        I::AnnounceOk(m) => m.encode(out, version),
        I::Announce(m) => m.encode(out, version),
        I::Subscribe(m) => m.encode(out, version),
        I::SubscribeUpdate(m) => m.encode(out, version),
        I::Response(m) => m.encode(out, version),
        I::Fetch(m) => m.encode(out, version),
        I::Probe(m) => m.encode(out, version),
        I::Goaway(m) => m.encode(out, version),
        I::TrackRequest(m) => m.encode(out, version),
        I::TrackInfo(m) => m.encode(out, version),
        I::Group(m) => m.encode(out, version),
        I::Setup(m) => m.encode(out, version),
    }
}

/// Feed `chunks` to a [`StreamReader`], reading every item the script expects after each push.
fn run_control_reader(
    version: Version,
    limits: &Limits,
    start: Expect,
    chunks: impl Iterator<Item = (Bytes, bool)>,
) -> (Vec<ControlItem>, Outcome) {
    let mut reader = StreamReader::new();
    let mut expect = start;
    let mut items = Vec::new();
    for (chunk, _) in chunks {
        reader.push(chunk);
        loop {
            match expect.read(&mut reader, version, limits) {
                Ok(Some(item)) => {
                    expect = expect.next(&item);
                    items.push(item);
                }
                Ok(None) => break,
                Err(err) => return (items, Outcome::Failed(err)),
            }
        }
    }
    let outcome = if reader.buffered() == 0 {
        Outcome::Done
    } else {
        Outcome::Incomplete
    };
    (items, outcome)
}

/// The same script over a whole buffer with a [`Cursor`].
fn reference_control(
    version: Version,
    limits: &Limits,
    start: Expect,
    stream: &[u8],
) -> (Vec<ControlItem>, Outcome) {
    let mut cursor = Cursor::new(stream);
    let mut expect = start;
    let mut items = Vec::new();
    loop {
        if cursor.is_empty() {
            return (items, Outcome::Done);
        }
        match expect.decode(&mut cursor, version, limits) {
            Ok(item) => {
                expect = expect.next(&item);
                items.push(item);
            }
            Err(DecodeError::Short) => return (items, Outcome::Incomplete),
            Err(err) => return (items, Outcome::Failed(err)),
        }
    }
}

/// The incremental control-stream reader ([`StreamReader::read_bi_type`], `read_uni_type`,
/// `read_message`, `read_subscribe_response`).
///
/// Input: byte 0 picks the version (`% 3`) and the script (`/ 3 % 5`): a bidi stream as its
/// responder reads it (type, then the request messages; SUBSCRIBE is followed by
/// SUBSCRIBE_UPDATEs), a uni stream (type, then GROUP or SETUP), announce replies (lite-05:
/// ANNOUNCE_OK first), subscribe responses, or TRACK_INFO. Messages repeat until the input
/// ends. Byte 1 holds flags (bit 1: tight [`Limits`]; bit 3: one byte per chunk) and in its
/// high nibble a count `n`; the next `n` bytes are chunk lengths used cyclically to split the
/// rest, which is the stream.
///
/// The chunked run must equal a one-chunk run exactly (items and outcome, errors included);
/// both must give the items of a whole-buffer [`Cursor`] decode and agree with it on whether
/// the stream decoded completely. Everything decoded must re-encode to a stream that decodes to
/// the same items.
pub fn control_reader(data: &[u8]) {
    let Some((&selector, _)) = data.split_first() else {
        return;
    };
    let version = version(selector);
    let start = Expect::script(selector / 3, version);
    let Some(input) = ReaderInput::parse(&data[1..]) else {
        return;
    };
    let limits = input.limits();

    let chunked = run_control_reader(version, &limits, start, input.chunks());
    let whole = run_control_reader(version, &limits, start, input.whole());
    assert_eq!(chunked, whole, "chunked and whole-buffer reads differ");
    let (items, outcome) = whole;
    let (ref_items, ref_outcome) = reference_control(version, &limits, start, &input.stream);
    assert_eq!(items, ref_items, "reader and cursor decode differ");
    assert_eq!(
        outcome == Outcome::Done,
        ref_outcome == Outcome::Done,
        "reader ended {outcome:?}, cursor {ref_outcome:?}"
    );
    if ref_outcome == Outcome::Incomplete {
        assert_eq!(
            outcome,
            Outcome::Incomplete,
            "reader rejects a valid prefix"
        );
    }

    let mut encoded = Vec::new();
    for item in &items {
        if let Err(err) = encode_item(item, &mut encoded, version) {
            panic!("decoded {item:?} does not re-encode on {version}: {err}");
        }
    }
    let again = reference_control(version, &Limits::default(), start, &encoded);
    assert_eq!(
        again,
        (items, Outcome::Done),
        "re-encoded control stream decodes differently"
    );
}
