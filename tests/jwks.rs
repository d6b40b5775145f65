//! JWKS key sources against the mock issuer over real HTTP: rotation, single-flight, cooldown,
//! stale-if-error, hung endpoints, discovery, key filtering, issuer binding and the cache.
#![cfg(all(
    feature = "test-util",
    any(feature = "aws-lc", feature = "rust-crypto")
))]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_scope::jwks::mock::MockIssuer;
use tower_scope::jwks::{Issuer, JwksAuthenticator, JwksAuthenticatorBuilder};
use tower_scope::jwt::Algorithm;
use tower_scope::{AuthError, AuthErrorKind, Authenticate, BearerAuthLayer, ConfigError, Token};

const RSA2_PRIVATE: &[u8] = include_bytes!("keys/rsa2_private.pem");

fn builder(idp: &MockIssuer) -> JwksAuthenticatorBuilder<Value, Value> {
    JwksAuthenticator::<Value>::builder().issuer(idp.jwks())
}

async fn check(auth: &JwksAuthenticator<Value>, token: &str) -> Result<Value, AuthError> {
    auth.authenticate(Token::new(token))
        .await
        .map(|user| Value::clone(&user))
}

async fn status(auth: &JwksAuthenticator<Value>, token: &str) -> StatusCode {
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(auth.clone()))
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let req = Request::get("/api/memory/threads")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    svc.oneshot(req).await.unwrap().status()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn discovery_loads_the_jwks_and_a_token_passes_the_layer() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = JwksAuthenticator::<Value>::builder()
        .issuer(idp.discovery())
        .build()
        .await
        .unwrap();
    assert!(auth.is_ready());
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));
    let token = idp.mint(json!({"sub": "alice"}));
    assert_eq!(status(&auth, &token).await, StatusCode::OK);
    assert_eq!(auth.stats().allowed, 1);
    assert_eq!(auth.stats().jwks_fetch_ok, 1);
}

#[tokio::test]
async fn discovery_issuer_mismatch_fails_the_build() {
    let idp = MockIssuer::start().await.unwrap();
    // A trailing slash is a different issuer: compared exactly (OIDC Discovery §4.3).
    idp.set_discovery_issuer(format!("{}/", idp.issuer()));
    let err = JwksAuthenticator::<Value>::builder()
        .issuer(idp.discovery())
        .build()
        .await
        .unwrap_err();
    let ConfigError::KeySource { issuer, reason } = err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(issuer, idp.issuer());
    assert!(reason.contains("issuer"), "{reason}");
    assert_eq!(idp.jwks_fetches(), 0);
}

#[tokio::test]
async fn plain_http_to_a_non_loopback_host_is_refused_at_build() {
    let err = JwksAuthenticator::<Value>::builder()
        .issuer(Issuer::jwks(
            "https://auth.example.com",
            "http://auth.example.com/jwks",
        ))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidValue { .. }), "{err:?}");
}

#[tokio::test]
async fn rotation_accepts_the_new_key_after_one_refetch_and_drops_the_old_one() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp)
        .unknown_kid_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let old = idp.mint(json!({"sub": "alice"}));
    assert!(check(&auth, &old).await.is_ok());

    idp.rotate();
    let new = idp.mint(json!({"sub": "alice"}));
    assert_eq!(check(&auth, &new).await.unwrap()["sub"], "alice");
    assert_eq!(idp.jwks_fetches(), 2);
    assert!(check(&auth, &new).await.is_ok());
    assert_eq!(idp.jwks_fetches(), 2, "a known kid never fetches");

    // The old key left the JWKS: its tokens are unknown-kid tokens now.
    let err = check(&auth, &old).await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::InvalidToken);
    assert_eq!(err.message(), "No key matches the token");
    assert_eq!(auth.stats().denied_unknown_kid, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_unknown_kids_cause_one_fetch() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).build().await.unwrap();
    idp.rotate();
    let token = Arc::new(idp.mint(json!({"sub": "alice"})));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (auth, token) = (auth.clone(), Arc::clone(&token));
            tokio::spawn(async move { check(&auth, &token).await.is_ok() })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    assert_eq!(
        idp.jwks_fetches(),
        2,
        "one at build, one single-flight refetch"
    );
    assert_eq!(auth.stats().allowed, 1000);
}

