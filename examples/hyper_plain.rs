//! tower-scope in front of a plain hyper `service_fn`, served with hyper-util's
//! `TowerToHyperService`; the thread check runs in the handler with `OwnershipCheck`.
//!
//! ```text
//! cargo run --example hyper_plain --features guard
//! ```

#[path = "shared/demo.rs"]
pub mod demo;

use std::convert::Infallible;

use bytes::Bytes;
use demo::Claims;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tower::ServiceBuilder;
use tower_scope::guard::{MemoryThreadStore, OwnershipCheck};
use tower_scope::{Authenticated, Rejection, ResourceId, ResourceScopeLayer, ThreadId};

async fn handle(
    guard: OwnershipCheck<MemoryThreadStore>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |s: String| Response::new(Full::new(Bytes::from(s)));
    let (Some(user), Some(scope)) = (
        req.extensions().get::<Authenticated<Claims>>(),
        req.extensions().get::<ResourceId>(),
    ) else {
        return Ok(text("health: ok".into()));
    };
    let path = req.uri().path();
    if path == "/api/whoami" {
        return Ok(text(format!("user={} resource={scope}", user.sub)));
    }
    if let Some(id) = path.strip_prefix("/api/threads/") {
        let Ok(thread) = ThreadId::new(id) else {
            return Ok(Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Full::default())
                .expect("valid response"));
        };
        return Ok(match guard.check_thread(scope, &thread).await {
            Ok(()) => text(format!("thread={thread} checked={thread}")),
            // The same answer the layer would give, rendered by the crate.
            Err(err) => Rejection::from(err).into_response(req.headers()),
        });
    }
    Ok(Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body(Full::default())
        .expect("valid response"))
}

/// Serves on `listener` until the process ends: one `tower::Service` stack per connection.
pub async fn serve(listener: tokio::net::TcpListener, store: MemoryThreadStore) {
    let guard = OwnershipCheck::new(store);
    let svc = ServiceBuilder::new()
        .layer(demo::auth_layer())
        .layer(ResourceScopeLayer::new(demo::resource_of))
        .service(tower::service_fn(move |req| handle(guard.clone(), req)));
    demo::serve_connections(listener, svc).await;
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4113")
        .await
        .expect("bind");
    demo::print_dev_tokens(listener.local_addr().expect("addr"));
    serve(listener, demo::seeded_store()).await;
}
