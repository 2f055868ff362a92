//! A clock track over a lossy path, and late joiners, on every version.
//!
//! - A "clock": one group per minute of [`SECONDS`] frames, one frame per second of virtual
//!   time, published by the server and subscribed by the client over 5 % independent loss and
//!   a 50 ms RTT. Every frame of every group arrives, byte for byte, in order within its group.
//! - A subscriber joining late starts at the latest group, never at an older cached one.

mod sim_support;

use std::time::Duration;

use bytes::Bytes;
use moq_proto::node::SubscriptionEvent;
use moq_proto::origin::GroupState;
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{TrackInfo, Version};
use moq_tests::netsim::LinkConfig;
use sim_support::{Stamp, World, client_config, ms, quantile, server_config};

/// Frames (seconds) per group (minute).
const SECONDS: u64 = 20;
/// Groups (minutes) published.
const MINUTES: u64 = 5;

/// The clock's frame for second `s` of minute `m`: a stamp, then the time as text.
fn clock_frame(at: Duration, m: u64, s: u64) -> Bytes {
    let mut out = Stamp {
        at,
        group: m,
        frame: s,
    }
    .payload(Stamp::LEN)
    .to_vec();
    out.extend_from_slice(format!("00:{m:02}:{s:02}").as_bytes());
    Bytes::from(out)
}

