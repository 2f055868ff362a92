//! The engine over the simulated network: handshake, version negotiation, publish/subscribe.
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use moq_harness::testing::node_config;
use moq_proto::node::{NodeEvent, SubscriptionEvent};
use moq_proto::quic::{Certificate, Endpoint, EngineConfig, EngineEvent, Verification};
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{Path, TrackInfo, Version};
use moq_tests::netsim::{LinkConfig, NetSim};

fn engines(seed: u64, versions: &[Version]) -> (Endpoint, Endpoint) {
    let cert = Certificate::generate(&["localhost".into()], SystemTime::now()).unwrap();
    let hash = cert.sha256();
    let mut server = EngineConfig::new(node_config(seed * 2 + 1));
    server.certificate = Some(cert);
    server.rng_seed = Some([seed as u8; 32]);
    let mut client = EngineConfig::new(node_config(seed * 2 + 2));
    client.verification = Verification::PinnedSha256(vec![hash]);
    client.client_versions = versions.to_vec();
    client.rng_seed = Some([seed as u8 + 1; 32]);
    (
        Endpoint::new(client).unwrap(),
        Endpoint::new(server).unwrap(),
    )
}

#[test]
fn publish_subscribe_over_the_simulated_network() {
    for version in Version::ALL {
        let (client, server) = engines(1, &[version]);
        let mut sim = NetSim::new(
            7,
            Instant::now(),
            LinkConfig::latency(Duration::from_millis(25)),
        );
        let c = sim.add_host(client);
        let s = sim.add_host(server);
        let server_addr = sim.hosts[s].addr;
        let path = Path::new("demo").unwrap();
        let track = sim.with(c, |e, now| {
            let b = e.node().publish(now, &path).unwrap();
            let t = e
                .node()
                .create_track(b, "clock", TrackInfo::default())
                .unwrap();
            e.connect(now, server_addr, "localhost", "/").unwrap();
            t
        });
        let deadline = sim.now() + Duration::from_secs(5);
        assert!(sim.run_until(deadline, |sim| {
            sim.hosts[s]
                .events
                .iter()
                .any(|e| matches!(e, EngineEvent::Connected { .. }))
        }));
        let got = sim.hosts[s].events.iter().find_map(|e| match e {
            EngineEvent::Connected { version, .. } => Some(*version),
            _ => None,
        });
        assert_eq!(got, Some(version));
        let sub = sim.with(s, |e, now| {
            e.node()
                .subscribe(now, &path, "clock", SubscribeParams::default())
        });
        sim.run_for(Duration::from_millis(200));
        for g in 0..3u64 {
            sim.with(c, |e, now| {
                let seq = e.node().append_group(now, track).unwrap();
                for f in 0..5u64 {
                    e.node()
                        .write_frame(
                            now,
                            track,
                            seq,
                            g * 10 + f,
                            Bytes::from(vec![f as u8; 2000]),
                        )
                        .unwrap();
                }
                e.node().finish_group(now, track, seq);
            });
            sim.run_for(Duration::from_millis(100));
        }
        let frames = sim.hosts[s]
            .events
            .iter()
            .filter(|e| matches!(e, EngineEvent::Node(NodeEvent::Subscription { id, event: SubscriptionEvent::Frame { .. } }) if *id == sub))
            .count();
        assert_eq!(frames, 15, "{version}: {:#?}", sim.hosts[s].events);
    }
}
