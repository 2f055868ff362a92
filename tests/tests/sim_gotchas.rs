//! The QUIC-engine half of the docs/wire.md §7 interop gotchas, over the simulated network. The
//! codec halves are in `gotchas.rs`, the session and node halves in
//! `moq-proto/tests/session_gotchas.rs`.
use std::time::{Duration, Instant, SystemTime};

use moq_harness::testing::node_config;
use moq_proto::quic::{Certificate, Endpoint, EngineConfig, EngineEvent, Verification};
use moq_proto::wire::{Path, Version};
use moq_tests::netsim::{LinkConfig, NetSim};

fn engines(seed: u64, version: Version) -> (Endpoint, Endpoint) {
    let cert = Certificate::generate(&["localhost".into()], SystemTime::now()).unwrap();
    let hash = cert.sha256();
    let mut server = EngineConfig::new(node_config(seed * 2 + 1));
    server.certificate = Some(cert);
    server.rng_seed = Some([seed as u8; 32]);
    let mut client = EngineConfig::new(node_config(seed * 2 + 2));
    client.verification = Verification::PinnedSha256(vec![hash]);
    client.client_versions = vec![version];
    client.rng_seed = Some([seed as u8 + 1; 32]);
    (
        Endpoint::new(client).unwrap(),
        Endpoint::new(server).unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// 2. Raw QUIC has no path before lite-05: the server roots the session at `/`. On lite-05 the
//    URL path travels in SETUP Path (its `?query` ignored for routing).
// ---------------------------------------------------------------------------------------------

#[test]
fn gotcha_02_raw_quic_server_roots_at_slash_before_lite05_and_at_the_setup_path_on_05() {
    for version in Version::ALL {
        let (client, server) = engines(3, version);
        let mut sim = NetSim::new(
            11,
            Instant::now(),
            LinkConfig::latency(Duration::from_millis(10)),
        );
        let c = sim.add_host(client);
        let s = sim.add_host(server);
        let server_addr = sim.hosts[s].addr;
        sim.with(c, |e, now| {
            e.node().publish(now, &Path::new("demo").unwrap()).unwrap();
            e.connect(now, server_addr, "localhost", "/anon?jwt=abc")
                .unwrap();
        });
        let deadline = sim.now() + Duration::from_secs(5);
        assert!(sim.run_until(deadline, |sim| {
            sim.hosts[s]
                .events
                .iter()
                .any(|e| matches!(e, EngineEvent::Connected { .. }))
        }));
        // Let the announcement travel.
        sim.run_for(Duration::from_millis(500));
        let (at_root, at_anon) = sim.with(s, |e, _| {
            let origin = e.node().origin();
            (
                origin.find(&Path::new("demo").unwrap()).is_some(),
                origin.find(&Path::new("anon/demo").unwrap()).is_some(),
            )
        });
        if version.is_lite05() {
            assert!(
                at_anon && !at_root,
                "{version}: rooted at the SETUP Path /anon"
            );
        } else {
            assert!(
                at_root && !at_anon,
                "{version}: no path on raw QUIC, rooted at /"
            );
        }
    }
}
