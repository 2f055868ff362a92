//! Raw-peer session tests: unknown streams, malformed control streams, per-session caps,
//! garbage input, session close and cleanup (docs/wire.md §3, §6; the `moq_proto::session` contract).

mod session_support;

use std::time::Duration;

use bytes::Bytes;
use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::session::{
    Command, Dir, Event, OpenToken, RequestError, Side, StreamId, SubscribeParams, TransportStats,
};
use moq_proto::wire::{
    Announce, AnnounceOk, AnnounceRequest, AnnounceStatus, Fetch, Goaway, Path, Probe, ProbeLevel,
    Setup, Subscribe, SubscribeOk, SubscribeResponse, SubscribeStart, SubscribeUpdate, TrackInfo,
    TrackRequest, Version,
};
use session_support::*;

fn subscribe_msg(id: u64) -> Subscribe {
    Subscribe {
        id,
        broadcast: p("b"),
        track: "t".into(),
        priority: 1,
        ordered: false,
        max_latency: ms(1000),
        start: None,
        end: None,
    }
}

// -------------------------------------------------------------------------------------------
// Unknown streams

#[test]
fn unknown_bidi_stream_type_resets_only_that_stream() {
    for v in VERSIONS {
        let mut unknown: Vec<Vec<u8>> = vec![vec![0x00], vec![0x07], vec![0x3f], vec![0x40, 0x40]];
        if v == Version::Lite03 {
            unknown.push(vec![0x05]);
        }
        if !v.is_lite05() {
            unknown.push(vec![0x06]);
        }
        for side in [Side::Client, Side::Server] {
            let mut raw = Raw::ready(v, side);
            // A live subscription to show the session carries on.
            let sub = raw
                .s
                .subscribe(p("b"), "t", SubscribeParams::default())
                .expect("subscribe");
            raw.pump();
            for ty in &unknown {
                raw.clear();
                let mut bytes = ty.clone();
                bytes.extend_from_slice(b"whatever follows");
                let stream = raw.peer_bi_with(&bytes);
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
                    ],
                    "{v} {ty:02x?}"
                );
                assert!(raw.events.is_empty());
                raw.send_fin(stream, b"more");
                raw.peer_reset(stream, StreamCode(0));
                assert!(raw.cmds.is_empty());
                raw.assert_open();
            }
            raw.s.unsubscribe(sub);
            raw.pump();
            raw.fin(raw.opened(Dir::Bi)[0]);
            raw.assert_idle();
        }
    }
}

#[test]
fn unknown_uni_stream_type_is_stopped() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        for ty in [&[0x02u8][..], &[0x3f], &[0x80, 0x00, 0x10, 0x00]] {
            raw.clear();
            let stream = raw.peer_uni_with(ty, false);
            assert_eq!(
                raw.take_cmds(),
                vec![Command::Stop {
                    stream,
                    code: StreamCode::CANCEL
                }],
                "{v}"
            );
            raw.assert_open();
        }
        raw.assert_idle();
    }
}

#[test]
fn fin_before_any_message_just_closes_the_stream() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        // Empty bidi stream.
        let stream = raw.peer_bi();
        raw.fin(stream);
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Reset {
                stream,
                code: StreamCode::CANCEL
            }]
        );
        // A Subscribe stream that ends right after its type.
        let stream = raw.peer_bi_with(&[0x02]);
        raw.fin(stream);
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Reset {
                stream,
                code: StreamCode::CANCEL
            }]
        );
        // An empty uni stream.
        let stream = raw.peer_uni();
        raw.fin(stream);
        assert!(raw.cmds.is_empty());
        raw.assert_open();
        raw.assert_idle();
    }
}

// -------------------------------------------------------------------------------------------
// Malformed control streams

