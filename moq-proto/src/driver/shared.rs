//! State shared by the driver task and the handles: the engine, and what each handle waits for.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use super::api::{DriverConfig, Frame, SubscriptionEnd};
use crate::node::{LocalSubId, NodeEvent, SubscriptionEvent, WatchId};
use crate::origin::{GroupState, PeerId};
use crate::quic::{ConnectFailure, ConnectionHandle, Endpoint, EngineEvent};
use crate::wire::{Path, TrackInfo, Version};

pub(super) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub(super) fn new(state: State) -> Self {
        Self {
            state: Mutex::new(state),
        }
    }

    /// Lock the state. A panic elsewhere while holding the lock leaves the state usable (every
    /// mutation is a whole step of the engine), so poisoning is ignored.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Outcome of a connection attempt.
pub(super) enum Connect {
    Pending(Option<Waker>),
    Done(Result<(PeerId, Version, SocketAddr), ConnectFailure>),
}

#[derive(Default)]
pub(super) struct SessionSlot {
    pub(super) closed: Option<String>,
    pub(super) goaway: Option<String>,
    pub(super) wakers: Vec<Waker>,
}

#[derive(Default)]
pub(super) struct GroupSlot {
    pub(super) frames: VecDeque<Frame>,
    pub(super) end: Option<GroupState>,
    pub(super) waker: Option<Waker>,
}

#[derive(Default)]
pub(super) struct SubSlot {
    pub(super) info: Option<TrackInfo>,
    pub(super) ready: bool,
    /// The first group of the subscription, once known.
    pub(super) start: Option<u64>,
    /// Groups begun and not yet handed to the application, oldest first.
    pub(super) new_groups: VecDeque<u64>,
    pub(super) groups: HashMap<u64, GroupSlot>,
    pub(super) buffered: usize,
    pub(super) closed: Option<SubscriptionEnd>,
    pub(super) waker: Option<Waker>,
}

#[derive(Default)]
pub(super) struct WatchSlot {
    pub(super) queue: VecDeque<(Path, bool)>,
    pub(super) waker: Option<Waker>,
}

pub(super) struct State {
    pub(super) engine: Endpoint,
    pub(super) cfg: DriverConfig,
    pub(super) driver: Option<Waker>,
    pub(super) connects: HashMap<ConnectionHandle, Connect>,
    pub(super) accepts: VecDeque<(PeerId, Version, SocketAddr)>,
    pub(super) accept_waker: Option<Waker>,
    pub(super) sessions: HashMap<PeerId, SessionSlot>,
    pub(super) subs: HashMap<LocalSubId, SubSlot>,
    pub(super) watches: HashMap<WatchId, WatchSlot>,
    pub(super) writers: Vec<Waker>,
    /// Tasks waiting for [`super::Endpoint::flushed`]; woken after every driver turn.
    pub(super) idle_waiters: Vec<Waker>,
    /// WebSocket connection tasks waiting for bytes to write.
    pub(super) ws_wakers: crate::fxhash::FxHashMap<ConnectionHandle, Waker>,
    /// Tasks that only wait for the endpoint to close (the HTTP listeners).
    pub(super) close_waiters: Vec<Waker>,
    /// The deadline the driver's timer is armed for.
    pub(super) driver_deadline: Option<std::time::Instant>,
    pub(super) closed: bool,
    /// The other endpoints of this process this one is joined with, if any.
    pub(super) threads: Option<super::threads::Membership>,
    /// In-process links to them, by connection handle.
    pub(super) links: crate::fxhash::FxHashMap<ConnectionHandle, super::threads::LinkEnd>,
    /// Datagrams other threads' sockets received for our connections.
    pub(super) handed_in: u64,
}

impl State {
    pub(super) fn new(engine: Endpoint, cfg: DriverConfig) -> Self {
        Self {
            engine,
            cfg,
            driver: None,
            connects: HashMap::new(),
            accepts: VecDeque::new(),
            accept_waker: None,
            sessions: HashMap::new(),
            subs: HashMap::new(),
            watches: HashMap::new(),
            writers: Vec::new(),
            idle_waiters: Vec::new(),
            ws_wakers: Default::default(),
            close_waiters: Vec::new(),
            driver_deadline: None,
            closed: false,
            threads: None,
            links: Default::default(),
            handed_in: 0,
        }
    }

