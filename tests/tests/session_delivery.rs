//! Raw-peer session tests: delivery ranking (stream priorities) and max-latency expiry of the
//! group streams we publish (docs/wire.md §5.12, §5.13, §3.7).

mod session_support;

use bytes::Bytes;
use moq_proto::codes::StreamCode;
use moq_proto::session::{Command, Config, Event, GroupSendId, ServeId, Side, StreamId};
use moq_proto::wire::{
    Subscribe, SubscribeDrop, SubscribeResponse, SubscribeStart, SubscribeUpdate, TrackInfo,
    Version,
};
use session_support::*;

struct Sub {
    id: ServeId,
    stream: StreamId,
}

fn serve(
    raw: &mut Raw,
    wire_id: u64,
    priority: u8,
    ordered: bool,
    latency_ms: u64,
    pub_priority: u8,
) -> Sub {
    let v = raw.v;
    let m = Subscribe {
        id: wire_id,
        broadcast: p("b"),
        track: "t".into(),
        priority,
        ordered,
        max_latency: ms(latency_ms),
        start: None,
        end: None,
    };
    let stream = raw.peer_bi_with(&typed(0x02, &m, v));
    let events = raw.take_events();
    let [Event::Subscribe { id, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    let info = TrackInfo {
        priority: pub_priority,
        ..TrackInfo::default()
    };
    raw.s.accept_serve(*id, info, None).expect("accept");
    raw.pump();
    if !v.is_lite05() {
        raw.next_response(stream);
    }
    Sub { id: *id, stream }
}

/// Open a group arriving now; returns its handle and (when granted) its stream.
fn group(raw: &mut Raw, sub: &Sub, seq: u64) -> (GroupSendId, Option<StreamId>) {
    let now = raw.now;
    let g = raw
        .s
        .open_group(now, sub.id, seq, now, None)
        .expect("group wanted");
    raw.pump();
    let stream = raw.opens.last().and_then(|o| o.stream);
    (g, stream)
}

fn prio(raw: &Raw, stream: StreamId) -> i32 {
    raw.priority[&stream]
}

/// Assert `streams` are in strictly decreasing priority order.
fn assert_order(raw: &Raw, streams: &[StreamId], what: &str) {
    let prios: Vec<i32> = streams.iter().map(|s| prio(raw, *s)).collect();
    for pair in prios.windows(2) {
        assert!(pair[0] > pair[1], "{what}: {prios:?}");
    }
}

// -------------------------------------------------------------------------------------------
// Ranking

#[test]
fn newest_group_first_within_a_subscription() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 10_000, 127);
        let (_, s0) = group(&mut raw, &a, 0);
        let (_, s1) = group(&mut raw, &a, 1);
        let (_, s2) = group(&mut raw, &a, 2);
        let (s0, s1, s2) = (s0.unwrap(), s1.unwrap(), s2.unwrap());
        assert_order(&raw, &[s2, s1, s0], "newest first");
        // Each group is opened at its final rank: a newer group never re-ranks the live ones.
        let opens: Vec<i32> = raw.opens.iter().rev().take(3).map(|o| o.priority).collect();
        assert!(opens[0] > opens[1] && opens[1] > opens[2], "{opens:?}");
        assert!(
            !raw.cmds
                .iter()
                .any(|c| matches!(c, Command::SetPriority { stream, .. } if *stream == s0))
        );
        // A late older group ranks below the newer ones.
        let (_, late) = group(&mut raw, &a, 1_000);
        let (_, old) = group(&mut raw, &a, 3);
        assert_order(
            &raw,
            &[late.unwrap(), old.unwrap(), s2, s1, s0],
            "by sequence",
        );
    }
}

#[test]
fn ordered_subscription_ranks_oldest_first() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, true, 10_000, 127);
        let (_, s0) = group(&mut raw, &a, 0);
        let (_, s1) = group(&mut raw, &a, 1);
        let (_, s2) = group(&mut raw, &a, 2);
        assert_order(
            &raw,
            &[s0.unwrap(), s1.unwrap(), s2.unwrap()],
            "oldest first",
        );
    }
}

