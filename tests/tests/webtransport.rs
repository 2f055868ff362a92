//! The HTTP/3 + WebTransport layer (`moq_proto::webtransport::H3Conn`): a client and a server
//! wired to each other in memory, with real QUIC stream IDs, through the handshake, session
//! streams both ways, datagrams, early streams, the close handshake and every kind of bad
//! input a peer can send on the HTTP/3 streams.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::coding::put_varint;
use moq_proto::session::{Command, Dir, OpenToken, StreamId};
use moq_proto::webtransport::connect::ConnectRequest;
use moq_proto::webtransport::error_codes::{self, h3};
use moq_proto::webtransport::{H3Config, H3Conn, H3Event, Route, SessionInput, TransportCommand};
use moq_proto::webtransport::{frame, qpack, settings::Settings};
use moq_proto::wire::Version;

/// What one side's MOQ session received through the layer.
#[derive(Default, Debug)]
struct SessionSide {
    opened: Vec<(StreamId, Dir)>,
    data: BTreeMap<u64, Vec<u8>>,
    fins: Vec<StreamId>,
    resets: Vec<(StreamId, StreamCode)>,
    datagrams: Vec<Bytes>,
    lost: Option<(SessionCode, String)>,
    grants: Vec<(OpenToken, StreamId)>,
}

struct End {
    h3: H3Conn,
    client: bool,
    next: [u64; 2],
    session: SessionSide,
    events: Vec<H3Event>,
    closed: Option<(u64, String)>,
    /// Stream codes this end sent.
    resets_sent: Vec<(StreamId, u64)>,
    stops_sent: Vec<(StreamId, u64)>,
}

impl End {
    fn new(h3: H3Conn, client: bool) -> Self {
        Self {
            h3,
            client,
            next: [0, 0],
            session: SessionSide::default(),
            events: Vec::new(),
            closed: None,
            resets_sent: Vec::new(),
            stops_sent: Vec::new(),
        }
    }

    /// The next QUIC stream ID this end opens in `dir` (RFC 9000 §2.1).
    fn allocate(&mut self, dir: Dir) -> StreamId {
        let index = usize::from(dir == Dir::Uni);
        let n = self.next[index];
        self.next[index] += 1;
        let kind = u64::from(!self.client) | if dir == Dir::Uni { 2 } else { 0 };
        StreamId(n * 4 + kind)
    }
}

/// Two ends and a perfect network between them.
struct Pair {
    now: Instant,
    ends: [End; 2],
    /// Bytes written by an end on each stream, for inspection: (writer, stream) -> bytes.
    wire: BTreeMap<(usize, u64), Vec<u8>>,
    /// Deliveries in order: (to, what).
    queue: VecDeque<(usize, Delivery)>,
}

enum Delivery {
    Opened(StreamId, Dir),
    Data(StreamId, Bytes, bool),
    Reset(StreamId, u64),
    Stop(StreamId, u64),
    Acked(StreamId),
    Datagram(Bytes),
}

const CLIENT: usize = 0;
const SERVER: usize = 1;

impl Pair {
    fn new(versions: &[Version], path: &str) -> Self {
        let request = ConnectRequest::new("localhost:4443", path, versions);
        let client = H3Conn::client(H3Config::default(), request);
        let server = H3Conn::server(H3Config::default());
        let mut pair = Self {
            now: Instant::now(),
            ends: [End::new(client, true), End::new(server, false)],
            wire: BTreeMap::new(),
            queue: VecDeque::new(),
        };
        pair.run();
        pair
    }

