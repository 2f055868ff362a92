//! Broadcast paths, prefixes and suffixes (docs/wire.md §5.1-§5.3).
//!
//! Inbound, every path is normalised as the reference does: leading and trailing `/` are
//! trimmed and runs of `/` collapse, so `//a//b/` is `a/b` and `/` is the empty path. A
//! gomoqt-style leading `/` is therefore accepted. At most [`MAX_PATH_SEGMENTS`] segments and
//! [`MAX_PATH_LEN`] bytes.
//!
//! Outbound we use the one form both the reference and gomoqt accept: paths as `/a/b`,
//! prefixes as `/a/` (the root as `/`), suffixes with no leading slash.
//!
//! Prefix matching is segment-aware, as in the reference: `a` matches `a` and `a/x` but not
//! `ab`, and the empty prefix matches everything.

use std::fmt;
use std::sync::Arc;

use crate::coding::{
    Cursor, DecodeError, EncodeError, MAX_PATH_LEN, MAX_PATH_SEGMENTS, Sink, put_varint,
};

/// A normalised broadcast path (no leading, trailing or doubled `/`).
///
/// Cloning is a reference-count increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(Arc<str>);

/// A path that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// More than [`MAX_PATH_SEGMENTS`] segments.
    #[error("path has {0} segments, at most {MAX_PATH_SEGMENTS} are allowed")]
    TooManySegments(usize),
    /// More than [`MAX_PATH_LEN`] bytes.
    #[error("path is {0} bytes, at most {MAX_PATH_LEN} are allowed")]
    TooLong(usize),
}

impl From<PathError> for DecodeError {
    fn from(err: PathError) -> Self {
        match err {
            PathError::TooManySegments(n) => DecodeError::TooLarge {
                what: "path segments",
                size: n as u64,
                max: MAX_PATH_SEGMENTS as u64,
            },
            PathError::TooLong(n) => DecodeError::TooLarge {
                what: "path",
                size: n as u64,
                max: MAX_PATH_LEN as u64,
            },
        }
    }
}

impl From<PathError> for EncodeError {
    fn from(err: PathError) -> Self {
        match DecodeError::from(err) {
            DecodeError::TooLarge { what, size, max } => EncodeError::TooLarge { what, size, max },
            _ => EncodeError::InvalidValue {
                what: "path",
                value: 0,
            },
        }
    }
}

impl Path {
    /// The empty (root) path.
    pub fn root() -> Self {
        Path(Arc::from(""))
    }

    /// Normalise `raw` and check its caps.
    pub fn new(raw: &str) -> Result<Self, PathError> {
        let trimmed = raw.trim_matches('/');
        let normalised = if trimmed.contains("//") {
            let mut out = String::with_capacity(trimmed.len());
            for segment in trimmed.split('/').filter(|s| !s.is_empty()) {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(segment);
            }
            Arc::from(out)
        } else {
            Arc::from(trimmed)
        };
        let path = Path(normalised);
        path.check()?;
        Ok(path)
    }

