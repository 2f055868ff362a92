//! QMux over an upgraded WebSocket, sans-IO: bytes from the TCP (or TLS) stream in, bytes to
//! write out. One binary message is one QMux record's frames; pings are answered; a text
//! message, a bad frame or an oversized message closes with the matching WebSocket code after
//! a QMux CONNECTION_CLOSE; nothing heard for the idle timeout closes silently.
//!
//! Closing follows what browsers need to report a clean end: the QMux close frame (an
//! APPLICATION_CLOSE carries the MOQ session code) in its own message, then a WebSocket Close.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::conn::{Draft, QmuxConfig, QmuxConn, QmuxEvent};
use super::frame::error_code;
use crate::session::{Command, Side};
use crate::websocket::frame::{
    self as ws, FrameHeader, MAX_HEADER, Message, Opcode, Role, close_code,
};

/// Bytes of output produced per [`WsQmux::poll_transmit`] call at most (one socket write).
pub const TRANSMIT_BUDGET: usize = 64 * 1024;

/// Where a connection stands, for the caller's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsState {
    /// Running.
    Open,
    /// Our close is written (or the peer's arrived): flush what is queued, then close the
    /// socket.
    Finished,
}

/// A MOQ session's transport over one WebSocket. See the [module docs](self).
#[derive(Debug)]
pub struct WsQmux {
    role: Role,
    qmux: QmuxConn,
    decoder: ws::Decoder,
    /// WebSocket control frames to send first (pongs).
    control: Vec<u8>,
    /// The WebSocket Close to send once QMux is closed and flushed: code and reason.
    close: (u16, String),
    /// Our WebSocket Close is written: nothing follows.
    close_sent: bool,
    idle_timeout: Duration,
    last_heard: Instant,
    /// When to look at the idle timeout next (moves only when it fires: no timer churn).
    idle_check_at: Instant,
    /// Masking keys for client frames (xorshift): they need variation, not secrecy, since
    /// nothing here runs in a browser that could be made to forge bytes (RFC 6455 §10.3).
    mask_state: u64,
}

impl WsQmux {
    /// A transport for `side` (the WebSocket client is the QMux client), speaking `draft`.
    /// `seed` varies the client's masking keys.
    pub fn new(side: Side, draft: Draft, config: QmuxConfig, now: Instant, seed: u64) -> Self {
        let qmux = QmuxConn::new(side, draft, config.clone());
        let role = match side {
            Side::Server => Role::Server,
            Side::Client => Role::Client,
        };
        Self {
            role,
            decoder: ws::Decoder::new(role, qmux.max_record()),
            qmux,
            control: Vec::new(),
            close: (close_code::NORMAL, String::new()),
            close_sent: false,
            idle_timeout: config.idle_timeout,
            last_heard: now,
            idle_check_at: now + config.idle_timeout,
            mask_state: seed | 1,
        }
    }

    /// The QMux layer (its backlog, draft, stream count).
    pub fn qmux(&self) -> &QmuxConn {
        &self.qmux
    }

