//! Sessions that come back: [`Endpoint::connect_persistent`] keeps a session to one server
//! up in the background. When it ends for any reason but the application's own close (the
//! relay restarted, the network broke, an idle timeout), it is dialled again with
//! exponential backoff and jitter; GOAWAY moves it to the URI the server names, with the new
//! session up before the old one is let go. A refusal that retrying cannot fix (code 0x2
//! unauthorized or 0x15 no common version, an untrusted certificate, a refused
//! WebTransport or WebSocket request) ends it instead: [`PersistentSession::failed`] says why.
//!
//! What the endpoint publishes survives by itself: it lives in the endpoint's node, which
//! announces it on every new session. Subscriptions are tied to the route they took: one
//! whose session went away ends; [`Endpoint::subscribe_resuming`] makes one that is renewed
//! by itself (or the application subscribes again: a subscription waits for a route).

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use super::api::{ConnectError, Endpoint, Session};
use crate::quic::ConnectFailure;
use crate::wire::Version;

/// How a [`PersistentSession`] redials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// The wait before the first redial; doubled after every failed attempt. Each wait is
    /// jittered by ±25 % so that clients of a restarted relay do not all return at once.
    pub first_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// Follow GOAWAY to the URI it names (make-before-break); otherwise wait for the
    /// session to close and redial the same URL.
    pub follow_goaway: bool,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            follow_goaway: true,
        }
    }
}

/// A session to one server that is redialled when it ends, made by
/// [`Endpoint::connect_persistent`] (which says how).
///
/// Dropping it (or [`PersistentSession::close`]) stops the redialling and closes the
/// current session.
pub struct PersistentSession {
    state: Arc<Mutex<LinkState>>,
}

impl std::fmt::Debug for PersistentSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("PersistentSession")
            .field("url", &state.url)
            .field("up", &state.is_up())
            .field("reconnects", &state.reconnects)
            .field("failed", &state.failed)
            .finish()
    }
}

struct LinkState {
    session: Option<Session>,
    url: String,
    reconnects: u64,
    failed: Option<String>,
    stopped: bool,
    wakers: Vec<Waker>,
}

impl LinkState {
    fn is_up(&self) -> bool {
        self.session.as_ref().is_some_and(|s| !s.is_closed())
    }

    fn wake(&mut self) {
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
    }

    fn fail(&mut self, reason: String) {
        self.failed.get_or_insert(reason);
        self.wake();
    }
}

fn lock(state: &Mutex<LinkState>) -> MutexGuard<'_, LinkState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Endpoint {
    /// Connect to `url` and keep a session to it up: redial with `policy` whenever it ends,
    /// until the returned handle is dropped or a refusal that retrying cannot fix. The first
    /// attempt is not retried: its error is returned, as from [`Endpoint::connect`].
    ///
    /// A session that ends for any reason but the application's own close (the server
    /// restarted, the network broke, an idle timeout) is dialled again with exponential
    /// backoff and ±25 % jitter; GOAWAY moves it to the URI the server names, the new session
    /// up before the old one is let go. Code 0x2 (unauthorized) or 0x15 (no common version),
    /// an untrusted certificate or a refused WebTransport or WebSocket request end it:
    /// [`PersistentSession::failed`] says why. What the endpoint publishes is announced again
    /// on every new session; a subscription ends with the session whose route it took, unless
    /// made with [`Endpoint::subscribe_resuming`].
    pub async fn connect_persistent(
        &self,
        url: &str,
        policy: ReconnectPolicy,
    ) -> Result<PersistentSession, ConnectError> {
        let session = self.connect(url).await?;
        let state = Arc::new(Mutex::new(LinkState {
            session: Some(session),
            url: url.to_string(),
            reconnects: 0,
            failed: None,
            stopped: false,
            wakers: Vec::new(),
        }));
        let task = keep_up(self.clone(), state.clone(), policy);
        self.runtime().spawn(Box::pin(task));
        Ok(PersistentSession { state })
    }
}

impl PersistentSession {
    /// Whether a session is up right now.
    pub fn is_up(&self) -> bool {
        lock(&self.state).is_up()
    }

    /// The version of the current session, if one is up.
    pub fn version(&self) -> Option<Version> {
        let state = lock(&self.state);
        state
            .session
            .as_ref()
            .filter(|s| !s.is_closed())
            .map(Session::version)
    }

    /// The URL dialled now (the one GOAWAY named, after one).
    pub fn url(&self) -> String {
        lock(&self.state).url.clone()
    }

    /// Sessions established after the first one.
    pub fn reconnects(&self) -> u64 {
        lock(&self.state).reconnects
    }

