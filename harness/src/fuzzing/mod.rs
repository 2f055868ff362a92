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

mod auth;
mod media;
mod websocket;
mod webtransport;
pub use auth::auth_token;
pub use media::{fmp4, media_catalog};
pub use websocket::{qmux_conn, qmux_frames, ws_frames, ws_handshake};
pub use webtransport::{capsule, connect_fields, h3_conn, h3_frames, h3_settings, http1, qpack};

use moq_proto::coding::{
    Cursor, DecodeError, EncodeError, Limits, MAX_HOPS, MAX_PATH_LEN, MAX_PATH_SEGMENTS,
};
use moq_proto::wire::{
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
        Err(other) => panic!("normalising {raw:?}: unexpected error {other:?}"),
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
            _ => panic!("a variant this harness does not know"),
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
                _ => panic!("a variant this harness does not know"),
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

// ---------------------------------------------------------------------------------------------
// The session state machine
// ---------------------------------------------------------------------------------------------

/// The whole [`Session`](moq_proto::session::Session) state machine, driven by a scripted peer,
/// transport and application.
///
/// Input: byte 0 picks the version (`% 3`) and, in `byte / 3`, flags: bit 0 the side (set:
/// server), bit 1 chaotic transport, bit 2 tight caps (a handful of streams and requests, small
/// [`Limits`]). The rest is a script of steps, each an opcode byte and its operands (bytes read
/// past the end are zero):
/// - peer input: open a stream (bidi or uni); open one carrying a valid encoded request (every
///   request type, GROUP and SETUP); raw bytes on a stream, with or without FIN; a valid
///   encoded message fitting what the stream carries (SUBSCRIBE_UPDATE, subscribe responses,
///   ANNOUNCE_OK / ANNOUNCE, FRAMEs, TRACK_INFO, PROBE); RESET_STREAM; STOP_SENDING; a raw or
///   valid datagram;
/// - transport: open grants for pending [`Command::Open`](moq_proto::session::Command::Open)
///   tokens, acknowledgements of finished streams, statistics, time passing (timeouts fire
///   when due);
/// - application: subscribe / update / unsubscribe / stop a group, request and cancel
///   announcements, FETCH, TRACK, PROBE, GOAWAY, close; answers to the peer's requests
///   (accept / reject / end / abort serves, drop groups, open groups and write frames,
///   datagrams, announce, FETCH replies, TRACK_INFO).
///
/// A strict transport delivers only what a QUIC transport could (no data after the peer's FIN
/// or reset, grants only for pending tokens, acknowledgements only after our FIN); a chaotic one
/// delivers anything, to stale and unknown streams and tokens too.
///
/// Checked: nothing panics; after every step the commands and events are drained, and nothing
/// follows `Event::Closed` (no event, no command but `CancelOpen`); every table stays within its
/// cap in [`Config`](moq_proto::session::Config); with a strict transport the commands obey the
/// transport's rules (streams written, finished, reset, stopped or re-prioritised exist and go
/// the right way; no write or FIN after our FIN or reset; no second FIN or reset; grants and
/// cancels name pending tokens), and once the application has cancelled everything and the
/// peer has closed every stream the session is idle; finally, after `handle_connection_lost`,
/// the session is idle with no timer.
pub fn session(data: &[u8]) {
    session_fuzz::run(data);
}

mod session_fuzz {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use moq_proto::codes::{SessionCode, StreamCode};
    use moq_proto::coding::Limits;
    use moq_proto::session::{
        Command, Config, Dir, Event, FetchId, FetchServeId, GroupSendId, InterestId, ListenerId,
        OpenToken, ServeId, Session, Side, StreamId, SubscribeParams, SubscriptionId, TrackQueryId,
        TrackServeId, TransportStats,
    };
    use moq_proto::wire::{
        Announce, AnnounceOk, AnnounceRequest, AnnounceStatus, BiStreamType, Datagram, Fetch,
        FrameHeader, Goaway, GroupHeader, Message, Path, Probe, ProbeLevel, Setup, Subscribe,
        SubscribeDrop, SubscribeEnd, SubscribeOk, SubscribeResponse, SubscribeStart,
        SubscribeUpdate, TrackInfo, TrackRequest, UniStreamType, Version,
    };

    /// Most handles of each kind the harness remembers (older ones are forgotten).
    const MAX_HANDLES: usize = 32;

    const PATHS: [&str; 5] = ["", "a", "a/b", "live", "live/x"];
    const TRACKS: [&str; 3] = ["", "t", "video"];

    /// The script, read a byte at a time; zeros past the end.
    struct Input<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl<'a> Input<'a> {
        fn done(&self) -> bool {
            self.pos >= self.data.len()
        }

        fn u8(&mut self) -> u8 {
            let b = self.data.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            b
        }

        fn bool(&mut self) -> bool {
            self.u8() & 1 == 1
        }

        /// Mostly small, sometimes at the edges of the varint range.
        fn value(&mut self) -> u64 {
            match self.u8() {
                250 => 1 << 30,
                251 => (1 << 53) - 1,
                252 => (1 << 62) - 1,
                253 => 1 << 62,
                254 => u64::MAX,
                255 => u64::from(self.u8()) << 8 | u64::from(self.u8()),
                b => u64::from(b),
            }
        }

        fn bytes(&mut self, n: usize) -> &'a [u8] {
            let start = self.pos.min(self.data.len());
            let end = (start + n).min(self.data.len());
            self.pos += n;
            &self.data[start..end]
        }

        fn path(&mut self) -> Path {
            Path::new(PATHS[self.u8() as usize % PATHS.len()]).unwrap()
        }

        fn track(&mut self) -> &'static str {
            TRACKS[self.u8() as usize % TRACKS.len()]
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
            let b = self.u8() as usize;
            (!items.is_empty()).then(|| items[b % items.len()])
        }

        fn params(&mut self) -> SubscribeParams {
            let flags = self.u8();
            SubscribeParams {
                priority: self.u8(),
                ordered: flags & 1 == 1,
                max_latency: Duration::from_millis(u64::from(self.u8()) * 20),
                start: (flags & 2 == 2).then(|| self.value()),
                end: (flags & 4 == 4).then(|| self.value()),
            }
        }
    }

    /// One direction of a stream, as the transport sees it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Half {
        /// This direction does not exist (the other half of a uni stream).
        Absent,
        Open,
        Finished,
        Reset,
    }

    #[derive(Debug)]
    struct StreamModel {
        dir: Dir,
        /// We opened it (granted), rather than the peer.
        ours: bool,
        /// The peer's send side (what we receive).
        peer: Half,
        /// Our send side.
        local: Half,
        /// Our FIN was acknowledged.
        acked: bool,
        /// The stream type: the first byte written on it (by us or by the peer).
        kind: Option<u8>,
    }

    struct Harness {
        s: Session,
        cfg: Config,
        version: Version,
        strict: bool,
        now: Instant,
        next_stream: u64,
        streams: BTreeMap<u64, StreamModel>,
        pending: BTreeMap<u64, Dir>,
        tokens_seen: BTreeSet<u64>,
        grants: usize,
        close_sent: bool,
        closed_event: bool,
        subs: Vec<SubscriptionId>,
        group_seqs: Vec<(SubscriptionId, u64)>,
        interests: Vec<InterestId>,
        fetches: Vec<FetchId>,
        queries: Vec<TrackQueryId>,
        serves: Vec<ServeId>,
        listeners: Vec<ListenerId>,
        fetch_serves: Vec<FetchServeId>,
        track_serves: Vec<TrackServeId>,
        /// Groups we send: id, payload still owed for the frame in progress, last timestamp.
        groups: Vec<(GroupSendId, u64, u64)>,
    }

    fn remember<T: PartialEq>(list: &mut Vec<T>, item: T) {
        if list.len() >= MAX_HANDLES {
            list.remove(0);
        }
        if !list.contains(&item) {
            list.push(item);
        }
    }

    fn encoded(
        f: impl FnOnce(&mut Vec<u8>) -> Result<(), moq_proto::coding::EncodeError>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        // A value this version cannot carry is simply not sent.
        if f(&mut out).is_err() {
            out.clear();
        }
        out
    }

    pub(super) fn run(data: &[u8]) {
        let Some((&selector, script)) = data.split_first() else {
            return;
        };
        let version = super::version(selector);
        let flags = selector / 3;
        let side = if flags & 1 == 1 {
            Side::Server
        } else {
            Side::Client
        };
        let strict = flags & 2 == 0;
        let mut cfg = Config::new(version, side);
        cfg.hop_id = 7;
        if side == Side::Client && version.is_lite05() {
            cfg.setup_path = Some("/fuzz".into());
        }
        if flags & 4 == 4 {
            cfg.limits = Limits {
                max_message_size: 48,
                max_frame_size: 256,
                max_group_size: 1024,
                max_group_frames: 8,
                max_datagram_size: 64,
            };
            cfg.max_subscriptions = 3;
            cfg.max_announce_requests = 2;
            cfg.max_requests = 2;
            cfg.max_streams = 8;
            cfg.max_stream_buffer = cfg.limits.message_size() + 64;
            cfg.max_pending_bytes = 4096;
        }
        let now = Instant::now();
        let mut h = Harness {
            s: Session::new(cfg.clone(), now),
            cfg,
            version,
            strict,
            now,
            next_stream: 0,
            streams: BTreeMap::new(),
            pending: BTreeMap::new(),
            tokens_seen: BTreeSet::new(),
            grants: 0,
            close_sent: false,
            closed_event: false,
            subs: Vec::new(),
            group_seqs: Vec::new(),
            interests: Vec::new(),
            fetches: Vec::new(),
            queries: Vec::new(),
            serves: Vec::new(),
            listeners: Vec::new(),
            fetch_serves: Vec::new(),
            track_serves: Vec::new(),
            groups: Vec::new(),
        };
        h.drain();
        let mut input = Input {
            data: script,
            pos: 0,
        };
        while !input.done() {
            h.step(&mut input);
            h.drain();
        }
        if strict {
            h.wind_down();
        }
        let now = h.now;
        h.s.handle_connection_lost(now, SessionCode::INTERNAL, "lost");
        h.drain();
        assert!(
            h.closed_event,
            "no Closed event after the connection was lost"
        );
        assert!(
            h.s.is_idle(),
            "not idle after the connection was lost: {}",
            h.s.tables()
        );
        assert!(h.s.poll_timeout().is_none(), "a timer after close");
    }

    impl Harness {
        // -------------------------------------------------------------------------------------
        // Outputs

        fn drain(&mut self) {
            loop {
                let mut progress = false;
                while let Some(command) = self.s.poll_command() {
                    self.on_command(command);
                    progress = true;
                }
                while let Some(event) = self.s.poll_event() {
                    self.on_event(event);
                    progress = true;
                }
                if !progress {
                    break;
                }
            }
            self.check_caps();
            if self.s.is_closed() {
                assert!(self.s.poll_timeout().is_none(), "a timer after close");
            }
        }

        fn check_caps(&self) {
            let t = self.s.tables();
            let cfg = &self.cfg;
            // The cap each table is held to. A table the session reports that is not listed
            // here fails the check, so a new table cannot escape it silently.
            let caps = |name: &str| -> Option<usize> {
                Some(match name {
                    "subscriptions" | "serves" => cfg.max_subscriptions,
                    "interests" | "listeners" => cfg.max_announce_requests,
                    "fetches" | "fetch_serves" | "track_queries" | "track_serves" => {
                        cfg.max_requests
                    }
                    // Incoming streams are refused at the cap; only our own opens go beyond.
                    "streams" => cfg.max_streams + self.grants,
                    "pending_bytes" => cfg.max_pending_bytes,
                    // Bounded by the streams (and opens) they belong to.
                    "group_recvs" | "unacked_ends" => t.streams,
                    "group_sends" => t.streams + t.pending_opens,
                    "pending_opens" => {
                        cfg.max_subscriptions
                            + cfg.max_announce_requests
                            + 2 * cfg.max_requests
                            + t.group_sends
                            + 4
                    }
                    // Drained by the harness after every step.
                    "commands" | "events" => usize::MAX,
                    _ => return None,
                })
            };
            for (name, count) in t.entries() {
                let cap = caps(name).unwrap_or_else(|| {
                    panic!("session table {name:?} has no cap in the fuzzer's check ({t})")
                });
                assert!(count <= cap, "{name}: {count} > {cap} ({t})");
            }
            if self.strict {
                assert_eq!(
                    t.pending_opens,
                    self.pending.len(),
                    "pending opens disagree with the commands: {t}"
                );
            }
        }

        fn on_command(&mut self, command: Command) {
            if self.close_sent || self.closed_event {
                assert!(
                    matches!(command, Command::CancelOpen { .. }),
                    "{command:?} after the session closed"
                );
            }
            let strict = self.strict;
            match command {
                Command::Open { token, dir, .. } => {
                    assert!(
                        self.tokens_seen.insert(token.0),
                        "open token {token:?} reused"
                    );
                    self.pending.insert(token.0, dir);
                }
                Command::CancelOpen { token } => {
                    let known = self.pending.remove(&token.0).is_some();
                    assert!(!strict || known, "CancelOpen for {token:?}, not pending");
                }
                Command::Write { stream, data } => {
                    let Some(st) = self.send_half(stream, "Write") else {
                        return;
                    };
                    if st.kind.is_none() && st.ours {
                        st.kind = data.first().copied();
                    }
                    let state = st.local;
                    assert!(
                        !strict || state == Half::Open,
                        "Write on {stream:?} whose send side is {state:?}"
                    );
                }
                Command::Finish { stream } => {
                    let Some(st) = self.send_half(stream, "Finish") else {
                        return;
                    };
                    let state = st.local;
                    assert!(
                        !strict || state == Half::Open,
                        "Finish on {stream:?} whose send side is {state:?}"
                    );
                    st.local = Half::Finished;
                }
                Command::Reset { stream, .. } => {
                    let Some(st) = self.send_half(stream, "Reset") else {
                        return;
                    };
                    let state = st.local;
                    assert!(
                        !strict || state != Half::Reset,
                        "Reset on {stream:?} whose send side is already reset"
                    );
                    st.local = Half::Reset;
                }
                Command::Stop { stream, .. } => {
                    let st = self.streams.get(&stream.0);
                    assert!(
                        !strict || st.is_some_and(|s| s.peer != Half::Absent),
                        "Stop on {stream:?}, which we do not receive on: {st:?}"
                    );
                }
                Command::SetPriority { stream, .. } => {
                    self.send_half(stream, "SetPriority");
                }
                Command::SendDatagram { .. } => {}
                Command::Close { .. } => {
                    assert!(!self.close_sent, "second Close");
                    self.close_sent = true;
                }
                _ => panic!("a variant this harness does not know"),
            }
        }

        /// The stream a send-side command names, checked (strict) to exist and to be ours to
        /// send on.
        fn send_half(&mut self, stream: StreamId, what: &str) -> Option<&mut StreamModel> {
            let strict = self.strict;
            let st = self.streams.get_mut(&stream.0);
            match st {
                Some(st) if st.local != Half::Absent => Some(st),
                other => {
                    assert!(
                        !strict,
                        "{what} on {stream:?}, which we cannot send on: {other:?}"
                    );
                    None
                }
            }
        }

        fn on_event(&mut self, event: Event) {
            assert!(!self.closed_event, "{event:?} after Closed");
            match event {
                Event::Subscribe { id, .. } => remember(&mut self.serves, id),
                Event::ServeClosed { id } => self.serves.retain(|s| *s != id),
                Event::AnnounceRequest { id, .. } => remember(&mut self.listeners, id),
                Event::ListenerClosed { id } => self.listeners.retain(|l| *l != id),
                Event::Fetch { id, .. } => remember(&mut self.fetch_serves, id),
                Event::FetchServeClosed { id } => self.fetch_serves.retain(|f| *f != id),
                Event::TrackRequest { id, .. } => remember(&mut self.track_serves, id),
                Event::SubscriptionClosed { id, .. } => {
                    self.subs.retain(|s| *s != id);
                    self.group_seqs.retain(|(s, _)| *s != id);
                }
                Event::GroupStart { id, seq } => remember(&mut self.group_seqs, (id, seq)),
                Event::InterestClosed { id, .. } => self.interests.retain(|i| *i != id),
                Event::FetchClosed { id, .. } => self.fetches.retain(|f| *f != id),
                Event::Closed { .. } => self.closed_event = true,
                _ => {}
            }
        }

        // -------------------------------------------------------------------------------------
        // Inputs

        fn new_stream(&mut self, dir: Dir, ours: bool) -> StreamId {
            let id = self.next_stream;
            self.next_stream += 1;
            let both = dir == Dir::Bi;
            self.streams.insert(
                id,
                StreamModel {
                    dir,
                    ours,
                    peer: if ours && !both {
                        Half::Absent
                    } else {
                        Half::Open
                    },
                    local: if !ours && !both {
                        Half::Absent
                    } else {
                        Half::Open
                    },
                    acked: false,
                    kind: None,
                },
            );
            StreamId(id)
        }

        /// A stream to deliver peer data on: one whose peer side is open (strict), or any.
        fn pick_recv(&self, input: &mut Input<'_>) -> Option<StreamId> {
            let ids: Vec<u64> = self
                .streams
                .iter()
                .filter(|(_, s)| !self.strict || s.peer == Half::Open)
                .map(|(id, _)| *id)
                .collect();
            input.pick(&ids).map(StreamId)
        }

        fn peer_data(&mut self, id: StreamId, data: Vec<u8>, fin: bool, split: u8) {
            let now = self.now;
            if let Some(st) = self.streams.get_mut(&id.0) {
                if !st.ours && st.kind.is_none() {
                    st.kind = data.first().copied();
                }
                if fin && st.peer == Half::Open {
                    st.peer = Half::Finished;
                }
            }
            let data = Bytes::from(data);
            let at = if data.is_empty() {
                0
            } else {
                split as usize % (data.len() + 1)
            };
            if at > 0 && at < data.len() {
                self.s.handle_stream_data(now, id, data.slice(..at), false);
                self.drain();
                self.s.handle_stream_data(now, id, data.slice(at..), fin);
            } else {
                self.s.handle_stream_data(now, id, data, fin);
            }
        }

        fn step(&mut self, input: &mut Input<'_>) {
            let now = self.now;
            match input.u8() % 20 {
                0 => {
                    let dir = if input.bool() { Dir::Uni } else { Dir::Bi };
                    let id = self.new_stream(dir, false);
                    self.s.handle_stream_opened(now, id, dir);
                }
                1 => self.peer_request(input),
                2 => {
                    let Some(id) = self.pick_recv(input) else {
                        return;
                    };
                    let flags = input.u8();
                    let n = input.u8() as usize % 48;
                    let bytes = input.bytes(n).to_vec();
                    self.peer_data(id, bytes, flags & 1 == 1, flags >> 1);
                }
                3 => {
                    let Some(id) = self.pick_recv(input) else {
                        return;
                    };
                    let flags = input.u8();
                    let bytes = self.valid_followup(id, input);
                    self.peer_data(id, bytes, flags & 1 == 1, flags >> 1);
                }
                4 => {
                    let Some(id) = self.pick_recv(input) else {
                        return;
                    };
                    let code = StreamCode(input.value());
                    if let Some(st) = self.streams.get_mut(&id.0) {
                        st.peer = Half::Reset;
                    }
                    self.s.handle_stream_reset(now, id, code);
                }
                5 => {
                    let ids: Vec<u64> = self
                        .streams
                        .iter()
                        .filter(|(_, s)| {
                            !self.strict
                                || s.local == Half::Open
                                || (s.local == Half::Finished && !s.acked)
                        })
                        .map(|(id, _)| *id)
                        .collect();
                    let Some(id) = input.pick(&ids) else {
                        return;
                    };
                    let code = StreamCode(input.value());
                    self.s.handle_stop_sending(now, StreamId(id), code);
                }
                6 => {
                    let ids: Vec<u64> = self
                        .streams
                        .iter()
                        .filter(|(_, s)| !self.strict || (s.local == Half::Finished && !s.acked))
                        .map(|(id, _)| *id)
                        .collect();
                    let Some(id) = input.pick(&ids) else {
                        return;
                    };
                    if let Some(st) = self.streams.get_mut(&id) {
                        st.acked = true;
                    }
                    self.s.handle_stream_finished(now, StreamId(id));
                }
                7 => self.grant(input),
                8 => self.datagram(input),
                9 => {
                    let b = input.u8();
                    let ms = if b & 0x80 == 0x80 {
                        u64::from(b & 0x7f) * 500
                    } else {
                        u64::from(b)
                    };
                    self.now += Duration::from_millis(ms);
                    let now = self.now;
                    let due = self.s.poll_timeout().is_some_and(|t| t <= now);
                    if due || !self.strict {
                        self.s.handle_timeout(now);
                    }
                }
                10 => {
                    let stats = TransportStats {
                        bitrate: input.value().saturating_mul(1000),
                        rtt: Duration::from_millis(input.value()),
                    };
                    self.s.handle_stats(now, stats);
                    if input.bool() {
                        // The transport's backlog: past the cap, older groups are shed.
                        let bytes = input.value().saturating_mul(64 * 1024);
                        self.s
                            .handle_send_backlog(usize::try_from(bytes).unwrap_or(usize::MAX));
                    }
                }
                11 => self.app_subscriber(input),
                12 => self.app_requests(input),
                13 => self.app_serve(input),
                14 => self.app_groups(input),
                15 => self.app_groups(input),
                16 => self.app_listener(input),
                17 => self.app_fetch_serve(input),
                18 => {
                    let Some(id) = input.pick(&self.track_serves) else {
                        return;
                    };
                    let result = if input.bool() {
                        Err(StreamCode(input.value()))
                    } else {
                        Ok(TrackInfo {
                            priority: input.u8(),
                            ordered: input.bool(),
                            max_latency: Duration::from_millis(input.value()),
                            timescale: input.value(),
                        })
                    };
                    self.track_serves.retain(|t| *t != id);
                    self.s.track_info_reply(id, result);
                }
                _ => {
                    // Rarely: close the session (the rest of the script tests the aftermath).
                    let b = input.u8();
                    if b == 0xc1 {
                        self.s.close(SessionCode(input.value()), "fuzz");
                    } else if b & 1 == 1 {
                        // A duplicate open of a known stream is ignored.
                        if let Some(id) = self.pick_recv(input) {
                            let dir = self.streams[&id.0].dir;
                            if !self.strict {
                                self.s.handle_stream_opened(now, id, dir);
                            }
                        }
                    } else if !self.strict {
                        // Data for a stream nobody opened.
                        let id = StreamId(self.next_stream + u64::from(input.u8()));
                        let bytes = input.bytes(8).to_vec();
                        self.s
                            .handle_stream_data(now, id, Bytes::from(bytes), input.bool());
                    }
                }
            }
        }

        fn grant(&mut self, input: &mut Input<'_>) {
            let now = self.now;
            let token = if self.strict {
                let tokens: Vec<u64> = self.pending.keys().copied().collect();
                match input.pick(&tokens) {
                    Some(t) => t,
                    None => return,
                }
            } else {
                u64::from(input.u8() % 16)
            };
            let dir = self.pending.remove(&token).unwrap_or(Dir::Bi);
            let id = self.new_stream(dir, true);
            self.grants += 1;
            self.s.handle_open_granted(now, OpenToken(token), id);
        }

        /// Open a stream from the peer and send a valid request on it.
        fn peer_request(&mut self, input: &mut Input<'_>) {
            let version = self.version;
            let kind = input.u8();
            let (dir, bytes) = match kind % 8 {
                0 => (
                    Dir::Bi,
                    encoded(|out| {
                        BiStreamType::Subscribe.encode(out);
                        Subscribe {
                            id: input.value(),
                            broadcast: input.path(),
                            track: input.track().into(),
                            priority: input.u8(),
                            ordered: input.bool(),
                            max_latency: Duration::from_millis(u64::from(input.u8()) * 20),
                            start: input.bool().then(|| input.value()),
                            end: input.bool().then(|| input.value()),
                        }
                        .encode(out, version)
                    }),
                ),
                1 => (
                    Dir::Bi,
                    encoded(|out| {
                        BiStreamType::Announce.encode(out);
                        AnnounceRequest {
                            prefix: input.path(),
                            exclude_hop: input.value(),
                        }
                        .encode(out, version)
                    }),
                ),
                2 => (
                    Dir::Bi,
                    encoded(|out| {
                        BiStreamType::Fetch.encode(out);
                        Fetch {
                            broadcast: input.path(),
                            track: input.track().into(),
                            priority: input.u8(),
                            group: input.value(),
                        }
                        .encode(out, version)
                    }),
                ),
                3 => (
                    Dir::Bi,
                    encoded(|out| {
                        BiStreamType::Probe.encode(out);
                        if input.bool() {
                            Probe {
                                bitrate: input.value(),
                                rtt_ms: input.value(),
                            }
                            .encode(out, version)?;
                        }
                        Ok(())
                    }),
                ),
                4 => (
                    Dir::Bi,
                    encoded(|out| {
                        if !version.has_goaway() {
                            return Err(moq_proto::coding::EncodeError::UnsupportedVersion {
                                what: "GOAWAY",
                                version,
                            });
                        }
                        BiStreamType::Goaway.encode(out);
                        Goaway {
                            uri: if input.bool() {
                                "moqt://x/y".into()
                            } else {
                                String::new()
                            },
                        }
                        .encode(out, version)
                    }),
                ),
                5 => (
                    Dir::Bi,
                    encoded(|out| {
                        BiStreamType::Track.encode(out);
                        if !version.is_lite05() {
                            // An unknown stream type before lite-05: refused alone.
                            return Ok(());
                        }
                        TrackRequest {
                            broadcast: input.path(),
                            track: input.track().into(),
                        }
                        .encode(out, version)
                    }),
                ),
                6 => (
                    Dir::Uni,
                    encoded(|out| {
                        UniStreamType::Group.encode(out);
                        GroupHeader {
                            subscribe_id: u64::from(input.u8() % 4),
                            sequence: input.value(),
                        }
                        .encode(out, version)
                    }),
                ),
                _ => (
                    Dir::Uni,
                    encoded(|out| {
                        out.push(UniStreamType::Setup.code() as u8);
                        Setup {
                            probe: match input.u8() % 3 {
                                0 => ProbeLevel::None,
                                1 => ProbeLevel::Report,
                                _ => ProbeLevel::Increase,
                            },
                            path: input.bool().then(|| "/fuzz?x=1".to_string()),
                            role: None,
                        }
                        .encode(out, version)
                    }),
                ),
            };
            let fin = kind & 0x80 == 0x80;
            let split = input.u8();
            let id = self.new_stream(dir, false);
            self.s.handle_stream_opened(self.now, id, dir);
            self.drain();
            self.peer_data(id, bytes, fin, split);
        }

        /// A valid message for what the stream carries (by its type byte), else any.
        fn valid_followup(&mut self, id: StreamId, input: &mut Input<'_>) -> Vec<u8> {
            let version = self.version;
            let (ours, kind, dir) = match self.streams.get(&id.0) {
                Some(s) => (s.ours, s.kind, s.dir),
                None => (false, None, Dir::Bi),
            };
            let choice = input.u8();
            let frame = |input: &mut Input<'_>| {
                encoded(|out| {
                    let size = u64::from(input.u8() % 64);
                    FrameHeader {
                        timestamp_delta: if version.is_lite05() {
                            i64::from(input.u8() as i8)
                        } else {
                            0
                        },
                        size,
                    }
                    .encode(out, version)?;
                    let n =
                        (size as usize).saturating_sub(usize::from(input.u8().is_multiple_of(4)));
                    out.extend(std::iter::repeat_n(0xab, n));
                    Ok(())
                })
            };
            let bi = |ty: BiStreamType| Some(ty.code() as u8);
            match (ours, dir, kind) {
                // Our SUBSCRIBE: the publisher's responses.
                (true, Dir::Bi, k) if k == bi(BiStreamType::Subscribe) => encoded(|out| {
                    let response = match (choice % 3, version.is_lite05()) {
                        (0, false) => SubscribeResponse::Ok(SubscribeOk {
                            priority: input.u8(),
                            ordered: input.bool(),
                            max_latency: Duration::from_millis(input.value()),
                            start: input.bool().then(|| input.value()),
                            end: input.bool().then(|| input.value()),
                        }),
                        (0, true) => SubscribeResponse::Start(SubscribeStart {
                            group: input.value(),
                        }),
                        (1, true) => SubscribeResponse::End(SubscribeEnd {
                            group: input.value(),
                        }),
                        _ => SubscribeResponse::Drop(SubscribeDrop {
                            start: input.value(),
                            end: input.value(),
                            error: input.value(),
                        }),
                    };
                    response.encode(out, version)
                }),
                // Our announce request: ANNOUNCE_OK (lite-05) and announcements.
                (true, Dir::Bi, k) if k == bi(BiStreamType::Announce) => encoded(|out| {
                    if choice.is_multiple_of(4) && version.is_lite05() {
                        AnnounceOk {
                            hop_id: input.value(),
                            active_count: input.value(),
                        }
                        .encode(out, version)
                    } else {
                        let status = match input.u8() % 3 {
                            0 => AnnounceStatus::Ended,
                            1 => AnnounceStatus::Active,
                            _ if version.is_lite05() => AnnounceStatus::Restart,
                            _ => AnnounceStatus::Active,
                        };
                        let hops = (0..input.u8() % 4)
                            .map(|i| {
                                if version.has_hops() {
                                    u64::from(i) + 100
                                } else {
                                    0
                                }
                            })
                            .collect();
                        Announce {
                            status,
                            suffix: input.path(),
                            hops,
                        }
                        .encode(out, version)
                    }
                }),
                (true, Dir::Bi, k) if k == bi(BiStreamType::Fetch) => frame(input),
                (true, Dir::Bi, k) if k == bi(BiStreamType::Track) => encoded(|out| {
                    TrackInfo {
                        priority: input.u8(),
                        ordered: input.bool(),
                        max_latency: Duration::from_millis(input.value()),
                        timescale: input.value().max(1),
                    }
                    .encode(out, version)
                }),
                (_, Dir::Bi, k) if k == bi(BiStreamType::Probe) => encoded(|out| {
                    Probe {
                        bitrate: input.value(),
                        rtt_ms: input.value(),
                    }
                    .encode(out, version)
                }),
                // The peer's SUBSCRIBE: updates.
                (false, Dir::Bi, k) if k == bi(BiStreamType::Subscribe) => encoded(|out| {
                    let p = input.params();
                    SubscribeUpdate {
                        priority: p.priority,
                        ordered: p.ordered,
                        max_latency: p.max_latency,
                        start: p.start,
                        end: p.end,
                    }
                    .encode(out, version)
                }),
                // The peer's group stream: frames.
                (false, Dir::Uni, Some(0)) => frame(input),
                _ => frame(input),
            }
        }

        fn datagram(&mut self, input: &mut Input<'_>) {
            let now = self.now;
            let bytes = if input.bool() {
                let n = input.u8() as usize % 32;
                let datagram = Datagram {
                    subscribe_id: u64::from(input.u8() % 4),
                    sequence: input.value(),
                    timestamp: input.value(),
                    payload: Bytes::from(input.bytes(n).to_vec()),
                };
                let mut out = Vec::new();
                if datagram.encode_header(&mut out, self.version).is_err() {
                    // Not on this version: send it anyway, the session must ignore it.
                    out.clear();
                    for v in [datagram.subscribe_id, datagram.sequence, datagram.timestamp] {
                        out.push((v & 0x3f) as u8);
                    }
                }
                out.extend_from_slice(&datagram.payload);
                out
            } else {
                let n = input.u8() as usize % 48;
                input.bytes(n).to_vec()
            };
            self.s.handle_datagram(now, Bytes::from(bytes));
        }

        // -------------------------------------------------------------------------------------
        // Application calls

        fn app_subscriber(&mut self, input: &mut Input<'_>) {
            match input.u8() % 5 {
                0 | 1 => {
                    let (path, track, params) = (input.path(), input.track(), input.params());
                    if let Ok(id) = self.s.subscribe(path, track, params) {
                        remember(&mut self.subs, id);
                    }
                }
                2 => {
                    if let Some(id) = input.pick(&self.subs) {
                        let params = input.params();
                        let _ = self.s.update_subscription(id, params);
                    }
                }
                3 => {
                    if let Some(id) = input.pick(&self.subs) {
                        self.s.unsubscribe(id);
                    }
                }
                _ => {
                    if let Some((id, seq)) = input.pick(&self.group_seqs) {
                        self.s.stop_group(id, seq);
                    }
                }
            }
        }

        fn app_requests(&mut self, input: &mut Input<'_>) {
            let now = self.now;
            match input.u8() % 8 {
                0 | 1 => {
                    let (prefix, hop) = (input.path(), input.value());
                    if let Ok(id) = self.s.request_announcements(prefix, hop) {
                        remember(&mut self.interests, id);
                    }
                }
                2 => {
                    if let Some(id) = input.pick(&self.interests) {
                        self.s.cancel_announcements(id);
                    }
                }
                3 => {
                    let (path, track, priority, group) =
                        (input.path(), input.track(), input.u8(), input.value());
                    if let Ok(id) = self.s.fetch(path, track, priority, group) {
                        remember(&mut self.fetches, id);
                    }
                }
                4 => {
                    if let Some(id) = input.pick(&self.fetches) {
                        self.s.cancel_fetch(id);
                    }
                }
                5 => {
                    let (path, track) = (input.path(), input.track());
                    if let Ok(id) = self.s.track_info(path, track) {
                        remember(&mut self.queries, id);
                    }
                }
                6 => {
                    let target = input.bool().then(|| input.value());
                    let _ = self.s.probe(target);
                }
                _ => {
                    let drain = Duration::from_millis(u64::from(input.u8()) * 100);
                    let _ = self.s.goaway(now, "moqt://elsewhere/", drain);
                }
            }
        }

        fn app_serve(&mut self, input: &mut Input<'_>) {
            let Some(id) = input.pick(&self.serves) else {
                return;
            };
            match input.u8() % 6 {
                0 | 1 => {
                    let info = TrackInfo {
                        priority: input.u8(),
                        ordered: input.bool(),
                        max_latency: Duration::from_millis(u64::from(input.u8()) * 20),
                        timescale: 1000,
                    };
                    let latest = input.bool().then(|| input.value());
                    let _ = self.s.accept_serve(id, info, latest);
                }
                2 => {
                    self.s.reject_serve(id, StreamCode(input.value()));
                    self.serves.retain(|s| *s != id);
                }
                3 => self.s.end_serve(id, input.value()),
                4 => self.s.abort_serve(id, StreamCode(input.value())),
                _ => {
                    let (start, end, code) = (input.value(), input.value(), input.value());
                    self.s.drop_groups(id, start, end, StreamCode(code));
                }
            }
        }

        fn app_groups(&mut self, input: &mut Input<'_>) {
            let now = self.now;
            match input.u8() % 6 {
                0 => {
                    let Some(serve) = input.pick(&self.serves) else {
                        return;
                    };
                    let seq = input.value();
                    let age = Duration::from_millis(u64::from(input.u8()) * 20);
                    let arrival = now.checked_sub(age).unwrap_or(now);
                    let first_ts = input.bool().then(|| input.value());
                    if let Some(group) = self.s.open_group(now, serve, seq, arrival, first_ts) {
                        remember(&mut self.groups, (group, 0, 0));
                    }
                }
                1 | 2 => {
                    let Some(ix) = input.pick(&(0..self.groups.len()).collect::<Vec<_>>()) else {
                        return;
                    };
                    let (group, remaining, last_ts) = self.groups[ix];
                    let ok = if remaining == 0 {
                        let size = u64::from(input.u8()) * 4;
                        let take = (input.u8() as usize * 4).min(size as usize);
                        let ts = match input.u8() {
                            255 => input.value(),
                            b => last_ts.saturating_add(u64::from(b)),
                        };
                        let chunk = Bytes::from(vec![0x5a; take]);
                        let ok = self.s.write_frame(now, group, ts, size, chunk);
                        self.groups[ix] = (group, size - take as u64, ts);
                        ok
                    } else {
                        let take = (input.u8() as u64 * 4).min(remaining);
                        let chunk = Bytes::from(vec![0xa5; take as usize]);
                        let ok = self.s.write_payload(group, chunk);
                        self.groups[ix].1 = remaining - take;
                        ok
                    };
                    if !ok {
                        self.groups.remove(ix);
                    }
                }
                3 => {
                    if let Some(ix) = input.pick(&(0..self.groups.len()).collect::<Vec<_>>()) {
                        let (group, _, _) = self.groups.remove(ix);
                        self.s.finish_group(group);
                    }
                }
                4 => {
                    if let Some(ix) = input.pick(&(0..self.groups.len()).collect::<Vec<_>>()) {
                        let (group, _, _) = self.groups.remove(ix);
                        self.s.abort_group(group, StreamCode(input.value()));
                    }
                }
                _ => {
                    let Some(serve) = input.pick(&self.serves) else {
                        return;
                    };
                    let (seq, ts) = (input.value(), input.value());
                    let n = input.u8() as usize * 6;
                    let payload = Bytes::from(vec![0x77; n]);
                    self.s.send_datagram(serve, seq, ts, &payload);
                }
            }
        }

        fn app_listener(&mut self, input: &mut Input<'_>) {
            let Some(id) = input.pick(&self.listeners) else {
                return;
            };
            match input.u8() % 4 {
                0 | 1 => {
                    let n = input.u8() % 4;
                    let entries: Vec<(Path, Vec<u64>)> = (0..n)
                        .map(|_| {
                            let hops = (0..input.u8() % 3).map(|_| input.value()).collect();
                            (input.path(), hops)
                        })
                        .collect();
                    let _ = self
                        .s
                        .announce_initial(id, entries.iter().map(|(p, h)| (p, h.as_slice())));
                }
                2 => {
                    let (path, active) = (input.path(), input.bool());
                    let hops: Vec<u64> = (0..input.u8() % 3).map(|_| input.value()).collect();
                    let _ = self.s.announce(id, &path, active, &hops);
                }
                _ => {
                    self.s.close_listener(id);
                    self.listeners.retain(|l| *l != id);
                }
            }
        }

        fn app_fetch_serve(&mut self, input: &mut Input<'_>) {
            let Some(id) = input.pick(&self.fetch_serves) else {
                return;
            };
            match input.u8() % 4 {
                0 => {
                    let (ts, size) = (input.value(), u64::from(input.u8()));
                    let take = (input.u8() as u64).min(size) as usize;
                    self.s.fetch_frame(id, ts, size, Bytes::from(vec![1; take]));
                }
                1 => {
                    let n = input.u8() as usize;
                    self.s.fetch_payload(id, Bytes::from(vec![2; n]));
                }
                2 => {
                    self.s.fetch_finish(id);
                    self.fetch_serves.retain(|f| *f != id);
                }
                _ => {
                    self.s.fetch_reject(id, StreamCode(input.value()));
                    self.fetch_serves.retain(|f| *f != id);
                }
            }
        }

        // -------------------------------------------------------------------------------------
        // Orderly end

        /// The application cancels everything it holds, the transport grants every pending
        /// open, the peer FINs (then resets) every stream it sends on and stops ours, and every
        /// FIN is acknowledged: the session must then hold nothing.
        fn wind_down(&mut self) {
            for round in 0..4 {
                if self.s.is_closed() {
                    return;
                }
                for id in std::mem::take(&mut self.subs) {
                    self.s.unsubscribe(id);
                }
                for id in std::mem::take(&mut self.interests) {
                    self.s.cancel_announcements(id);
                }
                for id in std::mem::take(&mut self.fetches) {
                    self.s.cancel_fetch(id);
                }
                for (group, _, _) in std::mem::take(&mut self.groups) {
                    self.s.abort_group(group, StreamCode(0x1));
                }
                for id in std::mem::take(&mut self.serves) {
                    self.s.abort_serve(id, StreamCode(0x1));
                }
                for id in std::mem::take(&mut self.listeners) {
                    self.s.close_listener(id);
                }
                for id in std::mem::take(&mut self.fetch_serves) {
                    self.s.fetch_reject(id, StreamCode(0x1));
                }
                for id in std::mem::take(&mut self.track_serves) {
                    self.s.track_info_reply(id, Err(StreamCode(0x1)));
                }
                self.drain();
                let now = self.now;
                for token in self.pending.keys().copied().collect::<Vec<_>>() {
                    let dir = self.pending.remove(&token).unwrap_or(Dir::Bi);
                    let id = self.new_stream(dir, true);
                    self.grants += 1;
                    self.s.handle_open_granted(now, OpenToken(token), id);
                    self.drain();
                }
                let open: Vec<u64> = self
                    .streams
                    .iter()
                    .filter(|(_, s)| s.peer == Half::Open)
                    .map(|(id, _)| *id)
                    .collect();
                for id in open {
                    if let Some(st) = self.streams.get_mut(&id) {
                        if round == 0 {
                            st.peer = Half::Finished;
                        } else {
                            st.peer = Half::Reset;
                        }
                    }
                    if round == 0 {
                        self.s
                            .handle_stream_data(now, StreamId(id), Bytes::new(), true);
                    } else {
                        self.s
                            .handle_stream_reset(now, StreamId(id), StreamCode(0x1));
                    }
                    self.drain();
                }
                if round > 0 {
                    let sending: Vec<u64> = self
                        .streams
                        .iter()
                        .filter(|(_, s)| s.local == Half::Open)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in sending {
                        self.s
                            .handle_stop_sending(now, StreamId(id), StreamCode(0x1));
                        self.drain();
                    }
                }
                let finished: Vec<u64> = self
                    .streams
                    .iter()
                    .filter(|(_, s)| s.local == Half::Finished && !s.acked)
                    .map(|(id, _)| *id)
                    .collect();
                for id in finished {
                    if let Some(st) = self.streams.get_mut(&id) {
                        st.acked = true;
                    }
                    self.s.handle_stream_finished(now, StreamId(id));
                    self.drain();
                }
            }
            if !self.s.is_closed() {
                assert!(
                    self.s.is_idle(),
                    "not idle once everything was cancelled and closed: {}",
                    self.s.tables()
                );
            }
        }
    }
}