    /// Bytes buffered: decoder input, the QMux send backlog, pending control frames.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered() + self.qmux.backlog() + self.control.len()
    }

    /// A session command.
    pub fn apply(&mut self, command: Command) {
        self.qmux.apply(command);
    }

    /// The next event for the session.
    pub fn poll_event(&mut self) -> Option<QmuxEvent> {
        self.qmux.poll_event()
    }

    /// Running, or finished: once [`WsQmux::poll_transmit`] has returned everything, close
    /// the socket.
    pub fn state(&self) -> WsState {
        if self.close_sent {
            WsState::Finished
        } else {
            WsState::Open
        }
    }

    /// When [`WsQmux::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.qmux.is_closed() {
            return None;
        }
        let idle = self.idle_check_at;
        Some(self.qmux.poll_timeout().map_or(idle, |t| t.min(idle)))
    }

    /// Time passed: keep-alive, idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.qmux.is_closed() {
            return;
        }
        if now >= self.idle_check_at {
            let idle_at = self.last_heard + self.idle_timeout;
            if now >= idle_at {
                // Silent, as QMux's idle timeout is (draft-ietf-quic-qmux-01 §6).
                self.qmux.handle_transport_closed("idle timeout");
                self.close = (close_code::GOING_AWAY, "idle timeout".into());
                return;
            }
            self.idle_check_at = idle_at;
        }
        self.qmux.handle_timeout(now);
    }

    /// The socket reached its end (or failed): the session is lost.
    pub fn handle_eof(&mut self, reason: &str) {
        self.qmux.handle_transport_closed(reason);
        // Nothing can be written any more.
        self.close_sent = true;
    }

    /// Bytes from the socket.
    pub fn handle_data(&mut self, now: Instant, data: &[u8]) {
        if !self.qmux.is_open() {
            return;
        }
        self.last_heard = now;
        self.decoder.push(data);
        while self.qmux.is_open() {
            match self.decoder.next_message() {
                Ok(Some(message)) => self.handle_message(now, message),
                Ok(None) => return,
                Err(err) => {
                    let qmux_code = match err {
                        ws::FrameError::TooBig(_) => error_code::FRAME_ENCODING_ERROR,
                        _ => error_code::PROTOCOL_VIOLATION,
                    };
                    self.qmux.fail(qmux_code, &err.to_string());
                    self.close = (err.close_code(), err.to_string());
                }
            }
        }
    }

    fn handle_message(&mut self, now: Instant, message: Message) {
        match message {
            Message::Binary(record) => self.qmux.handle_record(now, record),
            Message::Text(_) => {
                // QMux is binary; `@moq/qmux` closes the same way.
                let reason = "text messages are not QMux";
                self.qmux.fail(error_code::PROTOCOL_VIOLATION, reason);
                self.close = (close_code::UNSUPPORTED_DATA, reason.into());
            }
            Message::Ping(payload) => {
                let mask = self.next_mask();
                let mut out = BytesMut::new();
                ws::encode_frame(Opcode::Pong, true, &payload, mask, &mut out);
                self.control.extend_from_slice(&out);
            }
            Message::Pong(_) => {}
            Message::Close(code, reason) => {
                // Answer with the same code (RFC 6455 §5.5.1) once our queue is out.
                self.qmux
                    .handle_transport_closed(&format!("WebSocket closed by the peer: {reason}"));
                self.close = (code.unwrap_or(close_code::NORMAL), String::new());
            }
        }
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        if self.role == Role::Server {
            return None;
        }
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        Some((x as u32).to_be_bytes())
    }

    /// Append bytes to write to `out` (at most about [`TRANSMIT_BUDGET`] per call); the state
    /// tells whether the socket should close once they are written.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> WsState {
        if self.close_sent {
            return WsState::Finished;
        }
        out.append(&mut self.control);
        while out.len() < TRANSMIT_BUDGET {
            let Some(frame) = self.qmux.poll_frame(now) else {
                break;
            };
            let mask = self.next_mask();
            let header = FrameHeader {
                fin: true,
                opcode: Opcode::Binary,
                mask,
                len: frame.len() as u64,
            };
            out.reserve(MAX_HEADER + frame.len());
            ws::encode_header(&header, out);
            let start = out.len();
            out.extend_from_slice(&frame.head);
            out.extend_from_slice(&frame.body);
            if let Some(mask) = mask {
                ws::apply_mask(&mut out[start..], mask, 0);
            }
        }
        if self.qmux.is_closed() {
            let mask = self.next_mask();
            let payload = ws::close_payload(self.close.0, &self.close.1);
            let mut frame = BytesMut::new();
            ws::encode_frame(Opcode::Close, true, &payload, mask, &mut frame);
            out.extend_from_slice(&frame);
            self.close_sent = true;
            return WsState::Finished;
        }
        WsState::Open
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codes::SessionCode;
    use crate::session::{Dir, OpenToken, StreamId};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Everything `from` writes, fed to `to`, until both are quiet.
    fn pump(a: &mut WsQmux, b: &mut WsQmux, now: Instant) {
        loop {
            let mut out = Vec::new();
            a.poll_transmit(now, &mut out);
            let mut back = Vec::new();
            b.poll_transmit(now, &mut back);
            if out.is_empty() && back.is_empty() {
                return;
            }
            // Byte by byte one way, whole the other: framing must not care.
            for byte in &out {
                b.handle_data(now, std::slice::from_ref(byte));
            }
            a.handle_data(now, &back);
        }
    }

    fn events(t: &mut WsQmux) -> Vec<QmuxEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    fn pair(draft: Draft) -> (WsQmux, WsQmux, Instant) {
        let now = Instant::now();
        let mut c = WsQmux::new(Side::Client, draft, QmuxConfig::default(), now, 7);
        let mut s = WsQmux::new(Side::Server, draft, QmuxConfig::default(), now, 0);
        pump(&mut c, &mut s, now);
        (c, s, now)
    }

    #[test]
    fn a_session_round_trips_and_closes_cleanly() {
        for draft in [Draft::Qmux00, Draft::Qmux01, Draft::Qmux02] {
            let (mut c, mut s, now) = pair(draft);
            c.apply(Command::Open {
                token: OpenToken(1),
                dir: Dir::Uni,
                priority: 0,
            });
            let id = match events(&mut c).pop() {
                Some(QmuxEvent::OpenGranted { id, .. }) => id,
                other => panic!("{other:?}"),
            };
            let payload = Bytes::from(vec![0x5a; 100_000]);
            c.apply(Command::Write {
                stream: id,
                data: payload.clone(),
            });
            c.apply(Command::Finish { stream: id });
            pump(&mut c, &mut s, now);
            let got: Vec<u8> = events(&mut s)
                .into_iter()
                .filter_map(|e| match e {
                    QmuxEvent::StreamData { data, .. } => Some(data),
                    _ => None,
                })
                .flat_map(|d| d.to_vec())
                .collect();
            assert_eq!(got.len(), payload.len(), "{draft:?}");
            s.apply(Command::Close {
                code: SessionCode(0x10),
                reason: "going".into(),
            });
            pump(&mut c, &mut s, now);
            assert_eq!(s.state(), WsState::Finished);
            assert_eq!(c.state(), WsState::Finished, "the client echoed the close");
            let closed = events(&mut c);
            assert!(
                matches!(
                    closed.last(),
                    Some(QmuxEvent::Closed {
                        code: SessionCode(0x10),
                        application: true,
                        ..
                    })
                ),
                "{draft:?}: {closed:?}"
            );
        }
    }

    #[test]
    fn the_browser_client_bytes_reach_the_session() {
        // What `@moq/net` 0.3.4 sent on `qmux-01.moq-lite-05` (captured): transport parameters,
        // then its SETUP on uni stream 2 in four STREAM frames.
        let messages = [
            "ff5153300d0a0d0a35010480007530040480100000050480040000060480040000070480040000\
             080240640902406420027ffec571c59429cd0845027ffe",
            "0e02000101",
            "0e0201010b",
            "0e02020b010508c01677f965da2857",
            "0f020d00",
        ];
        let now = Instant::now();
        let mut server = WsQmux::new(Side::Server, Draft::Qmux01, QmuxConfig::default(), now, 0);
        for (i, m) in messages.iter().enumerate() {
            let mut frame = BytesMut::new();
            ws::encode_frame(
                Opcode::Binary,
                true,
                &hex(m),
                Some([1, 2, 3, i as u8]),
                &mut frame,
            );
            server.handle_data(now, &frame);
        }
        let evs = events(&mut server);
        assert_eq!(
            evs[0],
            QmuxEvent::StreamOpened {
                id: StreamId(2),
                dir: Dir::Uni
            }
        );
        let setup: Vec<u8> = evs
            .iter()
            .filter_map(|e| match e {
                QmuxEvent::StreamData { data, .. } => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(setup, hex("010b010508c01677f965da2857"));
        assert!(
            evs.iter()
                .any(|e| matches!(e, QmuxEvent::StreamData { fin: true, .. }))
        );
        // Our first message is our parameters, unmasked.
        let mut out = Vec::new();
        server.poll_transmit(now, &mut out);
        assert_eq!(out[0], 0x82);
        assert_eq!(&out[2..10], &hex("ff5153300d0a0d0a")[..]);
    }

    #[test]
    fn pings_are_answered_and_bad_input_closes_with_its_code() {
        let now = Instant::now();
        let server = || WsQmux::new(Side::Server, Draft::Qmux01, QmuxConfig::default(), now, 0);
        let mut s = server();
        let mut out = Vec::new();
        s.poll_transmit(now, &mut out);
        let mut ping = BytesMut::new();
        ws::encode_frame(Opcode::Ping, true, b"hi", Some([9, 9, 9, 9]), &mut ping);
        s.handle_data(now, &ping);
        out.clear();
        s.poll_transmit(now, &mut out);
        assert_eq!(&out[..], &[0x8a, 0x02, b'h', b'i']);

        // Text: a QMux CONNECTION_CLOSE, then a WebSocket Close 1003.
        for (opcode, payload, ws_code) in [
            (Opcode::Text, vec![b'x'], close_code::UNSUPPORTED_DATA),
            (Opcode::Binary, vec![0; 20_000], close_code::MESSAGE_TOO_BIG),
        ] {
            let mut s = server();
            let mut out = Vec::new();
            s.poll_transmit(now, &mut out);
            let mut frame = BytesMut::new();
            ws::encode_frame(opcode, true, &payload, Some([1, 1, 1, 1]), &mut frame);
            s.handle_data(now, &frame);
            out.clear();
            assert_eq!(s.poll_transmit(now, &mut out), WsState::Finished);
            assert_eq!(out[2], 0x1c, "QMux transport close first");
            let close_at = out.len() - 2 - ws::close_payload(ws_code, "").len();
            let tail = &out[out.iter().rposition(|b| *b == 0x88).unwrap_or(close_at)..];
            assert_eq!(&tail[2..4], &ws_code.to_be_bytes());
            assert!(matches!(
                events(&mut s).pop(),
                Some(QmuxEvent::Closed {
                    application: false,
                    ..
                })
            ));
        }
    }

    #[test]
    fn silence_past_the_idle_timeout_closes_with_going_away() {
        let (mut c, mut s, now) = pair(Draft::Qmux01);
        // Keep-alives from the client keep the server's idle timer fresh.
        for step in 1..=12 {
            let t = now + Duration::from_secs(5 * step);
            c.handle_timeout(t);
            s.handle_timeout(t);
            pump(&mut c, &mut s, t);
        }
        assert_eq!(s.state(), WsState::Open);
        // A silent client.
        let later = now + Duration::from_secs(200);
        s.handle_timeout(later);
        let mut out = Vec::new();
        assert_eq!(s.poll_transmit(later, &mut out), WsState::Finished);
        // The WebSocket Close: header, code 1001, "idle timeout".
        let close = &out[out.len() - 16..];
        assert_eq!(&close[..2], &[0x88, 0x0e]);
        assert_eq!(&close[2..4], &close_code::GOING_AWAY.to_be_bytes());
        assert_eq!(&close[4..], b"idle timeout");
    }
}
