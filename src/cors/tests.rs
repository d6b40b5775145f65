use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::{BearerAuthLayer, ConfigError, StaticTokens, when_path};

const APP: &str = "https://app.example.com";

/// Echo: `x-status` sets the status, `x-vary` makes the handler vary on `accept-encoding`.
fn echo(
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |req: Request<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut res = Response::new(format!("{} {}", req.method(), req.uri().path()));
        if let Some(status) = req.headers().get("x-status") {
            *res.status_mut() = StatusCode::from_bytes(status.as_bytes()).unwrap();
        }
        if req.headers().contains_key("x-vary") {
            res.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        async move { Ok::<_, Infallible>(res) }
    })
}

fn stack(
    layer: CorsLayer,
) -> (
    impl Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(echo(Arc::clone(&calls)));
    (svc, calls)
}

fn app_policy() -> CorsLayer {
    CorsLayer::new()
        .allow_origins([APP])
        .unwrap()
        .allow_methods(["GET", "POST", "DELETE"])
        .unwrap()
        .allow_headers(["Authorization", "Content-Type"])
        .unwrap()
        .expose_headers(["X-Request-Id"])
        .unwrap()
        .max_age(Duration::from_secs(600))
        .allow_credentials(true)
        .unwrap()
}

fn preflight(origin: &str) -> http::request::Builder {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/threads")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
}

fn get(origin: Option<&str>) -> http::request::Builder {
    let b = Request::get("/api/threads");
    match origin {
        Some(o) => b.header(header::ORIGIN, o),
        None => b,
    }
}

async fn send(
    svc: impl Service<Request<String>, Response = Response<String>, Error = Infallible>,
    req: http::request::Builder,
) -> Response<String> {
    svc.oneshot(req.body(String::new()).unwrap()).await.unwrap()
}

fn header<'a>(res: &'a Response<String>, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

