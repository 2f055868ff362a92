//! Authentication end to end, on 127.0.0.1: tokens minted by the reference's token tool
//! (`moq-token` from crates.io's `moq-token-cli`, the outside oracle) against our relay, over
//! raw QUIC (lite-05's SETUP path), WebTransport (the CONNECT path) and WebSocket (the
//! request path; refusals are HTTP 401 before the upgrade).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moq_tests::http;
use moq_tests::process::*;

/// A fresh directory for keys and tokens.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moq-auth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Run `moq-token` (the reference token tool); its stdout, trimmed.
fn moq_token(args: &[&str]) -> String {
    let out = Command::new(peer("moq-token"))
        .args(args)
        .output()
        .expect("run moq-token");
    assert!(
        out.status.success(),
        "moq-token {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Keys: HS256 (one file, both halves), ES256 and EdDSA (private and public files).
struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn new(name: &str) -> Self {
        let dir = scratch(name);
        let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
        moq_token(&["generate", "--id", "hs", "--out", &p("hs.jwk")]);
        moq_token(&[
            "generate",
            "--algorithm",
            "ES256",
            "--id",
            "es",
            "--out",
            &p("es.jwk"),
            "--public",
            &p("es.pub.jwk"),
        ]);
        moq_token(&[
            "generate",
            "--algorithm",
            "EdDSA",
            "--id",
            "ed",
            "--out",
            &p("ed.jwk"),
            "--public",
            &p("ed.pub.jwk"),
        ]);
        // A key the relay does not know, with the same kid as a known one.
        moq_token(&["generate", "--id", "hs", "--out", &p("other.jwk")]);
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// The relay's flags: the HS256 key and the two public keys.
    fn relay_flags(&self) -> Vec<String> {
        ["hs.jwk", "es.pub.jwk", "ed.pub.jwk"]
            .iter()
            .flat_map(|f| ["--auth-key".to_string(), self.path(f)])
            .collect()
    }

    /// A token signed with `key` (a file in the scratch directory).
    fn sign(&self, key: &str, args: &[&str]) -> String {
        let key = self.path(key);
        let mut all = vec!["sign", "--key", key.as_str()];
        all.extend_from_slice(args);
        moq_token(&all)
    }
}

fn relay(keys: &Keys, extra: &[&str]) -> Relay {
    let flags = keys.relay_flags();
    let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    our_relay_with(&all)
}

/// `scheme://127.0.0.1:port/path?jwt=token` for one of the relay's transports.
fn url(relay: &Relay, scheme: &str, path: &str, token: &str) -> String {
    format!("{scheme}://localhost:{}/{path}?jwt={token}", relay.port)
}

const SCHEMES: [&str; 3] = ["moqt", "https", "ws"];

fn clock(role: &str, url: &str, broadcast: &str) -> Proc {
    Proc::spawn(
        &format!("moq clock {role}"),
        moq(
            Some("moq-lite-05"),
            &["clock", role, "--url", url, "--broadcast", broadcast],
        ),
        Input::Null,
    )
}

/// The relay's `/metrics` value of `name` (with `labels`), parsed as Prometheus text.
fn metric(relay: &Relay, name: &str, labels: &[(&str, &str)]) -> f64 {
    http::value(&http::metrics(relay.port), name, labels)
}

#[test]
fn tokens_from_the_reference_tool_grant_what_they_say_over_every_transport() {
    let keys = Keys::new("grants");
    let relay = relay(&keys, &[]);
    let hour = (now_unix() + 3600).to_string();
    // HS256 to publish `demo/clock`, ES256 and EdDSA to subscribe under `demo`.
    let put = keys.sign(
        "hs.jwk",
        &["--root", "demo", "--publish", "clock", "--expires", &hour],
    );
    let get_es = keys.sign("es.jwk", &["--root", "demo", "--subscribe", ""]);
    let get_ed = keys.sign("ed.jwk", &["--root", "demo", "--subscribe", ""]);
    for scheme in SCHEMES {
        let broadcast = &format!("clock/{scheme}");
        let started = now_unix();
        let publisher = clock("publish", &url(&relay, scheme, "demo", &put), broadcast);
        for get in [&get_es, &get_ed] {
            let subscriber = clock("subscribe", &url(&relay, scheme, "demo", get), broadcast);
            check_clock(&subscriber, started, 2);
        }
        // The publish-only token sees nothing: no announcement reaches it, and the HTTP API
        // refuses it.
        let idle = clock("subscribe", &url(&relay, scheme, "demo", &put), broadcast);
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            idle.stdout().is_empty(),
            "{scheme}: a publish-only token received {:?}",
            String::from_utf8_lossy(&idle.stdout())
        );
        drop(idle);
        drop(publisher);
        let _ = started;
    }
    let status = http::get(relay.port, &format!("/announced/demo?jwt={put}")).status;
    assert_eq!(status, 401, "/announced with a publish-only token");
    let status = http::get(
        relay.port,
        &format!("/fetch/demo/clock/ws/seconds?jwt={put}"),
    )
    .status;
    assert_eq!(status, 401, "/fetch with a publish-only token");

    // A subscribe-only token cannot publish: the relay never takes its announcements (it
    // does not even ask for them), so a subscriber with every right sees nothing.
    let all = keys.sign("hs.jwk", &["--publish", "", "--subscribe", ""]);
    let _sneaky = clock("publish", &url(&relay, "moqt", "demo", &get_es), "sneaky");
    let watcher = clock("subscribe", &url(&relay, "moqt", "demo", &all), "sneaky");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        watcher.stdout().is_empty(),
        "a subscribe-only token published"
    );
    let reply = http::get(relay.port, &format!("/announced/demo?jwt={all}"));
    let (status, listed) = (reply.status, reply.text());
    assert_eq!(status, 200);
    assert!(!listed.contains("sneaky"), "{listed}");
}

