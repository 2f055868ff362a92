//! The QUIC engine over the simulated network: 1 publisher → N subscribers, 1 KiB frames.
//!
//! Every subscriber is its own [`Endpoint`] connected to the publisher's endpoint over a
//! [`NetSim`] path with no loss and no latency; virtual time advances 1 ms per published
//! frame (so acknowledgement and pacing timers run) and the whole run is single-threaded.
//! For N = 1, 10 and 100 on each version it prints:
//!
//! - delivered frames per second of wall time (frames the subscribers' applications received);
//! - wall and CPU microseconds per delivered frame (CPU from `/proc/self/schedstat`, the
//!   thread's on-CPU time; the wall figure on any other OS);
//! - heap allocations per delivered frame at steady state (after warm-up), counted with
//!   `moq_tests::alloc::CountingAlloc`, in total and without the simulator's own two per
//!   packet (`NetSim` copies each datagram into a `Vec` when sent and into a `BytesMut` when
//!   delivered), plus packets per delivered frame.
//!
//! Everything (TLS, quinn-proto, sessions, node, simulator) runs on this one thread, so the
//! CPU figure is the full cost of both ends of every connection.
//!
//! Run with `cargo bench -p moq-tests --bench engine` (`ENGINE_BENCH_QUICK=1` for a short run).
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use moq_harness::testing::node_config;
use moq_proto::node::{NodeEvent, SubscriptionEvent};
use moq_proto::quic::{Certificate, Endpoint, EngineConfig, EngineEvent, Verification};
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{Path, TrackInfo, Version};
use moq_tests::alloc::{CountingAlloc, measure};
use moq_tests::netsim::{LinkConfig, NetSim};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const FRAME: usize = 1024;
const FRAMES_PER_GROUP: u64 = 50;
const TICK: Duration = Duration::from_millis(1);

/// This thread's on-CPU time, if the OS tells us.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .or_else(|_| std::fs::read_to_string("/proc/self/schedstat"))
        .ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Count the frames the subscribers received and forget every event (keeping capacity).
fn take_frames(sim: &mut NetSim) -> u64 {
    let mut frames = 0;
    for host in &mut sim.hosts {
        for event in host.events.drain(..) {
            if let EngineEvent::Node(NodeEvent::Subscription {
                event: SubscriptionEvent::Frame { payload, .. },
                ..
            }) = event
            {
                debug_assert_eq!(payload.len(), FRAME);
                frames += 1;
            }
        }
    }
    frames
}

struct Setup {
    sim: NetSim,
    publisher: usize,
    track: moq_proto::origin::TrackId,
    payload: Bytes,
    ts: u64,
    delivered: u64,
}

impl Setup {
    fn new(version: Version, subscribers: usize, cert: &Certificate) -> Self {
        let mut sim = NetSim::new(1, Instant::now(), LinkConfig::default());
        let mut server = EngineConfig::new(node_config(1));
        server.certificate = Some(cert.clone());
        server.rng_seed = Some([1; 32]);
        let publisher = sim.add_host(Endpoint::new(server).unwrap());
        let addr = sim.hosts[publisher].addr;
        let path = Path::new("bench").unwrap();
        let track = sim.with(publisher, |e, now| {
            let b = e.node().publish(now, &path).unwrap();
            e.node()
                .create_track(b, "frames", TrackInfo::default())
                .unwrap()
        });
        for i in 0..subscribers {
            let mut client = EngineConfig::new(node_config(10 + i as u64));
            client.verification = Verification::PinnedSha256(vec![cert.sha256()]);
            client.client_versions = vec![version];
            client.rng_seed = Some([2 + i as u8; 32]);
            let host = sim.add_host(Endpoint::new(client).unwrap());
            sim.with(host, |e, now| {
                e.connect(now, addr, "localhost", "/").unwrap();
            });
        }
        sim.run_for(Duration::from_millis(100));
        for host in 1..=subscribers {
            sim.with(host, |e, now| {
                e.node().subscribe(
                    now,
                    &path,
                    "frames",
                    SubscribeParams {
                        max_latency: Duration::from_secs(60),
                        ..SubscribeParams::default()
                    },
                )
            });
        }
        sim.run_for(Duration::from_millis(100));
        let subscribed = sim.hosts[publisher].engine.node().subscriber_count(track);
        assert_eq!(subscribed, subscribers, "not every subscriber arrived");
        take_frames(&mut sim);
        Self {
            sim,
            publisher,
            track,
            payload: Bytes::from(vec![0xa5; FRAME]),
            ts: 0,
            delivered: 0,
        }
    }

