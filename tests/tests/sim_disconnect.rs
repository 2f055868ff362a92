//! Connection loss mid-stream, on every version: both sides report it and release every
//! piece of state.
//!
//! - The path goes dark (100 % loss both ways) while groups are flowing: both idle timeouts
//!   fire, both engines report `Disconnected` and the node `SessionClosed`, the subscription
//!   ends with an error, and after the application unpublishes, both nodes are idle and both
//!   engines hold no connection.
//! - The publisher closes explicitly: the subscriber learns the close code and reason, and
//!   both engines forget the connection once it has drained.
//! - A quiet session (nothing to send for a minute) against a peer with a short idle timeout
//!   and no keep-alives of its own stays up on the default keep-alive.

mod sim_support;

use std::time::Duration;

use moq_proto::codes::SessionCode;
use moq_proto::node::{NodeEvent, SubscriptionEvent};
use moq_proto::quic::{EngineConfig, EngineEvent};
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{Path, TrackInfo, Version};
use moq_tests::netsim::LinkConfig;
use sim_support::{Link, World, client_config, ms, server_config};

const IDLE: Duration = Duration::from_secs(3);

fn short_idle(mut cfg: EngineConfig) -> EngineConfig {
    cfg.idle_timeout = IDLE;
    cfg.keep_alive = Some(Duration::from_secs(1));
    cfg
}

/// A subscriber (client) receiving groups from a publisher (server), mid-stream.
fn streaming(
    seed: u64,
    version: Version,
) -> (
    World,
    usize,
    usize,
    Link,
    moq_proto::origin::TrackId,
    moq_proto::node::LocalSubId,
) {
    let mut w = World::new(seed, LinkConfig::latency(ms(20)));
    let publisher = w.add(short_idle(server_config(seed, &Version::ALL)));
    let subscriber = w.add(short_idle(client_config(seed, &[version])));
    let track = w.publish(publisher, "live", "video", TrackInfo::default());
    let link = w.connect(subscriber, publisher);
    let sub = w.subscribe(subscriber, "live", "video", SubscribeParams::default());
    w.run_for(ms(300));
    for _ in 0..3 {
        w.publish_group(publisher, track, 3, 300);
        w.run_for(ms(100));
    }
    // A group left open, mid-stream.
    w.with(publisher, |e, now| {
        let seq = e.node().append_group(now, track).unwrap();
        e.node()
            .write_frame(now, track, seq, 0, bytes::Bytes::from_static(b"partial"))
            .unwrap();
    });
    w.run_for(ms(50));
    assert_eq!(w.frames(subscriber, sub).len(), 10, "{version}");
    (w, publisher, subscriber, link, track, sub)
}

fn disconnected(w: &World, host: usize, peer: moq_proto::origin::PeerId) -> Option<String> {
    w.log.iter().find_map(|s| match &s.event {
        EngineEvent::Disconnected {
            peer: Some(p),
            reason,
            ..
        } if s.host == host && *p == peer => Some(reason.clone()),
        _ => None,
    })
}

fn session_closed(
    w: &World,
    host: usize,
    peer: moq_proto::origin::PeerId,
) -> Option<(SessionCode, String, bool)> {
    w.log.iter().find_map(|s| match &s.event {
        EngineEvent::Node(NodeEvent::SessionClosed {
            peer: p,
            code,
            reason,
            local,
        }) if s.host == host && *p == peer => Some((*code, reason.clone(), *local)),
        _ => None,
    })
}

/// Unpublish on the publisher and check that nothing is left anywhere.
fn assert_released(w: &mut World, publisher: usize, subscriber: usize, version: Version) {
    w.with(publisher, |e, now| {
        let path = Path::new("live").unwrap();
        let b = e.node().origin().find(&path).unwrap();
        e.node().unpublish(now, b);
    });
    // Drain periods (3 PTO) and any leftover timers.
    w.run_for(Duration::from_secs(10));
    for host in [publisher, subscriber] {
        let e = w.engine(host);
        assert_eq!(e.connection_count(), 0, "{version}: host {host}");
        assert_eq!(e.node().peers().count(), 0, "{version}: host {host}");
        assert!(
            e.node().is_idle(),
            "{version}: host {host}: {}",
            e.node().state_summary()
        );
        assert_eq!(e.buffered_bytes(), 0, "{version}: host {host}");
    }
}

