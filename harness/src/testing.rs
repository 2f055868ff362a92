//! A deterministic in-memory network for testing [`Node`]s and their sessions.
//!
//! Each link is one "connection" between a client node and a server node: ordered byte
//! streams (split into random chunks), resets, stop-sending, acknowledgements, datagrams and
//! connection close, all in virtual time. What is delivered next is chosen by a seeded RNG
//! among the streams with pending data (order within a stream is always kept), so a seed fixes
//! the whole run. With [`Mode::Fifo`] delivery is strictly first-in first-out and chunks are
//! passed through whole, which is what benchmarks use.
//!
//! A test harness: it panics when a run does not settle (a livelock is a bug to report).
#![allow(clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::node::{Node, NodeConfig, NodeEvent};
use moq_proto::origin::PeerId;
use moq_proto::session::{Command, Config, Dir, OpenToken, Side, StreamId};
use moq_proto::wire::{Path, Version};

/// A small seeded RNG (splitmix64): enough for shuffling deliveries, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 1.0 < p
    }
}

/// How deliveries are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Random stream interleaving and random chunk splits (seeded).
    Shuffle,
    /// First-in first-out, chunks whole.
    Fifo,
}

/// One end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct End {
    /// Index of the node.
    pub node: usize,
    /// The peer handle on that node.
    pub peer: PeerId,
}

#[derive(Debug)]
enum Delivery {
    Grant(OpenToken, StreamId),
    Data(StreamId, Dir, Bytes, bool),
    Reset(StreamId, Dir, StreamCode),
    Stop(StreamId, StreamCode),
    Acked(StreamId),
    Datagram(Bytes),
    Close(SessionCode, String),
}

struct Direction {
    /// Per-stream FIFOs, plus one for connection-level items (key `None`).
    queues: HashMap<Option<StreamId>, VecDeque<Delivery>>,
    /// Streams with something queued, in arrival order (for FIFO and random picks).
    order: VecDeque<Option<StreamId>>,
    fifo: VecDeque<Delivery>,
    /// Streams this side has seen opened by the other side.
    seen: HashMap<StreamId, Dir>,
}

impl Direction {
    fn new() -> Self {
        Self {
            queues: HashMap::new(),
            order: VecDeque::new(),
            fifo: VecDeque::new(),
            seen: HashMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty() && self.fifo.is_empty()
    }
}

struct Link {
    ends: [End; 2],
    /// Deliveries toward `ends[i]`.
    toward: [Direction; 2],
    next_stream: u64,
    dirs: HashMap<StreamId, Dir>,
    alive: bool,
}

/// Several nodes connected by in-memory links.
pub struct Sim {
    /// The nodes.
    pub nodes: Vec<Node>,
    links: Vec<Link>,
    by_end: HashMap<End, (usize, usize)>,
    rng: Rng,
    now: Instant,
    mode: Mode,
    /// Largest random chunk when splitting writes in [`Mode::Shuffle`].
    pub max_chunk: usize,
    /// Probability that a datagram is lost.
    pub datagram_loss: f64,
    events: Vec<VecDeque<NodeEvent>>,
}

impl Sim {
    /// An empty network starting at `start`.
    pub fn new(seed: u64, start: Instant, mode: Mode) -> Self {
        Self {
            nodes: Vec::new(),
            links: Vec::new(),
            by_end: HashMap::new(),
            rng: Rng::new(seed),
            now: start,
            mode,
            max_chunk: 64,
            datagram_loss: 0.0,
            events: Vec::new(),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The RNG (to drive scripts from the same seed).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Add a node; returns its index.
    pub fn add_node(&mut self, config: NodeConfig) -> usize {
        self.nodes.push(Node::new(config));
        self.events.push(VecDeque::new());
        self.nodes.len() - 1
    }

    /// Connect `client` to `server` on `version`. The server roots the session at `path`
    /// (carried in SETUP on lite-05, given directly otherwise, as the URL would be).
    /// Returns the link index.
    pub fn connect(&mut self, client: usize, server: usize, version: Version, path: &str) -> usize {
        let now = self.now;
        let mut client_cfg = Config::new(version, Side::Client);
        if version.is_lite05() {
            client_cfg.setup_path = Some(path.to_string());
        }
        let server_cfg = Config::new(version, Side::Server);
        // The path (with any `?jwt=` query) reaches the server as the URL would.
        let request = (!version.is_lite05()).then_some(path);
        let a = self.nodes[client].add_session(now, client_cfg, Some(Path::root()));
        let b = self.nodes[server].add_server_session(now, server_cfg, request);
        let ends = [
            End {
                node: client,
                peer: a,
            },
            End {
                node: server,
                peer: b,
            },
        ];
        self.links.push(Link {
            ends,
            toward: [Direction::new(), Direction::new()],
            next_stream: 0,
            dirs: HashMap::new(),
            alive: true,
        });
        let link = self.links.len() - 1;
        self.by_end.insert(ends[0], (link, 0));
        self.by_end.insert(ends[1], (link, 1));
        self.run();
        link
    }

    /// The two ends of a link (client first).
    pub fn ends(&self, link: usize) -> [End; 2] {
        self.links[link].ends
    }

    /// Drain every command and deliver until nothing moves, firing due timers.
    pub fn run(&mut self) {
        let mut budget = 10_000_000u64;
        loop {
            self.collect_commands();
            self.collect_events();
            if !self.deliver_one() {
                if !self.fire_timers() {
                    break;
                }
                continue;
            }
            budget -= 1;
            if budget == 0 {
                panic!("simulation did not settle (livelock?)");
            }
        }
    }

    /// Advance virtual time by `by` in steps, running to quiescence at each timer.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        loop {
            self.run();
            let next = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
            match next {
                Some(t) if t <= target => self.now = self.now.max(t),
                _ => break,
            }
            for node in &mut self.nodes {
                if node.poll_timeout().is_some_and(|t| t <= self.now) {
                    node.handle_timeout(self.now);
                }
            }
        }
        self.now = target;
        self.fire_timers();
        self.run();
    }