#[tokio::test]
async fn a_random_kid_flood_fetches_at_most_once_per_cooldown() {
    let idp = MockIssuer::start().await.unwrap();
    let cooldown = Duration::from_secs(1);
    let auth = builder(&idp)
        .unknown_kid_cooldown(cooldown)
        .build()
        .await
        .unwrap();
    let flood: Vec<String> = (0..300)
        .map(|i| {
            idp.mint_with_header(
                Algorithm::RS256,
                json!({"kid": format!("random-{i}")}),
                json!({"sub": "mallory"}),
            )
        })
        .collect();
    let started = Instant::now();
    for token in &flood[..200] {
        assert_eq!(status(&auth, token).await, StatusCode::UNAUTHORIZED);
    }
    assert!(
        started.elapsed() < cooldown,
        "the flood fits in one cooldown"
    );
    assert_eq!(
        idp.jwks_fetches(),
        2,
        "one at build, one for the whole flood"
    );
    tokio::time::sleep(cooldown).await;
    for token in &flood[200..] {
        assert_eq!(status(&auth, token).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(idp.jwks_fetches(), 3);
    assert_eq!(auth.stats().denied_unknown_kid, 300);
}

#[tokio::test]
async fn stale_keys_keep_serving_within_the_grace_period_then_503() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp)
        .refresh_bounds(Duration::from_millis(100), Duration::from_millis(100))
        .stale_grace(Duration::from_millis(700))
        .build()
        .await
        .unwrap();
    let token = idp.mint(json!({"sub": "alice"}));
    idp.set_failing(true);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        auth.stats().jwks_fetch_failed >= 1,
        "refreshes were attempted"
    );
    assert_eq!(
        status(&auth, &token).await,
        StatusCode::OK,
        "stale-if-error"
    );
    assert!(auth.is_ready());

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!auth.is_ready());
    assert_eq!(status(&auth, &token).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        check(&auth, &token).await.unwrap_err().kind(),
        AuthErrorKind::Unavailable
    );
    assert!(auth.stats().denied_unavailable >= 1);

    // The issuer recovers: the background refresh brings the keys back.
    idp.set_failing(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&auth, &token).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_does_not_delay_requests_with_known_kids() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp)
        .fetch_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let known = idp.mint(json!({"sub": "alice"}));
    idp.set_hanging(true);
    idp.rotate();
    let unknown = idp.mint(json!({"sub": "bob"}));
    let slow = {
        let auth = auth.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (check(&auth, &unknown).await, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(idp.jwks_fetches(), 2, "the refetch is in flight");

    let started = Instant::now();
    for _ in 0..10 {
        assert!(check(&auth, &known).await.is_ok());
    }
    assert!(started.elapsed() < Duration::from_millis(500));

    let (result, waited) = slow.await.unwrap();
    assert_eq!(result.unwrap_err().kind(), AuthErrorKind::InvalidToken);
    assert!(waited >= Duration::from_millis(1500), "waited {waited:?}");
    assert_eq!(auth.stats().jwks_fetch_failed, 1);
}

fn rsa2_jwk(kid: &str, extra: Value) -> Value {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA2_PRIVATE).unwrap();
    install_signing_provider();
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    let mut value = serde_json::to_value(jwk).unwrap();
    value["kid"] = kid.into();
    if let (Some(v), Value::Object(extra)) = (value.as_object_mut(), extra) {
        v.extend(extra);
    }
    value
}

