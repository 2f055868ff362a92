//! `moq bench`: a load generator for any MOQ Lite relay.
//!
//! P publishers (one connection each) publish `T` tracks each; S subscribers (one connection
//! each) subscribe to every track. Every frame carries its send time (wall clock, so that
//! processes on one machine agree) and position, so the subscribers measure end-to-end
//! latency and loss. Publishers run at a fixed frame rate per track or, with `--saturate`,
//! as fast as backpressure allows.
//!
//! With `--processes N`, the subscribers are spread over N worker processes (this binary
//! again, in a hidden worker mode) and the publishers stay in this one, so that one
//! process's runtime and allocator are not what saturates first; the workers' counts and
//! latency histograms are merged into one result.
//!
//! With `--churn`, the S subscribers are workers that connect, subscribe to every track,
//! read `--churn-frames` frames, disconnect and start over, for the whole duration: a soak of
//! session setup and teardown (reported as sessions per second).

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

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
    /// Spread the subscribers over this many worker processes (the publishers stay in
    /// this one); the result is merged.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) processes: u64,
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
    /// Worker mode (set by `--processes`): subscribe only, to the broadcasts of run
    /// `--run-id`, and talk to the parent over stdin/stdout.
    #[arg(long, hide = true)]
    pub(crate) worker: bool,
    /// The broadcasts' run ID (`bench-<run>-<publisher>`; default: this process's ID).
    #[arg(long, hide = true)]
    pub(crate) run_id: Option<u32>,
}

impl BenchArgs {
    fn run_id(&self) -> u32 {
        self.run_id.unwrap_or_else(std::process::id)
    }
}

/// Latency histogram: log-scale buckets 1 % wide from 1 µs, so that processes can send
/// theirs to the parent and percentiles are taken over every sample.
#[derive(Default, Clone, Debug, PartialEq)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

impl Histogram {
    const GROWTH: f64 = 1.01;

    fn bucket(us: u64) -> usize {
        ((us.max(1) as f64).ln() / Self::GROWTH.ln()) as usize
    }

    fn record(&mut self, us: u64) {
        let bucket = Self::bucket(us);
        if self.counts.len() <= bucket {
            self.counts.resize(bucket + 1, 0);
        }
        self.counts[bucket] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The `p` quantile (0..=1) in milliseconds: the middle of its bucket (within 0.5 %),
    /// the exact maximum for 1.
    fn quantile_ms(&self, p: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        if p >= 1.0 {
            return self.max_us as f64 / 1000.0;
        }
        let rank = ((self.total - 1) as f64 * p).round() as u64;
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen > rank {
                let us = Self::GROWTH
                    .powf(bucket as f64 + 0.5)
                    .min(self.max_us as f64);
                return us / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    /// `max total bucket:count,...` (non-empty buckets only).
    fn encode(&self) -> String {
        let buckets: Vec<String> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, c)| format!("{b}:{c}"))
            .collect();
        format!("{} {} {}", self.max_us, self.total, buckets.join(","))
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let max_us = parts.next()?.parse().ok()?;
        let total = parts.next()?.parse().ok()?;
        let mut histogram = Histogram {
            counts: Vec::new(),
            total,
            max_us,
        };
        for pair in parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let (bucket, count) = pair.split_once(':')?;
            let bucket: usize = bucket.parse().ok()?;
            // A bucket past 1 000 s of latency is not a latency.
            if bucket > 3000 {
                return None;
            }
            if histogram.counts.len() <= bucket {
                histogram.counts.resize(bucket + 1, 0);
            }
            histogram.counts[bucket] = count.parse().ok()?;
        }
        Some(histogram)
    }
}

/// What the subscribers saw during the measurement window.
#[derive(Default, Debug, PartialEq)]
struct Tally {
    frames: u64,
    bytes: u64,
    latency: Histogram,
    groups_complete: u64,
    groups_lost: u64,
}

