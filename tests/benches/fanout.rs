//! In-memory fan-out: 1 publisher node -> N subscriber sessions, 1 KiB frames.
//!
//! Prints delivered frames/s, nanoseconds and heap allocations per delivered frame for
//! N = 1, 10, 100, 1000 on every version. Groups hold 100 frames; "allocs/frame" includes
//! the per-group cost amortised over the group, "steady" counts frames inside a group only.
//! Run with `cargo bench -p moq-tests --bench fanout`.
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_harness::testing::FanOut;
use moq_proto::wire::Version;
use moq_tests::alloc::{CountingAlloc, measure};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const FRAMES_PER_GROUP: u64 = 100;

fn run(version: Version, subscribers: usize) {
    let mut fan = FanOut::new(version, subscribers, Instant::now());
    let payload = Bytes::from(vec![0xa5; 1024]);
    let mut ts = 0u64;
    let mut write_group = |fan: &mut FanOut| {
        let seq = fan.group();
        for _ in 0..FRAMES_PER_GROUP {
            ts += 10;
            fan.frame(seq, ts, &payload);
        }
        fan.finish(seq);
    };
    for _ in 0..3 {
        write_group(&mut fan);
    }
    // Enough groups for roughly a second of work.
    let budget = if std::env::var("FANOUT_PROFILE").is_ok() {
        100_000
    } else {
        2_000_000
    };
    let groups = (budget / (FRAMES_PER_GROUP as usize * subscribers)).clamp(3, 2000) as u64;
    let before = fan.delivered_frames;
    let start = Instant::now();
    let (_, stats) = measure(|| {
        for _ in 0..groups {
            write_group(&mut fan);
        }
    });
    let elapsed = start.elapsed();
    let delivered = fan.delivered_frames - before;
    assert_eq!(delivered, groups * FRAMES_PER_GROUP * subscribers as u64);

    // Steady state: frames inside one group.
    let seq = fan.group();
    for _ in 0..10 {
        fan.frame(seq, ts, &payload);
    }
    let (_, steady) = measure(|| {
        for _ in 10..FRAMES_PER_GROUP {
            fan.frame(seq, ts, &payload);
        }
    });
    fan.finish(seq);

    let per = elapsed.as_nanos() as f64 / delivered as f64;
    println!(
        "| {version} | {subscribers:>5} | {:>12.0} | {:>8.1} | {:>8.3} | {:>6} |",
        delivered as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        per,
        stats.acquisitions() as f64 / delivered as f64,
        steady.acquisitions(),
    );
    let _ = Duration::ZERO;
}

fn main() {
    // One configuration only, for instruction counting under callgrind:
    // `FANOUT_PROFILE=100 valgrind --tool=callgrind target/release/deps/fanout-*`.
    if let Some(n) = std::env::var("FANOUT_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        run(Version::Lite05, n);
        return;
    }
    // `cargo test --benches` runs bench binaries with `--bench` absent; keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    println!(
        "| version | subscribers | delivered frames/s | ns/frame | allocs/frame | steady allocs |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for version in Version::ALL {
        for subscribers in [1, 10, 100, 1000] {
            if quick && subscribers > 10 {
                continue;
            }
            run(version, subscribers);
        }
    }
}
