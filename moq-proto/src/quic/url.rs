//! MOQ URLs: `moqt://host:port/path` for raw QUIC (`moql://` is accepted as an alias).
//!
//! The port defaults to 443. On lite-05 the path travels in SETUP; on lite-03/04 raw QUIC has
//! no path (the server roots the session at `/`).

use std::fmt;

/// A parsed MOQ URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoqUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// UDP port.
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
    /// A scheme other than moqt:// or moql://.
    #[error("unsupported scheme {0:?} (use moqt://host:port/path)")]
    Scheme(String),
    /// No host.
    #[error("URL {0:?} has no host")]
    NoHost(String),
}

impl MoqUrl {
    /// Parse `moqt://host[:port][/path]`.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let url = url::Url::parse(text).map_err(|e| UrlError::Invalid {
            url: text.to_string(),
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "moqt" | "moql" => {}
            other => return Err(UrlError::Scheme(other.to_string())),
        }
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
        Ok(Self {
            host,
            port: url.port().unwrap_or(443),
            path,
        })
    }

    /// `host:port`, bracketing IPv6 literals, for address resolution.
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
        write!(f, "moqt://{}{}", self.authority(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let u = MoqUrl::parse("moqt://localhost:4443/anon").expect("valid");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 4443, "/anon")
        );
        let u = MoqUrl::parse("moql://127.0.0.1").expect("valid");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 443, "/")
        );
        let u = MoqUrl::parse("moqt://[::1]:4443/a?jwt=x").expect("valid");
        assert_eq!((u.host.as_str(), u.path.as_str()), ("::1", "/a?jwt=x"));
        assert_eq!(u.authority(), "[::1]:4443");
        assert!(matches!(
            MoqUrl::parse("https://x/"),
            Err(UrlError::Scheme(_))
        ));
        assert!(MoqUrl::parse("not a url").is_err());
    }
}