#[test]
fn decode_errors_on_control_streams_close_with_0x3() {
    for v in VERSIONS {
        let mut cases: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
        // SUBSCRIBE with a trailing byte inside its length.
        let mut sub = enc(&subscribe_msg(0), v);
        sub[0] += 1;
        sub.push(0);
        cases.push(("subscribe trailing", vec![[vec![0x02], sub].concat()]));
        // FIN in the middle of SUBSCRIBE.
        let sub = typed(0x02, &subscribe_msg(0), v);
        cases.push(("subscribe truncated", vec![sub[..5].to_vec(), vec![]]));
        // A message length above the 64 KiB cap, rejected from the prefix alone.
        cases.push((
            "subscribe too large",
            vec![vec![0x02, 0x80, 0x01, 0x86, 0xa0]],
        ));
        // Invalid UTF-8 in an announce prefix.
        let mut ann = vec![0x01, 0x03, 0x02, 0xff, 0xfe];
        if v.has_hops() {
            ann[1] += 1;
            ann.push(0);
        }
        cases.push(("announce utf8", vec![ann]));
        // A path with more than 32 segments.
        let long = vec!["x"; 33].join("/");
        let mut body = vec![long.len() as u8];
        body.extend_from_slice(long.as_bytes());
        body.extend_from_slice(&[1, b't', 0, 0]);
        let mut fetch = vec![0x03];
        moq_proto::coding::put_varint(&mut fetch, body.len() as u64).expect("varint");
        fetch.extend(body);
        cases.push(("fetch 33 segments", vec![fetch]));
        // GOAWAY URI over 8192 bytes (04/05).
        if v.has_goaway() {
            let mut g = vec![0x05, 0x80, 0x00, 0x20, 0x03, 0x60, 0x20, 0x01];
            g.extend(vec![b'a'; 8193]);
            cases.push(("goaway uri", vec![g]));
        }
        // Bytes after TRACK (05).
        if v.is_lite05() {
            let mut t = typed(
                0x06,
                &TrackRequest {
                    broadcast: p("b"),
                    track: "t".into(),
                },
                v,
            );
            t.push(0);
            cases.push(("bytes after track", vec![t]));
        }
        // A malformed PROBE from the requester.
        cases.push(("probe", vec![vec![0x04, 0x02, 0x40], vec![]]));
        for (what, chunks) in cases {
            let mut raw = Raw::ready(v, Side::Server);
            let stream = raw.peer_bi();
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.iter().enumerate() {
                if i == last && chunks.len() > 1 {
                    raw.send_fin(stream, chunk);
                } else {
                    raw.send(stream, chunk);
                }
            }
            assert_eq!(
                raw.close_code(),
                Some(SessionCode::PROTOCOL_VIOLATION),
                "{v} {what}"
            );
            raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
            // Everything is dropped and nothing more comes out.
            raw.assert_idle();
            raw.clear();
            raw.send(stream, b"more");
            raw.datagram(b"x");
            raw.advance(ms(1));
            assert!(raw.cmds.is_empty() && raw.events.is_empty(), "{v} {what}");
        }
    }
}

#[test]
fn malformed_responses_on_our_requests_close_with_0x3() {
    for v in VERSIONS {
        // Garbage where a subscribe response belongs.
        let mut raw = Raw::ready(v, Side::Client);
        raw.s
            .subscribe(p("b"), "t", SubscribeParams::default())
            .expect("subscribe");
        raw.pump();
        let stream = raw.last_opened();
        raw.send(stream, &[0x00, 0x01]);
        raw.assert_open();
        raw.send(stream, &[0x40]);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);

        // A duplicate non-zero hop in an announcement (04/05).
        if v.has_hops() {
            let mut raw = Raw::ready(v, Side::Client);
            raw.s.request_announcements(p("a"), 0).expect("request");
            raw.pump();
            let stream = raw.last_opened();
            if v.is_lite05() {
                raw.send(
                    stream,
                    &enc(
                        &AnnounceOk {
                            hop_id: 1,
                            active_count: 0,
                        },
                        v,
                    ),
                );
            }
            raw.send(stream, &[0x06, 0x01, 0x01, b'x', 0x02, 0x07, 0x07]);
            raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
        }
        // More than 32 hops.
        let mut raw = Raw::ready(v, Side::Client);
        raw.s.request_announcements(p("a"), 0).expect("request");
        raw.pump();
        let stream = raw.last_opened();
        if v.is_lite05() {
            raw.send(stream, &[0x02, 0x00, 0x00]);
        }
        let mut body = vec![0x01, 0x01, b'x', 33];
        if v.has_hops() {
            body.extend(1..=33u8);
        }
        let mut bytes = vec![body.len() as u8];
        bytes.extend(body);
        raw.send(stream, &bytes);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
    }
}

