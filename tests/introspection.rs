//! Conformance of `IntrospectionAuthenticator` with RFC 7662 (OAuth 2.0 Token Introspection),
//! over real HTTP against the mock issuer's introspection endpoint; sections cited per test.
//! The stack tests serve `BearerAuthLayer` (+ `AuthorizeLayer`) with axum on `127.0.0.1:0`
//! and call it with reqwest.
#![cfg(all(feature = "introspection", feature = "test-util", feature = "authz"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_scope::authz::{AuthorizeLayer, ClaimGrants, ClaimPermissions, Requirement};
use tower_scope::introspection::{
    ClientAuth, Endpoint, IntrospectionAuthenticator, IntrospectionAuthenticatorBuilder,
};
use tower_scope::jwks::mock::MockIssuer;
use tower_scope::{AuthError, AuthErrorKind, Authenticate, BearerAuthLayer, ConfigError, Token};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn basic() -> ClientAuth {
    let (id, secret) = MockIssuer::INTROSPECTION_CLIENT;
    ClientAuth::basic(id, secret)
}

fn builder(idp: &MockIssuer) -> IntrospectionAuthenticatorBuilder<Value, Value> {
    IntrospectionAuthenticator::<Value>::builder()
        .endpoint(Endpoint::url(idp.introspection_url()))
        .client_auth(basic())
}

/// An active answer for alice, valid for ten minutes.
fn active(idp: &MockIssuer) -> Value {
    json!({"active": true, "sub": "alice", "scope": "memory:read", "iss": idp.issuer(),
        "exp": now() + 600, "token_type": "Bearer"})
}

async fn auth_of(
    auth: &IntrospectionAuthenticator<Value>,
    token: &str,
) -> Result<Value, AuthError> {
    auth.authenticate(Token::new(token))
        .await
        .map(|user| (*user).clone())
}

fn kind(result: Result<Value, AuthError>) -> AuthErrorKind {
    result.expect_err("refused").kind()
}

/// A clock the test moves forward instead of sleeping.
fn clock() -> (
    Arc<AtomicU64>,
    impl Fn() -> SystemTime + Send + Sync + 'static,
) {
    let offset = Arc::new(AtomicU64::new(0));
    let shared = Arc::clone(&offset);
    (offset, move || {
        SystemTime::now() + Duration::from_secs(shared.load(Ordering::SeqCst))
    })
}

// ---- §2.1 the request and client authentication ---------------------------------------------

#[tokio::test]
async fn rfc7662_2_1_client_secret_basic_form_encodes_id_and_secret() {
    let idp = MockIssuer::start().await.unwrap();
    // Characters RFC 6749 Appendix B encodes: ':' '+' '%' ' ' '/' and non-ASCII.
    idp.set_introspection_client("rs:1 +api", "p@ss:w+rd/é% x");
    idp.register_introspection("tok-a", active(&idp));
    let auth = IntrospectionAuthenticator::<Value>::builder()
        .endpoint(Endpoint::url(idp.introspection_url()))
        .client_auth(ClientAuth::basic("rs:1 +api", "p@ss:w+rd/é% x"))
        .build()
        .await
        .unwrap();
    assert_eq!(auth_of(&auth, "tok-a").await.unwrap()["sub"], "alice");
    assert_eq!(idp.last_client_auth(), Some("basic"));
}

#[tokio::test]
async fn rfc7662_2_1_client_secret_post_sends_the_credentials_in_the_form() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("tok-a", active(&idp));
    let (id, secret) = MockIssuer::INTROSPECTION_CLIENT;
    let auth = builder(&idp)
        .client_auth(ClientAuth::post(id, secret))
        .build()
        .await
        .unwrap();
    assert_eq!(auth_of(&auth, "tok-a").await.unwrap()["sub"], "alice");
    assert_eq!(idp.last_client_auth(), Some("post"));
}

#[tokio::test]
async fn rfc7662_2_1_the_token_is_form_encoded_so_every_b64token_character_arrives() {
    // `+` unencoded would arrive as a space, `=` and `/` could split or bend the form: the
    // endpoint would then introspect another token than the one the client sent.
    let idp = MockIssuer::start().await.unwrap();
    let token = "a+b/c=d~e-f.g_h==";
    idp.register_introspection(token, active(&idp));
    idp.register_introspection(
        "a b/c=d~e-f.g_h==",
        json!({"active": true, "sub": "mallory"}),
    );
    let auth = builder(&idp).build().await.unwrap();
    assert_eq!(auth_of(&auth, token).await.unwrap()["sub"], "alice");
}

