//! Plain HTTP over TCP, on the runtime's sockets with the sans-IO [`crate::http1`]: the
//! relay's listener (one request per connection, capped and with a deadline; WebSocket
//! upgrades go to [`super::websocket`]) and the `http://` client's certificate-hash fetch.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::shared::Shared;
use super::{AsyncTcpStream, Runtime};
use crate::http1::{self, Request, Response};
use crate::websocket::handshake;

/// What answers the requests of an HTTP listener.
pub type HttpHandler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// How long a client may take to send its request (slow clients are dropped).
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long a fetch may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(10);
/// Most HTTP connections served at once; more wait in the kernel's backlog.
pub(super) const MAX_HTTP_CONNECTIONS: usize = 256;

/// Run `future` until `deadline` (then `TimedOut`).
pub(super) async fn with_deadline<T>(
    runtime: &dyn Runtime,
    deadline: Instant,
    future: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let mut future = pin!(future);
    let mut timer = runtime.new_timer(deadline);
    poll_fn(|cx| {
        if let Poll::Ready(result) = future.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "deadline passed",
            )));
        }
        Poll::Pending
    })
    .await
}

pub(super) async fn read(stream: &dyn AsyncTcpStream, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| stream.poll_read(cx, buf)).await
}

pub(super) async fn write_all(stream: &dyn AsyncTcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = poll_fn(|cx| stream.poll_write(cx, data)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    poll_fn(|cx| stream.poll_flush(cx)).await
}

/// Serve one connection: read a request (capped), answer it, close; or, for a WebSocket
/// upgrade the engine takes, hand the connection over to it for its whole life.
pub(super) async fn serve_connection(
    runtime: Arc<dyn Runtime>,
    shared: Arc<Shared>,
    stream: Box<dyn AsyncTcpStream>,
    remote: SocketAddr,
    handler: HttpHandler,
    api: Option<(super::api::Endpoint, Arc<super::http_api::HttpApi>)>,
    active: Arc<AtomicUsize>,
) {
    let deadline = runtime.now() + REQUEST_DEADLINE;
    let result = with_deadline(&*runtime, deadline, async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        loop {
            let n = read(&*stream, &mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
            match http1::parse_request(&buf) {
                Ok(Some((request, len))) => {
                    let takes_upgrade =
                        handshake::is_upgrade(&request) && shared.lock().engine.config().websocket;
                    if takes_upgrade {
                        return Ok(Some((request, buf.split_off(len))));
                    }
                    let head_only = request.method == "HEAD";
                    let response = match &api {
                        Some((endpoint, api)) if super::http_api::is_api_route(request.path()) => {
                            super::http_api::answer(endpoint, api, &request).await
                        }
                        _ => handler(&request),
                    };
                    write_all(&*stream, &response.encode(head_only)).await?;
                    return Ok(None);
                }
                Ok(None) => continue,
                Err(err) => {
                    let response = Response::text(err.status(), format!("{err}\n"));
                    write_all(&*stream, &response.encode(false)).await?;
                    return Ok(None);
                }
            }
        }
    })
    .await;
    // An upgraded connection is the engine's now (its own limit), not the HTTP listener's.
    active.fetch_sub(1, Ordering::Relaxed);
    match result {
        Ok(Some((request, leftover))) => {
            super::websocket::serve_upgrade(shared, runtime, stream, remote, request, leftover)
                .await;
        }
        Ok(None) => {}
        Err(err) => tracing::debug!(%err, "HTTP connection"),
    }
}

/// GET `path` from `addr` (naming `authority` in `Host`); the status and the body.
pub(super) async fn get(
    runtime: Arc<dyn Runtime>,
    addr: SocketAddr,
    authority: &str,
    path: &str,
) -> io::Result<(u16, Bytes)> {
    let deadline = runtime.now() + FETCH_DEADLINE;
    with_deadline(&*runtime, deadline, async {
        let stream = runtime.connect_tcp(addr).await?;
        write_all(&*stream, &http1::get_request(authority, path)).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        loop {
            let n = read(&*stream, &mut chunk).await?;
            buf.extend_from_slice(&chunk[..n]);
            match http1::parse_response(&buf, n == 0) {
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) => continue,
                Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err)),
            }
        }
    })
    .await
}
