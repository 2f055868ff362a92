//! Publish and subscribe across two real endpoints on loopback, every version.
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use moq_proto::node::NodeConfig;
use moq_tokio::{Certificate, EngineConfig, TrackInfo, Verification, Version};

const LIMIT: Duration = Duration::from_secs(20);

fn configs(hop: u64) -> (EngineConfig, EngineConfig) {
    let cert =
        Certificate::generate(&["localhost".into()], SystemTime::now()).expect("certificate");
    let hash = cert.sha256();
    let mut server = EngineConfig::new(NodeConfig {
        hop_id: hop,
        ..NodeConfig::default()
    });
    server.certificate = Some(cert);
    let mut client = EngineConfig::new(NodeConfig {
        hop_id: hop + 1,
        ..NodeConfig::default()
    });
    client.verification = Verification::PinnedSha256(vec![hash]);
    (server, client)
}

async fn round_trip(version: Version) {
    let (server_cfg, client_cfg) = configs(10 + version as u64 * 2);
    let server =
        moq_tokio::bind("127.0.0.1:0".parse().expect("addr"), server_cfg).expect("bind server");
    let client =
        moq_tokio::bind("127.0.0.1:0".parse().expect("addr"), client_cfg).expect("bind client");
    let url = format!("moqt://localhost:{}/", server.local_addr().port());
    let session = client
        .connect_versions(&url, &[version])
        .await
        .expect("connect");
    assert_eq!(session.version(), version);
    let accepted = server.accept().await.expect("accept");
    assert_eq!(accepted.version(), version);

    // The client publishes; the server learns it from the client's announcements.
    let broadcast = client.publish("demo").expect("publish");
    let track = broadcast
        .create_track("clock", TrackInfo::default())
        .expect("track");
    let mut subscription = server.subscribe("demo", "clock").expect("subscribe");
    subscription.ready().await.expect("ready");

    let writer = tokio::spawn(async move {
        for g in 0..3u8 {
            let mut group = track.append_group().expect("group");
            for f in 0..5u8 {
                group
                    .write_frame(Bytes::from(vec![g, f]))
                    .await
                    .expect("frame");
            }
            group.finish();
        }
        track
    });
    let mut got = Vec::new();
    while got.len() < 15 {
        let mut group = subscription.next_group().await.expect("group");
        while let Some(frame) = group.read_frame().await {
            got.push((group.seq(), frame.payload));
        }
    }
    let expected: Vec<(u64, Bytes)> = (0..3u8)
        .flat_map(|g| (0..5u8).map(move |f| (g as u64, Bytes::from(vec![g, f]))))
        .collect();
    assert_eq!(got, expected, "{version}");
    drop(writer.await.expect("writer"));
    drop(subscription);
    drop(session);
    let reason = accepted.closed().await;
    assert!(
        reason.starts_with("closed with code 0x0"),
        "{version}: clean close expected, got {reason}"
    );
    client.close(0, "done");
    server.close(0, "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_every_version() {
    for version in Version::ALL {
        tokio::time::timeout(LIMIT, round_trip(version))
            .await
            .expect("timed out");
    }
}
