//! Subscriptions that come back: [`Endpoint::subscribe_resuming`] renews a subscription
//! whose route went away (the session it took ended, the relay restarted, the publisher left
//! or was replaced) and carries on where it was, so that a reader of its groups sees one
//! sequence across publishers and relays.
//!
//! A renewed subscription starts at the publisher's latest group. Its first group tells the
//! two cases apart: the group handed out last, served again as the latest, is skipped (never
//! handed out twice); a lower number is a new publisher numbering afresh, and the sequence
//! restarts there; a higher one is the same publisher gone on (the groups published while no
//! route existed are not fetched). Groups below the last one handed out are skipped
//! otherwise, as a subscription skips groups that arrive late.
//!
//! Renewal waits for a route like any subscription (it starts once the broadcast is
//! announced again). A renewal that fails again before delivering anything is retried after
//! a backoff (250 ms, doubling to 5 s). A track that finishes cleanly ends the subscription.

use std::future::poll_fn;
use std::time::Duration;

use super::api::{Endpoint, GroupReader, Subscription, SubscriptionEnd};
use crate::session::SubscribeParams;
use crate::wire::PathError;

/// The first wait before renewing a subscription that failed without delivering anything.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between renewals.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A subscription renewed whenever its route goes away; made by
/// [`Endpoint::subscribe_resuming`] (the module docs say how it resumes).
pub struct ResumingSubscription {
    endpoint: Endpoint,
    broadcast: String,
    track: String,
    params: SubscribeParams,
    current: Subscription,
    /// The group after the last one handed out.
    next: Option<u64>,
    /// Right after a renewal: `next` at that moment, for the first group to compare with.
    resumed: Option<u64>,
    /// The current subscription handed out a group (a renewal that fails before that backs
    /// off).
    delivered: bool,
    backoff: Duration,
    renewals: u64,
}

impl std::fmt::Debug for ResumingSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumingSubscription")
            .field("broadcast", &self.broadcast)
            .field("track", &self.track)
            .field("next", &self.next)
            .field("renewals", &self.renewals)
            .finish()
    }
}

impl Endpoint {
    /// Subscribe to a track and keep the subscription through lost routes: when the session
    /// it took ends or its publisher leaves, it is renewed (waiting for the broadcast to be
    /// announced again) and goes on without handing out a group twice. Use it with
    /// [`Endpoint::connect_persistent`] to survive relay restarts. See [`ResumingSubscription`].
    pub fn subscribe_resuming(
        &self,
        broadcast: &str,
        track: &str,
        params: SubscribeParams,
    ) -> Result<ResumingSubscription, PathError> {
        let current = self.subscribe_with(broadcast, track, params)?;
        Ok(ResumingSubscription {
            endpoint: self.clone(),
            broadcast: broadcast.to_string(),
            track: track.to_string(),
            params,
            current,
            next: None,
            resumed: None,
            delivered: false,
            backoff: FIRST_BACKOFF,
            renewals: 0,
        })
    }
}

impl ResumingSubscription {
    /// The next group, in the order they arrive (`None` once the track finished cleanly).
    pub async fn next_group(&mut self) -> Option<GroupReader> {
        loop {
            let Some(group) = self.current.next_group().await else {
                match self.current.end() {
                    Some(SubscriptionEnd::Failed(code)) => {
                        tracing::debug!(%code, broadcast = %self.broadcast, track = %self.track, "subscription lost; renewing");
                        if !self.renew().await {
                            return None;
                        }
                        continue;
                    }
                    _ => return None,
                }
            };
            let seq = group.seq();
            match (self.resumed.take(), self.next) {
                // The group handed out last, served again as the latest.
                (Some(next), _) if seq + 1 == next => continue,
                // Lower than where we were: a new publisher numbering afresh.
                (Some(next), _) if seq < next => {}
                // Late: a later group was handed out already.
                (None, Some(next)) if seq < next => continue,
                _ => {}
            }
            self.next = Some(seq + 1);
            self.delivered = true;
            self.backoff = FIRST_BACKOFF;
            return Some(group);
        }
    }

    /// Where the current subscription starts, once known (see [`Subscription::start`]).
    pub fn start(&self) -> Option<u64> {
        self.current.start()
    }

    /// Subscriptions made after the first one.
    pub fn renewals(&self) -> u64 {
        self.renewals
    }

    /// The group after the last one handed out, if any was.
    pub fn next_seq(&self) -> Option<u64> {
        self.next
    }

    /// Subscribe again (from the latest group), after a backoff if the previous renewal
    /// failed before delivering; `false` if the endpoint refuses.
    async fn renew(&mut self) -> bool {
        if !self.delivered && self.renewals > 0 {
            let runtime = self.endpoint.runtime();
            let mut timer = runtime.new_timer(runtime.now() + self.backoff);
            poll_fn(|cx| timer.as_mut().poll(cx)).await;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        let params = SubscribeParams {
            start: None,
            ..self.params
        };
        match self
            .endpoint
            .subscribe_with(&self.broadcast, &self.track, params)
        {
            Ok(subscription) => self.current = subscription,
            Err(err) => {
                tracing::warn!(%err, "renewing a subscription failed");
                return false;
            }
        }
        self.renewals += 1;
        self.delivered = false;
        if self.next.is_some() {
            self.resumed = self.next;
        }
        true
    }
}