impl Tally {
    fn merge(&mut self, other: &Tally) {
        self.frames += other.frames;
        self.bytes += other.bytes;
        self.latency.merge(&other.latency);
        self.groups_complete += other.groups_complete;
        self.groups_lost += other.groups_lost;
    }

    /// One line for the parent: `tally <frames> <bytes> <complete> <lost> <histogram>`.
    fn encode(&self) -> String {
        format!(
            "tally {} {} {} {} {}",
            self.frames,
            self.bytes,
            self.groups_complete,
            self.groups_lost,
            self.latency.encode()
        )
    }

    fn decode(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("tally ")?;
        let mut parts = rest.splitn(5, ' ');
        let mut number = || parts.next()?.parse::<u64>().ok();
        let (frames, bytes, groups_complete, groups_lost) =
            (number()?, number()?, number()?, number()?);
        Some(Tally {
            frames,
            bytes,
            groups_complete,
            groups_lost,
            latency: Histogram::decode(parts.next()?)?,
        })
    }
}

/// Microseconds since the Unix epoch: frames carry it, so that a worker process can tell
/// a frame's age.
fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub(crate) async fn run(common: &Common, args: BenchArgs) -> Result<(), Error> {
    if args.churn {
        if args.processes > 1 {
            return Err("--churn runs in one process (no --processes)".into());
        }
        return churn(common, args).await;
    }
    if args.worker {
        return worker(common, args).await;
    }
    if args.processes > 1 {
        return spread(common, args).await;
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sent = Arc::new(AtomicU64::new(0));

    // Subscribers connect first so no group is missed.
    let mut tasks = Vec::new();
    let mut endpoints = subscribe_all(common, &args, &measuring, &tally, &mut tasks).await?;
    let (publishers, broadcasts) =
        start_publishers(common, &args, &stop, &sent, &measuring, &mut tasks).await?;
    endpoints.extend(publishers);

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    measuring.store(true, Ordering::SeqCst);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    measuring.store(false, Ordering::SeqCst);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);

    report(
        &args,
        &*tally.lock().await,
        elapsed,
        sent.load(Ordering::SeqCst),
    );
    shut_down(tasks, broadcasts, &endpoints).await;
    Ok(())
}

/// Print the result, as text or one JSON object.
fn report(args: &BenchArgs, tally: &Tally, elapsed: f64, sent: u64) {
    let frames_s = tally.frames as f64 / elapsed;
    let bytes_s = tally.bytes as f64 / elapsed;
    let latency = &tally.latency;
    let (p50, p99, max) = (
        latency.quantile_ms(0.50),
        latency.quantile_ms(0.99),
        latency.quantile_ms(1.0),
    );
    if args.json {
        println!(
            "{{\"delivered_frames\":{},\"delivered_bytes\":{},\"seconds\":{elapsed:.3},\"frames_per_s\":{frames_s:.1},\"bytes_per_s\":{bytes_s:.1},\"latency_ms_p50\":{p50:.3},\"latency_ms_p99\":{p99:.3},\"latency_ms_max\":{max:.3},\"groups_complete\":{},\"groups_lost\":{},\"sent_frames\":{sent},\"processes\":{}}}",
            tally.frames, tally.bytes, tally.groups_complete, tally.groups_lost, args.processes
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
}

async fn shut_down(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    broadcasts: Vec<moq_tokio::BroadcastPublisher>,
    endpoints: &[Connected],
) {
    for task in tasks {
        task.abort();
    }
    drop(broadcasts);
    for (endpoint, _session) in endpoints {
        endpoint.close(SessionCode(0), "bench done");
    }
    // Let the CONNECTION_CLOSE frames leave before the process exits: otherwise the relay
    // holds every bench session until its idle timeout.
    for (endpoint, _session) in endpoints {
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.closed()).await;
    }
}

/// Connect `--subscribers` sessions, each subscribing to every track of the run; the
/// readers are pushed to `tasks`.
async fn subscribe_all(
    common: &Common,
    args: &BenchArgs,
    measuring: &Arc<AtomicBool>,
    tally: &Arc<Mutex<Tally>>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Vec<Connected>, Error> {
    let run_id = args.run_id();
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
                    measuring.clone(),
                    tally.clone(),
                    args.frames_per_group,
                )));
            }
        }
        endpoints.push((endpoint, session));
    }
    Ok(endpoints)
}

