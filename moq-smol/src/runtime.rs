//! The smol implementation of `moq_proto::driver::Runtime`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use async_io::{Async, Timer as IoTimer};
use moq_proto::driver::{
    AsyncTcpListener, AsyncTcpStream, AsyncTimer, AsyncUdpSocket, Connecting, RecvMeta, Resolving,
    Runtime, UdpTransmit,
};

/// Requested UDP send and receive buffer size.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// Runs the driver on smol's global executor.
#[derive(Debug, Default, Clone, Copy)]
pub struct SmolRuntime;

impl Runtime for SmolRuntime {
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(Timer(IoTimer::at(deadline)))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        smol::spawn(future).detach();
    }

    fn resolve(&self, host: String, port: u16) -> Resolving {
        // async-net resolves on smol's blocking thread pool, off the executor.
        Box::pin(async move { smol::net::resolve((host.as_str(), port)).await })
    }

    fn bind_tcp(&self, addr: SocketAddr) -> io::Result<Box<dyn AsyncTcpListener>> {
        Ok(Box::new(TcpListener(Async::<std::net::TcpListener>::bind(
            addr,
        )?)))
    }

    fn connect_tcp(&self, addr: SocketAddr) -> Connecting {
        Box::pin(async move {
            let stream = Async::<std::net::TcpStream>::connect(addr).await?;
            let _ = stream.get_ref().set_nodelay(true);
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
    Ok(Arc::new(Udp {
        io: Async::new(socket)?,
        state,
    }))
}

#[derive(Debug)]
struct Timer(IoTimer);

impl AsyncTimer for Timer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0.set_at(deadline);
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

#[derive(Debug)]
struct Udp {
    io: Async<std::net::UdpSocket>,
    state: quinn_udp::UdpSocketState,
}

impl AsyncUdpSocket for Udp {
    fn poll_send(&self, cx: &mut Context<'_>, transmit: &UdpTransmit<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.io.poll_writable(cx))?;
            match self.state.try_send((&self.io).into(), transmit) {
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
            ready!(self.io.poll_readable(cx))?;
            match self.state.recv((&self.io).into(), bufs, meta) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

#[derive(Debug)]
struct TcpListener(Async<std::net::TcpListener>);

impl AsyncTcpListener for TcpListener {
    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Box<dyn AsyncTcpStream>, SocketAddr)>> {
        loop {
            ready!(self.0.poll_readable(cx))?;
            match self.0.get_ref().accept() {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let stream = Async::new(stream)?;
                    return Poll::Ready(Ok((Box::new(TcpStream(stream)), addr)));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

#[derive(Debug)]
struct TcpStream(Async<std::net::TcpStream>);

impl AsyncTcpStream for TcpStream {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        use std::io::Read;
        loop {
            ready!(self.0.poll_readable(cx))?;
            match (&mut self.0.get_ref()).read(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        use std::io::Write;
        loop {
            ready!(self.0.poll_writable(cx))?;
            match (&mut self.0.get_ref()).write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}
