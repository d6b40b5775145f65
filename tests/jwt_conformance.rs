//! Conformance with the JWT security checklist (`shared/reference/jwt.md` §4): extraction,
//! responses, algorithms and crypto, claims. Every token goes through `BearerAuthLayer`.
#![cfg(all(feature = "jwt", any(feature = "aws-lc", feature = "rust-crypto")))]

use std::convert::Infallible;
use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use jsonwebtoken::EncodingKey;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtAuthenticatorBuilder, JwtKey};
use tower_scope::{AuthError, Authenticated, BearerAuthLayer, ConfigError};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");
const RSA2_PRIVATE: &[u8] = include_bytes!("keys/rsa2_private.pem");
const EC256_PRIVATE: &[u8] = include_bytes!("keys/ec256_private.pem");
const EC256_PUBLIC: &[u8] = include_bytes!("keys/ec256_public.pem");
const EC384_PRIVATE: &[u8] = include_bytes!("keys/ec384_private.pem");
const EC384_PUBLIC: &[u8] = include_bytes!("keys/ec384_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("keys/ed_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("keys/ed_public.pem");
const RSA1024_JWK: &str = include_str!("keys/rsa1024.jwk.json");

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
}

/// Signing in tests goes through jsonwebtoken's process default; verification does not.
fn install_signing_provider() {
    #[cfg(feature = "aws-lc")]
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs raw header and claims JSON, so tests can craft any header.
fn sign_raw(header: &str, claims: &str, alg: Algorithm, key: &EncodingKey) -> String {
    sign_bytes(header.as_bytes(), claims.as_bytes(), alg, key)
}

/// Signs raw header and claims bytes (not even UTF-8, if a test wants), ECDSA in low-S form.
fn sign_bytes(header: &[u8], claims: &[u8], alg: Algorithm, key: &EncodingKey) -> String {
    install_signing_provider();
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    // Neither backend's signer normalizes S; the verifier accepts only low S.
    if let Some(order) = curve_order(alg)
        && is_high_s(&signature, order)
    {
        negate_s(&mut signature, order);
    }
    format!("{message}.{}", b64(&signature))
}

/// The group order n of the curve of an ECDSA algorithm (SEC 2 §2.4.2, §2.5.1), big-endian.
fn curve_order(alg: Algorithm) -> Option<&'static [u8]> {
    const P256: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    const P384: [u8; 48] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37,
        0x2d, 0xdf, 0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc,
        0xc5, 0x29, 0x73,
    ];
    match alg {
        Algorithm::ES256 => Some(&P256),
        Algorithm::ES384 => Some(&P384),
        _ => None,
    }
}

/// Whether S (the second half of `R || S`) is above n / 2: is 2 * S > n?
fn is_high_s(signature: &[u8], order: &[u8]) -> bool {
    let s = &signature[order.len()..];
    let mut doubled = vec![0u8; order.len() + 1];
    let mut carry = 0u8;
    for i in (0..s.len()).rev() {
        doubled[i + 1] = (s[i] << 1) | carry;
        carry = s[i] >> 7;
    }
    doubled[0] = carry;
    let mut n = vec![0u8];
    n.extend_from_slice(order);
    doubled > n
}

/// Replaces S by n − S: the other signature that verifies the same message.
fn negate_s(signature: &mut [u8], order: &[u8]) {
    let s = &mut signature[order.len()..];
    let mut borrow = 0i16;
    for i in (0..s.len()).rev() {
        let digit = i16::from(order[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(digit < 0);
        s[i] = (digit + 256 * borrow) as u8;
    }
}

fn alg_str(alg: Algorithm) -> String {
    format!("{alg:?}")
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &str) -> String {
    sign_raw(
        &format!(r#"{{"alg":"{}","typ":"JWT"}}"#, alg_str(alg)),
        claims,
        alg,
        key,
    )
}

fn hs256(claims: &str) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

fn claims_exp_in(secs: i64) -> String {
    format!(r#"{{"sub":"alice","exp":{}}}"#, now() as i64 + secs)
}

fn builder() -> JwtAuthenticatorBuilder<Claims, Claims> {
    JwtAuthenticator::<Claims>::builder().key(JwtKey::hmac(Algorithm::HS256, SECRET))
}

/// Sends `token` through `BearerAuthLayer(authenticator)`; returns status, challenge, body.
async fn check<C: DeserializeOwned + 'static>(
    auth: JwtAuthenticator<C, Claims>,
    token: &str,
) -> (StatusCode, String, String) {
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(auth))
        .service(service_fn(|req: Request<String>| async move {
            let user = req
                .extensions()
                .get::<Authenticated<Claims>>()
                .map(|c| c.sub.clone())
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(user))
        }));
    let mut req = Request::get("/api/x").body(String::new()).unwrap();
    if let Ok(value) = HeaderValue::try_from(format!("Bearer {token}")) {
        req.headers_mut().insert(AUTHORIZATION, value);
    }
    let res = svc.oneshot(req).await.unwrap();
    let challenge = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (res.status(), challenge, res.into_body())
}

async fn assert_invalid<C: DeserializeOwned + 'static>(
    auth: JwtAuthenticator<C, Claims>,
    token: &str,
    description: &str,
) {
    let (status, challenge, body) = check(auth, token).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{description}: {challenge}"
    );
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!(r#"error_description="{description}""#)),
        "{challenge}"
    );
    assert_eq!(body, "");
}

