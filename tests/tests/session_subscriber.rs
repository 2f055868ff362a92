//! Raw-peer session tests: our subscriptions, the publisher's responses, group streams and
//! datagrams (docs/wire.md §3.2, §3.7, §3.8, §4.4-§4.6, §4.12-§4.14).

mod session_support;

use bytes::Bytes;
use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::coding::Limits;
use moq_proto::session::{
    Command, Dir, Event, GroupEnd, PublisherParams, Side, StreamId, SubscribeOkInfo,
    SubscribeParams, SubscriptionId,
};
use moq_proto::wire::{
    Subscribe, SubscribeDrop, SubscribeEnd, SubscribeOk, SubscribeResponse, SubscribeStart,
    SubscribeUpdate, Version,
};
use session_support::*;

fn params() -> SubscribeParams {
    SubscribeParams {
        priority: 1,
        ordered: false,
        max_latency: ms(1000),
        start: Some(5),
        end: None,
    }
}

/// Subscribe to demo/clock "seconds"; returns the handle and the granted stream.
fn subscribe(raw: &mut Raw) -> (SubscriptionId, StreamId) {
    let id = raw
        .s
        .subscribe(p("demo/clock"), "seconds", params())
        .expect("subscribe");
    raw.pump();
    let stream = raw.last_opened();
    (id, stream)
}

/// A subscription the publisher accepted (OK on 03/04 and 05), logs cleared.
fn accepted(raw: &mut Raw) -> (SubscriptionId, StreamId) {
    let (id, stream) = subscribe(raw);
    let ok = ok_bytes(raw.v);
    raw.send(stream, &ok);
    raw.clear();
    (id, stream)
}

fn ok_bytes(v: Version) -> Vec<u8> {
    if v.is_lite05() {
        resp(SubscribeResponse::Start(SubscribeStart { group: 0 }), v)
    } else {
        resp(
            SubscribeResponse::Ok(SubscribeOk {
                priority: 1,
                ordered: false,
                max_latency: ms(0),
                start: None,
                end: None,
            }),
            v,
        )
    }
}

#[test]
fn subscribe_bytes_and_ids() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (_, stream) = subscribe(&mut raw);
        assert_eq!(
            raw.opens.last().map(|o| (o.dir, o.priority)),
            Some((Dir::Bi, i32::MAX))
        );
        // docs/wire.md §4.14 A, with the outbound path form `/demo/clock` and Subscribe ID 0.
        let mut expected = vec![0x02, 0x1b, 0x00, 0x0b, b'/'];
        expected.extend_from_slice(b"demo/clock");
        expected.push(0x07);
        expected.extend_from_slice(b"seconds");
        expected.extend_from_slice(&[0x01, 0x00, 0x43, 0xe8, 0x06, 0x00]);
        assert_eq!(raw.all_written(stream), expected.as_slice(), "{v}");
        assert!(!raw.finished.contains(&stream));

        // IDs count up from 0 and are never reused.
        let (_, second) = subscribe(&mut raw);
        assert_eq!(raw.next_varint(second), 2);
        let m: Subscribe = raw.next_msg(second);
        assert_eq!(m.id, 1);
        assert_eq!(m.start, Some(5));
        assert_eq!(m.max_latency, ms(1000));
    }
}

#[test]
fn subscribe_id_is_registered_before_the_stream_is_granted() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        raw.auto_grant = false;
        let id = raw
            .s
            .subscribe(p("demo/clock"), "seconds", params())
            .expect("subscribe");
        raw.pump();
        assert_eq!(raw.pending_opens().len(), 1);
        // A GROUP for ID 0 overtakes the grant and the response.
        let group = raw.peer_uni_with(&group_bytes(v, 0, 5, &[(3, b"x")]), true);
        assert!(!raw.stops.contains_key(&group), "{v}: {:?}", raw.cmds);
        assert_eq!(
            raw.media_log(id),
            vec![
                "start 5".to_string(),
                format!(
                    "frame 5 ts={:?} size=1 \"x\" rem=0",
                    v.is_lite05().then_some(3)
                ),
                "end 5 Finished".to_string(),
            ]
        );
        // The SUBSCRIBE goes out on the grant.
        let token = raw.pending_opens()[0].token;
        let stream = raw.grant(token);
        assert_eq!(raw.next_varint(stream), 2);
        let m: Subscribe = raw.next_msg(stream);
        assert_eq!(m.id, 0);
    }
}

