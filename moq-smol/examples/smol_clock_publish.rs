//! Publish a clock: one group per minute, one frame per second ("HH:MM:SS", UTC).
//!
//! `cargo run -p moq-smol --example smol_clock_publish -- moqt://localhost:4443/anon clock`
//! (add `--insecure` as a third argument to skip certificate checks against a dev relay).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moq_smol::{EngineConfig, TrackInfo, Verification};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .map_or("moqt://localhost:4443/anon", String::as_str);
    let name = args.get(2).map_or("clock", String::as_str);
    let mut config = EngineConfig::new(Default::default());
    if args.iter().any(|a| a == "--insecure") {
        config.verification = Verification::DangerousInsecure;
    }
    let endpoint = moq_smol::client(config)?;
    let session = endpoint.connect(url).await?;
    println!("connected to {url} with {}", session.version());
    let broadcast = endpoint.publish(name)?;
    let track = broadcast.create_track("seconds", TrackInfo::default())?;
    loop {
        let mut group = track.append_group()?;
        loop {
            let secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            let text = format!(
                "{:02}:{:02}:{:02}",
                secs / 3600 % 24,
                secs / 60 % 60,
                secs % 60
            );
            group.write_frame(Bytes::from(text)).await?;
            async_io::Timer::after(Duration::from_millis(
                1000 - SystemTime::now()
                    .duration_since(UNIX_EPOCH)?
                    .subsec_millis() as u64,
            ))
            .await;
            if secs % 60 == 59 {
                break;
            }
        }
        group.finish();
    }
}
