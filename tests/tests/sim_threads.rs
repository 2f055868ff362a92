//! A relay on several threads in the simulator: engines sharing one address, joined by
//! in-process links (as `join_threads` joins the drivers' endpoints), each datagram given to
//! a member by a hash of its sender's address and handed to the member owning its connection
//! ID. Deterministic: the seed fixes which thread every client lands on.

mod sim_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use moq_proto::driver::thread_configs;
use moq_proto::quic::{Dial, Endpoint, EngineEvent};
use moq_proto::session::{Side, SubscribeParams};
use moq_proto::wire::{TrackInfo, Version};
use moq_tests::netsim::LinkConfig;
use sim_support::{Stamp, World, client_config, ms, server_config};

const FRAMES: u64 = 4;

/// The relay's threads (which may also dial other relays).
fn relay(w: &mut World, seed: u64, count: usize) -> Vec<usize> {
    let mut config = server_config(seed, &Version::ALL);
    config.verification = client_config(seed, &Version::ALL).verification;
    let configs = thread_configs(&config, count).expect("configs");
    let engines = configs
        .into_iter()
        .map(|c| Endpoint::new(c).expect("engine"))
        .collect();
    w.sim.add_thread_group(engines)
}

/// Connect `client` to the relay; returns the index of the thread that accepted it.
fn connect(w: &mut World, client: usize, relay: &[usize]) -> usize {
    let addr = w.sim.hosts[relay[0]].addr;
    let client_addr = w.sim.hosts[client].addr;
    w.with(client, |e, now| {
        e.dial(now, Dial::new(addr, "localhost", "/"))
            .expect("dial")
    });
    let accepted = |log: &[sim_support::Stamped]| {
        log.iter().find_map(|s| match s.event {
            EngineEvent::Connected {
                remote,
                side: Side::Server,
                ..
            } if remote == client_addr => relay.iter().position(|&m| m == s.host),
            _ => None,
        })
    };
    let deadline = w.elapsed() + Duration::from_secs(10);
    assert!(
        w.run_until(deadline, |log| accepted(log).is_some()),
        "client {client} never connected"
    );
    accepted(&w.log).expect("accepted")
}

/// Add and connect subscribers (at least `min`) until every thread of the relay but
/// `skip` has one (a client's first Initial stays on the thread whose socket got it); returns
/// them and their threads.
fn subscribers_on_every_thread(
    w: &mut World,
    relay: &[usize],
    seed: u64,
    version: Version,
    skip: Option<usize>,
    min: usize,
) -> (Vec<usize>, Vec<usize>) {
    let mut subscribers = Vec::new();
    let mut threads = Vec::new();
    while subscribers.len() < min
        || (0..relay.len()).any(|t| Some(t) != skip && !threads.contains(&t))
    {
        assert!(subscribers.len() < 32, "{version}: {threads:?}");
        let s = w.add(client_config(
            seed * 10 + 1 + subscribers.len() as u64,
            &[version],
        ));
        threads.push(connect(w, s, relay));
        subscribers.push(s);
    }
    (subscribers, threads)
}

/// The groups a subscriber received whole, each with its frames in order.
fn groups_received(w: &World, host: usize, sub: moq_proto::node::LocalSubId) -> Vec<u64> {
    let frames = w.frames(host, sub);
    let mut groups: Vec<u64> = frames.iter().map(|f| f.seq).collect();
    groups.sort_unstable();
    groups.dedup();
    groups.retain(|&g| {
        let got: Vec<u64> = frames
            .iter()
            .filter(|f| f.seq == g)
            .map(|f| Stamp::read(&f.payload).frame)
            .collect();
        got == (0..FRAMES).collect::<Vec<_>>()
    });
    groups
}

/// Every subscriber gets every group whichever of 2 or 4 threads it and the publisher landed
/// on, over a lossy, jittery network, in every version the clients speak.
#[test]
fn every_subscriber_gets_every_group_on_2_and_4_threads() {
    for (k, (count, version)) in [2, 4]
        .into_iter()
        .flat_map(|c| Version::ALL.into_iter().map(move |v| (c, v)))
        .enumerate()
    {
        let seed = 900 + k as u64;
        let mut w = World::new(
            seed,
            LinkConfig {
                jitter: ms(3),
                loss: 0.01,
                ..LinkConfig::latency(ms(5))
            },
        );
        let relay = relay(&mut w, seed, count);
        let publisher = w.add(client_config(seed * 10, &[version]));
        let track = w.publish(publisher, "live", "video", TrackInfo::default());
        let pub_thread = connect(&mut w, publisher, &relay);
        // Subscribers until every thread has a client (a client's first Initial goes to the
        // thread its connection ID names), at least 4.
        let (subscribers, threads) =
            subscribers_on_every_thread(&mut w, &relay, seed, version, Some(pub_thread), 4);
        w.publish_group(publisher, track, FRAMES, 200);
        let subs: Vec<_> = subscribers
            .iter()
            .map(|&s| w.subscribe(s, "live", "video", SubscribeParams::default()))
            .collect();
        // The latest group first: then every subscription is wired through to the publisher.
        w.run_for(Duration::from_secs(2));
        for (&s, &sub) in subscribers.iter().zip(&subs) {
            assert_eq!(
                groups_received(&w, s, sub),
                vec![0],
                "{count} threads, {version}: the latest group"
            );
        }
        for _ in 1..=5 {
            w.publish_group(publisher, track, FRAMES, 200);
            w.run_for(ms(50));
        }
        w.run_for(Duration::from_secs(5));
        for ((&s, &sub), thread) in subscribers.iter().zip(&subs).zip(&threads) {
            assert_eq!(
                groups_received(&w, s, sub),
                (0..=5).collect::<Vec<u64>>(),
                "{count} threads, {version}: a subscriber on thread {thread}, the publisher on thread {pub_thread}"
            );
        }
        assert!(w.sim.stats.link_messages > 0);
        // Nobody moved: each connection stays on the thread that took its first Initial.
        assert_eq!(w.sim.stats.handed_over, 0, "{count} threads, {version}");
    }
}

