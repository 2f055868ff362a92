//! Raw-peer session tests: announcements in both roles (docs/wire.md §3.1, §4.1-§4.3, §5.1-§5.4).

mod session_support;

use moq_proto::codes::SessionCode;
use moq_proto::codes::StreamCode;
use moq_proto::session::{Command, Dir, Event, RequestError, Side};
use moq_proto::wire::{Announce, AnnounceOk, AnnounceRequest, AnnounceStatus, Path, Version};
use session_support::*;

fn active(suffix: &str, hops: &[u64]) -> Announce {
    Announce {
        status: AnnounceStatus::Active,
        suffix: p(suffix),
        hops: hops.to_vec(),
    }
}

fn ended(suffix: &str) -> Announce {
    Announce {
        status: AnnounceStatus::Ended,
        suffix: p(suffix),
        hops: Vec::new(),
    }
}

/// Open an announce request for `prefix` and, on lite-05, deliver ANNOUNCE_OK{peer_hop, 0}.
fn interest(
    raw: &mut Raw,
    prefix: &str,
    peer_hop: u64,
) -> (moq_proto::session::InterestId, moq_proto::session::StreamId) {
    let id = raw.s.request_announcements(p(prefix), 0).expect("request");
    raw.pump();
    let stream = raw.last_opened();
    if raw.v.is_lite05() {
        let ok = enc(
            &AnnounceOk {
                hop_id: peer_hop,
                active_count: 0,
            },
            raw.v,
        );
        raw.send(stream, &ok);
    }
    raw.clear();
    (id, stream)
}

// -------------------------------------------------------------------------------------------
// Requester

#[test]
fn request_bytes_use_the_prefix_form() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        raw.s.request_announcements(p("a"), 0).expect("request");
        raw.pump();
        let stream = raw.last_opened();
        assert_eq!(
            raw.opens.last().map(|o| (o.dir, o.priority)),
            Some((Dir::Bi, i32::MAX))
        );
        let expected: &[u8] = if v == Version::Lite03 {
            &[0x01, 0x04, 0x03, b'/', b'a', b'/']
        } else {
            &[0x01, 0x05, 0x03, b'/', b'a', b'/', 0x00]
        };
        assert_eq!(raw.all_written(stream), expected, "{v}");
        assert!(
            !raw.finished.contains(&stream),
            "the request side stays open"
        );

        // Root prefix `/` and an exclude hop (not sent on lite-03).
        raw.s
            .request_announcements(Path::root(), 300)
            .expect("request");
        raw.pump();
        let stream = raw.last_opened();
        let expected: &[u8] = if v == Version::Lite03 {
            &[0x01, 0x02, 0x01, b'/']
        } else {
            &[0x01, 0x04, 0x01, b'/', 0x41, 0x2c]
        };
        assert_eq!(raw.all_written(stream), expected, "{v}");
    }
}

#[test]
fn announced_paths_and_hop_lists_are_normalised() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = interest(&mut raw, "live", 123_456_789);
        // The peer's hop list for `live/cam`: 05 excludes the sender, 04 includes it, 03 is a
        // count.
        let cam = match v {
            Version::Lite05 => active("cam", &[37]),
            Version::Lite04 => active("cam", &[37, 123_456_789]),
            Version::Lite03 => active("cam", &[0, 0]),
            _ => panic!("a variant this test does not know"),
        };
        raw.send(stream, &enc(&cam, v));
        // A broadcast equal to the prefix (empty suffix) and a nested one.
        raw.send(stream, &enc(&active("", &[]), v));
        raw.send(stream, &enc(&active("x/y", &[]), v));
        let cam_hops = match v {
            Version::Lite03 => vec![0, 0],
            _ => vec![37, 123_456_789],
        };
        let bare_hops = if v == Version::Lite05 {
            vec![123_456_789]
        } else {
            vec![]
        };
        assert_eq!(
            raw.take_events(),
            vec![
                Event::Announced {
                    id,
                    path: p("live/cam"),
                    hops: cam_hops,
                    active: true
                },
                Event::Announced {
                    id,
                    path: p("live"),
                    hops: bare_hops.clone(),
                    active: true
                },
                Event::Announced {
                    id,
                    path: p("live/x/y"),
                    hops: bare_hops,
                    active: true
                },
            ],
            "{v}"
        );
        // Ended: the wire carries an empty hop list; the event too.
        raw.send(stream, &enc(&ended("cam"), v));
        assert_eq!(
            raw.take_events(),
            vec![Event::Announced {
                id,
                path: p("live/cam"),
                hops: vec![],
                active: false
            }]
        );
        raw.assert_open();
        assert!(raw.cmds_on(stream).is_empty(), "nothing is sent back");
    }
}