#[test]
fn oversized_partial_headers_hit_the_stream_buffer_cap() {
    for v in VERSIONS {
        let mut config = cfg(v, Side::Server);
        config.max_stream_buffer = 100;
        // A control stream: session closed.
        let mut raw = Raw::ready_with(config.clone());
        let stream = raw.peer_bi_with(&[0x02, 0x41, 0x00]);
        raw.send(stream, &[0u8; 50]);
        raw.assert_open();
        raw.send(stream, &[0u8; 60]);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);

        // A group stream: only that stream is stopped.
        let mut raw = Raw::ready_with(config);
        raw.s
            .subscribe(p("b"), "t", SubscribeParams::default())
            .expect("subscribe");
        raw.pump();
        let stream = raw.peer_uni_with(&[0x00, 0x41, 0x00], false);
        raw.send(stream, &[0u8; 110]);
        assert_eq!(raw.stops.get(&stream), Some(&StreamCode::MALFORMED_TRACK));
        raw.assert_open();
    }
}

// -------------------------------------------------------------------------------------------
// Caps

#[test]
fn max_subscriptions_cap() {
    for v in VERSIONS {
        let mut config = cfg(v, Side::Server);
        config.max_subscriptions = 2;
        let mut raw = Raw::ready_with(config);
        let a = raw.s.subscribe(p("b"), "1", SubscribeParams::default());
        let b = raw.s.subscribe(p("b"), "2", SubscribeParams::default());
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(
            raw.s.subscribe(p("b"), "3", SubscribeParams::default()),
            Err(RequestError::TooMany("subscriptions"))
        );
        raw.pump();
        raw.s.unsubscribe(a.unwrap());
        assert!(
            raw.s
                .subscribe(p("b"), "3", SubscribeParams::default())
                .is_ok()
        );

        // Incoming: the third is refused alone.
        raw.peer_bi_with(&typed(0x02, &subscribe_msg(0), v));
        raw.peer_bi_with(&typed(0x02, &subscribe_msg(1), v));
        raw.clear();
        let third = raw.peer_bi_with(&typed(0x02, &subscribe_msg(2), v));
        assert_eq!(
            raw.take_cmds(),
            vec![
                Command::Stop {
                    stream: third,
                    code: StreamCode::CANCEL
                },
                Command::Reset {
                    stream: third,
                    code: StreamCode::CANCEL
                }
            ],
            "{v}"
        );
        assert!(raw.events.is_empty());
        raw.assert_open();
    }
}

#[test]
fn max_announce_requests_cap() {
    for v in VERSIONS {
        let mut config = cfg(v, Side::Server);
        config.max_announce_requests = 1;
        let mut raw = Raw::ready_with(config);
        let first = raw.s.request_announcements(p("a"), 0).expect("first");
        assert_eq!(
            raw.s.request_announcements(p("b"), 0),
            Err(RequestError::TooMany("announce requests"))
        );
        raw.s.cancel_announcements(first);
        raw.s
            .request_announcements(p("b"), 0)
            .expect("after cancel");
        raw.pump();

        // Incoming: the second request is FINed empty, never reset, and not reported.
        let request = AnnounceRequest {
            prefix: Path::root(),
            exclude_hop: 0,
        };
        raw.peer_bi_with(&typed(0x01, &request, v));
        raw.clear();
        let second = raw.peer_bi_with(&typed(0x01, &request, v));
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Finish { stream: second }],
            "{v}"
        );
        assert!(raw.events.is_empty());
        raw.fin(second);
        assert!(raw.cmds.is_empty());
        raw.assert_open();
    }
}