    /// Wait until at least `count` sessions were established after the first one. Returns
    /// `false` if the link failed for good first.
    pub async fn reconnected(&self, count: u64) -> bool {
        poll_fn(|cx| {
            let mut state = lock(&self.state);
            if state.reconnects >= count {
                return Poll::Ready(true);
            }
            if state.failed.is_some() || state.stopped {
                return Poll::Ready(false);
            }
            state.wakers.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Wait until the link is down for good; returns why.
    pub async fn failed(&self) -> String {
        poll_fn(|cx| {
            let mut state = lock(&self.state);
            if let Some(reason) = &state.failed {
                return Poll::Ready(reason.clone());
            }
            state.wakers.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Stop redialling and close the current session.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for PersistentSession {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.stopped = true;
        // Dropping the handle closes the session, which wakes the task's wait on it.
        state.session = None;
        state.fail("closed by the application".into());
    }
}

/// Whether a session's close reason is one retrying cannot fix.
fn fatal_close(reason: &str) -> bool {
    // 0x2 unauthorized, 0x15 no common version (`closed with code 0x..: reason`).
    reason.contains("code 0x2:") || reason.contains("code 0x15:")
}

/// Whether a failed dial is one retrying cannot fix.
fn fatal_dial(err: &ConnectError) -> bool {
    match err {
        ConnectError::Url(_) | ConnectError::Engine(_) | ConnectError::Closed => true,
        ConnectError::Failed { failure, .. } => matches!(
            failure,
            ConnectFailure::UntrustedCertificate(_)
                | ConnectFailure::NoCommonVersion(_)
                | ConnectFailure::Refused(_)
        ),
        _ => false,
    }
}

/// The background task: wait for the session to end (or GOAWAY), then redial.
async fn keep_up(endpoint: Endpoint, state: Arc<Mutex<LinkState>>, policy: ReconnectPolicy) {
    let mut rng = Jitter::seeded(&state);
    loop {
        let watcher = {
            let state = lock(&state);
            if state.stopped {
                return;
            }
            match &state.session {
                Some(session) => session.watcher(),
                None => return,
            }
        };
        if policy.follow_goaway
            && let Some(uri) = watcher.goaway_received().await
        {
            let url = if uri.is_empty() {
                lock(&state).url.clone()
            } else {
                uri
            };
            tracing::info!(%url, "GOAWAY: moving to");
            if let Ok(session) = endpoint.connect(&url).await {
                let mut state = lock(&state);
                if state.stopped {
                    return;
                }
                state.url = url;
                state.session = Some(session);
                state.reconnects += 1;
                state.wake();
                continue;
            }
            // The new address did not answer: redial the old one once this session ends.
        }
        let reason = watcher.closed().await;
        if lock(&state).stopped {
            return;
        }
        if fatal_close(&reason) {
            lock(&state).fail(format!("session closed: {reason}"));
            return;
        }
        tracing::warn!(%reason, "session ended; reconnecting");
        let mut backoff = policy.first_backoff;
        loop {
            if !sleep(&endpoint, &state, rng.jittered(backoff)).await {
                return;
            }
            let url = lock(&state).url.clone();
            match endpoint.connect(&url).await {
                Ok(session) => {
                    let mut state = lock(&state);
                    if state.stopped {
                        return;
                    }
                    tracing::info!(%url, version = %session.version(), "reconnected");
                    state.session = Some(session);
                    state.reconnects += 1;
                    state.wake();
                    break;
                }
                Err(err) if fatal_dial(&err) => {
                    lock(&state).fail(err.to_string());
                    return;
                }
                Err(err) => {
                    tracing::warn!(%err, retry_in = ?backoff, "reconnect failed");
                    backoff = (backoff * 2).min(policy.max_backoff);
                }
            }
        }
    }
}

/// Wait for `duration` on the endpoint's runtime; `false` if the link was stopped meanwhile.
async fn sleep(endpoint: &Endpoint, state: &Mutex<LinkState>, duration: Duration) -> bool {
    let runtime = endpoint.runtime();
    let mut timer = runtime.new_timer(runtime.now() + duration);
    poll_fn(|cx| {
        let mut state = lock(state);
        if state.stopped {
            return Poll::Ready(false);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        state.wakers.push(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// A small xorshift generator for backoff jitter (spreading clients out needs no
/// cryptographic randomness), seeded from the clock and this link's address.
struct Jitter(u64);

impl Jitter {
    fn seeded(state: &Arc<Mutex<LinkState>>) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self((nanos ^ (Arc::as_ptr(state) as u64)) | 1)
    }

    /// `d` ± 25 %.
    fn jittered(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.75 + unit * 0.5)
    }
}
