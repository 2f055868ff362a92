//! Publisher → relay → several subscribers, three engines deep, across versions.
//!
//! The relay is a plain [`moq_proto::quic::Endpoint`] with a certificate that accepts both the
//! publisher and the subscribers: no relay-specific code. Its origin learns the publisher's
//! broadcast from the announcement, serves it to every subscriber, and holds exactly ONE
//! upstream subscription however many subscribers there are (checked on the publisher's
//! session state). Subscribers may speak a different version from the publisher.

mod sim_support;

use std::time::Duration;

use moq_proto::node::SubscriptionEvent;
use moq_proto::origin::GroupState;
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{Path, TrackInfo, Version};
use moq_tests::netsim::LinkConfig;
use sim_support::{Stamp, World, client_config, ms, quantile, server_config};

const SUBSCRIBERS: usize = 3;
const GROUPS: u64 = 5;
const FRAMES: u64 = 4;

/// How many subscriptions the publisher's session toward the relay serves.
fn serves(w: &mut World, host: usize, peer: moq_proto::origin::PeerId) -> usize {
    w.engine(host).node().session(peer).unwrap().tables().serves
}

#[test]
fn relay_fans_out_one_upstream_subscription() {
    let versions = Version::ALL;
    for (i, version, webtransport) in [false, true].into_iter().flat_map(|wt| {
        versions
            .into_iter()
            .enumerate()
            .map(move |(i, v)| (i, v, wt))
    }) {
        let seed = 400 + i as u64 + if webtransport { 50 } else { 0 };
        let mut w = World::new(
            seed,
            LinkConfig {
                jitter: ms(2),
                ..LinkConfig::latency(ms(10))
            },
        );
        w.webtransport = webtransport;
        let relay = w.add(server_config(seed, &Version::ALL));
        let publisher = w.add(client_config(seed * 10, &[version]));
        // Subscribers use every version in turn, so a relay bridges versions.
        let subscribers: Vec<usize> = (0..SUBSCRIBERS)
            .map(|k| {
                let v = versions[(i + k) % versions.len()];
                w.add(client_config(seed * 10 + 1 + k as u64, &[v]))
            })
            .collect();
        let track = w.publish(publisher, "room/cam", "video", TrackInfo::default());
        let up = w.connect(publisher, relay);
        assert_eq!(up.version, version);
        let subs: Vec<_> = subscribers
            .iter()
            .map(|&s| {
                w.connect(s, relay);
                w.subscribe(s, "room/cam", "video", SubscribeParams::default())
            })
            .collect();
        let path = Path::new("room/cam").unwrap();
        let deadline = w.elapsed() + Duration::from_secs(5);
        let ready = w.run_until_sim(deadline, |sim| {
            let node = sim.hosts[relay].engine.node();
            let track = node
                .origin()
                .find(&path)
                .and_then(|b| node.origin().broadcast(b))
                .and_then(|b| b.track("video"));
            track.is_some_and(|t| node.subscriber_count(t) == SUBSCRIBERS)
        });
        assert!(ready, "{version}: the relay never had every subscriber");
        w.run_for(ms(200));
        // One upstream subscription for all of them.
        assert_eq!(w.engine(publisher).node().subscriber_count(track), 1);
        assert_eq!(serves(&mut w, publisher, up.client_peer), 1);

        for _ in 0..GROUPS {
            w.publish_group(publisher, track, FRAMES, 500);
            w.run_for(ms(100));
        }
        w.run_for(ms(500));

        for (k, (&s, &sub)) in subscribers.iter().zip(&subs).enumerate() {
            let frames = w.frames(s, sub);
            let got: Vec<(u64, u64)> = frames
                .iter()
                .map(|d| {
                    let stamp = Stamp::read(&d.payload);
                    assert_eq!(d.payload, stamp.payload(500), "{version}: subscriber {k}");
                    assert_eq!(stamp.group, d.seq);
                    (d.seq, stamp.frame)
                })
                .collect();
            let want: Vec<(u64, u64)> = (0..GROUPS)
                .flat_map(|g| (0..FRAMES).map(move |f| (g, f)))
                .collect();
            assert_eq!(got, want, "{version}: subscriber {k}");
            let ends = w
                .sub_events(s, sub)
                .into_iter()
                .filter(|(_, e)| {
                    matches!(
                        e,
                        SubscriptionEvent::GroupEnd {
                            state: GroupState::Finished,
                            ..
                        }
                    )
                })
                .count();
            assert_eq!(ends as u64, GROUPS, "{version}: subscriber {k}");
            let latency: Vec<Duration> = frames
                .iter()
                .map(|d| d.at - Stamp::read(&d.payload).at)
                .collect();
            // Two hops of 10-12 ms one way.
            assert!(quantile(&latency, 1.0) < ms(60), "{version}: {latency:?}");
            println!(
                "{version}: subscriber {k} got {} frames, two-hop latency p50 {:?} max {:?}",
                frames.len(),
                quantile(&latency, 0.5),
                quantile(&latency, 1.0)
            );
        }

        // Subscribers leave one by one; the upstream subscription stays until the last goes.
        for (k, (&s, &sub)) in subscribers.iter().zip(&subs).enumerate() {
            w.with(s, |e, now| e.node().unsubscribe(now, sub));
            w.run_for(ms(200));
            let want = usize::from(k + 1 < SUBSCRIBERS);
            assert_eq!(serves(&mut w, publisher, up.client_peer), want, "{version}");
        }
        assert_eq!(w.engine(publisher).node().subscriber_count(track), 0);
        // The relay forgot the remote track once nobody used it.
        let node = w.engine(relay).node();
        let held = node
            .origin()
            .find(&path)
            .and_then(|b| node.origin().broadcast(b))
            .map_or(0, |b| b.track_count());
        assert_eq!(held, 0, "{version}: {}", node.state_summary());
    }
}

