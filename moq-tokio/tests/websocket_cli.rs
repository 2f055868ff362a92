//! The `moq` tool and relay over WebSocket, on 127.0.0.1: `ws://` and `wss://` URLs, the
//! opt-in race (`--websocket-fallback`) and the relay's switches.

use std::process::Command;

use moq_tests::process::*;

/// Our relay with `--web-https-listen` on a free TCP port; that port.
fn relay_with_https(extra: &[&str]) -> (Relay, u16) {
    // Another process may take the probed port before the relay binds it: retry.
    for _ in 0..3 {
        let https = free_tcp_port();
        let listen = format!("127.0.0.1:{https}");
        let mut flags = vec!["--web-https-listen", listen.as_str()];
        flags.extend_from_slice(extra);
        let relay = our_relay_with(&flags);
        // It prints the HTTPS line once bound, or exits with the bind error.
        let line = relay.wait_stdout_line("`https: …` or the certificate line", |l| {
            l.starts_with("https: ") || l.starts_with("certificate sha256")
        });
        if line.starts_with("https: ") {
            return (relay, https);
        }
    }
    panic!("no HTTPS listener came up");
}

fn clock_subscriber(global: &[&str], url: &str, broadcast: &str) -> Proc {
    let mut args = global.to_vec();
    args.extend_from_slice(&["clock", "subscribe", "--url", url, "--broadcast", broadcast]);
    Proc::spawn("moq clock subscribe", moq(None, &args), Input::Null)
}

fn clock_publisher(url: &str, broadcast: &str) -> Proc {
    Proc::spawn(
        "moq clock publish",
        moq(
            None,
            &["clock", "publish", "--url", url, "--broadcast", broadcast],
        ),
        Input::Null,
    )
}

fn assert_transport(proc: &Proc, transport: &str) {
    proc.wait_line(
        true,
        &format!("`connected ... transport={transport}`"),
        |l| l.contains("connected") && l.contains(&format!("transport={transport}")),
    );
}

#[test]
fn the_race_falls_back_to_websocket_when_udp_is_unreachable() {
    let (relay, https) = relay_with_https(&[]);
    let started = now_unix();
    let _publisher = clock_publisher(&relay.url(), "race");
    // Nothing listens on UDP `https`: QUIC gets no answer, wss:// on TCP wins.
    let unreachable = format!("https://localhost:{https}/");
    let fallback = clock_subscriber(&["--websocket-fallback", "200"], &unreachable, "race");
    assert_transport(&fallback, "websocket");
    check_clock(&fallback, started, 2);
    // Where UDP reaches the relay, WebTransport wins.
    let direct = clock_subscriber(&["--websocket-fallback", "200"], &relay.https_url(), "race");
    assert_transport(&direct, "webtransport");
    check_clock(&direct, started, 2);
}

#[test]
fn wss_urls_reach_the_relays_https_listener() {
    let (relay, https) = relay_with_https(&[]);
    let started = now_unix();
    let publisher = clock_publisher(&format!("wss://localhost:{https}/"), "secure");
    assert_transport(&publisher, "websocket");
    let subscriber = clock_subscriber(&[], &relay.ws_url(), "secure");
    assert_transport(&subscriber, "websocket");
    check_clock(&subscriber, started, 2);
}

#[test]
fn a_relay_without_websocket_refuses_the_upgrade() {
    let relay = our_relay_with(&["--no-websocket"]);
    let mut cmd = Command::new(moq_binary());
    cmd.args([
        "--tls-disable-verify",
        "clock",
        "subscribe",
        "--url",
        &relay.ws_url(),
        "--broadcast",
        "x",
    ]);
    let mut proc = Proc::spawn("moq clock subscribe", cmd, Input::Null);
    let status = proc.wait_exit(WAIT);
    assert!(!status.success());
    let stderr = proc.stderr_text();
    assert!(
        stderr.contains("refused") && stderr.contains("404"),
        "expected a refusal naming the HTTP status:\n{stderr}"
    );
}

#[test]
fn a_wss_client_refuses_an_untrusted_certificate_with_a_hint() {
    let (_relay, https) = relay_with_https(&[]);
    let mut cmd = Command::new(moq_binary());
    cmd.args([
        "clock",
        "subscribe",
        "--url",
        &format!("wss://localhost:{https}/"),
        "--broadcast",
        "x",
    ]);
    let mut proc = Proc::spawn("moq clock subscribe", cmd, Input::Null);
    let status = proc.wait_exit(WAIT);
    assert!(!status.success());
    let stderr = proc.stderr_text();
    assert!(
        stderr.contains("self-signed") && stderr.contains("--tls-cert-hash"),
        "expected the untrusted-certificate hint:\n{stderr}"
    );
}
