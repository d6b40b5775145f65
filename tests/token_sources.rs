//! A custom header token source (`X-API-Key`) and `CompositeAuth` routing, tried as an
//! attacker would: duplicate and folded headers, a token in two places, over-long and empty
//! values, tokens sent where another member's credentials go, a forged `iss` used to pick the
//! member, credentials no member or two members claim.
#![cfg(all(feature = "jwt", feature = "aws-lc"))]

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_scope::auth::{CompositeAuth, Credential, Member};
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
use tower_scope::{Authenticate, Authenticated, BearerAuthLayer, ConfigError, StaticTokens};

const KEY: &str = "svc-0123456789abcdef0123";
const SECRET_A: &[u8] = b"issuer-a-secret-0123456789abcdef0123456789";
const SECRET_B: &[u8] = b"issuer-b-secret-0123456789abcdef0123456789";

/// Echoes the user and whether the API-key header was marked sensitive.
async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let user = req
        .extensions()
        .get::<Authenticated<String>>()
        .map(|u| (**u).clone());
    let sensitive = req
        .headers()
        .get("x-api-key")
        .is_some_and(HeaderValue::is_sensitive);
    Ok(Response::new(format!(
        "{} sensitive={sensitive}",
        user.unwrap_or_default()
    )))
}

async fn send<A: Authenticate<User = String>>(
    layer: &BearerAuthLayer<A>,
    headers: &[(&str, &str)],
) -> Response<String> {
    let mut req = Request::get("/api/x");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(echo))
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap()
}

fn keys() -> StaticTokens<String> {
    StaticTokens::new().token(KEY, String::from("billing"))
}

fn api_key_layer() -> BearerAuthLayer<StaticTokens<String>> {
    BearerAuthLayer::new(keys())
        .token_from_header("X-API-Key")
        .unwrap()
}

