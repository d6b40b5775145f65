//! Requirements per JSON-RPC method and per `params.name` (an MCP tool), read from the request
//! body under the crate's lossless-body rules (features `authz` + `json-body`).
//!
//! An MCP server is one route (`POST /mcp`) whose body says what is asked: `{"method":
//! "tools/call", "params": {"name": "remember", ...}}`. A route requirement cannot tell a read
//! tool from a write tool, so [`AuthorizeLayer::json_rpc`] adds a check behind the route
//! decision that reads the body once (capped, time-limited), finds each call's `method` and,
//! for methods with named requirements, `params.name`, and refuses a call whose requirement
//! the user does not meet with 403 `insufficient_scope` naming the scope: the MCP step-up
//! signal. The handler then reads exactly the bytes that were decided on.
//!
//! | body | answer |
//! |---|---|
//! | a call whose requirement is met (a batch: every call's) | passed on, bytes unchanged |
//! | a requirement not met | 403 `insufficient_scope`, `scope="<the scopes>"` |
//! | a method (or a name) no requirement covers | 403 `Access denied: no authorization rule covers this route` |
//! | not JSON, not an object or array, an empty batch, `method` or `params.name` not a string, `method`/`params`/`name` given twice | 400 |
//! | a batch, after [`JsonRpc::refuse_batches`] | 400 |
//! | over the body limit | 413 |
//! | not received within the body timeout | 408 |
//!
//! The body is read whatever its `Content-Type` says: the client chooses how a refusal is
//! written, never whether the check runs. A message without `method` is a JSON-RPC response
//! (to a request the server sent); it asks for nothing and passes. A request on the route
//! whose body is known to be empty (the streamable-HTTP `GET` stream, `DELETE`) is not read.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_scope::ConfigError> {
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::Full;
//! use serde::Deserialize;
//! use tower::{Layer, ServiceExt, service_fn};
//! use tower_scope::authz::{AuthorizeLayer, ClaimGrants, ClaimPermissions, JsonRpc, Requirement};
//! use tower_scope::{AuthState, Authenticated};
//!
//! #[derive(Deserialize)]
//! struct Claims { #[serde(flatten)] grants: ClaimGrants }
//!
//! let rules = JsonRpc::new()
//!     .method("initialize", Requirement::Authenticated)?
//!     .tool("recall", Requirement::all_of(["notes:read"])?)?
//!     .tool("remember", Requirement::all_of(["notes:write"])?)?;
//! let svc = AuthorizeLayer::new(ClaimPermissions::new(|c: &Claims| &c.grants).scope())
//!     .json_rpc("/mcp", rules)?
//!     .layer(service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//!
//! // What BearerAuthLayer leaves for a token with `"scope": "notes:read"`.
//! let call = |tool: &str| {
//!     let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#);
//!     let mut req = Request::post("/mcp").body(Full::new(Bytes::from(body))).unwrap();
//!     let claims: Claims = serde_json::from_str(r#"{"scope":"notes:read"}"#).unwrap();
//!     req.extensions_mut().insert(Authenticated::new(claims));
//!     req.extensions_mut().insert(AuthState::verified::<Claims>());
//!     req
//! };
//! assert_eq!(svc.clone().oneshot(call("recall")).await.unwrap().status(), StatusCode::OK);
//! let res = svc.oneshot(call("remember")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert!(res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().contains(r#"scope="notes:write""#));
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::grants::PermissionSource;
use super::layer::{AuthorizeLayer, Requirement, Verdict, held_by, no_rule};
use super::service::Authorize;
use crate::gate::{Gate, GateFuture, forward, note, response_future, take_ready};
use crate::http::body::{self as request_body, BodyLimits, BoxError, Buffered};
use crate::http::json::{Doc, JsonError, Node};
use crate::path::PathPattern;
use crate::reject::{HeadOnly, JsonBody, JsonErrors, Rejection, RejectionKind, render_request};
use crate::{AuthState, Authenticated, ConfigError};

