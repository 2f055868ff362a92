//! Interop with the reference peers over raw QUIC on 127.0.0.1: `moq-relay` 0.17.10 and
//! `moq-clock` 0.10.21 (`cargo install moq-relay@0.17.10 moq-clock@0.10.21`), against our `moq`
//! binary. The reference binaries must be on PATH; a missing one fails the test.
//!
//! Every child process is owned by a [`Proc`] guard that kills it on drop (also when a test
//! panics, when it prints the child's output). Nothing waits by sleeping: each step waits for
//! an expected output line, byte count or exit, with a deadline.
//!
//! Scenarios:
//! 1. `moq-clock publish` → `moq relay` (ours, pinned to lite-03) → `moq clock subscribe` and
//!    `moq-clock subscribe`.
//! 2. `moq clock publish` (ours, lite-03) → `moq-relay` → `moq-clock subscribe`: right seconds.
//! 3. `moq clock publish` → `moq-relay` → `moq clock subscribe`, lite-03, -04 and -05.
//! 4. `moq pub` → relay (`moq-relay` and ours) → `moq sub`: 10 000 lines byte-exact, each
//!    version.
//! 5. `moq announced` sees broadcasts come and go through both relays, each version.
//! 6. A subscriber that subscribed before the publisher's first group gets every group of a
//!    20-group burst, through both relays (no `--start-group`: the default, latest).

use std::collections::VecDeque;
use std::path::PathBuf;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use moq_tests::process::*;

/// Deadline for a whole 10 000-line transfer.
const TRANSFER: Duration = Duration::from_secs(45);
/// Lines in the pub/sub round trip.
const LINES: usize = 10_000;

/// Scenario 1: `moq-clock publish` → our relay (lite-03 only) → our `moq clock subscribe` and
/// `moq-clock subscribe`.
#[test]
fn clock_moq_clock_through_our_relay_lite03() {
    let relay = our_relay(Some("moq-lite-03"));
    let url = relay.url();
    let started = now_unix();
    let publisher = Proc::spawn(
        "moq-clock publish",
        moq_clock(&url, "clock", None, "publish"),
        Input::Null,
    );
    let ours = Proc::spawn(
        "moq clock subscribe",
        moq(
            None,
            &["clock", "--url", &url, "--broadcast", "clock", "subscribe"],
        ),
        Input::Null,
    );
    let theirs = Proc::spawn(
        "moq-clock subscribe",
        moq_clock(&url, "clock", None, "subscribe"),
        Input::Null,
    );
    check_clock(&ours, started, 3);
    check_clock(&theirs, started, 3);
    assert_our_version(&ours, "moq-lite-03");
    for (proc, what) in [(&publisher, "publisher"), (&theirs, "subscriber")] {
        proc.wait_line(
            true,
            &format!("({what}) `connected version=moq-lite-03`"),
            |l| l.contains("connected version=moq-lite-03"),
        );
    }
}

/// Scenario 2: our `moq clock publish` (lite-03) → `moq-relay` → `moq-clock subscribe` prints
/// the right seconds; once as moq-clock offers (it picks lite-04 with moq-relay), once pinned
/// to lite-03 end to end.
#[test]
fn clock_ours_through_moq_relay_to_moq_clock_lite03() {
    let relay = ref_relay();
    let url = relay.url();
    let started = now_unix();
    let publisher = Proc::spawn(
        "moq clock publish",
        moq(
            Some("moq-lite-03"),
            &["clock", "--url", &url, "--broadcast", "clock", "publish"],
        ),
        Input::Null,
    );
    let default = Proc::spawn(
        "moq-clock subscribe",
        moq_clock(&url, "clock", None, "subscribe"),
        Input::Null,
    );
    let pinned = Proc::spawn(
        "moq-clock subscribe (lite-03)",
        moq_clock(&url, "clock", Some("moq-lite-03"), "subscribe"),
        Input::Null,
    );
    check_clock(&default, started, 3);
    check_clock(&pinned, started, 3);
    assert_our_version(&publisher, "moq-lite-03");
    pinned.wait_line(true, "`connected version=moq-lite-03`", |l| {
        l.contains("connected version=moq-lite-03")
    });
}

