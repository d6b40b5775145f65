//! Strict bearer-token extraction (RFC 6750 §2, RFC 9110 §11).

use std::borrow::Cow;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

use crate::reject::{Rejection, RejectionKind};

/// Where tokens may come from, besides the `Authorization` header.
#[derive(Debug, Clone)]
pub(crate) struct ExtractConfig {
    pub(crate) max_len: usize,
    pub(crate) cookie: Option<Box<str>>,
    pub(crate) query: Option<Box<str>>,
    /// A custom header carrying the bare token (e.g. `x-api-key`).
    pub(crate) header: Option<HeaderName>,
    /// Whether `Authorization: DPoP` is a credential (RFC 9449 §7.1), not "another scheme".
    pub(crate) dpop: bool,
}

impl ExtractConfig {
    /// Whether the `Authorization` header is the only place a token may come from.
    fn header_only(&self) -> bool {
        self.cookie.is_none() && self.query.is_none() && self.header.is_none()
    }
}

/// Which method carried the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `Authorization: Bearer`.
    Header,
    /// `Authorization: DPoP`.
    Dpop,
    Custom,
    Cookie,
    Query,
}

/// A token found in the request.
#[derive(Debug)]
pub(crate) struct Found<'a> {
    pub(crate) token: Cow<'a, str>,
    pub(crate) source: Source,
    /// Its length is checked but its `b64token` grammar is not yet: see [`check_grammar`].
    pub(crate) grammar_deferred: bool,
}

fn invalid_request(message: &'static str) -> Rejection {
    Rejection::with_message(RejectionKind::InvalidRequest, message)
}

/// Whether `b` may appear in a `b64token` before its `=` padding.
///
/// Branch-free on purpose: the check runs over every byte of every token (a JWT is often 700+
/// bytes), and the `|` form lets the compiler test 16 or 32 bytes per instruction.
#[inline(always)]
fn is_token_byte(b: u8) -> bool {
    // `-./0123456789` is one range (0x2D..=0x39); setting bit 0x20 maps `A-Z` onto `a-z` and
    // nothing else onto `a-z`.
    let dash_dot_slash_digit = b.wrapping_sub(b'-') < 13;
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    dash_dot_slash_digit | letter | (b == b'+') | (b == b'_') | (b == b'~')
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub(crate) fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    // No early exit: an accumulated flag keeps the loop vectorizable.
    let mut bad = 0u8;
    for &b in &token[..body_len] {
        bad |= u8::from(!is_token_byte(b));
    }
    body_len > 0 && bad == 0
}

fn checked(token: &str, max_len: usize) -> Result<&str, Rejection> {
    check_len(token, max_len)?;
    check_grammar(token)?;
    Ok(token)
}

fn check_len(token: &str, max_len: usize) -> Result<(), Rejection> {
    // Checked before any decoding: an oversized token costs nothing but this comparison.
    if token.len() > max_len {
        return Err(invalid_request("The access token is too long"));
    }
    Ok(())
}

/// The `b64token` grammar check of a token whose check [`extract`] deferred.
pub(crate) fn check_grammar(token: &str) -> Result<(), Rejection> {
    if !is_b64token(token.as_bytes()) {
        return Err(invalid_request("The access token is malformed"));
    }
    Ok(())
}

/// The bearer token of the `Authorization` header, `None` when there is none or it uses
/// another scheme (e.g. `Basic`), which counts as "no bearer credentials". With `defer`, only
/// its length is checked here.
fn from_header(
    headers: &HeaderMap,
    max_len: usize,
    defer: bool,
    dpop: bool,
) -> Result<Option<(&str, Source)>, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // `HeaderMap::get` would silently pick the first of two: ambiguity is a 400 (RFC 6750 §3.1).
    if values.next().is_some() {
        return Err(invalid_request("More than one Authorization header"));
    }
    let bytes = value.as_bytes();
    if bytes.len() > max_len.saturating_add(64) {
        return Err(invalid_request("The access token is too long"));
    }
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], &bytes[i..]),
        None => (bytes, &[][..]),
    };
    // RFC 9110 §11.1: the auth-scheme is case-insensitive.
    let source = if scheme.eq_ignore_ascii_case(b"bearer") {
        Source::Header
    } else if dpop && scheme.eq_ignore_ascii_case(b"dpop") {
        Source::Dpop
    } else {
        return Ok(None);
    };
    let token = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    if token.is_empty() {
        return Err(invalid_request("The bearer token is empty"));
    }
    let token =
        std::str::from_utf8(token).map_err(|_| invalid_request("The access token is malformed"))?;
    if defer && source == Source::Header {
        check_len(token, max_len)?;
        return Ok(Some((token, source)));
    }
    checked(token, max_len).map(|token| Some((token, source)))
}