#[test]
fn max_requests_cap() {
    for v in VERSIONS {
        let mut config = cfg(v, Side::Server);
        config.max_requests = 1;
        let mut raw = Raw::ready_with(config);
        raw.s.fetch(p("a"), "t", 0, 0).expect("first");
        assert_eq!(
            raw.s.fetch(p("a"), "t", 0, 1),
            Err(RequestError::TooMany("fetches"))
        );
        let fetch = Fetch {
            broadcast: p("a"),
            track: "t".into(),
            priority: 0,
            group: 0,
        };
        raw.peer_bi_with(&typed(0x03, &fetch, v));
        raw.clear();
        let second = raw.peer_bi_with(&typed(0x03, &fetch, v));
        assert_eq!(raw.resets.get(&second), Some(&StreamCode::CANCEL));
        assert_eq!(raw.stops.get(&second), Some(&StreamCode::CANCEL));
        assert!(raw.events.is_empty());
        if v.is_lite05() {
            raw.s.track_info(p("a"), "t").expect("first track");
            assert_eq!(
                raw.s.track_info(p("a"), "t"),
                Err(RequestError::TooMany("track requests"))
            );
            let track = TrackRequest {
                broadcast: p("a"),
                track: "t".into(),
            };
            raw.peer_bi_with(&typed(0x06, &track, v));
            raw.clear();
            let second = raw.peer_bi_with(&typed(0x06, &track, v));
            assert_eq!(raw.resets.get(&second), Some(&StreamCode::CANCEL));
            assert!(raw.events.is_empty());
        }
        raw.assert_open();
    }
}

#[test]
fn max_streams_cap() {
    for v in VERSIONS {
        let mut config = cfg(v, Side::Client);
        config.max_streams = 2;
        let mut raw = Raw::ready_with(config);
        let a = raw.peer_bi();
        let b = raw.peer_uni();
        raw.clear();
        let c = raw.peer_bi();
        let d = raw.peer_uni();
        assert_eq!(
            raw.take_cmds(),
            vec![
                Command::Stop {
                    stream: c,
                    code: StreamCode::CANCEL
                },
                Command::Reset {
                    stream: c,
                    code: StreamCode::CANCEL
                },
                Command::Stop {
                    stream: d,
                    code: StreamCode::CANCEL
                },
            ],
            "{v}"
        );
        // Data on the refused streams is ignored.
        raw.send(c, &typed(0x02, &subscribe_msg(0), v));
        assert!(raw.events.is_empty() && raw.cmds.is_empty());
        // Once one closes, a new stream is accepted.
        raw.fin(b);
        raw.fin(a);
        raw.take_cmds();
        let e = raw.peer_bi_with(&typed(0x02, &subscribe_msg(0), v));
        assert!(
            matches!(raw.take_events().as_slice(), [Event::Subscribe { .. }]),
            "{v}"
        );
        assert!(!raw.resets.contains_key(&e));
        raw.assert_open();
    }
}

// -------------------------------------------------------------------------------------------
// Transport edge cases

#[test]
fn inputs_for_unknown_streams_and_tokens_are_ignored() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let now = raw.now;
        let ghost = StreamId(999_999);
        raw.s
            .handle_stream_data(now, ghost, Bytes::from_static(b"\x02\x00"), true);
        raw.s.handle_stream_reset(now, ghost, StreamCode(1));
        raw.s.handle_stop_sending(now, ghost, StreamCode(1));
        raw.s.handle_stream_finished(now, ghost);
        raw.pump();
        assert!(raw.cmds.is_empty() && raw.events.is_empty());
        // Opening the same stream twice is ignored the second time.
        let stream = raw.peer_bi();
        raw.s.handle_stream_opened(now, stream, Dir::Bi);
        raw.pump();
        assert!(raw.cmds.is_empty());
        raw.assert_open();
    }
}

#[test]
fn grant_after_cancel_resets_the_stream() {
    let v = Version::Lite04;
    let mut raw = Raw::ready(v, Side::Client);
    raw.auto_grant = false;
    let sub = raw
        .s
        .subscribe(p("b"), "t", SubscribeParams::default())
        .expect("subscribe");
    raw.pump();
    let token = raw.pending_opens()[0].token;
    raw.s.unsubscribe(sub);
    raw.pump();
    assert_eq!(raw.cancelled, vec![token]);
    // A transport that granted anyway (a race): the session resets the stray stream.
    let now = raw.now;
    raw.s.handle_open_granted(now, token, StreamId(4242));
    raw.s
        .handle_open_granted(now, OpenToken(777), StreamId(4243));
    let cmds: Vec<Command> = std::iter::from_fn(|| raw.s.poll_command()).collect();
    assert_eq!(
        cmds,
        vec![
            Command::Reset {
                stream: StreamId(4242),
                code: StreamCode::CANCEL
            },
            Command::Reset {
                stream: StreamId(4243),
                code: StreamCode::CANCEL
            }
        ]
    );
    raw.pump();
    raw.assert_idle();
}

