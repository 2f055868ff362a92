//! Signed tokens (JWT) in the reference relay's format, verified in-process.
//!
//! A client puts the token in its URL's query, `?jwt=<token>`. Its claims:
//!
//! - `root`: a path the lists below are relative to (default: the root);
//! - `put` / `get`: path prefixes the holder may publish / subscribe under (a string or a
//!   list; `p` grants `p` and everything below it, `""` everything), as `moq-token-cli`
//!   writes them; or `publish` / `subscribe`: lists of [patterns](super::Pattern) (the two
//!   forms may not be mixed);
//! - `exp`, `nbf`, `iat`: Unix seconds (no leeway); `iss`, `sub`, `jti` are ignored.
//!
//! Any other claim, a `null`, a token granting nothing, or a path that the grant does not
//! reach is refused, as the reference's verifier does. The session's path may equal the
//! token's root, lie below it (the grant narrows) or above it.
//!
//! Keys are JWKs (raw JSON, or base64url of the JSON as `moq-token-cli` writes its files), a
//! JWK set (`{"keys": [...]}`), or PEM public keys (SPKI; EC P-256/P-384, Ed25519, RSA).
//! A token's `kid` selects the key; a token without one needs a single configured key. The
//! token's `alg` must be its key's: `alg: none` and algorithm confusion are refused. HMAC
//! (HS256/384/512), ECDSA (ES256/384), EdDSA (Ed25519) and RSA (RS*/PS*) verify.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{AuthError, AuthRequest, Authorizer, Grant, Pattern, Public};
use crate::wire::Path;

/// Longest token accepted (a URL query; tokens are a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Most entries in one claim list.
pub const MAX_CLAIM_ENTRIES: usize = 64;
/// Shortest HMAC secret accepted (the reference's minimum).
pub const MIN_HMAC_SECRET: usize = 32;
/// Largest key file accepted.
pub const MAX_KEY_FILE: usize = 64 * 1024;

