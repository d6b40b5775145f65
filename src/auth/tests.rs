//! Behaviour of `BearerAuthLayer`, driven through `oneshot` against an echo service.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::{Authenticated, Rejection, RejectionKind};

const KEY: &str = "alice-key-0123456789abcdefghijkl";

fn tokens() -> StaticTokens<String> {
    StaticTokens::new().token(KEY, "alice".to_owned())
}

/// Echoes who the handler saw: `user=<name>` or `anonymous`, plus whether Authorization was
/// marked sensitive.
async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let user = req
        .extensions()
        .get::<Authenticated<String>>()
        .map(|u| (**u).clone());
    let sensitive = req
        .headers()
        .get(AUTHORIZATION)
        .is_some_and(HeaderValue::is_sensitive);
    let body = match user {
        Some(u) => format!("user={u} sensitive={sensitive}"),
        None => "anonymous".to_owned(),
    };
    Ok(Response::new(body))
}

async fn send<A: Authenticate<User = String>>(
    layer: BearerAuthLayer<A>,
    req: Request<String>,
) -> Response<String> {
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(echo))
        .oneshot(req)
        .await
        .unwrap()
}

fn get(auth: Option<&str>) -> Request<String> {
    let mut b = Request::get("/api/x");
    if let Some(a) = auth {
        b = b.header(AUTHORIZATION, a);
    }
    b.body(String::new()).unwrap()
}

