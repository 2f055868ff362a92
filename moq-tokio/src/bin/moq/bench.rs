//! `moq bench`: a load generator for any MOQ Lite relay.
//!
//! P publishers (one connection each) publish `T` tracks each; S subscribers (one connection
//! each) subscribe to every track. Every frame carries its send time and position, so the
//! subscribers measure end-to-end latency and loss. Publishers run at a fixed frame rate per
//! track or, with `--saturate`, as fast as backpressure allows.
//!
//! With `--churn`, the S subscribers are workers that connect, subscribe to every track,
//! read `--churn-frames` frames, disconnect and start over, for the whole duration: a soak of
//! session setup and teardown (reported as sessions per second).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Args;
use moq_tokio::{SubscribeParams, TrackInfo};
use tokio::sync::Mutex;

use crate::common::{Common, Error};
use moq_proto::codes::SessionCode;

/// `moq bench` flags.
#[derive(Args, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// The relay URL (moqt://host:port/path).
    #[arg(long)]
    pub(crate) url: String,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    pub(crate) publishers: usize,
    /// Tracks per publisher.
    #[arg(long, default_value_t = 1)]
    pub(crate) tracks: usize,
    /// Subscribing connections (each subscribes to every track).
    #[arg(long, default_value_t = 1)]
    pub(crate) subscribers: usize,
    /// Frame payload size in bytes (at least 24).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(24..))]
    pub(crate) frame_size: u64,
    /// Frames per second per track (ignored with --saturate).
    #[arg(long, default_value_t = 100)]
    pub(crate) rate: u64,
    /// Publish as fast as backpressure allows.
    #[arg(long)]
    pub(crate) saturate: bool,
    /// Frames per group.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) frames_per_group: u64,
    /// Seconds of measurement (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup: u64,
    /// Subscriber max latency in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub(crate) max_latency: u64,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Churn: each subscriber connects, subscribes, reads `--churn-frames` frames per track,
    /// disconnects and starts over, until the duration ends.
    #[arg(long)]
    pub(crate) churn: bool,
    /// Frames each churning subscriber reads from every track before it disconnects.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) churn_frames: u64,
}

/// What the subscribers saw during the measurement window.
#[derive(Default)]
struct Tally {
    frames: u64,
    bytes: u64,
    latencies_us: Vec<u64>,
    groups_complete: u64,
    groups_lost: u64,
}

pub(crate) async fn run(common: &Common, args: BenchArgs) -> Result<(), Error> {
    if args.churn {
        return churn(common, args).await;
    }
    let epoch = Instant::now();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sent = Arc::new(AtomicU64::new(0));
    let run_id = std::process::id();

    // Subscribers connect first so no group is missed.
    let mut tasks = Vec::new();
    let mut endpoints = Vec::new();
    for _ in 0..args.subscribers {
        let (endpoint, session) = common.connect(&args.url).await?;
        for p in 0..args.publishers {
            for t in 0..args.tracks {
                let params = SubscribeParams {
                    max_latency: Duration::from_millis(args.max_latency),
                    ..SubscribeParams::default()
                };
                let subscription = endpoint.subscribe_with(
                    &format!("bench-{run_id}-{p}"),
                    &format!("t{t}"),
                    params,
                )?;
                tasks.push(tokio::spawn(consume(
                    subscription,
                    epoch,
                    measuring.clone(),
                    tally.clone(),
                    args.frames_per_group,
                )));
            }
        }
        endpoints.push((endpoint, session));
    }

    let (publishers, broadcasts) =
        start_publishers(common, &args, epoch, &stop, &sent, &measuring, &mut tasks).await?;
    endpoints.extend(publishers);

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    measuring.store(true, Ordering::SeqCst);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    measuring.store(false, Ordering::SeqCst);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);

    let mut tally = tally.lock().await;
    tally.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if tally.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((tally.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        tally.latencies_us[i] as f64 / 1000.0
    };
    let frames_s = tally.frames as f64 / elapsed;
    let bytes_s = tally.bytes as f64 / elapsed;
    let (p50, p99, max) = (pct(0.50), pct(0.99), pct(1.0));
    let sent = sent.load(Ordering::SeqCst);
    if args.json {
        println!(
            "{{\"delivered_frames\":{},\"delivered_bytes\":{},\"seconds\":{elapsed:.3},\"frames_per_s\":{frames_s:.1},\"bytes_per_s\":{bytes_s:.1},\"latency_ms_p50\":{p50:.3},\"latency_ms_p99\":{p99:.3},\"latency_ms_max\":{max:.3},\"groups_complete\":{},\"groups_lost\":{},\"sent_frames\":{sent}}}",
            tally.frames, tally.bytes, tally.groups_complete, tally.groups_lost
        );
    } else {
        println!(
            "delivered: {:.0} frames/s, {:.2} MB/s ({} frames in {elapsed:.1} s)",
            frames_s,
            bytes_s / 1e6,
            tally.frames
        );
        println!("latency:   p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
        println!(
            "groups:    {} complete, {} lost; {sent} frames published",
            tally.groups_complete, tally.groups_lost
        );
    }
    for task in tasks {
        task.abort();
    }
    drop(broadcasts);
    for (endpoint, _session) in &endpoints {
        endpoint.close(SessionCode(0), "bench done");
    }
    // Let the CONNECTION_CLOSE frames leave before the process exits: otherwise the relay
    // holds every bench session until its idle timeout.
    for (endpoint, _session) in &endpoints {
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.closed()).await;
    }
    Ok(())
}