#[test]
fn subscriber_priority_dominates() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        // The older subscription with a top publisher priority but a lower subscriber priority.
        let a = serve(&mut raw, 0, 10, false, 10_000, 255);
        let b = serve(&mut raw, 1, 11, false, 10_000, 0);
        let (_, a0) = group(&mut raw, &a, 0);
        let (_, a1) = group(&mut raw, &a, 1);
        let (_, b0) = group(&mut raw, &b, 0);
        let (_, b1) = group(&mut raw, &b, 1);
        assert_order(
            &raw,
            &[b1.unwrap(), b0.unwrap(), a1.unwrap(), a0.unwrap()],
            "subscriber priority",
        );
    }
}

#[test]
fn publisher_priority_breaks_subscriber_ties() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 10, false, 10_000, 10);
        let b = serve(&mut raw, 1, 10, false, 10_000, 20);
        let (_, a0) = group(&mut raw, &a, 0);
        let (_, b0) = group(&mut raw, &b, 0);
        let (_, a1) = group(&mut raw, &a, 1);
        let (_, b1) = group(&mut raw, &b, 1);
        assert_order(
            &raw,
            &[b1.unwrap(), b0.unwrap(), a1.unwrap(), a0.unwrap()],
            "publisher priority",
        );
    }
}

#[test]
fn older_subscription_first_then_newest_group() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 3, 10, false, 10_000, 127);
        let b = serve(&mut raw, 8, 10, false, 10_000, 127);
        let (_, b5) = group(&mut raw, &b, 5);
        let (_, a0) = group(&mut raw, &a, 0);
        let (_, b6) = group(&mut raw, &b, 6);
        let (_, a1) = group(&mut raw, &a, 1);
        let (a0, a1, b5, b6) = (a0.unwrap(), a1.unwrap(), b5.unwrap(), b6.unwrap());
        assert_order(&raw, &[a1, a0, b6, b5], "age then sequence");

        // The subscriber raises the newer subscription above the older: SetPriority for its
        // in-flight groups.
        raw.clear();
        let update = SubscribeUpdate {
            priority: 11,
            ordered: false,
            max_latency: ms(10_000),
            start: None,
            end: None,
        };
        let bs = b.stream;
        raw.send(bs, &enc(&update, v));
        assert_order(&raw, &[b6, b5, a1, a0], "after update");
        let moved: Vec<StreamId> = raw
            .cmds
            .iter()
            .filter_map(|c| match c {
                Command::SetPriority { stream, .. } => Some(*stream),
                _ => None,
            })
            .collect();
        assert!(moved.contains(&b5) && moved.contains(&b6), "{:?}", raw.cmds);
        assert!(!moved.contains(&a0) && !moved.contains(&a1));
    }
}

#[test]
fn ranks_move_up_when_an_older_subscription_goes() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 10, false, 10_000, 127);
        let b = serve(&mut raw, 1, 10, false, 10_000, 127);
        let (_, a0) = group(&mut raw, &a, 0);
        let (_, b0) = group(&mut raw, &b, 0);
        let (a0, b0) = (a0.unwrap(), b0.unwrap());
        let a_prio = prio(&raw, a0);
        let b_before = prio(&raw, b0);
        assert!(a_prio > b_before);
        raw.clear();
        raw.fin(a.stream);
        assert!(raw.resets.contains_key(&a0));
        assert_eq!(prio(&raw, b0), a_prio, "b takes a's rank");
        assert!(raw.cmds.contains(&Command::SetPriority {
            stream: b0,
            priority: a_prio
        }));
    }
}