    /// Apply every command and deliver everything until quiet.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            for side in [CLIENT, SERVER] {
                while let Some(command) = self.ends[side].h3.poll_command() {
                    progressed = true;
                    self.apply(side, command);
                }
                while let Some(event) = self.ends[side].h3.poll_event() {
                    progressed = true;
                    self.ends[side].events.push(event);
                }
                while let Some(input) = self.ends[side].h3.poll_session_input() {
                    progressed = true;
                    self.session_input(side, input);
                }
            }
            if let Some((to, delivery)) = self.queue.pop_front() {
                progressed = true;
                self.deliver(to, delivery);
            }
            if !progressed {
                return;
            }
        }
        panic!("the pair did not settle");
    }

    fn apply(&mut self, side: usize, command: TransportCommand) {
        let other = 1 - side;
        let now = self.now;
        if self.ends[side].closed.is_some() {
            return;
        }
        match command {
            TransportCommand::Open { token, dir, .. } => {
                let id = self.ends[side].allocate(dir);
                if let Some(token) = self.ends[side].h3.handle_open_granted(now, token, id) {
                    self.ends[side].session.grants.push((token, id));
                }
                self.queue.push_back((other, Delivery::Opened(id, dir)));
            }
            TransportCommand::Write { stream, data } => {
                self.wire
                    .entry((side, stream.0))
                    .or_default()
                    .extend_from_slice(&data);
                self.queue
                    .push_back((other, Delivery::Data(stream, data, false)));
            }
            TransportCommand::Finish { stream } => {
                self.queue
                    .push_back((other, Delivery::Data(stream, Bytes::new(), true)));
                self.queue.push_back((side, Delivery::Acked(stream)));
            }
            TransportCommand::Reset { stream, code } => {
                self.ends[side].resets_sent.push((stream, code));
                self.queue.push_back((other, Delivery::Reset(stream, code)));
            }
            TransportCommand::Stop { stream, code } => {
                self.ends[side].stops_sent.push((stream, code));
                self.queue.push_back((other, Delivery::Stop(stream, code)));
            }
            TransportCommand::SendDatagram { data } => {
                self.queue.push_back((other, Delivery::Datagram(data)));
            }
            TransportCommand::Close { code, reason } => {
                self.ends[side].closed = Some((code, reason));
            }
            TransportCommand::CancelOpen { .. } | TransportCommand::SetPriority { .. } => {}
            _ => panic!("a command this test does not know"),
        }
    }

    fn deliver(&mut self, to: usize, delivery: Delivery) {
        let now = self.now;
        if self.ends[to].closed.is_some() {
            return;
        }
        let end = &mut self.ends[to];
        match delivery {
            Delivery::Opened(id, dir) => end.h3.handle_stream_opened(now, id, dir),
            Delivery::Data(id, data, fin) => {
                let mut chunks = if data.is_empty() { vec![] } else { vec![data] };
                match end.h3.handle_stream_data(now, id, &mut chunks, fin) {
                    Route::Session { opened } => {
                        if let Some(dir) = opened {
                            end.session.opened.push((id, dir));
                        }
                        let buf = end.session.data.entry(id.0).or_default();
                        for chunk in chunks {
                            buf.extend_from_slice(&chunk);
                        }
                        if fin {
                            end.session.fins.push(id);
                        }
                    }
                    Route::Consumed => {}
                }
            }
            Delivery::Reset(id, code) => {
                if let Some(code) = end.h3.handle_stream_reset(now, id, code) {
                    end.session.resets.push((id, code));
                }
            }
            Delivery::Stop(id, code) => {
                if let Some(code) = end.h3.handle_stop_sending(now, id, code) {
                    end.session.resets.push((id, code));
                }
            }
            Delivery::Acked(id) => {
                end.h3.handle_stream_finished(now, id);
            }
            Delivery::Datagram(data) => {
                if let Some(payload) = end.h3.handle_datagram(now, data) {
                    end.session.datagrams.push(payload);
                }
            }
        }
    }

    fn session_input(&mut self, side: usize, input: SessionInput) {
        let session = &mut self.ends[side].session;
        match input {
            SessionInput::StreamOpened { stream, dir } => session.opened.push((stream, dir)),
            SessionInput::StreamData { stream, data, fin } => {
                session
                    .data
                    .entry(stream.0)
                    .or_default()
                    .extend_from_slice(&data);
                if fin {
                    session.fins.push(stream);
                }
            }
            SessionInput::Datagram { data } => session.datagrams.push(data),
            SessionInput::ConnectionLost { code, reason } => session.lost = Some((code, reason)),
            _ => panic!("an input this test does not know"),
        }
    }

    fn send(&mut self, side: usize, command: Command) {
        let now = self.now;
        self.ends[side].h3.send(now, command);
        self.run();
    }

    /// Accept the server's pending request with the version it chose.
    fn accept(&mut self) -> Version {
        let request = self.ends[SERVER]
            .events
            .iter()
            .find_map(|e| match e {
                H3Event::Request(r) => Some(r.clone()),
                _ => None,
            })
            .expect("a CONNECT reached the server");
        let version = request.choose(&Version::ALL).expect("a common version");
        let now = self.now;
        self.ends[SERVER].h3.accept(now, version);
        self.run();
        version
    }

    /// The server's bytes written to the client (and back) on one stream.
    fn written(&self, side: usize, stream: u64) -> &[u8] {
        self.wire.get(&(side, stream)).map_or(&[], Vec::as_slice)
    }
}

fn established(end: &End) -> Option<(Version, String)> {
    end.events.iter().find_map(|e| match e {
        H3Event::Established { version, path } => Some((*version, path.clone())),
        _ => None,
    })
}

