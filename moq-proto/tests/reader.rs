//! Chunk-split invariance of the incremental readers.
//!
//! Random streams (group streams, FETCH replies and every kind of control stream) are encoded,
//! split at random points (whole, one byte at a time, random cuts with empty chunks) and fed
//! through [`StreamReader`] + [`FrameDecoder`] and through [`GroupStreamReader`]. The decoded
//! sequence must equal the whole-buffer decode and the generated script; payload pieces must be
//! zero-copy slices of one input chunk; and the reader never buffers more than one header plus
//! one chunk.

mod common;

use bytes::Bytes;
use common::*;
use moq_proto::coding::{DecodeError, Limits, MAX_VARINT};
use moq_proto::wire::{
    BiStreamType, FrameDecoder, FrameHeader, FrameItem, GroupItem, GroupStreamReader, StreamReader,
    Timestamps, UniStreamType, Version,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

/// One element of a stream as the sender writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Bi(BiStreamType),
    Uni(UniStreamType),
    Msg(Msg),
}

/// A stream: control items, then (optionally) bare frames up to FIN.
#[derive(Debug, Clone)]
struct Script {
    items: Vec<Item>,
    /// `(timestamp, payload)`; `Some` means a frame sequence follows the items.
    frames: Option<Vec<(u64, Vec<u8>)>>,
}

/// What a reader reports, with a frame's payload pieces merged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Bi(BiStreamType),
    Uni(UniStreamType),
    Msg(Msg),
    Frame {
        timestamp: u64,
        size: u64,
        payload: Vec<u8>,
    },
    End,
}

impl Script {
    fn encode(&self, version: Version) -> Vec<u8> {
        let mut out = Vec::new();
        for item in &self.items {
            match item {
                Item::Bi(t) => t.encode(&mut out),
                Item::Uni(t) => t.encode(&mut out),
                Item::Msg(m) => out.extend(m.encode(version).expect("valid message")),
            }
        }
        if let Some(frames) = &self.frames {
            let mut ts = Timestamps::new();
            for (timestamp, payload) in frames {
                let timestamp_delta = if version.is_lite05() {
                    ts.delta_for(*timestamp).expect("delta fits")
                } else {
                    0
                };
                FrameHeader {
                    timestamp_delta,
                    size: payload.len() as u64,
                }
                .encode(&mut out, version)
                .expect("valid frame header");
                out.extend_from_slice(payload);
            }
        }
        out
    }

    fn expected(&self, version: Version) -> Vec<Event> {
        let mut out: Vec<Event> = self
            .items
            .iter()
            .map(|i| match i {
                Item::Bi(t) => Event::Bi(*t),
                Item::Uni(t) => Event::Uni(*t),
                Item::Msg(m) => Event::Msg(m.clone()),
            })
            .collect();
        if let Some(frames) = &self.frames {
            for (timestamp, payload) in frames {
                out.push(Event::Frame {
                    timestamp: if version.is_lite05() { *timestamp } else { 0 },
                    size: payload.len() as u64,
                    payload: payload.clone(),
                });
            }
            out.push(Event::End);
        }
        out
    }

    /// The longest non-payload unit a reader must buffer whole.
    fn max_header(&self, version: Version) -> usize {
        let items = self
            .items
            .iter()
            .map(|i| match i {
                Item::Bi(_) | Item::Uni(_) => 1,
                Item::Msg(m) => m.encode(version).expect("valid").len(),
            })
            .max()
            .unwrap_or(0);
        // A frame header is at most two 8-byte varints.
        items.max(16)
    }
}

/// The address ranges of the input chunks, sorted, to check zero-copy quickly.
struct Inputs(Vec<(usize, usize)>);

impl Inputs {
    fn new(chunks: &[Bytes]) -> Self {
        let mut ranges: Vec<(usize, usize)> = chunks
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| {
                let r = c.as_ptr_range();
                (r.start as usize, r.end as usize)
            })
            .collect();
        ranges.sort_unstable();
        Inputs(ranges)
    }

    /// Whether `chunk` lies entirely inside one input chunk.
    fn contains(&self, chunk: &Bytes) -> bool {
        let r = chunk.as_ptr_range();
        let (start, end) = (r.start as usize, r.end as usize);
        let i = self.0.partition_point(|(s, _)| *s <= start);
        i > 0 && end <= self.0[i - 1].1
    }
}

