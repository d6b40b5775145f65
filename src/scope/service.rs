//! `ResourceScope`: the service, its decision and its response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use http::header::HeaderValue;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::ResolveResource;
use super::layer::{Config, Mismatch, NoBodyRules, ResourceScopeLayer};
use crate::gate::{Gate, GateFuture, forward, note, response_future, take_ready};
use crate::mastra::messages;
use crate::query::{self, PairEdit};
use crate::reject::{Rejection, RejectionKind, private_unless_cached, render};
use crate::{ActingAs, ActingVia, AuthState, Authenticated, Privileged, ResourceId};

#[cfg(feature = "json-body")]
use crate::http::body::{self as request_body, Buffered};

/// The service made by [`ResourceScopeLayer`]: the inner service `S`, the resolver `R`, the
/// body rules `K` ([`NoBodyRules`] or [`BodyRules`](super::BodyRules)).
pub struct ResourceScope<S, R, K = NoBodyRules> {
    inner: S,
    resolver: R,
    config: Arc<Config>,
    #[cfg_attr(not(feature = "json-body"), allow(dead_code))]
    bodies: K,
}

impl<S, R: Clone, K: Clone> ResourceScope<S, R, K> {
    pub(crate) fn new<E>(inner: S, layer: &ResourceScopeLayer<R, K, E>) -> Self {
        Self {
            inner,
            resolver: layer.resolver.clone(),
            config: Arc::clone(&layer.config),
            bodies: layer.bodies.clone(),
        }
    }
}

impl<S: Clone, R: Clone, K: Clone> Clone for ResourceScope<S, R, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            resolver: self.resolver.clone(),
            config: Arc::clone(&self.config),
            bodies: self.bodies.clone(),
        }
    }
}

impl<S: fmt::Debug, R, K> fmt::Debug for ResourceScope<S, R, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceScope")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// What scope concluded: the caller's id (`None`: cannot be scoped) and, on routes with body
/// rules, the body to hand on.
pub(crate) struct Scoped {
    id: Option<ResourceId>,
    #[cfg(feature = "json-body")]
    body: Option<Buffered>,
}

type BoxedDecision = Pin<Box<dyn Future<Output = Result<Scoped, Rejection>> + Send>>;

pin_project! {
    /// Resolving the user (no box), or resolving and reading a JSON body (boxed: it waits on
    /// the network anyway).
    #[project = DecisionProj]
    pub(crate) enum Decision<F> {
        Resolve { #[pin] fut: F },
        Body { fut: BoxedDecision },
    }
}

impl<F> Future for Decision<F>
where
    F: Future<Output = Result<Option<ResourceId>, Rejection>>,
{
    type Output = Result<Scoped, Rejection>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DecisionProj::Resolve { fut } => {
                let id = ready!(fut.poll(cx))?;
                Poll::Ready(Ok(Scoped {
                    id,
                    #[cfg(feature = "json-body")]
                    body: None,
                }))
            }
            DecisionProj::Body { fut } => fut.as_mut().poll(cx),
        }
    }
}

response_future! {
    /// The response future of [`ResourceScope`]: the inner service `S`, the resolver `R`, the
    /// request body `B`.
    ResponseFuture<S, [R], B> where [R: ResolveResource,]
        => ScopeGate<B>, Decision<<R as ResolveResource>::Future>
}

/// Where the caller's id comes from, or why there is none.
enum Source<F> {
    /// A trusted earlier layer or the anonymous-scope cookie named it.
    Known(ResourceId),
    /// The resolver maps the authenticated user.
    Resolve(F),
    /// Deliberately unscoped (public path, preflight, allowed anonymous).
    Unscoped,
    Refused(Rejection),
}

