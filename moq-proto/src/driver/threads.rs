//! Several endpoints of one process acting as one: one per thread, each with its own
//! `SO_REUSEPORT` socket on the same port, engine and node, joined by
//! [`join_threads`] into a mesh of in-process MOQ links (see
//! [`crate::quic::Endpoint::open_link`]), with datagrams that reach the wrong thread's
//! socket handed to the thread that owns their connection (see [`crate::quic::owner_of`]).
//!
//! Nothing is shared between the threads but two kinds of queue: link messages (whose
//! payloads are the sending node's `Bytes`, moved, never copied) and handed-over datagrams.
//! Each queue has one producer and one consumer, both driver tasks; a push wakes the
//! consumer. No engine lock is ever taken by another thread's driver.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::BytesMut;

use super::api::Endpoint;
use crate::quic::{ConnectionHandle, EcnCodepoint, LinkMessage, ThreadSlot};
use crate::session::Side;
use crate::wire::Version;

/// A one-way queue between two driver tasks, waking the consumer.
pub(super) struct Pipe<T> {
    inner: Mutex<PipeInner<T>>,
}

struct PipeInner<T> {
    queue: VecDeque<T>,
    consumer: Option<Waker>,
    /// The producer is gone: nothing more will come.
    closed: bool,
}

impl<T> Default for Pipe<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(PipeInner {
                queue: VecDeque::new(),
                consumer: None,
                closed: false,
            }),
        }
    }
}

impl<T> Pipe<T> {
    fn lock(&self) -> MutexGuard<'_, PipeInner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append `items` and wake the consumer if any were added.
    pub(super) fn push(&self, items: &mut Vec<T>) {
        if items.is_empty() {
            return;
        }
        let waker = {
            let mut inner = self.lock();
            inner.queue.extend(items.drain(..));
            inner.consumer.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Take everything queued into `out` (emptied first), registering `waker` for the next
    /// push; true once the producer is gone and nothing is left.
    pub(super) fn take(&self, waker: &Waker, out: &mut VecDeque<T>) -> bool {
        let mut inner = self.lock();
        std::mem::swap(&mut inner.queue, out);
        inner.queue.clear();
        if !inner.consumer.as_ref().is_some_and(|w| w.will_wake(waker)) {
            inner.consumer = Some(waker.clone());
        }
        inner.closed && out.is_empty()
    }

    /// The producer is gone.
    pub(super) fn close(&self) {
        let waker = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.consumer.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A datagram handed from the thread whose socket received it to the thread that owns its
/// connection.
pub(super) struct Handoff {
    pub(super) remote: SocketAddr,
    pub(super) local_ip: Option<IpAddr>,
    pub(super) ecn: Option<EcnCodepoint>,
    pub(super) data: BytesMut,
}

/// The endpoints of one process joined by [`join_threads`].
pub(super) struct ThreadGroup {
    /// One inbox of handed-over datagrams per thread.
    pub(super) inboxes: Vec<Pipe<Handoff>>,
}

/// This endpoint's place in a [`ThreadGroup`].
pub(super) struct Membership {
    pub(super) group: Arc<ThreadGroup>,
    pub(super) slot: ThreadSlot,
}

/// One end of an in-process link, as the driver carries it.
pub(super) struct LinkEnd {
    /// Messages to the other end.
    pub(super) out: Arc<Pipe<LinkMessage>>,
    /// Messages from the other end.
    pub(super) inbound: Arc<Pipe<LinkMessage>>,
}

/// Join endpoints of one process into one: every pair is linked by an in-process MOQ session
/// speaking `version` (announcements, subscriptions and relaying as in a cluster, one
/// upstream subscription per track and thread), and datagrams reaching one endpoint's socket
/// for a connection of another are handed to it.
///
/// Endpoint `i` must have been built with [`crate::quic::EngineConfig::thread`] set to
/// `ThreadSlot { index: i, count: endpoints.len(), key }`, one key for all (that is what
/// names their connection IDs; [`thread_configs`] makes such configurations), and should share its UDP port with the others (`SO_REUSEPORT`, see
/// [`super::Runtime::bind_udp_shared`]). Call it once, before the endpoints take traffic.
pub fn join_threads(endpoints: &[Endpoint], version: Version) -> io::Result<()> {
    let count = u8::try_from(endpoints.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "at most 255 threads"))?;
    let mut key = None;
    for (index, endpoint) in endpoints.iter().enumerate() {
        let slot = endpoint.with_engine(|engine, _| engine.config().thread);
        let fits = slot.is_some_and(|s| {
            usize::from(s.index) == index && s.count == count && *key.get_or_insert(s.key) == s.key
        });
        if !fits {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "endpoint {index} was not built as thread {index} of {count} of this group"
                ),
            ));
        }
    }
    let group = Arc::new(ThreadGroup {
        inboxes: (0..count).map(|_| Pipe::default()).collect(),
    });
    for endpoint in endpoints {
        endpoint.with_state(|state, _| {
            if let Some(slot) = state.engine.config().thread {
                state.threads = Some(Membership {
                    group: group.clone(),
                    slot,
                });
            }
        });
    }
    for (i, a) in endpoints.iter().enumerate() {
        for b in &endpoints[i + 1..] {
            let (ab, ba) = (Arc::new(Pipe::default()), Arc::new(Pipe::default()));
            a.add_link(Side::Client, version, ab.clone(), ba.clone());
            b.add_link(Side::Server, version, ba, ab);
        }
    }
    Ok(())
}

