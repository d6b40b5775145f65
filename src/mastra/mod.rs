//! Mastra's policy as presets: what a Mastra server does, ready to put in front of a Rust one.
//!
//! The layers themselves are framework- and product-neutral; this module holds the choices
//! Mastra made, so a service that shares clients with a Mastra deployment behaves the same:
//!
//! - [`cors`] and [`cors_with_credentials`] (feature `cors`): Mastra's CORS defaults, without
//!   and with credentials. Unlike Mastra, credentials are never sent to an origin nobody named.
//! - [`memory_body_rules`], [`memory_guard_routes`] and [`memory_guard`] (feature `guard`):
//!   Mastra's memory API for the scope layer (the JSON fields that carry a resource id) and
//!   the guard (which thread or message each route names).
//! - [`agent_body_rules`] and [`agent_guard_routes`] (feature `guard`): Mastra's agent routes
//!   (`POST /api/agents/{agentId}/generate`, `/stream`, ...), whose body carries `memory:
//!   {resource, thread}` or the legacy `resourceId` / `threadId`.
//! - The refusal messages Mastra's clients see in `{"error": "..."}` bodies (`Invalid or expired
//!   token`, `Access denied`, ...) are the crate's defaults; turn the bodies on with
//!   `.json_errors()` on a layer or with [`JsonErrorLayer`](crate::JsonErrorLayer).
//!
//! ```
//! # #[cfg(feature = "cors")]
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_scope::ConfigError> {
//! use http::{Method, Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::mastra;
//!
//! // Mastra with auth configured: the studio's origin may call with credentials.
//! let cors = mastra::cors_with_credentials(["https://studio.example.com"])?
//!     .allow_headers(["x-tenant"])?;
//! let svc = ServiceBuilder::new()
//!     .layer(cors)
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//!
//! let preflight = Request::builder()
//!     .method(Method::OPTIONS)
//!     .uri("/api/memory/threads")
//!     .header(header::ORIGIN, "https://studio.example.com")
//!     .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
//!     .body(String::new())
//!     .unwrap();
//! let res = svc.clone().oneshot(preflight).await.unwrap();
//! assert_eq!(res.status(), StatusCode::NO_CONTENT);
//! assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
//! assert_eq!(res.headers()[header::ACCESS_CONTROL_MAX_AGE], "3600");
//! assert!(res.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
//!     .to_str()
//!     .unwrap()
//!     .ends_with("x-mastra-dev-playground, x-tenant"));
//!
//! // Another site gets no CORS headers, so its scripts cannot read the answer.
//! let other = Request::get("/api/memory/threads")
//!     .header(header::ORIGIN, "https://evil.example")
//!     .body(String::new())
//!     .unwrap();
//! let res = svc.oneshot(other).await.unwrap();
//! assert!(res.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
//!
//! // Mastra's habit of reflecting any origin with credentials is refused.
//! assert!(mastra::cors().mirror_origin()?.allow_credentials(true).is_err());
//! # Ok(()) }
//! # #[cfg(not(feature = "cors"))] fn main() {}
//! ```
//!
//! The memory API and the agent routes, for the scope layer and the guard:
//!
//! ```
//! # #[cfg(feature = "guard")] {
//! use tower_scope::guard::MemoryThreadStore;
//! use tower_scope::{ResourceScopeLayer, mastra};
//!
//! let scope = ResourceScopeLayer::new(|user: &String| Some(user.clone()))
//!     .body_rules(mastra::memory_body_rules("/api")?)
//!     .body_rules(mastra::agent_body_rules("/api")?);
//! let guard = mastra::memory_guard(MemoryThreadStore::new(), "/api")?
//!     .routes(mastra::agent_guard_routes("/api")?);
//! # let _ = (scope, guard);
//! # }
//! # Ok::<(), tower_scope::ConfigError>(())
//! ```

#[cfg(feature = "cors")]
mod cors;
pub(crate) mod messages;
#[cfg(feature = "guard")]
mod routes;

#[cfg(feature = "cors")]
pub use cors::{cors, cors_with_credentials};
#[cfg(feature = "guard")]
pub use routes::{
    agent_body_rules, agent_guard_routes, memory_body_rules, memory_guard, memory_guard_routes,
};
