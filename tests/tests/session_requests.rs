//! Raw-peer session tests: FETCH, TRACK, PROBE and GOAWAY in both roles (docs/wire.md §3.3-§3.6,
//! §4.7, §4.8, §4.10, §4.11).

mod session_support;

use std::time::Duration;

use bytes::Bytes;
use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::session::{
    Command, Dir, Event, FetchServeId, RequestError, Side, StreamId, SubscribeParams,
    TransportStats,
};
use moq_proto::wire::{
    Fetch, Goaway, Path, Probe, ProbeLevel, Setup, TrackInfo, TrackRequest, Version,
};
use session_support::*;

// -------------------------------------------------------------------------------------------
// Fetch

#[test]
fn fetch_request_and_reply() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let id = raw
            .s
            .fetch(p("demo/clock"), "seconds", 5, 7)
            .expect("fetch");
        raw.pump();
        let stream = raw.last_opened();
        let mut expected = vec![0x03, 0x16, 0x0b, b'/'];
        expected.extend_from_slice(b"demo/clock");
        expected.push(7);
        expected.extend_from_slice(b"seconds");
        expected.extend_from_slice(&[0x05, 0x07]);
        assert_eq!(raw.all_written(stream), expected.as_slice(), "{v}");
        assert!(
            !raw.finished.contains(&stream),
            "never FIN the request early"
        );
        raw.clear();

        // Frames only, timestamps from a baseline of 0 (lite-05): 1000, 1020.
        let mut reply = frame(v, 1000, b"hello");
        reply.extend(frame(v, 20, b"ok"));
        raw.send(stream, &reply[..reply.len() - 1]);
        raw.send(stream, &reply[reply.len() - 1..]);
        assert!(!raw.finished.contains(&stream));
        raw.fin(stream);
        let ts = |t| v.is_lite05().then_some(t);
        assert_eq!(
            raw.take_events(),
            vec![
                Event::FetchFrameStart {
                    id,
                    timestamp: ts(1000),
                    size: 5,
                    chunk: Bytes::from_static(b"hello"),
                    remaining: 0
                },
                Event::FetchFrameStart {
                    id,
                    timestamp: ts(1020),
                    size: 2,
                    chunk: Bytes::from_static(b"o"),
                    remaining: 1
                },
                Event::FetchFramePayload {
                    id,
                    chunk: Bytes::from_static(b"k"),
                    remaining: 0
                },
                Event::FetchClosed { id, error: None },
            ],
            "{v}"
        );
        // Only after the reply's FIN do we FIN.
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
        raw.assert_idle();
    }
}

#[test]
fn fetch_reset_and_malformed_replies() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let id = raw.s.fetch(p("a"), "t", 0, 1).expect("fetch");
        raw.pump();
        let stream = raw.last_opened();
        raw.send(stream, &frame(v, 0, b"x"));
        raw.clear();
        raw.peer_reset(stream, StreamCode::NOT_FOUND);
        assert_eq!(
            raw.take_events(),
            vec![Event::FetchClosed {
                id,
                error: Some(StreamCode::NOT_FOUND)
            }]
        );
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Reset {
                stream,
                code: StreamCode::CANCEL
            }]
        );
        raw.assert_idle();

        // FIN in the middle of a frame: malformed, 0x12 both ways.
        let id = raw.s.fetch(p("a"), "t", 0, 1).expect("fetch");
        raw.pump();
        let stream = raw.last_opened();
        raw.clear();
        let truncated = frame(v, 0, b"abc");
        raw.send_fin(stream, &truncated[..truncated.len() - 1]);
        assert_eq!(
            raw.take_events().last(),
            Some(&Event::FetchClosed {
                id,
                error: Some(StreamCode::MALFORMED_TRACK)
            })
        );
        assert_eq!(raw.resets.get(&stream), Some(&StreamCode::MALFORMED_TRACK));
        raw.assert_idle();

        // cancel_fetch: reset and stop, no event.
        let id = raw.s.fetch(p("a"), "t", 0, 1).expect("fetch");
        raw.pump();
        let stream = raw.last_opened();
        raw.clear();
        raw.s.cancel_fetch(id);
        raw.pump();
        assert_eq!(
            raw.take_cmds(),
            vec![
                Command::Reset {
                    stream,
                    code: StreamCode::CANCEL
                },
                Command::Stop {
                    stream,
                    code: StreamCode::CANCEL
                }
            ]
        );
        assert!(raw.events.is_empty());
        raw.send_fin(stream, &frame(v, 0, b"late"));
        assert!(raw.events.is_empty());
        raw.assert_idle();
        raw.assert_open();
    }
}

