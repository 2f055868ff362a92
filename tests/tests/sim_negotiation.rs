//! Version negotiation over ALPN, and stream credit exhaustion.
//!
//! - A client offering lite-05, -04 and -03 gets lite-05 from a server that prefers it; a
//!   server configured with lite-04 only agrees on lite-04; the server's preference order
//!   wins over the client's; with no common version the client reports `ConnectFailed` with
//!   a reason naming the ALPN failure, and no session starts on either side.
//! - The subscriber allows only 4 concurrent streams per direction, so the publisher runs out
//!   of uni-stream credit: groups queue for credit and still all arrive as credit returns;
//!   with a short max latency, groups that went stale while waiting are dropped without ever
//!   reaching the network (SUBSCRIBE_DROP with 0x34) while fresh ones keep flowing.

mod sim_support;

use std::collections::BTreeSet;
use std::time::Duration;

use moq_proto::codes::StreamCode;
use moq_proto::node::SubscriptionEvent;
use moq_proto::origin::GroupState;
use moq_proto::quic::{EngineEvent, Verification};
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{TrackInfo, Version};
use moq_tests::netsim::LinkConfig;
use sim_support::{Stamp, World, client_config, dev_certificate, ms, server_config};

use Version::{Lite03, Lite04, Lite05};

/// Connect a client offering `offer` to a server accepting `accept`; the agreed version, or
/// the client's failure reason and the server's events.
fn negotiate(seed: u64, offer: &[Version], accept: &[Version]) -> Result<Version, String> {
    let mut w = World::new(seed, LinkConfig::latency(ms(10)));
    // The generated ECDSA development certificate, as real servers use.
    let mut server_cfg = server_config(seed, accept);
    server_cfg.certificate = Some(dev_certificate());
    let mut client_cfg = client_config(seed, offer);
    client_cfg.verification = Verification::PinnedSha256(vec![dev_certificate().sha256()]);
    let server = w.add(server_cfg);
    let client = w.add(client_cfg);
    let addr = w.sim.hosts[server].addr;
    let conn = w.with(client, |e, now| {
        e.connect(now, addr, "localhost", "/").unwrap()
    });
    w.run_until(Duration::from_secs(10), |log| {
        log.iter().any(|s| {
            s.host == client
                && matches!(
                    s.event,
                    EngineEvent::Connected { .. } | EngineEvent::ConnectFailed { .. }
                )
        })
    });
    w.run_for(Duration::from_secs(1));
    let client_result = w.log.iter().find_map(|s| match &s.event {
        EngineEvent::Connected {
            version, conn: c, ..
        } if s.host == client && *c == conn => Some(Ok(*version)),
        EngineEvent::ConnectFailed { error, conn: c } if s.host == client && *c == conn => {
            Some(Err(error.to_string()))
        }
        _ => None,
    });
    let server_version = w.log.iter().find_map(|s| match &s.event {
        EngineEvent::Connected { version, .. } if s.host == server => Some(*version),
        _ => None,
    });
    match client_result.expect("the client reported nothing") {
        Ok(version) => {
            assert_eq!(server_version, Some(version), "both sides agree");
            assert_eq!(w.engine(client).version_of(conn), Some(version));
            Ok(version)
        }
        Err(reason) => {
            assert_eq!(server_version, None, "the server started a session anyway");
            // The server fails the handshake inside quinn-proto's `accept` (the ClientHello's
            // ALPN is checked there), so it never has a connection to report: no event, only
            // the TLS alert to the client.
            assert_eq!(
                w.count(server, |e| matches!(
                    e,
                    EngineEvent::Connected { .. } | EngineEvent::Disconnected { .. }
                )),
                0
            );
            assert!(w.engine(server).node().peers().next().is_none());
            assert!(w.engine(client).node().peers().next().is_none());
            // The failed connection is forgotten on both sides once drained.
            w.run_for(Duration::from_secs(5));
            assert_eq!(w.engine(client).connection_count(), 0);
            assert_eq!(w.engine(server).connection_count(), 0);
            Err(reason)
        }
    }
}

#[test]
fn client_offering_everything_gets_the_newest() {
    assert_eq!(
        negotiate(1, &[Lite05, Lite04, Lite03], &[Lite05, Lite04, Lite03]),
        Ok(Lite05)
    );
}

#[test]
fn server_with_only_lite04_agrees_on_lite04() {
    assert_eq!(
        negotiate(2, &[Lite05, Lite04, Lite03], &[Lite04]),
        Ok(Lite04)
    );
    assert_eq!(negotiate(3, &[Lite03, Lite04], &[Lite04]), Ok(Lite04));
}

#[test]
fn server_preference_wins() {
    // The client lists the oldest first; the server prefers the newest it has.
    assert_eq!(
        negotiate(4, &[Lite03, Lite04, Lite05], &[Lite05, Lite04, Lite03]),
        Ok(Lite05)
    );
    assert_eq!(
        negotiate(5, &[Lite05, Lite04, Lite03], &[Lite03, Lite04, Lite05]),
        Ok(Lite03)
    );
}

#[test]
fn no_common_version_fails_with_a_clear_reason() {
    for (seed, offer, accept) in [
        (6, vec![Lite05], vec![Lite03]),
        (7, vec![Lite05, Lite04], vec![Lite03]),
        (8, vec![Lite03], vec![Lite05, Lite04]),
    ] {
        let reason = negotiate(seed, &offer, &accept).unwrap_err();
        println!("{offer:?} vs {accept:?}: {reason}");
        assert!(
            reason.starts_with("no common MOQ version"),
            "{offer:?} vs {accept:?}: {reason}"
        );
    }
}