fn challenge(res: &Response<String>) -> &str {
    res.headers()
        .get(WWW_AUTHENTICATE)
        .map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn api_key_header_authenticates_and_is_marked_sensitive() {
    let res = send(&api_key_layer(), &[("x-api-key", KEY)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body(), "billing sensitive=true");
    // Header names are case-insensitive (RFC 9110 §5.1).
    let res = send(&api_key_layer(), &[("X-API-KEY", KEY)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    // The same key as a bearer token still works: the header is one more source.
    let res = send(
        &api_key_layer(),
        &[("authorization", &format!("Bearer {KEY}"))],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn api_key_header_ambiguity_and_bad_values_are_400() {
    let layer = api_key_layer();
    let folded = format!("{KEY}, {KEY}");
    let long = "k".repeat(9000);
    let bearer = format!("Bearer {KEY}");
    for (headers, what) in [
        (vec![("x-api-key", KEY), ("x-api-key", KEY)], "two headers"),
        (vec![("x-api-key", folded.as_str())], "folded list"),
        (
            vec![("x-api-key", KEY), ("authorization", bearer.as_str())],
            "header and bearer",
        ),
        (vec![("x-api-key", long.as_str())], "too long"),
        (vec![("x-api-key", "")], "empty"),
        (vec![("x-api-key", "key with spaces")], "outside b64token"),
    ] {
        let res = send(&layer, &headers).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{what}");
        assert!(challenge(&res).contains("invalid_request"), "{what}");
    }
    // A wrong key is 401, like a wrong bearer token.
    let res = send(&layer, &[("x-api-key", "svc-wrong-0123456789abcd")]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Length cap follows `max_token_len`.
    let small = api_key_layer().max_token_len(10);
    assert_eq!(
        send(&small, &[("x-api-key", KEY)]).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn api_key_header_over_a_real_connection_refuses_duplicates() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/api/x",
            axum::routing::get(|req: axum::extract::Request| async move {
                req.extensions()
                    .get::<Authenticated<String>>()
                    .map(|u| (**u).clone())
                    .unwrap_or_default()
            }),
        )
        .layer(api_key_layer());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/x");
    let res = client
        .get(&url)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "billing");
    let res = client
        .get(&url)
        .header("x-api-key", KEY)
        .header("x-api-key", "svc-other-0123456789abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[test]
fn token_header_must_be_a_header_of_its_own() {
    for name in ["authorization", "Cookie", "host", "DPoP"] {
        assert!(
            matches!(
                BearerAuthLayer::new(keys()).token_from_header(name),
                Err(ConfigError::InvalidValue { .. })
            ),
            "{name}"
        );
    }
    assert!(matches!(
        BearerAuthLayer::new(keys()).token_from_header("x api key"),
        Err(ConfigError::InvalidHeaderName(_))
    ));
    assert!(Credential::header("x api key").is_err());
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(secret: &[u8], claims: Value) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn jwt_for(issuer: &str, secret: &[u8]) -> JwtAuthenticator<Value, String> {
    let issuer_name = issuer.to_owned();
    JwtAuthenticator::<Value>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, secret))
        .issuer(issuer)
        .map_user(move |c: Value| {
            Ok(format!(
                "{issuer_name}:{}",
                c["sub"].as_str().unwrap_or_default()
            ))
        })
        .build()
        .unwrap()
}

fn token(iss: &str, secret: &[u8]) -> String {
    hs256(
        secret,
        json!({"iss": iss, "sub": "alice", "exp": now() + 300}),
    )
}

type Three = CompositeAuth<
    CompositeAuth<Member<JwtAuthenticator<Value, String>>, Member<JwtAuthenticator<Value, String>>>,
    Member<StaticTokens<String>>,
>;

fn composite() -> BearerAuthLayer<Three> {
    let auth = CompositeAuth::new(
        Member::new(
            Credential::bearer().issuer("https://a.example"),
            jwt_for("https://a.example", SECRET_A),
        ),
        Member::new(
            Credential::bearer().issuer("https://b.example"),
            jwt_for("https://b.example", SECRET_B),
        ),
    )
    .or(Member::new(
        Credential::header("x-api-key").unwrap().prefix("svc-"),
        keys(),
    ));
    BearerAuthLayer::new(auth)
        .token_from_header("x-api-key")
        .unwrap()
}

#[tokio::test]
async fn composite_routes_by_issuer_and_source() {
    let layer = composite();
    let a = format!("Bearer {}", token("https://a.example", SECRET_A));
    let b = format!("Bearer {}", token("https://b.example", SECRET_B));
    assert_eq!(
        send(&layer, &[("authorization", &a)]).await.into_body(),
        "https://a.example:alice sensitive=false"
    );
    assert_eq!(
        send(&layer, &[("authorization", &b)]).await.into_body(),
        "https://b.example:alice sensitive=false"
    );
    assert_eq!(
        send(&layer, &[("x-api-key", KEY)]).await.into_body(),
        "billing sensitive=true"
    );
}

#[tokio::test]
async fn composite_unverified_issuer_only_routes() {
    let layer = composite();
    // Signed with A's key, claiming B: routed to B, whose key refuses it.
    let forged = format!("Bearer {}", token("https://b.example", SECRET_A));
    let res = send(&layer, &[("authorization", &forged)]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&res).contains("invalid_token"));
}

#[tokio::test]
async fn composite_credential_no_member_claims_is_401() {
    let layer = composite();
    let unknown_issuer = format!("Bearer {}", token("https://c.example", SECRET_A));
    let api_key_as_bearer = format!("Bearer {KEY}");
    let jwt_in_api_key_header = token("https://a.example", SECRET_A);
    for (header, value) in [
        ("authorization", unknown_issuer.as_str()),
        ("authorization", api_key_as_bearer.as_str()),
        ("x-api-key", jwt_in_api_key_header.as_str()),
        ("x-api-key", "key-without-the-prefix-0123"),
    ] {
        let res = send(&layer, &[(header, value)]).await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "{header}: {value:.30}"
        );
        assert!(
            challenge(&res).contains("No authenticator accepts this credential"),
            "{}",
            challenge(&res)
        );
    }
}

#[tokio::test]
async fn composite_credential_two_members_claim_is_400() {
    // Both members handle every bearer token: which one decides must not be an accident.
    let auth = CompositeAuth::new(
        Member::new(Credential::bearer(), keys()),
        Member::new(
            Credential::bearer().jws(),
            jwt_for("https://a.example", SECRET_A),
        ),
    );
    let layer = BearerAuthLayer::new(auth);
    let jwt = format!("Bearer {}", token("https://a.example", SECRET_A));
    let res = send(&layer, &[("authorization", &jwt)]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(challenge(&res).contains("invalid_request"));
    // A key that is not JWS-shaped is claimed by one member only.
    let res = send(
        &layer,
        &[(AUTHORIZATION.as_str(), &format!("Bearer {KEY}"))],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[cfg(feature = "dpop")]
#[test]
fn composite_with_an_unchecked_dpop_member_cannot_enable_dpop() {
    let auth = CompositeAuth::new(
        Member::new(Credential::dpop(), keys()),
        Member::new(Credential::header("x-api-key").unwrap(), keys()),
    );
    let config = tower_scope::dpop::DpopConfig::new("https://api.example").unwrap();
    assert!(BearerAuthLayer::new(auth).dpop(config).is_err());
}
