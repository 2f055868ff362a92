//! A WebTransport client: the same API as raw QUIC, only the URL changes. `http://` fetches the
//! relay's `/certificate.sha256` and pins it (a development relay with a generated
//! certificate); `https://` verifies the certificate like a browser would.
//!
//! ```sh
//! cargo run --release --bin moq -- relay &
//! moq --tls-disable-verify clock publish --url moqt://localhost:4443/ --broadcast clock &
//! cargo run -p moq-tokio --example webtransport -- http://localhost:4443/ clock
//! ```
use moq_tokio::EngineConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).map_or("http://localhost:4443/", String::as_str);
    let name = args.get(2).map_or("clock", String::as_str);
    let endpoint = moq_tokio::client(EngineConfig::new(Default::default()))?;
    let session = endpoint.connect(url).await?;
    eprintln!("connected over WebTransport with {}", session.version());
    let mut clock = endpoint.subscribe(name, "seconds")?;
    while let Some(mut group) = clock.next_group().await {
        while let Some(frame) = group.read_frame().await {
            println!("{}", String::from_utf8_lossy(&frame.payload));
        }
    }
    Ok(())
}