#[test]
fn lite03_04_responses() {
    for v in [Version::Lite03, Version::Lite04] {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = subscribe(&mut raw);
        raw.clear();
        // The reference's OK: `00 05 01 00 00 00 00`.
        raw.send(stream, &[0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00]);
        assert_eq!(
            raw.take_events(),
            vec![Event::SubscribeOk {
                id,
                info: SubscribeOkInfo {
                    publisher: Some(PublisherParams {
                        priority: 1,
                        ordered: false,
                        max_latency: ms(0),
                    }),
                    start: None,
                    end: None
                }
            }]
        );
        // The reference's DROP of 5..=7: `01 03 05 07 00`; then a resolving OK.
        raw.send(stream, &[0x01, 0x03, 0x05, 0x07, 0x00]);
        let ok = SubscribeOk {
            priority: 9,
            ordered: true,
            max_latency: ms(300),
            start: Some(8),
            end: Some(20),
        };
        raw.send(stream, &resp(SubscribeResponse::Ok(ok), v));
        assert_eq!(
            raw.take_events(),
            vec![
                Event::GroupsDropped {
                    id,
                    start: 5,
                    end: 7,
                    code: StreamCode(0)
                },
                Event::SubscribeOk {
                    id,
                    info: SubscribeOkInfo {
                        publisher: Some(PublisherParams {
                            priority: 9,
                            ordered: true,
                            max_latency: ms(300),
                        }),
                        start: Some(8),
                        end: Some(20)
                    }
                },
            ]
        );
        raw.assert_open();
        assert!(raw.cmds.is_empty());

        // DROP before OK: protocol violation.
        let mut raw = Raw::ready(v, Side::Client);
        let (_, stream) = subscribe(&mut raw);
        raw.send(stream, &[0x01, 0x03, 0x05, 0x07, 0x00]);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);

        // Type 2 does not exist before lite-05.
        let mut raw = Raw::ready(v, Side::Client);
        let (_, stream) = subscribe(&mut raw);
        raw.send(stream, &[0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00]);
        raw.send(stream, &[0x02, 0x03, 0x06, 0x06, 0x00]);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
    }
}

#[test]
fn lite05_responses() {
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Client);
    let (id, stream) = subscribe(&mut raw);
    raw.clear();
    // DROP and END are legal before OK on lite-05.
    raw.send(stream, &[0x02, 0x03, 0x06, 0x06, 0x00]);
    raw.send(stream, &[0x00, 0x01, 0x05]);
    raw.send(stream, &[0x01, 0x01, 0x08]);
    // A DROP after END is still legal.
    raw.send(
        stream,
        &resp(
            SubscribeResponse::Drop(SubscribeDrop {
                start: 9,
                end: 300,
                error: 0x34,
            }),
            v,
        ),
    );
    assert_eq!(
        raw.take_events(),
        vec![
            Event::GroupsDropped {
                id,
                start: 6,
                end: 6,
                code: StreamCode(0)
            },
            Event::SubscribeOk {
                id,
                info: SubscribeOkInfo {
                    publisher: None,
                    start: Some(5),
                    end: None
                }
            },
            Event::SubscribeEnd { id, end: 8 },
            Event::GroupsDropped {
                id,
                start: 9,
                end: 300,
                code: StreamCode(0x34)
            },
        ]
    );
    raw.assert_open();

    // END with no OK before it (an empty track), then FIN.
    let mut raw = Raw::ready(v, Side::Client);
    let (id, stream) = subscribe(&mut raw);
    raw.clear();
    raw.send_fin(
        stream,
        &resp(SubscribeResponse::End(SubscribeEnd { group: 0 }), v),
    );
    assert_eq!(
        raw.take_events(),
        vec![
            Event::SubscribeEnd { id, end: 0 },
            Event::SubscriptionClosed { id, error: None }
        ]
    );
    assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
    raw.assert_idle();

    // A second OK is a violation (the start is stated once).
    let mut raw = Raw::ready(v, Side::Client);
    let (_, stream) = subscribe(&mut raw);
    raw.send(stream, &[0x00, 0x01, 0x05]);
    raw.send(stream, &[0x00, 0x01, 0x06]);
    raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);

    // An unknown response type is a violation.
    let mut raw = Raw::ready(v, Side::Client);
    let (_, stream) = subscribe(&mut raw);
    raw.send(stream, &[0x03, 0x01, 0x05]);
    raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
}