/// What to do with a JSON-RPC batch (an array of calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Batches {
    /// Every call in the batch must be allowed; one refused call refuses the whole batch
    /// (default).
    #[default]
    EveryCallAllowed,
    /// Any batch is 400 (MCP 2025-06-18 and later send none).
    Refused,
}

/// The requirements of one JSON-RPC endpoint: per method, and per `params.name` of a method
/// (tools by name). A method nothing covers is refused: fail closed.
#[derive(Debug, Clone, Default)]
pub struct JsonRpc {
    methods: Vec<(Box<str>, Requirement)>,
    named: Vec<(Box<str>, Box<str>, Requirement)>,
    batches: Batches,
    limits: BodyLimits,
}

fn no_derive(setting: &'static str, requirement: &Requirement) -> Result<(), ConfigError> {
    if matches!(requirement, Requirement::Derived) {
        return Err(ConfigError::InvalidValue {
            setting,
            reason: "a JSON-RPC call has no path to derive a permission from; name it".into(),
        });
    }
    Ok(())
}

fn name_ok(setting: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ConfigError::InvalidValue {
            setting,
            reason: format!("{name:?}: use a non-empty name without control characters"),
        });
    }
    Ok(())
}

impl JsonRpc {
    /// No method allowed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `requirement` for calls of `method` (`initialize`, `tools/list`, ...); for a
    /// method with named requirements, it covers the names not listed.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for an empty method, one already listed, or
    /// [`Requirement::Derived`].
    pub fn method(mut self, method: &str, requirement: Requirement) -> Result<Self, ConfigError> {
        name_ok("JsonRpc::method", method)?;
        no_derive("JsonRpc::method", &requirement)?;
        if self.methods.iter().any(|(m, _)| **m == *method) {
            return Err(ConfigError::InvalidValue {
                setting: "JsonRpc::method",
                reason: format!("{method:?} is listed twice"),
            });
        }
        self.methods.push((method.into(), requirement));
        Ok(self)
    }

    /// Requires `requirement` for calls of `method` whose `params.name` is `name`. Once a
    /// method has a named requirement, each of its calls must carry a string `params.name`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for an empty method or name, a pair already listed, or
    /// [`Requirement::Derived`].
    pub fn named(
        mut self,
        method: &str,
        name: &str,
        requirement: Requirement,
    ) -> Result<Self, ConfigError> {
        name_ok("JsonRpc::named", method)?;
        name_ok("JsonRpc::named", name)?;
        no_derive("JsonRpc::named", &requirement)?;
        if self
            .named
            .iter()
            .any(|(m, n, _)| **m == *method && **n == *name)
        {
            return Err(ConfigError::InvalidValue {
                setting: "JsonRpc::named",
                reason: format!("{method:?} {name:?} is listed twice"),
            });
        }
        self.named.push((method.into(), name.into(), requirement));
        Ok(self)
    }

    /// Requires `requirement` for the MCP tool `name`: [`named`](Self::named) for
    /// `tools/call`.
    ///
    /// # Errors
    ///
    /// As [`named`](Self::named).
    pub fn tool(self, name: &str, requirement: Requirement) -> Result<Self, ConfigError> {
        self.named("tools/call", name, requirement)
    }

    /// Refuses batches (400) instead of requiring every call in them to be allowed.
    #[must_use]
    pub fn refuse_batches(mut self) -> Self {
        self.batches = Batches::Refused;
        self
    }

