//! Attacks on the isolation guarantees, written as tests (from the attacker-minded review of
//! the "scoping no request can switch off" work).
//!
//! Tests once labelled `FINDING:` failed on the first version of that work and were fixed
//! (body routes not forcing `resourceId`, `?include=` naming foreign messages, anonymous
//! requests passing unscoped, panics in `call` or in the body, `*.com` with credentials, a
//! mismatch refusal logged without its resource); `HELD:` attacks were refused from the start.
//!
//! The stack mirrors the memory server example (JSON errors -> log -> auth -> scope -> guard ->
//! handlers) with echo handlers that are naive: they report what they were given, so a test
//! can see exactly which resource/thread a handler would act on.
#![cfg(all(
    feature = "axum",
    feature = "guard",
    feature = "cors",
    feature = "log",
    feature = "jwt",
    feature = "aws-lc"
))]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, Request as AxRequest};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_scope::guard::MemoryThreadStore;
use tower_scope::{
    BearerAuthLayer, CorsLayer, JsonErrorLayer, LogLayer, MessageId, ResourceId,
    ResourceScopeLayer, StaticTokens, ThreadId, mastra,
};

const ALICE: &str = "alice-api-key-0123456789abcdef0123";
const BOB: &str = "bob-api-key-0123456789abcdef012345";

fn tokens() -> StaticTokens<String> {
    StaticTokens::new()
        .token(ALICE, "alice".to_owned())
        .token(BOB, "bob".to_owned())
}

fn store() -> MemoryThreadStore {
    let s = MemoryThreadStore::new();
    let alice = ResourceId::new("alice").unwrap();
    let bob = ResourceId::new("bob").unwrap();
    s.insert_thread(ThreadId::new("alice-t").unwrap(), Some(alice));
    s.insert_thread(ThreadId::new("bob-t").unwrap(), Some(bob));
    s.insert_message(
        MessageId::new("alice-m").unwrap(),
        Some(ThreadId::new("alice-t").unwrap()),
    );
    s.insert_message(
        MessageId::new("bob-m").unwrap(),
        Some(ThreadId::new("bob-t").unwrap()),
    );
    s
}

/// What a naive handler saw: uri, decoded query pairs (serde_urlencoded, as axum's `Query`),
/// path params (axum's decoding), body, extensions.
async fn report(params: HashMap<String, String>, req: AxRequest) -> Json<Value> {
    let (parts, body) = req.into_parts();
    let query: Vec<(String, String)> = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let bytes = body.collect().await.unwrap().to_bytes();
    Json(json!({
        "uri": parts.uri.to_string(),
        "query": query,
        "params": params,
        "body": serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        "resource": parts.extensions.get::<ResourceId>().map(|r| r.to_string()),
        "thread": parts.extensions.get::<ThreadId>().map(|r| r.to_string()),
    }))
}

async fn echo(req: AxRequest) -> Json<Value> {
    report(HashMap::new(), req).await
}

async fn echo_p(Path(params): Path<HashMap<String, String>>, req: AxRequest) -> Json<Value> {
    report(params, req).await
}

fn routes() -> Router {
    let t = "/api/memory/threads/{threadId}";
    Router::new()
        .route("/health", get(echo))
        .route("/api/memory/threads", get(echo).post(echo))
        .route(t, get(echo_p).patch(echo_p).delete(echo_p))
        .route(&format!("{t}/messages"), get(echo_p))
        .route(&format!("{t}/working-memory"), get(echo_p).post(echo_p))
        .route(&format!("{t}/clone"), post(echo_p))
        .route("/api/memory/search", get(echo))
        .route("/api/memory/status", get(echo))
        .route("/api/memory/observational-memory", get(echo))
        .route("/api/memory/observational-memory/buffer-status", post(echo))
        .route("/api/memory/save-messages", post(echo))
        .route("/api/memory/messages/delete", post(echo))
}

/// The example's stack around `router`.
fn app(router: Router) -> Router {
    router
        .layer(tower_scope::mastra::memory_guard(store(), "/api").unwrap())
        .layer(
            ResourceScopeLayer::new(|u: &String| Some(u.clone()))
                .body_rules(tower_scope::mastra::memory_body_rules("/api").unwrap()),
        )
        .layer(
            BearerAuthLayer::new(tokens())
                .public_path("/health")
                .unwrap(),
        )
        .layer(LogLayer::new().user(|u: &String| u.clone()))
        .layer(JsonErrorLayer::new())
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    json: Value,
}

