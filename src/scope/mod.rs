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
//! headers: [`Authenticated<U>`] (resolved by the mapper), or an [`AuthState`] saying the
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

use std::fmt;
use std::future::{Future, Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::sync::atomic::{AtomicBool, Ordering};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use tower_layer::{Layer, Stack};
use tower_service::Service;

use crate::gate::{Gate, GateFuture, forward, note, take_ready};
use crate::reject::{JsonErrorLayer, Rejection, RejectionKind, private_unless_cached, render};
use crate::{AuthState, Authenticated, ConfigError, ResourceId, query};

/// Maps an authenticated user to the resource they may touch.
///
/// Implemented for the wrappers [`ResourceScopeLayer::new`] (sync) and
/// [`ResourceScopeLayer::new_async`] build around your closure.
pub trait ResolveResource<U>: Clone + Send + Sync + 'static {
    /// The future of one resolution.
    type Future: Future<Output = Result<Option<ResourceId>, Rejection>> + Send + 'static;

    /// Resolves the user's resource id; `Ok(None)` means "cannot be scoped" (403).
    fn resolve(&self, user: &Authenticated<U>) -> Self::Future;
}

/// A synchronous mapper `Fn(&U) -> Option<S>`, `S: AsRef<str>`.
pub struct SyncResolver<F, S> {
    map: F,
    _out: PhantomData<fn() -> S>,
}

impl<F: Clone, S> Clone for SyncResolver<F, S> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            _out: PhantomData,
        }
    }
}

impl<U, F, S> ResolveResource<U> for SyncResolver<F, S>
where
    F: Fn(&U) -> Option<S> + Clone + Send + Sync + 'static,
    S: AsRef<str> + 'static,
{
    type Future = Ready<Result<Option<ResourceId>, Rejection>>;

    fn resolve(&self, user: &Authenticated<U>) -> Self::Future {
        // An id that is not valid (empty, control characters) cannot scope anything.
        ready(Ok((self.map)(user).and_then(|id| ResourceId::new(id).ok())))
    }
}

/// An asynchronous mapper `Fn(Authenticated<U>) -> impl Future<Output = Result<Option<ResourceId>, Rejection>>`.
#[derive(Clone)]
pub struct AsyncResolver<F> {
    map: F,
}

