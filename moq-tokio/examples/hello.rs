//! The README's tokio example: publish a greeting, then print the relay's clock.
use moq_tokio::{EngineConfig, TrackInfo, Verification};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = EngineConfig::new(Default::default());
    config.verification = Verification::DangerousInsecure; // dev relay; pin its SHA-256 in production
    let endpoint = moq_tokio::client(config)?;
    let _session = endpoint.connect("moqt://localhost:4443/").await?;
    let broadcast = endpoint.publish("hello")?;
    let track = broadcast.create_track("greeting", TrackInfo::default())?;
    let mut group = track.append_group()?;
    group.write_frame("hello, world".into()).await?;
    group.finish();
    let mut clock = endpoint.subscribe("clock", "seconds")?;
    while let Some(mut group) = clock.next_group().await {
        while let Some(frame) = group.read_frame().await {
            println!("{}", String::from_utf8_lossy(&frame.payload));
        }
    }
    Ok(())
}