#[test]
fn group_stream_events() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, _) = accepted(&mut raw);
        // docs/wire.md §4.14 D: group 5, frames "hello" @1000, "ok" @1020, "" @1010.
        let bytes: Vec<u8> = if v.is_lite05() {
            let mut b = vec![0x00, 0x02, 0x00, 0x05, 0x47, 0xd0, 0x05];
            b.extend_from_slice(b"hello");
            b.extend_from_slice(&[0x28, 0x02, b'o', b'k', 0x13, 0x00]);
            b
        } else {
            let mut b = vec![0x00, 0x02, 0x00, 0x05, 0x05];
            b.extend_from_slice(b"hello");
            b.extend_from_slice(&[0x02, b'o', b'k', 0x00]);
            b
        };
        assert_eq!(
            bytes,
            group_bytes(v, 0, 5, &[(1000, b"hello"), (20, b"ok"), (-10, b"")])
        );
        let group = raw.peer_uni_with(&bytes, true);
        let ts = |t: u64| if v.is_lite05() { Some(t) } else { None };
        assert_eq!(
            raw.take_events(),
            vec![
                Event::GroupStart { id, seq: 5 },
                Event::FrameStart {
                    id,
                    seq: 5,
                    timestamp: ts(1000),
                    size: 5,
                    chunk: Bytes::from_static(b"hello"),
                    remaining: 0
                },
                Event::FrameStart {
                    id,
                    seq: 5,
                    timestamp: ts(1020),
                    size: 2,
                    chunk: Bytes::from_static(b"ok"),
                    remaining: 0
                },
                Event::FrameStart {
                    id,
                    seq: 5,
                    timestamp: ts(1010),
                    size: 0,
                    chunk: Bytes::new(),
                    remaining: 0
                },
                Event::GroupEnd {
                    id,
                    seq: 5,
                    end: GroupEnd::Finished
                },
            ],
            "{v}"
        );
        assert!(raw.cmds_on(group).is_empty());

        // The same group one byte at a time: payload arrives as FramePayload.
        let group = raw.peer_uni();
        raw.send_bytewise(group, &group_bytes(v, 0, 6, &[(5, b"abc")]), true);
        let log = raw.media_log(id);
        assert_eq!(
            log,
            vec![
                "start 6".to_string(),
                format!("frame 6 ts={:?} size=3 \"\" rem=3", ts(5)),
                "payload 6 \"a\" rem=2".to_string(),
                "payload 6 \"b\" rem=1".to_string(),
                "payload 6 \"c\" rem=0".to_string(),
                "end 6 Finished".to_string(),
            ],
            "{v}"
        );
        // Timestamps restart from 0 on every group stream (a second group with delta 5).
        raw.clear();
        raw.peer_uni_with(&group_bytes(v, 0, 7, &[(5, b"")]), true);
        assert!(
            raw.events
                .iter()
                .any(|e| matches!(e, Event::FrameStart { timestamp, .. } if *timestamp == ts(5))),
            "{:?}",
            raw.events
        );
        // A group with zero frames.
        raw.clear();
        raw.peer_uni_with(&group_bytes(v, 0, 8, &[]), true);
        assert_eq!(
            raw.media_log(id),
            vec!["start 8".to_string(), "end 8 Finished".to_string()]
        );
        raw.assert_open();
    }
}