/// `threads` endpoints on `addr` sharing its port, joined with [`join_threads`] over lite-05
/// links. `start(index, addr, config, driver)` binds one endpoint (with
/// [`super::Runtime::bind_udp_shared`] and [`Endpoint::bind_socket`]) where its driver will
/// run, and returns once it is bound; the runtime crates start each on a thread of its own.
/// The first binds `addr` (port 0 picks one), the others its port; returned in thread order.
pub fn bind_threads_with(
    addr: std::net::SocketAddr,
    config: crate::quic::EngineConfig,
    driver: super::DriverConfig,
    threads: usize,
    mut start: impl FnMut(
        usize,
        std::net::SocketAddr,
        crate::quic::EngineConfig,
        super::DriverConfig,
    ) -> io::Result<Endpoint>,
) -> io::Result<Vec<Endpoint>> {
    let mut endpoints: Vec<Endpoint> = Vec::with_capacity(threads);
    for (index, config) in thread_configs(&config, threads)?.into_iter().enumerate() {
        let addr = match endpoints.first() {
            Some(first) => std::net::SocketAddr::new(addr.ip(), first.local_addr().port()),
            None => addr,
        };
        endpoints.push(start(index, addr, config, driver.clone())?);
    }
    join_threads(&endpoints, Version::Lite05)?;
    Ok(endpoints)
}

/// The configurations of `count` endpoints that will be joined with [`join_threads`]:
/// `config` for each, with its [`ThreadSlot`] and its own hop ID (the node's
/// [hop ID](crate::node::NodeConfig::hop_id) plus the index, so that routes through a
/// sibling thread are not taken for loops; a hop ID of 0 becomes 1, 2, ...).
pub fn thread_configs(
    config: &crate::quic::EngineConfig,
    count: usize,
) -> io::Result<Vec<crate::quic::EngineConfig>> {
    let count = u8::try_from(count)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "1 to 255 threads"))?;
    let base = config.node.hop_id;
    // The group's secret for its connection IDs: from the seed in deterministic tests.
    let key = match config.rng_seed {
        Some(seed) => u64::from_le_bytes([
            seed[8], seed[9], seed[10], seed[11], seed[12], seed[13], seed[14], seed[15],
        ]),
        None => {
            let mut bytes = [0u8; 8];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| io::Error::other("the system RNG failed"))?;
            u64::from_le_bytes(bytes)
        }
    };
    Ok((0..count)
        .map(|index| {
            let mut config = config.clone();
            config.thread = Some(ThreadSlot { index, count, key });
            // Hop IDs live in [1, 2^53).
            config.node.hop_id = (base + u64::from(index)) % (1 << 53);
            if base == 0 {
                config.node.hop_id += 1;
            }
            config
        })
        .collect())
}

/// A UDP socket bound to `addr` with `SO_REUSEPORT` (blocking; the runtime makes it
/// pollable), so that the endpoints of several threads can share one port: bind the first to
/// port 0 (or the wanted port) and the others to the port it got. IPv6 sockets keep
/// accepting IPv4 as `std` binds them. Unix only.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    #[cfg(unix)]
    {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            // As std binds `[::]`: dual-stack where the system allows it.
            let _ = socket.set_only_v6(false);
        }
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        Ok(socket.into())
    }
    #[cfg(not(unix))]
    {
        let _ = addr;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_REUSEPORT needs a Unix system",
        ))
    }
}

impl Endpoint {
    /// Datagrams for this endpoint's connections that another thread's socket received and
    /// handed over (clients whose address changed), since it started.
    pub fn handed_over(&self) -> u64 {
        self.with_state(|state, _| state.handed_in)
    }

    /// The in-process links of this endpoint still open (to the other endpoints it was
    /// joined with).
    pub fn link_count(&self) -> usize {
        self.with_state(|state, _| state.engine.link_count())
    }

    fn add_link(
        &self,
        side: Side,
        version: Version,
        out: Arc<Pipe<LinkMessage>>,
        inbound: Arc<Pipe<LinkMessage>>,
    ) -> ConnectionHandle {
        self.with_state(|state, now| {
            let handle = state.engine.open_link(now, side, version);
            state.links.insert(handle, LinkEnd { out, inbound });
            handle
        })
    }
}