fn peer_fetch(raw: &mut Raw) -> (FetchServeId, StreamId) {
    let m = Fetch {
        broadcast: p("demo/clock"),
        track: "seconds".into(),
        priority: 9,
        group: 7,
    };
    let v = raw.v;
    let stream = raw.peer_bi_with(&typed(0x03, &m, v));
    let events = raw.take_events();
    let [
        Event::Fetch {
            id,
            broadcast,
            track,
            priority: 9,
            group: 7,
        },
    ] = events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert_eq!(*broadcast, p("demo/clock"));
    assert_eq!(track, "seconds");
    (*id, stream)
}

#[test]
fn fetch_serving() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = peer_fetch(&mut raw);
        assert!(raw.cmds.is_empty());
        assert!(raw.s.fetch_frame(id, 1000, 5, Bytes::from_static(b"hel")));
        assert!(raw.s.fetch_payload(id, Bytes::from_static(b"lo")));
        assert!(raw.s.fetch_frame(id, 1020, 2, Bytes::from_static(b"ok")));
        assert!(raw.s.fetch_frame(id, 1010, 0, Bytes::new()));
        raw.s.fetch_finish(id);
        raw.pump();
        let mut expected = frame(v, 1000, b"hello");
        expected.extend(frame(v, 20, b"ok"));
        expected.extend(frame(v, -10, b""));
        assert_eq!(raw.all_written(stream), expected.as_slice(), "{v}");
        assert!(raw.finished.contains(&stream));
        let (frames, ended) = raw.frames_written(stream);
        assert!(ended);
        assert_eq!(frames.len(), 3);
        assert!(!raw.s.fetch_frame(id, 0, 0, Bytes::new()));
        // The requester FINs after reading our FIN.
        raw.fin(stream);
        raw.assert_idle();
    }
}

#[test]
fn fetch_serving_cancel_reject_and_half_close() {
    for v in VERSIONS {
        // Requester reset: FetchServeClosed, our side reset.
        let mut raw = Raw::ready(v, Side::Server);
        let (id, stream) = peer_fetch(&mut raw);
        raw.s.fetch_frame(id, 0, 4, Bytes::from_static(b"ab"));
        raw.pump();
        raw.clear();
        raw.peer_reset(stream, StreamCode::CANCEL);
        assert_eq!(raw.take_events(), vec![Event::FetchServeClosed { id }]);
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Reset {
                stream,
                code: StreamCode::CANCEL
            }]
        );
        assert!(!raw.s.fetch_payload(id, Bytes::from_static(b"cd")));
        raw.assert_idle();

        // STOP_SENDING from the requester: the same.
        let (id, stream) = peer_fetch(&mut raw);
        raw.peer_stop(stream, StreamCode::CANCEL);
        assert_eq!(raw.take_events(), vec![Event::FetchServeClosed { id }]);
        assert_eq!(raw.resets.get(&stream), Some(&StreamCode::CANCEL));
        raw.assert_idle();

        // Reject: reset with the code.
        let (id, stream) = peer_fetch(&mut raw);
        raw.clear();
        raw.s.fetch_reject(id, StreamCode::NOT_FOUND);
        raw.pump();
        assert_eq!(
            raw.take_cmds(),
            vec![
                Command::Stop {
                    stream,
                    code: StreamCode::NOT_FOUND
                },
                Command::Reset {
                    stream,
                    code: StreamCode::NOT_FOUND
                }
            ]
        );
        raw.assert_idle();

        // A requester FIN right after the request is tolerated as a half-close (the
        // reference would cancel; we still answer).
        let (id, stream) = peer_fetch(&mut raw);
        raw.fin(stream);
        assert!(raw.events.is_empty() && raw.cmds.is_empty());
        raw.s.fetch_frame(id, 0, 1, Bytes::from_static(b"z"));
        raw.s.fetch_finish(id);
        raw.pump();
        assert!(raw.finished.contains(&stream));
        raw.assert_idle();

        // Bytes after FETCH: protocol violation.
        let (_, stream) = peer_fetch(&mut raw);
        raw.send(stream, &[0]);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
    }
}