/// Record a frame item, merging payload pieces into the open frame.
fn record_frame(
    events: &mut Vec<Event>,
    item: FrameItem,
    inputs: &Inputs,
) -> Result<bool, TestCaseError> {
    match item {
        FrameItem::Header { timestamp, size } => {
            events.push(Event::Frame {
                timestamp,
                size,
                payload: Vec::new(),
            });
        }
        FrameItem::Payload { chunk, remaining } => {
            prop_assert!(!chunk.is_empty(), "empty payload piece");
            prop_assert!(inputs.contains(&chunk), "payload piece was copied");
            let Some(Event::Frame { size, payload, .. }) = events.last_mut() else {
                return Err(TestCaseError::fail("payload outside a frame"));
            };
            payload.extend_from_slice(&chunk);
            prop_assert!(payload.len() as u64 <= *size);
            prop_assert_eq!(remaining, *size - payload.len() as u64);
        }
        FrameItem::End => {
            events.push(Event::End);
            return Ok(true);
        }
    }
    Ok(false)
}

/// Feed `chunks` through a [`StreamReader`] (+ [`FrameDecoder`]), decoding what the script says
/// comes next, and return the events.
fn run_stream_reader(
    script: &Script,
    version: Version,
    chunks: &[Bytes],
    fin_separately: bool,
) -> Result<Vec<Event>, TestCaseError> {
    let limits = Limits::default();
    let max_header = script.max_header(version);
    let mut reader = StreamReader::new();
    let mut frames = FrameDecoder::new(version);
    let mut events = Vec::new();
    let mut next = 0usize;
    let mut done = false;
    let inputs = Inputs::new(chunks);

    let mut drain = |reader: &mut StreamReader,
                     events: &mut Vec<Event>,
                     chunk_len: usize|
     -> Result<(), TestCaseError> {
        loop {
            prop_assert!(
                reader.buffered() <= max_header + chunk_len,
                "buffered {} > header {} + chunk {}",
                reader.buffered(),
                max_header,
                chunk_len
            );
            if done {
                return Ok(());
            }
            if let Some(item) = script.items.get(next) {
                let got = match item {
                    Item::Bi(_) => reader.read_bi_type(version).map(|t| t.map(Event::Bi)),
                    Item::Uni(_) => reader.read_uni_type(version).map(|t| t.map(Event::Uni)),
                    Item::Msg(m) => m
                        .read_like(reader, version, &limits)
                        .map(|m| m.map(Event::Msg)),
                };
                match got {
                    Ok(Some(e)) => {
                        events.push(e);
                        next += 1;
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(TestCaseError::fail(format!("decode error {e:?}"))),
                }
            } else if script.frames.is_some() {
                match frames.read(reader, &limits) {
                    Ok(Some(item)) => done = record_frame(events, item, &inputs)?,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(TestCaseError::fail(format!("frame error {e:?}"))),
                }
            } else {
                done = true;
            }
        }
    };

    for (i, chunk) in chunks.iter().enumerate() {
        let before = reader.buffered();
        prop_assert!(
            before <= max_header,
            "{before} left buffered between chunks"
        );
        reader.push(chunk.clone());
        prop_assert_eq!(reader.buffered(), before + chunk.len());
        if i + 1 == chunks.len() && !fin_separately {
            reader.finish();
        }
        drain(&mut reader, &mut events, chunk.len())?;
    }
    if fin_separately || chunks.is_empty() {
        reader.finish();
        drain(&mut reader, &mut events, 0)?;
    }
    prop_assert!(done, "stream incomplete after FIN: {:?}", events);
    prop_assert!(reader.is_finished());
    prop_assert!(!reader.is_truncated());
    Ok(events)
}

/// Feed a group stream through [`GroupStreamReader`].
fn run_group_reader(
    version: Version,
    chunks: &[Bytes],
    fin_separately: bool,
) -> Result<Vec<Event>, TestCaseError> {
    let mut reader = GroupStreamReader::new(version, Limits::default());
    let mut events = vec![Event::Uni(UniStreamType::Group)];
    let mut done = false;
    let inputs = Inputs::new(chunks);
    let mut drain =
        |reader: &mut GroupStreamReader, events: &mut Vec<Event>| -> Result<(), TestCaseError> {
            while !done {
                match reader.read() {
                    Ok(Some(GroupItem::Header(h))) => events.push(Event::Msg(h.into())),
                    Ok(Some(GroupItem::Frame(item))) => done = record_frame(events, item, &inputs)?,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(TestCaseError::fail(format!("group error {e:?}"))),
                }
            }
            Ok(())
        };
    for (i, chunk) in chunks.iter().enumerate() {
        reader.push(chunk.clone(), i + 1 == chunks.len() && !fin_separately);
        drain(&mut reader, &mut events)?;
    }
    if fin_separately || chunks.is_empty() {
        reader.push(Bytes::new(), true);
        drain(&mut reader, &mut events)?;
    }
    prop_assert!(done, "group incomplete after FIN: {:?}", events);
    prop_assert_eq!(reader.read(), Ok(None));
    Ok(events)
}

// ---------------------------------------------------------------------------------------------
// Splitting.

#[derive(Debug, Clone)]
enum Split {
    Whole,
    /// One byte per chunk, with empty chunks at the given positions.
    Bytewise(Vec<Index>),
    /// Cut at the given positions (repeats make empty chunks).
    Random(Vec<Index>),
}

fn split() -> impl Strategy<Value = Split> {
    prop_oneof![
        1 => Just(Split::Whole),
        2 => vec(any::<Index>(), 0..4).prop_map(Split::Bytewise),
        5 => vec(any::<Index>(), 0..24).prop_map(Split::Random),
    ]
}

/// Split `bytes` into separately allocated chunks, so a payload slice that spans two chunks
/// or was copied is detectable by address.
fn apply(split: &Split, bytes: &[u8]) -> Vec<Bytes> {
    let n = bytes.len();
    let mut cuts: Vec<usize> = match split {
        Split::Whole => Vec::new(),
        Split::Bytewise(empties) => {
            let mut c: Vec<usize> = (1..n).collect();
            c.extend(empties.iter().map(|i| i.index(n + 1)));
            c
        }
        Split::Random(idx) => idx.iter().map(|i| i.index(n + 1)).collect(),
    };
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts.into_iter().chain(std::iter::once(n)) {
        out.push(Bytes::copy_from_slice(&bytes[at..cut]));
        at = cut;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Stream strategies.

fn msgs<T: Into<Msg> + std::fmt::Debug + Clone + 'static>(
    s: BoxedStrategy<T>,
    n: std::ops::RangeInclusive<usize>,
) -> BoxedStrategy<Vec<Item>> {
    vec(s, n)
        .prop_map(|v| v.into_iter().map(|m| Item::Msg(m.into())).collect())
        .boxed()
}

/// Frames with random payloads and (for 05) timestamps whose deltas fit ±2^61.
fn frames() -> BoxedStrategy<Vec<(u64, Vec<u8>)>> {
    let payload = prop_oneof![
        6 => vec(any::<u8>(), 0..40),
        1 => vec(any::<u8>(), 0..3000),
    ];
    let ts = prop_oneof![
        4 => 0u64..100_000,
        1 => 0u64..(1 << 40),
        1 => ((1u64 << 61) - 16)..((1u64 << 61) + 16),
        1 => (MAX_VARINT - (1 << 20))..=MAX_VARINT,
    ];
    vec((ts, payload), 0..12)
        .prop_map(|mut frames| {
            // Keep every step within ±2^61: clamp a far jump to the largest legal step.
            let mut prev = 0u64;
            for (t, _) in &mut frames {
                let limit = (1u64 << 61) - 1;
                if *t > prev && *t - prev > limit {
                    *t = prev + limit;
                } else if *t < prev && prev - *t > 1 << 61 {
                    *t = prev - (1 << 61);
                }
                prev = *t;
            }
            frames
        })
        .boxed()
}

fn prepend(first: Vec<Item>, rest: Vec<Item>) -> Vec<Item> {
    first.into_iter().chain(rest).collect()
}

fn group_stream(version: Version) -> BoxedStrategy<Script> {
    (group_header(version), frames())
        .prop_map(|(h, frames)| Script {
            items: vec![Item::Uni(UniStreamType::Group), Item::Msg(h.into())],
            frames: Some(frames),
        })
        .boxed()
}

fn control(items: BoxedStrategy<Vec<Item>>) -> BoxedStrategy<Script> {
    items
        .prop_map(|items| Script {
            items,
            frames: None,
        })
        .boxed()
}

/// Every kind of stream that exists in `version`, from either side.
fn stream(version: Version) -> BoxedStrategy<Script> {
    let bi = |t: BiStreamType| vec![Item::Bi(t)];
    let mut options: Vec<BoxedStrategy<Script>> = vec![
        group_stream(version),
        // FETCH reply: bare frames with no header.
        frames()
            .prop_map(|f| Script {
                items: Vec::new(),
                frames: Some(f),
            })
            .boxed(),
        // Subscribe stream, requester side: type, SUBSCRIBE, updates.
        control(
            (
                msgs(subscribe(version), 1..=1),
                msgs(subscribe_update(version), 0..=6),
            )
                .prop_map(move |(s, u)| prepend(bi(BiStreamType::Subscribe), prepend(s, u)))
                .boxed(),
        ),
        // Subscribe stream, publisher side: typed responses.
        control(msgs(subscribe_response(version), 0..=8)),
        // Announce stream, requester side.
        control(
            msgs(announce_request(version), 1..=1)
                .prop_map(move |r| prepend(bi(BiStreamType::Announce), r))
                .boxed(),
        ),
        // Fetch request.
        control(
            msgs(fetch(version), 1..=1)
                .prop_map(move |r| prepend(bi(BiStreamType::Fetch), r))
                .boxed(),
        ),
        // Probe stream: type then reports.
        control(
            msgs(probe(version), 0..=5)
                .prop_map(move |r| prepend(bi(BiStreamType::Probe), r))
                .boxed(),
        ),
        // A mix of every message the version has, one after another.
        control(
            vec(message(version), 0..=8)
                .prop_map(|v| v.into_iter().map(Item::Msg).collect())
                .boxed(),
        ),
    ];
    if version.is_lite05() {
        // Announce stream, publisher side: ANNOUNCE_OK then broadcasts.
        options.push(control(
            (
                msgs(announce_ok(version), 1..=1),
                msgs(announce(version), 0..=8),
            )
                .prop_map(|(ok, a)| prepend(ok, a))
                .boxed(),
        ));
        options.push(control(
            msgs(track_request(version), 1..=1)
                .prop_map(move |r| prepend(bi(BiStreamType::Track), r))
                .boxed(),
        ));
        options.push(control(msgs(track_info(version), 1..=1)));
        options.push(control(
            msgs(setup(version), 1..=1)
                .prop_map(|r| prepend(vec![Item::Uni(UniStreamType::Setup)], r))
                .boxed(),
        ));
    } else {
        options.push(control(msgs(announce(version), 0..=8)));
    }
    if version.has_goaway() {
        options.push(control(
            msgs(goaway(version), 1..=1)
                .prop_map(move |r| prepend(bi(BiStreamType::Goaway), r))
                .boxed(),
        ));
    }
    prop::strategy::Union::new(options).boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any split of any stream decodes to the same sequence as the whole buffer, which is the
    /// generated script.
    #[test]
    fn stream_reader_split_invariant(
        (v, script) in versioned(&VERSIONS, stream),
        split in split(),
        fin_separately in any::<bool>(),
    ) {
        let bytes = script.encode(v);
        let expected = script.expected(v);
        let whole = run_stream_reader(&script, v, &[Bytes::from(bytes.clone())], fin_separately)?;
        prop_assert_eq!(&whole, &expected);
        let chunks = apply(&split, &bytes);
        prop_assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), bytes.len());
        let split_events = run_stream_reader(&script, v, &chunks, fin_separately)?;
        prop_assert_eq!(&split_events, &expected);
    }

    /// One byte at a time, every stream kind.
    #[test]
    fn stream_reader_bytewise((v, script) in versioned(&VERSIONS, stream)) {
        let bytes = script.encode(v);
        let chunks = apply(&Split::Bytewise(Vec::new()), &bytes);
        prop_assert_eq!(run_stream_reader(&script, v, &chunks, false)?, script.expected(v));
    }

    /// The group stream reader agrees with the whole-buffer decode under any split.
    #[test]
    fn group_stream_reader_split_invariant(
        (v, script) in versioned(&VERSIONS, group_stream),
        split in split(),
        fin_separately in any::<bool>(),
    ) {
        let bytes = script.encode(v);
        let expected = script.expected(v);
        let whole = run_group_reader(v, &[Bytes::from(bytes.clone())], fin_separately)?;
        prop_assert_eq!(&whole, &expected);
        let chunks = apply(&split, &bytes);
        prop_assert_eq!(&run_group_reader(v, &chunks, fin_separately)?, &expected);
        // And the composed StreamReader + FrameDecoder path agrees too.
        prop_assert_eq!(&run_stream_reader(&script, v, &chunks, fin_separately)?, &expected);
    }
}