#[test]
fn handshake_negotiates_the_clients_first_version_and_roots_at_the_path() {
    let mut pair = Pair::new(&[Version::Lite04, Version::Lite05], "/anon?jwt=t");
    // Both control streams carry SETTINGS first; the CONNECT went out on client bidi 0.
    for side in [CLIENT, SERVER] {
        let control = if side == CLIENT { 2 } else { 3 };
        let bytes = pair.written(side, control);
        assert_eq!(bytes[0], 0x00, "control stream type");
        let mut view = &bytes[1..];
        let header = frame::decode_header(&mut view).expect("a frame");
        assert_eq!(header.ty, frame::SETTINGS);
        let settings = Settings::decode(&view[..header.len as usize]).expect("settings");
        assert_eq!(settings, Settings::ours());
    }
    assert!(!pair.written(CLIENT, 0).is_empty(), "CONNECT on stream 0");
    assert_eq!(pair.accept(), Version::Lite04);
    assert_eq!(
        established(&pair.ends[CLIENT]),
        Some((Version::Lite04, "/anon?jwt=t".into()))
    );
    assert_eq!(
        established(&pair.ends[SERVER]),
        Some((Version::Lite04, "/anon?jwt=t".into()))
    );
    assert_eq!(pair.ends[SERVER].h3.session_id(), Some(0));
    assert_eq!(
        pair.ends[SERVER].h3.datagram_prefix(),
        Bytes::from_static(&[0])
    );
    // The response is 200 with wt-protocol, in the client's (string) form.
    let response = pair.written(SERVER, 0);
    let mut view = response;
    let header = frame::decode_header(&mut view).expect("HEADERS");
    assert_eq!(header.ty, frame::HEADERS);
    let fields = qpack::decode(&view[..header.len as usize], 16_384).expect("fields");
    assert!(fields.contains(&(":status".into(), "200".into())));
    assert!(fields.contains(&("wt-protocol".into(), "\"moq-lite-04\"".into())));
    assert!(pair.ends.iter().all(|e| e.closed.is_none()));
}

#[test]
fn session_streams_carry_their_prefix_and_arrive_without_it() {
    let mut pair = Pair::new(&[Version::Lite05], "/");
    pair.accept();
    for (from, dir) in [(SERVER, Dir::Uni), (CLIENT, Dir::Bi), (CLIENT, Dir::Uni)] {
        let to = 1 - from;
        let token = OpenToken(7);
        pair.send(
            from,
            Command::Open {
                token,
                dir,
                priority: 0,
            },
        );
        let (_, stream) = *pair.ends[from]
            .session
            .grants
            .last()
            .expect("granted to the session");
        pair.send(
            from,
            Command::Write {
                stream,
                data: Bytes::from_static(b"hello"),
            },
        );
        pair.send(from, Command::Finish { stream });
        // On the wire: 0x54 (uni) or 0x41 (bidi) as a 2-byte varint, the session ID 0.
        let signal: &[u8] = if dir == Dir::Uni {
            &[0x40, 0x54, 0x00]
        } else {
            &[0x40, 0x41, 0x00]
        };
        assert_eq!(pair.written(from, stream.0), [signal, b"hello"].concat());
        // At the other end the session sees the stream, its bytes, and its end.
        let got = &pair.ends[to].session;
        assert!(got.opened.contains(&(stream, dir)), "{dir:?}");
        assert_eq!(
            got.data.get(&stream.0).map(Vec::as_slice),
            Some(&b"hello"[..])
        );
        assert!(got.fins.contains(&stream));
    }
    // A reply on a stream the client opened goes to the client's session as is.
    let bidi = pair.ends[CLIENT].session.grants[0].1;
    pair.send(
        SERVER,
        Command::Write {
            stream: bidi,
            data: Bytes::from_static(b"reply"),
        },
    );
    assert_eq!(
        pair.ends[CLIENT]
            .session
            .data
            .get(&bidi.0)
            .map(Vec::as_slice),
        Some(&b"reply"[..])
    );
}

#[test]
fn stream_codes_are_mapped_both_ways() {
    let mut pair = Pair::new(&[Version::Lite05], "/");
    pair.accept();
    pair.send(
        SERVER,
        Command::Open {
            token: OpenToken(1),
            dir: Dir::Uni,
            priority: 0,
        },
    );
    let stream = pair.ends[SERVER].session.grants[0].1;
    pair.send(
        SERVER,
        Command::Write {
            stream,
            data: Bytes::from_static(b"x"),
        },
    );
    pair.send(
        SERVER,
        Command::Reset {
            stream,
            code: StreamCode::OLD,
        },
    );
    assert_eq!(
        pair.ends[SERVER].resets_sent,
        vec![(stream, error_codes::to_http3(0x34))]
    );
    assert_eq!(
        pair.ends[CLIENT].session.resets,
        vec![(stream, StreamCode::OLD)]
    );
}

#[test]
fn datagrams_carry_the_quarter_stream_id() {
    let mut pair = Pair::new(&[Version::Lite05], "/");
    pair.accept();
    let prefix = pair.ends[SERVER].h3.datagram_prefix();
    let body = [&prefix[..], b"moq datagram"].concat();
    pair.send(SERVER, Command::SendDatagram { data: body.into() });
    assert_eq!(
        pair.ends[CLIENT].session.datagrams,
        vec![Bytes::from_static(b"moq datagram")]
    );
    // Another quarter stream ID is not this session's: dropped.
    pair.send(
        SERVER,
        Command::SendDatagram {
            data: Bytes::from_static(&[0x01, b'x']),
        },
    );
    assert_eq!(pair.ends[CLIENT].session.datagrams.len(), 1);
}