impl<S, R: ResolveResource, K> ResourceScope<S, R, K> {
    fn source<B>(&self, req: &Request<B>) -> Source<R::Future> {
        // A trusted earlier layer decided already: keep its id.
        if let Some(id) = req.extensions().get::<ResourceId>() {
            return Source::Known(id.clone());
        }
        if let Some(user) = req.extensions().get::<Authenticated<R::User>>() {
            return Source::Resolve(self.resolver.resolve(user));
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
                        std::any::type_name::<R::User>()
                    ),
                );
                Source::Refused(user_type_mismatch())
            }
            Some(state) => match anonymous_scope(req, &self.config) {
                Some(id) => Source::Known(id),
                // Optional auth without credentials: no scope, so no pass unless asked for.
                None if state == AuthState::Anonymous && !self.config.anonymous_unscoped => {
                    Source::Refused(anonymous_unscoped())
                }
                None => Source::Unscoped,
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
                        std::any::type_name::<R::User>()
                    ),
                );
                Source::Refused(no_auth_layer())
            }
        }
    }

    /// Scopes a request whose body this layer does not read.
    fn call_plain<B, ResB>(&mut self, mut req: Request<B>) -> ResponseFuture<S, R, B>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone,
        ResB: Default,
    {
        match self.source(&req) {
            Source::Known(id) => match scope_request(&mut req, id, &self.config, true) {
                Ok(()) => {
                    let gate = self.gate();
                    ResponseFuture::new(GateFuture::pass(forward(&mut self.inner, req), Some(gate)))
                }
                Err(rejection) => refuse(&req, rejection),
            },
            Source::Resolve(fut) => ResponseFuture::new(GateFuture::deciding(
                Decision::Resolve { fut },
                req,
                take_ready(&mut self.inner),
                self.gate(),
            )),
            Source::Unscoped => {
                // Unscoped on purpose: whatever scope the client named is dropped.
                strip_scope(&mut req, &self.config);
                ResponseFuture::new(GateFuture::pass(forward(&mut self.inner, req), None))
            }
            Source::Refused(rejection) => refuse(&req, rejection),
        }
    }

    fn gate<B>(&self) -> ScopeGate<B> {
        ScopeGate {
            config: Arc::clone(&self.config),
            #[cfg(feature = "json-body")]
            restore: None,
            #[cfg(not(feature = "json-body"))]
            _body: std::marker::PhantomData,
        }
    }
}

impl<S, R, ReqB, ResB> Service<Request<ReqB>> for ResourceScope<S, R, NoBodyRules>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    R: ResolveResource,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, R, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        self.call_plain(req)
    }
}

#[cfg(feature = "json-body")]
impl<S, R, ReqB, ResB> Service<Request<ReqB>> for ResourceScope<S, R, super::BodyRules>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    R: ResolveResource,
    ReqB: http_body::Body<Data = bytes::Bytes> + From<bytes::Bytes> + Send + 'static,
    ReqB::Error: Into<request_body::BoxError>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, R, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let Some(rule) = self.bodies.find(req.method(), req.uri().path()) else {
            return self.call_plain(req);
        };
        // A route that takes no body, and a request that sent none: nothing to read.
        if rule.takes_no_body() && http_body::Body::is_end_stream(req.body()) {
            return self.call_plain(req);
        }
        let rule = Arc::clone(rule);
        let resolve = match self.source(&req) {
            Source::Known(id) => Err(id),
            Source::Resolve(fut) => Ok(fut),
            // A body naming resources cannot be served unscoped.
            Source::Unscoped => return refuse(&req, unscoped()),
            Source::Refused(rejection) => return refuse(&req, rejection),
        };
        let pending = request_body::take(&mut req);
        let limits = self.bodies.limits;
        let mismatch = self.config.mismatch;
        let fut: BoxedDecision = Box::pin(async move {
            let id = match resolve {
                Err(known) => known,
                Ok(fut) => match fut.await? {
                    Some(id) => id,
                    None => {
                        return Ok(Scoped {
                            id: None,
                            body: None,
                        });
                    }
                },
            };
            let mut body = pending.bytes(limits).await?;
            if let Some(edited) = rule.apply(&body.bytes, &id, mismatch)? {
                body.bytes = edited;
            }
            body.scoped = true;
            Ok(Scoped {
                id: Some(id),
                body: Some(body),
            })
        });
        let mut gate = self.gate();
        gate.restore = Some(request_body::put_back::<ReqB>);
        ResponseFuture::new(GateFuture::deciding(
            Decision::Body { fut },
            req,
            take_ready(&mut self.inner),
            gate,
        ))
    }
}