async fn call(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        json,
    }
}

fn req(method: Method, uri: &str, token: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// Whether a handler answer shows it acted on something of alice's.
fn reached_alice(a: &Answer) -> bool {
    a.status == StatusCode::OK
        && a.json.get("uri").is_some()
        && a.json.to_string().contains("alice")
}

// ------------------------------------------------------------------------------------------
// Once FINDINGS (these failed on the reviewed code; fixed since)
// ------------------------------------------------------------------------------------------

/// Was a FINDING (high for anyone serving it), fixed: Mastra's `POST /memory/observational-memory/buffer-status`
/// takes `{agentId, resourceId?, threadId?}` in the BODY (`awaitBufferStatusBodySchema`). The
/// preset guards it like the GET routes (`?threadId=` only) and the "checks nothing" fast path
/// never reads the body, so bob's body naming alice's thread and resource reaches the handler.
#[tokio::test]
async fn buffer_status_body_cannot_name_alices_thread_or_resource() {
    let app = app(routes());
    let a = call(
        &app,
        req(
            Method::POST,
            "/api/memory/observational-memory/buffer-status",
            BOB,
            r#"{"agentId":"a","threadId":"alice-t","resourceId":"alice"}"#,
        ),
    )
    .await;
    assert!(
        !reached_alice(&a),
        "bob's buffer-status body reached the handler naming alice: {}",
        a.json
    );
}

/// Was a FINDING (medium), fixed: `POST /memory/threads/{threadId}/working-memory` takes
/// `{workingMemory, resourceId?}`; Mastra replaces the body `resourceId` with the context's
/// (resource-scoped working memory is keyed by it). The preset checks the path thread only and
/// does not force the body `resourceId`, so bob writes alice's resource-scoped working memory
/// through his own thread.
#[tokio::test]
async fn working_memory_post_gets_the_callers_body_resource_id() {
    let app = app(routes());
    let a = call(
        &app,
        req(
            Method::POST,
            "/api/memory/threads/bob-t/working-memory",
            BOB,
            r#"{"workingMemory":"pwned","resourceId":"alice"}"#,
        ),
    )
    .await;
    assert!(
        !reached_alice(&a),
        "the handler got body resourceId=alice from bob: {}",
        a.json
    );
}

/// Was a FINDING (medium, Mastra-API dependent), fixed: `GET /memory/threads/{id}/messages` takes an
/// `include` JSON query (`[{id, threadId?, withPreviousMessages, ..}]`) that Mastra's recall
/// uses to pull messages by id, from any thread. The guard checks the path thread only; a
/// naive handler honoring `include` gets alice's message through bob's thread.
#[tokio::test]
async fn messages_include_cannot_name_a_foreign_message_or_thread() {
    let app = app(routes());
    let include = r#"[{"id":"alice-m","threadId":"alice-t","withPreviousMessages":5}]"#;
    let uri = format!(
        "/api/memory/threads/bob-t/messages?include={}",
        percent_encode(include)
    );
    let a = call(&app, req(Method::GET, &uri, BOB, "")).await;
    assert!(
        !reached_alice(&a),
        "include naming alice's message reached the handler: {}",
        a.json
    );
}

/// Was a FINDING (design, medium), fixed: with optional auth (or a public path) and no anonymous cookie,
/// scope passes an anonymous request on with no `ResourceId` and no `resourceId` at all. A
/// naive listing handler (the example's lists everything when `resourceId` is absent) then
/// serves every user's data to an anonymous caller. Only the guard, if present, catches it.
#[tokio::test]
async fn anonymous_request_without_a_scope_never_reaches_the_handler() {
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens()).optional())
        .layer(ResourceScopeLayer::new(|u: &String| Some(u.clone())))
        .service(service_fn(|req: Request<Body>| async move {
            let scoped = req.extensions().get::<ResourceId>().is_some()
                || req.uri().query().is_some_and(|q| q.contains("resourceId="));
            Ok::<_, Infallible>(Response::new(Body::from(if scoped {
                "scoped"
            } else {
                "UNSCOPED"
            })))
        }));
    let res = svc
        .oneshot(
            Request::get("/api/memory/threads?resourceId=alice")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status != StatusCode::OK || body != "UNSCOPED",
        "an anonymous listing reached the handler with no scope at all"
    );
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn recorder() -> (Buf, tracing::subscriber::DefaultGuard) {
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}

