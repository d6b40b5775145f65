//! A real axum server on 127.0.0.1:0, driven by a real HTTP client (reqwest).
#![cfg(all(
    feature = "axum",
    feature = "jwt",
    any(feature = "aws-lc", feature = "rust-crypto")
))]

mod common;

use axum::Router;
use axum::extract::RawQuery;
use axum::routing::get;
use common::{Claims, authenticator, resource_of, token_for, token_with};
use reqwest::StatusCode;
use tower_scope::{Authenticated, BearerAuthLayer, ResourceId, ResourceScopeLayer};

async fn whoami(
    user: Authenticated<Claims>,
    scope: ResourceId,
    RawQuery(query): RawQuery,
) -> String {
    format!("{} {} {}", user.sub, scope, query.unwrap_or_default())
}

async fn maybe(user: Option<Authenticated<Claims>>) -> String {
    user.map_or_else(|| "anonymous".to_owned(), |u| u.sub.clone())
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn app() -> Router {
    let protected = Router::new()
        .route("/api/me", get(whoami))
        .layer(ResourceScopeLayer::new(resource_of))
        .layer(
            BearerAuthLayer::new(authenticator())
                .realm("memory")
                .unwrap(),
        );
    let public = Router::new()
        .route("/public/maybe", get(maybe))
        .route("/unwired/me", get(whoami))
        .layer(BearerAuthLayer::new(authenticator()).optional());
    protected.merge(public)
}

#[tokio::test]
async fn missing_bad_and_valid_tokens_over_real_http() {
    let base = serve(app()).await;
    let client = reqwest::Client::new();

    let res = client.get(format!("{base}/api/me")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer realm="memory""#
    );
    assert_eq!(res.text().await.unwrap(), "");

    let res = client
        .get(format!("{base}/api/me"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );

    let expired = token_with("alice", None, -3600);
    let res = client
        .get(format!("{base}/api/me"))
        .bearer_auth(expired)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("The token has expired")
    );

    let res = client
        .get(format!("{base}/api/me?resourceId=bob"))
        .bearer_auth(token_for("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "alice alice resourceId=alice");

    let org = token_with("carol", Some("acme"), 600);
    let res = client
        .get(format!("{base}/api/me"))
        .bearer_auth(org)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.text().await.unwrap(),
        "carol acme:carol resourceId=acme%3Acarol"
    );
}

#[tokio::test]
async fn unscopable_user_is_forbidden_over_real_http() {
    let base = serve(app()).await;
    let res = reqwest::Client::new()
        .get(format!("{base}/api/me"))
        .bearer_auth(token_for("nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get("www-authenticate").is_none());
}

#[tokio::test]
async fn extractors_answer_like_the_layers_when_values_are_missing() {
    let base = serve(app()).await;
    let client = reqwest::Client::new();
    // Optional extractor: no token, no rejection.
    let res = client
        .get(format!("{base}/public/maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "anonymous");
    let res = client
        .get(format!("{base}/public/maybe"))
        .bearer_auth(token_for("dave"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "dave");
    // Required extractors on a route without the layers: 401 with a challenge, not axum's 500.
    let res = client
        .get(format!("{base}/unwired/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    // Authenticated but no ResourceScopeLayer: the ResourceId extractor fails closed with 403.
    let res = client
        .get(format!("{base}/unwired/me"))
        .bearer_auth(token_for("dave"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn json_errors_over_real_http() {
    let app = Router::new()
        .route("/api/me", get(whoami))
        .layer(ResourceScopeLayer::new(resource_of))
        .layer(BearerAuthLayer::new(authenticator()).json_errors());
    let base = serve(app).await;
    let res = reqwest::Client::new()
        .get(format!("{base}/api/me"))
        .bearer_auth("bad")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({"error": "The token is malformed"}));
}

/// A handler panic behind `LogLayer` is a 500 in Mastra's JSON shape, and the connection
/// stays open for the next request (before, hyper dropped it with no answer at all).
#[cfg(feature = "log")]
#[tokio::test]
async fn a_handler_panic_is_a_json_500_and_the_connection_is_kept() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    async fn boom() -> String {
        panic!("handler bug")
    }
    let app = Router::new()
        .route("/api/boom", get(boom))
        .route("/api/me", get(whoami))
        .layer(ResourceScopeLayer::new(resource_of))
        .layer(BearerAuthLayer::new(authenticator()))
        .layer(tower_scope::LogLayer::new())
        .layer(tower_scope::JsonErrorLayer::new());
    let base = serve(app).await;
    let stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = |path: &str| {
        http::Request::get(path)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {}", token_for("alice")))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let res = sender.send_request(request("/api/boom")).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":"Internal server error"}"#);
    // The same connection serves the next request.
    sender.ready().await.unwrap();
    let res = sender.send_request(request("/api/me")).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
}

/// A naive handler that reads `?resourceId=` sees the caller's scope whatever content type the
/// request claims: `application/grpc*` once switched the added parameter off.
#[tokio::test]
async fn a_naive_handler_sees_the_callers_scope_whatever_the_content_type() {
    let base = serve(app()).await;
    let client = reqwest::Client::new();
    for ct in [
        None,
        Some("application/grpc"),
        Some("application/grpc+json"),
        Some("application/grpc-web-text"),
        Some("application/grpc-web+proto"),
    ] {
        for query in ["", "?resourceId=bob", "?resource%49d=bob&resourceId=carol"] {
            let mut req = client
                .get(format!("{base}/api/me{query}"))
                .bearer_auth(token_for("alice"));
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{ct:?} {query}");
            assert_eq!(
                res.text().await.unwrap(),
                "alice alice resourceId=alice",
                "{ct:?} {query}"
            );
        }
    }
}

/// The guard's checked ids as axum extractors: the handler reads the thread and message the
/// guard checked, never the raw path; a route the guard does not check gets 403 from them.
#[cfg(feature = "guard")]
#[tokio::test]
async fn checked_thread_and_message_ids_are_extractors() {
    use axum::extract::Path;
    use axum::http::Method;
    use tower_scope::guard::{GuardRoute, MemoryThreadStore, ThreadGuardLayer};
    use tower_scope::{MessageId, ThreadId};

    let store = MemoryThreadStore::new();
    let alice = ResourceId::new("alice").unwrap();
    store.insert_thread(ThreadId::new("t-a").unwrap(), Some(alice.clone()));
    store.insert_message(
        MessageId::new("m-a").unwrap(),
        Some(ThreadId::new("t-a").unwrap()),
    );
    store.insert_thread(
        ThreadId::new("t-b").unwrap(),
        Some(ResourceId::new("bob").unwrap()),
    );
    let guard = ThreadGuardLayer::new(store)
        .route(
            GuardRoute::new(Method::GET, "/api/threads/{thread}/messages/{message}")
                .and_then(|r| r.thread_from_path("thread"))
                .and_then(|r| r.messages_from_path("message"))
                .unwrap(),
        )
        .route(GuardRoute::new(Method::GET, "/api/unchecked/{thread}").unwrap());
    async fn message(
        thread: ThreadId,
        message: MessageId,
        Path((raw_thread, raw_message)): Path<(String, String)>,
    ) -> String {
        format!("{thread}/{message} (path {raw_thread}/{raw_message})")
    }
    async fn unchecked(thread: Option<ThreadId>, message: Option<MessageId>) -> String {
        format!("{thread:?} {message:?}")
    }
    async fn required(_thread: ThreadId) -> &'static str {
        "unreachable"
    }
    let app = Router::new()
        .route("/api/threads/{thread}/messages/{message}", get(message))
        .route("/api/unchecked/{thread}", get(unchecked))
        .route("/api/required/{thread}", get(required))
        .route_layer(guard)
        .layer(ResourceScopeLayer::new(resource_of))
        .layer(BearerAuthLayer::new(authenticator()));
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(token_for("alice"))
            .send()
    };
    let res = get("/api/threads/t-a/messages/m-a").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "t-a/m-a (path t-a/m-a)");
    let res = get("/api/threads/t-b/messages/m-a").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = get("/api/unchecked/t-b").await.unwrap();
    assert_eq!(res.text().await.unwrap(), "None None");
    // No guard route checked a thread here: the required extractor refuses.
    let res = get("/api/required/t-a").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