    /// The largest body read, in bytes (default
    /// [`DEFAULT_MAX_BODY`](crate::scope::DEFAULT_MAX_BODY)); larger is 413.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.limits.max = bytes;
        self
    }

    /// How long the whole body may take to arrive (default 10 s); slower is 408.
    #[must_use]
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// The decision for one parsed body.
    fn decide<G: PermissionSource>(
        &self,
        body: &[u8],
        source: &G,
        user: &G::User,
    ) -> Result<(), Rejection> {
        let doc = Doc::parse(body).map_err(|e| bad(&e))?;
        let root = doc
            .root()
            .ok_or_else(|| invalid("Empty JSON-RPC request"))?;
        match root.array(doc.text()).map_err(|e| bad(&e))? {
            Some(_) if self.batches == Batches::Refused => {
                Err(invalid("JSON-RPC batches are not accepted"))
            }
            Some(calls) if calls.is_empty() => Err(invalid("Empty JSON-RPC batch")),
            // Read every call first, so a malformed one is a 400 whatever comes before it.
            Some(calls) => {
                let requirements = calls
                    .iter()
                    .map(|call| self.requirement(&doc, *call))
                    .collect::<Result<Vec<_>, _>>()?;
                requirements
                    .into_iter()
                    .flatten()
                    .try_for_each(|r| allowed(r, source, user))
            }
            None => match self.requirement(&doc, root)? {
                Some(requirement) => allowed(requirement, source, user),
                None => Ok(()),
            },
        }
    }

    /// What one message requires: `None` for a response (no `method`).
    fn requirement(&self, doc: &Doc<'_>, call: Node<'_>) -> Result<Option<Covered<'_>>, Rejection> {
        let object = call
            .object(doc.text())
            .map_err(|e| bad(&e))?
            .ok_or_else(|| invalid("A JSON-RPC message must be an object"))?;
        // Read both whatever the method: a key given twice is refused (decision 12).
        let method = object.get("method").map_err(|e| bad(&e))?;
        let params = object.get("params").map_err(|e| bad(&e))?;
        let Some(method) = method else {
            return Ok(None);
        };
        let method = method
            .as_str()
            .ok_or_else(|| invalid("JSON-RPC method must be a string"))?;
        let mut named = self
            .named
            .iter()
            .filter(|(m, _, _)| **m == *method)
            .peekable();
        if named.peek().is_some() {
            let name = params
                .map(|p| p.object(doc.text()))
                .transpose()
                .map_err(|e| bad(&e))?
                .flatten()
                .map(|p| p.get("name"))
                .transpose()
                .map_err(|e| bad(&e))?
                .flatten()
                .and_then(|n| n.as_str())
                .ok_or_else(|| invalid("JSON-RPC params.name must be a string"))?;
            if let Some((_, _, requirement)) = named.find(|(_, n, _)| **n == *name) {
                return Ok(Some(Covered::Yes(requirement)));
            }
        }
        Ok(Some(
            self.methods
                .iter()
                .find(|(m, _)| **m == *method)
                .map_or(Covered::No, |(_, r)| Covered::Yes(r)),
        ))
    }
}

enum Covered<'a> {
    Yes(&'a Requirement),
    No,
}

fn allowed<G: PermissionSource>(
    covered: Covered<'_>,
    source: &G,
    user: &G::User,
) -> Result<(), Rejection> {
    match covered {
        Covered::No => Err(no_rule()),
        Covered::Yes(requirement) => match held_by(requirement, source, user) {
            Verdict::Allowed | Verdict::Uncovered => Ok(()),
            Verdict::Refused(rejection) => Err(rejection),
        },
    }
}

fn invalid(message: &'static str) -> Rejection {
    Rejection::with_message(RejectionKind::BadRequest, message)
}

fn bad(err: &JsonError) -> Rejection {
    match err {
        JsonError::Duplicate(key) => {
            Rejection::with_message(RejectionKind::BadRequest, format!("Duplicate key {key:?}"))
        }
        JsonError::Syntax | JsonError::NotAnObject => invalid("Invalid JSON-RPC request body"),
    }
}

impl<G: PermissionSource, P, E> AuthorizeLayer<G, P, E> {
    /// Adds per-method and per-tool requirements for the JSON-RPC endpoint at `pattern` (an
    /// MCP server's `/mcp`), checked from the body after the route decision; see the
    /// [module docs](crate::authz::json_rpc). Also adds a route there requiring only an
    /// authenticated caller, after the routes given so far (an earlier route that matches
    /// still decides first).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathPattern`] when the pattern is malformed.
    pub fn json_rpc(
        self,
        pattern: &str,
        rules: JsonRpc,
    ) -> Result<JsonRpcAuthorizeLayer<G, P, E>, ConfigError> {
        let path = PathPattern::new(pattern)?;
        let authz = self.route(None, pattern, Requirement::Authenticated)?;
        Ok(JsonRpcAuthorizeLayer {
            authz,
            endpoints: Arc::new(vec![(path, rules)]),
        })
    }
}

