//! The loopback round trip both runtimes run: two real endpoints on 127.0.0.1, a pinned
//! certificate, one version pinned; the client publishes, the server subscribes.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use moq_proto::codes::SessionCode;
use moq_proto::driver::{DriverConfig, Endpoint, Runtime};
use moq_proto::node::NodeConfig;
use moq_proto::quic::{Certificate, EngineConfig, Verification};
use moq_proto::wire::{TrackInfo, Version};

/// How the loopback client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Raw QUIC (`moqt://`).
    Quic,
    /// WebSocket with QMux on the server's HTTP listener (`ws://`).
    WebSocket,
    /// The same over TLS on the server's HTTPS listener (`wss://`).
    SecureWebSocket,
}

/// [`round_trip_over`] raw QUIC.
pub async fn round_trip(runtime: Arc<dyn Runtime>, version: Version) {
    round_trip_over(runtime, version, Transport::Quic).await;
}

/// Bind a server and a client on loopback with `runtime` and run one publish/subscribe
/// round trip on `version` over `transport`: 3 groups of 5 frames arrive in order and the
/// session closes cleanly (code 0).
pub async fn round_trip_over(runtime: Arc<dyn Runtime>, version: Version, transport: Transport) {
    let cert =
        Certificate::generate(&["localhost".into()], SystemTime::now()).expect("certificate");
    let hash = cert.sha256();
    let mut server_cfg = EngineConfig::new(NodeConfig {
        hop_id: 10,
        ..NodeConfig::default()
    });
    server_cfg.certificate = Some(cert);
    let mut client_cfg = EngineConfig::new(NodeConfig {
        hop_id: 11,
        ..NodeConfig::default()
    });
    client_cfg.verification = Verification::PinnedSha256(vec![hash]);
    let loopback = "127.0.0.1:0".parse().expect("addr");
    let server = Endpoint::bind(
        runtime.clone(),
        loopback,
        server_cfg,
        DriverConfig::default(),
    )
    .expect("bind server");
    let client = Endpoint::bind(runtime, loopback, client_cfg, DriverConfig::default())
        .expect("bind client");
    let url = match transport {
        Transport::Quic => format!("moqt://localhost:{}/", server.local_addr().port()),
        Transport::WebSocket => {
            let handler: moq_proto::driver::HttpHandler =
                Arc::new(|_| moq_proto::http1::Response::text(404, "not found\n"));
            let http = server.serve_http(loopback, handler).expect("serve http");
            format!("ws://127.0.0.1:{}/", http.port())
        }
        Transport::SecureWebSocket => {
            let handler: moq_proto::driver::HttpHandler =
                Arc::new(|_| moq_proto::http1::Response::text(404, "not found\n"));
            let https = server.serve_https(loopback, handler).expect("serve https");
            format!("wss://localhost:{}/", https.port())
        }
    };
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

    // Small enough to buffer whole, so writing first and reading after needs no spawn.
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
    let mut got = Vec::new();
    while got.len() < 15 {
        let mut group = subscription.next_group().await.expect("group");
        while let Some(frame) = group.read_frame().await {
            got.push((group.seq(), frame.payload));
        }
    }
    // Newer groups go first when the transport has them all queued at once (latest-first
    // priority): frames keep their order within a group, groups may arrive in any order.
    got.sort_by_key(|(seq, _)| *seq);
    let expected: Vec<(u64, Bytes)> = (0..3u8)
        .flat_map(|g| (0..5u8).map(move |f| (g as u64, Bytes::from(vec![g, f]))))
        .collect();
    assert_eq!(got, expected, "{version} over {transport:?}");
    drop(track);
    drop(subscription);
    drop(session);
    let reason = accepted.closed().await;
    assert!(
        reason.starts_with("closed with code 0x0"),
        "{version} over {transport:?}: clean close expected, got {reason}"
    );
    client.close(SessionCode(0), "done");
    server.close(SessionCode(0), "done");
}