#[tokio::test]
async fn rfc7662_2_1_refused_client_credentials_are_503_never_blamed_on_the_token() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("tok-a", active(&idp));
    for client in [
        ClientAuth::basic("resource-server", "wrong secret hunter2"),
        ClientAuth::post("resource-server", "wrong secret hunter2"),
    ] {
        let auth = builder(&idp).client_auth(client).build().await.unwrap();
        // 401 invalid_client from the endpoint (RFC 7662 §2.3): our setup is wrong.
        let err = auth_of(&auth, "tok-a").await.unwrap_err();
        assert_eq!(err.kind(), AuthErrorKind::Unavailable);
        assert!(!err.message().contains("hunter2"));
        assert!(!format!("{auth:?}").contains("hunter2"), "{auth:?}");
    }
}

#[tokio::test]
async fn secrets_are_never_in_debug_output() {
    let idp = MockIssuer::start().await.unwrap();
    let b = builder(&idp).client_auth(ClientAuth::post("rs", "hunter2-secret"));
    assert!(!format!("{b:?}").contains("hunter2"));
    let auth = b.build().await.unwrap();
    let debug = format!("{auth:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("ClientAuth::Post"), "{debug}");
}

// ---- §2.2 the answer ----------------------------------------------------------------------

#[tokio::test]
async fn rfc7662_2_2_active_must_be_the_boolean_true() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).build().await.unwrap();
    let exp = now() + 600;
    let cases = [
        (
            "false",
            format!(r#"{{"active":false,"sub":"alice","exp":{exp}}}"#),
        ),
        ("missing", format!(r#"{{"sub":"alice","exp":{exp}}}"#)),
        (
            "string",
            format!(r#"{{"active":"true","sub":"alice","exp":{exp}}}"#),
        ),
        (
            "number",
            format!(r#"{{"active":1,"sub":"alice","exp":{exp}}}"#),
        ),
        (
            "null",
            format!(r#"{{"active":null,"sub":"alice","exp":{exp}}}"#),
        ),
        // serde_json keeps the last duplicate; a duplicated member is refused outright.
        (
            "duplicate",
            format!(r#"{{"active":false,"active":true,"sub":"alice","exp":{exp}}}"#),
        ),
        (
            "dup other",
            format!(r#"{{"active":true,"scope":"a","scope":"memory:write","exp":{exp}}}"#),
        ),
    ];
    for (name, body) in cases {
        let token = format!("tok-{name}");
        idp.register_introspection_raw(&token, body);
        assert_eq!(
            kind(auth_of(&auth, &token).await),
            AuthErrorKind::InvalidToken,
            "{name}"
        );
    }
    // An unknown token: the endpoint answers {"active":false}.
    assert_eq!(
        kind(auth_of(&auth, "never-issued").await),
        AuthErrorKind::InvalidToken
    );
    idp.register_introspection("tok-ok", active(&idp));
    assert!(auth_of(&auth, "tok-ok").await.is_ok());
}

#[tokio::test]
async fn rfc7662_2_2_exp_nbf_iss_and_aud_are_checked_against_the_configuration() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp)
        .issuer(idp.issuer())
        .audience("memory-api")
        .leeway(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let base = |extra: Value| {
        let mut answer = json!({"active": true, "sub": "alice", "iss": idp.issuer(),
            "aud": "memory-api", "exp": now() + 600});
        answer
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        answer
    };
    let refused = [
        ("expired", base(json!({"exp": now() - 5}))),
        (
            "exp as string",
            base(json!({"exp": (now() + 600).to_string()})),
        ),
        ("nbf ahead", base(json!({"nbf": now() + 300}))),
        ("other iss", base(json!({"iss": "https://evil.example"}))),
        ("no iss", {
            let mut a = base(json!({}));
            a.as_object_mut().unwrap().remove("iss");
            a
        }),
        ("other aud", base(json!({"aud": "other-api"}))),
        ("aud array without us", base(json!({"aud": ["a", "b"]}))),
        ("no aud", {
            let mut a = base(json!({}));
            a.as_object_mut().unwrap().remove("aud");
            a
        }),
    ];
    for (name, answer) in refused {
        let token = format!("tok-{name}");
        idp.register_introspection(&token, answer);
        assert_eq!(
            kind(auth_of(&auth, &token).await),
            AuthErrorKind::InvalidToken,
            "{name}"
        );
    }
    for (name, answer) in [
        ("aud string", base(json!({}))),
        ("aud array", base(json!({"aud": ["other", "memory-api"]}))),
        ("nbf past", base(json!({"nbf": now() - 10}))),
    ] {
        let token = format!("tok-{name}");
        idp.register_introspection(&token, answer);
        assert!(auth_of(&auth, &token).await.is_ok(), "{name}");
    }
}

#[tokio::test]
async fn rfc7662_2_2_exp_is_optional_unless_required() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("no-exp", json!({"active": true, "sub": "alice"}));
    let lenient = builder(&idp).build().await.unwrap();
    assert!(auth_of(&lenient, "no-exp").await.is_ok());
    let strict = builder(&idp).require_exp().build().await.unwrap();
    assert_eq!(
        kind(auth_of(&strict, "no-exp").await),
        AuthErrorKind::InvalidToken
    );
}

#[tokio::test]
async fn rfc7662_2_2_token_type_can_be_required_so_other_tokens_do_not_pass() {
    // An authorization server may answer `active: true` for a refresh token sent as a bearer
    // token (`token_type_hint` is only a hint, RFC 7662 §2.1).
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("access", active(&idp)); // token_type: Bearer
    let mut lower = active(&idp);
    lower["token_type"] = json!("bearer");
    idp.register_introspection("lower", lower);
    let mut refresh = active(&idp);
    refresh["token_type"] = json!("refresh_token");
    idp.register_introspection("refresh", refresh);
    let mut untyped = active(&idp);
    untyped.as_object_mut().unwrap().remove("token_type");
    idp.register_introspection("untyped", untyped);
    let mut numeric = active(&idp);
    numeric["token_type"] = json!(1);
    idp.register_introspection("numeric", numeric);

    let strict = builder(&idp)
        .require_token_type("Bearer")
        .build()
        .await
        .unwrap();
    assert!(auth_of(&strict, "access").await.is_ok());
    assert!(
        auth_of(&strict, "lower").await.is_ok(),
        "token types are case-insensitive"
    );
    for token in ["refresh", "untyped", "numeric"] {
        assert_eq!(
            kind(auth_of(&strict, token).await),
            AuthErrorKind::InvalidToken,
            "{token}"
        );
    }
    let lenient = builder(&idp).build().await.unwrap();
    assert!(auth_of(&lenient, "refresh").await.is_ok());
    assert!(auth_of(&lenient, "untyped").await.is_ok());
}

#[tokio::test]
async fn rfc7662_2_2_the_answer_is_deserialized_into_the_claims_type() {
    #[derive(Debug, Deserialize)]
    struct Claims {
        sub: String,
        #[serde(flatten)]
        grants: ClaimGrants,
    }
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("tok-a", active(&idp));
    idp.register_introspection("no-sub", json!({"active": true, "exp": now() + 60}));
    let auth = IntrospectionAuthenticator::<Claims>::builder()
        .endpoint(Endpoint::url(idp.introspection_url()))
        .client_auth(basic())
        .build()
        .await
        .unwrap();
    let user = auth.authenticate(Token::new("tok-a")).await.unwrap();
    assert_eq!(user.sub, "alice");
    let scopes: Vec<&str> = user.grants.scope.as_ref().unwrap().iter().collect();
    assert_eq!(scopes, ["memory:read"]);
    // An answer the claims type cannot hold is refused, not defaulted.
    let err = auth.authenticate(Token::new("no-sub")).await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::InvalidToken);
}

// ---- cnf: sender-constrained opaque tokens (RFC 7800 §3.1, RFC 9449 §6.2) -------------------

#[tokio::test]
async fn a_cnf_bound_token_never_passes_as_a_plain_bearer_token() {
    let idp = MockIssuer::start().await.unwrap();
    let mut bound = active(&idp);
    bound["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    idp.register_introspection("dpop-bound", bound);
    let mut null_cnf = active(&idp);
    null_cnf["cnf"] = Value::Null;
    idp.register_introspection("null-cnf", null_cnf);
    let auth = builder(&idp).build().await.unwrap();
    for token in ["dpop-bound", "null-cnf"] {
        let err = auth_of(&auth, token).await.unwrap_err();
        assert_eq!(err.kind(), AuthErrorKind::InvalidToken, "{token}");
    }
    assert!(
        auth_of(&auth, "dpop-bound")
            .await
            .unwrap_err()
            .message()
            .contains("Sender-constrained")
    );

    // The hook a proof-of-possession verifier plugs into: it sees the confirmation.
    let approve = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = Arc::clone(&approve);
    let auth = builder(&idp)
        .accept_sender_constrained(move |cnf| {
            if flag.load(Ordering::SeqCst) && cnf.jkt().is_some() {
                Ok(())
            } else {
                Err(AuthError::invalid_token())
            }
        })
        .build()
        .await
        .unwrap();
    assert!(auth_of(&auth, "dpop-bound").await.is_ok());
    // `cnf: null` is malformed: the verifier is not even asked.
    assert!(auth_of(&auth, "null-cnf").await.is_err());
    // A cache hit asks the verifier again.
    approve.store(false, Ordering::SeqCst);
    assert!(auth_of(&auth, "dpop-bound").await.is_err());
    assert_eq!(idp.introspection_requests(), 5);
}

// ---- caching -------------------------------------------------------------------------------

#[tokio::test]
async fn active_answers_are_cached_inactive_ones_are_not() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("tok-a", active(&idp));
    let auth = builder(&idp).build().await.unwrap();
    for _ in 0..5 {
        assert!(auth_of(&auth, "tok-a").await.is_ok());
    }
    assert_eq!(idp.introspection_requests(), 1);
    for _ in 0..3 {
        assert!(auth_of(&auth, "inactive").await.is_err());
    }
    assert_eq!(
        idp.introspection_requests(),
        4,
        "inactive answers are asked again"
    );
    // A token that differs by one byte is a miss, not a hit.
    assert!(auth_of(&auth, "tok-b").await.is_err());
    assert_eq!(idp.introspection_requests(), 5);
}

#[tokio::test]
async fn the_cache_is_bounded_by_exp_and_by_the_maximum_ttl() {
    let idp = MockIssuer::start().await.unwrap();
    let (offset, clock) = clock();
    let auth = builder(&idp)
        .cache_max_ttl(Duration::from_secs(60))
        .leeway(Duration::ZERO)
        .clock(clock)
        .build()
        .await
        .unwrap();

    // Maximum TTL: the token is valid for an hour, the answer is reused for 60 s only, so a
    // revocation at the authorization server takes effect within that.
    let mut long = active(&idp);
    long["exp"] = json!(now() + 3600);
    idp.register_introspection("long", long);
    assert!(auth_of(&auth, "long").await.is_ok());
    offset.store(59, Ordering::SeqCst);
    assert!(auth_of(&auth, "long").await.is_ok());
    assert_eq!(idp.introspection_requests(), 1);
    idp.revoke_introspection("long");
    offset.store(61, Ordering::SeqCst);
    assert_eq!(
        kind(auth_of(&auth, "long").await),
        AuthErrorKind::InvalidToken
    );
    assert_eq!(idp.introspection_requests(), 2);

    // `exp`: an answer valid for 10 s more is never served from the cache past it.
    offset.store(0, Ordering::SeqCst);
    let mut short = active(&idp);
    short["exp"] = json!(now() + 10);
    idp.register_introspection("short", short);
    assert!(auth_of(&auth, "short").await.is_ok());
    offset.store(11, Ordering::SeqCst);
    assert_eq!(
        kind(auth_of(&auth, "short").await),
        AuthErrorKind::InvalidToken
    );
    assert_eq!(
        idp.introspection_requests(),
        4,
        "expired entry dropped, asked again"
    );
}

#[tokio::test]
async fn a_zero_ttl_turns_the_cache_off() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("tok-a", active(&idp));
    let auth = builder(&idp)
        .cache_max_ttl(Duration::ZERO)
        .build()
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(auth_of(&auth, "tok-a").await.is_ok());
    }
    assert_eq!(idp.introspection_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_for_one_token_cause_one_post() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("tok-a", active(&idp));
    idp.set_introspection_delay(Duration::from_millis(300));
    let auth = builder(&idp).build().await.unwrap();
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth_of(&auth, "tok-a").await })
        })
        .collect();
    // The same for an inactive token: one call answers every waiter, nothing is cached.
    let inactive: Vec<_> = (0..16)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth_of(&auth, "not-a-token").await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap()["sub"], "alice");
    }
    for call in inactive {
        assert_eq!(kind(call.await.unwrap()), AuthErrorKind::InvalidToken);
    }
    assert_eq!(idp.introspection_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_tokens_past_the_call_limit_get_503_and_cached_ones_keep_working() {
    let idp = MockIssuer::start().await.unwrap();
    for token in ["t1", "t2", "t3", "cached"] {
        idp.register_introspection(token, active(&idp));
    }
    let auth = builder(&idp).max_concurrent_calls(2).build().await.unwrap();
    assert!(auth_of(&auth, "cached").await.is_ok());
    idp.set_introspection_delay(Duration::from_millis(1000));
    let first: Vec<_> = ["t1", "t2"]
        .into_iter()
        .map(|token| {
            let auth = auth.clone();
            tokio::spawn(async move { auth_of(&auth, token).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Two calls in flight: a third distinct token fails closed at once, without a call...
    assert_eq!(kind(auth_of(&auth, "t3").await), AuthErrorKind::Unavailable);
    // ...while a token waiting on a call in flight joins it, and a cached one needs none.
    assert!(auth_of(&auth, "t1").await.is_ok());
    assert!(auth_of(&auth, "cached").await.is_ok());
    for call in first {
        assert!(call.await.unwrap().is_ok());
    }
    assert_eq!(idp.introspection_requests(), 3);
    // The permits are back.
    assert!(auth_of(&auth, "t3").await.is_ok());
}

#[tokio::test]
async fn a_cancelled_first_request_still_completes_the_call() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("tok-a", active(&idp));
    idp.set_introspection_delay(Duration::from_millis(200));
    let auth = builder(&idp).build().await.unwrap();
    let first = auth_of(&auth, "tok-a");
    // Dropped before the answer comes back.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), first)
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(auth_of(&auth, "tok-a").await.is_ok());
    assert_eq!(
        idp.introspection_requests(),
        1,
        "the spawned call landed in the cache"
    );
}

// ---- failures (RFC 7662 §2.3, and the endpoint's health) -------------------------------------

#[tokio::test]
async fn an_endpoint_that_is_down_slow_or_failing_is_503_never_a_pass() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("tok-a", active(&idp));
    let auth = builder(&idp)
        .timeout(Duration::from_millis(300))
        .cache_max_ttl(Duration::ZERO)
        .build()
        .await
        .unwrap();
    for status in [500, 502, 503, 429, 404, 401, 403] {
        idp.set_introspection_status(Some(status));
        assert_eq!(
            kind(auth_of(&auth, "tok-a").await),
            AuthErrorKind::Unavailable,
            "{status}"
        );
    }
    idp.set_introspection_status(None);
    idp.set_introspection_hanging(true);
    let started = std::time::Instant::now();
    assert_eq!(
        kind(auth_of(&auth, "tok-a").await),
        AuthErrorKind::Unavailable
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    idp.set_introspection_hanging(false);
    assert!(auth_of(&auth, "tok-a").await.is_ok());

    // Down: nothing listens on the port any more.
    let url = idp.introspection_url();
    drop(idp);
    let gone = IntrospectionAuthenticator::<Value>::builder()
        .endpoint(Endpoint::url(url))
        .client_auth(basic())
        .build()
        .await
        .unwrap();
    assert_eq!(
        kind(auth_of(&gone, "tok-a").await),
        AuthErrorKind::Unavailable
    );
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failures_are_logged_without_the_token_or_the_secret() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    // Global, not thread-local: a thread-local default loses events when other tests' threads
    // register the same callsites first (tracing's interest cache). Other tests of this binary
    // log here too, which only widens what the leak check below covers.
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("sekrit-token-123", active(&idp));
    for client in [
        ClientAuth::basic("resource-server", "hunter2-basic"),
        ClientAuth::post("resource-server", "hunter2-post"),
    ] {
        let auth = builder(&idp).client_auth(client).build().await.unwrap();
        assert_eq!(
            kind(auth_of(&auth, "sekrit-token-123").await),
            AuthErrorKind::Unavailable
        );
    }
    idp.set_introspection_status(Some(502));
    let auth = builder(&idp).build().await.unwrap();
    assert_eq!(
        kind(auth_of(&auth, "sekrit-token-123").await),
        AuthErrorKind::Unavailable
    );
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("token introspection failed"), "{text}");
    assert!(text.contains("client credentials"), "{text}");
    assert!(text.contains("502"), "{text}");
    // The Basic header as sent (id and secret form-encoded, then base64).
    let basic_header = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("resource-server:hunter2-basic")
    };
    for secret in [
        "sekrit-token",
        "hunter2",
        &basic_header,
        MockIssuer::INTROSPECTION_CLIENT.1,
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the logs:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_400_means_the_token_was_refused_unless_it_names_the_client() {
    let idp = MockIssuer::start().await.unwrap();
    let auth = builder(&idp).build().await.unwrap();
    // The mock's status switch answers `server_error`: a 400 that blames the request.
    idp.set_introspection_status(Some(400));
    assert_eq!(
        kind(auth_of(&auth, "tok-a").await),
        AuthErrorKind::InvalidToken
    );
    idp.set_introspection_status(None);
    idp.register_introspection("tok-a", active(&idp));
    assert!(auth_of(&auth, "tok-a").await.is_ok());
}

#[tokio::test]
async fn an_oversized_or_non_json_answer_is_503() {
    let idp = MockIssuer::start().await.unwrap();
    let mut big = active(&idp);
    big["padding"] = json!("x".repeat(8 * 1024));
    idp.register_introspection("big", big);
    idp.register_introspection_raw("html", "<html>gateway error</html>");
    idp.register_introspection_raw("array", "[true]");
    idp.register_introspection_raw("truncated", r#"{"active":true,"sub":"al"#);
    let auth = builder(&idp)
        .max_response_bytes(4096)
        .build()
        .await
        .unwrap();
    for token in ["big", "html", "array", "truncated"] {
        assert_eq!(
            kind(auth_of(&auth, token).await),
            AuthErrorKind::Unavailable,
            "{token}"
        );
    }
}

// ---- discovery (RFC 8414 §3, OIDC Discovery §4) ------------------------------------------------

#[tokio::test]
async fn rfc8414_discovery_then_oidc_fallback() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("tok-a", active(&idp));
    let auth = IntrospectionAuthenticator::<Value>::builder()
        .endpoint(Endpoint::discover(idp.issuer()))
        .client_auth(basic())
        .build()
        .await
        .unwrap();
    assert_eq!(auth.endpoint(), idp.introspection_url());
    assert!(auth_of(&auth, "tok-a").await.is_ok());
    assert_eq!(idp.discovery_fetches(), 1);

    // No RFC 8414 document (404): OIDC discovery names the endpoint.
    idp.set_oauth_metadata(false);
    let auth = IntrospectionAuthenticator::<Value>::builder()
        .endpoint(Endpoint::discover(idp.issuer()))
        .client_auth(basic())
        .build()
        .await
        .unwrap();
    assert_eq!(auth.endpoint(), idp.introspection_url());
    assert_eq!(idp.discovery_fetches(), 3);
}

#[tokio::test]
async fn discovery_refuses_another_issuers_metadata_and_unsafe_endpoints() {
    let idp = MockIssuer::start().await.unwrap();
    idp.set_discovery_issuer("https://evil.example");
    let err = IntrospectionAuthenticator::<Value>::builder()
        .endpoint(Endpoint::discover(idp.issuer()))
        .client_auth(basic())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigError::Discovery { .. }), "{err}");

    let idp = MockIssuer::start().await.unwrap();
    idp.set_failing(true); // JWKS/discovery 500 only affects OIDC; RFC 8414 is served
    idp.set_oauth_metadata(false);
    let err = IntrospectionAuthenticator::<Value>::builder()
        .endpoint(Endpoint::discover(idp.issuer()))
        .client_auth(basic())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigError::Discovery { .. }), "{err}");
}