/// Was a FINDING (low, audit), fixed: with `reject_mismatch`, scope's refusal of bob's `?resourceId=alice`
/// is logged with the user but without the resource id, although scope resolved it (the id is
/// only inserted after `apply_scope` succeeds). Issue 10 item 6: "every log event of a request
/// that passed authentication names the user and the resource id, refusals by scope included".
#[tokio::test]
async fn scope_mismatch_refusal_is_logged_with_the_resource_id() {
    let (buf, _guard) = recorder();
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new().user(|u: &String| u.clone()))
        .layer(BearerAuthLayer::new(tokens()))
        .layer(ResourceScopeLayer::new(|u: &String| Some(u.clone())).reject_mismatch())
        .service(service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
    let res = svc
        .oneshot(req(
            Method::GET,
            "/api/memory/threads?resourceId=alice",
            BOB,
            "",
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    drop(res);
    let log = buf.text();
    assert!(log.contains("user=\"bob\""), "{log}");
    assert!(
        log.contains("resource_id=\"bob\""),
        "the refusal's event names no resource: {log}"
    );
}

/// Was a FINDING (low, availability), fixed: `LogLayer` catches panics only while polling the inner
/// future; a panic in the inner service's synchronous `call` (a hand-written `Service`, a
/// `service_fn` closure that panics before returning its future, a sync scope mapper behind a
/// trusted custom auth layer, the `LogLayer::user` accessor itself) escapes and drops the
/// connection unanswered. Here the inner `call` runs synchronously because the path is public.
#[tokio::test]
async fn panic_in_a_synchronous_inner_call_is_answered_500() {
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .layer(BearerAuthLayer::new(tokens()).public_path("/pub").unwrap())
        .service(service_fn(|_req: Request<Body>| {
            if true {
                panic!("boom in call");
            }
            async { Ok::<_, Infallible>(Response::new(Body::empty())) }
        }));
    let joined = tokio::spawn(async move {
        svc.oneshot(Request::get("/pub").body(Body::empty()).unwrap())
            .await
            .map(|r| r.status())
    })
    .await;
    match joined {
        Ok(Ok(status)) => assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR),
        Ok(Err(never)) => match never {},
        Err(e) => panic!("the panic escaped LogLayer (is_panic={})", e.is_panic()),
    }
}

/// Was a FINDING (low, audit), fixed: a panic while the response body streams is not recorded as a panic:
/// the event says `aborted="during_body"` (as for a client that went away) with no
/// `panicked=true`, at the 2xx level. The head is already sent, so a 500 is impossible, but
/// the audit line should say the server failed.
#[tokio::test]
async fn panic_during_body_streaming_is_logged_as_a_panic() {
    struct Panicky;
    impl http_body::Body for Panicky {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            panic!("boom in body");
        }
    }
    impl Default for Panicky {
        fn default() -> Self {
            Panicky
        }
    }
    let (buf, _guard) = recorder();
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Panicky))
        }));
    let res = svc
        .oneshot(Request::get("/x").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = res.into_body();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut body = std::pin::pin!(body);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = http_body::Body::poll_frame(body.as_mut(), &mut cx);
    }));
    assert!(caught.is_err());
    let log = buf.text();
    assert!(
        log.contains("panicked=true"),
        "a body panic is logged as a client abort: {log}"
    );
}

/// Was a FINDING (low, CORS), fixed: a wildcard over a public suffix builds with credentials:
/// `https://*.com` lets every `.com` site read credentialed answers, the same class of mistake
/// as the mirrored origin that `build()` now refuses.
#[test]
fn cors_wildcard_over_a_tld_with_credentials_is_refused() {
    let built = mastra::cors_with_credentials(["https://*.com"]);
    assert!(
        built.is_err(),
        "https://*.com with credentials was accepted"
    );
}

