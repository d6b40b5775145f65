//! Unit tests of the static authenticator that need its private pieces (the crypto backend).

#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
// Without a backend nothing verifies, so nothing reads `sub`.
#[cfg_attr(
    not(any(feature = "aws-lc", feature = "rust-crypto")),
    allow(dead_code)
)]
struct Claims {
    sub: String,
}

const SECRET: &[u8] = b"unit-test-secret-0123456789abcdef";

#[test]
#[cfg(not(any(feature = "aws-lc", feature = "rust-crypto")))]
fn build_without_a_crypto_backend_is_an_error_not_a_panic() {
    let err = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::NoCryptoBackend);
}

#[test]
#[cfg(all(feature = "aws-lc", feature = "rust-crypto"))]
fn both_backends_pick_aws_lc_deterministically() {
    assert!(std::ptr::eq(
        default_provider().unwrap(),
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
    ));
}

/// The static authenticator with the test secret.
#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
fn hs256_authenticator() -> JwtAuthenticator<Claims> {
    JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .build()
        .unwrap()
}

/// An `exp` one minute from now.
#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
fn in_a_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60
}

/// Signs with a provider directly, leaving jsonwebtoken's process default uninstalled.
#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
fn sign_hs256(claims: &str) -> String {
    sign_with_header(r#"{"alg":"HS256"}"#, claims)
}

#[test]
#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
fn verifies_without_jsonwebtoken_process_default_provider() {
    // `jsonwebtoken::decode` would panic here when both backend features are on.
    let auth = hs256_authenticator();
    let exp = in_a_minute();
    let claims = auth
        .verify(&sign_hs256(&format!(r#"{{"sub":"alice","exp":{exp}}}"#)))
        .unwrap();
    assert_eq!(claims.sub, "alice");
}

/// Signs `claims` under `header` (raw JSON) with the test secret, through the provider.
#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
fn sign_with_header(header: &str, claims: &str) -> String {
    let provider = default_provider().unwrap();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let signer = (provider.signer_factory)(&Algorithm::HS256, &key).unwrap();
    let signature =
        jsonwebtoken::signature::Signer::try_sign(&*signer, message.as_bytes()).unwrap();
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
fn known_header_count<C, U>(auth: &JwtAuthenticator<C, U>) -> usize {
    auth.inner.rules.headers.len()
}

#[test]
#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
fn only_verified_tokens_teach_a_header_and_a_known_header_skips_no_other_check() {
    let auth = hs256_authenticator();
    let exp = in_a_minute();
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let good = sign_with_header(header, &format!(r#"{{"sub":"alice","exp":{exp}}}"#));

    // A forged signature under that header teaches nothing.
    let (message, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    assert!(auth.verify(&forged).is_err());
    assert_eq!(known_header_count(&auth), 0);

    assert_eq!(auth.verify(&good).unwrap().sub, "alice");
    assert_eq!(known_header_count(&auth), 1);
    // Verified again: the same header is not learned twice.
    assert!(auth.verify(&good).is_ok());
    assert_eq!(known_header_count(&auth), 1);

    // The known header still gets a signature, expiry and claims check.
    assert!(auth.verify(&forged).is_err());
    let expired = sign_with_header(header, r#"{"sub":"alice","exp":1}"#);
    assert_eq!(
        auth.verify(&expired).unwrap_err().message(),
        "The token has expired"
    );
    let malformed = sign_with_header(header, &format!(r#"{{"sub":7,"exp":{exp}}}"#));
    assert!(auth.verify(&malformed).is_err());

    // A header differing by one byte is checked in full: `crit` is still refused.
    let crit = sign_with_header(
        r#"{"alg":"HS256","typ":"JWT","crit":["x"]}"#,
        &format!(r#"{{"sub":"alice","exp":{exp}}}"#),
    );
    assert!(auth.verify(&crit).is_err());
    assert_eq!(known_header_count(&auth), 1);
}

#[test]
#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
fn a_known_header_is_still_held_to_require_typ() {
    // The cache belongs to one authenticator: another one's configuration is checked afresh.
    let exp = in_a_minute();
    let token = sign_with_header(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &format!(r#"{{"sub":"alice","exp":{exp}}}"#),
    );
    let lax = hs256_authenticator();
    assert!(lax.verify(&token).is_ok());
    let strict = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .require_typ("at+jwt")
        .build()
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            strict.verify(&token).unwrap_err().message(),
            "The token type is not accepted"
        );
    }
    assert_eq!(known_header_count(&strict), 0);
}
