//! A user-space UDP impairment forwarder, for kernels without `tc netem`: it listens on one
//! address and forwards every datagram to a target (a relay) and the answers back, holding
//! each one for a fixed delay plus a random jitter (so datagrams overtake each other: the
//! reordering), and dropping a fraction of them. Each client source address gets its own
//! upstream socket, so the target sees one peer per client.
//!
//! Every random choice comes from one seeded RNG; which datagram meets which choice still
//! depends on the threads' timing, so a seed fixes the impairment's statistics, not the run.
//! It runs on threads of the test process and stops (joins them) when dropped. Bind it only on
//! loopback or in a namespace the test created.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use moq_harness::testing::Rng;

/// How often a blocked receiver looks whether the forwarder is stopping (shutdown only: no
/// datagram waits on it).
const STOP_POLL: Duration = Duration::from_millis(50);

/// What the forwarder does to each datagram, in either direction.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Fixed one-way delay added to every datagram.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `-jitter..=jitter` per datagram (at most `delay`):
    /// datagrams sent closer together than twice this may arrive in the other order.
    pub jitter: Duration,
    /// Probability (0 to 1) that a datagram is dropped.
    pub loss: f64,
    /// Seed of the RNG behind the jitter and the drops.
    pub seed: u64,
}

/// What the forwarder did so far, both directions together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Datagrams passed on.
    pub forwarded: u64,
    /// Datagrams dropped.
    pub dropped: u64,
    /// Datagrams passed on after one that arrived later in the same direction of the same
    /// client (reordered).
    pub overtaken: u64,
}

/// A datagram waiting for its time.
struct Held {
    due: Instant,
    /// Arrival order over the whole forwarder (ties of `due`, and the reorder count).
    seq: u64,
    /// Client index times two, plus one for the direction towards the client.
    flow: usize,
    /// The socket it leaves by, and where to (`None`: the socket is connected).
    via: Arc<UdpSocket>,
    to: Option<SocketAddr>,
    bytes: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

struct Queue {
    held: BinaryHeap<Reverse<Held>>,
    rng: Rng,
    next_seq: u64,
    /// Per flow, the highest `seq` passed on.
    highest: HashMap<usize, u64>,
    stats: ImpairStats,
}

struct Shared {
    impairment: Impairment,
    stop: AtomicBool,
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drop `bytes` or hold it for its delay, then send it by `via` (to `to`).
    fn hold(&self, flow: usize, via: &Arc<UdpSocket>, to: Option<SocketAddr>, bytes: &[u8]) {
        let imp = self.impairment;
        let mut q = self.lock();
        if q.rng.chance(imp.loss) {
            q.stats.dropped += 1;
            return;
        }
        let jitter = imp.jitter.as_micros() as u64;
        let extra = Duration::from_micros(q.rng.below(2 * jitter + 1));
        let due = Instant::now() + imp.delay - imp.jitter + extra;
        let seq = q.next_seq;
        q.next_seq += 1;
        q.held.push(Reverse(Held {
            due,
            seq,
            flow,
            via: Arc::clone(via),
            to,
            bytes: bytes.to_vec(),
        }));
        self.changed.notify_all();
    }

