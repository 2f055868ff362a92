//! `moq publish-media` and `moq watch-media`: fragmented MP4 in and out of the ecosystem's
//! media format (a `catalog.json` track plus one CMAF track per rendition), which
//! `<moq-watch>` plays in a browser and moq-dev's `moq-cli` publishes.
//!
//! Publishing: ffmpeg's fragmented MP4 (any fragment duration) is read incrementally; each
//! track of its `moov` becomes a track `N.m4s` whose frames are one `moof` + `mdat` per sample,
//! stamped with the sample's presentation time in the track's timescale. A video keyframe starts
//! a new group on every track, so groups are GOPs and start with a keyframe; samples before the
//! first keyframe are dropped. The catalog is published once the first keyframe is read (its
//! frame rate and wall clock known), and again whenever a new `moov` changes it.
//!
//! Watching: the catalog names the renditions; their initialization segments, merged, start
//! the output, then every frame is written as it arrives, each track in group order. Joining
//! mid-stream starts at the current group, which begins with a keyframe.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Args;
use moq_proto::media::catalog::{
    AUDIO_PRIORITY, CATALOG_PRIORITY, CATALOG_TRACK, Catalog, Clock, Measured, VIDEO_PRIORITY,
};
use moq_proto::media::{Fmp4Event, Fmp4Reader, InitSegment, Sample, TrackKind, cmaf};
use moq_tokio::{BroadcastPublisher, GroupPublisher, SubscribeParams, TrackInfo, TrackPublisher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::common::{Common, Error, shutdown_signal};

/// How long relays keep a media track's groups for late joiners.
const MEDIA_CACHE: Duration = Duration::from_secs(30);
/// Audio-only input: a new group this often (there are no keyframes to cut at).
const AUDIO_GROUP: Duration = Duration::from_secs(1);
/// Seconds from 1970-01-01 to 2020-01-01, the catalog clock's epoch.
const EPOCH_2020: u64 = 1_577_836_800;

/// `moq publish-media` flags.
#[derive(Args, Debug)]
pub(crate) struct PublishMediaArgs {
    /// The relay URL.
    #[arg(long)]
    pub(crate) url: String,
    /// The broadcast name; `<moq-watch>` expects it to end in `.hang`.
    #[arg(long)]
    pub(crate) broadcast: String,
    /// Fragmented MP4 to read (ffmpeg `-f mp4 -movflags cmaf+separate_moof+delay_moov
    /// -frag_duration 1`); `-` or absent: stdin.
    #[arg(long, value_name = "FILE")]
    pub(crate) input: Option<PathBuf>,
    /// Publish samples at their presentation times (for files; ffmpeg `-re` paces stdin).
    #[arg(long)]
    pub(crate) realtime: bool,
}

/// `moq watch-media` flags.
#[derive(Args, Debug)]
pub(crate) struct WatchMediaArgs {
    /// The relay URL.
    #[arg(long)]
    pub(crate) url: String,
    /// The broadcast to watch.
    #[arg(long)]
    pub(crate) broadcast: String,
    /// Fragmented MP4 output; `-` or absent: stdout (`| ffplay -`, `| ffmpeg -i - …`).
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// The video rendition (a track name from the catalog); default: the largest.
    #[arg(long, value_name = "TRACK")]
    pub(crate) video: Option<String>,
    /// The audio rendition; default: the first.
    #[arg(long, value_name = "TRACK")]
    pub(crate) audio: Option<String>,
    /// No video.
    #[arg(long)]
    pub(crate) no_video: bool,
    /// No audio.
    #[arg(long)]
    pub(crate) no_audio: bool,
    /// Stop after this many video frames (audio-only: audio frames).
    #[arg(long, value_name = "N")]
    pub(crate) frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) duration: Option<f64>,
}

/// A track of the input being published.
struct MediaTrack {
    name: String,
    kind: TrackKind,
    timescale: u32,
    publisher: TrackPublisher,
    group: Option<GroupPublisher>,
    /// Presentation time the current group began at (audio-only cuts).
    group_start: u64,
    /// Fragment sequence numbers for this track's `mfhd`.
    sequence: u32,
    /// Payload bytes in the current group (for the bit rate).
    group_bytes: u64,
    /// What was measured: frame rate at the first keyframe, bit rate over the first group.
    measured: Measured,
}

