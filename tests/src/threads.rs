//! Scenarios for a relay on several threads (endpoints sharing one UDP port, joined with
//! `join_threads`), run by both runtimes: every subscriber gets every frame whichever thread
//! it and the publisher landed on, and a client whose address changes (so that the kernel
//! may pick another thread's socket) keeps its connection.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use moq_proto::codes::SessionCode;
use moq_proto::driver::{DriverConfig, Endpoint, Runtime, Session, Subscription, TrackPublisher};
use moq_proto::node::NodeConfig;
use moq_proto::quic::{Certificate, EngineConfig, Verification};
use moq_proto::wire::{TrackInfo, Version};

/// How often a blocked forwarder thread looks whether it should stop (shutdown only).
const STOP_POLL: Duration = Duration::from_millis(50);
/// Most clients connected while looking for one on every thread.
const MAX_CLIENTS: usize = 64;
/// Most address changes while waiting for a datagram to reach another thread's socket.
const MAX_REBINDS: usize = 64;

/// A relay configuration with a fresh certificate, and a client configuration pinning it.
pub fn configs() -> (EngineConfig, EngineConfig) {
    let cert =
        Certificate::generate(&["localhost".into()], SystemTime::now()).expect("certificate");
    let mut client = EngineConfig::new(NodeConfig::default());
    client.verification = Verification::PinnedSha256(vec![cert.sha256()]);
    let mut relay = EngineConfig::new(NodeConfig {
        hop_id: 1000,
        ..NodeConfig::default()
    });
    relay.certificate = Some(cert);
    (relay, client)
}

/// Report, per accepted session, the index of the relay thread that accepted it.
fn watch_accepts(runtime: &Arc<dyn Runtime>, relay: &[Endpoint]) -> mpsc::Receiver<usize> {
    let (tx, rx) = mpsc::channel();
    for (index, endpoint) in relay.iter().enumerate() {
        let (endpoint, tx) = (endpoint.clone(), tx.clone());
        runtime.spawn(Box::pin(async move {
            // Sessions live as long as the relay.
            let mut sessions = Vec::new();
            while let Some(session) = endpoint.accept().await {
                sessions.push(session);
                if tx.send(index).is_err() {
                    return;
                }
            }
        }));
    }
    rx
}

/// A client connected to the relay, and the thread that took it.
pub struct Client {
    /// Its endpoint.
    pub endpoint: Endpoint,
    /// Its session with the relay.
    pub session: Session,
    /// The relay thread its connection landed on.
    pub thread: usize,
}

/// Connect clients until every relay thread has at least one (the kernel spreads them by
/// address); at most [`MAX_CLIENTS`].
async fn clients_on_every_thread(
    runtime: &Arc<dyn Runtime>,
    relay: &[Endpoint],
    client_cfg: &EngineConfig,
    version: Version,
) -> Vec<Client> {
    let accepted = watch_accepts(runtime, relay);
    let url = format!("moqt://localhost:{}/", relay[0].local_addr().port());
    let mut clients: Vec<Client> = Vec::new();
    while (0..relay.len()).any(|t| !clients.iter().any(|c| c.thread == t)) {
        assert!(
            clients.len() < MAX_CLIENTS,
            "{MAX_CLIENTS} clients never reached every one of {} threads",
            relay.len()
        );
        let endpoint = Endpoint::bind(
            runtime.clone(),
            "127.0.0.1:0".parse().expect("addr"),
            client_cfg.clone(),
            DriverConfig::default(),
        )
        .expect("client");
        let session = endpoint
            .connect_versions(&url, &[version])
            .await
            .expect("connect");
        let thread = recv(&accepted).await;
        clients.push(Client {
            endpoint,
            session,
            thread,
        });
    }
    clients
}

/// Wait for the next value of a channel filled by tasks of the runtime, without blocking it.
async fn recv<T>(rx: &mpsc::Receiver<T>) -> T {
    loop {
        match rx.try_recv() {
            Ok(value) => return value,
            Err(mpsc::TryRecvError::Empty) => yield_now().await,
            Err(mpsc::TryRecvError::Disconnected) => panic!("the accept tasks ended"),
        }
    }
}

