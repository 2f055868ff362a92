//! One test per interop gotcha of docs/wire.md §7 that has a session-level (or node-level) part,
//! named `gotcha_NN_...` like the codec half in `tests/tests/gotchas.rs`.
//!
//! Each test drives a raw [`moq_proto::session::Session`] through the `session_support`
//! harness, playing the reference or gomoqt by hand; where the behaviour belongs to the node
//! (routing, bounded local subscriptions, rejection codes) a [`Node`] is driven the same way by
//! [`NodePeer`], or two nodes by [`Sim`]. Several behaviours are also covered under other names
//! in the other `session_*` tests; these are the short, focused versions named after the
//! gotcha.

mod session_support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_harness::testing::{Mode, Sim, node_config};
use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::coding::{Cursor, MAX_DATAGRAM_SIZE, put_varint};
use moq_proto::node::{Node, NodeConfig, NodeEvent, SubscriptionEvent};
use moq_proto::origin::{GroupState, PeerId};
use moq_proto::session::{
    Command, Config, Dir, Event, OpenToken, RequestError, ServeId, Side, StreamId, SubscribeParams,
    SubscriptionId, TransportStats,
};
use moq_proto::wire::{
    Announce, AnnounceOk, AnnounceRequest, AnnounceStatus, Message, Path, Probe, ProbeLevel, Setup,
    Subscribe, SubscribeDrop, SubscribeOk, SubscribeResponse, SubscribeStart, TrackInfo,
    TrackRequest, Version,
};
use session_support::*;

const V3: Version = Version::Lite03;
const V4: Version = Version::Lite04;
const V5: Version = Version::Lite05;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Subscribe to `demo` / `clock` with default parameters; returns the handle and stream.
fn subscribe(raw: &mut Raw) -> (SubscriptionId, StreamId) {
    let id = raw
        .s
        .subscribe(p("demo"), "clock", SubscribeParams::default())
        .expect("subscribe");
    raw.pump();
    (id, raw.last_opened())
}

/// The publisher's acceptance as the reference sends it: one lite-03/04 SUBSCRIBE_OK with
/// start 0 ("unknown"), or a lite-05 SUBSCRIBE_OK naming `start`.
fn ok_bytes(v: Version, start: u64) -> Vec<u8> {
    if v.is_lite05() {
        resp(SubscribeResponse::Start(SubscribeStart { group: start }), v)
    } else {
        resp(
            SubscribeResponse::Ok(SubscribeOk {
                priority: 0,
                ordered: false,
                max_latency: Duration::ZERO,
                start: None,
                end: None,
            }),
            v,
        )
    }
}

/// An accepted subscription (logs cleared).
fn accepted(raw: &mut Raw) -> (SubscriptionId, StreamId) {
    let (id, stream) = subscribe(raw);
    let ok = ok_bytes(raw.v, 0);
    raw.send(stream, &ok);
    raw.clear();
    (id, stream)
}

/// Announce request bytes (`01` + prefix + exclude hop on 04+) with a raw prefix.
fn announce_request_bytes(v: Version, prefix: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_varint(&mut body, prefix.len() as u64).expect("varint");
    body.extend_from_slice(prefix);
    if v.has_hops() {
        put_varint(&mut body, 0).expect("varint");
    }
    let mut out = vec![0x01];
    put_varint(&mut out, body.len() as u64).expect("varint");
    out.extend(body);
    out
}

