//! Live-media test helpers: an ffmpeg test pattern, the publishers (moq-dev's `moq-cli` and
//! our `moq publish-media`), and the `<moq-watch>` player harness in `tests/player`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::process::{Input, Proc, moq_binary, peer};

/// How long one player run may take (launch, first frame, measurement, report).
pub const PLAYER_RUN: Duration = Duration::from_secs(90);

/// An audio codec for the test source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audio {
    /// AAC-LC, 128 kbit/s.
    Aac,
    /// Opus, 96 kbit/s.
    Opus,
}

/// A live test source: renditions (width, height, kbit/s) of one test pattern, and audio.
#[derive(Debug, Clone)]
pub struct Source {
    /// Video renditions, largest first.
    pub video: Vec<(u32, u32, u32)>,
    /// Audio.
    pub audio: Option<Audio>,
    /// How long ffmpeg runs.
    pub seconds: u32,
}

impl Default for Source {
    /// 640x360 at 30 fps with AAC stereo, for 60 s.
    fn default() -> Self {
        Self {
            video: vec![(640, 360, 1500)],
            audio: Some(Audio::Aac),
            seconds: 60,
        }
    }
}

/// ffmpeg encoding `source` in real time to fragmented MP4 on stdout, as moq-cli's README and
/// `moq publish-media` want it: H.264 with a keyframe every second and no B-frames, one sample
/// per fragment, stereo audio.
pub fn ffmpeg(source: &Source) -> Command {
    let ffmpeg = peer("ffmpeg");
    let mut cmd = Command::new(ffmpeg);
    let (w, h, _) = source.video.first().copied().unwrap_or((640, 360, 1000));
    cmd.args(["-hide_banner", "-loglevel", "warning", "-nostdin", "-re"]);
    cmd.args(["-f", "lavfi", "-i"]);
    cmd.arg(format!("testsrc2=size={w}x{h}:rate=30"));
    if source.audio.is_some() {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    let n = source.video.len();
    if n > 1 {
        let outputs: String = (0..n).map(|i| format!("[v{i}]")).collect();
        let mut graph = format!("[0:v]split={n}{outputs}");
        for (i, (w, h, _)) in source.video.iter().enumerate() {
            graph.push_str(&format!(";[v{i}]scale={w}:{h}[s{i}]"));
        }
        cmd.args(["-filter_complex", &graph]);
        for i in 0..n {
            cmd.args(["-map", &format!("[s{i}]")]);
        }
    } else {
        cmd.args(["-map", "0:v"]);
    }
    if source.audio.is_some() {
        cmd.args(["-map", "1:a"]);
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        "30",
        "-bf",
        "0",
        "-pix_fmt",
        "yuv420p",
    ]);
    for (i, (_, _, kbps)) in source.video.iter().enumerate() {
        cmd.args([&format!("-b:v:{i}"), &format!("{kbps}k")]);
        cmd.args([&format!("-maxrate:v:{i}"), &format!("{kbps}k")]);
        cmd.args([&format!("-bufsize:v:{i}"), &format!("{}k", kbps / 2)]);
    }
    match source.audio {
        Some(Audio::Aac) => {
            cmd.args(["-ac", "2", "-c:a", "aac", "-b:a", "128k"]);
        }
        Some(Audio::Opus) => {
            cmd.args(["-ac", "2", "-c:a", "libopus", "-b:a", "96k"]);
        }
        None => {}
    }
    cmd.args(["-t", &source.seconds.to_string()]);
    cmd.args([
        "-f",
        "mp4",
        "-movflags",
        "cmaf+separate_moof+delay_moov+skip_trailer",
        "-frag_duration",
        "1",
        "-",
    ]);
    cmd
}

/// A running publisher and its ffmpeg; both stop when dropped.
pub struct Publisher {
    /// The publisher (moq-cli or `moq publish-media`).
    pub proc: Proc,
    /// ffmpeg.
    pub ffmpeg: Proc,
}

/// moq-dev's reference publisher: `ffmpeg | moq-cli --connect URL --broadcast B import fmp4`,
/// restricted to `version` if given. `url` is `http://…` (it fetches the certificate hash).
pub fn moq_cli(url: &str, broadcast: &str, version: Option<&str>, source: &Source) -> Publisher {
    let (ffmpeg, stdout) = Proc::spawn_source("ffmpeg", ffmpeg(source));
    let mut cmd = Command::new(peer("moq-cli"));
    cmd.args(["--connect", url]);
    if let Some(v) = version {
        cmd.args(["--connect-version", v]);
    } else {
        // Left alone it would offer lite-06 first, which our relay does not speak and the
        // reference relay does: pin the newest version both relays share.
        cmd.args(["--connect-version", "moq-lite-05"]);
    }
    cmd.args(["--broadcast", broadcast, "import", "fmp4"]);
    let proc = Proc::spawn("moq-cli", cmd, Input::From(stdout));
    Publisher { proc, ffmpeg }
}

/// Our publisher: `ffmpeg | moq publish-media --url URL --broadcast B`.
pub fn moq_publish_media(
    url: &str,
    broadcast: &str,
    version: Option<&str>,
    source: &Source,
) -> Publisher {
    let (ffmpeg, stdout) = Proc::spawn_source("ffmpeg", ffmpeg(source));
    let mut cmd = Command::new(moq_binary());
    cmd.arg("--tls-disable-verify");
    if let Some(v) = version {
        cmd.args(["--version", v]);
    }
    cmd.args(["publish-media", "--url", url, "--broadcast", broadcast]);
    let proc = Proc::spawn("moq publish-media", cmd, Input::From(stdout));
    Publisher { proc, ffmpeg }
}

