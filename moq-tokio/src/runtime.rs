//! The tokio implementation of `moq_proto::driver::Runtime`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use moq_proto::driver::{
    AsyncTcpListener, AsyncTcpStream, AsyncTimer, AsyncUdpSocket, Connecting, RecvMeta, Resolving,
    Runtime, UdpTransmit,
};
use tokio::io::Interest;

/// Requested UDP send and receive buffer size.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// Runs the driver on the current tokio runtime.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(Timer(Box::pin(tokio::time::sleep_until(deadline.into()))))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        tokio::spawn(future);
    }

    fn resolve(&self, host: String, port: u16) -> Resolving {
        Box::pin(async move {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(|addrs| addrs.collect())
        })
    }

    fn bind_tcp(&self, addr: SocketAddr) -> io::Result<Box<dyn AsyncTcpListener>> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Box::new(TcpListener(tokio::net::TcpListener::from_std(
            listener,
        )?)))
    }

    fn connect_tcp(&self, addr: SocketAddr) -> Connecting {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(TcpStream(stream)) as Box<dyn AsyncTcpStream>)
        })
    }

    fn bind_udp(&self, addr: SocketAddr) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        udp(std::net::UdpSocket::bind(addr)?)
    }

    fn bind_udp_shared(&self, addr: SocketAddr) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        udp(moq_proto::driver::bind_reuseport(addr)?)
    }
}

/// Make a bound socket pollable, with GSO/GRO state and large buffers.
fn udp(socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
    let state = quinn_udp::UdpSocketState::new((&socket).into())?;
    // Bursts (GSO batches) overflow the kernel's default ~200 KB buffers and turn into
    // loss; ask for 8 MiB like the reference relay (the kernel may grant less).
    for result in [
        state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER),
        state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER),
    ] {
        if let Err(err) = result {
            tracing::debug!(%err, "could not enlarge the UDP socket buffer");
        }
    }
    socket.set_nonblocking(true)?;
    Ok(Arc::new(Udp {
        io: tokio::net::UdpSocket::from_std(socket)?,
        state,
    }))
}

#[derive(Debug)]
struct Timer(Pin<Box<tokio::time::Sleep>>);

impl AsyncTimer for Timer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0.as_mut().reset(deadline.into());
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

#[derive(Debug)]
struct Udp {
    io: tokio::net::UdpSocket,
    state: quinn_udp::UdpSocketState,
}

impl AsyncUdpSocket for Udp {
    fn poll_send(&self, cx: &mut Context<'_>, transmit: &UdpTransmit<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.io.poll_send_ready(cx))?;
            // try_io clears readiness on WouldBlock, so the loop re-registers interest.
            match self.io.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.io).into(), transmit)
            }) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_io(Interest::READABLE, || {
                self.state.recv((&self.io).into(), bufs, meta)
            }) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

#[derive(Debug)]
struct TcpListener(tokio::net::TcpListener);

impl AsyncTcpListener for TcpListener {
    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Box<dyn AsyncTcpStream>, SocketAddr)>> {
        let (stream, addr) = ready!(self.0.poll_accept(cx))?;
        let _ = stream.set_nodelay(true);
        Poll::Ready(Ok((Box::new(TcpStream(stream)), addr)))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

#[derive(Debug)]
struct TcpStream(tokio::net::TcpStream);

impl AsyncTcpStream for TcpStream {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}
