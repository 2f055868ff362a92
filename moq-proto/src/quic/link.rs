//! In-process links: a MOQ session between two endpoints of one process (one per thread of a
//! multi-threaded relay), carried as messages instead of packets.
//!
//! Each end is a connection of its endpoint with a session attached to the node, like a
//! cluster link over QUIC: announcements, subscriptions and routing are MOQ's own. What
//! differs is the transport: a [`LinkMessage`] holds the session's own [`Bytes`], so a frame
//! crosses to another thread as a reference count, never a copy, with no encryption and no
//! congestion control. Messages are reliable and in order; the caller moves what
//! [`Endpoint::poll_link_message`] returns to the other end's
//! [`Endpoint::handle_link_message`] (both ends may live on different threads). Streams are
//! granted at once; backpressure is the bytes sent and not yet handed to the other end's
//! session, reported to the sending session as its send backlog (so shedding by backlog
//! works across threads as it does on a congested QUIC connection).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use quinn_proto::ConnectionHandle;

use super::Endpoint;
use crate::codes::{SessionCode, StreamCode};
use crate::origin::PeerId;
use crate::session::{Command, Dir, Side, StreamId};
use crate::wire::{Path, Version};

/// The first link handle: between quinn-proto's slab indices and the WebSocket range.
const LINK_HANDLE_BASE: usize = 1 << (usize::BITS - 3);

/// Whether `handle` names an in-process link.
pub(super) fn is_link(handle: ConnectionHandle) -> bool {
    (LINK_HANDLE_BASE..LINK_HANDLE_BASE << 1).contains(&handle.0)
}

/// One message from one end of an in-process link to the other: a MOQ session between two
/// endpoints of one process (threads of one relay, see [`Endpoint::open_link`]).
///
/// Payloads are the sending session's own [`Bytes`], so a frame crosses threads as a reference
/// count, never copied or encrypted. Messages are reliable and in order, streams are granted
/// at once, and the sender's backlog is what the other end has not yet reported
/// [`LinkMessage::Consumed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkMessage {
    /// The sender opened a stream.
    Opened {
        /// The stream (numbered as QUIC numbers them: the low bits say who opened it and
        /// its direction).
        id: StreamId,
        /// Its direction.
        dir: Dir,
    },
    /// Bytes on a stream, then the end of its send side when `fin`.
    Data {
        /// The stream.
        id: StreamId,
        /// The bytes (the sender's own buffer).
        data: Bytes,
        /// Nothing follows.
        fin: bool,
    },
    /// The sender aborted its send side of a stream.
    Reset {
        /// The stream.
        id: StreamId,
        /// Why.
        code: StreamCode,
    },
    /// The sender no longer reads a stream: stop sending on it.
    Stop {
        /// The stream.
        id: StreamId,
        /// Why.
        code: StreamCode,
    },
    /// An unreliable datagram (delivered, as nothing is lost in-process).
    Datagram(Bytes),
    /// The receiver handed this many more bytes of [`LinkMessage::Data`] to its session.
    Consumed(usize),
    /// The sender's session closed.
    Close {
        /// The session code.
        code: SessionCode,
        /// Why, for people.
        reason: String,
    },
}

/// One end of a link.
pub(super) struct LinkConn {
    side: Side,
    pub(super) peer: Option<PeerId>,
    pub(super) version: Version,
    /// Streams opened so far, per direction (bidirectional, unidirectional).
    opened: [u64; 2],
    outbox: VecDeque<LinkMessage>,
    /// Bytes received and not yet reported with [`LinkMessage::Consumed`].
    consumed: usize,
    /// Bytes sent and not yet reported consumed by the other end.
    in_flight: usize,
    /// The backlog last reported to the session.
    reported: usize,
    /// Our session closed or the other end went away: nothing more is taken in.
    lost: bool,
    /// Listed in the endpoint's wake queue.
    listed: bool,
}

impl LinkConn {
    fn next_stream(&mut self, dir: Dir) -> StreamId {
        let (index, kind) = match dir {
            Dir::Bi => (0, 0),
            Dir::Uni => (1, 2),
        };
        let initiator = match self.side {
            Side::Client => 0,
            Side::Server => 1,
        };
        let n = self.opened[index];
        self.opened[index] += 1;
        StreamId(n << 2 | kind | initiator)
    }

