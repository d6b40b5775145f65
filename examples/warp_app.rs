//! tower-scope around warp filters: `warp::service(..)` inside the tower stack, served with
//! hyper-util; handlers read the user with `warp::ext::get`.
//!
//! ```text
//! cargo run --example warp_app --features guard
//! ```

#[path = "shared/demo.rs"]
pub mod demo;

use demo::Claims;
use tower::ServiceBuilder;
use tower_scope::guard::{GuardError, MemoryThreadStore, OwnershipCheck};
use tower_scope::{Authenticated, Rejection, ResourceId, ResourceScopeLayer, ThreadId};
use warp::Filter;
use warp::http::StatusCode;

fn routes(
    guard: OwnershipCheck<MemoryThreadStore>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let whoami = warp::path!("api" / "whoami")
        .and(warp::ext::get::<Authenticated<Claims>>())
        .and(warp::ext::get::<ResourceId>())
        .map(|user: Authenticated<Claims>, scope: ResourceId| {
            format!("user={} resource={scope}", user.sub)
        });
    let thread = warp::path!("api" / "threads" / String)
        .and(warp::ext::get::<ResourceId>())
        .then(move |id: String, scope: ResourceId| {
            let guard = guard.clone();
            async move {
                let checked = match ThreadId::new(&id) {
                    Ok(thread) => guard.check_thread(&scope, &thread).await.map(|()| thread),
                    Err(_) => Err(GuardError::ThreadNotFound),
                };
                match checked {
                    Ok(thread) => warp::reply::with_status(
                        format!("thread={thread} checked={thread}"),
                        StatusCode::OK,
                    ),
                    Err(err) => {
                        let rejection = Rejection::from(err);
                        warp::reply::with_status(rejection.message().to_owned(), rejection.status())
                    }
                }
            }
        });
    let health = warp::path!("health").map(|| "ok");
    whoami.or(thread).or(health)
}

/// Serves on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, store: MemoryThreadStore) {
    let svc = ServiceBuilder::new()
        .layer(demo::auth_layer())
        .layer(ResourceScopeLayer::new(demo::resource_of))
        .service(warp::service(routes(OwnershipCheck::new(store))));
    demo::serve_connections(listener, svc).await;
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4114")
        .await
        .expect("bind");
    demo::print_dev_tokens(listener.local_addr().expect("addr"));
    serve(listener, demo::seeded_store()).await;
}