    /// Events a node reported since the last call.
    pub fn events(&mut self, node: usize) -> Vec<NodeEvent> {
        self.collect_events();
        self.events[node].drain(..).collect()
    }

    /// Drop a connection abruptly: both sides learn it was lost.
    pub fn disconnect(&mut self, link: usize) {
        let now = self.now;
        let ends = self.links[link].ends;
        self.links[link].alive = false;
        for end in ends {
            self.nodes[end.node].input(now, end.peer, |s, now| {
                s.handle_connection_lost(now, SessionCode::INTERNAL, "connection lost")
            });
        }
        self.run();
        for end in ends {
            self.nodes[end.node].remove_peer(now, end.peer);
        }
        self.run();
    }

    fn fire_timers(&mut self) -> bool {
        let mut fired = false;
        for node in &mut self.nodes {
            if node.poll_timeout().is_some_and(|t| t <= self.now) {
                node.handle_timeout(self.now);
                fired = true;
            }
        }
        fired
    }

    fn collect_events(&mut self) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            while let Some(e) = node.poll_event() {
                self.events[i].push_back(e);
            }
        }
    }

    fn collect_commands(&mut self) {
        for node_index in 0..self.nodes.len() {
            while let Some(peer) = self.nodes[node_index].next_ready_peer() {
                let end = End {
                    node: node_index,
                    peer,
                };
                let Some(&(link, side)) = self.by_end.get(&end) else {
                    while self.nodes[node_index].poll_command(peer).is_some() {}
                    continue;
                };
                while let Some(command) = self.nodes[node_index].poll_command(peer) {
                    self.apply(link, side, command);
                }
            }
        }
    }

    fn push(&mut self, link: usize, toward: usize, key: Option<StreamId>, delivery: Delivery) {
        let dir = &mut self.links[link].toward[toward];
        if self.mode == Mode::Fifo {
            dir.fifo.push_back(delivery);
            return;
        }
        let queue = dir.queues.entry(key).or_default();
        if queue.is_empty() {
            dir.order.push_back(key);
        }
        queue.push_back(delivery);
    }

    fn apply(&mut self, link: usize, side: usize, command: Command) {
        if !self.links[link].alive {
            return;
        }
        let other = 1 - side;
        match command {
            Command::Open { token, dir, .. } => {
                let l = &mut self.links[link];
                let id = StreamId(l.next_stream);
                l.next_stream += 1;
                l.dirs.insert(id, dir);
                // The grant goes back to the opener, interleaved like any other delivery.
                self.push(link, side, None, Delivery::Grant(token, id));
            }
            Command::CancelOpen { .. } | Command::SetPriority { .. } => {}
            Command::Write { stream, data } => {
                let dir = self.links[link]
                    .dirs
                    .get(&stream)
                    .copied()
                    .unwrap_or(Dir::Bi);
                if self.mode == Mode::Shuffle && data.len() > 1 {
                    let mut rest = data;
                    while !rest.is_empty() {
                        let n = 1 + self.rng.below(self.max_chunk as u64) as usize;
                        let piece = rest.split_to(n.min(rest.len()));
                        self.push(
                            link,
                            other,
                            Some(stream),
                            Delivery::Data(stream, dir, piece, false),
                        );
                    }
                } else {
                    self.push(
                        link,
                        other,
                        Some(stream),
                        Delivery::Data(stream, dir, data, false),
                    );
                }
            }
            Command::Finish { stream } => {
                let dir = self.links[link]
                    .dirs
                    .get(&stream)
                    .copied()
                    .unwrap_or(Dir::Bi);
                self.push(
                    link,
                    other,
                    Some(stream),
                    Delivery::Data(stream, dir, Bytes::new(), true),
                );
            }
            Command::Reset { stream, code } => {
                let dir = self.links[link]
                    .dirs
                    .get(&stream)
                    .copied()
                    .unwrap_or(Dir::Bi);
                self.push(
                    link,
                    other,
                    Some(stream),
                    Delivery::Reset(stream, dir, code),
                );
            }
            Command::Stop { stream, code } => {
                self.push(link, other, Some(stream), Delivery::Stop(stream, code))
            }
            Command::SendDatagram { data } => {
                if !self.rng.chance(self.datagram_loss) {
                    self.push(link, other, None, Delivery::Datagram(data));
                }
            }
            Command::Close { code, reason } => {
                self.push(link, other, None, Delivery::Close(code, reason));
            }
            _ => panic!("a variant this harness does not know"),
        }
    }

    /// Deliver one queued item; false if nothing is queued anywhere.
    fn deliver_one(&mut self) -> bool {
        let candidates: Vec<(usize, usize)> = (0..self.links.len())
            .flat_map(|l| [(l, 0), (l, 1)])
            .filter(|(l, t)| !self.links[*l].toward[*t].is_empty())
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let (link, toward) = match self.mode {
            Mode::Fifo => candidates[0],
            Mode::Shuffle => candidates[self.rng.below(candidates.len() as u64) as usize],
        };
        let delivery = {
            let dir = &mut self.links[link].toward[toward];
            if self.mode == Mode::Fifo {
                dir.fifo.pop_front()
            } else {
                let pick = self.rng.below(dir.order.len() as u64) as usize;
                let key = dir.order.remove(pick).flatten_key();
                let queue = dir.queues.get_mut(&key);
                let item = queue.and_then(|q| q.pop_front());
                if dir.queues.get(&key).is_some_and(|q| !q.is_empty()) {
                    dir.order.push_back(key);
                } else {
                    dir.queues.remove(&key);
                }
                item
            }
        };
        if let Some(delivery) = delivery {
            self.receive(link, toward, delivery);
        }
        true
    }

    fn receive(&mut self, link: usize, toward: usize, delivery: Delivery) {
        if !self.links[link].alive {
            return;
        }
        let end = self.links[link].ends[toward];
        let now = self.now;
        let node = &mut self.nodes[end.node];
        match delivery {
            Delivery::Grant(token, id) => node.input(now, end.peer, |s, now| {
                s.handle_open_granted(now, token, id)
            }),
            Delivery::Data(id, dir, data, fin) => {
                let seen = &mut self.links[link].toward[toward].seen;
                if seen.insert(id, dir).is_none() {
                    node.input(now, end.peer, |s, now| s.handle_stream_opened(now, id, dir));
                }
                node.input(now, end.peer, |s, now| {
                    s.handle_stream_data(now, id, data, fin)
                });
                if fin {
                    // The FIN (and everything before it) is acknowledged to the sender.
                    self.push(link, 1 - toward, None, Delivery::Acked(id));
                }
            }
            Delivery::Reset(id, dir, code) => {
                let seen = &mut self.links[link].toward[toward].seen;
                if seen.insert(id, dir).is_none() {
                    node.input(now, end.peer, |s, now| s.handle_stream_opened(now, id, dir));
                }
                node.input(now, end.peer, |s, now| s.handle_stream_reset(now, id, code));
            }
            Delivery::Stop(id, code) => {
                node.input(now, end.peer, |s, now| s.handle_stop_sending(now, id, code))
            }
            Delivery::Acked(id) => {
                node.input(now, end.peer, |s, now| s.handle_stream_finished(now, id))
            }
            Delivery::Datagram(data) => {
                node.input(now, end.peer, |s, now| s.handle_datagram(now, data))
            }
            Delivery::Close(code, reason) => {
                node.input(now, end.peer, |s, now| {
                    s.handle_connection_lost(now, code, &reason)
                });
                self.links[link].alive = false;
                let ends = self.links[link].ends;
                for e in ends {
                    self.nodes[e.node].remove_peer(now, e.peer);
                }
            }
        }
    }
}