fn challenge(res: &Response<String>) -> &str {
    res.headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn valid_token_inserts_authenticated_and_marks_header_sensitive() {
    let res = send(
        BearerAuthLayer::new(tokens()),
        get(Some(&format!("Bearer {KEY}"))),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "user=alice sensitive=true");
}

#[tokio::test]
async fn lowercase_and_uppercase_bearer_scheme_is_accepted() {
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let res = send(
            BearerAuthLayer::new(tokens()),
            get(Some(&format!("{scheme} {KEY}"))),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn missing_token_gets_bare_challenge_without_error() {
    let res = send(BearerAuthLayer::new(tokens()), get(None)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&res), r#"Bearer realm="api""#);
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::MissingCredentials
    );
}

#[tokio::test]
async fn basic_credentials_count_as_no_bearer_credentials() {
    let res = send(
        BearerAuthLayer::new(tokens()),
        get(Some("Basic YWxpY2U6c2VjcmV0")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&res), r#"Bearer realm="api""#);
}

#[tokio::test]
async fn unknown_token_is_invalid_token_with_description() {
    let res = send(
        BearerAuthLayer::new(tokens()),
        get(Some("Bearer not-the-key")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&res),
        r#"Bearer realm="api", error="invalid_token", error_description="Invalid or expired token""#
    );
}

#[tokio::test]
async fn malformed_credentials_are_invalid_request() {
    for header in [
        "Bearer",
        "Bearer ",
        "Bearer a,b",
        "Bearer tok junk",
        "Bearer ab=c",
        "Bearer \u{7f}",
    ] {
        let Ok(value) = HeaderValue::from_str(header) else {
            continue;
        };
        let mut req = get(None);
        req.headers_mut().insert(AUTHORIZATION, value);
        let res = send(BearerAuthLayer::new(tokens()), req).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{header:?}");
        assert!(
            challenge(&res).contains(r#"error="invalid_request""#),
            "{header:?}"
        );
    }
}

#[tokio::test]
async fn two_authorization_headers_are_invalid_request() {
    let mut req = get(Some(&format!("Bearer {KEY}")));
    req.headers_mut()
        .append(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
    let res = send(BearerAuthLayer::new(tokens()), req).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(challenge(&res).contains("More than one Authorization header"));
}

#[tokio::test]
async fn oversized_token_is_rejected_before_the_authenticator_runs() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let auth = move |_t: BearerToken| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, AuthError>("x".to_owned()) }
    };
    let layer = BearerAuthLayer::new(auth).max_token_len(64);
    let res = send(
        layer.clone(),
        get(Some(&format!("Bearer {}", "a".repeat(65)))),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(challenge(&res).contains("too long"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let res = send(layer, get(Some(&format!("Bearer {}", "a".repeat(64))))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cookie_and_query_sources_are_off_by_default() {
    let req = Request::get(format!("/x?access_token={KEY}"))
        .header(COOKIE, format!("token={KEY}"))
        .body(String::new())
        .unwrap();
    let res = send(BearerAuthLayer::new(tokens()), req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cookie_source_accepts_the_named_cookie() {
    let layer = BearerAuthLayer::new(tokens())
        .token_from_cookie("token")
        .unwrap();
    let req = Request::get("/x")
        .header(COOKIE, format!("theme=dark; token={KEY}"))
        .body(String::new())
        .unwrap();
    let res = send(layer, req).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_cookie_value_is_marked_sensitive_once_a_cookie_token_is_accepted() {
    let svc = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::new(tokens())
                .token_from_cookie("token")
                .unwrap(),
        )
        .service(service_fn(|req: Request<String>| async move {
            let flags: Vec<bool> = req
                .headers()
                .get_all(COOKIE)
                .iter()
                .map(HeaderValue::is_sensitive)
                .collect();
            Ok::<_, Infallible>(Response::new(format!("{flags:?}")))
        }));
    let req = Request::get("/x")
        .header(COOKIE, "theme=dark")
        .header("x-other", "1")
        .header(COOKIE, format!("token={KEY}"))
        .body(String::new())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body(), "[true, true]");
}

#[tokio::test]
async fn query_source_sets_cache_control_private_on_success_and_failure() {
    let layer = BearerAuthLayer::new(tokens())
        .token_from_query("access_token")
        .unwrap();
    let ok = Request::get(format!("/x?a=1&access_token={KEY}"))
        .body(String::new())
        .unwrap();
    let res = send(layer.clone(), ok).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CACHE_CONTROL], "private");
    let bad = Request::get("/x?access_token=wrong")
        .body(String::new())
        .unwrap();
    let res = send(layer, bad).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[CACHE_CONTROL], "private");
}

#[tokio::test]
async fn header_plus_query_token_is_more_than_one_method() {
    let layer = BearerAuthLayer::new(tokens())
        .token_from_query("access_token")
        .unwrap();
    let req = Request::get(format!("/x?access_token={KEY}"))
        .header(AUTHORIZATION, format!("Bearer {KEY}"))
        .body(String::new())
        .unwrap();
    let res = send(layer, req).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(challenge(&res).contains("More than one authentication method"));
}

#[tokio::test]
async fn header_plus_cookie_token_is_more_than_one_method() {
    let layer = BearerAuthLayer::new(tokens())
        .token_from_cookie("token")
        .unwrap();
    let mut req = get(Some(&format!("Bearer {KEY}")));
    req.headers_mut().insert(
        COOKIE,
        HeaderValue::from_str(&format!("token={KEY}")).unwrap(),
    );
    assert_eq!(send(layer, req).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn optional_mode_passes_anonymous_without_token_but_rejects_bad_token() {
    let layer = BearerAuthLayer::new(tokens()).optional();
    let res = send(layer.clone(), get(None)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "anonymous");
    let res = send(layer.clone(), get(Some("Bearer wrong"))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = send(layer, get(Some(&format!("Bearer {KEY}")))).await;
    assert_eq!(res.body(), "user=alice sensitive=true");
}

#[tokio::test]
async fn public_paths_skip_authentication() {
    let layer = BearerAuthLayer::new(tokens())
        .public_path("/health")
        .unwrap()
        .public_path("/docs/*")
        .unwrap();
    for path in ["/health", "/docs", "/docs/a/b"] {
        let res = send(
            layer.clone(),
            Request::get(path).body(String::new()).unwrap(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    for path in ["/healthcheck", "/health/x", "/api/x"] {
        let res = send(
            layer.clone(),
            Request::get(path).body(String::new()).unwrap(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

fn preflight() -> Request<String> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/x")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .body(String::new())
        .unwrap()
}

#[tokio::test]
async fn preflight_headers_do_not_switch_authentication_off_by_default() {
    // `Origin` and `Access-Control-Request-Method` are the client's choice: an `OPTIONS` request
    // naming them must not reach a handler unauthenticated.
    let res = send(BearerAuthLayer::new(tokens()), preflight()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn preflight_passes_only_when_opted_in_and_plain_options_always_is_authenticated() {
    let res = send(
        BearerAuthLayer::new(tokens()).pass_preflights_unauthenticated(),
        preflight(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "anonymous");
    let plain_options = Request::builder()
        .method(Method::OPTIONS)
        .uri("/x")
        .body(String::new())
        .unwrap();
    let res = send(
        BearerAuthLayer::new(tokens()).pass_preflights_unauthenticated(),
        plain_options,
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let plain_options = Request::builder()
        .method(Method::OPTIONS)
        .uri("/x")
        .body(String::new())
        .unwrap();
    let res = send(BearerAuthLayer::new(tokens()), plain_options).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn backend_failure_is_503_and_never_reaches_the_handler() {
    let auth = |_t: BearerToken| async { Err::<String, _>(AuthError::unavailable()) };
    let res = send(BearerAuthLayer::new(auth), get(Some("Bearer abc"))).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.body(), "");
    assert!(res.headers().get(WWW_AUTHENTICATE).is_none());
}

#[tokio::test]
async fn authenticator_can_forbid_or_require_a_scope() {
    let auth = |t: BearerToken| async move {
        match t.expose_secret() {
            "disabled" => Err::<String, _>(AuthError::forbidden()),
            _ => Err(AuthError::insufficient_scope("memory:write")),
        }
    };
    let res = send(BearerAuthLayer::new(auth), get(Some("Bearer disabled"))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get(WWW_AUTHENTICATE).is_none());
    let res = send(BearerAuthLayer::new(auth), get(Some("Bearer other"))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&res),
        r#"Bearer realm="api", error="insufficient_scope", error_description="Insufficient scope", scope="memory:write""#
    );
}

#[tokio::test]
async fn grpc_requests_get_trailers_only_unauthenticated() {
    let req = Request::post("/grpc.health.v1.Health/Check")
        .header(CONTENT_TYPE, "application/grpc")
        .header(AUTHORIZATION, "Bearer wrong")
        .body(String::new())
        .unwrap();
    let res = send(BearerAuthLayer::new(tokens()), req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(res.headers()["grpc-message"], "Invalid or expired token");
    assert!(res.headers().get(WWW_AUTHENTICATE).is_none());
}

#[tokio::test]
async fn json_errors_are_opt_in_and_skip_grpc() {
    use http_body_util::BodyExt;
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens()).json_errors())
        .service(service_fn(|_r: Request<String>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"ok"),
            )))
        }));
    let res = svc.clone().oneshot(get(None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(res.headers()[WWW_AUTHENTICATE], r#"Bearer realm="api""#);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":"Authentication required"}"#);

    let grpc = Request::post("/x")
        .header(CONTENT_TYPE, "application/grpc")
        .body(String::new())
        .unwrap();
    let res = svc.clone().oneshot(grpc).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "16");
    assert!(
        res.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );

    let ok = svc
        .oneshot(get(Some(&format!("Bearer {KEY}"))))
        .await
        .unwrap();
    assert_eq!(
        &ok.into_body().collect().await.unwrap().to_bytes()[..],
        b"ok"
    );
}

#[tokio::test]
async fn authenticate_headers_matches_the_layer() {
    let layer = BearerAuthLayer::new(tokens());
    let mut headers = HeaderMap::new();
    assert_eq!(layer.authenticate_headers(&headers).await, Ok(None));
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("bearer {KEY}")).unwrap(),
    );
    let user = layer.authenticate_headers(&headers).await.unwrap().unwrap();
    assert_eq!(*user, "alice");
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
    let err = layer.authenticate_headers(&headers).await.unwrap_err();
    assert_eq!(err.kind(), RejectionKind::InvalidToken);
}

#[test]
fn invalid_realm_and_source_names_are_config_errors() {
    assert!(BearerAuthLayer::new(tokens()).realm("a\"b").is_err());
    assert!(BearerAuthLayer::new(tokens()).realm("").is_err());
    assert!(
        BearerAuthLayer::new(tokens())
            .token_from_cookie("a;b")
            .is_err()
    );
    assert!(BearerAuthLayer::new(tokens()).token_from_query("").is_err());
    assert!(
        BearerAuthLayer::new(tokens())
            .public_path("health")
            .is_err()
    );
}

#[test]
fn debug_output_never_contains_tokens() {
    let layer = BearerAuthLayer::new(tokens());
    assert!(!format!("{layer:?}").contains(KEY));
    let token = Token::new(KEY);
    assert_eq!(format!("{token:?}"), "Token([redacted])");
    assert!(!format!("{:?}", token.to_owned_token()).contains(KEY));
}

#[tokio::test]
async fn custom_realm_is_used_in_every_challenge() {
    let layer = BearerAuthLayer::new(tokens()).realm("memory").unwrap();
    let res = send(layer, get(Some("Bearer wrong"))).await;
    assert!(challenge(&res).starts_with(r#"Bearer realm="memory", error="invalid_token""#));
}

#[tokio::test]
async fn every_passed_request_carries_the_auth_state() {
    let svc = |layer: BearerAuthLayer<StaticTokens<String>>| {
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: Request<String>| async move {
                let state = req.extensions().get::<crate::AuthState>().copied();
                Ok::<_, Infallible>(Response::new(format!("{state:?}")))
            }))
    };
    let public = BearerAuthLayer::new(tokens())
        .public_path("/health")
        .unwrap();
    let res = svc(public.clone())
        .oneshot(Request::get("/health").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.into_body(), "Some(PublicPath)");
    let res = svc(public)
        .oneshot(get(Some(&format!("Bearer {KEY}"))))
        .await
        .unwrap();
    assert_eq!(
        res.into_body(),
        format!(
            "Some(Verified {{ user_type: {:?} }})",
            std::any::type_name::<String>()
        )
    );
    let res = svc(BearerAuthLayer::new(tokens()).optional())
        .oneshot(get(None))
        .await
        .unwrap();
    assert_eq!(res.into_body(), "Some(Anonymous)");
    let res = svc(BearerAuthLayer::new(tokens()).pass_preflights_unauthenticated())
        .oneshot(preflight())
        .await
        .unwrap();
    assert_eq!(res.into_body(), "Some(Preflight)");
}

#[tokio::test]
async fn answers_to_verified_requests_are_private_unless_the_handler_chose_caching() {
    let svc = |cache: Option<&'static str>| {
        ServiceBuilder::new()
            .layer(BearerAuthLayer::new(tokens()).optional())
            .service(service_fn(move |_req: Request<String>| async move {
                let mut res = Response::new(String::new());
                if let Some(cache) = cache {
                    res.headers_mut()
                        .insert(http::header::CACHE_CONTROL, cache.parse().unwrap());
                }
                Ok::<_, Infallible>(res)
            }))
    };
    let bearer = format!("Bearer {KEY}");
    let res = svc(None).oneshot(get(Some(&bearer))).await.unwrap();
    assert_eq!(res.headers()[http::header::CACHE_CONTROL], "private");
    let res = svc(Some("no-store"))
        .oneshot(get(Some(&bearer)))
        .await
        .unwrap();
    assert_eq!(res.headers()[http::header::CACHE_CONTROL], "no-store");
    // Anonymous answers are the same for everyone: nothing is added.
    let res = svc(None).oneshot(get(None)).await.unwrap();
    assert!(res.headers().get(http::header::CACHE_CONTROL).is_none());
}

#[tokio::test]
async fn content_type_and_cors_headers_never_change_the_authentication_decision() {
    let layers = [
        BearerAuthLayer::new(tokens()),
        BearerAuthLayer::new(tokens()).optional(),
    ];
    let creds = [
        None,
        Some(format!("Bearer {KEY}")),
        Some("Bearer wrong".to_owned()),
    ];
    for (i, layer) in layers.iter().enumerate() {
        for cred in &creds {
            let mut outcomes = Vec::new();
            for ct in [
                None,
                Some("application/json"),
                Some("application/grpc"),
                Some("application/grpc+json"),
                Some("application/grpc-web-text"),
            ] {
                for origin in [None, Some("https://evil.example")] {
                    let mut req = get(cred.as_deref());
                    if let Some(ct) = ct {
                        req.headers_mut().insert(CONTENT_TYPE, ct.parse().unwrap());
                    }
                    if let Some(origin) = origin {
                        req.headers_mut()
                            .insert(http::header::ORIGIN, origin.parse().unwrap());
                        req.headers_mut().insert(
                            http::header::ACCESS_CONTROL_REQUEST_METHOD,
                            "GET".parse().unwrap(),
                        );
                    }
                    let res = send(layer.clone(), req).await;
                    // The decision: refused (and why) or the user the handler saw.
                    let outcome = match res.extensions().get::<crate::Rejection>() {
                        Some(r) => format!("refused {:?}", r.kind()),
                        None => res.body().split(' ').next().unwrap_or("").to_owned(),
                    };
                    outcomes.push(outcome);
                }
            }
            outcomes.dedup();
            assert_eq!(outcomes.len(), 1, "layer {i}, {cred:?}: {outcomes:?}");
        }
    }
}

#[tokio::test]
async fn the_prepared_challenge_follows_every_later_setting() {
    // The no-credentials challenge is made once per configuration; a layer configured further
    // after it answered (or a clone of it) must not keep the old one.
    let layer = BearerAuthLayer::new(tokens());
    let res = send(layer.clone(), get(None)).await;
    assert_eq!(challenge(&res), r#"Bearer realm="api""#);
    let renamed = layer.clone().realm("memory").unwrap();
    let res = send(renamed.clone(), get(None)).await;
    assert_eq!(challenge(&res), r#"Bearer realm="memory""#);
    let metadata = crate::auth::ProtectedResourceMetadata::new("https://api.example.com").unwrap();
    let (described, _) = renamed.protected_resource(metadata).unwrap();
    let res = send(described, get(None)).await;
    assert_eq!(
        challenge(&res),
        r#"Bearer realm="memory", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource""#
    );
    // The first layer's answer is unchanged, and an error challenge is still made per refusal.
    let res = send(layer.clone(), get(None)).await;
    assert_eq!(challenge(&res), r#"Bearer realm="api""#);
    let res = send(layer, get(Some("Bearer nobody-0123456789abcdefghijklmn"))).await;
    assert!(challenge(&res).starts_with(r#"Bearer realm="api", error="invalid_token""#));
}
