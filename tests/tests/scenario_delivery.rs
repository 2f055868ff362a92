//! End-to-end delivery properties: max-latency expiry, stream priorities, TRACK_INFO and
//! timestamps, datagrams.

mod scenario_util;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use moq_harness::testing::node_config;
use moq_proto::codes::SessionCode;
use moq_proto::codes::StreamCode;
use moq_proto::node::{Node, SubscriptionEvent};
use moq_proto::origin::{GroupState, PeerId};
use moq_proto::session::{Command, Config, Dir, OpenToken, Side, StreamId, SubscribeParams};
use moq_proto::wire::{Path, TrackInfo, Version};
use scenario_util::*;

// ----------------------------------------------------------------------------------------
// Expiry

#[test]
fn stale_groups_expire_for_a_low_latency_subscriber_only() {
    for run in runs() {
        let mut sim = sim(run.seed, 4);
        let (p, r) = (0, 1);
        let now = sim.now();
        let b = sim.nodes[p].publish(now, &path("demo")).unwrap();
        let t = sim.nodes[p]
            .create_track(b, "video", TrackInfo::default())
            .unwrap();
        let links = vec![
            sim.connect(p, r, run.version, "/"),
            sim.connect(2, r, run.version, "/"),
            sim.connect(3, r, run.version, "/"),
        ];
        // The patient subscriber comes first, so the shared upstream is patient too.
        let patient =
            sim.nodes[2].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        let hasty = sim.nodes[3].subscribe(
            now,
            &path("demo"),
            "video",
            SubscribeParams {
                max_latency: Duration::from_millis(50),
                ..Default::default()
            },
        );
        sim.run();

        // Group 0 stalls (open, one frame) while time passes; then groups 1 and 2 come.
        let g0 = sim.nodes[p].append_group(now, t).unwrap();
        sim.nodes[p]
            .write_frame(now, t, g0, 0, payload(g0, 0))
            .unwrap();
        sim.run();
        sim.advance(Duration::from_millis(100));
        let now = sim.now();
        let g1 = write_group(&mut sim, p, t, 2, 100);
        sim.advance(Duration::from_millis(100));
        sim.nodes[p]
            .write_frame(now, t, g0, 1, payload(g0, 1))
            .unwrap();
        sim.nodes[p].finish_group(now, t, g0);
        sim.run();
        let g2 = write_group(&mut sim, p, t, 2, 200);

        let ev = sub_events(&sim.events(3), hasty);
        let aborted_old = ev.contains(&SubscriptionEvent::GroupEnd {
            seq: g0,
            state: GroupState::Aborted(StreamCode::OLD),
        });
        let dropped = ev
            .iter()
            .any(|e| matches!(e, SubscriptionEvent::Dropped { start, end, .. } if *start <= g0 && g0 <= *end));
        assert!(
            aborted_old || dropped,
            "{run}: the stale group is aborted (0x34) or dropped: {ev:?}"
        );
        let f = frames(&ev);
        assert!(
            f.iter().filter(|x| x.0 == g0).count() < 2,
            "{run}: the stale group was not delivered whole"
        );
        for g in [g1, g2] {
            assert_eq!(
                f.iter().filter(|x| x.0 == g).count(),
                2,
                "{run}: latest groups whole"
            );
            assert!(ev.contains(&SubscriptionEvent::GroupEnd {
                seq: g,
                state: GroupState::Finished
            }));
        }
        // The patient subscriber gets everything.
        let ev = sub_events(&sim.events(2), patient);
        assert_eq!(frames(&ev).len(), 6, "{run}: {ev:?}");

        let now = sim.now();
        sim.nodes[2].unsubscribe(now, patient);
        sim.nodes[3].unsubscribe(now, hasty);
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

// ----------------------------------------------------------------------------------------
// Priorities, observed on a small FIFO network that records every command (the `Sim`
// ignores `Open` priorities and `SetPriority`).

enum Item {
    Grant(OpenToken, StreamId),
    Data(StreamId, Bytes, bool),
    Reset(StreamId, StreamCode),
    Stop(StreamId, StreamCode),
    Acked(StreamId),
    Datagram(Bytes),
    Close(SessionCode, String),
}

#[derive(Default)]
struct StreamLog {
    /// Priority history: at open, then each SetPriority.
    priorities: Vec<i32>,
    head: BytesMut,
}

struct Net {
    nodes: Vec<Node>,
    ends: Vec<[(usize, PeerId); 2]>,
    by_end: HashMap<(usize, PeerId), (usize, usize)>,
    queue: VecDeque<(usize, usize, Item)>,
    next_stream: Vec<u64>,
    dirs: HashMap<(usize, StreamId), Dir>,
    seen: HashSet<(usize, usize, StreamId)>,
    /// Uni streams by (link, opening side, stream).
    uni: HashMap<(usize, usize, StreamId), StreamLog>,
    now: Instant,
}

impl Net {
    fn new(n: usize, seed: u64) -> Self {
        Self {
            nodes: (0..n)
                .map(|i| Node::new(node_config(seed * 31 + i as u64 + 1)))
                .collect(),
            ends: Vec::new(),
            by_end: HashMap::new(),
            queue: VecDeque::new(),
            next_stream: Vec::new(),
            dirs: HashMap::new(),
            seen: HashSet::new(),
            uni: HashMap::new(),
            now: Instant::now(),
        }
    }

    fn connect(&mut self, client: usize, server: usize, version: Version) -> usize {
        let mut c = Config::new(version, Side::Client);
        if version.is_lite05() {
            c.setup_path = Some("/".into());
        }
        let s = Config::new(version, Side::Server);
        let root = (!version.is_lite05()).then(Path::root);
        let a = self.nodes[client].add_session(self.now, c, Some(Path::root()));
        let b = self.nodes[server].add_session(self.now, s, root);
        let link = self.ends.len();
        self.ends.push([(client, a), (server, b)]);
        self.by_end.insert((client, a), (link, 0));
        self.by_end.insert((server, b), (link, 1));
        self.next_stream.push(0);
        self.run();
        link
    }

    fn run(&mut self) {
        loop {
            for n in 0..self.nodes.len() {
                while let Some(peer) = self.nodes[n].next_ready_peer() {
                    while let Some(cmd) = self.nodes[n].poll_command(peer) {
                        if let Some(&(link, side)) = self.by_end.get(&(n, peer)) {
                            self.apply(link, side, cmd);
                        }
                    }
                }
                while self.nodes[n].poll_event().is_some() {}
            }
            let Some((link, toward, item)) = self.queue.pop_front() else {
                break;
            };
            self.receive(link, toward, item);
        }
    }

    fn apply(&mut self, link: usize, side: usize, cmd: Command) {
        let other = 1 - side;
        match cmd {
            Command::Open {
                token,
                dir,
                priority,
            } => {
                let id = StreamId(self.next_stream[link]);
                self.next_stream[link] += 1;
                self.dirs.insert((link, id), dir);
                if dir == Dir::Uni {
                    self.uni
                        .entry((link, side, id))
                        .or_default()
                        .priorities
                        .push(priority);
                }
                self.queue.push_back((link, side, Item::Grant(token, id)));
            }
            Command::SetPriority { stream, priority } => {
                if let Some(log) = self.uni.get_mut(&(link, side, stream)) {
                    log.priorities.push(priority);
                }
            }
            Command::CancelOpen { .. } => {}
            Command::Write { stream, data } => {
                if let Some(log) = self.uni.get_mut(&(link, side, stream))
                    && log.head.len() < 32
                {
                    log.head.extend_from_slice(&data);
                }
                self.queue
                    .push_back((link, other, Item::Data(stream, data, false)));
            }
            Command::Finish { stream } => {
                self.queue
                    .push_back((link, other, Item::Data(stream, Bytes::new(), true)))
            }
            Command::Reset { stream, code } => {
                self.queue
                    .push_back((link, other, Item::Reset(stream, code)))
            }
            Command::Stop { stream, code } => {
                self.queue
                    .push_back((link, other, Item::Stop(stream, code)))
            }
            Command::SendDatagram { data } => {
                self.queue.push_back((link, other, Item::Datagram(data)))
            }
            Command::Close { code, reason } => {
                self.queue
                    .push_back((link, other, Item::Close(code, reason)))
            }
            _ => panic!("a variant this test does not know"),
        }
    }

    fn receive(&mut self, link: usize, toward: usize, item: Item) {
        let (node, peer) = self.ends[link][toward];
        let now = self.now;
        let dir = |s: &Self, id| s.dirs.get(&(link, id)).copied().unwrap_or(Dir::Bi);
        let open = |s: &mut Self, id: StreamId| {
            if s.seen.insert((link, toward, id)) {
                let d = dir(s, id);
                s.nodes[node].input(now, peer, |x, now| x.handle_stream_opened(now, id, d));
            }
        };
        match item {
            Item::Grant(token, id) => {
                self.nodes[node].input(now, peer, |s, now| s.handle_open_granted(now, token, id))
            }
            Item::Data(id, data, fin) => {
                open(self, id);
                self.nodes[node]
                    .input(now, peer, |s, now| s.handle_stream_data(now, id, data, fin));
                if fin {
                    self.queue.push_back((link, 1 - toward, Item::Acked(id)));
                }
            }
            Item::Reset(id, code) => {
                open(self, id);
                self.nodes[node].input(now, peer, |s, now| s.handle_stream_reset(now, id, code));
            }
            Item::Stop(id, code) => {
                self.nodes[node].input(now, peer, |s, now| s.handle_stop_sending(now, id, code))
            }
            Item::Acked(id) => {
                self.nodes[node].input(now, peer, |s, now| s.handle_stream_finished(now, id))
            }
            Item::Datagram(d) => {
                self.nodes[node].input(now, peer, |s, now| s.handle_datagram(now, d))
            }
            Item::Close(code, reason) => self.nodes[node].input(now, peer, |s, now| {
                s.handle_connection_lost(now, code, &reason)
            }),
        }
    }

    /// Group streams a link side opened: (subscribe wire id, group, priority history).
    fn groups_sent(&self, link: usize, side: usize) -> Vec<(u64, u64, Vec<i32>)> {
        let mut out: Vec<(u64, u64, Vec<i32>)> = self
            .uni
            .iter()
            .filter(|((l, s, _), _)| *l == link && *s == side)
            .filter_map(|(_, log)| {
                let mut buf: &[u8] = &log.head;
                let kind = moq_proto::coding::get_varint(&mut buf).ok()?;
                if kind != 0 {
                    return None;
                }
                let _length = moq_proto::coding::get_varint(&mut buf).ok()?;
                let sub = moq_proto::coding::get_varint(&mut buf).ok()?;
                let seq = moq_proto::coding::get_varint(&mut buf).ok()?;
                Some((sub, seq, log.priorities.clone()))
            })
            .collect();
        out.sort();
        out
    }
}

#[test]
fn subscriber_priorities_order_group_streams_across_the_relay() {
    for version in Version::ALL {
        for seed in 0..3 {
            let mut net = Net::new(3, seed);
            let (p, r, s) = (0, 1, 2);
            let now = net.now;
            let b = net.nodes[p].publish(now, &path("demo")).unwrap();
            let hi = net.nodes[p]
                .create_track(b, "hi", TrackInfo::default())
                .unwrap();
            let lo = net.nodes[p]
                .create_track(b, "lo", TrackInfo::default())
                .unwrap();
            let up = net.connect(p, r, version);
            let down = net.connect(s, r, version);
            let params = |priority| SubscribeParams {
                priority,
                ..Default::default()
            };
            // Subscribe ids on each session: "lo" first (0), "hi" second (1).
            net.nodes[s].subscribe(now, &path("demo"), "lo", params(10));
            net.run();
            net.nodes[s].subscribe(now, &path("demo"), "hi", params(200));
            net.run();
            // Two groups in flight on each track at once.
            for track in [lo, hi] {
                for _ in 0..2 {
                    let g = net.nodes[p].append_group(now, track).unwrap();
                    net.nodes[p]
                        .write_frame(now, track, g, 0, Bytes::from_static(b"x"))
                        .unwrap();
                }
            }
            net.run();
            for (link, side, what) in [
                (down, 1, "relay -> subscriber"),
                (up, 0, "publisher -> relay"),
            ] {
                let sent = net.groups_sent(link, side);
                assert_eq!(sent.len(), 4, "{version} {what}: {sent:?}");
                let last = |sub: u64, seq: u64| {
                    *sent
                        .iter()
                        .find(|x| x.0 == sub && x.1 == seq)
                        .unwrap()
                        .2
                        .last()
                        .unwrap()
                };
                // The subscriber priority travels upstream and ranks the streams first: it is
                // the top byte of the priority read as unsigned (see session::publisher docs).
                let subscriber_priority = |p: i32| ((p as u32) ^ 0x8000_0000) >> 24;
                for seq in 0..2 {
                    assert_eq!(
                        subscriber_priority(last(0, seq)),
                        10,
                        "{version} {what}: {sent:?}"
                    );
                    assert_eq!(
                        subscriber_priority(last(1, seq)),
                        200,
                        "{version} {what}: {sent:?}"
                    );
                    for other in 0..2 {
                        assert!(last(1, seq) > last(0, other), "{version} {what}: {sent:?}");
                    }
                }
                // Within a subscription, the newest group first.
                for sub in 0..2 {
                    assert!(last(sub, 1) > last(sub, 0), "{version} {what}: {sent:?}");
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------------------
// TRACK_INFO and timestamps

#[test]
fn track_info_and_timestamps_pass_through_a_relay() {
    let info = TrackInfo {
        priority: 50,
        ordered: true,
        max_latency: Duration::from_millis(2000),
        timescale: 90_000,
    };
    for run in runs() {
        let mut sim = sim(run.seed, 3);
        let (p, r, s) = (0, 1, 2);
        let now = sim.now();
        let b = sim.nodes[p].publish(now, &path("demo")).unwrap();
        let t = sim.nodes[p].create_track(b, "video", info).unwrap();
        let links = vec![
            sim.connect(p, r, run.version, "/"),
            sim.connect(s, r, run.version, "/"),
        ];
        let sub = sim.nodes[s].subscribe(now, &path("demo"), "video", SubscribeParams::default());
        sim.run();
        for g in 0..3u64 {
            write_group(&mut sim, p, t, 2, 900_000 + g * 3600);
            sim.advance(Duration::from_millis(40));
        }
        let ev = sub_events(&sim.events(s), sub);
        let ready = ev.iter().find_map(|e| match e {
            SubscriptionEvent::Ready { info } => Some(*info),
            _ => None,
        });
        let f = frames(&ev);
        assert_eq!(f.len(), 6, "{run}: {ev:?}");
        if run.version.is_lite05() {
            assert_eq!(ready, Some(Some(info)), "{run}: {ev:?}");
            let ts: Vec<u64> = f.iter().map(|x| x.1).collect();
            let want: Vec<u64> = (0..3)
                .flat_map(|g| [900_000 + g * 3600, 900_001 + g * 3600])
                .collect();
            assert_eq!(ts, want, "{run}: timestamps unchanged");
        } else {
            // lite-03/04: SUBSCRIBE_OK carries priority, order and latency; milliseconds.
            let got = ready.flatten().unwrap_or_else(|| panic!("{run}: {ev:?}"));
            assert_eq!(got.timescale, 1000, "{run}");
            assert_eq!(got.max_latency, info.max_latency, "{run}");
            // Stamped with the arrival time in ms at the first node: 40 ms apart per group.
            let epoch_ms = |g: u64| f.iter().find(|x| x.0 == g).unwrap().1;
            for g in 0..2 {
                assert_eq!(epoch_ms(g + 1) - epoch_ms(g), 40, "{run}: {f:?}");
            }
        }
        // The relay's own view of the track matches.
        let o = sim.nodes[r].origin();
        let tr = o
            .broadcast(o.find(&path("demo")).unwrap())
            .unwrap()
            .track("video")
            .unwrap();
        let relay_info = o.track(tr).unwrap().info().unwrap();
        if run.version.is_lite05() {
            assert_eq!(relay_info, info, "{run}");
        }

        let now = sim.now();
        sim.nodes[s].unsubscribe(now, sub);
        sim.nodes[p].unpublish(now, b);
        teardown(&mut sim, &links, run);
    }
}

// ----------------------------------------------------------------------------------------
// Datagrams

#[test]
fn datagram_groups_reach_05_as_datagrams_and_older_versions_as_streams() {
    for seed in SEEDS {
        for loss in [0.0, 0.3] {
            for down in Version::ALL {
                let run = Run {
                    version: down,
                    seed,
                };
                let mut sim = sim(seed, 4);
                sim.datagram_loss = loss;
                let (p, r, s05, s) = (0, 1, 2, 3);
                let now = sim.now();
                let b = sim.nodes[p].publish(now, &path("demo")).unwrap();
                let t = sim.nodes[p]
                    .create_track(b, "audio", TrackInfo::default())
                    .unwrap();
                let links = vec![
                    sim.connect(p, r, Version::Lite05, "/"),
                    sim.connect(s05, r, Version::Lite05, "/"),
                    sim.connect(s, r, down, "/"),
                ];
                let local =
                    sim.nodes[r].subscribe(now, &path("demo"), "audio", SubscribeParams::default());
                let a = sim.nodes[s05].subscribe(
                    now,
                    &path("demo"),
                    "audio",
                    SubscribeParams::default(),
                );
                let c =
                    sim.nodes[s].subscribe(now, &path("demo"), "audio", SubscribeParams::default());
                sim.run();
                let n = 40u64;
                for seq in 0..n {
                    let now = sim.now();
                    sim.nodes[p]
                        .write_datagram_group(now, t, seq, seq * 20, payload(seq, 0))
                        .unwrap();
                    sim.advance(Duration::from_millis(20));
                }
                let seen = |ev: &[SubscriptionEvent], who: &str| -> BTreeSet<u64> {
                    let f = frames(ev);
                    let set: BTreeSet<u64> = f.iter().map(|x| x.0).collect();
                    assert_eq!(
                        set.len(),
                        f.len(),
                        "{run} loss {loss} {who}: a duplicate: {f:?}"
                    );
                    for (g, ts, pl) in &f {
                        assert_eq!(pl, &payload(*g, 0), "{run}");
                        if who != "old" || down.is_lite05() {
                            assert_eq!(*ts, g * 20, "{run} {who}");
                        }
                    }
                    set
                };
                let at_relay = seen(&sub_events(&sim.events(r), local), "relay");
                let at_05 = seen(&sub_events(&sim.events(s05), a), "05");
                let at_old = seen(&sub_events(&sim.events(s), c), "old");
                assert!(at_05.is_subset(&at_relay), "{run}");
                if down.is_lite05() {
                    assert!(at_old.is_subset(&at_relay), "{run}");
                } else {
                    // Streams are reliable: everything the relay got.
                    assert_eq!(at_old, at_relay, "{run} loss {loss}");
                }
                if loss == 0.0 {
                    assert_eq!(at_relay.len() as u64, n, "{run}");
                    assert_eq!(at_05.len() as u64, n, "{run}");
                } else {
                    // Both hops carry datagrams: each loses some.
                    assert!(
                        at_relay.len() < n as usize,
                        "{run}: some datagrams were lost"
                    );
                    assert!(
                        at_05.len() < at_relay.len(),
                        "{run}: the relay sent datagrams"
                    );
                    assert!(!at_05.is_empty(), "{run}");
                }

                let now = sim.now();
                sim.nodes[r].unsubscribe(now, local);
                sim.nodes[s05].unsubscribe(now, a);
                sim.nodes[s].unsubscribe(now, c);
                sim.nodes[p].unpublish(now, b);
                teardown(&mut sim, &links, run);
            }
        }
    }
}