/// Why a key does not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// One key that verifies tokens.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The key ID, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm tokens signed with this key must name.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Parse a key file's text: a JWK, a JWK set, or a PEM public key. `name` (the file's
    /// stem) is the key ID of a PEM key.
    pub fn parse_file(text: &[u8], name: Option<&str>) -> Result<Vec<Self>, KeyError> {
        if text.len() > MAX_KEY_FILE {
            return Err(KeyError(format!("key file over {MAX_KEY_FILE} bytes")));
        }
        let trimmed = trim(text);
        if trimmed.starts_with(b"-----BEGIN") {
            return Ok(vec![Self::from_pem(trimmed, name)?]);
        }
        let json: Value = if trimmed.starts_with(b"{") {
            serde_json::from_slice(trimmed).map_err(|e| KeyError(format!("key JSON: {e}")))?
        } else {
            let raw = URL_SAFE_NO_PAD
                .decode(trimmed)
                .or_else(|_| URL_SAFE.decode(trimmed))
                .map_err(|_| KeyError("neither JSON, base64url JSON nor PEM".into()))?;
            serde_json::from_slice(&raw).map_err(|e| KeyError(format!("key JSON: {e}")))?
        };
        match json.get("keys") {
            Some(Value::Array(keys)) => keys.iter().map(Self::from_jwk).collect(),
            Some(_) => Err(KeyError("`keys` is not a list".into())),
            None => Ok(vec![Self::from_jwk(&json)?]),
        }
    }

    /// A key from one JWK (its public part is used; a private JWK works too).
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        let need = |name: &str| field(name).ok_or_else(|| KeyError(format!("JWK lacks `{name}`")));
        if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array)
            && !ops.iter().any(|op| op.as_str() == Some("verify"))
        {
            return Err(KeyError("JWK's key_ops do not include verify".into()));
        }
        let kty = need("kty")?;
        let alg = field("alg").map(parse_alg).transpose()?;
        let bad = |e: jsonwebtoken::errors::Error| KeyError(format!("JWK: {e}"));
        let (alg, key) = match kty {
            "oct" => {
                let alg = alg.ok_or_else(|| KeyError("an oct JWK needs `alg`".into()))?;
                if !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                    return Err(KeyError(format!("{alg:?} is not an HMAC algorithm")));
                }
                let secret = b64(need("k")?)?;
                if secret.len() < MIN_HMAC_SECRET {
                    return Err(KeyError(format!(
                        "HMAC secret of {} bytes; at least {MIN_HMAC_SECRET} needed",
                        secret.len()
                    )));
                }
                (alg, DecodingKey::from_secret(&secret))
            }
            "EC" => {
                let curve_alg = match need("crv")? {
                    "P-256" => Algorithm::ES256,
                    "P-384" => Algorithm::ES384,
                    other => return Err(KeyError(format!("unsupported EC curve {other}"))),
                };
                if alg.is_some_and(|a| a != curve_alg) {
                    return Err(KeyError("the JWK's alg does not fit its curve".into()));
                }
                let key = DecodingKey::from_ec_components(need("x")?, need("y")?).map_err(bad)?;
                (curve_alg, key)
            }
            "OKP" => {
                if need("crv")? != "Ed25519" {
                    return Err(KeyError("only Ed25519 OKP keys are supported".into()));
                }
                if alg.is_some_and(|a| a != Algorithm::EdDSA) {
                    return Err(KeyError("an Ed25519 JWK's alg must be EdDSA".into()));
                }
                let key = DecodingKey::from_ed_components(need("x")?).map_err(bad)?;
                (Algorithm::EdDSA, key)
            }
            "RSA" => {
                let alg = alg.ok_or_else(|| KeyError("an RSA JWK needs `alg`".into()))?;
                if !is_rsa(alg) {
                    return Err(KeyError(format!("{alg:?} is not an RSA algorithm")));
                }
                let key = DecodingKey::from_rsa_components(need("n")?, need("e")?).map_err(bad)?;
                (alg, key)
            }
            other => return Err(KeyError(format!("unsupported key type {other}"))),
        };
        Ok(Self {
            kid: field("kid").map(str::to_owned),
            alg,
            key,
        })
    }

    /// A PEM public key (SPKI); the curve or key type picks the algorithm (RSA: RS256).
    pub fn from_pem(pem: &[u8], kid: Option<&str>) -> Result<Self, KeyError> {
        let block = pem::parse(pem).map_err(|e| KeyError(format!("PEM: {e}")))?;
        if block.tag() != "PUBLIC KEY" {
            return Err(KeyError(format!(
                "PEM block `{}`; a PUBLIC KEY (SPKI) is needed",
                block.tag()
            )));
        }
        let der = block.contents();
        // The algorithm OIDs inside the SubjectPublicKeyInfo.
        const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
        const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
        const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        let bad = |e: jsonwebtoken::errors::Error| KeyError(format!("PEM key: {e}"));
        let (alg, key) = if has(P256) {
            (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(pem).map_err(bad)?,
            )
        } else if has(P384) {
            (
                Algorithm::ES384,
                DecodingKey::from_ec_pem(pem).map_err(bad)?,
            )
        } else if has(ED25519) {
            (
                Algorithm::EdDSA,
                DecodingKey::from_ed_pem(pem).map_err(bad)?,
            )
        } else if has(RSA) {
            (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(pem).map_err(bad)?,
            )
        } else {
            return Err(KeyError("unsupported PEM public key type".into()));
        };
        Ok(Self {
            kid: kid.map(str::to_owned),
            alg,
            key,
        })
    }
}

/// Verifies `?jwt=` tokens with a set of keys; sessions without a token get the [`Public`]
/// grants, if any.
#[derive(Debug, Clone, Default)]
pub struct TokenAuthorizer {
    keys: Vec<VerifyingKey>,
    public: Public,
}

impl TokenAuthorizer {
    /// An authorizer with these keys and anonymous grants.
    pub fn new(keys: Vec<VerifyingKey>, public: Public) -> Self {
        Self { keys, public }
    }

    /// Verify a token at `now_unix`: its grant in origin paths (not yet checked against a
    /// session path).
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Grant, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed(format!(
                "token over {MAX_TOKEN_LEN} bytes"
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Malformed(format!("header: {e}")))?;
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                .ok_or_else(|| AuthError::UnknownKey(format!("kid {kid}")))?,
            None if self.keys.len() == 1 => &self.keys[0],
            None => {
                return Err(AuthError::UnknownKey(
                    "the token has no kid and several keys are configured".into(),
                ));
            }
        };
        if header.alg != key.alg {
            return Err(AuthError::BadSignature(format!(
                "token alg {:?}, key alg {:?}",
                header.alg, key.alg
            )));
        }
        let mut validation = Validation::new(key.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    AuthError::BadSignature(e.to_string())
                }
                _ => AuthError::Malformed(e.to_string()),
            })?;
        grant_from_claims(&data.claims, now_unix)
    }
}