fn player_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("player")
}

/// The player harness, or a failure saying how to install it.
pub fn player_command(url: &str, args: &[&str]) -> Command {
    let dir = player_dir();
    for (path, fix) in [
        (
            dir.join("node_modules/playwright-core"),
            "run `npm ci` in tests/player",
        ),
        (
            dir.join("dist/moq-watch.js"),
            "run `npm run build` in tests/player",
        ),
        (
            PathBuf::from("/usr/bin/chromium"),
            "install Chromium: `apt-get update && apt-get install -y chromium`",
        ),
    ] {
        assert!(path.exists(), "{} is missing: {fix}", path.display());
    }
    let mut cmd = Command::new(peer("node"));
    cmd.current_dir(&dir).arg("run.mjs").arg(url).args(args);
    cmd
}

/// Start the player and wait until its element exists (it then looks for the broadcast).
pub fn start_player(url: &str, args: &[&str]) -> Proc {
    start_player_command(player_command(url, args))
}

/// [`start_player`] with a prepared command (e.g. run in a network namespace).
pub fn start_player_command(cmd: Command) -> Proc {
    let proc = Proc::spawn("player", cmd, Input::Null);
    proc.wait_line(false, "`{\"progress\":\"started\"}`", |l| {
        l.contains("\"progress\":\"started\"")
    });
    proc
}

/// Wait for a started player to report.
pub fn finish_player(mut proc: Proc) -> Value {
    proc.wait_exit(PLAYER_RUN);
    let stdout = proc.stdout();
    let text = String::from_utf8_lossy(&stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "the player printed no report ({e}); stderr:\n{}",
            proc.stderr_text()
        )
    })
}

/// Run the player to completion.
pub fn run_player(url: &str, args: &[&str]) -> Value {
    finish_player(start_player(url, args))
}

/// What a player run measured.
#[derive(Debug, Clone)]
pub struct Playback {
    /// Frames out of the browser's VideoDecoder.
    pub video_decoded: u64,
    /// Distinct frames painted per second.
    pub painted_fps: f64,
    /// Element creation to the first painted frame, ms.
    pub first_frame_ms: f64,
    /// Audio frames out of the browser's AudioDecoder.
    pub audio_decoded: u64,
    /// The player's own latency target (what its UI shows), ms.
    pub player_latency_ms: f64,
    /// Capture to paint, from the catalog clock, median ms (when the catalog has a clock).
    pub end_to_end_ms: Option<f64>,
    /// The connection's version and transport.
    pub version: String,
    /// The video track played and its coded size.
    pub video_track: String,
    /// Display width × height of the last decoded frame.
    pub size: (u64, u64),
}

/// Check a report shows real playback (video decoded and painted, a changing non-uniform
/// picture, audio decoded unless muted) and return its numbers. `label` names the run.
pub fn check_playback(report: &Value, label: &str) -> Playback {
    let pretty = || {
        let mut shown = report.clone();
        if let Some(r) = shown.get_mut("report") {
            r["catalog"] = Value::Null;
        }
        serde_json::to_string_pretty(&shown).unwrap_or_default()
    };
    assert_eq!(
        report["ok"],
        Value::Bool(true),
        "{label}: playback failed:\n{}",
        pretty()
    );
    let r = &report["report"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let playback = Playback {
        video_decoded: r["video"]["outputs"].as_u64().unwrap_or(0),
        painted_fps: num(&r["video"]["renderedDistinctPerSecond"]),
        first_frame_ms: num(&r["video"]["firstRenderAfterStartMs"]),
        audio_decoded: r["audio"]["outputs"].as_u64().unwrap_or(0),
        player_latency_ms: num(&r["player"]["syncBufferMs"]),
        end_to_end_ms: r["endToEndLatencyMs"]["median"].as_f64(),
        version: r["connection"]["version"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        video_track: r["video"]["track"].as_str().unwrap_or("").to_string(),
        size: (
            r["video"]["displayWidth"].as_u64().unwrap_or(0),
            r["video"]["displayHeight"].as_u64().unwrap_or(0),
        ),
    };
    let canvas = &report["canvas"];
    println!(
        "{label}: {} ({}x{}) on {}: video {} decoded, {:.1} painted fps, first frame {:.0} ms; audio {} decoded; \
         player latency {:.0} ms; end to end {}; canvas luma stddev {}, {} of pixels changed in 1 s",
        playback.video_track,
        playback.size.0,
        playback.size.1,
        playback.version,
        playback.video_decoded,
        playback.painted_fps,
        playback.first_frame_ms,
        playback.audio_decoded,
        playback.player_latency_ms,
        playback
            .end_to_end_ms
            .map_or("n/a".to_string(), |m| format!("{m:.0} ms")),
        canvas["second"]["stddevLuma"],
        canvas["changedPixelFraction"],
    );
    // A 30 fps source paints about 30 distinct frames a second; a loaded 2-core machine
    // (the browser, ffmpeg, the publisher and the relay share it) was seen at 23. What must
    // hold is that the picture plays, not a frame rate: a stalled pipeline paints a few.
    assert!(
        (15.0..=36.0).contains(&playback.painted_fps),
        "{label}: {:.1} painted frames/s from a 30 fps source:\n{}",
        playback.painted_fps,
        pretty()
    );
    playback
}