#[test]
fn group_for_an_unknown_subscription_is_stopped() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, _) = accepted(&mut raw);
        let group = raw.peer_uni_with(&group_bytes(v, 7, 0, &[(0, b"x")]), false);
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Stop {
                stream: group,
                code: StreamCode::CANCEL
            }],
            "{v}"
        );
        assert!(raw.events.is_empty());
        raw.send_fin(group, b"more");
        assert!(raw.cmds.is_empty() && raw.events.is_empty());

        // After unsubscribing, its ID is unknown too.
        raw.s.unsubscribe(id);
        raw.pump();
        raw.clear();
        let group = raw.peer_uni_with(&group_bytes(v, 0, 1, &[]), false);
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Stop {
                stream: group,
                code: StreamCode::CANCEL
            }]
        );
        raw.assert_open();
    }
}

#[test]
fn unsubscribe_fins_and_stops_open_groups() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = accepted(&mut raw);
        let g1 = raw.peer_uni_with(&group_bytes(v, 0, 1, &[(0, b"partial")])[..6], false);
        let g2 = raw.peer_uni_with(&group_bytes(v, 0, 2, &[])[..4], false);
        raw.clear();
        raw.s.unsubscribe(id);
        raw.pump();
        let mut cmds = raw.take_cmds();
        assert_eq!(cmds.remove(0), Command::Finish { stream }, "{v}");
        cmds.sort_by_key(|c| format!("{c:?}"));
        let mut expected = vec![
            Command::Stop {
                stream: g1,
                code: StreamCode::CANCEL,
            },
            Command::Stop {
                stream: g2,
                code: StreamCode::CANCEL,
            },
        ];
        expected.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(cmds, expected);
        assert_eq!(
            raw.take_events(),
            vec![Event::SubscriptionClosed { id, error: None }]
        );
        // Late data and the publisher's answering FIN change nothing.
        raw.send(g1, b"xyz");
        raw.send(stream, &[0x01, 0x03, 0x05, 0x07, 0x00]);
        raw.fin(stream);
        assert!(
            raw.cmds.is_empty() && raw.events.is_empty(),
            "{:?}",
            raw.events
        );
        raw.assert_idle();
        // update_subscription on a closed handle.
        assert!(raw.s.update_subscription(id, params()).is_err());
    }
}

#[test]
fn publisher_fin_closes_after_open_groups_end() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = accepted(&mut raw);
        let bytes = group_bytes(v, 0, 1, &[(0, b"abc")]);
        let group = raw.peer_uni_with(&bytes[..5], false);
        raw.clear();
        raw.fin(stream);
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }], "{v}");
        assert!(
            !raw.events
                .iter()
                .any(|e| matches!(e, Event::SubscriptionClosed { .. })),
            "{:?}",
            raw.events
        );
        raw.send_fin(group, &bytes[5..]);
        let events = raw.take_events();
        assert!(
            matches!(
                events.as_slice(),
                [
                    ..,
                    Event::GroupEnd {
                        end: GroupEnd::Finished,
                        ..
                    },
                    Event::SubscriptionClosed { id: closed, error: None }
                ] if *closed == id
            ),
            "{v}: {events:?}"
        );
        raw.assert_idle();
    }
}

#[test]
fn publisher_reset_closes_with_the_code() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = accepted(&mut raw);
        let group = raw.peer_uni_with(&group_bytes(v, 0, 1, &[(0, b"abc")])[..5], false);
        raw.clear();
        raw.peer_reset(stream, StreamCode::NOT_FOUND);
        let mut cmds = raw.take_cmds();
        cmds.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            cmds,
            vec![
                Command::Reset {
                    stream,
                    code: StreamCode::CANCEL
                },
                Command::Stop {
                    stream: group,
                    code: StreamCode::CANCEL
                },
            ],
            "{v}"
        );
        assert_eq!(
            raw.take_events(),
            vec![
                Event::GroupEnd {
                    id,
                    seq: 1,
                    end: GroupEnd::Stopped(StreamCode::CANCEL)
                },
                Event::SubscriptionClosed {
                    id,
                    error: Some(StreamCode::NOT_FOUND)
                },
            ]
        );
        raw.assert_idle();
        raw.assert_open();

        // Rejected before any response (the reference resets 0x36 at once).
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = subscribe(&mut raw);
        raw.clear();
        raw.peer_reset(stream, StreamCode::UNROUTABLE);
        assert_eq!(
            raw.take_events(),
            vec![Event::SubscriptionClosed {
                id,
                error: Some(StreamCode::UNROUTABLE)
            }]
        );
        raw.assert_idle();
    }
}

