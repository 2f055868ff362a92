//! Codec benchmarks: encode/decode of SUBSCRIBE, the GROUP header and the FRAME header
//! (ns/op), and the incremental reader's throughput on 1 KiB frames arriving in 1200-byte
//! chunks (GB/s).

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use moq_proto::coding::{Cursor, Limits};
use moq_proto::wire::{
    FrameDecoder, FrameHeader, FrameItem, GroupHeader, Message, Path, StreamReader, Subscribe,
    Version,
};

fn subscribe() -> Subscribe {
    Subscribe {
        id: 42,
        broadcast: Path::new("demo/clock").expect("valid path"),
        track: "seconds".into(),
        priority: 128,
        ordered: false,
        max_latency: Duration::from_millis(5000),
        start: None,
        end: None,
    }
}

fn messages(c: &mut Criterion) {
    let mut group = c.benchmark_group("message");
    for version in [Version::Lite03, Version::Lite05] {
        let sub = subscribe();
        let mut buf = BytesMut::with_capacity(256);
        group.bench_with_input(
            BenchmarkId::new("subscribe_encode", version),
            &version,
            |b, &v| {
                b.iter(|| {
                    buf.clear();
                    black_box(&sub).encode(&mut buf, v).expect("encodable");
                    black_box(buf.len())
                })
            },
        );
        let bytes = sub.to_bytes(version).expect("encodable");
        group.bench_with_input(
            BenchmarkId::new("subscribe_decode", version),
            &version,
            |b, &v| {
                b.iter(|| {
                    Subscribe::decode(&mut Cursor::new(black_box(&bytes)), v).expect("decodable")
                })
            },
        );

        let header = GroupHeader {
            subscribe_id: 3,
            sequence: 123_456,
        };
        group.bench_with_input(
            BenchmarkId::new("group_encode", version),
            &version,
            |b, &v| {
                b.iter(|| {
                    buf.clear();
                    black_box(&header).encode(&mut buf, v).expect("encodable");
                    black_box(buf.len())
                })
            },
        );
        let bytes = header.to_bytes(version).expect("encodable");
        group.bench_with_input(
            BenchmarkId::new("group_decode", version),
            &version,
            |b, &v| {
                b.iter(|| {
                    GroupHeader::decode(&mut Cursor::new(black_box(&bytes)), v).expect("decodable")
                })
            },
        );

        let frame = FrameHeader {
            timestamp_delta: if version.is_lite05() { 33 } else { 0 },
            size: 1024,
        };
        group.bench_with_input(
            BenchmarkId::new("frame_encode", version),
            &version,
            |b, &v| {
                b.iter(|| {
                    buf.clear();
                    black_box(&frame).encode(&mut buf, v).expect("encodable");
                    black_box(buf.len())
                })
            },
        );
        let mut frame_bytes = Vec::new();
        frame.encode(&mut frame_bytes, version).expect("encodable");
        group.bench_with_input(
            BenchmarkId::new("frame_decode", version),
            &version,
            |b, &v| {
                b.iter(|| {
                    FrameHeader::decode(&mut Cursor::new(black_box(&frame_bytes)), v)
                        .expect("decodable")
                })
            },
        );
    }
    group.finish();
}

/// A group stream body of `frames` 1 KiB frames, cut into 1200-byte chunks.
fn chunked_stream(version: Version, frames: usize) -> (Vec<Bytes>, usize) {
    let mut body = BytesMut::new();
    let payload = vec![0xab; 1024];
    for i in 0..frames {
        let header = FrameHeader {
            timestamp_delta: if version.is_lite05() {
                (i % 50) as i64
            } else {
                0
            },
            size: payload.len() as u64,
        };
        header.encode(&mut body, version).expect("encodable");
        body.extend_from_slice(&payload);
    }
    let body = body.freeze();
    let total = body.len();
    let chunks = (0..total)
        .step_by(1200)
        .map(|start| body.slice(start..(start + 1200).min(total)))
        .collect();
    (chunks, total)
}

fn reader(c: &mut Criterion) {
    let mut group = c.benchmark_group("reader");
    let limits = Limits::default();
    for version in [Version::Lite03, Version::Lite05] {
        let (chunks, total) = chunked_stream(version, 1024);
        group.throughput(Throughput::Bytes(total as u64));
        group.bench_with_input(
            BenchmarkId::new("1KiB_frames_1200B_chunks", version),
            &version,
            |b, &v| {
                b.iter(|| {
                    let mut reader = StreamReader::new();
                    let mut frames = FrameDecoder::new(v);
                    let mut payload = 0usize;
                    for chunk in &chunks {
                        reader.push(chunk.clone());
                        while let Some(item) =
                            frames.read(&mut reader, &limits).expect("valid stream")
                        {
                            if let FrameItem::Payload { chunk, .. } = item {
                                payload += chunk.len();
                            }
                        }
                    }
                    assert_eq!(payload, 1024 * 1024);
                    black_box(payload)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, messages, reader);
criterion_main!(benches);
