//! A declared length is never allocated up front: headers claiming huge sizes cost at most a
//! few hundred bytes, and a large frame streamed in small pieces allocates nothing
//! proportional to its declared size. Measured with the counting allocator from
//! `moq_tests::alloc`, installed as this binary's global allocator.

use std::hint::black_box;
use std::sync::{Arc, Barrier};

use bytes::Bytes;
use moq_proto::coding::{
    Cursor, DecodeError, Limits, MAX_FRAME_SIZE, MAX_MESSAGE_SIZE, MAX_VARINT, put_varint,
};
use moq_proto::wire::{
    FrameHeader, FrameItem, GroupHeader, GroupItem, GroupStreamReader, Message, Setup,
    StreamReader, Subscribe, Version,
};
use moq_tests::alloc::{AllocStats, CountingAlloc, assert_installed, measure};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// "A few hundred bytes": the reader's chunk queue and a header-sized scratch buffer.
const SMALL: u64 = 512;

fn varint(value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, value).expect("fits");
    out
}

fn assert_small(stats: &AllocStats, what: &str) {
    assert!(
        stats.bytes_allocated <= SMALL && stats.largest <= SMALL && stats.peak_live <= SMALL,
        "{what}: {stats}"
    );
}

// ---------------------------------------------------------------------------------------------
// The allocator itself.

#[test]
fn allocator_counts_this_thread() {
    assert_installed();

    let ((), stats) = measure(|| ());
    assert!(stats.is_zero(), "{stats}");
    assert_eq!(stats, AllocStats::default());

    let (v, stats) = measure(|| black_box(vec![0u8; 1000]));
    assert_eq!(stats.allocs, 1, "{stats}");
    assert_eq!(stats.bytes_allocated, 1000);
    assert_eq!(stats.largest, 1000);
    assert_eq!(stats.peak_live, 1000);
    assert_eq!(stats.net_bytes(), 1000);

    let ((), stats) = measure(|| drop(v));
    assert_eq!(stats.deallocs, 1, "{stats}");
    assert_eq!(stats.bytes_deallocated, 1000);
    assert_eq!(stats.net_bytes(), -1000);
    assert_eq!(stats.peak_live, 0);

    // Growth by realloc: 16 → 4096 bytes.
    let ((), stats) = measure(|| {
        let mut v: Vec<u8> = Vec::with_capacity(16);
        v.extend_from_slice(&[1; 16]);
        v.reserve_exact(4096 - 16);
        black_box(&v);
    });
    assert_eq!(stats.allocs, 1, "{stats}");
    assert_eq!(stats.reallocs, 1, "{stats}");
    assert_eq!(stats.deallocs, 1, "{stats}");
    assert_eq!(stats.acquisitions(), 2);
    assert_eq!(stats.bytes_allocated, 16 + 4096);
    assert_eq!(stats.bytes_deallocated, 16 + 4096);
    assert_eq!(stats.largest, 4096);
    assert_eq!(stats.peak_live, 4096);
    assert_eq!(stats.net_bytes(), 0);
}

#[test]
fn measurements_nest() {
    assert_installed();
    let ((inner, kept), outer) = measure(|| {
        let big = black_box(vec![0u8; 10_000]);
        drop(big);
        let ((), inner) = measure(|| {
            black_box(vec![0u8; 100]);
        });
        (inner, black_box(vec![0u8; 50]))
    });
    assert_eq!(inner.allocs, 1);
    assert_eq!(inner.largest, 100);
    assert_eq!(inner.peak_live, 100);
    assert_eq!(outer.allocs, 3, "{outer}");
    assert_eq!(
        outer.largest, 10_000,
        "the inner window does not hide the outer maximum"
    );
    assert_eq!(outer.peak_live, 10_000);
    assert_eq!(outer.net_bytes(), 50);
    drop(kept);
}

#[test]
fn other_threads_are_not_counted() {
    assert_installed();
    let start = Arc::new(Barrier::new(2));
    let done = Arc::new(Barrier::new(2));
    let worker = {
        let (start, done) = (start.clone(), done.clone());
        std::thread::spawn(move || {
            start.wait();
            let ((), stats) = measure(|| {
                for _ in 0..100 {
                    black_box(vec![0u8; 1 << 16]);
                }
            });
            done.wait();
            stats
        })
    };
    let ((), here) = measure(|| {
        start.wait();
        done.wait();
    });
    let there = worker.join().expect("worker");
    assert!(here.is_zero(), "this thread: {here}");
    assert_eq!(there.allocs, 100, "worker thread: {there}");
    assert_eq!(there.largest, 1 << 16);
}

// ---------------------------------------------------------------------------------------------
// Huge declared lengths.

/// Every huge length we try: the largest varint, and lengths around the caps.
fn huge_lengths() -> Vec<u64> {
    vec![
        MAX_VARINT,
        1 << 40,
        MAX_MESSAGE_SIZE as u64 + 1,
        MAX_MESSAGE_SIZE as u64,
        60 << 20,
        (64 << 10) + 1,
    ]
}