#[test]
fn pending_group_gets_its_current_priority_on_grant() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 10, false, 10_000, 127);
        raw.auto_grant = false;
        group(&mut raw, &a, 0);
        let t0 = raw.pending_opens()[0];
        group(&mut raw, &a, 1);
        let t1 = raw.pending_opens()[1];
        assert!(
            t1.priority > t0.priority,
            "the newer group asks for a higher rank"
        );
        // While both wait for credit, the subscriber raises its priority: the opens were asked
        // for at the old rank, so each granted stream gets its current one.
        let update = SubscribeUpdate {
            priority: 200,
            ordered: false,
            max_latency: ms(10_000),
            start: None,
            end: None,
        };
        let stream = a.stream;
        raw.send(stream, &enc(&update, v));
        let s1 = raw.grant(t1.token);
        let s0 = raw.grant(t0.token);
        assert_order(&raw, &[s1, s0], "after grants");
        for s in [s0, s1] {
            assert!(raw.cmds_on(s).iter().any(
                |c| matches!(c, Command::SetPriority { priority, .. } if *priority > t1.priority)
            ));
        }
    }
}

// -------------------------------------------------------------------------------------------
// Expiry

#[test]
fn non_latest_group_expires_after_max_latency() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 500, 127);
        let (_, s0) = group(&mut raw, &a, 0);
        let s0 = s0.unwrap();
        // The only group never expires, however old.
        assert_eq!(raw.s.poll_timeout(), None, "{v}");
        raw.advance(ms(100));
        let (_, s1) = group(&mut raw, &a, 1);
        let s1 = s1.unwrap();
        assert_eq!(
            raw.timeout_offset(),
            Some(ms(500)),
            "{v}: arrival + latency"
        );
        raw.at(ms(499));
        assert!(!raw.resets.contains_key(&s0));
        raw.clear();
        assert_eq!(raw.fire_timeout(), Some(ms(500)));
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Reset {
                stream: s0,
                code: StreamCode::OLD
            }],
            "{v}"
        );
        // The latest never expires.
        raw.at(ms(60_000));
        assert!(!raw.resets.contains_key(&s1));
        assert_eq!(raw.s.poll_timeout(), None);
        raw.assert_open();
    }
}

#[test]
fn expiry_counts_from_the_groups_own_arrival() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 500, 127);
        // Group 0 arrived 400 ms before we opened it (e.g. from a relay cache).
        raw.advance(ms(1000));
        let now = raw.now;
        raw.s
            .open_group(now, a.id, 0, now - ms(400), None)
            .expect("wanted");
        raw.pump();
        let s0 = raw.last_opened();
        group(&mut raw, &a, 1);
        assert_eq!(raw.timeout_offset(), Some(ms(1100)));
        raw.fire_timeout();
        assert_eq!(raw.resets.get(&s0), Some(&StreamCode::OLD));
    }
}

#[test]
fn a_max_latency_beyond_the_clock_never_expires_and_never_panics() {
    // The largest varint in milliseconds: Instant + max latency would overflow.
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, (1 << 62) - 1, 127);
        let (_, s0) = group(&mut raw, &a, 0);
        raw.advance(ms(100));
        group(&mut raw, &a, 1);
        // No deadline, or one far beyond any real wait (platforms whose clock cannot hold
        // it give none).
        let day_later = raw.now + ms(86_400_000);
        assert!(raw.s.poll_timeout().is_none_or(|t| t > day_later), "{v}");
        raw.advance(ms(3_600_000));
        assert!(!raw.resets.contains_key(&s0.unwrap()), "{v}");
        raw.assert_open();
    }
}

#[test]
fn a_backlog_of_thousands_of_groups_expires_exactly_by_age() {
    // A subscriber far behind: every group older than the max latency, except the newest,
    // is reset, and none younger, whatever the order their arrivals were reported in.
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 500, 127);
        let base = raw.now;
        let mut streams = Vec::new();
        for seq in 0..3000u64 {
            raw.now = base + ms(seq);
            // Every tenth group was cached upstream: it arrived 300 ms before it is opened.
            let arrival = if seq % 10 == 0 {
                raw.now - ms(300)
            } else {
                raw.now
            };
            let now = raw.now;
            raw.s
                .open_group(now, a.id, seq, arrival, None)
                .expect("wanted");
            raw.pump();
            streams.push((seq, arrival, raw.last_opened()));
        }
        raw.now = base + ms(3000);
        raw.fire_timeout();
        let now = raw.now;
        for (seq, arrival, stream) in streams {
            let expired = seq < 2999 && now.duration_since(arrival) >= ms(500);
            assert_eq!(
                raw.resets.get(&stream) == Some(&StreamCode::OLD),
                expired,
                "{v}: group {seq}"
            );
        }
        raw.assert_open();
    }
}

