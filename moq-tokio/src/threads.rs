//! Endpoints on several threads sharing one UDP port, joined into one relay.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;

use moq_proto::driver::{DriverConfig, Endpoint, Runtime, bind_threads_with};
use moq_proto::quic::EngineConfig;

use crate::TokioRuntime;

/// `threads` endpoints on `addr`, each driven by its own OS thread (a current-thread tokio
/// runtime) with its own `SO_REUSEPORT` socket on the same port, engine and node, joined with
/// [`join_threads`](moq_proto::driver::join_threads): a publisher connected to one thread reaches subscribers on every thread,
/// with one upstream subscription per thread and track over in-process lite-05 links.
///
/// Returned in thread order; the first binds `addr` (port 0 picks one) and the others its
/// port. A thread ends once its endpoint is closed and drained. The handles work from any
/// tokio runtime. `threads` = 1 gives one endpoint on a shared socket, with no links.
pub fn bind_threads(
    addr: SocketAddr,
    config: EngineConfig,
    driver: DriverConfig,
    threads: usize,
) -> io::Result<Vec<Endpoint>> {
    bind_threads_with(addr, config, driver, threads, spawn_thread)
}

/// Start one endpoint on a thread of its own; returns once it is bound.
fn spawn_thread(
    index: usize,
    addr: SocketAddr,
    config: EngineConfig,
    driver: DriverConfig,
) -> io::Result<Endpoint> {
    let (bound, receive) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("moq-endpoint-{index}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = bound.send(Err(err));
                    return;
                }
            };
            runtime.block_on(async move {
                let tokio: Arc<dyn Runtime> = Arc::new(TokioRuntime);
                let endpoint = tokio
                    .bind_udp_shared(addr)
                    .and_then(|socket| Endpoint::bind_socket(tokio, socket, config, driver));
                let endpoint = match endpoint {
                    Ok(endpoint) => endpoint,
                    Err(err) => {
                        let _ = bound.send(Err(err));
                        return;
                    }
                };
                let _ = bound.send(Ok(endpoint.clone()));
                endpoint.closed().await;
            });
        })?;
    receive
        .recv()
        .map_err(|_| io::Error::other("the endpoint thread ended before binding"))?
}
