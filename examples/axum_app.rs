//! tower-scope in an axum app: global layers with `Router::layer`, a per-route guard with
//! `route_layer`, extractors for the user and the resource id, and `when_path`.
//!
//! ```text
//! cargo run --example axum_app --features axum,guard
//! ```

#[path = "shared/demo.rs"]
pub mod demo;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use demo::Claims;
use tower_scope::guard::{GuardRoute, MemoryThreadStore, ThreadGuardLayer};
use tower_scope::{Authenticated, ResourceId, ResourceScopeLayer, ThreadId, when_path};

async fn whoami(user: Authenticated<Claims>, scope: ResourceId) -> String {
    format!("user={} resource={scope}", user.sub)
}

async fn thread(Path(id): Path<String>, checked: ThreadIdExt) -> String {
    format!("thread={id} checked={}", checked.0)
}

/// The `ThreadId` the guard inserted (plain `Extension` would also do).
struct ThreadIdExt(ThreadId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ThreadIdExt {
    type Rejection = axum::http::StatusCode;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ThreadId>()
            .cloned()
            .map(ThreadIdExt)
            .ok_or(axum::http::StatusCode::FORBIDDEN)
    }
}

/// The app: everything under `/api/*` is authenticated and scoped (`when_path`), the thread
/// route is guarded per route; `/health` is public.
pub fn app(store: MemoryThreadStore) -> Router {
    let route = GuardRoute::new(axum::http::Method::GET, "/api/threads/{id}")
        .and_then(|route| route.thread_from_path("id"))
        .expect("valid route");
    let guard = ThreadGuardLayer::new(store).route(route);
    Router::new()
        .route("/api/threads/{id}", get(thread))
        // route_layer: only matched routes; unknown paths stay 404.
        .route_layer(guard)
        .route("/api/whoami", get(whoami))
        .route("/health", get(|| async { "ok" }))
        // Last .layer() is outermost: auth runs before scope.
        .layer(
            when_path("/api/*", ResourceScopeLayer::new(demo::resource_of)).expect("valid pattern"),
        )
        .layer(when_path("/api/*", demo::auth_layer()).expect("valid pattern"))
}

/// Serves the app on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, store: MemoryThreadStore) {
    axum::serve(listener, app(store))
        .await
        .expect("server error");
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4112")
        .await
        .expect("bind");
    demo::print_dev_tokens(listener.local_addr().expect("addr"));
    serve(listener, demo::seeded_store()).await;
}
