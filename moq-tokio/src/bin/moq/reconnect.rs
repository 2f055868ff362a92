//! Client sessions that stay up: when the session to the relay ends for any reason but our
//! own exit (the relay restarted, the network broke, the relay sent GOAWAY), it is dialled
//! again with exponential backoff and jitter, and GOAWAY moves it to the URL it names
//! (make-before-break: the new session is up before the old one is let go).
//!
//! Publishing survives by itself: what the endpoint publishes lives in its own node, which
//! announces it on every new session. Subscriptions end when their route goes and are renewed
//! by the commands (`moq sub` resumes at the next group). A refusal that retrying cannot fix
//! (unauthorized, no common version, an untrusted certificate) ends the command instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moq_tokio::{Endpoint, Session, SessionWatcher};
use tokio::sync::watch;

use crate::common::{Common, Error, redact_token};

/// First wait before redialling; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A session to a relay kept up in the background.
pub(crate) struct Link {
    endpoint: Endpoint,
    current: Arc<Mutex<Option<Session>>>,
    failed: watch::Receiver<Option<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Connect to `url` (a first failure is an error, as without reconnecting) and keep the
    /// session up if `reconnect`; without it, the link fails when the session ends.
    pub(crate) async fn connect(
        common: &Common,
        url: &str,
        reconnect: bool,
    ) -> Result<Self, Error> {
        let (endpoint, session) = common.connect(url).await?;
        let current = Arc::new(Mutex::new(Some(session)));
        let (fail, failed) = watch::channel(None);
        let task = tokio::spawn(keep_up(
            common.clone(),
            endpoint.clone(),
            url.to_string(),
            current.clone(),
            fail,
            reconnect,
        ));
        Ok(Self {
            endpoint,
            current,
            failed,
            task,
        })
    }

    /// The endpoint (publish and subscribe on it; it outlives the sessions).
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether a session is up right now.
    pub(crate) fn is_up(&self) -> bool {
        self.current
            .lock()
            .ok()
            .is_some_and(|s| s.as_ref().is_some_and(|s| !s.is_closed()))
    }

    /// Resolves, with the reason, once the link is down for good.
    pub(crate) async fn failed(&self) -> String {
        let mut failed = self.failed.clone();
        loop {
            if let Some(reason) = failed.borrow_and_update().clone() {
                return reason;
            }
            if failed.changed().await.is_err() {
                return "the connection task ended".into();
            }
        }
    }

    /// Stop reconnecting and close the endpoint (its connections say goodbye).
    pub(crate) async fn close(self) {
        self.task.abort();
        if let Ok(mut current) = self.current.lock() {
            current.take();
        }
        crate::common::close(&self.endpoint).await;
    }
}

/// Why a session ended, if retrying cannot help.
fn fatal(reason: &str) -> bool {
    // 0x2 unauthorized, 0x15 no common version.
    reason.contains("code 0x2:") || reason.contains("code 0x15:")
}

async fn keep_up(
    common: Common,
    endpoint: Endpoint,
    mut url: String,
    current: Arc<Mutex<Option<Session>>>,
    fail: watch::Sender<Option<String>>,
    reconnect: bool,
) {
    loop {
        let Some(watcher) = watch_session(&current) else {
            return;
        };
        let reason = tokio::select! {
            reason = watcher.closed() => reason,
            Some(uri) = watcher.goaway_received() => {
                // Follow GOAWAY before the old session drains away.
                if !uri.is_empty() {
                    url = uri;
                }
                tracing::info!(url = %redact_token(&url), "GOAWAY: moving to");
                if let Ok(session) = dial(&common, &endpoint, &url).await {
                    replace(&current, session);
                    continue;
                }
                "GOAWAY".to_string()
            }
        };
        if !reconnect || fatal(&reason) {
            let _ = fail.send(Some(format!("session closed: {reason}")));
            return;
        }
        tracing::warn!(%reason, "session ended; reconnecting");
        let mut backoff = FIRST_BACKOFF;
        loop {
            tokio::time::sleep(jittered(backoff)).await;
            match dial(&common, &endpoint, &url).await {
                Ok(session) => {
                    replace(&current, session);
                    break;
                }
                Err(err) => {
                    let text = err.to_string();
                    if text.contains("not trusted") || fatal(&text) {
                        let _ = fail.send(Some(text));
                        return;
                    }
                    tracing::warn!(err = %redact_token(&text), retry_in = ?backoff, "reconnect failed");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// A watcher of the current session.
fn watch_session(current: &Arc<Mutex<Option<Session>>>) -> Option<SessionWatcher> {
    current.lock().ok()?.as_ref().map(Session::watcher)
}

fn replace(current: &Arc<Mutex<Option<Session>>>, session: Session) {
    if let Ok(mut slot) = current.lock() {
        // Dropping the old handle closes what is left of it.
        *slot = Some(session);
    }
}

async fn dial(common: &Common, endpoint: &Endpoint, url: &str) -> Result<Session, Error> {
    let session = common.dial(endpoint, url).await?;
    tracing::info!(url = %redact_token(url), version = %session.version(), "reconnected");
    Ok(session)
}

/// `d` ± 25 %.
fn jittered(d: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let mut byte = [0u8; 1];
    let _ = ring::rand::SystemRandom::new().fill(&mut byte);
    let factor = 0.75 + f64::from(byte[0]) / 255.0 * 0.5;
    d.mul_f64(factor)
}
