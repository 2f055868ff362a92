//! Live video through our relay to a browser, with the ecosystem's pieces: ffmpeg encodes a
//! test pattern (H.264 + AAC or Opus) to fragmented MP4; moq-dev's publisher `moq-cli` 0.14.10
//! or our `moq publish-media` turns it into the ecosystem's media format (a `catalog.json`
//! track plus one CMAF track per rendition); the `<moq-watch>` player of `@moq/watch` 0.4.6
//! decodes it with WebCodecs in Debian's headless Chromium (`tests/player`).
//!
//! Evidence of playback, from the browser: frames out of `VideoDecoder` and `AudioDecoder`
//! (counted by wrapping the classes), about 30 distinct painted frames a second from the 30 fps
//! source, a non-uniform canvas that changes over a second, and a PNG screenshot kept in
//! `target/media-screenshots/`. Each run prints its time to first frame, painted frame rate,
//! the player's latency estimate and the capture-to-paint latency.
//!
//! Needs ffmpeg, moq-cli, moq-relay, node, Chromium and `npm ci && npm run build` in
//! `tests/player`; `.ci/run` installs them and a missing one fails the test.

use std::path::PathBuf;
use std::process::Command;

use moq_tests::media::*;
use moq_tests::process::*;

const VERSIONS: [&str; 3] = ["moq-lite-03", "moq-lite-04", "moq-lite-05"];