/// `moq sub` with `token` at `demo` over `scheme`: it must fail; its stderr.
fn refused(relay: &Relay, scheme: &str, token: &str) -> String {
    let mut sub = Proc::spawn(
        "moq sub",
        moq(
            Some("moq-lite-05"),
            &[
                "sub",
                "--url",
                &url(relay, scheme, "demo", token),
                "--broadcast",
                "x",
                "--track",
                "y",
            ],
        ),
        Input::Null,
    );
    let status = sub.wait_exit(WAIT);
    assert!(!status.success(), "{scheme}: a bad token was admitted");
    sub.stderr_text()
}

#[test]
fn bad_tokens_are_refused_with_the_unauthorized_code() {
    let keys = Keys::new("refusals");
    let relay = relay(&keys, &[]);
    let good = keys.sign("hs.jwk", &["--root", "demo", "--subscribe", ""]);
    let parts: Vec<&str> = good.split('.').collect();
    let claims = |json: &str| URL_SAFE_NO_PAD.encode(json);
    let cases = [
        // Signed by a key the relay does not have, under a kid it knows.
        (
            "wrong signature",
            keys.sign("other.jwk", &["--root", "demo", "--subscribe", ""]),
        ),
        ("unknown kid", {
            let dir = keys.dir.join("x.jwk");
            moq_token(&["generate", "--id", "nope", "--out", &dir.to_string_lossy()]);
            keys.sign("x.jwk", &["--root", "demo", "--subscribe", ""])
        }),
        (
            "expired",
            keys.sign(
                "hs.jwk",
                &[
                    "--root",
                    "demo",
                    "--subscribe",
                    "",
                    "--expires",
                    &(now_unix() - 10).to_string(),
                ],
            ),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"hs"}"#),
                parts[1]
            ),
        ),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                claims(r#"{"root":"","put":[""],"get":[""]}"#),
                parts[2]
            ),
        ),
        ("not a token", "garbage".to_string()),
    ];
    for (what, token) in &cases {
        for scheme in SCHEMES {
            let stderr = refused(&relay, scheme, token);
            let expected = if scheme == "ws" { "401" } else { "code 0x2" };
            assert!(
                stderr.contains(expected),
                "{what} over {scheme}: expected `{expected}` in\n{stderr}"
            );
        }
    }
    // Every QUIC and WebTransport refusal is counted (WebSocket ones are refused before a
    // session exists).
    assert!(
        metric(&relay, "moq_auth_refused_total", &[("what", "session")])
            >= (cases.len() * 2) as f64
    );
    let _ = good;
}

