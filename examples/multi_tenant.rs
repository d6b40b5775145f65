//! Multi-tenant scoping: a token with an `org_id` claim is scoped to `{org}:{user}`, so the same
//! user name in two organisations never shares data; anonymous visitors of a public agent get
//! an `anon_<session>` scope from their session cookie.
//!
//! ```text
//! cargo run --example multi_tenant --features axum
//! ```

#[path = "shared/demo.rs"]
pub mod demo;

use axum::Router;
use axum::routing::get;
use tower_scope::{ResourceId, ResourceScopeLayer};

async fn scope(scope: Option<ResourceId>) -> String {
    scope.map_or_else(|| "unscoped".to_owned(), |s| s.to_string())
}

/// `/api/scope` echoes the caller's scope; auth is optional so anonymous visitors get in.
pub fn app() -> Router {
    Router::new()
        .route("/api/scope", get(scope))
        .layer(
            // Visitors with neither a token nor a session cookie get `Option<ResourceId>::None`
            // here; without this opt-in the scope layer would refuse them (fail closed).
            ResourceScopeLayer::new(demo::resource_of)
                .allow_anonymous_unscoped()
                .anonymous_cookie("session", "anon_")
                .expect("valid cookie name"),
        )
        .layer(demo::auth_layer().optional())
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4116")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    println!(
        "curl -H 'Authorization: Bearer {}' http://{addr}/api/scope   # acme:carol",
        demo::token("carol", Some("acme"))
    );
    println!("curl -H 'Cookie: session=s3ss10n' http://{addr}/api/scope   # anon_s3ss10n");
    axum::serve(listener, app()).await.expect("server error");
}