fn install_signing_provider() {
    #[cfg(feature = "aws-lc")]
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

fn sign_rsa2(kid: &str, iss: &str) -> String {
    install_signing_provider();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let message = format!(
        "{}.{}",
        b64(&json!({"alg": "RS256", "kid": kid})),
        b64(&json!({"sub": "mallory", "iss": iss, "exp": now() + 600}))
    );
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA2_PRIVATE).unwrap();
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{message}.{signature}")
}

#[tokio::test]
async fn a_malformed_jwk_is_skipped_and_an_encryption_key_never_verifies() {
    let idp = MockIssuer::start().await.unwrap();
    idp.add_jwk(json!({"kty": "RSA", "kid": "broken", "n": "%%%", "e": 5}));
    idp.add_jwk(json!({"kty": "banana"}));
    idp.add_jwk(rsa2_jwk("enc-1", json!({"use": "enc"})));
    idp.add_jwk(rsa2_jwk("wrap-1", json!({"key_ops": ["wrapKey"]})));
    let auth = builder(&idp).build().await.unwrap();

    assert!(
        check(&auth, &idp.mint(json!({"sub": "alice"})))
            .await
            .is_ok()
    );
    for kid in ["enc-1", "wrap-1"] {
        let err = check(&auth, &sign_rsa2(kid, idp.issuer()))
            .await
            .unwrap_err();
        assert_eq!(err.message(), "No key matches the token", "{kid}");
    }
}

#[tokio::test]
async fn jku_and_x5u_headers_are_never_fetched() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).build().await.unwrap();
    let attacker = format!("{}/attacker/jwks.json", idp.issuer());
    for kid in [idp.current_kid(), "attacker-kid".to_owned()] {
        let token = idp.mint_with_header(
            Algorithm::RS256,
            json!({"kid": kid, "jku": attacker, "x5u": attacker}),
            json!({"sub": "mallory"}),
        );
        let _ = check(&auth, &token).await;
    }
    // Every request the issuer saw was for its configured JWKS.
    assert_eq!(idp.requests(), idp.jwks_fetches());
}

#[tokio::test]
async fn keys_are_bound_to_their_issuer() {
    let a = MockIssuer::start().await.unwrap();
    let b = MockIssuer::start().await.unwrap();
    b.rotate(); // B signs with another RSA key than A
    let auth = JwksAuthenticator::<Value>::builder()
        .issuer(a.jwks())
        .issuer(b.discovery())
        .build()
        .await
        .unwrap();
    assert!(check(&auth, &a.mint(json!({"sub": "a"}))).await.is_ok());
    assert!(check(&auth, &b.mint(json!({"sub": "b"}))).await.is_ok());

    // Claims issuer A, signed by B's key: with B's kid, and with A's kid.
    let forged = b.mint(json!({"sub": "mallory", "iss": a.issuer()}));
    assert_eq!(status(&auth, &forged).await, StatusCode::UNAUTHORIZED);
    let forged = b.mint_with_header(
        Algorithm::RS256,
        json!({"kid": a.current_kid()}),
        json!({"sub": "mallory", "iss": a.issuer()}),
    );
    let err = check(&auth, &forged).await.unwrap_err();
    assert_eq!(err.message(), "The token signature is invalid");

    let unknown = a.mint(json!({"sub": "x", "iss": "https://unknown.example.com"}));
    assert_eq!(
        check(&auth, &unknown).await.unwrap_err().message(),
        "The token issuer is not accepted"
    );
}

#[tokio::test]
async fn audience_and_claims_rules_apply_to_jwks_tokens() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).audience("memory-api").build().await.unwrap();
    assert!(
        check(&auth, &idp.mint(json!({"aud": "memory-api"})))
            .await
            .is_ok()
    );
    assert!(
        check(&auth, &idp.mint(json!({"aud": "other"})))
            .await
            .is_err()
    );
    assert!(check(&auth, &idp.mint(json!({}))).await.is_err());
    let expired = idp.mint(json!({"aud": "memory-api", "exp": now() - 3600}));
    assert_eq!(
        check(&auth, &expired).await.unwrap_err().message(),
        "The token has expired"
    );
}

