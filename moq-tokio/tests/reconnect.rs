//! Clients that reconnect, on 127.0.0.1: `moq pub` and `moq sub` survive a relay restart
//! (the subscriber resumes at the next group, printing nothing twice), a subscriber survives
//! its publisher being replaced, and both follow GOAWAY to another relay.

use std::process::Command;
use std::time::{Duration, Instant};

use moq_tests::process::*;

/// Our relay on `port` (fixed, so it can be restarted at the same address).
fn relay_at(port: u16, extra: &[&str]) -> Relay {
    let listen = format!("127.0.0.1:{port}");
    let mut flags = vec!["--listen", listen.as_str()];
    flags.extend_from_slice(extra);
    our_relay_with(&flags)
}

/// `moq pub` fed by a shell loop printing `PREFIX-N` ten times a second (one group a line).
fn publisher(port: u16, prefix: &str) -> (Proc, Proc) {
    let (source, out) = Proc::spawn_source("line source", {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "i=0; while true; do echo {prefix}-$i; i=$((i+1)); sleep 0.1; done"
        ));
        cmd
    });
    let publisher = Proc::spawn(
        "moq pub",
        moq(
            None,
            &[
                "pub",
                "--url",
                &format!("moqt://localhost:{port}/"),
                "--broadcast",
                "lines",
                "--track",
                "t",
                "--no-wait",
            ],
        ),
        Input::From(out),
    );
    (source, publisher)
}

fn subscriber(port: u16) -> Proc {
    Proc::spawn(
        "moq sub",
        moq(
            None,
            &[
                "sub",
                "--url",
                &format!("moqt://localhost:{port}/"),
                "--broadcast",
                "lines",
                "--track",
                "t",
            ],
        ),
        Input::Null,
    )
}

/// The numbers printed for `prefix`, in order.
fn numbers(proc: &Proc, prefix: &str) -> Vec<u64> {
    lines(&proc.stdout())
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("{prefix}-"))?.parse().ok())
        .collect()
}

/// Wait until the subscriber printed `prefix`-lines past `after` (the last number so far).
fn until_past(proc: &Proc, prefix: &str, after: Option<u64>) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = numbers(proc, prefix);
        if let Some(&last) = got.last()
            && after.is_none_or(|a| last > a + 5)
        {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "no `{prefix}` lines past {after:?}: {got:?}\n{}",
            proc.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn strictly_increasing(values: &[u64]) -> bool {
    values.windows(2).all(|w| w[0] < w[1])
}

#[test]
fn publisher_and_subscriber_survive_a_relay_restart() {
    let port = free_udp_port();
    let relay = relay_at(port, &[]);
    let (_source, publisher) = publisher(port, "a");
    let sub = subscriber(port);
    let before = until_past(&sub, "a", None);
    // The relay dies without a goodbye, and comes back at the same address.
    relay.proc.kill();
    drop(relay);
    let _relay = relay_at(port, &[]);
    until_past(&sub, "a", Some(before));
    let got = numbers(&sub, "a");
    assert!(
        strictly_increasing(&got),
        "a line printed twice or out of order: {got:?}"
    );
    for proc in [&sub, &publisher] {
        assert!(
            proc.stderr_text().contains("reconnected"),
            "{}",
            proc.stderr_text()
        );
    }
}

#[test]
fn a_subscriber_survives_its_publisher_being_replaced() {
    let relay = our_relay_with(&[]);
    let (source, publisher_a) = publisher(relay.port, "a");
    let sub = subscriber(relay.port);
    until_past(&sub, "a", None);
    publisher_a.kill();
    source.kill();
    let (_source, _publisher_b) = publisher(relay.port, "b");
    until_past(&sub, "b", None);
    let b = numbers(&sub, "b");
    assert!(strictly_increasing(&b), "{b:?}");
}

#[test]
fn clients_follow_goaway_to_another_relay() {
    let second = our_relay_with(&[]);
    let goaway = format!("moqt://localhost:{}/", second.port);
    let first = our_relay_with(&["--goaway-url", &goaway, "--drain", "5"]);
    let (_source, _publisher) = publisher(first.port, "a");
    let sub = subscriber(first.port);
    let before = until_past(&sub, "a", None);
    // Rolling deploy: the first relay is told to stop; its clients move to the second.
    first.proc.terminate();
    until_past(&sub, "a", Some(before));
    let got = numbers(&sub, "a");
    assert!(strictly_increasing(&got), "{got:?}");
    assert!(
        sub.stderr_text().contains("GOAWAY"),
        "{}",
        sub.stderr_text()
    );
}
