//! Query-string helpers shared by the layers (form-urlencoded, as RFC 6750 §2.3 uses).

use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::{Request, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::reject::{Rejection, RejectionKind};

/// One `key=value` piece of a query: the raw text, its decoded key, its raw value.
pub(crate) struct Pair<'a> {
    #[cfg_attr(not(feature = "log"), allow(dead_code))]
    pub(crate) raw: &'a str,
    pub(crate) key: Cow<'a, str>,
    pub(crate) value: &'a str,
}

/// The non-empty pieces of a query, in order. The one query splitter every layer uses.
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = Pair<'_>> {
    query.split('&').filter(|p| !p.is_empty()).map(pair)
}

fn pair(raw: &str) -> Pair<'_> {
    let (k, value) = raw.split_once('=').unwrap_or((raw, ""));
    Pair {
        raw,
        key: decode(k).unwrap_or(Cow::Borrowed("")),
        value,
    }
}

/// The values of cookie `name` across every `Cookie` header (RFC 6265 §5.4 pairs).
pub(crate) fn cookies<'a>(
    headers: &'a http::HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v: &'a str| v.split(';'))
        .filter_map(move |pair: &'a str| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Form-decodes one component (`+` is a space); `None` when it is not UTF-8.
pub(crate) fn decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains(['+', '%']) {
        return Some(Cow::Borrowed(raw));
    }
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| Cow::Owned(s.into_owned()))
}

/// Percent-decodes one path segment (`+` stays a plus); `None` when it is not UTF-8.
#[cfg_attr(not(feature = "guard"), allow(dead_code))]
pub(crate) fn decode_segment(raw: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(raw).decode_utf8().ok()
}

/// Everything but the RFC 3986 unreserved characters is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Appends one percent-encoded query component (no formatting machinery on the hot path).
pub(crate) fn push_encoded(out: &mut String, value: &str) {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        out.push_str(value);
    } else {
        out.extend(utf8_percent_encode(value, COMPONENT));
    }
}

/// What [`rewrite`] does with one `key=value` pair, by its decoded key and raw value.
pub(crate) enum PairEdit<'v> {
    /// Left as the client spelled it.
    Keep,
    /// Removed.
    Drop,
    /// Its value becomes this (percent-encoded); a pair that already decodes to it is kept
    /// as spelled, so an unchanged query is never rebuilt.
    Set(&'v str),
}

/// The one query rewriter: applies `edit` to every pair of `query`, then appends what
/// `append` names (`key`, `value`, both encoded here; asked after the pairs were seen). Returns
/// the new path-and-query, `path` first, in the one buffer it allocates, or `None` when nothing
/// changed, in which case nothing was allocated. Empty pieces (`a=1&&b`) are dropped only when
/// the query changes; a query left with no pair is removed.
pub(crate) fn rewrite<'v>(
    path: &str,
    query: Option<&str>,
    mut edit: impl FnMut(&str, &str) -> PairEdit<'v>,
    append: impl FnOnce() -> Option<(&'v str, &'v str)>,
) -> Option<String> {
    let query = query.unwrap_or("");
    let mut out: Option<Rebuilt> = None;
    let mut start = 0;
    for raw in query.split('&') {
        let here = start;
        start += raw.len() + 1;
        if raw.is_empty() {
            continue;
        }
        let Pair { key, value, .. } = pair(raw);
        let set = match edit(&key, value) {
            PairEdit::Keep => None,
            PairEdit::Set(v) if decode(value).as_deref() == Some(v) => None,
            PairEdit::Set(v) => Some(Some(v)),
            PairEdit::Drop => Some(None),
        };
        match (set, out.as_mut()) {
            (None, None) => {}
            (None, Some(out)) => out.piece(raw),
            (Some(set), _) => {
                let out = out.get_or_insert_with(|| Rebuilt::new(path, query, here));
                if let Some(value) = set {
                    out.pair(&key, value);
                }
            }
        }
    }
    if let Some((key, value)) = append() {
        out.get_or_insert_with(|| Rebuilt::new(path, query, query.len()))
            .pair(key, value);
    }
    out.map(Rebuilt::finish)
}

/// A path-and-query being rebuilt: `path?` then the pairs.
struct Rebuilt {
    text: String,
    query_start: usize,
}

