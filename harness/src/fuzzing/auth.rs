//! Fuzz entry points for authentication: JWT parsing and verification, the claims of the
//! reference token format, and broadcast path patterns.

use std::sync::OnceLock;

use moq_proto::auth::token::{TokenAuthorizer, VerifyingKey, grant_from_claims};
use moq_proto::auth::{AuthRequest, Authorizer, Pattern, Public};
use moq_proto::wire::Path;

fn authorizer() -> &'static TokenAuthorizer {
    static AUTH: OnceLock<TokenAuthorizer> = OnceLock::new();
    AUTH.get_or_init(|| {
        // base64url("0123456789abcdef0123456789abcdef"): a 32-byte HMAC secret.
        let jwk = br#"{"kty":"oct","alg":"HS256","kid":"k","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}"#;
        let keys = VerifyingKey::parse_file(jwk, None).expect("the fuzz key loads");
        let public = Public {
            publish: vec![],
            subscribe: vec![Pattern::parse("anon/**").expect("pattern")],
        };
        TokenAuthorizer::new(keys, public)
    })
}

/// Bytes as a token, as a claims document, as a key file and as a pattern with a path: no
/// panic; what is accepted is consistent.
pub fn auth_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // 1. A `?query` with a token, at a path taken from the first line.
    let (path_text, query) = text.split_once('\n').unwrap_or(("", &text));
    if let Ok(path) = Path::new(path_text) {
        let request = AuthRequest {
            path: &path,
            query: Some(query),
            now_unix: 1_900_000_000,
        };
        if let Ok(grant) = authorizer().authorize(&request) {
            assert!(grant.publishes_under(&path) || grant.subscribes_under(&path));
        }
    }
    // 2. The bytes as a claims document (what a valid signature would carry).
    if let Ok(claims) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data)
        && let Ok(grant) = grant_from_claims(&claims, 1_900_000_000)
    {
        assert!(!grant.publish.is_empty() || !grant.subscribe.is_empty());
        assert!(grant.expires.is_none_or(|e| e > 1_900_000_000));
    }
    // 3. A key file.
    let _ = VerifyingKey::parse_file(data, Some("fuzz"));
    // 4. A pattern (first line) against a path (second line): a match implies a reach.
    let mut lines = text.lines();
    if let (Some(pattern), Some(path)) = (lines.next(), lines.next())
        && let (Ok(pattern), Ok(path)) = (Pattern::parse(pattern), Path::new(path))
        && pattern.matches(&path)
    {
        assert!(
            pattern.reaches_under(&path),
            "{pattern} matches {path} but does not reach it"
        );
        assert!(pattern.reaches_under(&Path::root()));
    }
}
