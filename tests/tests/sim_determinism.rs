//! Determinism: the same seed gives the same run, event for event and packet for packet.
//!
//! A lossy scenario (loss, burst loss, jitter, reordering, duplication, a bandwidth cap) is
//! run twice with the same seed, in fresh engines. The traces must be identical: every
//! delivered frame with its group, index and virtual arrival time, every engine event with
//! its time, and the network's counters (packets sent, delivered, lost, duplicated, queue
//! drops and bytes). A different seed must give a different trace (the check is not vacuous).
//!
//! What makes it hold: quinn-proto's RNG is seeded through `EngineConfig::rng_seed`, and the
//! simulator draws every random choice from its own seeded RNG, per packet and independent of
//! contents. TLS randomness (ring's `SystemRandom`: client/server randoms, X25519 key shares,
//! signature nonces) is not seeded, so the bytes on the wire differ between runs; it is
//! harmless only while it never changes a *size*. It does with the ECDSA P-256 development
//! certificate: ECDSA signatures are DER-encoded in 70 to 72 bytes, so the CertificateVerify
//! message varies. While the server's first flight rides in the datagram padded to 1200 bytes
//! with its Initial packet this is invisible, but when that flight is lost and resent unpadded,
//! the datagram changes size by a few bytes: `NetStats::bytes` differs and, under a bandwidth
//! cap, so does serialisation time (a few nanoseconds, enough to shift later event times).
//! Measured with 25 % loss, 8 Mbit/s: 8-10 of 60 seeds differed that way. The test
//! certificate is therefore Ed25519 (deterministic, fixed-size signatures; see
//! `sim_support::certificate`), and then no seed differs.

mod sim_support;

use std::time::Duration;

use moq_proto::node::SubscriptionEvent;
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{TrackInfo, Version};
use moq_tests::netsim::{LinkConfig, NetStats};
use sim_support::{Stamp, World, client_config, ms, server_config};

#[derive(Debug, PartialEq, Eq)]
struct Trace {
    frames: Vec<(u64, u64, Duration)>,
    events: Vec<String>,
    net: NetStats,
}

fn run(seed: u64, version: Version) -> Trace {
    let link = LinkConfig {
        latency: ms(15),
        jitter: ms(5),
        reorder: 0.05,
        reorder_delay: ms(8),
        loss: 0.04,
        burst: Some((0.01, 0.4, 0.6)),
        duplicate: 0.05,
        bandwidth: Some(8_000_000),
        queue: 64 * 1024,
        ..LinkConfig::default()
    };
    let mut w = World::new(seed, link);
    let publisher = w.add(server_config(seed, &Version::ALL));
    let subscriber = w.add(client_config(seed, &[version]));
    let track = w.publish(publisher, "d", "t", TrackInfo::default());
    w.connect(subscriber, publisher);
    let sub = w.subscribe(
        subscriber,
        "d",
        "t",
        SubscribeParams {
            max_latency: Duration::from_secs(60),
            ..SubscribeParams::default()
        },
    );
    w.run_for(ms(300));
    for g in 0..10u64 {
        w.publish_group(publisher, track, 5, 800 + 300 * g as usize);
        w.run_for(ms(40));
    }
    w.run_for(Duration::from_secs(3));
    let frames = w
        .sub_events(subscriber, sub)
        .into_iter()
        .filter_map(|(at, e)| match e {
            SubscriptionEvent::Frame { seq, payload, .. } => {
                Some((seq, Stamp::read(&payload).frame, at))
            }
            _ => None,
        })
        .collect();
    let events = w
        .log
        .iter()
        .map(|s| format!("{:?} host {} {:?}", s.at, s.host, s.event))
        .collect();
    Trace {
        frames,
        events,
        net: w.sim.stats,
    }
}

#[test]
fn same_seed_same_trace() {
    for (i, version) in Version::ALL.into_iter().enumerate() {
        let seed = 700 + i as u64;
        let a = run(seed, version);
        let b = run(seed, version);
        assert_eq!(a.frames.len(), 50, "{version}: {:?}", a.frames);
        assert!(
            a.net.lost > 0 && a.net.duplicated > 0,
            "{version}: {:?}",
            a.net
        );
        if a != b {
            let first = a
                .events
                .iter()
                .zip(&b.events)
                .position(|(x, y)| x != y)
                .unwrap_or(a.events.len().min(b.events.len()));
            panic!(
                "{version}: runs differ.\nnet {:?}\n vs {:?}\nfirst differing event #{first}:\n{:?}\n{:?}",
                a.net,
                b.net,
                a.events.get(first),
                b.events.get(first)
            );
        }
        // A different seed changes the run.
        let c = run(seed + 1000, version);
        assert_ne!(a.net, c.net, "{version}");
        println!(
            "{version}: identical traces: {} frames, {} events, net {:?}",
            a.frames.len(),
            a.events.len(),
            a.net
        );
    }
}

/// Heavy loss from the first packet on, so handshake flights are lost and resent unpadded:
/// still identical, because the test certificate is Ed25519 (see `sim_support::certificate`;
/// with the ECDSA development certificate these runs differed by 1-4 bytes and as many
/// nanoseconds of serialisation in about one seed out of six).
#[test]
fn handshake_loss_is_deterministic_too() {
    let go = |seed: u64| {
        let link = LinkConfig {
            latency: ms(15),
            jitter: ms(3),
            loss: 0.25,
            bandwidth: Some(8_000_000),
            ..LinkConfig::default()
        };
        let mut w = World::new(seed, link);
        let publisher = w.add(server_config(seed, &Version::ALL));
        let subscriber = w.add(client_config(seed, &[Version::ALL[seed as usize % 3]]));
        let track = w.publish(publisher, "d", "t", TrackInfo::default());
        let addr = w.sim.hosts[publisher].addr;
        w.with(subscriber, |e, now| {
            e.connect(now, addr, "localhost", "/").unwrap()
        });
        w.run_for(Duration::from_secs(5));
        w.subscribe(subscriber, "d", "t", SubscribeParams::default());
        w.run_for(Duration::from_secs(2));
        for _ in 0..3 {
            w.publish_group(publisher, track, 2, 1000);
            w.run_for(ms(50));
        }
        w.run_for(Duration::from_secs(5));
        let events: Vec<String> = w
            .log
            .iter()
            .map(|s| format!("{:?} {} {:?}", s.at, s.host, s.event))
            .collect();
        (w.sim.stats, events)
    };
    for seed in 0..24u64 {
        let (a, b) = (go(seed), go(seed));
        assert!(a.0.lost > 0, "seed {seed}");
        assert_eq!(a.0, b.0, "seed {seed}");
        assert!(a.1 == b.1, "seed {seed}: event traces differ");
    }
}
