//! The group cache (byte and time bounds) and FETCH, locally and through a relay.

mod scenario_util;

use std::time::Duration;

use bytes::Bytes;
use moq_harness::testing::Sim;
use moq_proto::codes::StreamCode;
use moq_proto::node::FetchEvent;
use moq_proto::origin::TrackId;
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{Path, TrackInfo};
use scenario_util::*;

fn track_of(sim: &Sim, node: usize, b: &str, t: &str) -> Option<TrackId> {
    let o = sim.nodes[node].origin();
    o.broadcast(o.find(&path(b))?)?.track(t)
}

fn cached(sim: &Sim, node: usize) -> Vec<u64> {
    let Some(t) = track_of(sim, node, "demo", "video") else {
        return Vec::new();
    };
    sim.nodes[node]
        .origin()
        .track(t)
        .unwrap()
        .groups()
        .map(|g| g.seq())
        .collect()
}

/// One group of one `size`-byte frame.
fn write_sized(sim: &mut Sim, node: usize, track: TrackId, size: usize) -> u64 {
    let now = sim.now();
    let seq = sim.nodes[node].append_group(now, track).unwrap();
    sim.nodes[node]
        .write_frame(now, track, seq, seq, Bytes::from(vec![seq as u8; size]))
        .unwrap();
    sim.nodes[node].finish_group(now, track, seq);
    sim.run();
    seq
}

fn from_start(start: u64) -> SubscribeParams {
    SubscribeParams {
        start: Some(start),
        ..Default::default()
    }
}