/// Two relays in the lossy simulator (3% loss, jitter), each with a publisher of the same
/// broadcast (active/active); a subscriber on the second relay keeps receiving when its
/// publisher's connection dies (the relay fails over to the other relay's publisher, with
/// the group numbering continued), and when the subscriber leaves, the demand is cancelled
/// all the way to the remaining publisher.
#[test]
fn a_two_relay_cluster_fails_over_and_follows_demand_under_loss() {
    for (i, version) in Version::ALL.into_iter().enumerate() {
        let seed = 700 + i as u64;
        let mut w = World::new(
            seed,
            LinkConfig {
                jitter: ms(3),
                loss: 0.03,
                ..LinkConfig::latency(ms(15))
            },
        );
        let mut relay_cfg = server_config(seed, &Version::ALL);
        relay_cfg.verification = client_config(seed, &[version]).verification;
        relay_cfg.client_versions = vec![version];
        let r1 = w.add(server_config(seed + 1, &Version::ALL));
        let r2 = w.add(relay_cfg);
        let p1 = w.add(client_config(seed * 10 + 1, &[version]));
        let p2 = w.add(client_config(seed * 10 + 2, &[version]));
        let s = w.add(client_config(seed * 10 + 3, &[version]));
        w.connect(r2, r1);
        let t1 = w.publish(p1, "dual/cam", "video", TrackInfo::default());
        let t2 = w.publish(p2, "dual/cam", "video", TrackInfo::default());
        w.connect(p1, r1);
        let up2 = w.connect(p2, r2);
        w.connect(s, r2);
        w.run_for(ms(500));
        let sub = w.subscribe(s, "dual/cam", "video", SubscribeParams::default());
        w.run_for(ms(500));
        // R2 takes its own publisher (the shortest route).
        assert_eq!(w.engine(p2).node().subscriber_count(t2), 1, "{version}");
        for _ in 0..3 {
            w.publish_group(p2, t2, 3, 200);
            w.publish_group(p1, t1, 3, 200);
            w.run_for(ms(200));
        }
        w.run_for(ms(1000));
        let before = w.frames(s, sub).len();
        assert_eq!(before, 9, "{version}: the first publisher's groups");

        // P2's connection dies: R2 fails over to R1 (and so to P1).
        w.with(p2, |e, now| {
            e.close(now, moq_proto::codes::SessionCode(0), "gone")
        });
        let _ = up2;
        w.run_for(ms(1500));
        assert_eq!(
            w.engine(p1).node().subscriber_count(t1),
            1,
            "{version}: P1 asked"
        );
        for _ in 0..3 {
            w.publish_group(p1, t1, 3, 200);
            w.run_for(ms(200));
        }
        w.run_for(ms(1500));
        let frames = w.frames(s, sub);
        assert!(
            frames.len() >= before + 9,
            "{version}: {} frames after the failover",
            frames.len() - before
        );
        let seqs: Vec<u64> = frames.iter().map(|d| d.seq).collect();
        let mut sorted = seqs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            seqs.len() / 3,
            "{version}: no group twice: {seqs:?}"
        );
        assert!(
            !w.sub_events(s, sub)
                .iter()
                .any(|(_, e)| matches!(e, SubscriptionEvent::Closed { .. })),
            "{version}: the subscription never ended"
        );

        // The subscriber leaves: the demand is cancelled up to P1.
        w.with(s, |e, now| {
            e.close(now, moq_proto::codes::SessionCode(0), "bye")
        });
        w.run_for(ms(2000));
        assert_eq!(
            w.engine(p1).node().subscriber_count(t1),
            0,
            "{version}: cancelled"
        );
    }
}