    fn check(&self) -> Result<(), PathError> {
        if self.0.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong(self.0.len()));
        }
        let segments = self.segment_count();
        if segments > MAX_PATH_SEGMENTS {
            return Err(PathError::TooManySegments(segments));
        }
        Ok(())
    }

    /// The normalised text, without leading or trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the root path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of `/`-separated segments (0 for the root).
    pub fn segment_count(&self) -> usize {
        if self.0.is_empty() {
            0
        } else {
            self.0.bytes().filter(|&b| b == b'/').count() + 1
        }
    }

    /// Segment-aware prefix test: `a` is a prefix of `a` and `a/b`, not of `ab`.
    pub fn has_prefix(&self, prefix: &Path) -> bool {
        self.strip_prefix_str(prefix).is_some()
    }

    fn strip_prefix_str<'a>(&'a self, prefix: &Path) -> Option<&'a str> {
        if prefix.is_empty() {
            return Some(&self.0);
        }
        let rest = self.0.strip_prefix(&*prefix.0)?;
        if rest.is_empty() {
            Some(rest)
        } else {
            rest.strip_prefix('/')
        }
    }

    /// The suffix after `prefix` (without the separating `/`), if `prefix` matches.
    pub fn strip_prefix(&self, prefix: &Path) -> Option<Path> {
        let rest = self.strip_prefix_str(prefix)?;
        if rest.len() == self.0.len() {
            Some(self.clone())
        } else {
            Some(Path(Arc::from(rest)))
        }
    }

    /// Join two paths with one `/` (either may be empty).
    pub fn join(&self, suffix: &Path) -> Result<Path, PathError> {
        if suffix.is_empty() {
            return Ok(self.clone());
        }
        if self.is_empty() {
            return Ok(suffix.clone());
        }
        let joined = Path(Arc::from(format!("{}/{}", self.0, suffix.0)));
        joined.check()?;
        Ok(joined)
    }

    /// Decode a path string and normalise it.
    pub fn decode(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, DecodeError> {
        // Normalisation only removes bytes, so a raw string slightly above the cap may still
        // fit; allow generous slack for slashes but never an unbounded string.
        let raw = cursor.string(what, MAX_PATH_LEN * 2)?;
        Ok(Path::new(raw)?)
    }

    /// Encode as a broadcast path: `/a/b` (the root as `/`).
    pub fn encode_path<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        self.check()?;
        put_varint(sink, self.0.len() as u64 + 1)?;
        sink.put_u8(b'/');
        sink.put_slice(self.0.as_bytes());
        Ok(())
    }

    /// Encode as a prefix: `/a/` (the root as `/`).
    pub fn encode_prefix<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        self.check()?;
        if self.is_empty() {
            put_varint(sink, 1)?;
            sink.put_u8(b'/');
            return Ok(());
        }
        put_varint(sink, self.0.len() as u64 + 2)?;
        sink.put_u8(b'/');
        sink.put_slice(self.0.as_bytes());
        sink.put_u8(b'/');
        Ok(())
    }

    /// Encode as a suffix: `a/b`, no leading slash (the empty suffix as an empty string).
    pub fn encode_suffix<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), EncodeError> {
        self.check()?;
        put_varint(sink, self.0.len() as u64)?;
        sink.put_slice(self.0.as_bytes());
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({:?})", &*self.0)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::new(s)
    }
}

impl TryFrom<&str> for Path {
    type Error = PathError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Path::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::new(s).expect("valid path")
    }

    #[test]
    fn normalisation_matches_reference() {
        assert_eq!(p("//a//b/").as_str(), "a/b");
        assert_eq!(p("/").as_str(), "");
        assert_eq!(p("").as_str(), "");
        assert_eq!(p("/demo/clock").as_str(), "demo/clock");
        assert_eq!(p("demo/clock").as_str(), "demo/clock");
        assert_eq!(p("a///b////c").as_str(), "a/b/c");
    }

    #[test]
    fn prefix_is_segment_aware() {
        assert!(p("a").has_prefix(&p("a")));
        assert!(p("a/x").has_prefix(&p("a")));
        assert!(!p("ab").has_prefix(&p("a")));
        assert!(p("anything/at/all").has_prefix(&Path::root()));
        assert!(Path::root().has_prefix(&Path::root()));
        assert!(!Path::root().has_prefix(&p("a")));
        assert_eq!(p("a/x/y").strip_prefix(&p("a")), Some(p("x/y")));
        assert_eq!(p("a").strip_prefix(&p("a")), Some(Path::root()));
        assert_eq!(p("ab").strip_prefix(&p("a")), None);
    }

    #[test]
    fn join_rebuilds_path() {
        assert_eq!(p("a").join(&p("b/c")).expect("fits"), p("a/b/c"));
        assert_eq!(Path::root().join(&p("b")).expect("fits"), p("b"));
        assert_eq!(p("a").join(&Path::root()).expect("fits"), p("a"));
    }

    #[test]
    fn segment_cap() {
        let ok = vec!["x"; 32].join("/");
        assert!(Path::new(&ok).is_ok());
        let too_many = vec!["x"; 33].join("/");
        assert_eq!(Path::new(&too_many), Err(PathError::TooManySegments(33)));
        // Empty segments collapse before counting.
        let padded = format!("//{}//", vec!["x"; 32].join("//"));
        assert!(Path::new(&padded).is_ok());
        assert!(p(&ok).join(&p("y")).is_err());
    }

    #[test]
    fn outbound_forms() {
        let mut out = Vec::new();
        p("a/b").encode_path(&mut out).expect("encodable");
        assert_eq!(out, b"\x04/a/b");
        out.clear();
        p("a").encode_prefix(&mut out).expect("encodable");
        assert_eq!(out, b"\x03/a/");
        out.clear();
        Path::root().encode_prefix(&mut out).expect("encodable");
        assert_eq!(out, b"\x01/");
        out.clear();
        p("cam").encode_suffix(&mut out).expect("encodable");
        assert_eq!(out, b"\x03cam");
        out.clear();
        Path::root().encode_suffix(&mut out).expect("encodable");
        assert_eq!(out, b"\x00");
    }
}