#[test]
fn an_expiring_token_ends_its_session_when_it_expires() {
    let keys = Keys::new("expiry");
    let relay = relay(&keys, &[]);
    let put = keys.sign("hs.jwk", &["--publish", "", "--subscribe", ""]);
    let soon = (now_unix() + 3).to_string();
    let short = keys.sign("es.jwk", &["--subscribe", "", "--expires", &soon]);
    let started = now_unix();
    let _publisher = clock("publish", &url(&relay, "moqt", "", &put), "clock");
    let mut subscriber = clock("subscribe", &url(&relay, "moqt", "", &short), "clock");
    check_clock(&subscriber, started, 1);
    // The relay closes the session at the expiry (`moq clock` then ends with an error).
    let status = subscriber.wait_exit(Duration::from_secs(15));
    assert!(!status.success(), "{}", subscriber.stderr_text());
    assert_eq!(metric(&relay, "moq_auth_expired_total", &[]), 1.0);
}

#[test]
fn public_patterns_admit_anonymous_clients_and_cluster_links_present_a_token() {
    let keys = Keys::new("public");
    // Relay A: anonymous subscribe under `anon`, tokens otherwise.
    let a = relay(&keys, &["--auth-public-subscribe", "anon/**"]);
    // Relay B links to A with a cluster token granting everything.
    let cluster = keys.sign("hs.jwk", &["--publish", "", "--subscribe", ""]);
    let token_file = keys.dir.join("cluster.jwt");
    std::fs::write(&token_file, format!("{cluster}\n")).expect("write the cluster token");
    let a_url = format!("moqt://localhost:{}/", a.port);
    let b = our_relay_with(&[
        "--tls-disable-verify",
        "--cluster-connect",
        &a_url,
        "--cluster-token",
        &token_file.to_string_lossy(),
    ]);
    let put = keys.sign("hs.jwk", &["--root", "anon", "--publish", ""]);
    let started = now_unix();
    // Published at A with a token, watched anonymously at A and through B.
    let _publisher = clock("publish", &url(&a, "moqt", "anon", &put), "room");
    let anonymous = Proc::spawn(
        "moq clock subscribe",
        moq(
            Some("moq-lite-05"),
            &[
                "clock",
                "subscribe",
                "--url",
                &format!("moqt://localhost:{}/anon", a.port),
                "--broadcast",
                "room",
            ],
        ),
        Input::Null,
    );
    check_clock(&anonymous, started, 1);
    let via_b = Proc::spawn(
        "moq clock subscribe",
        moq(
            Some("moq-lite-05"),
            &[
                "clock",
                "subscribe",
                "--url",
                &format!("moqt://localhost:{}/anon", b.port),
                "--broadcast",
                "room",
            ],
        ),
        Input::Null,
    );
    check_clock(&via_b, started, 1);
    // Anonymous outside `anon` is refused, as is an anonymous publisher.
    let stderr = {
        let mut p = Proc::spawn(
            "moq sub",
            moq(
                Some("moq-lite-05"),
                &[
                    "sub",
                    "--url",
                    &format!("moqt://localhost:{}/private", a.port),
                    "--broadcast",
                    "x",
                    "--track",
                    "y",
                ],
            ),
            Input::Null,
        );
        assert!(!p.wait_exit(WAIT).success());
        p.stderr_text()
    };
    assert!(stderr.contains("code 0x2"), "{stderr}");
    let _ = Path::new("");
}
