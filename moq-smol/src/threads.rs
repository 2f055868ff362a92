//! Endpoints on several threads sharing one UDP port, joined into one relay.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use moq_proto::driver::{
    AsyncTcpListener, AsyncTimer, AsyncUdpSocket, Connecting, DriverConfig, Endpoint, Resolving,
    Runtime, bind_threads_with,
};
use moq_proto::quic::EngineConfig;

use crate::SmolRuntime;

/// [`SmolRuntime`] with tasks spawned on one thread's own executor instead of smol's global
/// one, so that an endpoint's driver stays on its thread.
#[derive(Debug)]
struct ThreadRuntime {
    executor: Arc<smol::Executor<'static>>,
}

impl Runtime for ThreadRuntime {
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        SmolRuntime.new_timer(deadline)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.executor.spawn(future).detach();
    }

    fn bind_udp(&self, addr: SocketAddr) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        SmolRuntime.bind_udp(addr)
    }

    fn bind_udp_shared(&self, addr: SocketAddr) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        SmolRuntime.bind_udp_shared(addr)
    }

    fn resolve(&self, host: String, port: u16) -> Resolving {
        SmolRuntime.resolve(host, port)
    }

    fn bind_tcp(&self, addr: SocketAddr) -> io::Result<Box<dyn AsyncTcpListener>> {
        SmolRuntime.bind_tcp(addr)
    }

    fn connect_tcp(&self, addr: SocketAddr) -> Connecting {
        SmolRuntime.connect_tcp(addr)
    }
}

/// `threads` endpoints on `addr`, each driven by its own OS thread (its own smol executor)
/// with its own `SO_REUSEPORT` socket on the same port, engine and node, joined with
/// [`join_threads`](moq_proto::driver::join_threads): a publisher connected to one thread reaches subscribers on every thread,
/// with one upstream subscription per thread and track over in-process lite-05 links.
///
/// Returned in thread order; the first binds `addr` (port 0 picks one) and the others its
/// port. A thread ends once its endpoint is closed and drained.
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
            let executor = Arc::new(smol::Executor::new());
            let runtime: Arc<dyn Runtime> = Arc::new(ThreadRuntime {
                executor: executor.clone(),
            });
            let endpoint = runtime
                .bind_udp_shared(addr)
                .and_then(|socket| Endpoint::bind_socket(runtime, socket, config, driver));
            let endpoint = match endpoint {
                Ok(endpoint) => endpoint,
                Err(err) => {
                    let _ = bound.send(Err(err));
                    return;
                }
            };
            let _ = bound.send(Ok(endpoint.clone()));
            smol::block_on(executor.run(endpoint.closed()));
        })?;
    receive
        .recv()
        .map_err(|_| io::Error::other("the endpoint thread ended before binding"))?
}
