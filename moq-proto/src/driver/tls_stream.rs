//! TLS over a runtime's TCP stream with rustls (its sans-IO `Connection`): the relay's HTTPS
//! listener (`wss://`, `https://…/certificate.sha256`) and the `wss://` client.
//!
//! rustls reads ciphertext from, and writes records to, the socket through small adapters that
//! turn "would block" into `Poll::Pending` (registering the task's waker). Records rustls has
//! to send (handshake messages, encrypted writes) are flushed on every read, write and flush,
//! so a task that only polls reads still completes the handshake.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;

use super::AsyncTcpStream;

/// Plaintext rustls buffers for sending before writes wait for the socket.
const SEND_BUFFER: usize = 64 * 1024;

/// A TLS stream over a TCP stream.
pub(super) struct TlsStream {
    tcp: Box<dyn AsyncTcpStream>,
    tls: Mutex<rustls::Connection>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").finish_non_exhaustive()
    }
}

/// The socket as a non-blocking `Read`/`Write` for rustls.
struct Adapter<'a, 'b> {
    tcp: &'a dyn AsyncTcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for Adapter<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tcp.poll_read(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Adapter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.tcp.poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn poll_io<T>(result: io::Result<T>) -> Poll<io::Result<T>> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        other => Poll::Ready(other),
    }
}

impl TlsStream {
    /// The server side of a TLS connection on `tcp`.
    pub(super) fn server(
        tcp: Box<dyn AsyncTcpStream>,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        let tls = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Self::new(tcp, tls.into()))
    }

    /// The client side, verifying the server as `name`.
    pub(super) fn client(
        tcp: Box<dyn AsyncTcpStream>,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> io::Result<Self> {
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(Self::new(tcp, tls.into()))
    }

    fn new(tcp: Box<dyn AsyncTcpStream>, mut tls: rustls::Connection) -> Self {
        tls.set_buffer_limit(Some(SEND_BUFFER));
        Self {
            tcp,
            tls: Mutex::new(tls),
        }
    }

    fn lock(&self) -> MutexGuard<'_, rustls::Connection> {
        self.tls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write every record rustls has to send; `Ready` once they are all out.
    fn flush_records(
        &self,
        cx: &mut Context<'_>,
        tls: &mut rustls::Connection,
    ) -> Poll<io::Result<()>> {
        let mut socket = Adapter {
            tcp: &*self.tcp,
            cx,
        };
        while tls.wants_write() {
            match poll_io(tls.write_tls(&mut socket)) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncTcpStream for TlsStream {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut tls = self.lock();
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: the end of the stream all the same.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(0));
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
            // Handshake replies and queued writes go out while we wait to read.
            if let Poll::Ready(Err(err)) = self.flush_records(cx, &mut tls) {
                return Poll::Ready(Err(err));
            }
            let mut socket = Adapter {
                tcp: &*self.tcp,
                cx,
            };
            match poll_io(tls.read_tls(&mut socket)) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(_)) => {
                    if let Err(err) = tls.process_new_packets() {
                        // Tell the peer why (an alert), as far as the socket takes it.
                        let _ = self.flush_records(cx, &mut tls);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
                    }
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut tls = self.lock();
        // Earlier records first; while they wait, so does this write.
        match self.flush_records(cx, &mut tls) {
            Poll::Ready(Ok(())) => {}
            other => return other.map_ok(|()| 0),
        }
        let n = tls.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            // rustls's buffer is full (the handshake is not done yet): wait for the socket.
            return match self.flush_records(cx, &mut tls) {
                Poll::Ready(Ok(())) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            };
        }
        // Accepted: the records go out now or on the next read, write or flush.
        let _ = self.flush_records(cx, &mut tls);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut tls = self.lock();
        self.flush_records(cx, &mut tls)
    }
}
