//! The driver task: socket I/O, timers and event dispatch for one endpoint.

use std::future::Future;
use std::io::IoSliceMut;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::collections::VecDeque;

use bytes::BytesMut;

use super::shared::{Shared, State};
use super::threads::Handoff;
use super::{AsyncTimer, AsyncUdpSocket, RecvMeta, Runtime, UdpTransmit};
use crate::quic::{EcnCodepoint, LinkMessage, Transmit, owner_of};

/// Largest UDP payload we read.
const MAX_UDP: usize = 64 * 1024;
/// Receive system calls per poll before yielding to other work.
const RECV_ROUNDS: usize = 16;
/// Datagrams (or GRO batches) per receive system call.
const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;
/// Size of a chunk of the receive arena.
const ARENA: usize = 64 * 1024;
/// Transmits per poll before yielding.
const SEND_ROUNDS: usize = 64;
/// Most datagrams in one GSO send. The batch must fit one UDP send (65 507 bytes) or the
/// kernel refuses all of it (EMSGSIZE): 40 x 1452 bytes (quinn-proto's MTU discovery
/// ceiling, which the engine keeps) is 58 080. Larger batches than quinn's 10 cut the relay's
/// CPU per byte at 16 KiB frames by about a sixth (fewer system calls and skbs per packet);
/// pacing still decides when packets may leave.
const MAX_GSO_SEGMENTS: usize = 40;

pub(super) struct Driver {
    shared: Arc<Shared>,
    socket: Arc<dyn AsyncUdpSocket>,
    timer: Pin<Box<dyn AsyncTimer>>,
    runtime: Arc<dyn Runtime>,
    /// Receive slots, one per datagram (or GRO batch) of a `recvmmsg` batch; reused.
    recv: Box<[u8]>,
    /// Where received datagrams are copied to be handed to quinn-proto.
    arena: BytesMut,
    send: Vec<u8>,
    /// A transmit the socket would not take yet (its bytes are in `send`).
    pending: Option<Transmit>,
    /// Datagrams of a receive batch that belong to other threads' connections; reused.
    foreign: Vec<Vec<Handoff>>,
    /// Datagrams other threads handed us; reused.
    handed: VecDeque<Handoff>,
    /// Link messages being carried; reused.
    link_in: VecDeque<LinkMessage>,
    link_out: Vec<LinkMessage>,
}

impl Driver {
    pub(super) fn new(
        shared: Arc<Shared>,
        socket: Arc<dyn AsyncUdpSocket>,
        runtime: Arc<dyn Runtime>,
    ) -> Self {
        let timer = runtime.new_timer(runtime.now());
        Self {
            shared,
            socket,
            timer,
            runtime,
            recv: vec![0; MAX_UDP * RECV_BATCH].into_boxed_slice(),
            arena: BytesMut::new(),
            send: Vec::with_capacity(MAX_UDP),
            pending: None,
            foreign: Vec::new(),
            handed: VecDeque::new(),
            link_in: VecDeque::new(),
            link_out: Vec::new(),
        }
    }

