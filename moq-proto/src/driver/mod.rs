//! Runtime-agnostic async handles over the engine (feature `driver`).
//!
//! One driver task per endpoint owns the UDP socket and the timer and runs the sans-IO
//! [`crate::quic::Endpoint`]; every handle ([`Endpoint`], [`Session`], publishers,
//! [`Subscription`], [`Announcements`]) shares the engine behind one mutex and is woken by the
//! driver when something it waits for happens, as quinn does.
//!
//! A runtime supplies what touches the operating system through the small [`Runtime`] trait: a
//! bound UDP socket that can be polled (built on `quinn-udp`, for GSO, GRO and ECN), host-name
//! resolution that does not block the executor, a timer, and `spawn`. `moq-tokio` and
//! `moq-smol` implement it; nothing in this module blocks a thread.
//!
//! Backpressure: publishers' `write_frame` waits while more than
//! [`DriverConfig::max_buffered`] bytes are waiting for quinn-proto (flow control or send
//! window); a subscription buffers at most [`DriverConfig::max_subscription_buffer`] bytes for
//! a slow reader and then drops its oldest buffered group. Dropping any handle cleans up on the
//! wire (unsubscribe, end of track, unpublish, session close).

mod api;
mod http;
mod http_api;
mod reconnect;
mod resume;
mod shared;
mod task;
mod threads;
mod tls_stream;
mod websocket;

use std::fmt::Debug;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

pub use crate::quic::ConnectFailure;
pub use api::{
    Announcements, BroadcastPublisher, ConnectError, DriverConfig, Endpoint, Frame, GroupPublisher,
    GroupReader, Session, SessionWatcher, Subscription, SubscriptionEnd, TrackPublisher,
};
pub use http::HttpHandler;
pub use http_api::{HttpApi, MAX_FETCH_BYTES};
pub use quinn_udp::{RecvMeta, Transmit as UdpTransmit};
pub use reconnect::{PersistentSession, ReconnectPolicy};
pub use resume::ResumingSubscription;
pub use threads::{bind_reuseport, bind_threads_with, join_threads, thread_configs};

/// A UDP socket the driver can poll.
pub trait AsyncUdpSocket: Send + Sync + Debug + 'static {
    /// Send one transmit (possibly a GSO batch), registering for writability if it would block.
    fn poll_send(&self, cx: &mut Context<'_>, transmit: &UdpTransmit<'_>) -> Poll<io::Result<()>>;

    /// Receive datagrams (possibly GRO batches) into `bufs`, filling `meta`; returns how many
    /// entries were filled.
    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>>;

    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Most datagrams one GSO send may carry.
    fn max_transmit_segments(&self) -> usize {
        1
    }

    /// Most datagrams one GRO receive may carry.
    fn max_receive_segments(&self) -> usize {
        1
    }
}

/// A connected TCP stream the driver can poll (the relay's HTTP side, the `http://` client).
pub trait AsyncTcpStream: Send + Sync + Debug + 'static {
    /// Read into `buf`, registering for readability if nothing is there; `Ok(0)` at the end.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Write from `buf`, registering for writability if the socket is full.
    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Push out anything buffered above the socket (a TLS layer's records); plain sockets
    /// have nothing to flush.
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }
}

/// A TCP listener the driver can poll.
pub trait AsyncTcpListener: Send + Sync + Debug + 'static {
    /// The next connection, registering for readability if none is waiting.
    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Box<dyn AsyncTcpStream>, SocketAddr)>>;

    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A TCP connection in progress.
pub type Connecting = Pin<Box<dyn Future<Output = io::Result<Box<dyn AsyncTcpStream>>> + Send>>;

/// A timer the driver resets to the engine's next deadline.
pub trait AsyncTimer: Send + Debug + 'static {
    /// Fire at `deadline` instead.
    fn reset(self: Pin<&mut Self>, deadline: Instant);

    /// Ready once the deadline has passed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// A host-name lookup in progress.
pub type Resolving = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// What a runtime provides.
pub trait Runtime: Send + Sync + Debug + 'static {
    /// A timer firing at `deadline`.
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>>;

    /// Run a task in the background.
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>);

    /// Bind a UDP socket to `addr` and make it pollable.
    fn bind_udp(&self, addr: SocketAddr) -> io::Result<Arc<dyn AsyncUdpSocket>>;

    /// Bind a UDP socket to `addr` that shares its port with other sockets of this process
    /// (`SO_REUSEPORT`: the kernel spreads incoming datagrams over them by address), for
    /// endpoints joined with [`join_threads`]. Runtimes that cannot say so refuse.
    fn bind_udp_shared(&self, addr: SocketAddr) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let _ = addr;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this runtime cannot share a UDP port",
        ))
    }

    /// Resolve `host` (a name, not an IP literal) to socket addresses with `port`, without
    /// blocking the executor: other connections keep running while DNS answers.
    fn resolve(&self, host: String, port: u16) -> Resolving;

    /// Bind a TCP listener to `addr`.
    fn bind_tcp(&self, addr: SocketAddr) -> io::Result<Box<dyn AsyncTcpListener>>;

    /// Connect to `addr` over TCP.
    fn connect_tcp(&self, addr: SocketAddr) -> Connecting;

    /// The current time.
    fn now(&self) -> Instant {
        Instant::now()
    }
}
