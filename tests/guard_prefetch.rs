//! `ThreadGuardLayer::prefetch_thread_records`: on a guarded read the guard's one lookup both
//! decides and hands the thread's record to the handler (a read queries once). The decision is
//! the same as without it: another resource's thread is still 403, a missing one 404, and
//! nothing is handed over on writes or refusals. SQLite, in memory.
#![cfg(all(feature = "guard", feature = "sqlite"))]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt, service_fn};
use tower_scope::guard::{
    PrefetchedThread, SqlThreadStore, ThreadFields, ThreadRecord, ThreadWrites,
};
use tower_scope::{ResourceId, ThreadId, mastra};

fn rid(s: &str) -> ResourceId {
    ResourceId::new(s).unwrap()
}

async fn store() -> SqlThreadStore {
    // A file (a pool's `sqlite::memory:` connections would each see their own database).
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let file = std::env::temp_dir().join(format!(
        "tower-scope-prefetch-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&file);
    let store = SqlThreadStore::connect(&format!("sqlite://{}?mode=rwc", file.display()))
        .await
        .unwrap();
    store.create_schema().await.unwrap();
    let at = "2026-12-02T00:00:00.000Z";
    let fields = ThreadFields {
        title: Some("alice's".into()),
        metadata: Some(r#"{"k": 1}"#.into()),
    };
    store
        .create_thread(
            &rid("alice"),
            &ThreadId::new("t-alice").unwrap(),
            &fields,
            at,
        )
        .await
        .unwrap();
    store
        .create_thread(
            &rid("bob"),
            &ThreadId::new("t-bob").unwrap(),
            &ThreadFields::titled("bob's"),
            at,
        )
        .await
        .unwrap();
    store
}

/// Sends one request as `who`; returns the status and what the handler was handed.
async fn send(
    store: &SqlThreadStore,
    prefetch: bool,
    method: Method,
    uri: &str,
    who: &str,
) -> (StatusCode, Option<Option<ThreadRecord>>) {
    let seen = Arc::new(Mutex::new(None));
    let inner = {
        let seen = Arc::clone(&seen);
        service_fn(move |req: Request<Full<Bytes>>| {
            let record = req
                .extensions()
                .get::<PrefetchedThread>()
                .map(|p| p.0.clone());
            *seen.lock().unwrap() = Some(record);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        })
    };
    let mut guard = mastra::memory_guard(store.clone(), "/api").unwrap();
    if prefetch {
        guard = guard.prefetch_thread_records();
    }
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::new()))
        .unwrap();
    req.extensions_mut().insert(rid(who));
    // As in a real stack: scope in front (a trusted `ResourceId`, the body rules applied).
    let scope = tower_scope::ResourceScopeLayer::new(|_: &()| None::<String>)
        .body_rules(mastra::memory_body_rules("/api").unwrap());
    let response = scope.layer(guard.layer(inner)).oneshot(req).await.unwrap();
    let status = response.status();
    let handed = seen.lock().unwrap().clone();
    (status, handed)
}

#[tokio::test]
async fn a_guarded_read_hands_the_record_it_decided_on() {
    let store = store().await;
    let (status, handed) = send(
        &store,
        true,
        Method::GET,
        "/api/memory/threads/t-alice",
        "alice",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let record = handed.unwrap().unwrap();
    assert_eq!(record.id.as_str(), "t-alice");
    assert_eq!(record.resource, Some(rid("alice")));
    assert_eq!(record.title.as_deref(), Some("alice's"));
    assert_eq!(record.metadata.as_deref(), Some(r#"{"k": 1}"#));
    // The messages route is a read of the same thread.
    let (_, handed) = send(
        &store,
        true,
        Method::GET,
        "/api/memory/threads/t-alice/messages",
        "alice",
    )
    .await;
    assert_eq!(handed.unwrap().unwrap().id.as_str(), "t-alice");
    // Without the option, nothing is handed over.
    let (status, handed) = send(
        &store,
        false,
        Method::GET,
        "/api/memory/threads/t-alice",
        "alice",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(handed, Some(None));
}

#[tokio::test]
async fn decisions_are_unchanged_and_nothing_leaks_on_refusals_or_writes() {
    let store = store().await;
    for prefetch in [false, true] {
        // Another resource's thread: 403 and the handler never runs.
        let (status, handed) = send(
            &store,
            prefetch,
            Method::GET,
            "/api/memory/threads/t-bob",
            "alice",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "prefetch {prefetch}");
        assert_eq!(handed, None);
        // A missing thread: 404.
        let (status, handed) = send(
            &store,
            prefetch,
            Method::GET,
            "/api/memory/threads/t-none",
            "alice",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "prefetch {prefetch}");
        assert_eq!(handed, None);
        // A write of one's own thread passes, with no record handed (writes re-read in the
        // owner-conditional statement).
        let (status, handed) = send(
            &store,
            prefetch,
            Method::PATCH,
            "/api/memory/threads/t-alice",
            "alice",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "prefetch {prefetch}");
        assert_eq!(handed, Some(None));
    }
}
