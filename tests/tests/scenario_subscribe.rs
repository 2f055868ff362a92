//! Subscriptions through a relay: one shared upstream, late joiners, ranges, unsubscribe,
//! track end and publisher loss.

mod scenario_util;

use bytes::Bytes;
use moq_harness::testing::Sim;
use moq_proto::node::SubscriptionEvent;
use moq_proto::origin::GroupState;
use moq_proto::session::SubscribeParams;
use moq_proto::wire::TrackInfo;
use scenario_util::*;

/// Publisher (node 0) -> relay (node 1) <- `clients` subscriber nodes (2..). Returns the
/// broadcast, track and links (publisher link first).
fn topology(
    run: Run,
    clients: usize,
) -> (
    Sim,
    moq_proto::origin::BroadcastId,
    moq_proto::origin::TrackId,
    Vec<usize>,
) {
    let mut sim = sim(run.seed, 2 + clients);
    let now = sim.now();
    let b = sim.nodes[0].publish(now, &path("demo")).unwrap();
    let t = sim.nodes[0]
        .create_track(b, "video", TrackInfo::default())
        .unwrap();
    let mut links = vec![sim.connect(0, 1, run.version, "/")];
    for c in 0..clients {
        links.push(sim.connect(2 + c, 1, run.version, "/"));
    }
    (sim, b, t, links)
}

fn serves(sim: &Sim, node: usize, link: usize) -> usize {
    let summary = session_summary(sim, node, link);
    let n = summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix("serves="))
        .unwrap_or_else(|| panic!("no serves in {summary}"));
    n.parse().unwrap()
}

