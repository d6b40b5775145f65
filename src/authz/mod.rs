//! Authorization: what an authenticated caller may do (feature `authz`).
//!
//! [`AuthorizeLayer`] sits right after [`BearerAuthLayer`](crate::BearerAuthLayer) and decides
//! per route, from the user's permissions:
//!
//! - **requirements** per method and [`PathPattern`](crate::PathPattern)
//!   ([`Requirement::AllOf`] / [`AnyOf`](Requirement::AnyOf)), or derived Mastra's way as
//!   `{resource}:{action}` (`GET /api/memory/threads` → `memory:read`), or per gRPC method;
//! - **permissions from claims** ([`ClaimPermissions`]): RFC 9068 `scope`, `scp`, Auth0's
//!   `permissions`, `roles`, Keycloak's realm and per-client roles, a role → permissions map,
//!   a default role for tokens that list nothing, implications;
//! - **wildcards** with Mastra's semantics ([`permission_matches`]);
//! - **rules** ([`Rule`], first match wins, default deny) and an async **policy hook**
//!   ([`Policy`]);
//! - **fail closed**: below a protected path, a route nobody described is refused;
//! - **privileged cross-resource access** ([`Privilege`], e.g. `memory:admin` for an admin UI),
//!   carried to the scope and guard layers as [`Privileged`](crate::Privileged) and logged.
//!
//! | situation | HTTP | JSON body (`json_errors()`) | gRPC |
//! |---|---|---|---|
//! | a required permission missing | 403, `WWW-Authenticate: Bearer error="insufficient_scope", scope="X"` | `{"error":"Forbidden","message":"Missing required permission: X"}` | 7 |
//! | no route covers a protected path | 403 | `{"error":"Access denied: no authorization rule covers this route"}` | 7 |
//! | a rule denies, or none matches | 403 | `{"error":"Access denied"}` | 7 |
//! | the hook says no | 403 | `{"error":"Access denied"}` | 7 |
//! | the hook fails or panics | 500 | `{"error":"Authorization error"}` | 13 |
//! | the hook's backend is down ([`PolicyError::Unavailable`]) | 503 + `Retry-After` | `{"error":"Authorization backend unavailable"}` | 14 |
//! | anonymous (optional auth, no credentials) | 401 | `{"error":"Authentication required"}` | 16 |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_scope::ConfigError> {
//! use http::{Request, Response, StatusCode, header};
//! use serde::Deserialize;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::authz::{AuthorizeLayer, ClaimGrants, ClaimPermissions};
//! use tower_scope::{Authenticated, AuthState};
//!
//! #[derive(Deserialize)]
//! struct Claims { sub: String, #[serde(flatten)] grants: ClaimGrants }
//!
//! let authz = AuthorizeLayer::new(ClaimPermissions::new(|c: &Claims| &c.grants).scope())
//!     .derive_permissions("/api")?;
//! let svc = ServiceBuilder::new()
//!     .layer(authz)
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//!
//! // What BearerAuthLayer leaves for a verified token with `"scope": "memory:read"`.
//! let request = |method: &str| {
//!     let claims: Claims =
//!         serde_json::from_str(r#"{"sub":"alice","scope":"memory:read"}"#).unwrap();
//!     let mut req = Request::builder().method(method).uri("/api/memory/threads")
//!         .body(String::new()).unwrap();
//!     req.extensions_mut().insert(Authenticated::new(claims));
//!     req.extensions_mut().insert(AuthState::verified::<Claims>());
//!     req
//! };
//! assert_eq!(svc.clone().oneshot(request("GET")).await.unwrap().status(), StatusCode::OK);
//! let res = svc.oneshot(request("POST")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     res.headers()[header::WWW_AUTHENTICATE],
//!     r#"Bearer error="insufficient_scope", error_description="Missing required permission: memory:write", scope="memory:write""#
//! );
//! # Ok(()) }
//! ```

mod grants;
#[cfg(feature = "json-body")]
pub mod json_rpc;
mod layer;
mod permission;
mod service;
#[cfg(test)]
mod tests;

pub use grants::{
    ClaimGrants, ClaimList, ClaimPermissions, FnPermissions, PermissionSource, RoleClaim, from_fn,
};
#[cfg(feature = "json-body")]
pub use json_rpc::{Batches, JsonRpc, JsonRpcAuthorize, JsonRpcAuthorizeLayer, JsonRpcFuture};
pub use layer::{
    AuthorizeLayer, DeriveFn, NoPolicy, Policy, PolicyError, PolicyFn, Privilege, RequestHead,
    Requirement, Rule,
};
pub use permission::{Permission, permission_matches};
pub use service::{Authorize, ResponseFuture};