async fn assert_accepted<C: DeserializeOwned + 'static>(
    auth: JwtAuthenticator<C, Claims>,
    token: &str,
) {
    let (status, challenge, body) = check(auth, token).await;
    assert_eq!(status, StatusCode::OK, "{challenge}");
    assert_eq!(body, "alice");
}

// ---------- Algorithms and crypto ----------

#[tokio::test]
async fn every_supported_algorithm_verifies_with_its_configured_key() {
    let claims = claims_exp_in(600);
    let cases: Vec<(JwtKey, Algorithm, EncodingKey)> = vec![
        (
            JwtKey::hmac(Algorithm::HS256, SECRET),
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET),
        ),
        (
            JwtKey::hmac(Algorithm::HS384, SECRET),
            Algorithm::HS384,
            EncodingKey::from_secret(SECRET),
        ),
        (
            JwtKey::hmac(Algorithm::HS512, SECRET),
            Algorithm::HS512,
            EncodingKey::from_secret(SECRET),
        ),
        (
            JwtKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC),
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ),
        (
            JwtKey::rsa_pem(Algorithm::RS512, RSA_PUBLIC),
            Algorithm::RS512,
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ),
        (
            JwtKey::rsa_pem(Algorithm::PS256, RSA_PUBLIC),
            Algorithm::PS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ),
        (
            JwtKey::ec_pem(Algorithm::ES256, EC256_PUBLIC),
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap(),
        ),
        (
            JwtKey::ec_pem(Algorithm::ES384, EC384_PUBLIC),
            Algorithm::ES384,
            EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap(),
        ),
        (
            JwtKey::ed_pem(ED_PUBLIC),
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        ),
    ];
    for (key, alg, signing) in cases {
        let auth = JwtAuthenticator::<Claims>::builder()
            .key(key)
            .build()
            .unwrap();
        assert_accepted(auth, &sign(alg, &signing, &claims)).await;
    }
}

#[tokio::test]
async fn alg_none_and_its_case_variants_are_invalid_token() {
    let payload = b64(claims_exp_in(600).as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        assert_invalid(
            builder().build().unwrap(),
            &format!("{header}.{payload}."),
            "The token algorithm is not allowed",
        )
        .await;
    }
}

#[tokio::test]
async fn hs256_token_signed_with_the_rsa_public_key_is_refused() {
    // Classic alg confusion: the attacker uses the public PEM as an HMAC secret.
    let auth = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC))
        .build()
        .unwrap();
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC),
        &claims_exp_in(600),
    );
    assert_invalid(auth, &forged, "No key matches the token").await;
}

#[tokio::test]
async fn validly_signed_token_with_an_algorithm_outside_the_key_allow_list_is_refused() {
    let auth = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC))
        .build()
        .unwrap();
    let ps256 = sign(
        Algorithm::PS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        &claims_exp_in(600),
    );
    assert_invalid(auth, &ps256, "No key matches the token").await;
    let both = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC).also_allow(Algorithm::PS256))
        .build()
        .unwrap();
    assert_accepted(both, &ps256).await;
}

#[tokio::test]
async fn token_signed_by_another_key_is_a_bad_signature() {
    let auth = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC))
        .build()
        .unwrap();
    let other = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA2_PRIVATE).unwrap(),
        &claims_exp_in(600),
    );
    assert_invalid(auth, &other, "The token signature is invalid").await;
}

#[tokio::test]
async fn embedded_jwk_header_signed_by_an_attacker_key_is_refused() {
    let auth = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC))
        .build()
        .unwrap();
    install_signing_provider();
    let attacker = EncodingKey::from_rsa_pem(RSA2_PRIVATE).unwrap();
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&attacker, Algorithm::RS256).unwrap();
    let header = format!(
        r#"{{"alg":"RS256","jwk":{}}}"#,
        serde_json::to_string(&jwk).unwrap()
    );
    let token = sign_raw(&header, &claims_exp_in(600), Algorithm::RS256, &attacker);
    assert_invalid(auth, &token, "The token signature is invalid").await;
}

#[tokio::test]
async fn jku_and_x5u_headers_cause_no_outbound_request() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let attacker = EncodingKey::from_rsa_pem(RSA2_PRIVATE).unwrap();
    let header = format!(r#"{{"alg":"RS256","jku":"{url}","x5u":"{url}"}}"#);
    let token = sign_raw(&header, &claims_exp_in(600), Algorithm::RS256, &attacker);
    let auth = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC))
        .build()
        .unwrap();
    assert_invalid(auth, &token, "The token signature is invalid").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        listener.accept().is_err(),
        "the verifier must never fetch jku/x5u"
    );
}

#[tokio::test]
async fn crit_header_is_refused() {
    let key = EncodingKey::from_secret(SECRET);
    let token = sign_raw(
        r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
        &claims_exp_in(600),
        Algorithm::HS256,
        &key,
    );
    assert_invalid(
        builder().build().unwrap(),
        &token,
        "The token has critical header parameters this server does not understand",
    )
    .await;
}

#[tokio::test]
async fn crit_null_is_refused_like_any_crit() {
    // RFC 7515 §4.1.11: `crit` present is the question, whatever its value; `null` is not absent.
    let key = EncodingKey::from_secret(SECRET);
    for header in [
        r#"{"alg":"HS256","crit":null}"#,
        r#"{"alg":"HS256","crit":[]}"#,
    ] {
        let token = sign_raw(header, &claims_exp_in(600), Algorithm::HS256, &key);
        assert_invalid(
            builder().build().unwrap(),
            &token,
            "The token has critical header parameters this server does not understand",
        )
        .await;
    }
}

