//! A real browser against our relay: the ecosystem's browser client, `@moq/net` (pinned in
//! `tests/browser/package-lock.json`), in Debian's headless Chromium, driven by
//! `tests/browser/run.mjs` through playwright-core, on 127.0.0.1, over WebTransport and over
//! WebSocket (QMux, the transport `@moq/net` uses in Safari and older Firefox).
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci && npm run build` in `tests/browser`
//! (`.ci/run` does all of it); a missing piece fails the test with what to install.
//!
//! Scenarios, on moq-lite-03, -04 and -05 (the browser offers one version at a time):
//! 1. a browser publishes → our relay → a second browser subscribes, every frame byte-exact
//!    (empty, one-packet and multi-packet frames), after finding the broadcast through
//!    announcements, and sees it end when the publisher unpublishes and when it disconnects;
//! 2. `moq clock publish` (ours) → our relay → the browser;
//! 3. the browser publishes → our relay → `moq sub` (ours), byte-exact, and a browser clock →
//!    our relay → `moq-clock subscribe` (the reference);
//! 4. every scenario again with the browser forced onto WebSocket;
//! 5. `@moq/net`'s automatic race: WebTransport wins when UDP reaches the relay, WebSocket
//!    when it does not (the relay's QUIC port closed to the browser), as the client reports.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use moq_tests::process::*;
use serde_json::Value;

const VERSIONS: [&str; 3] = ["moq-lite-03", "moq-lite-04", "moq-lite-05"];
/// Debian's Chromium, driven by playwright-core.
const CHROMIUM: &str = "chromium";
/// Debian's Firefox ESR, driven by puppeteer-core over WebDriver BiDi. Its WebTransport takes
/// no `protocols` (no MOQ version reaches the relay, which refuses the CONNECT), so it runs
/// over WebSocket only.
const FIREFOX: &str = "firefox";
/// How long one browser run may take (launch, page load, scenarios).
const BROWSER_RUN: Duration = Duration::from_secs(120);

fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The browser harness, or a failure that says how to install it.
fn browser_command(args: &[&str]) -> Command {
    let dir = harness_dir();
    for (path, fix) in [
        (
            dir.join("node_modules/playwright-core"),
            "run `npm ci` in tests/browser",
        ),
        (
            dir.join("dist/moq-net.js"),
            "run `npm run build` in tests/browser",
        ),
        (
            PathBuf::from("/usr/bin/chromium"),
            "install Chromium: `apt-get update && apt-get install -y chromium`",
        ),
        (
            PathBuf::from("/usr/bin/firefox-esr"),
            "install Firefox ESR: `apt-get update && apt-get install -y firefox-esr`",
        ),
        (
            dir.join("node_modules/puppeteer-core"),
            "run `npm ci` in tests/browser",
        ),
    ] {
        assert!(path.exists(), "{} is missing: {fix}", path.display());
    }
    let node = peer("node");
    let mut cmd = Command::new(node);
    cmd.current_dir(&dir).arg("run.mjs").args(args);
    cmd
}

/// Our relay on an ephemeral port, and its `http://127.0.0.1:PORT/` URL (the browser fetches
/// `/certificate.sha256` there and pins the hash).
fn relay() -> (Relay, String) {
    let relay = our_relay(None);
    let url = format!("http://127.0.0.1:{}/", relay.port);
    (relay, url)
}

/// Run the harness to completion; the JSON document it printed.
fn run_browser(args: &[&str]) -> Value {
    let mut proc = Proc::spawn("browser", browser_command(args), Input::Null);
    let status = proc.wait_exit(BROWSER_RUN);
    let output: Value = serde_json::from_slice(&proc.stdout()).unwrap_or_else(|e| {
        panic!(
            "the browser harness printed no JSON ({e}); stderr:\n{}",
            proc.stderr_text()
        )
    });
    assert!(
        status.success() && output["ok"] == Value::Bool(true),
        "browser run {args:?} failed ({status}):\n{}",
        serde_json::to_string_pretty(&output).unwrap_or_default()
    );
    output
}

