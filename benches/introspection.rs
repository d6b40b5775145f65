//! An introspection cache hit through `BearerAuthLayer` (alone, and with `AuthorizeLayer`
//! deciding from the cached `scope`), against the bare service in the same run.
//!
//! `cargo bench --bench introspection --features introspection,test-util,authz`. The one
//! introspection call per token goes to the mock issuer over loopback HTTP before measuring;
//! after that every request's future is ready on its first poll (a cache hit), so each
//! iteration drives exactly what hyper-util does (clone, `oneshot`) without a runtime.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method, Request, Response};
use serde::Deserialize;
use serde_json::json;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_scope::BearerAuthLayer;
use tower_scope::authz::{AuthorizeLayer, ClaimGrants, ClaimPermissions, Requirement};
use tower_scope::introspection::{ClientAuth, Endpoint, IntrospectionAuthenticator};
use tower_scope::jwks::mock::MockIssuer;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    #[serde(flatten)]
    grants: ClaimGrants,
}

fn grants(claims: &Claims) -> &ClaimGrants {
    &claims.grants
}

async fn handler(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

fn drive<S>(svc: &S, auth: &HeaderValue) -> u16
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    let mut req = Request::get("/api/memory/threads")
        .body(String::new())
        .unwrap();
    req.headers_mut().insert(AUTHORIZATION, auth.clone());
    let res = svc
        .clone()
        .oneshot(req)
        .now_or_never()
        .expect("ready on first poll")
        .unwrap();
    res.status().as_u16()
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let idp = runtime.block_on(MockIssuer::start()).unwrap();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    // A typical opaque token: 43 characters of base64url (32 random bytes), as Hydra issues.
    let token = "ory_at_0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I.q2kl1Wz6bD";
    idp.register_introspection(
        token,
        json!({"active": true, "sub": "alice", "scope": "memory:read memory:write openid",
            "client_id": "memory-app", "iss": idp.issuer(), "exp": exp, "token_type": "Bearer"}),
    );
    let (id, secret) = MockIssuer::INTROSPECTION_CLIENT;
    let auth = runtime
        .block_on(
            IntrospectionAuthenticator::<Claims>::builder()
                .endpoint(Endpoint::url(idp.introspection_url()))
                .client_auth(ClientAuth::basic(id, secret))
                .issuer(idp.issuer())
                // Long enough that no entry expires during the run.
                .cache_max_ttl(Duration::from_secs(600))
                .build(),
        )
        .unwrap();
    let header = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();

    let bare = ServiceBuilder::new().service(service_fn(handler));
    let layer = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(auth.clone()))
        .service(service_fn(handler));
    let authz =
        AuthorizeLayer::new(ClaimPermissions::new(grants as fn(&Claims) -> &ClaimGrants).scope())
            .route(
                Some(Method::GET),
                "/api/memory/threads",
                Requirement::all_of(["memory:read"]).unwrap(),
            )
            .unwrap();
    let layer_authz = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(auth))
        .layer(authz)
        .service(service_fn(handler));

    // The first request introspects (over loopback, on the runtime); every later one hits.
    let first = {
        let mut req = Request::get("/api/memory/threads")
            .body(String::new())
            .unwrap();
        req.headers_mut().insert(AUTHORIZATION, header.clone());
        runtime.block_on(layer.clone().oneshot(req)).unwrap()
    };
    assert_eq!(first.status(), 200);
    assert_eq!(drive(&layer, &header), 200);
    assert_eq!(drive(&layer_authz, &header), 200);
    assert_eq!(idp.introspection_requests(), 1);

    let mut g = c.benchmark_group("introspection");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let any = HeaderValue::from_static("Bearer x");
    g.bench_function("bare_service", |b| b.iter(|| black_box(drive(&bare, &any))));
    g.bench_function("cache_hit", |b| {
        b.iter(|| black_box(drive(&layer, &header)))
    });
    g.bench_function("cache_hit_authorize", |b| {
        b.iter(|| black_box(drive(&layer_authz, &header)))
    });
    g.finish();
    assert_eq!(
        idp.introspection_requests(),
        1,
        "every measured request was a hit"
    );
    drop(idp);
}

criterion_group!(introspection, benches);
criterion_main!(introspection);