// ------------------------------------------------------------------------------------------
// HELD (the attack was refused from the start)
// ------------------------------------------------------------------------------------------

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// HELD: query spellings. For each, the handler's own decoding (serde_urlencoded, as axum's
/// `Query`) never yields `resourceId` other than bob's, and always yields bob's.
#[tokio::test]
async fn query_spellings_never_name_another_resource_to_the_handler() {
    let app = app(routes());
    for q in [
        "resourceId=alice",
        "resourceId=alice&resourceId=bob",
        "resourceId=bob&resourceId=alice",
        "resource%49d=alice",
        "%72esourceId=alice",
        "resourceId%3Dalice",
        "resourceId=alice;resourceId=alice",
        "resourceId;=alice",
        "resourceId[]=alice",
        "resourceId+=alice",
        "resourceId%20=alice",
        "resource+Id=alice",
        "resourceId=%61lice",
        "resourceId=ali%FFce",
        "resource%FFId=alice",
        "resourceId=%",
        "resourceId%=alice",
        "=alice&resourceId",
        "&&resourceId=alice&&",
        "resourceId",
        "resourceId=",
        "resourceId==alice",
        "resourceId=alice%00",
        "RESOURCEID=alice",
        "resourceId=alice%26resourceId%3Dalice",
    ] {
        let a = call(
            &app,
            req(Method::GET, &format!("/api/memory/threads?{q}"), BOB, ""),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{q}: {}", a.json);
        let pairs = a.json["query"].as_array().unwrap();
        let rids: Vec<&str> = pairs
            .iter()
            .filter(|p| p[0] == "resourceId")
            .map(|p| p[1].as_str().unwrap())
            .collect();
        assert_eq!(rids, vec!["bob"], "{q}: {}", a.json);
        assert_eq!(a.json["resource"], "bob", "{q}");
    }
}

/// HELD: thread ids in the query of a covered route, in spellings serde decodes to `threadId`.
#[tokio::test]
async fn thread_query_spellings_are_checked_on_every_route() {
    let app = app(routes());
    for uri in [
        "/api/memory/threads?threadId=alice-t",
        "/api/memory/threads?thread%49d=alice-t",
        "/api/memory/threads?threadId=%61lice-t",
        "/api/memory/threads?threadId=alice%2Dt",
        "/api/memory/threads?threadId=bob-t&threadId=alice-t",
        "/api/memory/search?searchQuery=x&threadId=alice-t",
        "/api/memory/status?threadId=alice-t",
        "/api/memory/observational-memory?threadId=alice-t",
        "/api/memory/threads/bob-t?threadId=alice-t",
        "/api/memory/threads/bob-t/messages?threadId=alice-t",
        "/api/memory/threads/bob-t/working-memory?threadId=alice-t",
        "/api/memory/threads/bob-t/messages?thread%49d=alice-t",
    ] {
        let a = call(&app, req(Method::GET, uri, BOB, "")).await;
        assert!(!reached_alice(&a), "{uri}: {} {}", a.status, a.json);
        assert!(a.status.is_client_error(), "{uri}: {}", a.status);
    }
}

/// HELD: path spellings of alice's thread: either the guard refuses, or axum does not route.
#[tokio::test]
async fn path_spellings_of_a_foreign_thread_never_reach_a_handler() {
    let app = app(routes());
    for (method, uri) in [
        (Method::GET, "/api/memory/threads/alice-t"),
        (Method::HEAD, "/api/memory/threads/alice-t"),
        (Method::GET, "/api/memory/threads/%61lice-t"),
        (Method::GET, "/api/memory/threads/alice%2Dt/messages"),
        (Method::GET, "/api/memory/threads/alice-t/"),
        (Method::GET, "/api/memory/threads//alice-t"),
        (Method::GET, "/api/memory//threads/alice-t"),
        (Method::GET, "/api//memory/threads/alice-t"),
        (Method::GET, "//api/memory/threads/alice-t"),
        (Method::GET, "/api/memory/threads/./alice-t"),
        (Method::GET, "/api/memory/threads/x/../alice-t"),
        (Method::GET, "/api/memory/Threads/alice-t"),
        (Method::GET, "/API/memory/threads/alice-t"),
        (Method::GET, "/api/memory/threads/alice-t;x=1"),
        (Method::GET, "/api/memory/threads/alice-t%3Bx"),
        (Method::GET, "/api/memory/threads/alice-t%2Fmessages"),
        (
            Method::GET,
            "/api/memory/threads/alice-t/messages?resourceId=bob",
        ),
        (Method::DELETE, "/api/memory/threads/alice-t"),
        (Method::PATCH, "/api/memory/threads/alice-t"),
        (Method::POST, "/api/memory/threads/alice-t/clone"),
        (Method::POST, "/api/memory/threads/alice-t/working-memory"),
        (Method::OPTIONS, "/api/memory/threads/alice-t"),
        (Method::PUT, "/api/memory/threads/alice-t"),
        (
            Method::from_bytes(b"get").unwrap(),
            "/api/memory/threads/alice-t",
        ),
        (
            Method::GET,
            "http://evil.example/api/memory/threads/alice-t",
        ),
    ] {
        let a = call(&app, req(method.clone(), uri, BOB, "{}")).await;
        assert!(
            !a.status.is_success() && !reached_alice(&a),
            "{method} {uri}: {} {}",
            a.status,
            a.json
        );
    }
    // Method overrides are not honored by anything in the stack: still a foreign thread.
    let mut r = req(Method::POST, "/api/memory/threads/alice-t", BOB, "{}");
    r.headers_mut()
        .insert("x-http-method-override", "GET".parse().unwrap());
    let a = call(&app, r).await;
    assert!(!a.status.is_success(), "{}", a.status);
}

/// HELD: bodies naming alice's thread or messages on the body-checking routes.
#[tokio::test]
async fn bodies_naming_foreign_threads_or_messages_are_refused() {
    let app = app(routes());
    for (uri, body) in [
        (
            "/api/memory/threads",
            r#"{"threadId":"alice-t","resourceId":"bob"}"#,
        ),
        (
            "/api/memory/threads",
            r#"{"threadId":"bob-new","threadId":"alice-t"}"#,
        ),
        ("/api/memory/threads", r#"{"thread\u0049d":"alice-t"}"#),
        (
            "/api/memory/threads/bob-t/clone",
            r#"{"newThreadId":"alice-t"}"#,
        ),
        (
            "/api/memory/save-messages",
            r#"{"messages":[{"threadId":"alice-t","resourceId":"bob","content":"x"}]}"#,
        ),
        (
            "/api/memory/save-messages",
            r#"{"messages":[{"id":"alice-m","threadId":"bob-t","resourceId":"bob","content":"x"}]}"#,
        ),
        (
            "/api/memory/save-messages",
            r#"{"messages":[{"threadId":"bob-t","resourceId":"alice","content":"x"}]}"#,
        ),
        (
            "/api/memory/messages/delete",
            r#"{"messageIds":["bob-m","alice-m"]}"#,
        ),
        (
            "/api/memory/messages/delete",
            r#"{"messageIds":{"id":"alice-m"}}"#,
        ),
        (
            "/api/memory/messages/delete",
            r#"{"messageIds":[{"id":"alice-m"}]}"#,
        ),
    ] {
        let a = call(&app, req(Method::POST, uri, BOB, body)).await;
        assert!(
            a.status.is_client_error(),
            "{uri} {body}: {} {}",
            a.status,
            a.json
        );
    }
    // A duplicate key on the forced field could mean either value to a handler's parser:
    // refused before the handler (it used to be re-serialized, which lost the client's bytes).
    for body in [
        r#"{"resourceId":"alice","resourceId":"alice"}"#,
        r#"{"resourceId":"bob","resource\u0049d":"alice"}"#,
    ] {
        let a = call(&app, req(Method::POST, "/api/memory/threads", BOB, body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.json);
        assert!(a.json.get("body").is_none(), "the handler ran: {}", a.json);
    }
}

/// HELD: nothing the client sends produces an `AuthState`, `Authenticated` or `ResourceId`:
/// scope with no auth in front refuses whatever headers are present.
#[tokio::test]
async fn no_header_stands_in_for_authentication() {
    let svc = ServiceBuilder::new()
        .layer(ResourceScopeLayer::new(|u: &String| Some(u.clone())))
        .service(service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("reached")))
        }));
    let mut r = Request::get("/api/memory/threads?resourceId=alice")
        .header(header::AUTHORIZATION, format!("Bearer {ALICE}"))
        .header("x-resource-id", "alice")
        .header("x-auth-state", "verified")
        .header("x-mastra-client-type", "studio")
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::ORIGIN, "https://x.example")
        .body(Body::empty())
        .unwrap();
    *r.method_mut() = Method::OPTIONS;
    r.headers_mut().insert(
        header::ACCESS_CONTROL_REQUEST_METHOD,
        "GET".parse().unwrap(),
    );
    let res = svc.clone().oneshot(r).await.unwrap();
    // gRPC-rendered refusal (HTTP 200 trailers-only) with PERMISSION_DENIED.
    assert_eq!(res.headers()["grpc-status"], "7");
    assert!(
        res.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty(),
        "the handler ran"
    );

    // Preflights are authenticated by default: no token, 401, even with the CORS headers.
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens()))
        .layer(ResourceScopeLayer::new(|u: &String| Some(u.clone())))
        .service(service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("reached")))
        }));
    let r = Request::options("/api/memory/threads")
        .header(header::ORIGIN, "https://x.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        svc.oneshot(r).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // A user-type mismatch is refused, not served unscoped.
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens()))
        .layer(ResourceScopeLayer::new(|u: &u64| Some(u.to_string())))
        .service(service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("reached")))
        }));
    let res = svc
        .oneshot(req(Method::GET, "/api/memory/threads", BOB, ""))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