    /// Send each held datagram when it is due, until stopped.
    fn send_loop(&self) {
        let mut q = self.lock();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let next_due = q.held.peek().map(|Reverse(h)| h.due);
            match next_due {
                Some(due) if due <= now => {
                    let Some(Reverse(h)) = q.held.pop() else {
                        continue;
                    };
                    let highest = q.highest.entry(h.flow).or_insert(0);
                    let overtaken = h.seq < *highest;
                    *highest = (*highest).max(h.seq);
                    q.stats.forwarded += 1;
                    q.stats.overtaken += u64::from(overtaken);
                    drop(q);
                    // A send error (the peer's socket is gone) is a lost datagram.
                    let _ = match h.to {
                        Some(to) => h.via.send_to(&h.bytes, to),
                        None => h.via.send(&h.bytes),
                    };
                    q = self.lock();
                }
                Some(due) => {
                    q = self
                        .changed
                        .wait_timeout(q, due - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => {
                    q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}

/// Receive datagrams on `socket` until stopped, handing each to `each(bytes, source)`.
fn receive_loop(shared: &Shared, socket: &UdpSocket, mut each: impl FnMut(&[u8], SocketAddr)) {
    let mut buf = vec![0u8; 65_536];
    while !shared.stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => each(&buf[..n], from),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // E.g. ECONNREFUSED on a connected socket after an ICMP error: keep going.
            Err(_) => {}
        }
    }
}

/// A running forwarder; dropping it stops it.
pub struct Impair {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Impair {
    /// Listen on `listen` (e.g. `127.0.0.1:0`) and forward to `target` through
    /// `impairment`; upstream sockets are bound on `listen`'s address.
    pub fn start(listen: SocketAddr, target: SocketAddr, impairment: Impairment) -> Self {
        assert!(
            impairment.jitter <= impairment.delay,
            "the jitter is at most the delay"
        );
        let socket = UdpSocket::bind(listen).expect("bind the forwarder's socket");
        socket
            .set_read_timeout(Some(STOP_POLL))
            .expect("set a read timeout");
        let addr = socket.local_addr().expect("the forwarder's address");
        let socket = Arc::new(socket);
        let shared = Arc::new(Shared {
            impairment,
            stop: AtomicBool::new(false),
            queue: Mutex::new(Queue {
                held: BinaryHeap::new(),
                rng: Rng::new(impairment.seed),
                next_seq: 0,
                highest: HashMap::new(),
                stats: ImpairStats::default(),
            }),
            changed: Condvar::new(),
        });
        let threads = Arc::new(Mutex::new(Vec::new()));
        let sender = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || shared.send_loop())
        };
        let listener = {
            let shared = Arc::clone(&shared);
            let threads = Arc::clone(&threads);
            thread::spawn(move || {
                // Per client source address: its upstream socket and flow number.
                let mut clients: HashMap<SocketAddr, (Arc<UdpSocket>, usize)> = HashMap::new();
                receive_loop(&shared, &socket, |bytes, from| {
                    let next_flow = clients.len() * 2;
                    let (upstream, flow) = clients.entry(from).or_insert_with(|| {
                        let upstream = upstream_socket(listen, target);
                        let back = Arc::clone(&upstream);
                        let (shared, socket) = (Arc::clone(&shared), Arc::clone(&socket));
                        let answers = thread::spawn(move || {
                            receive_loop(&shared, &back, |bytes, _| {
                                shared.hold(next_flow + 1, &socket, Some(from), bytes);
                            });
                        });
                        threads
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(answers);
                        (upstream, next_flow)
                    });
                    shared.hold(*flow, upstream, None, bytes);
                });
            })
        };
        threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend([sender, listener]);
        Self {
            addr,
            shared,
            threads,
        }
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it did so far.
    pub fn stats(&self) -> ImpairStats {
        self.shared.lock().stats
    }
}

/// A socket on `listen`'s address (any port) connected to `target`.
fn upstream_socket(listen: SocketAddr, target: SocketAddr) -> Arc<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(listen.ip(), 0)).expect("bind an upstream socket");
    socket.connect(target).expect("connect to the target");
    socket
        .set_read_timeout(Some(STOP_POLL))
        .expect("set a read timeout");
    Arc::new(socket)
}

impl Drop for Impair {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        {
            // Under the lock, so the sender is either waiting (and woken) or sees the flag.
            let _q = self.shared.lock();
            self.shared.changed.notify_all();
        }
        // The listener may add a thread until it has stopped: join it first.
        loop {
            let next = self.threads.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match next {
                Some(t) => {
                    let _ = t.join();
                }
                None => break,
            }
        }
    }
}