// -------------------------------------------------------------------------------------------
// Track (lite-05)

#[test]
fn track_request_and_reply() {
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Client);
    let id = raw.s.track_info(p("demo/clock"), "seconds").expect("track");
    raw.pump();
    let stream = raw.last_opened();
    let mut expected = vec![0x06, 0x14, 0x0b, b'/'];
    expected.extend_from_slice(b"demo/clock");
    expected.push(7);
    expected.extend_from_slice(b"seconds");
    assert_eq!(raw.all_written(stream), expected.as_slice());
    raw.clear();
    // TRACK_INFO(127, 0, 5000 ms, 1000) = `06 7f 00 53 88 43 e8`.
    raw.send(stream, &[0x06, 0x7f, 0x00, 0x53, 0x88, 0x43, 0xe8]);
    assert_eq!(
        raw.take_events(),
        vec![Event::TrackInfo {
            id,
            result: Ok(TrackInfo::default())
        }]
    );
    assert!(raw.cmds.is_empty(), "our side stays open until their FIN");
    raw.fin(stream);
    assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
    assert!(raw.events.is_empty());
    raw.assert_idle();

    // A reset instead of TRACK_INFO.
    let id = raw.s.track_info(p("x"), "y").expect("track");
    raw.pump();
    let stream = raw.last_opened();
    raw.clear();
    raw.peer_reset(stream, StreamCode::NOT_FOUND);
    assert_eq!(
        raw.take_events(),
        vec![Event::TrackInfo {
            id,
            result: Err(StreamCode::NOT_FOUND)
        }]
    );
    assert_eq!(raw.resets.get(&stream), Some(&StreamCode::CANCEL));
    raw.assert_idle();

    // Timescale 0 is invalid: protocol violation.
    raw.s.track_info(p("x"), "y").expect("track");
    raw.pump();
    let stream = raw.last_opened();
    raw.send(stream, &[0x04, 0x7f, 0x00, 0x00, 0x00]);
    raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
}

#[test]
fn track_serving() {
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Server);
    let m = TrackRequest {
        broadcast: p("demo/clock"),
        track: "seconds".into(),
    };
    let stream = raw.peer_bi_with(&typed(0x06, &m, v));
    let events = raw.take_events();
    let [
        Event::TrackRequest {
            id,
            broadcast,
            track,
        },
    ] = events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert_eq!((broadcast, track.as_str()), (&p("demo/clock"), "seconds"));
    let info = TrackInfo {
        priority: 3,
        ordered: true,
        max_latency: ms(250),
        timescale: 90_000,
    };
    raw.s.track_info_reply(*id, Ok(info));
    raw.pump();
    let got: TrackInfo = raw.next_msg(stream);
    assert_eq!(got, info);
    raw.assert_drained(stream);
    assert_eq!(
        raw.cmds_on(stream).last(),
        Some(&Command::Finish { stream })
    );
    raw.fin(stream);
    raw.assert_idle();

    // An error reply resets with the code.
    let stream = raw.peer_bi_with(&typed(0x06, &m, v));
    let Some(Event::TrackRequest { id, .. }) = raw.take_events().pop() else {
        panic!()
    };
    raw.clear();
    raw.s.track_info_reply(id, Err(StreamCode::NOT_FOUND));
    raw.pump();
    assert_eq!(raw.resets.get(&stream), Some(&StreamCode::NOT_FOUND));
    assert_eq!(raw.stops.get(&stream), Some(&StreamCode::NOT_FOUND));
    raw.assert_idle();

    // The requester gives up: our side is reset; a late reply is a no-op.
    let stream = raw.peer_bi_with(&typed(0x06, &m, v));
    let Some(Event::TrackRequest { id, .. }) = raw.take_events().pop() else {
        panic!()
    };
    raw.peer_reset(stream, StreamCode::CANCEL);
    assert_eq!(raw.resets.get(&stream), Some(&StreamCode::CANCEL));
    raw.clear();
    raw.s.track_info_reply(id, Ok(info));
    raw.pump();
    assert!(raw.cmds.is_empty());
    raw.assert_idle();
    raw.assert_open();
}

