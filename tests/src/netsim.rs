//! A deterministic, virtual-time UDP network for [`moq_proto::quic::Endpoint`]s.
//!
//! Every directed pair of hosts has a [`LinkConfig`]: one-way latency with jitter, extra delay
//! for a fraction of packets (reordering), independent loss and Gilbert-Elliott burst loss,
//! duplication, an MTU, and a bandwidth cap with a bounded bottleneck queue (tail drop). GSO
//! batches are split into their datagrams before they enter the network. Time only moves when
//! the simulation says so, and every random choice comes from one seeded RNG, so a seed fixes
//! the run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use moq_harness::testing::Rng;
use moq_proto::quic::{ConnectionHandle, Endpoint, EngineEvent, owner_of};
use moq_proto::session::Side;
use moq_proto::wire::Version;

/// Impairments of one direction of a path.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Uniform extra delay in `0..jitter` (can reorder close packets).
    pub jitter: Duration,
    /// Probability a packet is held back by `reorder_delay` more.
    pub reorder: f64,
    /// Extra delay of a reordered packet.
    pub reorder_delay: Duration,
    /// Independent loss probability.
    pub loss: f64,
    /// Gilbert-Elliott burst loss: probability to enter the bad state per packet, to leave
    /// it, and the loss rate while in it.
    pub burst: Option<(f64, f64, f64)>,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// Largest datagram carried; larger ones are dropped.
    pub mtu: usize,
    /// Bottleneck rate in bits per second (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// Bottleneck queue in bytes; packets beyond it are dropped.
    pub queue: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(5),
            loss: 0.0,
            burst: None,
            duplicate: 0.0,
            mtu: 1500,
            bandwidth: None,
            queue: 256 * 1024,
        }
    }
}

impl LinkConfig {
    /// A link with this one-way latency and nothing else.
    pub fn latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct LinkState {
    /// When the bottleneck finishes sending what it holds.
    busy_until: Option<Instant>,
    bad: bool,
}

/// Counters for what the network did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams sent by hosts.
    pub sent: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Dropped by loss.
    pub lost: u64,
    /// Dropped for exceeding the MTU.
    pub too_big: u64,
    /// Dropped by a full bottleneck queue.
    pub queue_drops: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Datagrams for a thread group that reached a member other than the one owning their
    /// connection, and were handed over.
    pub handed_over: u64,
    /// Messages carried over in-process links between members of thread groups.
    pub link_messages: u64,
}

struct Packet {
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

/// A host: an engine at an address.
pub struct Host {
    /// The engine.
    pub engine: Endpoint,
    /// Its address.
    pub addr: SocketAddr,
    /// Events it reported, in order.
    pub events: Vec<EngineEvent>,
}

/// The simulated network.
pub struct NetSim {
    /// The hosts.
    pub hosts: Vec<Host>,
    rng: Rng,
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    packets: HashMap<u64, Packet>,
    default_link: LinkConfig,
    links: HashMap<(usize, usize), LinkConfig>,
    state: HashMap<(usize, usize), LinkState>,
    /// What happened on the wire.
    pub stats: NetStats,
    buf: Vec<u8>,
    /// Hosts sharing one address as the threads of one relay: the member indices, in
    /// thread order.
    groups: Vec<Vec<usize>>,
    /// Each in-process link end, by member and handle: the other end.
    link_peers: HashMap<(usize, ConnectionHandle), (usize, ConnectionHandle)>,
    /// Link messages being carried; reused.
    link_batch: Vec<moq_proto::quic::LinkMessage>,
}

impl NetSim {
    /// An empty network at `start`; every path uses `default_link` unless overridden.
    pub fn new(seed: u64, start: Instant, default_link: LinkConfig) -> Self {
        Self {
            hosts: Vec::new(),
            rng: Rng::new(seed),
            now: start,
            seq: 0,
            queue: BinaryHeap::new(),
            packets: HashMap::new(),
            default_link,
            links: HashMap::new(),
            state: HashMap::new(),
            stats: NetStats::default(),
            buf: Vec::with_capacity(64 * 1024),
            groups: Vec::new(),
            link_peers: HashMap::new(),
            link_batch: Vec::new(),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Add a host; returns its index. Addresses are 10.0.0.N:4443.
    pub fn add_host(&mut self, engine: Endpoint) -> usize {
        let n = self.hosts.len() as u8 + 1;
        self.hosts.push(Host {
            engine,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 4443),
            events: Vec::new(),
        });
        self.hosts.len() - 1
    }

    /// Add engines built with `thread_configs` as the threads of one relay: one address
    /// shared by all (the next host address), every pair joined by an in-process lite-05
    /// link, and each datagram to the address given to a member as a kernel's
    /// `SO_REUSEPORT` would (by a hash of the sender's address), which hands it to the member
    /// owning its connection ID as the drivers do ([`owner_of`]). Returns the members' host
    /// indices, in thread order.
    pub fn add_thread_group(&mut self, engines: Vec<Endpoint>) -> Vec<usize> {
        let n = self.hosts.len() as u8 + 1;
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 4443);
        let members: Vec<usize> = engines
            .into_iter()
            .map(|engine| {
                self.hosts.push(Host {
                    engine,
                    addr,
                    events: Vec::new(),
                });
                self.hosts.len() - 1
            })
            .collect();
        let now = self.now;
        for (i, &a) in members.iter().enumerate() {
            for &b in &members[i + 1..] {
                let la = self.hosts[a]
                    .engine
                    .open_link(now, Side::Client, Version::Lite05);
                let lb = self.hosts[b]
                    .engine
                    .open_link(now, Side::Server, Version::Lite05);
                self.link_peers.insert((a, la), (b, lb));
                self.link_peers.insert((b, lb), (a, la));
            }
        }
        self.groups.push(members.clone());
        self.settle();
        members
    }