/// The peer's announce request for `prefix`; returns our listener handle and the stream.
fn peer_announce_request(
    raw: &mut Raw,
    prefix: &[u8],
) -> (moq_proto::session::ListenerId, StreamId) {
    let stream = raw.peer_bi_with(&announce_request_bytes(raw.v, prefix));
    let events = raw.take_events();
    let [Event::AnnounceRequest { id, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    (*id, stream)
}

/// Our announce request for `prefix`, with ANNOUNCE_OK delivered on lite-05 (logs cleared).
fn our_interest(raw: &mut Raw, prefix: &str) -> (moq_proto::session::InterestId, StreamId) {
    let id = raw.s.request_announcements(p(prefix), 0).expect("request");
    raw.pump();
    let stream = raw.last_opened();
    if raw.v.is_lite05() {
        let ok = enc(
            &AnnounceOk {
                hop_id: 99,
                active_count: 0,
            },
            raw.v,
        );
        raw.send(stream, &ok);
    }
    raw.clear();
    (id, stream)
}

fn announce(suffix: &str, active: bool) -> Announce {
    Announce {
        status: if active {
            AnnounceStatus::Active
        } else {
            AnnounceStatus::Ended
        },
        suffix: p(suffix),
        hops: if active { vec![0] } else { Vec::new() },
    }
}

/// The peer subscribes to `demo` / `clock` with Subscribe ID `id` and max latency `latency`.
fn peer_subscribe(raw: &mut Raw, id: u64, latency: Duration) -> (ServeId, StreamId) {
    let m = Subscribe {
        id,
        broadcast: p("demo"),
        track: "clock".into(),
        priority: 0,
        ordered: false,
        max_latency: latency,
        start: None,
        end: None,
    };
    let stream = raw.peer_bi_with(&typed(0x02, &m, raw.v));
    let events = raw.take_events();
    let [Event::Subscribe { id, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    (*id, stream)
}

/// Every RESET_STREAM we ever sent on `id`.
fn resets_on(raw: &Raw, id: StreamId) -> Vec<&Command> {
    raw.history_of(id)
        .into_iter()
        .filter(|c| matches!(c, Command::Reset { .. }))
        .collect()
}

/// A [`Node`] with one session whose peer the test plays by hand: the same job as
/// [`Raw`] one layer up. Every `Open` is granted at once; writes, FINs, resets and stops are
/// recorded per stream.
struct NodePeer {
    node: Node,
    peer: PeerId,
    v: Version,
    now: Instant,
    next_local: u64,
    next_peer: u64,
    pending: Vec<(OpenToken, Dir)>,
    /// Streams the node opened, in order.
    opened: Vec<(StreamId, Dir)>,
    written: HashMap<StreamId, Vec<u8>>,
    read_pos: HashMap<StreamId, usize>,
    finished: HashSet<StreamId>,
    resets: HashMap<StreamId, StreamCode>,
    stops: HashMap<StreamId, StreamCode>,
    events: Vec<NodeEvent>,
}

impl NodePeer {
    /// A node whose one session is `side` of `v`, rooted at `/`. On lite-05 the peer's SETUP
    /// is delivered at once (with Path `/` when the node is the server).
    fn new(v: Version, side: Side) -> Self {
        Self::with_config(
            v,
            side,
            NodeConfig {
                hop_id: 7,
                ..NodeConfig::default()
            },
        )
    }

    /// [`NodePeer::new`] with the node's configuration (an authorizer, say); a server-side
    /// node admits the session at `/`.
    fn with_config(v: Version, side: Side, config: NodeConfig) -> Self {
        let now = Instant::now();
        let mut node = Node::new(config);
        let peer = if side == Side::Server {
            node.add_server_session(now, Config::new(v, side), (!v.is_lite05()).then_some("/"))
        } else {
            node.add_session(now, Config::new(v, side), Some(Path::root()))
        };
        let mut np = Self {
            node,
            peer,
            v,
            now,
            next_local: 1000,
            next_peer: 1,
            pending: Vec::new(),
            opened: Vec::new(),
            written: HashMap::new(),
            read_pos: HashMap::new(),
            finished: HashSet::new(),
            resets: HashMap::new(),
            stops: HashMap::new(),
            events: Vec::new(),
        };
        np.pump();
        if v.is_lite05() {
            let setup = Setup {
                probe: ProbeLevel::Report,
                path: (side == Side::Server).then(|| "/".to_string()),
                role: None,
            };
            let id = np.open(Dir::Uni);
            np.send(id, &typed(0x01, &setup, v), true);
        }
        np
    }

    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(peer) = self.node.next_ready_peer() {
                while let Some(cmd) = self.node.poll_command(peer) {
                    progressed = true;
                    self.apply(cmd);
                }
            }
            while let Some(event) = self.node.poll_event() {
                progressed = true;
                self.events.push(event);
            }
            for (token, dir) in std::mem::take(&mut self.pending) {
                progressed = true;
                let id = StreamId(self.next_local);
                self.next_local += 1;
                self.opened.push((id, dir));
                self.node.input(self.now, self.peer, |s, now| {
                    s.handle_open_granted(now, token, id)
                });
            }
            if !progressed {
                break;
            }
        }
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Open { token, dir, .. } => self.pending.push((token, dir)),
            Command::CancelOpen { token } => self.pending.retain(|(t, _)| *t != token),
            Command::Write { stream, data } => {
                assert!(
                    !self.finished.contains(&stream) && !self.resets.contains_key(&stream),
                    "write after FIN or reset on {stream:?}"
                );
                self.written
                    .entry(stream)
                    .or_default()
                    .extend_from_slice(&data);
            }
            Command::Finish { stream } => {
                assert!(self.finished.insert(stream), "second FIN on {stream:?}");
            }
            Command::Reset { stream, code } => {
                self.resets.insert(stream, code);
            }
            Command::Stop { stream, code } => {
                self.stops.insert(stream, code);
            }
            Command::SetPriority { .. } | Command::SendDatagram { .. } => {}
            Command::Close { code, reason } => panic!("session closed: {code:#x} {reason}"),
            _ => panic!("a variant this test does not know"),
        }
    }

    /// The peer opens a stream.
    fn open(&mut self, dir: Dir) -> StreamId {
        let id = StreamId(self.next_peer);
        self.next_peer += 1;
        self.node.input(self.now, self.peer, |s, now| {
            s.handle_stream_opened(now, id, dir)
        });
        self.pump();
        id
    }

    /// Peer bytes (and FIN when `fin`).
    fn send(&mut self, id: StreamId, data: &[u8], fin: bool) {
        let data = Bytes::copy_from_slice(data);
        self.node.input(self.now, self.peer, |s, now| {
            s.handle_stream_data(now, id, data, fin)
        });
        self.pump();
    }

    /// The `n`th bidi stream the node opened.
    fn bi(&self, n: usize) -> StreamId {
        self.opened
            .iter()
            .filter(|(_, d)| *d == Dir::Bi)
            .nth(n)
            .map(|(id, _)| *id)
            .expect("bidi stream opened")
    }

    fn next_varint(&mut self, id: StreamId) -> u64 {
        let buf = &self.written[&id][self.read_pos.get(&id).copied().unwrap_or(0)..];
        let mut cursor = Cursor::new(buf);
        let value = cursor.varint().expect("varint");
        let used = buf.len() - cursor.remaining();
        *self.read_pos.entry(id).or_default() += used;
        value
    }

    fn next_msg<M: Message>(&mut self, id: StreamId) -> M {
        let buf = &self.written[&id][self.read_pos.get(&id).copied().unwrap_or(0)..];
        let mut cursor = Cursor::new(buf);
        let m = M::decode(&mut cursor, self.v).expect(M::NAME);
        let used = buf.len() - cursor.remaining();
        *self.read_pos.entry(id).or_default() += used;
        m
    }

    /// Local subscription events, in order.
    fn sub_events(&self) -> Vec<SubscriptionEvent> {
        self.events
            .iter()
            .filter_map(|e| match e {
                NodeEvent::Subscription { event, .. } => Some(event.clone()),
                _ => None,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Raw QUIC has no path before lite-05; on lite-05 it travels in SETUP Path (`?query` too).
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_02_lite05_path_travels_in_setup_and_roots_the_server_session() {
    // Client: the SETUP carries the URL path, query included; before lite-05 nothing does.
    let mut config = cfg(V5, Side::Client);
    config.setup_path = Some("/anon?jwt=abc".into());
    let mut raw = Raw::new(config);
    let setup_stream = raw.opened(Dir::Uni)[0];
    assert_eq!(raw.next_varint(setup_stream), 0x01);
    let setup: Setup = raw.next_msg(setup_stream);
    assert_eq!(setup.path.as_deref(), Some("/anon?jwt=abc"));
    for v in [V3, V4] {
        let mut config = cfg(v, Side::Client);
        config.setup_path = Some("/anon".into());
        let raw = Raw::new(config);
        assert!(
            raw.opens.is_empty(),
            "{v}: no SETUP, so no path, before lite-05"
        );
    }

    // Server session: the Path is reported untouched, query and all.
    let mut raw = Raw::new(cfg(V5, Side::Server));
    let setup = Setup {
        probe: ProbeLevel::None,
        path: Some("/anon?jwt=abc".into()),
        role: None,
    };
    raw.peer_uni_with(&typed(0x01, &setup, V5), true);
    assert_eq!(
        raw.take_events(),
        vec![Event::Setup {
            path: Some("/anon?jwt=abc".into()),
            probe: ProbeLevel::None,
            role: None
        }]
    );

    // Node: the lite-05 server roots the session at the Path without its query, so a
    // broadcast the client announces as `demo` lands at `anon/demo`.
    let mut sim = Sim::new(2, Instant::now(), Mode::Fifo);
    let client = sim.add_node(node_config(21));
    let server = sim.add_node(node_config(22));
    let now = sim.now();
    sim.nodes[client].publish(now, &p("demo")).expect("publish");
    sim.connect(client, server, V5, "/anon?jwt=abc");
    sim.run();
    let origin = sim.nodes[server].origin();
    assert!(origin.find(&p("anon/demo")).is_some(), "rooted at /anon");
    assert!(origin.find(&p("demo")).is_none());
}

// ---------------------------------------------------------------------------------------------
// 3. A lite-05 client must send SETUP; the server waits for it.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_03_lite05_client_sends_setup_first_and_server_holds_back_until_it_arrives() {
    // Client: SETUP is the first stream it asks for, written and FINed before it has heard
    // anything from the server, and before any request.
    let mut config = cfg(V5, Side::Client);
    config.setup_path = Some("/".into());
    let mut raw = Raw::new(config);
    raw.s
        .request_announcements(Path::root(), 0)
        .expect("requests need not wait for the server's SETUP");
    raw.pump();
    assert_eq!(raw.opens[0].dir, Dir::Uni);
    let setup_stream = raw.opens[0].stream.expect("granted");
    assert_eq!(raw.all_written(setup_stream)[0], 0x01);
    assert!(raw.finished.contains(&setup_stream));
    assert_eq!(raw.opens[1].dir, Dir::Bi, "the request comes after SETUP");

    // Server: requests that overtake the client's SETUP are held back, then reported in
    // order right after it.
    let mut raw = Raw::new(cfg(V5, Side::Server));
    let announce = raw.peer_bi_with(&announce_request_bytes(V5, b""));
    let m = Subscribe {
        id: 0,
        broadcast: p("demo"),
        track: "clock".into(),
        priority: 0,
        ordered: false,
        max_latency: ms(5000),
        start: None,
        end: None,
    };
    let sub = raw.peer_bi_with(&typed(0x02, &m, V5));
    assert!(raw.events.is_empty(), "{:?}", raw.events);
    assert!(!raw.stops.contains_key(&announce) && !raw.stops.contains_key(&sub));
    let setup = Setup {
        probe: ProbeLevel::None,
        path: Some("/".into()),
        role: None,
    };
    raw.peer_uni_with(&typed(0x01, &setup, V5), true);
    let events = raw.take_events();
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::Setup { .. },
                Event::AnnounceRequest { .. },
                Event::Subscribe { .. }
            ]
        ),
        "{events:?}"
    );
    raw.assert_open();
}

// ---------------------------------------------------------------------------------------------
// 10. gomoqt resets an Announce stream we opened (it dislikes the prefix): only that interest
//     ends. And we accept any prefix form ourselves.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_10_peer_reset_of_our_announce_request_closes_only_that_interest() {
    for v in VERSIONS {
        // gomoqt: STOP_SENDING and RESET_STREAM together, code 0x5 (InvalidPrefix).
        let mut raw = Raw::ready(v, Side::Client);
        let (sub, _) = accepted(&mut raw);
        let (id, stream) = our_interest(&mut raw, "");
        raw.peer_stop(stream, StreamCode(0x5));
        raw.peer_reset(stream, StreamCode(0x5));
        assert_eq!(
            raw.take_events(),
            vec![Event::InterestClosed {
                id,
                error: Some(StreamCode(0x5))
            }],
            "{v}"
        );
        raw.assert_open();
        // A reset alone (no STOP_SENDING): the same, and we FIN our side.
        let (id, stream) = our_interest(&mut raw, "demo");
        raw.peer_reset(stream, StreamCode(0x5));
        assert_eq!(
            raw.take_events(),
            vec![Event::InterestClosed {
                id,
                error: Some(StreamCode(0x5))
            }]
        );
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
        raw.assert_open();
        // The session carries on: the subscription still receives, new requests still go out.
        raw.peer_uni_with(&group_bytes(v, 0, 0, &[(0, b"x")]), true);
        assert_eq!(
            raw.media_log(sub).last().map(String::as_str),
            Some("end 0 Finished")
        );
        our_interest(&mut raw, "other");
        raw.assert_open();
    }

    // Any prefix form is accepted from the requester and normalised.
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        for (prefix, expected) in [
            (&b""[..], Path::root()),
            (b"/", Path::root()),
            (b"demo", p("demo")),
            (b"/demo/", p("demo")),
            (b"demo/", p("demo")),
        ] {
            let stream = raw.peer_bi_with(&announce_request_bytes(v, prefix));
            let events = raw.take_events();
            let got = match events.as_slice() {
                [Event::AnnounceRequest { prefix, .. }] => prefix.clone(),
                other => panic!("{v} {prefix:?}: {other:?}"),
            };
            assert_eq!(got, expected, "{v} {prefix:?}");
            assert!(resets_on(&raw, stream).is_empty());
        }
        raw.assert_open();
    }
}

