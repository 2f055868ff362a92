//! The RFC 6455 §4 opening handshake over HTTP/1.1, both sides, sans-IO: the server validates
//! an upgrade request and picks a subprotocol; the client builds the request (its key comes
//! from the caller's random source) and checks the server's `101 Switching Protocols`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::http1::{self, Request, Response};

/// The GUID RFC 6455 §1.3 appends to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Not an upgrade to WebSocket (a plain HTTP request).
    #[error("not a WebSocket upgrade")]
    NotUpgrade,
    /// A WebSocket version other than 13.
    #[error("unsupported WebSocket version {0:?}")]
    Version(String),
    /// `Sec-WebSocket-Key` missing or not 16 bytes in base64.
    #[error("invalid Sec-WebSocket-Key")]
    Key,
    /// No subprotocol in common.
    #[error("no subprotocol in common (offered: {0})")]
    NoProtocol(String),
    /// The server answered something other than a valid 101.
    #[error("server refused the upgrade: {0}")]
    Refused(String),
    /// The response could not be read.
    #[error(transparent)]
    Http(#[from] http1::HttpError),
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha1.digest().bytes())
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Whether `request` asks for a WebSocket (the server then answers with [`accept`]).
pub fn is_upgrade(request: &Request) -> bool {
    request
        .header("upgrade")
        .is_some_and(|v| has_token(v, "websocket"))
}

/// The subprotocols a request offers, in its order.
pub fn offered_protocols(request: &Request) -> Vec<&str> {
    request
        .headers
        .iter()
        .filter(|(name, _)| name == "sec-websocket-protocol")
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// A validated upgrade: what the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The chosen subprotocol, if the client offered any.
    pub protocol: Option<String>,
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
}

