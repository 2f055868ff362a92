//! Raw-peer session tests: serving a peer's subscriptions (docs/wire.md §3.2, §3.7, §3.8, §4.6,
//! §4.12-§4.14, §5.5-§5.8).

mod session_support;

use std::time::Duration;

use bytes::Bytes;
use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::session::{Command, Dir, Event, ServeId, Side, StreamId, SubscribeParams};
use moq_proto::wire::{
    GroupHeader, Subscribe, SubscribeDrop, SubscribeEnd, SubscribeOk, SubscribeResponse,
    SubscribeStart, SubscribeUpdate, TrackInfo, Version,
};
use session_support::*;

fn request(id: u64) -> Subscribe {
    Subscribe {
        id,
        broadcast: p("demo/clock"),
        track: "seconds".into(),
        priority: 1,
        ordered: false,
        max_latency: ms(1000),
        start: None,
        end: None,
    }
}

/// The peer subscribes; returns our handle and the stream.
fn peer_subscribe(raw: &mut Raw, m: &Subscribe) -> (ServeId, StreamId) {
    let v = raw.v;
    let stream = raw.peer_bi_with(&typed(0x02, m, v));
    let events = raw.take_events();
    let [Event::Subscribe { id, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    (*id, stream)
}

/// Subscribed and accepted with the default track info; the OK (03/04) consumed.
fn serving(raw: &mut Raw, m: &Subscribe) -> (ServeId, StreamId) {
    let (id, stream) = peer_subscribe(raw, m);
    raw.s
        .accept_serve(id, TrackInfo::default(), None)
        .expect("accept");
    raw.pump();
    if !raw.v.is_lite05() {
        raw.next_response(stream);
    }
    raw.clear();
    (id, stream)
}

fn open_group(raw: &mut Raw, serve: ServeId, seq: u64) -> moq_proto::session::GroupSendId {
    let now = raw.now;
    let g = raw
        .s
        .open_group(now, serve, seq, now, None)
        .expect("group wanted");
    raw.pump();
    g
}

#[test]
fn subscribe_event_carries_the_request() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let m = Subscribe {
            id: 7,
            broadcast: p("demo/clock"),
            track: "seconds".into(),
            priority: 3,
            ordered: true,
            max_latency: ms(250),
            start: Some(0),
            end: Some(10),
        };
        let stream = raw.peer_bi();
        // `//demo//clock/` normalises to `demo/clock`; sent one byte at a time.
        let mut body = vec![0x07, 14];
        body.extend_from_slice(b"//demo//clock/");
        body.push(7);
        body.extend_from_slice(b"seconds");
        body.extend_from_slice(&[3, 1, 0x40, 0xfa, 1, 11]);
        let mut bytes = vec![0x02, body.len() as u8];
        bytes.extend(body);
        let mut canonical = typed(0x02, &m, v);
        assert_ne!(bytes, canonical);
        canonical.clear();
        raw.send_bytewise(stream, &bytes, false);
        let events = raw.take_events();
        let [
            Event::Subscribe {
                id,
                broadcast,
                track,
                params,
            },
        ] = events.as_slice()
        else {
            panic!("{events:?}");
        };
        assert_eq!(*broadcast, p("demo/clock"));
        assert_eq!(track, "seconds");
        assert_eq!(
            *params,
            SubscribeParams {
                priority: 3,
                ordered: true,
                max_latency: ms(250),
                start: Some(0),
                end: Some(10)
            }
        );
        assert_eq!(raw.s.serve_params(*id), Some(*params));
        assert!(raw.cmds.is_empty(), "nothing is sent before accept/reject");
    }
}