// ---------------------------------------------------------------------------------------------
// 11. Never reset an Announce stream the peer opened: FIN it. A received lite-03/04 duplicate
//     active closes the session with 0x3, and we never send one.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_11_announce_streams_the_peer_opened_are_finished_never_reset() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);

        // We stop answering: FIN.
        let (id, stream) = peer_announce_request(&mut raw, b"");
        raw.s.close_listener(id);
        raw.pump();
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }], "{v}");
        raw.peer_reset(stream, StreamCode(0x1));
        assert!(raw.take_cmds().is_empty());

        // The requester FINs: FIN back.
        let (id, stream) = peer_announce_request(&mut raw, b"");
        raw.s
            .announce_initial(id, std::iter::empty::<(&Path, &[u64])>())
            .expect("initial");
        raw.pump();
        raw.clear();
        raw.fin(stream);
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }], "{v}");
        assert_eq!(raw.take_events(), vec![Event::ListenerClosed { id }]);

        // The requester resets: still a FIN, and the session carries on.
        let (id, stream) = peer_announce_request(&mut raw, b"");
        raw.peer_reset(stream, StreamCode(0x1));
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }], "{v}");
        assert_eq!(raw.take_events(), vec![Event::ListenerClosed { id }]);

        // The requester gives up before its request is complete (type byte only): FIN too.
        let stream = raw.peer_bi_with(&[0x01]);
        raw.fin(stream);
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }], "{v}");
        let stream = raw.peer_bi_with(&[0x01]);
        raw.peer_reset(stream, StreamCode(0x1));
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }], "{v}");
        raw.assert_open();
        assert!(raw.events.is_empty());
    }

    // Over the max_announce_requests cap: FINed empty, not reset, not reported.
    for v in VERSIONS {
        let mut config = cfg(v, Side::Server);
        config.max_announce_requests = 1;
        let mut raw = Raw::ready_with(config);
        peer_announce_request(&mut raw, b"");
        raw.clear();
        let second = raw.peer_bi_with(&announce_request_bytes(v, b""));
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Finish { stream: second }],
            "{v}"
        );
        assert!(raw.events.is_empty());
        raw.peer_reset(second, StreamCode(0x1));
        assert!(raw.take_cmds().is_empty());
        raw.assert_open();
    }

    // Whatever the requester did above, no Announce stream it opened was ever reset.
    // (Checked per case through `take_cmds`; here the invariant over a whole mixed run.)
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Server);
        let mut streams = Vec::new();
        for _ in 0..3 {
            streams.push(peer_announce_request(&mut raw, b"/demo/"));
        }
        raw.s.close_listener(streams[0].0);
        raw.fin(streams[1].1);
        raw.peer_reset(streams[2].1, StreamCode(0x5));
        for (_, stream) in &streams {
            raw.fin(*stream);
            assert!(
                resets_on(&raw, *stream).is_empty(),
                "{v}: {:?}",
                raw.history_of(*stream)
            );
        }
        raw.assert_open();
        raw.assert_idle();
    }

    // We never send a lite-03/04 duplicate active: a second active for an active path is not
    // sent (lite-05 sends it as a route change).
    for v in VERSIONS {
        let mut config = cfg(v, Side::Server);
        config.hop_id = 3;
        let mut raw = Raw::ready_with(config);
        let (id, stream) = peer_announce_request(&mut raw, b"");
        let demo = p("demo");
        raw.s
            .announce_initial(id, [(&demo, &[1u64][..])])
            .expect("initial");
        raw.s.announce(id, &demo, true, &[2]).expect("again");
        raw.pump();
        if v.is_lite05() {
            let _: AnnounceOk = raw.next_msg(stream);
        }
        let first: Announce = raw.next_msg(stream);
        assert_eq!(first.status, AnnounceStatus::Active);
        if v.is_lite05() {
            let second: Announce = raw.next_msg(stream);
            assert_eq!(second.hops, vec![2]);
        }
        raw.assert_drained(stream);
    }

    // Receiving one: lite-03/04 close with 0x3 (the reference's reaction); lite-05 replaces.
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (_, stream) = our_interest(&mut raw, "");
        raw.send(stream, &enc(&announce("demo", true), v));
        raw.send(stream, &enc(&announce("demo", true), v));
        if v.is_lite05() {
            raw.assert_open();
        } else {
            raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
            assert!(
                resets_on(&raw, stream).is_empty(),
                "a session close, not a reset"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 12. The reference resets FETCH on 03/04 (0x1): a failed fetch, not a failed session.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_12_fetch_reset_by_the_peer_is_a_failed_fetch_only() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let (sub, _) = accepted(&mut raw);
        let id = raw.s.fetch(p("demo"), "clock", 0, 3).expect("fetch");
        raw.pump();
        let stream = raw.last_opened();
        raw.clear();
        raw.peer_reset(stream, StreamCode::CANCEL);
        assert_eq!(
            raw.take_events(),
            vec![Event::FetchClosed {
                id,
                error: Some(StreamCode::CANCEL)
            }],
            "{v}"
        );
        assert_eq!(
            raw.take_cmds(),
            vec![Command::Reset {
                stream,
                code: StreamCode::CANCEL
            }]
        );
        raw.assert_open();
        // gomoqt style (STOP_SENDING then RESET_STREAM): one FetchClosed.
        let id = raw.s.fetch(p("demo"), "clock", 0, 3).expect("fetch");
        raw.pump();
        let stream = raw.last_opened();
        raw.clear();
        raw.peer_stop(stream, StreamCode(0x1));
        raw.peer_reset(stream, StreamCode(0x1));
        assert_eq!(
            raw.take_events(),
            vec![Event::FetchClosed {
                id,
                error: Some(StreamCode(0x1))
            }]
        );
        // The subscription is untouched.
        raw.peer_uni_with(&group_bytes(v, 0, 4, &[(0, b"x")]), true);
        assert_eq!(
            raw.media_log(sub).last().map(String::as_str),
            Some("end 4 Finished")
        );
        raw.assert_open();
    }
}

