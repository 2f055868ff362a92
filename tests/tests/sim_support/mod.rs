//! Shared harness for the `sim_*` scenario tests: engines over [`NetSim`] with a timestamped
//! event log, clock-stamped frame payloads and small helpers to publish and subscribe.
//!
//! Every scenario file includes this module (`mod sim_support;`); not every file uses every
//! helper.
#![allow(dead_code, unreachable_pub)]

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use moq_harness::testing::node_config;
use moq_proto::node::{LocalSubId, NodeEvent, SubscriptionEvent};
use moq_proto::origin::{PeerId, TrackId};
use moq_proto::quic::{
    Certificate, ConnectionHandle, Dial, Endpoint, EngineConfig, EngineEvent, Verification,
};
use moq_proto::session::Side;
use moq_proto::wire::{Path, TrackInfo, Version};
use moq_tests::netsim::{LinkConfig, NetSim};

/// One generated ECDSA P-256 development certificate per test binary, as
/// [`Certificate::generate`] makes for real servers.
///
/// Not used by default: ECDSA signatures are randomised and DER-encoded in 70 to 72 bytes, so
/// the TLS CertificateVerify message changes size from run to run. A handshake flight that is
/// retransmitted (and so not padded to 1200 bytes with an Initial packet) then changes the
/// byte count and, under a bandwidth cap, the timing of a run by a few bytes and nanoseconds.
pub fn dev_certificate() -> Certificate {
    static CERT: OnceLock<Certificate> = OnceLock::new();
    CERT.get_or_init(|| Certificate::generate(&["localhost".into()], SystemTime::now()).unwrap())
        .clone()
}

/// A fixed self-signed Ed25519 certificate for "localhost" (a throwaway test key, generated
/// with `openssl req -x509 -newkey ed25519`). Ed25519 signatures are deterministic and always
/// 64 bytes, so with it a seed fixes every packet size of a run, handshake included (TLS
/// randoms and key shares still come from the OS, but never change a size).
pub fn certificate() -> Certificate {
    const CERT: &str = "3082015530820107a00302010202144cc91094a320b23edfd836b85b629ee923deeea8\
        300506032b6570301431123010\
        06035504030c096c6f63616c686f73743020170d3236313132343038313533365a180f32313236313033313038313533\
        365a30143112301006035504030c096c6f63616c686f7374302a300506032b65700321008eac241f68cc633fda1424f7\
        1fcd051b5c0ad0b7d28db59c59dfcf39b58f9b8aa3693067301d0603551d0e04160414d58a9ed50507505dae465df111\
        40b908af69f60c301f0603551d23041830168014d58a9ed50507505dae465df11140b908af69f60c300f0603551d1301\
        01ff040530030101ff30140603551d11040d300b82096c6f63616c686f7374300506032b6570034100aa21977816e2ee\
        27544fe2f732d8d4c5b566bce6574687e8bde72d42708f6fe2d7cf8e7e7b5c62a0a79bee5c59ec27fdd6416503941b1e\
        ce616c7f9b43593501";
    const KEY: &str = "302e020100300506032b657004220420\
        718953d5771f8b3c1aab7a8606bc60f4a155ec7cdc7d6ddd7e26101d7d5b25e2";
    Certificate {
        chain: vec![moq_tests::hex(CERT).into()],
        key: moq_tests::hex(KEY).try_into().unwrap(),
    }
}

/// A server (accepting) engine configuration: serves `versions` in that preference order.
pub fn server_config(seed: u64, versions: &[Version]) -> EngineConfig {
    let mut cfg = EngineConfig::new(node_config(seed.wrapping_mul(2).wrapping_add(1)));
    cfg.certificate = Some(certificate());
    cfg.server_versions = versions.to_vec();
    cfg.rng_seed = Some(seed_bytes(seed, 0xa5));
    cfg
}

/// A client engine configuration pinning [`certificate`], offering `versions`.
pub fn client_config(seed: u64, versions: &[Version]) -> EngineConfig {
    let mut cfg = EngineConfig::new(node_config(seed.wrapping_mul(2).wrapping_add(2)));
    cfg.verification = Verification::PinnedSha256(vec![certificate().sha256()]);
    cfg.client_versions = versions.to_vec();
    cfg.rng_seed = Some(seed_bytes(seed, 0x5a));
    cfg
}

fn seed_bytes(seed: u64, salt: u8) -> [u8; 32] {
    let mut out = [salt; 32];
    out[..8].copy_from_slice(&seed.to_le_bytes());
    out
}

/// An engine event with the virtual time it was reported at and the host that reported it.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// Virtual time since the world started.
    pub at: Duration,
    /// Host index.
    pub host: usize,
    /// The event.
    pub event: EngineEvent,
}

