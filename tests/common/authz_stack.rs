//! A stack for the authorization tests: `LogLayer` → `AuthorizeLayer` (derived memory
//! permissions, `memory:admin` reads every resource) → `ResourceScopeLayer` → the Mastra guard
//! on an in-memory store, in front of a handler that records what it saw.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_scope::authz::{AuthorizeLayer, ClaimGrants, ClaimPermissions, Privilege};
use tower_scope::guard::MemoryThreadStore;
use tower_scope::{
    ActingAs, AuthState, Authenticated, LogLayer, ResourceId, ResourceScopeLayer, ThreadId, mastra,
};

#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(flatten)]
    pub grants: ClaimGrants,
}

pub fn claims(json: &str) -> Claims {
    serde_json::from_str(json).unwrap()
}

fn grants_of(c: &Claims) -> &ClaimGrants {
    &c.grants
}

/// What the handler saw: the resource in force, what it acts as, and the query it got.
#[derive(Debug, Default, Clone)]
pub struct Saw {
    pub resource: Option<String>,
    pub acting: Option<ActingAs>,
    pub uri: String,
    pub thread: Option<String>,
}

pub type Svc = tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<String>, Infallible>;

pub fn stack(store: MemoryThreadStore, seen: Arc<Mutex<Option<Saw>>>, approve: bool) -> Svc {
    let source = ClaimPermissions::new(grants_of as fn(&Claims) -> &ClaimGrants)
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
        .unwrap();
    let mut authz = AuthorizeLayer::new(source)
        .derive_permissions("/api")
        .unwrap()
        .privileged(Privilege::new().methods([Method::GET]));
    if approve {
        // Alice may act on her team's resource.
        authz = authz.approve_resource(|user: &Authenticated<Claims>, requested: &ResourceId| {
            let ok = user.sub == "alice" && requested.as_str() == "team";
            async move { ok }
        });
    }
    let handler = service_fn(move |req: Request<Full<Bytes>>| {
        let saw = Saw {
            resource: req
                .extensions()
                .get::<ResourceId>()
                .map(ToString::to_string),
            acting: req.extensions().get::<ActingAs>().cloned(),
            uri: req.uri().to_string(),
            thread: req.extensions().get::<ThreadId>().map(ToString::to_string),
        };
        *seen.lock().unwrap() = Some(saw);
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    });
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new().user(|c: &Claims| c.sub.clone()))
        .layer(authz)
        .layer(
            ResourceScopeLayer::new(|c: &Claims| Some(c.sub.clone()))
                .headers(["x-resource-id"])
                .unwrap(),
        )
        .layer(mastra::memory_guard(store, "/api").unwrap())
        .service(handler);
    tower::util::BoxCloneSyncService::new(svc.map_response(|r| r.map(|_| String::new())))
}

pub fn store() -> MemoryThreadStore {
    let store = MemoryThreadStore::new();
    for (thread, owner) in [("t-alice", "alice"), ("t-bob", "bob"), ("t-team", "team")] {
        store.insert_thread(
            ThreadId::new(thread).unwrap(),
            Some(ResourceId::new(owner).unwrap()),
        );
    }
    store.insert_message(
        tower_scope::MessageId::new("m-bob").unwrap(),
        Some(ThreadId::new("t-bob").unwrap()),
    );
    store
}

pub fn as_user(method: Method, uri: &str, json: &str) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::new()))
        .unwrap();
    req.extensions_mut()
        .insert(Authenticated::new(claims(json)));
    req.extensions_mut().insert(AuthState::verified::<Claims>());
    req
}

pub const ALICE: &str = r#"{"sub":"alice"}"#;
pub const ADMIN: &str = r#"{"sub":"ada","permissions":["memory:admin"]}"#;
pub const VIEWER: &str = r#"{"sub":"vera","scope":"memory:read"}"#;

pub async fn call(
    svc: &Svc,
    seen: &Arc<Mutex<Option<Saw>>>,
    req: Request<Full<Bytes>>,
) -> (StatusCode, Option<Saw>) {
    *seen.lock().unwrap() = None;
    let status = svc.clone().oneshot(req).await.unwrap().status();
    (status, seen.lock().unwrap().clone())
}
