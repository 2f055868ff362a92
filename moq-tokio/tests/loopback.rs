//! Publish and subscribe across two real endpoints on loopback with tokio, every version.
use std::sync::Arc;
use std::time::Duration;

use moq_tokio::{TokioRuntime, Version};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_every_version() {
    for version in Version::ALL {
        let run = moq_tests::loopback::round_trip(Arc::new(TokioRuntime), version);
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_over_websocket_every_version() {
    for version in Version::ALL {
        let run = moq_tests::loopback::round_trip_over(
            Arc::new(TokioRuntime),
            version,
            moq_tests::loopback::Transport::WebSocket,
        );
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_over_secure_websocket_every_version() {
    for version in Version::ALL {
        let run = moq_tests::loopback::round_trip_over(
            Arc::new(TokioRuntime),
            version,
            moq_tests::loopback::Transport::SecureWebSocket,
        );
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("timed out");
    }
}

/// The library's persistent session (`Endpoint::connect_persistent`) survives a relay
/// restart and follows GOAWAY, re-announcing what it publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_survives_restart_and_goaway() {
    let run = moq_tests::persistent::survives_restart_and_goaway(Arc::new(TokioRuntime));
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("timed out");
}
