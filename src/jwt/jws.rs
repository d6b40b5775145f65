//! Compact JWS (RFC 7515 §7.1): splitting a token, checking its header, and verifying its
//! signature with the configured keys. Claims are not read here; see `claims`.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::CryptoProvider;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::keys::{VerifyKey, parse_alg};
use super::{Algorithm, ecdsa, invalid, strict_json};
use crate::auth::AuthError;

#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    typ: Option<Cow<'a, str>>,
    /// RFC 7515 §4.1.11: present means refused, whatever the value; `"crit": null` included.
    #[serde(default, deserialize_with = "present_ignored")]
    crit: Option<IgnoredAny>,
    /// RFC 7516 §4.1.2: `enc` marks a JWE, `"enc": null` too.
    #[serde(default, deserialize_with = "present_ignored")]
    enc: Option<IgnoredAny>,
}

/// Deserializes a member that is present, whatever its value, so `null` is not "absent".
fn present_ignored<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IgnoredAny>, D::Error> {
    IgnoredAny::deserialize(d).map(Some)
}

fn typ_matches(given: &str, wanted: &str) -> bool {
    // RFC 7515 §4.1.9: `application/` may be omitted; media types compare case-insensitively.
    // Byte-wise on purpose: the header is attacker input, and may not be ASCII.
    fn strip(s: &str) -> &[u8] {
        let b = s.as_bytes();
        match b.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case(b"application/") => &b[12..],
            _ => b,
        }
    }
    strip(given).eq_ignore_ascii_case(strip(wanted))
}

/// A compact JWS split and checked up to (not including) the signature: the shared first
/// step of every verification.
///
/// The decoded signature and payload go to buffers the caller keeps on its stack
/// ([`Buffers`]): a token is decoded on every request, three allocations were a tenth of a
/// verification's cost, and moving kilobyte arrays around in return values cost as much again.
pub(crate) struct Jws<'a> {
    pub(crate) alg: Algorithm,
    kid: Option<Kid>,
    message: &'a [u8],
    signature: Cow<'a, [u8]>,
    header_b64: &'a str,
    payload_b64: &'a str,
}

/// Where a verification decodes the token's signature and payload; larger ones go to the heap.
pub(crate) struct Buffers {
    /// Up to RSA-2048's 256-byte signatures (ECDSA and HMAC ones are shorter).
    pub(crate) signature: [u8; 256],
    /// Claims sets up to 1 KiB; an IdP's larger ones go to the heap.
    pub(crate) payload: [u8; 1024],
}

impl Buffers {
    pub(crate) fn new() -> Self {
        Self {
            signature: [0; 256],
            payload: [0; 1024],
        }
    }
}

/// A header's `kid`, compared byte for byte with the configured keys' ids: short ones are
/// kept without an allocation.
#[derive(Clone)]
enum Kid {
    Inline([u8; KID_INLINE], u8),
    Heap(Box<[u8]>),
}

const KID_INLINE: usize = 64;