#[test]
fn accept_serve_sends_one_ok_before_lite05() {
    for v in [Version::Lite03, Version::Lite04] {
        let mut raw = Raw::ready(v, Side::Server);
        let mut m = request(0);
        m.end = Some(9);
        let (id, stream) = peer_subscribe(&mut raw, &m);
        let info = TrackInfo {
            priority: 4,
            ordered: false,
            max_latency: ms(5000),
            timescale: 1000,
        };
        raw.s.accept_serve(id, info, Some(3)).expect("accept");
        raw.pump();
        assert_eq!(
            raw.next_response(stream),
            SubscribeResponse::Ok(SubscribeOk {
                priority: 4,
                ordered: false,
                max_latency: ms(5000),
                start: Some(3),
                end: Some(9)
            }),
            "{v}"
        );
        raw.assert_drained(stream);
        // A second accept and the groups send no second OK.
        raw.s.accept_serve(id, info, Some(4)).expect("accept again");
        open_group(&mut raw, id, 3);
        open_group(&mut raw, id, 4);
        raw.assert_drained(stream);
        assert!(!raw.finished.contains(&stream));
    }
}

#[test]
fn lite05_ok_waits_for_the_first_group() {
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Server);
    let (id, stream) = peer_subscribe(&mut raw, &request(0));
    raw.s
        .accept_serve(id, TrackInfo::default(), None)
        .expect("accept");
    raw.pump();
    assert!(raw.cmds.is_empty(), "{:?}", raw.cmds);
    open_group(&mut raw, id, 5);
    // SUBSCRIBE_OK(5) = `00 01 05` goes out before the group stream opens.
    assert_eq!(raw.take_unread(stream), vec![0x00, 0x01, 0x05]);
    let cmds = raw.take_cmds();
    let first_write = cmds
        .iter()
        .position(|c| matches!(c, Command::Write { stream: s, .. } if *s == stream))
        .expect("OK written");
    let open = cmds
        .iter()
        .position(|c| matches!(c, Command::Open { dir: Dir::Uni, .. }))
        .expect("group opened");
    assert!(first_write < open, "{cmds:?}");
    open_group(&mut raw, id, 6);
    raw.assert_drained(stream);
}

/// A relay whose source said the track starts at 3 opens group 5 first (it overtook 3 and 4
/// on the way in): lite-05's SUBSCRIBE_OK says 3, where delivery really starts; a start
/// learnt after acceptance counts too, until the OK went out.
#[test]
fn lite05_ok_says_the_known_start_when_a_later_group_opens_first() {
    let v = Version::Lite05;
    for learnt_late in [false, true] {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = peer_subscribe(&mut raw, &request(0));
        let hint = if learnt_late { None } else { Some(3) };
        raw.s
            .accept_serve(id, TrackInfo::default(), hint)
            .expect("accept");
        if learnt_late {
            raw.s.serve_start_known(id, 3);
        }
        raw.pump();
        open_group(&mut raw, id, 5);
        assert_eq!(
            raw.take_unread(stream),
            vec![0x00, 0x01, 0x03],
            "{learnt_late}"
        );
        // Too late once the OK went out.
        raw.s.serve_start_known(id, 1);
        open_group(&mut raw, id, 3);
        raw.assert_drained(stream);
    }
}

#[test]
fn group_stream_bytes() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, _) = serving(&mut raw, &request(0));
        let g = open_group(&mut raw, id, 5);
        let stream = raw.last_opened();
        assert_eq!(raw.local_streams[&stream], Dir::Uni);
        let now = raw.now;
        assert!(
            raw.s
                .write_frame(now, g, 1000, 5, Bytes::from_static(b"hello"))
        );
        assert!(raw.s.write_frame(now, g, 1020, 2, Bytes::from_static(b"o")));
        assert!(raw.s.write_payload(g, Bytes::from_static(b"k")));
        assert!(raw.s.write_frame(now, g, 1010, 0, Bytes::new()));
        raw.s.finish_group(g);
        raw.pump();
        // docs/wire.md §4.14 D exactly.
        assert_eq!(
            raw.all_written(stream),
            group_bytes(v, 0, 5, &[(1000, b"hello"), (20, b"ok"), (-10, b"")]).as_slice(),
            "{v}"
        );
        assert!(raw.finished.contains(&stream));
        let (header, frames, ended) = raw.group_written(stream);
        assert_eq!(
            header,
            GroupHeader {
                subscribe_id: 0,
                sequence: 5
            }
        );
        let ts = |t| if v.is_lite05() { t } else { 0 };
        assert_eq!(
            frames,
            vec![
                (ts(1000), b"hello".to_vec()),
                (ts(1020), b"ok".to_vec()),
                (ts(1010), vec![])
            ]
        );
        assert!(ended);

        // The next group's timestamps start from 0 again: first delta is the absolute value.
        let g = open_group(&mut raw, id, 6);
        let stream = raw.last_opened();
        let now = raw.now;
        raw.s.write_frame(now, g, 1030, 1, Bytes::from_static(b"z"));
        raw.pump();
        assert_eq!(
            raw.all_written(stream),
            group_bytes(v, 0, 6, &[(1030, b"z")]).as_slice()
        );
    }
}

