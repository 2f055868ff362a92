//! Interop over WebTransport with the reference peers, on 127.0.0.1: `moq-relay` 0.17.10
//! (WebTransport on its QUIC port, `/certificate.sha256` on the same port over TCP with
//! `--web-http-listen`) and `moq-clock` 0.10.21, against our `moq` binary.
//!
//! 1. `moq-clock publish --url http://…` → our relay (it fetches our `/certificate.sha256` and
//!    pins it) → our `moq clock subscribe` over `https://` and `moq-clock subscribe` over
//!    `http://`.
//! 2. Our `moq clock publish` over `https://` → `moq-relay` → `moq-clock subscribe`, the right
//!    seconds; and our `moq pub` over `https://` → `moq-relay` → our `moq sub` over `http://`,
//!    10 000 lines byte-exact, on every version.
//! 3. Our relay linked to `moq-relay` with `--cluster-connect https://…`, both directions.

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

#[test]
fn moq_clock_publishes_to_our_relay_over_webtransport() {
    let relay = our_relay(None);
    let http = format!("http://localhost:{}/", relay.port);
    let https = format!("https://localhost:{}/", relay.port);
    let started = now_unix();
    let _publisher = Proc::spawn(
        "moq-clock publish",
        moq_clock(&http, "clock", "publish"),
        Input::Null,
    );
    let ours = Proc::spawn(
        "moq clock subscribe",
        moq(
            None,
            &[
                "clock",
                "subscribe",
                "--url",
                &https,
                "--broadcast",
                "clock",
            ],
        ),
        Input::Null,
    );
    let theirs = Proc::spawn(
        "moq-clock subscribe",
        moq_clock(&http, "clock", "subscribe"),
        Input::Null,
    );
    check_clock(&ours, started, 3);
    check_clock(&theirs, started, 3);
    assert_connected(&ours, &https, None);
}

#[test]
fn our_clock_over_webtransport_through_moq_relay_to_moq_clock() {
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
                &relay.https_url(),
                "--broadcast",
                "clock",
            ],
        ),
        Input::Null,
    );
    assert_connected(&publisher, &relay.https_url(), None);
    let theirs = Proc::spawn(
        "moq-clock subscribe",
        moq_clock(&relay.http_url(), "clock", "subscribe"),
        Input::Null,
    );
    check_clock(&theirs, started, 3);
}

/// 10 000 lines through `moq-relay`: published over `https://`, read over `http://`.
fn pubsub_through_moq_relay(version: &str) {
    const LINES: usize = 10_000;
    let relay = ref_relay();
    let data: Vec<u8> = (0..LINES)
        .flat_map(|i| format!("{version} line {i:05}\n").into_bytes())
        .collect();
    let broadcast = format!("lines-{version}");
    let publisher = Proc::spawn(
        "moq pub",
        moq(
            Some(version),
            &[
                "pub",
                "--url",
                &relay.https_url(),
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
    assert_connected(&publisher, &relay.https_url(), Some(version));
    let subscriber = Proc::spawn(
        "moq sub",
        moq(
            Some(version),
            &[
                "sub",
                "--url",
                &relay.http_url(),
                "--broadcast",
                &broadcast,
                "--track",
                "text",
            ],
        ),
        Input::Null,
    );
    subscriber.wait_stdout_len(data.len(), TRANSFER);
    assert!(
        subscriber.stdout() == data,
        "{version}: the lines differ through moq-relay"
    );
    assert_connected(&subscriber, &relay.http_url(), Some(version));
}

#[test]
fn pubsub_over_webtransport_through_moq_relay_lite03() {
    pubsub_through_moq_relay("moq-lite-03");
}

#[test]
fn pubsub_over_webtransport_through_moq_relay_lite04() {
    pubsub_through_moq_relay("moq-lite-04");
}

#[test]
fn pubsub_over_webtransport_through_moq_relay_lite05() {
    pubsub_through_moq_relay("moq-lite-05");
}

#[test]
fn our_relay_clusters_with_moq_relay_over_webtransport() {
    let reference = ref_relay();
    // Our relay dials moq-relay over WebTransport (its certificate is self-signed).
    let mut cmd = Command::new(moq_binary());
    cmd.args([
        "--tls-disable-verify",
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--drain",
        "0",
        "--cluster-connect",
        &reference.https_url(),
    ]);
    let ours = Proc::spawn("moq relay", cmd, Input::Null);
    let line = ours.wait_line(false, "listening", |l| {
        l.starts_with("moq relay listening on ")
    });
    let port: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .expect("port");
    ours.wait_line(true, "cluster link up", |l| l.contains("cluster link up"));
    let our_url = format!("moqt://localhost:{port}/");

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