/// Check each scenario ran on `version` over `transport`; print its timings.
fn check_scenarios(output: &Value, version: &str, transport: &str) {
    let scenarios = output["scenarios"].as_object().expect("scenarios");
    for (name, result) in scenarios {
        assert_eq!(result["ok"], Value::Bool(true), "{name}: {result}");
        assert_eq!(result["version"], version, "{name}");
        assert_eq!(result["transport"], transport, "{name}");
        println!(
            "{version} over {transport} {name}: timings {}",
            result["timings"]
        );
    }
}

#[test]
fn browser_to_browser_through_our_relay_on_each_version() {
    browser_to_browser(CHROMIUM, "webtransport");
}

#[test]
fn browser_to_browser_over_websocket_on_each_version() {
    browser_to_browser(CHROMIUM, "websocket");
}

#[test]
fn firefox_to_firefox_over_websocket_on_each_version() {
    browser_to_browser(FIREFOX, "websocket");
}

fn browser_to_browser(browser: &str, transport: &str) {
    let (_relay, url) = relay();
    for version in VERSIONS {
        let output = run_browser(&[
            &url,
            "--browser",
            browser,
            "--scenario",
            "pubsub,disconnect",
            "--transport",
            transport,
            "--version",
            version,
        ]);
        check_scenarios(&output, version, transport);
        let pubsub = &output["scenarios"]["pubsub"];
        let read = &pubsub["steps"]["read"];
        assert_eq!(read["frames"], read["expectedFrames"], "{version}");
        assert_eq!(read["mismatches"], Value::Array(vec![]), "{version}");
        // Found through an announcement, and its end announced.
        assert_eq!(pubsub["steps"]["announced"]["path"], "test", "{version}");
        assert!(pubsub["steps"]["ended"]["atMs"].is_number(), "{version}");
        println!(
            "{version}: browser {} launched in {} ms, page loaded in {} ms",
            output["browser"]["version"], output["browser"]["launchMs"], output["page"]["loadMs"]
        );
    }
}

#[test]
fn our_clock_through_our_relay_to_the_browser() {
    clock_to_browser(CHROMIUM, "webtransport");
}

#[test]
fn our_clock_through_our_relay_to_the_browser_over_websocket() {
    clock_to_browser(CHROMIUM, "websocket");
}

#[test]
fn our_clock_through_our_relay_to_firefox_over_websocket() {
    clock_to_browser(FIREFOX, "websocket");
}

fn clock_to_browser(browser: &str, transport: &str) {
    let (relay, url) = relay();
    let moqt = relay.url();
    let _clock = Proc::spawn(
        "moq clock publish",
        moq(
            None,
            &["clock", "publish", "--url", &moqt, "--broadcast", "clock"],
        ),
        Input::Null,
    );
    for version in VERSIONS {
        let output = run_browser(&[
            &url,
            "--browser",
            browser,
            "--scenario",
            "clock",
            "--transport",
            transport,
            "--version",
            version,
        ]);
        check_scenarios(&output, version, transport);
    }
}

/// Start the harness's `publish` or `clockpub` scenario and wait until the broadcast exists.
fn browser_publisher(
    url: &str,
    version: &str,
    (browser, transport): (&str, &str),
    scenario: &str,
    extra: &[&str],
) -> Proc {
    let mut args = vec![
        url,
        "--browser",
        browser,
        "--scenario",
        scenario,
        "--transport",
        transport,
        "--version",
        version,
    ];
    args.extend_from_slice(extra);
    // Stdin stays open until the test is done with the broadcast.
    let proc = Proc::spawn(
        "browser publisher",
        browser_command(&args),
        Input::Pipe(Arc::new(Vec::new())),
    );
    proc.wait_line(true, "published", |l| {
        l.contains("\"progress\":\"published\"")
    });
    proc
}

/// Let the harness finish (close its stdin) and check its report.
fn finish_browser(mut proc: Proc, version: &str, transport: &str) {
    proc.close_stdin();
    let status = proc.wait_exit(BROWSER_RUN);
    let output: Value = serde_json::from_slice(&proc.stdout()).expect("JSON from the harness");
    assert!(status.success(), "{output}");
    check_scenarios(&output, version, transport);
}

#[test]
fn browser_publishes_through_our_relay_to_moq_sub() {
    browser_to_moq_sub(CHROMIUM, "webtransport");
}

#[test]
fn browser_publishes_over_websocket_to_moq_sub() {
    browser_to_moq_sub(CHROMIUM, "websocket");
}

