//! Zero heap allocations per delivered frame in steady state: 1 publisher node fanning out to
//! 100 in-memory subscriber sessions, every version.
//!
//! Steady state means frames inside a group after warm-up. A new group does allocate (its
//! streams' state), which is reported separately and is amortised over the group's frames.
use std::time::Instant;

use bytes::Bytes;
use moq_harness::testing::FanOut;
use moq_proto::wire::Version;
use moq_tests::alloc::{CountingAlloc, assert_installed, measure};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const SUBSCRIBERS: u64 = 100;
const FRAMES: u64 = 200;

#[test]
fn zero_allocations_per_delivered_frame() {
    assert_installed();
    for version in Version::ALL {
        let mut fan = FanOut::new(version, SUBSCRIBERS as usize, Instant::now());
        let payload = Bytes::from(vec![0x5a; 1024]);
        // Warm-up: a few groups let every buffer, table and arena reach its working size.
        let mut ts = 0;
        for _ in 0..5 {
            let seq = fan.group();
            for _ in 0..FRAMES {
                ts += 33;
                fan.frame(seq, ts, &payload);
            }
            fan.finish(seq);
        }
        let (seq, group_stats) = measure(|| fan.group());
        for _ in 0..10 {
            ts += 33;
            fan.frame(seq, ts, &payload);
        }
        // Groups keep the previous group's size, so the vectors holding a group's frames are
        // sized once per group; a group longer than its predecessor grows them (amortised).
        let before = fan.delivered_frames;
        let (_, stats) = measure(|| {
            for _ in 10..FRAMES {
                ts += 33;
                fan.frame(seq, ts, &payload);
            }
        });
        let delivered = fan.delivered_frames - before;
        fan.finish(seq);
        assert_eq!(
            delivered,
            (FRAMES - 10) * SUBSCRIBERS,
            "{version}: every frame reached every subscriber"
        );
        println!(
            "{version}: {} allocations for {delivered} delivered frames; a new group costs {} allocations ({:.2} per subscriber)",
            stats.acquisitions(),
            group_stats.acquisitions(),
            group_stats.acquisitions() as f64 / SUBSCRIBERS as f64
        );
        assert_eq!(
            stats.acquisitions(),
            0,
            "{version}: allocations in steady state: {stats:?}"
        );
    }
}