    /// Remember the driver task's waker (cloned only when it changed).
    pub(super) fn register_driver(&mut self, waker: &Waker) {
        if !self.driver.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.driver = Some(waker.clone());
        }
    }

    /// Ask the driver to run (after a handle changed the engine).
    pub(super) fn wake_driver(&mut self) {
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }

    /// Wake publishers waiting for buffered bytes to drain, if they have.
    pub(super) fn wake_writers(&mut self) {
        if self.engine.buffered_bytes() < self.cfg.max_buffered / 2 || self.closed {
            for waker in self.writers.drain(..) {
                waker.wake();
            }
        }
    }

    /// Wake everything (the endpoint closed or the driver failed).
    pub(super) fn wake_all(&mut self) {
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
        for slot in self.connects.values_mut() {
            if let Connect::Pending(w) = slot
                && let Some(w) = w.take()
            {
                w.wake();
            }
        }
        for session in self.sessions.values_mut() {
            for w in session.wakers.drain(..) {
                w.wake();
            }
        }
        for sub in self.subs.values_mut() {
            wake_sub(sub);
        }
        for watch in self.watches.values_mut() {
            if let Some(w) = watch.waker.take() {
                w.wake();
            }
        }
        for w in self.writers.drain(..) {
            w.wake();
        }
        for w in self.idle_waiters.drain(..) {
            w.wake();
        }
        for (_, w) in self.ws_wakers.drain() {
            w.wake();
        }
        for w in self.close_waiters.drain(..) {
            w.wake();
        }
    }

    /// After a step of the engine outside the driver task (a WebSocket task fed it bytes or
    /// took bytes from it): route its events and wake whoever they concern, and wake the
    /// driver only when it has work: a UDP transmit, or a deadline before its timer's.
    /// Waking it for every WebSocket message would cost a driver turn (system calls included)
    /// per message per connection.
    pub(super) fn after_step(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            self.dispatch(event);
        }
        self.wake_writers();
        self.wake_websockets();
        let sooner = match (self.engine.poll_timeout(), self.driver_deadline) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        // A closing endpoint's driver finishes once the last connection is gone.
        if self.engine.wants_udp_transmit()
            || self.engine.wants_link_transmit()
            || sooner
            || self.closed
        {
            self.wake_driver();
        }
    }

    /// Wake the WebSocket tasks whose connections have something new to write.
    pub(super) fn wake_websockets(&mut self) {
        while let Some(handle) = self.engine.poll_websocket_wake() {
            if let Some(w) = self.ws_wakers.remove(&handle) {
                w.wake();
            }
        }
    }

    /// Route an engine event to the handles waiting for it.
    pub(super) fn dispatch(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::Connected {
                conn,
                peer,
                version,
                remote,
                side,
            } => {
                self.sessions.entry(peer).or_default();
                match self.connects.get_mut(&conn) {
                    Some(slot) if side == crate::session::Side::Client => {
                        if let Connect::Pending(Some(w)) =
                            std::mem::replace(slot, Connect::Done(Ok((peer, version, remote))))
                        {
                            w.wake();
                        }
                    }
                    _ => {
                        self.accepts.push_back((peer, version, remote));
                        if let Some(w) = self.accept_waker.take() {
                            w.wake();
                        }
                    }
                }
            }
            EngineEvent::ConnectFailed { conn, error } => {
                if let Some(slot) = self.connects.get_mut(&conn)
                    && let Connect::Pending(Some(w)) =
                        std::mem::replace(slot, Connect::Done(Err(error)))
                {
                    w.wake();
                }
            }
            EngineEvent::Disconnected { conn, peer, reason } => {
                if let Some(slot) = self.connects.get_mut(&conn)
                    && matches!(slot, Connect::Pending(_))
                    && let Connect::Pending(Some(w)) = std::mem::replace(
                        slot,
                        Connect::Done(Err(ConnectFailure::Transport(reason.clone()))),
                    )
                {
                    w.wake();
                }
                // A started session also reports NodeEvent::SessionClosed, with its code.
                if peer.is_none() {
                    tracing::debug!(%reason, "connection closed before its session started");
                }
            }
            EngineEvent::Node(event) => self.dispatch_node(event),
        }
    }

    fn session_closed(&mut self, peer: PeerId, reason: String) {
        // A server session that closed before the application accepted it: no handle will
        // ever exist to remove its slot, so forget it now (an endpoint that never calls
        // `accept` would otherwise keep every session it ever served).
        let queued = self.accepts.len();
        self.accepts.retain(|(p, _, _)| *p != peer);
        if self.accepts.len() != queued {
            self.sessions.remove(&peer);
            return;
        }
        let slot = self.sessions.entry(peer).or_default();
        slot.closed.get_or_insert(reason);
        for w in slot.wakers.drain(..) {
            w.wake();
        }
    }

    fn dispatch_node(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::SessionReady { .. }
            | NodeEvent::Refused { .. }
            | NodeEvent::ProbeReport { .. }
            | NodeEvent::Fetch { .. } => {}
            NodeEvent::SessionClosed {
                peer, code, reason, ..
            } => {
                self.session_closed(peer, format!("closed with code {code:#x}: {reason}"));
            }
            NodeEvent::Goaway { peer, uri } => {
                let slot = self.sessions.entry(peer).or_default();
                slot.goaway = Some(uri);
                for w in slot.wakers.drain(..) {
                    w.wake();
                }
            }
            NodeEvent::Announced {
                watch,
                path,
                active,
            } => {
                if let Some(slot) = self.watches.get_mut(&watch) {
                    slot.queue.push_back((path, active));
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
            }
            NodeEvent::Subscription { id, event } => self.dispatch_subscription(id, event),
        }
    }

    fn dispatch_subscription(&mut self, id: LocalSubId, event: SubscriptionEvent) {
        let cap = self.cfg.max_subscription_buffer;
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        match event {
            SubscriptionEvent::Ready { info } => {
                sub.ready = true;
                sub.info = info;
                wake(&mut sub.waker);
            }
            SubscriptionEvent::Start { group } => {
                sub.start = Some(group);
                wake(&mut sub.waker);
            }
            SubscriptionEvent::Group { seq } => {
                sub.groups.insert(seq, GroupSlot::default());
                sub.new_groups.push_back(seq);
                wake(&mut sub.waker);
            }
            SubscriptionEvent::Frame {
                seq,
                timestamp,
                payload,
            } => {
                let len = payload.len();
                if let Some(group) = sub.groups.get_mut(&seq) {
                    group.frames.push_back(Frame { timestamp, payload });
                    wake(&mut group.waker);
                    sub.buffered += len;
                }
                // A reader that falls behind loses its oldest buffered groups, never memory.
                while sub.buffered > cap {
                    let Some(oldest) = sub.groups.keys().copied().min() else {
                        break;
                    };
                    if oldest == seq && sub.groups.len() == 1 {
                        // Only the group being written: drop its oldest frames instead.
                        let Some(group) = sub.groups.get_mut(&seq) else {
                            break;
                        };
                        match group.frames.pop_front() {
                            Some(frame) => sub.buffered -= frame.payload.len(),
                            None => break,
                        }
                        continue;
                    }
                    if let Some(mut group) = sub.groups.remove(&oldest) {
                        sub.buffered -= group.frames.iter().map(|f| f.payload.len()).sum::<usize>();
                        sub.new_groups.retain(|s| *s != oldest);
                        wake(&mut group.waker);
                    }
                }
            }
            SubscriptionEvent::GroupEnd { seq, state } => {
                if let Some(group) = sub.groups.get_mut(&seq) {
                    group.end = Some(state);
                    wake(&mut group.waker);
                }
            }
            SubscriptionEvent::Dropped { .. } => {}
            SubscriptionEvent::Closed { error } => {
                sub.closed = Some(match error {
                    None => SubscriptionEnd::Finished,
                    Some(code) => SubscriptionEnd::Failed(code),
                });
                wake_sub(sub);
            }
        }
    }
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(w) = waker.take() {
        w.wake();
    }
}

fn wake_sub(sub: &mut SubSlot) {
    wake(&mut sub.waker);
    for group in sub.groups.values_mut() {
        wake(&mut group.waker);
    }
}