#[test]
fn frames_written_before_the_grant_are_buffered() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, _) = serving(&mut raw, &request(3));
        raw.auto_grant = false;
        let uni_before = raw.opened(Dir::Uni).len();
        let g = open_group(&mut raw, id, 0);
        let now = raw.now;
        raw.s.write_frame(now, g, 7, 2, Bytes::from_static(b"ab"));
        raw.s.finish_group(g);
        raw.pump();
        let pending = raw.pending_opens();
        assert_eq!(pending.len(), 1);
        // Nothing reaches a group stream before it exists.
        assert_eq!(raw.opened(Dir::Uni).len(), uni_before);
        assert!(
            !raw.cmds.iter().any(|c| matches!(c, Command::Finish { .. })),
            "{:?}",
            raw.cmds
        );
        let stream = raw.grant(pending[0].token);
        assert_eq!(
            raw.all_written(stream),
            group_bytes(v, 3, 0, &[(7, b"ab")]).as_slice()
        );
        assert!(raw.finished.contains(&stream));
        // Nothing after the FIN.
        let cmds = raw.cmds_on(stream);
        assert!(
            matches!(cmds.last(), Some(Command::Finish { .. })),
            "{cmds:?}"
        );
    }
}

#[test]
fn end_serve_fins_only_after_every_group_is_accounted_for() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = serving(&mut raw, &request(0));
        let g5 = open_group(&mut raw, id, 5);
        let s5 = raw.last_opened();
        let g6 = open_group(&mut raw, id, 6);
        let s6 = raw.last_opened();
        let g7 = open_group(&mut raw, id, 7);
        let s7 = raw.last_opened();
        raw.take_unread(stream);
        raw.s.finish_group(g5);
        raw.s.finish_group(g6);
        raw.pump();
        raw.clear();
        raw.s.end_serve(id, 8);
        raw.pump();
        if v.is_lite05() {
            // Exclusive end: `01 01 08`.
            assert_eq!(raw.take_unread(stream), vec![0x01, 0x01, 0x08]);
        }
        raw.assert_drained(stream);
        assert!(!raw.finished.contains(&stream));
        // No more groups once ended.
        let now = raw.now;
        assert!(raw.s.open_group(now, id, 8, now, None).is_none());
        assert!(!raw.s.serve_wants(id, 9));

        raw.ack(s5);
        assert!(!raw.finished.contains(&stream), "{v}: g6 and g7 still out");
        // g7 stopped by the subscriber: reset with its code, and accounted for.
        raw.peer_stop(s7, StreamCode(0x5));
        assert_eq!(raw.resets.get(&s7), Some(&StreamCode(0x5)));
        assert!(!raw.finished.contains(&stream));
        assert!(raw.events.is_empty());
        let _ = g7;
        raw.ack(s6);
        assert!(raw.finished.contains(&stream), "{v}");
        assert_eq!(raw.take_events(), vec![Event::ServeClosed { id }]);
        // The subscriber FINs back and our FIN is acknowledged; everything is gone.
        raw.fin(stream);
        raw.ack(stream);
        raw.assert_idle();
        assert!(raw.s.serve_params(id).is_none());
    }
}