impl<U, F, Fut> ResolveResource<U> for AsyncResolver<F>
where
    F: Fn(Authenticated<U>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<ResourceId>, Rejection>> + Send + 'static,
{
    type Future = Fut;

    fn resolve(&self, user: &Authenticated<U>) -> Fut {
        (self.map)(user.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mismatch {
    Rewrite,
    Reject,
}

#[derive(Debug, Clone)]
struct AnonymousScope {
    cookie: Box<str>,
    prefix: Box<str>,
}

#[derive(Debug, Clone)]
struct Config {
    params: Vec<Box<str>>,
    headers: Vec<HeaderName>,
    mismatch: Mismatch,
    add_param: bool,
    anonymous: Option<AnonymousScope>,
    anonymous_unscoped: bool,
}

/// Derives a [`ResourceId`] from the [`Authenticated<U>`] user; see the [module docs](self).
pub struct ResourceScopeLayer<R, U> {
    resolver: R,
    config: Arc<Config>,
    _user: PhantomData<fn() -> U>,
}

impl<R: Clone, U> Clone for ResourceScopeLayer<R, U> {
    fn clone(&self) -> Self {
        Self {
            resolver: self.resolver.clone(),
            config: Arc::clone(&self.config),
            _user: PhantomData,
        }
    }
}

impl<R, U> fmt::Debug for ResourceScopeLayer<R, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceScopeLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn default_config() -> Arc<Config> {
    Arc::new(Config {
        params: vec!["resourceId".into()],
        headers: Vec::new(),
        mismatch: Mismatch::Rewrite,
        add_param: true,
        anonymous: None,
        anonymous_unscoped: false,
    })
}

impl<U, F, S> ResourceScopeLayer<SyncResolver<F, S>, U>
where
    F: Fn(&U) -> Option<S> + Clone + Send + Sync + 'static,
    S: AsRef<str> + 'static,
{
    /// Scopes requests with a synchronous mapper; `None` (or an invalid id) gives 403.
    pub fn new(map: F) -> Self {
        Self {
            resolver: SyncResolver {
                map,
                _out: PhantomData,
            },
            config: default_config(),
            _user: PhantomData,
        }
    }
}

impl<U, F, Fut> ResourceScopeLayer<AsyncResolver<F>, U>
where
    F: Fn(Authenticated<U>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<ResourceId>, Rejection>> + Send + 'static,
{
    /// Scopes requests with an asynchronous mapper (a database lookup, say). `Ok(None)` gives
    /// 403; return `Err(Rejection::new(RejectionKind::Unavailable))` when the backend is down.
    pub fn new_async(map: F) -> Self {
        Self {
            resolver: AsyncResolver { map },
            config: default_config(),
            _user: PhantomData,
        }
    }
}

impl<R, U> ResourceScopeLayer<R, U> {
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Sets the query parameters carrying client-supplied scope (default `["resourceId"]`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for an empty name or more than 64 names.
    pub fn query_params<'a>(
        mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ConfigError> {
        let names: Vec<Box<str>> = names.into_iter().map(Into::into).collect();
        if names.iter().any(|n| n.is_empty()) || names.len() > 64 {
            return Err(ConfigError::InvalidValue {
                setting: "query parameter",
                reason: "give 1 to 64 non-empty names".into(),
            });
        }
        self.config_mut().params = names;
        Ok(self)
    }

    /// Also overrides these request headers (e.g. `x-resource-id`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`] for an invalid header name.
    pub fn headers<'a>(
        mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ConfigError> {
        for name in names {
            let parsed = HeaderName::try_from(name)
                .map_err(|_| ConfigError::InvalidHeaderName(name.to_owned()))?;
            self.config_mut().headers.push(parsed);
        }
        Ok(self)
    }

    /// Refuses (403) a request whose client-supplied scope differs from the caller's, instead
    /// of rewriting it.
    #[must_use]
    pub fn reject_mismatch(mut self) -> Self {
        self.config_mut().mismatch = Mismatch::Reject;
        self
    }

    /// Lets anonymous requests that no anonymous scope covers (optional auth without
    /// credentials, no session cookie) through *unscoped*, with any client-supplied scope
    /// removed; by default they are refused with 403.
    ///
    /// Off by default because a handler that lists by `?resourceId=` would list every
    /// resource's data for a request without one. Turn it on only when the handlers behind it
    /// read `Option<ResourceId>` and serve nothing private without one. Public paths
    /// ([`BearerAuthLayer::public_path`](crate::BearerAuthLayer::public_path)) always pass
    /// unscoped: the operator declared them public.
    #[must_use]
    pub fn allow_anonymous_unscoped(mut self) -> Self {
        self.config_mut().anonymous_unscoped = true;
        self
    }

    /// Does not add the scope parameter to requests that did not send it (it is added by
    /// default, so listings are scoped too).
    #[must_use]
    pub fn without_added_param(mut self) -> Self {
        self.config_mut().add_param = false;
        self
    }

    /// Gives anonymous requests that carry the cookie `cookie` the scope `{prefix}{value}`
    /// (e.g. `anon_<session>`), for public agents.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when the cookie name is not a plain token or the prefix
    /// is empty.
    pub fn anonymous_cookie(mut self, cookie: &str, prefix: &str) -> Result<Self, ConfigError> {
        // An empty prefix would let a cookie value name any user's resource.
        if prefix.is_empty() {
            return Err(ConfigError::InvalidValue {
                setting: "anonymous scope prefix",
                reason: "use a prefix such as `anon_` so anonymous ids never equal user ids".into(),
            });
        }
        if cookie.is_empty()
            || !cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ConfigError::InvalidValue {
                setting: "anonymous cookie",
                reason: "use letters, digits, `-`, `_` or `.`".into(),
            });
        }
        self.config_mut().anonymous = Some(AnonymousScope {
            cookie: cookie.into(),
            prefix: prefix.into(),
        });
        Ok(self)
    }

    /// Renders this layer's rejections as JSON `{"error": "..."}` bodies.
    pub fn json_errors(self) -> Stack<Self, JsonErrorLayer> {
        Stack::new(self, JsonErrorLayer)
    }
}

impl<S, R: Clone, U> Layer<S> for ResourceScopeLayer<R, U> {
    type Service = ResourceScope<S, R, U>;

    fn layer(&self, inner: S) -> Self::Service {
        ResourceScope {
            inner,
            resolver: self.resolver.clone(),
            config: Arc::clone(&self.config),
            _user: PhantomData,
        }
    }
}

/// The service made by [`ResourceScopeLayer`].
pub struct ResourceScope<S, R, U> {
    inner: S,
    resolver: R,
    config: Arc<Config>,
    _user: PhantomData<fn() -> U>,
}

impl<S: Clone, R: Clone, U> Clone for ResourceScope<S, R, U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            resolver: self.resolver.clone(),
            config: Arc::clone(&self.config),
            _user: PhantomData,
        }
    }
}

impl<S: fmt::Debug, R, U> fmt::Debug for ResourceScope<S, R, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceScope")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The response future of [`ResourceScope`].
pub type ResponseFuture<S, R, U, ReqB, ResB> =
    GateFuture<S, ScopeGate, <R as ResolveResource<U>>::Future, ReqB, ResB>;

impl<S, R, U, ReqB, ResB> Service<Request<ReqB>> for ResourceScope<S, R, U>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    R: ResolveResource<U>,
    U: Send + Sync + 'static,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, R, U, ReqB, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let config = &self.config;
        // A trusted earlier layer decided already: keep its id.
        if let Some(id) = req.extensions().get::<ResourceId>().cloned() {
            return self.scoped(req, id);
        }
        if let Some(user) = req.extensions().get::<Authenticated<U>>() {
            let decision = self.resolver.resolve(user);
            let gate = ScopeGate {
                config: Arc::clone(config),
            };
            return GateFuture::deciding(decision, req, take_ready(&mut self.inner), gate);
        }
        match req.extensions().get::<AuthState>().copied() {
            Some(AuthState::Verified { user_type }) => {
                // Auth verified a user of another type than this layer was built for: every
                // request would be refused, so say why where an operator looks.
                warn_once(
                    &USER_TYPE_WARNED,
                    format_args!(
                        "ResourceScopeLayer expects `Authenticated<{}>` but the authentication layer \
                         inserted `Authenticated<{user_type}>`; every such request is refused (403). \
                         Build ResourceScopeLayer with a mapper taking `&{user_type}`.",
                        std::any::type_name::<U>()
                    ),
                );
                refuse(&req, user_type_mismatch())
            }
            Some(state) => match anonymous_scope(&req, config) {
                Some(id) => self.scoped(req, id),
                // Optional auth without credentials: no scope, so no pass unless asked for.
                None if state == AuthState::Anonymous && !config.anonymous_unscoped => {
                    refuse(&req, anonymous_unscoped())
                }
                None => {
                    // Unscoped on purpose: whatever scope the client named is dropped.
                    strip_scope(&mut req, config);
                    GateFuture::pass(forward(&mut self.inner, req), None)
                }
            },
            None => {
                // No authentication layer ran: serving the request unscoped would fail open.
                warn_once(
                    &NO_AUTH_WARNED,
                    format_args!(
                        "ResourceScopeLayer got a request no authentication layer saw (no AuthState, \
                         no Authenticated<{}>, no ResourceId); it is refused (403). Put \
                         BearerAuthLayer in front of ResourceScopeLayer on every path scope covers, \
                         e.g. both inside the same `when_path`.",
                        std::any::type_name::<U>()
                    ),
                );
                refuse(&req, no_auth_layer())
            }
        }
    }
}