/// docs/wire.md §4.14 D: the lite-05 group with timestamps 1000, 1020, 1010 and its 03/04 form.
#[test]
fn reference_group_examples_bytewise() {
    let lite05 = common_hex("00 02 00 05 47 d0 05 68 65 6c 6c 6f 28 02 6f 6b 13 00");
    let lite04 = common_hex("00 02 00 05 05 68 65 6c 6c 6f 02 6f 6b 00");
    for (version, bytes, stamps) in [
        (Version::Lite05, lite05, [1000, 1020, 1010]),
        (Version::Lite04, lite04.clone(), [0, 0, 0]),
        (Version::Lite03, lite04, [0, 0, 0]),
    ] {
        let chunks: Vec<Bytes> = bytes
            .iter()
            .map(|b| Bytes::copy_from_slice(&[*b]))
            .collect();
        let events = run_group_reader(version, &chunks, true).expect("decodes");
        let expected = vec![
            Event::Uni(UniStreamType::Group),
            Event::Msg(
                moq_proto::wire::GroupHeader {
                    subscribe_id: 0,
                    sequence: 5,
                }
                .into(),
            ),
            Event::Frame {
                timestamp: stamps[0],
                size: 5,
                payload: b"hello".to_vec(),
            },
            Event::Frame {
                timestamp: stamps[1],
                size: 2,
                payload: b"ok".to_vec(),
            },
            Event::Frame {
                timestamp: stamps[2],
                size: 0,
                payload: Vec::new(),
            },
            Event::End,
        ];
        assert_eq!(events, expected, "{version}");
    }
}