/// HELD: with the guard behind scope (the example's wiring), the anonymous, unscoped request
/// of `anonymous_request_without_a_scope_never_reaches_the_handler` is refused on every guarded
/// route, the fast-path listing included (the guard requires a `ResourceId`).
#[tokio::test]
async fn guard_refuses_anonymous_unscoped_requests() {
    let app = routes()
        .layer(tower_scope::mastra::memory_guard(store(), "/api").unwrap())
        .layer(
            ResourceScopeLayer::new(|u: &String| Some(u.clone()))
                .body_rules(tower_scope::mastra::memory_body_rules("/api").unwrap()),
        )
        .layer(BearerAuthLayer::new(tokens()).optional());
    for uri in [
        "/api/memory/threads",
        "/api/memory/threads?resourceId=alice",
        "/api/memory/status",
        "/api/memory/threads/alice-t",
    ] {
        let res = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{uri}");
    }
}

/// HELD: every answer to a verified caller carries `Cache-Control: private` unless the
/// handler chose one: handler 200/404/304, HEAD, guard 403/404, coverage 403, scope 403.
#[tokio::test]
async fn every_answer_to_a_verified_caller_is_private() {
    let router = routes()
        .route(
            "/api/memory/config",
            get(|| async { (StatusCode::NOT_MODIFIED, [(header::ETAG, "\"x\"")]) }),
        )
        .route(
            "/api/memory/threads/{threadId}/nope",
            get(|| async { StatusCode::NOT_FOUND }),
        );
    let app = app(router);
    for (method, uri) in [
        (Method::GET, "/api/memory/threads"),
        (Method::HEAD, "/api/memory/threads"),
        (Method::GET, "/api/memory/config"),
        (Method::GET, "/api/memory/threads/alice-t"),
        (Method::GET, "/api/memory/threads/missing"),
        (Method::GET, "/api/memory/not-a-route"),
        (Method::GET, "/api/memory/threads/bob-t"),
        (Method::GET, "/elsewhere"),
    ] {
        let a = call(&app, req(method.clone(), uri, BOB, "")).await;
        assert_eq!(
            a.headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
            Some(&b"private"[..]),
            "{method} {uri}: {}",
            a.status
        );
    }
}

