//! Authentication and rights in the node, over the in-memory network (every version, a few
//! seeds, virtual time): refused sessions, root scoping, publish and subscribe grants,
//! announcement filtering, refused requests and expiry.

mod scenario_util;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use moq_proto::auth::token::{TokenAuthorizer, VerifyingKey};
use moq_proto::auth::{Pattern, Public};
use moq_proto::codes::{SessionCode, StreamCode};
use moq_proto::node::{NodeEvent, SubscriptionEvent};
use moq_proto::session::SubscribeParams;
use moq_proto::wire::{TrackInfo, Version};
use scenario_util::*;
use serde_json::json;

const SECRET: &[u8] = b"a test secret of at least 32 byt";
/// The relay's wall clock at the start of every run (Unix seconds).
const T0: u64 = 1_900_000_000;

fn authorizer(public: Public) -> Arc<TokenAuthorizer> {
    let jwk = json!({
        "kty": "oct", "alg": "HS256", "kid": "k1",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET),
    });
    Arc::new(TokenAuthorizer::new(
        vec![VerifyingKey::from_jwk(&jwk).unwrap()],
        public,
    ))
}

fn token(claims: serde_json::Value) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

/// Three nodes (publisher 0, relay 1 with `auth`, subscriber 2), the relay's clock at T0.
fn auth_sim(seed: u64, public: Public) -> moq_harness::testing::Sim {
    let auth = authorizer(public);
    let mut sim = sim_with(seed, 3, |i, mut c| {
        if i == 1 {
            c.authorizer = Some(auth.clone());
        }
        c
    });
    let now = sim.now();
    sim.nodes[1].set_wall_clock(now, Duration::from_secs(T0));
    sim
}

fn runs_few() -> impl Iterator<Item = Run> {
    Version::ALL
        .into_iter()
        .flat_map(|version| (0..4).map(move |seed| Run { version, seed }))
}

