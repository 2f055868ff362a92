//! The relay as an operator runs it, on 127.0.0.1: the HTTP API (`/health`, `/announced`,
//! `/fetch`, `/metrics` parsed as Prometheus text and checked against a known run), the TOML
//! config file with `MOQ_*` environment variables, and SIGTERM draining like Ctrl-C.

use std::process::Command;
use std::time::{Duration, Instant};

use moq_tests::http::{self, Sample, metrics, value};
use moq_tests::process::*;

/// Poll `/metrics` until `pred` holds (a state to reach, not a timing assumption).
fn until_metrics(port: u16, what: &str, pred: impl Fn(&[Sample]) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let samples = metrics(port);
        if pred(&samples) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SUBSCRIBERS: usize = 3;
const FRAMES: usize = 20;

/// On one thread and on four (whatever threads the clients land on, `/metrics` adds them up
/// and leaves the links between threads out).
#[test]
fn the_http_api_answers_and_the_metrics_count_a_known_run() {
    for threads in [1, 4] {
        http_api_and_metrics_on(threads);
    }
}

fn http_api_and_metrics_on(threads: u8) {
    let relay = our_relay_with(&["--threads", &threads.to_string()]);
    let port = relay.port;
    let health = http::get(port, "/health");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    // One publisher, one group of FRAMES frames kept open (stdin stays open), SUBSCRIBERS
    // subscribers: each gets the whole group (a late joiner from the cache).
    let lines: Vec<String> = (0..FRAMES).map(|i| format!("frame-{i:02}")).collect();
    let input = lines.join("\n") + "\n";
    let publisher = Proc::spawn(
        "moq pub",
        moq(
            None,
            &[
                "pub",
                "--url",
                &relay.url(),
                "--broadcast",
                "live/cam",
                "--track",
                "video",
                "--group-lines",
                "1000",
            ],
        ),
        Input::Pipe(std::sync::Arc::new(input.into_bytes())),
    );
    let subscribers: Vec<Proc> = (0..SUBSCRIBERS)
        .map(|_| {
            Proc::spawn(
                "moq sub",
                moq(
                    None,
                    &[
                        "sub",
                        "--url",
                        &relay.url(),
                        "--broadcast",
                        "live/cam",
                        "--track",
                        "video",
                    ],
                ),
                Input::Null,
            )
        })
        .collect();
    for sub in &subscribers {
        assert_eq!(sub.wait_lines(FRAMES, WAIT), lines);
    }

    // /announced: relative to the prefix, one per line, no trailing newline.
    let live = http::get(port, "/announced/live");
    assert_eq!((live.status, live.text().as_str()), (200, "cam"));
    assert_eq!(http::get(port, "/announced").text(), "live/cam");
    assert!(http::get(port, "/announced/nothing").body.is_empty());

    // /fetch: the latest group's payloads (the group is still open: what arrived, marked so).
    let fetched = http::get(port, "/fetch/live/cam/video");
    let (status, headers, body) = (fetched.status, fetched.headers, fetched.body);
    assert_eq!(status, 200);
    assert_eq!(body, lines.concat().into_bytes());
    assert_eq!(headers.get("x-moq-group").map(String::as_str), Some("0"));
    assert_eq!(
        headers.get("x-moq-group-complete").map(String::as_str),
        Some("false")
    );
    assert_eq!(http::get(port, "/fetch/live/nope/video").status, 404);
    assert_eq!(http::get(port, "/fetch/video").status, 400);

    // The counters of this run.
    let payload: usize = lines.iter().map(String::len).sum();
    let m = metrics(port);
    assert_eq!(value(&m, "moq_frames_in_total", &[]), FRAMES as f64);
    assert_eq!(value(&m, "moq_bytes_in_total", &[]), payload as f64);
    // The fetch above was a local subscription: not counted as delivered to peers.
    assert_eq!(
        value(&m, "moq_frames_out_total", &[]),
        (FRAMES * SUBSCRIBERS) as f64
    );
    assert_eq!(
        value(&m, "moq_bytes_out_total", &[]),
        (payload * SUBSCRIBERS) as f64
    );
    assert_eq!(
        value(
            &m,
            "moq_sessions",
            &[("version", "moq-lite-05"), ("transport", "quic")]
        ),
        (SUBSCRIBERS + 1) as f64
    );
    assert_eq!(value(&m, "moq_subscriptions", &[]), SUBSCRIBERS as f64);
    assert_eq!(value(&m, "moq_broadcasts", &[]), 1.0);
    assert_eq!(
        value(&m, "moq_broadcast_viewers", &[("broadcast", "live/cam")]),
        SUBSCRIBERS as f64
    );
    assert_eq!(
        value(
            &m,
            "moq_broadcast_bytes_out_total",
            &[("broadcast", "live/cam")]
        ),
        (payload * SUBSCRIBERS) as f64
    );
    assert!(value(&m, "moq_cache_bytes", &[]) >= payload as f64);
    assert_eq!(value(&m, "moq_groups_dropped_total", &[]), 0.0);
    assert_eq!(value(&m, "moq_threads", &[]), f64::from(threads));
    assert!(
        !m.iter()
            .any(|s| s.labels.get("transport").map(String::as_str) == Some("in-process")),
        "links between threads are not sessions"
    );

    // Viewers who leave are counted out when their sessions end (no idle timeout).
    for sub in &subscribers {
        sub.interrupt();
    }
    until_metrics(port, "no viewer left", |m| {
        value(m, "moq_broadcast_viewers", &[("broadcast", "live/cam")]) == 0.0
            && value(m, "moq_subscriptions", &[]) == 0.0
    });
    drop(publisher);
}

#[test]
fn a_config_file_and_the_environment_set_the_flags_and_sigterm_drains() {
    let dir = std::env::temp_dir().join(format!("moq-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        r#"
listen = "127.0.0.1:0"
drain = 30
no_websocket = false
[auth]
public = ["anon/**"]
"#,
    )
    .expect("write relay.toml");
    let mut cmd = Command::new(moq_binary());
    cmd.args(["relay", "--config"])
        .arg(&config)
        // The command line wins over the file...
        .args(["--drain", "5"])
        // ...and the environment over the file.
        .env("MOQ_NO_WEBSOCKET", "true");
    let mut relay = relay_from(cmd);
    let auth = relay.wait_stdout_line("the auth line", |l| l.starts_with("auth: "));
    assert!(auth.contains("anon/**"), "{auth}");
    relay.wait_stdout_line("the certificate line", |l| {
        l.starts_with("certificate sha256")
    });
    let stdout = String::from_utf8_lossy(&relay.proc.stdout()).into_owned();
    assert!(
        !stdout.contains("websocket: "),
        "MOQ_NO_WEBSOCKET=true: {stdout}"
    );
    // Anonymous under `anon` is admitted, elsewhere refused.
    let mut refused = Proc::spawn(
        "moq sub",
        moq(
            Some("moq-lite-05"),
            &[
                "sub",
                "--url",
                &format!("moqt://localhost:{}/private", relay.port),
                "--broadcast",
                "x",
                "--track",
                "y",
            ],
        ),
        Input::Null,
    );
    assert!(!refused.wait_exit(WAIT).success());
    let started = now_unix();
    let _publisher = Proc::spawn(
        "moq clock publish",
        moq(
            Some("moq-lite-05"),
            &[
                "clock",
                "publish",
                "--url",
                &format!("moqt://localhost:{}/anon", relay.port),
                "--broadcast",
                "c",
            ],
        ),
        Input::Null,
    );
    let subscriber = Proc::spawn(
        "moq clock subscribe",
        moq(
            Some("moq-lite-05"),
            &[
                "clock",
                "subscribe",
                "--url",
                &format!("moqt://localhost:{}/anon", relay.port),
                "--broadcast",
                "c",
            ],
        ),
        Input::Null,
    );
    check_clock(&subscriber, started, 1);

    // SIGTERM: GOAWAY, drain (at most --drain 5 s, as the command line said), exit 0.
    relay.proc.terminate();
    let status = relay.proc.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{}", relay.proc.stderr_text());
    assert!(relay.proc.stderr_text().contains("shutting down"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_config_file_is_refused_with_its_key() {
    let dir = std::env::temp_dir().join(format!("moq-badconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let config = dir.join("relay.toml");
    std::fs::write(&config, "lisen = \"127.0.0.1:0\"\n").expect("write");
    let out = Command::new(moq_binary())
        .args(["relay", "--config"])
        .arg(&config)
        .output()
        .expect("run moq relay");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown key `lisen`"), "{stderr}");
    // A public pattern without a wildcard names one broadcast: refused at startup.
    let out = Command::new(moq_binary())
        .args(["relay", "--listen", "127.0.0.1:0", "--auth-public", "anon"])
        .output()
        .expect("run moq relay");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("anon/**"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Demand follows viewers, seen from the publisher's side: a library publisher learns at once
/// when the last `moq sub` viewer leaves (its session ends), and again when one returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_learns_when_the_last_viewer_leaves() {
    use moq_tokio::{Endpoint, EngineConfig, NodeConfig, TokioRuntime, TrackInfo};
    use std::sync::Arc;
    let relay = our_relay_with(&[]);
    let mut config = EngineConfig::new(NodeConfig::default());
    config.verification = moq_proto::quic::Verification::DangerousInsecure;
    let endpoint = Endpoint::client(Arc::new(TokioRuntime), config).expect("client endpoint");
    let _session = endpoint.connect(&relay.url()).await.expect("connect");
    let broadcast = endpoint.publish("battery/cam").expect("publish");
    let track = broadcast
        .create_track("video", TrackInfo::default())
        .expect("track");
    let within = |what: &'static str| {
        let track = &track;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                if tokio::time::Instant::now() > deadline {
                    panic!("{what}: not within {WAIT:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                if what.starts_with("watched") == (track.subscribers() > 0) {
                    return;
                }
            }
        }
    };
    for round in 0..2 {
        let viewer = Proc::spawn(
            "moq sub",
            moq(
                None,
                &[
                    "sub",
                    "--url",
                    &relay.url(),
                    "--broadcast",
                    "battery/cam",
                    "--track",
                    "video",
                ],
            ),
            Input::Null,
        );
        tokio::time::timeout(WAIT, track.subscribed())
            .await
            .unwrap_or_else(|_| {
                panic!("round {round}: the viewer's subscription never reached the publisher")
            });
        let _ = track.write_single(bytes::Bytes::from_static(b"hello"));
        // (A returning viewer may also get the cached group of the round before.)
        let lines = tokio::task::block_in_place(|| viewer.wait_lines(1, WAIT));
        assert!(lines.iter().all(|l| l == "hello"), "{lines:?}");
        viewer.interrupt();
        within("nobody watches after the viewer left").await;
        drop(viewer);
    }
}

#[test]
fn the_example_config_file_starts_a_relay() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/relay.toml");
    let mut cmd = Command::new(moq_binary());
    cmd.args(["relay", "--config"])
        .arg(&example)
        .args(["--listen", "127.0.0.1:0", "--drain", "0"]);
    let relay = relay_from(cmd);
    let auth = relay.wait_stdout_line("the auth line", |l| l.starts_with("auth: "));
    assert!(auth.contains("anon/**"), "{auth}");
    assert_eq!(http::get(relay.port, "/health").status, 200);
}

/// `moq bench --processes 2`: the subscribers run in two worker processes, the publisher in
/// the parent, and one merged result comes out: every subscriber's frames counted, no group
/// lost, latencies from every worker.
#[test]
fn bench_spreads_its_subscribers_over_processes() {
    let relay = our_relay_with(&[]);
    let url = relay.url();
    let out = moq(
        None,
        &[
            "bench",
            "--url",
            &url,
            "--subscribers",
            "5",
            "--processes",
            "2",
            "--rate",
            "50",
            "--frames-per-group",
            "10",
            "--warmup",
            "1",
            "--duration",
            "2",
            "--json",
        ],
    )
    .output()
    .expect("moq bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "moq bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> f64 {
        let key = format!("\"{name}\":");
        let at = stdout
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in {stdout}"));
        stdout[at + key.len()..]
            .split([',', '}'])
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad {name} in {stdout}"))
    };
    assert_eq!(field("processes"), 2.0, "{stdout}");
    assert_eq!(field("groups_lost"), 0.0, "{stdout}");
    // Five subscribers each get every frame sent in the window; the window's edges are
    // per process, so allow a few frames either way.
    let (sent, delivered) = (field("sent_frames"), field("delivered_frames"));
    assert!(sent > 0.0, "{stdout}");
    assert!(
        (delivered - 5.0 * sent).abs() <= 5.0 * 0.1 * sent,
        "delivered {delivered} for 5 subscribers of {sent} frames: {stdout}"
    );
    assert!(field("latency_ms_p99") > 0.0, "{stdout}");
}