/// A frame a local subscription received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// When (virtual time since start).
    pub at: Duration,
    /// Group sequence.
    pub seq: u64,
    /// Payload.
    pub payload: Bytes,
}

/// Both ends of a connection once its handshake completed.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// The dialling host.
    pub client: usize,
    /// The accepting host.
    pub server: usize,
    /// The client's connection handle.
    pub conn: ConnectionHandle,
    /// The client's peer for the server's session.
    pub client_peer: PeerId,
    /// The server's peer for the client's session.
    pub server_peer: PeerId,
    /// The agreed version.
    pub version: Version,
}

/// A [`NetSim`] with every engine event logged with its virtual time.
pub struct World {
    /// The network.
    pub sim: NetSim,
    /// Virtual time zero.
    pub start: Instant,
    /// Every event, in the order reported.
    pub log: Vec<Stamped>,
    /// [`World::connect`] dials WebTransport (HTTP/3 CONNECT on ALPN `h3`) instead of raw QUIC.
    pub webtransport: bool,
}

impl World {
    /// An empty world; every path uses `link` unless overridden.
    pub fn new(seed: u64, link: LinkConfig) -> Self {
        let start = Instant::now();
        Self {
            sim: NetSim::new(seed, start, link),
            start,
            log: Vec::new(),
            webtransport: false,
        }
    }

    /// Add an engine; returns its host index.
    pub fn add(&mut self, cfg: EngineConfig) -> usize {
        self.sim.add_host(Endpoint::new(cfg).unwrap())
    }

    /// Virtual time since start.
    pub fn elapsed(&self) -> Duration {
        self.sim.now() - self.start
    }

    /// A host's engine.
    pub fn engine(&mut self, host: usize) -> &mut Endpoint {
        &mut self.sim.hosts[host].engine
    }

    fn drain(sim: &mut NetSim, start: Instant, log: &mut Vec<Stamped>) {
        let at = sim.now() - start;
        for (host, h) in sim.hosts.iter_mut().enumerate() {
            for event in h.events.drain(..) {
                log.push(Stamped { at, host, event });
            }
        }
    }

    /// Call `f` on a host's engine at the current time, settle, and log the events.
    pub fn with<R>(&mut self, host: usize, f: impl FnOnce(&mut Endpoint, Instant) -> R) -> R {
        let r = self.sim.with(host, f);
        Self::drain(&mut self.sim, self.start, &mut self.log);
        r
    }

    /// Run until `deadline` (virtual time since start) or until `stop` holds for the log.
    pub fn run_until(
        &mut self,
        deadline: Duration,
        mut stop: impl FnMut(&[Stamped]) -> bool,
    ) -> bool {
        let World {
            sim, start, log, ..
        } = self;
        let start = *start;
        sim.run_until(start + deadline, |sim| {
            Self::drain(sim, start, log);
            stop(log)
        })
    }

    /// Run until `deadline` (virtual time since start) or until `stop` holds for the network.
    pub fn run_until_sim(
        &mut self,
        deadline: Duration,
        mut stop: impl FnMut(&mut NetSim) -> bool,
    ) -> bool {
        let World {
            sim, start, log, ..
        } = self;
        let start = *start;
        sim.run_until(start + deadline, |sim| {
            Self::drain(sim, start, log);
            stop(sim)
        })
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.elapsed() + d;
        self.run_until(deadline, |_| false);
    }

    /// Dial `server` from `client` (verifying "localhost"), over raw QUIC or WebTransport as
    /// [`World::webtransport`] says, and run until both sides report the connection, at most
    /// 10 s of virtual time.
    pub fn connect(&mut self, client: usize, server: usize) -> Link {
        let addr = self.sim.hosts[server].addr;
        let mut dial = Dial::new(addr, "localhost", "/");
        if self.webtransport {
            dial.webtransport = Some(format!("localhost:{}", addr.port()));
        }
        let conn = self.with(client, |e, now| e.dial(now, dial).unwrap());
        self.await_link(client, server, conn)
    }