#[test]
fn streams_and_datagrams_before_the_session_are_held_then_released() {
    let mut pair = Pair::new(&[Version::Lite05], "/");
    // The client's session could not open streams yet, so forge what an eager peer sends:
    // a WebTransport uni stream for session 0 and a datagram, before the server accepted.
    let stream = StreamId(6);
    let now = pair.now;
    let server = &mut pair.ends[SERVER].h3;
    server.handle_stream_opened(now, stream, Dir::Uni);
    let mut chunks = vec![
        Bytes::from_static(&[0x40, 0x54, 0x00]),
        Bytes::from_static(b"early"),
    ];
    assert_eq!(
        server.handle_stream_data(now, stream, &mut chunks, true),
        Route::Consumed
    );
    assert_eq!(
        server.handle_datagram(now, Bytes::from_static(b"\x00dg")),
        None
    );
    pair.accept();
    let session = &pair.ends[SERVER].session;
    assert_eq!(session.opened, vec![(stream, Dir::Uni)]);
    assert_eq!(session.data.get(&6).map(Vec::as_slice), Some(&b"early"[..]));
    assert_eq!(session.fins, vec![stream]);
    assert_eq!(session.datagrams, vec![Bytes::from_static(b"dg")]);
}

#[test]
fn too_many_early_streams_are_refused_with_the_webtransport_code() {
    let mut pair = Pair::new(&[Version::Lite05], "/");
    let now = pair.now;
    let limit = H3Config::default().max_buffered_streams;
    for i in 0..=limit as u64 {
        let stream = StreamId(100 + 4 * i + 2);
        let server = &mut pair.ends[SERVER].h3;
        server.handle_stream_opened(now, stream, Dir::Uni);
        let mut chunks = vec![Bytes::from_static(&[0x40, 0x54, 0x00, 1, 2, 3])];
        server.handle_stream_data(now, stream, &mut chunks, false);
    }
    pair.run();
    assert_eq!(
        pair.ends[SERVER].stops_sent,
        vec![(
            StreamId(100 + 4 * limit as u64 + 2),
            h3::WT_BUFFERED_STREAM_REJECTED
        )]
    );
}

#[test]
fn our_close_sends_the_capsule_then_closes_quic_with_the_mapped_code() {
    let mut pair = Pair::new(&[Version::Lite05], "/");
    pair.accept();
    pair.send(
        CLIENT,
        Command::Close {
            code: SessionCode(0x42),
            reason: "bye".into(),
        },
    );
    // The server's session learns the code and reason from the capsule.
    assert_eq!(
        pair.ends[SERVER].session.lost,
        Some((SessionCode(0x42), "bye".into()))
    );
    // The client closed QUIC once its FIN was acknowledged, with the mapped code.
    assert_eq!(
        pair.ends[CLIENT].closed,
        Some((error_codes::to_http3(0x42), "bye".into()))
    );
    // The server answered with its FIN, and closed once that was acknowledged.
    assert_eq!(
        pair.ends[SERVER].closed.as_ref().map(|c| c.0),
        Some(h3::NO_ERROR)
    );
}

#[test]
fn a_close_whose_delivery_is_never_acknowledged_still_closes_after_the_linger() {
    let mut pair = Pair::new(&[Version::Lite05], "/");
    pair.accept();
    let now = pair.now;
    pair.ends[CLIENT].h3.send(
        now,
        Command::Close {
            code: SessionCode(0x1),
            reason: String::new(),
        },
    );
    // Drain the client's commands without delivering anything (a dead network).
    let commands: Vec<_> = std::iter::from_fn(|| pair.ends[CLIENT].h3.poll_command()).collect();
    assert!(
        !commands
            .iter()
            .any(|c| matches!(c, TransportCommand::Close { .. }))
    );
    let linger = H3Config::default().close_linger;
    assert_eq!(pair.ends[CLIENT].h3.poll_timeout(), Some(now + linger));
    pair.ends[CLIENT].h3.handle_timeout(now + linger);
    assert!(
        std::iter::from_fn(|| pair.ends[CLIENT].h3.poll_command()).any(|c| c
            == TransportCommand::Close {
                code: error_codes::to_http3(1),
                reason: String::new()
            })
    );
}

#[test]
fn a_fin_on_the_connect_stream_ends_the_session_with_no_error() {
    let mut pair = Pair::new(&[Version::Lite05], "/");
    pair.accept();
    pair.queue
        .push_back((SERVER, Delivery::Data(StreamId(0), Bytes::new(), true)));
    pair.run();
    assert_eq!(
        pair.ends[SERVER].session.lost.as_ref().map(|l| l.0),
        Some(SessionCode::NO_ERROR)
    );
}

