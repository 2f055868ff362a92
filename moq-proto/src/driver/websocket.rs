//! WebSocket (QMux) connections on the runtime's TCP sockets: the relay's side of the upgrade,
//! the `ws://` client's handshake, and one task per connection pumping its socket through the
//! engine's sans-IO QMux layer.
//!
//! The task keeps reading even while its writes wait (QMux requires it: flow control, not the
//! socket, bounds what the peer sends), and asks the engine for bytes only when the previous
//! ones are written, so the socket's buffer is the only queue below the session's priorities.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::http::{read, with_deadline, write_all};
use super::shared::Shared;
use super::tls_stream::TlsStream;
use super::{AsyncTcpStream, Runtime};
use crate::http1::Request;
use crate::qmux::{WsState, subprotocol};
use crate::quic::ConnectionHandle;
use crate::websocket::handshake::ClientHandshake;
use crate::wire::Version;

/// Bytes read from the socket per call.
const READ_CHUNK: usize = 64 * 1024;
/// How long a `ws://` client may take to complete the upgrade.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Answer an upgrade request on the relay's TCP listener: the 101 (or the refusal), then the
/// connection's life. `leftover` holds bytes that followed the request head.
pub(super) async fn serve_upgrade(
    shared: Arc<Shared>,
    runtime: Arc<dyn Runtime>,
    stream: Box<dyn AsyncTcpStream>,
    remote: SocketAddr,
    request: Request,
    leftover: Vec<u8>,
) {
    let accepted = {
        let now = runtime.now();
        let mut state = shared.lock();
        let result = state.engine.accept_websocket(now, remote, &request);
        state.after_step();
        result
    };
    let (handle, response) = match accepted {
        Ok(accepted) => accepted,
        Err(refusal) => {
            let _ = write_all(&*stream, &refusal.encode(false)).await;
            return;
        }
    };
    if let Err(err) = write_all(&*stream, &response).await {
        let mut state = shared.lock();
        state
            .engine
            .handle_websocket_eof(runtime.now(), handle, &err.to_string());
        state.after_step();
        return;
    }
    run(shared, runtime, stream, handle, leftover, false).await;
}

/// The client's upgrade, to the first of `addrs` that accepts a TCP connection: the socket,
/// the address, the subprotocol the server chose, and bytes that followed its answer.
pub(super) async fn handshake(
    runtime: Arc<dyn Runtime>,
    addrs: &[SocketAddr],
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
    authority: &str,
    target: &str,
    versions: &[Version],
) -> io::Result<(Box<dyn AsyncTcpStream>, SocketAddr, String, Vec<u8>)> {
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| io::Error::other("no randomness for the WebSocket key"))?;
    let client = ClientHandshake::new(nonce, subprotocol::offer(versions));
    let deadline = runtime.now() + HANDSHAKE_DEADLINE;
    with_deadline(&*runtime.clone(), deadline, async move {
        let mut connected = None;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match runtime.connect_tcp(*addr).await {
                Ok(stream) => {
                    connected = Some((stream, *addr));
                    break;
                }
                Err(err) => last = err,
            }
        }
        let (mut stream, addr) = connected.ok_or(last)?;
        if let Some((config, name)) = tls {
            stream = Box::new(TlsStream::client(stream, config, &name)?);
        }
        write_all(&*stream, &client.request(authority, target)).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        loop {
            let n = read(&*stream, &mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed during the WebSocket upgrade",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            match client.response(&buf) {
                Ok(Some((protocol, len))) => {
                    let protocol = protocol.unwrap_or_default();
                    return Ok((stream, addr, protocol, buf.split_off(len)));
                }
                Ok(None) => continue,
                Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err)),
            }
        }
    })
    .await
}

/// How long a finished connection keeps reading before it closes the socket, when the peer has
/// not closed first: closing with unread bytes would reset the connection (RST), and the peer
/// could lose our close frames. The accepting side closes first (RFC 6455 §7.1.1).
const LINGER_ACCEPTED: Duration = Duration::from_millis(500);
/// The same for the dialling side, which waits for the server to close.
const LINGER_DIALLED: Duration = Duration::from_secs(2);

/// Pump one connection's socket until the engine is done with it or the socket ends.
pub(super) async fn run(
    shared: Arc<Shared>,
    runtime: Arc<dyn Runtime>,
    stream: Box<dyn AsyncTcpStream>,
    handle: ConnectionHandle,
    leftover: Vec<u8>,
    dialled: bool,
) {
    if !leftover.is_empty() {
        let mut state = shared.lock();
        state
            .engine
            .handle_websocket_data(runtime.now(), handle, &leftover);
        state.after_step();
    }
    let mut input = vec![0u8; READ_CHUNK];
    let mut out: Vec<u8> = Vec::new();
    let mut written = 0;
    let mut finished = false;
    let mut linger: Option<std::pin::Pin<Box<dyn super::AsyncTimer>>> = None;
    poll_fn(|cx| {
        loop {
            let mut progressed = false;
            match stream.poll_read(cx, &mut input) {
                // After our close, what still arrives is discarded.
                Poll::Ready(Ok(n)) if n > 0 && finished => progressed = true,
                Poll::Ready(Ok(n)) if n > 0 => {
                    let mut state = shared.lock();
                    state
                        .engine
                        .handle_websocket_data(runtime.now(), handle, &input[..n]);
                    state.after_step();
                    progressed = true;
                }
                Poll::Ready(result) => {
                    if !finished {
                        let reason = match result {
                            Err(err) => err.to_string(),
                            Ok(_) => "the peer closed the connection".to_string(),
                        };
                        let mut state = shared.lock();
                        state
                            .engine
                            .handle_websocket_eof(runtime.now(), handle, &reason);
                        state.ws_wakers.remove(&handle);
                        state.after_step();
                    }
                    return Poll::Ready(());
                }
                Poll::Pending => {}
            }
            if let Some(timer) = linger.as_mut() {
                return match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(()),
                    Poll::Pending if progressed => continue,
                    Poll::Pending => Poll::Pending,
                };
            }
            if written == out.len() {
                out.clear();
                written = 0;
                if finished {
                    // Everything is written (a TLS layer may still hold records); read until
                    // the peer closes, or the linger ends.
                    if stream.poll_flush(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let wait = if dialled {
                        LINGER_DIALLED
                    } else {
                        LINGER_ACCEPTED
                    };
                    linger = Some(runtime.new_timer(runtime.now() + wait));
                    continue;
                }
                let mut state = shared.lock();
                match state
                    .engine
                    .poll_websocket_transmit(runtime.now(), handle, &mut out)
                {
                    None => {
                        state.ws_wakers.remove(&handle);
                        return Poll::Ready(());
                    }
                    Some(WsState::Finished) => {
                        finished = true;
                        state.ws_wakers.remove(&handle);
                    }
                    Some(_) => {
                        // Registered under the lock: bytes the engine queues from now on
                        // wake us through the driver.
                        state.ws_wakers.insert(handle, cx.waker().clone());
                    }
                }
                state.after_step();
                progressed |= finished;
            }
            if written < out.len() {
                match stream.poll_write(cx, &out[written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(()),
                    Poll::Ready(Ok(n)) => {
                        written += n;
                        progressed = true;
                    }
                    Poll::Ready(Err(err)) => {
                        if !finished {
                            let mut state = shared.lock();
                            state.engine.handle_websocket_eof(
                                runtime.now(),
                                handle,
                                &err.to_string(),
                            );
                            state.ws_wakers.remove(&handle);
                            state.after_step();
                        }
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    })
    .await;
}
