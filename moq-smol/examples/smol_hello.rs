//! The README's smol example: print the relay's clock.
use moq_smol::{EngineConfig, Verification};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(async {
        let mut config = EngineConfig::new(Default::default());
        config.verification = Verification::DangerousInsecure; // dev relay; pin its SHA-256 in production
        let endpoint = moq_smol::client(config)?;
        let _session = endpoint.connect("moqt://localhost:4443/").await?;
        let mut clock = endpoint.subscribe("clock", "seconds")?;
        while let Some(mut group) = clock.next_group().await {
            while let Some(frame) = group.read_frame().await {
                println!("{}", String::from_utf8_lossy(&frame.payload));
            }
        }
        Ok(())
    })
}