impl MediaTrack {
    /// A group ended at `at` seconds: the first one long enough gives the bit rate. True
    /// when it was learnt now.
    fn learn_bitrate(&mut self, at: f64) -> bool {
        let start = self.group_start as f64 / f64::from(self.timescale);
        let span = at - start;
        if self.measured.bitrate.is_some() || span < 0.5 || self.group_bytes == 0 {
            return false;
        }
        self.measured.bitrate = Some((self.group_bytes as f64 * 8.0 / span) as u64);
        true
    }
}

/// The publishing state: tracks by MP4 track ID, the catalog last published.
struct Publisher {
    broadcast: BroadcastPublisher,
    catalog_track: TrackPublisher,
    init: Option<InitSegment>,
    tracks: HashMap<u32, MediaTrack>,
    catalog: Option<Catalog>,
    started: bool,
    has_video: bool,
    /// The first video track: its keyframes cut the audio groups.
    primary_video: Option<u32>,
    /// Wall-clock pacing: the first sample's presentation time (seconds) and when it went.
    pace: Option<(f64, tokio::time::Instant)>,
    realtime: bool,
}

fn now_since_2020_us() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_micros() as u64).saturating_sub(EPOCH_2020 * 1_000_000)
}

impl Publisher {
    /// A new `moov`: tracks for new track IDs (named `N.m4s` in `moov` order).
    async fn handle_init(&mut self, init: InitSegment) -> Result<(), Error> {
        self.has_video = init.tracks.iter().any(|t| t.kind == TrackKind::Video);
        self.primary_video = init
            .tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video)
            .map(|t| t.track_id);
        for (index, track) in init.tracks.iter().enumerate() {
            if self.tracks.contains_key(&track.track_id) {
                continue;
            }
            let name = format!("{index}.m4s");
            let priority = match track.kind {
                TrackKind::Video => VIDEO_PRIORITY,
                TrackKind::Audio => AUDIO_PRIORITY,
            };
            let info = TrackInfo {
                priority,
                ordered: false,
                max_latency: MEDIA_CACHE,
                timescale: u64::from(track.timescale.max(1)),
            };
            let publisher = self.broadcast.create_track(&name, info)?;
            tracing::info!(track = %name, codec = %track.codec, "track");
            self.tracks.insert(
                track.track_id,
                MediaTrack {
                    name,
                    kind: track.kind,
                    timescale: track.timescale.max(1),
                    publisher,
                    group: None,
                    group_start: 0,
                    sequence: 0,
                    group_bytes: 0,
                    measured: Measured::default(),
                },
            );
        }
        self.init = Some(init);
        // A changed moov republishes the catalog (once the stream has started).
        if self.started {
            self.publish_catalog(None).await?;
        }
        Ok(())
    }

    /// Publish the catalog if it changed: `first` (a keyframe sample and its track's
    /// timescale) sets the frame rate and the wall clock.
    async fn publish_catalog(&mut self, first: Option<(&Sample, u32)>) -> Result<(), Error> {
        let Some(init) = &self.init else {
            return Ok(());
        };
        let tracks = &self.tracks;
        let previous = self.catalog.clone();
        let mut catalog = Catalog::from_init(
            init,
            |t| tracks.get(&t.track_id).map(|m| m.name.clone()),
            |t| {
                tracks
                    .get(&t.track_id)
                    .map(|m| m.measured)
                    .unwrap_or_default()
            },
        )?;
        catalog.clock = match (first, &previous) {
            (Some((sample, timescale)), _) => {
                let pts_us = sample.presentation_time() as u128 * 1_000_000 / u128::from(timescale);
                Some(Clock {
                    wall: now_since_2020_us().saturating_sub(pts_us as u64),
                    timescale: 1_000_000,
                })
            }
            (None, Some(old)) => old.clock,
            (None, None) => None,
        };
        if self.catalog.as_ref() == Some(&catalog) {
            return Ok(());
        }
        let mut group = self.catalog_track.append_group()?;
        let json = catalog.to_json();
        tracing::info!(bytes = json.len(), "catalog");
        group
            .write_frame_at(now_since_2020_us() / 1000, json)
            .await?;
        group.finish();
        self.catalog = Some(catalog);
        Ok(())
    }

    async fn handle_sample(&mut self, sample: Sample) -> Result<(), Error> {
        let Some(kind) = self.tracks.get(&sample.track_id).map(|t| t.kind) else {
            return Ok(());
        };
        let video_key = kind == TrackKind::Video && sample.keyframe;
        if !self.started {
            // Begin at a keyframe (or any audio sample when there is no video).
            if !(video_key || (!self.has_video && kind == TrackKind::Audio)) {
                return Ok(());
            }
            self.started = true;
            let timescale = self.tracks[&sample.track_id].timescale;
            if let Some(track) = self.tracks.get_mut(&sample.track_id)
                && kind == TrackKind::Video
                && sample.duration > 0
            {
                let fps = f64::from(timescale) / f64::from(sample.duration);
                track.measured.framerate = Some((fps * 100.0).round() / 100.0);
            }
            self.publish_catalog(Some((&sample, timescale))).await?;
        }
        if self.realtime {
            let timescale = self.tracks[&sample.track_id].timescale;
            let pts = sample.presentation_time() as f64 / f64::from(timescale);
            let (first, at) = *self.pace.get_or_insert((pts, tokio::time::Instant::now()));
            let due = at + Duration::from_secs_f64((pts - first).max(0.0));
            tokio::time::sleep_until(due).await;
        }
        if video_key {
            // A keyframe starts a new group on its own track, and the primary (first) video
            // track's keyframes cut the audio tracks too: groups are GOPs, audio aligned.
            let primary = self.primary_video == Some(sample.track_id);
            let timescale = self.tracks[&sample.track_id].timescale;
            let at = sample.presentation_time() as f64 / f64::from(timescale);
            let mut learnt = false;
            for (id, track) in self.tracks.iter_mut() {
                let cut = *id == sample.track_id || (primary && track.kind == TrackKind::Audio);
                if cut && let Some(group) = track.group.take() {
                    group.finish();
                    learnt |= track.learn_bitrate(at);
                }
            }
            // The first whole group gives each track's bit rate: tell players (they choose
            // renditions by it), once.
            if learnt {
                self.publish_catalog(None).await?;
            }
        }
        let Some(track) = self.tracks.get_mut(&sample.track_id) else {
            return Ok(());
        };
        let pts = sample.presentation_time();
        let mut learnt = false;
        if kind == TrackKind::Audio && !self.has_video && track.group.is_some() {
            let elapsed = pts.saturating_sub(track.group_start);
            if elapsed >= AUDIO_GROUP.as_secs() * u64::from(track.timescale)
                && let Some(group) = track.group.take()
            {
                group.finish();
                learnt = track.learn_bitrate(pts as f64 / f64::from(track.timescale));
            }
        }
        if track.group.is_none() {
            if kind == TrackKind::Video && !sample.keyframe {
                // Another rendition's first keyframe started the stream; this one's groups
                // begin at its own keyframe.
                return Ok(());
            }
            track.group = Some(track.publisher.append_group()?);
            track.group_start = pts;
            track.group_bytes = 0;
        }
        track.group_bytes += sample.data.len() as u64;
        track.sequence = track.sequence.wrapping_add(1);
        let fragment = cmaf::sample_fragment(sample.track_id, track.sequence, &sample, 0);
        if let Some(group) = track.group.as_mut() {
            group.write_frame_at(pts, fragment).await?;
        }
        if learnt {
            self.publish_catalog(None).await?;
        }
        Ok(())
    }

    fn finish(&mut self) {
        for track in self.tracks.values_mut() {
            if let Some(group) = track.group.take() {
                group.finish();
            }
        }
    }
}

