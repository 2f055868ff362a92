//! Raw-peer session tests: the lite-05 SETUP exchange (docs/wire.md §3.9, §4.9) and the Setup
//! stream type on lite-03/04 (§3).

mod session_support;

use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::session::{Command, Dir, Event, Side, SubscribeParams};
use moq_proto::wire::{ProbeLevel, Role, Setup, Subscribe, Version, param};
use session_support::*;

const V05: Version = Version::Lite05;

#[test]
fn client_and_server_open_one_setup_stream() {
    // Client with Path: `01 0b 02 | 01 01 01 | 02 05 "/anon"`, then FIN.
    let mut config = cfg(V05, Side::Client);
    config.setup_path = Some("/anon".into());
    let client = Raw::new(config);
    let id = client.opened(Dir::Uni)[0];
    assert_eq!(
        client.opens[0].priority,
        i32::MAX,
        "control streams get the top priority"
    );
    assert_eq!(
        client.cmds,
        vec![
            Command::Open {
                token: client.opens[0].token,
                dir: Dir::Uni,
                priority: i32::MAX
            },
            Command::Write {
                stream: id,
                data: bytes::Bytes::from_static(&[
                    0x01, 0x0b, 0x02, 0x01, 0x01, 0x01, 0x02, 0x05, b'/', b'a', b'n', b'o', b'n'
                ]),
            },
            Command::Finish { stream: id },
        ]
    );

    // Server: Probe only, never Path.
    let mut config = cfg(V05, Side::Server);
    config.setup_path = Some("/ignored".into());
    let mut server = Raw::new(config);
    let id = server.opened(Dir::Uni)[0];
    assert_eq!(
        server.all_written(id),
        &[0x01, 0x04, 0x01, 0x01, 0x01, 0x01]
    );
    assert!(server.finished.contains(&id));
    assert_eq!(server.next_varint(id), 1);
    let setup: Setup = server.next_msg(id);
    assert_eq!(setup.path, None);
    assert_eq!(setup.probe, ProbeLevel::Report);

    // Probe None and no path: the empty SETUP `01 01 00` is still sent.
    let mut config = cfg(V05, Side::Client);
    config.probe_level = ProbeLevel::None;
    let client = Raw::new(config);
    assert_eq!(
        client.all_written(client.opened(Dir::Uni)[0]),
        &[0x01, 0x01, 0x00]
    );

    // The Role parameter when configured.
    let mut config = cfg(V05, Side::Client);
    config.probe_level = ProbeLevel::None;
    config.setup_role = Some(Role::Subscriber);
    let client = Raw::new(config);
    assert_eq!(
        client.all_written(client.opened(Dir::Uni)[0]),
        &[0x01, 0x04, 0x01, 0x03, 0x01, 0x02]
    );
}

#[test]
fn no_setup_stream_before_lite05() {
    for v in [Version::Lite03, Version::Lite04] {
        for side in [Side::Client, Side::Server] {
            let raw = Raw::new(cfg(v, side));
            assert!(raw.cmds.is_empty(), "{v}: {:?}", raw.cmds);
            assert!(raw.events.is_empty());
        }
    }
}

#[test]
fn peer_setup_is_reported() {
    let mut server = Raw::new(cfg(V05, Side::Server));
    server.clear();
    let id = server.peer_uni();
    server.send_fin(
        id,
        &setup_stream(&[
            param_varint(param::PROBE, 2),
            param_bytes(param::PATH, b"/anon/room"),
            param_varint(param::ROLE, 1),
        ]),
    );
    assert_eq!(
        server.take_events(),
        vec![Event::Setup {
            path: Some("/anon/room".into()),
            probe: ProbeLevel::Increase,
            role: Some(Role::Publisher),
        }]
    );
    // The stream is done in both directions; nothing was sent on it.
    assert!(server.cmds_on(id).is_empty());
    server.assert_open();
    server.assert_idle();
}

#[test]
fn server_holds_back_events_until_client_setup() {
    let mut server = Raw::new(cfg(V05, Side::Server));
    server.clear();
    // A SUBSCRIBE that beats the client's SETUP.
    let subscribe = Subscribe {
        id: 0,
        broadcast: p("demo"),
        track: "clock".into(),
        priority: 1,
        ordered: false,
        max_latency: ms(1000),
        start: None,
        end: None,
    };
    let sub_stream = server.peer_bi_with(&typed(0x02, &subscribe, V05));
    assert!(server.events.is_empty(), "{:?}", server.events);
    // SETUP split across two chunks.
    let bytes = setup_stream(&[param_bytes(param::PATH, b"/anon")]);
    let setup_stream_id = server.peer_uni();
    server.send(setup_stream_id, &bytes[..3]);
    assert!(server.events.is_empty());
    server.send_fin(setup_stream_id, &bytes[3..]);
    let events = server.take_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0],
        Event::Setup {
            path: Some("/anon".into()),
            probe: ProbeLevel::None,
            role: None
        }
    );
    assert!(
        matches!(&events[1], Event::Subscribe { broadcast, track, .. } if *broadcast == p("demo") && track == "clock"),
        "{events:?}"
    );
    assert!(server.cmds_on(sub_stream).is_empty());

    // A client does not wait for the server's SETUP.
    let mut client = Raw::new(cfg(V05, Side::Client));
    client.clear();
    client.peer_bi_with(&typed(0x02, &subscribe, V05));
    assert!(
        matches!(client.events.as_slice(), [Event::Subscribe { .. }]),
        "{:?}",
        client.events
    );
}