trait FlattenKey {
    fn flatten_key(self) -> Option<StreamId>;
}

impl FlattenKey for Option<Option<StreamId>> {
    fn flatten_key(self) -> Option<StreamId> {
        self.flatten()
    }
}

/// A node configuration with a hop ID derived from `seed` (non-zero, below 2^53).
pub fn node_config(seed: u64) -> NodeConfig {
    NodeConfig {
        hop_id: (Rng::new(seed).next_u64() % ((1 << 53) - 1)) + 1,
        ..NodeConfig::default()
    }
}

/// One subscriber of a [`FanOut`].
struct FanSub {
    peer: PeerId,
    session: moq_proto::session::Session,
    dirty: bool,
}

/// A publisher node wired straight to N subscriber sessions, with no queues and no
/// randomness: the in-memory fan-out that the zero-allocation test and the fan-out benchmark
/// measure. Every write is handed to the subscriber at once and every event drained.
pub struct FanOut {
    /// The publishing node.
    pub node: Node,
    /// The published track.
    pub track: moq_proto::origin::TrackId,
    subs: Vec<FanSub>,
    index: slotmap::SecondaryMap<PeerId, usize>,
    /// Subscribers handed something since they were last drained.
    dirty: Vec<usize>,
    batch: Vec<Bytes>,
    batch_stream: Option<StreamId>,
    next_stream: u64,
    now: Instant,
    /// Frames that reached a subscriber (counted once per subscriber).
    pub delivered_frames: u64,
    /// Payload bytes that reached subscribers.
    pub delivered_bytes: u64,
}

