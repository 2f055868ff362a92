//! Who may publish and subscribe where: grants checked by the [node](crate::node) for every
//! session it accepts, whatever the transport, with the reference relay's conventions.
//!
//! A server-side session is admitted by an [`Authorizer`] when its path becomes known (the
//! WebTransport CONNECT path or WebSocket request path, or lite-05's SETUP Path on raw QUIC;
//! `/` for raw QUIC before lite-05). The authorizer sees the path and its `?query` (where a
//! token travels as `?jwt=…`) and answers with a [`Grant`]: the broadcast path
//! [patterns](Pattern) the session may publish and subscribe, in origin paths, and when the
//! grant expires. The node then:
//!
//! - closes a refused session with [`SessionCode::UNAUTHORIZED`](crate::codes::SessionCode);
//! - drops, silently, announcements from the session outside its publish patterns (the
//!   reference relay does the same), and never asks a session without publish rights for
//!   its announcements;
//! - announces to the session only broadcasts inside its subscribe patterns (an announce
//!   request outside them gets an empty set);
//! - refuses SUBSCRIBE, FETCH and TRACK requests outside its subscribe patterns with stream
//!   code 0x3 ([`StreamCode::UNAUTHORIZED`](crate::codes::StreamCode), the reference's
//!   code for it);
//! - closes the session with `UNAUTHORIZED` when its grant expires.
//!
//! [`Public`] grants anonymous rights by pattern (no token). Signed tokens (JWT, with the
//! reference token format) are verified by [`token::TokenAuthorizer`] (feature `auth`).

mod pattern;
#[cfg(feature = "auth")]
pub mod token;

pub use pattern::{MAX_PATTERN_LEN, MAX_SEGMENTS, Pattern, PatternError};

use crate::wire::Path;

/// What an admitted session may do, in origin paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Broadcasts the session may announce and publish.
    pub publish: Vec<Pattern>,
    /// Broadcasts the session may discover, subscribe to and fetch.
    pub subscribe: Vec<Pattern>,
    /// Unix time (seconds) when the grant ends; the node closes the session then.
    pub expires: Option<u64>,
}

impl Grant {
    /// Everything, for ever.
    pub fn everything() -> Self {
        let all = Pattern::subtree(&Path::root());
        Self {
            publish: vec![all.clone()],
            subscribe: vec![all],
            expires: None,
        }
    }

    /// Whether the session may publish `path` (an origin path).
    pub fn may_publish(&self, path: &Path) -> bool {
        self.publish.iter().any(|p| p.matches(path))
    }

    /// Whether the session may subscribe to `path` (an origin path).
    pub fn may_subscribe(&self, path: &Path) -> bool {
        self.subscribe.iter().any(|p| p.matches(path))
    }

    /// Whether any publish pattern reaches at or below `root`.
    pub fn publishes_under(&self, root: &Path) -> bool {
        self.publish.iter().any(|p| p.reaches_under(root))
    }

    /// Whether any subscribe pattern reaches at or below `root`.
    pub fn subscribes_under(&self, root: &Path) -> bool {
        self.subscribe.iter().any(|p| p.reaches_under(root))
    }
}

/// A session asking to be admitted.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The session's root (its path, normalised, without the query).
    pub path: &'a Path,
    /// The query after `?`, if any (`jwt=…`).
    pub query: Option<&'a str>,
    /// The current Unix time in seconds (the node's wall clock; virtual in tests).
    pub now_unix: u64,
}

impl AuthRequest<'_> {
    /// The last non-empty `jwt=` parameter of the query (JWTs need no URL decoding).
    pub fn token(&self) -> Option<&str> {
        self.query?
            .split('&')
            .filter_map(|kv| kv.strip_prefix("jwt="))
            .rfind(|v| !v.is_empty())
    }
}

/// Why a session was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token, and no anonymous grant reaches the path.
    #[error("no token, and no public grant reaches `/{0}`")]
    NoPublicAccess(Path),
    /// A token was presented where only anonymous grants are configured.
    #[error("a token was presented, but this relay verifies none (public access only)")]
    TokenNotAccepted,
    /// The token does not parse, or its claims are not the reference's token format.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// No configured key has the token's key ID (or the token has none and several keys do).
    #[error("no key for this token ({0})")]
    UnknownKey(String),
    /// The signature does not verify, or the algorithm is not the key's.
    #[error("bad token signature or algorithm: {0}")]
    BadSignature(String),
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
    /// The token's `nbf` is still ahead.
    #[error("token not valid yet")]
    NotYetValid,
    /// The token grants nothing at the session's path.
    #[error("the token grants no access at `/{0}`")]
    NoAccess(Path),
}

/// Admits sessions. Implementations are pure: the node passes the time.
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    /// The grant for a session, or why it is refused.
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<Grant, AuthError>;
}

/// Anonymous access by pattern, as the reference relay's `--auth-public`,
/// `--auth-public-publish` and `--auth-public-subscribe`: no token needed, none accepted.
#[derive(Debug, Clone, Default)]
pub struct Public {
    /// Publish patterns, in origin paths.
    pub publish: Vec<Pattern>,
    /// Subscribe patterns, in origin paths.
    pub subscribe: Vec<Pattern>,
}

impl Public {
    /// The grant at `path`, if any pattern reaches it.
    pub fn grant_at(&self, path: &Path) -> Option<Grant> {
        let grant = Grant {
            publish: self.publish.clone(),
            subscribe: self.subscribe.clone(),
            expires: None,
        };
        (grant.publishes_under(path) || grant.subscribes_under(path)).then_some(grant)
    }

    /// True when nothing is public.
    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.subscribe.is_empty()
    }
}

impl Authorizer for Public {
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<Grant, AuthError> {
        if request.token().is_some() {
            return Err(AuthError::TokenNotAccepted);
        }
        self.grant_at(request.path)
            .ok_or_else(|| AuthError::NoPublicAccess(request.path.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_grants_reach_their_subtree_only() {
        let public = Public {
            publish: vec![Pattern::parse("anon/**").unwrap()],
            subscribe: vec![Pattern::parse("anon/**").unwrap()],
        };
        let at = |path: &str, query: Option<&str>| {
            let path = Path::new(path).unwrap();
            public.authorize(&AuthRequest {
                path: &path,
                query,
                now_unix: 0,
            })
        };
        assert!(at("", None).is_ok());
        assert!(at("anon/room", None).is_ok());
        assert_eq!(
            at("other", None),
            Err(AuthError::NoPublicAccess(Path::new("other").unwrap()))
        );
        assert_eq!(
            at("anon", Some("jwt=x.y.z")),
            Err(AuthError::TokenNotAccepted)
        );
        assert!(
            at("anon", Some("jwt=")).is_ok(),
            "an empty jwt= is no token"
        );
    }

    #[test]
    fn token_is_the_last_non_empty_jwt_parameter() {
        let path = Path::root();
        let req = |query| AuthRequest {
            path: &path,
            query,
            now_unix: 0,
        };
        assert_eq!(req(Some("a=1&jwt=one&jwt=two")).token(), Some("two"));
        assert_eq!(req(Some("jwt=one&jwt=")).token(), Some("one"));
        assert_eq!(req(Some("x=1")).token(), None);
        assert_eq!(req(None).token(), None);
    }
}
