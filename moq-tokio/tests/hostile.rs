//! Hostile peers against an in-process relay, over raw QUIC and over WebTransport: a client
//! (quinn, web-transport-quinn) completes a valid handshake, then misbehaves on purpose.
//! For each case the suite checks the error the relay answers with (the session closed or
//! the stream reset, with the expected code), and that a well-behaved publisher and
//! subscriber on the same relay keep receiving every frame meanwhile. It prints, per case,
//! the outcome, the process's live heap while the attack runs, and the well-behaved pair's
//! p99 latency with and without the attacker (printed, not asserted: timing is no
//! pass/fail criterion).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use moq_tests::alloc::{CountingAlloc, assert_installed, measure, snapshot};
use moq_tokio::{
    Certificate, DriverConfig, Endpoint, EngineConfig, NodeConfig, SessionCode, TokioRuntime,
    TrackInfo, Verification,
};
use web_transport_quinn::Session as WtSession;
use web_transport_quinn::proto::{ConnectRequest, ConnectResponse};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// The relay's per-session stream cap (`EngineConfig::max_streams`) in this suite.
const MAX_STREAMS: u64 = 100;

/// The relay's cap on the broadcasts one announce stream may keep active
/// (`session::Config::max_announced`, 65 536 by default) in this suite.
const MAX_ANNOUNCED: usize = 1000;

/// Announcements the flooding publisher sends on one stream: five times the cap.
const ANNOUNCE_FLOOD: u64 = 5 * MAX_ANNOUNCED as u64;

/// The relay's cache cap per track (`OriginConfig::max_cache_bytes`) in this suite.
const MAX_CACHE_BYTES: u64 = 4 << 20;

/// The relay's send backlog cap per session (`session::Config::max_send_backlog`).
const MAX_SEND_BACKLOG: usize = 4 << 20;

/// The relay's QUIC send window per connection (`EngineConfig::send_window`).
const SEND_WINDOW: u64 = 4 << 20;

/// What the relay's heap may grow by during one attack: one track's cache, one session's
/// send backlog (which also covers groups waiting for stream credit) and one connection's
/// send window, the caps a peer can fill, with a quarter more for buffer slack (payload
/// slices keep the receive buffers they were read into alive), plus 4 MiB for the
/// connections' own state (a QUIC connection with its buffers costs about 40 KiB here; the
/// connect/close loop keeps ~100 of them draining at once).
const RELAY_HEAP_BOUND: i64 =
    (MAX_CACHE_BYTES as i64 + MAX_SEND_BACKLOG as i64 + SEND_WINDOW as i64) * 5 / 4 + (4 << 20);

/// Sessions the connect/close loop opens.
const CONNECT_LOOP: u32 = 200;

/// How the attacker reaches the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Quic,
    WebTransport,
}

/// The relay under attack, on a thread and runtime of its own: the counting allocator
/// counts per thread, so its live heap is told apart from the test's clients.
struct Relay {
    endpoint: Endpoint,
    hash: [u8; 32],
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn relay() -> Relay {
    let cert = Certificate::generate(&["localhost".into()], SystemTime::now()).expect("cert");
    let hash = cert.sha256();
    let mut node = NodeConfig {
        hop_id: 1,
        ..NodeConfig::default()
    };
    node.origin.max_cache_bytes = MAX_CACHE_BYTES;
    let mut config = EngineConfig::new(node);
    config.certificate = Some(cert);
    config.max_streams = MAX_STREAMS as u32;
    config.session.max_announced = MAX_ANNOUNCED;
    config.session.max_send_backlog = MAX_SEND_BACKLOG;
    config.send_window = Some(SEND_WINDOW);
    config.idle_timeout = Duration::from_secs(5);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("relay runtime");
        runtime.block_on(async move {
            let endpoint = Endpoint::bind(
                Arc::new(TokioRuntime),
                "127.0.0.1:0".parse().expect("addr"),
                config,
                DriverConfig::default(),
            )
            .expect("bind relay");
            ready_tx
                .send((endpoint.clone(), tokio::runtime::Handle::current()))
                .expect("relay handle");
            let _ = stopped.await;
            endpoint.close(SessionCode(0), "done");
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.closed()).await;
        });
    });
    let (endpoint, runtime) = ready_rx.recv().expect("relay started");
    Relay {
        endpoint,
        hash,
        runtime,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// The live heap of the (single) thread that runs `runtime`.
async fn thread_live(runtime: &tokio::runtime::Handle) -> i64 {
    runtime
        .spawn(async { snapshot().net_bytes() })
        .await
        .expect("relay thread")
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn client(hash: [u8; 32], hop: u64) -> Endpoint {
    let mut config = EngineConfig::new(NodeConfig {
        hop_id: hop,
        ..NodeConfig::default()
    });
    config.verification = Verification::PinnedSha256(vec![hash]);
    Endpoint::bind(
        Arc::new(TokioRuntime),
        "127.0.0.1:0".parse().expect("addr"),
        config,
        DriverConfig::default(),
    )
    .expect("bind client")
}

/// A certificate verifier that accepts the relay's (test only: loopback, generated cert).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where the attacker dials, and how.
#[derive(Debug, Clone)]
struct Target {
    addr: std::net::SocketAddr,
    transport: Transport,
}

/// The attacker's client config: ALPN `moq-lite-05` on raw QUIC, `h3` for WebTransport.
fn client_config(transport: Transport) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![match transport {
        Transport::Quic => b"moq-lite-05".to_vec(),
        Transport::WebTransport => web_transport_quinn::ALPN.as_bytes().to_vec(),
    }];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls config");
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    // Keep sessions that only wait from idling out (the relay's idle timeout is 5 s).
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(1)));
    // Few streams from the relay at once: the subscriber that never reads runs out of the
    // credit it grants within a second, and the relay must hold the rest of the track
    // within its send budget.
    transport.max_concurrent_uni_streams(10u32.into());
    config.transport_config(Arc::new(transport));
    config
}