impl FanOut {
    /// A publisher of `bench/data` with `subscribers` sessions of `version` subscribed to it.
    pub fn new(version: Version, subscribers: usize, now: Instant) -> Self {
        let mut node = Node::new(NodeConfig {
            hop_id: 1,
            announce_on_connect: false,
            ..NodeConfig::default()
        });
        let path = Path::new("bench").unwrap_or_else(|_| Path::root());
        let track = node
            .publish(now, &path)
            .and_then(|b| node.create_track(b, "data", moq_proto::wire::TrackInfo::default()))
            .unwrap_or_default();
        let mut fan = Self {
            node,
            track,
            subs: Vec::with_capacity(subscribers),
            index: slotmap::SecondaryMap::new(),
            dirty: Vec::with_capacity(subscribers),
            batch: Vec::with_capacity(8),
            batch_stream: None,
            next_stream: 0,
            now,
            delivered_frames: 0,
            delivered_bytes: 0,
        };
        for _ in 0..subscribers {
            let peer =
                fan.node
                    .add_session(now, Config::new(version, Side::Server), Some(Path::root()));
            let mut config = Config::new(version, Side::Client);
            config.setup_path = Some("/".into());
            let mut session = moq_proto::session::Session::new(config, now);
            let _ = session.subscribe(
                path.clone(),
                "data",
                moq_proto::session::SubscribeParams::default(),
            );
            fan.index.insert(peer, fan.subs.len());
            fan.dirty.push(fan.subs.len());
            fan.subs.push(FanSub {
                peer,
                session,
                dirty: true,
            });
        }
        fan.pump();
        fan
    }

    /// Begin the next group; returns its sequence.
    pub fn group(&mut self) -> u64 {
        let seq = self
            .node
            .append_group(self.now, self.track)
            .unwrap_or_default();
        self.pump();
        seq
    }

    /// Publish one frame in group `seq` and deliver it to every subscriber.
    pub fn frame(&mut self, seq: u64, timestamp: u64, payload: &Bytes) {
        let _ = self
            .node
            .write_frame(self.now, self.track, seq, timestamp, payload.clone());
        self.pump();
    }

    /// Finish group `seq`.
    pub fn finish(&mut self, seq: u64) {
        self.node.finish_group(self.now, self.track, seq);
        self.pump();
    }

    fn stream(&mut self) -> StreamId {
        self.next_stream += 1;
        StreamId(self.next_stream)
    }

    /// Hand a subscriber the writes batched for one of its streams.
    fn flush_writes(&mut self, now: Instant, i: usize) {
        if let Some(stream) = self.batch_stream.take() {
            let mut chunks = std::mem::take(&mut self.batch);
            self.subs[i]
                .session
                .handle_stream_chunks(now, stream, chunks.drain(..), false);
            self.batch = chunks;
        }
    }