#[test]
fn close_and_connection_lost_drop_everything() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        raw.auto_grant = false;
        raw.s
            .subscribe(p("b"), "t", SubscribeParams::default())
            .expect("subscribe");
        raw.peer_bi_with(&typed(0x02, &subscribe_msg(0), v));
        raw.pump();
        let pending: Vec<OpenToken> = raw.pending_opens().iter().map(|o| o.token).collect();
        raw.clear();
        raw.s.close(SessionCode::NO_ERROR, "bye");
        raw.pump();
        let mut expected = vec![Command::Close {
            code: SessionCode(0),
            reason: "bye".into(),
        }];
        expected.extend(pending.iter().map(|t| Command::CancelOpen { token: *t }));
        assert_eq!(raw.take_cmds(), expected, "{v}");
        assert_eq!(
            raw.take_events(),
            vec![Event::Closed {
                code: SessionCode(0),
                reason: "bye".into(),
                local: true
            }]
        );
        raw.assert_idle();
        assert_eq!(raw.s.poll_timeout(), None);
        assert_eq!(
            raw.s.subscribe(p("b"), "t", SubscribeParams::default()),
            Err(RequestError::Closed)
        );
        // A second close, and any input, do nothing.
        raw.s.close(SessionCode(1), "again");
        let now = raw.now;
        raw.s.handle_connection_lost(now, SessionCode(2), "lost");
        raw.peer_bi_with(&typed(0x02, &subscribe_msg(1), v));
        raw.pump();
        assert!(raw.cmds.is_empty() && raw.events.is_empty());

        // Connection lost: reported, not sent.
        let mut raw = Raw::ready(v, Side::Server);
        raw.s
            .subscribe(p("b"), "t", SubscribeParams::default())
            .expect("subscribe");
        raw.pump();
        raw.clear();
        let now = raw.now;
        raw.s
            .handle_connection_lost(now, SessionCode(0x10), "goaway timeout");
        raw.pump();
        assert!(raw.cmds.is_empty());
        assert_eq!(
            raw.take_events(),
            vec![Event::Closed {
                code: SessionCode(0x10),
                reason: "goaway timeout".into(),
                local: false
            }]
        );
        assert!(raw.s.is_closed());
        raw.assert_idle();
    }
}

// -------------------------------------------------------------------------------------------
// Garbage

/// Valid stream openings for `v`, to be mutated.
fn seeds(v: Version) -> Vec<(Dir, Vec<u8>)> {
    let mut out = vec![
        (Dir::Bi, typed(0x02, &subscribe_msg(0), v)),
        (
            Dir::Bi,
            [
                typed(0x02, &subscribe_msg(1), v),
                enc(
                    &SubscribeUpdate {
                        priority: 3,
                        ordered: true,
                        max_latency: ms(5),
                        start: Some(1),
                        end: Some(2),
                    },
                    v,
                ),
            ]
            .concat(),
        ),
        (
            Dir::Bi,
            typed(
                0x01,
                &AnnounceRequest {
                    prefix: p("a"),
                    exclude_hop: 3,
                },
                v,
            ),
        ),
        (
            Dir::Bi,
            typed(
                0x03,
                &Fetch {
                    broadcast: p("a"),
                    track: "t".into(),
                    priority: 1,
                    group: 2,
                },
                v,
            ),
        ),
        (Dir::Bi, vec![0x04]),
        (
            Dir::Bi,
            typed(
                0x04,
                &Probe {
                    bitrate: 5,
                    rtt_ms: 6,
                },
                v,
            ),
        ),
        (
            Dir::Uni,
            group_bytes(v, 0, 1, &[(5, b"abc"), (-2, b""), (1, b"z")]),
        ),
        (Dir::Uni, group_bytes(v, 1, 0, &[(0, b"x")])),
    ];
    if v.has_goaway() {
        out.push((Dir::Bi, typed(0x05, &Goaway { uri: "u".into() }, v)));
    }
    if v.is_lite05() {
        out.push((
            Dir::Bi,
            typed(
                0x06,
                &TrackRequest {
                    broadcast: p("a"),
                    track: "t".into(),
                },
                v,
            ),
        ));
        out.push((
            Dir::Uni,
            typed(
                0x01,
                &Setup {
                    probe: ProbeLevel::Report,
                    path: Some("/x".into()),
                    role: None,
                },
                v,
            ),
        ));
    }
    out
}