#[test]
fn a_transport_backlog_sheds_older_groups_not_the_newest() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 60_000, 127);
        let (g0, s0) = group(&mut raw, &a, 0);
        let (g1, s1) = group(&mut raw, &a, 1);
        let now = raw.now;
        let frame = Bytes::from_static(b"abc");
        // Under the limit, every group is written.
        raw.s.handle_send_backlog(1024);
        assert!(raw.s.write_frame(now, g0, 0, 3, frame.clone()), "{v}");
        // Past it, the older group is given up; the newest goes on.
        raw.s.handle_send_backlog(64 * 1024 * 1024);
        assert!(!raw.s.write_frame(now, g0, 0, 3, frame.clone()), "{v}");
        assert!(raw.s.write_frame(now, g1, 0, 3, frame.clone()), "{v}");
        raw.pump();
        assert_eq!(
            raw.resets.get(&s0.unwrap()),
            Some(&StreamCode::TOO_FAR_BEHIND),
            "{v}"
        );
        assert!(!raw.resets.contains_key(&s1.unwrap()), "{v}");
        raw.assert_open();
    }
}

#[test]
fn zero_latency_keeps_only_the_latest_group() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 0, 127);
        let (_, s0) = group(&mut raw, &a, 0);
        let s0 = s0.unwrap();
        assert!(!raw.resets.contains_key(&s0));
        let (_, s1) = group(&mut raw, &a, 1);
        // A short grace first: the older group's FIN may still be on its way (it travels on
        // its own stream), and a reset of a group being finished kills moq-clock.
        assert!(!raw.resets.contains_key(&s0), "{v}");
        assert_eq!(raw.timeout_offset(), Some(ms(500)), "{v}");
        raw.advance(ms(500));
        assert_eq!(raw.resets.get(&s0), Some(&StreamCode::OLD), "{v}");
        assert!(!raw.resets.contains_key(&s1.unwrap()));
        // An older group opened after a newer one is dropped at once.
        let now = raw.now;
        assert!(raw.s.open_group(now, a.id, 0, now, None).is_none());
        raw.pump();
        raw.assert_open();
    }
}

#[test]
fn zero_latency_leaves_a_finished_group_to_complete() {
    // moq-clock 0.10.21 subscribes with max latency 0 and fails on any group reset; the
    // reference never resets a group after its FIN. So the previous (finished, unacknowledged)
    // group survives the next one's start, without a busy timer.
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 0, 127);
        let (g0, s0) = group(&mut raw, &a, 0);
        raw.s.finish_group(g0);
        raw.pump();
        let (_, s1) = group(&mut raw, &a, 1);
        raw.advance(ms(1000));
        assert!(!raw.resets.contains_key(&s0.unwrap()), "{v}");
        assert!(!raw.resets.contains_key(&s1.unwrap()), "{v}");
        assert_eq!(raw.s.poll_timeout(), None, "{v}");
        raw.assert_open();
    }
}

#[test]
fn acknowledged_groups_are_not_expired_but_unacknowledged_ones_are() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 100, 127);
        // Group 0: finished and acknowledged, so delivered; nothing left to expire.
        let (g0, s0) = group(&mut raw, &a, 0);
        raw.s.finish_group(g0);
        raw.pump();
        raw.ack(s0.unwrap());
        // Group 1: finished but not acknowledged; its bytes may still sit in the
        // transport's send buffer, so once stale it is reset like an open group.
        let (g1, s1) = group(&mut raw, &a, 1);
        raw.s.finish_group(g1);
        raw.pump();
        group(&mut raw, &a, 2);
        raw.advance(ms(1000));
        assert!(!raw.resets.contains_key(&s0.unwrap()), "{v}");
        assert_eq!(raw.resets.get(&s1.unwrap()), Some(&StreamCode::OLD), "{v}");
    }
}