impl Authorizer for TokenAuthorizer {
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<Grant, AuthError> {
        let Some(token) = request.token() else {
            return self
                .public
                .grant_at(request.path)
                .ok_or_else(|| AuthError::NoPublicAccess(request.path.clone()));
        };
        if self.keys.is_empty() {
            return Err(AuthError::TokenNotAccepted);
        }
        let grant = self.verify(token, request.now_unix)?;
        if grant.publishes_under(request.path) || grant.subscribes_under(request.path) {
            Ok(grant)
        } else {
            Err(AuthError::NoAccess(request.path.clone()))
        }
    }
}

/// The grant of a verified token's claims, in origin paths.
pub fn grant_from_claims(claims: &Map<String, Value>, now_unix: u64) -> Result<Grant, AuthError> {
    let malformed = |m: String| AuthError::Malformed(m);
    for (name, value) in claims {
        match name.as_str() {
            "root" | "put" | "get" | "publish" | "subscribe" | "exp" | "nbf" | "iat" => {
                if value.is_null() {
                    return Err(malformed(format!("claim `{name}` is null")));
                }
            }
            "iss" | "sub" | "jti" => {}
            other => return Err(malformed(format!("unknown claim `{other}`"))),
        }
    }
    let time = |name: &str| -> Result<Option<u64>, AuthError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(|t| Some(t.max(0) as u64))
                .ok_or_else(|| malformed(format!("`{name}` is not a number of seconds"))),
        }
    };
    let expires = time("exp")?;
    if expires.is_some_and(|exp| exp <= now_unix) {
        return Err(AuthError::Expired);
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now_unix) {
        return Err(AuthError::NotYetValid);
    }
    time("iat")?;
    let root = match claims.get("root") {
        None => Path::root(),
        Some(Value::String(root)) => {
            Path::new(root).map_err(|e| malformed(format!("root: {e}")))?
        }
        Some(_) => return Err(malformed("`root` is not a string".into())),
    };
    let legacy = claims.contains_key("put") || claims.contains_key("get");
    let patterned = claims.contains_key("publish") || claims.contains_key("subscribe");
    if legacy && patterned {
        return Err(malformed(
            "`put`/`get` and `publish`/`subscribe` may not be mixed".into(),
        ));
    }
    let list = |name: &str, patterns: bool| -> Result<Vec<Pattern>, AuthError> {
        let entries: Vec<&str> = match claims.get(name) {
            None => return Ok(Vec::new()),
            Some(Value::String(s)) if !patterns => vec![s.as_str()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| malformed(format!("`{name}` holds a non-string")))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(malformed(format!("`{name}` is not a list of strings"))),
        };
        if entries.len() > MAX_CLAIM_ENTRIES {
            return Err(malformed(format!(
                "`{name}` has over {MAX_CLAIM_ENTRIES} entries"
            )));
        }
        entries
            .into_iter()
            .map(|entry| {
                if patterns {
                    let pattern = Pattern::parse(entry)
                        .map_err(|e| malformed(format!("`{name}`: {e}")))?;
                    Ok(pattern.under(&root))
                } else {
                    if entry.contains('*') {
                        return Err(malformed(format!(
                            "`{name}` prefix `{entry}` holds a wildcard (use `publish`/`subscribe` patterns)"
                        )));
                    }
                    let prefix =
                        Path::new(entry).map_err(|e| malformed(format!("`{name}`: {e}")))?;
                    let abs = root
                        .join(&prefix)
                        .map_err(|e| malformed(format!("`{name}`: {e}")))?;
                    Ok(Pattern::subtree(&abs))
                }
            })
            .collect()
    };
    let grant = Grant {
        publish: list(if legacy { "put" } else { "publish" }, !legacy)?,
        subscribe: list(if legacy { "get" } else { "subscribe" }, !legacy)?,
        expires,
    };
    if grant.publish.is_empty() && grant.subscribe.is_empty() {
        return Err(malformed(
            "the token grants neither publish nor subscribe".into(),
        ));
    }
    Ok(grant)
}

fn parse_alg(name: &str) -> Result<Algorithm, KeyError> {
    Ok(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        other => return Err(KeyError(format!("unsupported algorithm {other}"))),
    })
}

fn is_rsa(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
}

fn b64(text: &str) -> Result<Vec<u8>, KeyError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|_| KeyError("bad base64url in JWK".into()))
}