    fn send(&mut self, message: LinkMessage) {
        if let LinkMessage::Data { data, .. } = &message {
            self.in_flight += data.len();
        }
        self.outbox.push_back(message);
    }
}

impl Endpoint {
    /// Open one end of an in-process link as `side` (one end of each link is the client,
    /// the other the server) speaking `version`, its session rooted at `/` with no
    /// authorization (both ends are this process). Carry what [`Endpoint::poll_link_message`]
    /// returns to the other end's [`Endpoint::handle_link_message`] (see [`LinkMessage`]).
    pub fn open_link(&mut self, now: Instant, side: Side, version: Version) -> ConnectionHandle {
        let handle = ConnectionHandle(LINK_HANDLE_BASE + self.next_link);
        self.next_link += 1;
        self.links.insert(
            handle,
            LinkConn {
                side,
                peer: None,
                version,
                opened: [0; 2],
                outbox: VecDeque::new(),
                consumed: 0,
                in_flight: 0,
                reported: 0,
                lost: false,
                listed: false,
            },
        );
        let mut config = self.cfg.session.clone();
        config.version = version;
        config.side = side;
        // The root is given here, as over WebTransport: SETUP carries no path.
        config.setup_path = None;
        let peer = self.node.add_session(now, config, Some(Path::root()));
        self.node.set_internal(peer);
        if let Some(link) = self.links.get_mut(&handle) {
            link.peer = Some(peer);
        }
        self.by_peer.insert(peer, handle);
        self.flush(now);
        handle
    }

    /// The next message for the other end of `link`, if any.
    pub fn poll_link_message(
        &mut self,
        now: Instant,
        link: ConnectionHandle,
    ) -> Option<LinkMessage> {
        self.flush(now);
        let conn = self.links.get_mut(&link)?;
        if conn.consumed > 0 {
            return Some(LinkMessage::Consumed(std::mem::take(&mut conn.consumed)));
        }
        let message = conn.outbox.pop_front();
        if message.is_none() && conn.lost {
            self.reap_link(now, link);
        }
        message
    }

    /// A message from the other end of `link`.
    pub fn handle_link_message(
        &mut self,
        now: Instant,
        link: ConnectionHandle,
        message: LinkMessage,
    ) {
        let Some(conn) = self.links.get_mut(&link) else {
            return;
        };
        let Some(peer) = conn.peer.filter(|_| !conn.lost) else {
            return;
        };
        match message {
            LinkMessage::Opened { id, dir } => {
                self.node
                    .input(now, peer, |s, now| s.handle_stream_opened(now, id, dir));
            }
            LinkMessage::Data { id, data, fin } => {
                conn.consumed += data.len();
                self.node
                    .input(now, peer, |s, now| s.handle_stream_data(now, id, data, fin));
            }
            LinkMessage::Reset { id, code } => {
                self.node
                    .input(now, peer, |s, now| s.handle_stream_reset(now, id, code));
            }
            LinkMessage::Stop { id, code } => {
                self.node
                    .input(now, peer, |s, now| s.handle_stop_sending(now, id, code));
            }
            LinkMessage::Datagram(data) => {
                self.node
                    .input(now, peer, |s, now| s.handle_datagram(now, data));
            }
            LinkMessage::Consumed(bytes) => {
                conn.in_flight = conn.in_flight.saturating_sub(bytes);
                self.report_link_backlog(link);
            }
            LinkMessage::Close { code, reason } => self.link_lost(now, link, code, &reason),
        }
        self.list_link(link);
        self.flush(now);
    }

    /// The other end of `link` is gone without a word (its thread ended).
    pub fn handle_link_lost(&mut self, now: Instant, link: ConnectionHandle, reason: &str) {
        self.link_lost(now, link, SessionCode::INTERNAL, reason);
        self.flush(now);
    }

    /// A link with messages to carry (each listed once until asked).
    pub fn poll_link_wake(&mut self) -> Option<ConnectionHandle> {
        while let Some(handle) = self.link_wake.pop_front() {
            if let Some(conn) = self.links.get_mut(&handle) {
                conn.listed = false;
                return Some(handle);
            }
        }
        None
    }

    /// Whether a link has messages waiting for [`Endpoint::poll_link_message`].
    pub fn wants_link_transmit(&self) -> bool {
        !self.link_wake.is_empty()
    }