#[test]
fn track_is_lite05_only() {
    for v in [Version::Lite03, Version::Lite04] {
        let mut raw = Raw::ready(v, Side::Client);
        assert_eq!(
            raw.s.track_info(p("a"), "b"),
            Err(RequestError::Unsupported(v))
        );
        raw.pump();
        assert!(raw.cmds.is_empty());
        // A Track stream from the peer is an unknown type: reset that stream only.
        let stream = raw.peer_bi_with(&[0x06, 0x03, 0x01, b'a', 0x00]);
        assert_eq!(
            raw.take_cmds(),
            vec![
                Command::Stop {
                    stream,
                    code: StreamCode::CANCEL
                },
                Command::Reset {
                    stream,
                    code: StreamCode::CANCEL
                }
            ]
        );
        raw.assert_open();
        raw.assert_idle();
    }
}

// -------------------------------------------------------------------------------------------
// Probe

#[test]
fn probe_requester_sends_only_the_type_byte() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        raw.s.probe(None).expect("probe");
        raw.pump();
        let stream = raw.last_opened();
        assert_eq!(raw.opens.last().map(|o| o.dir), Some(Dir::Bi));
        assert_eq!(raw.all_written(stream), &[0x04], "{v}");
        assert!(!raw.finished.contains(&stream));
        // A second probe() reuses the stream.
        raw.s.probe(None).expect("probe again");
        raw.pump();
        assert_eq!(raw.last_opened(), stream);
        raw.clear();
        // lite-04 PROBE(2,000,000 bps, 25 ms) = `05 80 1e 84 80 19`; lite-03 has no RTT.
        if v == Version::Lite03 {
            raw.send(stream, &[0x04, 0x80, 0x1e, 0x84, 0x80]);
        } else {
            raw.send(stream, &[0x05, 0x80, 0x1e, 0x84, 0x80, 0x19]);
        }
        let rtt = if v == Version::Lite03 { ms(0) } else { ms(25) };
        assert_eq!(
            raw.take_events(),
            vec![Event::ProbeReport {
                bitrate: 2_000_000,
                rtt
            }]
        );
        raw.fin(stream);
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
        raw.assert_idle();

        // With a target, a PROBE follows the type.
        let mut raw = Raw::ready(v, Side::Client);
        raw.s.probe(Some(1_000)).expect("probe");
        raw.pump();
        let stream = raw.last_opened();
        let mut expected = vec![0x04];
        expected.extend(enc(
            &Probe {
                bitrate: 1_000,
                rtt_ms: 0,
            },
            v,
        ));
        assert_eq!(raw.all_written(stream), expected.as_slice());
    }
}

#[test]
fn probe_responder_reports_at_once_and_on_change() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let now = raw.now;
        raw.s.handle_stats(
            now,
            TransportStats {
                bitrate: 1_000_000,
                rtt: ms(100),
            },
        );
        raw.pump();
        assert!(raw.cmds.is_empty());
        let stream = raw.peer_bi_with(&[0x04]);
        let report = |bitrate, rtt_ms| enc(&Probe { bitrate, rtt_ms }, v);
        assert_eq!(raw.take_unread(stream), report(1_000_000, 100), "{v}");

        let stats = |raw: &mut Raw, after: Duration, bitrate, rtt| {
            raw.now += after;
            let now = raw.now;
            raw.s.handle_stats(now, TransportStats { bitrate, rtt });
            raw.pump();
        };
        // RTT +24%: no report; +25%: report at once (even 10 ms later).
        stats(&mut raw, ms(10), 1_000_000, ms(124));
        raw.assert_drained(stream);
        stats(&mut raw, ms(10), 1_000_000, ms(125));
        assert_eq!(raw.take_unread(stream), report(1_000_000, 125), "{v}");
        // Bitrate +10%: not within 100 ms, nor half-way through the decay (threshold ~12.6%),
        // but yes at 9 s (threshold ~2.3%).
        stats(&mut raw, ms(50), 1_100_000, ms(125));
        raw.assert_drained(stream);
        stats(&mut raw, ms(5000 - 50), 1_100_000, ms(125));
        raw.assert_drained(stream);
        stats(&mut raw, ms(4000), 1_100_000, ms(125));
        assert_eq!(raw.take_unread(stream), report(1_100_000, 125));
        // Any change is reported by 10 s after the last report, through the timer.
        stats(&mut raw, ms(1), 1_100_001, ms(125));
        raw.assert_drained(stream);
        let last_report = raw.now - ms(1);
        assert_eq!(
            raw.s.poll_timeout(),
            Some(last_report + Duration::from_secs(10))
        );
        raw.fire_timeout();
        assert_eq!(raw.take_unread(stream), report(1_100_001, 125));
        assert_eq!(raw.s.poll_timeout(), None, "nothing new to report");

        // A target from the requester is accepted and ignored.
        raw.send(stream, &report(5, 5));
        raw.assert_open();
        raw.assert_drained(stream);
        // Requester FIN: we FIN.
        raw.clear();
        raw.fin(stream);
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
        raw.assert_idle();
    }
}

