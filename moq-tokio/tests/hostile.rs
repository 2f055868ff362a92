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
use moq_tests::alloc::{CountingAlloc, assert_installed, process_live_bytes};
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

/// How the attacker reaches the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Quic,
    WebTransport,
}

struct Relay {
    endpoint: Endpoint,
    hash: [u8; 32],
}

fn relay() -> Relay {
    let cert = Certificate::generate(&["localhost".into()], SystemTime::now()).expect("cert");
    let hash = cert.sha256();
    let mut config = EngineConfig::new(NodeConfig {
        hop_id: 1,
        ..NodeConfig::default()
    });
    config.certificate = Some(cert);
    config.max_streams = MAX_STREAMS as u32;
    config.idle_timeout = Duration::from_secs(5);
    let endpoint = Endpoint::bind(
        Arc::new(TokioRuntime),
        "127.0.0.1:0".parse().expect("addr"),
        config,
        DriverConfig::default(),
    )
    .expect("bind relay");
    Relay { endpoint, hash }
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

/// A hostile session: raw QUIC with ALPN `moq-lite-05`, or WebTransport offering it.
async fn attacker(relay: &Relay, transport: Transport) -> WtSession {
    let port = relay.endpoint.local_addr().port();
    let url: url::Url = format!("https://localhost:{port}/").parse().expect("url");
    match transport {
        Transport::WebTransport => {
            let client = web_transport_quinn::ClientBuilder::new()
                .with_server_certificate_hashes(vec![relay.hash.to_vec()])
                .expect("client");
            let request = ConnectRequest::new(url).with_protocol("moq-lite-05");
            client.connect(request).await.expect("WebTransport session")
        }
        Transport::Quic => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("tls13")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth();
            tls.alpn_protocols = vec![b"moq-lite-05".to_vec()];
            let crypto =
                quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls config");
            let mut endpoint =
                quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
            endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
            let conn = endpoint
                .connect(relay.endpoint.local_addr(), "localhost")
                .expect("connect")
                .await
                .expect("QUIC handshake");
            WtSession::raw(
                conn,
                ConnectRequest::new(url),
                ConnectResponse::new(web_transport_quinn::http::StatusCode::OK),
            )
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

/// One attack: what it does to a fresh attacker session, returning the stream to watch.
type Attack = fn(
    WtSession,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = (WtSession, Option<web_transport_quinn::RecvStream>)>>,
>;

struct Case {
    name: &'static str,
    attack: Attack,
    /// Acceptable outcomes (QUIC and WebTransport alike).
    expect: &'static [Outcome],
    /// How long the relay may take to answer.
    wait: Duration,
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
            attack: |s| {
                Box::pin(async move {
                    let r = bidi_with(&s, &[0x3f, 0x01, 0x00], false).await;
                    (s, r)
                })
            },
            // Unknown stream types are extensions: stopped with CANCEL, the session lives.
            expect: &[StreamReset(0x1)],
            wait: Duration::from_secs(3),
        },
        Case {
            name: "unknown uni stream type",
            attack: |s| {
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
        },
        Case {
            name: "truncated SUBSCRIBE (FIN mid-message)",
            attack: |s| {
                Box::pin(async move {
                    // type 2 (Subscribe), message length 40, then only 3 bytes and FIN.
                    let r = bidi_with(&s, &[0x02, 40, 1, 2, 3], true).await;
                    (s, r)
                })
            },
            expect: &[SessionClosed(0x3), StreamReset(0x0)],
            wait: Duration::from_secs(3),
        },
        Case {
            name: "oversized declared length (1 GiB SUBSCRIBE)",
            attack: |s| {
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
        },
        Case {
            name: "malformed varint-truncated ANNOUNCE_PLEASE",
            attack: |s| {
                Box::pin(async move {
                    // type 1 (Announce), length 2, a path length claiming 63 bytes.
                    let r = bidi_with(&s, &[0x01, 0x02, 0x3f, b'a'], true).await;
                    (s, r)
                })
            },
            expect: &[SessionClosed(0x3), StreamReset(0x0)],
            wait: Duration::from_secs(3),
        },
        Case {
            name: "oversized group frame (declared 1 TiB)",
            attack: |s| {
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
        },
        Case {
            name: "slow loris: streams opened and never written",
            attack: |s| {
                Box::pin(async move {
                    for _ in 0..MAX_STREAMS {
                        match tokio::time::timeout(Duration::from_millis(200), s.open_bi()).await {
                            Ok(Ok((send, recv))) => std::mem::forget((send, recv)),
                            _ => break,
                        }
                    }
                    (s, None)
                })
            },
            expect: &[Nothing, SessionClosed(0x3)],
            wait: Duration::from_secs(2),
        },
        Case {
            name: "subscription flood (10x the stream cap)",
            attack: |s| {
                Box::pin(async move {
                    for i in 0..MAX_STREAMS * 10 {
                        let mut msg = vec![0x02];
                        // Subscribe: id, broadcast path "flood", track "t{i}", priority,
                        // ordered, max latency, start, end (lite-05 layout, all small).
                        let mut body = varint(i);
                        body.extend([5, b'f', b'l', b'o', b'o', b'd']);
                        let track = format!("t{i}");
                        body.extend(varint(track.len() as u64));
                        body.extend(track.as_bytes());
                        body.extend([0, 0, 0, 0, 0]);
                        msg.extend(varint(body.len() as u64));
                        msg.extend(body);
                        let open =
                            tokio::time::timeout(Duration::from_millis(200), s.open_bi()).await;
                        match open {
                            Ok(Ok((mut send, recv))) => {
                                let _ = send.write_all(&msg).await;
                                std::mem::forget((send, recv));
                            }
                            _ => break, // the relay's stream cap holds the flood back
                        }
                    }
                    (s, None)
                })
            },
            expect: &[Nothing, SessionClosed(0x3)],
            wait: Duration::from_secs(2),
        },
        Case {
            name: "datagram flood (garbage)",
            attack: |s| {
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
        },
        Case {
            name: "reset storm (streams reset right after opening)",
            attack: |s| {
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
        },
    ]
}

async fn suite(transport: Transport) {
    assert_installed();
    let relay = relay();
    let baseline_witness = Witness::start(&relay, "witness/calm").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (frames, calm_p99) = baseline_witness.finish().await;
    println!("{transport:?}: witness alone: {frames} frames, p99 {calm_p99:?}");
    let mut failures = Vec::new();
    for (n, case) in cases().into_iter().enumerate() {
        let witness = Witness::start(&relay, &format!("witness/{n}")).await;
        let heap_before = process_live_bytes();
        let session = attacker(&relay, transport).await;
        let (session, recv) = (case.attack)(session).await;
        let peak = process_live_bytes() - heap_before;
        let got = outcome(&session, recv, case.wait).await;
        let peak = peak.max(process_live_bytes() - heap_before);
        let gauges = relay.endpoint.with_node(|node, _| node.gauges());
        session.close(0, b"done");
        let (frames, p99) = witness.finish().await;
        println!(
            "{transport:?}: {:<52} -> {got:?}; process heap (relay and attacker) {:+} KiB; relay holds {} subscriptions, {} announce requests; witness {frames} frames, p99 {p99:?} (alone {calm_p99:?})",
            case.name,
            peak / 1024,
            gauges.subscriptions,
            gauges.announce_requests
        );
        if !case.expect.contains(&got) {
            failures.push(format!(
                "{}: expected one of {:?}, got {got:?}",
                case.name, case.expect
            ));
        }
    }
    relay.endpoint.close(SessionCode(0), "done");
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