/// HELD: a handler panic is answered 500 JSON without the panic text; the service stays up.
#[tokio::test]
async fn handler_panic_is_a_500_without_its_message() {
    let router = routes().route(
        "/api/boom",
        get(|| async {
            if true {
                panic!("SECRET-alice-diary");
            }
            "x"
        }),
    );
    let app = app(router);
    let a = call(&app, req(Method::GET, "/api/boom", BOB, "")).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!a.json.to_string().contains("SECRET"), "{}", a.json);
    assert!(a.json["error"].is_string(), "{}", a.json);
    let a = call(&app, req(Method::GET, "/api/memory/threads", BOB, "")).await;
    assert_eq!(a.status, StatusCode::OK);
}

/// HELD: CORS presets with credentials refuse to reflect every origin.
#[test]
fn cors_reflected_origin_with_credentials_is_refused() {
    assert!(
        mastra::cors()
            .mirror_origin()
            .unwrap()
            .allow_credentials(true)
            .is_err()
    );
    assert!(
        CorsLayer::new()
            .mirror_origin()
            .unwrap()
            .allow_credentials(true)
            .is_err()
    );
    assert!(
        CorsLayer::new()
            .allow_credentials(true)
            .unwrap()
            .mirror_origin()
            .is_err()
    );
    assert!(mastra::cors_with_credentials(["null"]).is_err());
    assert!(mastra::cors_with_credentials(Vec::<String>::new()).is_err());
}