    /// Run until the connection `conn` of `client` to `server` is up on both sides.
    pub fn await_link(&mut self, client: usize, server: usize, conn: ConnectionHandle) -> Link {
        let client_addr = self.sim.hosts[client].addr;
        let deadline = self.elapsed() + Duration::from_secs(10);
        let find = |log: &[Stamped]| {
            let c = log.iter().find_map(|s| match s.event {
                EngineEvent::Connected {
                    conn: c,
                    peer,
                    version,
                    side: Side::Client,
                    ..
                } if s.host == client && c == conn => Some((peer, version)),
                _ => None,
            });
            let s = log.iter().find_map(|s| match s.event {
                EngineEvent::Connected {
                    peer,
                    remote,
                    side: Side::Server,
                    ..
                } if s.host == server && remote == client_addr => Some(peer),
                _ => None,
            });
            c.zip(s)
        };
        assert!(
            self.run_until(deadline, |log| find(log).is_some()),
            "no connection {client} -> {server}: {:#?}",
            self.log
        );
        let ((client_peer, version), server_peer) = find(&self.log).unwrap();
        Link {
            client,
            server,
            conn,
            client_peer,
            server_peer,
            version,
        }
    }

    /// Publish broadcast `path` with one track `name` on `host`.
    pub fn publish(&mut self, host: usize, path: &str, name: &str, info: TrackInfo) -> TrackId {
        let path = Path::new(path).unwrap();
        self.with(host, |e, now| {
            let b = e.node().publish(now, &path).unwrap();
            e.node().create_track(b, name, info).unwrap()
        })
    }

    /// Subscribe on `host`.
    pub fn subscribe(
        &mut self,
        host: usize,
        path: &str,
        name: &str,
        params: moq_proto::session::SubscribeParams,
    ) -> LocalSubId {
        let path = Path::new(path).unwrap();
        self.with(host, |e, now| e.node().subscribe(now, &path, name, params))
    }

    /// Subscription events of `sub` on `host`, with their times.
    pub fn sub_events(&self, host: usize, sub: LocalSubId) -> Vec<(Duration, SubscriptionEvent)> {
        self.log
            .iter()
            .filter(|s| s.host == host)
            .filter_map(|s| match &s.event {
                EngineEvent::Node(NodeEvent::Subscription { id, event }) if *id == sub => {
                    Some((s.at, event.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Frames `sub` on `host` received, in order.
    pub fn frames(&self, host: usize, sub: LocalSubId) -> Vec<Delivered> {
        self.sub_events(host, sub)
            .into_iter()
            .filter_map(|(at, e)| match e {
                SubscriptionEvent::Frame { seq, payload, .. } => {
                    Some(Delivered { at, seq, payload })
                }
                _ => None,
            })
            .collect()
    }

    /// Publish one whole group of `frames` stamped frames of `size` bytes on `host`.
    pub fn publish_group(&mut self, host: usize, track: TrackId, frames: u64, size: usize) -> u64 {
        let at = self.elapsed();
        self.with(host, |e, now| {
            let seq = e.node().append_group(now, track).unwrap();
            for f in 0..frames {
                let payload = Stamp {
                    at,
                    group: seq,
                    frame: f,
                }
                .payload(size);
                e.node()
                    .write_frame(now, track, seq, at.as_millis() as u64 + f, payload)
                    .unwrap();
            }
            e.node().finish_group(now, track, seq);
            seq
        })
    }

    /// Events a host reported matching `pred`.
    pub fn count(&self, host: usize, pred: impl Fn(&EngineEvent) -> bool) -> usize {
        self.log
            .iter()
            .filter(|s| s.host == host && pred(&s.event))
            .count()
    }
}

/// What every test payload starts with: the virtual publish time and the frame's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Virtual publish time.
    pub at: Duration,
    /// Group sequence at the publisher.
    pub group: u64,
    /// Frame index in the group.
    pub frame: u64,
}

impl Stamp {
    /// Bytes a stamp takes.
    pub const LEN: usize = 24;

    /// A payload of `size` bytes (at least [`Stamp::LEN`]) starting with the stamp; the rest
    /// is a pattern derived from it, so a corrupted payload is caught by comparing.
    pub fn payload(self, size: usize) -> Bytes {
        let size = size.max(Self::LEN);
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&(self.at.as_nanos() as u64).to_be_bytes());
        out.extend_from_slice(&self.group.to_be_bytes());
        out.extend_from_slice(&self.frame.to_be_bytes());
        let fill = (self.group as u8).wrapping_mul(31) ^ (self.frame as u8);
        out.extend((Self::LEN..size).map(|i| fill.wrapping_add(i as u8)));
        Bytes::from(out)
    }

    /// Read the stamp back.
    pub fn read(payload: &[u8]) -> Self {
        let word = |i: usize| u64::from_be_bytes(payload[i * 8..i * 8 + 8].try_into().unwrap());
        Self {
            at: Duration::from_nanos(word(0)),
            group: word(1),
            frame: word(2),
        }
    }
}

/// The `q`-quantile (0..=1) of a list of durations (nearest rank; zero when empty).
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Milliseconds.
pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