#[test]
fn path_loss_times_out_both_sides_and_releases_everything() {
    for (i, version) in Version::ALL.into_iter().enumerate() {
        let (mut w, publisher, subscriber, link, track, sub) = streaming(500 + i as u64, version);
        let cut = w.elapsed();
        w.sim.set_path(
            publisher,
            subscriber,
            LinkConfig {
                loss: 1.0,
                ..LinkConfig::latency(ms(20))
            },
        );
        // Keep publishing into the void for a while.
        for _ in 0..5 {
            w.publish_group(publisher, track, 2, 300);
            w.run_for(ms(200));
        }
        let deadline = cut + IDLE * 4;
        let both = w.run_until(deadline, |log| {
            let down = |host| {
                log.iter()
                    .any(|s| s.host == host && matches!(s.event, EngineEvent::Disconnected { .. }))
            };
            down(publisher) && down(subscriber)
        });
        assert!(both, "{version}: {:#?}", w.log);
        let at = w.elapsed() - cut;
        let sub_reason = disconnected(&w, subscriber, link.client_peer).unwrap();
        let pub_reason = disconnected(&w, publisher, link.server_peer).unwrap();
        assert!(sub_reason.contains("timed out"), "{version}: {sub_reason}");
        assert!(pub_reason.contains("timed out"), "{version}: {pub_reason}");
        assert!(
            at >= IDLE && at < IDLE * 2,
            "{version}: timed out after {at:?}"
        );
        assert!(session_closed(&w, subscriber, link.client_peer).is_some());
        assert!(session_closed(&w, publisher, link.server_peer).is_some());
        // The subscription ended with an error; nothing arrived after the cut.
        let events = w.sub_events(subscriber, sub);
        let closed: Vec<_> = events
            .iter()
            .filter_map(|(_, e)| match e {
                SubscriptionEvent::Closed { error } => Some(*error),
                _ => None,
            })
            .collect();
        assert_eq!(closed.len(), 1, "{version}: {events:#?}");
        assert!(
            closed[0].is_some(),
            "{version}: closed cleanly after a loss"
        );
        assert!(
            events
                .iter()
                .all(|(at, e)| *at <= cut || !matches!(e, SubscriptionEvent::Frame { .. })),
            "{version}"
        );
        println!(
            "{version}: both sides timed out {at:?} after the cut; subscription closed with {:?}",
            closed[0]
        );
        assert_released(&mut w, publisher, subscriber, version);
    }
}

#[test]
fn explicit_close_reaches_the_peer_and_releases_everything() {
    for (i, version) in Version::ALL.into_iter().enumerate() {
        let (mut w, publisher, subscriber, link, _track, sub) = streaming(510 + i as u64, version);
        w.with(publisher, |e, now| {
            e.close(now, SessionCode(0x42), "maintenance")
        });
        let deadline = w.elapsed() + Duration::from_secs(2);
        let heard = w.run_until(deadline, |log| {
            log.iter().any(|s| {
                s.host == subscriber && matches!(s.event, EngineEvent::Disconnected { .. })
            })
        });
        assert!(heard, "{version}");
        let reason = disconnected(&w, subscriber, link.client_peer).unwrap();
        assert!(reason.contains("maintenance"), "{version}: {reason}");
        let (code, _, local) = session_closed(&w, subscriber, link.client_peer).unwrap();
        assert_eq!((code, local), (SessionCode(0x42), false), "{version}");
        let (code, _, local) = session_closed(&w, publisher, link.server_peer).unwrap();
        assert_eq!((code, local), (SessionCode(0x42), true), "{version}");
        let closed = w
            .sub_events(subscriber, sub)
            .into_iter()
            .any(|(_, e)| matches!(e, SubscriptionEvent::Closed { error: Some(_) }));
        assert!(closed, "{version}");
        assert_released(&mut w, publisher, subscriber, version);
    }
}

/// A quiet session is not an idle one: a subscriber waiting 60 s for a track's next group,
/// connected to a server that never sends keep-alives and times out after 10 s of silence
/// (the reference relay's idle timeout), stays up on the client's default keep-alive, and
/// gets the group when it comes.
#[test]
fn quiet_sessions_outlive_the_peers_idle_timeout() {
    for version in Version::ALL {
        let seed = 41;
        let mut w = World::new(seed, LinkConfig::latency(ms(20)));
        let mut server = server_config(seed, &Version::ALL);
        server.idle_timeout = Duration::from_secs(10);
        server.keep_alive = None;
        let publisher = w.add(server);
        let subscriber = w.add(client_config(seed, &[version]));
        let track = w.publish(publisher, "quiet", "t", TrackInfo::default());
        w.connect(subscriber, publisher);
        let sub = w.subscribe(subscriber, "quiet", "t", SubscribeParams::default());
        w.run_for(ms(300));
        w.run_for(Duration::from_secs(60));
        w.publish_group(publisher, track, 2, 100);
        w.run_for(ms(200));
        assert_eq!(w.frames(subscriber, sub).len(), 2, "{version}");
        let dropped = w
            .log
            .iter()
            .any(|s| matches!(s.event, EngineEvent::Disconnected { .. }));
        assert!(!dropped, "{version}: a quiet session was dropped");
    }
}