impl Kid {
    fn new(kid: &str) -> Self {
        let bytes = kid.as_bytes();
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= KID_INLINE => {
                let mut inline = [0; KID_INLINE];
                inline[..bytes.len()].copy_from_slice(bytes);
                Self::Inline(inline, len)
            }
            _ => Self::Heap(bytes.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline(bytes, len) => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

/// Decodes and checks a header (`alg`, `crit`, JWE, `typ` when `typ` is set): its `alg` and
/// `kid`.
fn check_header(
    header_b64: &str,
    typ: Option<&str>,
) -> Result<(Algorithm, Option<Kid>), AuthError> {
    let mut header_buffer = [0; 256];
    let header_json = b64(header_b64, &mut header_buffer)?;

    let malformed = || invalid("The token header is malformed");
    if !strict_json::is_strict_object(&header_json) {
        return Err(malformed());
    }
    let header: JoseHeader<'_> = serde_json::from_slice(&header_json).map_err(|_| malformed())?;
    if header.enc.is_some() {
        return Err(invalid("Encrypted tokens (JWE) are not accepted"));
    }
    let alg =
        parse_alg(&header.alg).ok_or_else(|| invalid("The token algorithm is not allowed"))?;
    if header.crit.is_some() {
        return Err(invalid(
            "The token has critical header parameters this server does not understand",
        ));
    }
    if let Some(wanted) = typ
        && !header
            .typ
            .as_deref()
            .is_some_and(|t| typ_matches(t, wanted))
    {
        return Err(invalid("The token type is not accepted"));
    }

    Ok((alg, header.kid.as_deref().map(Kid::new)))
}

/// Headers of tokens this authenticator verified, byte for byte (a few slots, each filled
/// once): an issuer signs every token with the same header until it rotates its key, so most
/// tokens skip decoding and checking theirs. Only a verified token's header is learned, so no
/// one but the issuer fills a slot; once all are full, other headers are checked every time.
#[derive(Default)]
pub(crate) struct KnownHeaders {
    slots: [std::sync::OnceLock<KnownHeader>; 4],
}

struct KnownHeader {
    b64: Box<str>,
    alg: Algorithm,
    kid: Option<Kid>,
}

impl KnownHeaders {
    fn find(&self, header_b64: &str) -> Option<&KnownHeader> {
        self.slots
            .iter()
            .map_while(std::sync::OnceLock::get)
            .find(|known| *known.b64 == *header_b64)
    }

    /// How many headers are known.
    #[cfg(all(test, any(feature = "aws-lc", feature = "rust-crypto")))]
    pub(crate) fn len(&self) -> usize {
        self.slots
            .iter()
            .map_while(std::sync::OnceLock::get)
            .count()
    }

    fn learn(&self, header_b64: &str, alg: Algorithm, kid: Option<&Kid>) {
        for slot in &self.slots {
            match slot.get() {
                Some(known) if *known.b64 == *header_b64 => return,
                Some(_) => {}
                None => {
                    // Another thread may fill this slot first; then the next request learns again.
                    let _ = slot.set(KnownHeader {
                        b64: header_b64.into(),
                        alg,
                        kid: kid.cloned(),
                    });
                    return;
                }
            }
        }
    }
}

/// Why no key verified a token: none was eligible (maybe a rotation), or the signature is bad.
pub(crate) enum SignatureError {
    NoKey,
    Invalid,
}

impl From<SignatureError> for AuthError {
    fn from(err: SignatureError) -> Self {
        match err {
            SignatureError::NoKey => invalid("No key matches the token"),
            SignatureError::Invalid => invalid("The token signature is invalid"),
        }
    }
}

impl<'a> Jws<'a> {
    /// Splits the token and checks its header (`alg`, `crit`, JWE, `typ` when `typ` is set).
    ///
    /// A header in `known` (one a token of this authenticator verified with before, byte for
    /// byte) is not decoded and checked again: the checks depend on its bytes and the fixed
    /// configuration only.
    pub(crate) fn parse(
        token: &'a str,
        typ: Option<&str>,
        accept_high_s: bool,
        signature: &'a mut [u8],
        known: Option<&KnownHeaders>,
    ) -> Result<Self, AuthError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("The token is malformed"));
        };
        match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => {}
            // RFC 7516 §7.1: a compact JWE has exactly five parts; four or six are just broken.
            (Some(_), Some(_), None) => {
                return Err(invalid("Encrypted tokens (JWE) are not accepted"));
            }
            _ => return Err(invalid("The token is malformed")),
        }

