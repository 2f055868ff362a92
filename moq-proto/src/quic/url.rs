//! MOQ URLs: `moqt://host:port/path` for raw QUIC (`moql://` is accepted as an alias),
//! `https://host:port/path` for WebTransport, and `http://host:port/path` for WebTransport to
//! a development server whose certificate hash is fetched from
//! `http://host:port/certificate.sha256` (the convention of moq-dev's tools).
//!
//! `ws://host:port/path` and `wss://host:port/path` reach a server over WebSocket (QMux over
//! TCP, TLS for `wss`), for networks that block UDP.
//!
//! The port defaults to 443. The path roots the session on the server: over WebTransport it is
//! the CONNECT path; over raw QUIC lite-05 sends it in SETUP and lite-03/04 have none (the
//! server roots the session at `/`).

use std::fmt;

/// How a URL reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `moqt://` (or `moql://`): MOQ directly over QUIC.
    Moqt,
    /// `https://`: WebTransport over HTTP/3.
    Https,
    /// `http://`: WebTransport, pinning the hash the server publishes over plain HTTP.
    Http,
    /// `ws://`: WebSocket (QMux) over plain TCP.
    Ws,
    /// `wss://`: WebSocket (QMux) over TLS on TCP.
    Wss,
}

impl Scheme {
    /// True for the WebTransport schemes.
    pub fn is_webtransport(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Http)
    }

    /// True for the WebSocket schemes (TCP, not QUIC).
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Moqt => "moqt",
            Scheme::Https => "https",
            Scheme::Http => "http",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }
}

/// A parsed MOQ URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoqUrl {
    /// How to reach it.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (UDP for QUIC; the same number over TCP for the `http://` certificate fetch).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// A URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a URL.
    #[error("invalid URL {url:?}: {reason}")]
    Invalid {
        /// The text given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A scheme other than moqt://, moql://, https://, http://, ws:// or wss://.
    #[error(
        "unsupported scheme {0:?} (use moqt://host:port/path for QUIC, https://host:port/path for WebTransport or ws://host:port/path for WebSocket)"
    )]
    Scheme(String),
    /// No host.
    #[error("URL {0:?} has no host")]
    NoHost(String),
}

impl MoqUrl {
    /// Parse `scheme://host[:port][/path][?query]`.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let url = url::Url::parse(text).map_err(|e| UrlError::Invalid {
            url: text.to_string(),
            reason: e.to_string(),
        })?;
        let scheme = match url.scheme() {
            "moqt" | "moql" => Scheme::Moqt,
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            other => return Err(UrlError::Scheme(other.to_string())),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(UrlError::NoHost(text.to_string())),
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(text.to_string()));
        }
        let mut path = url.path().to_string();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        // The url crate drops a scheme's default port (443 for https, 80 for http); a MOQ URL
        // always means 443 unless it says otherwise, which is the same for https.
        let port = url.port().unwrap_or(match scheme {
            Scheme::Http | Scheme::Ws if text.contains(":80/") || text.ends_with(":80") => 80,
            _ => 443,
        });
        Ok(Self {
            scheme,
            host,
            port,
            path,
        })
    }

    /// `host:port`, bracketing IPv6 literals: the address to resolve, and the `:authority`
    /// of a WebTransport CONNECT.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for MoqUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let u = MoqUrl::parse("moqt://localhost:4443/anon").expect("valid");
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Moqt, "localhost", 4443, "/anon")
        );
        let u = MoqUrl::parse("moql://127.0.0.1").expect("valid");
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Moqt, "127.0.0.1", 443, "/")
        );
        let u = MoqUrl::parse("moqt://[::1]:4443/a?jwt=x").expect("valid");
        assert_eq!((u.host.as_str(), u.path.as_str()), ("::1", "/a?jwt=x"));
        assert_eq!(u.authority(), "[::1]:4443");
        let u = MoqUrl::parse("https://relay.example/room").expect("valid");
        assert_eq!((u.scheme, u.port), (Scheme::Https, 443));
        assert_eq!(u.to_string(), "https://relay.example:443/room");
        let u = MoqUrl::parse("http://127.0.0.1:4443/").expect("valid");
        assert_eq!((u.scheme, u.port), (Scheme::Http, 4443));
        assert!(u.scheme.is_webtransport() && !Scheme::Moqt.is_webtransport());
        let u = MoqUrl::parse("ws://127.0.0.1:4443/room?jwt=t").expect("valid");
        assert_eq!(
            (u.scheme, u.port, u.path.as_str()),
            (Scheme::Ws, 4443, "/room?jwt=t")
        );
        assert!(u.scheme.is_websocket() && !u.scheme.is_webtransport());
        let u = MoqUrl::parse("wss://relay.example/").expect("valid");
        assert_eq!((u.scheme, u.port), (Scheme::Wss, 443));
        assert!(matches!(
            MoqUrl::parse("ftp://x/"),
            Err(UrlError::Scheme(_))
        ));
        assert!(MoqUrl::parse("not a url").is_err());
    }
}