/// Scenario 3: our clock through `moq-relay` to our clock subscriber, both pinned.
fn clock_ours_through_moq_relay(version: &str) {
    let relay = ref_relay();
    let url = relay.url();
    let started = now_unix();
    let publisher = Proc::spawn(
        "moq clock publish",
        moq(
            Some(version),
            &["clock", "--url", &url, "--broadcast", "clock", "publish"],
        ),
        Input::Null,
    );
    let subscriber = Proc::spawn(
        "moq clock subscribe",
        moq(
            Some(version),
            &["clock", "--url", &url, "--broadcast", "clock", "subscribe"],
        ),
        Input::Null,
    );
    check_clock(&subscriber, started, 3);
    assert_our_version(&publisher, version);
    assert_our_version(&subscriber, version);
}

#[test]
fn clock_ours_through_moq_relay_lite03() {
    clock_ours_through_moq_relay("moq-lite-03");
}

#[test]
fn clock_ours_through_moq_relay_lite04() {
    clock_ours_through_moq_relay("moq-lite-04");
}

#[test]
fn clock_ours_through_moq_relay_lite05() {
    clock_ours_through_moq_relay("moq-lite-05");
}

// ---------------------------------------------------------------------------------------------
// Lines: moq pub → relay → moq sub

/// 10 000 lines of mixed shapes: short, empty, non-ASCII with tabs, and up to 1.5 kB.
fn input() -> Arc<Vec<u8>> {
    static INPUT: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    INPUT
        .get_or_init(|| {
            let mut out = Vec::new();
            for i in 0..LINES {
                match i % 10 {
                    3 => {}
                    7 => out.extend_from_slice(format!("ünïcødé ✓ {i}\twith a tab").as_bytes()),
                    9 => out.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, (i * 37) % 1500)),
                    _ => out.extend_from_slice(format!("line {i} payload").as_bytes()),
                }
                out.push(b'\n');
            }
            Arc::new(out)
        })
        .clone()
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "moq-interop-{}-{label}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Panic with the first difference, not with 900 kB of text.
fn assert_same(got: &[u8], expected: &[u8], what: &str) {
    if got == expected {
        return;
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    let line = expected[..at].iter().filter(|b| **b == b'\n').count() + 1;
    panic!(
        "{what}: output differs from the input at byte {at} (line {line}); got {} bytes, \
         expected {}",
        got.len(),
        expected.len()
    );
}

/// How the publisher's input ends.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// stdin is a file: `moq pub` ends the track at EOF and exits once delivered, and
    /// `moq sub` exits cleanly when the track ends.
    File,
    /// For `moq-relay`: when the publisher disconnects, it cancels the downstream
    /// subscription (stream code 0), resetting groups still in flight to the subscriber. That
    /// races the delivery of the tail and of the track end (lite-05 SUBSCRIBE_END; on 03/04,
    /// where only the FIN ends a track, it passed the end on only seconds later in our runs).
    /// So stdin stays open until `moq sub` printed everything; only then does `moq pub`
    /// end the track and leave, and `moq sub` ends cleanly or with that cancel.
    PipeUntilReceived,
}