/// A header split across three chunks is assembled, and nothing is decoded early.
#[test]
fn header_split_across_many_chunks() {
    let mut reader = StreamReader::new();
    // SUBSCRIBE_UPDATE with a 4-byte length prefix (non-minimal) split over 5 chunks.
    let update = moq_proto::wire::SubscribeUpdate {
        priority: 7,
        ordered: true,
        max_latency: std::time::Duration::from_millis(1000),
        start: Some(5),
        end: None,
    };
    let msg: Msg = update.into();
    let bytes = msg.encode(Version::Lite04).unwrap();
    let framed = Framed::split(&msg, &bytes);
    let mut long = varint_of_len(framed.len, 4);
    long.extend_from_slice(&framed.body);
    let limits = Limits::default();
    for (i, piece) in long.chunks(2).enumerate() {
        assert_eq!(
            msg.read_like(&mut reader, Version::Lite04, &limits),
            Ok(None),
            "piece {i}"
        );
        reader.push(Bytes::copy_from_slice(piece));
    }
    assert_eq!(
        msg.read_like(&mut reader, Version::Lite04, &limits),
        Ok(Some(msg.clone()))
    );
    assert_eq!(reader.buffered(), 0);
}

/// After an error the reader reports it; a DecodeError from a reader is never `Short`.
#[test]
fn reader_never_returns_short() {
    let mut reader = StreamReader::new();
    reader.push(Bytes::from_static(&[0x40]));
    assert_eq!(reader.read_bi_type(Version::Lite05), Ok(None));
    reader.push(Bytes::from_static(&[0x07]));
    assert_eq!(
        reader.read_bi_type(Version::Lite05),
        Err(DecodeError::UnknownStreamType(7))
    );
}

fn common_hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect()
}