// ---- builder validation ----------------------------------------------------------------------

#[tokio::test]
async fn bad_configurations_are_config_errors_at_build() {
    let url = "https://as.example.com/introspect";
    let ok = || {
        IntrospectionAuthenticator::<Value>::builder()
            .endpoint(Endpoint::url(url))
            .client_auth(ClientAuth::basic("rs", "secret"))
    };
    let cases = [
        IntrospectionAuthenticator::<Value>::builder().client_auth(ClientAuth::basic("rs", "s")),
        IntrospectionAuthenticator::<Value>::builder().endpoint(Endpoint::url(url)),
        ok().client_auth(ClientAuth::basic("", "secret")),
        ok().client_auth(ClientAuth::post("rs", "")),
        ok().endpoint(Endpoint::url("http://as.example.com/introspect")),
        ok().endpoint(Endpoint::url("https://user:pw@as.example.com/introspect")),
        ok().endpoint(Endpoint::url("not a url")),
        ok().timeout(Duration::ZERO),
        ok().max_response_bytes(0),
        ok().cache_capacity(0),
        ok().audience(""),
        ok().issuer(""),
        ok().require_token_type(""),
        ok().max_concurrent_calls(0),
        ok().endpoint(Endpoint::discover("http://as.example.com")),
    ];
    for builder in cases {
        let debug = format!("{builder:?}");
        assert!(
            matches!(builder.build().await, Err(ConfigError::InvalidValue { .. })),
            "{debug}"
        );
    }
    assert!(ok().build().await.is_ok());
}