/// Renders a refusal made before any decision future, auditing it first.
fn refuse<S, R, B, ResB>(req: &Request<B>, rejection: Rejection) -> ResponseFuture<S, R, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    R: ResolveResource,
    ResB: Default,
{
    note(req);
    ResponseFuture::new(GateFuture::done(render(rejection, req.headers(), None)))
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

fn unscoped() -> Rejection {
    Rejection::with_message(RejectionKind::Forbidden, messages::NOT_SCOPED)
}

pub(crate) fn mismatch() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: cannot access a different resource",
    )
}

/// How [`ResourceScope`] applies a resolved id (and, on body routes, the scoped body).
pub(crate) struct ScopeGate<B> {
    config: Arc<Config>,
    #[cfg(feature = "json-body")]
    restore: Option<fn(&mut Request<B>, Buffered)>,
    #[cfg(not(feature = "json-body"))]
    _body: std::marker::PhantomData<fn(B)>,
}

impl<B> Gate<B> for ScopeGate<B> {
    type Outcome = Result<Scoped, Rejection>;

    fn admit(&self, outcome: Self::Outcome, req: &mut Request<B>) -> Result<(), Rejection> {
        let scoped = outcome?;
        let Some(id) = scoped.id else {
            return Err(unscoped());
        };
        // A scoped body was forced to the caller's id: the request stays the caller's.
        #[cfg(feature = "json-body")]
        let may_act_as_other = self.restore.is_none();
        #[cfg(not(feature = "json-body"))]
        let may_act_as_other = true;
        scope_request(req, id, &self.config, may_act_as_other)?;
        #[cfg(feature = "json-body")]
        if let (Some(body), Some(restore)) = (scoped.body, self.restore) {
            restore(req, body);
        }
        Ok(())
    }

    fn finish<ResB>(&self, response: &mut Response<ResB>, admitted: bool) {
        // A scoped answer depends on who asked (a user, an anonymous-scope cookie).
        if admitted {
            private_unless_cached(response);
        }
    }
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

/// Sets the resource in force and rewrites the client's scope to it: the caller's, or — for a
/// [`Privileged`] request naming another resource it may act on — that one (marked
/// [`ActingAs`]). `may_act_as_other` is false where a body was already forced to the caller's.
fn scope_request<B>(
    req: &mut Request<B>,
    caller: ResourceId,
    config: &Config,
    may_act_as_other: bool,
) -> Result<(), Rejection> {
    // Inserted first, so a refused request is still logged with the caller's resource.
    req.extensions_mut().insert(caller.clone());
    let target = match may_act_as_other {
        true => privileged_target(req, &caller, config)?,
        false => None,
    };
    let id = match target {
        Some((other, via)) => {
            req.extensions_mut().insert(other.clone());
            req.extensions_mut().insert(ActingAs {
                resource: other.clone(),
                via,
            });
            other
        }
        None => caller,
    };
    apply_scope(req, &id, config)
}

fn conflicting() -> Rejection {
    Rejection::with_message(
        RejectionKind::BadRequest,
        "Invalid request: the resource id is given more than once with different values",
    )
}

fn invalid_resource() -> Rejection {
    Rejection::with_message(
        RejectionKind::BadRequest,
        "Invalid request: invalid resource id",
    )
}

/// The other resource a [`Privileged`] request names (the same value in every configured
/// header and query parameter) and may act on; `None` when it names none, names the caller's,
/// or names one the privilege does not cover (then it is forced to the caller's as usual).
fn privileged_target<B>(
    req: &Request<B>,
    caller: &ResourceId,
    config: &Config,
) -> Result<Option<(ResourceId, ActingVia)>, Rejection> {
    let Some(privileged) = req.extensions().get::<Privileged>() else {
        return Ok(None);
    };
    let mut named: Option<std::borrow::Cow<'_, str>> = None;
    let mut add = |value: std::borrow::Cow<'_, str>| match &named {
        Some(seen) if *seen != value => Err(conflicting()),
        Some(_) => Ok(()),
        None => {
            named = Some(value.into_owned().into());
            Ok(())
        }
    };
    for name in &config.headers {
        for value in req.headers().get_all(name) {
            let text = value.to_str().map_err(|_| invalid_resource())?;
            add(text.into())?;
        }
    }
    if let Some(q) = req.uri().query() {
        for pair in query::pairs(q).filter(|p| config.params.iter().any(|n| **n == *p.key)) {
            add(query::decode(pair.value).ok_or_else(invalid_resource)?)?;
        }
    }
    let Some(named) = named else { return Ok(None) };
    if named == caller.as_str() {
        return Ok(None);
    }
    let id = ResourceId::new(&*named).map_err(|_| invalid_resource())?;
    Ok(privileged.allows(&id).then(|| (id, privileged.via())))
}

