//! Announcements across several nodes: prefix filtering, relaying, withdrawal, connection
//! loss, session roots and a relay loop.

mod scenario_util;

use std::collections::BTreeSet;

use moq_proto::session::SubscribeParams;
use moq_proto::wire::TrackInfo;
use scenario_util::*;

fn set(v: &[(String, bool)]) -> BTreeSet<(String, bool)> {
    v.iter().cloned().collect()
}

fn entries(items: &[(&str, bool)]) -> BTreeSet<(String, bool)> {
    items.iter().map(|(p, a)| (p.to_string(), *a)).collect()
}

#[test]
fn announcements_are_relayed_filtered_and_withdrawn() {
    for run in runs() {
        let mut sim = sim(run.seed, 3);
        let (p, r, s) = (0, 1, 2);
        let now = sim.now();
        let ba = sim.nodes[p].publish(now, &path("room/a")).unwrap();
        let bb = sim.nodes[p].publish(now, &path("room/b")).unwrap();
        let bc = sim.nodes[p].publish(now, &path("other/c")).unwrap();
        let wr = sim.nodes[r].announced(&path("room"));
        let l_p = sim.connect(p, r, run.version, "/");
        let l_s = sim.connect(s, r, run.version, "/");
        let ws = sim.nodes[s].announced(&path("room"));
        let wp = sim.nodes[p].announced(&path(""));
        sim.run();

        // The initial set, filtered by prefix.
        let want = entries(&[("room/a", true), ("room/b", true)]);
        let er = sim.events(r);
        let es = sim.events(s);
        assert_eq!(set(&announced(&er, wr)), want, "{run}: relay watch");
        assert_eq!(set(&announced(&es, ws)), want, "{run}: client watch");
        assert!(
            sim.nodes[s].origin().find(&path("other/c")).is_some(),
            "{run}: the client's origin knows every broadcast"
        );
        // P's own broadcasts are its local ones, reported once.
        let ep = sim.events(p);
        assert_eq!(
            set(&announced(&ep, wp)),
            entries(&[("room/a", true), ("room/b", true), ("other/c", true)]),
            "{run}"
        );

        // Live changes.
        let now = sim.now();
        let bd = sim.nodes[p].publish(now, &path("room/d")).unwrap();
        let bs = sim.nodes[s].publish(now, &path("room/s")).unwrap();
        sim.run();
        let er = sim.events(r);
        let es = sim.events(s);
        let ep = sim.events(p);
        assert_eq!(
            set(&announced(&er, wr)),
            entries(&[("room/d", true), ("room/s", true)]),
            "{run}"
        );
        // A local watch also reports the node's own broadcasts.
        assert_eq!(
            set(&announced(&es, ws)),
            entries(&[("room/d", true), ("room/s", true)]),
            "{run}"
        );
        assert_eq!(
            set(&announced(&ep, wp)),
            entries(&[("room/d", true), ("room/s", true)]),
            "{run}"
        );

        // Never announced back to the source session.
        for (node, b) in [(p, "room/a"), (p, "room/d"), (s, "room/s")] {
            let id = sim.nodes[node].origin().find(&path(b)).unwrap();
            let routes = sim.nodes[node].origin().broadcast(id).unwrap().routes();
            assert!(
                routes.is_empty(),
                "{run}: {b} came back to its source: {routes:?}"
            );
        }

        // Unpublish: ended everywhere.
        let now = sim.now();
        sim.nodes[p].unpublish(now, ba);
        sim.run();
        let er = sim.events(r);
        let es = sim.events(s);
        assert_eq!(announced(&er, wr), vec![("room/a".into(), false)], "{run}");
        assert_eq!(announced(&es, ws), vec![("room/a".into(), false)], "{run}");
        let ep = sim.events(p);
        assert_eq!(announced(&ep, wp), vec![("room/a".into(), false)], "{run}");
        for node in [p, r, s] {
            assert!(
                sim.nodes[node].origin().find(&path("room/a")).is_none(),
                "{run}: node {node} still holds room/a"
            );
        }

        // The publisher's connection is lost: its broadcasts end everywhere.
        sim.disconnect(l_p);
        let er = sim.events(r);
        let es = sim.events(s);
        let ep = sim.events(p);
        let gone = entries(&[("room/b", false), ("room/d", false)]);
        assert_eq!(set(&announced(&er, wr)), gone, "{run}");
        assert_eq!(set(&announced(&es, ws)), gone, "{run}");
        assert_eq!(announced(&ep, wp), vec![("room/s".into(), false)], "{run}");
        for b in ["room/b", "room/d", "other/c"] {
            for node in [r, s] {
                assert!(
                    sim.nodes[node].origin().find(&path(b)).is_none(),
                    "{run}: node {node} still holds {b}"
                );
            }
        }
        // The client's own broadcast is still announced by the relay.
        assert!(sim.nodes[r].origin().find(&path("room/s")).is_some());

        let now = sim.now();
        for b in [bb, bc, bd] {
            sim.nodes[p].unpublish(now, b);
        }
        sim.nodes[s].unpublish(now, bs);
        sim.nodes[r].unwatch(wr);
        sim.nodes[s].unwatch(ws);
        sim.nodes[p].unwatch(wp);
        sim.run();
        let er = sim.events(r);
        assert_eq!(announced(&er, wr), vec![], "{run}: no event after unwatch");
        teardown(&mut sim, &[l_s], run);
    }
}