#[test]
fn lowering_max_latency_by_update_expires_at_once() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 10_000, 127);
        let (_, s0) = group(&mut raw, &a, 0);
        raw.advance(ms(300));
        group(&mut raw, &a, 1);
        let update = SubscribeUpdate {
            priority: 1,
            ordered: false,
            max_latency: ms(200),
            start: None,
            end: None,
        };
        raw.send(a.stream, &enc(&update, v));
        assert_eq!(raw.resets.get(&s0.unwrap()), Some(&StreamCode::OLD));
    }
}

#[test]
fn lite05_timestamp_age_expires_groups() {
    for (timescale, unit) in [(1000u64, 1u64), (90_000, 90)] {
        let v = Version::Lite05;
        let mut raw = Raw::ready(v, Side::Server);
        let m = Subscribe {
            id: 0,
            broadcast: p("b"),
            track: "t".into(),
            priority: 1,
            ordered: false,
            max_latency: ms(1000),
            start: None,
            end: None,
        };
        let stream = raw.peer_bi_with(&typed(0x02, &m, v));
        let Some(Event::Subscribe { id, .. }) = raw.take_events().pop() else {
            panic!()
        };
        let info = TrackInfo {
            timescale,
            ..TrackInfo::default()
        };
        raw.s.accept_serve(id, info, None).expect("accept");
        let a = Sub { id, stream };
        let (g0, s0) = group(&mut raw, &a, 0);
        let (g1, s1) = group(&mut raw, &a, 1);
        let (g2, _) = group(&mut raw, &a, 2);
        let now = raw.now;
        raw.s.write_frame(now, g0, 0, 0, Bytes::new());
        raw.s.write_frame(now, g1, 999 * unit, 0, Bytes::new());
        raw.pump();
        assert!(raw.resets.is_empty(), "999 ms behind: kept");
        // Group 2 starts 1000 ms of media after group 0: group 0 is stale, group 1 is not.
        raw.s.write_frame(now, g2, 1000 * unit, 0, Bytes::new());
        raw.pump();
        assert_eq!(
            raw.resets.get(&s0.unwrap()),
            Some(&StreamCode::OLD),
            "timescale {timescale}"
        );
        assert!(!raw.resets.contains_key(&s1.unwrap()));
        assert!(!raw.s.write_frame(now, g0, 1, 0, Bytes::new()));
        // No wall-clock time passed at all.
        assert_eq!(raw.now, raw.t0);
    }
    // Before lite-05 timestamps do not exist: nothing expires without wall-clock time.
    for v in [Version::Lite03, Version::Lite04] {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 1000, 127);
        let (g0, s0) = group(&mut raw, &a, 0);
        let (g1, _) = group(&mut raw, &a, 1);
        let now = raw.now;
        raw.s.write_frame(now, g0, 0, 0, Bytes::new());
        raw.s.write_frame(now, g1, 5000, 0, Bytes::new());
        raw.pump();
        assert!(!raw.resets.contains_key(&s0.unwrap()), "{v}");
    }
}

#[test]
fn group_waiting_for_credit_is_cancelled_and_dropped() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 500, 127);
        raw.auto_grant = false;
        let (g0, _) = group(&mut raw, &a, 0);
        let now = raw.now;
        raw.s.write_frame(now, g0, 0, 3, Bytes::from_static(b"abc"));
        let pending0 = raw.pending_opens()[0].token;
        raw.advance(ms(100));
        group(&mut raw, &a, 1);
        raw.take_unread(a.stream);
        raw.clear();
        raw.fire_timeout();
        assert_eq!(raw.now - raw.t0, ms(500));
        assert_eq!(
            raw.take_cmds(),
            vec![
                Command::CancelOpen { token: pending0 },
                Command::Write {
                    stream: a.stream,
                    data: Bytes::from(resp(
                        SubscribeResponse::Drop(SubscribeDrop {
                            start: 0,
                            end: 0,
                            error: StreamCode::OLD.0
                        }),
                        v
                    ))
                },
            ],
            "{v}"
        );
        // The newer group still gets its stream, and nothing of group 0 ever hits the wire.
        let granted = raw.grant_all();
        assert_eq!(granted.len(), 1);
        let (header, _, _) = raw.group_written(granted[0]);
        assert_eq!(header.sequence, 1);
        assert!(!raw.s.write_frame(raw.now, g0, 1, 0, Bytes::new()));
        raw.assert_open();
    }
}

