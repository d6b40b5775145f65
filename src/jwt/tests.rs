//! Unit tests of the static authenticator that need its private pieces (the crypto backend).

#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
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

/// Signs with a provider directly, leaving jsonwebtoken's process default uninstalled.
#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
fn sign_hs256(claims: &str) -> String {
    let provider = default_provider().unwrap();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let signer = (provider.signer_factory)(&Algorithm::HS256, &key).unwrap();
    let signature =
        jsonwebtoken::signature::Signer::try_sign(&*signer, message.as_bytes()).unwrap();
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[test]
#[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
fn verifies_without_jsonwebtoken_process_default_provider() {
    // `jsonwebtoken::decode` would panic here when both backend features are on.
    let auth = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .build()
        .unwrap();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let claims = auth
        .verify(&sign_hs256(&format!(r#"{{"sub":"alice","exp":{exp}}}"#)))
        .unwrap();
    assert_eq!(claims.sub, "alice");
}