#[test]
fn lite04_announce_matches_the_byte_example() {
    // docs/wire.md §4.14 B.
    let v = Version::Lite04;
    let mut raw = Raw::ready(v, Side::Client);
    let (id, stream) = interest(&mut raw, "live", 0);
    raw.send(
        stream,
        &[
            0x0b, 0x01, 0x03, b'c', b'a', b'm', 0x02, 0x25, 0x87, 0x5b, 0xcd, 0x15,
        ],
    );
    raw.send(stream, &[0x06, 0x00, 0x03, b'c', b'a', b'm', 0x00]);
    assert_eq!(
        raw.take_events(),
        vec![
            Event::Announced {
                id,
                path: p("live/cam"),
                hops: vec![37, 123_456_789],
                active: true
            },
            Event::Announced {
                id,
                path: p("live/cam"),
                hops: vec![],
                active: false
            },
        ]
    );
    // lite-03 one-hop active.
    let v = Version::Lite03;
    let mut raw = Raw::ready(v, Side::Client);
    let (id, stream) = interest(&mut raw, "live", 0);
    raw.send(stream, &[0x06, 0x01, 0x03, b'c', b'a', b'm', 0x01]);
    assert_eq!(
        raw.take_events(),
        vec![Event::Announced {
            id,
            path: p("live/cam"),
            hops: vec![0],
            active: true
        }]
    );
}

#[test]
fn lite05_announce_ok_comes_first() {
    let v = Version::Lite05;
    // The byte example: ANNOUNCE_OK(hop 123456789, active 1) then one active.
    let mut raw = Raw::ready(v, Side::Client);
    let id = raw.s.request_announcements(p("a"), 0).expect("request");
    raw.pump();
    let stream = raw.last_opened();
    raw.send(stream, &[0x05, 0x87, 0x5b, 0xcd, 0x15, 0x01]);
    assert!(raw.events.is_empty());
    raw.send(stream, &enc(&active("b", &[]), v));
    assert_eq!(
        raw.take_events(),
        vec![Event::Announced {
            id,
            path: p("a/b"),
            hops: vec![123_456_789],
            active: true
        }]
    );
    // Hop id 0 (unknown) is still appended as 0.
    let mut raw = Raw::ready(v, Side::Client);
    let (id, stream) = interest(&mut raw, "a", 0);
    raw.send(stream, &enc(&active("b", &[4]), v));
    assert_eq!(
        raw.take_events(),
        vec![Event::Announced {
            id,
            path: p("a/b"),
            hops: vec![4, 0],
            active: true
        }]
    );

    // An ANNOUNCE_BROADCAST in place of ANNOUNCE_OK does not parse as ANNOUNCE_OK: 0x3.
    let mut raw = Raw::ready(v, Side::Client);
    raw.s.request_announcements(p("a"), 0).expect("request");
    raw.pump();
    let stream = raw.last_opened();
    raw.send(stream, &enc(&active("b", &[]), v));
    raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
}

#[test]
fn duplicate_active_is_a_violation_before_lite05_and_a_replace_on_lite05() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = interest(&mut raw, "a", 9);
        let first = if v == Version::Lite03 {
            vec![0]
        } else {
            vec![1]
        };
        raw.send(stream, &enc(&active("b", &first), v));
        raw.take_events();
        let second = if v == Version::Lite03 {
            vec![0, 0]
        } else {
            vec![2, 3]
        };
        raw.send(stream, &enc(&active("b", &second), v));
        if v == Version::Lite05 {
            raw.assert_open();
            assert_eq!(
                raw.take_events(),
                vec![Event::Announced {
                    id,
                    path: p("a/b"),
                    hops: vec![2, 3, 9],
                    active: true
                }]
            );
            // Status 2 (restart) reads as active on lite-05: another replace.
            raw.send(stream, &[0x04, 0x02, 0x01, b'b', 0x00]);
            assert_eq!(
                raw.take_events(),
                vec![Event::Announced {
                    id,
                    path: p("a/b"),
                    hops: vec![9],
                    active: true
                }]
            );
            // One ended ends it.
            raw.send(stream, &enc(&ended("b"), v));
            assert!(matches!(
                raw.take_events().as_slice(),
                [Event::Announced { active: false, .. }]
            ));
        } else {
            raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
            assert!(raw.s.is_idle());
        }
    }
    // Status 2 on lite-03/04 is a decode error.
    for v in [Version::Lite03, Version::Lite04] {
        let mut raw = Raw::ready(v, Side::Client);
        let (_, stream) = interest(&mut raw, "a", 0);
        raw.send(stream, &[0x04, 0x02, 0x01, b'b', 0x00]);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
    }
}

