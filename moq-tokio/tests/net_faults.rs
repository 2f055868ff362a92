//! Network faults on real sockets: our relay and one client in a network namespace, the other
//! client in a second one, a veth pair between them (created by the test, removed after it;
//! needs root and iproute2, and fails without them). `moq pub` sends one line per group, ten
//! a second; `moq sub` prints them. The link goes down for 5 s and comes back (shorter than
//! the idle timeout, so the sessions survive), or is squeezed by a token bucket far below the
//! publishing rate with a tiny queue (tail drops: real congestion loss).
//!
//! Asserted, never timing: delivery resumes after the fault, and nothing is printed twice or
//! out of order. This kernel offers no `netem` (random loss, fixed delay, reordering): those
//! run in the simulator (`tests/tests/sim_*.rs`), over the same engine.

use std::process::Command;
use std::time::{Duration, Instant};

use moq_tests::netns::NetPair;
use moq_tests::process::*;

/// Which side of the relay the second namespace holds.
#[derive(Debug, Clone, Copy)]
enum Remote {
    Subscriber,
    Publisher,
}

struct Setup {
    net: NetPair,
    _relay: Proc,
    _source: Proc,
    _publisher: Proc,
    subscriber: Proc,
}

fn setup(tag: &str, remote: Remote) -> Setup {
    let net = NetPair::new(tag);
    let addr = format!("{}:4443", net.a_ip);
    let mut relay = Command::new(moq_binary());
    relay.args(["relay", "--listen", &addr, "--drain", "0", "--no-web-http"]);
    let relay = Proc::spawn("moq relay", net.exec(&net.a, &relay), Input::Null);
    relay.wait_line(false, "`moq relay listening on`", |l| {
        l.starts_with("moq relay listening on")
    });
    let url = format!("moqt://{addr}/");
    let (pub_ns, sub_ns) = match remote {
        Remote::Subscriber => (&net.a, &net.b),
        Remote::Publisher => (&net.b, &net.a),
    };
    let mut lines = Command::new("sh");
    lines
        .arg("-c")
        .arg("i=0; while true; do echo n-$i; i=$((i+1)); sleep 0.1; done");
    let (source, out) = Proc::spawn_source("line source", net.exec(pub_ns, &lines));
    let publisher = moq(
        None,
        &[
            "pub",
            "--url",
            &url,
            "--broadcast",
            "faults",
            "--track",
            "t",
            "--no-wait",
        ],
    );
    let publisher = Proc::spawn("moq pub", net.exec(pub_ns, &publisher), Input::From(out));
    let subscriber = moq(
        None,
        &[
            "sub",
            "--url",
            &url,
            "--broadcast",
            "faults",
            "--track",
            "t",
        ],
    );
    let subscriber = Proc::spawn("moq sub", net.exec(sub_ns, &subscriber), Input::Null);
    Setup {
        net,
        _relay: relay,
        _source: source,
        _publisher: publisher,
        subscriber,
    }
}

fn numbers(proc: &Proc) -> Vec<u64> {
    lines(&proc.stdout())
        .iter()
        .filter_map(|l| l.strip_prefix("n-")?.parse().ok())
        .collect()
}

/// Wait until the subscriber printed a number more than `margin` past `after`.
fn until_past(proc: &Proc, after: Option<u64>, margin: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = numbers(proc);
        if let Some(&last) = got.last()
            && after.is_none_or(|a| last > a + margin)
        {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "no lines past {after:?}: {got:?}\n{}",
            proc.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_clean(got: &[u64], what: &str) {
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "{what}: a line printed twice or out of order: {got:?}"
    );
}

/// Run `fault` for 5 s once the subscriber is receiving, `heal` it, and check that delivery
/// resumes with nothing printed twice or out of order.
fn survive(
    tag: &str,
    remote: Remote,
    what: &str,
    fault: impl Fn(&NetPair),
    heal: impl Fn(&NetPair),
) {
    let s = setup(tag, remote);
    let before = until_past(&s.subscriber, None, 0);
    fault(&s.net);
    // Wall time here is the fault's length, not a synchronisation: nothing waits on it.
    std::thread::sleep(Duration::from_secs(5));
    heal(&s.net);
    let after = until_past(&s.subscriber, Some(before), 60);
    let got = numbers(&s.subscriber);
    assert_clean(&got, what);
    let missing = (got[0]..=after).filter(|n| !got.contains(n)).count();
    println!(
        "{what}: printed {} lines from n-{} to n-{after}, {missing} groups skipped",
        got.len(),
        got[0]
    );
}

/// The link drops everything for 5 s (a pulled cable), then comes back.
fn link_down(tag: &str, remote: Remote) {
    let what = format!("{remote:?} side down 5 s");
    survive(
        tag,
        remote,
        &what,
        |net| net.set_link(false),
        |net| net.set_link(true),
    );
}

#[test]
fn the_subscriber_link_goes_down_for_5_s() {
    link_down("ld", Remote::Subscriber);
}

#[test]
fn the_publisher_link_goes_down_for_5_s() {
    link_down("lp", Remote::Publisher);
}

/// The subscriber's side squeezed to 8 kbit/s with a 20 ms queue for 5 s: packets beyond it
/// are dropped at the queue's tail. QUIC retransmits; the relay may skip groups past their
/// max latency, never print one twice.
#[test]
fn congestion_loss_on_the_subscriber_link() {
    survive(
        "cg",
        Remote::Subscriber,
        "8 kbit/s for 5 s",
        |net| net.cap_a_to_b("8kbit", 20),
        NetPair::uncap,
    );
}
