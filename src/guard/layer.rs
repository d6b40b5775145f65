//! `ThreadGuardLayer`: per-route ownership checks before the handler runs.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use tower_layer::{Layer, Stack};
use tower_service::Service;

use super::check::{GuardError, ThreadGuard, ThreadPresence};
use super::store::ThreadStore;
use crate::gate::{Gate, GateFuture, forward, note, take_ready};
use crate::path::{PathPattern, PathSet};
use crate::reject::{JsonErrorLayer, Rejection, RejectionKind, render};
use crate::{ConfigError, MessageId, ResourceId, ThreadId, query};

/// Mastra's default request body limit: 4.5 MB.
pub const DEFAULT_MAX_BODY: usize = 4_718_592;

/// How long the guard waits for a whole JSON body on routes that read it: 10 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What to do when the named thread does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    NotFound,
    Allow,
}

/// One guarded route: a method, a path template, where the thread or message ids are, and
/// what the body must not be allowed to say.
///
/// ```
/// use http::Method;
/// use tower_scope::guard::GuardRoute;
///
/// let rename = GuardRoute::new(Method::PATCH, "/api/memory/threads/{threadId}")
///     .unwrap()
///     .thread_from_path("threadId")
///     .force_body_resource("resourceId");
/// # let _ = rename;
/// ```
#[derive(Clone)]
pub struct GuardRoute {
    method: Method,
    pattern: PathPattern,
    thread_path: Option<Box<str>>,
    thread_query: Option<Box<str>>,
    thread_header: Option<Box<str>>,
    thread_body: Option<Box<str>>,
    missing: Missing,
    messages_path: Option<Box<str>>,
    messages_body: Option<Box<str>>,
    save_messages: Option<Box<str>>,
    force_resource: Option<Box<str>>,
    new_thread_body: Option<Box<str>>,
    include_query: Option<Box<str>>,
    deny: Option<Box<str>>,
}

impl fmt::Debug for GuardRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardRoute")
            .field("method", &self.method)
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