#[test]
fn server_holds_back_media_in_order_until_client_setup() {
    // A server subscribes (allowed before the client's SETUP) and a group stream overtakes
    // the client's SETUP: everything it reports waits, in order, behind the Setup event.
    let mut server = Raw::new(cfg(V05, Side::Server));
    server.clear();
    let sub = server
        .s
        .subscribe(p("demo"), "clock", SubscribeParams::default())
        .expect("subscribe");
    server.pump();
    server.peer_uni_with(&group_bytes(V05, 0, 3, &[(7, b"hello")]), true);
    let before: Vec<_> = server.take_events();
    let setup_id = server.peer_uni();
    server.send_fin(setup_id, &setup_stream(&[]));
    let mut events = before;
    events.extend(server.take_events());
    assert!(
        matches!(events.first(), Some(Event::Setup { .. })),
        "nothing may be reported before the client's SETUP: {events:?}"
    );
    let media: Vec<&Event> = events.iter().skip(1).collect();
    assert!(
        matches!(media.as_slice(), [
            Event::GroupStart { id, seq: 3 },
            Event::FrameStart { timestamp: Some(7), size: 5, .. },
            Event::GroupEnd { seq: 3, .. },
        ] if *id == sub),
        "{media:?}"
    );
}

#[test]
fn duplicate_setup_parameter_closes_with_protocol_violation() {
    for side in [Side::Client, Side::Server] {
        let mut raw = Raw::new(cfg(V05, side));
        raw.clear();
        raw.peer_uni_with(
            &setup_stream(&[param_varint(param::PROBE, 1), param_varint(param::PROBE, 1)]),
            true,
        );
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
        assert!(raw.s.poll_timeout().is_none());
    }
}

#[test]
fn unknown_setup_parameters_are_ignored() {
    let mut server = Raw::new(cfg(V05, Side::Server));
    server.clear();
    server.peer_uni_with(
        &setup_stream(&[
            param_varint(param::HOP, 123_456_789),
            param_bytes(0x3f, &[0xde, 0xad, 0xbe, 0xef]),
            param_varint(param::COST, 7),
            param_bytes(param::PATH, b"/x"),
            param_bytes(0x1234, &[]),
        ]),
        true,
    );
    server.assert_open();
    assert_eq!(
        server.take_events(),
        vec![Event::Setup {
            path: Some("/x".into()),
            probe: ProbeLevel::None,
            role: None
        }]
    );
}

#[test]
fn second_setup_stream_closes_with_protocol_violation() {
    for side in [Side::Client, Side::Server] {
        let mut raw = Raw::ready(V05, side);
        raw.peer_uni_with(&setup_stream(&[]), true);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
    }
}

#[test]
fn malformed_setup_closes_the_session() {
    // Trailing bytes after SETUP on the stream.
    let mut raw = Raw::new(cfg(V05, Side::Server));
    let mut bytes = setup_stream(&[]);
    bytes.push(0x00);
    raw.peer_uni_with(&bytes, true);
    raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);

    // A varint parameter with bytes after the varint.
    let mut raw = Raw::new(cfg(V05, Side::Server));
    raw.peer_uni_with(&setup_stream(&[param_bytes(param::PROBE, &[1, 0])]), true);
    raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);

    // FIN inside the SETUP message.
    let mut raw = Raw::new(cfg(V05, Side::Server));
    raw.peer_uni_with(&[0x01, 0x05, 0x01], true);
    raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);

    // The Setup stream reset before SETUP completed.
    let mut raw = Raw::new(cfg(V05, Side::Server));
    let id = raw.peer_uni_with(&[0x01], false);
    raw.peer_reset(id, StreamCode(0));
    raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);

    // More than 64 parameters.
    let mut raw = Raw::new(cfg(V05, Side::Server));
    let params: Vec<Vec<u8>> = (0..65).map(|i| param_varint(0x100 + i, 0)).collect();
    raw.peer_uni_with(&setup_stream(&params), true);
    raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
}

#[test]
fn setup_stream_before_lite05_is_stopped_with_code_0() {
    for v in [Version::Lite03, Version::Lite04] {
        for side in [Side::Client, Side::Server] {
            let mut raw = Raw::ready(v, side);
            let id = raw.peer_uni_with(&setup_stream(&[param_varint(param::PROBE, 1)]), false);
            assert_eq!(
                raw.take_cmds(),
                vec![Command::Stop {
                    stream: id,
                    code: StreamCode::INTERNAL
                }],
                "{v}"
            );
            assert!(raw.events.is_empty());
            // More bytes and the FIN are ignored; the session lives on.
            raw.send_fin(id, &[1, 2, 3]);
            assert!(raw.cmds.is_empty());
            raw.assert_open();
            raw.assert_idle();
        }
    }
}

#[test]
fn setup_stream_without_setup_is_a_violation() {
    for side in [Side::Client, Side::Server] {
        let mut raw = Raw::new(cfg(V05, side));
        raw.peer_uni_with(&[0x01], true);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
    }
}
