//! First end-to-end smoke test of two nodes in memory.
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_harness::testing::{Mode, Sim, node_config};
use moq_proto::node::{NodeEvent, SubscriptionEvent};
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{Path, TrackInfo, Version};

#[test]
fn publish_subscribe_all_versions() {
    for version in Version::ALL {
        for seed in 0..20 {
            let mut sim = Sim::new(seed, Instant::now(), Mode::Shuffle);
            let publisher = sim.add_node(node_config(seed * 7 + 1));
            let relay = sim.add_node(node_config(seed * 7 + 2));
            let now = sim.now();
            let path = Path::new("demo").unwrap();
            let b = sim.nodes[publisher].publish(now, &path).unwrap();
            let t = sim.nodes[publisher]
                .create_track(b, "clock", TrackInfo::default())
                .unwrap();
            sim.connect(publisher, relay, version, "/");
            let sub = sim.nodes[relay].subscribe(now, &path, "clock", SubscribeParams::default());
            sim.run();
            for g in 0..3 {
                let now = sim.now();
                let seq = sim.nodes[publisher].append_group(now, t).unwrap();
                assert_eq!(seq, g);
                for f in 0..4u64 {
                    sim.nodes[publisher]
                        .write_frame(
                            now,
                            t,
                            seq,
                            1000 + g * 100 + f,
                            Bytes::from(format!("g{g}f{f}")),
                        )
                        .unwrap();
                    sim.run();
                }
                sim.nodes[publisher].finish_group(now, t, seq);
                sim.run();
                sim.advance(Duration::from_millis(10));
            }
            let events = sim.events(relay);
            let frames: Vec<(u64, Bytes)> = events
                .iter()
                .filter_map(|e| match e {
                    NodeEvent::Subscription {
                        id,
                        event: SubscriptionEvent::Frame { seq, payload, .. },
                    } if *id == sub => Some((*seq, payload.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(
                frames.len(),
                12,
                "{version} seed {seed}: {events:#?}\n{}",
                sim.nodes[relay].state_summary()
            );
            for (i, (seq, payload)) in frames.iter().enumerate() {
                let (g, f) = (i / 4, i % 4);
                assert_eq!(*seq, g as u64);
                assert_eq!(payload, &Bytes::from(format!("g{g}f{f}")));
            }
        }
    }
}

#[test]
fn relay_shares_one_upstream_and_cleans_up() {
    for version in Version::ALL {
        for seed in 0..20 {
            let mut sim = Sim::new(seed, Instant::now(), Mode::Shuffle);
            let publisher = sim.add_node(node_config(seed * 7 + 1));
            let relay = sim.add_node(node_config(seed * 7 + 2));
            let sub_a = sim.add_node(node_config(seed * 7 + 3));
            let sub_b = sim.add_node(node_config(seed * 7 + 4));
            let now = sim.now();
            let path = Path::new("demo").unwrap();
            let b = sim.nodes[publisher].publish(now, &path).unwrap();
            let t = sim.nodes[publisher]
                .create_track(b, "clock", TrackInfo::default())
                .unwrap();
            let l0 = sim.connect(publisher, relay, version, "/");
            let l1 = sim.connect(sub_a, relay, version, "/");
            let l2 = sim.connect(sub_b, relay, version, "/");
            let a = sim.nodes[sub_a].subscribe(now, &path, "clock", SubscribeParams::default());
            let bsub = sim.nodes[sub_b].subscribe(now, &path, "clock", SubscribeParams::default());
            sim.run();
            let pub_peer = sim.ends(l0)[0].peer;
            let serves = sim.nodes[publisher].session(pub_peer).unwrap().tables();
            assert!(
                serves.serves == 1,
                "{version} seed {seed}: one upstream subscription expected: {serves}"
            );
            for g in 0..3u64 {
                let now = sim.now();
                let seq = sim.nodes[publisher].append_group(now, t).unwrap();
                for f in 0..3u64 {
                    sim.nodes[publisher]
                        .write_frame(
                            now,
                            t,
                            seq,
                            g * 10 + f,
                            Bytes::from(vec![f as u8; 100 * (f as usize + 1)]),
                        )
                        .unwrap();
                }
                sim.nodes[publisher].finish_group(now, t, seq);
                sim.advance(Duration::from_millis(5));
            }
            for (node, id) in [(sub_a, a), (sub_b, bsub)] {
                let frames = sim
                    .events(node)
                    .into_iter()
                    .filter(|e| matches!(e, NodeEvent::Subscription { id: i, event: SubscriptionEvent::Frame { .. } } if *i == id))
                    .count();
                assert_eq!(frames, 9, "{version} seed {seed}");
            }
            // Both leave: the relay releases its upstream subscription.
            let now = sim.now();
            sim.nodes[sub_a].unsubscribe(now, a);
            sim.nodes[sub_b].unsubscribe(now, bsub);
            sim.run();
            let summary = sim.nodes[publisher].session(pub_peer).unwrap().tables();
            assert!(summary.serves == 0, "{version} seed {seed}: {summary}");
            sim.nodes[publisher].unpublish(now, b);
            sim.run();
            sim.advance(Duration::from_secs(10));
            for l in [l0, l1, l2] {
                sim.disconnect(l);
            }
            for n in 0..4 {
                assert!(
                    sim.nodes[n].is_idle(),
                    "{version} seed {seed} node {n}: {}",
                    sim.nodes[n].state_summary()
                );
            }
        }
    }
}