impl Rebuilt {
    /// `path?` and the first `upto` bytes of `query` as the client spelled them.
    fn new(path: &str, query: &str, upto: usize) -> Self {
        let mut text = String::with_capacity(path.len() + query.len() + 48);
        text.push_str(path);
        text.push('?');
        let query_start = text.len();
        let kept = query[..upto.min(query.len())].trim_matches('&');
        text.push_str(kept);
        Self { text, query_start }
    }

    fn separate(&mut self) {
        if self.text.len() > self.query_start {
            self.text.push('&');
        }
    }

    fn piece(&mut self, raw: &str) {
        self.separate();
        self.text.push_str(raw);
    }

    fn pair(&mut self, key: &str, value: &str) {
        self.separate();
        push_encoded(&mut self.text, key);
        self.text.push('=');
        push_encoded(&mut self.text, value);
    }

    fn finish(mut self) -> String {
        if self.text.len() == self.query_start {
            self.text.pop();
        }
        self.text
    }
}

/// Replaces a request's path and query, keeping scheme and authority.
pub(crate) fn set_path_and_query<B>(
    req: &mut Request<B>,
    path_and_query: String,
) -> Result<(), Rejection> {
    let bad = |_| Rejection::new(RejectionKind::BadRequest);
    let path_and_query = PathAndQuery::try_from(path_and_query).map_err(bad)?;
    // Scheme and authority are kept, so only the path-and-query can make this fail.
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|_| Rejection::new(RejectionKind::BadRequest))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_decode_keys_and_keep_raw_values() {
        let got: Vec<_> = pairs("a=1&&resource%49d=x%20y&flag")
            .map(|p| (p.raw, p.key, p.value))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a=1", Cow::from("a"), "1"),
                ("resource%49d=x%20y", Cow::from("resourceId"), "x%20y"),
                ("flag", Cow::from("flag"), "")
            ]
        );
    }

    #[test]
    fn cookies_are_found_across_headers_by_exact_name() {
        let mut headers = http::HeaderMap::new();
        headers.append(http::header::COOKIE, "a=1; session=s1".parse().unwrap());
        headers.append(
            http::header::COOKIE,
            "sessionx=no;session=s2".parse().unwrap(),
        );
        assert_eq!(
            cookies(&headers, "session").collect::<Vec<_>>(),
            vec!["s1", "s2"]
        );
    }

    fn rewritten(
        query: Option<&str>,
        append: Option<(&'static str, &'static str)>,
    ) -> Option<String> {
        let mut seen = false;
        rewrite(
            "/p",
            query,
            |key, _| match key {
                "resourceId" if !seen => {
                    seen = true;
                    PairEdit::Set("org:alice")
                }
                "resourceId" => PairEdit::Drop,
                "secret" => PairEdit::Drop,
                _ => PairEdit::Keep,
            },
            || append,
        )
        .map(|pq| {
            pq.strip_prefix("/p")
                .unwrap()
                .trim_start_matches('?')
                .to_owned()
        })
    }

    #[test]
    fn rewrite_changes_only_what_it_must_and_keeps_spelling() {
        assert_eq!(
            rewritten(Some("a=%41&resourceId=bob&&resource%49d=eve&b"), None).as_deref(),
            Some("a=%41&resourceId=org%3Aalice&b")
        );
        assert_eq!(
            rewritten(Some("x=1&secret=s"), None).as_deref(),
            Some("x=1")
        );
        assert_eq!(rewritten(Some("secret=s"), None).as_deref(), Some(""));
        assert_eq!(
            rewritten(None, Some(("resourceId", "org:alice"))).as_deref(),
            Some("resourceId=org%3Aalice")
        );
        assert_eq!(
            rewritten(Some("x=1&"), Some(("k", "v"))).as_deref(),
            Some("x=1&k=v")
        );
    }

    #[test]
    fn rewrite_of_an_unchanged_query_is_none() {
        // Already the caller's id, however it is spelled: nothing is rebuilt.
        assert_eq!(rewritten(Some("a=1&resourceId=org%3Aalice"), None), None);
        assert_eq!(rewritten(Some("a=1&resourceId=org:alice&&"), None), None);
        assert_eq!(rewritten(Some(""), None), None);
        assert_eq!(rewritten(None, None), None);
    }

    #[test]
    fn decode_handles_plus_and_percent() {
        assert_eq!(decode("a+b%2Bc").unwrap(), "a b+c");
        assert_eq!(decode("%FF"), None);
        let mut out = String::new();
        push_encoded(&mut out, "org:al ice/é");
        push_encoded(&mut out, "-plain_~.");
        assert_eq!(out, "org%3Aal%20ice%2F%C3%A9-plain_~.");
    }
}