/// Let the runtime run other tasks once.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Publish `groups` groups of `frames` frames on `track`.
async fn publish(track: &TrackPublisher, first: u8, groups: u8, frames: u8) {
    for g in first..first + groups {
        let mut group = track.append_group().expect("group");
        for f in 0..frames {
            group
                .write_frame(Bytes::from(vec![g, f]))
                .await
                .expect("frame");
        }
        group.finish();
    }
}

/// Read `count` frames from a subscription, sorted by group (groups may arrive in any order).
async fn read(subscription: &mut Subscription, count: usize) -> Vec<Bytes> {
    let mut got = Vec::new();
    while got.len() < count {
        let mut group = subscription.next_group().await.expect("group");
        while let Some(frame) = group.read_frame().await {
            got.push((group.seq(), frame.payload));
        }
    }
    got.sort_by_key(|(seq, _)| *seq);
    got.into_iter().map(|(_, payload)| payload).collect()
}

/// Clients on every thread of `relay`; the first publishes, every client (the publisher's
/// own thread included) subscribes through the relay and gets the latest group, then all 4
/// groups of 10 frames that follow.
/// Returns how many clients took part.
pub async fn every_frame_on_every_thread(
    runtime: Arc<dyn Runtime>,
    relay: &[Endpoint],
    client_cfg: EngineConfig,
    version: Version,
) -> usize {
    let clients = clients_on_every_thread(&runtime, relay, &client_cfg, version).await;
    // Each thread links to every other one.
    for endpoint in relay {
        assert_eq!(endpoint.link_count(), relay.len() - 1);
    }
    let publisher = &clients[0];
    let broadcast = publisher.endpoint.publish("live").expect("publish");
    let track = broadcast
        .create_track("video", TrackInfo::default())
        .expect("track");
    // Group 0 first: a subscriber that has it is known to be wired through to the publisher
    // (on lite-03/04 "ready" may come from the relay before the publisher has the
    // subscription, and a subscription starts at the latest group).
    publish(&track, 0, 1, 10).await;
    let expected = |groups: std::ops::Range<u8>| -> Vec<Bytes> {
        groups
            .flat_map(|g| (0..10u8).map(move |f| Bytes::from(vec![g, f])))
            .collect()
    };
    let mut subscriptions = Vec::new();
    for client in &clients[1..] {
        let mut subscription = client
            .endpoint
            .subscribe("live", "video")
            .expect("subscribe");
        subscription.ready().await.expect("ready");
        let got = read(&mut subscription, 10).await;
        assert_eq!(
            got,
            expected(0..1),
            "{version}: the latest group on thread {}",
            client.thread
        );
        subscriptions.push(subscription);
    }
    publish(&track, 1, 4, 10).await;
    for (client, subscription) in clients[1..].iter().zip(&mut subscriptions) {
        let got = read(subscription, 40).await;
        assert_eq!(
            got,
            expected(1..5),
            "{version}: a subscriber on thread {} of the publisher on thread {}",
            client.thread,
            publisher.thread
        );
    }
    let count = clients.len();
    for client in clients {
        client.session.close(SessionCode(0), "done");
        client.endpoint.close(SessionCode(0), "done");
    }
    count
}