/// How the first publisher of an active/active pair leaves in
/// [`a_publisher_leaving_a_triangle_never_makes_a_subscription_loop`].
#[derive(Debug, Clone, Copy)]
enum Leave {
    /// Its connection closes (no goodbye for the track).
    Close,
    /// It unpublishes: the track finishes cleanly, then the broadcast is withdrawn.
    Unpublish,
}

/// Three relays, A, B and C, C linked to A and B (A's link to B comes up later); publishers of
/// the same broadcast on A and on C, the one on C arriving after a subscriber on B has been
/// routed B → C → A. When A's publisher leaves, A fails over to C; C must not serve that from
/// its own subscription to A (a loop that would feed the cached groups round A and C for ever)
/// but move to its own publisher, and a clean end of the track is failed over like a lost
/// connection while a route from another publisher is left: the subscriber on B keeps
/// receiving, every group once.
#[test]
fn a_publisher_leaving_a_triangle_never_makes_a_subscription_loop() {
    for (i, version, leave) in Version::ALL.into_iter().enumerate().flat_map(|(i, v)| {
        [Leave::Close, Leave::Unpublish]
            .into_iter()
            .map(move |l| (i, v, l))
    }) {
        let seed = 900 + i as u64 * 2 + matches!(leave, Leave::Unpublish) as u64;
        let mut w = World::new(seed, LinkConfig::latency(ms(5)));
        let relay = |w: &mut World, k: u64| {
            let mut cfg = server_config(seed * 10 + k, &Version::ALL);
            cfg.verification = client_config(seed, &[version]).verification;
            cfg.client_versions = vec![version];
            w.add(cfg)
        };
        let (a, b, c) = (relay(&mut w, 1), relay(&mut w, 2), relay(&mut w, 3));
        let pa = w.add(client_config(seed * 10 + 4, &[version]));
        let pc = w.add(client_config(seed * 10 + 5, &[version]));
        let s = w.add(client_config(seed * 10 + 6, &[version]));
        w.connect(c, b);
        w.connect(c, a);
        let ta = w.publish(pa, "dual", "seconds", TrackInfo::default());
        w.connect(pa, a);
        w.connect(s, b);
        w.run_for(ms(300));
        let sub = w.subscribe(s, "dual", "seconds", SubscribeParams::default());
        w.run_for(ms(300));
        w.publish_group(pa, ta, 3, 100);
        w.run_for(ms(300));
        // The second publisher arrives on C, which keeps its route through A for now.
        let tc = w.publish(pc, "dual", "seconds", TrackInfo::default());
        w.connect(pc, c);
        w.connect(a, b);
        w.run_for(ms(300));
        for _ in 0..2 {
            w.publish_group(pa, ta, 3, 100);
            w.publish_group(pc, tc, 3, 100);
            w.run_for(ms(200));
        }
        let before = w.frames(s, sub).len();
        assert_eq!(
            before, 9,
            "{version} {leave:?}: the first publisher's groups"
        );

        match leave {
            Leave::Close => w.with(pa, |e, now| {
                e.close(now, moq_proto::codes::SessionCode(0), "gone")
            }),
            Leave::Unpublish => w.with(pa, |e, now| {
                let broadcast = e.node().origin().track(ta).unwrap().broadcast();
                e.node().unpublish(now, broadcast)
            }),
        }
        w.run_for(ms(1000));
        for _ in 0..3 {
            w.publish_group(pc, tc, 3, 100);
            w.run_for(ms(200));
        }
        w.run_for(ms(1000));
        let closed = w.sub_events(s, sub).into_iter().find_map(|(_, e)| match e {
            SubscriptionEvent::Closed { error } => Some(error),
            _ => None,
        });
        if matches!(leave, Leave::Unpublish) && !version.has_hops() {
            // lite-03 routes carry only a hop count: nothing tells another publisher from
            // another path to the one that finished, so the track finishes with it.
            assert_eq!(closed, Some(None), "{version}: finished cleanly");
            assert_eq!(w.frames(s, sub).len(), before, "{version}: nothing more");
            continue;
        }
        let frames = w.frames(s, sub);
        let after = frames.len() - before;
        // The second publisher's three new groups, and at most its cached latest one.
        assert!(
            (9..=12).contains(&after),
            "{version} {leave:?}: {after} frames after the first publisher left"
        );
        let seqs: Vec<u64> = frames.iter().map(|d| d.seq).collect();
        let mut groups = seqs.clone();
        groups.dedup();
        assert!(
            groups.windows(2).all(|p| p[0] < p[1]),
            "{version} {leave:?}: every group once, in order: {seqs:?}"
        );
        assert_eq!(
            closed, None,
            "{version} {leave:?}: the subscription never ended"
        );
    }
}
