//! The persistent-session scenario both runtimes run: a client publishing through a relay on
//! 127.0.0.1 keeps its session across a relay restart and follows GOAWAY to another relay,
//! and a subscriber on the new relay receives what it publishes after each move. A second
//! client with a persistent session and a resuming subscription follows along, and goes on
//! when the publisher is replaced by a new one numbering its groups afresh; it never gets a
//! group twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use moq_proto::codes::SessionCode;
use moq_proto::driver::{Endpoint, ReconnectPolicy, ResumingSubscription, Runtime, TrackPublisher};
use moq_proto::node::NodeConfig;
use moq_proto::quic::{Certificate, EngineConfig, Verification};
use moq_proto::session::SubscribeParams;
use moq_proto::wire::TrackInfo;

fn relay(runtime: &Arc<dyn Runtime>, cert: &Certificate, addr: SocketAddr, hop: u64) -> Endpoint {
    let mut config = EngineConfig::new(NodeConfig {
        hop_id: hop,
        ..NodeConfig::default()
    });
    config.certificate = Some(cert.clone());
    Endpoint::bind(runtime.clone(), addr, config, Default::default()).expect("bind relay")
}

/// Bind a relay at `addr` once the previous one there let go of it (its driver task closes
/// the socket shortly after the endpoint closed).
async fn rebind(
    runtime: &Arc<dyn Runtime>,
    cert: &Certificate,
    addr: SocketAddr,
    hop: u64,
) -> Endpoint {
    for _ in 0..250 {
        let mut config = EngineConfig::new(NodeConfig {
            hop_id: hop,
            ..NodeConfig::default()
        });
        config.certificate = Some(cert.clone());
        if let Ok(endpoint) = Endpoint::bind(runtime.clone(), addr, config, Default::default()) {
            return endpoint;
        }
        let mut timer = runtime.new_timer(runtime.now() + std::time::Duration::from_millis(20));
        std::future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
    }
    panic!("{addr} stayed in use after its endpoint closed");
}

fn client(runtime: &Arc<dyn Runtime>, hash: [u8; 32], hop: u64) -> Endpoint {
    let mut config = EngineConfig::new(NodeConfig {
        hop_id: hop,
        ..NodeConfig::default()
    });
    config.verification = Verification::PinnedSha256(vec![hash]);
    Endpoint::bind(
        runtime.clone(),
        "127.0.0.1:0".parse().expect("addr"),
        config,
        Default::default(),
    )
    .expect("bind client")
}

/// A fresh subscriber on `relay` reads one group the publisher writes after it subscribed.
async fn delivered_through(
    runtime: &Arc<dyn Runtime>,
    hash: [u8; 32],
    relay: &Endpoint,
    track: &TrackPublisher,
    tag: u8,
) {
    let subscriber = client(runtime, hash, 900 + u64::from(tag));
    let url = format!("moqt://localhost:{}/", relay.local_addr().port());
    let _session = subscriber.connect(&url).await.expect("subscriber connects");
    let mut announced = subscriber.announced("persist").expect("announced");
    let (path, active) = announced
        .next()
        .await
        .expect("the broadcast is announced again");
    assert!(active, "{path}");
    let mut subscription = subscriber.subscribe("persist/b", "t").expect("subscribe");
    subscription.ready().await.expect("subscription ready");
    let mut group = track.append_group().expect("group");
    group
        .write_frame(Bytes::from(vec![tag; 8]))
        .await
        .expect("frame");
    group.finish();
    // The latest group from before may come first (the publisher still holds it).
    loop {
        let mut got = subscription.next_group().await.expect("a group");
        let frame = got.read_frame().await.expect("a frame");
        if frame.payload[..] == [tag; 8] {
            break;
        }
        assert!(frame.payload[0] < tag, "unexpected {:?}", frame.payload);
    }
    subscriber.close(SessionCode(0), "done");
    subscriber.closed().await;
}