    /// Move commands both ways and drain events until nothing moves.
    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            while let Some(peer) = self.node.next_ready_peer() {
                let Some(&i) = self.index.get(peer) else {
                    continue;
                };
                while let Some(command) = self.node.poll_command(peer) {
                    moved = true;
                    // Consecutive writes to one stream arrive together, as one transport
                    // read would return them.
                    match command {
                        Command::Write { stream, data }
                            if self.batch_stream.is_none_or(|s| s == stream) =>
                        {
                            self.batch_stream = Some(stream);
                            self.batch.push(data);
                        }
                        other => {
                            self.flush_writes(now, i);
                            if let Command::Write { stream, data } = other {
                                self.batch_stream = Some(stream);
                                self.batch.push(data);
                            } else {
                                self.deliver_to_subscriber(now, i, other);
                            }
                        }
                    }
                }
                self.flush_writes(now, i);
                if !self.subs[i].dirty {
                    self.subs[i].dirty = true;
                    self.dirty.push(i);
                }
            }
            let mut k = 0;
            while k < self.dirty.len() {
                let i = self.dirty[k];
                k += 1;
                self.subs[i].dirty = false;
                while let Some(command) = self.subs[i].session.poll_command() {
                    moved = true;
                    self.deliver_to_publisher(now, i, command);
                }
                while let Some(event) = self.subs[i].session.poll_event() {
                    match event {
                        moq_proto::session::Event::FrameStart { chunk, .. } => {
                            self.delivered_frames += 1;
                            self.delivered_bytes += chunk.len() as u64;
                        }
                        moq_proto::session::Event::FramePayload { chunk, .. } => {
                            self.delivered_bytes += chunk.len() as u64;
                        }
                        _ => {}
                    }
                }
            }
            self.dirty.clear();
            while self.node.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
    }

    fn deliver_to_subscriber(&mut self, now: Instant, i: usize, command: Command) {
        let peer = self.subs[i].peer;
        match command {
            Command::Open { token, dir, .. } => {
                let id = self.stream();
                self.node
                    .input(now, peer, |s, now| s.handle_open_granted(now, token, id));
                self.subs[i].session.handle_stream_opened(now, id, dir);
            }
            Command::Write { stream, data } => self.subs[i]
                .session
                .handle_stream_data(now, stream, data, false),
            Command::Finish { stream } => {
                self.subs[i]
                    .session
                    .handle_stream_data(now, stream, Bytes::new(), true);
                self.node
                    .input(now, peer, |s, now| s.handle_stream_finished(now, stream));
            }
            Command::Reset { stream, code } => {
                self.subs[i].session.handle_stream_reset(now, stream, code)
            }
            Command::Stop { stream, code } => {
                self.subs[i].session.handle_stop_sending(now, stream, code)
            }
            Command::SendDatagram { data } => self.subs[i].session.handle_datagram(now, data),
            Command::Close { code, reason } => self.subs[i]
                .session
                .handle_connection_lost(now, code, &reason),
            Command::CancelOpen { .. } | Command::SetPriority { .. } => {}
            _ => panic!("a variant this harness does not know"),
        }
    }

    fn deliver_to_publisher(&mut self, now: Instant, i: usize, command: Command) {
        let peer = self.subs[i].peer;
        match command {
            Command::Open { token, dir, .. } => {
                let id = self.stream();
                self.subs[i].session.handle_open_granted(now, token, id);
                self.node
                    .input(now, peer, |s, now| s.handle_stream_opened(now, id, dir));
            }
            Command::Write { stream, data } => self.node.input(now, peer, |s, now| {
                s.handle_stream_data(now, stream, data, false)
            }),
            Command::Finish { stream } => {
                self.node.input(now, peer, |s, now| {
                    s.handle_stream_data(now, stream, Bytes::new(), true)
                });
                self.subs[i].session.handle_stream_finished(now, stream);
            }
            Command::Reset { stream, code } => self
                .node
                .input(now, peer, |s, now| s.handle_stream_reset(now, stream, code)),
            Command::Stop { stream, code } => self
                .node
                .input(now, peer, |s, now| s.handle_stop_sending(now, stream, code)),
            Command::SendDatagram { data } => self
                .node
                .input(now, peer, |s, now| s.handle_datagram(now, data)),
            Command::Close { code, reason } => self.node.input(now, peer, |s, now| {
                s.handle_connection_lost(now, code, &reason)
            }),
            Command::CancelOpen { .. } | Command::SetPriority { .. } => {}
            _ => panic!("a variant this harness does not know"),
        }
    }
}
