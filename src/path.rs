//! Path patterns shared by every layer: Mastra/Hono glob semantics.
//!
//! - `*` matches every path.
//! - `/health` matches exactly `/health` (not `/health/`, not `/healthcheck`).
//! - A trailing `/*` matches the prefix itself, the prefix with a slash, and everything below:
//!   `/api/*` matches `/api`, `/api/` and `/api/x/y`, but not `/apix`.
//! - `:name` or `{name}` matches exactly one non-empty segment: `/threads/{id}/messages`.
//!
//! Matching is case-sensitive and works on the raw (still percent-encoded) path, as the axum,
//! hyper and tonic routers do.

use std::fmt;
use std::sync::Arc;

use crate::ConfigError;

#[derive(Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
}

/// A validated path pattern (see the [module docs](self)).
#[derive(Clone)]
pub struct PathPattern {
    source: Arc<str>,
    /// The bytes of `source` every matching path starts with (its leading literal segments).
    literal_prefix: usize,
    segments: Arc<[Segment]>,
    any: bool,
    wildcard_tail: bool,
    /// Every segment literal and no `/*`: only the pattern itself matches.
    exact: bool,
    /// The first eight bytes of the literal prefix, when it has eight: a route table rejects
    /// most patterns with this one comparison.
    head: Option<u64>,
}

impl PathPattern {
    /// Parses a pattern.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathPattern`] when the pattern does not start with `/` (and is not
    /// `*`), has an empty segment, uses `*` anywhere but as the last segment, or has an unnamed
    /// parameter.
    pub fn new(pattern: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidPathPattern {
            pattern: pattern.to_owned(),
            reason,
        };
        if pattern == "*" || pattern == "/*" {
            return Ok(Self {
                source: pattern.into(),
                literal_prefix: 0,
                segments: Arc::new([]),
                any: true,
                wildcard_tail: true,
                exact: false,
                head: None,
            });
        }
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(invalid("a pattern starts with `/` (or is `*`)"));
        };
        let mut segments = Vec::new();
        let mut wildcard_tail = false;
        if !body.is_empty() {
            let parts: Vec<&str> = body.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                match *part {
                    "*" if last => wildcard_tail = true,
                    "" if last => {
                        return Err(invalid("a trailing `/` is ambiguous: write `/x` or `/x/*`"));
                    }
                    "" => return Err(invalid("empty segment (`//`)")),
                    p if p.contains('*') => {
                        return Err(invalid("`*` is only allowed as the whole last segment"));
                    }
                    p if p.starts_with(':') || (p.starts_with('{') && p.ends_with('}')) => {
                        // Exactly one `:` prefix or one `{..}` pair: `::id`, `:{id` and `:id}`
                        // are typos, not other spellings of `id`.
                        let name = match p.strip_prefix(':') {
                            Some(name) => name,
                            None => &p[1..p.len() - 1],
                        };
                        if name.is_empty() || name.contains(['{', '}', ':']) {
                            return Err(invalid("a parameter needs a name: `:id` or `{id}`"));
                        }
                        segments.push(Segment::Param(name.into()));
                    }
                    p if p.contains(['{', '}']) => {
                        return Err(invalid("`{` and `}` only wrap a whole segment"));
                    }
                    p => segments.push(Segment::Literal(p.into())),
                }
            }
        }
        let literal_prefix = segments
            .iter()
            .take_while(|s| matches!(s, Segment::Literal(_)))
            .map(|s| match s {
                Segment::Literal(lit) => 1 + lit.len(),
                Segment::Param(_) => 0,
            })
            .sum();
        let exact = !wildcard_tail && segments.iter().all(|s| matches!(s, Segment::Literal(_)));
        let head = pattern.as_bytes()[..literal_prefix].get(..8).map(word);
        Ok(Self {
            source: pattern.into(),
            literal_prefix,
            segments: segments.into(),
            any: false,
            wildcard_tail,
            exact,
            head,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first eight bytes every matching path starts with, as one word (see
    /// [`path_head`]): a route table compares it before calling [`matches`](Self::matches).
    #[cfg_attr(not(feature = "authz"), allow(dead_code))]
    pub(crate) fn head(&self) -> Option<u64> {
        self.head
    }

    /// Whether `path` (a URI path, starting with `/`) matches.
    pub fn matches(&self, path: &str) -> bool {
        self.walk(path, |_, _| {})
    }

    /// Whether the pattern has a parameter called `name`.
    pub fn has_param(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Param(n) if **n == *name))
    }

    /// The raw (still percent-encoded) value of parameter `name` in `path`, when `path`
    /// matches; the last segment so named wins.
    pub fn param<'a>(&self, path: &'a str, name: &str) -> Option<&'a str> {
        self.param_span(path, name).map(|span| &path[span])
    }

    /// The byte range of parameter `name` in `path`, when `path` matches.
    pub(crate) fn param_span(&self, path: &str, name: &str) -> Option<std::ops::Range<usize>> {
        let mut span = None;
        let matched = self.walk(path, |param, range| {
            if param == name {
                span = Some(range);
            }
        });
        if matched { span } else { None }
    }

    /// Walks `path` against the pattern, reporting each parameter's byte range.
    fn walk(&self, path: &str, mut on_param: impl FnMut(&str, std::ops::Range<usize>)) -> bool {
        if self.any {
            return true;
        }
        if self.exact {
            return path.len() == self.source.len()
                && same_bytes(path.as_bytes(), self.source.as_bytes());
        }
        // One comparison rejects most paths before any segment is split (route tables scan
        // every pattern for every request).
        if let Some(head) = self.head
            && path.as_bytes().get(..8).map(word) != Some(head)
        {
            return false;
        }
        let prefix = &self.source.as_bytes()[..self.literal_prefix];
        if path.len() < prefix.len() || !same_bytes(&path.as_bytes()[..prefix.len()], prefix) {
            return false;
        }
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        if self.segments.is_empty() {
            // `/` alone, or `/*` handled above.
            return path == "/";
        }
        let mut rest = Some(body);
        for segment in self.segments.iter() {
            let Some(current) = rest else {
                return false;
            };
            let (head, tail) = match current.split_once('/') {
                Some((head, tail)) => (head, Some(tail)),
                None => (current, None),
            };
            match segment {
                Segment::Literal(lit) if **lit == *head => {}
                Segment::Param(name) if !head.is_empty() => {
                    let start = path.len() - current.len();
                    on_param(name, start..start + head.len());
                }
                _ => return false,
            }
            rest = tail;
        }
        self.wildcard_tail || rest.is_none()
    }
}