/// [`AuthorizeLayer`] with JSON-RPC requirements (made by [`AuthorizeLayer::json_rpc`]).
pub struct JsonRpcAuthorizeLayer<G: PermissionSource, P, E = HeadOnly> {
    authz: AuthorizeLayer<G, P, E>,
    endpoints: Arc<Vec<(PathPattern, JsonRpc)>>,
}

impl<G: PermissionSource, P: Clone, E: Clone> Clone for JsonRpcAuthorizeLayer<G, P, E> {
    fn clone(&self) -> Self {
        Self {
            authz: self.authz.clone(),
            endpoints: Arc::clone(&self.endpoints),
        }
    }
}

impl<G: PermissionSource, P, E> fmt::Debug for JsonRpcAuthorizeLayer<G, P, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRpcAuthorizeLayer")
            .field("authz", &self.authz)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl<G: PermissionSource, P, E> JsonRpcAuthorizeLayer<G, P, E> {
    /// Adds another JSON-RPC endpoint (see [`AuthorizeLayer::json_rpc`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathPattern`] when the pattern is malformed.
    pub fn json_rpc(mut self, pattern: &str, rules: JsonRpc) -> Result<Self, ConfigError> {
        let path = PathPattern::new(pattern)?;
        self.authz = self
            .authz
            .route(None, pattern, Requirement::Authenticated)?;
        Arc::make_mut(&mut self.endpoints).push((path, rules));
        Ok(self)
    }

    fn check<S>(&self, inner: S) -> JsonRpcAuthorize<S, G> {
        JsonRpcAuthorize {
            inner,
            source: Arc::clone(&self.authz.source),
            endpoints: Arc::clone(&self.endpoints),
        }
    }
}

impl<S, G: PermissionSource, P: Clone> Layer<S> for JsonRpcAuthorizeLayer<G, P, HeadOnly> {
    type Service = Authorize<JsonRpcAuthorize<S, G>, G, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize::new(self.check(inner), &self.authz)
    }
}

impl<S, G: PermissionSource, P: Clone> Layer<S> for JsonRpcAuthorizeLayer<G, P, JsonBody> {
    type Service = JsonErrors<Authorize<JsonRpcAuthorize<S, G>, G, P>>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonErrors::new(Authorize::new(self.check(inner), &self.authz))
    }
}

/// The JSON-RPC check behind [`Authorize`]: reads the body on the endpoints' paths and
/// decides each call.
pub struct JsonRpcAuthorize<S, G> {
    inner: S,
    source: Arc<G>,
    endpoints: Arc<Vec<(PathPattern, JsonRpc)>>,
}

impl<S: Clone, G> Clone for JsonRpcAuthorize<S, G> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            source: Arc::clone(&self.source),
            endpoints: Arc::clone(&self.endpoints),
        }
    }
}

impl<S: fmt::Debug, G> fmt::Debug for JsonRpcAuthorize<S, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRpcAuthorize")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

type Check = Pin<Box<dyn Future<Output = Result<Buffered, Rejection>> + Send>>;

response_future! {
    /// The response future of [`JsonRpcAuthorize`]: the inner service `S`, the request body
    /// `B`.
    JsonRpcFuture<S, [], B> where [B: From<Bytes>,] => RpcGate, Check
}

/// Puts the body that was decided on back as the request's body.
pub(crate) struct RpcGate;

impl<B: From<Bytes>> Gate<B> for RpcGate {
    type Outcome = Result<Buffered, Rejection>;

    fn admit(&self, outcome: Self::Outcome, req: &mut Request<B>) -> Result<(), Rejection> {
        request_body::put_back(req, outcome?);
        Ok(())
    }