const ISSUER: &str = "https://issuer.example";

/// Claims decoded as raw JSON (as many applications do), mapped to a fixed user: only the
/// crate's own checks stand between a token and a 200.
fn value_builder() -> JwtAuthenticatorBuilder<serde_json::Value, Claims> {
    JwtAuthenticator::<serde_json::Value>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .issuer(ISSUER)
        .map_user(|_| {
            Ok(Claims {
                sub: "alice".into(),
            })
        })
}

/// Asserts `token` is refused with `description` by the [`value_builder`] authenticator.
async fn assert_refused_as_value(token: &str, description: &str) {
    assert_invalid(value_builder().build().unwrap(), token, description).await;
}

#[tokio::test]
async fn a_json_array_header_is_refused_even_when_correctly_signed() {
    // RFC 7515 §4: the JOSE header is a JSON object. Serde would fill `alg` by position.
    let key = EncodingKey::from_secret(SECRET);
    let claims = format!(
        r#"{{"sub":"alice","iss":"{ISSUER}","exp":{}}}"#,
        now() + 600
    );
    assert_accepted(
        value_builder().build().unwrap(),
        &sign_raw(r#"{"alg":"HS256"}"#, &claims, Algorithm::HS256, &key),
    )
    .await;
    for header in [r#"["HS256"]"#, r#" ["HS256",null,null]"#, r#""HS256""#] {
        let token = sign_raw(header, &claims, Algorithm::HS256, &key);
        assert_refused_as_value(&token, "The token header is malformed").await;
    }
}

#[tokio::test]
async fn a_json_array_claims_set_is_refused_even_when_correctly_signed() {
    // RFC 7519 §7.2 step 10: the claims set is a JSON object. By position, this array reads
    // as exp, nbf, iat, iss.
    let key = EncodingKey::from_secret(SECRET);
    let exp = now() + 600;
    for claims in [
        format!(r#"[{exp},null,null,"{ISSUER}"]"#),
        format!("\n\t [{exp},null,null,\"{ISSUER}\"]"),
    ] {
        let token = sign(Algorithm::HS256, &key, &claims);
        assert_refused_as_value(&token, "The token claims are malformed").await;
    }
}

#[tokio::test]
async fn invalid_utf8_anywhere_in_header_or_claims_is_refused() {
    // RFC 7519 §7.2 steps 4 and 10, RFC 8259 §8.1: the JSON must be valid UTF-8, also in
    // members this crate never reads.
    let key = EncodingKey::from_secret(SECRET);
    let exp = now() + 600;
    let header = |extra: &[u8]| [br#"{"alg":"HS256","x":""#, extra, br#""}"#].concat();
    let claims = |extra: &[u8]| {
        [
            format!(r#"{{"sub":"alice","iss":"{ISSUER}","exp":{exp},"x":""#).as_bytes(),
            extra,
            br#""}"#,
        ]
        .concat()
    };
    // A valid surrogate pair, an escaped backslash before `ud800`, and plain UTF-8 pass.
    for fine in [
        &br"\ud83d\ude00"[..],
        br"\\ud800",
        "\u{e9}\u{1f600}".as_bytes(),
    ] {
        let token = sign_bytes(&header(fine), &claims(fine), Algorithm::HS256, &key);
        assert_accepted(value_builder().build().unwrap(), &token).await;
    }
    let bad: [&[u8]; 6] = [
        &[0xff, 0xfe],
        &[0xc3],             // a truncated two-byte sequence
        &[0xed, 0xa0, 0x80], // a surrogate encoded as UTF-8 (CESU-8)
        br"\ud800",
        br"\udc00",
        br"\ud800\u0041",
    ];
    for bytes in bad {
        let token = sign_bytes(&header(bytes), &claims(b""), Algorithm::HS256, &key);
        assert_refused_as_value(&token, "The token header is malformed").await;
        let token = sign_bytes(&header(b""), &claims(bytes), Algorithm::HS256, &key);
        assert_refused_as_value(&token, "The token claims are malformed").await;
    }
    // An ignored member's *name* counts too.
    let token = sign_bytes(
        br#"{"alg":"HS256","\ud800":1}"#,
        &claims(b""),
        Algorithm::HS256,
        &key,
    );
    assert_refused_as_value(&token, "The token header is malformed").await;
}

#[tokio::test]
async fn high_s_ecdsa_signatures_are_refused_on_every_backend() {
    // (r, n − s) verifies like (r, s); only the low-S form is accepted, so a token has one
    // spelling for deny lists and replay caches keyed on its bytes.
    let cases = [
        (Algorithm::ES256, EC256_PUBLIC, EC256_PRIVATE),
        (Algorithm::ES384, EC384_PUBLIC, EC384_PRIVATE),
    ];
    for (alg, public, private) in cases {
        let auth = || {
            JwtAuthenticator::<Claims>::builder()
                .key(JwtKey::ec_pem(alg, public))
                .build()
                .unwrap()
        };
        let key = EncodingKey::from_ec_pem(private).unwrap();
        // Several signatures, so both of a signer's S halves are exercised.
        for i in 0..4 {
            let low = sign(alg, &key, &claims_exp_in(600 + i));
            assert_accepted(auth(), &low).await;
            let (message, signature) = low.rsplit_once('.').unwrap();
            let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            let order = curve_order(alg).unwrap();
            negate_s(&mut signature, order);
            assert!(is_high_s(&signature, order));
            let high = format!("{message}.{}", b64(&signature));
            assert_invalid(auth(), &high, "The token signature is invalid").await;
            // Issuers whose signer does not normalize S need the explicit opt-out.
            let lenient = JwtAuthenticator::<Claims>::builder()
                .key(JwtKey::ec_pem(alg, public))
                .accept_high_s_ecdsa()
                .build()
                .unwrap();
            assert_accepted(lenient, &high).await;
        }
    }
}

#[tokio::test]
async fn four_segment_tokens_are_malformed_and_only_five_are_jwe() {
    let auth = || builder().build().unwrap();
    let good = hs256(&claims_exp_in(600));
    assert_invalid(auth(), &format!("{good}.x"), "The token is malformed").await;
    assert_invalid(
        auth(),
        &format!("{good}.x.y"),
        "Encrypted tokens (JWE) are not accepted",
    )
    .await;
    assert_invalid(auth(), &format!("{good}.x.y.z"), "The token is malformed").await;
}

#[test]
fn hmac_secrets_shorter_than_the_hash_are_refused_at_build() {
    for (alg, min) in [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ] {
        let short = vec![7u8; min - 1];
        let err = JwtAuthenticator::<Claims>::builder()
            .key(JwtKey::hmac(alg, &short))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::WeakHmacSecret { min_len, actual_len, .. } if min_len == min && actual_len == min - 1)
        );
        assert!(
            JwtAuthenticator::<Claims>::builder()
                .key(JwtKey::hmac(alg, vec![7u8; min]))
                .build()
                .is_ok()
        );
    }
}

#[test]
fn key_of_the_wrong_family_or_unparsable_key_is_refused_at_build() {
    let err = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::rsa_pem(Algorithm::ES256, RSA_PUBLIC))
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidKey(_)));
    let err = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::rsa_pem(Algorithm::RS256, b"not a pem"))
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidKey(_)));
    assert_eq!(
        JwtAuthenticator::<Claims>::builder().build().unwrap_err(),
        ConfigError::NoKeys
    );
}