#[test]
fn group_reset_by_the_publisher() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, _) = accepted(&mut raw);
        let group = raw.peer_uni_with(&group_bytes(v, 0, 4, &[(0, b"abc")])[..5], false);
        raw.clear();
        raw.peer_reset(group, StreamCode::OLD);
        assert_eq!(
            raw.take_events(),
            vec![Event::GroupEnd {
                id,
                seq: 4,
                end: GroupEnd::Reset(StreamCode::OLD)
            }]
        );
        assert!(raw.cmds.is_empty());
        // stop_group on a live group.
        let group = raw.peer_uni_with(&group_bytes(v, 0, 5, &[])[..4], false);
        raw.clear();
        raw.s.stop_group(id, 5);
        raw.pump();
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Stop {
                stream: group,
                code: StreamCode::CANCEL
            }]
        );
        assert_eq!(
            raw.take_events(),
            vec![Event::GroupEnd {
                id,
                seq: 5,
                end: GroupEnd::Stopped(StreamCode::CANCEL)
            }]
        );
    }
}

#[test]
fn malformed_group_stops_only_that_stream() {
    for v in VERSIONS {
        let mut config = cfg(v, Side::Client);
        config.limits = Limits {
            max_frame_size: 16,
            max_group_frames: 2,
            ..Limits::default()
        };
        let mut raw = Raw::ready_with(config);
        let (id, stream) = accepted(&mut raw);
        let healthy = raw.peer_uni_with(&group_bytes(v, 0, 1, &[(0, b"ok")]), false);

        let cases: Vec<(Vec<u8>, bool, StreamCode)> = vec![
            // A frame above the frame cap: 0x38.
            (
                group_bytes(v, 0, 2, &[(0, &[0u8; 17])]),
                false,
                StreamCode::FRAME_TOO_LARGE,
            ),
            // Too many frames in a group: 0x32.
            (
                group_bytes(v, 0, 3, &[(0, b"a"), (0, b"b"), (0, b"c")]),
                false,
                StreamCode::GROUP_TOO_LARGE,
            ),
            // FIN in the middle of a frame payload: 0x12.
            (
                group_bytes(v, 0, 4, &[(0, b"abcdef")])[..8].to_vec(),
                true,
                StreamCode::MALFORMED_TRACK,
            ),
        ];
        for (bytes, fin, code) in cases {
            raw.clear();
            let group = raw.peer_uni_with(&bytes, fin);
            assert_eq!(
                raw.take_cmds(),
                vec![Command::Stop {
                    stream: group,
                    code
                }],
                "{v} code {code:#x}"
            );
            let events = raw.take_events();
            assert!(
                matches!(events.last(), Some(Event::GroupEnd { end: GroupEnd::Stopped(c), .. }) if *c == code),
                "{v}: {events:?}"
            );
            raw.assert_open();
        }
        if v.is_lite05() {
            // A timestamp delta below zero from the baseline: 0x39.
            raw.clear();
            let group = raw.peer_uni_with(&group_bytes(v, 0, 9, &[(-1, b"")]), false);
            assert_eq!(
                raw.take_cmds(),
                vec![Command::Stop {
                    stream: group,
                    code: StreamCode::TIMESTAMP_MISMATCH
                }]
            );
        }
        // FIN inside the GROUP header: stopped with 0x12, never reported.
        raw.clear();
        let group = raw.peer_uni_with(&[0x00, 0x02, 0x00], true);
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Stop {
                stream: group,
                code: StreamCode::MALFORMED_TRACK
            }]
        );
        assert!(raw.events.is_empty());

        // The healthy group and the subscription carry on.
        raw.clear();
        raw.send_fin(healthy, &frame(v, 0, b"!"));
        assert_eq!(
            raw.media_log(id).last().map(String::as_str),
            Some("end 1 Finished")
        );
        raw.fin(stream);
        raw.assert_idle();
    }
}

