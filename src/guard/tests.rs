//! Behaviour of `ThreadGuardLayer` and `ThreadGuard`, through `oneshot` against the
//! in-memory store.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::reject::Rejection;
use crate::{MessageId, ResourceId, ThreadId};

fn rid(s: &str) -> ResourceId {
    ResourceId::new(s).unwrap()
}

fn mid(s: &str) -> MessageId {
    MessageId::new(s).unwrap()
}

fn tid(s: &str) -> ThreadId {
    ThreadId::new(s).unwrap()
}

/// alice owns t-a (messages m-a1, m-a2); bob owns t-b (m-b1); t-shared has no owner (m-s1);
/// m-orphan has no thread; m-lost points to a deleted thread.
fn store() -> MemoryThreadStore {
    let s = MemoryThreadStore::new();
    s.insert_thread(tid("t-a"), Some(rid("alice")));
    s.insert_thread(tid("t-b"), Some(rid("bob")));
    s.insert_thread(tid("t-shared"), None);
    s.insert_message(mid("m-a1"), Some(tid("t-a")));
    s.insert_message(mid("m-a2"), Some(tid("t-a")));
    s.insert_message(mid("m-b1"), Some(tid("t-b")));
    s.insert_message(mid("m-s1"), Some(tid("t-shared")));
    s.insert_message(mid("m-orphan"), None);
    s.insert_message(mid("m-lost"), Some(tid("t-gone")));
    s
}

struct Seen {
    status: StatusCode,
    retry_after: Option<String>,
    body: String,
    rejection: Option<Rejection>,
    calls: usize,
}

/// Sends `req` through the guard to an echo handler reporting what it saw:
/// `thread=<ThreadId or -> uri=<uri> body=<body>`. A request that carries a `ResourceId`
/// passes the scope layer's Mastra body rules first, as in a real stack.
async fn send<S: ThreadStore>(layer: ThreadGuardLayer<S>, req: Request<Full<Bytes>>) -> Seen {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler = service_fn(move |req: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let thread = req
                .extensions()
                .get::<ThreadId>()
                .map_or("-".to_owned(), ToString::to_string);
            let uri = req.uri().to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let text = format!(
                "thread={thread} uri={uri} body={}",
                String::from_utf8_lossy(&body)
            );
            Ok::<_, Infallible>(Response::new(text))
        }
    });
    let res = if req.extensions().get::<ResourceId>().is_some() {
        let scope = crate::ResourceScopeLayer::new(|_: &()| None::<String>)
            .without_added_param()
            .body_rules(crate::mastra::memory_body_rules("/api").unwrap())
            .body_rules(crate::mastra::agent_body_rules("/api").unwrap());
        scope
            .layer(layer.layer(handler))
            .oneshot(req)
            .await
            .unwrap()
    } else {
        layer.layer(handler).oneshot(req).await.unwrap()
    };
    Seen {
        status: res.status(),
        retry_after: res
            .headers()
            .get(http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned()),
        rejection: res.extensions().get::<Rejection>().cloned(),
        body: res.into_body(),
        calls: calls.load(Ordering::SeqCst),
    }
}

fn req(method: Method, uri: &str, who: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    if let Some(who) = who {
        req.extensions_mut().insert(rid(who));
    }
    req
}

fn mastra() -> ThreadGuardLayer<MemoryThreadStore> {
    crate::mastra::memory_guard(store(), "/api").unwrap()
}

fn message(seen: &Seen) -> &str {
    seen.rejection.as_ref().map_or("", |r| r.message())
}

#[tokio::test]
async fn owned_thread_passes_with_thread_id_inserted() {
    let seen = send(
        mastra(),
        req(Method::GET, "/api/memory/threads/t-a", Some("alice"), ""),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body, "thread=t-a uri=/api/memory/threads/t-a body=");
}

