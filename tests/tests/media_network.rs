//! Live video under a bandwidth cap: our relay and the publisher in one network namespace,
//! the `<moq-watch>` player (headless Chromium) in another, the link between them capped with
//! `tc` below what the top rendition needs. The publisher sends two renditions (720p at
//! 2.5 Mbit/s, 360p at 0.6 Mbit/s) and audio; the catalog carries each one's measured bit rate.
//!
//! What must hold: the picture keeps playing (the player, measuring the link with moq-lite-05
//! PROBE through our relay, settles on what fits, and the relay sheds old video groups, audio
//! having the higher priority, rather than queueing), audio keeps decoding, and the picture
//! changes. Needs root and iproute2 (the test creates its namespaces and removes them), plus
//! everything the media tests need.

use std::process::Command;

use moq_tests::media::*;
use moq_tests::netns::NetPair;
use moq_tests::process::*;

#[test]
fn a_capped_link_keeps_the_picture_and_the_sound_playing() {
    let net = NetPair::new("bw");
    let port = 4443;
    let relay_addr = format!("{}:{port}", net.a_ip);
    let mut relay_cmd = Command::new(moq_binary());
    relay_cmd.args(["relay", "--listen", &relay_addr, "--drain", "0"]);
    let relay = Proc::spawn("moq relay", net.exec(&net.a, &relay_cmd), Input::Null);
    relay.wait_line(false, "`moq relay listening on`", |l| {
        l.starts_with("moq relay listening on")
    });

    let source = Source {
        video: vec![(1280, 720, 2500), (640, 360, 600)],
        ..Source::default()
    };
    let (_ffmpeg, stdout) = Proc::spawn_source("ffmpeg", net.exec(&net.a, &ffmpeg(&source)));
    let mut publish = Command::new(moq_binary());
    publish.args([
        "--tls-disable-verify",
        "publish-media",
        "--url",
        &format!("moqt://{relay_addr}/"),
        "--broadcast",
        "capped.hang",
    ]);
    let _publisher = Proc::spawn(
        "moq publish-media",
        net.exec(&net.a, &publish),
        Input::From(stdout),
    );

    // 1.6 Mbit/s from the relay to the player: 360p and audio fit, 720p does not.
    net.cap_a_to_b("1600kbit", 200);
    let url = format!("http://{relay_addr}/");
    let shot = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/media-screenshots/capped.png");
    let _ = std::fs::create_dir_all(shot.parent().expect("parent"));
    let shot = shot.display().to_string();
    let player = player_command(
        &url,
        &[
            "--name",
            "capped.hang",
            "--width",
            "1280",
            "--seconds",
            "12",
            "--timeout",
            "40",
            "--screenshot",
            &shot,
        ],
    );
    let report = finish_player(start_player_command(net.exec(&net.b, &player)));
    let r = &report["report"];
    let pretty = || serde_json::to_string_pretty(&report["report"]["video"]).unwrap_or_default();
    assert_eq!(
        report["ok"],
        serde_json::Value::Bool(true),
        "no playback under the cap:\n{report}"
    );
    let painted = r["video"]["renderedDistinctPerSecond"]
        .as_f64()
        .unwrap_or(0.0);
    let audio_rate = r["audio"]["outputsPerSecond"].as_f64().unwrap_or(0.0);
    println!(
        "capped at 1.6 Mbit/s: playing {} ({}x{}), {painted:.1} painted fps, audio {audio_rate:.1} frames/s, \
         player latency {} ms, changed pixels {}",
        r["video"]["track"],
        r["video"]["displayWidth"],
        r["video"]["displayHeight"],
        r["player"]["syncBufferMs"],
        report["canvas"]["changedPixelFraction"],
    );
    println!(
        "decoders: {} video instances, configs {}, events {}",
        r["video"]["instances"], r["video"]["configs"], r["events"]
    );
    // The picture keeps moving and the sound keeps coming (AAC at 48 kHz: 46.9 frames/s).
    // The player switches renditions as its estimate of the link moves (each switch a new
    // decoder), so the rate dips below 30; a stall would be near 0.
    assert!(
        painted >= 8.0,
        "the picture stalled: {painted:.1} fps\n{}",
        pretty()
    );
    assert!(
        audio_rate >= 40.0,
        "audio starved: {audio_rate:.1} frames/s"
    );
}
