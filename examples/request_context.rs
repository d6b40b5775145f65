//! Mastra's `RequestContext.set('temperature-unit', ..)`, the typed way: a small layer reads the
//! `CF-IPCountry` header and inserts a `TemperatureUnit` into the request's extensions, after
//! authentication; the handler reads it like the user and the resource id.
//!
//! ```text
//! cargo run --example request_context --features axum
//! ```

#[path = "shared/demo.rs"]
pub mod demo;

use axum::routing::get;
use axum::{Extension, Router};
use demo::Claims;
use http::Request;
use tower::ServiceBuilder;
use tower_scope::{Authenticated, ResourceScopeLayer};

/// The unit a weather agent should answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemperatureUnit {
    /// Fahrenheit, for the US.
    Fahrenheit,
    /// Celsius, everywhere else.
    Celsius,
}

/// Chooses the unit from the CDN's country header; a typed value, not a string key.
fn with_unit<B>(mut req: Request<B>) -> Request<B> {
    let us = req
        .headers()
        .get("cf-ipcountry")
        .is_some_and(|c| c.as_bytes().eq_ignore_ascii_case(b"US"));
    req.extensions_mut().insert(if us {
        TemperatureUnit::Fahrenheit
    } else {
        TemperatureUnit::Celsius
    });
    req
}

async fn weather(
    user: Authenticated<Claims>,
    Extension(unit): Extension<TemperatureUnit>,
) -> String {
    match unit {
        TemperatureUnit::Fahrenheit => format!("{}: 68°F", user.sub),
        TemperatureUnit::Celsius => format!("{}: 20°C", user.sub),
    }
}

/// The app: auth -> scope -> context -> handler.
pub fn app() -> Router {
    Router::new().route("/api/weather", get(weather)).layer(
        ServiceBuilder::new()
            .layer(demo::auth_layer())
            .layer(ResourceScopeLayer::new(demo::resource_of))
            .map_request(with_unit),
    )
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4115")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    println!(
        "curl -H 'CF-IPCountry: US' -H 'Authorization: Bearer {}' http://{addr}/api/weather",
        demo::token("alice", None)
    );
    axum::serve(listener, app()).await.expect("server error");
}