#[test]
fn lite05_probe_is_gated_by_setup() {
    let v = Version::Lite05;
    // Our level None: the peer's probe stream is refused.
    let mut config = cfg(v, Side::Server);
    config.probe_level = ProbeLevel::None;
    let mut raw = Raw::ready_with(config);
    let stream = raw.peer_bi_with(&[0x04]);
    assert_eq!(
        raw.take_cmds(),
        vec![
            Command::Stop {
                stream,
                code: StreamCode::CANCEL
            },
            Command::Reset {
                stream,
                code: StreamCode::CANCEL
            }
        ]
    );
    raw.assert_open();

    // The peer's level None (or no SETUP yet): we do not open one.
    let mut raw = Raw::new(cfg(v, Side::Client));
    assert_eq!(raw.s.probe(None), Err(RequestError::NotEnabled("probing")));
    let setup = Setup {
        probe: ProbeLevel::None,
        path: None,
        role: None,
    };
    raw.peer_uni_with(&typed(0x01, &setup, v), true);
    assert_eq!(raw.s.probe(None), Err(RequestError::NotEnabled("probing")));
    raw.pump();
    assert_eq!(raw.opened(Dir::Bi), Vec::<StreamId>::new());

    // Level Report: allowed.
    let mut raw = Raw::ready(v, Side::Client);
    raw.s.probe(None).expect("peer enabled probing");
}

// -------------------------------------------------------------------------------------------
// Goaway

#[test]
fn goaway_received() {
    for v in [Version::Lite04, Version::Lite05] {
        let mut raw = Raw::ready(v, Side::Client);
        // `05 01 00`: GOAWAY with an empty URI.
        let stream = raw.peer_bi_with(&[0x05, 0x01, 0x00]);
        assert_eq!(
            raw.take_events(),
            vec![Event::Goaway { uri: String::new() }]
        );
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }], "{v}");
        raw.assert_idle();
        assert_eq!(
            raw.s.subscribe(p("a"), "t", SubscribeParams::default()),
            Err(RequestError::GoingAway)
        );
        assert_eq!(
            raw.s.request_announcements(Path::root(), 0),
            Err(RequestError::GoingAway)
        );
        assert_eq!(raw.s.fetch(p("a"), "t", 0, 0), Err(RequestError::GoingAway));
        assert_eq!(raw.s.probe(None), Err(RequestError::GoingAway));
        if v.is_lite05() {
            assert_eq!(raw.s.track_info(p("a"), "t"), Err(RequestError::GoingAway));
        }
        raw.pump();
        assert!(raw.cmds.is_empty());
        // Incoming requests are still served.
        raw.peer_bi_with(&[0x01, 0x02, 0x00, 0x00]);
        assert!(matches!(
            raw.take_events().as_slice(),
            [Event::AnnounceRequest { .. }]
        ));
        raw.assert_open();

        // A second GOAWAY: protocol violation.
        let goaway = Goaway {
            uri: "https://other".into(),
        };
        raw.peer_bi_with(&typed(0x05, &goaway, v));
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
    }
}

#[test]
fn goaway_with_a_uri() {
    for v in [Version::Lite04, Version::Lite05] {
        let mut raw = Raw::ready(v, Side::Client);
        let goaway = Goaway {
            uri: "moqt://other:443/x".into(),
        };
        let stream = raw.peer_bi();
        raw.send_bytewise(stream, &typed(0x05, &goaway, v), false);
        assert_eq!(
            raw.take_events(),
            vec![Event::Goaway {
                uri: "moqt://other:443/x".into()
            }]
        );
        // The sender resets its side afterwards (as the reference does): not an error.
        raw.peer_reset(stream, StreamCode::CANCEL);
        raw.assert_open();
        raw.assert_idle();
    }
}

