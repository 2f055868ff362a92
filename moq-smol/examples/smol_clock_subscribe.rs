//! Print a clock published with `smol_clock_publish`, one line per frame.
//!
//! `cargo run -p moq-smol --example smol_clock_subscribe -- moqt://localhost:4443/anon clock`
use moq_smol::{EngineConfig, Verification};

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
    let _session = endpoint.connect(url).await?;
    let mut clock = endpoint.subscribe(name, "seconds")?;
    while let Some(mut group) = clock.next_group().await {
        while let Some(frame) = group.read_frame().await {
            println!("{}", String::from_utf8_lossy(&frame.payload));
        }
    }
    println!("clock ended: {:?}", clock.end());
    Ok(())
}