#[tokio::test]
async fn every_mock_algorithm_verifies_and_hs256_only_when_allowed() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).build().await.unwrap();
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        assert!(
            check(&auth, &idp.mint_with(alg, json!({}))).await.is_ok(),
            "{alg:?}"
        );
    }
    let hs = idp.mint_with(Algorithm::HS256, json!({}));
    assert!(
        check(&auth, &hs).await.is_err(),
        "oct keys need an explicit opt-in"
    );

    let auth = builder(&idp)
        .algorithms([Algorithm::HS256])
        .build()
        .await
        .unwrap();
    assert!(check(&auth, &hs).await.is_ok());
}

#[tokio::test]
async fn the_cache_counts_hits_and_misses() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).token_cache(100).build().await.unwrap();
    let token = idp.mint(json!({"sub": "alice"}));
    for _ in 0..3 {
        assert_eq!(check(&auth, &token).await.unwrap()["sub"], "alice");
    }
    let forged = format!("{}x", &token[..token.len() - 1]);
    for _ in 0..2 {
        assert!(check(&auth, &forged).await.is_err());
    }
    let stats = auth.stats();
    assert_eq!(
        (stats.cache_hit, stats.cache_miss),
        (2, 3),
        "failures are never cached"
    );
    assert_eq!((stats.allowed, stats.denied_invalid_token), (3, 2));
}

#[tokio::test]
async fn a_malformed_token_is_refused_as_malformed_through_a_cached_authenticator() {
    // The layer looks in the cache before it checks the token's grammar: a token that is not a
    // `b64token` still gets the 400, is never counted, and a cached token still passes.
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).token_cache(100).build().await.unwrap();
    let token = idp.mint(json!({"sub": "alice"}));
    assert_eq!(status(&auth, &token).await, StatusCode::OK);
    assert_eq!(status(&auth, &token).await, StatusCode::OK);
    for malformed in [
        format!("{token},"),
        format!("{token}=x"),
        format!("{token}\u{e9}"),
    ] {
        assert_eq!(status(&auth, &malformed).await, StatusCode::BAD_REQUEST);
    }
    let stats = auth.stats();
    assert_eq!((stats.cache_hit, stats.cache_miss), (1, 1));
    assert_eq!((stats.allowed, stats.denied_invalid_token), (2, 0));
}

#[tokio::test]
async fn cache_hits_share_the_verified_user_instead_of_copying_it() {
    let idp = MockIssuer::start().await.unwrap();
    let token = idp.mint(json!({"sub": "alice"}));
    let user = |auth: JwksAuthenticator<Value>| {
        let token = token.clone();
        async move { auth.authenticate(Token::new(&token)).await.unwrap() }
    };
    let cached = builder(&idp).token_cache(100).build().await.unwrap();
    let (first, second) = (user(cached.clone()).await, user(cached).await);
    assert!(Arc::ptr_eq(first.shared(), second.shared()));
    assert_eq!(second["sub"], "alice");
    // Without the cache every verification builds its own user.
    let uncached = builder(&idp).build().await.unwrap();
    let (first, second) = (user(uncached.clone()).await, user(uncached).await);
    assert!(!Arc::ptr_eq(first.shared(), second.shared()));
}

#[tokio::test]
async fn a_cached_token_never_outlives_its_exp() {
    let idp = MockIssuer::start().await.unwrap();
    let clock = Arc::new(Mutex::new(SystemTime::now()));
    let auth = builder(&idp)
        .token_cache(100)
        .leeway(Duration::ZERO)
        .clock({
            let clock = Arc::clone(&clock);
            move || *clock.lock().unwrap()
        })
        .build()
        .await
        .unwrap();
    // `iat` in the past: with zero leeway, a second boundary must not make it "future".
    let token = idp.mint(json!({"sub": "alice", "iat": now() - 10, "exp": now() + 5}));
    assert!(check(&auth, &token).await.is_ok());
    assert!(check(&auth, &token).await.is_ok());
    assert_eq!(auth.stats().cache_hit, 1);

    *clock.lock().unwrap() += Duration::from_secs(6);
    let err = check(&auth, &token).await.unwrap_err();
    assert_eq!(err.message(), "The token has expired");
    assert_eq!((auth.stats().cache_hit, auth.stats().cache_miss), (1, 2));
}