/// Rewrites (or, by option, checks) every client-supplied scope to the caller's id.
fn apply_scope<B>(req: &mut Request<B>, id: &ResourceId, config: &Config) -> Result<(), Rejection> {
    for name in &config.headers {
        let values = req.headers().get_all(name);
        if config.mismatch == Mismatch::Reject
            && values.iter().any(|v| v.as_bytes() != id.as_bytes())
        {
            return Err(mismatch());
        }
        // Already exactly the caller's (one value): nothing to change.
        let mut iter = values.iter();
        if iter.next().is_some_and(|v| v.as_bytes() == id.as_bytes()) && iter.next().is_none() {
            continue;
        }
        let value = HeaderValue::from_bytes(id.as_bytes()).map_err(|_| mismatch())?;
        req.headers_mut().insert(name.clone(), value);
    }
    if config.params.is_empty() {
        return Ok(());
    }
    let is_param = |key: &str| config.params.iter().position(|p| **p == *key);
    if config.mismatch == Mismatch::Reject
        && let Some(q) = req.uri().query()
        && query::pairs(q).any(|pair| {
            is_param(&pair.key).is_some()
                && query::decode(pair.value).as_deref() != Some(id.as_str())
        })
    {
        return Err(mismatch());
    }
    // Which configured parameters were present (at most 64, checked at build): the first of
    // each is set to the caller's id, repeats are dropped, so a handler reading either the
    // first or the last value reads the caller's. Added whatever the request says it is: a
    // `content-type: application/grpc` header once switched scoping off for a plain listing.
    let seen = std::cell::Cell::new(0u64);
    let rewritten = query::rewrite(
        req.uri().path(),
        req.uri().query(),
        |key, _| match is_param(key) {
            Some(i) if seen.get() & (1 << i) == 0 => {
                seen.set(seen.get() | 1 << i);
                PairEdit::Set(id.as_str())
            }
            Some(_) => PairEdit::Drop,
            None => PairEdit::Keep,
        },
        || (config.add_param && seen.get() == 0).then(|| (&*config.params[0], id.as_str())),
    );
    match rewritten {
        Some(pq) => query::set_path_and_query(req, pq),
        None => Ok(()),
    }
}

/// Removes client-supplied scope from an unscoped request.
fn strip_scope<B>(req: &mut Request<B>, config: &Config) {
    for name in &config.headers {
        req.headers_mut().remove(name);
    }
    let rewritten = query::rewrite(
        req.uri().path(),
        req.uri().query(),
        |key, _| {
            if config.params.iter().any(|p| **p == *key) {
                PairEdit::Drop
            } else {
                PairEdit::Keep
            }
        },
        || None,
    );
    // Removing pairs from a valid query keeps it valid.
    if let Some(pq) = rewritten {
        let _ = query::set_path_and_query(req, pq);
    }
}
