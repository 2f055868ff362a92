//! What an in-process link between two threads' engines costs per frame: 1 KiB frames
//! published on one `quic::Endpoint` reach a local subscriber either on the same engine
//! (baseline) or on a second engine through an in-process lite-05 link (the path a frame
//! takes to another thread of `moq relay`). Prints ns and heap allocations per delivered
//! frame for each, and the difference: the link's cost. Single-threaded, so the queue
//! between the drivers (one mutex per turn) is not in it. Run with
//! `cargo bench -p moq-tests --bench link`.
use std::time::Instant;

use bytes::Bytes;
use moq_proto::node::{NodeConfig, NodeEvent, SubscriptionEvent};
use moq_proto::quic::{ConnectionHandle, Endpoint, EngineConfig, EngineEvent};
use moq_proto::session::{Side, SubscribeParams};
use moq_proto::wire::{Path, TrackInfo, Version};
use moq_tests::alloc::{CountingAlloc, measure};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const FRAMES_PER_GROUP: u64 = 100;

fn engine(hop_id: u64) -> Endpoint {
    Endpoint::new(EngineConfig::new(NodeConfig {
        hop_id,
        ..NodeConfig::default()
    }))
    .expect("engine")
}

/// Carry link messages both ways until none is left.
fn pump(
    now: Instant,
    a: &mut Endpoint,
    la: ConnectionHandle,
    b: &mut Endpoint,
    lb: ConnectionHandle,
) {
    loop {
        let mut quiet = true;
        while let Some(m) = a.poll_link_message(now, la) {
            b.handle_link_message(now, lb, m);
            quiet = false;
        }
        while let Some(m) = b.poll_link_message(now, lb) {
            a.handle_link_message(now, la, m);
            quiet = false;
        }
        if quiet {
            return;
        }
    }
}

/// Frames the engine's local subscriptions received since last asked.
fn frames(engine: &mut Endpoint) -> u64 {
    let mut n = 0;
    while let Some(event) = engine.poll_event() {
        if let EngineEvent::Node(NodeEvent::Subscription {
            event: SubscriptionEvent::Frame { .. },
            ..
        }) = event
        {
            n += 1;
        }
    }
    n
}

/// Publish `groups` groups on `a` and deliver them (through the link when `linked`); returns
/// (ns per frame, allocations per frame).
fn run(linked: bool, groups: u64) -> (f64, f64) {
    let now = Instant::now();
    let (mut a, mut b) = (engine(1), engine(2));
    let la = a.open_link(now, Side::Client, Version::Lite05);
    let lb = b.open_link(now, Side::Server, Version::Lite05);
    pump(now, &mut a, la, &mut b, lb);
    let path = Path::new("live").expect("path");
    let broadcast = a.node().publish(now, &path).expect("publish");
    let track = a
        .node()
        .create_track(broadcast, "video", TrackInfo::default())
        .expect("track");
    pump(now, &mut a, la, &mut b, lb);
    let subscriber = if linked { &mut b } else { &mut a };
    subscriber
        .node()
        .subscribe(now, &path, "video", SubscribeParams::default());
    pump(now, &mut a, la, &mut b, lb);
    let payload = Bytes::from(vec![0xa5; 1024]);
    let mut ts = 0;
    let mut group = |a: &mut Endpoint, b: &mut Endpoint| -> u64 {
        let seq = a.node().append_group(now, track).expect("group");
        for _ in 0..FRAMES_PER_GROUP {
            ts += 10;
            a.node()
                .write_frame(now, track, seq, ts, payload.clone())
                .expect("frame");
        }
        a.node().finish_group(now, track, seq);
        a.apply_commands(now);
        pump(now, a, la, b, lb);
        frames(if linked { b } else { a })
    };
    for _ in 0..3 {
        group(&mut a, &mut b);
    }
    let start = Instant::now();
    let (delivered, stats) = measure(|| (0..groups).map(|_| group(&mut a, &mut b)).sum::<u64>());
    let elapsed = start.elapsed();
    assert_eq!(delivered, groups * FRAMES_PER_GROUP);
    (
        elapsed.as_nanos() as f64 / delivered as f64,
        stats.acquisitions() as f64 / delivered as f64,
    )
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent; keep that quick.
    let groups = if std::env::args().any(|a| a == "--bench") {
        20_000
    } else {
        20
    };
    let (local_ns, local_allocs) = run(false, groups);
    let (linked_ns, linked_allocs) = run(true, groups);
    println!("| path | ns/frame | allocs/frame |");
    println!("|---|---:|---:|");
    println!("| publisher's engine, local subscriber | {local_ns:.0} | {local_allocs:.3} |");
    println!("| through a link to another engine | {linked_ns:.0} | {linked_allocs:.3} |");
    println!(
        "| the link's cost | {:.0} | {:.3} |",
        linked_ns - local_ns,
        linked_allocs - local_allocs
    );
}