fn vary(res: &Response<String>) -> Vec<&str> {
    res.headers()
        .get_all(header::VARY)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[tokio::test]
async fn preflight_is_answered_with_204_without_calling_the_inner_service() {
    let (svc, calls) = stack(app_policy());
    let res = send(
        svc,
        preflight(APP).header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    assert_eq!(
        header(&res, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        header(&res, "access-control-allow-methods"),
        Some("GET, POST, DELETE")
    );
    assert_eq!(
        header(&res, "access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(header(&res, "access-control-max-age"), Some("600"));
    assert_eq!(vary(&res), ["origin"]);
    assert!(res.body().is_empty());
}

#[tokio::test]
async fn options_without_a_preflight_header_passes_through() {
    let (svc, calls) = stack(app_policy());
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/threads")
        .header(header::ORIGIN, APP);
    let res = send(svc.clone(), req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "OPTIONS /api/threads");
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    let no_origin = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/threads")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET");
    assert_eq!(send(svc, no_origin).await.body(), "OPTIONS /api/threads");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn actual_response_gets_origin_credentials_and_exposed_headers() {
    let (svc, _) = stack(app_policy());
    let res = send(svc, get(Some(APP))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    assert_eq!(
        header(&res, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        header(&res, "access-control-expose-headers"),
        Some("x-request-id")
    );
    // Preflight-only headers stay off actual responses.
    assert_eq!(header(&res, "access-control-allow-methods"), None);
    assert_eq!(header(&res, "access-control-max-age"), None);
    assert_eq!(vary(&res), ["origin"]);
}

#[tokio::test]
async fn error_responses_from_inner_services_carry_cors_headers() {
    let (svc, _) = stack(app_policy());
    for status in ["403", "404", "500", "503"] {
        let res = send(svc.clone(), get(Some(APP)).header("x-status", status)).await;
        assert_eq!(res.status().as_str(), status);
        assert_eq!(
            header(&res, "access-control-allow-origin"),
            Some(APP),
            "{status}"
        );
    }
}

#[tokio::test]
async fn auth_401_carries_cors_headers_and_preflight_skips_auth() {
    let tokens = StaticTokens::new().token("k-0123456789abcdef0123456789abcdef", "alice");
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(app_policy())
        .layer(BearerAuthLayer::new(tokens))
        .service(echo(Arc::clone(&calls)));
    let res = send(svc.clone(), get(Some(APP))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    let res = send(svc, preflight(APP)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn vary_is_appended_to_the_inner_services_vary() {
    let (svc, _) = stack(app_policy());
    let res = send(svc, get(Some(APP)).header("x-vary", "1")).await;
    assert_eq!(vary(&res), ["accept-encoding", "origin"]);
}

#[tokio::test]
async fn request_without_origin_gets_vary_origin_only() {
    let (svc, _) = stack(app_policy());
    let res = send(svc, get(None)).await;
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert_eq!(header(&res, "access-control-allow-credentials"), None);
    // A cache must not serve this answer to a cross-origin request.
    assert_eq!(vary(&res), ["origin"]);
}

#[tokio::test]
async fn any_origin_sends_star_and_no_vary() {
    let (svc, _) = stack(CorsLayer::new().allow_origins(["*"]).unwrap());
    let res = send(svc.clone(), get(Some("https://anyone.test"))).await;
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    assert!(vary(&res).is_empty());
    let res = send(svc, preflight("https://anyone.test")).await;
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    assert!(vary(&res).is_empty());
}

#[tokio::test]
async fn disallowed_origin_gets_no_cors_headers_but_still_reaches_the_handler() {
    let (svc, calls) = stack(app_policy());
    let res = send(svc.clone(), get(Some("https://evil.test"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert_eq!(header(&res, "access-control-expose-headers"), None);
    assert_eq!(vary(&res), ["origin"]);
    let res = send(svc, preflight("https://evil.test")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert_eq!(header(&res, "access-control-allow-methods"), None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn wildcard_subdomain_origin_is_echoed_only_for_matching_hosts() {
    let layer = CorsLayer::new()
        .allow_origins(["https://*.example.com"])
        .unwrap();
    let (svc, _) = stack(layer);
    let ok = send(svc.clone(), get(Some("https://pr-1.example.com"))).await;
    assert_eq!(
        header(&ok, "access-control-allow-origin"),
        Some("https://pr-1.example.com")
    );
    for bad in [
        "http://pr-1.example.com",
        "https://pr-1.example.com:8443",
        "https://example.com",
        "https://example.com.evil.test",
    ] {
        let res = send(svc.clone(), get(Some(bad))).await;
        assert_eq!(header(&res, "access-control-allow-origin"), None, "{bad}");
    }
}

#[tokio::test]
async fn predicate_decides_origins_the_list_does_not_name() {
    let layer = CorsLayer::new()
        .allow_origins([APP])
        .unwrap()
        .allow_origin_predicate(|o| o.starts_with("http://localhost:"))
        .unwrap();
    let (svc, _) = stack(layer);
    for (origin, allowed) in [
        (APP, true),
        ("http://localhost:5173", true),
        ("http://127.0.0.1:5173", false),
    ] {
        let res = send(svc.clone(), get(Some(origin))).await;
        assert_eq!(
            header(&res, "access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }
}

#[tokio::test]
async fn mirror_origin_and_headers_echo_the_request_and_vary_on_them() {
    let layer = CorsLayer::new().mirror_origin().unwrap().mirror_headers();
    let (svc, _) = stack(layer);
    let res = send(
        svc,
        preflight("https://x.test").header(header::ACCESS_CONTROL_REQUEST_HEADERS, "x-a, x-b"),
    )
    .await;
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        Some("https://x.test")
    );
    assert_eq!(
        header(&res, "access-control-allow-headers"),
        Some("x-a, x-b")
    );
    assert_eq!(vary(&res), ["origin, access-control-request-headers"]);
}

#[tokio::test]
async fn private_network_preflight_gets_consent_only_when_asked_and_enabled() {
    let (svc, _) = stack(app_policy().allow_private_network(true));
    let res = send(
        svc.clone(),
        preflight(APP).header("access-control-request-private-network", "true"),
    )
    .await;
    assert_eq!(
        header(&res, "access-control-allow-private-network"),
        Some("true")
    );
    assert_eq!(
        vary(&res),
        ["origin, access-control-request-private-network"]
    );
    let res = send(svc, preflight(APP)).await;
    assert_eq!(header(&res, "access-control-allow-private-network"), None);
    let (off, _) = stack(app_policy());
    let res = send(
        off,
        preflight(APP).header("access-control-request-private-network", "true"),
    )
    .await;
    assert_eq!(header(&res, "access-control-allow-private-network"), None);
}

#[tokio::test]
async fn strict_mode_rejects_state_changing_requests_from_disallowed_origins() {
    let (svc, calls) = stack(app_policy().reject_disallowed_origins(true));
    let post = |origin: &str| {
        Request::post("/api/threads")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "text/plain")
    };
    let res = send(svc.clone(), post("https://evil.test")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.extensions().get::<crate::Rejection>().unwrap().kind(),
        crate::RejectionKind::Forbidden
    );
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Reads, allowed origins and same-origin requests (no Origin) pass.
    assert_eq!(
        send(svc.clone(), get(Some("https://evil.test")))
            .await
            .status(),
        200
    );
    assert_eq!(send(svc.clone(), post(APP)).await.status(), 200);
    assert_eq!(send(svc, Request::post("/api/threads")).await.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn strict_mode_rejection_is_grpc_shaped_for_grpc_web_calls() {
    let layer = CorsLayer::grpc_web([APP])
        .unwrap()
        .reject_disallowed_origins(true);
    let (svc, _) = stack(layer);
    let req = Request::post("/pkg.Svc/Call")
        .header(header::ORIGIN, "https://evil.test")
        .header(header::CONTENT_TYPE, "application/grpc-web+proto");
    let res = send(svc, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "grpc-status"), Some("7"));
}

#[tokio::test]
async fn mastra_cors_matches_mastras_server() {
    let (svc, _) = stack(crate::mastra::cors());
    let res = send(svc.clone(), preflight("https://studio.test")).await;
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&res, "access-control-allow-methods"),
        Some("GET, POST, PUT, PATCH, DELETE, OPTIONS")
    );
    assert_eq!(
        header(&res, "access-control-allow-headers"),
        Some(
            "content-type, authorization, a2a-version, x-mastra-client-type, x-mastra-dev-playground"
        )
    );
    assert_eq!(header(&res, "access-control-max-age"), Some("3600"));
    assert_eq!(header(&res, "access-control-allow-credentials"), None);
    let res = send(svc, get(Some("https://studio.test"))).await;
    assert_eq!(
        header(&res, "access-control-expose-headers"),
        Some("content-length, x-requested-with")
    );
}

#[tokio::test]
async fn mastra_cors_with_credentials_echoes_listed_origins_with_credentials() {
    let layer = crate::mastra::cors_with_credentials(["https://studio.test"])
        .unwrap()
        .allow_headers(["x-tenant"])
        .unwrap();
    let (svc, _) = stack(layer);
    let res = send(svc, preflight("https://studio.test")).await;
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        Some("https://studio.test")
    );
    assert_eq!(
        header(&res, "access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        header(&res, "access-control-allow-headers")
            .unwrap()
            .ends_with("x-mastra-dev-playground, x-tenant")
    );
}

#[tokio::test]
async fn grpc_web_preset_exposes_grpc_status_to_scripts() {
    let layer = CorsLayer::grpc_web([APP]).unwrap();
    let (svc, _) = stack(layer);
    let res = send(svc.clone(), preflight(APP)).await;
    assert_eq!(
        header(&res, "access-control-allow-headers"),
        Some("x-grpc-web, x-user-agent, grpc-timeout, content-type, authorization")
    );
    assert_eq!(header(&res, "access-control-allow-methods"), Some("POST"));
    let res = send(svc, get(Some(APP))).await;
    assert_eq!(
        header(&res, "access-control-expose-headers"),
        Some("grpc-status, grpc-message, grpc-status-details-bin")
    );
}

#[tokio::test]
async fn when_path_gives_each_path_its_own_policy() {
    let api = CorsLayer::new().allow_origins([APP]).unwrap();
    let public = CorsLayer::new().allow_any_origin().unwrap();
    let svc = ServiceBuilder::new()
        .layer(when_path("/api/*", api).unwrap())
        .layer(when_path("/public/*", public).unwrap())
        .service(echo(Arc::new(AtomicUsize::new(0))));
    let origin = "https://elsewhere.test";
    let at = |path: &str| Request::get(path).header(header::ORIGIN, origin);
    let res = send(svc.clone(), at("/api/threads")).await;
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    let res = send(svc.clone(), at("/public/docs")).await;
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    let res = send(svc.clone(), at("/health")).await;
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert!(vary(&res).is_empty());
    let res = send(svc, preflight(APP)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
}

#[test]
fn credentials_with_a_wildcard_anywhere_is_a_config_error() {
    let listed = || CorsLayer::new().allow_origins([APP]).unwrap();
    let cases = [
        (CorsLayer::new().allow_any_origin(), "allow_origins"),
        (CorsLayer::new().allow_origins(["*"]), "allow_origins"),
        (listed().allow_any_method(), "allow_methods"),
        (listed().allow_headers(["*"]), "allow_headers"),
        (listed().expose_any_header(), "expose_headers"),
    ];
    for (layer, setting) in cases {
        let err = layer.unwrap().allow_credentials(true).unwrap_err();
        assert_eq!(err, ConfigError::CredentialsWithWildcard { setting });
        // The advice must not lead to the next refusal: a mirrored origin with credentials.
        assert_eq!(
            err.to_string().contains("mirror"),
            setting != "allow_origins",
            "{err}"
        );
    }
}

#[test]
fn a_star_inside_a_list_is_a_config_error() {
    let err = CorsLayer::new().allow_origins([APP, "*"]).unwrap_err();
    assert_eq!(
        err,
        ConfigError::WildcardInList {
            setting: "allow_origins"
        }
    );
    let err = CorsLayer::new()
        .allow_origins([APP])
        .unwrap()
        .allow_headers(["authorization", "*"])
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::WildcardInList {
            setting: "allow_headers"
        }
    );
}

#[test]
fn an_origin_with_a_path_is_a_config_error() {
    let err = CorsLayer::new()
        .allow_origins(["https://app.example.com/"])
        .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidOrigin { .. }));
    assert!(err.to_string().contains("no path"), "{err}");
}

#[test]
fn invalid_header_names_and_methods_are_config_errors() {
    let err = CorsLayer::new()
        .allow_origins([APP])
        .unwrap()
        .allow_headers(["x bad"])
        .unwrap_err();
    assert_eq!(err, ConfigError::InvalidHeaderName("x bad".into()));
    let err = CorsLayer::new()
        .allow_origins([APP])
        .unwrap()
        .expose_headers(["bad:header"])
        .unwrap_err();
    assert_eq!(err, ConfigError::InvalidHeaderName("bad:header".into()));
    let err = CorsLayer::new()
        .allow_origins([APP])
        .unwrap()
        .allow_methods(["GE T"])
        .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::InvalidValue {
            setting: "allow_methods",
            ..
        }
    ));
}

#[test]
fn a_policy_without_origins_is_a_config_error() {
    assert!(matches!(
        CorsLayer::grpc_web(Vec::<String>::new()),
        Err(ConfigError::InvalidValue {
            setting: "allow_origins",
            ..
        })
    ));
}

#[tokio::test]
async fn a_policy_no_origin_setter_touched_allows_no_origin() {
    // With no `build()` step an untouched policy cannot be refused; it fails closed instead.
    let (svc, calls) = stack(CorsLayer::new().reject_disallowed_origins(true));
    let res = send(svc.clone(), get(Some(APP))).await;
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    let res = send(svc.clone(), preflight(APP)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    let post = Request::post("/api/threads").header(header::ORIGIN, APP);
    assert_eq!(send(svc, post).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn debug_output_hides_the_predicate() {
    let layer = CorsLayer::new().allow_origin_predicate(|_| true).unwrap();
    let debug = format!("{layer:?}");
    assert!(debug.contains("Fn(&str) -> bool"), "{debug}");
}

// ---------- Credentials never go to an origin nobody chose ----------

#[test]
fn mastra_reflecting_any_origin_with_credentials_is_a_config_error() {
    // Mirrored origin + credentials: every website could read answers made with the user's
    // cookies or token, the same mistake as `*` with credentials that browsers refuse.
    let err = crate::mastra::cors()
        .mirror_origin()
        .unwrap()
        .allow_credentials(true)
        .unwrap_err();
    let message = err.to_string();
    for what_to_change in ["allow_origins", "allow_origin_predicate"] {
        assert!(message.contains(what_to_change), "{message}");
    }
    let err = CorsLayer::new()
        .mirror_origin()
        .unwrap()
        .allow_credentials(true)
        .unwrap_err();
    assert_eq!(err.to_string(), message);
    // The other order is refused by the setter that completes the mix.
    let err = CorsLayer::new()
        .allow_credentials(true)
        .unwrap()
        .mirror_origin()
        .unwrap_err();
    assert_eq!(err.to_string(), message);
}

#[test]
fn a_null_origin_with_credentials_is_a_config_error() {
    // `Origin: null` comes from sandboxed iframes and local files, which any site can create.
    for origins in [vec!["null"], vec![APP, "NULL"]] {
        let err = CorsLayer::new()
            .allow_origins(origins)
            .unwrap()
            .allow_credentials(true)
            .unwrap_err();
        assert!(err.to_string().contains("null"), "{err}");
    }
    // Without credentials `null` is only a read of public answers: allowed.
    assert!(CorsLayer::new().allow_origins(["null"]).is_ok());
}

#[test]
fn an_empty_origin_list_is_a_config_error() {
    // Typically an unset environment variable: no origin would ever be allowed.
    let err = crate::mastra::cors_with_credentials(Vec::<String>::new()).unwrap_err();
    assert!(err.to_string().contains("no origin is allowed"), "{err}");
}

#[tokio::test]
async fn restricted_credentialed_policies_still_build_and_echo_only_their_origins() {
    let listed = crate::mastra::cors_with_credentials([APP]).unwrap();
    let predicate = crate::mastra::cors()
        .allow_origin_predicate(|origin| origin.ends_with(".app.example.com"))
        .unwrap()
        .allow_credentials(true)
        .unwrap();
    for (layer, good) in [(listed, APP), (predicate, "https://eu.app.example.com")] {
        let (svc, _) = stack(layer);
        let res = send(svc.clone(), get(Some(good))).await;
        assert_eq!(header(&res, "access-control-allow-origin"), Some(good));
        assert_eq!(
            header(&res, "access-control-allow-credentials"),
            Some("true")
        );
        let res = send(svc, get(Some("https://evil.test"))).await;
        assert_eq!(header(&res, "access-control-allow-origin"), None);
        assert_eq!(header(&res, "access-control-allow-credentials"), None);
    }
    // Mirroring without credentials exposes only what any site may read anyway.
    assert!(CorsLayer::new().mirror_origin().is_ok());
}

#[tokio::test]
async fn the_dangerous_opt_in_mirrors_any_origin_with_credentials() {
    let layer = crate::mastra::cors()
        .allow_any_origin_with_credentials_dangerously()
        .unwrap();
    let (svc, _) = stack(layer);
    for origin in ["https://evil.test", "null"] {
        let res = send(svc.clone(), get(Some(origin))).await;
        assert_eq!(header(&res, "access-control-allow-origin"), Some(origin));
        assert_eq!(
            header(&res, "access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(vary(&res), ["origin"]);
    }
    // Naming origins afterwards restricts it again.
    let layer = CorsLayer::new()
        .allow_any_origin_with_credentials_dangerously()
        .unwrap()
        .allow_origins([APP])
        .unwrap();
    let (svc, _) = stack(layer);
    let res = send(svc, get(Some("https://evil.test"))).await;
    assert_eq!(header(&res, "access-control-allow-origin"), None);
}

#[test]
fn credential_refusals_are_typed_and_say_what_to_change() {
    assert_eq!(
        crate::mastra::cors()
            .mirror_origin()
            .unwrap()
            .allow_credentials(true)
            .unwrap_err(),
        ConfigError::CredentialsWithMirroredOrigin
    );
    let err = CorsLayer::new()
        .allow_origins(["null"])
        .unwrap()
        .allow_credentials(true)
        .unwrap_err();
    assert_eq!(err, ConfigError::CredentialsWithNullOrigin);
    assert!(err.to_string().contains("remove `null`"), "{err}");
    assert!(
        ConfigError::CredentialsWithMirroredOrigin
            .to_string()
            .contains("allow_any_origin_with_credentials_dangerously()")
    );
}

#[test]
fn a_wildcard_over_a_top_level_domain_with_credentials_is_a_config_error() {
    for origin in ["https://*.com", "http://*.localhost:3000", "https://*.io"] {
        let err = crate::mastra::cors_with_credentials([origin]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::CredentialsWithTopLevelWildcard {
                origin: origin.to_owned()
            },
            "{origin}"
        );
        assert!(err.to_string().contains("top-level domain"), "{err}");
        // Without credentials the same rule is only a (broad) CORS read permission.
        assert!(crate::mastra::cors().allow_origins([origin]).is_ok());
    }
    // A wildcard under a domain one controls is fine.
    assert!(
        crate::mastra::cors_with_credentials(["https://*.example.com", "http://*.local.test:8080"])
            .is_ok()
    );
}

#[tokio::test]
async fn content_type_never_changes_what_cors_decides() {
    // Whether a preflight is answered, a strict-mode request refused, or an origin allowed
    // is decided by the Fetch headers alone; a gRPC content type only changes the rendering.
    let (svc, _) = stack(app_policy().reject_disallowed_origins(true));
    for ct in [
        "text/plain",
        "application/json",
        "application/grpc",
        "application/grpc+json",
        "application/grpc-web-text",
    ] {
        let refused = send(
            svc.clone(),
            Request::post("/api/threads")
                .header(header::ORIGIN, "https://evil.test")
                .header(header::CONTENT_TYPE, ct),
        )
        .await;
        assert_eq!(
            refused
                .extensions()
                .get::<crate::Rejection>()
                .map(|r| r.kind()),
            Some(crate::RejectionKind::Forbidden),
            "{ct}"
        );
        let allowed = send(
            svc.clone(),
            Request::post("/api/threads")
                .header(header::ORIGIN, APP)
                .header(header::CONTENT_TYPE, ct),
        )
        .await;
        assert!(
            allowed.extensions().get::<crate::Rejection>().is_none(),
            "{ct}"
        );
        assert_eq!(
            header(&allowed, "access-control-allow-origin"),
            Some(APP),
            "{ct}"
        );
        let answered = send(svc.clone(), preflight(APP).header(header::CONTENT_TYPE, ct)).await;
        assert_eq!(answered.status(), StatusCode::NO_CONTENT, "{ct}");
    }
}

// ---------- Each setter checks what it completes ----------

#[test]
fn the_setter_that_completes_credentials_with_a_wildcard_refuses_it() {
    let credentialed = || {
        CorsLayer::new()
            .allow_origins([APP])
            .unwrap()
            .allow_credentials(true)
            .unwrap()
    };
    for (result, setting) in [
        (credentialed().allow_any_origin(), "allow_origins"),
        (
            CorsLayer::new()
                .allow_credentials(true)
                .unwrap()
                .allow_origins(["*"]),
            "allow_origins",
        ),
        (credentialed().allow_any_method(), "allow_methods"),
        (credentialed().allow_methods(["*"]), "allow_methods"),
        (credentialed().allow_any_header(), "allow_headers"),
        (credentialed().expose_headers(["*"]), "expose_headers"),
    ] {
        assert_eq!(
            result.unwrap_err(),
            ConfigError::CredentialsWithWildcard { setting },
            "{setting}"
        );
    }
    assert_eq!(
        CorsLayer::new()
            .allow_credentials(true)
            .unwrap()
            .allow_origins(["null"])
            .unwrap_err(),
        ConfigError::CredentialsWithNullOrigin
    );
    // Turning credentials off again makes `*` fine.
    assert!(
        credentialed()
            .allow_credentials(false)
            .unwrap()
            .allow_any_origin()
            .is_ok()
    );
}

#[test]
fn a_star_is_remembered_so_a_later_addition_is_still_a_config_error() {
    let wildcard = |setting| ConfigError::WildcardInList { setting };
    let err = CorsLayer::new()
        .allow_headers(["*"])
        .unwrap()
        .allow_headers(["x-a"])
        .unwrap_err();
    assert_eq!(err, wildcard("allow_headers"));
    let err = CorsLayer::new()
        .allow_origins(["*"])
        .unwrap()
        .allow_origins([APP])
        .unwrap_err();
    assert_eq!(err, wildcard("allow_origins"));
    let err = CorsLayer::new()
        .allow_origins(["*"])
        .unwrap()
        .allow_origin_predicate(|_| true)
        .unwrap_err();
    assert_eq!(err, wildcard("allow_origins"));
    // The `any` setters replace a list instead, as they always did.
    assert!(
        CorsLayer::new()
            .allow_any_header()
            .unwrap()
            .allow_headers(["x-a"])
            .is_ok()
    );
}

#[tokio::test]
async fn setters_on_a_clone_leave_the_original_alone() {
    let base = CorsLayer::new().allow_origins([APP]).unwrap();
    let wider = base.clone().allow_origins(["https://other.test"]).unwrap();
    let (svc, _) = stack(base);
    let res = send(svc, get(Some("https://other.test"))).await;
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    let (svc, _) = stack(wider);
    let res = send(svc, get(Some("https://other.test"))).await;
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        Some("https://other.test")
    );
}