impl Accepted {
    /// The `101 Switching Protocols` response on the wire.
    pub fn response(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-accept: {}\r\n",
            self.accept
        );
        if let Some(protocol) = &self.protocol {
            out.push_str(&format!("sec-websocket-protocol: {protocol}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Validate an upgrade request (RFC 6455 §4.2.1); `choose` picks a subprotocol from those
/// offered (`Ok(None)` when none was offered and none is required).
pub fn accept(
    request: &Request,
    choose: impl FnOnce(&[&str]) -> Result<Option<String>, HandshakeError>,
) -> Result<Accepted, HandshakeError> {
    let connection_upgrade = request
        .header("connection")
        .is_some_and(|v| has_token(v, "upgrade"));
    if request.method != "GET" || !is_upgrade(request) || !connection_upgrade {
        return Err(HandshakeError::NotUpgrade);
    }
    let version = request.header("sec-websocket-version").unwrap_or_default();
    if version.trim() != "13" {
        return Err(HandshakeError::Version(version.to_string()));
    }
    let key = request
        .header("sec-websocket-key")
        .map(str::trim)
        .ok_or(HandshakeError::Key)?;
    if BASE64.decode(key).map_or(true, |raw| raw.len() != 16) {
        return Err(HandshakeError::Key);
    }
    let protocol = choose(&offered_protocols(request))?;
    Ok(Accepted {
        protocol,
        accept: accept_key(key),
    })
}

/// The HTTP answer to a refused upgrade.
pub fn refusal(error: &HandshakeError) -> Response {
    match error {
        HandshakeError::Version(_) => {
            let mut response = Response::text(426, "WebSocket version 13 required\n");
            response
                .headers
                .push(("sec-websocket-version".into(), "13".into()));
            response
        }
        other => Response::text(400, format!("{other}\n")),
    }
}

/// A client's upgrade request in progress.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
    protocols: Vec<String>,
}

impl ClientHandshake {
    /// A handshake with a key made from `nonce` (16 random bytes from the caller), offering
    /// `protocols` in order of preference.
    pub fn new(nonce: [u8; 16], protocols: Vec<String>) -> Self {
        Self {
            key: BASE64.encode(nonce),
            protocols,
        }
    }

    /// The request on the wire, for `target` (path and query) at `authority`.
    pub fn request(&self, authority: &str, target: &str) -> Vec<u8> {
        let mut out = format!(
            "GET {target} HTTP/1.1\r\nhost: {authority}\r\nupgrade: websocket\r\n\
             connection: Upgrade\r\nsec-websocket-key: {}\r\nsec-websocket-version: 13\r\n",
            self.key
        );
        if !self.protocols.is_empty() {
            out.push_str(&format!(
                "sec-websocket-protocol: {}\r\n",
                self.protocols.join(", ")
            ));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Read the server's answer from the start of `buf`: `Ok(None)` while incomplete; once
    /// complete, the chosen subprotocol and how many bytes the head took (WebSocket frames may
    /// follow in the same read).
    pub fn response(&self, buf: &[u8]) -> Result<Option<(Option<String>, usize)>, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; http1::MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= http1::MAX_REQUEST => {
                return Err(http1::HttpError::TooLarge(http1::MAX_REQUEST).into());
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(err) => return Err(http1::HttpError::Malformed(err.to_string()).into()),
        };
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::trim)
        };
        let status = response.code.unwrap_or_default();
        if status != 101 {
            return Err(HandshakeError::Refused(format!("HTTP status {status}")));
        }
        if !header("upgrade").is_some_and(|v| has_token(v, "websocket"))
            || !header("connection").is_some_and(|v| has_token(v, "upgrade"))
        {
            return Err(HandshakeError::Refused("no upgrade to websocket".into()));
        }
        if header("sec-websocket-accept") != Some(accept_key(&self.key).as_str()) {
            return Err(HandshakeError::Refused("wrong Sec-WebSocket-Accept".into()));
        }
        let protocol = header("sec-websocket-protocol").map(str::to_string);
        match &protocol {
            Some(chosen) if !self.protocols.contains(chosen) => {
                return Err(HandshakeError::Refused(format!(
                    "subprotocol {chosen:?} was not offered"
                )));
            }
            None if !self.protocols.is_empty() => {
                return Err(HandshakeError::NoProtocol(self.protocols.join(", ")));
            }
            _ => {}
        }
        Ok(Some((protocol, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &str) -> Request {
        let raw = format!("GET /chat HTTP/1.1\r\nhost: server.example.com\r\n{lines}\r\n");
        http1::parse_request(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn rfc6455_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn server_accepts_the_rfc_request_and_picks_a_protocol() {
        let req = request(
            "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: other\r\n",
        );
        assert!(is_upgrade(&req));
        assert_eq!(offered_protocols(&req), ["chat", "superchat", "other"]);
        let accepted = accept(&req, |offered| {
            Ok(offered
                .iter()
                .find(|p| **p == "superchat")
                .map(|p| p.to_string()))
        })
        .unwrap();
        assert_eq!(accepted.protocol.as_deref(), Some("superchat"));
        let response = String::from_utf8(accepted.response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.contains("sec-websocket-protocol: superchat\r\n"));
        assert!(response.ends_with("\r\n\r\n"));
    }

    #[test]
    fn server_refusals() {
        let none = |_: &[&str]| Ok(None);
        let plain = request("");
        assert_eq!(accept(&plain, none), Err(HandshakeError::NotUpgrade));
        let v8 = request(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 8\r\n",
        );
        let err = accept(&v8, none).unwrap_err();
        assert_eq!(err, HandshakeError::Version("8".into()));
        let response = refusal(&err);
        assert_eq!(response.status, 426);
        assert!(
            response
                .headers
                .contains(&("sec-websocket-version".into(), "13".into()))
        );
        let short_key = request(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\
             Sec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(accept(&short_key, none), Err(HandshakeError::Key));
        assert_eq!(refusal(&HandshakeError::Key).status, 400);
    }

    #[test]
    fn client_round_trip_with_the_server() {
        let client = ClientHandshake::new([7; 16], vec!["qmux-01.moq-lite-04".into(), "x".into()]);
        let raw = client.request("relay.example:4443", "/anon?jwt=t");
        let (req, _) = http1::parse_request(&raw).unwrap().unwrap();
        assert_eq!(req.target, "/anon?jwt=t");
        let accepted = accept(&req, |offered| Ok(offered.first().map(|p| p.to_string()))).unwrap();
        let mut wire = accepted.response();
        wire.extend_from_slice(&[0x82, 0x00]);
        // Byte by byte: incomplete until the blank line, then the frame bytes are left over.
        for end in 0..wire.len() - 2 {
            if let Some(done) = client.response(&wire[..end]).unwrap() {
                panic!("complete early at {end}: {done:?}");
            }
        }
        let (protocol, len) = client.response(&wire).unwrap().unwrap();
        assert_eq!(protocol.as_deref(), Some("qmux-01.moq-lite-04"));
        assert_eq!(&wire[len..], &[0x82, 0x00]);
    }

    #[test]
    fn client_rejects_bad_answers() {
        let client = ClientHandshake::new([1; 16], vec!["a".into()]);
        let good = accept_key(&client.key);
        let cases = [
            "HTTP/1.1 200 OK\r\n\r\n".to_string(),
            "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\nSec-WebSocket-Protocol: a\r\n\r\n".to_string(),
            format!(
                "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {good}\r\nSec-WebSocket-Protocol: b\r\n\r\n"
            ),
            format!(
                "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {good}\r\n\r\n"
            ),
            format!(
                "HTTP/1.1 101 x\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {good}\r\n\r\n"
            ),
        ];
        for case in cases {
            assert!(client.response(case.as_bytes()).is_err(), "{case}");
        }
        let ok = format!(
            "HTTP/1.1 101 x\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {good}\r\nSec-WebSocket-Protocol: a\r\n\r\n"
        );
        assert!(client.response(ok.as_bytes()).unwrap().is_some());
        assert!(matches!(
            client.response(&vec![b'a'; http1::MAX_REQUEST]),
            Err(HandshakeError::Http(_))
        ));
    }
}