#[test]
fn session_root_prefixes_paths() {
    for run in runs() {
        let mut sim = sim(run.seed, 4);
        let (r, c, d, e) = (0, 1, 2, 3);
        let now = sim.now();
        let lobby = sim.nodes[r].publish(now, &path("anon/lobby")).unwrap();
        let elsewhere = sim.nodes[r].publish(now, &path("elsewhere")).unwrap();
        let t = sim.nodes[r]
            .create_track(lobby, "chat", TrackInfo::default())
            .unwrap();
        let wr = sim.nodes[r].announced(&path(""));
        let l_c = sim.connect(c, r, run.version, "/anon");
        let l_d = sim.connect(d, r, run.version, "/anon");
        let l_e = sim.connect(e, r, run.version, "/other");
        let wd = sim.nodes[d].announced(&path(""));
        let we = sim.nodes[e].announced(&path(""));
        let now = sim.now();
        let room = sim.nodes[c].publish(now, &path("room")).unwrap();
        sim.run();

        assert!(
            sim.nodes[r].origin().find(&path("anon/room")).is_some(),
            "{run}: the server sees the client's broadcast under its root"
        );
        assert!(sim.nodes[r].origin().find(&path("room")).is_none(), "{run}");
        let er = sim.events(r);
        assert!(
            announced(&er, wr).contains(&("anon/room".into(), true)),
            "{run}: {er:?}"
        );
        // A client under the same root sees it relative to the root, with the server's own
        // broadcast under that root; nothing outside it.
        let ed = sim.events(d);
        assert_eq!(
            set(&announced(&ed, wd)),
            entries(&[("room", true), ("lobby", true)]),
            "{run}"
        );
        let ee = sim.events(e);
        assert_eq!(announced(&ee, we), vec![], "{run}: /other sees nothing");
        assert!(sim.nodes[c].origin().find(&path("elsewhere")).is_none());

        // Subscribing through a rooted session.
        let now = sim.now();
        let sub = sim.nodes[c].subscribe(now, &path("lobby"), "chat", SubscribeParams::default());
        sim.run();
        let seq = write_group(&mut sim, r, t, 2, 0);
        let ec = sim.events(c);
        let got = frames(&sub_events(&ec, sub));
        assert_eq!(got.len(), 2, "{run}: {ec:?}");
        assert!(got.iter().all(|(g, _, _)| *g == seq));

        let now = sim.now();
        sim.nodes[c].unsubscribe(now, sub);
        sim.nodes[c].unpublish(now, room);
        sim.nodes[r].unpublish(now, lobby);
        sim.nodes[r].unpublish(now, elsewhere);
        sim.run();
        let ed = sim.events(d);
        assert_eq!(
            set(&announced(&ed, wd)),
            entries(&[("room", false), ("lobby", false)]),
            "{run}"
        );
        sim.nodes[r].unwatch(wr);
        sim.nodes[d].unwatch(wd);
        sim.nodes[e].unwatch(we);
        teardown(&mut sim, &[l_c, l_d, l_e], run);
    }
}

