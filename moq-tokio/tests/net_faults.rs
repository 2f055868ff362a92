//! Network faults on real sockets: our relay and one client in a network namespace, the other
//! client in a second one, a veth pair between them (created by the test, removed after it;
//! needs root, iproute2 and nftables, and fails without them). `moq pub` sends one line per
//! group, ten a second (fifty lines of 3000 bytes under random loss); `moq sub` prints them.
//! The link goes down for 5 s and comes back (shorter than the idle timeout, so the sessions
//! survive), or is squeezed by a token bucket far below the publishing rate with a tiny queue
//! (tail drops: real congestion loss), or drops 5 % of the packets each way at random
//! (nftables on the veth's output hook).
//!
//! This kernel has no `netem`, so fixed delay and reordering come from a user-space forwarder
//! in the test process ([`moq_tests::impair`]) on 127.0.0.1: both clients talk to the relay
//! through it, each datagram held 50 ms plus a seeded jitter of up to ±20 ms (and, in one
//! test, 5 % dropped), while `moq pub` sends larger lines fifty a second so that datagrams of
//! one group and whole groups overtake each other.
//!
//! Asserted, never timing: delivery continues under the fault and resumes after it, nothing
//! is printed twice or out of order, and no group is skipped (see [`assert_none_skipped`]).

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use moq_tests::impair::{Impair, Impairment};
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

/// The namespaces, the relay and the clients; `source` writes what `moq pub` publishes.
fn setup(tag: &str, remote: Remote, source: Command) -> Setup {
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
    let (source, out) = Proc::spawn_source("line source", net.exec(pub_ns, &source));
    let publisher = Proc::spawn(
        "moq pub",
        net.exec(pub_ns, &publisher(&url)),
        Input::From(out),
    );
    let subscriber = subscriber(&url);
    let subscriber = Proc::spawn("moq sub", net.exec(sub_ns, &subscriber), Input::Null);
    Setup {
        net,
        _relay: relay,
        _source: source,
        _publisher: publisher,
        subscriber,
    }
}

/// A shell loop printing `n-0`, `n-1`, … one line every `interval` seconds, each followed by a
/// space and `pad` bytes of padding when `pad` is not 0.
fn line_source(interval: f64, pad: usize) -> Command {
    let mut lines = Command::new("sh");
    lines.arg("-c").arg(format!(
        "pad=$(printf '%{pad}s' '' | tr ' ' x); i=0; \
         while true; do echo n-$i${{pad:+ $pad}}; i=$((i+1)); sleep {interval}; done"
    ));
    lines
}

/// `moq pub` of stdin, one line per group, on track `t` of broadcast `faults`.
fn publisher(url: &str) -> Command {
    moq(
        None,
        &[
            "pub",
            "--url",
            url,
            "--broadcast",
            "faults",
            "--track",
            "t",
            "--no-wait",
        ],
    )
}

/// `moq sub` of what [`publisher`] sends. Its max latency, 30 s (the default, made
/// explicit): a gap in the groups is skipped only after waiting that long (once something was
/// printed), longer than any fault here, so no group may be skipped.
fn subscriber(url: &str) -> Command {
    moq(
        None,
        &[
            "sub",
            "--url",
            url,
            "--broadcast",
            "faults",
            "--track",
            "t",
            "--max-latency",
            "30000",
        ],
    )
}