fn round_trip(relay: &Relay, version: &str, group_lines: usize, ending: Ending) {
    let url = relay.url();
    let data = input();
    let dir = TempDir::new("pubsub");
    let file = dir.0.join("input.txt");
    std::fs::write(&file, data.as_slice()).expect("write the input");
    let group_lines = group_lines.to_string();
    let subscriber = Proc::spawn(
        "moq sub",
        moq(
            Some(version),
            &[
                "sub",
                "--url",
                &url,
                "--broadcast",
                "lines",
                "--track",
                "text",
                // From the first line, even if the relay attaches us after group 0 went by.
                "--start-group",
                "0",
                // A one-shot transfer: end with the publisher rather than wait for it to
                // come back (moq-relay cancels the subscription when it leaves).
                "--no-reconnect",
            ],
        ),
        Input::Null,
    );
    let pub_args = [
        "pub",
        "--url",
        &url,
        "--broadcast",
        "lines",
        "--track",
        "text",
        "--group-lines",
        &group_lines,
    ];
    let what = format!("{version}, --group-lines {group_lines}");
    match ending {
        Ending::File => {
            let mut publisher = Proc::spawn(
                "moq pub",
                moq(Some(version), &pub_args),
                Input::File(file.clone()),
            );
            let mut subscriber = subscriber;
            let status = publisher.wait_exit(TRANSFER);
            assert!(status.success(), "moq pub ({what}) failed: {status}");
            let status = subscriber.wait_exit(WAIT);
            assert!(status.success(), "moq sub ({what}) failed: {status}");
            assert_same(&subscriber.stdout(), &data, &what);
            assert_our_version(&subscriber, version);
            assert_our_version(&publisher, version);
        }
        Ending::PipeUntilReceived => {
            let mut publisher = Proc::spawn(
                "moq pub",
                moq(Some(version), &pub_args),
                Input::Pipe(data.clone()),
            );
            let mut subscriber = subscriber;
            subscriber.wait_stdout_len(data.len(), TRANSFER);
            assert_same(&subscriber.stdout(), &data, &what);
            publisher.close_stdin();
            let status = publisher.wait_exit(WAIT);
            assert!(status.success(), "moq pub ({what}) failed: {status}");
            // moq-relay ends the subscription, cancels it (stream code 0) or, when the
            // publisher's session is gone first, fails it as unroutable (0x36; seen in CI with
            // moq-relay 0.17.10) when the publisher leaves; all end `moq sub`, with everything
            // already printed (asserted above).
            let status = subscriber.wait_exit(WAIT);
            let stderr = subscriber.stderr_text();
            assert!(
                status.success()
                    || stderr.contains("subscription ended with error 0x0")
                    || stderr.contains("subscription ended with error 0x36"),
                "moq sub ({what}) ended unexpectedly: {status}: {stderr}"
            );
            assert_same(&subscriber.stdout(), &data, &what);
            assert_our_version(&subscriber, version);
            assert_our_version(&publisher, version);
        }
    }
}

#[test]
fn pubsub_moq_relay_lite03() {
    round_trip(&ref_relay(), "moq-lite-03", 100, Ending::PipeUntilReceived);
}

#[test]
fn pubsub_moq_relay_lite04() {
    round_trip(&ref_relay(), "moq-lite-04", 100, Ending::PipeUntilReceived);
}

#[test]
fn pubsub_moq_relay_lite05() {
    round_trip(&ref_relay(), "moq-lite-05", 100, Ending::PipeUntilReceived);
}

#[test]
fn pubsub_moq_relay_lite05_group_per_line() {
    round_trip(&ref_relay(), "moq-lite-05", 1, Ending::PipeUntilReceived);
}

#[test]
fn pubsub_our_relay_lite03() {
    round_trip(&our_relay(None), "moq-lite-03", 100, Ending::File);
}

#[test]
fn pubsub_our_relay_lite04() {
    round_trip(&our_relay(None), "moq-lite-04", 100, Ending::File);
}

#[test]
fn pubsub_our_relay_lite05() {
    round_trip(&our_relay(None), "moq-lite-05", 100, Ending::File);
}

#[test]
fn pubsub_our_relay_lite05_group_per_line() {
    round_trip(&our_relay(None), "moq-lite-05", 1, Ending::File);
}

// ---------------------------------------------------------------------------------------------
// Announcements