// ---------------------------------------------------------------------------------------------
// 13. PROBE: as requester send nothing but the stream type; as responder report at once and
//     tolerate a target.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_13_probe_requester_sends_no_probe_and_responder_reports_without_a_target() {
    for v in VERSIONS {
        // Requester: the stream type only, no PROBE, no FIN.
        let mut raw = Raw::ready(v, Side::Client);
        raw.s.probe(None).expect("probe");
        raw.pump();
        let stream = raw.last_opened();
        assert_eq!(raw.all_written(stream), &[0x04], "{v}");
        assert!(!raw.finished.contains(&stream));
        // A measured 0 is passed on as 0 ("unknown").
        raw.send(
            stream,
            &enc(
                &Probe {
                    bitrate: 0,
                    rtt_ms: 0,
                },
                v,
            ),
        );
        assert_eq!(
            raw.take_events(),
            vec![Event::ProbeReport {
                bitrate: 0,
                rtt: Duration::ZERO
            }]
        );
        // The reference's responder resets a probe stream (0x12): no session error.
        raw.peer_reset(stream, StreamCode::MALFORMED_TRACK);
        raw.assert_open();

        // Responder: a bare Probe stream (no target) is answered at once.
        let mut raw = Raw::ready(v, Side::Server);
        let now = raw.now;
        raw.s.handle_stats(
            now,
            TransportStats {
                bitrate: 3_000_000,
                rtt: ms(40),
            },
        );
        raw.pump();
        let stream = raw.peer_bi_with(&[0x04]);
        let report: Probe = raw.next_msg(stream);
        let rtt_ms = if v == V3 { 0 } else { 40 };
        assert_eq!(
            report,
            Probe {
                bitrate: 3_000_000,
                rtt_ms
            },
            "{v}"
        );
        // A gomoqt target is tolerated: no reset, no stop, no close.
        raw.send(
            stream,
            &enc(
                &Probe {
                    bitrate: 1_000_000,
                    rtt_ms: 0,
                },
                v,
            ),
        );
        raw.assert_open();
        assert!(
            raw.resets.is_empty() && raw.stops.is_empty(),
            "{:?}",
            raw.cmds
        );

        // The type and a target in one chunk (gomoqt's requester): reported at once as well.
        let mut raw = Raw::ready(v, Side::Server);
        let mut bytes = vec![0x04];
        bytes.extend(enc(
            &Probe {
                bitrate: 1_000_000,
                rtt_ms: 0,
            },
            v,
        ));
        let stream = raw.peer_bi_with(&bytes);
        let _: Probe = raw.next_msg(stream);
        raw.assert_open();
        assert!(raw.resets.is_empty() && raw.stops.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// 15. The reference does not FIN at End Group: a bounded subscriber finishes by itself.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_15_bounded_local_subscription_finishes_without_the_publishers_fin() {
    for v in VERSIONS {
        let mut np = NodePeer::new(v, Side::Client);
        // The node asked for announcements on connect; the peer announces `demo`.
        let interest = np.bi(0);
        assert_eq!(np.next_varint(interest), 0x01);
        let _: AnnounceRequest = np.next_msg(interest);
        let mut reply = Vec::new();
        if v.is_lite05() {
            reply.extend(enc(
                &AnnounceOk {
                    hop_id: 99,
                    active_count: 1,
                },
                v,
            ));
        }
        let hops = match v {
            V5 => vec![],
            _ => vec![99],
        };
        reply.extend(enc(
            &Announce {
                status: AnnounceStatus::Active,
                suffix: p("demo"),
                hops,
            },
            v,
        ));
        np.send(interest, &reply, false);

        // Groups 0 and 1 only.
        let now = np.now;
        let params = SubscribeParams {
            start: Some(0),
            end: Some(1),
            ..SubscribeParams::default()
        };
        np.node.subscribe(now, &p("demo"), "clock", params);
        np.pump();
        let stream = np.bi(1);
        assert_eq!(np.next_varint(stream), 0x02);
        let m: Subscribe = np.next_msg(stream);
        assert_eq!(m.start, Some(0), "{v}");

        // The reference: one OK (start unknown on 03/04), the two groups, then silence: no
        // SUBSCRIBE_DROP, no FIN on the subscribe stream.
        np.send(stream, &ok_bytes(v, 0), false);
        for seq in 0..2 {
            let group = np.open(Dir::Uni);
            np.send(group, &group_bytes(v, m.id, seq, &[(0, b"x")]), true);
        }
        let events = np.sub_events();
        assert_eq!(
            events.last(),
            Some(&SubscriptionEvent::Closed { error: None }),
            "{v}: {events:?}"
        );
        let ends: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                SubscriptionEvent::GroupEnd {
                    seq,
                    state: GroupState::Finished,
                } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(ends, vec![0, 1]);
        // The subscriber FINed its subscribe stream itself, without a reset.
        assert!(np.finished.contains(&stream), "{v}: our FIN");
        assert!(!np.resets.contains_key(&stream));
        // The publisher's FIN, whenever it comes, just retires the stream.
        np.send(stream, &[], true);
        assert!(!np.resets.contains_key(&stream) && !np.stops.contains_key(&stream));
        let session = np.node.session(np.peer).expect("session");
        assert!(!session.is_closed());
    }
}

// ---------------------------------------------------------------------------------------------
// 20. The Subscribe ID is registered before SUBSCRIBE is sent: early GROUP streams are kept.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_20_group_before_the_subscribe_is_granted_or_answered_is_delivered() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        // Not even granted yet.
        raw.auto_grant = false;
        let early = raw
            .s
            .subscribe(p("demo"), "clock", SubscribeParams::default())
            .expect("subscribe");
        raw.pump();
        assert_eq!(raw.pending_opens().len(), 1);
        let group = raw.peer_uni_with(&group_bytes(v, 0, 7, &[(0, b"a")]), true);
        assert!(!raw.stops.contains_key(&group), "{v}");
        assert_eq!(
            raw.media_log(early).last().map(String::as_str),
            Some("end 7 Finished")
        );
        raw.auto_grant = true;
        raw.grant_all();

        // Granted but not answered.
        raw.clear();
        let (answered_late, stream) = subscribe(&mut raw);
        let group = raw.peer_uni_with(&group_bytes(v, 1, 3, &[(0, b"b")]), false);
        assert!(!raw.stops.contains_key(&group));
        assert_eq!(
            raw.media_log(answered_late),
            vec![
                "start 3".to_string(),
                format!(
                    "frame 3 ts={:?} size=1 \"b\" rem=0",
                    v.is_lite05().then_some(0)
                )
            ]
        );
        // The response follows and changes nothing for the group in flight.
        raw.send(stream, &ok_bytes(v, 3));
        raw.fin(group);
        assert!(
            raw.events
                .iter()
                .any(|e| matches!(e, Event::SubscribeOk { id, .. } if *id == answered_late))
        );
        assert_eq!(
            raw.media_log(answered_late).last().map(String::as_str),
            Some("end 3 Finished")
        );

        // Only an ID we never used is stopped (0x1, as the reference does).
        let stray = raw.peer_uni_with(&group_bytes(v, 9, 0, &[]), false);
        assert_eq!(raw.stops.get(&stray), Some(&StreamCode::CANCEL));
        raw.assert_open();
    }
}