/// The numbers of the lines `proc` printed (`n-N`, padding ignored).
fn numbers(proc: &Proc) -> Vec<u64> {
    lines(&proc.stdout())
        .iter()
        .filter_map(|l| l.split(' ').next()?.strip_prefix("n-")?.parse().ok())
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

/// Groups the subscriber skipped from its first line to `last` (lines are printed in order,
/// so everything below a printed line that is missing was skipped, not delayed).
fn skipped(got: &[u64], last: u64) -> usize {
    (got[0]..=last)
        .filter(|n| got.binary_search(n).is_err())
        .count()
}

/// No group skipped: the subscriber's max latency (30 s, see [`subscriber`]) is longer than
/// each test, the relay keeps a non-latest group 5 s (the publisher's default max latency)
/// and no fault here delays a group that long, and the relay asks the publisher for the
/// largest max latency among its subscribers. A skip would be a group lost for good.
fn assert_none_skipped(got: &[u64], last: u64, what: &str) {
    let missing = skipped(got, last);
    assert_eq!(missing, 0, "{what}: {missing} groups skipped: {got:?}");
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
    let s = setup(tag, remote, line_source(0.1, 0));
    let before = until_past(&s.subscriber, None, 0);
    fault(&s.net);
    // Wall time here is the fault's length, not a synchronisation: nothing waits on it.
    std::thread::sleep(Duration::from_secs(5));
    heal(&s.net);
    let after = until_past(&s.subscriber, Some(before), 60);
    let got = numbers(&s.subscriber);
    assert_clean(&got, what);
    let missing = skipped(&got, after);
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

/// 5 % of the packets dropped at random each way on the `remote` side's link (nftables):
/// delivery goes on under the loss for 150 groups (3 s of publishing lines of 3000 bytes,
/// a few datagrams each, fifty a second: about 450 kB cross the lossy link), and
/// after it for 50 more, every group printed once, in order.
fn random_loss(tag: &str, remote: Remote) {
    let what = format!("{remote:?} side 5 % loss each way");
    let s = setup(tag, remote, line_source(0.02, 3000));
    let before = until_past(&s.subscriber, None, 0);
    s.net.set_loss(50);
    let during = until_past(&s.subscriber, Some(before), 150);
    let (lost, lost_bytes) = s.net.lost();
    s.net.clear_loss();
    let after = until_past(&s.subscriber, Some(during), 50);
    let got = numbers(&s.subscriber);
    assert_clean(&got, &what);
    println!(
        "{what}: printed {} lines from n-{} to n-{after} (n-{before} to n-{during} under \
         loss; {lost} packets, {lost_bytes} bytes, dropped), {} groups skipped",
        got.len(),
        got[0],
        skipped(&got, after)
    );
    assert!(lost > 0, "{what}: the loss rule dropped nothing");
    assert_none_skipped(&got, after, &what);
}

#[test]
fn random_loss_on_the_subscriber_link() {
    random_loss("rs", Remote::Subscriber);
}

#[test]
fn random_loss_on_the_publisher_link() {
    random_loss("rp", Remote::Publisher);
}

/// Our relay on 127.0.0.1, `moq pub` and `moq sub` both reaching it through an impairment
/// forwarder: every line crosses the impaired path twice. Lines of 3000 bytes (a few
/// datagrams each) fifty a second, so that with ±20 ms of jitter both the datagrams of a
/// group and consecutive groups overtake each other. The impairment holds from the first
/// packet (handshakes included) to the end: 150 groups (3 s of publishing) must get through.
fn through_forwarder(what: &str, impairment: Impairment) {
    let relay = our_relay(None);
    let target = SocketAddr::from(([127, 0, 0, 1], relay.port));
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let forwarder = Impair::start(listen, target, impairment);
    let url = format!("moqt://{}/", forwarder.addr());
    let (_source, out) = Proc::spawn_source("line source", line_source(0.02, 3000));
    let _publisher = Proc::spawn("moq pub", publisher(&url), Input::From(out));
    let subscriber = Proc::spawn("moq sub", subscriber(&url), Input::Null);
    let first = until_past(&subscriber, None, 0);
    let last = until_past(&subscriber, Some(first), 150);
    let got = numbers(&subscriber);
    let stats = forwarder.stats();
    assert_clean(&got, what);
    println!(
        "{what}: printed {} lines from n-{} to n-{last}, {} groups skipped; forwarder: {} \
         datagrams passed, {} overtaken, {} dropped",
        got.len(),
        got[0],
        skipped(&got, last),
        stats.forwarded,
        stats.overtaken,
        stats.dropped
    );
    // The fault happened (counts, not timing: hundreds of datagrams sent microseconds apart
    // each draw their own jitter).
    assert!(stats.overtaken > 0, "{what}: no datagram was reordered");
    if impairment.loss > 0.0 {
        assert!(stats.dropped > 0, "{what}: no datagram was dropped");
    }
    assert_none_skipped(&got, last, what);
}

#[test]
fn delay_and_reordering_through_a_forwarder() {
    through_forwarder(
        "50 ms ± 20 ms each way",
        Impairment {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(20),
            loss: 0.0,
            seed: 1,
        },
    );
}

#[test]
fn loss_delay_and_reordering_through_a_forwarder() {
    through_forwarder(
        "5 % loss, 50 ms ± 20 ms each way",
        Impairment {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(20),
            loss: 0.05,
            seed: 2,
        },
    );
}