async fn open_input(path: &Option<PathBuf>) -> Result<Box<dyn AsyncRead + Unpin + Send>, Error> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            let file = tokio::fs::File::open(p)
                .await
                .map_err(|e| format!("cannot open {}: {e}", p.display()))?;
            Ok(Box::new(file))
        }
        _ => Ok(Box::new(tokio::io::stdin())),
    }
}

pub(crate) async fn publish(common: &Common, args: PublishMediaArgs) -> Result<(), Error> {
    if !args.broadcast.ends_with(".hang") {
        tracing::warn!(broadcast = %args.broadcast, "<moq-watch> expects a broadcast name ending in .hang");
    }
    let mut input = open_input(&args.input).await?;
    let (endpoint, session) = common.connect(&args.url).await?;
    let broadcast = endpoint.publish(&args.broadcast)?;
    let catalog_track = broadcast.create_track(
        CATALOG_TRACK,
        TrackInfo {
            priority: CATALOG_PRIORITY,
            ordered: false,
            max_latency: MEDIA_CACHE,
            timescale: 1000,
        },
    )?;
    let mut publisher = Publisher {
        broadcast,
        catalog_track,
        init: None,
        tracks: HashMap::new(),
        catalog: None,
        started: false,
        has_video: false,
        primary_video: None,
        pace: None,
        realtime: args.realtime,
    };
    let mut reader = Fmp4Reader::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            n = input.read(&mut buf) => n.map_err(|e| format!("reading the input: {e}"))?,
            reason = session.closed() => return Err(format!("session closed: {reason}").into()),
            _ = shutdown_signal() => break,
        };
        if n == 0 {
            break;
        }
        reader.push(&buf[..n]);
        while let Some(event) = reader
            .next_event()
            .map_err(|e| format!("the input is not usable fragmented MP4: {e}"))?
        {
            match event {
                Fmp4Event::Init(init) => publisher.handle_init(init).await?,
                Fmp4Event::Fragment(fragment) => {
                    for sample in fragment.samples {
                        publisher.handle_sample(sample).await?;
                    }
                }
                _ => {}
            }
        }
    }
    if reader.buffered() > 0 {
        tracing::warn!(bytes = reader.buffered(), "the input ended inside a box");
    }
    publisher.finish();
    tokio::select! {
        _ = endpoint.flushed() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
    }
    drop(publisher);
    crate::common::close(&endpoint).await;
    Ok(())
}