/// Subscriber-side `max_streams`.
const CREDIT: u32 = 4;

struct CreditRun {
    published: u64,
    complete: BTreeSet<u64>,
    started: BTreeSet<u64>,
    dropped: BTreeSet<u64>,
    reset_old: BTreeSet<u64>,
    max_pending: usize,
    latest_delivered: bool,
}

fn credit_run(version: Version, seed: u64, max_latency: Duration, groups: u64) -> CreditRun {
    let mut w = World::new(seed, LinkConfig::latency(ms(50)));
    let publisher = w.add(server_config(seed, &Version::ALL));
    let mut cfg = client_config(seed, &[version]);
    cfg.max_streams = CREDIT;
    let subscriber = w.add(cfg);
    let track = w.publish(publisher, "c", "t", TrackInfo::default());
    let link = w.connect(subscriber, publisher);
    let sub = w.subscribe(
        subscriber,
        "c",
        "t",
        SubscribeParams {
            max_latency,
            ..SubscribeParams::default()
        },
    );
    w.run_for(ms(500));
    // A group every 10 ms: far more than 4 streams per 100 ms round trip can carry.
    let mut max_pending = 0;
    for _ in 0..groups {
        w.publish_group(publisher, track, 2, 600);
        w.run_for(ms(10));
        let summary = w
            .engine(publisher)
            .node()
            .session(link.server_peer)
            .unwrap()
            .tables();
        let pending = summary.pending_opens;
        max_pending = max_pending.max(pending);
    }
    w.run_for(Duration::from_secs(10));
    let mut out = CreditRun {
        published: groups,
        complete: BTreeSet::new(),
        started: BTreeSet::new(),
        dropped: BTreeSet::new(),
        reset_old: BTreeSet::new(),
        max_pending,
        latest_delivered: false,
    };
    let mut frames = 0;
    for (_, event) in w.sub_events(subscriber, sub) {
        match event {
            SubscriptionEvent::Group { seq } => {
                out.started.insert(seq);
            }
            SubscriptionEvent::Frame { seq, payload, .. } => {
                assert_eq!(payload, Stamp::read(&payload).payload(600));
                assert_eq!(Stamp::read(&payload).group, seq);
                frames += 1;
            }
            SubscriptionEvent::GroupEnd {
                seq,
                state: GroupState::Finished,
            } => {
                out.complete.insert(seq);
                out.latest_delivered |= seq == groups - 1;
            }
            SubscriptionEvent::GroupEnd {
                seq,
                state: GroupState::Aborted(code),
            } => {
                assert_eq!(code, StreamCode::OLD, "{version}: group {seq}");
                out.reset_old.insert(seq);
            }
            SubscriptionEvent::Dropped { start, end, code } => {
                assert_eq!(code, StreamCode::OLD, "{version}");
                out.dropped.extend(start..=end);
            }
            SubscriptionEvent::Closed { error } => panic!("{version}: closed {error:?}"),
            _ => {}
        }
    }
    assert!(frames >= out.complete.len() * 2, "{version}");
    out
}

#[test]
fn stream_credit_exhaustion_delays_but_delivers() {
    for (i, version) in Version::ALL.into_iter().enumerate() {
        let r = credit_run(version, 800 + i as u64, Duration::from_secs(60), 40);
        println!(
            "{version}: {} groups, {} complete, up to {} opens waiting for credit",
            r.published,
            r.complete.len(),
            r.max_pending
        );
        assert!(r.max_pending > 0, "{version}: the credit never ran out");
        assert_eq!(
            r.complete,
            (0..r.published).collect::<BTreeSet<_>>(),
            "{version}: every group arrives as credit returns"
        );
        assert!(r.dropped.is_empty() && r.reset_old.is_empty(), "{version}");
    }
}

#[test]
fn groups_stale_while_waiting_for_credit_are_dropped_for_free() {
    for (i, version) in Version::ALL.into_iter().enumerate() {
        let r = credit_run(version, 810 + i as u64, ms(150), 60);
        println!(
            "{version}: {} groups: {} complete, {} dropped before reaching the network, \
             {} reset Old in flight, up to {} opens waiting for credit",
            r.published,
            r.complete.len(),
            r.dropped.len(),
            r.reset_old.len(),
            r.max_pending
        );
        assert!(r.max_pending > 0, "{version}");
        assert!(!r.dropped.is_empty(), "{version}: nothing was dropped");
        // Dropped for free: a dropped group never started a stream at the subscriber.
        assert!(
            r.dropped.is_disjoint(&r.started),
            "{version}: {:?} both dropped and started",
            r.dropped.intersection(&r.started).collect::<Vec<_>>()
        );
        // Fresh groups kept flowing, and the newest always gets through.
        assert!(r.complete.len() as u64 >= r.published / 4, "{version}");
        assert!(r.latest_delivered, "{version}");
        // Every group is accounted for: delivered, reset in flight, or dropped.
        let mut seen = r.complete.clone();
        seen.extend(&r.dropped);
        seen.extend(&r.reset_old);
        assert_eq!(
            seen,
            (0..r.published).collect::<BTreeSet<_>>(),
            "{version}: groups lost without a word"
        );
    }
}
