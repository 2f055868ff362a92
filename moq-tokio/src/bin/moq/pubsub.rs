//! `moq pub`, `moq sub` and `moq announced`: lines over MOQ.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use moq_tokio::{SubscribeParams, TrackInfo};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::{Common, Error, shutdown_signal};
use crate::reconnect::Link;

/// `moq pub` flags.
#[derive(Args, Debug)]
pub(crate) struct PubArgs {
    /// The relay URL (moqt://host:port/path).
    #[arg(long)]
    pub(crate) url: String,
    /// The broadcast to publish.
    #[arg(long)]
    pub(crate) broadcast: String,
    /// The track name.
    #[arg(long)]
    pub(crate) track: String,
    /// Start a new group every N lines.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) group_lines: u64,
    /// Start reading stdin at once instead of waiting for the first subscriber.
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// `moq sub` flags.
#[derive(Args, Debug)]
pub(crate) struct SubArgs {
    /// The relay URL (moqt://host:port/path).
    #[arg(long)]
    pub(crate) url: String,
    /// The broadcast to subscribe to.
    #[arg(long)]
    pub(crate) broadcast: String,
    /// The track name.
    #[arg(long)]
    pub(crate) track: String,
    /// Groups older than this (milliseconds) behind the newest may be dropped.
    #[arg(long, default_value_t = 30_000)]
    pub(crate) max_latency: u64,
    /// Subscriber priority (0-255, higher first).
    #[arg(long, default_value_t = 128)]
    pub(crate) priority: u8,
    /// Start at this group (what the relay still holds of it and later ones) instead of the
    /// latest; e.g. 0 to read a track from its beginning.
    #[arg(long, value_name = "SEQ")]
    pub(crate) start_group: Option<u64>,
}

/// `moq announced` flags.
#[derive(Args, Debug)]
pub(crate) struct AnnouncedArgs {
    /// The relay URL (moqt://host:port/path).
    #[arg(long)]
    pub(crate) url: String,
    /// Only broadcasts under this prefix.
    #[arg(long, default_value = "")]
    pub(crate) prefix: String,
}

pub(crate) async fn publish(common: &Common, args: PubArgs) -> Result<(), Error> {
    let link = Link::connect(common, &args.url, !common.no_reconnect).await?;
    let endpoint = link.endpoint().clone();
    let broadcast = endpoint.publish(&args.broadcast)?;
    let track = broadcast.create_track(&args.track, TrackInfo::default())?;
    if !args.no_wait {
        tokio::select! {
            _ = track.subscribed() => {}
            reason = link.failed() => return Err(reason.into()),
        }
    }
    let mut lines = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut group = None;
    let mut in_group = 0;
    loop {
        line.clear();
        let read = tokio::select! {
            read = lines.read_until(b'\n', &mut line) => read?,
            reason = link.failed() => return Err(reason.into()),
        };
        if read == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if group.is_none() {
            group = Some(track.append_group()?);
        }
        if let Some(g) = group.as_mut() {
            g.write_frame(Bytes::copy_from_slice(&line)).await?;
        }
        in_group += 1;
        if in_group == args.group_lines {
            if let Some(g) = group.take() {
                g.finish();
            }
            in_group = 0;
        }
    }
    if let Some(g) = group.take() {
        g.finish();
    }
    // End the track, then wait until every subscriber has received everything.
    drop(track);
    tokio::select! {
        _ = endpoint.flushed() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => return Err("timed out delivering the last frames".into()),
    }
    drop(broadcast);
    link.close().await;
    Ok(())
}

/// How long the first group waits for lower-numbered groups that other streams overtook.
const START_GRACE: Duration = Duration::from_millis(500);

pub(crate) async fn subscribe(common: &Common, args: SubArgs) -> Result<(), Error> {
    let reconnect = !common.no_reconnect;
    let link = Link::connect(common, &args.url, reconnect).await?;
    let endpoint = link.endpoint().clone();
    let params = SubscribeParams {
        priority: args.priority,
        ordered: true,
        max_latency: Duration::from_millis(args.max_latency),
        start: args.start_group,
        ..SubscribeParams::default()
    };
    let mut subscription = endpoint.subscribe_with(&args.broadcast, &args.track, params)?;
    let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
    // Each group is its own QUIC stream and relays send newer groups first, so groups can
    // arrive out of order: print them in sequence order, holding later groups until the next
    // one arrives, or skipping a missing group once it is `max_latency` overdue. Where the
    // subscription starts is the start group asked for, or what the publisher's SUBSCRIBE_OK
    // says (`Subscription::start`: lite-05 always, lite-03/04 when the publisher resolved it);
    // while neither is known, the first group waits only a short grace for lower ones
    // overtaken on the way.
    let max_latency = params.max_latency;
    let start_grace = max_latency.min(START_GRACE);
    // Until a (renewed) subscription printed something and with no known start, groups it
    // skipped may be gone for good (evicted, or lost with a relay): its first group waits
    // only the grace.
    let patience = |fresh: bool| if fresh { start_grace } else { max_latency };
    let mut next: Option<u64> = args.start_group;
    // After a renewed subscription: the next group expected then (its first group decides
    // whether the same publisher goes on or a new one numbers afresh).
    let mut resumed: Option<u64> = None;
    // Subscriptions made after the first one.
    let mut renewals = 0u64;
    let result: Result<(), Error> = async {
        // One subscription after another: a subscription whose route went (the relay
        // restarted, or the publisher left) is renewed while reconnecting is on.
        loop {
            let mut pending: BTreeMap<u64, moq_tokio::GroupReader> = BTreeMap::new();
            let mut gap_since: Option<tokio::time::Instant> = None;
            let mut ended = false;
            // A start group asked for on the command line is where the first subscription
            // starts: wait for it as for any gap.
            let mut fresh = !(renewals == 0 && args.start_group.is_some());
            let mut printed = false;
            let mut start_seen = false;
            loop {
                if !printed
                    && !start_seen
                    && resumed.is_none()
                    && let Some(start) = subscription.start()
                {
                    start_seen = true;
                    // The publisher said where it starts: wait for that group (up to max
                    // latency) rather than guess. (Groups below it will not come.) A start
                    // equal to the one a renewal asked for may be the ask echoed back (lite-03/
                    // 04), not a promise: then the grace stays.
                    tracing::info!("the subscription starts at group {start}");
                    if next.is_none_or(|n| start > n) {
                        next = Some(start);
                        fresh = false;
                    } else if renewals == 0 {
                        fresh = false;
                    }
                }
                while let Some(entry) = pending.first_entry() {
                    let seq = *entry.key();
                    let overdue = gap_since.is_some_and(|t| t.elapsed() >= patience(fresh));
                    if !(next.is_some_and(|n| seq <= n) || ended || overdue) {
                        break;
                    }
                    let mut group = entry.remove();
                    // A live group may stay open for long: each frame is printed (flushed) as
                    // it arrives.
                    loop {
                        let frame = tokio::select! {
                            frame = group.read_frame() => frame,
                            _ = shutdown_signal() => return Ok(()),
                        };
                        let Some(frame) = frame else { break };
                        out.write_all(&frame.payload).await?;
                        out.write_all(b"\n").await?;
                        out.flush().await?;
                    }
                    next = Some(seq + 1);
                    gap_since = None;
                    fresh = false;
                    printed = true;
                }
                if ended {
                    break;
                }
                if !pending.is_empty() && gap_since.is_none() {
                    gap_since = Some(tokio::time::Instant::now());
                }
                let deadline = gap_since.map(|t| t + patience(fresh));
                let group = tokio::select! {
                    group = subscription.next_group() => group,
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => continue,
                    reason = link.failed() => return Err(reason.into()),
                    _ = shutdown_signal() => return Ok(()),
                };
                let group = match (group, resumed.take()) {
                    // The group printed last, served again as the latest: skip it.
                    (Some(group), Some(n)) if group.seq() + 1 == n => {
                        tracing::debug!(seq = group.seq(), "already printed");
                        continue;
                    }
                    // Lower than where we were: a new publisher numbering afresh.
                    (Some(group), Some(n)) if group.seq() < n => {
                        next = None;
                        Some(group)
                    }
                    (group, _) => group,
                };
                match group {
                    Some(group) if next.is_some_and(|n| group.seq() < n) => {
                        tracing::warn!(seq = group.seq(), "group arrived after a later one was printed; skipped");
                    }
                    Some(group) => {
                        pending.insert(group.seq(), group);
                    }
                    None => ended = true,
                }
            }
            match subscription.end() {
                Some(moq_tokio::SubscriptionEnd::Failed(code)) if reconnect => {
                    // The session went (the relay restarted or the network broke): the same
                    // publisher goes on numbering, so ask for the next group (its cache
                    // holds what was published meanwhile). The session is up (the publisher
                    // left or moved): take its latest group; the first group tells a
                    // publisher that goes on (nothing printed twice) from a new one.
                    let relay_lost = !link.is_up();
                    let start = if relay_lost { next } else { None };
                    resumed = next;
                    tracing::warn!(%code, relay_lost, ?start, "subscription ended; subscribing again");
                    renewals += 1;
                    subscription = endpoint.subscribe_with(
                        &args.broadcast,
                        &args.track,
                        SubscribeParams { start, ..params },
                    )?;
                }
                Some(moq_tokio::SubscriptionEnd::Failed(code)) => {
                    return Err(format!("subscription ended with error {code}").into());
                }
                _ => return Ok(()),
            }
        }
    }
    .await;
    out.flush().await?;
    link.close().await;
    result
}

pub(crate) async fn announced(common: &Common, args: AnnouncedArgs) -> Result<(), Error> {
    // The watch is the endpoint's: it lives across sessions (what a lost session carried is
    // withdrawn, and announced again once reconnected).
    let link = Link::connect(common, &args.url, !common.no_reconnect).await?;
    let mut announcements = link.endpoint().announced(&args.prefix)?;
    let mut out = tokio::io::stdout();
    loop {
        tokio::select! {
            next = announcements.next() => match next {
                Some((path, active)) => {
                    let sign = if active { '+' } else { '-' };
                    out.write_all(format!("{sign} {path}\n").as_bytes()).await?;
                    out.flush().await?;
                }
                None => break,
            },
            reason = link.failed() => return Err(reason.into()),
            _ = shutdown_signal() => break,
        }
    }
    link.close().await;
    Ok(())
}