/// A quinn endpoint for the attacker's sessions.
fn attacker_endpoint(transport: Transport) -> quinn::Endpoint {
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(client_config(transport));
    endpoint
}

/// A hostile session on `endpoint`: raw QUIC, or WebTransport offering `moq-lite-05`.
async fn attacker_session(
    endpoint: &quinn::Endpoint,
    target: &Target,
) -> Result<WtSession, String> {
    let session = dial(endpoint, target).await?;
    // A valid lite-05 SETUP (no parameters) on its uni stream, left open: the relay holds
    // back its own requests until it has one.
    let mut setup = session.open_uni().await.map_err(|e| e.to_string())?;
    setup
        .write_all(&[0x01, 0x01, 0x00])
        .await
        .map_err(|e| e.to_string())?;
    std::mem::forget(setup);
    Ok(session)
}

/// The QUIC or WebTransport handshake alone.
async fn dial(endpoint: &quinn::Endpoint, target: &Target) -> Result<WtSession, String> {
    let url: url::Url = format!("https://localhost:{}/", target.addr.port())
        .parse()
        .expect("url");
    match target.transport {
        Transport::WebTransport => {
            let config = client_config(Transport::WebTransport);
            let client = web_transport_quinn::Client::new(endpoint.clone(), config);
            let request = ConnectRequest::new(url).with_protocol("moq-lite-05");
            client.connect(request).await.map_err(|e| e.to_string())
        }
        Transport::Quic => {
            let conn = endpoint
                .connect(target.addr, "localhost")
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            Ok(WtSession::raw(
                conn,
                ConnectRequest::new(url),
                ConnectResponse::new(web_transport_quinn::http::StatusCode::OK),
            ))
        }
    }
}

/// A QUIC variable-length integer (RFC 9000 §16).
fn varint(v: u64) -> Vec<u8> {
    if v < 64 {
        vec![v as u8]
    } else if v < 16384 {
        (0x4000 | v as u16).to_be_bytes().to_vec()
    } else if v < 1 << 30 {
        (0x8000_0000 | v as u32).to_be_bytes().to_vec()
    } else {
        (0xc000_0000_0000_0000 | v).to_be_bytes().to_vec()
    }
}

/// A length-prefixed string (lite-05).
fn string(text: &str) -> Vec<u8> {
    let mut bytes = varint(text.len() as u64);
    bytes.extend(text.as_bytes());
    bytes
}

/// A message of type `ty`: the type, the body's length, the body.
fn message(ty: u8, body: Vec<u8>) -> Vec<u8> {
    let mut bytes = vec![ty];
    bytes.extend(varint(body.len() as u64));
    bytes.extend(body);
    bytes
}

/// Open a bidi stream, write `bytes` and leave it open; `false` once the relay's stream cap
/// holds new streams back (none granted within 200 ms).
async fn open_held(session: &WtSession, bytes: &[u8]) -> bool {
    match tokio::time::timeout(Duration::from_millis(200), session.open_bi()).await {
        Ok(Ok((mut send, recv))) => {
            let _ = send.write_all(bytes).await;
            std::mem::forget((send, recv));
            true
        }
        _ => false,
    }
}

/// How the relay answered the attack.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The session closed with this MOQ code.
    SessionClosed(u64),
    /// The attacker's stream was reset with this MOQ code.
    StreamReset(u64),
    /// The relay sent a FIN on the attacker's stream.
    StreamFinished,
    /// Nothing within the wait: the relay shrugged it off (or is still waiting).
    Nothing,
}

/// The MOQ session code a closed session carried.
fn session_code(err: &web_transport_quinn::SessionError) -> Option<u64> {
    use web_transport_quinn::SessionError;
    match err {
        SessionError::ConnectionError(quinn::ConnectionError::ApplicationClosed(close)) => {
            Some(close.error_code.into_inner())
        }
        SessionError::WebTransportError(web_transport_quinn::WebTransportError::Closed(
            code,
            _,
        )) => Some(*code as u64),
        _ => None,
    }
}