#[test]
fn firefox_publishes_over_websocket_to_moq_sub() {
    browser_to_moq_sub(FIREFOX, "websocket");
}

fn browser_to_moq_sub(browser: &str, transport: &str) {
    const LINES: usize = 300;
    let (relay, url) = relay();
    for version in VERSIONS {
        let broadcast = format!("browser-{version}");
        let publisher = browser_publisher(
            &url,
            version,
            (browser, transport),
            "publish",
            &[
                "--broadcast",
                &broadcast,
                "--track",
                "lines",
                "--lines",
                &LINES.to_string(),
                "--group-lines",
                "30",
            ],
        );
        let subscriber = Proc::spawn(
            "moq sub",
            moq(
                None,
                &[
                    "sub",
                    "--url",
                    &relay.url(),
                    "--broadcast",
                    &broadcast,
                    "--track",
                    "lines",
                    "--start-group",
                    "0",
                ],
            ),
            Input::Null,
        );
        let expected: String = (0..LINES)
            .map(|i| format!("browser line {i:05}\n"))
            .collect();
        subscriber.wait_stdout_len(expected.len(), WAIT);
        assert_eq!(
            String::from_utf8_lossy(&subscriber.stdout()),
            expected,
            "{version}"
        );
        finish_browser(publisher, version, transport);
    }
}

#[test]
fn browser_clock_through_our_relay_to_moq_clock() {
    browser_clock_to_moq_clock(CHROMIUM, "webtransport");
}

#[test]
fn browser_clock_over_websocket_to_moq_clock() {
    browser_clock_to_moq_clock(CHROMIUM, "websocket");
}

#[test]
fn firefox_clock_over_websocket_to_moq_clock() {
    browser_clock_to_moq_clock(FIREFOX, "websocket");
}

fn browser_clock_to_moq_clock(browser: &str, transport: &str) {
    let (relay, url) = relay();
    for version in VERSIONS {
        let broadcast = format!("bclock-{version}");
        let started = now_unix();
        let publisher = browser_publisher(
            &url,
            version,
            (browser, transport),
            "clockpub",
            &["--broadcast", &broadcast],
        );
        let mut cmd = Command::new(peer("moq-clock"));
        cmd.args([
            "--url",
            &relay.url(),
            "--broadcast",
            &broadcast,
            "--tls-disable-verify",
            "subscribe",
        ]);
        let subscriber = Proc::spawn("moq-clock subscribe", cmd, Input::Null);
        check_clock(&subscriber, started, 3);
        drop(subscriber);
        finish_browser(publisher, version, transport);
    }
}

/// `@moq/net`'s own race (WebTransport first, WebSocket 500 ms later), unforced: the client's
/// report says which transport won.
#[test]
fn the_automatic_race_picks_webtransport_and_falls_back_to_websocket() {
    let (_relay, url) = relay();
    let output = run_browser(&[&url, "--scenario", "pubsub", "--transport", "auto"]);
    check_scenarios(&output, "moq-lite-05", "webtransport");

    // QUIC on one port, HTTP and WebSocket on another: the browser's WebTransport attempt
    // finds nothing on that UDP port, and the WebSocket wins the race.
    let http_port = free_tcp_port();
    let listen = format!("127.0.0.1:{http_port}");
    let relay = our_relay_with(&["--web-http-listen", &listen]);
    assert_ne!(relay.port, http_port);
    let url = format!("http://127.0.0.1:{http_port}/");
    let output = run_browser(&[&url, "--scenario", "pubsub", "--transport", "auto"]);
    check_scenarios(&output, "moq-lite-05", "websocket");
    let connect_ms = &output["scenarios"]["pubsub"]["steps"]["subConnect"]["connectMs"];
    println!("fallback to WebSocket connected in {connect_ms} ms");
}

/// Firefox 153 ESR's WebTransport sends no subprotocols, so the relay refuses it (no version
/// in common) and `@moq/net`'s race lands on WebSocket.
#[test]
fn firefox_races_onto_websocket() {
    let (_relay, url) = relay();
    let output = run_browser(&[
        &url,
        "--browser",
        FIREFOX,
        "--scenario",
        "pubsub",
        "--transport",
        "auto",
    ]);
    check_scenarios(&output, "moq-lite-05", "websocket");
}