#[test]
fn ended_for_an_inactive_suffix_is_ignored() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (_, stream) = interest(&mut raw, "a", 1);
        raw.send(stream, &enc(&ended("never"), v));
        raw.send(stream, &enc(&active("b", &[]), v));
        raw.send(stream, &enc(&ended("b"), v));
        raw.take_events();
        raw.send(stream, &enc(&ended("b"), v));
        raw.assert_open();
        assert!(raw.events.is_empty(), "{v}: {:?}", raw.events);
    }
}

#[test]
fn announce_stream_fin_or_reset_closes_the_interest() {
    for v in VERSIONS {
        // FIN: InterestClosed{None}; we FIN back.
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = interest(&mut raw, "a", 1);
        raw.send(stream, &enc(&active("b", &[]), v));
        raw.take_events();
        raw.fin(stream);
        assert_eq!(
            raw.take_events(),
            vec![Event::InterestClosed { id, error: None }]
        );
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
        raw.assert_idle();

        // Reset: InterestClosed{Some(code)}; we FIN (never reset an announce stream).
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = interest(&mut raw, "a", 1);
        raw.peer_reset(stream, StreamCode(0x1));
        assert_eq!(
            raw.take_events(),
            vec![Event::InterestClosed {
                id,
                error: Some(StreamCode(0x1))
            }]
        );
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
        raw.assert_open();
        raw.assert_idle();

        // STOP_SENDING on our request side: we reset it with the echoed code, and report.
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = interest(&mut raw, "a", 1);
        raw.peer_stop(stream, StreamCode(0x5));
        assert_eq!(
            raw.take_events(),
            vec![Event::InterestClosed {
                id,
                error: Some(StreamCode(0x5))
            }]
        );
        assert_eq!(
            raw.cmds_on(stream)[0],
            Command::Reset {
                stream,
                code: StreamCode(0x5)
            }
        );
        raw.assert_open();
    }
}

#[test]
fn cancel_announcements_fins_and_ignores_the_rest() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (id, stream) = interest(&mut raw, "a", 1);
        raw.s.cancel_announcements(id);
        raw.pump();
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
        assert_eq!(
            raw.take_events(),
            vec![Event::InterestClosed { id, error: None }]
        );
        raw.send(stream, &enc(&active("b", &[]), v));
        assert!(raw.events.is_empty());
        raw.fin(stream);
        assert!(raw.cmds.is_empty() && raw.events.is_empty());
        raw.assert_idle();
    }
    // Cancelled before the stream was granted: the open is withdrawn.
    let mut raw = Raw::ready(Version::Lite04, Side::Client);
    raw.auto_grant = false;
    let id = raw.s.request_announcements(p("a"), 0).expect("request");
    raw.pump();
    let token = raw.pending_opens()[0].token;
    raw.s.cancel_announcements(id);
    raw.pump();
    assert_eq!(raw.cancelled, vec![token]);
    raw.assert_idle();
}

// -------------------------------------------------------------------------------------------
// Responder

