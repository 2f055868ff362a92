//! Publish and subscribe across two real endpoints on loopback with smol, every version.
use std::sync::Arc;
use std::time::Duration;

use moq_smol::{SmolRuntime, Version};

#[test]
fn loopback_every_version() {
    for version in Version::ALL {
        smol::block_on(async {
            let timeout = async {
                async_io::Timer::after(Duration::from_secs(20)).await;
                panic!("{version}: timed out");
            };
            smol::future::or(
                moq_tests::loopback::round_trip(Arc::new(SmolRuntime), version),
                timeout,
            )
            .await;
        });
    }
}

#[test]
fn loopback_over_websocket_every_version() {
    for version in Version::ALL {
        smol::block_on(async {
            let timeout = async {
                async_io::Timer::after(Duration::from_secs(20)).await;
                panic!("{version}: timed out");
            };
            smol::future::or(
                moq_tests::loopback::round_trip_over(
                    Arc::new(SmolRuntime),
                    version,
                    moq_tests::loopback::Transport::WebSocket,
                ),
                timeout,
            )
            .await;
        });
    }
}

#[test]
fn loopback_over_secure_websocket_every_version() {
    for version in Version::ALL {
        smol::block_on(async {
            let timeout = async {
                async_io::Timer::after(Duration::from_secs(20)).await;
                panic!("{version}: timed out");
            };
            smol::future::or(
                moq_tests::loopback::round_trip_over(
                    Arc::new(SmolRuntime),
                    version,
                    moq_tests::loopback::Transport::SecureWebSocket,
                ),
                timeout,
            )
            .await;
        });
    }
}

/// The library's persistent session (`Endpoint::connect_persistent`) survives a relay
/// restart and follows GOAWAY, re-announcing what it publishes, on smol.
#[test]
fn persistent_session_survives_restart_and_goaway() {
    smol::block_on(async {
        let timeout = async {
            async_io::Timer::after(Duration::from_secs(30)).await;
            panic!("timed out");
        };
        smol::future::or(
            moq_tests::persistent::survives_restart_and_goaway(Arc::new(SmolRuntime)),
            timeout,
        )
        .await;
    });
}
