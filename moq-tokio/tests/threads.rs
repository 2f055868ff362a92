//! The relay on several threads (`bind_threads`): endpoints sharing one UDP port, joined by
//! in-process MOQ links, datagrams handed to the thread that owns their connection.
use std::sync::Arc;
use std::time::Duration;

use moq_tests::threads;
use moq_tokio::{DriverConfig, TokioRuntime, Version};

/// Every subscriber gets every frame whichever of 2 or 4 threads it and the publisher landed
/// on, in every version the clients speak (the links between threads speak lite-05).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_frame_on_2_and_4_threads() {
    for count in [2, 4] {
        for version in Version::ALL {
            let (relay_cfg, client_cfg) = threads::configs();
            let loopback = "127.0.0.1:0".parse().expect("addr");
            let relay =
                moq_tokio::bind_threads(loopback, relay_cfg, DriverConfig::default(), count)
                    .expect("relay threads");
            let run = threads::every_frame_on_every_thread(
                Arc::new(TokioRuntime),
                &relay,
                client_cfg,
                version,
            );
            let clients = tokio::time::timeout(Duration::from_secs(30), run)
                .await
                .expect("timed out");
            println!("{count} threads, {version}: {clients} clients");
            threads::close(&relay);
        }
    }
}

/// A client whose address keeps changing, so that its datagrams reach the other thread's
/// socket, keeps its connection and every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_packets_reach_another_threads_socket_stays_up() {
    let (relay_cfg, client_cfg) = threads::configs();
    let loopback = "127.0.0.1:0".parse().expect("addr");
    let relay = moq_tokio::bind_threads(loopback, relay_cfg, DriverConfig::default(), 2)
        .expect("relay threads");
    let run =
        threads::rebinding_client_keeps_its_connection(Arc::new(TokioRuntime), &relay, client_cfg);
    let rebinds = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("timed out");
    println!("{rebinds} address changes");
    threads::close(&relay);
}