/// A subscriber behind a NAT that rebinds (a new source port each time) keeps its
/// connection and its subscription while its datagrams reach other threads' sockets: the
/// relay hands them to the thread that owns the connection. Returns the address changes it
/// took until the relay had handed datagrams over.
pub async fn rebinding_client_keeps_its_connection(
    runtime: Arc<dyn Runtime>,
    relay: &[Endpoint],
    client_cfg: EngineConfig,
) -> usize {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let relay_addr = SocketAddr::new([127, 0, 0, 1].into(), relay[0].local_addr().port());
    let nat = Rebinder::start(relay_addr);
    let bind = |cfg: &EngineConfig| {
        Endpoint::bind(
            runtime.clone(),
            loopback,
            cfg.clone(),
            DriverConfig::default(),
        )
        .expect("client")
    };
    let (publisher, subscriber) = (bind(&client_cfg), bind(&client_cfg));
    let _pub_session = publisher
        .connect(&format!("moqt://localhost:{}/", relay_addr.port()))
        .await
        .expect("publisher connects");
    let _sub_session = subscriber
        .connect(&format!("moqt://localhost:{}/", nat.addr().port()))
        .await
        .expect("subscriber connects through the NAT");
    let broadcast = publisher.publish("moving").expect("publish");
    let track = broadcast
        .create_track("video", TrackInfo::default())
        .expect("track");
    let mut subscription = subscriber.subscribe("moving", "video").expect("subscribe");
    subscription.ready().await.expect("ready");
    let handed = || relay.iter().map(Endpoint::handed_over).sum::<u64>();
    let mut rebinds = 0;
    let mut group = 0u8;
    // Change address until datagrams went to another thread's socket, then twice more.
    let mut after = 0;
    while after < 2 {
        assert!(
            rebinds < MAX_REBINDS,
            "{MAX_REBINDS} address changes and no datagram reached another thread's socket"
        );
        nat.rebind();
        rebinds += 1;
        publish(&track, group, 1, 3).await;
        let got = read(&mut subscription, 3).await;
        let expected: Vec<Bytes> = (0..3u8).map(|f| Bytes::from(vec![group, f])).collect();
        assert_eq!(
            got, expected,
            "group {group} after {rebinds} address changes"
        );
        group += 1;
        if handed() > 0 {
            after += 1;
        }
    }
    subscriber.close(SessionCode(0), "done");
    publisher.close(SessionCode(0), "done");
    rebinds
}

/// A NAT in user space: it listens on one loopback port for one client and forwards its
/// datagrams to `target` from an upstream socket, and the answers back; [`Rebinder::rebind`]
/// switches to a new upstream socket (a new source port, as when a NAT mapping changes).
/// Its threads stop when it is dropped.
pub struct Rebinder {
    listen: Arc<UdpSocket>,
    client: Arc<Mutex<Option<SocketAddr>>>,
    upstream: Arc<Mutex<Arc<UdpSocket>>>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Rebinder {
    /// Listen on a loopback port, forwarding to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listen = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("nat listen"));
        listen.set_read_timeout(Some(STOP_POLL)).expect("timeout");
        let upstream = Arc::new(Mutex::new(Self::upstream_socket()));
        let nat = Self {
            listen,
            client: Arc::new(Mutex::new(None)),
            upstream,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
        };
        let (listen, upstream, client, stop) = (
            nat.listen.clone(),
            nat.upstream.clone(),
            nat.client.clone(),
            nat.stop.clone(),
        );
        let forward = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = listen.recv_from(&mut buf) else {
                    continue;
                };
                *client.lock().expect("client") = Some(from);
                let socket = upstream.lock().expect("upstream").clone();
                let _ = socket.send_to(&buf[..n], target);
            }
        });
        nat.threads.lock().expect("threads").push(forward);
        let first = nat.upstream.lock().expect("upstream").clone();
        nat.answer_from(first);
        nat
    }

    fn upstream_socket() -> Arc<UdpSocket> {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("nat upstream");
        socket.set_read_timeout(Some(STOP_POLL)).expect("timeout");
        Arc::new(socket)
    }

    /// Pass what `socket` receives back to the client.
    fn answer_from(&self, socket: Arc<UdpSocket>) {
        let (listen, client, stop) = (self.listen.clone(), self.client.clone(), self.stop.clone());
        let answer = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                if let Some(to) = *client.lock().expect("client") {
                    let _ = listen.send_to(&buf[..n], to);
                }
            }
        });
        self.threads.lock().expect("threads").push(answer);
    }

    /// Where the client should send.
    pub fn addr(&self) -> SocketAddr {
        self.listen.local_addr().expect("addr")
    }

    /// Forward from a new source port from now on (the old one still passes answers back).
    pub fn rebind(&self) {
        let socket = Self::upstream_socket();
        *self.upstream.lock().expect("upstream") = socket.clone();
        self.answer_from(socket);
    }
}

impl Drop for Rebinder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.lock().expect("threads").drain(..) {
            let _ = thread.join();
        }
    }
}

/// Close every endpoint of a relay.
pub fn close(relay: &[Endpoint]) {
    for endpoint in relay {
        endpoint.close(SessionCode(0), "done");
    }
}
