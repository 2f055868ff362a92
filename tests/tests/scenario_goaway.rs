//! GOAWAY from a relay: peers are told (lite-04+), no new requests, existing subscriptions
//! drain, then every session closes with 0x10.

mod scenario_util;

use std::time::Duration;

use moq_proto::codes::SessionCode;
use moq_proto::node::NodeEvent;
use moq_proto::session::SubscribeParams;
use moq_proto::wire::TrackInfo;
use scenario_util::*;

#[test]
fn goaway_drains_then_closes_with_0x10() {
    for run in runs() {
        let mut sim = sim(run.seed, 3);
        let (p, r, s) = (0, 1, 2);
        let now = sim.now();
        let b = sim.nodes[p].publish(now, &path("demo")).unwrap();
        let video = sim.nodes[p]
            .create_track(b, "video", TrackInfo::default())
            .unwrap();
        sim.nodes[p]
            .create_track(b, "audio", TrackInfo::default())
            .unwrap();
        let l_p = sim.connect(p, r, run.version, "/");
        let l_s = sim.connect(s, r, run.version, "/");
        let sub = sim.nodes[s].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        write_group(&mut sim, p, video, 2, 0);
        let _ = sim.events(p);
        let _ = sim.events(s);
        let _ = sim.events(r);

        let now = sim.now();
        sim.nodes[r].goaway(now, "");
        sim.run();
        let r_peer = |sim: &moq_harness::testing::Sim, link: usize| sim.ends(link)[0].peer;
        for (node, link) in [(p, l_p), (s, l_s)] {
            let ev = sim.events(node);
            let goaways: Vec<&NodeEvent> = ev
                .iter()
                .filter(|e| matches!(e, NodeEvent::Goaway { .. }))
                .collect();
            if run.version.has_goaway() {
                assert_eq!(
                    goaways,
                    vec![&NodeEvent::Goaway {
                        peer: r_peer(&sim, link),
                        uri: String::new()
                    }],
                    "{run}: node {node}"
                );
            } else {
                assert!(goaways.is_empty(), "{run}: lite-03 has no GOAWAY");
            }
            assert!(
                !ev.iter()
                    .any(|e| matches!(e, NodeEvent::SessionClosed { .. })),
                "{run}: not closed yet"
            );
        }

        // No new upstream request after GOAWAY (refused by whichever side knows).
        let now = sim.now();
        let late = sim.nodes[s].subscribe(now, &path("demo"), "audio", SubscribeParams::default());
        sim.run();
        let ev = sub_events(&sim.events(s), late);
        assert!(
            matches!(closed(&ev), Some(Some(_))),
            "{run}: a new subscription during the drain is refused: {ev:?}"
        );

        // Existing subscriptions keep flowing during the drain.
        sim.advance(Duration::from_secs(5));
        write_group(&mut sim, p, video, 2, 10);
        let ev = sub_events(&sim.events(s), sub);
        assert_eq!(frames(&ev).len(), 2, "{run}: {ev:?}");
        assert_eq!(closed(&ev), None, "{run}");

        // The drain period (10 s) ends: every session of the relay closes with 0x10.
        sim.advance(Duration::from_secs(6));
        for node in [p, s] {
            let ev = sim.events(node);
            let closes: Vec<(SessionCode, bool)> = ev
                .iter()
                .filter_map(|e| match e {
                    NodeEvent::SessionClosed { code, local, .. } => Some((*code, *local)),
                    _ => None,
                })
                .collect();
            assert_eq!(
                closes,
                vec![(SessionCode::GOAWAY_TIMEOUT, false)],
                "{run}: node {node}: {ev:?}"
            );
            if node == s {
                let ev = sub_events(&ev, sub);
                assert!(matches!(closed(&ev), Some(Some(_))), "{run}: {ev:?}");
            }
        }
        let ev = sim.events(r);
        let local_closes = ev
            .iter()
            .filter(|e| {
                matches!(e, NodeEvent::SessionClosed { code, local: true, .. }
                    if *code == SessionCode::GOAWAY_TIMEOUT)
            })
            .count();
        assert_eq!(local_closes, 2, "{run}: {ev:?}");
        assert_eq!(sim.nodes[r].peers().count(), 0, "{run}");
        assert!(sim.nodes[s].origin().find(&path("demo")).is_none(), "{run}");

        let now = sim.now();
        sim.nodes[p].unpublish(now, b);
        sim.run();
        assert_idle(&sim, run);
    }
}