/// Scenario 5: `moq announced` sees our clock publisher and our `moq pub` come and go, and
/// sees a `moq-clock` publisher come.
fn announced(relay: &Relay, version: &str) {
    let url = relay.url();
    let watcher = Proc::spawn(
        "moq announced",
        moq(Some(version), &["announced", "--url", &url]),
        Input::Null,
    );
    assert_our_version(&watcher, version);

    // Our clock: Ctrl-C closes the session, and the relay withdraws the broadcast.
    let mut clock = Proc::spawn(
        "moq clock publish",
        moq(
            Some(version),
            &[
                "clock",
                "--url",
                &url,
                "--broadcast",
                "room/clock",
                "publish",
            ],
        ),
        Input::Null,
    );
    watcher.wait_line(false, "`+ room/clock`", |l| l == "+ room/clock");
    clock.interrupt();
    let status = clock.wait_exit(WAIT);
    assert!(status.success(), "moq clock publish after Ctrl-C: {status}");
    watcher.wait_line(false, "`- room/clock`", |l| l == "- room/clock");

    // moq pub: announced while stdin is open; EOF ends the track and the broadcast.
    let mut publisher = Proc::spawn(
        "moq pub",
        moq(
            Some(version),
            &[
                "pub",
                "--url",
                &url,
                "--broadcast",
                "room/lines",
                "--track",
                "text",
                "--no-wait",
            ],
        ),
        Input::Pipe(Arc::new(b"hello\n".to_vec())),
    );
    watcher.wait_line(false, "`+ room/lines`", |l| l == "+ room/lines");
    publisher.close_stdin();
    let status = publisher.wait_exit(WAIT);
    assert!(status.success(), "moq pub at EOF: {status}");
    watcher.wait_line(false, "`- room/lines`", |l| l == "- room/lines");

    // moq-clock (lite-03/04 only; it offers both by default).
    let their_version = (version != "moq-lite-05").then_some(version);
    let theirs = Proc::spawn(
        "moq-clock publish",
        moq_clock(&url, "room/theirs", their_version, "publish"),
        Input::Null,
    );
    watcher.wait_line(false, "`+ room/theirs`", |l| l == "+ room/theirs");
    drop(theirs);

    // Nothing else was announced, and every + came before its -.
    let seen = lines(&watcher.stdout());
    let mut expected: VecDeque<&str> = [
        "+ room/clock",
        "- room/clock",
        "+ room/lines",
        "- room/lines",
        "+ room/theirs",
    ]
    .into();
    for line in &seen {
        assert_eq!(
            Some(line.as_str()),
            expected.pop_front(),
            "moq announced ({version}) printed {seen:?}"
        );
    }
}

#[test]
fn announced_moq_relay_lite03() {
    announced(&ref_relay(), "moq-lite-03");
}

#[test]
fn announced_moq_relay_lite04() {
    announced(&ref_relay(), "moq-lite-04");
}

#[test]
fn announced_moq_relay_lite05() {
    announced(&ref_relay(), "moq-lite-05");
}

#[test]
fn announced_our_relay_lite03() {
    announced(&our_relay(None), "moq-lite-03");
}

#[test]
fn announced_our_relay_lite04() {
    announced(&our_relay(None), "moq-lite-04");
}

#[test]
fn announced_our_relay_lite05() {
    announced(&our_relay(None), "moq-lite-05");
}

/// Scenario 6, a few times per relay: `moq sub` (default start) connects and subscribes,
/// then `seq 0 19 | moq pub` publishes 20 one-line groups at once. Every line must be printed,
/// once, in order. (An early report saw `moq sub` through `moq-relay` start at group 12 or
/// 15 in 2 of 20 runs, and a CI run under load lost groups 0-1 to a 500 ms guess; now
/// `moq sub` takes its start group from SUBSCRIBE_OK and waits for it.)
fn early_subscriber_gets_the_whole_burst(relay: &Relay) {
    let url = relay.url();
    let expected: Vec<String> = (0..20).map(|n| n.to_string()).collect();
    for run in 0..3 {
        let subscriber = Proc::spawn(
            "moq sub",
            moq(
                None,
                &[
                    "sub",
                    "--url",
                    &url,
                    "--broadcast",
                    "burst",
                    "--track",
                    "t",
                    "--no-reconnect",
                ],
            ),
            Input::Null,
        );
        subscriber.wait_line(true, "`connected`", |l| l.contains("connected"));
        let data: Vec<u8> = expected
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect();
        let mut publisher = Proc::spawn(
            "moq pub",
            moq(
                None,
                &["pub", "--url", &url, "--broadcast", "burst", "--track", "t"],
            ),
            Input::Pipe(Arc::new(data)),
        );
        let got = subscriber.wait_lines(20, TRANSFER);
        assert_eq!(got, expected, "run {run}: the early subscriber's lines");
        // It knew where its subscription starts (lite-05 SUBSCRIBE_OK), so it waited for
        // group 0 however late it came rather than guess (the early-groups report).
        subscriber.wait_line(true, "`starts at group 0`", |l| {
            l.contains("the subscription starts at group 0")
        });
        publisher.close_stdin();
        let _ = publisher.wait_exit(WAIT);
    }
}

#[test]
fn early_subscriber_moq_relay() {
    early_subscriber_gets_the_whole_burst(&ref_relay());
}

#[test]
fn early_subscriber_our_relay() {
    early_subscriber_gets_the_whole_burst(&our_relay(None));
}
