//! Checking one DPoP proof against its request (RFC 9449 §4.3).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, Method};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::DpopConfig;
use crate::jwt::{Buffers, Jws, jwk_value_key};

/// The `DPoP` request header (RFC 9449 §4.1).
pub(crate) static DPOP: HeaderName = HeaderName::from_static("dpop");

/// Proofs are small (a header, a public key, five claims); anything larger is not one.
const MAX_PROOF_LEN: usize = 8 * 1024;
const MAX_JTI_LEN: usize = 256;

/// JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4;
/// RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof was refused: the `error` code of the `DPoP` challenge and a fixed description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProofError {
    /// `invalid_dpop_proof` (RFC 9449 §7.1).
    Invalid(&'static str),
    /// `use_dpop_nonce` (RFC 9449 §9): a fresh nonce goes with it.
    UseNonce,
}

/// A proof that passed every check but the replay cache (which runs once the token verified).
#[derive(Debug)]
pub(crate) struct Verified {
    /// The RFC 7638 thumbprint of the proof key, base64url.
    pub(crate) jkt: String,
    /// Digest of the thumbprint and `jti`: the replay-cache key.
    pub(crate) replay_key: [u8; 32],
    /// When the proof turns stale, so its replay-cache entry may go.
    pub(crate) expires_at: u64,
}

#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    jti: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    htm: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    htu: std::borrow::Cow<'a, str>,
    iat: serde_json::Number,
    #[serde(default, borrow)]
    ath: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    nonce: Option<std::borrow::Cow<'a, str>>,
}

/// The single `DPoP` header of a request, or why not.
fn proof_header(headers: &HeaderMap) -> Result<&str, ProofError> {
    let mut values = headers.get_all(&DPOP).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // RFC 9449 §4.3 check 1: not more than one; and a DPoP token needs one.
        return Err(ProofError::Invalid(
            "Exactly one DPoP proof header is required",
        ));
    };
    if value.len() > MAX_PROOF_LEN {
        return Err(ProofError::Invalid("The DPoP proof is too long"));
    }
    value
        .to_str()
        .map_err(|_| ProofError::Invalid("The DPoP proof is malformed"))
}

/// Verifies the request's proof for `token` (RFC 9449 §4.3 checks 1-11, §7.1 `ath`).
pub(crate) fn verify(
    config: &DpopConfig,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    token: &str,
) -> Result<Verified, ProofError> {
    let proof = proof_header(headers)?;
    let malformed = ProofError::Invalid("The DPoP proof is malformed");
    // High-S ECDSA is fine here: browsers sign half their proofs so, and replays are caught by
    // `jti`, not by the proof's bytes.
    let mut buffers = Buffers::new();
    let jws =
        Jws::parse(proof, Some("dpop+jwt"), true, &mut buffers.signature, None).map_err(|err| {
            ProofError::Invalid(match err.message() {
                "The token type is not accepted" => "The DPoP proof type must be dpop+jwt",
                "The token algorithm is not allowed" => "The DPoP proof algorithm is not allowed",
                _ => "The DPoP proof is malformed",
            })
        })?;
    if !config.algorithms.contains(&jws.alg) {
        return Err(ProofError::Invalid(
            "The DPoP proof algorithm is not allowed",
        ));
    }
    let header = header_object(proof).ok_or(malformed)?;
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(ProofError::Invalid("The DPoP proof has no public key"));
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(ProofError::Invalid(
            "The DPoP proof key must be a public key",
        ));
    }
    let jkt = thumbprint(jwk).ok_or(ProofError::Invalid("The DPoP proof key is not supported"))?;
    let key = jwk_value_key(&Value::Object(jwk.clone()), &[jws.alg])
        .ok_or(ProofError::Invalid("The DPoP proof key is not supported"))?;
    let provider = crate::jwt::default_provider().ok_or(malformed)?;
    jws.verify_with(provider, [&key])
        .map_err(|_| ProofError::Invalid("The DPoP proof signature is invalid"))?;

    let payload = jws.payload(&mut buffers.payload).map_err(|_| malformed)?;
    let claims: Claims<'_> = serde_json::from_str(&payload).map_err(|_| malformed)?;
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(malformed);
    }
    if claims.htm != method.as_str() {
        return Err(ProofError::Invalid("The DPoP proof is for another method"));
    }
    if !htu_matches(&claims.htu, &config.origin, path) {
        return Err(ProofError::Invalid("The DPoP proof is for another URI"));
    }
    let now = config.now();
    let iat = claims
        .iat
        .as_f64()
        .filter(|t| t.is_finite())
        .ok_or(malformed)?;
    let max_age = config.max_age.as_secs_f64();
    let leeway = config.leeway.as_secs_f64();
    if iat > now as f64 + leeway || iat < now as f64 - max_age - leeway {
        return Err(ProofError::Invalid(
            "The DPoP proof is outside the accepted time window",
        ));
    }
    if let Some(nonces) = &config.nonces
        && !claims.nonce.as_deref().is_some_and(|n| nonces.accepts(n))
    {
        return Err(ProofError::UseNonce);
    }
    // RFC 9449 §4.3 check 11 / §7.1: the proof names the token it is presented with.
    let expected_ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    if !claims
        .ath
        .as_deref()
        .is_some_and(|ath| bool::from(ath.as_bytes().ct_eq(expected_ath.as_bytes())))
    {
        return Err(ProofError::Invalid(
            "The DPoP proof is for another access token",
        ));
    }
    let mut replay = Sha256::new();
    replay.update(jkt.as_bytes());
    replay.update([0]);
    replay.update(claims.jti.as_bytes());
    Ok(Verified {
        jkt,
        replay_key: replay.finalize().into(),
        expires_at: (iat + max_age + leeway).ceil().max(0.0) as u64,
    })
}