/// What a worker's output reader reports when the worker's stdout closes.
const WORKER_GONE: &str = "\0gone";

/// `--processes N`: the subscribers in N workers, the publishers here.
async fn spread(common: &Common, args: BenchArgs) -> Result<(), Error> {
    let run_id = args.run_id();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    // The worker gets this command line back (flags given again override), made a worker.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let processes = args.processes as usize;
    let mut workers = Workers(Vec::new());
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    for w in 0..processes {
        let share = args.subscribers / processes + usize::from(w < args.subscribers % processes);
        if share == 0 {
            continue;
        }
        let mut child = std::process::Command::new(&exe)
            .args(&argv)
            .args(["--worker", "--processes", "1", "--run-id"])
            .arg(run_id.to_string())
            .arg("--subscribers")
            .arg(share.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a bench worker: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("a bench worker without pipes".into());
        };
        let tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((w, line)).is_err() {
                    return;
                }
            }
            // The worker is gone (it exits after its tally, or failed before).
            let _ = tx.send((w, WORKER_GONE.into()));
        });
        workers.0.push((child, stdin));
    }
    drop(lines_tx);
    // Every worker has subscribed before the first group is published.
    let mut ready = 0;
    while ready < workers.0.len() {
        match tokio::time::timeout(Duration::from_secs(120), lines.recv()).await {
            Ok(Some((_, line))) if line == "ready" => ready += 1,
            Ok(Some((w, line))) if line == WORKER_GONE => {
                return Err(format!("bench worker {w} ended before it was ready").into());
            }
            Ok(Some((w, line))) => tracing::debug!(worker = w, line, "bench worker"),
            Ok(None) | Err(_) => return Err("a bench worker did not get ready".into()),
        }
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let (publishers, broadcasts) =
        start_publishers(common, &args, &stop, &sent, &measuring, &mut tasks).await?;

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    tell_workers(&mut workers, "measure");
    measuring.store(true, Ordering::SeqCst);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    tell_workers(&mut workers, "stop");
    measuring.store(false, Ordering::SeqCst);
    let elapsed = start.elapsed().as_secs_f64();

    let mut total = Tally::default();
    let mut reported = std::collections::HashSet::new();
    while reported.len() < workers.0.len() {
        match tokio::time::timeout(Duration::from_secs(30), lines.recv()).await {
            Ok(Some((w, line))) if line == WORKER_GONE => {
                if !reported.contains(&w) {
                    return Err(format!("bench worker {w} ended without its result").into());
                }
            }
            Ok(Some((w, line))) => match Tally::decode(&line) {
                Some(tally) => {
                    total.merge(&tally);
                    reported.insert(w);
                }
                None => tracing::debug!(worker = w, line, "bench worker"),
            },
            Ok(None) | Err(_) => return Err("a bench worker did not report".into()),
        }
    }
    stop.store(true, Ordering::SeqCst);
    report(&args, &total, elapsed, sent.load(Ordering::SeqCst));
    shut_down(tasks, broadcasts, &publishers).await;
    // The workers close their sessions and leave on their own.
    for (child, _) in &mut workers.0 {
        let _ = child.wait();
    }
    Ok(())
}

/// The worker processes and their command pipes; any still running when this is dropped
/// (the bench failed) are killed.
struct Workers(Vec<(std::process::Child, std::process::ChildStdin)>);