#[test]
fn end_serve_with_no_open_groups_fins_at_once() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = serving(&mut raw, &request(0));
        raw.s.end_serve(id, 0);
        raw.pump();
        if v.is_lite05() {
            assert_eq!(raw.take_unread(stream), vec![0x01, 0x01, 0x00]);
        }
        assert!(raw.finished.contains(&stream));
        assert_eq!(raw.take_events(), vec![Event::ServeClosed { id }]);
        raw.fin(stream);
        raw.ack(stream);
        raw.assert_idle();
    }
}

#[test]
fn duplicate_subscribe_id_is_refused_alone() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, first) = serving(&mut raw, &request(4));
        let second = raw.peer_bi_with(&typed(0x02, &request(4), v));
        assert_eq!(
            raw.take_cmds(),
            vec![
                Command::Stop {
                    stream: second,
                    code: StreamCode::CANCEL
                },
                Command::Reset {
                    stream: second,
                    code: StreamCode::CANCEL
                },
            ],
            "{v}"
        );
        assert!(raw.events.is_empty());
        // The first carries on.
        open_group(&mut raw, id, 0);
        raw.assert_open();
        assert!(!raw.resets.contains_key(&first));
    }
}

#[test]
fn subscriber_fin_fins_back_and_cancels_groups() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = serving(&mut raw, &request(0));
        let g1 = open_group(&mut raw, id, 1);
        let s1 = raw.last_opened();
        open_group(&mut raw, id, 2);
        let s2 = raw.last_opened();
        raw.s.finish_group(g1);
        raw.pump();
        raw.clear();
        raw.fin(stream);
        let cmds = raw.take_cmds();
        assert!(cmds.contains(&Command::Finish { stream }), "{v}: {cmds:?}");
        assert!(cmds.contains(&Command::Reset {
            stream: s2,
            code: StreamCode::CANCEL
        }));
        // The finished group is not reset.
        assert!(
            !cmds
                .iter()
                .any(|c| matches!(c, Command::Reset { stream, .. } if *stream == s1))
        );
        assert_eq!(raw.take_events(), vec![Event::ServeClosed { id }]);
        assert!(!raw.s.write_frame(raw.now, g1, 0, 0, Bytes::new()));
        raw.ack(s1);
        raw.assert_idle();
    }
}

#[test]
fn subscriber_reset_resets_back() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = serving(&mut raw, &request(0));
        open_group(&mut raw, id, 1);
        let s1 = raw.last_opened();
        raw.clear();
        raw.peer_reset(stream, StreamCode(0x1));
        let cmds = raw.take_cmds();
        assert!(cmds.contains(&Command::Reset {
            stream,
            code: StreamCode::CANCEL
        }));
        assert!(cmds.contains(&Command::Reset {
            stream: s1,
            code: StreamCode::CANCEL
        }));
        assert_eq!(raw.take_events(), vec![Event::ServeClosed { id }]);
        raw.assert_idle();
        raw.assert_open();
    }
}

#[test]
fn subscribe_update_reports_and_reprioritises() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = serving(&mut raw, &request(0));
        open_group(&mut raw, id, 1);
        let s1 = raw.last_opened();
        let before = raw.priority[&s1];
        raw.clear();
        let update = SubscribeUpdate {
            priority: 90,
            ordered: false,
            max_latency: ms(1000),
            start: None,
            end: Some(4),
        };
        raw.send(stream, &enc(&update, v));
        let params = SubscribeParams {
            priority: 90,
            ordered: false,
            max_latency: ms(1000),
            start: None,
            end: Some(4),
        };
        assert_eq!(
            raw.take_events(),
            vec![Event::SubscribeUpdate { id, params }]
        );
        let after = raw.priority[&s1];
        assert!(after > before, "{v}: {before} -> {after}");
        assert_eq!(
            raw.take_cmds(),
            vec![Command::SetPriority {
                stream: s1,
                priority: after
            }]
        );
        assert_eq!(raw.s.serve_params(id), Some(params));
        // The new end caps the range.
        assert!(raw.s.serve_wants(id, 4));
        assert!(!raw.s.serve_wants(id, 5));
        // The same update again changes nothing on the wire.
        raw.send(stream, &enc(&update, v));
        assert!(raw.cmds.is_empty());
        // A malformed update is a violation.
        raw.send(stream, &[0x01, 0x00]);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
    }
}