/// One rendition being received.
struct Wanted {
    name: String,
    kind: TrackKind,
    /// The track ID in the merged output, when it had to change.
    renumber: Option<u32>,
}

pub(crate) async fn watch(common: &Common, args: WatchMediaArgs) -> Result<(), Error> {
    let (endpoint, session) = common.connect(&args.url).await?;
    // The latest catalog: the newest group's frame.
    let mut catalog_sub = endpoint.subscribe_with(
        &args.broadcast,
        CATALOG_TRACK,
        SubscribeParams {
            max_latency: Duration::from_secs(5),
            ..SubscribeParams::default()
        },
    )?;
    let catalog = tokio::select! {
        catalog = async {
            let mut group = catalog_sub.next_group().await.ok_or("the broadcast has no catalog")?;
            let frame = group.read_frame().await.ok_or("empty catalog group")?;
            Catalog::parse(&frame.payload).map_err(Error::from)
        } => catalog?,
        reason = session.closed() => return Err(format!("session closed: {reason}").into()),
        _ = tokio::time::sleep(Duration::from_secs(15)) => return Err(format!("no catalog for {} within 15 s", args.broadcast).into()),
    };
    drop(catalog_sub);

    let mut wanted = Vec::new();
    let mut inits: Vec<Bytes> = Vec::new();
    if let (false, Some(video)) = (args.no_video, &catalog.video) {
        let pick = match &args.video {
            Some(name) => video
                .renditions
                .get_key_value(name)
                .ok_or_else(|| format!("no video rendition {name:?} in the catalog"))?,
            None => video
                .renditions
                .iter()
                .max_by_key(|(_, r)| {
                    u64::from(r.coded_width.unwrap_or(0)) * u64::from(r.coded_height.unwrap_or(0))
                })
                .ok_or("the catalog lists no video rendition")?,
        };
        inits.push(pick.1.container.init()?);
        wanted.push(Wanted {
            name: pick.0.clone(),
            kind: TrackKind::Video,
            renumber: None,
        });
    }
    if let (false, Some(audio)) = (args.no_audio, &catalog.audio) {
        let pick = match &args.audio {
            Some(name) => audio
                .renditions
                .get_key_value(name)
                .ok_or_else(|| format!("no audio rendition {name:?} in the catalog"))?,
            None => audio
                .renditions
                .iter()
                .next()
                .ok_or("the catalog lists no audio rendition")?,
        };
        inits.push(pick.1.container.init()?);
        wanted.push(Wanted {
            name: pick.0.clone(),
            kind: TrackKind::Audio,
            renumber: None,
        });
    }
    if wanted.is_empty() {
        return Err("nothing to watch: the catalog has no (selected) rendition".into());
    }
    // Tracks must keep distinct IDs in one file: renumber the later ones that collide.
    let mut used = Vec::new();
    for (index, init) in inits.iter_mut().enumerate() {
        let mut reader = Fmp4Reader::new();
        reader.push(init);
        let id = match reader.next_event()? {
            Some(Fmp4Event::Init(i)) => i
                .tracks
                .first()
                .map(|t| t.track_id)
                .ok_or("an init segment without a track")?,
            _ => return Err("an unreadable init segment in the catalog".into()),
        };
        if used.contains(&id) {
            let new = used.iter().max().copied().unwrap_or(0) + 1;
            *init = cmaf::renumber_init(init, new)?;
            wanted[index].renumber = Some(new);
            used.push(new);
        } else {
            used.push(id);
        }
    }
    let refs: Vec<&[u8]> = inits.iter().map(|b| b.as_ref()).collect();
    let merged = cmaf::merge_inits(&refs)?;
    let mut out: Box<dyn AsyncWrite + Unpin + Send> = match &args.output {
        Some(p) if p.as_os_str() != "-" => Box::new(
            tokio::fs::File::create(p)
                .await
                .map_err(|e| format!("cannot create {}: {e}", p.display()))?,
        ),
        _ => Box::new(tokio::io::stdout()),
    };
    out.write_all(&merged).await?;
    out.flush().await?;
    tracing::info!(tracks = ?wanted.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), "watching");

    // One reader per track, in group order; frames meet here in arrival order.
    let (tx, mut rx) = mpsc::channel::<(TrackKind, Bytes)>(256);
    let count_kind = if wanted.iter().any(|w| w.kind == TrackKind::Video) {
        TrackKind::Video
    } else {
        TrackKind::Audio
    };
    for want in wanted {
        let mut subscription = endpoint.subscribe_with(
            &args.broadcast,
            &want.name,
            SubscribeParams {
                ordered: true,
                max_latency: Duration::from_secs(5),
                ..SubscribeParams::default()
            },
        )?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut last: Option<u64> = None;
            while let Some(mut group) = subscription.next_group().await {
                if last.is_some_and(|l| group.seq() <= l) {
                    continue;
                }
                last = Some(group.seq());
                while let Some(frame) = group.read_frame().await {
                    let payload = match want.renumber {
                        Some(id) => match cmaf::renumber_fragment(&frame.payload, id) {
                            Ok(p) => p,
                            Err(err) => {
                                tracing::warn!(%err, track = %want.name, "unreadable fragment skipped");
                                continue;
                            }
                        },
                        None => frame.payload,
                    };
                    if tx.send((want.kind, payload)).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
    let mut counted = 0u64;
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            reason = session.closed() => return Err(format!("session closed: {reason}").into()),
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => break,
            _ = shutdown_signal() => break,
        };
        let Some((kind, fragment)) = next else {
            break;
        };
        if let Err(err) = out.write_all(&fragment).await {
            // A reader that went away (`| head`, a closed player) ends the watch quietly.
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(err.into());
        }
        if kind == count_kind {
            counted += 1;
            if args.frames.is_some_and(|n| counted >= n) {
                break;
            }
        }
    }
    out.flush().await?;
    crate::common::close(&endpoint).await;
    Ok(())
}