#[test]
fn lite05_first_group_expired_while_pending_still_sent_ok_first() {
    // On lite-05 the OK goes out with the first group; a DROP for that group may follow.
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Server);
    let a = serve(&mut raw, 0, 1, false, 0, 127);
    raw.auto_grant = false;
    group(&mut raw, &a, 0);
    group(&mut raw, &a, 1);
    raw.advance(ms(500)); // the latest-only grace
    assert_eq!(
        raw.next_response(a.stream),
        SubscribeResponse::Start(SubscribeStart { group: 0 })
    );
    assert_eq!(
        raw.next_response(a.stream),
        SubscribeResponse::Drop(SubscribeDrop {
            start: 0,
            end: 0,
            error: StreamCode::OLD.0
        })
    );
    raw.assert_drained(a.stream);
    assert_eq!(raw.pending_opens().len(), 1);
}

#[test]
fn finished_group_waiting_for_credit_is_dropped_when_stale() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let a = serve(&mut raw, 0, 1, false, 500, 127);
        raw.auto_grant = false;
        let (g0, _) = group(&mut raw, &a, 0);
        let now = raw.now;
        raw.s.write_frame(now, g0, 0, 1, Bytes::from_static(b"a"));
        raw.s.finish_group(g0);
        let token = raw.pending_opens()[0].token;
        raw.advance(ms(100));
        group(&mut raw, &a, 1);
        raw.take_unread(a.stream);
        assert_eq!(raw.timeout_offset(), Some(ms(500)), "{v}");
        raw.fire_timeout();
        assert_eq!(raw.cancelled, vec![token], "{v}");
        assert_eq!(
            raw.next_response(a.stream),
            SubscribeResponse::Drop(SubscribeDrop {
                start: 0,
                end: 0,
                error: StreamCode::OLD.0
            })
        );
    }
}

#[test]
fn groups_waiting_for_credit_give_way_past_the_send_budget() {
    // A peer that grants no stream credit (it never reads): the groups waiting for a stream
    // hold their bytes in the session. Past `max_send_backlog`, each new group drops the
    // older ones still waiting, so what is held stays near the budget, whatever the time.
    const BUDGET: usize = 10_000;
    for v in VERSIONS {
        let mut config = Config::new(v, Side::Server);
        config.max_send_backlog = BUDGET;
        let mut raw = Raw::ready_with(config);
        let a = serve(&mut raw, 0, 1, false, 60_000, 127);
        raw.auto_grant = false;
        let payload = Bytes::from(vec![7u8; 3000]);
        let mut groups = Vec::new();
        for seq in 0..100 {
            let (g, stream) = group(&mut raw, &a, seq);
            assert!(stream.is_none(), "{v}: no credit, no stream");
            let now = raw.now;
            raw.s.write_frame(now, g, 0, 3000, payload.clone());
            raw.s.finish_group(g);
            groups.push(g);
            raw.advance(ms(10));
            let held = raw.s.tables().pending_bytes;
            assert!(
                held <= BUDGET + 3100,
                "{v}: {held} bytes held at group {seq}"
            );
        }
        // The newest group still waits for its stream and goes out once credit comes.
        let granted = raw.grant_all();
        assert!(!granted.is_empty(), "{v}");
        let (header, _, _) = raw.group_written(*granted.last().expect("granted"));
        assert_eq!(header.sequence, 99, "{v}");
        raw.assert_open();
    }
}