/// Replies the peer might send on a stream we opened.
fn reply_seeds(v: Version) -> Vec<Vec<u8>> {
    let mut out = vec![
        enc(
            &Announce {
                status: AnnounceStatus::Active,
                suffix: p("x"),
                hops: vec![0, 0],
            },
            v,
        ),
        frame(v, 3, b"payload"),
        enc(
            &Probe {
                bitrate: 1,
                rtt_ms: 2,
            },
            v,
        ),
    ];
    if v.is_lite05() {
        out.push(enc(
            &AnnounceOk {
                hop_id: 1,
                active_count: 1,
            },
            v,
        ));
        out.push(resp(
            SubscribeResponse::Start(SubscribeStart { group: 1 }),
            v,
        ));
        out.push(enc(&TrackInfo::default(), v));
    } else {
        out.push(resp(
            SubscribeResponse::Ok(SubscribeOk {
                priority: 1,
                ordered: false,
                max_latency: ms(0),
                start: None,
                end: None,
            }),
            v,
        ));
    }
    out
}

fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    // Mostly valid input, so the session gets deep enough for the mangled parts to matter.
    if rng.below(3) != 0 {
        return bytes;
    }
    match rng.below(6) {
        0 => bytes,
        1 => {
            let n = rng.below(bytes.len() as u64 + 1) as usize;
            bytes.truncate(n);
            bytes
        }
        2 => {
            for _ in 0..=rng.below(3) {
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len() as u64) as usize;
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            bytes
        }
        3 => {
            let extra = rng.below(20) as usize;
            bytes.extend(rng.bytes(extra));
            bytes
        }
        4 => {
            if !bytes.is_empty() {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] = rng.next() as u8;
            }
            bytes
        }
        _ => {
            let len = rng.below(40) as usize;
            rng.bytes(len)
        }
    }
}

/// Feed `data` in random chunks, with FIN at the end when `fin`.
fn feed(raw: &mut Raw, rng: &mut Rng, stream: StreamId, data: &[u8], fin: bool) {
    let mut rest = data;
    while !rest.is_empty() {
        let n = (rng.below(rest.len() as u64) + 1) as usize;
        raw.send(stream, &rest[..n]);
        rest = &rest[n..];
    }
    if fin {
        raw.fin(stream);
    }
}