#[test]
fn lite05_datagrams() {
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Client);
    let (id, _) = accepted(&mut raw);
    // `00 2a 43 e8 "hi"`: sub 0, group 42, ts 1000.
    raw.datagram(&[0x00, 0x2a, 0x43, 0xe8, b'h', b'i']);
    assert_eq!(
        raw.take_events(),
        vec![Event::Datagram {
            id,
            seq: 42,
            timestamp: 1000,
            payload: Bytes::from_static(b"hi")
        }]
    );
    // The same group again (datagram or stream copy): ignored.
    raw.datagram(&[0x00, 0x2a, 0x43, 0xe8, b'h', b'i']);
    assert!(raw.events.is_empty());
    raw.peer_uni_with(&group_bytes(v, 0, 7, &[(1, b"s")]), true);
    raw.clear();
    raw.datagram(&[0x00, 0x07, 0x01, b's']);
    assert!(raw.events.is_empty(), "{:?}", raw.events);
    // Unknown subscription: silently dropped.
    raw.datagram(&[0x05, 0x01, 0x01, b'x']);
    // Above 1200 bytes: dropped. Exactly 1200: delivered.
    let mut big = vec![0x00, 0x08, 0x00];
    big.resize(1201, 0xaa);
    raw.datagram(&big);
    assert!(raw.events.is_empty());
    big.truncate(1200);
    raw.datagram(&big);
    assert!(
        matches!(raw.take_events().as_slice(), [Event::Datagram { seq: 8, payload, .. }] if payload.len() == 1197)
    );
    // Truncated header: dropped.
    raw.datagram(&[0x00, 0x40]);
    raw.datagram(&[]);
    assert!(raw.cmds.is_empty() && raw.events.is_empty());
    raw.assert_open();
}

#[test]
fn datagrams_before_lite05_are_dropped() {
    for v in [Version::Lite03, Version::Lite04] {
        let mut raw = Raw::ready(v, Side::Client);
        accepted(&mut raw);
        raw.datagram(&[0x00, 0x2a, 0x43, 0xe8, b'h', b'i']);
        assert!(raw.events.is_empty() && raw.cmds.is_empty());
        raw.assert_open();
    }
}

#[test]
fn update_subscription_writes_subscribe_update() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = accepted(&mut raw);
        raw.take_unread(stream);
        let update = SubscribeParams {
            priority: 200,
            ordered: true,
            max_latency: ms(250),
            start: Some(0),
            end: Some(9),
        };
        raw.s.update_subscription(id, update).expect("update");
        raw.pump();
        // No type prefix: `len 02 01 40fa 01 0a`.
        assert_eq!(
            raw.unread(stream),
            &[0x06, 0xc8, 0x01, 0x40, 0xfa, 0x01, 0x0a],
            "{v}"
        );
        let m: SubscribeUpdate = raw.next_msg(stream);
        assert_eq!(m.priority, 200);
        // After the publisher's FIN, updates are refused.
        raw.fin(stream);
        assert!(raw.s.update_subscription(id, update).is_err());
        raw.assert_idle();
    }
}

#[test]
fn update_before_the_grant_follows_the_subscribe() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        raw.auto_grant = false;
        let id = raw
            .s
            .subscribe(p("demo/clock"), "seconds", params())
            .expect("subscribe");
        raw.s
            .update_subscription(
                id,
                SubscribeParams {
                    priority: 7,
                    ..params()
                },
            )
            .expect("update");
        raw.pump();
        let stream = raw.grant_all()[0];
        assert_eq!(raw.next_varint(stream), 2);
        let _: Subscribe = raw.next_msg(stream);
        let update: SubscribeUpdate = raw.next_msg(stream);
        assert_eq!(update.priority, 7, "{v}");
        raw.assert_drained(stream);
    }
}