/// The codes the node's sessions were closed with.
fn close_codes(events: &[NodeEvent]) -> Vec<SessionCode> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::SessionClosed { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

fn info() -> TrackInfo {
    TrackInfo {
        priority: 1,
        ordered: true,
        max_latency: Duration::from_secs(10),
        timescale: 1000,
    }
}

/// A path with a token query, as a client would dial it.
fn url(path: &str, token: &str) -> String {
    format!("{path}?jwt={token}")
}

#[test]
fn publish_and_subscribe_follow_the_grant_relative_to_the_root() {
    for run in runs_few() {
        let mut sim = auth_sim(run.seed, Public::default());
        let (p, r, s) = (0, 1, 2);
        let now = sim.now();
        // The publisher may publish `demo/cam` (and below) only; the subscriber may
        // subscribe under `demo` only.
        let put = token(json!({"root": "demo", "put": ["cam"], "exp": T0 + 3600}));
        let get = token(json!({"root": "demo", "get": [""], "exp": T0 + 3600}));
        let cam = sim.nodes[p].publish(now, &path("cam")).unwrap();
        let secret = sim.nodes[p].publish(now, &path("secret")).unwrap();
        let video = sim.nodes[p].create_track(cam, "video", info()).unwrap();
        let watch_s = sim.nodes[s].announced(&path(""));
        let watch_r = sim.nodes[r].announced(&path(""));
        let l1 = sim.connect(p, r, run.version, &url("/demo", &put));
        let l2 = sim.connect(s, r, run.version, &url("/demo", &get));
        sim.run();

        // The relay took `demo/cam` only; `secret` is outside the grant and dropped.
        let er = sim.events(r);
        assert_eq!(
            announced(&er, watch_r),
            vec![("demo/cam".into(), true)],
            "{run}"
        );
        assert!(sim.nodes[r].stats().auth_refused_requests >= 1, "{run}");
        // The subscriber sees it relative to its root.
        let es = sim.events(s);
        assert_eq!(announced(&es, watch_s), vec![("cam".into(), true)], "{run}");

        let sub = sim.nodes[s].subscribe(now, &path("cam"), "video", SubscribeParams::default());
        sim.run();
        let seq = write_group(&mut sim, p, video, 3, 0);
        let got = sub_events(&sim.events(s), sub);
        assert_eq!(frames(&got).len(), 3, "{run}: {got:?}");
        assert!(groups(&got).contains(&seq), "{run}");

        // The publish-only publisher is refused when it subscribes (stream code 0x3), and
        // was never told about anything.
        let refused_before = sim.nodes[r].stats().auth_refused_requests;
        let [end_p, _] = sim.ends(l1);
        let now = sim.now();
        sim.nodes[p].input(now, end_p.peer, |session, _| {
            session
                .subscribe(path("cam"), "video", SubscribeParams::default())
                .unwrap();
        });
        sim.run();
        assert_eq!(
            sim.nodes[r].stats().auth_refused_requests,
            refused_before + 1,
            "{run}"
        );
        let _ = StreamCode::UNAUTHORIZED;
        let now = sim.now();
        sim.nodes[p].unpublish(now, cam);
        sim.nodes[p].unpublish(now, secret);
        sim.nodes[s].unwatch(watch_s);
        sim.nodes[r].unwatch(watch_r);
        teardown(&mut sim, &[l1, l2], run);
    }
}

#[test]
fn bad_tokens_and_paths_close_the_session_as_unauthorized() {
    let wrong_key = {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(
            &header,
            &json!({"put": [""]}),
            &EncodingKey::from_secret(b"some other secret, also 32 bytes"),
        )
        .unwrap()
    };
    for run in runs_few() {
        let cases = [
            ("no token, nothing public", "/".to_string()),
            ("wrong signature", url("/", &wrong_key)),
            (
                "expired",
                url("/", &token(json!({"put": [""], "exp": T0 - 1}))),
            ),
            (
                "outside the token root",
                url("/other", &token(json!({"root": "demo", "get": [""]}))),
            ),
            ("garbage", url("/", "a.b.c")),
        ];
        for (what, dial) in cases {
            let mut sim = auth_sim(run.seed, Public::default());
            let link = sim.connect(2, 1, run.version, &dial);
            sim.run();
            let ec = sim.events(2);
            assert_eq!(
                close_codes(&ec),
                vec![SessionCode::UNAUTHORIZED],
                "{run}: {what}: {ec:?}"
            );
            let er = sim.events(1);
            assert!(
                er.iter().any(|e| matches!(e, NodeEvent::Refused { .. })),
                "{run}: {what}"
            );
            assert_eq!(
                sim.nodes[1].stats().auth_refused_sessions,
                1,
                "{run}: {what}"
            );
            teardown(&mut sim, &[link], run);
        }
    }
}

#[test]
fn public_patterns_admit_anonymous_sessions_under_them_only() {
    for run in runs_few() {
        let public = Public {
            publish: vec![Pattern::parse("anon/**").unwrap()],
            subscribe: vec![Pattern::parse("anon/**").unwrap()],
        };
        let mut sim = auth_sim(run.seed, public);
        let now = sim.now();
        let b = sim.nodes[0].publish(now, &path("room")).unwrap();
        let t = sim.nodes[0].create_track(b, "t", info()).unwrap();
        let l1 = sim.connect(0, 1, run.version, "/anon");
        let l2 = sim.connect(2, 1, run.version, "/anon");
        let watch = sim.nodes[2].announced(&path(""));
        sim.run();
        assert_eq!(
            announced(&sim.events(2), watch),
            vec![("room".into(), true)],
            "{run}"
        );
        let sub = sim.nodes[2].subscribe(now, &path("room"), "t", SubscribeParams::default());
        sim.run();
        write_group(&mut sim, 0, t, 2, 0);
        assert_eq!(frames(&sub_events(&sim.events(2), sub)).len(), 2, "{run}");
        // Outside `anon`: refused.
        let mut other = auth_sim(run.seed, Public::default());
        let l3 = other.connect(2, 1, run.version, "/private");
        other.run();
        assert_eq!(
            close_codes(&other.events(2)),
            vec![SessionCode::UNAUTHORIZED],
            "{run}"
        );
        teardown(&mut other, &[l3], run);
        let now = sim.now();
        sim.nodes[0].unpublish(now, b);
        sim.nodes[2].unwatch(watch);
        teardown(&mut sim, &[l1, l2], run);
    }
}

#[test]
fn a_grant_that_expires_ends_its_session_at_the_expiry() {
    for run in runs_few() {
        let mut sim = auth_sim(run.seed, Public::default());
        let now = sim.now();
        let b = sim.nodes[0].publish(now, &path("live")).unwrap();
        let t = sim.nodes[0].create_track(b, "t", info()).unwrap();
        let l1 = sim.connect(0, 1, run.version, &url("/", &token(json!({"put": [""]}))));
        let short = token(json!({"get": [""], "exp": T0 + 30}));
        let l2 = sim.connect(2, 1, run.version, &url("/", &short));
        sim.run();
        let sub = sim.nodes[2].subscribe(now, &path("live"), "t", SubscribeParams::default());
        sim.run();
        write_group(&mut sim, 0, t, 1, 0);
        let before = sim.events(2);
        assert_eq!(frames(&sub_events(&before, sub)).len(), 1, "{run}");
        assert!(close_codes(&before).is_empty(), "{run}");
        // 29 s: still up.
        sim.advance(Duration::from_secs(29));
        assert!(close_codes(&sim.events(2)).is_empty(), "{run}");
        // 30 s: closed as unauthorized; the publisher's session stays.
        sim.advance(Duration::from_secs(2));
        let after = sim.events(2);
        assert_eq!(
            close_codes(&after),
            vec![SessionCode::UNAUTHORIZED],
            "{run}: {after:?}"
        );
        assert!(
            sub_events(&after, sub)
                .iter()
                .any(|e| matches!(e, SubscriptionEvent::Closed { .. })),
            "{run}"
        );
        assert!(close_codes(&sim.events(0)).is_empty(), "{run}");
        assert_eq!(sim.nodes[1].stats().auth_expired_sessions, 1, "{run}");
        let now = sim.now();
        sim.nodes[0].unpublish(now, b);
        teardown(&mut sim, &[l1, l2], run);
    }
}