    /// Publish one group, one frame per tick.
    fn group(&mut self) {
        let (publisher, track) = (self.publisher, self.track);
        let now = self.sim.now();
        let seq = self.sim.hosts[publisher]
            .engine
            .node()
            .append_group(now, track)
            .unwrap();
        for _ in 0..FRAMES_PER_GROUP {
            self.ts += 1;
            let now = self.sim.now();
            let payload = self.payload.clone();
            self.sim.hosts[publisher]
                .engine
                .node()
                .write_frame(now, track, seq, self.ts, payload)
                .unwrap();
            self.sim.run_for(TICK);
            self.delivered += take_frames(&mut self.sim);
        }
        let now = self.sim.now();
        self.sim.hosts[publisher]
            .engine
            .node()
            .finish_group(now, track, seq);
        self.sim.run_for(TICK);
        self.delivered += take_frames(&mut self.sim);
    }
}

fn run(version: Version, subscribers: usize, cert: &Certificate, budget: u64) {
    let mut s = Setup::new(version, subscribers, cert);
    // Warm up: streams, windows, congestion control and buffers reach their steady sizes.
    for _ in 0..4 {
        s.group();
    }
    let groups = (budget / (FRAMES_PER_GROUP * subscribers as u64)).max(4);
    let before = s.delivered;
    let net_before = s.sim.stats;
    let cpu_before = cpu_time();
    let start = Instant::now();
    let ((), stats) = measure(|| {
        for _ in 0..groups {
            s.group();
        }
    });
    let wall = start.elapsed();
    let cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let frames = s.delivered - before;
    assert_eq!(
        frames,
        groups * FRAMES_PER_GROUP * subscribers as u64,
        "frames went missing"
    );
    let sent = s.sim.stats.sent - net_before.sent;
    let delivered_packets = s.sim.stats.delivered - net_before.delivered;
    let per_frame = |x: f64| x / frames as f64;
    let allocs = stats.acquisitions() as f64;
    let engine_allocs = allocs - (sent + delivered_packets) as f64;
    println!(
        "{version} N={subscribers:>3}: {frames:>7} frames in {wall:>9.3?}: {:>9.0} frames/s, \
         wall {:>5.2} µs/frame, cpu {} µs/frame; allocs/frame {:>5.2} (engine {:>5.2}), \
         packets/frame {:.2}",
        frames as f64 / wall.as_secs_f64(),
        per_frame(wall.as_secs_f64() * 1e6),
        cpu.map_or("n/a".to_string(), |c| format!(
            "{:>5.2}",
            per_frame(c.as_secs_f64() * 1e6)
        )),
        per_frame(allocs),
        per_frame(engine_allocs),
        per_frame(sent as f64),
    );
}

fn main() {
    moq_tests::alloc::assert_installed();
    // `cargo bench` passes `--bench`; ignore arguments.
    let quick = std::env::var("ENGINE_BENCH_QUICK").is_ok();
    let budget = if quick { 5_000 } else { 100_000 };
    let cert = Certificate::generate(&["localhost".into()], SystemTime::now()).unwrap();
    println!(
        "engine over NetSim, no loss, no latency, {FRAME} B frames, {FRAMES_PER_GROUP} frames/group"
    );
    for version in [Version::Lite05, Version::Lite04, Version::Lite03] {
        for subscribers in [1, 10, 100] {
            run(version, subscribers, &cert, budget);
        }
    }
}