fn trim(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &text[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{self, KeyPair};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn hmac_key(kid: &str) -> VerifyingKey {
        let jwk =
            json!({"kty": "oct", "alg": "HS256", "kid": kid, "k": URL_SAFE_NO_PAD.encode(SECRET)});
        VerifyingKey::from_jwk(&jwk).unwrap()
    }

    fn sign_hs(kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(Into::into);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn authorize(auth: &TokenAuthorizer, path: &str, token: &str) -> Result<Grant, AuthError> {
        let path = Path::new(path).unwrap();
        let query = format!("jwt={token}");
        auth.authorize(&AuthRequest {
            path: &path,
            query: Some(&query),
            now_unix: NOW,
        })
    }

    fn p(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    #[test]
    fn legacy_prefixes_are_subtrees_under_the_root() {
        let auth = TokenAuthorizer::new(vec![hmac_key("a")], Public::default());
        let token = sign_hs(
            Some("a"),
            &json!({"root": "demo", "put": "bbb", "get": [""], "exp": NOW + 60}),
        );
        let grant = authorize(&auth, "demo", &token).unwrap();
        assert!(grant.may_publish(&p("demo/bbb")));
        assert!(grant.may_publish(&p("demo/bbb/cam")));
        assert!(!grant.may_publish(&p("demo/bbbb")));
        assert!(!grant.may_publish(&p("demo/other")));
        assert!(grant.may_subscribe(&p("demo/anything")));
        assert!(!grant.may_subscribe(&p("elsewhere")));
        assert_eq!(grant.expires, Some(NOW + 60));
        // Below the root narrows, above it re-prefixes; beside it is refused.
        assert!(authorize(&auth, "demo/bbb", &token).is_ok());
        assert!(authorize(&auth, "", &token).is_ok());
        assert_eq!(
            authorize(&auth, "other", &token),
            Err(AuthError::NoAccess(p("other")))
        );
    }

    #[test]
    fn pattern_claims() {
        let auth = TokenAuthorizer::new(vec![hmac_key("a")], Public::default());
        let token = sign_hs(
            Some("a"),
            &json!({"root": "rooms", "publish": ["*/cam"], "subscribe": ["**"]}),
        );
        let grant = authorize(&auth, "rooms", &token).unwrap();
        assert!(grant.may_publish(&p("rooms/1/cam")));
        assert!(!grant.may_publish(&p("rooms/1/mic")));
        assert!(grant.may_subscribe(&p("rooms/1/mic")));
    }

    #[test]
    fn refusals() {
        let auth = TokenAuthorizer::new(vec![hmac_key("a"), hmac_key("b")], Public::default());
        let good = json!({"put": [""], "exp": NOW + 60});
        let token = sign_hs(Some("a"), &good);
        assert!(authorize(&auth, "", &token).is_ok());
        // Expired (no leeway), not yet valid.
        let expired = sign_hs(Some("a"), &json!({"put": [""], "exp": NOW}));
        assert_eq!(authorize(&auth, "", &expired), Err(AuthError::Expired));
        let early = sign_hs(Some("a"), &json!({"put": [""], "nbf": NOW + 1}));
        assert_eq!(authorize(&auth, "", &early), Err(AuthError::NotYetValid));
        // Unknown kid; no kid with two keys.
        let unknown = sign_hs(Some("zz"), &good);
        assert!(matches!(
            authorize(&auth, "", &unknown),
            Err(AuthError::UnknownKey(_))
        ));
        let no_kid = sign_hs(None, &good);
        assert!(matches!(
            authorize(&auth, "", &no_kid),
            Err(AuthError::UnknownKey(_))
        ));
        // Wrong secret.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("a".into());
        let forged = jsonwebtoken::encode(
            &header,
            &good,
            &EncodingKey::from_secret(b"another secret of 32 bytes......"),
        )
        .unwrap();
        assert!(matches!(
            authorize(&auth, "", &forged),
            Err(AuthError::BadSignature(_))
        ));
        // Tampered payload: the signature of the original with a new body.
        let parts: Vec<&str> = token.split('.').collect();
        let body = URL_SAFE_NO_PAD.encode(br#"{"put":[""],"get":[""],"exp":1900000000}"#);
        let tampered = format!("{}.{body}.{}", parts[0], parts[2]);
        assert!(matches!(
            authorize(&auth, "", &tampered),
            Err(AuthError::BadSignature(_))
        ));
        // alg: none.
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"a"}"#);
        let none = format!("{none_header}.{}.", parts[1]);
        assert!(matches!(
            authorize(&auth, "", &none),
            Err(AuthError::Malformed(_))
        ));
        // Unknown claims, nulls, mixed forms, useless tokens, wildcard prefixes.
        for claims in [
            json!({"put": [""], "cluster": true}),
            json!({"put": [""], "aud": "x"}),
            json!({"put": null}),
            json!({"put": [""], "subscribe": ["**"]}),
            json!({"root": "x"}),
            json!({"put": ["a/*"]}),
            json!({"publish": ["/bad"]}),
            json!({"put": [""], "exp": "soon"}),
        ] {
            let token = sign_hs(Some("a"), &claims);
            assert!(
                matches!(authorize(&auth, "", &token), Err(AuthError::Malformed(_))),
                "{claims}"
            );
        }
        // Garbage and oversized tokens.
        assert!(matches!(
            authorize(&auth, "", "not.a.jwt"),
            Err(AuthError::Malformed(_))
        ));
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            authorize(&auth, "", &huge),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn es256_and_eddsa_keys_verify_and_refuse_algorithm_confusion() {
        let rng = SystemRandom::new();
        // ES256.
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "ec",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        // As moq-token-cli writes it: base64url of the JSON.
        let file = URL_SAFE_NO_PAD.encode(jwk.to_string());
        let ec = VerifyingKey::parse_file(file.as_bytes(), None).unwrap();
        assert_eq!(ec[0].algorithm(), Algorithm::ES256);
        // Ed25519, as a JWK set with the EC key.
        let ed_pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed_pair = signature::Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();
        let set = json!({"keys": [jwk, {
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "ed",
            "x": URL_SAFE_NO_PAD.encode(ed_pair.public_key().as_ref()),
        }]});
        let keys = VerifyingKey::parse_file(set.to_string().as_bytes(), None).unwrap();
        let auth = TokenAuthorizer::new(keys, Public::default());
        let claims = json!({"get": ["live"], "exp": NOW + 5});
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec".into());
        let es = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(pkcs8.as_ref()))
            .unwrap();
        assert!(
            authorize(&auth, "live", &es)
                .unwrap()
                .may_subscribe(&p("live/x"))
        );
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("ed".into());
        let ed = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_ed_der(ed_pkcs8.as_ref()),
        )
        .unwrap();
        assert!(authorize(&auth, "live", &ed).is_ok());
        // The EdDSA token presented under the EC key's kid: the algorithm is not the key's.
        let parts: Vec<&str> = ed.split('.').collect();
        let confused = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT","kid":"ec"}"#),
            parts[1],
            parts[2]
        );
        assert!(matches!(
            authorize(&auth, "live", &confused),
            Err(AuthError::BadSignature(_))
        ));
        // HS256 signed with the EC key's public bytes as the secret: refused by alg.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("ec".into());
        let hs = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(point)).unwrap();
        assert!(matches!(
            authorize(&auth, "live", &hs),
            Err(AuthError::BadSignature(_))
        ));
    }

    #[test]
    fn key_files_are_checked() {
        let short = json!({"kty": "oct", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(b"short")});
        assert!(VerifyingKey::from_jwk(&short).is_err());
        assert!(VerifyingKey::from_jwk(&json!({"alg": "HS256", "k": "x"})).is_err());
        let sign_only = json!({"kty": "oct", "alg": "HS256", "key_ops": ["sign"], "k": URL_SAFE_NO_PAD.encode(SECRET)});
        assert!(VerifyingKey::from_jwk(&sign_only).is_err());
        assert!(VerifyingKey::parse_file(b"%%%", None).is_err());
        assert!(VerifyingKey::parse_file(&vec![b'a'; MAX_KEY_FILE + 1], None).is_err());
    }

    #[test]
    fn public_grants_apply_without_a_token() {
        let public = Public {
            publish: vec![],
            subscribe: vec![Pattern::parse("anon/**").unwrap()],
        };
        let auth = TokenAuthorizer::new(vec![hmac_key("a")], public);
        let path = p("anon");
        let request = AuthRequest {
            path: &path,
            query: None,
            now_unix: NOW,
        };
        let grant = auth.authorize(&request).unwrap();
        assert!(grant.may_subscribe(&p("anon/x")));
        assert!(!grant.may_publish(&p("anon/x")));
        let other = p("private");
        assert!(
            auth.authorize(&AuthRequest {
                path: &other,
                ..request
            })
            .is_err()
        );
    }
}