#[test]
fn decode_of_huge_length_allocates_nothing() {
    assert_installed();
    for limits in [
        Limits::default(),
        Limits {
            max_message_size: usize::MAX,
            ..Limits::default()
        },
    ] {
        for len in huge_lengths() {
            let mut input = varint(len);
            input.extend_from_slice(&[1, 2, 3]);
            let ((), stats) = measure(|| {
                let sub =
                    Subscribe::decode_with(&mut Cursor::new(&input), Version::Lite05, &limits);
                let setup = Setup::decode_with(&mut Cursor::new(&input), Version::Lite05, &limits);
                let group =
                    GroupHeader::decode_with(&mut Cursor::new(&input), Version::Lite05, &limits);
                if len > limits.message_size() as u64 {
                    assert!(matches!(sub, Err(DecodeError::TooLarge { .. })));
                    assert!(matches!(group, Err(DecodeError::TooLarge { .. })));
                } else {
                    assert_eq!(sub, Err(DecodeError::Short));
                }
                assert!(matches!(setup, Err(DecodeError::TooLarge { .. })));
            });
            assert!(stats.is_zero(), "length {len}: {stats}");
        }
    }
}

#[test]
fn stream_reader_with_huge_length_stays_small() {
    assert_installed();
    for limits in [
        Limits::default(),
        Limits {
            max_message_size: usize::MAX,
            ..Limits::default()
        },
    ] {
        for len in huge_lengths() {
            let mut input = varint(len);
            input.extend_from_slice(&[1, 2, 3]);
            let whole = Bytes::from(input.clone());
            let pieces: Vec<Bytes> = input.iter().map(|b| Bytes::from(vec![*b])).collect();
            let mut typed = vec![0x00];
            typed.extend_from_slice(&input);
            let typed_pieces: Vec<Bytes> = typed.iter().map(|b| Bytes::from(vec![*b])).collect();
            let rejected = len > limits.message_size() as u64;

            // Whole header in one chunk.
            let mut reader = StreamReader::new();
            let (got, stats) = measure(|| {
                reader.push(whole);
                reader.read_message::<Subscribe>(Version::Lite03, &limits)
            });
            assert_eq!(
                matches!(got, Err(DecodeError::TooLarge { .. })),
                rejected,
                "{len}: {got:?}"
            );
            assert_small(&stats, "one chunk");
            let ((), stats) = measure(|| drop(reader));
            assert_small(&stats, "drop");

            // One byte at a time: the length varint is assembled in scratch.
            let mut reader = StreamReader::new();
            let (got, stats) = measure(|| {
                let mut last = Ok(None);
                for piece in pieces {
                    reader.push(piece);
                    last = reader.read_message::<Subscribe>(Version::Lite04, &limits);
                    if last.is_err() {
                        break;
                    }
                }
                last
            });
            assert_eq!(
                matches!(got, Err(DecodeError::TooLarge { .. })),
                rejected,
                "{len}: {got:?}"
            );
            if !rejected {
                assert_eq!(got, Ok(None));
                assert!(reader.buffered() <= 11);
            }
            assert_small(&stats, "byte by byte");

            // A typed subscribe response, one byte at a time.
            let mut reader = StreamReader::new();
            let (got, stats) = measure(|| {
                let mut last = Ok(None);
                for piece in typed_pieces {
                    reader.push(piece);
                    last = reader.read_subscribe_response(Version::Lite05, &limits);
                    if last.is_err() {
                        break;
                    }
                }
                last
            });
            assert_eq!(
                matches!(got, Err(DecodeError::TooLarge { .. })),
                rejected,
                "{len}: {got:?}"
            );
            assert_small(&stats, "typed byte by byte");
        }
    }
}