/// The resuming subscription hands out groups until one carries `tag`; groups handed out
/// must go up, except once after a publisher change (`fresh`), when numbering restarts.
async fn followed(resuming: &mut ResumingSubscription, seen: &mut Vec<u64>, tag: u8, fresh: bool) {
    let mut restarted = false;
    loop {
        let mut group = resuming
            .next_group()
            .await
            .expect("the resuming subscription goes on");
        let seq = group.seq();
        if let Some(&last) = seen.last()
            && seq <= last
        {
            assert!(
                fresh && !restarted,
                "group {seq} handed out after {last}: {seen:?}"
            );
            restarted = true;
        }
        seen.push(seq);
        let frame = group.read_frame().await.expect("a frame");
        if frame.payload[..] == [tag; 8] {
            return;
        }
        assert!(
            frame.payload[0] < tag || fresh,
            "unexpected {:?}",
            frame.payload
        );
    }
}

/// Run the scenario on `runtime`.
pub async fn survives_restart_and_goaway(runtime: Arc<dyn Runtime>) {
    let cert = Certificate::generate(&["localhost".into()], SystemTime::now()).expect("cert");
    let hash = cert.sha256();
    let first = relay(&runtime, &cert, "127.0.0.1:0".parse().expect("addr"), 1);
    let addr = first.local_addr();
    let url = format!("moqt://localhost:{}/", addr.port());

    let publisher = client(&runtime, hash, 500);
    let mut policy = ReconnectPolicy::default();
    policy.first_backoff = std::time::Duration::from_millis(50);
    let link = publisher
        .connect_persistent(&url, policy)
        .await
        .expect("first connect");
    let broadcast = publisher.publish("persist/b").expect("publish");
    let track = broadcast
        .create_track("t", TrackInfo::default())
        .expect("track");
    let follower = client(&runtime, hash, 600);
    let follower_link = follower
        .connect_persistent(&url, policy)
        .await
        .expect("the follower connects");
    let mut resuming = follower
        .subscribe_resuming("persist/b", "t", SubscribeParams::default())
        .expect("subscribe");
    let mut seen = Vec::new();
    delivered_through(&runtime, hash, &first, &track, 1).await;
    followed(&mut resuming, &mut seen, 1, false).await;

    // The relay goes away (closing every session) and comes back at the same address.
    first.close(SessionCode(0), "restart");
    first.closed().await;
    drop(first);
    let restarted = rebind(&runtime, &cert, addr, 2).await;
    assert!(
        link.reconnected(1).await,
        "the link redialled the restarted relay"
    );
    assert!(link.is_up());
    assert!(follower_link.reconnected(1).await, "the follower redialled");
    delivered_through(&runtime, hash, &restarted, &track, 2).await;
    followed(&mut resuming, &mut seen, 2, false).await;

    // GOAWAY names another relay: the link moves there.
    let other = relay(&runtime, &cert, "127.0.0.1:0".parse().expect("addr"), 3);
    let other_url = format!("moqt://localhost:{}/", other.local_addr().port());
    restarted.goaway(&other_url);
    assert!(link.reconnected(2).await, "the link followed GOAWAY");
    assert_eq!(link.url(), other_url);
    assert!(
        follower_link.reconnected(2).await,
        "the follower followed GOAWAY"
    );
    delivered_through(&runtime, hash, &other, &track, 3).await;
    followed(&mut resuming, &mut seen, 3, false).await;

    // The publisher goes away without finishing its track, and a new one publishes the
    // same broadcast, numbering its groups from 0 again.
    link.close();
    publisher.close(SessionCode(0), "replaced");
    drop(track);
    drop(broadcast);
    let replacement = client(&runtime, hash, 501);
    let _session = replacement
        .connect(&other_url)
        .await
        .expect("the replacement connects");
    let broadcast = replacement.publish("persist/b").expect("publish again");
    let track = broadcast
        .create_track("t", TrackInfo::default())
        .expect("track");
    delivered_through(&runtime, hash, &other, &track, 4).await;
    followed(&mut resuming, &mut seen, 4, true).await;
    assert!(
        resuming.renewals() >= 3,
        "renewed {} times",
        resuming.renewals()
    );
    println!(
        "resuming subscription: groups {seen:?}, {} renewals",
        resuming.renewals()
    );

    drop(resuming);
    drop(track);
    drop(broadcast);
    follower_link.close();
    for endpoint in [&publisher, &replacement, &follower, &restarted, &other] {
        endpoint.close(SessionCode(0), "done");
    }
}