    /// A session command for a link.
    pub(super) fn link_command(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        command: Command,
    ) {
        let Some(conn) = self.links.get_mut(&handle) else {
            return;
        };
        if conn.lost {
            return;
        }
        match command {
            Command::Open { token, dir, .. } => {
                let id = conn.next_stream(dir);
                conn.send(LinkMessage::Opened { id, dir });
                if let Some(peer) = conn.peer {
                    self.node
                        .input(now, peer, |s, now| s.handle_open_granted(now, token, id));
                }
            }
            // Opens are granted at once: none is ever waiting.
            Command::CancelOpen { .. } => {}
            Command::Write { stream, data } => conn.send(LinkMessage::Data {
                id: stream,
                data,
                fin: false,
            }),
            Command::Finish { stream } => {
                conn.send(LinkMessage::Data {
                    id: stream,
                    data: Bytes::new(),
                    fin: true,
                });
                // Delivery in-process cannot fail: the stream is done for the sender.
                if let Some(peer) = conn.peer {
                    self.node
                        .input(now, peer, |s, now| s.handle_stream_finished(now, stream));
                }
            }
            Command::Reset { stream, code } => conn.send(LinkMessage::Reset { id: stream, code }),
            Command::Stop { stream, code } => conn.send(LinkMessage::Stop { id: stream, code }),
            // Nothing is queued below the session: every message leaves at once.
            Command::SetPriority { .. } => {}
            Command::SendDatagram { data } => conn.send(LinkMessage::Datagram(data)),
            Command::Close { code, reason } => {
                conn.send(LinkMessage::Close {
                    code,
                    reason: reason.clone(),
                });
                self.link_lost(now, handle, code, &reason);
            }
        }
        self.report_link_backlog(handle);
        self.list_link(handle);
    }

    fn list_link(&mut self, handle: ConnectionHandle) {
        if let Some(conn) = self.links.get_mut(&handle)
            && !conn.listed
            && (!conn.outbox.is_empty() || conn.consumed > 0 || conn.lost)
        {
            conn.listed = true;
            self.link_wake.push_back(handle);
        }
    }

    fn report_link_backlog(&mut self, handle: ConnectionHandle) {
        let Some(conn) = self.links.get_mut(&handle) else {
            return;
        };
        if conn.in_flight == conn.reported {
            return;
        }
        self.link_backlog = self.link_backlog + conn.in_flight - conn.reported;
        conn.reported = conn.in_flight;
        if let Some(peer) = conn.peer {
            self.node.set_send_backlog(peer, conn.in_flight);
        }
    }

    /// Tell the session, once, that the link ended; the link is forgotten once its last
    /// messages (our close) were taken.
    fn link_lost(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        code: SessionCode,
        reason: &str,
    ) {
        let Some(conn) = self.links.get_mut(&handle) else {
            return;
        };
        if conn.lost {
            return;
        }
        conn.lost = true;
        if let Some(peer) = conn.peer {
            self.node.input(now, peer, |s, now| {
                s.handle_connection_lost(now, code, reason)
            });
        }
        self.list_link(handle);
    }

    fn reap_link(&mut self, now: Instant, handle: ConnectionHandle) {
        let Some(conn) = self.links.remove(&handle) else {
            return;
        };
        self.link_backlog -= conn.reported;
        if let Some(peer) = conn.peer {
            self.by_peer.remove(&peer);
            self.node.remove_peer(now, peer);
        }
    }

    /// Whether `link` is still known (it is forgotten once closed and its last message was
    /// taken).
    pub fn has_link(&self, link: ConnectionHandle) -> bool {
        self.links.contains_key(&link)
    }

    /// The in-process links still open.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{NodeConfig, NodeEvent, SubscriptionEvent};
    use crate::quic::{EngineConfig, EngineEvent};
    use crate::session::SubscribeParams;
    use crate::wire::TrackInfo;

    fn engine(hop_id: u64) -> Endpoint {
        Endpoint::new(EngineConfig::new(NodeConfig {
            hop_id,
            ..NodeConfig::default()
        }))
        .expect("engine")
    }

    /// Carry messages both ways until neither end has any; returns how many moved.
    fn pump(
        now: Instant,
        a: &mut Endpoint,
        la: ConnectionHandle,
        b: &mut Endpoint,
        lb: ConnectionHandle,
    ) -> usize {
        let mut moved = 0;
        loop {
            let mut quiet = true;
            while let Some(m) = a.poll_link_message(now, la) {
                b.handle_link_message(now, lb, m);
                moved += 1;
                quiet = false;
            }
            while let Some(m) = b.poll_link_message(now, lb) {
                a.handle_link_message(now, la, m);
                moved += 1;
                quiet = false;
            }
            if quiet {
                return moved;
            }
        }
    }