/// Feed raw bytes to a fresh server as the client's stream `id` and return its close code.
fn server_close_code(streams: &[(u64, Dir, Vec<u8>)]) -> Option<u64> {
    let mut server = H3Conn::server(H3Config::default());
    let now = Instant::now();
    let mut closed = None;
    for (id, dir, bytes) in streams {
        server.handle_stream_opened(now, StreamId(*id), *dir);
        let mut chunks = vec![Bytes::from(bytes.clone())];
        server.handle_stream_data(now, StreamId(*id), &mut chunks, false);
        while let Some(command) = server.poll_command() {
            if let TransportCommand::Close { code, .. } = command {
                closed = Some(code);
            }
        }
    }
    closed
}

fn control_with(frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0x00];
    for (ty, payload) in frames {
        frame::encode(&mut out, *ty, payload);
    }
    out
}

fn our_settings() -> Vec<u8> {
    let mut payload = Vec::new();
    Settings::ours().encode(&mut payload);
    payload
}

#[test]
fn bad_control_streams_are_connection_errors_with_the_right_code() {
    // The first frame is not SETTINGS.
    assert_eq!(
        server_close_code(&[(2, Dir::Uni, control_with(&[(frame::GOAWAY, vec![0])]))]),
        Some(h3::MISSING_SETTINGS)
    );
    // A second SETTINGS.
    assert_eq!(
        server_close_code(&[(
            2,
            Dir::Uni,
            control_with(&[(frame::SETTINGS, our_settings()), (frame::SETTINGS, vec![])])
        )]),
        Some(h3::FRAME_UNEXPECTED)
    );
    // DATA and HEADERS on the control stream, and a reserved HTTP/2 frame type.
    for ty in [frame::DATA, frame::HEADERS, 0x2] {
        assert_eq!(
            server_close_code(&[(
                2,
                Dir::Uni,
                control_with(&[(frame::SETTINGS, our_settings()), (ty, vec![1])])
            )]),
            Some(h3::FRAME_UNEXPECTED),
            "{ty:#x}"
        );
    }
    // A duplicate setting.
    assert_eq!(
        server_close_code(&[(
            2,
            Dir::Uni,
            control_with(&[(frame::SETTINGS, vec![0x33, 0x01, 0x33, 0x01])])
        )]),
        Some(h3::SETTINGS_ERROR)
    );
    // A second control stream.
    let control = control_with(&[(frame::SETTINGS, our_settings())]);
    assert_eq!(
        server_close_code(&[
            (2, Dir::Uni, control.clone()),
            (6, Dir::Uni, control.clone())
        ]),
        Some(h3::STREAM_CREATION_ERROR)
    );
    // Unknown frames (GREASE) and unknown settings are fine.
    let mut grease = our_settings();
    put_varint(&mut grease, 0x1f * 7 + 0x21).expect("varint");
    put_varint(&mut grease, 5).expect("varint");
    assert_eq!(
        server_close_code(&[(
            2,
            Dir::Uni,
            control_with(&[(frame::SETTINGS, grease), (0x21, b"grease".to_vec())])
        )]),
        None
    );
}

#[test]
fn unknown_uni_streams_are_refused_alone_and_qpack_streams_read_and_ignored() {
    let mut server = H3Conn::server(H3Config::default());
    let now = Instant::now();
    for (id, ty) in [(2u64, 0x02u8), (6, 0x03), (10, 0x21)] {
        server.handle_stream_opened(now, StreamId(id), Dir::Uni);
        let mut chunks = vec![Bytes::from(vec![ty, 1, 2, 3])];
        assert_eq!(
            server.handle_stream_data(now, StreamId(id), &mut chunks, false),
            Route::Consumed
        );
    }
    let commands: Vec<TransportCommand> = std::iter::from_fn(|| server.poll_command()).collect();
    assert!(commands.contains(&TransportCommand::Stop {
        stream: StreamId(10),
        code: h3::STREAM_CREATION_ERROR
    }));
    // The QPACK streams were never stopped (closing them is a connection error).
    assert!(!commands.iter().any(|c| matches!(c,
        TransportCommand::Stop { stream, .. } if stream.0 == 2 || stream.0 == 6)));
    assert!(
        !commands
            .iter()
            .any(|c| matches!(c, TransportCommand::Close { .. }))
    );
}

/// A HEADERS frame carrying `fields`.
fn headers_frame(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    qpack::encode(fields, &mut block);
    let mut headers = Vec::new();
    frame::encode(&mut headers, frame::HEADERS, &block);
    headers
}

/// The HEADERS frame of our client's CONNECT offering `versions`.
fn connect_frame(versions: &[Version]) -> Vec<u8> {
    let fields = ConnectRequest::new("h", "/", versions).to_fields();
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers_frame(&fields)
}

/// Open peer stream `id` on `conn` and feed it `bytes` (and a FIN).
fn feed(conn: &mut H3Conn, now: Instant, id: u64, dir: Dir, bytes: Vec<u8>, fin: bool) -> Route {
    conn.handle_stream_opened(now, StreamId(id), dir);
    let mut chunks = vec![Bytes::from(bytes)];
    conn.handle_stream_data(now, StreamId(id), &mut chunks, fin)
}