/// A path's first eight bytes as one word, to compare with [`PathPattern::head`].
#[cfg_attr(not(feature = "authz"), allow(dead_code))]
pub(crate) fn path_head(path: &str) -> Option<u64> {
    path.as_bytes().get(..8).map(word)
}

/// Eight bytes as one word (`chunk` has exactly eight).
#[inline]
fn word(chunk: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(chunk);
    u64::from_ne_bytes(bytes)
}

/// `a == b`, eight bytes at a time and inline: route tables
/// compare short literal prefixes against every request, where a `memcmp` call costs more than
/// the comparison.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a8, mut b8) = (a.chunks_exact(8), b.chunks_exact(8));
    if !(&mut a8).zip(&mut b8).all(|(x, y)| word(x) == word(y)) {
        return false;
    }
    a8.remainder()
        .iter()
        .zip(b8.remainder())
        .all(|(x, y)| x == y)
}

impl fmt::Debug for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PathPattern").field(&&*self.source).finish()
    }
}

/// A list of patterns; a path matches when any of them does.
#[derive(Clone, Debug, Default)]
pub(crate) struct PathSet(Arc<[PathPattern]>);

impl PathSet {
    pub(crate) fn push(&mut self, pattern: PathPattern) {
        let mut all = self.0.to_vec();
        all.push(pattern);
        self.0 = all.into();
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        self.0.iter().any(|p| p.matches(path))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        PathPattern::new(pattern).unwrap().matches(path)
    }

    #[test]
    fn wildcard_tail_matches_prefix_slash_and_below_but_not_lookalikes() {
        assert!(m("/api/*", "/api"));
        assert!(m("/api/*", "/api/"));
        assert!(m("/api/*", "/api/x/y"));
        assert!(!m("/api/*", "/apix"));
        assert!(!m("/api/*", "/"));
        assert!(!m("/api/*", "/API/x"));
    }

    #[test]
    fn star_matches_everything() {
        assert!(m("*", "/"));
        assert!(m("*", "/anything/at/all"));
        assert!(m("/*", "/x"));
    }

    #[test]
    fn exact_pattern_is_segment_exact() {
        assert!(m("/health", "/health"));
        assert!(!m("/health", "/health/"));
        assert!(!m("/health", "/healthcheck"));
        assert!(!m("/health", "/health/x"));
        assert!(m("/", "/"));
        assert!(!m("/", "/x"));
    }

    #[test]
    fn parameter_spellings_other_than_colon_or_braces_are_refused() {
        // Found by fuzzing: these were silently read as a parameter called `id`.
        for bad in ["/::id", "/:{id", "/:id}", "/:{id}", "/{:id}", "/{{id}}"] {
            assert!(PathPattern::new(bad).is_err(), "{bad}");
        }
        assert!(PathPattern::new("/:id").unwrap().has_param("id"));
        assert!(PathPattern::new("/{id}").unwrap().has_param("id"));
    }

    #[test]
    fn params_match_one_non_empty_segment() {
        assert!(m("/threads/{id}", "/threads/t1"));
        assert!(m("/threads/:id/messages", "/threads/t1/messages"));
        assert!(!m("/threads/{id}", "/threads/"));
        assert!(!m("/threads/{id}", "/threads/t1/messages"));
        assert!(m("/threads/{id}/*", "/threads/t1/messages/x"));
    }

    #[test]
    fn param_spans_locate_the_segment() {
        let p = PathPattern::new("/api/threads/{threadId}/messages").unwrap();
        let path = "/api/threads/t-42/messages";
        assert_eq!(&path[p.param_span(path, "threadId").unwrap()], "t-42");
        assert_eq!(p.param_span(path, "other"), None);
        assert_eq!(p.param_span("/api/threads/t-42", "threadId"), None);
        assert!(p.has_param("threadId") && !p.has_param("id"));
    }

    #[test]
    fn malformed_patterns_are_config_errors() {
        for bad in ["api", "/a//b", "/a/*/b", "/a*", "/a/", "/{}", "/:", "/a{b}"] {
            assert!(
                matches!(
                    PathPattern::new(bad),
                    Err(ConfigError::InvalidPathPattern { .. })
                ),
                "{bad} should be rejected"
            );
        }
    }
}