    /// The member of the thread group at `to` that the "kernel" gives a datagram from
    /// `from` (before any handover), if `to` is a group's address.
    pub fn socket_for(&self, from: SocketAddr, to: SocketAddr) -> Option<usize> {
        let members = self
            .groups
            .iter()
            .find(|g| g.first().is_some_and(|&m| self.hosts[m].addr == to))?;
        // FNV-1a over the sender's address: fixed, like the kernel's hash for a given socket set.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let bytes = match from.ip() {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        };
        for b in bytes.into_iter().chain(from.port().to_be_bytes()) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Some(members[(hash % members.len() as u64) as usize])
    }

    /// Where a datagram from `from` to `to` goes: the host at `to`, or for a thread group the
    /// member owning its connection (counting a handover when another member's socket got it).
    fn receiver(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) -> Option<usize> {
        let Some(socket) = self.socket_for(from, to) else {
            return self.host_of(to);
        };
        let members = self.groups.iter().find(|g| g.contains(&socket))?;
        let owner = self.hosts[socket]
            .engine
            .config()
            .thread
            .and_then(|slot| owner_of(data, slot))
            .map(|o| members[usize::from(o)])
            .unwrap_or(socket);
        if owner != socket {
            self.stats.handed_over += 1;
        }
        Some(owner)
    }

    /// Carry every in-process link message between thread-group members until none is
    /// left; true if any moved.
    fn carry_links(&mut self) -> bool {
        let mut moved = false;
        loop {
            let mut any = false;
            for i in 0..self.hosts.len() {
                let now = self.now;
                while let Some(handle) = self.hosts[i].engine.poll_link_wake() {
                    while let Some(m) = self.hosts[i].engine.poll_link_message(now, handle) {
                        self.link_batch.push(m);
                    }
                    let Some(&(j, other)) = self.link_peers.get(&(i, handle)) else {
                        self.link_batch.clear();
                        continue;
                    };
                    for m in self.link_batch.drain(..) {
                        self.stats.link_messages += 1;
                        self.hosts[j].engine.handle_link_message(now, other, m);
                        any = true;
                    }
                }
            }
            if !any {
                return moved;
            }
            moved = true;
        }
    }

    /// Configure the path from host `a` to host `b` (one direction).
    pub fn set_link(&mut self, a: usize, b: usize, link: LinkConfig) {
        self.links.insert((a, b), link);
    }

    /// Configure both directions between `a` and `b`.
    pub fn set_path(&mut self, a: usize, b: usize, link: LinkConfig) {
        self.links.insert((a, b), link.clone());
        self.links.insert((b, a), link);
    }

    fn host_of(&self, addr: SocketAddr) -> Option<usize> {
        self.hosts.iter().position(|h| h.addr == addr)
    }

    /// Take every host's pending transmits into the network (and in-process link messages
    /// to their other ends) and collect events.
    pub fn flush(&mut self) {
        loop {
            self.flush_transmits();
            if !self.carry_links() {
                break;
            }
        }
    }

    fn flush_transmits(&mut self) {
        for i in 0..self.hosts.len() {
            loop {
                let now = self.now;
                let mut buf = std::mem::take(&mut self.buf);
                let transmit = self.hosts[i].engine.poll_transmit(now, &mut buf);
                let Some(transmit) = transmit else {
                    self.buf = buf;
                    break;
                };
                let segment = transmit.segment_size.unwrap_or(transmit.size).max(1);
                for datagram in buf[..transmit.size].chunks(segment) {
                    self.send(i, transmit.destination, datagram);
                }
                self.buf = buf;
            }
            while let Some(event) = self.hosts[i].engine.poll_event() {
                self.hosts[i].events.push(event);
            }
        }
    }