#[test]
fn reject_serve_resets_with_the_code() {
    for v in VERSIONS {
        for code in [StreamCode::UNROUTABLE, StreamCode::NOT_FOUND] {
            let mut raw = Raw::ready(v, Side::Server);
            let (id, stream) = peer_subscribe(&mut raw, &request(0));
            raw.s.reject_serve(id, code);
            raw.pump();
            assert_eq!(
                raw.take_cmds(),
                vec![
                    Command::Stop { stream, code },
                    Command::Reset { stream, code }
                ],
                "{v}"
            );
            assert!(raw.s.accept_serve(id, TrackInfo::default(), None).is_err());
            raw.assert_idle();
            // The ID is free again for a new subscription.
            peer_subscribe(&mut raw, &request(0));
        }
    }
}

#[test]
fn abort_serve_resets_everything_with_the_code() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = serving(&mut raw, &request(0));
        open_group(&mut raw, id, 1);
        let s1 = raw.last_opened();
        raw.clear();
        raw.s.abort_serve(id, StreamCode(0x35));
        raw.pump();
        assert_eq!(raw.resets.get(&stream), Some(&StreamCode(0x35)));
        assert_eq!(raw.stops.get(&stream), Some(&StreamCode(0x35)));
        assert_eq!(raw.resets.get(&s1), Some(&StreamCode(0x35)));
        assert_eq!(raw.take_events(), vec![Event::ServeClosed { id }]);
        raw.assert_idle();
    }
}

#[test]
fn group_stopped_by_the_subscriber() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, _) = serving(&mut raw, &request(0));
        let g = open_group(&mut raw, id, 1);
        let s1 = raw.last_opened();
        raw.clear();
        raw.peer_stop(s1, StreamCode::CANCEL);
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Reset {
                stream: s1,
                code: StreamCode::CANCEL
            }]
        );
        assert!(
            !raw.s
                .write_frame(raw.now, g, 0, 1, Bytes::from_static(b"x"))
        );
        raw.s.finish_group(g);
        raw.pump();
        assert!(raw.cmds.is_empty());
        // The serve goes on.
        open_group(&mut raw, id, 2);
    }
}

#[test]
fn drop_groups_bytes() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = serving(&mut raw, &request(0));
        raw.s.drop_groups(id, 5, 7, StreamCode(0));
        raw.pump();
        let expected: &[u8] = if v.is_lite05() {
            &[0x02, 0x03, 0x05, 0x07, 0x00]
        } else {
            &[0x01, 0x03, 0x05, 0x07, 0x00]
        };
        assert_eq!(raw.take_unread(stream), expected, "{v}");
        assert_eq!(
            {
                let mut c = moq_proto::coding::Cursor::new(expected);
                SubscribeResponse::decode(&mut c, v).expect("decodes")
            },
            SubscribeResponse::Drop(SubscribeDrop {
                start: 5,
                end: 7,
                error: 0
            })
        );
    }
}

#[test]
fn requested_range_is_respected() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let mut m = request(0);
        m.start = Some(5);
        m.end = Some(7);
        let (id, _) = peer_subscribe(&mut raw, &m);
        // Not accepted yet: nothing wanted.
        assert!(!raw.s.serve_wants(id, 5));
        raw.s
            .accept_serve(id, TrackInfo::default(), None)
            .expect("accept");
        let now = raw.now;
        assert!(raw.s.open_group(now, id, 4, now, None).is_none());
        assert!(raw.s.open_group(now, id, 8, now, None).is_none());
        assert!(raw.s.open_group(now, id, 5, now, None).is_some());
        assert!(raw.s.open_group(now, id, 7, now, None).is_some());
    }
}