        let (alg, kid) = match known.and_then(|known| known.find(header_b64)) {
            Some(header) => (header.alg, header.kid.clone()),
            None => check_header(header_b64, typ)?,
        };
        let signature = b64(signature_b64, signature)?;
        // Before any key is looked up: a high-S twin is never accepted, and never worth a
        // JWKS refetch either.
        if !accept_high_s && !ecdsa::is_canonical(alg, &signature) {
            return Err(SignatureError::Invalid.into());
        }
        let message = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        Ok(Self {
            alg,
            kid,
            message,
            signature,
            header_b64,
            payload_b64,
        })
    }

    /// Remembers this token's header in `known`, once the whole token verified.
    pub(crate) fn verified(&self, known: &KnownHeaders) {
        known.learn(self.header_b64, self.alg, self.kid.as_ref());
    }

    /// Verifies the signature with the first eligible key that accepts it, and returns that key.
    pub(crate) fn verify_with<'k>(
        &self,
        provider: &CryptoProvider,
        keys: impl IntoIterator<Item = &'k VerifyKey>,
    ) -> Result<&'k VerifyKey, SignatureError> {
        let mut any_key = false;
        for key in keys {
            if !key.matches(self.alg, self.kid.as_ref().map(Kid::as_bytes)) {
                continue;
            }
            any_key = true;
            if verify_one(provider, key, self.alg, self.message, &self.signature) {
                return Ok(key);
            }
        }
        Err(if any_key {
            SignatureError::Invalid
        } else {
            SignatureError::NoKey
        })
    }

    /// The decoded (not yet trusted) payload, in `buffer` when it fits: a JSON object in valid
    /// UTF-8, or an error.
    pub(crate) fn payload<'b>(&self, buffer: &'b mut [u8]) -> Result<Cow<'b, str>, AuthError> {
        let payload = b64(self.payload_b64, buffer)?;
        if !strict_json::is_strict_object(&payload) {
            return Err(invalid("The token claims are malformed"));
        }
        // Valid UTF-8 (checked above). As text, serde reads each string without checking its
        // UTF-8 again: one pass over the payload here instead of one per string in each of the
        // two claim passes.
        let malformed = |_| invalid("The token claims are malformed");
        Ok(match payload {
            Cow::Borrowed(bytes) => Cow::Borrowed(std::str::from_utf8(bytes).map_err(malformed)?),
            Cow::Owned(bytes) => {
                Cow::Owned(String::from_utf8(bytes).map_err(|err| malformed(err.utf8_error()))?)
            }
        })
    }
}

/// One key's verdict: its prepared AWS-LC form when the provider is AWS-LC's own, else the
/// provider's verifier (a custom provider always decides itself).
fn verify_one(
    provider: &CryptoProvider,
    key: &VerifyKey,
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> bool {
    #[cfg(feature = "aws-lc")]
    if std::ptr::eq(provider, &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER)
        && let Some(verdict) = key.verify_prepared(alg, message, signature)
    {
        return verdict;
    }
    // The provider's `Verifier<Vec<u8>>` takes the signature as a `Vec`.
    (provider.verifier_factory)(&alg, &key.key)
        .is_ok_and(|verifier| verifier.verify(message, &signature.to_vec()).is_ok())
}

/// The bytes of one base64url segment, in `buffer` when they fit.
fn b64<'b>(part: &str, buffer: &'b mut [u8]) -> Result<Cow<'b, [u8]>, AuthError> {
    fn malformed<E>(_: E) -> AuthError {
        invalid("The token is malformed")
    }
    if base64::decoded_len_estimate(part.len()) <= buffer.len() {
        let len = URL_SAFE_NO_PAD
            .decode_slice(part, buffer)
            .map_err(malformed)?;
        Ok(Cow::Borrowed(&buffer[..len]))
    } else {
        URL_SAFE_NO_PAD
            .decode(part)
            .map(Cow::Owned)
            .map_err(malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_comparison_ignores_case_and_application_prefix() {
        // A multi-byte character where `application/` would end must not panic.
        assert!(!typ_matches("aaaaaaaaaaa\u{e9}xyz", "at+jwt"));
        assert!(!typ_matches(
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "at+jwt"
        ));
        assert!(typ_matches("application/AT+JWT", "at+jwt"));
        assert!(typ_matches("at+jwt", "application/at+jwt"));
        assert!(!typ_matches("jwt", "at+jwt"));
    }
}