#[test]
fn subscribers_share_one_upstream_released_by_the_last() {
    for run in runs() {
        let (mut sim, b, t, links) = topology(run, 3);
        let (p, r) = (0, 1);
        let now = sim.now();
        let params = SubscribeParams::default();
        let s1 = sim.nodes[2].subscribe(now, &path("demo"), "video", params);
        let s2 = sim.nodes[3].subscribe(now, &path("demo"), "video", params);
        let local = sim.nodes[r].subscribe(now, &path("demo"), "video", params);
        sim.run();
        assert_eq!(serves(&sim, p, links[0]), 1, "{run}");
        write_group(&mut sim, p, t, 3, 100);
        let now = sim.now();
        let s3 = sim.nodes[4].subscribe(now, &path("demo"), "video", params);
        sim.run();
        assert_eq!(
            serves(&sim, p, links[0]),
            1,
            "{run}: a late joiner shares it too"
        );
        write_group(&mut sim, p, t, 3, 200);

        for (node, id, want) in [(2, s1, 6), (3, s2, 6), (r, local, 6), (4, s3, 6)] {
            let ev = sub_events(&sim.events(node), id);
            let f = frames(&ev);
            assert_eq!(f.len(), want, "{run}: node {node}: {ev:?}");
            assert!(
                matches!(ev[0], SubscriptionEvent::Ready { .. }),
                "{run}: {ev:?}"
            );
            for (g, _, payload) in &f {
                let i = f
                    .iter()
                    .filter(|x| x.0 == *g)
                    .position(|x| x.2 == payload)
                    .unwrap();
                assert_eq!(payload, &scenario_util::payload(*g, i as u64), "{run}");
            }
        }

        // Leaving one by one: the upstream stays until the last one leaves.
        for (node, id) in [(2, s1), (r, local), (3, s2)] {
            let now = sim.now();
            sim.nodes[node].unsubscribe(now, id);
            sim.run();
            assert_eq!(serves(&sim, p, links[0]), 1, "{run}");
        }
        let now = sim.now();
        sim.nodes[4].unsubscribe(now, s3);
        sim.run();
        assert_eq!(serves(&sim, p, links[0]), 0, "{run}: released");
        assert_eq!(
            sim.nodes[r].origin().len().1,
            0,
            "{run}: the relay forgot the track: {}",
            sim.nodes[r].state_summary()
        );
        for n in 2..5 {
            let ev = sim.events(n);
            assert!(
                ev.iter()
                    .all(|e| !matches!(e, moq_proto::node::NodeEvent::Subscription { .. })),
                "{run}: nothing after unsubscribe: {ev:?}"
            );
        }
        let now = sim.now();
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

#[test]
fn late_joiners_start_at_the_latest_group() {
    for run in runs() {
        let (mut sim, b, t, links) = topology(run, 3);
        let p = 0;
        // Groups 0..=2 done and group 3 in progress before anyone subscribes.
        for g in 0..3 {
            write_group(&mut sim, p, t, 2, g * 10);
        }
        let now = sim.now();
        let g3 = sim.nodes[p].append_group(now, t).unwrap();
        sim.nodes[p]
            .write_frame(now, t, g3, 30, payload(g3, 0))
            .unwrap();
        sim.run();

        // The first subscriber: the publisher serves the latest group from its start.
        let s1 = sim.nodes[2].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        let now = sim.now();
        sim.nodes[p]
            .write_frame(now, t, g3, 31, payload(g3, 1))
            .unwrap();
        sim.nodes[p].finish_group(now, t, g3);
        let g4 = sim.nodes[p].append_group(now, t).unwrap();
        sim.nodes[p]
            .write_frame(now, t, g4, 40, payload(g4, 0))
            .unwrap();
        sim.run();

        // The second: served by the relay's cache from group 4's start, nothing older.
        let s2 = sim.nodes[3].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        // The third, on the relay itself, asks for an earlier start: served from its cache
        // (it holds 3 and 4).
        let s3 = sim.nodes[1].subscribe(
            now,
            &path("demo"),
            "video",
            SubscribeParams {
                start: Some(3),
                ..Default::default()
            },
        );
        sim.run();
        let now = sim.now();
        sim.nodes[p]
            .write_frame(now, t, g4, 41, payload(g4, 1))
            .unwrap();
        sim.nodes[p].finish_group(now, t, g4);
        sim.run();
        write_group(&mut sim, p, t, 2, 50);

        let e1 = sub_events(&sim.events(2), s1);
        let e2 = sub_events(&sim.events(3), s2);
        let e3 = sub_events(&sim.events(1), s3);
        assert_eq!(groups(&e1), vec![3, 4, 5], "{run}: {e1:?}");
        assert_eq!(groups(&e2), vec![4, 5], "{run}: {e2:?}");
        assert_eq!(groups(&e3), vec![3, 4, 5], "{run}: {e3:?}");
        // Each is told where it starts, once: through the relay from the publisher's answer,
        // from the relay's cache, from the start asked for. (On lite-03/04 the relay answers
        // the first at once, with no start if the publisher's group 3 overtook its OK.)
        if run.version.is_lite05() {
            assert_eq!(starts(&e1), vec![3], "{run}: {e1:?}");
        } else {
            assert!([vec![], vec![3]].contains(&starts(&e1)), "{run}: {e1:?}");
        }
        assert_eq!(starts(&e2), vec![4], "{run}: {e2:?}");
        assert_eq!(starts(&e3), vec![3], "{run}: {e3:?}");
        for ev in [&e1, &e2, &e3] {
            let f = frames(ev);
            // Every delivered group is whole, from its first frame.
            for g in groups(ev) {
                let of_g: Vec<&Bytes> = f.iter().filter(|x| x.0 == g).map(|x| &x.2).collect();
                assert_eq!(
                    of_g,
                    vec![&payload(g, 0), &payload(g, 1)],
                    "{run}: group {g}"
                );
            }
            assert!(ev.contains(&SubscriptionEvent::GroupEnd {
                seq: 4,
                state: GroupState::Finished
            }));
        }

        let now = sim.now();
        for (n, id) in [(2, s1), (3, s2), (1, s3)] {
            sim.nodes[n].unsubscribe(now, id);
        }
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

/// A subscription made before the track's first group is told that it starts at the
/// source's first group: a reader that prints in order can wait
/// for it instead of guessing how long an overtaken group may take (`moq sub`). Through a
/// relay (lite-05 SUBSCRIBE_OK and lite-03/04 SUBSCRIBE_OK's start), and on the relay itself.
#[test]
fn subscribing_before_the_first_group_is_told_the_sources_first() {
    for run in runs() {
        let (mut sim, b, t, links) = topology(run, 1);
        let p = 0;
        let now = sim.now();
        let remote =
            sim.nodes[2].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        let on_relay =
            sim.nodes[1].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        for g in 0..3 {
            write_group(&mut sim, p, t, 2, g * 10);
        }
        for (node, id) in [(2, remote), (1, on_relay)] {
            let ev = sub_events(&sim.events(node), id);
            // (lite-05's OK travels with the first group, on another stream: it may come
            // after that group; lite-03/04's went out on the subscription.)
            assert_eq!(starts(&ev), vec![0], "{run}: node {node}: {ev:?}");
            assert_eq!(groups(&ev), vec![0, 1, 2], "{run}: node {node}");
        }
        let now = sim.now();
        sim.nodes[2].unsubscribe(now, remote);
        sim.nodes[1].unsubscribe(now, on_relay);
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

/// Publish groups `seqs` of one frame each concurrently (their streams interleave).
fn write_groups_at_once(sim: &mut Sim, node: usize, track: moq_proto::origin::TrackId, n: u64) {
    let now = sim.now();
    let mut seqs = Vec::new();
    for _ in 0..n {
        let seq = sim.nodes[node].append_group(now, track).unwrap();
        sim.nodes[node]
            .write_frame(now, track, seq, seq * 10, payload(seq, 0))
            .unwrap();
        seqs.push(seq);
    }
    for seq in seqs {
        sim.nodes[node].finish_group(now, track, seq);
    }
    sim.run();
}

#[test]
fn explicit_ranges_and_bounded_subscriptions() {
    for run in runs() {
        let (mut sim, b, t, links) = topology(run, 2);
        let (p, r) = (0, 1);
        // Keep the relay's cache warm from group 0.
        let now = sim.now();
        let keeper =
            sim.nodes[r].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        for g in 0..4 {
            write_group(&mut sim, p, t, 2, g * 10);
        }
        // Past ranges served from a cache: on the publisher and on the relay.
        let range = SubscribeParams {
            start: Some(1),
            end: Some(2),
            ..Default::default()
        };
        let now = sim.now();
        let on_pub = sim.nodes[p].subscribe(now, &path("demo"), "video", range);
        let on_relay = sim.nodes[r].subscribe(now, &path("demo"), "video", range);
        sim.run();
        for (n, id) in [(p, on_pub), (r, on_relay)] {
            let ev = sub_events(&sim.events(n), id);
            assert_eq!(groups(&ev), vec![1, 2], "{run}: node {n}: {ev:?}");
            assert_eq!(frames(&ev).len(), 4, "{run}");
            assert!(
                matches!(ev.last(), Some(SubscriptionEvent::Closed { error: None })),
                "{run}: a bounded subscription ends cleanly, last: {ev:?}"
            );
        }

        // Future ranges through the relay.
        let now = sim.now();
        let future = sim.nodes[2].subscribe(
            now,
            &path("demo"),
            "video",
            SubscribeParams {
                start: Some(5),
                end: Some(6),
                ..Default::default()
            },
        );
        let open = sim.nodes[3].subscribe(
            now,
            &path("demo"),
            "video",
            SubscribeParams {
                start: Some(9),
                ..Default::default()
            },
        );
        sim.run();
        write_group(&mut sim, p, t, 1, 40);
        // The end group (6) finishes while group 5 is still open: the bounded subscription
        // waits for 5.
        let now = sim.now();
        let g5 = sim.nodes[p].append_group(now, t).unwrap();
        sim.nodes[p]
            .write_frame(now, t, g5, 50, payload(g5, 0))
            .unwrap();
        sim.run();
        write_group(&mut sim, p, t, 1, 60);
        let ev = sub_events(&sim.events(2), future);
        assert_eq!(closed(&ev), None, "{run}: group 5 is still open: {ev:?}");
        let now = sim.now();
        sim.nodes[p].finish_group(now, t, g5);
        sim.run();
        let ev = [ev, sub_events(&sim.events(2), future)].concat();
        let mut got = groups(&ev);
        got.sort_unstable();
        assert_eq!(got, vec![5, 6], "{run}: {ev:?}");
        assert_eq!(frames(&ev).len(), 2, "{run}: {ev:?}");
        assert!(
            matches!(ev.last(), Some(SubscriptionEvent::Closed { error: None })),
            "{run}: {ev:?}"
        );
        for _ in 7..9 {
            write_group(&mut sim, p, t, 1, 0);
        }
        // An explicit start with the groups' streams interleaving: none is skipped.
        write_groups_at_once(&mut sim, p, t, 4);
        let ev = sub_events(&sim.events(3), open);
        let mut got = groups(&ev);
        got.sort_unstable();
        assert_eq!(got, vec![9, 10, 11, 12], "{run}: {ev:?}");
        assert_eq!(closed(&ev), None, "{run}");

        let now = sim.now();
        sim.nodes[r].unsubscribe(now, keeper);
        sim.nodes[3].unsubscribe(now, open);
        sim.run();
        assert_eq!(serves(&sim, p, links[0]), 0, "{run}: upstream released");
        let now = sim.now();
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

/// A bounded subscription accounts for every group of its range one by one, so an earlier
/// group whose stream arrives after the end group's is still delivered.
#[test]
fn bounded_range_with_interleaved_groups() {
    for run in runs() {
        let (mut sim, b, t, links) = topology(run, 1);
        let now = sim.now();
        let bounded = sim.nodes[2].subscribe(
            now,
            &path("demo"),
            "video",
            SubscribeParams {
                start: Some(1),
                end: Some(2),
                ..Default::default()
            },
        );
        sim.run();
        write_groups_at_once(&mut sim, 0, t, 4);
        let ev = sub_events(&sim.events(2), bounded);
        let mut got = groups(&ev);
        got.sort_unstable();
        assert_eq!(got, vec![1, 2], "{run}: {ev:?}");
        let now = sim.now();
        sim.nodes[0].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

/// A past start through a relay: the first subscriber's start goes upstream, so the source
/// serves the older groups from its cache (or reports them dropped).
#[test]
fn past_range_through_a_relay() {
    for run in runs() {
        let (mut sim, b, t, links) = topology(run, 1);
        for g in 0..4 {
            write_group(&mut sim, 0, t, 2, g * 10);
        }
        let now = sim.now();
        let bounded = sim.nodes[2].subscribe(
            now,
            &path("demo"),
            "video",
            SubscribeParams {
                start: Some(1),
                end: Some(2),
                ..Default::default()
            },
        );
        sim.run();
        let ev = sub_events(&sim.events(2), bounded);
        let dropped = ev
            .iter()
            .any(|e| matches!(e, SubscriptionEvent::Dropped { .. }));
        let mut got = groups(&ev);
        got.sort_unstable();
        assert!(
            got == vec![1, 2] || dropped,
            "{run}: groups 1..=2 neither delivered nor dropped: {ev:?}"
        );
        assert!(closed(&ev).is_some(), "{run}: {ev:?}");
        let now = sim.now();
        sim.nodes[0].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

#[test]
fn unsubscribe_mid_group_stops_delivery() {
    for run in runs() {
        let (mut sim, b, t, links) = topology(run, 2);
        let p = 0;
        let now = sim.now();
        let s1 = sim.nodes[2].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        let s2 = sim.nodes[3].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        let g = sim.nodes[p].append_group(now, t).unwrap();
        sim.nodes[p]
            .write_frame(now, t, g, 0, payload(g, 0))
            .unwrap();
        sim.run();
        let before = frames(&sub_events(&sim.events(2), s1)).len();
        assert_eq!(before, 1, "{run}");
        let now = sim.now();
        sim.nodes[2].unsubscribe(now, s1);
        sim.run();
        let now = sim.now();
        for f in 1..4 {
            sim.nodes[p]
                .write_frame(now, t, g, f, payload(g, f))
                .unwrap();
        }
        sim.nodes[p].finish_group(now, t, g);
        sim.run();
        write_group(&mut sim, p, t, 2, 10);
        let after = sim.events(2);
        assert!(
            sub_events(&after, s1).is_empty(),
            "{run}: delivery continued after unsubscribe: {after:?}"
        );
        // The other subscriber is unaffected.
        let e2 = sub_events(&sim.events(3), s2);
        assert_eq!(frames(&e2).len(), 6, "{run}: {e2:?}");
        // The relay's session toward the first client holds nothing for it.
        assert!(
            session_summary(&sim, 1, links[1]).contains("serves=0 group_sends=0"),
            "{run}: {}",
            session_summary(&sim, 1, links[1])
        );

        // Unsubscribing the last one mid-group cancels the upstream group too.
        let now = sim.now();
        let g = sim.nodes[p].append_group(now, t).unwrap();
        sim.nodes[p]
            .write_frame(now, t, g, 0, payload(g, 0))
            .unwrap();
        sim.run();
        let now = sim.now();
        sim.nodes[3].unsubscribe(now, s2);
        sim.run();
        assert_eq!(serves(&sim, p, links[0]), 0, "{run}");
        assert!(
            session_summary(&sim, p, links[0]).contains("group_sends=0"),
            "{run}: {}",
            session_summary(&sim, p, links[0])
        );
        let now = sim.now();
        sim.nodes[p].finish_group(now, t, g);
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

#[test]
fn publisher_ends_the_track() {
    for run in runs() {
        let (mut sim, b, t, links) = topology(run, 2);
        let (p, r) = (0, 1);
        let now = sim.now();
        let s1 = sim.nodes[2].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        let local = sim.nodes[r].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        write_group(&mut sim, p, t, 2, 0);
        let now = sim.now();
        sim.nodes[p].end_track(now, t);
        sim.run();
        for (n, id) in [(2, s1), (r, local)] {
            let ev = sub_events(&sim.events(n), id);
            assert_eq!(frames(&ev).len(), 2, "{run}: {ev:?}");
            assert_eq!(closed(&ev), Some(None), "{run}: node {n}: {ev:?}");
            assert!(matches!(ev.last(), Some(SubscriptionEvent::Closed { .. })));
        }
        assert_eq!(serves(&sim, p, links[0]), 0, "{run}");
        assert_eq!(sim.nodes[r].origin().len().1, 0, "{run}");
        // A new subscriber to the ended track is refused.
        let now = sim.now();
        let late = sim.nodes[3].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        let ev = sub_events(&sim.events(3), late);
        assert!(
            matches!(closed(&ev), Some(Some(_))),
            "{run}: an ended track is not served: {ev:?}"
        );
        let now = sim.now();
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

#[test]
fn publisher_loss_closes_subscriptions_with_an_error() {
    for run in runs() {
        let (mut sim, _b, t, links) = topology(run, 2);
        let (p, r) = (0, 1);
        let now = sim.now();
        let s1 = sim.nodes[2].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        let s2 = sim.nodes[3].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        let local = sim.nodes[r].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        write_group(&mut sim, p, t, 2, 0);
        let now = sim.now();
        let g = sim.nodes[p].append_group(now, t).unwrap();
        sim.nodes[p]
            .write_frame(now, t, g, 10, payload(g, 0))
            .unwrap();
        sim.run();
        sim.disconnect(links[0]);
        for (n, id) in [(2, s1), (3, s2), (r, local)] {
            let ev = sub_events(&sim.events(n), id);
            assert_eq!(frames(&ev).len(), 3, "{run}: node {n}: {ev:?}");
            assert!(
                matches!(closed(&ev), Some(Some(_))),
                "{run}: node {n}: {ev:?}"
            );
            // The group in progress is reported aborted before the close.
            assert!(
                ev.iter().any(|e| matches!(
                    e,
                    SubscriptionEvent::GroupEnd { seq, state: GroupState::Aborted(_) } if *seq == g
                )),
                "{run}: node {n}: {ev:?}"
            );
        }
        // Everything is released on the relay and the clients, with no unpublish needed
        // (only the announce streams of the live sessions remain).
        for n in [r, 2, 3] {
            let summary = sim.nodes[n].state_summary();
            assert!(
                summary.starts_with("broadcasts=0 tracks=0 consumers=0 links=0")
                    && summary.contains("locals=0")
                    && !summary.contains("subs=1")
                    && !summary.contains("serves=1")
                    && summary.contains("group_sends=0"),
                "{run}: node {n}: {summary}"
            );
        }
        let now = sim.now();
        sim.nodes[p].unpublish(now, _b);
        teardown(&mut sim, &links[1..], run);
    }
}

/// Demand follows viewers across a cluster: publisher (0) → relay A (1) ← relay B (2) ←
/// viewers (3, 4). When the last viewer's session ends (not an unsubscribe: the session is
/// gone), both relays cancel their upstream subscriptions at once, so the publisher learns
/// nobody watches; a returning viewer brings the subscription back.
#[test]
fn demand_follows_viewers_across_a_cluster() {
    for run in runs().filter(|r| r.seed < 8) {
        let mut sim = sim(run.seed, 5);
        let now = sim.now();
        let b = sim.nodes[0].publish(now, &path("live")).unwrap();
        let t = sim.nodes[0]
            .create_track(b, "video", TrackInfo::default())
            .unwrap();
        let l_pub = sim.connect(0, 1, run.version, "/");
        let l_ab = sim.connect(2, 1, run.version, "/");
        let l_v1 = sim.connect(3, 2, run.version, "/");
        sim.run();
        let params = SubscribeParams::default();
        let v1 = sim.nodes[3].subscribe(now, &path("live"), "video", params);
        sim.run();
        assert_eq!(serves(&sim, 0, l_pub), 1, "{run}: the publisher is asked");
        assert_eq!(serves(&sim, 1, l_ab), 1, "{run}: relay A serves relay B");
        write_group(&mut sim, 0, t, 2, 0);
        assert_eq!(frames(&sub_events(&sim.events(3), v1)).len(), 2, "{run}");

        // The viewer's connection drops: no unsubscribe, no idle timeout to wait for.
        sim.disconnect(l_v1);
        sim.run();
        assert_eq!(serves(&sim, 1, l_ab), 0, "{run}: B cancelled toward A");
        assert_eq!(
            serves(&sim, 0, l_pub),
            0,
            "{run}: A cancelled toward the publisher"
        );
        assert_eq!(sim.nodes[0].subscriber_count(t), 0, "{run}");

        // A new viewer: the subscription comes back through both relays.
        let l_v2 = sim.connect(4, 2, run.version, "/");
        sim.run();
        let now = sim.now();
        let v2 = sim.nodes[4].subscribe(now, &path("live"), "video", params);
        sim.run();
        assert_eq!(serves(&sim, 0, l_pub), 1, "{run}: resubscribed");
        let seq = write_group(&mut sim, 0, t, 3, 10);
        let got = frames(&sub_events(&sim.events(4), v2));
        // The new group in full (a late joiner may also get the cached latest one first).
        assert_eq!(
            got.iter().filter(|f| f.0 == seq).count(),
            3,
            "{run}: {got:?}"
        );

        let now = sim.now();
        sim.nodes[4].unsubscribe(now, v2);
        sim.nodes[0].unpublish(now, b);
        sim.run();
        teardown(&mut sim, &[l_pub, l_ab, l_v2], run);
        let _ = v1;
    }
}
