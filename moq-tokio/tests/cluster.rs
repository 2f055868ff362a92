//! Clustering on 127.0.0.1: three of our relays in a triangle, with the reference relay
//! (`moq-relay` 0.17.10) linked to one of them; publishers and subscribers on different
//! relays, across the reference relay both ways; loop-free announcements; no reconnect
//! storm; failover when a publisher or the relay carrying it dies; active/active publishers.

use std::time::Duration;

use moq_tests::process::*;

/// Our relay on `port` (UDP, and TCP for HTTP) linking to `links`.
fn relay_on(port: u16, links: &[u16], extra: &[&str]) -> Relay {
    let listen = format!("127.0.0.1:{port}");
    let urls: Vec<String> = links
        .iter()
        .map(|p| format!("moqt://localhost:{p}/"))
        .collect();
    let mut flags = vec!["--tls-disable-verify", "--listen", listen.as_str()];
    for url in &urls {
        flags.extend_from_slice(&["--cluster-connect", url.as_str()]);
    }
    flags.extend_from_slice(extra);
    our_relay_with(&flags)
}

fn clock(role: &str, port: u16, broadcast: &str) -> Proc {
    Proc::spawn(
        &format!("moq clock {role} :{port} {broadcast}"),
        moq(
            None,
            &[
                "clock",
                role,
                "--url",
                &format!("moqt://localhost:{port}/"),
                "--broadcast",
                broadcast,
            ],
        ),
        Input::Null,
    )
}

fn announced(port: u16) -> Proc {
    Proc::spawn(
        &format!("moq announced :{port}"),
        moq(
            None,
            &[
                "announced",
                "--url",
                &format!("moqt://localhost:{port}/"),
                "--prefix",
                "",
            ],
        ),
        Input::Null,
    )
}

/// `/announced` of our relay on `port`: the broadcast paths, sorted.
fn listed(port: u16) -> Vec<String> {
    let mut paths: Vec<String> = moq_tests::http::get(port, "/announced")
        .text()
        .lines()
        .map(str::to_string)
        .collect();
    paths.sort();
    paths
}

/// Wait until `pred(listed(port))`.
fn until_listed(port: u16, what: &str, pred: impl Fn(&[String]) -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = listed(port);
        if pred(&now) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            ":{port}: {what}: still {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The clock times (Unix seconds) a subscriber printed.
fn times(proc: &Proc) -> Vec<i64> {
    lines(&proc.stdout())
        .iter()
        .filter_map(|l| clock_seconds(l))
        .collect()
}

/// Wait until a subscriber printed a time at or after `after`.
fn until_time(proc: &Proc, after: i64) {
    let deadline = std::time::Instant::now() + WAIT;
    while !times(proc).iter().any(|&t| t >= after) {
        assert!(
            std::time::Instant::now() < deadline,
            "no clock time after {after}: {:?}\n{}",
            times(proc),
            proc.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_triangle_with_the_reference_relay_routes_everything_once() {
    let reference = ref_relay();
    let (pa, pb, pc) = (free_udp_port(), free_udp_port(), free_udp_port());
    // A links to the reference relay and to B; C links to B and to A: a triangle plus R.
    let a = relay_on(pa, &[reference.port, pb], &[]);
    let b = relay_on(pb, &[], &[]);
    let c = relay_on(pc, &[pb, pa], &[]);
    let started = now_unix();
    let _from_ref = clock("publish", reference.port, "from-ref");
    let _from_b = clock("publish", pb, "from-b");
    let _from_c = Proc::spawn(
        "moq-clock publish",
        moq_clock(
            &format!("https://localhost:{pc}/"),
            "from-c",
            None,
            "publish",
        ),
        Input::Null,
    );
    // Across the reference relay into ours...
    let at_c = clock("subscribe", pc, "from-ref");
    check_clock(&at_c, started, 2);
    // ...and from ours out through it, to our client and to the reference's.
    let at_ref = clock("subscribe", reference.port, "from-b");
    check_clock(&at_ref, started, 2);
    let ref_client = Proc::spawn(
        "moq-clock subscribe",
        moq_clock(&reference.https_url(), "from-c", None, "subscribe"),
        Input::Null,
    );
    check_clock(&ref_client, started, 2);
    // Every relay lists every broadcast exactly once: announcements do not loop.
    let all = ["from-b", "from-c", "from-ref"].map(String::from).to_vec();
    for port in [pa, pb, pc] {
        until_listed(port, "all three broadcasts", |l| l == all.as_slice());
    }
    // No reconnect storm in a cycle: every link came up once and stayed.
    std::thread::sleep(Duration::from_secs(3));
    for (name, relay) in [("A", &a), ("B", &b), ("C", &c)] {
        let stderr = relay.proc.stderr_text();
        let downs = stderr.matches("cluster link down").count()
            + stderr.matches("cluster link failed").count();
        assert_eq!(downs, 0, "relay {name}:\n{stderr}");
    }
    for port in [pa, pb, pc] {
        assert_eq!(listed(port), all, ":{port} after the wait");
    }
}

#[test]
fn active_active_publishers_fail_over_and_a_dead_relays_broadcasts_end() {
    let (pa, pb, pc) = (free_udp_port(), free_udp_port(), free_udp_port());
    let a = relay_on(pa, &[pb], &[]);
    let _b = relay_on(pb, &[], &[]);
    let _c = relay_on(pc, &[pb, pa], &[]);

    // Two publishers of the same broadcast, on A and on C; a subscriber on B gets one of
    // them, and keeps getting the clock whichever of them dies.
    let mut on_a = clock("publish", pa, "dual");
    let mut on_c = clock("publish", pc, "dual");
    let started = now_unix();
    let sub = clock("subscribe", pb, "dual");
    check_clock(&sub, started, 1);
    on_a.interrupt();
    on_a.wait_exit(WAIT);
    until_time(&sub, now_unix() + 2);
    let mut on_a = clock("publish", pa, "dual");
    std::thread::sleep(Duration::from_secs(1));
    on_c.interrupt();
    on_c.wait_exit(WAIT);
    // (A publisher that says goodbye finishes its track cleanly; while the other publisher's
    // route is there, the relays fail over to it as they do for a lost connection, and never
    // serve a relay the track it feeds them: no loop.)
    until_time(&sub, now_unix() + 2);
    on_a.interrupt();
    on_a.wait_exit(WAIT);

    // The only publisher of `solo` is on A; B and C list it. A dies (killed: no goodbye):
    // the others drop it once their links to A time out, and list it again when the
    // publisher comes back on C.
    let watch_b = announced(pb);
    let _solo = clock("publish", pa, "solo");
    for port in [pb, pc] {
        until_listed(port, "solo listed", |l| l.iter().any(|p| p == "solo"));
    }
    a.proc.kill();
    for port in [pb, pc] {
        until_listed(port, "solo gone with relay A", |l| {
            !l.iter().any(|p| p == "solo")
        });
    }
    let _solo_again = clock("publish", pc, "solo");
    until_listed(pb, "solo back through C", |l| l.iter().any(|p| p == "solo"));
    let seen = lines(&watch_b.stdout());
    let changes: Vec<&String> = seen.iter().filter(|l| l.ends_with("solo")).collect();
    assert_eq!(
        changes,
        ["+ solo", "- solo", "+ solo"].iter().collect::<Vec<_>>(),
        "{seen:?}"
    );
    // A restarted relay holds no stale route: it learns `solo` again from its links only.
    let restarted = relay_on(pa, &[pb], &[]);
    until_listed(restarted.port, "solo learnt again", |l| {
        l == ["solo".to_string()]
    });
}