#[test]
fn garbage_never_panics() {
    let mut survived = 0u64;
    for v in VERSIONS {
        for side in [Side::Client, Side::Server] {
            let seeds_n = std::env::var("MOQ_GARBAGE_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(GARBAGE_SEEDS);
            for seed in 1..=seeds_n {
                let mut rng =
                    Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((v as u64) << 8 | side as u64));
                let mut config = cfg(v, side);
                config.max_streams = 64;
                config.hop_id = 5;
                let mut raw = if rng.below(2) == 0 {
                    Raw::ready_with(config)
                } else {
                    Raw::new(config)
                };
                let seeds = seeds(v);
                let replies = reply_seeds(v);
                let mut peer_streams: Vec<StreamId> = Vec::new();
                let steps = std::env::var("MOQ_GARBAGE_STEPS")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(40);
                for _ in 0..steps {
                    if raw.s.is_closed() {
                        break;
                    }
                    match rng.below(12) {
                        0..=3 => {
                            let (dir, bytes) =
                                seeds[rng.below(seeds.len() as u64) as usize].clone();
                            let bytes = mutate(&mut rng, bytes);
                            let stream = if dir == Dir::Bi {
                                raw.peer_bi()
                            } else {
                                raw.peer_uni()
                            };
                            let fin = rng.below(3) == 0;
                            feed(&mut raw, &mut rng, stream, &bytes, fin);
                            peer_streams.push(stream);
                        }
                        4 => {
                            // A reply (possibly mangled) on one of our streams.
                            let ours = raw.opened(Dir::Bi);
                            if let Some(stream) =
                                ours.get(rng.below(ours.len() as u64 + 1) as usize)
                            {
                                let bytes =
                                    replies[rng.below(replies.len() as u64) as usize].clone();
                                let bytes = mutate(&mut rng, bytes);
                                let fin = rng.below(4) == 0;
                                feed(&mut raw, &mut rng, *stream, &bytes, fin);
                            }
                        }
                        5 => {
                            let all: Vec<StreamId> = peer_streams
                                .iter()
                                .copied()
                                .chain(raw.opened(Dir::Bi))
                                .chain(raw.opened(Dir::Uni))
                                .collect();
                            if let Some(stream) = all.get(rng.below(all.len() as u64 + 1) as usize)
                            {
                                match rng.below(4) {
                                    0 => raw.peer_reset(*stream, StreamCode(rng.below(0x40))),
                                    1 => raw.peer_stop(*stream, StreamCode(rng.below(0x40))),
                                    2 => raw.ack(*stream),
                                    _ => raw.fin(*stream),
                                }
                            }
                        }
                        6 => {
                            let len = rng.below(30) as usize;
                            let mut d = rng.bytes(len);
                            if !d.is_empty() && rng.below(2) == 0 {
                                d[0] = rng.below(3) as u8;
                            }
                            raw.datagram(&d);
                        }
                        7 => {
                            // The application acts on whatever was reported.
                            let events = raw.take_events();
                            let now = raw.now;
                            for event in events {
                                match event {
                                    Event::Subscribe { id, .. } => {
                                        if rng.below(3) == 0 {
                                            raw.s.reject_serve(id, StreamCode::NOT_FOUND);
                                        } else if raw
                                            .s
                                            .accept_serve(id, TrackInfo::default(), Some(0))
                                            .is_ok()
                                        {
                                            for seq in 0..rng.below(4) {
                                                if let Some(g) =
                                                    raw.s.open_group(now, id, seq, now, Some(seq))
                                                {
                                                    raw.s.write_frame(
                                                        now,
                                                        g,
                                                        seq * 10,
                                                        2,
                                                        Bytes::from_static(b"ab"),
                                                    );
                                                    if rng.below(2) == 0 {
                                                        raw.s.finish_group(g);
                                                    }
                                                }
                                            }
                                            if rng.below(3) == 0 {
                                                raw.s.end_serve(id, 4);
                                            }
                                        }
                                    }
                                    Event::AnnounceRequest { id, .. } => {
                                        let x = p("a/x");
                                        let _ = raw.s.announce_initial(id, [(&x, &[1u64][..])]);
                                        if rng.below(2) == 0 {
                                            raw.s.close_listener(id);
                                        }
                                    }
                                    Event::Fetch { id, .. } => {
                                        raw.s.fetch_frame(id, 1, 1, Bytes::from_static(b"f"));
                                        raw.s.fetch_finish(id);
                                    }
                                    Event::TrackRequest { id, .. } => {
                                        raw.s.track_info_reply(id, Ok(TrackInfo::default()));
                                    }
                                    Event::SubscribeOk { id, .. } if rng.below(2) == 0 => {
                                        raw.s.unsubscribe(id);
                                    }
                                    _ => {}
                                }
                            }
                            raw.pump();
                        }
                        8 => {
                            let _ = raw.s.subscribe(p("a"), "t", SubscribeParams::default());
                            let _ = raw.s.request_announcements(p("a"), 0);
                            let _ = raw.s.fetch(p("a"), "t", 0, 0);
                            let _ = raw.s.track_info(p("a"), "t");
                            let _ = raw.s.probe(None);
                            raw.pump();
                        }
                        9 => {
                            let now = raw.now;
                            raw.s.handle_stats(
                                now,
                                TransportStats {
                                    bitrate: rng.below(10_000_000),
                                    rtt: ms(rng.below(500)),
                                },
                            );
                            raw.pump();
                        }
                        10 => {
                            if rng.below(8) == 0 {
                                let now = raw.now;
                                let _ = raw.s.goaway(now, "", Duration::from_secs(5));
                                raw.pump();
                            }
                        }
                        _ => {
                            raw.advance(ms(rng.below(3000)));
                            if rng.below(2) == 0 {
                                raw.fire_timeout();
                            }
                        }
                    }
                }
                if !raw.s.is_closed() {
                    survived += 1;
                } else if std::env::var("MOQ_GARBAGE_VERBOSE").is_ok() {
                    eprintln!("{v} {side:?} {seed}: {:?}", raw.closed);
                }
                // The contract holds whatever happened: closing always leaves nothing behind.
                raw.s.close(SessionCode(0), "done");
                raw.pump();
                raw.assert_idle();
            }
        }
    }
    // Most runs must get deep into the protocol rather than die on the first bad byte.
    eprintln!("garbage: {survived} sessions still open after their run");
    assert!(survived > 0);
}