#[tokio::test]
async fn a_cached_token_is_dropped_when_its_key_leaves_the_jwks() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp)
        .token_cache(100)
        .unknown_kid_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let old = idp.mint(json!({"sub": "alice"}));
    assert!(check(&auth, &old).await.is_ok());
    assert!(check(&auth, &old).await.is_ok());
    assert_eq!(auth.stats().cache_hit, 1);

    idp.rotate();
    assert!(check(&auth, &idp.mint(json!({"sub": "bob"}))).await.is_ok());
    assert_eq!(idp.jwks_fetches(), 2);
    let err = check(&auth, &old).await.unwrap_err();
    assert_eq!(err.message(), "No key matches the token");
    assert_eq!(auth.stats().cache_hit, 1);
}

/// An issuer that withdraws its key by publishing `published` (a successful 200): the old key
/// is dropped at the next fetch, cached or not, and the set without a usable key is a 401
/// "no usable keys" while the issuer answers, never a 503.
async fn withdrawn_key_stops_verifying(published: impl FnOnce(&MockIssuer) -> Vec<Value>) {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp)
        .token_cache(100)
        .unknown_kid_cooldown(Duration::ZERO)
        .refresh_bounds(Duration::from_millis(100), Duration::from_millis(100))
        .stale_grace(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let old = idp.mint(json!({"sub": "alice"}));
    assert!(check(&auth, &old).await.is_ok());
    assert!(check(&auth, &old).await.is_ok());
    assert_eq!(auth.stats().cache_hit, 1);

    idp.publish_only(published(&idp));
    // An unknown `kid` makes the authenticator fetch now, and wait for the answer.
    let other = idp.mint_with_header(
        Algorithm::RS256,
        json!({"kid": "not-published"}),
        json!({"sub": "bob"}),
    );
    let fetches = idp.jwks_fetches();
    assert!(check(&auth, &other).await.is_err());
    assert!(idp.jwks_fetches() > fetches);

    let err = check(&auth, &old).await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::InvalidToken);
    assert_eq!(err.message(), "The issuer has no usable keys");
    assert_eq!(auth.stats().cache_hit, 1, "the cache never answers for it");
    assert_eq!(status(&auth, &old).await, StatusCode::UNAUTHORIZED);
    assert!(
        !auth.is_ready(),
        "no usable key: not ready to verify anything"
    );

    // Past any refresh and stale grace: still the issuer's answer (401), not an outage (503).
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(status(&auth, &old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(auth.stats().denied_unavailable, 0);

    // The key comes back: a fresh verification, not the withdrawn cache entry.
    idp.publish_default();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(auth.is_ready());
    assert_eq!(check(&auth, &old).await.unwrap()["sub"], "alice");
    assert_eq!(auth.stats().cache_hit, 1);
}

#[tokio::test]
async fn an_empty_jwks_withdraws_the_old_key_at_the_next_fetch() {
    withdrawn_key_stops_verifying(|_| Vec::new()).await;
}

#[tokio::test]
async fn a_key_republished_for_encryption_withdraws_it() {
    withdrawn_key_stops_verifying(|idp| {
        let mut jwk = idp.jwk(&idp.current_kid()).unwrap();
        jwk["use"] = "enc".into();
        vec![jwk]
    })
    .await;
}

#[tokio::test]
async fn a_jwks_of_unsupported_keys_withdraws_the_old_key() {
    withdrawn_key_stops_verifying(|idp| {
        // Same `kid`, a curve this crate does not verify; and a key type nobody knows.
        let p521 = json!({"kty": "EC", "kid": idp.current_kid(), "crv": "P-521",
            "x": "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt",
            "y": "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1"});
        vec![p521, json!({"kty": "banana", "kid": "b-1"})]
    })
    .await;
}

#[tokio::test]
async fn a_discovered_jwks_uri_is_held_to_the_configured_url_rules() {
    for (uri, reason) in [
        // Credentials in a URL end up in logs, and would be sent to the issuer as Basic auth.
        ("http://user:pass@{addr}/jwks.json", "credentials"),
        ("https://user@{addr}/jwks.json", "credentials"),
        ("ftp://{addr}/jwks.json", "https"),
        ("http://auth.example.com/jwks.json", "https"),
        ("/jwks.json", "absolute"),
    ] {
        let idp = MockIssuer::start().await.unwrap();
        idp.set_discovery_jwks_uri(uri.replace("{addr}", &idp.addr().to_string()));
        let err = JwksAuthenticator::<Value>::builder()
            .issuer(idp.discovery())
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::KeySource { reason: r, .. } if r.contains(reason)),
            "{uri}: {err:?}"
        );
        assert_eq!(idp.jwks_fetches(), 0, "{uri}: nothing is fetched from it");
    }
}