impl<S, R, U> ResourceScope<S, R, U> {
    /// Applies a known id and passes the request on (or refuses a mismatch).
    fn scoped<ReqB, ResB>(
        &mut self,
        mut req: Request<ReqB>,
        id: ResourceId,
    ) -> ResponseFuture<S, R, U, ReqB, ResB>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        R: ResolveResource<U>,
        ResB: Default,
    {
        // Inserted first, so a refused mismatch is still logged with the caller's resource.
        req.extensions_mut().insert(id.clone());
        match apply_scope(&mut req, &id, &self.config) {
            Ok(()) => {
                let gate = ScopeGate {
                    config: Arc::clone(&self.config),
                };
                GateFuture::pass(forward(&mut self.inner, req), Some(gate))
            }
            Err(rejection) => refuse(&req, rejection),
        }
    }
}

/// Renders a refusal made before any decision future, auditing it first.
fn refuse<S, G, D, ReqB, ResB>(
    req: &Request<ReqB>,
    rejection: Rejection,
) -> GateFuture<S, G, D, ReqB, ResB>
where
    S: Service<Request<ReqB>>,
    ResB: Default,
{
    note(req);
    GateFuture::done(render(rejection, req.headers(), None))
}

static USER_TYPE_WARNED: AtomicBool = AtomicBool::new(false);
static NO_AUTH_WARNED: AtomicBool = AtomicBool::new(false);

/// A wiring error is logged once per process, not once per request.
fn warn_once(flag: &AtomicBool, message: fmt::Arguments<'_>) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::warn!(target: "tower_scope::scope", "{message}");
    }
}

fn anonymous_unscoped() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: request could not be scoped to a resource (no credentials)",
    )
}

fn user_type_mismatch() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: request could not be scoped to a resource (the authenticated user has another type than the scope layer expects)",
    )
}

fn no_auth_layer() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: request could not be scoped to a resource (no authentication layer ran before the scope layer)",
    )
}