/// Wait for what the relay does about `recv` (a stream it may reset or finish) or the
/// session, up to `wait`.
async fn outcome(
    session: &WtSession,
    recv: Option<web_transport_quinn::RecvStream>,
    wait: Duration,
) -> Outcome {
    let stream = async {
        match recv {
            Some(mut recv) => loop {
                match recv.read_chunk(1 << 16, true).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return Outcome::StreamFinished,
                    Err(web_transport_quinn::ReadError::Reset(code)) => {
                        return Outcome::StreamReset(code as u64);
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        err = session.closed() => match session_code(&err) {
            Some(code) => Outcome::SessionClosed(code),
            None => panic!("session ended without a MOQ code: {err}"),
        },
        o = stream => o,
        _ = tokio::time::sleep(wait) => Outcome::Nothing,
    }
}

/// A well-behaved publisher and subscriber through the relay: 100 frames/s in groups of
/// 10; the subscriber checks that every frame arrives, in order within its group, and
/// records latencies.
struct Witness {
    stop: Arc<std::sync::atomic::AtomicBool>,
    writer: tokio::task::JoinHandle<u64>,
    reader: tokio::task::JoinHandle<(u64, Vec<Duration>)>,
    endpoints: Vec<Endpoint>,
    _sessions: Vec<moq_tokio::Session>,
}

impl Witness {
    async fn start(relay: &Relay, name: &str) -> Self {
        let url = format!("moqt://localhost:{}/", relay.endpoint.local_addr().port());
        let publisher = client(relay.hash, 500);
        let pub_session = publisher.connect(&url).await.expect("witness publisher");
        let broadcast = publisher.publish(name).expect("publish");
        let track = broadcast
            .create_track("t", TrackInfo::default())
            .expect("track");
        let subscriber = client(relay.hash, 501);
        let sub_session = subscriber.connect(&url).await.expect("witness subscriber");
        // Subscribe once the relay announced the broadcast to this session.
        let mut announced = subscriber.announced("witness").expect("announced");
        announced.next().await.expect("witness announced");
        let mut subscription = subscriber.subscribe(name, "t").expect("subscribe");
        subscription.ready().await.expect("witness subscription");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let epoch = Instant::now();
        let writer = tokio::spawn({
            let stop = stop.clone();
            async move {
                let _broadcast = broadcast;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut group = track.append_group().expect("group");
                    for i in 0..10u64 {
                        tick.tick().await;
                        let micros = epoch.elapsed().as_micros() as u64;
                        let mut payload = micros.to_be_bytes().to_vec();
                        payload.extend_from_slice(&i.to_be_bytes());
                        group
                            .write_frame(Bytes::from(payload))
                            .await
                            .expect("witness frame");
                        sent += 1;
                    }
                    group.finish();
                }
                sent
            }
        });
        let reader = tokio::spawn(async move {
            let mut got = 0u64;
            let mut latencies = Vec::new();
            let mut expected_group = None;
            while let Some(mut group) = subscription.next_group().await {
                if let Some(expected) = expected_group {
                    assert_eq!(group.seq(), expected, "the witness missed a group");
                }
                expected_group = Some(group.seq() + 1);
                let mut index = 0u64;
                while let Some(frame) = group.read_frame().await {
                    let sent = u64::from_be_bytes(frame.payload[..8].try_into().expect("ts"));
                    let i = u64::from_be_bytes(frame.payload[8..16].try_into().expect("i"));
                    assert_eq!(i, index, "witness frames out of order or missing");
                    index += 1;
                    got += 1;
                    latencies.push(epoch.elapsed().saturating_sub(Duration::from_micros(sent)));
                }
                if index < 10 {
                    break; // the last group, cut by the publisher's stop
                }
            }
            (got, latencies)
        });
        Self {
            stop,
            writer,
            reader,
            endpoints: vec![publisher, subscriber],
            _sessions: vec![pub_session, sub_session],
        }
    }

    /// Stop; every frame written must have been read. Returns (frames, p99 latency).
    async fn finish(self) -> (u64, Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = self.writer.await.expect("writer");
        let publisher = &self.endpoints[0];
        tokio::time::timeout(Duration::from_secs(10), publisher.flushed())
            .await
            .expect("the witness publisher flushed");
        publisher.close(SessionCode(0), "done");
        let (got, mut latencies) = tokio::time::timeout(Duration::from_secs(10), self.reader)
            .await
            .expect("the witness reader finished")
            .expect("reader");
        self.endpoints[1].close(SessionCode(0), "done");
        assert_eq!(got, sent, "the witness lost frames");
        latencies.sort();
        let p99 = latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default();
        (got, p99)
    }
}

/// What an attack leaves to watch: its session, and the stream the relay may answer on.
type Attacked = (WtSession, Option<web_transport_quinn::RecvStream>);

/// One attack: what it does to a fresh attacker session (it may dial more sessions to
/// `Target`), returning what to watch. It runs on the attacker's own thread and runtime.
type Attack =
    fn(WtSession, Target) -> std::pin::Pin<Box<dyn std::future::Future<Output = Attacked>>>;

struct Case {
    name: &'static str,
    attack: Attack,
    /// Acceptable outcomes (QUIC and WebTransport alike).
    expect: &'static [Outcome],
    /// How long the relay may take to answer.
    wait: Duration,
    /// Needs the heavy publisher (a track worth stalling on) running meanwhile.
    heavy: bool,
}

/// An attack: a request on a bidi stream of type `TY` declaring a 40-byte message, cut by
/// FIN after 3 bytes.
fn truncated_request<const TY: u8>(
    s: WtSession,
    _: Target,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Attacked>>> {
    Box::pin(async move {
        let r = bidi_with(&s, &[TY, 40, 1, 2, 3], true).await;
        (s, r)
    })
}

/// A bidirectional stream carrying `bytes`, finished or left open.
async fn bidi_with(
    session: &WtSession,
    bytes: &[u8],
    finish: bool,
) -> Option<web_transport_quinn::RecvStream> {
    let (mut send, recv) = session.open_bi().await.ok()?;
    let _ = send.write_all(bytes).await;
    if finish {
        let _ = send.finish();
    } else {
        std::mem::forget(send);
    }
    Some(recv)
}

fn cases() -> Vec<Case> {
    use Outcome::*;
    vec![
        Case {
            name: "unknown bidi stream type",
            attack: |s, _| {
                Box::pin(async move {
                    let r = bidi_with(&s, &[0x3f, 0x01, 0x00], false).await;
                    (s, r)
                })
            },
            // Unknown stream types are extensions: stopped with CANCEL, the session lives.
            expect: &[StreamReset(0x1)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "unknown uni stream type",
            attack: |s, _| {
                Box::pin(async move {
                    if let Ok(mut send) = s.open_uni().await {
                        let _ = send.write_all(&[0x3f, 1, 2, 3]).await;
                        let _ = send.finish();
                    }
                    (s, None)
                })
            },
            expect: &[Nothing],
            wait: Duration::from_secs(2),
            heavy: false,
        },
        Case {
            name: "truncated SUBSCRIBE (FIN mid-message)",
            attack: truncated_request::<0x02>,
            expect: &[SessionClosed(0x3), StreamReset(0x0)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "oversized declared length (1 GiB SUBSCRIBE)",
            attack: |s, _| {
                Box::pin(async move {
                    let mut bytes = vec![0x02];
                    bytes.extend(varint(1 << 30));
                    bytes.extend([0u8; 64]);
                    let r = bidi_with(&s, &bytes, false).await;
                    (s, r)
                })
            },
            expect: &[SessionClosed(0x3), StreamReset(0x0)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "malformed varint-truncated ANNOUNCE_PLEASE",
            attack: |s, _| {
                Box::pin(async move {
                    // type 1 (Announce), length 2, a path length claiming 63 bytes.
                    let r = bidi_with(&s, &[0x01, 0x02, 0x3f, b'a'], true).await;
                    (s, r)
                })
            },
            expect: &[SessionClosed(0x3), StreamReset(0x0)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "truncated FETCH (FIN mid-message)",
            attack: truncated_request::<0x03>,
            expect: &[SessionClosed(0x3), StreamReset(0x0)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "truncated PROBE (FIN mid-message)",
            attack: truncated_request::<0x04>,
            expect: &[SessionClosed(0x3), StreamReset(0x0)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "truncated TRACK request (FIN mid-message)",
            attack: truncated_request::<0x06>,
            expect: &[SessionClosed(0x3), StreamReset(0x0)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "malformed GOAWAY (URI longer than its message)",
            attack: |s, _| {
                Box::pin(async move {
                    // type 5 (Goaway), length 2, a URI length claiming 63 bytes.
                    let r = bidi_with(&s, &[0x05, 0x02, 0x3f, b'a'], true).await;
                    (s, r)
                })
            },
            expect: &[SessionClosed(0x3), StreamReset(0x0)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "truncated group header (FIN inside a varint)",
            attack: |s, _| {
                Box::pin(async move {
                    if let Ok(mut send) = s.open_uni().await {
                        // type 0 (Group), then the first byte of a two-byte varint.
                        let _ = send.write_all(&[0x00, 0x40]).await;
                        let _ = send.finish();
                    }
                    (s, None)
                })
            },
            expect: &[SessionClosed(0x3), Nothing],
            wait: Duration::from_secs(2),
            heavy: false,
        },
        Case {
            name: "a second SETUP stream",
            attack: |s, _| {
                Box::pin(async move {
                    if let Ok(mut send) = s.open_uni().await {
                        let _ = send.write_all(&[0x01, 0x01, 0x00]).await;
                        std::mem::forget(send);
                    }
                    (s, None)
                })
            },
            expect: &[SessionClosed(0x3)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "malformed ANNOUNCE (path past its message)",
            attack: |s, _| {
                Box::pin(async move {
                    // Answer the relay's ANNOUNCE_REQUEST with ANNOUNCE_OK, then an
                    // announcement whose path length runs past the message.
                    let accepted =
                        tokio::time::timeout(Duration::from_secs(5), s.accept_bi()).await;
                    let Ok(Ok((mut send, recv))) = accepted else {
                        panic!("the relay sent no ANNOUNCE_REQUEST");
                    };
                    let _ = send
                        .write_all(&[0x02, 0x07, 0x00, 0x03, 0x01, 0x3f, b'a'])
                        .await;
                    std::mem::forget(send);
                    (s, Some(recv))
                })
            },
            expect: &[SessionClosed(0x3)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "oversized group frame (declared 1 TiB)",
            attack: |s, _| {
                Box::pin(async move {
                    if let Ok(mut send) = s.open_uni().await {
                        // type 0 (Group): subscribe id 0, group 0, then a 1 TiB frame.
                        let mut bytes = vec![0x00, 0x00, 0x00];
                        bytes.extend(varint(1 << 40));
                        bytes.extend([0u8; 32]);
                        let _ = send.write_all(&bytes).await;
                        std::mem::forget(send);
                    }
                    (s, None)
                })
            },
            expect: &[SessionClosed(0x3), Nothing],
            wait: Duration::from_secs(2),
            heavy: false,
        },
        Case {
            name: "slow loris: streams opened and never written",
            attack: |s, _| {
                Box::pin(async move {
                    for _ in 0..MAX_STREAMS {
                        if !open_held(&s, &[]).await {
                            break;
                        }
                    }
                    (s, None)
                })
            },
            expect: &[Nothing, SessionClosed(0x3)],
            wait: Duration::from_secs(2),
            heavy: false,
        },
        Case {
            name: "subscription flood (10x the stream cap)",
            attack: |s, _| {
                Box::pin(async move {
                    for i in 0..MAX_STREAMS * 10 {
                        // Subscribe: id, broadcast path "flood", track "t{i}", priority,
                        // ordered, max latency, start, end (lite-05 layout, all small).
                        let mut body = varint(i);
                        body.extend(string("flood"));
                        body.extend(string(&format!("t{i}")));
                        body.extend([0, 0, 0, 0, 0]);
                        if !open_held(&s, &message(0x02, body)).await {
                            break; // the relay's stream cap holds the flood back
                        }
                    }
                    (s, None)
                })
            },
            expect: &[Nothing, SessionClosed(0x3)],
            wait: Duration::from_secs(2),
            heavy: false,
        },
        Case {
            name: "datagram flood (garbage)",
            attack: |s, _| {
                Box::pin(async move {
                    for i in 0..20_000u32 {
                        let _ = s.send_datagram(Bytes::from(i.to_be_bytes().repeat(64)));
                        if i % 500 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    (s, None)
                })
            },
            expect: &[Nothing, SessionClosed(0x3)],
            wait: Duration::from_secs(2),
            heavy: false,
        },
        Case {
            name: "reset storm (streams reset right after opening)",
            attack: |s, _| {
                Box::pin(async move {
                    for _ in 0..MAX_STREAMS * 5 {
                        let open =
                            tokio::time::timeout(Duration::from_millis(200), s.open_bi()).await;
                        let Ok(Ok((mut send, mut recv))) = open else {
                            break;
                        };
                        let _ = send.write_all(&[0x02]).await;
                        let _ = send.reset(7);
                        let _ = recv.stop(7);
                    }
                    (s, None)
                })
            },
            expect: &[Nothing, SessionClosed(0x3)],
            wait: Duration::from_secs(2),
            heavy: false,
        },
        Case {
            name: "announce-request flood (10x the stream cap)",
            attack: |s, _| {
                Box::pin(async move {
                    for i in 0..MAX_STREAMS * 10 {
                        // ANNOUNCE_REQUEST (lite-05): a prefix of its own, exclude hop 0.
                        let mut body = string(&format!("p{i}"));
                        body.push(0);
                        if !open_held(&s, &message(0x01, body)).await {
                            break; // the relay's stream cap holds the flood back
                        }
                    }
                    (s, None)
                })
            },
            expect: &[Nothing],
            wait: Duration::from_secs(2),
            heavy: false,
        },
        Case {
            name: "announcement flood (past the per-stream cap)",
            attack: |s, _| {
                Box::pin(async move {
                    // The relay asks every client for its broadcasts (an ANNOUNCE_REQUEST on
                    // a bidi stream it opens): answer with more than one stream may carry.
                    let accepted =
                        tokio::time::timeout(Duration::from_secs(5), s.accept_bi()).await;
                    let Ok(Ok((mut send, mut recv))) = accepted else {
                        panic!("the relay sent no ANNOUNCE_REQUEST");
                    };
                    let first = recv.read_chunk(1024, true).await;
                    assert!(
                        matches!(&first, Ok(Some(chunk)) if chunk.bytes.first() == Some(&0x01)),
                        "expected an ANNOUNCE_REQUEST, got {first:?}"
                    );
                    // ANNOUNCE_OK: hop 7, no initial set; then live ANNOUNCE_BROADCASTs.
                    let mut buf = vec![0x02, 0x07, 0x00];
                    for i in 0..ANNOUNCE_FLOOD {
                        let mut body = vec![1];
                        body.extend(string(&format!("flood/{i}")));
                        body.push(0);
                        buf.extend(varint(body.len() as u64));
                        buf.extend(body);
                        if buf.len() > 1 << 16 {
                            if send.write_all(&buf).await.is_err() {
                                break;
                            }
                            buf.clear();
                        }
                    }
                    let _ = send.write_all(&buf).await;
                    std::mem::forget(send);
                    (s, Some(recv))
                })
            },
            expect: &[SessionClosed(0x3)],
            wait: Duration::from_secs(20),
            heavy: false,
        },
        Case {
            name: "subscriber that never reads (flow-control stall)",
            attack: |s, _| {
                Box::pin(async move {
                    // SUBSCRIBE (lite-05) to the heavy track from its latest group with a
                    // 30 s max latency, then never accept a group stream: the relay's
                    // sends stall on flow control, then on stream credit (10 streams).
                    let mut body = varint(0);
                    body.extend(string("heavy"));
                    body.extend(string("t"));
                    body.extend([0, 0]);
                    body.extend(varint(30_000));
                    body.extend([0, 0]);
                    let r = bidi_with(&s, &message(0x02, body), false).await;
                    (s, r)
                })
            },
            expect: &[Nothing],
            // Long enough for the track (3.2 MB/s) to outgrow the heap bound if the relay
            // kept what the peer cannot take (it did, until groups waiting for stream credit
            // counted against the send backlog).
            wait: Duration::from_secs(8),
            heavy: true,
        },
        Case {
            name: "GOAWAY storm",
            attack: |s, _| {
                Box::pin(async move {
                    for _ in 0..50 {
                        let open =
                            tokio::time::timeout(Duration::from_millis(200), s.open_bi()).await;
                        let Ok(Ok((mut send, recv))) = open else {
                            break;
                        };
                        // GOAWAY with an empty URI.
                        let _ = send.write_all(&[0x05, 0x01, 0x00]).await;
                        let _ = send.finish();
                        std::mem::forget(recv);
                    }
                    (s, None)
                })
            },
            // A second GOAWAY is a protocol violation.
            expect: &[SessionClosed(0x3)],
            wait: Duration::from_secs(3),
            heavy: false,
        },
        Case {
            name: "connect/close loop (200 sessions)",
            attack: |s, target| {
                Box::pin(async move {
                    let endpoint = attacker_endpoint(target.transport);
                    for i in 0..CONNECT_LOOP {
                        match attacker_session(&endpoint, &target).await {
                            // Half close politely, half just go away (quinn closes with 0).
                            Ok(session) if i % 2 == 0 => session.close(0, b"bye"),
                            Ok(session) => drop(session),
                            Err(err) => panic!("connect {i} of the loop refused: {err}"),
                        }
                    }
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
                    (s, None)
                })
            },
            expect: &[Nothing],
            wait: Duration::from_secs(2),
            heavy: false,
        },
    ]
}

/// What one attack did.
struct Attempt {
    outcome: Outcome,
    /// The relay thread's live heap growth since before the attacker dialled: the larger
    /// of right after the attack and at the end of the wait.
    relay_peak: i64,
    /// The attacker client's own peak (its quinn buffers, streams it held).
    attacker_peak: u64,
    /// From the attacker's handshake to the relay's answer (or the end of the wait).
    took: Duration,
}

/// Run `case` on a thread and runtime of its own.
async fn attack(relay: &Relay, target: Target, case: &Case) -> Attempt {
    let (attack, wait) = (case.attack, case.wait);
    let relay_runtime = relay.runtime.clone();
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("attacker runtime");
        let (result, own) = measure(|| {
            runtime.block_on(async {
                let before = thread_live(&relay_runtime).await;
                let start = Instant::now();
                let endpoint = attacker_endpoint(target.transport);
                let session = attacker_session(&endpoint, &target)
                    .await
                    .expect("the attacker's handshake");
                let (session, recv) = attack(session, target.clone()).await;
                let after_attack = thread_live(&relay_runtime).await - before;
                let outcome = outcome(&session, recv, wait).await;
                let took = start.elapsed();
                let at_end = thread_live(&relay_runtime).await - before;
                session.close(0, b"done");
                let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
                (outcome, after_attack.max(at_end), took)
            })
        });
        Attempt {
            outcome: result.0,
            relay_peak: result.1,
            attacker_peak: own.peak_live,
            took: result.2,
        }
    })
    .await
    .expect("attacker thread")
}

/// A publisher worth stalling on: 32 KiB frames, 100 a second, 5 per group, on broadcast
/// `heavy`, track `t`.
struct Heavy {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    endpoint: Endpoint,
    _session: moq_tokio::Session,
}

impl Heavy {
    async fn start(relay: &Relay) -> Self {
        let url = format!("moqt://localhost:{}/", relay.endpoint.local_addr().port());
        let endpoint = client(relay.hash, 700);
        let session = endpoint.connect(&url).await.expect("heavy publisher");
        let broadcast = endpoint.publish("heavy").expect("publish");
        let track = broadcast
            .create_track("t", TrackInfo::default())
            .expect("track");
        // Attack only once the relay knows the broadcast.
        let mut announced = relay.endpoint.announced("heavy").expect("announced");
        announced.next().await.expect("heavy announced");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let _broadcast = broadcast;
                let payload = Bytes::from(vec![0x5a; 32 * 1024]);
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut group = track.append_group().expect("group");
                    for _ in 0..5 {
                        tick.tick().await;
                        group
                            .write_frame(payload.clone())
                            .await
                            .expect("heavy frame");
                    }
                    group.finish();
                }
            }
        });
        Self {
            stop,
            task,
            endpoint,
            _session: session,
        }
    }

    async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("heavy publisher");
        self.endpoint.close(SessionCode(0), "done");
    }
}

/// Wait until the relay let go of every session, so that the next case's heap figures do
/// not include this one's teardown.
async fn settle(relay: &Relay) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.endpoint.with_node(|node, _| node.gauges().sessions) > 0 {
        assert!(
            Instant::now() < deadline,
            "the relay kept sessions after a case"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn suite(transport: Transport) {
    assert_installed();
    let relay = relay();
    let target = Target {
        addr: relay.endpoint.local_addr(),
        transport,
    };
    let baseline_witness = Witness::start(&relay, "witness/calm").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (frames, calm_p99) = baseline_witness.finish().await;
    settle(&relay).await;
    println!("{transport:?}: witness alone: {frames} frames, p99 {calm_p99:?}");
    let mut failures = Vec::new();
    for (n, case) in cases().into_iter().enumerate() {
        let heavy = if case.heavy {
            Some(Heavy::start(&relay).await)
        } else {
            None
        };
        let witness = Witness::start(&relay, &format!("witness/{n}")).await;
        let attempt = attack(&relay, target.clone(), &case).await;
        let gauges = relay.endpoint.with_node(|node, _| node.gauges());
        let (frames, p99) = witness.finish().await;
        if let Some(heavy) = heavy {
            heavy.stop().await;
        }
        settle(&relay).await;
        println!(
            "{transport:?}: {:<52} -> {:?} after {:?}; relay heap {:+} KiB (attacker's own client {} KiB); relay then held {} sessions, {} subscriptions, {} announce requests, {} broadcasts; witness {frames} frames, p99 {p99:?} (alone {calm_p99:?})",
            case.name,
            attempt.outcome,
            attempt.took,
            attempt.relay_peak / 1024,
            attempt.attacker_peak / 1024,
            gauges.sessions,
            gauges.subscriptions,
            gauges.announce_requests,
            gauges.broadcasts,
        );
        if attempt.relay_peak > RELAY_HEAP_BOUND {
            failures.push(format!(
                "{}: the relay's heap grew by {} KiB (bound {} KiB)",
                case.name,
                attempt.relay_peak / 1024,
                RELAY_HEAP_BOUND / 1024
            ));
        }
        if !case.expect.contains(&attempt.outcome) {
            failures.push(format!(
                "{}: expected one of {:?}, got {:?}",
                case.name, case.expect, attempt.outcome
            ));
        }
    }
    drop(relay);
    assert!(failures.is_empty(), "{transport:?}: {failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_over_quic() {
    suite(Transport::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_over_webtransport() {
    suite(Transport::WebTransport).await;
}

/// The URL a client endpoint dials the relay with over `transport`.
fn relay_url(relay: &Relay, transport: Transport) -> String {
    let port = relay.endpoint.local_addr().port();
    match transport {
        Transport::Quic => format!("moqt://localhost:{port}/"),
        Transport::WebTransport => format!("https://localhost:{port}/"),
    }
}

/// What the killed publisher's thread hands back to the test.
type PublisherHandles = (
    Endpoint,
    moq_tokio::Session,
    moq_tokio::BroadcastPublisher,
    moq_tokio::TrackPublisher,
    moq_tokio::GroupPublisher,
);

/// A publisher killed in the middle of a group: its runtime stops with everything open, so
/// no CONNECTION_CLOSE, FIN or reset leaves (what the relay sees when a process dies). A
/// subscriber has the group's first frames.
///
/// Asserted: the subscriber gets the complete frames and nothing more of the dead
/// publisher's open group, and the witness on the same relay loses nothing. Without a
/// `replacement`, the subscription ends when the relay notices the death. With one (the
/// restarted process publishing the same broadcast at once, while the relay still holds
/// the dead route), the same subscription fails over to it: its groups follow the last one
/// seen, numbered on without a gap or a repeat.
async fn killed_publisher(transport: Transport, replacement: bool) {
    let relay = relay();
    let url = relay_url(&relay, transport);
    let witness = Witness::start(&relay, "witness/killed").await;
    let subscriber = client(relay.hash, 600);
    let _subscriber_session = subscriber.connect(&url).await.expect("subscriber");

    let (events, mut from_publisher) = tokio::sync::mpsc::unbounded_channel::<&str>();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (kill, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let (hash, publisher_url) = (relay.hash, url.clone());
    let publisher = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("publisher runtime");
        let handles: PublisherHandles = runtime.block_on(async move {
            let endpoint = client(hash, 601);
            let session = endpoint.connect(&publisher_url).await.expect("publisher");
            let broadcast = endpoint.publish("killed/b").expect("publish");
            let track = broadcast
                .create_track("t", TrackInfo::default())
                .expect("track");
            events.send("published").expect("test");
            go_rx.await.expect("go");
            let mut complete = track.append_group().expect("group 0");
            for i in 0..3u8 {
                complete
                    .write_frame(Bytes::from(vec![i; 100]))
                    .await
                    .expect("frame");
            }
            complete.finish();
            let mut open = track.append_group().expect("group 1");
            for i in 10..12u8 {
                open.write_frame(Bytes::from(vec![i; 100]))
                    .await
                    .expect("frame");
            }
            // Not `flushed()`: it waits for the open group, which never ends. The test
            // reads these frames at the subscriber before it kills this thread.
            events.send("written").expect("test");
            kill_rx.await.expect("kill");
            (endpoint, session, broadcast, track, open)
        });
        // Killed: the runtime (its driver task and socket) goes while every handle is open.
        drop(runtime);
        std::mem::forget(handles);
    });

    assert_eq!(from_publisher.recv().await, Some("published"));
    let mut announced = subscriber.announced("killed").expect("announced");
    announced.next().await.expect("the broadcast is announced");
    let mut subscription = subscriber.subscribe("killed/b", "t").expect("subscribe");
    subscription.ready().await.expect("subscription ready");
    go.send(()).expect("go");
    assert_eq!(from_publisher.recv().await, Some("written"));
    let mut complete = subscription.next_group().await.expect("group 0");
    assert_eq!(complete.seq(), 0);
    for i in 0..3u8 {
        let frame = complete.read_frame().await.expect("a frame of group 0");
        assert_eq!(frame.payload[..], [i; 100]);
    }
    assert!(
        complete.read_frame().await.is_none(),
        "group 0 had 3 frames"
    );
    let mut open = subscription.next_group().await.expect("group 1");
    assert_eq!(open.seq(), 1);
    for i in 10..12u8 {
        let frame = open.read_frame().await.expect("a frame of group 1");
        assert_eq!(frame.payload[..], [i; 100]);
    }

    kill.send(()).expect("kill");
    publisher.join().expect("publisher thread");
    let killed = Instant::now();

    // The restarted process: a new endpoint (new port, new connection) that publishes the
    // same broadcast and writes a one-frame group every 50 ms.
    let _replacement = if replacement {
        let endpoint = client(relay.hash, 602);
        let session = endpoint.connect(&url).await.expect("replacement");
        let broadcast = endpoint.publish("killed/b").expect("publish again");
        let track = broadcast
            .create_track("t", TrackInfo::default())
            .expect("track");
        let writer = tokio::spawn(async move {
            // Until the test drops the broadcast (the group calls fail from then on).
            for seq in 0..1000u32 {
                let Ok(mut group) = track.append_group() else {
                    return;
                };
                if group
                    .write_frame(Bytes::from(seq.to_be_bytes().to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
                group.finish();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Some((endpoint, session, broadcast, AbortOnDrop(writer)))
    } else {
        None
    };

    // The relay notices the publisher is gone when its idle timeout (5 s here) runs out: a
    // dead process sends nothing, and the ICMP errors its closed port answers with are not
    // taken as a close. The open group gets nothing more.
    let wait = Duration::from_secs(20);
    let more = tokio::time::timeout(wait, open.read_frame())
        .await
        .expect("the dead publisher's group ended");
    assert!(more.is_none(), "a frame after the kill: {more:?}");
    let group_end = open.end();
    println!(
        "{transport:?}: publisher killed mid-group: the open group ended {group_end:?}, {:?} after the kill",
        killed.elapsed()
    );

    if replacement {
        // Failed over: the replacement's groups (whatever its own numbering) come next as
        // 2, 3, 4, ... and each carries one of its frames.
        let mut last_source_seq = None;
        for expected in 2..7u64 {
            let mut group = tokio::time::timeout(wait, subscription.next_group())
                .await
                .expect("a group from the replacement")
                .unwrap_or_else(|| panic!("the subscription ended: {:?}", subscription.end()));
            assert_eq!(group.seq(), expected, "groups follow on after a failover");
            let frame = tokio::time::timeout(wait, group.read_frame())
                .await
                .expect("a frame from the replacement")
                .expect("the group's frame");
            let source_seq = u32::from_be_bytes(
                frame.payload[..]
                    .try_into()
                    .expect("the replacement's 4-byte frame"),
            );
            if let Some(last) = last_source_seq {
                assert!(source_seq > last, "the replacement's groups in order");
            }
            last_source_seq = Some(source_seq);
        }
        println!(
            "{transport:?}: the subscription failed over to the replacement publisher, {:?} after the kill",
            killed.elapsed()
        );
    } else {
        let next = tokio::time::timeout(wait, subscription.next_group())
            .await
            .expect("the subscription ended");
        assert!(
            next.is_none(),
            "a group after the kill: {:?}",
            next.map(|g| g.seq())
        );
        println!(
            "{transport:?}: the subscription ended {:?}, {:?} after the kill",
            subscription.end(),
            killed.elapsed()
        );
    }
    let (frames, p99) = witness.finish().await;
    println!("{transport:?}: witness {frames} frames, p99 {p99:?}");
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_killed_mid_group_over_quic() {
    killed_publisher(Transport::Quic, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_killed_mid_group_over_webtransport() {
    killed_publisher(Transport::WebTransport, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_publisher_replaced_over_quic() {
    killed_publisher(Transport::Quic, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_publisher_replaced_over_webtransport() {
    killed_publisher(Transport::WebTransport, true).await;
}
