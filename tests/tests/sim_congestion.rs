//! A bottleneck below the offered rate: priorities and expiry decide what gets through.
//!
//! The publisher (server) offers two tracks over a 2 Mbit/s bottleneck with a short queue and
//! a 50 ms RTT: "high" (≈ 0.4 Mbit/s, subscribed at priority 200) and "low" (≈ 3.2 Mbit/s,
//! priority 10, max latency 500 ms). The high track must keep its full rate with a bounded
//! end-to-end latency; the low track takes what is left, its stale groups are expired (reset
//! with 0x34 Old, or dropped before they reach the network) instead of queueing, and nothing
//! it delivers is older than its max latency plus the path's delay.
//!
//! The low track's groups are finished as soon as their last frame is written, and quinn-proto
//! takes their bytes into its send buffer at once (it buffers megabytes), so expiry must also
//! reset groups that are finished but not yet acknowledged: before that fix, no low group was
//! ever expired, the stale ones kept the bottleneck busy and low frames arrived up to 5 s old.

mod sim_support;

use std::collections::BTreeMap;
use std::time::Duration;

use moq_proto::codes::StreamCode;
use moq_proto::node::SubscriptionEvent;
use moq_proto::origin::{GroupState, TrackId};
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{TrackInfo, Version};
use moq_tests::netsim::LinkConfig;
use sim_support::{Stamp, World, client_config, ms, quantile, server_config};

const RATE_BPS: u64 = 2_000_000;
const QUEUE: usize = 32 * 1024;
const ONE_WAY: Duration = Duration::from_millis(25);
/// A frame every 50 ms, a group every 10 frames (0.5 s).
const FRAME_INTERVAL: Duration = Duration::from_millis(50);
const FRAMES_PER_GROUP: u64 = 10;
const HIGH_FRAME: usize = 2_500;
const LOW_FRAME: usize = 20_000;
const RUN: Duration = Duration::from_secs(20);
const LOW_MAX_LATENCY: Duration = Duration::from_millis(500);

struct Outcome {
    high_published: usize,
    high_latency: Vec<Duration>,
    low_published_groups: u64,
    low_frames: usize,
    low_complete: usize,
    low_old: usize,
    low_dropped: u64,
    low_never_seen: u64,
    low_ages: Vec<Duration>,
    net: moq_tests::netsim::NetStats,
}

fn run(version: Version, seed: u64, webtransport: bool) -> Outcome {
    let mut w = World::new(seed, LinkConfig::latency(ONE_WAY));
    w.webtransport = webtransport;
    let server = w.add(server_config(seed, &Version::ALL));
    let client = w.add(client_config(seed, &[version]));
    w.sim.set_link(
        server,
        client,
        LinkConfig {
            bandwidth: Some(RATE_BPS),
            queue: QUEUE,
            ..LinkConfig::latency(ONE_WAY)
        },
    );
    let info = TrackInfo::default();
    let (high, low) = w.with(server, |e, now| {
        let path = moq_proto::wire::Path::new("tv").unwrap();
        let b = e.node().publish(now, &path).unwrap();
        (
            e.node().create_track(b, "high", info).unwrap(),
            e.node().create_track(b, "low", info).unwrap(),
        )
    });
    let link = w.connect(client, server);
    assert_eq!(link.version, version);
    let high_sub = w.subscribe(
        client,
        "tv",
        "high",
        SubscribeParams {
            priority: 200,
            max_latency: Duration::from_secs(5),
            ..SubscribeParams::default()
        },
    );
    let low_sub = w.subscribe(
        client,
        "tv",
        "low",
        SubscribeParams {
            priority: 10,
            max_latency: LOW_MAX_LATENCY,
            ..SubscribeParams::default()
        },
    );
    let deadline = w.elapsed() + Duration::from_secs(5);
    assert!(w.run_until_sim(deadline, |sim| {
        let node = sim.hosts[server].engine.node();
        node.subscriber_count(high) == 1 && node.subscriber_count(low) == 1
    }));

    let t0 = w.elapsed();
    let ticks = (RUN.as_millis() / FRAME_INTERVAL.as_millis()) as u64;
    let mut low_groups: BTreeMap<u64, Duration> = BTreeMap::new();
    for tick in 0..ticks {
        let at = t0 + FRAME_INTERVAL * tick as u32;
        w.run_until(at, |_| false);
        let frame = tick % FRAMES_PER_GROUP;
        let group = tick / FRAMES_PER_GROUP;
        if frame == 0 {
            low_groups.insert(group, at);
        }
        w.with(server, |e, now| {
            for (track, size) in [(high, HIGH_FRAME), (low, LOW_FRAME)] {
                write(e.node(), now, track, group, frame, at, size);
            }
        });
    }
    let groups = ticks / FRAMES_PER_GROUP;
    w.with(server, |e, now| {
        e.node().finish_group(now, high, groups - 1);
        e.node().finish_group(now, low, groups - 1);
    });
    w.run_for(Duration::from_secs(5));

    let high_frames = w.frames(client, high_sub);
    let high_latency = high_frames
        .iter()
        .map(|d| d.at - Stamp::read(&d.payload).at)
        .collect();
    let low_events = w.sub_events(client, low_sub);
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Outcome {
        high_published: ticks as usize,
        high_latency,
        low_published_groups: groups,
        low_frames: 0,
        low_complete: 0,
        low_old: 0,
        low_dropped: 0,
        low_never_seen: 0,
        low_ages: Vec::new(),
        net: w.sim.stats,
    };
    for (at, event) in &low_events {
        match event {
            SubscriptionEvent::Group { seq } => {
                seen.insert(*seq);
            }
            SubscriptionEvent::Frame { seq, payload, .. } => {
                out.low_frames += 1;
                assert_eq!(Stamp::read(payload).group, *seq);
                // The last group is never stale (nothing newer exists): it drains after the
                // publisher stops, so only the groups a newer one replaced are judged.
                if *seq + 1 < groups {
                    out.low_ages.push(*at - low_groups[seq]);
                }
            }
            SubscriptionEvent::GroupEnd {
                state: GroupState::Finished,
                ..
            } => out.low_complete += 1,
            SubscriptionEvent::GroupEnd {
                state: GroupState::Aborted(code),
                seq,
            } => {
                // Only expiry may cut a low group short (not, say, the subscriber's cache
                // evicting a group that is still trickling in after seconds).
                assert_eq!(
                    *code,
                    StreamCode::OLD,
                    "{version}: low group {seq} aborted at {at:?}"
                );
                out.low_old += 1;
            }
            SubscriptionEvent::Dropped { start, end, code } => {
                assert_eq!(*code, StreamCode::OLD, "{version}");
                out.low_dropped += end - start + 1;
            }
            _ => {}
        }
    }
    out.low_never_seen = (0..groups).filter(|g| !seen.contains(g)).count() as u64;
    out
}

