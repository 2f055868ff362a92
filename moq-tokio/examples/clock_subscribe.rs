//! Print a clock published with `clock_publish`, one line per frame.
//!
//! `cargo run -p moq-tokio --example clock_subscribe -- moqt://localhost:4443/anon clock`
use moq_tokio::{EngineConfig, Verification};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .map_or("moqt://localhost:4443/anon", String::as_str);
    let name = args.get(2).map_or("clock", String::as_str);
    let mut config = EngineConfig::new(Default::default());
    if args.iter().any(|a| a == "--insecure") {
        config.verification = Verification::DangerousInsecure;
    }
    let endpoint = moq_tokio::client(config)?;
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
