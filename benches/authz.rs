//! AuthorizeLayer overhead against the bare handler in the same run: a 20-route table (the
//! request matching the last route, the worst case, and the first), Mastra's derived
//! permissions alone, and the derived table with a privilege check.
//! `cargo bench --bench authz --features authz`.

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response};
use serde::Deserialize;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_scope::authz::{AuthorizeLayer, ClaimGrants, ClaimPermissions, Privilege, Requirement};
use tower_scope::{AuthState, Authenticated};

#[derive(Deserialize)]
struct Claims {
    #[allow(dead_code)]
    sub: String,
    #[serde(flatten)]
    grants: ClaimGrants,
}

fn grants_of(c: &Claims) -> &ClaimGrants {
    &c.grants
}

async fn handler(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

fn source() -> ClaimPermissions<fn(&Claims) -> &ClaimGrants, Claims> {
    ClaimPermissions::new(grants_of as fn(&Claims) -> &ClaimGrants)
        .scope()
        .permissions()
        .role("user", ["memory:read", "memory:write", "memory:delete"])
        .unwrap()
        .default_role("user")
        .unwrap()
        .imply(
            "memory:admin",
            ["memory:read", "memory:write", "memory:delete"],
        )
        .unwrap()
}

/// Twenty routes under `/api`, in the style of a real API; the last is the memory listing.
fn twenty_routes() -> AuthorizeLayer<ClaimPermissions<fn(&Claims) -> &ClaimGrants, Claims>> {
    let mut layer = AuthorizeLayer::new(source()).protect("/api/*").unwrap();
    let names = [
        "agents",
        "workflows",
        "tools",
        "vectors",
        "logs",
        "telemetry",
        "scores",
        "evals",
        "datasets",
        "prompts",
        "traces",
        "mcp",
        "a2a",
        "networks",
        "memory-config",
        "keys",
        "users",
        "billing",
        "webhooks",
    ];
    for name in names {
        layer = layer
            .route(
                None,
                &format!("/api/{name}/:id/*"),
                Requirement::all_of([format!("{name}:read")]).unwrap(),
            )
            .unwrap();
    }
    layer
        .route(
            Some(Method::GET),
            "/api/memory/threads",
            Requirement::any_of(["memory:read", "memory:admin"]).unwrap(),
        )
        .unwrap()
}

fn request(uri: &str, user: &Authenticated<Claims>) -> Request<String> {
    let mut req = Request::get(uri).body(String::new()).unwrap();
    req.extensions_mut().insert(user.clone());
    req.extensions_mut().insert(AuthState::verified::<Claims>());
    req
}

async fn drive<S>(svc: &S, uri: &str, user: &Authenticated<Claims>) -> u16
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    svc.clone()
        .oneshot(request(uri, user))
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let user: Authenticated<Claims> = Authenticated::new(
        serde_json::from_str(r#"{"sub":"alice","scope":"openid email memory:read"}"#).unwrap(),
    );
    let bare = service_fn(handler);
    let table = twenty_routes().layer(service_fn(handler));
    let derived = AuthorizeLayer::new(source())
        .derive_permissions("/api")
        .unwrap()
        .layer(service_fn(handler));
    let privileged = AuthorizeLayer::new(source())
        .derive_permissions("/api")
        .unwrap()
        .privileged(Privilege::new().methods([Method::GET]))
        .layer(service_fn(handler));

    // Every contestant answers as intended before it is timed.
    rt.block_on(async {
        assert_eq!(drive(&bare, "/api/memory/threads", &user).await, 200);
        assert_eq!(drive(&table, "/api/memory/threads", &user).await, 200);
        assert_eq!(drive(&table, "/api/agents/a1/run", &user).await, 403);
        assert_eq!(drive(&table, "/api/unknown", &user).await, 403);
        assert_eq!(drive(&derived, "/api/memory/threads", &user).await, 200);
        assert_eq!(drive(&privileged, "/api/memory/threads", &user).await, 200);
    });

    let mut group = c.benchmark_group("authz");
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(drive(&bare, "/api/memory/threads", &user).await) })
    });
    group.bench_function("20 routes, match on the last", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(drive(&table, "/api/memory/threads", &user).await) })
    });
    group.bench_function("20 routes, match on the first", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(drive(&table, "/api/agents/a1/x", &user).await) })
    });
    group.bench_function("derived memory:read", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(drive(&derived, "/api/memory/threads", &user).await) })
    });
    group.bench_function("derived + privilege check", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(drive(&privileged, "/api/memory/threads", &user).await) })
    });
    group.finish();
}

criterion_group!(authz, benches);
criterion_main!(authz);
