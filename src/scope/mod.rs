//! Resource scoping: which data the caller may touch.
//!
//! [`ResourceScopeLayer`] maps the [`Authenticated`] user to a [`ResourceId`] (Mastra's
//! `mapUserToResourceId`) and makes the client's own idea of scope irrelevant:
//!
//! - an authenticated user the mapper cannot scope gets 403 (fail closed);
//! - a `ResourceId` already set by an earlier, trusted layer is kept;
//! - client-supplied scope — the `resourceId` query parameter by default, plus any headers you
//!   name — is rewritten to the caller's id, so a handler reading `?resourceId=` gets the
//!   caller's, and a listing without it is scoped too (the parameter is added). With
//!   [`reject_mismatch`](ResourceScopeLayer::reject_mismatch) a different value is a 403
//!   instead;
//! - anonymous requests keep no client-supplied scope; an optional anonymous scope
//!   (`anon_<session>` from a named cookie) serves public agents.
//!
//! ```
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::{Authenticated, ResourceId, ResourceScopeLayer};
//!
//! struct User { org: String, id: String }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ResourceScopeLayer::new(|u: &User| Some(format!("{}:{}", u.org, u.id))))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let scope = req.extensions().get::<ResourceId>().unwrap().to_string();
//!         Ok::<_, std::convert::Infallible>(Response::new(scope))
//!     }));
//!
//! let mut req = Request::get("/threads").body(String::new()).unwrap();
//! req.extensions_mut().insert(Authenticated::new(User { org: "acme".into(), id: "alice".into() }));
//! assert_eq!(svc.oneshot(req).await.unwrap().into_body(), "acme:alice");
//! # }
//! ```
//!
//! ## What scope needs in front of it
//!
//! Scope acts on what authentication concluded, read from typed extensions, never from
//! headers: [`Authenticated<U>`] (resolved by the mapper), or an [`AuthState`](crate::AuthState) saying the
//! request was deliberately let through unauthenticated (public path, optional auth: client
//! scope is dropped), or a trusted [`ResourceId`] (kept). A request with none of them reached
//! scope without any authentication layer: it is refused with 403 and a message saying so,
//! whatever it carries. When auth covers only part of the app, give scope the same part:
//!
//! ```
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::{BearerAuthLayer, ResourceScopeLayer, StaticTokens, when_path};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let tokens = StaticTokens::new().token("alice-api-key-0123456789abcdef", String::from("alice"));
//! let api = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(tokens))
//!     .layer(ResourceScopeLayer::new(|user: &String| Some(user.clone())))
//!     .into_inner();
//! let svc = ServiceBuilder::new()
//!     .layer(when_path("/api/*", api).unwrap())
//!     .service(service_fn(|req: Request<String>| async move {
//!         Ok::<_, std::convert::Infallible>(Response::new(req.uri().to_string()))
//!     }));
//!
//! // Outside /api neither layer runs, whatever headers the request carries.
//! let health = Request::get("/health").header(header::AUTHORIZATION, "Bearer x")
//!     .body(String::new()).unwrap();
//! assert_eq!(svc.clone().oneshot(health).await.unwrap().status(), StatusCode::OK);
//! let list = Request::get("/api/memory/threads?resourceId=bob")
//!     .header(header::AUTHORIZATION, "Bearer alice-api-key-0123456789abcdef")
//!     .body(String::new()).unwrap();
//! assert_eq!(svc.clone().oneshot(list).await.unwrap().into_body(),
//!            "/api/memory/threads?resourceId=alice");
//!
//! // Scope with no authentication in front of it refuses instead of serving unscoped.
//! let miswired = ServiceBuilder::new()
//!     .layer(ResourceScopeLayer::new(|user: &String| Some(user.clone())))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! let res = miswired.oneshot(Request::get("/api/memory/threads").body(String::new()).unwrap())
//!     .await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! # }
//! ```

//! ## JSON bodies
//!
//! With the `json-body` feature, [`BodyRule`]s force resource ids inside JSON request bodies
//! too — top-level fields (`resourceId`), nested ones (`memory.resource`) and fields of list
//! elements (`messages[].resourceId`). Only the forced values change; every other byte reaches
//! the handler as the client sent it. Body rules need a body type the layer can rebuild
//! (`From<Bytes>`, as axum's and tonic's bodies are); without them the layer works over any
//! body, hyper's `Incoming` included.

use std::future::{Future, Ready, ready};
use std::marker::PhantomData;

use crate::reject::Rejection;
use crate::{Authenticated, ResourceId};

#[cfg(feature = "json-body")]
mod body;
mod layer;
mod service;

#[cfg(feature = "json-body")]
pub use crate::http::body::{DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY};
#[cfg(feature = "json-body")]
pub use body::{BodyRule, BodyRules};
pub use layer::{NoBodyRules, ResourceScopeLayer};
pub use service::{ResourceScope, ResponseFuture};

/// Maps an authenticated user to the resource they may touch.
///
/// [`ResourceScopeLayer::new`] and [`ResourceScopeLayer::new_async`] wrap closures in it;
/// implement it on your own type to name the layer's type (a `type` alias of a whole stack).
pub trait ResolveResource: Clone + Send + Sync + 'static {
    /// The user type the authentication layer inserts as [`Authenticated<User>`].
    type User: Send + Sync + 'static;

    /// The future of one resolution.
    type Future: Future<Output = Result<Option<ResourceId>, Rejection>> + Send + 'static;

    /// Resolves the user's resource id; `Ok(None)` means "cannot be scoped" (403).
    fn resolve(&self, user: &Authenticated<Self::User>) -> Self::Future;
}

/// A synchronous mapper `Fn(&U) -> Option<S>`, `S: AsRef<str>`.
pub struct SyncResolver<F, U> {
    map: F,
    _user: PhantomData<fn(&U)>,
}

impl<F: Clone, U> Clone for SyncResolver<F, U> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            _user: PhantomData,
        }
    }
}

impl<F, U, S> ResolveResource for SyncResolver<F, U>
where
    F: Fn(&U) -> Option<S> + Clone + Send + Sync + 'static,
    S: AsRef<str> + 'static,
    U: Send + Sync + 'static,
{
    type User = U;
    type Future = Ready<Result<Option<ResourceId>, Rejection>>;

    fn resolve(&self, user: &Authenticated<U>) -> Self::Future {
        // An id that is not valid (empty, control characters) cannot scope anything.
        ready(Ok((self.map)(user).and_then(|id| ResourceId::new(id).ok())))
    }
}

/// An asynchronous mapper `Fn(Authenticated<U>) -> impl Future<Output = Result<Option<ResourceId>, Rejection>>`.
pub struct AsyncResolver<F, U> {
    map: F,
    _user: PhantomData<fn(&U)>,
}

impl<F: Clone, U> Clone for AsyncResolver<F, U> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            _user: PhantomData,
        }
    }
}

impl<F, U, Fut> ResolveResource for AsyncResolver<F, U>
where
    F: Fn(Authenticated<U>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<ResourceId>, Rejection>> + Send + 'static,
    U: Send + Sync + 'static,
{
    type User = U;
    type Future = Fut;

    fn resolve(&self, user: &Authenticated<U>) -> Fut {
        (self.map)(user.clone())
    }
}

#[cfg(test)]
mod tests;
