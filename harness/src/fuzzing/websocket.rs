//! Fuzz entry points for the WebSocket and QMux layers: the RFC 6455 frame decoder (both
//! roles, any chunking), the opening handshake (server and client sides), QMux frames and
//! transport parameters (round trips and caps), and a whole QMux-over-WebSocket connection
//! driven by arbitrary bytes and session commands.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::http1;
use moq_proto::qmux::frame::{self as qframe, Frame, Frames};
use moq_proto::qmux::params::{MAX_PARAMS_LEN, TransportParams};
use moq_proto::qmux::{Draft, QmuxConfig, QmuxEvent, WsQmux, WsState, subprotocol};
use moq_proto::session::{Command, Dir, OpenToken, Side, StreamId};
use moq_proto::websocket::frame::{Decoder, MAX_HEADER, Message, Role};
use moq_proto::websocket::handshake::{self, ClientHandshake};
use moq_proto::wire::Version;

/// The message cap the frame target uses.
const MAX_MESSAGE: usize = 4096;

/// WebSocket frames in any chunking, for both roles: the same messages whole and trickled,
/// messages within the cap, control payloads within 125 bytes, buffered bytes bounded by one
/// header plus one message.
pub fn ws_frames(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let role = if seed & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let decode = |chunk: usize| {
        let mut decoder = Decoder::new(role, MAX_MESSAGE);
        let mut out = Vec::new();
        for piece in rest.chunks(chunk.max(1)) {
            decoder.push(piece);
            loop {
                match decoder.next_message() {
                    Ok(Some(message)) => out.push(Ok(message)),
                    Ok(None) => break,
                    Err(err) => {
                        out.push(Err(err));
                        return out;
                    }
                }
                assert!(decoder.buffered() <= rest.len());
            }
            assert!(
                decoder.buffered() <= MAX_HEADER + 2 * MAX_MESSAGE + rest.len().min(MAX_MESSAGE),
                "decoder buffered {} bytes",
                decoder.buffered()
            );
        }
        out
    };
    let whole = decode(rest.len());
    let trickled = decode(usize::from(seed >> 1) % 7 + 1);
    assert_eq!(whole, trickled, "chunking changed the messages");
    for message in whole.iter().flatten() {
        match message {
            Message::Binary(b) | Message::Text(b) => assert!(b.len() <= MAX_MESSAGE),
            Message::Ping(b) | Message::Pong(b) => assert!(b.len() <= 125),
            Message::Close(_, reason) => assert!(reason.len() <= 123),
        }
    }
}

/// The opening handshake: any request head on the server side (accepted upgrades answer with
/// a subprotocol that was offered and names a version), any answer on the client side.
pub fn ws_handshake(data: &[u8]) {
    if let Ok(Some((request, _))) = http1::parse_request(data) {
        let mut chosen = None;
        let accepted = handshake::accept(&request, |offered| {
            let choice = subprotocol::choose(offered, &Version::ALL);
            if let Some((name, _, _)) = &choice {
                assert!(offered.contains(&name.as_str()));
            }
            chosen = choice.clone();
            Ok(choice.map(|(name, _, _)| name))
        });
        if let Ok(accepted) = accepted {
            let response = accepted.response();
            assert!(response.starts_with(b"HTTP/1.1 101 "));
            if let Some(protocol) = &accepted.protocol {
                assert!(subprotocol::parse(protocol).is_some());
                assert!(chosen.is_some());
            }
        }
    }
    let client = ClientHandshake::new([3; 16], subprotocol::offer(&Version::ALL));
    if let Ok(Some((protocol, len))) = client.response(data) {
        assert!(len <= data.len());
        if let Some(protocol) = protocol {
            assert!(subprotocol::offer(&Version::ALL).contains(&protocol));
        }
    }
}

/// QMux frames: a record decodes to frames that re-encode and decode to the same frames;
/// transport parameters within their cap decode to values that round-trip.
pub fn qmux_frames(data: &[u8]) {
    let record = Bytes::copy_from_slice(data);
    let frames: Vec<Frame> = Frames::new(record).map_while(Result::ok).collect();
    let mut out = BytesMut::new();
    for frame in &frames {
        qframe::encode(frame, &mut out);
    }
    let again: Vec<Frame> = Frames::new(out.freeze())
        .collect::<Result<_, _>>()
        .expect("re-encoded frames decode");
    assert_eq!(frames, again);
    for frame in &frames {
        if let Frame::TransportParameters(body) = frame
            && let Ok(params) = TransportParams::decode(body)
        {
            assert!(body.len() <= MAX_PARAMS_LEN);
            assert_eq!(TransportParams::decode(&params.encode()), Ok(params));
        }
    }
}