impl GuardRoute {
    /// A route for `method` on `template` (`/api/memory/threads/{threadId}` style).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathPattern`] for a malformed template.
    pub fn new(method: Method, template: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            method,
            pattern: PathPattern::new(template)?,
            thread_path: None,
            thread_query: None,
            thread_header: None,
            thread_body: None,
            missing: Missing::NotFound,
            messages_path: None,
            messages_body: None,
            save_messages: None,
            force_resource: None,
            new_thread_body: None,
            include_query: None,
            deny: None,
        })
    }

    /// The query parameter `name` is a JSON list of messages to fetch besides the thread's own
    /// (Mastra's `include=[{"id": .., "threadId": ..}]`): every message must be the caller's
    /// and every named thread the caller's or missing. Not JSON of that shape: 400.
    #[must_use]
    pub fn messages_from_query_json(mut self, name: &str) -> Self {
        self.include_query = Some(name.into());
        self
    }

    /// Refuses every request to this route with 403 and `message` (Mastra refuses thread
    /// transfer in a resource-scoped context this way).
    #[must_use]
    pub fn deny(mut self, message: &str) -> Self {
        self.deny = Some(message.into());
        self
    }

    /// The JSON body field `field` may name a thread this route creates (clone's
    /// `newThreadId`): refused when that thread exists and is not the caller's.
    #[must_use]
    pub fn new_thread_from_body(mut self, field: &str) -> Self {
        self.new_thread_body = Some(field.into());
        self
    }

    /// The thread id is the path parameter `param`.
    #[must_use]
    pub fn thread_from_path(mut self, param: &str) -> Self {
        self.thread_path = Some(param.into());
        self
    }

    /// The thread id may come from the query parameter `name` (e.g. `threadId`).
    #[must_use]
    pub fn thread_from_query(mut self, name: &str) -> Self {
        self.thread_query = Some(name.into());
        self
    }

    /// The thread id may come from the header `name` (e.g. `x-thread-id`).
    #[must_use]
    pub fn thread_from_header(mut self, name: &str) -> Self {
        self.thread_header = Some(name.into());
        self
    }

    /// The thread id may come from the JSON body field `field`.
    #[must_use]
    pub fn thread_from_body(mut self, field: &str) -> Self {
        self.thread_body = Some(field.into());
        self
    }

    /// A thread that does not exist (or no thread id at all) is allowed: the route creates it.
    #[must_use]
    pub fn allow_missing_thread(mut self) -> Self {
        self.missing = Missing::Allow;
        self
    }

    /// The message id is the path parameter `param`; its thread must be the caller's.
    #[must_use]
    pub fn messages_from_path(mut self, param: &str) -> Self {
        self.messages_path = Some(param.into());
        self
    }

    /// Message ids are in the JSON body field `field` (a string, a list of strings, `{id}` or
    /// a list of `{id}`); every message's thread must be the caller's, all or nothing.
    #[must_use]
    pub fn messages_from_body(mut self, field: &str) -> Self {
        self.messages_body = Some(field.into());
        self
    }

    /// The JSON body field `field` is a list of messages to save (`[{threadId, resourceId, ..}]`):
    /// each must name the caller's resource, and each existing thread must be the caller's.
    #[must_use]
    pub fn save_messages(mut self, field: &str) -> Self {
        self.save_messages = Some(field.into());
        self
    }

    /// The JSON body field `field` is forced to the caller's resource id (thread creation).
    #[must_use]
    pub fn force_body_resource(mut self, field: &str) -> Self {
        self.force_resource = Some(field.into());
        self
    }

    fn validate(self) -> Result<Self, ConfigError> {
        for param in [&self.thread_path, &self.messages_path]
            .into_iter()
            .flatten()
        {
            if !self.pattern.has_param(param) {
                return Err(ConfigError::InvalidValue {
                    setting: "guard route",
                    reason: format!("{:?} has no parameter {param:?}", self.pattern.as_str()),
                });
            }
        }
        if let Some(name) = &self.thread_header {
            HeaderName::try_from(&**name)
                .map_err(|_| ConfigError::InvalidHeaderName(name.to_string()))?;
        }
        let empty = [
            &self.thread_query,
            &self.thread_body,
            &self.messages_body,
            &self.save_messages,
            &self.force_resource,
            &self.new_thread_body,
            &self.include_query,
        ]
        .into_iter()
        .flatten()
        .any(|name| name.is_empty());
        if empty {
            return Err(ConfigError::InvalidValue {
                setting: "guard route",
                reason: "empty field name".into(),
            });
        }
        Ok(self)
    }

    fn checks_thread(&self) -> bool {
        self.thread_path.is_some()
            || self.thread_query.is_some()
            || self.thread_header.is_some()
            || self.thread_body.is_some()
    }

    fn checks_nothing(&self) -> bool {
        !self.checks_thread()
            && !self.needs_body()
            && self.messages_path.is_none()
            && self.include_query.is_none()
            && self.deny.is_none()
    }

    fn needs_body(&self) -> bool {
        self.thread_body.is_some()
            || self.messages_body.is_some()
            || self.save_messages.is_some()
            || self.force_resource.is_some()
            || self.new_thread_body.is_some()
    }

    fn path_param<'a>(&self, path: &'a str, param: &str) -> Option<&'a str> {
        self.pattern.param_span(path, param).map(|span| &path[span])
    }

    /// The client's thread id from the path, query or header, in that order.
    fn thread_in_request<B>(&self, req: &Request<B>) -> Result<Option<ThreadId>, Rejection> {
        let raw: Option<Cow<'_, str>> = if let Some(param) = &self.thread_path
            && let Some(raw) = self.path_param(req.uri().path(), param)
        {
            Some(query::decode_segment(raw).ok_or_else(invalid_thread)?)
        } else if let Some(name) = &self.thread_query
            && let Some(q) = req.uri().query()
            && let Some(value) =
                single(query::pairs(q).filter(|p| p.key == **name).map(|p| p.value))?
        {
            Some(query::decode(value).ok_or_else(invalid_thread)?)
        } else if let Some(name) = &self.thread_header
            && let Some(value) = single(req.headers().get_all(&**name).iter())?
        {
            Some(Cow::Borrowed(value.to_str().map_err(|_| invalid_thread())?))
        } else {
            None
        };
        raw.map(|id| ThreadId::new(id).map_err(|_| invalid_thread()))
            .transpose()
    }
}

/// The only item of `items`; two or more are ambiguous (a handler might read either).
fn single<T>(mut items: impl Iterator<Item = T>) -> Result<Option<T>, Rejection> {
    let first = items.next();
    if first.is_some() && items.next().is_some() {
        return Err(Rejection::with_message(
            RejectionKind::BadRequest,
            "More than one threadId",
        ));
    }
    Ok(first)
}

fn invalid_thread() -> Rejection {
    Rejection::with_message(RejectionKind::BadRequest, "Invalid thread id")
}

fn invalid_message() -> Rejection {
    Rejection::with_message(RejectionKind::BadRequest, "Invalid message id")
}

/// A client's message id, validated before any store sees it (400 otherwise).
fn message_id(id: &str) -> Result<MessageId, Rejection> {
    MessageId::new(id).map_err(|_| invalid_message())
}

fn invalid_body() -> Rejection {
    Rejection::with_message(RejectionKind::BadRequest, "Invalid request body")
}

fn too_large() -> Rejection {
    Rejection::with_message(RejectionKind::PayloadTooLarge, "Request body too large")
}

#[derive(Clone)]
struct Routes(Arc<[Arc<GuardRoute>]>);