/// The token of a custom header (`X-API-Key: <token>`): exactly one value, the whole value.
fn from_custom<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    max_len: usize,
) -> Result<Option<&'a str>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // Two values (two headers, which a proxy may also fold into one list) are ambiguous.
    if values.next().is_some() {
        return Err(invalid_request("More than one token header"));
    }
    if value.len() > max_len {
        return Err(invalid_request("The access token is too long"));
    }
    let token = value
        .to_str()
        .map_err(|_| invalid_request("The access token is malformed"))?;
    if token.is_empty() {
        return Err(invalid_request("The token header is empty"));
    }
    checked(token, max_len).map(Some)
}

fn from_cookie<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
    max_len: usize,
) -> Result<Option<&'a str>, Rejection> {
    let mut found = None;
    for v in crate::query::cookies(headers, name) {
        if found.is_some() {
            return Err(invalid_request("More than one token cookie"));
        }
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        found = Some(checked(v, max_len)?);
    }
    Ok(found)
}

fn from_query<'a>(
    query: Option<&'a str>,
    name: &str,
    max_len: usize,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    let Some(query) = query else { return Ok(None) };
    let mut found = None;
    for crate::query::Pair { key, value: v, .. } in crate::query::pairs(query) {
        if key != name {
            continue;
        }
        if found.is_some() {
            return Err(invalid_request("More than one access token parameter"));
        }
        if v.len() > max_len.saturating_mul(3) {
            return Err(invalid_request("The access token is too long"));
        }
        let v = crate::query::decode(v)
            .ok_or_else(|| invalid_request("The access token is malformed"))?;
        checked(&v, max_len)?;
        found = Some(v);
    }
    Ok(found)
}

/// Finds the request's bearer token, enforcing "exactly one method" (RFC 6750 §2).
///
/// With `defer_grammar`, when the header is the only configured source, the header token's
/// `b64token` grammar check is left to the caller ([`Found::grammar_deferred`]), so that an
/// authenticator's cache of verified tokens can answer first: nothing else can fail after it,
/// so the refusals are the same, in the same order.
pub(crate) fn extract<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    config: &'a ExtractConfig,
    defer_grammar: bool,
) -> Result<Option<Found<'a>>, Rejection> {
    let defer = defer_grammar && config.header_only();
    let mut found: Option<Found<'a>> = None;
    let mut offer = |token: Cow<'a, str>, source| {
        if found.is_some() {
            return Err(invalid_request("More than one authentication method"));
        }
        found = Some(Found {
            token,
            source,
            grammar_deferred: defer && source == Source::Header,
        });
        Ok(())
    };
    if let Some((token, source)) = from_header(headers, config.max_len, defer, config.dpop)? {
        offer(Cow::Borrowed(token), source)?;
    }
    if let Some(name) = &config.header
        && let Some(token) = from_custom(headers, name, config.max_len)?
    {
        offer(Cow::Borrowed(token), Source::Custom)?;
    }
    if let Some(name) = &config.cookie
        && let Some(token) = from_cookie(headers, name, config.max_len)?
    {
        offer(Cow::Borrowed(token), Source::Cookie)?;
    }
    if let Some(name) = &config.query
        && let Some(token) = from_query(query, name, config.max_len)?
    {
        offer(token, Source::Query)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_grammar() {
        assert!(is_b64token(b"abc.DEF-_~+/"));
        assert!(is_b64token(b"abc=="));
        assert!(!is_b64token(b"=="));
        assert!(!is_b64token(b""));
        assert!(!is_b64token(b"ab=c"));
        assert!(!is_b64token(b"a b"));
        assert!(!is_b64token(b"a,b"));
    }

    #[test]
    fn token_bytes_are_exactly_the_rfc_6750_alphabet() {
        for b in 0..=u8::MAX {
            let expected =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_token_byte(b), expected, "byte {b:#04x}");
            // The same verdict inside a long token, where the loop runs vectorized.
            let mut token = vec![b'a'; 100];
            token[57] = b;
            assert_eq!(is_b64token(&token), expected, "byte {b:#04x}");
        }
    }
}