#[test]
fn goaway_sent_then_deadline() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        raw.advance(ms(5));
        let now = raw.now;
        raw.s
            .goaway(now, "", Duration::from_secs(10))
            .expect("goaway");
        raw.pump();
        if v.has_goaway() {
            let stream = raw.last_opened();
            assert_eq!(raw.opens.last().map(|o| o.dir), Some(Dir::Bi));
            assert_eq!(raw.all_written(stream), &[0x05, 0x01, 0x00], "{v}");
            assert!(raw.finished.contains(&stream));
            // The peer resets its side of the stream: fine.
            raw.peer_reset(stream, StreamCode::CANCEL);
        } else {
            assert!(raw.cmds.is_empty(), "{v}: nothing is sent on lite-03");
        }
        assert_eq!(
            raw.s.subscribe(p("a"), "t", SubscribeParams::default()),
            Err(RequestError::GoingAway)
        );
        // A second goaway() changes nothing.
        raw.s
            .goaway(now, "x", Duration::from_secs(1))
            .expect("again");
        raw.pump();
        assert_eq!(raw.timeout_offset(), Some(ms(10_005)));
        raw.at(ms(10_004));
        raw.assert_open();
        raw.clear();
        assert_eq!(raw.fire_timeout(), Some(ms(10_005)));
        raw.assert_closed(SessionCode::GOAWAY_TIMEOUT);
        assert_eq!(raw.s.poll_timeout(), None);
        assert_eq!(
            raw.s.goaway(raw.now, "", Duration::ZERO),
            Err(RequestError::Closed)
        );
    }
}

#[test]
fn goaway_stream_on_lite03_is_unknown() {
    let v = Version::Lite03;
    let mut raw = Raw::ready(v, Side::Client);
    let stream = raw.peer_bi_with(&[0x05, 0x01, 0x00]);
    assert_eq!(raw.resets.get(&stream), Some(&StreamCode::CANCEL));
    assert_eq!(raw.stops.get(&stream), Some(&StreamCode::CANCEL));
    assert!(raw.events.is_empty());
    raw.assert_open();
}

#[test]
fn track_reply_fin_without_track_info_fails_the_query() {
    let v = Version::Lite05;
    let mut raw = Raw::ready(v, Side::Client);
    let id = raw.s.track_info(p("a"), "t").expect("track");
    raw.pump();
    let stream = raw.last_opened();
    raw.clear();
    raw.fin(stream);
    assert_eq!(
        raw.take_events(),
        vec![Event::TrackInfo {
            id,
            result: Err(StreamCode::CANCEL)
        }]
    );
    assert_eq!(raw.resets.get(&stream), Some(&StreamCode::CANCEL));
    raw.assert_idle();
    raw.assert_open();
}

#[test]
fn probe_stream_reset_frees_the_slot() {
    for v in VERSIONS {
        // Responder: a reset probe stream gets no more reports, and a new one is answered.
        let mut raw = Raw::ready(v, Side::Server);
        let first = raw.peer_bi_with(&[0x04]);
        raw.peer_reset(first, StreamCode::CANCEL);
        assert_eq!(raw.resets.get(&first), Some(&StreamCode::CANCEL));
        let now = raw.now;
        raw.s.handle_stats(
            now,
            TransportStats {
                bitrate: 9,
                rtt: ms(9),
            },
        );
        raw.pump();
        let second = raw.peer_bi_with(&[0x04]);
        assert!(
            !raw.unread(second).is_empty(),
            "{v}: the new probe stream is answered"
        );
        assert!(!raw.resets.contains_key(&second));
        // STOP_SENDING works the same way.
        raw.peer_stop(second, StreamCode::CANCEL);
        let third = raw.peer_bi_with(&[0x04]);
        assert!(!raw.unread(third).is_empty(), "{v}");
        raw.assert_open();

        // Requester: after the responder resets, probe() opens a new stream.
        let mut raw = Raw::ready(v, Side::Client);
        raw.s.probe(None).expect("probe");
        raw.pump();
        let first = raw.last_opened();
        raw.peer_reset(first, StreamCode::MALFORMED_TRACK);
        raw.s.probe(None).expect("probe again");
        raw.pump();
        assert_ne!(raw.last_opened(), first, "{v}");
    }
}
