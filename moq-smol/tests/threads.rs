//! The relay on several threads (`bind_threads`) on smol: endpoints sharing one UDP port,
//! joined by in-process MOQ links, datagrams handed to the thread that owns their connection.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moq_smol::{DriverConfig, SmolRuntime, Version};
use moq_tests::threads;

fn run_with_timeout<T>(secs: u64, what: &str, run: impl Future<Output = T>) -> T {
    smol::block_on(async {
        let timeout = async {
            async_io::Timer::after(Duration::from_secs(secs)).await;
            panic!("{what}: timed out");
        };
        smol::future::or(run, timeout).await
    })
}

/// Every subscriber gets every frame whichever of 2 or 4 threads it and the publisher landed
/// on, in every version the clients speak.
#[test]
fn every_subscriber_gets_every_frame_on_2_and_4_threads() {
    for count in [2, 4] {
        for version in Version::ALL {
            let (relay_cfg, client_cfg) = threads::configs();
            let loopback = "127.0.0.1:0".parse().expect("addr");
            let relay = moq_smol::bind_threads(loopback, relay_cfg, DriverConfig::default(), count)
                .expect("relay threads");
            let run = threads::every_frame_on_every_thread(
                Arc::new(SmolRuntime),
                &relay,
                client_cfg,
                version,
            );
            let clients = run_with_timeout(30, &format!("{count} threads, {version}"), run);
            println!("{count} threads, {version}: {clients} clients");
            threads::close(&relay);
        }
    }
}

/// A client whose address keeps changing keeps its connection and every frame.
#[test]
fn a_connection_whose_packets_reach_another_threads_socket_stays_up() {
    let (relay_cfg, client_cfg) = threads::configs();
    let loopback = "127.0.0.1:0".parse().expect("addr");
    let relay = moq_smol::bind_threads(loopback, relay_cfg, DriverConfig::default(), 2)
        .expect("relay threads");
    let run =
        threads::rebinding_client_keeps_its_connection(Arc::new(SmolRuntime), &relay, client_cfg);
    let rebinds = run_with_timeout(60, "rebinding", run);
    println!("{rebinds} address changes");
    threads::close(&relay);
}