#[test]
fn clock_over_five_percent_loss_delivers_every_frame_in_order() {
    for (i, (webtransport, version)) in [false, true]
        .into_iter()
        .flat_map(|wt| Version::ALL.into_iter().map(move |v| (wt, v)))
        .enumerate()
    {
        let seed = 100 + i as u64;
        let mut w = World::new(
            seed,
            LinkConfig {
                loss: 0.05,
                ..LinkConfig::latency(ms(25))
            },
        );
        w.webtransport = webtransport;
        let server = w.add(server_config(seed, &Version::ALL));
        let client = w.add(client_config(seed, &[version]));
        let track = w.publish(
            server,
            "clock",
            "seconds",
            TrackInfo {
                max_latency: Duration::from_secs(3600),
                ..TrackInfo::default()
            },
        );
        let link = w.connect(client, server);
        assert_eq!(link.version, version);
        // Generous latency: nothing may expire, so everything must arrive.
        let sub = w.subscribe(
            client,
            "clock",
            "seconds",
            SubscribeParams {
                max_latency: Duration::from_secs(3600),
                ..SubscribeParams::default()
            },
        );
        let deadline = w.elapsed() + Duration::from_secs(10);
        let subscribed = w.run_until_sim(deadline, |sim| {
            sim.hosts[server].engine.node().subscriber_count(track) == 1
        });
        assert!(
            subscribed,
            "{version}: the subscription never reached the publisher"
        );

        // The clock: a new group every minute, a frame every second.
        let t0 = w.elapsed();
        let mut expected = Vec::new();
        for m in 0..MINUTES {
            let mut group = Vec::new();
            for s in 0..SECONDS {
                let at = t0 + Duration::from_secs(m * SECONDS + s);
                w.run_until(at, |_| false);
                let payload = clock_frame(at, m, s);
                group.push(payload.clone());
                w.with(server, |e, now| {
                    if s == 0 {
                        if m > 0 {
                            e.node().finish_group(now, track, m - 1);
                        }
                        assert_eq!(e.node().append_group(now, track).unwrap(), m);
                    }
                    let ts = (m * SECONDS + s) * 1000;
                    e.node().write_frame(now, track, m, ts, payload).unwrap();
                });
            }
            expected.push(group);
        }
        w.with(server, |e, now| {
            e.node().finish_group(now, track, MINUTES - 1)
        });
        let end = w.elapsed() + Duration::from_secs(30);
        w.run_until(end, |_| false);

        let events = w.sub_events(client, sub);
        let mut got: Vec<Vec<Bytes>> = vec![Vec::new(); MINUTES as usize];
        let mut latencies = Vec::new();
        for (at, event) in &events {
            match event {
                SubscriptionEvent::Frame { seq, payload, .. } => {
                    got[*seq as usize].push(payload.clone());
                    latencies.push(*at - Stamp::read(payload).at);
                }
                SubscriptionEvent::GroupEnd { state, seq } => {
                    assert_eq!(*state, GroupState::Finished, "{version}: group {seq}")
                }
                SubscriptionEvent::Dropped { .. } | SubscriptionEvent::Closed { .. } => {
                    panic!("{version}: unexpected {event:?}")
                }
                _ => {}
            }
        }
        for m in 0..MINUTES as usize {
            assert_eq!(
                got[m].len(),
                expected[m].len(),
                "{version}: minute {m} incomplete"
            );
            assert!(got[m] == expected[m], "{version}: minute {m} differs");
        }
        let groups: Vec<u64> = events
            .iter()
            .filter_map(|(_, e)| match e {
                SubscriptionEvent::Group { seq } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(groups, (0..MINUTES).collect::<Vec<_>>(), "{version}");
        let stats = w.sim.stats;
        assert!(
            stats.lost > 0,
            "{version}: the loss never happened: {stats:?}"
        );
        println!(
            "{version}: {} frames, latency p50 {:?} p99 {:?} max {:?}; net {stats:?}",
            latencies.len(),
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.99),
            quantile(&latencies, 1.0),
        );
        // One-way delay is 25 ms; a lost packet costs about one probe timeout more.
        assert!(quantile(&latencies, 0.5) < ms(60), "{version}");
    }
}

/// Publish `frames` frames of group `seq` (already started) at the current time.
fn frames(
    w: &mut World,
    host: usize,
    track: moq_proto::origin::TrackId,
    seq: u64,
    range: std::ops::Range<u64>,
) {
    let at = w.elapsed();
    w.with(host, |e, now| {
        for f in range {
            let payload = Stamp {
                at,
                group: seq,
                frame: f,
            }
            .payload(200);
            e.node().write_frame(now, track, seq, f, payload).unwrap();
        }
    });
}

#[test]
fn late_joiner_starts_at_the_latest_group() {
    for (i, version) in Version::ALL.into_iter().enumerate() {
        // `open`: whether the latest group is still being written when the subscriber joins.
        for open in [false, true] {
            let seed = 200 + i as u64 * 2 + u64::from(open);
            let mut w = World::new(
                seed,
                LinkConfig {
                    jitter: ms(5),
                    ..LinkConfig::latency(ms(20))
                },
            );
            let server = w.add(server_config(seed, &Version::ALL));
            let client = w.add(client_config(seed, &[version]));
            let track = w.publish(
                server,
                "live",
                "video",
                TrackInfo {
                    max_latency: Duration::from_secs(60),
                    ..TrackInfo::default()
                },
            );
            w.connect(client, server);
            // Five groups nobody watches, all still cached.
            for g in 0..5u64 {
                let seq = w.with(server, |e, now| e.node().append_group(now, track).unwrap());
                assert_eq!(seq, g);
                frames(&mut w, server, track, seq, 0..3);
                if g < 4 || !open {
                    w.with(server, |e, now| e.node().finish_group(now, track, seq));
                }
                w.run_for(ms(100));
            }
            let cached = w.with(server, |e, _| {
                e.node().origin().track(track).unwrap().groups().count()
            });
            assert_eq!(cached, 5, "{version}: the cache should hold every group");

            let sub = w.subscribe(client, "live", "video", SubscribeParams::default());
            w.run_for(ms(500));
            // The latest group continues (or a new one begins) after the join.
            if open {
                frames(&mut w, server, track, 4, 3..5);
                w.with(server, |e, now| e.node().finish_group(now, track, 4));
            }
            w.run_for(ms(100));
            let seq = w.with(server, |e, now| e.node().append_group(now, track).unwrap());
            frames(&mut w, server, track, seq, 0..3);
            w.with(server, |e, now| e.node().finish_group(now, track, seq));
            w.run_for(ms(500));

            let events = w.sub_events(client, sub);
            let groups: Vec<u64> = events
                .iter()
                .filter_map(|(_, e)| match e {
                    SubscriptionEvent::Group { seq } => Some(*seq),
                    _ => None,
                })
                .collect();
            assert_eq!(groups, vec![4, 5], "{version} open={open}: {events:#?}");
            let got: Vec<(u64, u64)> = w
                .frames(client, sub)
                .iter()
                .map(|d| {
                    let s = Stamp::read(&d.payload);
                    assert_eq!(s.group, d.seq);
                    (d.seq, s.frame)
                })
                .collect();
            let want_latest = if open { 5 } else { 3 };
            let mut want: Vec<(u64, u64)> = (0..want_latest).map(|f| (4, f)).collect();
            want.extend((0..3).map(|f| (5, f)));
            assert_eq!(got, want, "{version} open={open}");
        }
    }
}
