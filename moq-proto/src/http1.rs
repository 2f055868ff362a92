//! A small HTTP/1.1 server side and client side, sans-IO, for the relay's TCP port: browsers
//! and moq-dev's tools fetch `/certificate.sha256` there to pin a development certificate
//! (`serverCertificateHashes`), and the same listener carries the relay's other plain-HTTP
//! endpoints.
//!
//! Parsing is `httparse`'s; everything is capped ([`MAX_REQUEST`], [`MAX_HEADERS`],
//! [`MAX_RESPONSE`]). Every response allows any origin (`Access-Control-Allow-Origin: *`) and
//! closes the connection: no keep-alive, so a connection is one request.

use bytes::Bytes;

/// The largest request head accepted.
pub const MAX_REQUEST: usize = 8 * 1024;
/// The most header lines accepted.
pub const MAX_HEADERS: usize = 32;
/// The largest response a client reads.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// A request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Not HTTP/1.x.
    #[error("malformed HTTP: {0}")]
    Malformed(String),
    /// Larger than the cap.
    #[error("HTTP message larger than {0} bytes")]
    TooLarge(usize),
}

impl HttpError {
    /// The status to answer a client with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) => 400,
            HttpError::TooLarge(_) => 431,
        }
    }
}

/// A request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method (`GET`, `OPTIONS`, ...).
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header lines, names lowercased, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read a request head from the start of `buf`: `Ok(None)` while incomplete, the request and
/// the bytes it took once complete.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let head = Request {
                method: request.method.unwrap_or_default().to_string(),
                target: request.path.unwrap_or_default().to_string(),
                headers: request
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            };
            Ok(Some((head, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST => {
            Err(HttpError::TooLarge(MAX_REQUEST))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::TooLarge(MAX_REQUEST)),
        Err(err) => Err(HttpError::Malformed(err.to_string())),
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra header lines (the standard ones are added by [`Response::encode`]).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.into(),
        }
    }

    /// An empty response.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// The answer to a CORS preflight: any origin, the methods and headers browsers ask for.
    pub fn preflight() -> Self {
        let mut response = Self::empty(204);
        response.headers.extend([
            (
                "access-control-allow-methods".into(),
                "GET, HEAD, OPTIONS".into(),
            ),
            ("access-control-allow-headers".into(), "*".into()),
            ("access-control-max-age".into(), "86400".into()),
        ]);
        response
    }

    /// The bytes on the wire (`Connection: close`, `Content-Length`, CORS for any origin).
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.body.len());
        out.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes(),
        );
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"access-control-allow-origin: *\r\n");
        out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(b"connection: close\r\n\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// The answer of a development relay's HTTP port: `GET /certificate.sha256` gives the
/// lowercase hex SHA-256 of its certificate (what `serverCertificateHashes` pins), `OPTIONS`
/// the CORS preflight, anything else 404.
pub fn certificate_route(request: &Request, sha256_hex: Option<&str>) -> Response {
    match (request.method.as_str(), request.path()) {
        ("OPTIONS", _) => Response::preflight(),
        ("GET" | "HEAD", "/certificate.sha256") => match sha256_hex {
            Some(hex) => Response::text(200, hex.to_string()),
            None => Response::text(404, "no certificate\n"),
        },
        ("GET" | "HEAD", _) => Response::text(404, "not found\n"),
        _ => Response::text(405, "method not allowed\n"),
    }
}

/// A GET request for `path` on `authority` (`host:port`).
pub fn get_request(authority: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n").into_bytes()
}

/// Read a whole response from `buf` (what arrived so far; `eof` when the server closed):
/// `Ok(None)` while incomplete, else the status and the body.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(u16, Bytes)>, HttpError> {
    if buf.len() > MAX_RESPONSE {
        return Err(HttpError::TooLarge(MAX_RESPONSE));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if eof => {
            return Err(HttpError::Malformed("connection closed in the head".into()));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(HttpError::Malformed(err.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let body = &buf[head..];
    match length {
        Some(len) if body.len() >= len => Ok(Some((status, Bytes::copy_from_slice(&body[..len])))),
        Some(_) if eof => Err(HttpError::Malformed("connection closed in the body".into())),
        Some(_) => Ok(None),
        None if eof => Ok(Some((status, Bytes::copy_from_slice(body)))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_route_answers_browsers() {
        let raw =
            b"GET /certificate.sha256 HTTP/1.1\r\nHost: localhost:4443\r\nOrigin: http://x\r\n\r\n";
        let (request, used) = parse_request(raw).expect("valid").expect("complete");
        assert_eq!(used, raw.len());
        assert_eq!(request.header("origin"), Some("http://x"));
        let response = certificate_route(&request, Some("ab12"));
        let bytes = response.encode(false);
        let text = String::from_utf8(bytes.clone()).expect("text");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("access-control-allow-origin: *\r\n"));
        assert!(text.ends_with("\r\n\r\nab12"));
        assert_eq!(
            parse_response(&bytes, false).expect("valid"),
            Some((200, Bytes::from_static(b"ab12")))
        );
        // Preflight, unknown paths and methods.
        let preflight = parse_request(b"OPTIONS /certificate.sha256 HTTP/1.1\r\n\r\n")
            .expect("valid")
            .expect("complete")
            .0;
        assert_eq!(certificate_route(&preflight, Some("ab")).status, 204);
        let other = parse_request(b"GET /nope HTTP/1.1\r\n\r\n")
            .expect("ok")
            .expect("done")
            .0;
        assert_eq!(certificate_route(&other, Some("ab")).status, 404);
        let post = parse_request(b"POST / HTTP/1.1\r\n\r\n")
            .expect("ok")
            .expect("done")
            .0;
        assert_eq!(certificate_route(&post, Some("ab")).status, 405);
    }

    #[test]
    fn requests_are_capped_and_partial_ones_wait() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let huge = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_REQUEST]].concat();
        assert_eq!(parse_request(&huge), Err(HttpError::TooLarge(MAX_REQUEST)));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&many).map_err(|e| e.status()), Err(431));
        assert_eq!(
            parse_request(b"\x00\x01 garbage\r\n\r\n").map_err(|e| e.status()),
            Err(400)
        );
        // Every truncation of a valid request is partial or complete, never a panic.
        let raw = b"GET /certificate.sha256 HTTP/1.1\r\nHost: h\r\n\r\n";
        for end in 0..raw.len() {
            assert!(matches!(parse_request(&raw[..end]), Ok(None)), "{end}");
        }
    }

    #[test]
    fn responses_without_a_length_end_at_eof() {
        let raw = b"HTTP/1.1 200 OK\r\n\r\nabcd";
        assert_eq!(parse_response(raw, false), Ok(None));
        assert_eq!(
            parse_response(raw, true),
            Ok(Some((200, Bytes::from_static(b"abcd"))))
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nab", true).is_err());
        assert!(parse_response(&vec![b'x'; MAX_RESPONSE + 1], false).is_err());
    }
}