fn screenshot(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("media-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir.join(format!("{name}.png")).display().to_string()
}

/// Our relay and its `http://127.0.0.1:PORT/` URL (the player fetches the certificate hash).
fn our() -> (Relay, String) {
    let relay = our_relay(None);
    let url = format!("http://127.0.0.1:{}/", relay.port);
    (relay, url)
}

/// moq-relay and its URL, the same way.
fn reference() -> (Relay, String) {
    let relay = ref_relay();
    let url = format!("http://127.0.0.1:{}/", relay.port);
    (relay, url)
}

/// Play `broadcast` from `url` with `extra` player flags and check it.
fn play(url: &str, broadcast: &str, label: &str, extra: &[&str]) -> Playback {
    let shot = screenshot(label);
    let mut args = vec!["--name", broadcast, "--screenshot", shot.as_str()];
    args.extend_from_slice(extra);
    check_playback(&run_player(url, &args), label)
}

#[test]
fn moq_cli_through_our_relay_plays_in_the_browser_on_each_player_version() {
    let (_relay, url) = our();
    let _publisher = moq_cli(&url, "live.hang", None, &Source::default());
    for version in VERSIONS {
        let label = format!("moq-cli-ours-player-{version}");
        let playback = play(&url, "live.hang", &label, &["--version", version]);
        assert_eq!(playback.version, version, "{label}");
        assert!(playback.audio_decoded > 0, "{label}: audio decoded");
    }
}

#[test]
fn moq_cli_restricted_to_each_version_plays_through_our_relay() {
    let (_relay, url) = our();
    for version in VERSIONS {
        let broadcast = format!("pub-{version}.hang");
        let publisher = moq_cli(&url, &broadcast, Some(version), &Source::default());
        let label = format!("moq-cli-{version}-ours");
        play(&url, &broadcast, &label, &[]);
        drop(publisher);
    }
}

#[test]
fn the_player_first_finds_a_publisher_that_comes_later() {
    let (_relay, url) = our();
    let shot = screenshot("player-first");
    let player = start_player(
        &url,
        &[
            "--name",
            "later.hang",
            "--screenshot",
            &shot,
            "--timeout",
            "40",
        ],
    );
    // The player is waiting for the broadcast's announcement.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _publisher = moq_cli(&url, "later.hang", None, &Source::default());
    check_playback(&finish_player(player), "player-first");
}

#[test]
fn opus_audio_decodes_through_our_relay() {
    let (_relay, url) = our();
    let source = Source {
        audio: Some(Audio::Opus),
        ..Source::default()
    };
    let _publisher = moq_cli(&url, "opus.hang", None, &source);
    let playback = play(&url, "opus.hang", "moq-cli-opus-ours", &[]);
    assert!(playback.audio_decoded > 0);
}

/// The same pipeline through our relay and through moq-relay, one after the other in one run:
/// time to first frame and latency side by side.
#[test]
fn our_relay_and_moq_relay_side_by_side() {
    let mut rows = Vec::new();
    for (name, tag, (relay, url)) in [
        ("moq relay", "ours", our()),
        ("moq-relay", "reference", reference()),
    ] {
        let _publisher = moq_cli(&url, "side.hang", None, &Source::default());
        let label = format!("side-by-side-{tag}");
        let playback = play(&url, "side.hang", &label, &[]);
        rows.push((name, playback));
        drop(relay);
    }
    println!("| relay | first frame | painted fps | player latency | capture to paint |");
    println!("|---|---|---|---|---|");
    for (name, p) in &rows {
        println!(
            "| {name} | {:.0} ms | {:.1} | {:.0} ms | {} |",
            p.first_frame_ms,
            p.painted_fps,
            p.player_latency_ms,
            p.end_to_end_ms
                .map_or("n/a".into(), |m| format!("{m:.0} ms"))
        );
    }
}

#[test]
fn moq_publish_media_plays_through_our_relay_and_moq_relay() {
    for (name, (relay, url)) in [("ours", our()), ("moq-relay", reference())] {
        let publisher = moq_publish_media(&url, "ours.hang", None, &Source::default());
        let label = format!("publish-media-{name}");
        let playback = play(&url, "ours.hang", &label, &[]);
        assert!(playback.audio_decoded > 0, "{label}");
        assert_eq!(playback.size, (640, 360), "{label}");
        drop(publisher);
        drop(relay);
    }
}

#[test]
fn moq_publish_media_on_each_version_plays() {
    let (_relay, url) = our();
    for version in VERSIONS {
        let broadcast = format!("ours-{version}.hang");
        let publisher = moq_publish_media(&url, &broadcast, Some(version), &Source::default());
        play(&url, &broadcast, &format!("publish-media-{version}"), &[]);
        drop(publisher);
    }
}

/// moq-cli → our relay → `moq watch-media` → ffprobe: a valid file with the right codecs,
/// size and frame count.
#[test]
fn moq_watch_media_writes_a_file_ffprobe_reads() {
    let (relay, url) = our();
    let _publisher = moq_cli(&url, "file.hang", None, &Source::default());
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("watch-media.mp4");
    let _ = std::fs::remove_file(&out);
    let moqt = relay.url();
    let out_arg = out.display().to_string();
    // The broadcast appears once moq-cli has connected: retry briefly until it is there.
    let mut last = String::new();
    for _ in 0..10 {
        let mut watch = Proc::spawn(
            "moq watch-media",
            moq(
                None,
                &[
                    "watch-media",
                    "--url",
                    &moqt,
                    "--broadcast",
                    "file.hang",
                    "--frames",
                    "90",
                    "--output",
                    &out_arg,
                ],
            ),
            Input::Null,
        );
        if watch.wait_exit(WAIT).success() {
            last.clear();
            break;
        }
        last = watch.stderr_text();
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(last.is_empty(), "moq watch-media failed:\n{last}");
    let probe = Command::new(peer("ffprobe"))
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,sample_rate,channels",
            "-of",
            "compact",
        ])
        .arg(&out)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&probe.stdout);
    println!("ffprobe: {text}");
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(
        text.contains("codec_name=h264|width=640|height=360|nb_read_frames=90"),
        "video stream: {text}"
    );
    let audio = text
        .lines()
        .find(|l| l.contains("codec_name=aac"))
        .expect("an AAC stream");
    assert!(
        audio.contains("sample_rate=48000") && audio.contains("channels=2"),
        "{audio}"
    );
}

/// Two renditions from one ffmpeg: the catalog lists both; the player picks by its size, and a
/// pinned rendition plays.
#[test]
fn two_renditions_the_player_chooses_among() {
    let (_relay, url) = our();
    let source = Source {
        video: vec![(1280, 720, 2500), (640, 360, 700)],
        ..Source::default()
    };
    let _publisher = moq_publish_media(&url, "abr.hang", None, &source);
    let big = play(
        &url,
        "abr.hang",
        "renditions-large-player",
        &["--width", "1280"],
    );
    assert_eq!(big.size, (1280, 720), "a 1280-pixel-wide player takes 720p");
    let small = play(
        &url,
        "abr.hang",
        "renditions-small-player",
        &["--width", "320"],
    );
    assert_eq!(small.size, (640, 360), "a 320-pixel-wide player takes 360p");
    assert_ne!(big.video_track, small.video_track);
    let pinned = play(
        &url,
        "abr.hang",
        "renditions-pinned",
        &["--width", "1280", "--rendition", &small.video_track],
    );
    assert_eq!(pinned.size, (640, 360), "the pinned rendition plays");
}