    fn frames(engine: &mut Endpoint) -> Vec<(u64, Bytes)> {
        let mut out = Vec::new();
        while let Some(event) = engine.poll_event() {
            if let EngineEvent::Node(NodeEvent::Subscription {
                event: SubscriptionEvent::Frame { seq, payload, .. },
                ..
            }) = event
            {
                out.push((seq, payload));
            }
        }
        out
    }

    fn linked(
        version: Version,
    ) -> (
        Instant,
        Endpoint,
        ConnectionHandle,
        Endpoint,
        ConnectionHandle,
    ) {
        let now = Instant::now();
        let (mut a, mut b) = (engine(1), engine(2));
        let la = a.open_link(now, Side::Client, version);
        let lb = b.open_link(now, Side::Server, version);
        pump(now, &mut a, la, &mut b, lb);
        (now, a, la, b, lb)
    }

    #[test]
    fn frames_cross_a_link_without_a_copy_in_every_version() {
        for version in [Version::Lite03, Version::Lite04, Version::Lite05] {
            let (now, mut a, la, mut b, lb) = linked(version);
            let path = Path::new("live").expect("path");
            let broadcast = a.node().publish(now, &path).expect("publish");
            let track = a
                .node()
                .create_track(broadcast, "video", TrackInfo::default())
                .expect("track");
            pump(now, &mut a, la, &mut b, lb);
            b.node()
                .subscribe(now, &path, "video", SubscribeParams::default());
            pump(now, &mut a, la, &mut b, lb);
            let mut sent = Vec::new();
            for g in 0..3u64 {
                let seq = a.node().append_group(now, track).expect("group");
                for f in 0..4u64 {
                    let payload = Bytes::from(vec![(g * 4 + f) as u8; 1000]);
                    a.node()
                        .write_frame(now, track, seq, f, payload.clone())
                        .expect("frame");
                    sent.push((seq, payload));
                }
            }
            a.apply_commands(now);
            assert!(
                a.buffered_bytes() > 12_000,
                "{version}: sent bytes wait for the other end"
            );
            pump(now, &mut a, la, &mut b, lb);
            assert_eq!(
                a.buffered_bytes(),
                0,
                "{version}: consumed bytes are acknowledged"
            );
            let got = frames(&mut b);
            assert_eq!(got, sent, "{version}");
            for ((_, got), (_, sent)) in got.iter().zip(&sent) {
                assert_eq!(
                    got.as_ptr(),
                    sent.as_ptr(),
                    "{version}: the payload is the publisher's buffer"
                );
            }
        }
    }

    #[test]
    fn a_lost_link_ends_what_crossed_it_and_is_forgotten() {
        let (now, mut a, la, mut b, lb) = linked(Version::Lite05);
        let path = Path::new("live").expect("path");
        let broadcast = a.node().publish(now, &path).expect("publish");
        a.node()
            .create_track(broadcast, "video", TrackInfo::default())
            .expect("track");
        pump(now, &mut a, la, &mut b, lb);
        let sub = b
            .node()
            .subscribe(now, &path, "video", SubscribeParams::default());
        pump(now, &mut a, la, &mut b, lb);
        while b.poll_event().is_some() {}
        b.handle_link_lost(now, lb, "thread ended");
        while b.poll_link_message(now, lb).is_some() {}
        assert_eq!(b.link_count(), 0);
        let mut ended = false;
        while let Some(event) = b.poll_event() {
            if let EngineEvent::Node(NodeEvent::Subscription {
                id,
                event: SubscriptionEvent::Closed { .. },
            }) = event
            {
                ended |= id == sub;
            }
        }
        assert!(ended, "the subscription through the lost link ends");
        // A close from our side reaches the other end, which forgets its link too.
        a.close(now, SessionCode::NO_ERROR, "bye");
        let close = std::iter::from_fn(|| a.poll_link_message(now, la)).last();
        assert!(
            matches!(close, Some(LinkMessage::Close { .. })),
            "{close:?}"
        );
        assert_eq!(a.link_count(), 0);
    }
}