#[test]
fn byte_bounded_cache_serves_late_joiners_what_fits() {
    for run in runs() {
        let mut sim = sim_with(run.seed, 3, |i, mut c| {
            if i == 1 {
                c.origin.max_cache_bytes = 250;
            }
            c
        });
        let (p, r) = (0, 1);
        let now = sim.now();
        let b = sim.nodes[p].publish(now, &path("demo")).unwrap();
        let t = sim.nodes[p]
            .create_track(b, "video", TrackInfo::default())
            .unwrap();
        let links = vec![
            sim.connect(p, r, run.version, "/"),
            sim.connect(2, r, run.version, "/"),
        ];
        let keeper =
            sim.nodes[2].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        for _ in 0..6 {
            write_sized(&mut sim, p, t, 100);
        }
        // The relay keeps the newest groups that fit in 250 bytes; the publisher keeps all.
        assert_eq!(cached(&sim, r), vec![4, 5], "{run}");
        assert_eq!(cached(&sim, p), (0..6).collect::<Vec<_>>(), "{run}");
        let tr = track_of(&sim, r, "demo", "video").unwrap();
        assert!(sim.nodes[r].origin().track(tr).unwrap().cached_bytes() <= 250);

        let now = sim.now();
        let on_relay = sim.nodes[r].subscribe(now, &path("demo"), "video", from_start(0));
        let on_pub = sim.nodes[p].subscribe(now, &path("demo"), "video", from_start(0));
        sim.run();
        let ev = sub_events(&sim.events(r), on_relay);
        assert_eq!(groups(&ev), vec![4, 5], "{run}: {ev:?}");
        // Told it starts where the cache does, not at the group 0 it asked for (gone).
        assert_eq!(starts(&ev), vec![4], "{run}: {ev:?}");
        let ev = sub_events(&sim.events(p), on_pub);
        assert_eq!(groups(&ev), (0..6).collect::<Vec<_>>(), "{run}");
        assert_eq!(starts(&ev), vec![0], "{run}: {ev:?}");
        // The subscriber that kept the relay warm got everything, live.
        let ev = sub_events(&sim.events(2), keeper);
        assert_eq!(groups(&ev), (0..6).collect::<Vec<_>>(), "{run}");

        // A single group larger than the budget is still kept while it is the latest.
        write_sized(&mut sim, p, t, 1000);
        assert_eq!(cached(&sim, r), vec![6], "{run}");

        let now = sim.now();
        sim.nodes[r].unsubscribe(now, on_relay);
        sim.nodes[p].unsubscribe(now, on_pub);
        sim.nodes[2].unsubscribe(now, keeper);
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

#[test]
fn time_bounded_cache_follows_the_publishers_max_latency() {
    for run in runs() {
        let mut sim = sim(run.seed, 3);
        let (p, r) = (0, 1);
        let now = sim.now();
        let b = sim.nodes[p].publish(now, &path("demo")).unwrap();
        let info = TrackInfo {
            max_latency: Duration::from_millis(100),
            ..TrackInfo::default()
        };
        let t = sim.nodes[p].create_track(b, "video", info).unwrap();
        let links = vec![
            sim.connect(p, r, run.version, "/"),
            sim.connect(2, r, run.version, "/"),
        ];
        let keeper =
            sim.nodes[2].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        for _ in 0..4 {
            write_group(&mut sim, p, t, 2, 0);
            sim.advance(Duration::from_millis(60));
        }
        // At t=240ms: group 3 (60ms old) is within 100ms and is the latest; the rest aged out.
        assert_eq!(cached(&sim, p), vec![3], "{run}: publisher");
        assert_eq!(
            cached(&sim, r),
            vec![3],
            "{run}: relay (retention learned upstream)"
        );
        write_group(&mut sim, p, t, 2, 0);
        assert_eq!(cached(&sim, r), vec![3, 4], "{run}");
        sim.advance(Duration::from_millis(30));
        let now = sim.now();
        let on_relay = sim.nodes[r].subscribe(now, &path("demo"), "video", from_start(0));
        sim.run();
        let ev = sub_events(&sim.events(r), on_relay);
        assert_eq!(groups(&ev), vec![3, 4], "{run}: {ev:?}");
        sim.advance(Duration::from_millis(100));
        assert_eq!(
            cached(&sim, r),
            vec![4],
            "{run}: the latest group is always kept"
        );
        assert_eq!(cached(&sim, p), vec![4], "{run}");

        let now = sim.now();
        sim.nodes[r].unsubscribe(now, on_relay);
        sim.nodes[2].unsubscribe(now, keeper);
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

fn fetched(ev: &[FetchEvent]) -> (Vec<Bytes>, Option<Option<u64>>) {
    let frames = ev
        .iter()
        .filter_map(|e| match e {
            FetchEvent::Frame { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .collect();
    let closed = ev.iter().find_map(|e| match e {
        FetchEvent::Closed { error } => Some(error.map(|c| c.0)),
        _ => None,
    });
    (frames, closed)
}

#[test]
fn fetch_cached_in_progress_and_unknown_groups() {
    for run in runs() {
        // Publisher 0, relay 1, client 2 (subscribed, keeps the relay warm), client 3 (cold).
        let mut sim = sim(run.seed, 4);
        let (p, r) = (0, 1);
        let now = sim.now();
        let b = sim.nodes[p].publish(now, &path("demo")).unwrap();
        let t = sim.nodes[p]
            .create_track(b, "video", TrackInfo::default())
            .unwrap();
        let links = vec![
            sim.connect(p, r, run.version, "/"),
            sim.connect(2, r, run.version, "/"),
            sim.connect(3, r, run.version, "/"),
        ];
        for g in 0..3 {
            write_group(&mut sim, p, t, 3, g * 10);
        }
        let demo = path("demo");
        let want = |g: u64| (0..3).map(|f| payload(g, f)).collect::<Vec<_>>();

        // Local FETCH of a cached group on the publisher.
        let now = sim.now();
        let f = sim.nodes[p].fetch(now, &demo, "video", 0, 1);
        sim.run();
        let (frames, closed) = fetched(&fetch_events(&sim.events(p), f));
        assert_eq!((frames, closed), (want(1), Some(None)), "{run}: local");

        // Through the relay (which holds nothing for the track): piped from the publisher,
        // timestamps included on lite-05.
        let f = sim.nodes[3].fetch(now, &demo, "video", 0, 0);
        sim.run();
        let ev = fetch_events(&sim.events(3), f);
        let (frames, closed) = fetched(&ev);
        assert_eq!((frames, closed), (want(0), Some(None)), "{run}: {ev:?}");
        if run.version.is_lite05() {
            let ts: Vec<u64> = ev
                .iter()
                .filter_map(|e| match e {
                    FetchEvent::Frame { timestamp, .. } => Some(*timestamp),
                    _ => None,
                })
                .collect();
            assert_eq!(ts, vec![0, 1, 2], "{run}");
        }

        // A group in progress, fetched through a warm relay and directly from the relay's
        // cache: both complete when the group finishes.
        let keeper = sim.nodes[2].subscribe(now, &demo, "video", SubscribeParams::default());
        sim.run();
        let now = sim.now();
        let g = sim.nodes[p].append_group(now, t).unwrap();
        sim.nodes[p]
            .write_frame(now, t, g, 30, payload(g, 0))
            .unwrap();
        sim.run();
        let remote = sim.nodes[3].fetch(now, &demo, "video", 0, g);
        sim.run();
        let (frames, closed) = fetched(&fetch_events(&sim.events(3), remote));
        assert_eq!(closed, None, "{run}: still open");
        assert!(frames.len() <= 1, "{run}");
        let now = sim.now();
        for f in 1..3 {
            sim.nodes[p]
                .write_frame(now, t, g, 30 + f, payload(g, f))
                .unwrap();
            sim.run();
        }
        sim.nodes[p].finish_group(now, t, g);
        sim.run();
        let ev = [frames, fetched(&fetch_events(&sim.events(3), remote)).0].concat();
        assert_eq!(ev, want(g), "{run}");

        // And in progress with a cold relay: the publisher serves it as it is written.
        let now = sim.now();
        sim.nodes[2].unsubscribe(now, keeper);
        sim.run();
        let g = sim.nodes[p].append_group(now, t).unwrap();
        sim.nodes[p]
            .write_frame(now, t, g, 40, payload(g, 0))
            .unwrap();
        let remote = sim.nodes[3].fetch(now, &demo, "video", 0, g);
        sim.run();
        let now = sim.now();
        for f in 1..3 {
            sim.nodes[p]
                .write_frame(now, t, g, 40 + f, payload(g, f))
                .unwrap();
        }
        sim.nodes[p].finish_group(now, t, g);
        sim.run();
        let (frames, closed) = fetched(&fetch_events(&sim.events(3), remote));
        assert_eq!((frames, closed), (want(g), Some(None)), "{run}: cold relay");

        // Unknown group, unknown track, unknown broadcast.
        let now = sim.now();
        let unknown = [
            (3, demo.clone(), "video", 99),
            (p, demo.clone(), "video", 99),
            (3, demo.clone(), "nope", 0),
            (3, Path::new("missing").unwrap(), "video", 0),
        ];
        for (node, bpath, track, seq) in unknown {
            let f = sim.nodes[node].fetch(now, &bpath, track, 0, seq);
            sim.run();
            let (frames, closed) = fetched(&fetch_events(&sim.events(node), f));
            assert!(frames.is_empty(), "{run}");
            assert_eq!(
                closed,
                Some(Some(StreamCode::NOT_FOUND.0)),
                "{run}: node {node} {bpath} {track} {seq}"
            );
        }

        let now = sim.now();
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

/// `Node::fetch` on the node that publishes the track, for a group still being written, is
/// served from the origin as the group fills and ends with it.
#[test]
fn local_fetch_of_a_group_in_progress() {
    for run in runs() {
        let mut sim = sim(run.seed, 1);
        let now = sim.now();
        let b = sim.nodes[0].publish(now, &path("demo")).unwrap();
        let t = sim.nodes[0]
            .create_track(b, "video", TrackInfo::default())
            .unwrap();
        let g = sim.nodes[0].append_group(now, t).unwrap();
        sim.nodes[0]
            .write_frame(now, t, g, 0, payload(g, 0))
            .unwrap();
        let f = sim.nodes[0].fetch(now, &path("demo"), "video", 0, g);
        sim.nodes[0]
            .write_frame(now, t, g, 1, payload(g, 1))
            .unwrap();
        sim.nodes[0].finish_group(now, t, g);
        sim.run();
        let (frames, closed) = fetched(&fetch_events(&sim.events(0), f));
        assert_eq!(closed, Some(None), "{run}");
        assert_eq!(frames, vec![payload(g, 0), payload(g, 1)], "{run}");
    }
}