/// A server that has read the client's control stream with this SETTINGS payload.
fn server_with_settings(settings: Vec<u8>) -> (H3Conn, Instant) {
    let mut server = H3Conn::server(H3Config::default());
    let now = Instant::now();
    feed(
        &mut server,
        now,
        2,
        Dir::Uni,
        control_with(&[(frame::SETTINGS, settings)]),
        false,
    );
    (server, now)
}

/// A client request stream with these fields (after the client's SETTINGS).
fn request_answer(fields: &[(&str, &str)]) -> (Vec<TransportCommand>, Vec<H3Event>) {
    let (mut server, now) = server_with_settings(our_settings());
    feed(&mut server, now, 0, Dir::Bi, headers_frame(fields), false);
    let commands = std::iter::from_fn(|| server.poll_command()).collect();
    let events = std::iter::from_fn(|| server.poll_event()).collect();
    (commands, events)
}

fn status_sent(commands: &[TransportCommand]) -> Option<String> {
    commands.iter().find_map(|c| match c {
        TransportCommand::Write { stream, data } if stream.0 == 0 => {
            let mut view = &data[..];
            let header = frame::decode_header(&mut view).ok()?;
            let fields = qpack::decode(&view[..header.len as usize], 16_384).ok()?;
            fields
                .into_iter()
                .find(|(n, _)| n == ":status")
                .map(|(_, v)| v)
        }
        _ => None,
    })
}

#[test]
fn requests_that_are_not_webtransport_connects_are_answered_and_refused() {
    let base = [(":scheme", "https"), (":authority", "h"), (":path", "/")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut all: Vec<(&str, &str)> = base.to_vec();
        all.extend_from_slice(extra);
        request_answer(&all)
    };
    let (commands, events) = with(&[(":method", "GET")]);
    assert_eq!(status_sent(&commands).as_deref(), Some("405"));
    assert!(events.is_empty());
    let (commands, _) = with(&[(":method", "CONNECT"), (":protocol", "websocket")]);
    assert_eq!(status_sent(&commands).as_deref(), Some("400"));
    // A WebTransport CONNECT reaches the application.
    let (_, events) = with(&[
        (":method", "CONNECT"),
        (":protocol", "webtransport"),
        ("wt-available-protocols", "moq-lite-03"),
    ]);
    assert!(matches!(&events[..], [H3Event::Request(r)] if r.protocols == ["moq-lite-03"]));
}

#[test]
fn a_second_connect_is_rejected() {
    let mut pair = Pair::new(&[Version::Lite05], "/");
    pair.accept();
    let now = pair.now;
    let server = &mut pair.ends[SERVER].h3;
    feed(
        server,
        now,
        4,
        Dir::Bi,
        connect_frame(&[Version::Lite05]),
        false,
    );
    pair.run();
    assert!(
        pair.ends[SERVER]
            .resets_sent
            .contains(&(StreamId(4), h3::REQUEST_REJECTED))
    );
    assert!(pair.ends[SERVER].closed.is_none());
}

#[test]
fn a_client_refuses_a_server_without_webtransport_settings() {
    let request = ConnectRequest::new("h", "/", &[Version::Lite05]);
    let mut client = H3Conn::client(H3Config::default(), request);
    let now = Instant::now();
    client.handle_stream_opened(now, StreamId(3), Dir::Uni);
    // Datagrams only, no WebTransport setting.
    let mut chunks = vec![Bytes::from(control_with(&[(
        frame::SETTINGS,
        vec![0x33, 0x01],
    )]))];
    client.handle_stream_data(now, StreamId(3), &mut chunks, false);
    assert!(matches!(client.poll_event(), Some(H3Event::Refused { .. })));
    assert!(
        std::iter::from_fn(|| client.poll_command())
            .any(|c| matches!(c, TransportCommand::Close { .. }))
    );
}