fn hs256(payload: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(payload.as_bytes());
    let msg = format!("{head}.{body}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let sig = aws_lc_rs::hmac::sign(&key, msg.as_bytes());
    format!("{msg}.{}", b64.encode(sig.as_ref()))
}

const SECRET: &str = "review-secret-0123456789abcdef0123456789";

/// HELD: sender-constrained tokens, in every spelling, are refused as bearer tokens.
#[test]
fn cnf_tokens_are_refused_in_every_spelling() {
    use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
    let auth = JwtAuthenticator::<Value>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .build()
        .unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    assert!(
        auth.verify(&hs256(&format!(r#"{{"sub":"a","exp":{exp}}}"#)))
            .is_ok()
    );
    for cnf in [
        r#""cnf":{"jkt":"x"}"#,
        r#""cnf":{}"#,
        r#""cnf":null"#,
        r#""cnf":"x""#,
        r#""c\u006ef":{"jkt":"x"}"#,
        r#""cnf":{"x5t#S256":"y"}"#,
    ] {
        let token = hs256(&format!(r#"{{"sub":"a","exp":{exp},{cnf}}}"#));
        assert!(auth.verify(&token).is_err(), "{cnf} accepted");
    }
    // Two cnf members (first harmless, second binding) must not confuse the check.
    let token = hs256(&format!(
        r#"{{"sub":"a","exp":{exp},"cnf":{{}},"cnf":{{"jkt":"x"}}}}"#
    ));
    assert!(auth.verify(&token).is_err());
}

/// HELD: malformed inputs neither panic nor leak (invalid escapes, control bytes, huge ids).
#[tokio::test]
async fn malformed_inputs_are_refused_without_panicking() {
    let app = app(routes());
    let long = "a".repeat(5000);
    for uri in [
        "/api/memory/threads/%FF".to_owned(),
        "/api/memory/threads/%".to_owned(),
        "/api/memory/threads/%00".to_owned(),
        "/api/memory/threads/%0A/messages".to_owned(),
        format!("/api/memory/threads/{long}"),
        format!("/api/memory/threads?threadId={long}"),
        "/api/memory/threads?threadId=%FF".to_owned(),
        "/api/memory/threads?threadId=".to_owned(),
        "/api/memory/threads?threadId".to_owned(),
        format!("/api/memory/threads?{}", "resourceId=x&".repeat(2000)),
    ] {
        let a = call(&app, req(Method::GET, &uri, BOB, "")).await;
        assert!(!reached_alice(&a), "{uri}");
    }
    for body in [
        "",
        "   ",
        "null",
        "[]",
        "\"x\"",
        "{",
        "{\"messageIds\":null}",
    ] {
        for uri in [
            "/api/memory/threads",
            "/api/memory/save-messages",
            "/api/memory/messages/delete",
            "/api/memory/threads/bob-t/clone",
        ] {
            let a = call(&app, req(Method::POST, uri, BOB, body)).await;
            assert!(!reached_alice(&a), "{uri} {body}");
        }
    }
}

/// HELD: absolute-form and odd request targets over a real HTTP/1.1 connection.
#[tokio::test]
async fn raw_request_targets_over_real_http1() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = app(routes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    for target in [
        format!("http://{addr}/api/memory/threads?resourceId=alice"),
        "http://evil.example/api/memory/threads?resourceId=alice".to_owned(),
        "/api/memory/threads?resourceId=alice#frag".to_owned(),
        "/api/memory/threads#?resourceId=alice".to_owned(),
        "/api/memory/threads/alice-t#x".to_owned(),
        format!("http://{addr}/api/memory/threads/alice-t"),
        "/api/memory/threads?resourceId=al\u{e9}ice".to_owned(),
        "*".to_owned(),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {BOB}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        assert!(
            !(text.starts_with("HTTP/1.1 200") && body.contains("alice")),
            "{target}: {text}"
        );
    }
}
