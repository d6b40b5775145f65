//! Query-string helpers shared by the layers (form-urlencoded, as RFC 6750 §2.3 uses).

use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::{Request, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::reject::{Rejection, RejectionKind};

/// Splits a query into `(decoded key, raw value)` pairs; empty pieces are skipped.
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, &str)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k).unwrap_or(Cow::Borrowed("")), v)
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
        let got: Vec<_> = pairs("a=1&&resource%49d=x%20y&flag").collect();
        assert_eq!(
            got,
            vec![
                (Cow::from("a"), "1"),
                (Cow::from("resourceId"), "x%20y"),
                (Cow::from("flag"), "")
            ]
        );
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