fn listener(
    raw: &mut Raw,
    prefix: &[u8],
    exclude: u64,
) -> (moq_proto::session::ListenerId, moq_proto::session::StreamId) {
    let v = raw.v;
    let mut bytes = vec![0x01];
    let mut body = Vec::new();
    moq_proto::coding::put_varint(&mut body, prefix.len() as u64).expect("varint");
    body.extend_from_slice(prefix);
    if v.has_hops() {
        moq_proto::coding::put_varint(&mut body, exclude).expect("varint");
    }
    moq_proto::coding::put_varint(&mut bytes, body.len() as u64).expect("varint");
    bytes.extend(body);
    let stream = raw.peer_bi_with(&bytes);
    let events = raw.take_events();
    let [Event::AnnounceRequest { id, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    (*id, stream)
}

#[test]
fn announce_request_is_reported_with_a_normalised_prefix() {
    for v in VERSIONS {
        for (raw_prefix, prefix) in [
            (&b"/a/"[..], "a"),
            (b"a", "a"),
            (b"//a//b/", "a/b"),
            (b"/", ""),
            (b"", ""),
        ] {
            let mut raw = Raw::ready(v, Side::Server);
            let stream = raw.peer_bi();
            let request = AnnounceRequest {
                prefix: p(prefix),
                exclude_hop: 42,
            };
            // Send the raw prefix bytes with the exclude hop (04/05).
            let mut body = Vec::new();
            moq_proto::coding::put_varint(&mut body, raw_prefix.len() as u64).expect("varint");
            body.extend_from_slice(raw_prefix);
            if v.has_hops() {
                body.push(42);
            }
            let mut bytes = vec![0x01, body.len() as u8];
            bytes.extend(body);
            raw.send(stream, &bytes);
            let events = raw.take_events();
            let [
                Event::AnnounceRequest {
                    prefix: got,
                    exclude_hop,
                    ..
                },
            ] = events.as_slice()
            else {
                panic!("{events:?}");
            };
            assert_eq!(*got, request.prefix, "{v} {raw_prefix:?}");
            assert_eq!(*exclude_hop, if v.has_hops() { 42 } else { 0 });
            assert!(raw.cmds.is_empty(), "nothing sent before announce_initial");
        }
    }
}

#[test]
fn announce_initial_per_version() {
    for v in VERSIONS {
        let mut config = cfg(v, Side::Server);
        config.hop_id = 77;
        let mut raw = Raw::ready_with(config);
        let (id, stream) = listener(&mut raw, b"/a/", 0);
        let x = p("a/x");
        let y = p("a/y");
        let z = p("b/z");
        let ab = p("ab");
        let a = p("a");
        raw.s
            .announce_initial(
                id,
                [
                    (&x, &[][..]),
                    (&y, &[5u64][..]),
                    (&z, &[][..]),
                    (&ab, &[][..]),
                    (&a, &[][..]),
                ],
            )
            .expect("initial");
        raw.pump();
        if v == Version::Lite05 {
            let ok: AnnounceOk = raw.next_msg(stream);
            assert_eq!(
                ok,
                AnnounceOk {
                    hop_id: 77,
                    active_count: 3
                }
            );
        }
        let expected = match v {
            Version::Lite05 => [vec![], vec![5], vec![]],
            Version::Lite04 => [vec![77], vec![5, 77], vec![77]],
            Version::Lite03 => [vec![0], vec![0, 0], vec![0]],
            _ => panic!("a variant this test does not know"),
        };
        for (suffix, hops) in ["x", "y", ""].iter().zip(expected) {
            let got: Announce = raw.next_msg(stream);
            assert_eq!(got, active(suffix, &hops), "{v}");
        }
        raw.assert_drained(stream);
        assert!(!raw.finished.contains(&stream));

        // A second announce_initial is a no-op.
        raw.s.announce_initial(id, [(&x, &[][..])]).expect("noop");
        raw.pump();
        raw.assert_drained(stream);
    }
}

#[test]
fn lite05_empty_initial_set_is_announce_ok_zero() {
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Client);
    let (id, stream) = listener(&mut raw, b"/", 0);
    raw.s
        .announce_initial(id, std::iter::empty::<(&Path, &[u64])>())
        .expect("initial");
    raw.pump();
    assert_eq!(raw.take_unread(stream), vec![0x02, 0x00, 0x00]);
}

#[test]
fn lite04_with_unknown_hop_id_sends_the_list_as_is() {
    let v = Version::Lite04;
    let mut raw = Raw::ready(v, Side::Client);
    let (id, stream) = listener(&mut raw, b"/", 0);
    let x = p("x");
    raw.s
        .announce_initial(id, [(&x, &[3u64][..])])
        .expect("initial");
    raw.pump();
    let got: Announce = raw.next_msg(stream);
    assert_eq!(got, active("x", &[3]));
}

#[test]
fn live_announcements_and_ends() {
    for v in VERSIONS {
        let mut config = cfg(v, Side::Server);
        config.hop_id = 8;
        let mut raw = Raw::ready_with(config);
        let (id, stream) = listener(&mut raw, b"/a/", 0);
        // Before announce_initial, live changes are refused.
        assert_eq!(
            raw.s.announce(id, &p("a/w"), true, &[]),
            Err(RequestError::Unknown)
        );
        raw.s
            .announce_initial(id, std::iter::empty::<(&Path, &[u64])>())
            .expect("initial");
        raw.pump();
        raw.take_unread(stream);

        raw.s.announce(id, &p("a/w"), true, &[1]).expect("announce");
        // Outside the prefix, or an end for something never announced: nothing.
        raw.s.announce(id, &p("b/w"), true, &[]).expect("outside");
        raw.s
            .announce(id, &p("a/q"), false, &[])
            .expect("never active");
        raw.pump();
        let hops: Vec<u64> = match v {
            Version::Lite05 => vec![1],
            Version::Lite04 => vec![1, 8],
            Version::Lite03 => vec![0, 0],
            _ => panic!("a variant this test does not know"),
        };
        let got: Announce = raw.next_msg(stream);
        assert_eq!(got, active("w", &hops), "{v}");
        raw.assert_drained(stream);

        // A route change: sent on lite-05 only (03/04 cannot express it).
        raw.s.announce(id, &p("a/w"), true, &[2]).expect("replace");
        raw.pump();
        if v == Version::Lite05 {
            let got: Announce = raw.next_msg(stream);
            assert_eq!(got, active("w", &[2]));
        }
        raw.assert_drained(stream);

        raw.s.announce(id, &p("a/w"), false, &[9]).expect("end");
        raw.pump();
        let got: Announce = raw.next_msg(stream);
        assert_eq!(got, ended("w"), "ended carries an empty hop list");
        // A second end is not sent.
        raw.s
            .announce(id, &p("a/w"), false, &[])
            .expect("end again");
        raw.pump();
        raw.assert_drained(stream);
        raw.assert_open();
    }
}

#[test]
fn exclude_hop_filters_routes() {
    for v in [Version::Lite04, Version::Lite05] {
        let mut config = cfg(v, Side::Server);
        config.hop_id = 8;
        let mut raw = Raw::ready_with(config);
        let (id, stream) = listener(&mut raw, b"/", 5);
        let x = p("x");
        let y = p("y");
        raw.s
            .announce_initial(id, [(&x, &[1u64, 5][..]), (&y, &[1u64][..])])
            .expect("initial");
        raw.s.announce(id, &p("z"), true, &[5]).expect("live");
        raw.pump();
        if v == Version::Lite05 {
            let ok: AnnounceOk = raw.next_msg(stream);
            assert_eq!(ok.active_count, 1);
        }
        let got: Announce = raw.next_msg(stream);
        assert_eq!(got.suffix, p("y"), "{v}");
        raw.assert_drained(stream);
        // The excluded path was never announced, so its end is not sent either.
        raw.s.announce(id, &p("x"), false, &[]).expect("end");
        raw.pump();
        raw.assert_drained(stream);
    }
}

#[test]
fn requester_fin_or_reset_gets_a_fin_never_a_reset() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = listener(&mut raw, b"/", 0);
        raw.s
            .announce_initial(id, std::iter::empty::<(&Path, &[u64])>())
            .expect("initial");
        raw.pump();
        raw.clear();
        raw.fin(stream);
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }], "{v}");
        assert_eq!(raw.take_events(), vec![Event::ListenerClosed { id }]);
        assert_eq!(
            raw.s.announce(id, &p("x"), true, &[]),
            Err(RequestError::Unknown)
        );
        raw.assert_idle();

        // Reset from the requester (before any answer): still a FIN.
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = listener(&mut raw, b"/", 0);
        raw.peer_reset(stream, StreamCode(0x1));
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }], "{v}");
        assert_eq!(raw.take_events(), vec![Event::ListenerClosed { id }]);
        raw.assert_open();
        raw.assert_idle();
    }
}

#[test]
fn close_listener_fins() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = listener(&mut raw, b"/", 0);
        raw.s.close_listener(id);
        raw.pump();
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
        assert!(raw.events.is_empty());
        // The requester's later FIN only retires the stream.
        raw.fin(stream);
        assert!(raw.cmds.is_empty() && raw.events.is_empty());
        raw.assert_idle();
    }
}

#[test]
fn bytes_after_the_announce_request_are_a_violation() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (_, stream) = listener(&mut raw, b"/", 0);
        raw.send(stream, &[0x00]);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
    }
}