impl Routes {
    fn find(&self, method: &Method, path: &str) -> Option<&Arc<GuardRoute>> {
        // axum (and most routers) answer HEAD with the GET handler: guard it like GET.
        let head = *method == Method::HEAD;
        self.0.iter().find(|r| {
            (r.method == *method || (head && r.method == Method::GET)) && r.pattern.matches(path)
        })
    }
}

/// Checks, before the handler runs, that the thread or messages a request names belong to
/// the caller's [`ResourceId`]; see the [module docs](crate::guard).
///
/// Decisions: owner is the caller → pass, with [`ThreadId`] inserted; another owner → 403
/// (or 404 with [`hide_foreign_threads`](Self::hide_foreign_threads)); missing → 404 or pass,
/// per route; unowned → 403 unless [`allow_unowned_threads`](Self::allow_unowned_threads); no
/// `ResourceId` → 403; a thread or message id [`ThreadId`] / [`MessageId`] refuses (empty, over
/// [`MAX_ID_LEN`](crate::extensions::MAX_ID_LEN) bytes, a control character such as NUL) → 400
/// before any store lookup, alike on every backend; a value the store refuses → 400; store
/// unreachable, failing or timed out → 503 with `Retry-After`. A `ThreadId` already set by a
/// trusted earlier layer replaces the client's id, and the request is rewritten to it.
pub struct ThreadGuardLayer<S> {
    guard: ThreadGuard<S>,
    routes: Routes,
    coverage: Arc<Coverage>,
    max_body: usize,
    body_timeout: Duration,
}

/// Which paths must match a route, and which thread ids every matched route checks too.
#[derive(Debug, Clone, Default)]
struct Coverage {
    covered: PathSet,
    thread_queries: Vec<Box<str>>,
    thread_headers: Vec<HeaderName>,
}

impl<S: Clone> Clone for ThreadGuardLayer<S> {
    fn clone(&self) -> Self {
        Self {
            guard: self.guard.clone(),
            routes: self.routes.clone(),
            coverage: Arc::clone(&self.coverage),
            max_body: self.max_body,
            body_timeout: self.body_timeout,
        }
    }
}

impl<S> fmt::Debug for ThreadGuardLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadGuardLayer")
            .field("routes", &self.routes.0)
            .field("coverage", &self.coverage)
            .field("max_body", &self.max_body)
            .field("body_timeout", &self.body_timeout)
            .finish()
    }
}

