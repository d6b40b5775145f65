//! `CorsLayer`: browser-correct CORS that cooperates with auth.
//!
//! - **Preflights** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) are answered
//!   here with 204 and the policy's headers; the inner service (auth included) never sees them.
//!   Other `OPTIONS` requests pass through to the inner service.
//! - **Every actual response** gets the CORS headers, including the 401/403/404/5xx that inner
//!   layers produce, so a browser script reads the 401 instead of a network error. Put the
//!   layer *outside* auth.
//! - `Vary` is appended to (never overwritten), and only names what the answer depends on.
//! - The policy is checked by each setter, at once, and its header values are built then: a bad
//!   origin, `*` inside a list, or credentials with `*` is a [`ConfigError`](crate::ConfigError)
//!   from the setter that completes the mistake, never a panic at request time.
//! - **Credentials only go to origins you named.** Credentials with a mirrored origin (what
//!   Mastra does when auth is configured) or with `null` are refused, like `*`: any website could read
//!   answers made with the user's session. A list ([`mastra::cors_with_credentials`](crate::mastra::cors_with_credentials)
//!   takes one) or a predicate restricts the origins; the explicit
//!   [`allow_any_origin_with_credentials_dangerously`](CorsLayer::allow_any_origin_with_credentials_dangerously)
//!   keeps the unrestricted behaviour for those who mean it.
//! - A policy no origin setter touched ([`CorsLayer::new`] alone) allows no cross-origin
//!   request at all: it fails closed.
//! - [Strict mode](CorsLayer::reject_disallowed_origins) refuses state-changing requests from
//!   other origins with 403 before the handler runs.
//!
//! Per-path policies compose with [`when_path`](crate::when_path).
//!
//! ```
//! use http::{Method, Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::{BearerAuthLayer, CorsLayer, StaticTokens};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_scope::ConfigError> {
//! let cors = CorsLayer::new()
//!     .allow_origins(["https://app.example.com", "https://*.preview.example.com"])?
//!     .allow_methods(["GET", "POST"])?
//!     .allow_headers(["authorization", "content-type"])?
//!     .allow_credentials(true)?;
//! let tokens = StaticTokens::new().token("a-long-random-api-key-0123456789", "alice");
//! let svc = ServiceBuilder::new()
//!     .layer(cors) // outside auth
//!     .layer(BearerAuthLayer::new(tokens))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!     }));
//!
//! // The preflight is answered without meeting auth.
//! let preflight = Request::builder()
//!     .method(Method::OPTIONS)
//!     .uri("/api/me")
//!     .header(header::ORIGIN, "https://pr-7.preview.example.com")
//!     .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
//!     .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
//!     .body(String::new())
//!     .unwrap();
//! let res = svc.clone().oneshot(preflight).await.unwrap();
//! assert_eq!(res.status(), StatusCode::NO_CONTENT);
//! assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://pr-7.preview.example.com");
//! assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS], "authorization, content-type");
//!
//! // The 401 from auth still carries CORS headers, so the script can read it.
//! let no_token = Request::get("/api/me")
//!     .header(header::ORIGIN, "https://app.example.com")
//!     .body(String::new())
//!     .unwrap();
//! let res = svc.oneshot(no_token).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
//! assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
//! assert_eq!(res.headers()[header::VARY], "origin");
//! # Ok(()) }
//! ```

mod config;
mod layer;
mod origin;
mod policy;
mod service;
#[cfg(test)]
mod tests;

pub use layer::CorsLayer;
pub(crate) use layer::Preset;
pub use service::{Cors, ResponseFuture};
