//! RFC 9728 (OAuth 2.0 Protected Resource Metadata) conformance: the well-known document,
//! the `resource_metadata` challenge parameter on every refusal that challenges, and the
//! memory server describing itself. Section numbers are RFC 9728's unless said otherwise.
#![cfg(all(
    feature = "axum",
    feature = "aws-lc",
    feature = "sqlite",
    feature = "postgres",
    feature = "cors",
    feature = "log",
    feature = "authz"
))]

#[path = "../examples/memory_server/app.rs"]
mod app;
#[macro_use]
#[path = "common/backend.rs"]
#[allow(unused_macros)]
mod backend;

use std::convert::Infallible;

use http::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_scope::auth::{BearerMethod, ProtectedResourceMetadata, WELL_KNOWN_PATH};
use tower_scope::authz::{AuthorizeLayer, ClaimGrants, ClaimPermissions, Requirement};
use tower_scope::{BearerAuthLayer, ConfigError, StaticTokens};

const KEY: &str = "a-long-random-api-key-0123456789";

fn metadata(resource: &str) -> ProtectedResourceMetadata {
    ProtectedResourceMetadata::new(resource)
        .unwrap()
        .authorization_servers(["https://auth.example.com"])
        .unwrap()
        .scopes_supported(["notes:read"])
        .unwrap()
}

type Svc = tower::util::BoxCloneService<Request<String>, Response<String>, Infallible>;

fn service(auth: BearerAuthLayer<StaticTokens<&'static str>>, resource: &str) -> Svc {
    let (auth, well_known) = auth.protected_resource(metadata(resource)).unwrap();
    let svc = ServiceBuilder::new()
        .layer(well_known)
        .layer(auth)
        .service(service_fn(|req: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(format!("inner {}", req.uri().path())))
        }));
    tower::util::BoxCloneService::new(svc)
}

fn tokens() -> BearerAuthLayer<StaticTokens<&'static str>> {
    BearerAuthLayer::new(StaticTokens::new().token(KEY, "alice"))
}