/// How [`ResourceScope`] applies a resolved id.
pub struct ScopeGate {
    config: Arc<Config>,
}

impl<ReqB> Gate<ReqB> for ScopeGate {
    type Outcome = Result<Option<ResourceId>, Rejection>;

    fn admit(
        &self,
        outcome: <Self as Gate<ReqB>>::Outcome,
        req: &mut Request<ReqB>,
    ) -> Result<(), Rejection> {
        let Some(id) = outcome? else {
            return Err(unscoped());
        };
        // Inserted first, so a refused mismatch is still logged with the caller's resource.
        req.extensions_mut().insert(id.clone());
        apply_scope(req, &id, &self.config)
    }

    fn finish<ResB>(&self, response: &mut Response<ResB>, admitted: bool) {
        // A scoped answer depends on who asked (a user, an anonymous-scope cookie).
        if admitted {
            private_unless_cached(response);
        }
    }
}

fn unscoped() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: request could not be scoped to a resource",
    )
}

fn anonymous_scope<B>(req: &Request<B>, config: &Config) -> Option<ResourceId> {
    let anon = config.anonymous.as_ref()?;
    let value = query::cookies(req.headers(), &anon.cookie).next()?;
    // Only plain session tokens: the id must not smuggle separators into another scope.
    if value.is_empty()
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return None;
    }
    ResourceId::new(format!("{}{}", anon.prefix, value)).ok()
}

fn mismatch() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: cannot access a different resource",
    )
}

/// Rewrites (or, by option, checks) every client-supplied scope to the caller's id.
fn apply_scope<B>(req: &mut Request<B>, id: &ResourceId, config: &Config) -> Result<(), Rejection> {
    for name in &config.headers {
        if config.mismatch == Mismatch::Reject
            && req
                .headers()
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes() != id.as_bytes())
        {
            return Err(mismatch());
        }
        let value = HeaderValue::from_bytes(id.as_bytes()).map_err(|_| mismatch())?;
        req.headers_mut().insert(name.clone(), value);
    }
    if config.params.is_empty() {
        return Ok(());
    }
    // Added whatever the request says it is: a `content-type: application/grpc` header once
    // switched scoping off for a plain HTTP listing. gRPC routers match on the path alone, so
    // the parameter is harmless there; gRPC handlers read the `ResourceId` extension.
    let add = config.add_param;
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    // Which configured parameters were present (at most 64, checked at build): no allocation.
    let mut seen: u64 = 0;
    // The new path-and-query is built in one buffer: path, `?`, kept pairs, scoped pairs.
    let mut rebuilt = String::with_capacity(path.len() + query.len() + 3 * id.len() + 16);
    rebuilt.push_str(path);
    let start = rebuilt.len();
    let mut changed = false;
    for query::Pair { raw, key, value } in query::pairs(query) {
        match config.params.iter().position(|p| **p == *key) {
            Some(i) => {
                let current = query::decode(value);
                if config.mismatch == Mismatch::Reject && current.as_deref() != Some(id.as_str()) {
                    return Err(mismatch());
                }
                changed = true;
                if seen & (1 << i) == 0 {
                    seen |= 1 << i;
                    push_pair(&mut rebuilt, start, &config.params[i], id);
                }
            }
            None => {
                rebuilt.push(if rebuilt.len() == start { '?' } else { '&' });
                rebuilt.push_str(raw);
            }
        }
    }
    if add && seen == 0 {
        push_pair(&mut rebuilt, start, &config.params[0], id);
        changed = true;
    }
    if changed {
        query::set_path_and_query(req, rebuilt)?;
    }
    Ok(())
}

fn push_pair(out: &mut String, start: usize, name: &str, id: &ResourceId) {
    out.push(if out.len() == start { '?' } else { '&' });
    query::push_encoded(out, name);
    out.push('=');
    query::push_encoded(out, id);
}

/// Removes client-supplied scope from an anonymous, unscoped request.
fn strip_scope<B>(req: &mut Request<B>, config: &Config) {
    for name in &config.headers {
        req.headers_mut().remove(name);
    }
    let Some(query) = req.uri().query() else {
        return;
    };
    let kept: Vec<&str> = query::pairs(query)
        .filter(|pair| !config.params.iter().any(|p| **p == *pair.key))
        .map(|pair| pair.raw)
        .collect();
    let kept = kept.join("&");
    if kept != query {
        let pq = if kept.is_empty() {
            req.uri().path().to_owned()
        } else {
            format!("{}?{kept}", req.uri().path())
        };
        // Removing pairs from a valid query keeps it valid.
        let _ = query::set_path_and_query(req, pq);
    }
}

#[cfg(test)]
mod tests;