#[test]
fn huge_frame_header_stays_small() {
    assert_installed();
    for version in [Version::Lite03, Version::Lite05] {
        for size in [MAX_VARINT, MAX_FRAME_SIZE + 1] {
            let mut header = Vec::new();
            FrameHeader {
                timestamp_delta: 0,
                size,
            }
            .encode(&mut header, version)
            .expect("encodable");
            let mut stream = vec![0x00];
            GroupHeader {
                subscribe_id: 1,
                sequence: 2,
            }
            .encode(&mut stream, version)
            .expect("encodable");
            stream.extend(&header);
            let pieces: Vec<Bytes> = stream.iter().map(|b| Bytes::from(vec![*b])).collect();
            let mut reader = GroupStreamReader::new(version, Limits::default());
            let (got, stats) = measure(|| {
                for piece in pieces {
                    reader.push(piece, false);
                    loop {
                        match reader.read() {
                            Ok(Some(_)) => continue,
                            Ok(None) => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                Ok(())
            });
            assert_eq!(
                got,
                Err(DecodeError::TooLarge {
                    what: "frame",
                    size,
                    max: MAX_FRAME_SIZE
                })
            );
            assert_small(&stats, "frame header");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A large frame streamed in small pieces.

static TEN: [u8; 10] = [0xab; 10];
static BIG: [u8; 64 * 1024] = [0xcd; 64 * 1024];

fn group_with_frame(version: Version, size: u64) -> Bytes {
    let mut out = vec![0x00];
    GroupHeader {
        subscribe_id: 0,
        sequence: 0,
    }
    .encode(&mut out, version)
    .expect("encodable");
    FrameHeader {
        timestamp_delta: 0,
        size,
    }
    .encode(&mut out, version)
    .expect("encodable");
    Bytes::from(out)
}

#[test]
fn max_frame_fed_ten_bytes_at_a_time() {
    assert_installed();
    for version in [Version::Lite03, Version::Lite04, Version::Lite05] {
        let mut reader = GroupStreamReader::new(version, Limits::default());
        let head = group_with_frame(version, MAX_FRAME_SIZE);
        let steps = 10_000usize;
        let chunks: Vec<Bytes> = (0..steps).map(|_| Bytes::from_static(&TEN)).collect();
        let mut chunks = chunks.into_iter();

        // Headers, then a warm-up piece.
        let ((), warm) = measure(|| {
            reader.push(head, false);
            assert!(matches!(reader.read(), Ok(Some(GroupItem::Header(_)))));
            assert_eq!(
                reader.read(),
                Ok(Some(GroupItem::Frame(FrameItem::Header {
                    timestamp: 0,
                    size: MAX_FRAME_SIZE
                })))
            );
            assert_eq!(reader.read(), Ok(None));
            reader.push(chunks.next().expect("chunk"), false);
            assert!(matches!(reader.read(), Ok(Some(_))));
        });
        assert_small(&warm, "headers");

        // Steady state: 10 bytes in, 10 bytes out, nothing allocated.
        let (delivered, steady) = measure(|| {
            let mut delivered = 10u64;
            for chunk in chunks.by_ref() {
                reader.push(chunk, false);
                match reader.read() {
                    Ok(Some(GroupItem::Frame(FrameItem::Payload { chunk, remaining }))) => {
                        delivered += chunk.len() as u64;
                        assert_eq!(remaining, MAX_FRAME_SIZE - delivered);
                    }
                    other => panic!("unexpected {other:?}"),
                }
                assert_eq!(reader.read(), Ok(None));
            }
            delivered
        });
        assert_eq!(delivered, steps as u64 * 10);
        assert!(steady.is_zero(), "{version} steady state: {steady}");
    }
}

#[test]
fn max_frame_delivered_whole_without_copying() {
    assert_installed();
    let version = Version::Lite05;
    let mut reader = GroupStreamReader::new(version, Limits::default());
    let head = group_with_frame(version, MAX_FRAME_SIZE);
    let pieces = (MAX_FRAME_SIZE as usize) / BIG.len();
    let chunks: Vec<Bytes> = (0..pieces).map(|_| Bytes::from_static(&BIG)).collect();
    let (items, stats) = measure(|| {
        let mut items = 0u64;
        reader.push(head, false);
        let mut chunks = chunks.into_iter().peekable();
        loop {
            match reader.read() {
                Ok(Some(GroupItem::Frame(FrameItem::End))) => return items,
                Ok(Some(_)) => items += 1,
                Ok(None) => match chunks.next() {
                    Some(chunk) => {
                        let last = chunks.peek().is_none();
                        reader.push(chunk, last);
                    }
                    None => panic!("stream did not end"),
                },
                Err(e) => panic!("{e}"),
            }
        }
    });
    // GROUP, frame header, one payload piece per chunk.
    assert_eq!(items, 2 + pieces as u64);
    assert_small(&stats, "32 MiB frame");
}

#[test]
fn large_declared_message_memory_follows_arrival() {
    assert_installed();
    // A 64 MiB control message (allowed with raised limits) arriving 10 bytes at a time:
    // the reader must buffer what arrived, never the declared size.
    let limits = Limits {
        max_message_size: MAX_MESSAGE_SIZE,
        ..Limits::default()
    };
    let mut reader = StreamReader::new();
    let head = Bytes::from(varint(MAX_MESSAGE_SIZE as u64));
    let steps = 2_000usize;
    let chunks: Vec<Bytes> = (0..steps).map(|_| Bytes::from_static(&TEN)).collect();
    let ((), stats) = measure(|| {
        reader.push(head);
        for chunk in chunks {
            reader.push(chunk);
            assert_eq!(
                reader.read_message::<Subscribe>(Version::Lite05, &limits),
                Ok(None)
            );
        }
    });
    let arrived = 4 + steps as u64 * 10;
    assert_eq!(reader.buffered() as u64, arrived);
    assert!(
        stats.largest <= 4 * arrived && stats.peak_live <= 4 * arrived + SMALL,
        "{stats}"
    );
    assert!(
        stats.bytes_allocated < (MAX_MESSAGE_SIZE as u64) / 100,
        "{stats}"
    );
}