#[tokio::test]
async fn foreign_thread_is_forbidden_and_handler_not_called() {
    for (method, path) in [
        (Method::GET, "/api/memory/threads/t-a"),
        (Method::PATCH, "/api/memory/threads/t-a"),
        (Method::DELETE, "/api/memory/threads/t-a"),
        (Method::GET, "/api/memory/threads/t-a/messages"),
        (Method::POST, "/api/memory/threads/t-a/clone"),
    ] {
        let seen = send(mastra(), req(method.clone(), path, Some("bob"), "")).await;
        assert_eq!(seen.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(
            message(&seen),
            "Access denied: thread belongs to a different resource"
        );
        assert_eq!(seen.calls, 0);
    }
}

#[tokio::test]
async fn foreign_thread_is_not_found_when_hidden() {
    let seen = send(
        mastra().hide_foreign_threads(),
        req(Method::GET, "/api/memory/threads/t-a", Some("bob"), ""),
    )
    .await;
    assert_eq!(seen.status, StatusCode::NOT_FOUND);
    assert_eq!(message(&seen), "Thread not found");
}

#[tokio::test]
async fn missing_thread_is_not_found_unless_the_route_creates_it() {
    let seen = send(
        mastra(),
        req(Method::GET, "/api/memory/threads/t-new", Some("alice"), ""),
    )
    .await;
    assert_eq!(seen.status, StatusCode::NOT_FOUND);
    assert_eq!(message(&seen), "Thread not found");
    let seen = send(
        mastra(),
        req(
            Method::GET,
            "/api/memory/threads/t-new/working-memory",
            Some("alice"),
            "",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    let seen = send(
        mastra(),
        req(
            Method::POST,
            "/api/memory/threads/t-new/working-memory",
            Some("alice"),
            "{}",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unowned_thread_is_denied_by_default_and_shared_by_option() {
    let seen = send(
        mastra(),
        req(
            Method::GET,
            "/api/memory/threads/t-shared",
            Some("alice"),
            "",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    let seen = send(
        mastra().allow_unowned_threads(),
        req(
            Method::GET,
            "/api/memory/threads/t-shared",
            Some("alice"),
            "",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
}

#[tokio::test]
async fn request_without_resource_id_is_forbidden() {
    let seen = send(
        mastra(),
        req(Method::GET, "/api/memory/threads/t-a", None, ""),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&seen),
        "Access denied: request could not be scoped to a resource"
    );
    assert_eq!(seen.calls, 0);
}

#[tokio::test]
async fn unguarded_routes_pass_untouched() {
    let seen = send(
        mastra(),
        req(Method::GET, "/api/agents?page=0", None, "raw"),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body, "thread=- uri=/api/agents?page=0 body=raw");
    // The listing is a covered route that checks no thread: it passes untouched. (A body on
    // it is refused by the scope layer's Mastra rules in front: GET memory routes take none.)
    let seen = send(
        mastra(),
        req(Method::GET, "/api/memory/threads?page=0", Some("alice"), ""),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body, "thread=- uri=/api/memory/threads?page=0 body=");
    let seen = send(
        mastra(),
        req(Method::GET, "/api/memory/threads", Some("alice"), "raw"),
    )
    .await;
    assert_eq!((seen.status, seen.calls), (StatusCode::BAD_REQUEST, 0));
    // Without a scope it is refused like every other covered route (fail closed).
    let seen = send(mastra(), req(Method::GET, "/api/memory/threads", None, "")).await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(seen.calls, 0);
}

#[tokio::test]
async fn a_memory_route_no_rule_covers_is_refused() {
    // Routes a router might serve that the preset does not know, and method overrides of
    // known paths: none may reach a handler unguarded.
    for (method, uri) in [
        (Method::GET, "/api/memory/threads/t-b/messages/paginated"),
        (Method::POST, "/api/memory/threads/t-b"),
        (Method::PUT, "/api/memory/threads/t-b"),
        (Method::OPTIONS, "/api/memory/threads/t-b"),
        (Method::DELETE, "/api/memory/messages/m-b1"),
        (Method::GET, "/api/memory/unknown"),
        (Method::GET, "/api/memory"),
        (Method::GET, "/api/memory/network/unknown"),
    ] {
        let seen = send(mastra(), req(method.clone(), uri, Some("bob"), "")).await;
        assert_eq!(seen.status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert_eq!(
            message(&seen),
            "Access denied: this route is not covered by the thread guard"
        );
        assert_eq!(seen.calls, 0);
    }
    // The same refusal for gRPC is PERMISSION_DENIED.
    let mut grpc = req(Method::POST, "/api/memory/unknown", Some("bob"), "");
    grpc.headers_mut()
        .insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
    let seen = send(mastra(), grpc).await;
    assert_eq!(seen.calls, 0);
    assert_eq!(seen.rejection.unwrap().kind().grpc_code(), 7);
}

#[tokio::test]
async fn a_thread_id_in_the_query_is_checked_on_every_covered_route() {
    // Another resource's thread is refused wherever the query names it.
    for uri in [
        "/api/memory/threads?threadId=t-b",
        "/api/memory/status?threadId=t-b",
        "/api/memory/search?searchQuery=x&threadId=t-b",
        "/api/memory/config?threadId=t-b",
        "/api/memory/threads/t-a/messages?threadId=t-b",
        "/api/memory/threads/t-a?thread%49d=t-b",
        "/api/memory/network/status?threadId=t-b",
    ] {
        let seen = send(mastra(), req(Method::GET, uri, Some("alice"), "")).await;
        assert_eq!(seen.status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(seen.calls, 0, "{uri}");
    }
    // A missing one follows the route: search and status pass (empty results), a thread's
    // messages do not.
    for uri in [
        "/api/memory/search?searchQuery=x&threadId=t-new",
        "/api/memory/status?threadId=t-new",
        "/api/memory/threads?threadId=t-new",
    ] {
        let seen = send(mastra(), req(Method::GET, uri, Some("alice"), "")).await;
        assert_eq!(seen.status, StatusCode::OK, "{uri}");
    }
    let seen = send(
        mastra(),
        req(
            Method::GET,
            "/api/memory/threads/t-a/messages?threadId=t-new",
            Some("alice"),
            "",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::NOT_FOUND);
    // The caller's own thread passes; the id given twice is ambiguous.
    let seen = send(
        mastra(),
        req(
            Method::GET,
            "/api/memory/status?threadId=t-a",
            Some("alice"),
            "",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    let seen = send(
        mastra(),
        req(
            Method::GET,
            "/api/memory/status?threadId=t-a&threadId=t-b",
            Some("alice"),
            "",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_configured_thread_header_is_checked_on_every_route() {
    let layer = mastra().check_thread_header("x-thread-id").unwrap();
    let mut request = req(Method::GET, "/api/memory/threads/t-a", Some("alice"), "");
    request
        .headers_mut()
        .insert("x-thread-id", "t-b".parse().unwrap());
    let seen = send(layer, request).await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(seen.calls, 0);
}

#[tokio::test]
async fn transfer_is_refused_in_a_scoped_context_and_clone_cannot_target_a_foreign_thread() {
    let seen = send(
        mastra(),
        req(
            Method::POST,
            "/api/memory/threads/t-a/transfer",
            Some("alice"),
            "{}",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&seen),
        "Thread transfer requires a privileged (non-resource-scoped) context"
    );
    let seen = send(
        mastra(),
        req(
            Method::POST,
            "/api/memory/threads/t-a/clone",
            Some("alice"),
            r#"{"newThreadId":"t-b"}"#,
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(seen.calls, 0);
    let seen = send(
        mastra(),
        req(
            Method::POST,
            "/api/memory/threads/t-a/clone",
            Some("alice"),
            r#"{"newThreadId":"t-copy"}"#,
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
}

#[tokio::test]
async fn legacy_network_aliases_are_guarded_like_the_memory_routes() {
    let seen = send(
        mastra(),
        req(
            Method::GET,
            "/api/memory/network/threads/t-b",
            Some("alice"),
            "",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&seen),
        "Access denied: thread belongs to a different resource"
    );
}

#[tokio::test]
async fn content_type_never_changes_the_guard_outcome() {
    let cases = [
        (
            Method::GET,
            "/api/memory/threads/t-b",
            "",
            StatusCode::FORBIDDEN,
        ),
        (Method::GET, "/api/memory/threads/t-a", "", StatusCode::OK),
        (
            Method::GET,
            "/api/memory/threads/t-x",
            "",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/memory/messages/delete",
            r#"{"messageIds":["m-a1","m-b1"]}"#,
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/api/memory/unknown",
            "",
            StatusCode::FORBIDDEN,
        ),
    ];
    for ct in [
        "application/json",
        "text/plain",
        "application/grpc",
        "application/grpc+json",
        "application/grpc-web-text",
    ] {
        for (method, uri, body, expected) in &cases {
            let mut request = req(method.clone(), uri, Some("alice"), body);
            request
                .headers_mut()
                .insert(CONTENT_TYPE, ct.parse().unwrap());
            let seen = send(mastra(), request).await;
            let kind = seen.rejection.as_ref().map(Rejection::kind);
            let expected_kind = match *expected {
                StatusCode::OK => None,
                StatusCode::FORBIDDEN => Some(crate::RejectionKind::Forbidden),
                _ => Some(crate::RejectionKind::NotFound),
            };
            assert_eq!(kind, expected_kind, "{ct} {method} {uri}");
            assert_eq!(
                seen.calls,
                usize::from(expected_kind.is_none()),
                "{ct} {uri}"
            );
        }
    }
}

#[derive(Clone)]
struct BrokenStore {
    delay: Option<Duration>,
}

impl ThreadStore for BrokenStore {
    async fn thread_owners(
        &self,
        _t: &[ThreadId],
    ) -> Result<HashMap<ThreadId, ThreadOwner>, StoreError> {
        match self.delay {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                Ok(HashMap::new())
            }
            None => Err(StoreError::Backend(
                "connection refused to db.internal:5432 as admin".into(),
            )),
        }
    }

    async fn message_threads(
        &self,
        _m: &[MessageId],
    ) -> Result<HashMap<MessageId, MessageThread>, StoreError> {
        Err(StoreError::Backend("down".into()))
    }
}

#[tokio::test]
async fn store_failure_is_503_with_a_safe_message() {
    let layer = crate::mastra::memory_guard(BrokenStore { delay: None }, "/api").unwrap();
    let seen = send(
        layer,
        req(Method::GET, "/api/memory/threads/t-a", Some("alice"), ""),
    )
    .await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(message(&seen), "Thread store unavailable");
    assert_eq!(seen.retry_after.as_deref(), Some("5"));
    assert_eq!(seen.calls, 0);
}

#[tokio::test]
async fn store_timeout_is_503() {
    let layer = crate::mastra::memory_guard(
        BrokenStore {
            delay: Some(Duration::from_secs(5)),
        },
        "/api",
    )
    .unwrap()
    .timeout(Duration::from_millis(20));
    let seen = send(
        layer,
        req(Method::GET, "/api/memory/threads/t-a", Some("alice"), ""),
    )
    .await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.retry_after.as_deref(), Some("5"));
}

/// Ids a database cannot hold are refused (400) before any lookup: behind a store that fails
/// every lookup, a 503 would mean the id reached it. On PostgreSQL it once did, and NUL in
/// `text` made the guard report an outage.
#[tokio::test]
async fn ids_a_database_cannot_hold_never_reach_the_store() {
    let broken = || crate::mastra::memory_guard(BrokenStore { delay: None }, "/api").unwrap();
    let long = "m".repeat(257);
    let save = |id: &str| {
        serde_json::json!({"messages": [{"id": id, "threadId": "t-a", "resourceId": "alice"}]})
            .to_string()
    };
    let include = |id: &str| {
        let list = serde_json::json!([{ "id": id }]).to_string();
        let mut encoded = String::new();
        crate::query::push_encoded(&mut encoded, &list);
        format!("/api/memory/threads/t-a/messages?include={encoded}")
    };
    for id in ["m1\0", "\0", "m\u{1}", "m\u{7f}", "m\u{85}", long.as_str()] {
        let delete = |ids: serde_json::Value| {
            req(
                Method::POST,
                "/api/memory/messages/delete",
                Some("alice"),
                &serde_json::json!({ "messageIds": ids }).to_string(),
            )
        };
        for request in [
            req(
                Method::POST,
                "/api/memory/save-messages",
                Some("alice"),
                &save(id),
            ),
            delete(serde_json::json!(id)),
            delete(serde_json::json!([id])),
            delete(serde_json::json!(["m-a1", { "id": id }])),
            delete(serde_json::json!({ "id": id })),
        ] {
            let seen = send(broken(), request).await;
            assert_eq!(
                (seen.status, message(&seen)),
                (StatusCode::BAD_REQUEST, "Invalid message id"),
                "{id:?}"
            );
            assert_eq!(seen.calls, 0);
        }
        // `?include=` checks the path thread first: the memory store, then the list.
        let seen = send(mastra(), req(Method::GET, &include(id), Some("alice"), "")).await;
        assert_eq!(
            (seen.status, message(&seen)),
            (StatusCode::BAD_REQUEST, "Invalid message id"),
            "{id:?}"
        );
    }
    // A thread id in a save-messages body is refused before the message lookup, too.
    let body = r#"{"messages": [{"id": "m-a1", "threadId": "t\u0000", "resourceId": "alice"}]}"#;
    let seen = send(
        broken(),
        req(
            Method::POST,
            "/api/memory/save-messages",
            Some("alice"),
            body,
        ),
    )
    .await;
    assert_eq!(
        (seen.status, message(&seen)),
        (StatusCode::BAD_REQUEST, "Invalid thread id")
    );
}

#[tokio::test]
async fn a_value_the_store_refuses_is_400_never_an_outage() {
    let rejection = Rejection::from(GuardError::Store(StoreError::InvalidInput(
        "invalid byte sequence for encoding \"UTF8\": 0x00 (22021)".into(),
    )));
    assert_eq!(rejection.status(), StatusCode::BAD_REQUEST);
    assert_eq!(rejection.kind().grpc_code(), 3);
    assert_eq!(rejection.kind().retry_after(), None);
    assert_eq!(
        rejection.message(),
        "Invalid request: a value cannot be stored"
    );
    for outage in [StoreError::Backend("refused".into()), StoreError::Timeout] {
        let rejection = Rejection::from(GuardError::Store(outage));
        assert_eq!(rejection.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(rejection.kind().retry_after(), Some(Duration::from_secs(5)));
    }

    // Text PostgreSQL cannot hold is refused by every store, the in-memory one included, so
    // the answer never depends on the backend; nothing is written.
    let store = store();
    let alice = rid("alice");
    let at = "2026-01-01T00:00:00.000Z";
    let refused = |result: Result<(), GuardError>| {
        assert!(
            matches!(&result, Err(GuardError::Store(e)) if e.is_invalid_input()),
            "{result:?}"
        );
    };
    refused(
        store
            .create_thread(&alice, &tid("t-nul"), &ThreadFields::titled("a\0b"), at)
            .await
            .map(drop),
    );
    assert!(store.thread(&tid("t-nul")).is_none());
    refused(
        store
            .update_thread(&alice, &tid("t-a"), &ThreadFields::titled("\0"), at)
            .await
            .map(drop),
    );
    let message = |content: &str, role: &str| NewMessage {
        id: mid("m-nul"),
        thread: tid("t-a"),
        role: role.into(),
        kind: "v2".into(),
        content: content.into(),
        created_at: at.into(),
    };
    refused(
        store
            .save_messages(&alice, &[message("a\0", "user")], at)
            .await,
    );
    refused(
        store
            .save_messages(&alice, &[message("ok", "u\0")], at)
            .await,
    );
    assert!(store.message("m-nul").is_none());
    // Other control characters are text like any other, stored as given.
    store
        .save_messages(&alice, &[message("line\nbreak\u{1}", "user")], at)
        .await
        .unwrap();
    assert_eq!(
        store.message("m-nul").unwrap().content.as_deref(),
        Some("line\nbreak\u{1}")
    );
}

#[tokio::test]
async fn trusted_thread_id_overrides_the_client_and_is_rewritten_into_the_request() {
    let mut r = req(
        Method::GET,
        "/api/memory/threads/t-b/messages?x=1",
        Some("alice"),
        "",
    );
    r.extensions_mut().insert(tid("t-a"));
    let seen = send(mastra(), r).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(
        seen.body,
        "thread=t-a uri=/api/memory/threads/t-a/messages?x=1 body="
    );

    // The trusted id is checked too: it cannot be used to reach another resource's thread.
    let mut r = req(Method::GET, "/api/memory/threads/t-a", Some("bob"), "");
    r.extensions_mut().insert(tid("t-a"));
    assert_eq!(send(mastra(), r).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn thread_id_from_query_header_and_body() {
    let layer = || {
        ThreadGuardLayer::new(store()).route(
            GuardRoute::new(Method::POST, "/chat")
                .unwrap()
                .thread_from_query("threadId")
                .unwrap()
                .thread_from_header("x-thread-id")
                .unwrap()
                .thread_from_body("threadId")
                .unwrap(),
        )
    };
    let seen = send(
        layer(),
        req(Method::POST, "/chat?threadId=t-b", Some("alice"), "{}"),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    let mut r = req(Method::POST, "/chat", Some("alice"), "{}");
    r.headers_mut()
        .insert("x-thread-id", "t-b".parse().unwrap());
    assert_eq!(send(layer(), r).await.status, StatusCode::FORBIDDEN);
    let seen = send(
        layer(),
        req(
            Method::POST,
            "/chat",
            Some("alice"),
            r#"{"threadId":"t-b"}"#,
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    let seen = send(
        layer(),
        req(
            Method::POST,
            "/chat",
            Some("alice"),
            r#"{"threadId":"t-a","text":"hi"}"#,
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    // The handler reads the client's bytes, key order included.
    assert_eq!(
        seen.body,
        r#"thread=t-a uri=/chat body={"threadId":"t-a","text":"hi"}"#
    );
    let seen = send(layer(), req(Method::POST, "/chat", Some("alice"), "{}")).await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&seen), "No threadId found");
}

#[tokio::test]
async fn thread_creation_forces_the_callers_resource_and_refuses_foreign_ids() {
    let body = r#"{"title":"x","resourceId":"bob"}"#;
    let seen = send(
        mastra(),
        req(Method::POST, "/api/memory/threads", Some("alice"), body),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    let sent: serde_json::Value =
        serde_json::from_str(seen.body.split("body=").nth(1).unwrap()).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"title": "x", "resourceId": "alice"})
    );

    let seen = send(
        mastra(),
        req(Method::POST, "/api/memory/threads", Some("alice"), ""),
    )
    .await;
    assert_eq!(
        seen.body,
        r#"thread=- uri=/api/memory/threads body={"resourceId":"alice"}"#
    );

    let body = r#"{"threadId":"t-b","resourceId":"alice"}"#;
    let seen = send(
        mastra(),
        req(Method::POST, "/api/memory/threads", Some("alice"), body),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(seen.calls, 0);

    let body = r#"{"threadId":"t-new"}"#;
    let seen = send(
        mastra(),
        req(Method::POST, "/api/memory/threads", Some("alice"), body),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(seen.body.starts_with("thread=t-new "));
}

#[tokio::test]
async fn rename_cannot_reassign_the_thread() {
    let body = r#"{"title":"new","resourceId":"bob"}"#;
    let seen = send(
        mastra(),
        req(
            Method::PATCH,
            "/api/memory/threads/t-a",
            Some("alice"),
            body,
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(
        seen.body.contains(r#""resourceId":"alice""#),
        "{}",
        seen.body
    );
}

#[tokio::test]
async fn handler_gets_the_json_the_guard_decided_on() {
    // Duplicate keys on the path to an id: serde keeps the last, a first-key-wins parser the
    // first, so no reading is safe. Refused before the handler, however the key is spelled.
    let layer = || {
        ThreadGuardLayer::new(store()).route(
            GuardRoute::new(Method::POST, "/chat")
                .unwrap()
                .thread_from_body("threadId")
                .unwrap(),
        )
    };
    for body in [
        r#"{"threadId":"t-b","threadId":"t-a"}"#,
        r#"{"threadId":"t-a","thread\u0049d":"t-b"}"#,
    ] {
        let seen = send(layer(), req(Method::POST, "/chat", Some("alice"), body)).await;
        assert_eq!(seen.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            message(&seen),
            r#"Duplicate key "threadId" in request body"#
        );
        assert_eq!(seen.calls, 0);
    }
    // Duplicates elsewhere, big numbers and spacing reach the handler byte for byte.
    let body = r#"{ "n": 123456789012345678901234567890, "x":1, "x":2.50, "threadId" :"t-a" }"#;
    let seen = send(layer(), req(Method::POST, "/chat", Some("alice"), body)).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body, format!("thread=t-a uri=/chat body={body}"));
}

#[tokio::test]
async fn head_requests_are_guarded_like_get() {
    let seen = send(
        mastra(),
        req(Method::HEAD, "/api/memory/threads/t-b", Some("alice"), ""),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(seen.calls, 0);
}

#[tokio::test]
async fn repeated_thread_ids_in_query_or_header_are_ambiguous() {
    let layer = || {
        ThreadGuardLayer::new(store()).route(
            GuardRoute::new(Method::GET, "/chat")
                .unwrap()
                .thread_from_query("threadId")
                .unwrap()
                .thread_from_header("x-thread-id")
                .unwrap(),
        )
    };
    let seen = send(
        layer(),
        req(
            Method::GET,
            "/chat?threadId=t-a&threadId=t-b",
            Some("alice"),
            "",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&seen), "More than one threadId");
    let mut r = req(Method::GET, "/chat", Some("alice"), "");
    r.headers_mut()
        .append("x-thread-id", "t-a".parse().unwrap());
    r.headers_mut()
        .append("x-thread-id", "t-b".parse().unwrap());
    assert_eq!(send(layer(), r).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn saving_cannot_overwrite_another_resources_message_by_id() {
    let path = "/api/memory/save-messages";
    let body = r#"{"messages":[{"id":"m-b1","threadId":"t-a","resourceId":"alice","role":"user","content":"pwned"}]}"#;
    let seen = send(mastra(), req(Method::POST, path, Some("alice"), body)).await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(seen.calls, 0);
    let own = r#"{"messages":[{"id":"m-a1","threadId":"t-a","resourceId":"alice","role":"user","content":"edit"}]}"#;
    assert_eq!(
        send(mastra(), req(Method::POST, path, Some("alice"), own))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn delete_messages_requires_every_message_to_be_owned() {
    let path = "/api/memory/messages/delete";
    for ids in [
        r#""m-a1""#,
        r#"["m-a1","m-a2"]"#,
        r#"{"id":"m-a1"}"#,
        r#"[{"id":"m-a1"},{"id":"m-a2"}]"#,
        r#"["m-a1","nope"]"#,
    ] {
        let seen = send(
            mastra(),
            req(
                Method::POST,
                path,
                Some("alice"),
                &format!(r#"{{"messageIds":{ids}}}"#),
            ),
        )
        .await;
        assert_eq!(seen.status, StatusCode::OK, "{ids}");
    }
    let seen = send(
        mastra(),
        req(
            Method::POST,
            path,
            Some("alice"),
            r#"{"messageIds":["m-a1","m-b1"]}"#,
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&seen),
        "Access denied: thread belongs to a different resource"
    );
    assert_eq!(seen.calls, 0, "nothing may be deleted");
    for lost in ["m-orphan", "m-lost"] {
        let body = format!(r#"{{"messageIds":["m-a1","{lost}"]}}"#);
        let seen = send(mastra(), req(Method::POST, path, Some("alice"), &body)).await;
        assert_eq!(seen.status, StatusCode::FORBIDDEN);
        assert_eq!(
            message(&seen),
            "Access denied: unable to verify message thread access"
        );
    }
    let seen = send(mastra(), req(Method::POST, path, Some("alice"), "{}")).await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&seen), "messageIds is required");
    let seen = send(
        mastra(),
        req(Method::POST, path, Some("alice"), r#"{"messageIds":[1]}"#),
    )
    .await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn message_in_path_must_be_owned() {
    let layer = || {
        ThreadGuardLayer::new(store()).route(
            GuardRoute::new(Method::DELETE, "/messages/{id}")
                .unwrap()
                .messages_from_path("id")
                .unwrap(),
        )
    };
    assert_eq!(
        send(
            layer(),
            req(Method::DELETE, "/messages/m-a1", Some("alice"), "")
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send(
            layer(),
            req(Method::DELETE, "/messages/m-b1", Some("alice"), "")
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn saving_messages_checks_resource_and_thread_of_each() {
    let path = "/api/memory/save-messages";
    let msg = |thread: &str, resource: &str| {
        format!(
            r#"{{"threadId":"{thread}","resourceId":"{resource}","role":"user","content":"hi"}}"#
        )
    };
    let body = |msgs: &[String]| format!(r#"{{"messages":[{}]}}"#, msgs.join(","));
    let ok = body(&[msg("t-a", "alice"), msg("t-new", "alice")]);
    assert_eq!(
        send(mastra(), req(Method::POST, path, Some("alice"), &ok))
            .await
            .status,
        StatusCode::OK
    );

    let other_resource = body(&[msg("t-a", "alice"), msg("t-new", "bob")]);
    let seen = send(
        mastra(),
        req(Method::POST, path, Some("alice"), &other_resource),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&seen),
        "Access denied: cannot save messages for a different resource"
    );

    let foreign_thread = body(&[msg("t-b", "alice")]);
    let seen = send(
        mastra(),
        req(Method::POST, path, Some("alice"), &foreign_thread),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&seen),
        "Access denied: thread belongs to a different resource"
    );

    let invalid = r#"{"messages":[{"threadId":"t-a"},{"resourceId":"alice"},{"threadId":"t-a","resourceId":"alice"}]}"#;
    let seen = send(mastra(), req(Method::POST, path, Some("alice"), invalid)).await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&seen),
        "All messages must have threadId and resourceId fields. Found 2 invalid message(s)."
    );
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused_before_the_handler() {
    let layer = || mastra().max_body_bytes(64);
    let big = format!(r#"{{"title":"{}"}}"#, "x".repeat(100));
    let seen = send(
        layer(),
        req(Method::POST, "/api/memory/threads", Some("alice"), &big),
    )
    .await;
    assert_eq!(seen.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(message(&seen), "Request body too large");
    // No Content-Length: the limit is enforced while reading.
    let mut r = req(Method::POST, "/api/memory/threads", Some("alice"), &big);
    r.headers_mut().remove(http::header::CONTENT_LENGTH);
    assert_eq!(send(layer(), r).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A declared length over the limit is refused before reading, on a route whose body the
    // guard reads itself (the scope layer has read Mastra's bodies, under its own limit).
    let chat = ThreadGuardLayer::new(store())
        .route(
            GuardRoute::new(Method::POST, "/chat")
                .unwrap()
                .thread_from_body("threadId")
                .unwrap(),
        )
        .max_body_bytes(64);
    let mut r = req(Method::POST, "/chat", Some("alice"), "");
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, "100000".parse().unwrap());
    assert_eq!(send(chat, r).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let seen = send(
        layer(),
        req(
            Method::POST,
            "/api/memory/threads",
            Some("alice"),
            "{not json",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST);
    assert_eq!(seen.calls, 0);
    let seen = send(
        layer(),
        req(Method::POST, "/api/memory/threads", Some("alice"), "[1,2]"),
    )
    .await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn grpc_requests_get_guard_codes_in_trailers() {
    let layer = || {
        ThreadGuardLayer::new(store()).route(
            GuardRoute::new(Method::POST, "/memory.Threads/Get")
                .unwrap()
                .thread_from_header("x-thread-id")
                .unwrap(),
        )
    };
    let grpc = |thread: &str| {
        let mut r = req(Method::POST, "/memory.Threads/Get", Some("alice"), "");
        r.headers_mut()
            .insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
        r.headers_mut()
            .insert("x-thread-id", thread.parse().unwrap());
        r
    };
    for (thread, code) in [("t-b", "7"), ("t-none", "5")] {
        let seen = send(layer(), grpc(thread)).await;
        assert_eq!(seen.status, StatusCode::OK);
        assert_eq!(seen.calls, 0, "{thread}");
        assert_eq!(seen.rejection.unwrap().kind().grpc_code().to_string(), code);
    }
    let svc = layer().layer(service_fn(|_r: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let res = svc.oneshot(grpc("t-b")).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "7");
    assert_eq!(
        res.headers()["grpc-message"],
        "Access denied: thread belongs to a different resource"
    );
}

#[test]
fn routes_naming_unknown_parameters_are_config_errors() {
    // Refused by the setter that names the parameter, before any layer is built.
    let route = GuardRoute::new(Method::GET, "/threads/{id}").unwrap();
    assert!(route.clone().thread_from_path("threadId").is_err());
    assert!(route.clone().messages_from_path("threadId").is_err());
    assert!(route.clone().thread_from_path("id").is_ok());
    let route = GuardRoute::new(Method::GET, "/t").unwrap();
    assert!(route.clone().thread_from_header("bad header").is_err());
    assert!(route.clone().thread_from_query("").is_err());
    assert!(route.clone().thread_from_body("a..b").is_err());
    assert!(route.clone().messages_from_body("").is_err());
    assert!(GuardRoute::new(Method::GET, "threads").is_err());
}

#[tokio::test]
async fn handler_side_checks_match_the_layer() {
    let guard = OwnershipCheck::new(store());
    assert_eq!(guard.check_thread(&rid("alice"), &tid("t-a")).await, Ok(()));
    assert_eq!(
        guard.check_thread(&rid("alice"), &tid("t-b")).await,
        Err(GuardError::ForeignThread)
    );
    assert_eq!(
        guard.check_thread(&rid("alice"), &tid("t-x")).await,
        Err(GuardError::ThreadNotFound)
    );
    assert_eq!(
        guard
            .check_thread_or_missing(&rid("alice"), &tid("t-x"))
            .await,
        Ok(ThreadPresence::Missing)
    );
    assert_eq!(
        guard.check_messages(&rid("bob"), &[mid("m-a1")]).await,
        Err(GuardError::ForeignThread)
    );
    let hidden = OwnershipCheck::new(store()).hide_foreign_threads();
    assert_eq!(
        hidden.check_thread(&rid("alice"), &tid("t-b")).await,
        Err(GuardError::ThreadNotFound)
    );
    let rejection = Rejection::from(GuardError::Store(StoreError::Backend("secret-host".into())));
    assert_eq!(rejection.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!rejection.message().contains("secret-host"));
}

#[cfg(feature = "tonic")]
#[test]
fn guard_errors_convert_to_grpc_status() {
    assert_eq!(
        tonic::Status::from(GuardError::ForeignThread).code(),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        tonic::Status::from(GuardError::ThreadNotFound).code(),
        tonic::Code::NotFound
    );
    let status = tonic::Status::from(GuardError::Store(StoreError::Timeout));
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "Thread store unavailable");
}

#[tokio::test]
async fn body_routes_force_the_callers_resource_and_check_body_threads() {
    // Working memory and buffer status take `resourceId` (and `threadId`) in the body.
    let seen = send(
        mastra(),
        req(
            Method::POST,
            "/api/memory/threads/t-a/working-memory",
            Some("alice"),
            r#"{"workingMemory":"x","resourceId":"bob"}"#,
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(
        seen.body.contains(r#""resourceId":"alice""#),
        "{}",
        seen.body
    );
    assert!(!seen.body.contains("bob"), "{}", seen.body);
    let seen = send(
        mastra(),
        req(
            Method::POST,
            "/api/memory/observational-memory/buffer-status",
            Some("alice"),
            r#"{"agentId":"a","threadId":"t-b","resourceId":"bob"}"#,
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert_eq!(seen.calls, 0);
    let seen = send(
        mastra(),
        req(
            Method::POST,
            "/api/memory/observational-memory/buffer-status",
            Some("alice"),
            r#"{"agentId":"a","threadId":"t-new","resourceId":"bob"}"#,
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(
        seen.body.contains(r#""resourceId":"alice""#),
        "{}",
        seen.body
    );
}

#[tokio::test]
async fn included_messages_and_threads_must_be_the_callers() {
    let listing = |include: &str| {
        let include: String = include.bytes().map(|b| format!("%{b:02X}")).collect();
        req(
            Method::GET,
            &format!("/api/memory/threads/t-a/messages?include={include}"),
            Some("alice"),
            "",
        )
    };
    for (include, expected) in [
        (r#"[{"id":"m-a2","threadId":"t-a"}]"#, StatusCode::OK),
        (r#"[{"id":"m-unknown"}]"#, StatusCode::OK),
        (r#"[{"id":"m-b1"}]"#, StatusCode::FORBIDDEN),
        (r#"[{"id":"m-a1","threadId":"t-b"}]"#, StatusCode::FORBIDDEN),
        (
            r#"[{"id":"m-a1"},{"id":"m-b1","withPreviousMessages":2}]"#,
            StatusCode::FORBIDDEN,
        ),
        // A key given twice could name either message: refused before any lookup.
        (r#"[{"id":"m-a1","id":"m-b1"}]"#, StatusCode::BAD_REQUEST),
        (r#"{"id":"m-b1"}"#, StatusCode::BAD_REQUEST),
        (r#"[{"threadId":"t-b"}]"#, StatusCode::BAD_REQUEST),
        ("not json", StatusCode::BAD_REQUEST),
    ] {
        let seen = send(mastra(), listing(include)).await;
        assert_eq!(seen.status, expected, "{include}");
        assert_eq!(
            seen.calls,
            usize::from(expected == StatusCode::OK),
            "{include}"
        );
    }
    // Given twice, it is ambiguous.
    let seen = send(
        mastra(),
        req(
            Method::GET,
            "/api/memory/threads/t-a/messages?include=%5B%5D&include=%5B%5D",
            Some("alice"),
            "",
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST);
}

/// A request body that sends its first chunk and then never another (a stalled upload).
struct Stalled(Option<Bytes>);

impl From<Bytes> for Stalled {
    fn from(bytes: Bytes) -> Self {
        Self(Some(bytes))
    }
}

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match self.0.take() {
            Some(bytes) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes)))),
            None => std::task::Poll::Pending,
        }
    }
}

#[tokio::test]
async fn stalled_body_is_refused_with_408_at_the_body_timeout() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let svc = mastra()
        .body_timeout(Duration::from_millis(50))
        .layer(service_fn(move |_req: Request<Stalled>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
        }));
    let mut r = Request::builder()
        .method(Method::POST)
        .uri("/api/memory/threads")
        .body(Stalled(Some(Bytes::from_static(br#"{"title":"#))))
        .unwrap();
    r.extensions_mut().insert(rid("alice"));
    let started = std::time::Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(5), svc.oneshot(r))
        .await
        .expect("the guard gives up on its own")
        .unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(50));
    let why = res.extensions().get::<Rejection>().unwrap();
    assert_eq!(why.kind(), crate::RejectionKind::RequestTimeout);
    assert_eq!(why.message(), "Request body not received in time");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never runs");
}

#[test]
fn request_timeout_renders_408_and_grpc_deadline_exceeded() {
    let kind = crate::RejectionKind::RequestTimeout;
    assert_eq!(kind.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(kind.grpc_code(), 4);
    assert!(!kind.has_challenge());
}

fn agents() -> ThreadGuardLayer<MemoryThreadStore> {
    ThreadGuardLayer::new(store()).routes(crate::mastra::agent_guard_routes("/api").unwrap())
}

#[tokio::test]
async fn agent_routes_check_memory_thread_and_the_legacy_thread_id_alike() {
    for (path, body) in [
        ("/api/agents/a/stream", r#"{"memory":{"thread":"t-b"}}"#),
        (
            "/api/agents/a/stream",
            r#"{"memory":{"thread":{"id":"t-b"}}}"#,
        ),
        ("/api/agents/a/generate", r#"{"threadId":"t-b"}"#),
        (
            "/api/agents/a/stream-legacy",
            r#"{"threadId":"t-b","resourceId":"bob"}"#,
        ),
        (
            "/api/agents/a/stream/vnext",
            r#"{"memory":{"thread":"t-b"},"threadId":"t-b"}"#,
        ),
    ] {
        let seen = send(agents(), req(Method::POST, path, Some("alice"), body)).await;
        assert_eq!(seen.status, StatusCode::FORBIDDEN, "{path} {body}");
        assert_eq!(seen.calls, 0);
    }
    // The caller's thread, or a new one: admitted, and named to the handler.
    for thread in ["t-a", "t-new"] {
        let body =
            format!(r#"{{"memory":{{"thread":{{"id":"{thread}"}}}},"threadId":"{thread}"}}"#);
        let seen = send(
            agents(),
            req(Method::POST, "/api/agents/a/generate", Some("alice"), &body),
        )
        .await;
        assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
        assert!(
            seen.body.starts_with(&format!("thread={thread} ")),
            "{}",
            seen.body
        );
    }
    // No memory: no thread.
    let seen = send(
        agents(),
        req(
            Method::POST,
            "/api/agents/a/stream",
            Some("alice"),
            r#"{"messages":"hi"}"#,
        ),
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(seen.body.starts_with("thread=- "), "{}", seen.body);
}

#[tokio::test]
async fn body_fields_naming_two_different_threads_are_refused() {
    for body in [
        r#"{"memory":{"thread":"t-a"},"threadId":"t-b"}"#,
        r#"{"memory":{"thread":{"id":"t-a"}},"threadId":"t-new"}"#,
        r#"{"threadId":"t-a","memory":{"thread":"t-a2"}}"#,
    ] {
        let seen = send(
            agents(),
            req(Method::POST, "/api/agents/a/stream", Some("alice"), body),
        )
        .await;
        assert_eq!(seen.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(message(&seen), "The request names two different threads");
        assert_eq!(seen.calls, 0);
    }
}

#[tokio::test]
async fn a_trusted_thread_id_replaces_every_body_field_naming_a_thread() {
    let mut r = req(
        Method::POST,
        "/api/agents/a/stream",
        Some("alice"),
        r#"{"memory":{"thread":{"id":"t-x"}},"threadId":"t-x"}"#,
    );
    r.extensions_mut().insert(tid("t-a"));
    let seen = send(agents(), r).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(seen.body.starts_with("thread=t-a "), "{}", seen.body);
    assert!(!seen.body.contains("t-x"), "{}", seen.body);
    // Scope forced the resources; the guard replaced both thread ids; nothing else changed.
    assert_eq!(
        seen.body,
        r#"thread=t-a uri=/api/agents/a/stream body={"memory":{"thread":{"id":"t-a"},"resource":"alice"},"threadId":"t-a","resourceId":"alice"}"#
    );
}

#[test]
fn one_body_field_named_twice_for_a_thread_is_a_configuration_error() {
    let route = GuardRoute::new(Method::POST, "/chat").unwrap();
    let route = route.thread_from_body("memory.thread").unwrap();
    assert!(route.clone().thread_from_body("memory.thread").is_err());
    assert!(route.clone().thread_from_body("memory").is_err());
    assert!(route.thread_from_body("threadId").is_ok());
}