// ---------------------------------------------------------------------------------------------
// 22. Never FIN a FETCH or TRACK request early: our side stays open until the reply's FIN.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_22_fetch_and_track_requests_are_finished_only_after_the_reply_fin() {
    for v in VERSIONS {
        let mut raw = Raw::ready(v, Side::Client);
        let id = raw.s.fetch(p("demo"), "clock", 0, 2).expect("fetch");
        raw.pump();
        let stream = raw.last_opened();
        assert!(!raw.finished.contains(&stream), "{v}: not with the request");
        // Whole frames, yet no FIN from the publisher: we wait.
        let mut reply = frame(v, 5, b"one");
        reply.extend(frame(v, 1, b"two"));
        raw.send(stream, &reply);
        assert!(
            !raw.finished.contains(&stream),
            "{v}: not before the reply's FIN"
        );
        assert!(
            !raw.events
                .iter()
                .any(|e| matches!(e, Event::FetchClosed { .. }))
        );
        raw.clear();
        raw.fin(stream);
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }], "{v}");
        assert_eq!(
            raw.take_events(),
            vec![Event::FetchClosed { id, error: None }]
        );
        raw.assert_idle();
    }

    // TRACK (lite-05): TRACK_INFO alone does not end our side; its FIN does.
    let mut raw = Raw::ready(V5, Side::Client);
    let id = raw.s.track_info(p("demo"), "clock").expect("track");
    raw.pump();
    let stream = raw.last_opened();
    assert!(!raw.finished.contains(&stream));
    raw.clear();
    raw.send(stream, &enc(&TrackInfo::default(), V5));
    assert_eq!(
        raw.take_events(),
        vec![Event::TrackInfo {
            id,
            result: Ok(TrackInfo::default())
        }]
    );
    assert!(raw.take_cmds().is_empty(), "still open after TRACK_INFO");
    raw.fin(stream);
    assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
    raw.assert_idle();

    // Serving, we do not punish an early requester FIN the way the reference does.
    let mut raw = Raw::ready(V5, Side::Server);
    let request = TrackRequest {
        broadcast: p("demo"),
        track: "clock".into(),
    };
    let stream = raw.peer_bi();
    raw.send_fin(stream, &typed(0x06, &request, V5));
    let events = raw.take_events();
    let [Event::TrackRequest { id, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    raw.s.track_info_reply(*id, Ok(TrackInfo::default()));
    raw.pump();
    assert!(raw.finished.contains(&stream) && raw.resets.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 23. GOAWAY with an empty URI: reconnect to the same URL; 0x10 follows the drain.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_23_empty_goaway_uri_is_reported_and_new_requests_are_refused() {
    for v in [V4, V5] {
        let mut raw = Raw::ready(v, Side::Client);
        let (sub, _) = accepted(&mut raw);
        // `05 01 00`: GOAWAY, URI "".
        let stream = raw.peer_bi_with(&[0x05, 0x01, 0x00]);
        assert_eq!(
            raw.take_events(),
            vec![Event::Goaway { uri: String::new() }],
            "{v}"
        );
        assert_eq!(raw.take_cmds(), vec![Command::Finish { stream }]);
        assert_eq!(
            raw.s
                .subscribe(p("demo"), "clock", SubscribeParams::default()),
            Err(RequestError::GoingAway)
        );
        assert_eq!(
            raw.s.request_announcements(Path::root(), 0),
            Err(RequestError::GoingAway)
        );
        assert_eq!(
            raw.s.fetch(p("demo"), "clock", 0, 0),
            Err(RequestError::GoingAway)
        );
        // What is in flight carries on through the drain.
        raw.peer_uni_with(&group_bytes(v, 0, 1, &[(0, b"x")]), true);
        assert_eq!(
            raw.media_log(sub).last().map(String::as_str),
            Some("end 1 Finished")
        );
        // The relay's force close 10 s later.
        raw.advance(Duration::from_secs(10));
        raw.assert_open();
        let now = raw.now;
        raw.s
            .handle_connection_lost(now, SessionCode::GOAWAY_TIMEOUT, "goaway timeout");
        raw.pump();
        assert!(raw.events.contains(&Event::Closed {
            code: SessionCode::GOAWAY_TIMEOUT,
            reason: "goaway timeout".into(),
            local: false
        }));
    }

    // Sending one: an empty URI, the peer's 0x1 reset of its side is harmless, 0x10 at 10 s.
    for v in [V4, V5] {
        let mut raw = Raw::ready(v, Side::Server);
        let now = raw.now;
        raw.s
            .goaway(now, "", Duration::from_secs(10))
            .expect("goaway");
        raw.pump();
        let stream = raw.last_opened();
        assert_eq!(raw.all_written(stream), &[0x05, 0x01, 0x00], "{v}");
        raw.peer_reset(stream, StreamCode::CANCEL);
        raw.assert_open();
        assert_eq!(raw.fire_timeout(), Some(Duration::from_secs(10)));
        raw.assert_closed(SessionCode::GOAWAY_TIMEOUT);
    }
}

// ---------------------------------------------------------------------------------------------
// 24. Error codes: ours follow the reference's tables (docs/wire.md §6); peers' codes are passed
//     on raw, never reinterpreted across the session/stream spaces.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_24_codes_we_send_follow_the_reference_tables() {
    // The constants, against docs/wire.md §6.
    assert_eq!(
        [
            SessionCode::NO_ERROR,
            SessionCode::INTERNAL,
            SessionCode::UNAUTHORIZED,
            SessionCode::PROTOCOL_VIOLATION,
            SessionCode::GOAWAY_TIMEOUT,
            SessionCode::TIMEOUT,
            SessionCode::VERSION,
            SessionCode::app(0),
        ]
        .map(u64::from),
        [0x0, 0x1, 0x2, 0x3, 0x10, 0x11, 0x15, 64]
    );
    assert_eq!(
        [
            StreamCode::INTERNAL,
            StreamCode::CANCEL,
            StreamCode::DELIVERY_TIMEOUT,
            StreamCode::SESSION_CLOSED,
            StreamCode::GOING_AWAY,
            StreamCode::TOO_FAR_BEHIND,
            StreamCode::MALFORMED_TRACK,
            StreamCode::CONTROL_TIMEOUT,
            StreamCode::GROUP_TOO_LARGE,
            StreamCode::NOT_FOUND,
            StreamCode::OLD,
            StreamCode::EVICTED,
            StreamCode::UNROUTABLE,
            StreamCode::WRONG_SIZE,
            StreamCode::FRAME_TOO_LARGE,
            StreamCode::TIMESTAMP_MISMATCH,
        ]
        .map(u64::from),
        [
            0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x12, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38,
            0x39
        ]
    );

    for v in VERSIONS {
        // 0x34 Old: a non-newest group past the subscriber's max latency is reset.
        let mut raw = Raw::ready(v, Side::Server);
        let (serve, _) = peer_subscribe(&mut raw, 0, ms(100));
        raw.s
            .accept_serve(serve, TrackInfo::default(), None)
            .expect("accept");
        let now = raw.now;
        let old = raw.s.open_group(now, serve, 0, now, None).expect("group 0");
        raw.s.write_frame(now, old, 0, 1, Bytes::from_static(b"x"));
        raw.s.open_group(now, serve, 1, now, None).expect("group 1");
        raw.pump();
        let old_stream = raw
            .opened(Dir::Uni)
            .into_iter()
            .rev()
            .nth(1)
            .expect("group 0 stream");
        raw.advance(ms(100));
        assert_eq!(raw.resets.get(&old_stream), Some(&StreamCode::OLD), "{v}");

        // 0x1 Cancel: a GROUP for a Subscribe ID we never used.
        let stray = raw.peer_uni_with(&group_bytes(v, 42, 0, &[]), false);
        assert_eq!(raw.stops.get(&stray), Some(&StreamCode::CANCEL));
        // 0x1 Cancel: an unknown bidi stream type, that stream only.
        let unknown = raw.peer_bi_with(&[0x3f]);
        assert_eq!(raw.resets.get(&unknown), Some(&StreamCode::CANCEL));
        assert_eq!(raw.stops.get(&unknown), Some(&StreamCode::CANCEL));
        // 0x0 Internal: a SETUP stream before lite-05.
        if !v.is_lite05() {
            let setup = raw.peer_uni_with(&[0x01, 0x00], false);
            assert_eq!(raw.stops.get(&setup), Some(&StreamCode::INTERNAL));
        }
        raw.assert_open();

        // A stream code 0x3 from the peer (the reference's SessionClosed/Unauthorized, gomoqt's
        // Subscribe NotFound) is reported raw on that request; the session stays open.
        let mut raw = Raw::ready(v, Side::Client);
        let (sub, stream) = accepted(&mut raw);
        raw.peer_reset(stream, StreamCode::SESSION_CLOSED);
        assert_eq!(
            raw.take_events(),
            vec![Event::SubscriptionClosed {
                id: sub,
                error: Some(StreamCode(0x3))
            }]
        );
        raw.assert_open();

        // Session 0x3 ProtocolViolation: a decode error on a control stream.
        let stream = raw.peer_bi_with(&[0x02]);
        raw.send(stream, &[0x01, 0xff]);
        raw.assert_closed(SessionCode::PROTOCOL_VIOLATION);
    }

    // 0x36 Unroutable: the node rejects a subscription to a broadcast nobody announced.
    for v in VERSIONS {
        let mut np = NodePeer::new(v, Side::Server);
        let m = Subscribe {
            id: 0,
            broadcast: p("nobody"),
            track: "clock".into(),
            priority: 0,
            ordered: false,
            max_latency: ms(5000),
            start: None,
            end: None,
        };
        let stream = np.open(Dir::Bi);
        np.send(stream, &typed(0x02, &m, v), false);
        assert_eq!(np.resets.get(&stream), Some(&StreamCode::UNROUTABLE), "{v}");
        assert_eq!(np.stops.get(&stream), Some(&StreamCode::UNROUTABLE));
    }
    // 0x3 for a request outside the session's grant (what the reference relay sends): a
    // SUBSCRIBE outside the subscribe patterns is reset with it; inside them, the usual codes.
    for v in VERSIONS {
        let public = moq_proto::auth::Public {
            publish: vec![],
            subscribe: vec![moq_proto::auth::Pattern::parse("open/**").unwrap()],
        };
        let mut np = NodePeer::with_config(
            v,
            Side::Server,
            NodeConfig {
                hop_id: 7,
                authorizer: Some(std::sync::Arc::new(public)),
                ..NodeConfig::default()
            },
        );
        for (broadcast, code) in [
            ("secret/cam", StreamCode::UNAUTHORIZED),
            ("open/cam", StreamCode::UNROUTABLE),
        ] {
            let m = Subscribe {
                id: 0,
                broadcast: p(broadcast),
                track: "video".into(),
                priority: 0,
                ordered: false,
                max_latency: ms(5000),
                start: None,
                end: None,
            };
            let stream = np.open(Dir::Bi);
            np.send(stream, &typed(0x02, &m, v), false);
            assert_eq!(np.resets.get(&stream), Some(&code), "{v} {broadcast}");
        }
        assert_eq!(np.node.stats().auth_refused_requests, 1, "{v}");
    }
    // 0x10 GoawayTimeout: see gotcha 23. 0x15 Version: the QUIC engine, on ALPN failure.
}

// ---------------------------------------------------------------------------------------------
// 26. Datagrams: above 1200 bytes dropped on receive by default; the limit can be raised.
// ---------------------------------------------------------------------------------------------

/// A lite-05 datagram body of exactly `size` bytes for Subscribe ID 0, group `seq`, ts 0.
fn datagram_of(size: usize, seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, 0).expect("varint");
    put_varint(&mut out, seq).expect("varint");
    put_varint(&mut out, 0).expect("varint");
    out.resize(size, b'd');
    out
}

fn datagram_seqs(raw: &Raw) -> Vec<u64> {
    raw.events
        .iter()
        .filter_map(|e| match e {
            Event::Datagram { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn gotcha_26_datagrams_above_1200_bytes_dropped_unless_limits_raise_it() {
    assert_eq!(MAX_DATAGRAM_SIZE, 1200);
    let mut raw = Raw::ready(V5, Side::Client);
    accepted(&mut raw);
    raw.datagram(&datagram_of(1200, 1));
    raw.datagram(&datagram_of(1201, 2));
    assert_eq!(datagram_seqs(&raw), vec![1]);
    raw.assert_open();

    let mut config = cfg(V5, Side::Client);
    config.limits.max_datagram_size = 1452;
    let mut raw = Raw::ready_with(config);
    accepted(&mut raw);
    raw.datagram(&datagram_of(1201, 1));
    raw.datagram(&datagram_of(1452, 2));
    raw.datagram(&datagram_of(1453, 3));
    assert_eq!(datagram_seqs(&raw), vec![1, 2]);
    raw.assert_open();

    // We never send one above 1200 bytes, whatever we accept: the caller falls back to a
    // stream.
    let mut config = cfg(V5, Side::Server);
    config.limits.max_datagram_size = 1452;
    let mut raw = Raw::ready_with(config);
    let (serve, _) = peer_subscribe(&mut raw, 0, ms(5000));
    raw.s
        .accept_serve(serve, TrackInfo::default(), None)
        .expect("accept");
    // Header `00 00 00` (Subscribe ID 0, group 0, timestamp 0) plus the payload.
    let big = Bytes::from(vec![0u8; 1201 - 3]);
    assert!(!raw.s.send_datagram(serve, 0, 0, &big), "1201 bytes");
    let fits = Bytes::from(vec![0u8; 1200 - 3]);
    assert!(raw.s.send_datagram(serve, 0, 0, &fits), "1200 bytes");
    raw.pump();
    assert_eq!(raw.datagrams.len(), 1);
    assert_eq!(raw.datagrams[0].len(), 1200);
}

// ---------------------------------------------------------------------------------------------
// 27. gomoqt v0.17 inputs: groups from 1, start "group 0" in +1 encoding, a lone
//     SUBSCRIBE_DROP, peers that never FIN, duplicate Subscribe IDs.
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_27_gomoqt_style_inputs_are_tolerated() {
    for v in VERSIONS {
        // A gomoqt SUBSCRIBE: `/demo`, `clock`, start wire value 1 (+1 encoding: group 0, which
        // gomoqt means as "from the start"), end 0 (unbounded).
        let mut raw = Raw::ready(v, Side::Server);
        let mut body = vec![0x00, 0x05];
        body.extend_from_slice(b"/demo");
        body.push(0x05);
        body.extend_from_slice(b"clock");
        body.extend_from_slice(&[0x01, 0x00, 0x00, 0x01, 0x00]);
        let mut bytes = vec![0x02, body.len() as u8];
        bytes.extend(body);
        let stream = raw.peer_bi_with(&bytes);
        let events = raw.take_events();
        let [
            Event::Subscribe {
                id: serve,
                broadcast,
                params,
                ..
            },
        ] = events.as_slice()
        else {
            panic!("{v}: {events:?}");
        };
        assert_eq!(broadcast, &p("demo"));
        assert_eq!((params.start, params.end), (Some(0), None), "{v}");
        // Its groups start at 1: group 1 is served, nothing waits for group 0.
        let serve = *serve;
        raw.s
            .accept_serve(serve, TrackInfo::default(), Some(1))
            .expect("accept");
        let now = raw.now;
        assert!(raw.s.open_group(now, serve, 1, now, None).is_some(), "{v}");
        raw.pump();
        if v.is_lite05() {
            assert_eq!(
                raw.next_response(stream),
                SubscribeResponse::Start(SubscribeStart { group: 1 })
            );
        }

        // Subscribing to gomoqt: the first group is 1, and a lone SUBSCRIBE_DROP (no groups
        // for it, nothing after it, no FIN) is reported and changes nothing else.
        let mut raw = Raw::ready(v, Side::Client);
        let (sub, stream) = accepted(&mut raw);
        raw.peer_uni_with(&group_bytes(v, 0, 1, &[(0, b"g1")]), true);
        assert_eq!(raw.media_log(sub)[0], "start 1");
        let drop = SubscribeResponse::Drop(SubscribeDrop {
            start: 2,
            end: 2,
            error: 0,
        });
        raw.send(stream, &resp(drop, v));
        assert!(raw.events.contains(&Event::GroupsDropped {
            id: sub,
            start: 2,
            end: 2,
            code: StreamCode(0)
        }));
        raw.peer_uni_with(&group_bytes(v, 0, 3, &[(0, b"g3")]), true);
        assert_eq!(
            raw.media_log(sub).last().map(String::as_str),
            Some("end 3 Finished")
        );
        raw.assert_open();

        // A publisher that never FINs: unsubscribing needs nothing from it. We FIN, stop the
        // open group, report at once and forget the ID (never reused: gomoqt does not check).
        let open_group = raw.peer_uni_with(&group_bytes(v, 0, 4, &[(0, b"g4")]), false);
        raw.clear();
        raw.s.unsubscribe(sub);
        raw.pump();
        assert!(raw.finished.contains(&stream));
        assert_eq!(raw.stops.get(&open_group), Some(&StreamCode::CANCEL));
        assert_eq!(
            raw.take_events(),
            vec![Event::SubscriptionClosed {
                id: sub,
                error: None
            }]
        );
        let (_, next) = subscribe(&mut raw);
        assert_eq!(raw.next_varint(next), 0x02);
        let m: Subscribe = raw.next_msg(next);
        assert_eq!(m.id, 1, "{v}: Subscribe IDs are never reused");
        let late = raw.peer_uni_with(&group_bytes(v, 0, 5, &[]), false);
        assert_eq!(raw.stops.get(&late), Some(&StreamCode::CANCEL));
        raw.assert_open();

        // A subscriber that never FINs after we end the subscription: we are done anyway.
        let mut raw = Raw::ready(v, Side::Server);
        let (serve, stream) = peer_subscribe(&mut raw, 0, ms(5000));
        raw.s
            .accept_serve(serve, TrackInfo::default(), None)
            .expect("accept");
        raw.s.end_serve(serve, 0);
        raw.pump();
        assert!(raw.finished.contains(&stream));
        assert!(raw.events.contains(&Event::ServeClosed { id: serve }));
        // Until our FIN is acknowledged the subscriber may not know the track ended.
        assert!(raw.s.is_delivering());
        raw.ack(stream);
        assert!(!raw.s.is_delivering());
        raw.clear();
        // A duplicate Subscribe ID from the peer is refused alone (gomoqt would not notice).
        let (_, first) = peer_subscribe(&mut raw, 5, ms(5000));
        let m = Subscribe {
            id: 5,
            broadcast: p("demo"),
            track: "other".into(),
            priority: 0,
            ordered: false,
            max_latency: ms(5000),
            start: None,
            end: None,
        };
        let dup = raw.peer_bi_with(&typed(0x02, &m, v));
        assert_eq!(raw.resets.get(&dup), Some(&StreamCode::CANCEL), "{v}");
        assert!(!raw.resets.contains_key(&first));
        raw.assert_open();
    }

    // lite-05: a SUBSCRIBE_DROP with no SUBSCRIBE_OK before it is accepted.
    let mut raw = Raw::ready(V5, Side::Client);
    let (sub, stream) = subscribe(&mut raw);
    raw.clear();
    let drop = SubscribeResponse::Drop(SubscribeDrop {
        start: 0,
        end: 0,
        error: 0,
    });
    raw.send(stream, &resp(drop, V5));
    assert_eq!(
        raw.take_events(),
        vec![Event::GroupsDropped {
            id: sub,
            start: 0,
            end: 0,
            code: StreamCode(0)
        }]
    );
    raw.assert_open();
}
