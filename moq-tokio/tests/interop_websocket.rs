//! Interop over WebSocket (QMux) with the reference peers, on 127.0.0.1: `moq-relay` 0.17.10
//! built with its `websocket` feature (the upgrade on its `--web-http-listen` port, which is
//! the QUIC port number over TCP) and `moq-clock` 0.10.21 (qmux 0.0.7: draft-00, it offers
//! `qmux-00.moq-lite-04`), against our `moq` binary.
//!
//! 1. `moq-clock publish --url ws://…` → our relay → our `moq clock subscribe --url ws://…`
//!    and `moq-clock subscribe --url ws://…`.
//! 2. Our `moq clock publish --url ws://…` → `moq-relay` → `moq-clock subscribe`; our `moq pub`
//!    over `ws://` → `moq-relay` → our `moq sub` over `ws://`, 10 000 lines byte-exact, on
//!    every version (QMux draft-01, as the reference relay picks it).
//! 3. Our relay linked to `moq-relay` with `--cluster-connect ws://…`, both directions.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use moq_tests::process::*;

/// Deadline for a whole 10 000-line transfer.
const TRANSFER: Duration = Duration::from_secs(45);

/// `moq-clock` against `url` with `role` (publish / subscribe).
fn moq_clock(url: &str, broadcast: &str, role: &str) -> Command {
    let mut cmd = Command::new(peer("moq-clock"));
    cmd.args([
        "--url",
        url,
        "--broadcast",
        broadcast,
        "--tls-disable-verify",
        role,
    ]);
    cmd
}

/// Check a client of ours logged that it connected to `url` (with `version`, if given).
fn assert_connected(proc: &Proc, url: &str, version: Option<&str>) {
    proc.wait_line(true, &format!("`connected url={url}`"), |l| {
        l.contains("connected")
            && l.contains(&format!("url={url}"))
            && version.is_none_or(|v| l.contains(&format!("version={v}")))
    });
}

/// `moq-clock` logged that it fell back to WebSocket and connected.
fn assert_clock_over_websocket(proc: &Proc) {
    proc.wait_line(true, "`using WebSocket fallback`", |l| {
        l.contains("WebSocket")
    });
    proc.wait_line(true, "`connected version=moq-lite-04`", |l| {
        l.contains("connected") && l.contains("moq-lite-04")
    });
}

#[test]
fn moq_clock_publishes_to_our_relay_over_websocket() {
    let relay = our_relay(None);
    let ws = relay.ws_url();
    let started = now_unix();
    let publisher = Proc::spawn(
        "moq-clock publish",
        moq_clock(&ws, "clock", "publish"),
        Input::Null,
    );
    assert_clock_over_websocket(&publisher);
    let ours = Proc::spawn(
        "moq clock subscribe",
        moq(
            None,
            &["clock", "subscribe", "--url", &ws, "--broadcast", "clock"],
        ),
        Input::Null,
    );
    let theirs = Proc::spawn(
        "moq-clock subscribe",
        moq_clock(&ws, "clock", "subscribe"),
        Input::Null,
    );
    check_clock(&ours, started, 3);
    check_clock(&theirs, started, 3);
    assert_connected(&ours, &ws, Some("moq-lite-05"));
    assert_clock_over_websocket(&theirs);
}

#[test]
fn our_clock_over_websocket_through_moq_relay_to_moq_clock() {
    let relay = ref_relay();
    let started = now_unix();
    let publisher = Proc::spawn(
        "moq clock publish",
        moq(
            None,
            &[
                "clock",
                "publish",
                "--url",
                &relay.ws_url(),
                "--broadcast",
                "clock",
            ],
        ),
        Input::Null,
    );
    assert_connected(&publisher, &relay.ws_url(), Some("moq-lite-05"));
    let theirs = Proc::spawn(
        "moq-clock subscribe",
        moq_clock(&relay.http_url(), "clock", "subscribe"),
        Input::Null,
    );
    check_clock(&theirs, started, 3);
}

/// 10 000 lines through `moq-relay`, both ends over `ws://`.
fn pubsub_through_moq_relay(version: &str) {
    const LINES: usize = 10_000;
    let relay = ref_relay();
    let data: Vec<u8> = (0..LINES)
        .flat_map(|i| format!("{version} line {i:05}\n").into_bytes())
        .collect();
    let broadcast = format!("lines-{version}");
    let ws = relay.ws_url();
    let publisher = Proc::spawn(
        "moq pub",
        moq(
            Some(version),
            &[
                "pub",
                "--url",
                &ws,
                "--broadcast",
                &broadcast,
                "--track",
                "text",
                "--group-lines",
                "100",
            ],
        ),
        Input::Pipe(Arc::new(data.clone())),
    );
    assert_connected(&publisher, &ws, Some(version));
    let subscriber = Proc::spawn(
        "moq sub",
        moq(
            Some(version),
            &[
                "sub",
                "--url",
                &ws,
                "--broadcast",
                &broadcast,
                "--track",
                "text",
                // The publisher numbers from 0. Said here, `moq sub` waits for group 0 as
                // long as its max latency allows instead of a short grace: under CPU load
                // the relay's newest-first sends can hold the first groups back longer.
                "--start-group",
                "0",
            ],
        ),
        Input::Null,
    );
    subscriber.wait_stdout_len(data.len(), TRANSFER);
    assert!(
        subscriber.stdout() == data,
        "{version}: the lines differ through moq-relay over WebSocket"
    );
    assert_connected(&subscriber, &ws, Some(version));
}

#[test]
fn pubsub_over_websocket_through_moq_relay_lite03() {
    pubsub_through_moq_relay("moq-lite-03");
}

#[test]
fn pubsub_over_websocket_through_moq_relay_lite04() {
    pubsub_through_moq_relay("moq-lite-04");
}

#[test]
fn pubsub_over_websocket_through_moq_relay_lite05() {
    pubsub_through_moq_relay("moq-lite-05");
}

#[test]
fn our_relay_clusters_with_moq_relay_over_websocket() {
    let reference = ref_relay();
    let ours = our_relay_with(&["--cluster-connect", &reference.ws_url()]);
    // (Proc output is read by the Relay's own process handle; the link shows in the data.)
    let our_url = ours.url();

    // moq-clock publishes at moq-relay; our clock subscriber reads it from our relay.
    let started = now_unix();
    let _theirs = Proc::spawn(
        "moq-clock publish",
        moq_clock(&reference.url(), "their-clock", "publish"),
        Input::Null,
    );
    let reader = Proc::spawn(
        "moq clock subscribe",
        moq(
            None,
            &[
                "clock",
                "subscribe",
                "--url",
                &our_url,
                "--broadcast",
                "their-clock",
            ],
        ),
        Input::Null,
    );
    check_clock(&reader, started, 3);

    // Our clock publishes at our relay; moq-clock reads it from moq-relay.
    let _publisher = Proc::spawn(
        "moq clock publish",
        moq(
            None,
            &[
                "clock",
                "publish",
                "--url",
                &our_url,
                "--broadcast",
                "our-clock",
            ],
        ),
        Input::Null,
    );
    let theirs = Proc::spawn(
        "moq-clock subscribe",
        moq_clock(&reference.url(), "our-clock", "subscribe"),
        Input::Null,
    );
    check_clock(&theirs, started, 3);
}
