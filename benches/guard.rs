//! ThreadGuardLayer overhead with the in-memory store and with SQLite, against the bare
//! handler in the same run. `cargo bench --bench guard --features guard,sqlite`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_scope::guard::{MemoryThreadStore, SqlThreadStore, ThreadStore};
use tower_scope::{MessageId, ResourceId, ThreadId};

async fn handler(_req: Request<Full<Bytes>>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

fn request(method: Method, uri: &str, body: &'static str) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    req.extensions_mut()
        .insert(ResourceId::new("alice").unwrap());
    req
}

async fn drive<S>(svc: &S, method: Method, uri: &str, body: &'static str) -> u16
where
    S: Service<Request<Full<Bytes>>, Response = Response<String>, Error = Infallible> + Clone,
{
    svc.clone()
        .oneshot(request(method, uri, body))
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn guarded<St: ThreadStore>(
    store: St,
) -> impl Service<Request<Full<Bytes>>, Response = Response<String>, Error = Infallible, Future: Send>
+ Clone {
    tower_scope::mastra::memory_guard(store, "/api")
        .unwrap()
        .layer(service_fn(handler))
}

/// Scope (forcing the body's `resourceId`) in front of the guard: thread creation's whole path.
fn scoped<St: ThreadStore>(
    store: St,
) -> impl Service<Request<Full<Bytes>>, Response = Response<String>, Error = Infallible, Future: Send>
+ Clone {
    let never: fn(&()) -> Option<String> = |_| None;
    tower_scope::ResourceScopeLayer::new(never)
        .body_rules(tower_scope::mastra::memory_body_rules("/api").unwrap())
        .layer(guarded(store))
}

/// A thread-creation body: its `resourceId` is forced, the rest must arrive as sent.
const CREATE: &str = r#"{"threadId":"t-new","title":"diary","resourceId":"bob","metadata":{"big":123456789012345678901234567890,"tags":["a","b"],"f":0.30000000000000004}}"#;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let memory = MemoryThreadStore::new();
    for i in 0..1000 {
        let owner = if i % 2 == 0 { "alice" } else { "bob" };
        memory.insert_thread(
            ThreadId::new(format!("t-{i}")).unwrap(),
            Some(ResourceId::new(owner).unwrap()),
        );
        memory.insert_message(
            MessageId::new(format!("m-{i}")).unwrap(),
            Some(ThreadId::new(format!("t-{i}")).unwrap()),
        );
    }
    let sqlite = rt.block_on(async {
        let path =
            std::env::temp_dir().join(format!("tower-scope-bench-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = SqlThreadStore::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        store.create_schema().await.unwrap();
        for i in 0..1000 {
            let owner = if i % 2 == 0 { "alice" } else { "bob" };
            sqlx::query(r#"INSERT INTO mastra_threads (id, "resourceId") VALUES ($1, $2)"#)
                .bind(format!("t-{i}"))
                .bind(owner)
                .execute(store.pool())
                .await
                .unwrap();
        }
        store
    });

    let mut g = c.benchmark_group("guard");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let bare = service_fn(handler);
    g.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| drive(&bare, Method::GET, "/api/memory/threads/t-0", ""))
    });

    let mem = guarded(memory);
    g.bench_function("memory/owned_thread", |b| {
        b.to_async(&rt)
            .iter(|| drive(&mem, Method::GET, "/api/memory/threads/t-0", ""))
    });
    g.bench_function("memory/foreign_thread_403", |b| {
        b.to_async(&rt)
            .iter(|| drive(&mem, Method::GET, "/api/memory/threads/t-1", ""))
    });
    g.bench_function("memory/unguarded_route", |b| {
        b.to_async(&rt)
            .iter(|| drive(&mem, Method::GET, "/api/memory/threads", ""))
    });
    g.bench_function("memory/outside_prefix", |b| {
        b.to_async(&rt)
            .iter(|| drive(&mem, Method::GET, "/api/agents/a1", ""))
    });
    g.bench_function("memory/delete_messages_body", |b| {
        b.to_async(&rt).iter(|| {
            drive(
                &mem,
                Method::POST,
                "/api/memory/messages/delete",
                r#"{"messageIds":["m-0","m-2","m-4"]}"#,
            )
        })
    });

    let create = scoped(memory_for_create());
    // The path measured is the admitted one: the handler answers.
    assert_eq!(
        rt.block_on(drive(&create, Method::POST, "/api/memory/threads", CREATE)),
        200
    );
    g.bench_function("memory/create_thread_body", |b| {
        b.to_async(&rt)
            .iter(|| drive(&create, Method::POST, "/api/memory/threads", CREATE))
    });

    let sql = guarded(sqlite);
    g.bench_function("sqlite/owned_thread", |b| {
        b.to_async(&rt)
            .iter(|| drive(&sql, Method::GET, "/api/memory/threads/t-0", ""))
    });
    g.finish();
}

fn memory_for_create() -> MemoryThreadStore {
    let store = MemoryThreadStore::new();
    store.insert_thread(
        ThreadId::new("t-0").unwrap(),
        Some(ResourceId::new("alice").unwrap()),
    );
    store
}

criterion_group!(guard, benches);
criterion_main!(guard);
