//! Host-name resolution never blocks the executor: on a current-thread runtime, a connect to a
//! name whose lookup hangs leaves an established session delivering frame after frame, and
//! the connect fails with a typed error once the lookup does.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use moq_proto::driver::{
    AsyncTcpListener, AsyncTimer, AsyncUdpSocket, Connecting, Resolving, Runtime,
};
use moq_tokio::{
    Certificate, ConnectError, DriverConfig, Endpoint, EngineConfig, NodeConfig, TokioRuntime,
    TrackInfo, Verification,
};
use tokio::sync::oneshot;

/// Tokio, except that name lookups wait until the test releases them (and then fail).
#[derive(Debug, Default)]
struct HangingResolver {
    started: AtomicUsize,
    release: Mutex<Vec<oneshot::Sender<()>>>,
}

impl Runtime for HangingResolver {
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        TokioRuntime.new_timer(deadline)
    }

    fn spawn(&self, future: Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
        TokioRuntime.spawn(future)
    }

    fn bind_udp(&self, addr: SocketAddr) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        TokioRuntime.bind_udp(addr)
    }

    fn bind_tcp(&self, addr: SocketAddr) -> std::io::Result<Box<dyn AsyncTcpListener>> {
        TokioRuntime.bind_tcp(addr)
    }

    fn connect_tcp(&self, addr: SocketAddr) -> Connecting {
        TokioRuntime.connect_tcp(addr)
    }

    fn resolve(&self, host: String, _port: u16) -> Resolving {
        self.started.fetch_add(1, Ordering::SeqCst);
        let (release, released) = oneshot::channel();
        self.release
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(release);
        Box::pin(async move {
            let _ = released.await;
            Err(std::io::Error::other(format!("{host}: lookup released")))
        })
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_hanging_lookup_does_not_stall_an_established_session() {
    let cert = Certificate::generate(&["localhost".into()], SystemTime::now()).expect("cert");
    let hash = cert.sha256();
    let mut server_cfg = EngineConfig::new(NodeConfig::default());
    server_cfg.certificate = Some(cert);
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let server = Endpoint::bind(
        Arc::new(TokioRuntime),
        loopback,
        server_cfg,
        DriverConfig::default(),
    )
    .expect("server");
    let runtime = Arc::new(HangingResolver::default());
    let mut client_cfg = EngineConfig::new(NodeConfig::default());
    client_cfg.verification = Verification::PinnedSha256(vec![hash]);
    let client = Endpoint::bind(
        runtime.clone(),
        loopback,
        client_cfg,
        DriverConfig::default(),
    )
    .expect("client");

    // An IP literal needs no lookup.
    let url = format!("moqt://127.0.0.1:{}/", server.local_addr().port());
    let _session = client.connect(&url).await.expect("connect");
    assert_eq!(runtime.started.load(Ordering::SeqCst), 0);
    let broadcast = server.publish("demo").expect("publish");
    let track = broadcast
        .create_track("ticks", TrackInfo::default())
        .expect("track");
    let mut subscription = client.subscribe("demo", "ticks").expect("subscribe");
    subscription.ready().await.expect("ready");

    // A second connect, to a name: its lookup hangs on this same thread's runtime.
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.connect("moqt://relay.example.test:4443/").await }
    });
    tokio::task::yield_now().await;
    assert_eq!(runtime.started.load(Ordering::SeqCst), 1, "lookup started");

    // Meanwhile the established session keeps delivering, one group after the other.
    for i in 0..20u32 {
        let mut group = track.append_group().expect("group");
        group
            .write_frame(Bytes::from(i.to_string()))
            .await
            .expect("frame");
        group.finish();
        let mut received = subscription.next_group().await.expect("a group");
        let frame = received.read_frame().await.expect("a frame");
        assert_eq!(frame.payload, i.to_string());
    }
    assert!(!pending.is_finished(), "the lookup is still hanging");

    // Release the lookup: the connect fails with a typed resolution error.
    for release in runtime.release.lock().expect("lock").drain(..) {
        let _ = release.send(());
    }
    match pending.await.expect("task") {
        Err(ConnectError::Resolve { host, .. }) => assert_eq!(host, "relay.example.test"),
        other => panic!("expected a resolution error, got {other:?}"),
    }
}