    /// Receive what the socket has, a batch of datagrams per system call; true if anything
    /// arrived.
    fn receive(&mut self, cx: &mut Context<'_>) -> bool {
        let mut got = false;
        for _ in 0..RECV_ROUNDS {
            let mut meta = [RecvMeta::default(); RECV_BATCH];
            let result = {
                let mut slots = self.recv.chunks_mut(MAX_UDP);
                let mut bufs: [IoSliceMut<'_>; RECV_BATCH] =
                    std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or(&mut [])));
                self.socket.poll_recv(cx, &mut bufs, &mut meta)
            };
            let n = match result {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(err)) => {
                    // ICMP errors and the like surface here; they are per-packet, keep going.
                    tracing::debug!(%err, "udp receive error");
                    continue;
                }
                Poll::Pending => break,
            };
            got |= n > 0;
            let now = self.runtime.now();
            let mut state = self.shared.lock();
            let threads = state.threads.as_ref().map(|m| (m.group.clone(), m.slot));
            for (slot, meta) in meta.iter().enumerate().take(n) {
                let start = slot * MAX_UDP;
                let data = &self.recv[start..start + meta.len.min(MAX_UDP)];
                let ecn = meta.ecn.and_then(|e| EcnCodepoint::from_bits(e as u8));
                // A GRO batch holds several datagrams of `stride` bytes.
                for datagram in data.chunks(meta.stride.max(1)) {
                    // Copy into a small arena: quinn-proto keeps slices of the datagram as
                    // stream payloads, and a 64 KiB arena chunk is all one slice can pin.
                    if self.arena.capacity() < datagram.len() {
                        self.arena = BytesMut::with_capacity(ARENA.max(datagram.len()));
                    }
                    self.arena.extend_from_slice(datagram);
                    let datagram = self.arena.split();
                    // A connection of another thread (its client's address changed, so the
                    // kernel picked another socket of the port): hand it over.
                    if let Some((_, slot)) = threads
                        && let Some(owner) = owner_of(&datagram, slot)
                        && owner != slot.index
                    {
                        self.foreign.resize_with(usize::from(slot.count), Vec::new);
                        self.foreign[usize::from(owner)].push(Handoff {
                            remote: meta.addr,
                            local_ip: meta.dst_ip,
                            ecn,
                            data: datagram,
                        });
                        continue;
                    }
                    state
                        .engine
                        .handle_datagram(now, meta.addr, meta.dst_ip, ecn, datagram);
                }
            }
            drop(state);
            if let Some((group, _)) = threads {
                for (owner, datagrams) in self.foreign.iter_mut().enumerate() {
                    if let Some(inbox) = group.inboxes.get(owner) {
                        inbox.push(datagrams);
                    }
                }
            }
        }
        got
    }

    /// Carry what crosses to and from the other threads of a joined group: datagrams handed
    /// to us, and link messages both ways. True if anything moved.
    fn between_threads(&mut self, cx: &mut Context<'_>) -> bool {
        let now = self.runtime.now();
        let mut guard = self.shared.lock();
        let State {
            engine,
            threads,
            links,
            handed_in,
            ..
        } = &mut *guard;
        let mut moved = false;
        if let Some(m) = threads {
            if let Some(inbox) = m.group.inboxes.get(usize::from(m.slot.index)) {
                inbox.take(cx.waker(), &mut self.handed);
            }
            for h in self.handed.drain(..) {
                engine.handle_datagram(now, h.remote, h.local_ip, h.ecn, h.data);
                *handed_in += 1;
                moved = true;
            }
        }
        for (&handle, end) in links.iter() {
            let gone = end.inbound.take(cx.waker(), &mut self.link_in);
            for message in self.link_in.drain(..) {
                engine.handle_link_message(now, handle, message);
                moved = true;
            }
            if gone {
                engine.handle_link_lost(now, handle, "the other thread's endpoint stopped");
            }
        }
        while let Some(handle) = engine.poll_link_wake() {
            while let Some(message) = engine.poll_link_message(now, handle) {
                self.link_out.push(message);
            }
            moved |= !self.link_out.is_empty();
            match links.get(&handle) {
                Some(end) => end.out.push(&mut self.link_out),
                None => self.link_out.clear(),
            }
        }
        links.retain(|&handle, end| {
            let open = engine.has_link(handle);
            if !open {
                end.out.close();
            }
            open
        });
        moved
    }

    /// Send what the engine has; true if anything went out.
    fn transmit(&mut self, cx: &mut Context<'_>) -> bool {
        let mut sent = false;
        for _ in 0..SEND_ROUNDS {
            if self.pending.is_none() {
                let now = self.runtime.now();
                let mut state = self.shared.lock();
                // A GSO batch must fit one 64 KiB UDP send (see `MAX_GSO_SEGMENTS`).
                let segments = self
                    .socket
                    .max_transmit_segments()
                    .clamp(1, MAX_GSO_SEGMENTS);
                state.engine.set_max_gso_segments(segments);
                match state.engine.poll_transmit(now, &mut self.send) {
                    Some(t) => self.pending = Some(t),
                    None => {
                        // Register before the lock is released: a handle that queues data
                        // from now on must wake us, or it would wait for the next timer (a
                        // CONNECTION_CLOSE could then be lost to the drain timeout).
                        state.register_driver(cx.waker());
                        return sent;
                    }
                }
            }
            let Some(t) = &self.pending else {
                return sent;
            };
            let transmit = UdpTransmit {
                destination: t.destination,
                ecn: t
                    .ecn
                    .and_then(|e| quinn_udp::EcnCodepoint::from_bits(e as u8)),
                contents: &self.send[..t.size],
                segment_size: t.segment_size,
                src_ip: t.src_ip,
            };
            match self.socket.poll_send(cx, &transmit) {
                Poll::Ready(result) => {
                    if let Err(err) = result {
                        // A lost datagram is recovered by QUIC; log and move on.
                        tracing::debug!(%err, "udp send error");
                    }
                    self.pending = None;
                    sent = true;
                }
                Poll::Pending => return sent,
            }
        }
        // More to send: come back soon without starving the runtime.
        cx.waker().wake_by_ref();
        sent
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            let received = this.receive(cx);
            let crossed = this.between_threads(cx);
            let sent = this.transmit(cx);
            let mut state = this.shared.lock();
            state.register_driver(cx.waker());
            while let Some(event) = state.engine.poll_event() {
                state.dispatch(event);
            }
            state.wake_writers();
            state.wake_websockets();
            for waker in state.idle_waiters.drain(..) {
                waker.wake();
            }
            let now = this.runtime.now();
            let mut fired = false;
            let next = state.engine.poll_timeout();
            state.driver_deadline = next;
            match next {
                Some(deadline) if deadline <= now => {
                    state.engine.handle_timeout(now);
                    fired = true;
                }
                Some(deadline) => {
                    this.timer.as_mut().reset(deadline);
                    if this.timer.as_mut().poll(cx).is_ready() {
                        state.engine.handle_timeout(this.runtime.now());
                        fired = true;
                    }
                }
                None => {}
            }
            if state.closed && state.engine.connection_count() == 0 {
                state.wake_all();
                return Poll::Ready(());
            }
            let more_to_cross = state.engine.wants_link_transmit();
            drop(state);
            if !(received || crossed || sent || fired || more_to_cross) {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Driver {
    /// The other threads learn that our ends of the links are gone.
    fn drop(&mut self) {
        for end in self.shared.lock().links.values() {
            end.out.close();
        }
    }
}
