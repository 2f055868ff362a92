//! The sans-IO engine in a hand-written loop: a `std::net::UdpSocket`, `Instant::now()`, and no
//! async runtime. It publishes a clock in moq-clock's format (track `seconds`: one group per
//! minute, first frame `YYYY-MM-DD HH:MM:`, then one frame `SS` per second) to a relay.
//!
//! ```sh
//! cargo run -p moq-proto --features quinn --example custom_loop -- \
//!     --url moqt://localhost:4443/ --broadcast clock --tls-cert-hash <sha256 the relay printed>
//! moq --tls-cert-hash <sha256> clock subscribe --url moqt://localhost:4443/ --broadcast clock
//! ```

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use moq_proto::node::NodeConfig;
use moq_proto::origin::TrackId;
use moq_proto::quic::{Endpoint, EngineConfig, EngineEvent, MoqUrl, Verification, tls};
use moq_proto::wire::{Path, TrackInfo};
use time::OffsetDateTime;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse()?;
    let url = MoqUrl::parse(&args.url)?;
    // Resolving before the loop starts is fine here: nothing else runs yet.
    let remote = url
        .authority()
        .to_socket_addrs()?
        .next()
        .ok_or("the host did not resolve")?;
    let local: SocketAddr = if remote.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let socket = UdpSocket::bind(local)?;

    let mut config = EngineConfig::new(NodeConfig::default());
    config.verification = args.verification;
    let mut engine = Endpoint::new(config)?;
    let start = Instant::now();
    engine.connect(start, remote, &url.host, &url.path)?;

    // Publish before the session is up: the broadcast is announced as soon as it is.
    let broadcast = engine.node().publish(start, &Path::new(&args.broadcast)?)?;
    let track = engine
        .node()
        .create_track(broadcast, "seconds", TrackInfo::default())?;
    let mut clock = Clock::default();

    let mut datagram = vec![0u8; 64 * 1024];
    let mut transmit = Vec::new();
    loop {
        // 1. Wait for a datagram, at most until the engine's next deadline or the next second.
        let now = Instant::now();
        let deadline = [engine.poll_timeout(), Some(clock.next_tick(now))]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        let wait = deadline.saturating_duration_since(now);
        // A zero timeout means "block forever" to the socket: wait at least a millisecond.
        socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match socket.recv_from(&mut datagram) {
            Ok((len, from)) => {
                let data = BytesMut::from(&datagram[..len]);
                engine.handle_datagram(Instant::now(), from, None, None, data);
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) => return Err(err.into()),
        }

        // 2. Timers that are due.
        let now = Instant::now();
        if engine.poll_timeout().is_some_and(|at| at <= now) {
            engine.handle_timeout(now);
        }

        // 3. The application: a frame every second.
        clock.tick(&mut engine, track, now, start)?;

        // 4. Drain the transmits (one datagram each: GSO is off by default).
        while let Some(t) = engine.poll_transmit(now, &mut transmit) {
            socket.send_to(&transmit[..t.size], t.destination)?;
        }

        // 5. Drain the events.
        while let Some(event) = engine.poll_event() {
            match event {
                EngineEvent::Connected { version, .. } => {
                    eprintln!("connected to {} with {version}", args.url);
                }
                EngineEvent::ConnectFailed { error, .. } => {
                    return Err(format!("connection failed: {error}").into());
                }
                EngineEvent::Disconnected { reason, .. } => {
                    return Err(format!("disconnected: {reason}").into());
                }
                _ => {}
            }
        }
    }
}

/// The clock's publishing state.
#[derive(Default)]
struct Clock {
    /// The open group and its minute.
    group: Option<(u64, u8)>,
    /// The last second published.
    second: Option<u8>,
}

impl Clock {
    /// The start of the next whole second.
    fn next_tick(&self, now: Instant) -> Instant {
        let into = u64::from(OffsetDateTime::now_utc().nanosecond());
        now + Duration::from_nanos(1_000_000_000 - into.min(999_999_999))
    }

    /// Publish what the wall clock says, if a second passed.
    fn tick(
        &mut self,
        engine: &mut Endpoint,
        track: TrackId,
        now: Instant,
        start: Instant,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let wall = OffsetDateTime::now_utc();
        if self.second == Some(wall.second()) {
            return Ok(());
        }
        self.second = Some(wall.second());
        let timestamp = u64::try_from(now.duration_since(start).as_millis())?;
        let node = engine.node();
        let seq = match self.group {
            Some((seq, minute)) if minute == wall.minute() => seq,
            previous => {
                if let Some((seq, _)) = previous {
                    node.finish_group(now, track, seq);
                }
                let seq = node.append_group(now, track)?;
                let base = format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:",
                    wall.year(),
                    u8::from(wall.month()),
                    wall.day(),
                    wall.hour(),
                    wall.minute()
                );
                node.write_frame(now, track, seq, timestamp, Bytes::from(base))?;
                self.group = Some((seq, wall.minute()));
                seq
            }
        };
        let second = Bytes::from(format!("{:02}", wall.second()));
        node.write_frame(now, track, seq, timestamp, second)?;
        Ok(())
    }
}

/// Command-line arguments.
struct Args {
    url: String,
    broadcast: String,
    verification: Verification,
}

impl Args {
    fn parse() -> Result<Self, Box<dyn std::error::Error>> {
        const USAGE: &str = "usage: custom_loop --url moqt://HOST:PORT/ --broadcast NAME \
                             [--tls-cert-hash HEX | --tls-disable-verify]";
        let (mut url, mut broadcast) = (None, None);
        let mut verification = Verification::SystemRoots;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--url" => url = args.next(),
                "--broadcast" => broadcast = args.next(),
                "--tls-cert-hash" => {
                    let hash = args.next().ok_or(USAGE)?;
                    verification = Verification::PinnedSha256(vec![tls::parse_hash(&hash)?]);
                }
                "--tls-disable-verify" => verification = Verification::DangerousInsecure,
                _ => return Err(USAGE.into()),
            }
        }
        Ok(Self {
            url: url.ok_or(USAGE)?,
            broadcast: broadcast.ok_or(USAGE)?,
            verification,
        })
    }
}
