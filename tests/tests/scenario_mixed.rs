//! Mixed versions: one relay bridging a publisher on one version to subscribers on every
//! version, and relay chains whose links use different versions.

mod scenario_util;

use std::time::Duration;

use bytes::Bytes;
use moq_proto::node::{FetchEvent, SubscriptionEvent};
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{TrackInfo, Version};
use scenario_util::*;

const INFO: TrackInfo = TrackInfo {
    priority: 60,
    ordered: false,
    max_latency: Duration::from_millis(3000),
    timescale: 48_000,
};

fn serves_one(summary: &str) -> bool {
    summary.contains(" serves=1 ")
}

#[test]
fn one_relay_bridges_every_version_pair() {
    for pub_version in Version::ALL {
        for seed in SEEDS {
            let run = Run {
                version: pub_version,
                seed,
            };
            // Publisher 0, relay 1, subscribers 2 (05), 3 (04), 4 (03).
            let mut sim = sim(seed, 5);
            let (p, r) = (0, 1);
            let subs = [
                (2, Version::Lite05),
                (3, Version::Lite04),
                (4, Version::Lite03),
            ];
            let now = sim.now();
            let b = sim.nodes[p].publish(now, &path("demo")).unwrap();
            let t = sim.nodes[p].create_track(b, "audio", INFO).unwrap();
            let mut links = vec![sim.connect(p, r, pub_version, "/")];
            for (n, v) in subs {
                links.push(sim.connect(n, r, v, "/"));
            }
            let ids: Vec<_> = subs
                .iter()
                .map(|(n, _)| {
                    sim.nodes[*n].subscribe(now, &path("demo"), "audio", SubscribeParams::default())
                })
                .collect();
            sim.run();
            assert!(
                serves_one(&session_summary(&sim, p, links[0])),
                "{run}: one upstream for three versions: {}",
                session_summary(&sim, p, links[0])
            );
            for g in 0..3u64 {
                write_group(&mut sim, p, t, 3, 48_000 * g);
                sim.advance(Duration::from_millis(25));
            }
            let now = sim.now();
            sim.nodes[p].end_track(now, t);
            sim.run();

            for ((n, v), id) in subs.iter().zip(&ids) {
                let ev = sub_events(&sim.events(*n), *id);
                let f = frames(&ev);
                assert_eq!(f.len(), 9, "{run} -> {v}: {ev:?}");
                for g in 0..3u64 {
                    let got: Vec<&Bytes> = f.iter().filter(|x| x.0 == g).map(|x| &x.2).collect();
                    let want: Vec<Bytes> = (0..3).map(|i| payload(g, i)).collect();
                    assert_eq!(got, want.iter().collect::<Vec<_>>(), "{run} -> {v}");
                }
                assert!(
                    matches!(ev.last(), Some(SubscriptionEvent::Closed { error: None })),
                    "{run} -> {v}: {ev:?}"
                );
                if v.is_lite05() {
                    let ts: Vec<u64> = f.iter().map(|x| x.1).collect();
                    if pub_version.is_lite05() {
                        // End to end on lite-05: the publisher's timestamps, unchanged.
                        let want: Vec<u64> = (0..3)
                            .flat_map(|g| (0..3).map(move |i| 48_000 * g + i))
                            .collect();
                        assert_eq!(ts, want, "{run} -> {v}");
                    } else {
                        // Stamped on arrival at the relay, in ms: 25 ms apart per group.
                        assert_eq!(ts[3] - ts[0], 25, "{run} -> {v}: {ts:?}");
                        assert_eq!(ts[6] - ts[3], 25, "{run} -> {v}: {ts:?}");
                    }
                    let ready = ev.iter().find_map(|e| match e {
                        SubscriptionEvent::Ready { info } => Some(*info),
                        _ => None,
                    });
                    if pub_version.is_lite05() {
                        assert_eq!(ready, Some(Some(INFO)), "{run} -> {v}");
                    } else if let Some(Some(info)) = ready {
                        assert_eq!(info.timescale, 1000, "{run} -> {v}");
                    }
                }
            }
            assert!(
                !serves_one(&session_summary(&sim, p, links[0])),
                "{run}: released"
            );

            let now = sim.now();
            sim.nodes[p].unpublish(now, b);
            teardown(&mut sim, &links, run);
        }
    }
}

/// Publisher -> relay A -> relay B -> subscriber, each link on its own version.
#[test]
fn relay_chains_with_mixed_versions() {
    for v1 in Version::ALL {
        for v2 in Version::ALL {
            for v3 in Version::ALL {
                for seed in 0..2 {
                    let run = Run { version: v3, seed };
                    let mut sim = sim(seed, 4);
                    let (p, a, b, s) = (0, 1, 2, 3);
                    let links = vec![
                        sim.connect(p, a, v1, "/"),
                        sim.connect(b, a, v2, "/"),
                        sim.connect(s, b, v3, "/"),
                    ];
                    let now = sim.now();
                    let bc = sim.nodes[p].publish(now, &path("live/cam")).unwrap();
                    let t = sim.nodes[p].create_track(bc, "video", INFO).unwrap();
                    sim.run();
                    let w = sim.nodes[s].announced(&path("live"));
                    let sub = sim.nodes[s].subscribe(
                        now,
                        &path("live/cam"),
                        "video",
                        SubscribeParams::default(),
                    );
                    sim.run();
                    for g in 0..3u64 {
                        write_group(&mut sim, p, t, 2, 1000 * g);
                        sim.advance(Duration::from_millis(10));
                    }
                    let ev = sim.events(s);
                    assert_eq!(
                        announced(&ev, w),
                        vec![("live/cam".to_string(), true)],
                        "{v1}/{v2}/{v3} seed {seed}"
                    );
                    let sev = sub_events(&ev, sub);
                    assert_eq!(frames(&sev).len(), 6, "{v1}/{v2}/{v3} seed {seed}: {sev:?}");
                    if [v1, v2, v3].iter().all(|v| v.is_lite05()) {
                        let ts: Vec<u64> = frames(&sev).iter().map(|x| x.1).collect();
                        assert_eq!(ts, vec![0, 1, 1000, 1001, 2000, 2001]);
                    }
                    // FETCH of a group the first relay caches (FETCH on every version here).
                    let now = sim.now();
                    let f = sim.nodes[s].fetch(now, &path("live/cam"), "video", 0, 1);
                    sim.run();
                    let fev = fetch_events(&sim.events(s), f);
                    let payloads: Vec<Bytes> = fev
                        .iter()
                        .filter_map(|e| match e {
                            FetchEvent::Frame { payload, .. } => Some(payload.clone()),
                            _ => None,
                        })
                        .collect();
                    assert_eq!(
                        payloads,
                        vec![payload(1, 0), payload(1, 1)],
                        "{v1}/{v2}/{v3}"
                    );
                    assert_eq!(fev.last(), Some(&FetchEvent::Closed { error: None }));

                    // Unpublish: the subscription ends cleanly and the announcement is withdrawn.
                    let now = sim.now();
                    sim.nodes[p].unpublish(now, bc);
                    sim.run();
                    let ev = sim.events(s);
                    assert_eq!(announced(&ev, w), vec![("live/cam".to_string(), false)]);
                    assert_eq!(closed(&sub_events(&ev, sub)), Some(None), "{v1}/{v2}/{v3}");
                    sim.nodes[s].unwatch(w);
                    teardown(&mut sim, &links, run);
                }
            }
        }
    }
}
