//! `moq clock`: the moq-clock format. Track `seconds`; one group per minute whose first frame
//! is `YYYY-MM-DD HH:MM:` and then one frame `SS` per second. The subscriber prints one line
//! per second, the base joined with the seconds, as moq-clock does.

use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};
use moq_tokio::{SubscribeParams, TrackInfo};
use time::OffsetDateTime;

use crate::common::{Common, Error, shutdown_signal};
use crate::reconnect::Link;

/// `moq clock` flags. They may come before or after the verb (`moq clock --url U publish` and
/// `moq clock publish --url U` both work), so they are global to the verbs and checked here.
#[derive(Args, Debug)]
pub(crate) struct ClockArgs {
    /// The relay URL (moqt://host:port/path); required.
    #[arg(long, global = true)]
    pub(crate) url: Option<String>,

    /// The broadcast name; required.
    #[arg(long, global = true)]
    pub(crate) broadcast: Option<String>,

    /// The track name.
    #[arg(long, global = true, default_value = "seconds")]
    pub(crate) track: String,

    #[command(subcommand)]
    pub(crate) role: Role,
}

/// Publish or subscribe.
#[derive(Subcommand, Debug, Clone, Copy)]
pub(crate) enum Role {
    /// Publish the clock.
    Publish,
    /// Print the clock.
    Subscribe,
}

pub(crate) async fn run(common: &Common, args: ClockArgs) -> Result<(), Error> {
    let url = args.url.ok_or("moq clock needs --url URL")?;
    let broadcast = args.broadcast.ok_or("moq clock needs --broadcast NAME")?;
    let reconnect = !common.no_reconnect;
    let link = Link::connect(common, &url, reconnect).await?;
    let endpoint = link.endpoint().clone();
    let result = match args.role {
        Role::Publish => {
            // The clock lives in the endpoint's node: a new session re-announces it.
            let broadcast = endpoint.publish(&broadcast)?;
            let track = broadcast.create_track(&args.track, TrackInfo::default())?;
            tokio::select! {
                result = publish(track) => result,
                reason = link.failed() => Err(reason.into()),
                _ = shutdown_signal() => Ok(()),
            }
        }
        Role::Subscribe => {
            let subscribing = async {
                loop {
                    let subscription = endpoint.subscribe_with(
                        &broadcast,
                        &args.track,
                        SubscribeParams::default(),
                    )?;
                    match subscribe(subscription).await {
                        // The route went (relay restart, publisher gone): subscribe again.
                        Err(err) if reconnect && err.to_string().starts_with("clock ended") => {
                            tracing::warn!(%err, "subscribing again");
                        }
                        other => return other,
                    }
                }
            };
            tokio::select! {
                result = subscribing => result,
                reason = link.failed() => Err(reason.into()),
                _ = shutdown_signal() => Ok(()),
            }
        }
    };
    link.close().await;
    result
}

async fn publish(track: moq_tokio::TrackPublisher) -> Result<(), Error> {
    loop {
        let now = OffsetDateTime::now_utc();
        let mut group = track.append_group()?;
        let base = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute()
        );
        group.write_frame(Bytes::from(base)).await?;
        let minute = now.minute();
        loop {
            let now = OffsetDateTime::now_utc();
            if now.minute() != minute {
                break;
            }
            group
                .write_frame(Bytes::from(format!("{:02}", now.second())))
                .await?;
            // Sleep to the next whole second.
            let into_second =
                Duration::from_nanos(u64::from(OffsetDateTime::now_utc().nanosecond()));
            tokio::time::sleep(Duration::from_secs(1).saturating_sub(into_second)).await;
        }
        group.finish();
    }
}

async fn subscribe(mut subscription: moq_tokio::Subscription) -> Result<(), Error> {
    use tokio::io::AsyncWriteExt;
    let mut out = tokio::io::stdout();
    while let Some(mut group) = subscription.next_group().await {
        let Some(base) = group.read_frame().await else {
            continue;
        };
        let base = String::from_utf8_lossy(&base.payload).into_owned();
        while let Some(frame) = group.read_frame().await {
            let line = format!("{base}{}\n", String::from_utf8_lossy(&frame.payload));
            if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                // stdout closed (e.g. piped into `head`): stop quietly.
                return Ok(());
            }
        }
    }
    match subscription.end() {
        Some(moq_tokio::SubscriptionEnd::Failed(code)) => {
            Err(format!("clock ended with error {code}").into())
        }
        _ => Ok(()),
    }
}