    fn send(&mut self, from: usize, to: SocketAddr, datagram: &[u8]) {
        self.stats.sent += 1;
        let Some(dest) = self.host_of(to) else {
            return;
        };
        let link = self
            .links
            .get(&(from, dest))
            .unwrap_or(&self.default_link)
            .clone();
        if datagram.len() > link.mtu {
            self.stats.too_big += 1;
            return;
        }
        let state = self.state.entry((from, dest)).or_default();
        if let Some((enter, leave, bad_loss)) = link.burst {
            let flip = if state.bad { leave } else { enter };
            if self.rng.chance(flip) {
                state.bad = !state.bad;
            }
            if state.bad && self.rng.chance(bad_loss) {
                self.stats.lost += 1;
                return;
            }
        }
        if self.rng.chance(link.loss) {
            self.stats.lost += 1;
            return;
        }
        // The bottleneck serialises packets; a full queue drops the newcomer.
        let mut depart = self.now;
        if let Some(bps) = link.bandwidth {
            let busy = state.busy_until.unwrap_or(self.now).max(self.now);
            let backlog_bytes =
                busy.saturating_duration_since(self.now).as_secs_f64() * bps as f64 / 8.0;
            if backlog_bytes + datagram.len() as f64 > link.queue as f64 {
                self.stats.queue_drops += 1;
                return;
            }
            let serialise = Duration::from_secs_f64(datagram.len() as f64 * 8.0 / bps as f64);
            depart = busy + serialise;
            state.busy_until = Some(depart);
        }
        let copies = if self.rng.chance(link.duplicate) {
            2
        } else {
            1
        };
        for copy in 0..copies {
            let mut at = depart + link.latency;
            if !link.jitter.is_zero() {
                at += Duration::from_nanos(self.rng.below(link.jitter.as_nanos() as u64));
            }
            if self.rng.chance(link.reorder) {
                at += link.reorder_delay;
            }
            if copy == 1 {
                self.stats.duplicated += 1;
            }
            self.seq += 1;
            self.queue.push(Reverse((at, self.seq)));
            self.packets.insert(
                self.seq,
                Packet {
                    from: self.hosts[from].addr,
                    to,
                    data: datagram.to_vec(),
                },
            );
        }
    }

    /// Process everything due at the current time (deliveries and timers), repeatedly, until
    /// nothing more is due now.
    pub fn settle(&mut self) {
        loop {
            self.flush();
            let mut progressed = false;
            while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
                if at > self.now {
                    break;
                }
                self.queue.pop();
                if let Some(packet) = self.packets.remove(&seq)
                    && let Some(dest) = self.receiver(packet.from, packet.to, &packet.data)
                {
                    self.stats.delivered += 1;
                    self.stats.bytes += packet.data.len() as u64;
                    let now = self.now;
                    self.hosts[dest].engine.handle_datagram(
                        now,
                        packet.from,
                        None,
                        None,
                        BytesMut::from(&packet.data[..]),
                    );
                    progressed = true;
                }
                self.flush();
            }
            for i in 0..self.hosts.len() {
                let now = self.now;
                if self.hosts[i]
                    .engine
                    .poll_timeout()
                    .is_some_and(|t| t <= now)
                {
                    self.hosts[i].engine.handle_timeout(now);
                    progressed = true;
                }
            }
            if !progressed {
                self.flush();
                break;
            }
        }
    }

    /// The next instant something happens (a delivery or a timer).
    pub fn next_event(&mut self) -> Option<Instant> {
        let packet = self.queue.peek().map(|Reverse((at, _))| *at);
        let timers = self
            .hosts
            .iter_mut()
            .filter_map(|h| h.engine.poll_timeout())
            .min();
        [packet, timers].into_iter().flatten().min()
    }

    /// Run until virtual time `deadline` (or until `stop` returns true after a step).
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut stop: impl FnMut(&mut NetSim) -> bool,
    ) -> bool {
        loop {
            self.settle();
            if stop(self) {
                return true;
            }
            match self.next_event() {
                Some(at) if at <= deadline => self.now = self.now.max(at),
                _ => {
                    self.now = deadline;
                    self.settle();
                    return stop(self);
                }
            }
        }
    }

    /// Run for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        self.run_until(deadline, |_| false);
    }

    /// Call `f` with a host's engine and the current time, then settle.
    pub fn with<R>(&mut self, host: usize, f: impl FnOnce(&mut Endpoint, Instant) -> R) -> R {
        let now = self.now;
        let result = f(&mut self.hosts[host].engine, now);
        self.settle();
        result
    }

    /// Take the events a host reported so far.
    pub fn take_events(&mut self, host: usize) -> Vec<EngineEvent> {
        std::mem::take(&mut self.hosts[host].events)
    }
}