impl<S: ThreadStore> ThreadGuardLayer<S> {
    /// A guard over `store` with no routes yet.
    pub fn new(store: S) -> Self {
        Self {
            guard: ThreadGuard::new(store),
            routes: Routes(Arc::new([])),
            coverage: Arc::new(Coverage::default()),
            max_body: DEFAULT_MAX_BODY,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// Refuses (403, gRPC 7) every request below `pattern` that no route matches, so a route
    /// added to the router later is never silently unguarded. Recommended for every prefix
    /// the guard protects; [`mastra_memory_routes`](Self::mastra_memory_routes) covers
    /// `{prefix}/memory/*`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathPattern`] when the pattern is malformed.
    pub fn cover(mut self, pattern: &str) -> Result<Self, ConfigError> {
        let pattern = PathPattern::new(pattern)?;
        Arc::make_mut(&mut self.coverage).covered.push(pattern);
        Ok(self)
    }

    /// On every matched route, a thread id in the query parameter `name` is checked too, like
    /// a path id on that route: another resource's thread is refused; a missing one passes on
    /// routes that allow missing threads (or check none) and is 404 elsewhere. Given twice, 400.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for an empty name.
    pub fn check_thread_query(mut self, name: &str) -> Result<Self, ConfigError> {
        if name.is_empty() {
            return Err(ConfigError::InvalidValue {
                setting: "thread query parameter",
                reason: "empty name".into(),
            });
        }
        Arc::make_mut(&mut self.coverage)
            .thread_queries
            .push(name.into());
        Ok(self)
    }

    /// On every matched route, a thread id in the header `name` is checked too (see
    /// [`check_thread_query`](Self::check_thread_query)).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`] for an invalid header name.
    pub fn check_thread_header(mut self, name: &str) -> Result<Self, ConfigError> {
        let parsed =
            HeaderName::try_from(name).map_err(|_| ConfigError::InvalidHeaderName(name.into()))?;
        Arc::make_mut(&mut self.coverage)
            .thread_headers
            .push(parsed);
        Ok(self)
    }

    /// Adds a guarded route; the first route that matches a request decides.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a named path parameter is not in the template, a header name is
    /// invalid, or a field name is empty.
    pub fn route(mut self, route: GuardRoute) -> Result<Self, ConfigError> {
        let mut all = self.routes.0.to_vec();
        all.push(Arc::new(route.validate()?));
        self.routes = Routes(all.into());
        Ok(self)
    }

    /// Guards Mastra's memory API under `prefix` (usually `/api`), and its legacy
    /// `{prefix}/memory/network/...` aliases, and covers `{prefix}/memory/*`: a memory route
    /// not listed here is refused (see [`cover`](Self::cover)). A `threadId` query parameter
    /// is checked on every route ([`check_thread_query`](Self::check_thread_query)).
    ///
    /// | route | check |
    /// |---|---|
    /// | `GET /memory/threads` | none here (the scope layer forces `?resourceId=`) |
    /// | `POST /memory/threads` | body `threadId` missing or the caller's; body `resourceId` forced |
    /// | `GET`, `PATCH`, `DELETE /memory/threads/{threadId}` | the caller's thread (PATCH: `resourceId` forced) |
    /// | `GET /memory/threads/{threadId}/messages` | the caller's thread; every message and thread in `?include=` the caller's |
    /// | `GET /memory/threads/{threadId}/working-memory` | the caller's thread, or missing |
    /// | `POST /memory/threads/{threadId}/working-memory` | the caller's thread; body `resourceId` forced |
    /// | `POST /memory/threads/{threadId}/clone` | the caller's source; `newThreadId` missing or the caller's; `resourceId` forced |
    /// | `POST /memory/threads/{threadId}/transfer` | refused: it needs a privileged, unscoped context |
    /// | `POST /memory/save-messages` | every message names the caller and a thread that is the caller's or missing |
    /// | `POST /memory/messages/delete` | every message is the caller's, all or nothing |
    /// | `GET /memory/status`, `/memory/config`, `/memory/search`, `/memory/observational-memory` | `?threadId=` the caller's or missing |
    /// | `POST /memory/observational-memory/buffer-status` | body `threadId` the caller's or missing; body `resourceId` forced |
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathPattern`] for a malformed prefix.
    pub fn mastra_memory_routes(mut self, prefix: &str) -> Result<Self, ConfigError> {
        let p = prefix.trim_end_matches('/');
        for base in [format!("{p}/memory"), format!("{p}/memory/network")] {
            self = self.mastra_memory_base(&base)?;
        }
        self.cover(&format!("{p}/memory/*"))?
            .check_thread_query("threadId")
    }

    fn mastra_memory_base(self, m: &str) -> Result<Self, ConfigError> {
        let thread = format!("{m}/threads/{{threadId}}");
        let get = |path: &str| GuardRoute::new(Method::GET, path);
        let post = |path: &str| GuardRoute::new(Method::POST, path);
        self.route(get(&format!("{m}/threads"))?)?
            .route(
                post(&format!("{m}/threads"))?
                    .thread_from_body("threadId")
                    .allow_missing_thread()
                    .force_body_resource("resourceId"),
            )?
            .route(get(&thread)?.thread_from_path("threadId"))?
            .route(
                GuardRoute::new(Method::PATCH, &thread)?
                    .thread_from_path("threadId")
                    .force_body_resource("resourceId"),
            )?
            .route(GuardRoute::new(Method::DELETE, &thread)?.thread_from_path("threadId"))?
            .route(
                get(&format!("{thread}/messages"))?
                    .thread_from_path("threadId")
                    .messages_from_query_json("include"),
            )?
            .route(
                get(&format!("{thread}/working-memory"))?
                    .thread_from_path("threadId")
                    .allow_missing_thread(),
            )?
            .route(
                post(&format!("{thread}/working-memory"))?
                    .thread_from_path("threadId")
                    .force_body_resource("resourceId"),
            )?
            .route(
                post(&format!("{thread}/clone"))?
                    .thread_from_path("threadId")
                    .new_thread_from_body("newThreadId")
                    .force_body_resource("resourceId"),
            )?
            .route(
                post(&format!("{thread}/transfer"))?
                    .deny("Thread transfer requires a privileged (non-resource-scoped) context"),
            )?
            .route(post(&format!("{m}/save-messages"))?.save_messages("messages"))?
            .route(post(&format!("{m}/messages/delete"))?.messages_from_body("messageIds"))?
            .route(get(&format!("{m}/status"))?.allow_missing_thread())?
            .route(get(&format!("{m}/config"))?.allow_missing_thread())?
            .route(get(&format!("{m}/search"))?.allow_missing_thread())?
            .route(get(&format!("{m}/observational-memory"))?.allow_missing_thread())?
            .route(
                post(&format!("{m}/observational-memory/buffer-status"))?
                    .thread_from_body("threadId")
                    .allow_missing_thread()
                    .force_body_resource("resourceId"),
            )
    }

    /// Answers 404 instead of 403 for another resource's thread, hiding that it exists.
    #[must_use]
    pub fn hide_foreign_threads(mut self) -> Self {
        self.guard = self.guard.hide_foreign_threads();
        self
    }

    /// Lets anyone use threads that have no owner (Mastra treats them as shared).
    #[must_use]
    pub fn allow_unowned_threads(mut self) -> Self {
        self.guard = self.guard.allow_unowned_threads();
        self
    }

    /// Sets how long one store lookup may take before the answer is 503 (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.guard = self.guard.timeout(timeout);
        self
    }

    /// Sets the largest JSON body buffered on routes that read it (default 4.5 MB); larger
    /// bodies get 413 before the handler runs.
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body = max;
        self
    }

    /// Sets how long the guard waits for the whole JSON body on routes that read it (default
    /// [`DEFAULT_BODY_TIMEOUT`], 10 s), counted from the start of the read, not per chunk; a
    /// client that has not sent it all by then gets 408 Request Timeout (gRPC 4, deadline
    /// exceeded) and what was buffered is dropped, so a trickling upload cannot hold a task and
    /// a buffer open. The store lookups that follow have their own [`timeout`](Self::timeout).
    #[must_use]
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The ownership checks this layer makes, for handlers that need the same (gRPC).
    pub fn guard(&self) -> &ThreadGuard<S> {
        &self.guard
    }

    /// Renders this layer's rejections as JSON `{"error": "..."}` bodies.
    pub fn json_errors(self) -> Stack<Self, JsonErrorLayer> {
        Stack::new(self, JsonErrorLayer)
    }
}

impl<S: Clone, Svc> Layer<Svc> for ThreadGuardLayer<S> {
    type Service = ThreadGuardService<Svc, S>;

    fn layer(&self, inner: Svc) -> Self::Service {
        ThreadGuardService {
            inner,
            guard: self.guard.clone(),
            routes: self.routes.clone(),
            coverage: Arc::clone(&self.coverage),
            max_body: self.max_body,
            body_timeout: self.body_timeout,
        }
    }
}

/// The service made by [`ThreadGuardLayer`].
pub struct ThreadGuardService<Svc, S> {
    inner: Svc,
    guard: ThreadGuard<S>,
    routes: Routes,
    coverage: Arc<Coverage>,
    max_body: usize,
    body_timeout: Duration,
}

impl<Svc: Clone, S: Clone> Clone for ThreadGuardService<Svc, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            guard: self.guard.clone(),
            routes: self.routes.clone(),
            coverage: Arc::clone(&self.coverage),
            max_body: self.max_body,
            body_timeout: self.body_timeout,
        }
    }
}

impl<Svc: fmt::Debug, S> fmt::Debug for ThreadGuardService<Svc, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadGuardService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The pending decision of one guarded request (store I/O, maybe body buffering).
pub type Decision = Pin<Box<dyn Future<Output = Result<Admit, Rejection>> + Send>>;

/// The response future of [`ThreadGuardService`].
pub type ResponseFuture<Svc, ReqB, ResB> = GateFuture<Svc, GuardGate, Decision, ReqB, ResB>;

impl<Svc, S, ReqB, ResB> Service<Request<ReqB>> for ThreadGuardService<Svc, S>
where
    Svc: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S: ThreadStore,
    ReqB: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = Svc::Error;
    type Future = ResponseFuture<Svc, ReqB, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let Some(route) = self.routes.find(req.method(), req.uri().path()) else {
            if !self.coverage.covered.is_empty() && self.coverage.covered.matches(req.uri().path())
            {
                note(&req);
                return GateFuture::done(render(not_covered(), req.headers(), None));
            }
            return GateFuture::pass(forward(&mut self.inner, req), None);
        };
        let extra_threads = self.coverage.threads_in_request(&req);
        // A covered route that checks nothing (Mastra's listing) needs no store and no body.
        if route.checks_nothing()
            && req.extensions().get::<ResourceId>().is_some()
            && extra_threads.as_ref().is_ok_and(Vec::is_empty)
        {
            return GateFuture::pass(forward(&mut self.inner, req), None);
        }
        let route = Arc::clone(route);
        let input = Input {
            scope: req.extensions().get::<ResourceId>().cloned(),
            trusted: req.extensions().get::<ThreadId>().cloned(),
            client_thread: route.thread_in_request(&req),
            extra_threads,
            include: route.include_query.as_ref().and_then(|name| {
                let q = req.uri().query()?;
                Some(
                    single(query::pairs(q).filter(|p| p.key == **name).map(|p| p.value))
                        .map(|v| v.map(|raw| query::decode(raw).map(Cow::into_owned))),
                )
            }),
            path_message: route
                .messages_path
                .as_ref()
                .and_then(|p| route.path_param(req.uri().path(), p))
                .map(|raw| query::decode_segment(raw).map(Cow::into_owned)),
            declared_len: req
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok()),
            body: route
                .needs_body()
                .then(|| std::mem::replace(req.body_mut(), ReqB::from(Bytes::new()))),
        };
        let decision: Decision = Box::pin(decide(
            self.guard.clone(),
            Arc::clone(&route),
            input,
            BodyLimits {
                max: self.max_body,
                timeout: self.body_timeout,
            },
        ));
        GateFuture::deciding(
            decision,
            req,
            take_ready(&mut self.inner),
            GuardGate { route },
        )
    }
}

impl Coverage {
    /// The thread ids every matched route checks besides its own (query, headers).
    fn threads_in_request<B>(&self, req: &Request<B>) -> Result<Vec<ThreadId>, Rejection> {
        let mut found = Vec::new();
        if let Some(q) = req.uri().query() {
            for name in &self.thread_queries {
                if let Some(value) =
                    single(query::pairs(q).filter(|p| p.key == **name).map(|p| p.value))?
                {
                    let id = query::decode(value).ok_or_else(invalid_thread)?;
                    found.push(ThreadId::new(id).map_err(|_| invalid_thread())?);
                }
            }
        }
        for name in &self.thread_headers {
            if let Some(value) = single(req.headers().get_all(name).iter())? {
                let id = value.to_str().map_err(|_| invalid_thread())?;
                found.push(ThreadId::new(id).map_err(|_| invalid_thread())?);
            }
        }
        Ok(found)
    }
}

fn not_covered() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: this route is not covered by the thread guard",
    )
}

struct Input<B> {
    scope: Option<ResourceId>,
    trusted: Option<ThreadId>,
    client_thread: Result<Option<ThreadId>, Rejection>,
    extra_threads: Result<Vec<ThreadId>, Rejection>,
    /// The raw `include`-style query value: given twice is an error, not UTF-8 is `None`.
    include: Option<Result<Option<Option<String>>, Rejection>>,
    path_message: Option<Option<String>>,
    declared_len: Option<u64>,
    body: Option<B>,
}

/// What the guard admits: the checked thread, the body to pass on, a trusted id to rewrite.
#[derive(Debug)]
pub struct Admit {
    thread: Option<ThreadId>,
    body: Option<Bytes>,
    rewrite: Option<ThreadId>,
}

/// How much of a body the guard buffers, and for how long it waits for it.
#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    max: usize,
    timeout: Duration,
}

async fn read_body<B>(
    body: B,
    declared_len: Option<u64>,
    limits: BodyLimits,
) -> Result<Bytes, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if declared_len.is_some_and(|len| len > limits.max as u64) {
        return Err(too_large());
    }
    // A deadline for the whole body, not per chunk: one byte a second would renew a per-read
    // timeout forever (slowloris). Dropping the future drops the body and what it buffered.
    let read = Limited::new(body, limits.max).collect();
    match tokio::time::timeout(limits.timeout, read).await {
        Err(_) => Err(Rejection::new(RejectionKind::RequestTimeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(invalid_body()),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, Rejection> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|_| invalid_body())
}

/// `messageIds` as Mastra accepts it: a string, `{id}`, or a list of either; every id valid.
fn message_ids(value: Option<&Value>) -> Result<Vec<MessageId>, Rejection> {
    fn one(v: &Value) -> Option<&str> {
        match v {
            Value::String(s) => Some(s),
            Value::Object(o) => o.get("id").and_then(Value::as_str),
            _ => None,
        }
    }
    let bad = || {
        Rejection::with_message(
            RejectionKind::BadRequest,
            "messageIds must be ids or objects with an id",
        )
    };
    match value {
        None | Some(Value::Null) => Err(Rejection::with_message(
            RejectionKind::BadRequest,
            "messageIds is required",
        )),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| message_id(one(v).ok_or_else(bad)?))
            .collect(),
        Some(v) => Ok(vec![message_id(one(v).ok_or_else(bad)?)?]),
    }
}

/// Checks a save-messages body: every message names the caller and a usable thread.
async fn check_saved_messages<S: ThreadStore>(
    guard: &ThreadGuard<S>,
    scope: &ResourceId,
    messages: Option<&Value>,
) -> Result<(), Rejection> {
    let Some(Value::Array(messages)) = messages else {
        return Err(Rejection::with_message(
            RejectionKind::BadRequest,
            "messages must be an array",
        ));
    };
    let field = |m: &Value, name: &str| {
        m.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let invalid = messages
        .iter()
        .filter(|m| field(m, "threadId").is_none() || field(m, "resourceId").is_none())
        .count();
    if invalid > 0 {
        return Err(Rejection::with_message(
            RejectionKind::BadRequest,
            format!(
                "All messages must have threadId and resourceId fields. Found {invalid} invalid message(s)."
            ),
        ));
    }
    if messages
        .iter()
        .any(|m| field(m, "resourceId").as_deref() != Some(scope.as_str()))
    {
        return Err(GuardError::ForeignResource.into());
    }
    // Saving is an upsert by id: an existing message id must already be the caller's. Every id
    // is validated before the first lookup, so no store ever sees one it cannot hold.
    let mut ids = Vec::new();
    for m in messages {
        match m.get("id") {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) => ids.push(message_id(id)?),
            Some(_) => {
                return Err(Rejection::with_message(
                    RejectionKind::BadRequest,
                    "Message ids must be strings",
                ));
            }
        }
    }
    let mut threads: Vec<ThreadId> = Vec::new();
    for m in messages {
        let id = ThreadId::new(field(m, "threadId").unwrap_or_default())
            .map_err(|_| invalid_thread())?;
        if !threads.contains(&id) {
            threads.push(id);
        }
    }
    guard.check_messages(scope, &ids).await?;
    guard
        .check_threads_or_missing(scope, &threads)
        .await
        .map_err(Rejection::from)
}

async fn decide<S, B>(
    guard: ThreadGuard<S>,
    route: Arc<GuardRoute>,
    input: Input<B>,
    limits: BodyLimits,
) -> Result<Admit, Rejection>
where
    S: ThreadStore,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let scope = input.scope.ok_or(GuardError::NotScoped)?;
    if let Some(message) = &route.deny {
        return Err(Rejection::with_message(
            RejectionKind::Forbidden,
            message.to_string(),
        ));
    }
    let extra_threads = input.extra_threads?;
    let (original, mut json) = match input.body {
        Some(body) => {
            let bytes = read_body(body, input.declared_len, limits).await?;
            let json = parse_json(&bytes)?;
            (Some(bytes), json)
        }
        None => (None, Value::Null),
    };
    let body_field = |field: &Option<Box<str>>| field.as_ref().and_then(|f| json.get(&**f));

    // A trusted id wins over anything the client sent (Mastra's MASTRA_THREAD_ID_KEY).
    let thread = match (&input.trusted, input.client_thread?) {
        (Some(trusted), _) => Some(trusted.clone()),
        (None, Some(client)) => Some(client),
        (None, None) => match body_field(&route.thread_body) {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(ThreadId::new(id).map_err(|_| invalid_thread())?),
            Some(_) => return Err(invalid_thread()),
        },
    };
    let mut admitted = None;
    if route.checks_thread() {
        match &thread {
            Some(id) => match guard.check_thread_or_missing(&scope, id).await? {
                ThreadPresence::Exists => admitted = Some(id.clone()),
                ThreadPresence::Missing if route.missing == Missing::Allow => {
                    admitted = Some(id.clone())
                }
                ThreadPresence::Missing => return Err(GuardError::ThreadNotFound.into()),
            },
            None if route.missing == Missing::Allow => {}
            None => {
                return Err(Rejection::with_message(
                    RejectionKind::BadRequest,
                    "No threadId found",
                ));
            }
        }
    }
    // Thread ids the handler might also read (`?threadId=`): checked like the route's own.
    let missing_passes = route.missing == Missing::Allow || !route.checks_thread();
    for id in extra_threads
        .iter()
        .filter(|id| thread.as_ref() != Some(*id))
    {
        if guard.check_thread_or_missing(&scope, id).await? == ThreadPresence::Missing
            && !missing_passes
        {
            return Err(GuardError::ThreadNotFound.into());
        }
    }
    if let Some(field) = &route.new_thread_body {
        match body_field(&Some(field.clone())) {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) => {
                let id = ThreadId::new(id).map_err(|_| invalid_thread())?;
                guard.check_thread_or_missing(&scope, &id).await?;
            }
            Some(_) => return Err(invalid_thread()),
        }
    }
    if let Some(include) = input.include
        && let Some(raw) = include?
    {
        let (messages, threads) = included(raw.as_deref())?;
        guard.check_messages(&scope, &messages).await?;
        guard.check_threads_or_missing(&scope, &threads).await?;
    }
    if let Some(id) = input.path_message {
        let id = message_id(&id.ok_or_else(invalid_message)?)?;
        guard.check_messages(&scope, &[id]).await?;
    }
    if route.messages_body.is_some() {
        let ids = message_ids(body_field(&route.messages_body))?;
        guard.check_messages(&scope, &ids).await?;
    }
    if route.save_messages.is_some() {
        check_saved_messages(&guard, &scope, body_field(&route.save_messages)).await?;
    }

    // Body rewrites: the caller's resource, and the trusted thread id.
    let mut changed = false;
    if let Some(field) = &route.force_resource {
        changed |= set_field(&mut json, field, scope.as_str())?;
    }
    if let (Some(trusted), Some(field)) = (&input.trusted, &route.thread_body)
        && json.get(&**field).is_some()
    {
        changed |= set_field(&mut json, field, trusted.as_str())?;
    }
    // The handler gets the JSON the guard decided on, re-serialized: a body with duplicate
    // keys cannot mean one thing to the guard and another to a first-key-wins parser.
    let body = match original {
        Some(_) if changed || !json.is_null() => Some(Bytes::from(
            serde_json::to_vec(&json).map_err(|_| invalid_body())?,
        )),
        original => original,
    };
    Ok(Admit {
        thread: admitted,
        body,
        rewrite: input.trusted,
    })
}

/// The message and thread ids of Mastra's `include` list: `[{"id": "..", "threadId": ".."}]`.
fn included(raw: Option<&str>) -> Result<(Vec<MessageId>, Vec<ThreadId>), Rejection> {
    let bad = || Rejection::with_message(RejectionKind::BadRequest, "Invalid query parameters");
    let items: Vec<Value> = serde_json::from_str(raw.ok_or_else(bad)?).map_err(|_| bad())?;
    let mut messages = Vec::with_capacity(items.len());
    let mut threads = Vec::new();
    for item in &items {
        let object = item.as_object().ok_or_else(bad)?;
        match object.get("id") {
            Some(Value::String(id)) if !id.is_empty() => messages.push(message_id(id)?),
            _ => return Err(bad()),
        }
        match object.get("threadId") {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) => {
                threads.push(ThreadId::new(id).map_err(|_| invalid_thread())?)
            }
            Some(_) => return Err(bad()),
        }
    }
    Ok((messages, threads))
}

/// Sets a string field of a JSON object body (an empty body becomes an object); reports
/// whether anything changed.
fn set_field(json: &mut Value, field: &str, value: &str) -> Result<bool, Rejection> {
    if json.is_null() {
        *json = Value::Object(serde_json::Map::new());
    }
    let object = json.as_object_mut().ok_or_else(invalid_body)?;
    if object.get(field).and_then(Value::as_str) == Some(value) {
        return Ok(false);
    }
    object.insert(field.to_owned(), Value::String(value.to_owned()));
    Ok(true)
}

/// How [`ThreadGuardService`] applies an admitted decision to the request.
pub struct GuardGate {
    route: Arc<GuardRoute>,
}

impl<ReqB: From<Bytes>> Gate<ReqB> for GuardGate {
    type Outcome = Result<Admit, Rejection>;

    fn admit(
        &self,
        outcome: <Self as Gate<ReqB>>::Outcome,
        req: &mut Request<ReqB>,
    ) -> Result<(), Rejection> {
        let admit = outcome?;
        if let Some(bytes) = admit.body {
            req.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            *req.body_mut() = ReqB::from(bytes);
        }
        if let Some(trusted) = &admit.rewrite {
            rewrite_thread(&self.route, req, trusted)?;
        }
        if let Some(thread) = admit.thread {
            req.extensions_mut().insert(thread);
        }
        Ok(())
    }
}

/// Makes the request name the trusted thread wherever the client could have named one.
fn rewrite_thread<B>(
    route: &GuardRoute,
    req: &mut Request<B>,
    trusted: &ThreadId,
) -> Result<(), Rejection> {
    let path = req.uri().path();
    let mut new_path = None;
    if let Some(param) = &route.thread_path
        && let Some(span) = route.pattern.param_span(path, param)
    {
        let mut rebuilt = String::with_capacity(path.len() + trusted.len());
        rebuilt.push_str(&path[..span.start]);
        query::push_encoded(&mut rebuilt, trusted);
        rebuilt.push_str(&path[span.end..]);
        new_path = Some(rebuilt);
    }
    let mut new_query = None;
    if let Some(name) = &route.thread_query
        && let Some(q) = req.uri().query()
        && query::pairs(q).any(|p| p.key == **name)
    {
        let mut rebuilt = String::with_capacity(q.len() + trusted.len());
        for (i, pair) in query::pairs(q).enumerate() {
            if i > 0 {
                rebuilt.push('&');
            }
            if pair.key == **name {
                query::push_encoded(&mut rebuilt, name);
                rebuilt.push('=');
                query::push_encoded(&mut rebuilt, trusted);
            } else {
                rebuilt.push_str(pair.raw);
            }
        }
        new_query = Some(rebuilt);
    }
    if new_path.is_some() || new_query.is_some() {
        let path = new_path.unwrap_or_else(|| req.uri().path().to_owned());
        let pq = match new_query.as_deref().or(req.uri().query()) {
            Some(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path,
        };
        query::set_path_and_query(req, pq)?;
    }
    if let Some(name) = &route.thread_header
        && req.headers().contains_key(&**name)
    {
        let value = HeaderValue::from_bytes(trusted.as_bytes()).map_err(|_| invalid_thread())?;
        if let Ok(name) = HeaderName::try_from(&**name) {
            req.headers_mut().insert(name, value);
        }
    }
    Ok(())
}
