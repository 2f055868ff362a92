//! A short scenario under randomised impairments, across many seeds.
//!
//! Each seed picks a version, a path (latency, jitter, reordering, independent or burst
//! loss, duplication) and a payload size, then: connect, subscribe, publish a few groups, and
//! check that every frame arrives exactly once, byte for byte, in order within its group, and
//! that nothing is left behind once the subscription and broadcast are gone. A failing seed is
//! reported so it can be replayed alone with `SIM_SEED=<seed>`.

mod sim_support;

use std::time::Duration;

use moq_harness::testing::Rng;
use moq_proto::codes::SessionCode;
use moq_proto::node::SubscriptionEvent;
use moq_proto::origin::GroupState;
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{Path, TrackInfo, Version};
use moq_tests::netsim::LinkConfig;
use sim_support::{Stamp, World, client_config, ms, server_config};

const SEEDS: u64 = 520;
const GROUPS: u64 = 3;
const FRAMES: u64 = 3;

fn random_link(rng: &mut Rng) -> LinkConfig {
    let pick = |rng: &mut Rng, max: u64| rng.below(max + 1);
    LinkConfig {
        latency: ms(1 + pick(rng, 40)),
        jitter: ms(pick(rng, 10)),
        reorder: pick(rng, 10) as f64 / 100.0,
        reorder_delay: ms(2 + pick(rng, 20)),
        loss: pick(rng, 8) as f64 / 100.0,
        burst: (rng.below(4) == 0).then(|| (0.02, 0.3, 0.5 + pick(rng, 50) as f64 / 100.0)),
        duplicate: pick(rng, 5) as f64 / 100.0,
        ..LinkConfig::default()
    }
}

/// Run one seed; `Err` describes what went wrong.
fn run(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let version = Version::ALL[(seed % 3) as usize];
    let link = random_link(&mut rng);
    let size = Stamp::LEN + rng.below(1500) as usize;
    let describe = format!("seed {seed} {version} size {size} {link:?}");
    let mut w = World::new(seed, link);
    let publisher = w.add(server_config(seed, &Version::ALL));
    let subscriber = w.add(client_config(seed, &[version]));
    let track = w.publish(publisher, "s", "t", TrackInfo::default());
    let addr = w.sim.hosts[publisher].addr;
    let conn = w.with(subscriber, |e, now| {
        e.connect(now, addr, "localhost", "/").unwrap()
    });
    let up = w.run_until_sim(Duration::from_secs(20), |sim| {
        sim.hosts[subscriber].engine.version_of(conn).is_some()
    });
    if !up {
        return Err(format!("{describe}: no connection"));
    }
    let sub = w.subscribe(
        subscriber,
        "s",
        "t",
        SubscribeParams {
            max_latency: Duration::from_secs(600),
            ..SubscribeParams::default()
        },
    );
    let deadline = w.elapsed() + Duration::from_secs(20);
    if !w.run_until_sim(deadline, |sim| {
        sim.hosts[publisher].engine.node().subscriber_count(track) == 1
    }) {
        return Err(format!("{describe}: the subscription never arrived"));
    }
    for _ in 0..GROUPS {
        w.publish_group(publisher, track, FRAMES, size);
        let next = w.elapsed() + ms(rng.below(50));
        w.run_until(next, |_| false);
    }
    let want = (GROUPS * FRAMES) as usize;
    let deadline = w.elapsed() + Duration::from_secs(30);
    w.run_until(deadline, |log| {
        log.iter()
            .filter(|s| {
                matches!(
                    s.event,
                    moq_proto::quic::EngineEvent::Node(moq_proto::node::NodeEvent::Subscription {
                        event: SubscriptionEvent::GroupEnd { .. },
                        ..
                    })
                )
            })
            .count()
            == GROUPS as usize
    });

    let mut got = Vec::new();
    let mut ended = Vec::new();
    for (_, event) in w.sub_events(subscriber, sub) {
        match event {
            SubscriptionEvent::Frame { seq, payload, .. } => {
                let stamp = Stamp::read(&payload);
                if payload != stamp.payload(size) || stamp.group != seq {
                    return Err(format!("{describe}: corrupted frame {stamp:?}"));
                }
                got.push((seq, stamp.frame));
            }
            SubscriptionEvent::GroupEnd { seq, state } => ended.push((seq, state)),
            SubscriptionEvent::Dropped { .. } | SubscriptionEvent::Closed { .. } => {
                return Err(format!("{describe}: unexpected {event:?}"));
            }
            _ => {}
        }
    }
    // Groups may interleave; within a group, frames are in order.
    let mut sorted = got.clone();
    sorted.sort_by_key(|(g, _)| *g);
    let expected: Vec<(u64, u64)> = (0..GROUPS)
        .flat_map(|g| (0..FRAMES).map(move |f| (g, f)))
        .collect();
    if got.len() != want || sorted != expected {
        if std::env::var("SIM_DEBUG").is_ok() {
            for s in &w.log {
                println!("{:?} host {} {:?}", s.at, s.host, s.event);
            }
        }
        return Err(format!("{describe}: got {got:?}"));
    }
    ended.sort_by_key(|(g, _)| *g);
    if ended
        != (0..GROUPS)
            .map(|g| (g, GroupState::Finished))
            .collect::<Vec<_>>()
    {
        return Err(format!("{describe}: group ends {ended:?}"));
    }

    // Tear down: nothing may be left on either node.
    w.with(subscriber, |e, now| e.node().unsubscribe(now, sub));
    w.with(publisher, |e, now| {
        let b = e.node().origin().find(&Path::new("s").unwrap()).unwrap();
        e.node().unpublish(now, b);
    });
    w.run_for(Duration::from_secs(1));
    w.with(subscriber, |e, now| e.close(now, SessionCode(0), "done"));
    let deadline = w.elapsed() + Duration::from_secs(30);
    let drained = w.run_until_sim(deadline, |sim| {
        sim.hosts.iter().all(|h| h.engine.connection_count() == 0)
    });
    if !drained {
        return Err(format!("{describe}: connections not drained"));
    }
    for host in [publisher, subscriber] {
        let node = w.engine(host).node();
        if !node.is_idle() || node.peers().count() != 0 {
            return Err(format!(
                "{describe}: host {host} leaks: {}",
                node.state_summary()
            ));
        }
    }
    Ok(())
}

#[test]
fn many_seeds_deliver_everything() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => (1..=SEEDS).collect(),
    };
    let started = std::time::Instant::now();
    // Seeds are independent (each has its own virtual network): spread them over a few
    // threads to keep the wall time down; every seed's run is still deterministic.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = &seeds;
                scope.spawn(move || {
                    seeds
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .filter_map(|&s| run(s).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    failures.sort();
    println!(
        "{} seeds in {:?}, {} failed",
        seeds.len(),
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
}