#[tokio::test]
async fn jwe_bad_base64_non_utf8_and_duplicate_claims_are_invalid_token() {
    let auth = || builder().build().unwrap();
    let good = hs256(&claims_exp_in(600));
    assert_invalid(
        auth(),
        &format!("{good}.x.y"),
        "Encrypted tokens (JWE) are not accepted",
    )
    .await;
    // Padding is valid b64token grammar but not base64url as JWS uses it (RFC 7515 §2).
    assert_invalid(auth(), &format!("{good}="), "The token is malformed").await;
    // `=` inside the token is not even b64token: malformed credentials, 400.
    let (h, rest) = good.split_once('.').unwrap();
    let (status, challenge, _) = check(auth(), &format!("{h}=.{rest}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(challenge.contains(r#"error="invalid_request""#));
    // The grammar check runs after a failed verification, yet still answers first: a token
    // whose bytes break `b64token` is a 400 wherever they are (header, claims, signature).
    let (claims_part, signature) = rest.split_once('.').unwrap();
    for broken in [
        format!("{h}.{claims_part}.{signature} x"),
        format!("{h}.{claims_part}!.{signature}"),
        format!("{h},.{claims_part}.{signature}"),
    ] {
        let (status, challenge, _) = check(auth(), &broken).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{broken:?}");
        assert!(challenge.contains(r#"error="invalid_request""#));
    }
    let plus = good.replacen('-', "+", 1).replacen('_', "/", 1);
    if plus != good {
        assert_invalid(auth(), &plus, "The token is malformed").await;
    }
    assert_invalid(auth(), "a.b", "The token is malformed").await;
    let key = EncodingKey::from_secret(SECRET);
    let exp = now() + 600;
    let dup = sign(
        Algorithm::HS256,
        &key,
        &format!(r#"{{"sub":"alice","exp":{exp},"exp":{exp}}}"#),
    );
    assert_invalid(auth(), &dup, "The token claims are malformed").await;
    install_signing_provider();
    let header = b64(br#"{"alg":"HS256"}"#);
    let payload = b64(&[0xff, 0xfe, b'{']);
    let message = format!("{header}.{payload}");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    assert_invalid(
        auth(),
        &format!("{message}.{sig}"),
        "The token claims are malformed",
    )
    .await;
    let jwe_header = sign_raw(
        r#"{"alg":"HS256","enc":"A128GCM"}"#,
        &claims_exp_in(600),
        Algorithm::HS256,
        &key,
    );
    assert_invalid(
        auth(),
        &jwe_header,
        "Encrypted tokens (JWE) are not accepted",
    )
    .await;
}

#[tokio::test]
async fn hostile_kid_values_are_just_unknown_keys() {
    let auth = || {
        JwtAuthenticator::<Claims>::builder()
            .key(JwtKey::hmac(Algorithm::HS256, SECRET).with_kid("k1"))
            .build()
            .unwrap()
    };
    let key = EncodingKey::from_secret(SECRET);
    let long = "x".repeat(4_000);
    for kid in [
        "../../etc/passwd",
        "' OR 1=1 --",
        long.as_str(),
        "k1\nforged log line",
    ] {
        let header = serde_json::json!({"alg": "HS256", "kid": kid}).to_string();
        let token = sign_raw(&header, &claims_exp_in(600), Algorithm::HS256, &key);
        assert_invalid(auth(), &token, "No key matches the token").await;
    }
    // A 10 KB kid makes the token longer than the 8 KiB limit: refused before any decoding.
    let header = serde_json::json!({"alg": "HS256", "kid": "x".repeat(10_000)}).to_string();
    let token = sign_raw(&header, &claims_exp_in(600), Algorithm::HS256, &key);
    let (status, challenge, _) = check(auth(), &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(challenge.contains("too long"));
    let token = sign_raw(
        r#"{"alg":"HS256","kid":"k1"}"#,
        &claims_exp_in(600),
        Algorithm::HS256,
        &key,
    );
    assert_accepted(auth(), &token).await;
}

// ---------- Claims ----------

#[tokio::test]
async fn exp_is_required() {
    assert_invalid(
        builder().build().unwrap(),
        &hs256(r#"{"sub":"alice"}"#),
        "The token has no expiry",
    )
    .await;
}

#[tokio::test]
async fn expired_beyond_leeway_is_refused_and_inside_leeway_accepted() {
    let auth = || builder().leeway(Duration::from_secs(60)).build().unwrap();
    assert_invalid(
        auth(),
        &hs256(&claims_exp_in(-120)),
        "The token has expired",
    )
    .await;
    assert_accepted(auth(), &hs256(&claims_exp_in(-30))).await;
    // Default leeway is at most 60 s.
    assert_invalid(
        builder().build().unwrap(),
        &hs256(&claims_exp_in(-61)),
        "The token has expired",
    )
    .await;
}

#[tokio::test]
async fn injected_clock_decides_expiry_without_sleeping() {
    let base = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let token = hs256(r#"{"sub":"alice","exp":2000000100}"#);
    let at = |t: SystemTime| {
        builder()
            .leeway(Duration::ZERO)
            .clock(move || t)
            .build()
            .unwrap()
    };
    assert_accepted(at(base + Duration::from_secs(99)), &token).await;
    assert_invalid(
        at(base + Duration::from_secs(100)),
        &token,
        "The token has expired",
    )
    .await;
}

#[tokio::test]
async fn string_numeric_dates_are_refused_and_floats_accepted() {
    let auth = || builder().build().unwrap();
    assert_invalid(
        auth(),
        &hs256(r#"{"sub":"alice","exp":"99999999999"}"#),
        "The token claims are malformed",
    )
    .await;
    let exp = now() + 600;
    let nbf = hs256(&format!(
        r#"{{"sub":"alice","exp":{exp},"nbf":"99999999999"}}"#
    ));
    assert_invalid(auth(), &nbf, "The token claims are malformed").await;
    assert_accepted(
        auth(),
        &hs256(&format!(r#"{{"sub":"alice","exp":{exp}.5}}"#)),
    )
    .await;
}

#[tokio::test]
async fn future_nbf_and_iat_beyond_leeway_are_refused() {
    let auth = || builder().leeway(Duration::from_secs(10)).build().unwrap();
    let t = now();
    let nbf = hs256(&format!(
        r#"{{"sub":"alice","exp":{},"nbf":{}}}"#,
        t + 600,
        t + 60
    ));
    assert_invalid(auth(), &nbf, "The token is not valid yet").await;
    let iat = hs256(&format!(
        r#"{{"sub":"alice","exp":{},"iat":{}}}"#,
        t + 600,
        t + 60
    ));
    assert_invalid(auth(), &iat, "The token was issued in the future").await;
    let ok = hs256(&format!(
        r#"{{"sub":"alice","exp":{},"nbf":{},"iat":{}}}"#,
        t + 600,
        t + 5,
        t + 5
    ));
    assert_accepted(auth(), &ok).await;
}

#[tokio::test]
async fn max_lifetime_refuses_far_future_expiry() {
    let auth = || {
        builder()
            .max_lifetime(Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    assert_invalid(
        auth(),
        &hs256(&claims_exp_in(86_400)),
        "The token lifetime is too long",
    )
    .await;
    assert_accepted(auth(), &hs256(&claims_exp_in(1800))).await;
}

#[tokio::test]
async fn issuer_must_match_exactly_and_is_required() {
    let auth = || {
        builder()
            .issuer("https://auth.example.com")
            .build()
            .unwrap()
    };
    let exp = now() + 600;
    let with = |iss: &str| hs256(&format!(r#"{{"sub":"alice","exp":{exp},"iss":"{iss}"}}"#));
    assert_accepted(auth(), &with("https://auth.example.com")).await;
    assert_invalid(
        auth(),
        &with("https://auth.example.com/"),
        "The token issuer is not accepted",
    )
    .await;
    assert_invalid(
        auth(),
        &with("https://evil.example.com"),
        "The token issuer is not accepted",
    )
    .await;
    assert_invalid(
        auth(),
        &hs256(&claims_exp_in(600)),
        "The token issuer is not accepted",
    )
    .await;
}

#[tokio::test]
async fn configured_audience_is_required_and_any_match_is_enough() {
    let auth = || builder().audience("memory-api").build().unwrap();
    let exp = now() + 600;
    let with = |aud: &str| hs256(&format!(r#"{{"sub":"alice","exp":{exp},"aud":{aud}}}"#));
    assert_accepted(auth(), &with(r#""memory-api""#)).await;
    assert_accepted(auth(), &with(r#"["other","memory-api"]"#)).await;
    assert_invalid(
        auth(),
        &with(r#""other""#),
        "The token audience is not accepted",
    )
    .await;
    assert_invalid(auth(), &with("[]"), "The token audience is not accepted").await;
    assert_invalid(auth(), &with("42"), "The token claims are malformed").await;
    assert_invalid(
        auth(),
        &hs256(&claims_exp_in(600)),
        "The token audience is not accepted",
    )
    .await;
}

#[tokio::test]
async fn token_audience_without_configured_audience_is_refused_unless_opted_out() {
    let exp = now() + 600;
    let token = hs256(&format!(
        r#"{{"sub":"alice","exp":{exp},"aud":"someone-else"}}"#
    ));
    assert_invalid(
        builder().build().unwrap(),
        &token,
        "The token audience is not accepted",
    )
    .await;
    assert_accepted(builder().accept_any_audience().build().unwrap(), &token).await;
}

#[tokio::test]
async fn required_typ_accepts_at_jwt_spellings_and_refuses_id_tokens() {
    let auth = || builder().require_typ("at+jwt").build().unwrap();
    let key = EncodingKey::from_secret(SECRET);
    let with = |typ: &str| {
        sign_raw(
            &format!(r#"{{"alg":"HS256","typ":"{typ}"}}"#),
            &claims_exp_in(600),
            Algorithm::HS256,
            &key,
        )
    };
    for ok in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        assert_accepted(auth(), &with(ok)).await;
    }
    assert_invalid(auth(), &with("JWT"), "The token type is not accepted").await;
    let untyped = sign_raw(
        r#"{"alg":"HS256"}"#,
        &claims_exp_in(600),
        Algorithm::HS256,
        &key,
    );
    assert_invalid(auth(), &untyped, "The token type is not accepted").await;
}

#[tokio::test]
async fn user_mapping_can_refuse_a_verified_token() {
    let auth = builder()
        .map_user(|c: Claims| {
            if c.sub == "mallory" {
                Err(AuthError::forbidden())
            } else {
                Ok(c)
            }
        })
        .build()
        .unwrap();
    let token = hs256(&format!(r#"{{"sub":"mallory","exp":{}}}"#, now() + 600));
    let (status, challenge, _) = check(auth, &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(challenge, "");
}

// ---------- Sender-constrained tokens (RFC 9449 §6, RFC 8705 §3, RFC 7800 §3.1) ----------

const SENDER_CONSTRAINED: &str = "Sender-constrained tokens are not accepted as bearer tokens";

fn with_cnf(cnf: &str) -> String {
    hs256(&format!(
        r#"{{"sub":"alice","exp":{},"cnf":{cnf}}}"#,
        now() + 600
    ))
}

#[tokio::test]
async fn dpop_bound_token_is_refused_as_a_plain_bearer_token() {
    // `Claims` has no `cnf` field: the check must read the raw claims, not the user's type.
    let token = with_cnf(r#"{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}"#);
    assert_invalid(builder().build().unwrap(), &token, SENDER_CONSTRAINED).await;
}

#[tokio::test]
async fn mtls_bound_token_is_refused_as_a_plain_bearer_token() {
    let token = with_cnf(r#"{"x5t#S256":"bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}"#);
    assert_invalid(builder().build().unwrap(), &token, SENDER_CONSTRAINED).await;
}

#[tokio::test]
async fn any_cnf_object_is_refused_without_a_binding_verifier() {
    // An empty object, an unknown method, or a known one next to an unknown one: the issuer
    // meant to constrain the token, and a server cannot tell a bug from a method it lacks.
    for cnf in [
        r#"{}"#,
        r#"{"kid":"dfd1aa97-6d8d-4575-a0fe-34b96de2bfad"}"#,
        r#"{"jwk":{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}"#,
        r#"{"jkt":"abc","future-method":1}"#,
    ] {
        assert_invalid(
            builder().build().unwrap(),
            &with_cnf(cnf),
            SENDER_CONSTRAINED,
        )
        .await;
    }
}

#[tokio::test]
async fn cnf_that_is_not_an_object_is_malformed() {
    // RFC 7800 §3.1: `cnf` is a JSON object. `null` is not "absent": it is refused too.
    for cnf in ["null", r#""jkt""#, "[]", "1", "true"] {
        assert_invalid(
            builder().build().unwrap(),
            &with_cnf(cnf),
            "The token claims are malformed",
        )
        .await;
    }
}

#[tokio::test]
async fn duplicate_cnf_claims_are_malformed() {
    let token = hs256(&format!(
        r#"{{"sub":"alice","exp":{},"cnf":{{}},"cnf":{{"jkt":"x"}}}}"#,
        now() + 600
    ));
    assert_invalid(
        builder().build().unwrap(),
        &token,
        "The token claims are malformed",
    )
    .await;
}

#[tokio::test]
async fn tokens_without_cnf_are_unaffected() {
    assert_accepted(builder().build().unwrap(), &hs256(&claims_exp_in(600))).await;
    // A member merely named like a confirmation method, outside `cnf`, binds nothing.
    let token = hs256(&format!(
        r#"{{"sub":"alice","exp":{},"jkt":"x","x5t#S256":"y"}}"#,
        now() + 600
    ));
    assert_accepted(builder().build().unwrap(), &token).await;
}

#[tokio::test]
async fn with_a_binding_verifier_the_verifier_decides_cnf_objects() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower_scope::jwt::Confirmation;

    let calls = Arc::new(AtomicUsize::new(0));
    let auth = || {
        let calls = Arc::clone(&calls);
        builder()
            .accept_sender_constrained(move |cnf: &Confirmation<'_>| {
                calls.fetch_add(1, Ordering::SeqCst);
                // Only DPoP bindings; the proof itself would be checked by a later layer.
                match (cnf.jkt(), cnf.methods().count()) {
                    (Some("good-thumbprint"), 1) => Ok(()),
                    _ => Err(AuthError::invalid_token().with_message("Unsupported binding")),
                }
            })
            .build()
            .unwrap()
    };
    assert_accepted(auth(), &with_cnf(r#"{"jkt":"good-thumbprint"}"#)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for refused in [
        r#"{"jkt":"other-thumbprint"}"#,
        r#"{"x5t#S256":"bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}"#,
        r#"{}"#,
        r#"{"jkt":"good-thumbprint","future-method":1}"#,
    ] {
        assert_invalid(auth(), &with_cnf(refused), "Unsupported binding").await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    // Not an object: malformed before the verifier is asked. No `cnf`: never asked.
    assert_invalid(auth(), &with_cnf("null"), "The token claims are malformed").await;
    assert_accepted(auth(), &hs256(&claims_exp_in(600))).await;
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn the_binding_verifier_runs_only_for_otherwise_valid_tokens() {
    use std::sync::{Arc, Mutex};
    use tower_scope::jwt::Confirmation;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let auth = || {
        let seen = Arc::clone(&seen);
        builder()
            .issuer("https://issuer.example")
            .accept_sender_constrained(move |cnf: &Confirmation<'_>| {
                seen.lock().unwrap().push((
                    cnf.issuer().map(str::to_owned),
                    cnf.x5t_s256().map(str::to_owned),
                ));
                Ok(())
            })
            .build()
            .unwrap()
    };
    let claims = |exp: i64| {
        format!(
            r#"{{"sub":"alice","iss":"https://issuer.example","exp":{exp},"cnf":{{"x5t#S256":"t"}}}}"#
        )
    };
    assert_accepted(auth(), &hs256(&claims(now() as i64 + 600))).await;
    assert_invalid(
        auth(),
        &hs256(&claims(now() as i64 - 600)),
        "The token has expired",
    )
    .await;
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret of at least 32 bytes!"),
        &claims(now() as i64 + 600),
    );
    assert_invalid(auth(), &forged, "The token signature is invalid").await;
    assert_eq!(
        *seen.lock().unwrap(),
        [(
            Some("https://issuer.example".to_owned()),
            Some("t".to_owned())
        )],
        "asked once, for the valid token only, with its verified issuer"
    );
}

// ---------- JWK sets ----------

fn rsa_jwk(private: &[u8], extra: serde_json::Value) -> serde_json::Value {
    install_signing_provider();
    let key = EncodingKey::from_rsa_pem(private).unwrap();
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    let mut value = serde_json::to_value(jwk).unwrap();
    let obj = value.as_object_mut().unwrap();
    obj.remove("alg");
    for (k, v) in extra.as_object().unwrap() {
        obj.insert(k.clone(), v.clone());
    }
    value
}

fn jwks(keys: Vec<serde_json::Value>) -> String {
    serde_json::json!({ "keys": keys }).to_string()
}

fn rs(alg: Algorithm, kid: &str) -> String {
    let header = format!(r#"{{"alg":"{}","kid":"{kid}"}}"#, alg_str(alg));
    sign_raw(
        &header,
        &claims_exp_in(600),
        alg,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
}

fn from_jwks(keys: Vec<serde_json::Value>) -> Result<JwtAuthenticator<Claims>, ConfigError> {
    JwtAuthenticator::<Claims>::builder()
        .jwk_set_json(jwks(keys))
        .build()
}

#[tokio::test]
async fn jwk_set_keys_verify_by_kid() {
    let auth = from_jwks(vec![
        rsa_jwk(RSA2_PRIVATE, serde_json::json!({"kid": "old"})),
        rsa_jwk(RSA_PRIVATE, serde_json::json!({"kid": "new", "use": "sig"})),
    ])
    .unwrap();
    assert_accepted(auth.clone(), &rs(Algorithm::RS256, "new")).await;
    assert_invalid(
        auth,
        &rs(Algorithm::RS256, "old"),
        "The token signature is invalid",
    )
    .await;
}

#[tokio::test]
async fn jwk_alg_rs256_refuses_a_ps256_token() {
    let auth = from_jwks(vec![rsa_jwk(
        RSA_PRIVATE,
        serde_json::json!({"kid": "k", "alg": "RS256"}),
    )])
    .unwrap();
    assert_accepted(auth.clone(), &rs(Algorithm::RS256, "k")).await;
    assert_invalid(auth, &rs(Algorithm::PS256, "k"), "No key matches the token").await;
}

#[test]
fn encryption_and_non_verify_keys_are_never_used() {
    let enc = from_jwks(vec![rsa_jwk(
        RSA_PRIVATE,
        serde_json::json!({"kid": "k", "use": "enc"}),
    )]);
    assert_eq!(enc.unwrap_err(), ConfigError::NoKeys);
    let ops = from_jwks(vec![rsa_jwk(
        RSA_PRIVATE,
        serde_json::json!({"kid": "k", "key_ops": ["encrypt"]}),
    )]);
    assert_eq!(ops.unwrap_err(), ConfigError::NoKeys);
}

#[test]
fn rsa_keys_under_2048_bits_are_ignored() {
    let weak = from_jwks(vec![serde_json::from_str(RSA1024_JWK).unwrap()]);
    assert_eq!(weak.unwrap_err(), ConfigError::NoKeys);
}

#[tokio::test]
async fn one_malformed_jwk_does_not_discard_the_others() {
    let auth = from_jwks(vec![
        serde_json::json!({"kty": "RSA", "kid": "broken", "n": 12}),
        serde_json::json!({"kty": "unknown"}),
        rsa_jwk(RSA_PRIVATE, serde_json::json!({"kid": "good"})),
    ])
    .unwrap();
    assert_accepted(auth, &rs(Algorithm::RS256, "good")).await;
}

#[test]
fn symmetric_jwks_are_ignored_unless_hs_is_allowed() {
    let oct = serde_json::json!({"kty": "oct", "kid": "h", "k": b64(SECRET)});
    assert_eq!(
        from_jwks(vec![oct.clone()]).unwrap_err(),
        ConfigError::NoKeys
    );
    let allowed = JwtAuthenticator::<Claims>::builder()
        .jwk_set_json(jwks(vec![oct]))
        .algorithms([Algorithm::HS256])
        .build();
    assert!(allowed.is_ok());
}

// ---------- Responses ----------

#[tokio::test]
async fn every_401_has_a_challenge_with_a_safe_description_and_one_realm() {
    let good = hs256(&claims_exp_in(600));
    let mut tokens = vec![
        String::from("x"),
        good.replace('.', ""),
        format!("{good}.."),
        format!("{good}x"),
    ];
    for i in 0..good.len() {
        let mut bytes = good.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        tokens.push(String::from_utf8(bytes).unwrap());
    }
    for token in tokens {
        let (status, challenge, _) = check(builder().build().unwrap(), &token).await;
        if status == StatusCode::OK {
            continue; // a flipped bit in base64 padding bits can decode to the same bytes
        }
        assert!(
            matches!(status, StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST),
            "{status}"
        );
        assert_eq!(challenge.matches("realm=").count(), 1, "{challenge}");
        let description = challenge
            .split("error_description=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"');
        assert!(
            description
                .chars()
                .all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E'))
        );
        assert!(
            !challenge.contains(&token),
            "the token must never be echoed"
        );
    }
}

#[test]
fn debug_output_hides_key_material() {
    let auth = builder().issuer("iss").build().unwrap();
    let shown = format!("{auth:?}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    let key = JwtKey::hmac(Algorithm::HS256, SECRET);
    assert!(!format!("{key:?}").contains("0123456789abcdef"));
}

// ---------- Extraction ----------

async fn send_with(
    layer: BearerAuthLayer<JwtAuthenticator<Claims>>,
    req: Request<String>,
) -> Response<String> {
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_r: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        }))
        .oneshot(req)
        .await
        .unwrap()
}

fn with_auth(values: &[&str], uri: &str) -> Request<String> {
    let mut req = Request::get(uri).body(String::new()).unwrap();
    for v in values {
        req.headers_mut()
            .append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
    }
    req
}

#[tokio::test]
async fn extraction_follows_rfc_6750() {
    let layer = || BearerAuthLayer::new(builder().build().unwrap());
    let token = hs256(&claims_exp_in(600));
    // The auth-scheme is case-insensitive (RFC 9110 §11.1).
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let res = send_with(layer(), with_auth(&[&format!("{scheme} {token}")], "/")).await;
        assert_eq!(res.status(), StatusCode::OK, "{scheme}");
    }
    // No credentials, or only Basic: a bare challenge without `error` (RFC 6750 §3.1).
    for values in [&[][..], &["Basic YWxpY2U6cHc="][..]] {
        let res = send_with(layer(), with_auth(values, "/")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[WWW_AUTHENTICATE], r#"Bearer realm="api""#);
    }
    // Empty token, characters outside b64token, trailing junk (envoy #27877), two headers.
    let junk = format!("Bearer {token} junk");
    let cases: [&[&str]; 4] = [
        &["Bearer "],
        &["Bearer a\"b"],
        &[junk.as_str()],
        &["Bearer a", "Bearer b"],
    ];
    for values in cases {
        let res = send_with(layer(), with_auth(values, "/")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{values:?}");
        assert!(
            res.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_request""#)
        );
    }
}

#[tokio::test]
async fn query_token_is_opt_in_exclusive_and_private() {
    let token = hs256(&claims_exp_in(600));
    let uri = format!("/x?access_token={token}");
    let off = send_with(
        BearerAuthLayer::new(builder().build().unwrap()),
        with_auth(&[], &uri),
    )
    .await;
    assert_eq!(off.status(), StatusCode::UNAUTHORIZED);
    let layer = || {
        BearerAuthLayer::new(builder().build().unwrap())
            .token_from_query("access_token")
            .unwrap()
    };
    let on = send_with(layer(), with_auth(&[], &uri)).await;
    assert_eq!(on.status(), StatusCode::OK);
    assert_eq!(on.headers()[http::header::CACHE_CONTROL], "private");
    let both = send_with(layer(), with_auth(&[&format!("Bearer {token}")], &uri)).await;
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn oversized_token_is_refused_before_decoding() {
    let layer = BearerAuthLayer::new(builder().build().unwrap()).max_token_len(256);
    let token = hs256(&format!(
        r#"{{"sub":"alice","exp":{},"pad":"{}"}}"#,
        now() + 600,
        "p".repeat(300)
    ));
    let res = send_with(layer, with_auth(&[&format!("Bearer {token}")], "/")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        res.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("too long")
    );
}