async fn send(svc: &Svc, method: Method, uri: &str, token: Option<&str>) -> Response<String> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    svc.clone()
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn rfc9728_3_2_get_answers_the_document_as_json_publicly_cacheable() {
    let svc = service(tokens(), "https://api.example.com/notes");
    let res = send(
        &svc,
        Method::GET,
        "/.well-known/oauth-protected-resource/notes",
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(res.headers()[header::CACHE_CONTROL], "public, max-age=3600");
    let doc: Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(
        doc,
        json!({
            "resource": "https://api.example.com/notes",
            "authorization_servers": ["https://auth.example.com"],
            "scopes_supported": ["notes:read"],
            "bearer_methods_supported": ["header"],
        })
    );
    // A query string does not change the document (it is not part of the path).
    let again = send(
        &svc,
        Method::GET,
        "/.well-known/oauth-protected-resource/notes?x=1",
        None,
    )
    .await;
    assert_eq!(again.body(), res.body());
}

#[tokio::test]
async fn rfc9728_3_1_only_the_path_made_from_the_resource_is_served() {
    let svc = service(tokens(), "https://api.example.com/notes");
    for other in [
        WELL_KNOWN_PATH,
        "/.well-known/oauth-protected-resource/notes/",
        "/.well-known/oauth-protected-resource/notes/x",
        "/.well-known/oauth-protected-resource/%6eotes",
        "/.well-known/oauth-protected-resource/NOTES",
        "/notes/.well-known/oauth-protected-resource",
    ] {
        // Not the document: the request goes on to auth like any other (401 here).
        let res = send(&svc, Method::GET, other, None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{other}");
    }
    // A resource without a path is described at the bare well-known path.
    let root = service(tokens(), "https://api.example.com");
    let res = send(&root, Method::GET, WELL_KNOWN_PATH, None).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn rfc9728_3_head_has_the_headers_and_other_methods_are_405() {
    let svc = service(tokens(), "https://api.example.com/notes");
    let path = "/.well-known/oauth-protected-resource/notes";
    let get = send(&svc, Method::GET, path, None).await;
    let head = send(&svc, Method::HEAD, path, None).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.body(), "");
    assert_eq!(
        head.headers()[header::CONTENT_LENGTH],
        get.body().len().to_string()
    );
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let res = send(&svc, method.clone(), path, Some(KEY)).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(res.headers()[header::ALLOW], "GET, HEAD");
    }
}

#[tokio::test]
async fn rfc9728_5_1_every_bearer_challenge_names_the_metadata() {
    let svc = service(tokens(), "https://api.example.com/notes");
    let url = "https://api.example.com/.well-known/oauth-protected-resource/notes";
    // No token (RFC 6750 §3.1: no error code).
    let res = send(&svc, Method::GET, "/notes", None).await;
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        format!(r#"Bearer realm="api", resource_metadata="{url}""#)
    );
    // A bad token.
    let res = send(
        &svc,
        Method::GET,
        "/notes",
        Some("wrong-key-wrong-key-wrong-key-00"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let value = res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        value.starts_with(r#"Bearer realm="api", error="invalid_token""#),
        "{value}"
    );
    assert!(
        value.ends_with(&format!(r#", resource_metadata="{url}""#)),
        "{value}"
    );
    // A malformed one (400 invalid_request).
    let res = send(&svc, Method::GET, "/notes", Some("a b")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let value = res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(value.contains(r#"error="invalid_request""#), "{value}");
    assert!(
        value.ends_with(&format!(r#", resource_metadata="{url}""#)),
        "{value}"
    );
    // A good token passes untouched.
    let res = send(&svc, Method::GET, "/notes", Some(KEY)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
}

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(flatten)]
    grants: ClaimGrants,
}

/// §5.1 with RFC 6750 §3.1: the authorization layer's 403 `insufficient_scope`, rendered behind
/// auth, carries the URL too, so a client can step up.
#[tokio::test]
async fn rfc9728_5_1_insufficient_scope_from_the_authorization_layer_names_the_metadata() {
    let authn = |token: tower_scope::BearerToken| async move {
        let scope = if token.expose_secret() == KEY {
            "notes:read"
        } else {
            ""
        };
        let claims: Claims = serde_json::from_value(json!({ "scope": scope })).unwrap();
        Ok::<_, tower_scope::AuthError>(claims)
    };
    let (auth, well_known) = BearerAuthLayer::new(authn)
        .protected_resource(metadata("https://api.example.com"))
        .unwrap();
    let authz = AuthorizeLayer::new(ClaimPermissions::new(|c: &Claims| &c.grants).scope())
        .route(
            None,
            "/notes",
            Requirement::all_of(["notes:write"]).unwrap(),
        )
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(well_known)
        .layer(auth)
        .layer(authz)
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let req = Request::post("/notes")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(String::new())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer error="insufficient_scope", error_description="Missing required permission: notes:write", scope="notes:write", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource""#
    );
}

#[tokio::test]
async fn rfc9728_2_bearer_methods_follow_the_enabled_token_sources() {
    let svc = service(
        tokens().token_from_query("access_token").unwrap(),
        "https://api.example.com",
    );
    let res = send(&svc, Method::GET, WELL_KNOWN_PATH, None).await;
    let doc: Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(doc["bearer_methods_supported"], json!(["header", "query"]));
    // A cookie has no RFC 9728 name: refused at build, not silently left out.
    let err = tokens()
        .token_from_cookie("session")
        .unwrap()
        .protected_resource(metadata("https://api.example.com"))
        .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::InvalidValue {
            setting: "protected_resource",
            ..
        }
    ));
    // Set by hand, the list is kept as given (deduplicated).
    let m = metadata("https://api.example.com").bearer_methods([
        BearerMethod::Header,
        BearerMethod::Body,
        BearerMethod::Body,
    ]);
    assert!(
        m.to_json()
            .contains(r#""bearer_methods_supported":["header","body"]"#)
    );
}

/// The memory server over real HTTP: it describes itself at the root well-known path and
/// names it in its 401s and 403s (JSON bodies unchanged).
#[tokio::test]
async fn memory_server_serves_its_metadata_and_names_it_in_challenges() {
    let db = backend::Db::new(backend::Backend::Sqlite).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let secret = "0123456789abcdef0123456789abcdef";
    let settings = app::Settings {
        jwt_secret: secret.to_owned(),
        issuer: Some("https://auth.example.com".into()),
        audience: None,
        cors_origins: Vec::new(),
        public_url: Some(base.clone()),
        dev_tokens: Vec::new(),
    };
    let router = app::app(db.store.clone(), &settings).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let url = format!("{base}/.well-known/oauth-protected-resource");

    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["resource"], base.as_str());
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://auth.example.com"])
    );
    assert_eq!(doc["scopes_supported"], json!(app::SCOPES));

    let client = reqwest::Client::new();
    let res = client
        .get(format!("{base}/api/memory/threads"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        format!(r#"Bearer realm="api", resource_metadata="{url}""#).as_str()
    );
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "Authentication required"
    );

    // A read-only token writing: 403 insufficient_scope, with the URL to step up.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut claims = app::Claims::user("viewer", exp);
    claims.iss = Some("https://auth.example.com".into());
    claims.grants.scope = Some(["memory:read"].into_iter().collect());
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let res = client
        .post(format!("{base}/api/memory/threads"))
        .bearer_auth(&token)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(
        challenge.ends_with(&format!(r#"resource_metadata="{url}""#)),
        "{challenge}"
    );
    db.finish().await;
}