// -------------------------------------------------------------------------------------------
// Cleanup

#[test]
fn everything_closed_leaves_the_session_idle() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let now = raw.now;

        // Our subscription with a group, ended by the publisher.
        let sub = raw
            .s
            .subscribe(p("b"), "t", SubscribeParams::default())
            .expect("subscribe");
        raw.pump();
        let sub_stream = raw.last_opened();
        let ok = if v.is_lite05() {
            resp(SubscribeResponse::Start(SubscribeStart { group: 0 }), v)
        } else {
            resp(
                SubscribeResponse::Ok(SubscribeOk {
                    priority: 0,
                    ordered: false,
                    max_latency: ms(0),
                    start: None,
                    end: None,
                }),
                v,
            )
        };
        raw.send(sub_stream, &ok);
        raw.peer_uni_with(&group_bytes(v, 0, 0, &[(0, b"g")]), true);
        raw.fin(sub_stream);
        assert!(raw.events.contains(&Event::SubscriptionClosed {
            id: sub,
            error: None
        }));

        // A subscription we serve, ended by us after its group was acknowledged.
        let (serve, serve_stream) = {
            let stream = raw.peer_bi_with(&typed(0x02, &subscribe_msg(0), v));
            let Some(Event::Subscribe { id, .. }) = raw.take_events().pop() else {
                panic!()
            };
            (id, stream)
        };
        raw.s
            .accept_serve(serve, TrackInfo::default(), None)
            .expect("accept");
        let g = raw.s.open_group(now, serve, 0, now, None).expect("group");
        raw.s.write_frame(now, g, 0, 1, Bytes::from_static(b"x"));
        raw.s.finish_group(g);
        raw.pump();
        let group_stream = raw.last_opened();
        raw.s.end_serve(serve, 1);
        raw.ack(group_stream);
        raw.fin(serve_stream);
        // The subscription's end (our FIN) is delivered once the transport acknowledges it.
        raw.ack(serve_stream);

        // Announce interest and listener.
        let interest = raw.s.request_announcements(p("a"), 0).expect("interest");
        raw.pump();
        let interest_stream = raw.last_opened();
        raw.s.cancel_announcements(interest);
        raw.fin(interest_stream);
        let listener_stream = raw.peer_bi_with(&typed(
            0x01,
            &AnnounceRequest {
                prefix: p("a"),
                exclude_hop: 0,
            },
            v,
        ));
        raw.fin(listener_stream);

        // Fetch both ways.
        raw.s.fetch(p("b"), "t", 0, 0).expect("fetch");
        raw.pump();
        let fetch_stream = raw.last_opened();
        raw.send_fin(fetch_stream, &frame(v, 0, b"f"));
        let fetch_serve = raw.peer_bi_with(&typed(
            0x03,
            &Fetch {
                broadcast: p("b"),
                track: "t".into(),
                priority: 0,
                group: 0,
            },
            v,
        ));
        let Some(Event::Fetch { id, .. }) = raw.take_events().pop() else {
            panic!()
        };
        raw.s.fetch_finish(id);
        raw.fin(fetch_serve);

        // Track both ways (05).
        if v.is_lite05() {
            raw.s.track_info(p("b"), "t").expect("track");
            raw.pump();
            let track_stream = raw.last_opened();
            raw.send_fin(track_stream, &enc(&TrackInfo::default(), v));
            let track_serve = raw.peer_bi_with(&typed(
                0x06,
                &TrackRequest {
                    broadcast: p("b"),
                    track: "t".into(),
                },
                v,
            ));
            let Some(Event::TrackRequest { id, .. }) = raw.take_events().pop() else {
                panic!()
            };
            raw.s.track_info_reply(id, Ok(TrackInfo::default()));
            raw.fin(track_serve);
        }
        raw.assert_open();
        raw.assert_idle();
    }
}

/// Seeds per version and side for [`garbage_never_panics`] (override with `MOQ_GARBAGE_SEEDS`).
const GARBAGE_SEEDS: u64 = 400;
