//! Fuzz entry points for the HTTP/3 + WebTransport layer and the HTTP/1.1 side: every decoder
//! (frames, SETTINGS, QPACK with Huffman, capsules, the CONNECT fields and their structured
//! lists, HTTP/1.1 requests and responses) and the [`H3Conn`] state machine driven by a
//! scripted peer. Each decoder checks its round trip and its caps; the state machine checks
//! that nothing panics, that held data stays within its caps, and that nothing but a close
//! follows a close.

use std::time::{Duration, Instant};

use bytes::Bytes;

use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::http1;
use moq_proto::session::{Command, Dir, OpenToken, StreamId};
use moq_proto::webtransport::capsule::{Capsule, CapsuleReader, MAX_CLOSE_REASON};
use moq_proto::webtransport::connect::{self, ConnectRequest, ConnectResponse};
use moq_proto::webtransport::frame::{FrameEvent, FrameReader, Handling};
use moq_proto::webtransport::settings::Settings;
use moq_proto::webtransport::{
    H3Config, H3Conn, H3Event, Route, SessionInput, TransportCommand, huffman, qpack,
};
use moq_proto::wire::Version;

/// Split input into chunks whose sizes come from the input itself (first byte: a seed).
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let Some((&seed, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut size = usize::from(seed % 17) + 1;
    while !rest.is_empty() {
        let n = size.min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        size = (size * 7 + 3) % 23 + 1;
    }
    out
}

/// HTTP/3 frames in any chunking: collected frames stay within the cap, and streamed plus
/// collected payloads never exceed what arrived.
pub fn h3_frames(data: &[u8]) {
    const CAP: usize = 256;
    let mut reader = FrameReader::new(CAP);
    let mut seen = 0usize;
    let mut arrived = 0usize;
    for chunk in chunks(data) {
        arrived += chunk.len();
        reader.push(chunk);
        loop {
            let event = reader.next(|ty| match ty % 3 {
                0 => Handling::Collect,
                1 => Handling::Stream,
                _ => Handling::Skip,
            });
            match event {
                Ok(Some(FrameEvent::Frame { payload, .. })) => {
                    assert!(payload.len() <= CAP);
                    seen += payload.len();
                }
                Ok(Some(FrameEvent::Chunk { data, .. })) => seen += data.len(),
                Ok(Some(FrameEvent::Skipped { .. })) => {}
                Ok(None) => break,
                Err(err) => {
                    assert!(err.len > CAP as u64);
                    return;
                }
            }
        }
        assert!(seen <= arrived);
        assert!(reader.buffered() <= arrived);
    }
}

/// SETTINGS: what decodes re-encodes to a payload that decodes the same.
pub fn h3_settings(data: &[u8]) {
    if let Ok(settings) = Settings::decode(data) {
        let mut again = Vec::new();
        settings.encode(&mut again);
        assert_eq!(Settings::decode(&again).as_ref(), Ok(&settings));
    }
}

/// QPACK field sections: decoding respects the cap; what decodes re-encodes and decodes the
/// same; Huffman strings round-trip through the encoder.
pub fn qpack(data: &[u8]) {
    const CAP: usize = 4096;
    if let Ok(fields) = qpack::decode(data, CAP) {
        let size: usize = fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
        assert!(size <= CAP);
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut block = Vec::new();
        qpack::encode(&pairs, &mut block);
        assert_eq!(qpack::decode(&block, usize::MAX).as_ref(), Ok(&fields));
    }
    let mut out = Vec::new();
    if huffman::decode(data, &mut out, CAP).is_ok() {
        assert!(out.len() <= CAP);
        let mut coded = Vec::new();
        huffman::encode(&out, &mut coded);
        assert_eq!(coded.len(), huffman::encoded_len(&out));
        let mut back = Vec::new();
        assert!(huffman::decode(&coded, &mut back, CAP).is_ok());
        assert_eq!(back, out);
    } else {
        assert!(
            out.is_empty(),
            "a failed decode leaves the output as it was"
        );
    }
}

/// Capsules in any chunking: a close's reason is within its cap; nothing unknown is buffered.
pub fn capsule(data: &[u8]) {
    let mut reader = CapsuleReader::default();
    for chunk in chunks(data) {
        match reader.push(chunk) {
            Ok(capsules) => {
                for capsule in capsules {
                    if let Capsule::Close { reason, .. } = capsule {
                        // Lossy UTF-8 may grow invalid bytes into replacement characters.
                        assert!(reason.chars().count() <= MAX_CLOSE_REASON);
                    }
                }
            }
            Err(_) => return,
        }
        assert!(reader.buffered() <= 4 + MAX_CLOSE_REASON + 16 + chunk.len());
    }
}

/// The CONNECT side: structured-field lists and items from arbitrary text, and requests and
/// responses from arbitrary fields.
pub fn connect_fields(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some((items, form)) = connect::parse_list(&text) {
        let again = connect::format_list(&items, form);
        assert_eq!(connect::parse_list(&again), Some((items, form)));
    }
    let _ = connect::parse_item(&text);
    // Fields: lines of `name: value`.
    let fields: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    if let Ok(request) = ConnectRequest::from_fields(&fields) {
        let _ = request.choose(&Version::ALL);
        let sent: Vec<(String, String)> = request
            .to_fields()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        let back = ConnectRequest::from_fields(&sent).expect("our own request reads back");
        assert_eq!(back.path, request.path);
        assert_eq!(back.protocols, request.protocols);
    }
    let _ = ConnectResponse::from_fields(&fields);
}

/// HTTP/1.1: requests and responses never panic and respect the caps.
pub fn http1(data: &[u8]) {
    match http1::parse_request(data) {
        Ok(Some((request, used))) => {
            assert!(used <= data.len());
            let response = http1::certificate_route(&request, Some("00"));
            let _ = response.encode(request.method == "HEAD");
        }
        Ok(None) => assert!(data.len() < http1::MAX_REQUEST),
        Err(err) => assert!(matches!(err.status(), 400 | 431)),
    }
    for eof in [false, true] {
        if let Ok(Some((_, body))) = http1::parse_response(data, eof) {
            assert!(body.len() <= data.len());
        }
    }
}

/// The whole [`H3Conn`], client or server, against a scripted peer.
///
/// Byte 0: the side (bit 0: client). Then operations, one byte each plus arguments: a peer
/// stream opens (bidi or uni, with a small ID), bytes or a FIN on a stream, a reset, a stop, a
/// datagram, the clock moving, an acknowledgement, the application accepting or rejecting a
/// request, the session writing, resetting or closing. Checks: no panic; after the layer asks
/// for the connection's close it asks for nothing else; held streams and bytes stay within
/// their caps; every session open it was given is granted at most once.
pub fn h3_conn(data: &[u8]) {
    let Some((&first, mut input)) = data.split_first() else {
        return;
    };
    let client = first & 1 == 1;
    let cfg = H3Config::default();
    let mut conn = if client {
        H3Conn::client(
            cfg.clone(),
            ConnectRequest::new("localhost:4443", "/", &Version::ALL),
        )
    } else {
        H3Conn::server(cfg.clone())
    };
    let mut now = Instant::now();
    let mut closed = false;
    let mut next_local = [0u64; 2];
    let mut pending_opens: Vec<(OpenToken, Dir)> = Vec::new();
    let mut established = false;
    let mut session_streams: Vec<StreamId> = Vec::new();
    let take = |input: &mut &[u8]| -> u8 {
        let (&b, rest) = input.split_first().unwrap_or((&0, &[]));
        *input = rest;
        b
    };
    let mut steps = 0;
    while !input.is_empty() && steps < 4096 {
        steps += 1;
        let op = take(&mut input);
        let id = |b: u8| {
            // Bit 6 clear: a stream the peer opened; set: one we opened (e.g. our CONNECT).
            let peer = b & 0x40 == 0;
            let initiator = u64::from(client == peer); // 1 = server-initiated
            let uni = if b & 0x80 != 0 { 2 } else { 0 };
            StreamId(u64::from(b & 0x1f) * 4 + initiator + uni)
        };
        match op % 12 {
            0 => {
                let b = take(&mut input);
                let dir = if b & 0x80 != 0 { Dir::Uni } else { Dir::Bi };
                conn.handle_stream_opened(now, id(b), dir);
            }
            1 | 2 => {
                let b = take(&mut input);
                let len = usize::from(take(&mut input)) % 64;
                let n = len.min(input.len());
                let bytes = Bytes::copy_from_slice(&input[..n]);
                input = &input[n..];
                let mut chunks = vec![bytes];
                let fin = op % 12 == 2;
                if let Route::Session { .. } = conn.handle_stream_data(now, id(b), &mut chunks, fin)
                {
                    session_streams.push(id(b));
                }
            }
            3 => {
                let b = take(&mut input);
                let code = u64::from(take(&mut input)) << 40 | u64::from(b);
                let _ = conn.handle_stream_reset(now, id(b), code);
            }
            4 => {
                let b = take(&mut input);
                let _ = conn.handle_stop_sending(now, id(b), u64::from(take(&mut input)));
            }
            5 => {
                let len = usize::from(take(&mut input)) % 32;
                let n = len.min(input.len());
                let _ = conn.handle_datagram(now, Bytes::copy_from_slice(&input[..n]));
                input = &input[n..];
            }
            6 => {
                now += Duration::from_millis(u64::from(take(&mut input)) * 20);
                conn.handle_timeout(now);
            }
            7 => {
                // Acknowledge one of our streams.
                let b = take(&mut input);
                let ours = u64::from(!client) | if b & 0x80 != 0 { 2 } else { 0 };
                conn.handle_stream_finished(now, StreamId(u64::from(b & 0x1f) * 4 + ours));
            }
            8 => {
                if take(&mut input) & 1 == 0 {
                    conn.accept(now, Version::Lite05);
                } else {
                    conn.reject(now, 400);
                }
            }
            9 if established => {
                let token = OpenToken(u64::from(take(&mut input)));
                let dir = if token.0 & 1 == 0 { Dir::Uni } else { Dir::Bi };
                conn.send(
                    now,
                    Command::Open {
                        token,
                        dir,
                        priority: 0,
                    },
                );
            }
            10 if !session_streams.is_empty() => {
                let stream = session_streams[usize::from(take(&mut input)) % session_streams.len()];
                conn.send(
                    now,
                    Command::Reset {
                        stream,
                        code: StreamCode(u64::from(take(&mut input))),
                    },
                );
            }
            11 => conn.send(
                now,
                Command::Close {
                    code: SessionCode(u64::from(take(&mut input))),
                    reason: "fuzz".into(),
                },
            ),
            _ => {}
        }
        // Drain, granting opens as a transport with plenty of credit would.
        loop {
            let mut progressed = false;
            while let Some(command) = conn.poll_command() {
                progressed = true;
                assert!(!closed, "{command:?} after the connection close");
                match command {
                    TransportCommand::Open { token, dir, .. } => pending_opens.push((token, dir)),
                    TransportCommand::Close { .. } => closed = true,
                    _ => {}
                }
            }
            for (token, dir) in pending_opens.drain(..) {
                progressed = true;
                let index = usize::from(dir == Dir::Uni);
                let n = next_local[index];
                next_local[index] += 1;
                let kind = u64::from(!client) | if dir == Dir::Uni { 2 } else { 0 };
                let _ = conn.handle_open_granted(now, token, StreamId(n * 4 + kind));
            }
            while let Some(event) = conn.poll_event() {
                progressed = true;
                if let H3Event::Established { .. } = event {
                    established = true;
                }
            }
            while let Some(input) = conn.poll_session_input() {
                progressed = true;
                if let SessionInput::StreamOpened { stream, .. } = input {
                    session_streams.push(stream);
                }
            }
            if !progressed {
                break;
            }
        }
        // A closed connection keeps no timer.
        if closed {
            assert_eq!(conn.poll_timeout(), None);
        }
    }
}