#[test]
fn every_truncation_of_the_handshake_streams_is_handled() {
    // Whatever prefix of the client's streams arrives, the server never panics, and a FIN
    // in the middle of the control stream is a critical-stream error.
    let control = control_with(&[(frame::SETTINGS, our_settings())]);
    for end in 0..control.len() {
        let mut server = H3Conn::server(H3Config::default());
        let now = Instant::now();
        server.handle_stream_opened(now, StreamId(2), Dir::Uni);
        let mut chunks = vec![Bytes::copy_from_slice(&control[..end])];
        server.handle_stream_data(now, StreamId(2), &mut chunks, true);
        let closed = std::iter::from_fn(|| server.poll_command()).find_map(|c| match c {
            TransportCommand::Close { code, .. } => Some(code),
            _ => None,
        });
        if end > 0 {
            assert_eq!(closed, Some(h3::CLOSED_CRITICAL_STREAM), "cut at {end}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Captured from Chromium 156 (Debian 156.0.8078.114, headless) opening a session to our relay
// with @moq/net 0.3.4 forced to moq-lite-05: its SETTINGS payload and its CONNECT field section.

const CHROME_SETTINGS: &str =
    "01800100000680004000074064330180ffd27701ab60374201c000000564678178c000000068c89aa9";
const CHROME_CONNECT: &str = "0000d7cf508b089d5c0b8170dc0b4d34cfc12f00b95d8749c87a3f89f058d360ea4567b13f2f0e4148b782c69b07522b3d895a74a6b65692c1ca900b01315f4b909d29aee30c044eae05c0b86e3416c41f2f09f09587dc66a071d055abb0e9390f423f8bfe693f65a8324ab01bfe7f";

#[test]
fn chromium_settings_are_read_with_their_grease() {
    let settings = Settings::decode(&moq_tests::hex(CHROME_SETTINGS)).expect("accepted");
    assert_eq!(settings.get(0x1), Some(65536));
    assert_eq!(settings.get(0x6), Some(16384));
    assert_eq!(settings.get(0x7), Some(100));
    assert_eq!(settings.get(0x33), Some(1));
    assert_eq!(settings.get(0xff_d277), Some(1));
    assert_eq!(settings.get(0x2b60_3742), Some(1));
    // A GREASE identifier (0x1f * N + 0x21) with a random value, ignored.
    let grease: Vec<u64> = settings
        .entries()
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| id.checked_sub(0x21).is_some_and(|n| n % 0x1f == 0))
        .collect();
    assert_eq!(grease.len(), 1, "{:?}", settings.entries());
    assert!(settings.supports_webtransport());
    // A browser need not enable extended CONNECT itself.
    assert!(!settings.enables_connect_protocol());
}

#[test]
fn chromium_connect_is_huffman_coded_and_decodes() {
    let fields = qpack::decode(&moq_tests::hex(CHROME_CONNECT), 16_384).expect("decodes");
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get(":method"), Some("CONNECT"));
    assert_eq!(get(":scheme"), Some("https"));
    assert_eq!(get(":protocol"), Some("webtransport"));
    assert_eq!(get(":authority"), Some("127.0.0.1:14443"));
    assert_eq!(get(":path"), Some("/"));
    assert_eq!(get("sec-webtransport-http3-draft02"), Some("1"));
    assert_eq!(get("wt-available-protocols"), Some("\"moq-lite-05\""));
    assert!(get("origin").is_some_and(|o| o.starts_with("http://127.0.0.1:")));
    let request = ConnectRequest::from_fields(&fields).expect("a WebTransport CONNECT");
    assert_eq!(request.choose(&Version::ALL), Some(Version::Lite05));
    // Every truncation is refused or decodes a prefix of the lines, never a panic.
    let block = moq_tests::hex(CHROME_CONNECT);
    for end in 0..block.len() {
        let _ = qpack::decode(&block[..end], 16_384);
    }
}

// ---------------------------------------------------------------------------------------------
// The interop pitfalls of WebTransport, one test each.

#[test]
fn pitfall_our_settings_carry_what_browsers_require_and_nothing_newer() {
    let ours = Settings::ours();
    // Without 0x2b603742 Chromium fails with ERR_METHOD_NOT_SUPPORTED; without a datagram
    // setting (0x33 for draft-07) it does too.
    assert_eq!(ours.get(0x2b60_3742), Some(1));
    assert_eq!(ours.get(0x33), Some(1));
    assert_eq!(ours.get(0xff_d277), Some(1));
    assert_eq!(ours.get(0x8), Some(1), "extended CONNECT");
    // Draft-13+ codepoints would invite flow-control capsules and RESET_STREAM_AT.
    assert_eq!(ours.get(0x14e9_cd29), None);
    assert_eq!(ours.get(0x2c7c_f000), None);
    // No QPACK dynamic table.
    assert_eq!(ours.get(0x1).unwrap_or(0), 0);
}

#[test]
fn pitfall_the_response_carries_the_draft02_header_and_the_clients_list_form() {
    for (offer, answer) in [
        ("\"moq-lite-04\"", "\"moq-lite-04\""),
        ("moq-lite-04", "moq-lite-04"),
    ] {
        let (commands, _) = request_answer_with(&[
            (":method", "CONNECT"),
            (":scheme", "https"),
            (":authority", "h"),
            (":path", "/"),
            (":protocol", "webtransport"),
            ("wt-available-protocols", offer),
        ]);
        let fields = response_fields(&commands).expect("answered");
        assert!(
            fields.contains(&(":status".into(), "200".into())),
            "{fields:?}"
        );
        assert!(fields.contains(&("sec-webtransport-http3-draft".into(), "draft02".into())));
        assert!(
            fields.contains(&("wt-protocol".into(), answer.into())),
            "{fields:?}"
        );
    }
}

#[test]
fn pitfall_our_client_opens_control_first_and_connect_on_stream_zero_with_draft02_and_origin() {
    let pair = Pair::new(&[Version::Lite05], "/");
    // The first uni stream of the client (ID 2) is the control stream: moq-dev's server takes
    // the first uni stream as control and the first bidi stream as CONNECT.
    assert_eq!(pair.written(CLIENT, 2)[0], 0x00);
    let mut view = pair.written(CLIENT, 0);
    let header = frame::decode_header(&mut view).expect("HEADERS on stream 0");
    assert_eq!(header.ty, frame::HEADERS);
    let fields = qpack::decode(&view[..header.len as usize], 16_384).expect("fields");
    assert!(fields.contains(&("sec-webtransport-http3-draft02".into(), "1".into())));
    assert!(fields.iter().any(|(n, _)| n == "origin"));
    assert!(fields.contains(&("wt-available-protocols".into(), "\"moq-lite-05\"".into())));
}

#[test]
fn pitfall_a_connect_before_the_clients_settings_waits_for_them() {
    let mut server = H3Conn::server(H3Config::default());
    let now = Instant::now();
    feed(
        &mut server,
        now,
        0,
        Dir::Bi,
        connect_frame(&[Version::Lite05]),
        false,
    );
    assert_eq!(server.poll_event(), None, "no decision before SETTINGS");
    feed(
        &mut server,
        now,
        2,
        Dir::Uni,
        control_with(&[(frame::SETTINGS, our_settings())]),
        false,
    );
    assert!(matches!(server.poll_event(), Some(H3Event::Request(_))));
}

#[test]
fn pitfall_a_client_without_webtransport_settings_is_answered_400() {
    // HTTP/3 without datagrams or WebTransport.
    let (mut server, now) = server_with_settings(vec![0x06, 0x40, 0x64]);
    feed(
        &mut server,
        now,
        0,
        Dir::Bi,
        connect_frame(&[Version::Lite05]),
        false,
    );
    let commands: Vec<_> = std::iter::from_fn(|| server.poll_command()).collect();
    assert_eq!(status_sent(&commands).as_deref(), Some("400"));
}

#[test]
fn pitfall_dynamic_table_references_close_with_qpack_decompression_failed() {
    let (mut server, now) = server_with_settings(our_settings());
    let mut headers = Vec::new();
    frame::encode(&mut headers, frame::HEADERS, &[0x01, 0x00, 0x80]);
    feed(&mut server, now, 0, Dir::Bi, headers, false);
    assert!(std::iter::from_fn(|| server.poll_command()).any(|c| c
        == TransportCommand::Close {
            code: h3::QPACK_DECOMPRESSION_FAILED,
            reason: "reference to the QPACK dynamic table".into()
        }));
}

#[test]
fn an_oversized_header_block_is_refused_before_it_is_buffered() {
    let mut server = H3Conn::server(H3Config::default());
    let now = Instant::now();
    let mut headers = Vec::new();
    frame::encode_header(&mut headers, frame::HEADERS, 1 << 20);
    server.handle_stream_opened(now, StreamId(0), Dir::Bi);
    let mut chunks = vec![Bytes::from(headers)];
    server.handle_stream_data(now, StreamId(0), &mut chunks, false);
    assert!(
        std::iter::from_fn(|| server.poll_command()).any(
            |c| matches!(c, TransportCommand::Close { code, .. } if code == h3::EXCESSIVE_LOAD)
        )
    );
}

#[test]
fn every_truncation_of_a_connect_request_stream_is_handled() {
    let headers = connect_frame(&[Version::Lite05]);
    for end in 0..headers.len() {
        let mut server = H3Conn::server(H3Config::default());
        let now = Instant::now();
        feed(&mut server, now, 0, Dir::Bi, headers[..end].to_vec(), true);
        while server.poll_command().is_some() {}
        assert_eq!(server.poll_event(), None, "cut at {end}");
    }
}

/// A server's answer (commands) to a CONNECT with these fields, after our SETTINGS, when the
/// application accepts the client's first version.
fn request_answer_with(fields: &[(&str, &str)]) -> (Vec<TransportCommand>, Vec<H3Event>) {
    let (mut server, now) = server_with_settings(our_settings());
    feed(&mut server, now, 0, Dir::Bi, headers_frame(fields), false);
    let mut events: Vec<H3Event> = std::iter::from_fn(|| server.poll_event()).collect();
    if let Some(H3Event::Request(request)) = events.first() {
        let version = request.choose(&Version::ALL).expect("a version");
        server.accept(now, version);
    }
    events.extend(std::iter::from_fn(|| server.poll_event()));
    (
        std::iter::from_fn(|| server.poll_command()).collect(),
        events,
    )
}

fn response_fields(commands: &[TransportCommand]) -> Option<Vec<(String, String)>> {
    commands.iter().find_map(|c| match c {
        TransportCommand::Write { stream, data } if stream.0 == 0 => {
            let mut view = &data[..];
            let header = frame::decode_header(&mut view).ok()?;
            qpack::decode(&view[..header.len as usize], 16_384).ok()
        }
        _ => None,
    })
}