/// A QMux-over-WebSocket connection (server or client, any draft) fed arbitrary socket bytes,
/// interleaved with session commands and time passing. Checks: no panic; the stream table
/// stays within the stream limits; the send backlog never exceeds what the session wrote;
/// once finished it writes nothing more; every frame it writes is a valid WebSocket frame
/// of the right masking within the peer's record size.
pub fn qmux_conn(data: &[u8]) {
    let Some((&first, mut input)) = data.split_first() else {
        return;
    };
    let side = if first & 1 == 0 {
        Side::Server
    } else {
        Side::Client
    };
    let draft = match (first >> 1) % 3 {
        0 => Draft::Qmux00,
        1 => Draft::Qmux01,
        _ => Draft::Qmux02,
    };
    let config = QmuxConfig {
        max_streams: 8,
        max_stream_data: 512,
        max_data: 2048,
        ..QmuxConfig::default()
    };
    let mut now = Instant::now();
    let mut conn = WsQmux::new(side, draft, config.clone(), now, 42);
    // What we write, read back as the peer would (the opposite role).
    let peer_role = match side {
        Side::Server => Role::Client,
        Side::Client => Role::Server,
    };
    let mut wire = Decoder::new(peer_role, 1 << 20);
    let mut written_by_session = 0usize;
    let mut granted: Vec<StreamId> = Vec::new();
    let mut token = 0u64;
    let take = |input: &mut &[u8]| -> u8 {
        let (&b, rest) = input.split_first().unwrap_or((&0, &[]));
        *input = rest;
        b
    };
    let mut finished = false;
    let mut steps = 0;
    while !input.is_empty() && steps < 2048 {
        steps += 1;
        match take(&mut input) % 8 {
            0..=2 => {
                let n = usize::from(take(&mut input)).min(input.len());
                conn.handle_data(now, &input[..n]);
                input = &input[n..];
            }
            3 => {
                token += 1;
                let dir = if take(&mut input) & 1 == 0 {
                    Dir::Bi
                } else {
                    Dir::Uni
                };
                conn.apply(Command::Open {
                    token: OpenToken(token),
                    dir,
                    priority: i32::from(take(&mut input)),
                });
            }
            4 => {
                if let Some(&id) = granted.get(usize::from(take(&mut input)) % granted.len().max(1))
                {
                    let len = usize::from(take(&mut input)) * 64;
                    written_by_session += len;
                    conn.apply(Command::Write {
                        stream: id,
                        data: Bytes::from(vec![0xAB; len]),
                    });
                    match take(&mut input) % 4 {
                        0 => conn.apply(Command::Finish { stream: id }),
                        1 => conn.apply(Command::Reset {
                            stream: id,
                            code: StreamCode(u64::from(take(&mut input))),
                        }),
                        2 => conn.apply(Command::SetPriority {
                            stream: id,
                            priority: i32::from(take(&mut input)) - 128,
                        }),
                        _ => conn.apply(Command::Stop {
                            stream: id,
                            code: StreamCode(1),
                        }),
                    }
                }
            }
            5 => {
                let n = usize::from(take(&mut input)) % 64;
                conn.apply(Command::SendDatagram {
                    data: Bytes::from(vec![1; n]),
                });
            }
            6 => {
                now += Duration::from_millis(u64::from(take(&mut input)) * 100);
                conn.handle_timeout(now);
            }
            _ => {
                if take(&mut input) == 0xFF {
                    conn.apply(Command::Close {
                        code: SessionCode(u64::from(take(&mut input))),
                        reason: "fuzz".into(),
                    });
                }
            }
        }
        while let Some(event) = conn.poll_event() {
            if let QmuxEvent::OpenGranted { id, .. } = event {
                granted.push(id);
            }
        }
        let mut out = Vec::new();
        let state = conn.poll_transmit(now, &mut out);
        if finished {
            assert!(out.is_empty(), "wrote after finishing");
        }
        finished |= state == WsState::Finished;
        wire.push(&out);
        while let Ok(Some(message)) = wire.next_message() {
            if let Message::Binary(record) = message {
                assert!(
                    record.len() <= 16384,
                    "a record larger than any peer accepts"
                );
            }
        }
        assert!(conn.qmux().backlog() <= written_by_session);
        assert!(
            conn.qmux().stream_count() <= 2 * 8 + granted.len(),
            "stream table grew past the limits"
        );
        assert!(conn.buffered() <= written_by_session + (1 << 20) + 64 * 1024);
    }
}