fn header_object(proof: &str) -> Option<Map<String, Value>> {
    let header = proof.split('.').next()?;
    let json = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice(&json).ok()
}

/// The RFC 7638 thumbprint: SHA-256 of the required members, in lexicographic order, with no
/// whitespace; base64url without padding.
pub(crate) fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        // `to_string` of a JSON string escapes it exactly as RFC 7638 §3.3 requires.
        canonical.push_str(&Value::from(*name).to_string());
        canonical.push(':');
        canonical.push_str(&Value::from(value).to_string());
    }
    canonical.push('}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// `scheme://host[:port]` lowercased, the scheme's default port dropped; `None` unless it is an
/// `http(s)` origin without userinfo, path, query or fragment.
pub(crate) fn normalize_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

/// RFC 9449 §4.3 check 9: `htu` equals the request URI without query and fragment, after
/// syntax- and scheme-based normalization (RFC 3986 §6.2.2, §6.2.3). The request's origin is
/// the configured one: the `Host` header is the client's to choose.
fn htu_matches(htu: &str, origin: &str, path: &str) -> bool {
    let htu = htu.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = htu.split_once("://") else {
        return false;
    };
    let (authority, htu_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(htu_origin) = normalize_origin(&format!("{scheme}://{authority}")) else {
        return false;
    };
    let path = if path.is_empty() { "/" } else { path };
    htu_origin == origin && same_path(htu_path, path)
}

/// Paths equal up to the case of percent-encoding hex digits (RFC 3986 §6.2.2.1).
fn same_path(a: &str, b: &str) -> bool {
    fn normalized(p: &str) -> String {
        let mut out = String::with_capacity(p.len());
        let mut chars = p.chars();
        while let Some(c) = chars.next() {
            out.push(c);
            if c == '%' {
                for h in chars.by_ref().take(2) {
                    out.push(h.to_ascii_uppercase());
                }
            }
        }
        out
    }
    a == b || normalized(a) == normalized(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7638_section_3_1_example_thumbprint() {
        // The RSA key of RFC 7638 §3.1 and its published thumbprint.
        let jwk: Map<String, Value> = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn htu_ignores_query_fragment_case_and_default_port() {
        let origin = normalize_origin("https://API.example.com").unwrap();
        assert!(htu_matches(
            "https://api.example.com/a/b?x=1#f",
            &origin,
            "/a/b"
        ));
        assert!(htu_matches(
            "HTTPS://api.EXAMPLE.com:443/a/%2f",
            &origin,
            "/a/%2F"
        ));
        assert!(!htu_matches(
            "https://api.example.com:8443/a/b",
            &origin,
            "/a/b"
        ));
        assert!(!htu_matches("http://api.example.com/a/b", &origin, "/a/b"));
        assert!(!htu_matches("https://api.example.com/a/B", &origin, "/a/b"));
        assert!(!htu_matches("https://evil.example/a/b", &origin, "/a/b"));
        assert!(!htu_matches(
            "https://api.example.com@evil.example/a/b",
            &origin,
            "/a/b"
        ));
        assert!(!htu_matches("/a/b", &origin, "/a/b"));
    }

    #[test]
    fn origins_with_a_path_or_userinfo_are_not_origins() {
        assert!(normalize_origin("https://a.example/api").is_none());
        assert!(normalize_origin("https://u@a.example").is_none());
        assert!(normalize_origin("ftp://a.example").is_none());
        assert_eq!(
            normalize_origin("http://127.0.0.1:80").as_deref(),
            Some("http://127.0.0.1")
        );
    }
}
