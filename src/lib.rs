//! # tower-scope
//!
//! Framework-agnostic [`tower`](https://docs.rs/tower) layers that let a multi-user HTTP or
//! gRPC service answer, on every request:
//!
//! 1. **who is calling** — [`BearerAuthLayer`] (strict RFC 6750 bearer tokens, JWT through
//!    [`jwt::JwtAuthenticator`], API keys through [`StaticTokens`], or any async closure);
//! 2. **which data they may touch** — [`ResourceScopeLayer`] maps the user to a [`ResourceId`]
//!    and overrides any scope the client tried to supply.
//!
//! Every layer works on `http::Request<B>` / `http::Response<B>` and hands its results to the
//! inner service through [`http::Extensions`](::http::Extensions), so one stack serves axum, tonic, warp and plain
//! hyper alike. Rejections are typed ([`Rejection`]) and rendered in one place: RFC 6750
//! challenges for HTTP, trailers-only answers for gRPC, and opt-in JSON bodies.
//!
//! ## Order
//!
//! Outermost first: `LogLayer -> CorsLayer -> BearerAuthLayer -> ResourceScopeLayer ->
//! ThreadGuardLayer -> handler`. In axum the *last* `.layer()` call is the outermost; with
//! `tower::ServiceBuilder` and tonic's `Server::builder()` the *first* is.
//!
//! ## The contract between layers
//!
//! What a request *says* about itself (its content type, gRPC markers, `Origin`, `x-*` headers,
//! how its query is spelled) may change how a refusal is rendered, never whether it is
//! authenticated, scoped, guarded or refused. Layers hand their conclusions on as typed
//! extensions: [`BearerAuthLayer`] always leaves an [`AuthState`] (and [`Authenticated<U>`] when
//! it verified a user); [`ResourceScopeLayer`] reads them and refuses a request no
//! authentication layer saw; the guard reads [`ResourceId`]; `LogLayer` reads all of them, on
//! refusals too. A trusted custom layer can set the same values.
//!
//! ## Example
//!
//! ```
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::{BearerAuthLayer, ResourceId, ResourceScopeLayer, StaticTokens};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let tokens = StaticTokens::new().token("alice-api-key-0123456789abcdef", String::from("alice"));
//! let svc = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(tokens))
//!     .layer(ResourceScopeLayer::new(|user: &String| Some(format!("user:{user}"))))
//!     .service(service_fn(|req: Request<String>| async move {
//!         // The handler trusts the scoped query: the layer rewrote `?resourceId=`.
//!         let scope = req.extensions().get::<ResourceId>().unwrap().to_string();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("{scope} {}", req.uri())))
//!     }));
//!
//! let req = Request::get("/api/memory/threads?resourceId=bob")
//!     .header(header::AUTHORIZATION, "Bearer alice-api-key-0123456789abcdef")
//!     .body(String::new())
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.into_body(), "user:alice /api/memory/threads?resourceId=user%3Aalice");
//! # }
//! ```
//!
//! ## Naming the stack
//!
//! Every layer's service names only the inner service and its own configuration, so a whole
//! stack fits in a `type` alias (to store it in a struct, return it, or put it in a `static`).
//! Closures cannot be named: give the scope layer a [`scope::ResolveResource`] type instead.
//!
//! ```
//! use std::convert::Infallible;
//! use std::future::{Ready, ready};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn, util::ServiceFn};
//! use tower_scope::auth::BearerAuth;
//! use tower_scope::scope::{ResolveResource, ResourceScope};
//! use tower_scope::{Authenticated, BearerAuthLayer, Rejection, ResourceId, ResourceScopeLayer, StaticTokens};
//!
//! /// Resource id = the user name.
//! #[derive(Clone)]
//! struct ByName;
//!
//! impl ResolveResource for ByName {
//!     type User = String;
//!     type Future = Ready<Result<Option<ResourceId>, Rejection>>;
//!     fn resolve(&self, user: &Authenticated<String>) -> Self::Future {
//!         ready(Ok(ResourceId::new(user.as_str()).ok()))
//!     }
//! }
//!
//! type Handler = ServiceFn<fn(Request<String>) -> Ready<Result<Response<String>, Infallible>>>;
//! type Api = BearerAuth<ResourceScope<Handler, ByName>, StaticTokens<String>>;
//!
//! fn handler(req: Request<String>) -> Ready<Result<Response<String>, Infallible>> {
//!     ready(Ok(Response::new(req.uri().to_string())))
//! }
//!
//! fn api() -> Api {
//!     let tokens = StaticTokens::new().token("alice-api-key-0123456789abcdef", String::from("alice"));
//!     ServiceBuilder::new()
//!         .layer(BearerAuthLayer::new(tokens))
//!         .layer(ResourceScopeLayer::with_resolver(ByName))
//!         .service(service_fn(handler as fn(_) -> _))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let req = Request::get("/threads")
//!     .header("authorization", "Bearer alice-api-key-0123456789abcdef")
//!     .body(String::new())
//!     .unwrap();
//! let res = api().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.into_body(), "/threads?resourceId=alice");
//! # }
//! ```
//!
//! ## Builder style
//!
//! Layers are made with `XLayer::new(..)` and adjusted with setters. A setter whose input can
//! be wrong returns `Result<Self, ConfigError>` and checks it at once, together with what is
//! already set (the setter that completes a bad combination, such as credentials with any
//! origin, reports it); every other setter returns `Self`. There is no `build()` step, so a
//! layer value is always a valid configuration. Authenticators are the exception:
//! [`JwtAuthenticator`](crate::jwt::JwtAuthenticator) and
//! [`JwksAuthenticator`](crate::jwks::JwksAuthenticator) use `builder()` … `build()`, because
//! whether they can work depends on the combination of keys, algorithms and crypto backend,
//! known only once everything is given.
#![deny(missing_docs, unsafe_code)]
#![warn(unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
#[cfg(feature = "authz")]
pub mod authz;
#[cfg(feature = "cors")]
pub mod cors;
mod digest;
#[cfg(feature = "dpop")]
pub mod dpop;
mod error;
pub mod extensions;
mod gate;
#[cfg(feature = "guard")]
pub mod guard;
mod http;
#[cfg(feature = "introspection")]
pub mod introspection;
#[cfg(feature = "jwks")]
pub mod jwks;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(feature = "log")]
pub mod log;
pub mod mastra;
pub mod path;
use crate::http::query;
pub mod reject;
pub mod scope;
pub mod when;

#[cfg(feature = "axum")]
mod axum;

pub use auth::{
    AuthError, AuthErrorKind, Authenticate, BearerAuthLayer, BearerToken, StaticTokens, Token,
};
#[cfg(feature = "cors")]
pub use cors::CorsLayer;
pub use error::ConfigError;
pub use extensions::{
    ActingAs, ActingVia, AuthState, Authenticated, InvalidId, MessageId, Privileged, ResourceId,
    ThreadId,
};
#[cfg(feature = "guard")]
pub use guard::{ThreadGuardLayer, ThreadStore};
#[cfg(feature = "log")]
pub use log::LogLayer;
pub use path::PathPattern;
pub use reject::{JsonErrorLayer, Rejection, RejectionKind};
pub use scope::ResourceScopeLayer;
pub use when::when_path;