/// A subscriber whose address changes so that the "kernel" gives its datagrams to the other
/// thread keeps its connection and every group: they are handed to the thread that owns it.
#[test]
fn a_client_that_moves_to_another_threads_socket_keeps_its_connection() {
    for version in Version::ALL {
        let seed = 950;
        let mut w = World::new(seed, LinkConfig::latency(ms(5)));
        let relay = relay(&mut w, seed, 2);
        let publisher = w.add(client_config(seed * 10, &[version]));
        let subscriber = w.add(client_config(seed * 10 + 1, &[version]));
        let track = w.publish(publisher, "live", "video", TrackInfo::default());
        connect(&mut w, publisher, &relay);
        let thread = connect(&mut w, subscriber, &relay);
        w.publish_group(publisher, track, FRAMES, 200);
        let sub = w.subscribe(subscriber, "live", "video", SubscribeParams::default());
        w.run_for(Duration::from_secs(1));
        assert_eq!(groups_received(&w, subscriber, sub), vec![0], "{version}");
        // A new address (a NAT rebinding) that the hash gives to the other thread's socket.
        let relay_addr = w.sim.hosts[relay[0]].addr;
        let moved = (1..=200u16)
            .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)), 40_000 + port))
            .find(|&a| w.sim.socket_for(a, relay_addr) != Some(relay[thread]))
            .expect("an address hashed to the other thread");
        w.sim.hosts[subscriber].addr = moved;
        for _ in 1..=5 {
            w.publish_group(publisher, track, FRAMES, 200);
            w.run_for(ms(100));
        }
        w.run_for(Duration::from_secs(3));
        assert_eq!(
            groups_received(&w, subscriber, sub),
            (0..=5).collect::<Vec<u64>>(),
            "{version}: groups after the move"
        );
        assert!(
            w.sim.stats.handed_over > 0,
            "{version}: the other thread handed datagrams over"
        );
        let closed = w.count(subscriber, |e| {
            matches!(e, EngineEvent::Disconnected { .. })
        });
        assert_eq!(closed, 0, "{version}: the connection stayed up");
    }
}

/// A relay on two threads dials another relay (a cluster link) from the thread whose socket
/// the other relay's answers do not reach (the kernel's hash sends them to the other thread):
/// they carry our connection IDs, so they are handed to the dialling thread, the link comes
/// up and subscribers on both threads get the publisher's groups from the other relay.
#[test]
fn a_threads_dial_is_answered_through_the_other_threads_socket() {
    for version in Version::ALL {
        let seed = 970;
        let mut w = World::new(seed, LinkConfig::latency(ms(5)));
        let upstream = w.add(server_config(seed + 1, &Version::ALL));
        let relay = relay(&mut w, seed, 2);
        let publisher = w.add(client_config(seed * 10, &[version]));
        let track = w.publish(publisher, "live", "video", TrackInfo::default());
        w.connect(publisher, upstream);
        let (up_addr, relay_addr) = (w.sim.hosts[upstream].addr, w.sim.hosts[relay[0]].addr);
        let answered_on = w
            .sim
            .socket_for(up_addr, relay_addr)
            .expect("a group address");
        let dialler = *relay
            .iter()
            .find(|&&m| m != answered_on)
            .expect("two threads");
        w.with(dialler, |e, now| {
            let mut dial = Dial::new(up_addr, "localhost", "/");
            dial.versions = vec![version];
            e.dial(now, dial).expect("dial")
        });
        let linked = |log: &[sim_support::Stamped]| {
            log.iter().any(|s| {
                s.host == dialler
                    && matches!(
                        s.event,
                        EngineEvent::Connected {
                            side: Side::Client,
                            ..
                        }
                    )
            })
        };
        let deadline = w.elapsed() + Duration::from_secs(10);
        assert!(
            w.run_until(deadline, linked),
            "{version}: the cluster link never came up"
        );
        assert!(
            w.sim.stats.handed_over > 0,
            "{version}: the answers were handed over"
        );
        let (subscribers, threads) =
            subscribers_on_every_thread(&mut w, &relay, seed, version, None, 0);
        w.publish_group(publisher, track, FRAMES, 200);
        let subs: Vec<_> = subscribers
            .iter()
            .map(|&s| w.subscribe(s, "live", "video", SubscribeParams::default()))
            .collect();
        w.run_for(Duration::from_secs(2));
        for _ in 1..=3 {
            w.publish_group(publisher, track, FRAMES, 200);
            w.run_for(ms(100));
        }
        w.run_for(Duration::from_secs(3));
        for ((&s, &sub), thread) in subscribers.iter().zip(&subs).zip(&threads) {
            assert_eq!(
                groups_received(&w, s, sub),
                (0..=3).collect::<Vec<u64>>(),
                "{version}: a subscriber on thread {thread}"
            );
        }
    }
}