type Connected = (moq_tokio::Endpoint, moq_tokio::Session);

/// Connect the publishers, publish `bench-<pid>-<p>` with its tracks, and start a producing
/// task per track (pushed to `tasks`).
async fn start_publishers(
    common: &Common,
    args: &BenchArgs,
    epoch: Instant,
    stop: &Arc<AtomicBool>,
    sent: &Arc<AtomicU64>,
    measuring: &Arc<AtomicBool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(Vec<Connected>, Vec<moq_tokio::BroadcastPublisher>), Error> {
    let run_id = std::process::id();
    let mut publishers = Vec::new();
    let mut broadcasts = Vec::new();
    for p in 0..args.publishers {
        let (endpoint, session) = common.connect(&args.url).await?;
        let broadcast = endpoint.publish(&format!("bench-{run_id}-{p}"))?;
        for t in 0..args.tracks {
            let track = broadcast.create_track(&format!("t{t}"), TrackInfo::default())?;
            tasks.push(tokio::spawn(produce(
                track,
                args.clone(),
                epoch,
                stop.clone(),
                sent.clone(),
                measuring.clone(),
            )));
        }
        publishers.push((endpoint, session));
        broadcasts.push(broadcast);
    }
    Ok((publishers, broadcasts))
}

/// One frame: send time (µs since the bench started), group, index, then padding.
fn frame(epoch: Instant, group: u64, index: u64, size: u64, padding: &Bytes) -> Bytes {
    let mut buf = BytesMut::with_capacity(24);
    buf.put_u64(epoch.elapsed().as_micros() as u64);
    buf.put_u64(group);
    buf.put_u64(index);
    if size <= 24 {
        return buf.freeze();
    }
    let mut whole = BytesMut::with_capacity(size as usize);
    whole.extend_from_slice(&buf);
    whole.extend_from_slice(&padding[..(size - 24) as usize]);
    whole.freeze()
}

async fn produce(
    track: moq_tokio::TrackPublisher,
    args: BenchArgs,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    measuring: Arc<AtomicBool>,
) {
    let padding = Bytes::from(vec![0x42; args.frame_size as usize]);
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let mut next = tokio::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut group) = track.append_group() else {
            return;
        };
        let seq = group.seq();
        for index in 0..args.frames_per_group {
            if !args.saturate {
                next += interval;
                tokio::time::sleep_until(next).await;
            }
            let payload = frame(epoch, seq, index, args.frame_size, &padding);
            if group.write_frame(payload).await.is_err() {
                return;
            }
            if measuring.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            if args.saturate && index % 8 == 7 {
                // Let the driver and the subscribers run between bursts.
                tokio::task::yield_now().await;
            }
        }
        group.finish();
    }
}

async fn consume(
    mut subscription: moq_tokio::Subscription,
    epoch: Instant,
    measuring: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    frames_per_group: u64,
) {
    let mut newest: Option<u64> = None;
    while let Some(group) = subscription.next_group().await {
        let seq = group.seq();
        // Groups skipped over (never started) are lost too.
        if let Some(prev) = newest
            && seq > prev + 1
            && measuring.load(Ordering::Relaxed)
        {
            tally.lock().await.groups_lost += seq - prev - 1;
        }
        newest = Some(newest.map_or(seq, |n| n.max(seq)));
        // Groups are delivered concurrently (newest first under congestion); a reader that
        // waited for each in turn would stall behind an old one.
        tokio::spawn(read_group(
            group,
            epoch,
            measuring.clone(),
            tally.clone(),
            frames_per_group,
        ));
    }
}