/// Three relays linked in a ring (A-B, B-C, C-A), a publisher on A and a subscriber on C.
#[test]
fn relay_ring_converges_and_withdraws() {
    for run in runs() {
        let mut sim = sim(run.seed, 5);
        let (a, b, c, p, s) = (0, 1, 2, 3, 4);
        let l_ab = sim.connect(a, b, run.version, "/");
        let l_bc = sim.connect(b, c, run.version, "/");
        let l_ca = sim.connect(c, a, run.version, "/");
        let l_pa = sim.connect(p, a, run.version, "/");
        let l_sc = sim.connect(s, c, run.version, "/");
        let now = sim.now();
        let bx = sim.nodes[p].publish(now, &path("x")).unwrap();
        let tx = sim.nodes[p]
            .create_track(bx, "t", TrackInfo::default())
            .unwrap();
        sim.run();

        let hop = |sim: &moq_harness::testing::Sim, n: usize| sim.nodes[n].config().hop_id;
        for relay in [a, b, c, s] {
            let origin = sim.nodes[relay].origin();
            let id = origin
                .find(&path("x"))
                .unwrap_or_else(|| panic!("{run}: node {relay} lacks x"));
            let bcast = origin.broadcast(id).unwrap();
            assert!(bcast.is_active(), "{run}");
            for route in bcast.routes() {
                if run.version.has_hops() {
                    assert!(
                        !route.hops.contains(&hop(&sim, relay)),
                        "{run}: node {relay} kept a route through itself: {:?}",
                        route.hops
                    );
                    assert_eq!(route.hops.first(), Some(&hop(&sim, p)), "{run}");
                }
                assert!(route.hops.len() <= 4, "{run}: {:?}", route.hops);
            }
            let best = bcast.best_route().unwrap().hops.len();
            let want = match relay {
                0 => 1,
                3 => unreachable!(),
                4 => 3,
                _ => 2,
            };
            if relay == s && !run.version.is_lite05() {
                // lite-03/04 cannot re-announce a shorter route: C may have announced x to S
                // through B before it heard it from A directly, and that hop list stays.
                assert!(
                    (3..=4).contains(&best),
                    "{run}: node {relay} best route {best}"
                );
            } else {
                assert_eq!(best, want, "{run}: node {relay} best route");
            }
        }

        // Data flows along the ring to the subscriber.
        let now = sim.now();
        let sub = sim.nodes[s].subscribe(now, &path("x"), "t", SubscribeParams::default());
        sim.run();
        for _ in 0..3 {
            write_group(&mut sim, p, tx, 2, 0);
        }
        let es = sim.events(s);
        let got = sub_events(&es, sub);
        assert_eq!(frames(&got).len(), 6, "{run}: {got:?}");

        // Withdrawal reaches every node; nothing keeps a ghost route around the ring.
        let now = sim.now();
        sim.nodes[p].unpublish(now, bx);
        sim.run();
        let es = sim.events(s);
        assert_eq!(closed(&sub_events(&es, sub)), Some(None), "{run}");
        for n in [a, b, c, s] {
            assert!(
                sim.nodes[n].origin().find(&path("x")).is_none(),
                "{run}: node {n} still holds x: {:?}",
                sim.nodes[n]
                    .origin()
                    .find(&path("x"))
                    .and_then(|id| sim.nodes[n].origin().broadcast(id))
                    .map(|b| b.routes().to_vec())
            );
        }

        // And again, with the publisher's connection lost instead.
        let l_pa2 = {
            sim.disconnect(l_pa);
            let now = sim.now();
            sim.nodes[p].publish(now, &path("y")).unwrap();
            sim.connect(p, b, run.version, "/")
        };
        sim.run();
        for n in [a, b, c, s] {
            assert!(
                sim.nodes[n].origin().find(&path("y")).is_some(),
                "{run}: node {n} lacks y"
            );
        }
        sim.disconnect(l_pa2);
        for n in [a, b, c, s] {
            assert!(
                sim.nodes[n].origin().find(&path("y")).is_none(),
                "{run}: node {n} still holds y after the loss"
            );
        }
        let now = sim.now();
        let by = sim.nodes[p].origin().find(&path("y")).unwrap();
        sim.nodes[p].unpublish(now, by);
        teardown(&mut sim, &[l_ab, l_bc, l_ca, l_sc], run);
    }
}
