//! Broadcast path patterns, in the syntax the reference relay's grants use, so an operator's
//! `--auth-public anon/**` and a token's `publish`/`subscribe` lists mean the same here.
//!
//! A pattern is `/`-separated segments:
//!
//! - a literal segment matches itself;
//! - `*` matches exactly one segment; `pre*suf` one segment starting with `pre` and ending
//!   with `suf` (one `*` per segment);
//! - `**` matches zero or more segments, at most once per pattern, anywhere in it.
//!
//! `foo` is that one broadcast, `foo/**` is `foo` and everything below it, `**` is every
//! path, and the empty pattern is the root path only. Empty segments (a leading, trailing
//! or doubled `/`), `**` mixed with other characters, two `*` in a segment and a second `**`
//! are errors, as are more than [`MAX_SEGMENTS`] segments.

use std::fmt;

use crate::wire::Path;

/// Most segments in one pattern.
pub const MAX_SEGMENTS: usize = 32;
/// Longest pattern text accepted.
pub const MAX_PATTERN_LEN: usize = 1024;

/// Why a pattern does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A leading, trailing or doubled `/`.
    #[error("empty segment in pattern `{0}`")]
    EmptySegment(String),
    /// `**` must be a whole segment.
    #[error("`**` mixed with other characters in pattern `{0}`")]
    MixedDoubleStar(String),
    /// More than one `*` in one segment.
    #[error("two `*` in one segment of pattern `{0}`")]
    TwoStars(String),
    /// More than one `**`.
    #[error("more than one `**` in pattern `{0}`")]
    TwoDoubleStars(String),
    /// Over [`MAX_SEGMENTS`] segments or [`MAX_PATTERN_LEN`] bytes.
    #[error("pattern too long ({0} bytes or segments)")]
    TooLong(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// One segment with this prefix and suffix (`*` alone is both empty).
    Glob {
        prefix: Box<str>,
        suffix: Box<str>,
    },
}

impl Segment {
    fn matches(&self, segment: &str) -> bool {
        match self {
            Segment::Literal(lit) => &**lit == segment,
            Segment::Glob { prefix, suffix } => {
                segment.len() >= prefix.len() + suffix.len()
                    && segment.starts_with(&**prefix)
                    && segment.ends_with(&**suffix)
            }
        }
    }
}

/// A parsed broadcast path pattern: see [`crate::auth`] for where they are used; the syntax
/// is the reference relay's (`*` one segment, `pre*suf` one segment, `**` any number).
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Segments before the `**` (all of them when there is none).
    head: Vec<Segment>,
    /// Segments after the `**`; `None` when the pattern has no `**`.
    tail: Option<Vec<Segment>>,
    text: Box<str>,
}