fn write(
    node: &mut moq_proto::node::Node,
    now: std::time::Instant,
    track: TrackId,
    group: u64,
    frame: u64,
    at: Duration,
    size: usize,
) {
    if frame == 0 {
        if group > 0 {
            node.finish_group(now, track, group - 1);
        }
        assert_eq!(node.append_group(now, track).unwrap(), group);
    }
    let payload = Stamp { at, group, frame }.payload(size);
    node.write_frame(now, track, group, at.as_millis() as u64, payload)
        .unwrap();
}

#[test]
fn high_priority_keeps_its_rate_and_low_priority_expires() {
    let rtt = ONE_WAY * 2;
    // The bottleneck queue's delay when full (the congestion controller keeps it full).
    let queue_delay = Duration::from_secs_f64(QUEUE as f64 * 8.0 / RATE_BPS as f64);
    let serialise = |bytes: usize| Duration::from_secs_f64(bytes as f64 * 8.0 / RATE_BPS as f64);
    for (i, (webtransport, version)) in [false, true]
        .into_iter()
        .flat_map(|wt| Version::ALL.into_iter().map(move |v| (wt, v)))
        .enumerate()
    {
        let o = run(version, 300 + i as u64, webtransport);
        let version = format!(
            "{version}{}",
            if webtransport {
                " over WebTransport"
            } else {
                ""
            }
        );
        let p50 = quantile(&o.high_latency, 0.5);
        let p99 = quantile(&o.high_latency, 0.99);
        let max = quantile(&o.high_latency, 1.0);
        let low_age_max = quantile(&o.low_ages, 1.0);
        println!(
            "{version}: high {}/{} frames, latency p50 {p50:?} p99 {p99:?} max {max:?}; \
             low {} frames, {}/{} groups complete, {} reset Old, {} dropped, {} never started, \
             age at delivery (all but the last group) p50 {:?} max {low_age_max:?}; net {:?}",
            o.high_latency.len(),
            o.high_published,
            o.low_frames,
            o.low_complete,
            o.low_published_groups,
            o.low_old,
            o.low_dropped,
            o.low_never_seen,
            quantile(&o.low_ages, 0.5),
            o.net,
        );
        // The high track keeps its full rate: every frame arrives.
        assert_eq!(o.high_latency.len(), o.high_published, "{version}");
        // Its latency is the path's plus the (shared, FIFO) bottleneck queue: one-way delay,
        // a full queue and the frame's serialisation at p50; one loss recovery (an RTT on
        // top of a full queue) at p99.
        let p50_bound = ONE_WAY + queue_delay + serialise(HIGH_FRAME) + ms(10);
        let p99_bound = p50_bound + rtt + queue_delay;
        assert!(
            p50 <= p50_bound,
            "{version}: high p50 {p50:?} > {p50_bound:?}"
        );
        assert!(
            p99 <= p99_bound,
            "{version}: high p99 {p99:?} > {p99_bound:?}"
        );
        // The low track gets what is left and sheds the rest: its stale groups are reset
        // with Old (or dropped before they reach the network) instead of queueing.
        assert!(
            o.low_frames > 0,
            "{version}: the low track starved completely"
        );
        assert!(
            o.low_old as u64 + o.low_dropped >= o.low_published_groups / 2,
            "{version}: low groups were not expired"
        );
        // Nothing it delivers is older than its expiry point (the next group's start, or the
        // max latency if later) plus what was already past the publisher: a full queue, the
        // one-way delay and one frame's serialisation.
        let expiry = LOW_MAX_LATENCY.max(FRAME_INTERVAL * FRAMES_PER_GROUP as u32);
        let age_bound = expiry + queue_delay + ONE_WAY + serialise(LOW_FRAME) + ms(10);
        assert!(
            low_age_max <= age_bound,
            "{version}: a low group was delivered {low_age_max:?} after it started (bound {age_bound:?})"
        );
    }
}