impl Drop for Workers {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Send a command line to every worker (a worker gone is noticed when it fails to report).
fn tell_workers(workers: &mut Workers, command: &str) {
    for (_, stdin) in &mut workers.0 {
        let _ = writeln!(stdin, "{command}").and_then(|()| stdin.flush());
    }
}

/// Worker mode: subscribe, say `ready`, measure between the parent's `measure` and `stop`,
/// then print the tally line and leave.
async fn worker(common: &Common, args: BenchArgs) -> Result<(), Error> {
    let measuring = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    let endpoints = subscribe_all(common, &args, &measuring, &tally, &mut tasks).await?;
    println!("ready");
    let (commands_tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if commands_tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(command) = commands.recv().await {
        match command.as_str() {
            "measure" => measuring.store(true, Ordering::SeqCst),
            "stop" => {
                measuring.store(false, Ordering::SeqCst);
                break;
            }
            _ => {}
        }
    }
    println!("{}", tally.lock().await.encode());
    shut_down(tasks, Vec::new(), &endpoints).await;
    Ok(())
}

type Connected = (moq_tokio::Endpoint, moq_tokio::Session);

/// Connect the publishers, publish `bench-<run>-<p>` with its tracks, and start a producing
/// task per track (pushed to `tasks`).
async fn start_publishers(
    common: &Common,
    args: &BenchArgs,
    stop: &Arc<AtomicBool>,
    sent: &Arc<AtomicU64>,
    measuring: &Arc<AtomicBool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(Vec<Connected>, Vec<moq_tokio::BroadcastPublisher>), Error> {
    let run_id = args.run_id();
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

/// One frame: send time (µs since the Unix epoch), group, index, then padding.
fn frame(group: u64, index: u64, size: u64, padding: &Bytes) -> Bytes {
    let mut buf = BytesMut::with_capacity(24);
    buf.put_u64(wall_micros());
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
            let payload = frame(seq, index, args.frame_size, &padding);
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
            measuring.clone(),
            tally.clone(),
            frames_per_group,
        ));
    }
}

async fn read_group(
    mut group: moq_tokio::GroupReader,
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
            local.frames += 1;
            local.bytes += frame.payload.len() as u64;
            local.latency.record(wall_micros().saturating_sub(sent_us));
        }
    }
    if measuring.load(Ordering::Relaxed) {
        if count == frames_per_group {
            local.groups_complete += 1;
        } else {
            local.groups_lost += 1;
        }
    }
    tally.lock().await.merge(&local);
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
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let run_id = args.run_id();
    let mut tasks = Vec::new();
    let (publishers, broadcasts) =
        start_publishers(common, &args, &stop, &sent, &measuring, &mut tasks).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(us);
        }
        for (p, exact) in [(0.5, 5000.0), (0.99, 9900.0)] {
            let ms = h.quantile_ms(p);
            assert!((ms * 1000.0 / exact - 1.0).abs() < 0.011, "{p}: {ms}");
        }
        assert_eq!(h.quantile_ms(1.0), 10.0);
        assert_eq!(Histogram::default().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn tallies_cross_the_pipe_and_merge() {
        let mut a = Tally {
            frames: 3,
            bytes: 300,
            groups_complete: 1,
            groups_lost: 2,
            ..Tally::default()
        };
        for us in [10, 2000, 40_000] {
            a.latency.record(us);
        }
        let line = a.encode();
        let back = Tally::decode(&line).expect("decodes");
        assert_eq!(back, a);
        let mut merged = Tally::default();
        merged.merge(&back);
        merged.merge(&a);
        assert_eq!(merged.frames, 6);
        assert_eq!(merged.latency.total, 6);
        assert_eq!(merged.latency.max_us, 40_000);
        assert!(Tally::decode("tally 1 2 3").is_none());
        assert!(Tally::decode("tally 1 2 3 4 5 6 99999:1").is_none());
        assert!(Tally::decode("nonsense").is_none());
    }
}