impl Pattern {
    /// Parse a pattern.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong(text.len()));
        }
        let mut head = Vec::new();
        let mut tail: Option<Vec<Segment>> = None;
        if !text.is_empty() {
            let count = text.split('/').count();
            if count > MAX_SEGMENTS {
                return Err(PatternError::TooLong(count));
            }
            for raw in text.split('/') {
                let segment = match raw {
                    "" => return Err(PatternError::EmptySegment(text.into())),
                    "**" => {
                        if tail.is_some() {
                            return Err(PatternError::TwoDoubleStars(text.into()));
                        }
                        tail = Some(Vec::new());
                        continue;
                    }
                    _ if raw.contains("**") => {
                        return Err(PatternError::MixedDoubleStar(text.into()));
                    }
                    _ => match raw.split_once('*') {
                        None => Segment::Literal(raw.into()),
                        Some((_, after)) if after.contains('*') => {
                            return Err(PatternError::TwoStars(text.into()));
                        }
                        Some((prefix, suffix)) => Segment::Glob {
                            prefix: prefix.into(),
                            suffix: suffix.into(),
                        },
                    },
                };
                match &mut tail {
                    Some(tail) => tail.push(segment),
                    None => head.push(segment),
                }
            }
        }
        Ok(Self {
            head,
            tail,
            text: text.into(),
        })
    }

    /// `path` and everything below it (`path/**`, or `**` at the root): what a token's
    /// legacy `put`/`get` prefix grants. `path`'s segments are taken literally.
    pub fn subtree(path: &Path) -> Self {
        let head = segments(path).map(|s| Segment::Literal(s.into())).collect();
        let text = if path.is_empty() {
            "**".to_string()
        } else {
            format!("{path}/**")
        };
        Self {
            head,
            tail: Some(Vec::new()),
            text: text.into(),
        }
    }

    /// This pattern, relative to `root`: `root`'s segments (taken literally) put in front.
    pub fn under(&self, root: &Path) -> Self {
        if root.is_empty() {
            return self.clone();
        }
        let mut head: Vec<Segment> = segments(root).map(|s| Segment::Literal(s.into())).collect();
        head.extend(self.head.iter().cloned());
        let text = if self.text.is_empty() {
            root.to_string()
        } else {
            format!("{root}/{}", self.text)
        };
        Self {
            head,
            tail: self.tail.clone(),
            text: text.into(),
        }
    }

    /// True when the pattern has a wildcard (`*` or `**`).
    pub fn has_wildcard(&self) -> bool {
        self.tail.is_some() || self.head.iter().any(|s| matches!(s, Segment::Glob { .. }))
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &Path) -> bool {
        let parts: Vec<&str> = segments(path).collect();
        let head_ok =
            |n: usize| parts.len() >= n && self.head.iter().zip(&parts).all(|(p, s)| p.matches(s));
        match &self.tail {
            None => parts.len() == self.head.len() && head_ok(self.head.len()),
            Some(tail) => {
                let (h, t) = (self.head.len(), tail.len());
                parts.len() >= h + t
                    && head_ok(h)
                    && tail
                        .iter()
                        .zip(&parts[parts.len() - t..])
                        .all(|(p, s)| p.matches(s))
            }
        }
    }

    /// Whether some path at or below `prefix` matches: a session rooted at `prefix` (or an
    /// announce request for it) can use this grant at all.
    pub fn reaches_under(&self, prefix: &Path) -> bool {
        let parts: Vec<&str> = segments(prefix).collect();
        match &self.tail {
            // Every segment of the prefix must be matched by the pattern's own.
            None => {
                parts.len() <= self.head.len()
                    && self.head.iter().zip(&parts).all(|(p, s)| p.matches(s))
            }
            // Past the head, `**` absorbs the rest of the prefix and the tail matches an
            // extension of it.
            Some(_) => self.head.iter().zip(&parts).all(|(p, s)| p.matches(s)),
        }
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn segments(path: &Path) -> impl Iterator<Item = &str> {
    path.as_str().split('/').filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }
    fn path(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    #[test]
    fn literal_star_glob_and_double_star() {
        assert!(p("foo").matches(&path("foo")));
        assert!(!p("foo").matches(&path("foo/bar")));
        assert!(!p("foo").matches(&path("foobar")));
        assert!(p("foo/**").matches(&path("foo")));
        assert!(p("foo/**").matches(&path("foo/a/b")));
        assert!(!p("foo/**").matches(&path("foobar")));
        assert!(p("**").matches(&path("")));
        assert!(p("**").matches(&path("a/b/c")));
        assert!(p("").matches(&path("")));
        assert!(!p("").matches(&path("a")));
        assert!(p("rooms/*/cam").matches(&path("rooms/12/cam")));
        assert!(!p("rooms/*/cam").matches(&path("rooms/cam")));
        assert!(!p("rooms/*/cam").matches(&path("rooms/1/2/cam")));
        assert!(p("user-*").matches(&path("user-7")));
        assert!(p("user-*").matches(&path("user-")));
        assert!(!p("user-*").matches(&path("use")));
        assert!(p("a*z").matches(&path("az")));
        assert!(
            !p("ab*ba").matches(&path("aba")),
            "prefix and suffix may not overlap"
        );
        assert!(p("**/chat").matches(&path("chat")));
        assert!(p("**/chat").matches(&path("x/y/chat")));
        assert!(!p("**/chat").matches(&path("x/chat/y")));
        assert!(p("a/**/b").matches(&path("a/b")));
        assert!(p("a/**/b").matches(&path("a/x/y/b")));
        assert!(!p("a/**/b").matches(&path("a/x/c")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["/a", "a/", "a//b", "a**", "**b/c", "a*b*c", "**/a/**"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        let long = vec!["a"; MAX_SEGMENTS + 1].join("/");
        assert!(matches!(
            Pattern::parse(&long),
            Err(PatternError::TooLong(_))
        ));
        assert!(Pattern::parse(&vec!["a"; MAX_SEGMENTS].join("/")).is_ok());
    }

    #[test]
    fn reaches_under_a_prefix() {
        assert!(p("anon/**").reaches_under(&path("")));
        assert!(p("anon/**").reaches_under(&path("anon")));
        assert!(p("anon/**").reaches_under(&path("anon/room/x")));
        assert!(!p("anon/**").reaches_under(&path("other")));
        assert!(p("rooms/*/cam").reaches_under(&path("rooms/9")));
        assert!(p("rooms/*/cam").reaches_under(&path("rooms/9/cam")));
        assert!(!p("rooms/*/cam").reaches_under(&path("rooms/9/cam/x")));
        assert!(p("**/chat").reaches_under(&path("anything/at/all")));
        assert!(!p("").reaches_under(&path("a")));
        assert!(p("").reaches_under(&path("")));
    }

    #[test]
    fn subtree_and_under() {
        assert_eq!(Pattern::subtree(&path("")).as_str(), "**");
        let sub = Pattern::subtree(&path("demo/bbb"));
        assert_eq!(sub.as_str(), "demo/bbb/**");
        assert!(sub.matches(&path("demo/bbb")));
        assert!(sub.matches(&path("demo/bbb/x")));
        assert!(!sub.matches(&path("demo/bbbb")));
        let rebased = p("*/cam").under(&path("room"));
        assert_eq!(rebased.as_str(), "room/*/cam");
        assert!(rebased.matches(&path("room/a/cam")));
        // A literal `*` in a root is not a wildcard.
        let literal = Pattern::subtree(&path("a*b"));
        assert!(!literal.matches(&path("axb")));
        assert!(literal.matches(&path("a*b/c")));
    }
}