    fn render<ResB: Default>(&self, rejection: Rejection, req: &Request<B>) -> Response<ResB> {
        render_request(rejection, req)
    }
}

impl<S, G, ReqB, ResB> Service<Request<ReqB>> for JsonRpcAuthorize<S, G>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    G: PermissionSource,
    ReqB: http_body::Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = JsonRpcFuture<S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let path = req.uri().path();
        let Some(index) = self.endpoints.iter().position(|(p, _)| p.matches(path)) else {
            return JsonRpcFuture::new(GateFuture::pass(forward(&mut self.inner, req), None));
        };
        // The stream `GET` and the session `DELETE` carry no body: nothing is asked.
        if http_body::Body::is_end_stream(req.body()) {
            return JsonRpcFuture::new(GateFuture::pass(forward(&mut self.inner, req), None));
        }
        let Some(user) = req.extensions().get::<Authenticated<G::User>>().cloned() else {
            // A JSON-RPC endpoint is never public: whatever let the request this far without a
            // user (optional auth, a public path), its calls need one.
            let rejection = match req.extensions().get::<AuthState>() {
                Some(AuthState::Anonymous | AuthState::PublicPath) => {
                    Rejection::new(RejectionKind::MissingCredentials)
                }
                _ => Rejection::with_message(
                    RejectionKind::Forbidden,
                    "Access denied: no authentication layer ran before the authorization layer",
                ),
            };
            note(&req);
            return JsonRpcFuture::new(GateFuture::done(render_request(rejection, &req)));
        };
        let pending = request_body::take(&mut req);
        let source = Arc::clone(&self.source);
        let endpoints = Arc::clone(&self.endpoints);
        let check: Check = Box::pin(async move {
            let rules = &endpoints[index].1;
            let body = pending.bytes(rules.limits).await?;
            rules.decide(&body.bytes, &*source, &user)?;
            Ok(body)
        });
        JsonRpcFuture::new(GateFuture::deciding(
            check,
            req,
            take_ready(&mut self.inner),
            RpcGate,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Method, StatusCode, header};
    use http_body_util::{BodyExt, Full};
    use serde::Deserialize;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::authz::{ClaimGrants, ClaimPermissions};

    #[derive(Deserialize)]
    struct Claims {
        #[serde(flatten)]
        grants: ClaimGrants,
    }

    fn grants_of(c: &Claims) -> &ClaimGrants {
        &c.grants
    }

    type Source = ClaimPermissions<fn(&Claims) -> &ClaimGrants, Claims>;

    fn layer(rules: JsonRpc) -> JsonRpcAuthorizeLayer<Source, crate::authz::NoPolicy> {
        let source = ClaimPermissions::new(grants_of as fn(&Claims) -> &ClaimGrants).scope();
        AuthorizeLayer::new(source)
            .route(None, "/other", Requirement::Authenticated)
            .unwrap()
            .json_rpc("/rpc", rules)
            .unwrap()
    }

    fn rules() -> JsonRpc {
        JsonRpc::new()
            .method("ping", Requirement::Authenticated)
            .unwrap()
            .tool("read", Requirement::all_of(["n:read"]).unwrap())
            .unwrap()
            .tool("write", Requirement::all_of(["n:write"]).unwrap())
            .unwrap()
    }

    fn request(method: Method, uri: &str, scope: Option<&str>, body: &str) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        match scope {
            Some(scope) => {
                let claims: Claims =
                    serde_json::from_value(serde_json::json!({ "scope": scope })).unwrap();
                req.extensions_mut().insert(Authenticated::new(claims));
                req.extensions_mut().insert(AuthState::verified::<Claims>());
            }
            None => {
                req.extensions_mut().insert(AuthState::Anonymous);
            }
        }
        req
    }

    /// The echo service answers with the body it received and whether a layer read it.
    async fn send(rules: JsonRpc, req: Request<Full<Bytes>>) -> (StatusCode, String, bool) {
        let svc = layer(rules).layer(service_fn(|req: Request<Full<Bytes>>| async move {
            let read = req.extensions().get::<Buffered>().is_some();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut res = Response::new(String::from_utf8(body.to_vec()).unwrap());
            if read {
                res.headers_mut()
                    .insert("x-read", http::HeaderValue::from_static("1"));
            }
            Ok::<_, Infallible>(res)
        }));
        let res = svc.oneshot(req).await.unwrap();
        let read = res.headers().contains_key("x-read");
        (res.status(), res.into_body(), read)
    }

    #[tokio::test]
    async fn other_routes_are_never_read() {
        let body = r#"{"method":"tools/call","params":{"name":"write"}}"#;
        let (status, echoed, read) =
            send(rules(), request(Method::POST, "/other", Some(""), body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echoed, body);
        assert!(!read);
    }

    #[tokio::test]
    async fn an_allowed_call_reaches_the_handler_byte_for_byte() {
        // Spacing, key order and a number serde would reformat are kept.
        let body = r#" { "params" : {"name":"read","arguments":{"n":123456789012345678901234567890}},"method":"tools/call","id":1 } "#;
        let (status, echoed, read) =
            send(rules(), request(Method::POST, "/rpc", Some("n:read"), body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echoed, body);
        assert!(read);
    }

    #[tokio::test]
    async fn responses_without_a_method_ask_for_nothing_and_pass() {
        let body = r#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#;
        let (status, echoed, _) =
            send(rules(), request(Method::POST, "/rpc", Some(""), body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echoed, body);
    }

    #[tokio::test]
    async fn a_bodyless_request_on_the_endpoint_is_not_read() {
        let (status, _, read) = send(rules(), request(Method::GET, "/rpc", Some(""), "")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!read);
    }

    #[tokio::test]
    async fn batches_need_every_call_allowed_or_are_refused_when_configured() {
        let both = r#"[{"method":"ping"},{"method":"tools/call","params":{"name":"read"}}]"#;
        let (status, echoed, _) =
            send(rules(), request(Method::POST, "/rpc", Some("n:read"), both)).await;
        assert_eq!((status, echoed.as_str()), (StatusCode::OK, both));
        let (status, _, _) = send(
            rules().refuse_batches(),
            request(Method::POST, "/rpc", Some("n:read"), both),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // A malformed call later in a batch is a 400 even after a refused one.
        let mixed = r#"[{"method":"tools/call","params":{"name":"write"}},{"method":1}]"#;
        let (status, _, _) = send(
            rules(),
            request(Method::POST, "/rpc", Some("n:read"), mixed),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn an_anonymous_call_is_401() {
        let body = r#"{"method":"ping"}"#;
        let (status, _, _) = send(rules(), request(Method::POST, "/rpc", None, body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn json_errors_write_mastras_body_for_a_missing_tool_scope() {
        let source = ClaimPermissions::new(grants_of as fn(&Claims) -> &ClaimGrants).scope();
        let svc = AuthorizeLayer::new(source)
            .json_errors()
            .json_rpc("/rpc", rules())
            .unwrap()
            .layer(service_fn(|_req: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }));
        let body = r#"{"method":"tools/call","params":{"name":"write"}}"#;
        let res = svc
            .oneshot(request(Method::POST, "/rpc", Some("n:read"), body))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(
            res.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains(r#"scope="n:write""#)
        );
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &bytes[..],
            br#"{"error":"Forbidden","message":"Missing required permission: n:write"}"#
        );
    }

    #[test]
    fn rules_that_could_never_be_decided_are_config_errors() {
        assert!(JsonRpc::new().method("x", Requirement::Derived).is_err());
        assert!(
            JsonRpc::new()
                .method("x", Requirement::Authenticated)
                .unwrap()
                .method("x", Requirement::Authenticated)
                .is_err()
        );
        assert!(JsonRpc::new().tool("", Requirement::Authenticated).is_err());
        assert!(
            JsonRpc::new()
                .tool("a", Requirement::Authenticated)
                .unwrap()
                .tool("a", Requirement::Authenticated)
                .is_err()
        );
    }
}