#[test]
fn lite05_datagram_serving() {
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Server);
    let (id, stream) = serving(&mut raw, &request(1));
    assert!(
        raw.s
            .send_datagram(id, 42, 1000, &Bytes::from_static(b"hi"))
    );
    raw.pump();
    // SUBSCRIBE_OK(42) first, then the datagram `01 2a 43 e8 "hi"`.
    assert_eq!(
        raw.next_response(stream),
        SubscribeResponse::Start(SubscribeStart { group: 42 })
    );
    assert_eq!(
        raw.datagrams,
        vec![Bytes::from_static(&[0x01, 0x2a, 0x43, 0xe8, b'h', b'i'])]
    );
    // Too big for 1200 bytes: refused, the caller uses a stream.
    let big = Bytes::from(vec![0u8; 1200]);
    assert!(!raw.s.send_datagram(id, 43, 0, &big));
    let fits = Bytes::from(vec![0u8; 1200 - 3]);
    assert!(raw.s.send_datagram(id, 43, 0, &fits));
    raw.pump();
    assert_eq!(raw.datagrams[1].len(), 1200);
    raw.assert_drained(stream);

    for v in [Version::Lite03, Version::Lite04] {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, _) = serving(&mut raw, &request(1));
        assert!(!raw.s.send_datagram(id, 42, 0, &Bytes::from_static(b"hi")));
        raw.pump();
        assert!(raw.datagrams.is_empty());
    }
}

#[test]
fn end_serve_ends_an_unaccepted_lite05_subscription_with_end_only() {
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Server);
    let (id, stream) = serving(&mut raw, &request(0));
    raw.s.end_serve(id, 3);
    raw.pump();
    assert_eq!(
        raw.next_response(stream),
        SubscribeResponse::End(SubscribeEnd { group: 3 })
    );
    raw.assert_drained(stream);
    assert!(raw.finished.contains(&stream));
    let _ = Duration::ZERO;
}

#[test]
fn unsubscribe_cancels_groups_still_waiting_for_credit() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = serving(&mut raw, &request(0));
        raw.auto_grant = false;
        // One group fully written (FIN included) and one still being written, both waiting
        // for stream credit.
        let g0 = open_group(&mut raw, id, 0);
        let now = raw.now;
        raw.s.write_frame(now, g0, 0, 1, Bytes::from_static(b"a"));
        raw.s.finish_group(g0);
        open_group(&mut raw, id, 1);
        let pending: Vec<_> = raw.pending_opens().iter().map(|o| o.token).collect();
        assert_eq!(pending.len(), 2);
        raw.fin(stream);
        let mut cancelled = raw.cancelled.clone();
        cancelled.sort();
        assert_eq!(
            cancelled, pending,
            "{v}: nothing is sent for a cancelled subscription"
        );
        assert_eq!(raw.take_events(), vec![Event::ServeClosed { id }]);
        raw.assert_idle();
    }
}

#[test]
fn subscribe_and_updates_in_one_chunk() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let update = SubscribeUpdate {
            priority: 2,
            ordered: false,
            max_latency: ms(10),
            start: None,
            end: None,
        };
        let mut bytes = typed(0x02, &request(0), v);
        bytes.extend(enc(&update, v));
        bytes.extend(enc(
            &SubscribeUpdate {
                priority: 3,
                ..update
            },
            v,
        ));
        raw.peer_bi_with(&bytes);
        let events = raw.take_events();
        assert!(
            matches!(
                events.as_slice(),
                [
                    Event::Subscribe { .. },
                    Event::SubscribeUpdate {
                        params: SubscribeParams { priority: 2, .. },
                        ..
                    },
                    Event::SubscribeUpdate {
                        params: SubscribeParams { priority: 3, .. },
                        ..
                    },
                ]
            ),
            "{v}: {events:?}"
        );
    }
}

#[test]
fn unencodable_timestamp_aborts_the_group() {
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Server);
    let (id, _) = serving(&mut raw, &request(0));
    let g = open_group(&mut raw, id, 0);
    let stream = raw.last_opened();
    let now = raw.now;
    assert!(!raw.s.write_frame(now, g, 1 << 62, 0, Bytes::new()));
    raw.pump();
    assert_eq!(
        raw.resets.get(&stream),
        Some(&StreamCode::TIMESTAMP_MISMATCH)
    );
    raw.s.end_serve(id, 1);
    raw.pump();
    assert_eq!(raw.take_events(), vec![Event::ServeClosed { id }]);
}