// ---- through the stack: CVE-2021-32701 ---------------------------------------------------------

#[derive(Debug, Deserialize)]
struct StackClaims {
    #[allow(dead_code)]
    sub: String,
    #[serde(flatten)]
    grants: ClaimGrants,
}

fn grants(claims: &StackClaims) -> &ClaimGrants {
    &claims.grants
}

async fn serve_stack(idp: &MockIssuer) -> String {
    let auth = IntrospectionAuthenticator::<StackClaims>::builder()
        .endpoint(Endpoint::url(idp.introspection_url()))
        .client_auth(basic())
        .build()
        .await
        .unwrap();
    let authz = AuthorizeLayer::new(
        ClaimPermissions::new(grants as fn(&StackClaims) -> &ClaimGrants).scope(),
    )
    .route(
        Some(Method::GET),
        "/api/memory/threads",
        Requirement::all_of(["memory:read"]).unwrap(),
    )
    .unwrap()
    .route(
        Some(Method::POST),
        "/api/memory/threads",
        Requirement::all_of(["memory:write"]).unwrap(),
    )
    .unwrap();
    let app = Router::new()
        .route(
            "/api/memory/threads",
            get(|| async { "list" }).post(|| async { "created" }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(BearerAuthLayer::new(auth))
                .layer(authz),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn cve_2021_32701_a_cached_read_token_still_gets_403_on_a_write_route() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("reader", active(&idp)); // scope: memory:read
    let mut writer = active(&idp);
    writer["scope"] = json!("memory:read memory:write");
    idp.register_introspection("writer", writer);
    let base = serve_stack(&idp).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/memory/threads");
    let send = |method: Method, token: &str| client.request(method, &url).bearer_auth(token).send();

    // The read route admits the token and caches its introspection answer...
    let res = send(Method::GET, "reader").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(idp.introspection_requests(), 1);
    // ...and the write route, served from that cache, still decides from the claims: 403.
    for _ in 0..3 {
        let res = send(Method::POST, "reader").await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("insufficient_scope"), "{challenge}");
        assert!(challenge.contains("memory:write"), "{challenge}");
    }
    assert_eq!(
        idp.introspection_requests(),
        1,
        "every decision came from the cached answer"
    );
    // The reverse order for another token: cached on a write, still fine on a read.
    assert_eq!(
        send(Method::POST, "writer").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        send(Method::GET, "writer").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(idp.introspection_requests(), 2);
    // Inactive tokens: 401 with the bearer challenge.
    let res = send(Method::GET, "nobody").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn a_down_endpoint_is_503_through_the_stack() {
    let idp = MockIssuer::start().await.unwrap();
    idp.register_introspection("reader", active(&idp));
    let base = serve_stack(&idp).await;
    idp.set_introspection_status(Some(500));
    let res = reqwest::Client::new()
        .get(format!("{base}/api/memory/threads"))
        .bearer_auth("reader")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}