async fn read_group(
    mut group: moq_tokio::GroupReader,
    epoch: Instant,
    measuring: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    frames_per_group: u64,
) {
    let mut count = 0u64;
    let mut local = Tally::default();
    while let Some(frame) = group.read_frame().await {
        count += 1;
        if frame.payload.len() >= 24 && measuring.load(Ordering::Relaxed) {
            let sent_us = u64::from_be_bytes(frame.payload[..8].try_into().unwrap_or_default());
            let now_us = epoch.elapsed().as_micros() as u64;
            local.frames += 1;
            local.bytes += frame.payload.len() as u64;
            local.latencies_us.push(now_us.saturating_sub(sent_us));
        }
    }
    if measuring.load(Ordering::Relaxed) {
        if count == frames_per_group {
            local.groups_complete += 1;
        } else {
            local.groups_lost += 1;
        }
    }
    let mut tally = tally.lock().await;
    tally.frames += local.frames;
    tally.bytes += local.bytes;
    tally.latencies_us.extend(local.latencies_us);
    tally.groups_complete += local.groups_complete;
    tally.groups_lost += local.groups_lost;
}

/// What the churning subscribers did.
#[derive(Default)]
struct ChurnTally {
    sessions: u64,
    frames: u64,
    failures: u64,
    first_failure: Option<String>,
}

/// `--churn`: publishers as usual; subscribers that come and go.
async fn churn(common: &Common, args: BenchArgs) -> Result<(), Error> {
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let run_id = std::process::id();
    let mut tasks = Vec::new();
    let (publishers, broadcasts) =
        start_publishers(common, &args, epoch, &stop, &sent, &measuring, &mut tasks).await?;
    let tally = Arc::new(Mutex::new(ChurnTally::default()));
    let tracks: Vec<(String, String)> = (0..args.publishers)
        .flat_map(|p| {
            (0..args.tracks).map(move |t| (format!("bench-{run_id}-{p}"), format!("t{t}")))
        })
        .collect();
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.subscribers {
        let (common, url, tracks) = (common.clone(), args.url.clone(), tracks.clone());
        let (stop, tally) = (stop.clone(), tally.clone());
        let frames = args.churn_frames;
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let outcome = churn_once(&common, &url, &tracks, frames).await;
                let mut tally = tally.lock().await;
                match outcome {
                    Ok(read) => {
                        tally.sessions += 1;
                        tally.frames += read;
                    }
                    Err(e) => {
                        tally.failures += 1;
                        tally.first_failure.get_or_insert(e);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    for task in tasks {
        task.abort();
    }
    drop(broadcasts);
    for (endpoint, _session) in &publishers {
        endpoint.close(SessionCode(0), "bench done");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.closed()).await;
    }
    let tally = tally.lock().await;
    let rate = tally.sessions as f64 / elapsed;
    if args.json {
        println!(
            "{{\"sessions\":{},\"sessions_per_s\":{rate:.1},\"frames\":{},\"failures\":{},\"seconds\":{elapsed:.3}}}",
            tally.sessions, tally.frames, tally.failures
        );
    } else {
        println!(
            "churn:     {} sessions in {elapsed:.1} s ({rate:.1}/s), {} frames read, {} failed{}",
            tally.sessions,
            tally.frames,
            tally.failures,
            tally
                .first_failure
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// One churning session: connect, subscribe to every track, read `frames` frames from each,
/// close. Returns the frames read.
async fn churn_once(
    common: &Common,
    url: &str,
    tracks: &[(String, String)],
    frames: u64,
) -> Result<u64, String> {
    let (endpoint, session) = common.connect(url).await.map_err(|e| e.to_string())?;
    let result = async {
        let mut read = 0;
        for (broadcast, track) in tracks {
            let mut subscription = endpoint
                .subscribe(broadcast, track)
                .map_err(|e| e.to_string())?;
            let mut left = frames;
            while left > 0 {
                let Some(mut group) = subscription.next_group().await else {
                    return Err(format!("{broadcast}/{track} ended"));
                };
                while left > 0 {
                    let Some(_frame) = group.read_frame().await else {
                        break;
                    };
                    left -= 1;
                    read += 1;
                }
            }
        }
        Ok(read)
    };
    let result = tokio::time::timeout(Duration::from_secs(10), result)
        .await
        .unwrap_or_else(|_| Err("no frames within 10 s".into()));
    drop(session);
    endpoint.close(SessionCode(0), "churn");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.closed()).await;
    result
}