#[tokio::test]
async fn unchanged_keys_keep_their_cached_tokens_across_refreshes() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp)
        .token_cache(100)
        .refresh_bounds(Duration::from_millis(50), Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let token = idp.mint(json!({"sub": "alice"}));
    assert!(check(&auth, &token).await.is_ok());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(idp.jwks_fetches() >= 3, "max-age bounds drive refreshes");
    assert!(check(&auth, &token).await.is_ok());
    assert_eq!(auth.stats().cache_hit, 1);
}

// ---------- Sender-constrained tokens (RFC 9449 §6, RFC 8705 §3) ----------

const SENDER_CONSTRAINED: &str = "Sender-constrained tokens are not accepted as bearer tokens";

fn jkt_bound(idp: &MockIssuer) -> String {
    idp.mint(json!({"sub": "alice", "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}))
}

fn mtls_bound(idp: &MockIssuer) -> String {
    idp.mint(
        json!({"sub": "alice", "cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}),
    )
}

#[tokio::test]
async fn sender_constrained_jwks_tokens_are_refused_as_plain_bearer_tokens() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).build().await.unwrap();
    for token in [jkt_bound(&idp), mtls_bound(&idp)] {
        assert_eq!(status(&auth, &token).await, StatusCode::UNAUTHORIZED);
        let err = check(&auth, &token).await.unwrap_err();
        assert_eq!(err.kind(), AuthErrorKind::InvalidToken);
        assert_eq!(err.message(), SENDER_CONSTRAINED);
    }
    let token = idp.mint(json!({"sub": "alice", "cnf": {}}));
    assert_eq!(
        check(&auth, &token).await.unwrap_err().message(),
        SENDER_CONSTRAINED
    );
    let token = idp.mint(json!({"sub": "alice", "cnf": null}));
    assert_eq!(
        check(&auth, &token).await.unwrap_err().message(),
        "The token claims are malformed"
    );
    // Tokens without `cnf` are unaffected.
    assert_eq!(
        status(&auth, &idp.mint(json!({"sub": "alice"}))).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_token_cache_never_lets_a_sender_constrained_token_through() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).token_cache(100).build().await.unwrap();
    let token = jkt_bound(&idp);
    for _ in 0..3 {
        assert_eq!(
            check(&auth, &token).await.unwrap_err().message(),
            SENDER_CONSTRAINED
        );
    }
    let stats = auth.stats();
    assert_eq!((stats.cache_hit, stats.cache_miss), (0, 3));
    assert_eq!((stats.allowed, stats.denied_invalid_token), (0, 3));
    // A plain token still caches.
    let plain = idp.mint(json!({"sub": "alice"}));
    assert!(check(&auth, &plain).await.is_ok());
    assert!(check(&auth, &plain).await.is_ok());
    assert_eq!(auth.stats().cache_hit, 1);
}

#[tokio::test]
async fn an_opted_in_binding_verifier_is_asked_on_every_cache_hit() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tower_scope::jwt::Confirmation;

    let idp = MockIssuer::start().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let revoked = Arc::new(AtomicBool::new(false));
    let auth = builder(&idp)
        .token_cache(100)
        .accept_sender_constrained({
            let (calls, revoked) = (Arc::clone(&calls), Arc::clone(&revoked));
            move |cnf: &Confirmation<'_>| {
                calls.fetch_add(1, Ordering::SeqCst);
                if cnf.jkt().is_some() && !revoked.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err(AuthError::invalid_token())
                }
            }
        })
        .build()
        .await
        .unwrap();
    let token = jkt_bound(&idp);
    for _ in 0..3 {
        assert_eq!(check(&auth, &token).await.unwrap()["sub"], "alice");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "asked on both cache hits too"
    );
    assert_eq!(auth.stats().cache_hit, 2);

    // The verifier changes its mind: the cached answer does not outvote it.
    revoked.store(true, Ordering::SeqCst);
    assert_eq!(status(&auth, &token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(auth.stats().cache_hit, 3);
    // The refused entry is gone: the next try verifies from scratch (a miss), and is refused.
    assert!(check(&auth, &token).await.is_err());
    assert_eq!((auth.stats().cache_hit, auth.stats().cache_miss), (3, 2));

    // An mTLS binding this verifier does not take is refused; plain tokens never ask it.
    let before = calls.load(Ordering::SeqCst);
    assert!(check(&auth, &mtls_bound(&idp)).await.is_err());
    let plain = idp.mint(json!({"sub": "alice"}));
    assert!(check(&auth, &plain).await.is_ok());
    assert!(check(&auth, &plain).await.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn cache_control_max_age_is_clamped_to_the_bounds() {
    let idp = MockIssuer::start().await.unwrap();
    idp.set_max_age(Some(0));
    let _auth = builder(&idp)
        .refresh_bounds(Duration::from_millis(300), Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        idp.jwks_fetches(),
        2,
        "max-age=0 is raised to the 300 ms minimum"
    );

    idp.set_max_age(Some(3600));
    let _auth = builder(&idp)
        .refresh_bounds(Duration::from_millis(10), Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let before = idp.jwks_fetches();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        idp.jwks_fetches() >= before + 2,
        "max-age=3600 is lowered to 100 ms"
    );
}

#[tokio::test]
async fn lazy_start_serves_after_the_first_fetch_and_503_while_the_issuer_is_down() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).lazy_start().build().await.unwrap();
    let token = idp.mint(json!({"sub": "alice"}));
    assert_eq!(status(&auth, &token).await, StatusCode::OK);
    assert!(auth.is_ready());

    let down = MockIssuer::start().await.unwrap();
    down.set_failing(true);
    let auth = builder(&down).lazy_start().build().await.unwrap();
    assert!(!auth.is_ready());
    let token = down.mint(json!({"sub": "alice"}));
    assert_eq!(status(&auth, &token).await, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn eager_build_fails_fast_when_the_issuer_is_down() {
    let idp = MockIssuer::start().await.unwrap();
    idp.set_failing(true);
    let err = builder(&idp).build().await.unwrap_err();
    assert!(
        matches!(&err, ConfigError::KeySource { reason, .. } if reason.contains("500")),
        "{err:?}"
    );
}

#[tokio::test]
async fn debug_output_never_shows_tokens() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).token_cache(10).build().await.unwrap();
    let token = idp.mint(json!({"sub": "alice"}));
    let future = auth.authenticate(Token::new(&token));
    let shown = format!("{auth:?} {future:?} {idp:?}");
    assert!(!shown.contains(&token[..20]), "{shown}");
    assert!(future.await.is_ok());
}
