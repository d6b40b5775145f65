//! `ThreadGuard`: the service, its gate and its response future.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::check::OwnershipCheck;
use super::decide::{Admit, Decision, Input, decide, decide_thread, rewrite_thread};
use super::layer::{Coverage, ThreadGuardLayer};
use super::route::{GuardRoute, Routes, single};
use super::store::ThreadStore;
use crate::gate::{Gate, GateFuture, forward, note, response_future, take_ready};
use crate::http::body::{self as request_body, BodyLimits, BoxError};
use crate::reject::{Rejection, RejectionKind, render};
use crate::{ActingAs, Privileged, ResourceId, ThreadId, query};

/// The service made by [`ThreadGuardLayer`]: the inner service `S` over the store `T`.
pub struct ThreadGuard<S, T> {
    inner: S,
    /// The layer's settings in one allocation: tower clones a service per request (hyper's
    /// connection, axum's router), and a clone is then one reference count, not five.
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    check: OwnershipCheck<T>,
    routes: Routes,
    coverage: Arc<Coverage>,
    limits: BodyLimits,
}

impl<S, T: Clone> ThreadGuard<S, T> {
    pub(crate) fn new<E>(inner: S, layer: &ThreadGuardLayer<T, E>) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared {
                check: layer.check.clone(),
                routes: layer.routes.clone(),
                coverage: Arc::clone(&layer.coverage),
                limits: layer.limits,
            }),
        }
    }
}

impl<S: Clone, T> Clone for ThreadGuard<S, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, T> fmt::Debug for ThreadGuard<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadGuard")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

response_future! {
    /// The response future of [`ThreadGuard`]: the inner service `S`, the request body `B`.
    ResponseFuture<S, [], B> where [] => GuardGate<B>, Decision
}

fn not_covered() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: this route is not covered by the thread guard",
    )
}

impl<S, T, ReqB, ResB> Service<Request<ReqB>> for ThreadGuard<S, T>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    T: ThreadStore,
    ReqB: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let Self { inner, shared } = self;
        let Some(route) = shared.routes.find(req.method(), req.uri().path()) else {
            if !shared.coverage.covered.is_empty()
                && shared.coverage.covered.matches(req.uri().path())
            {
                note(&req);
                return ResponseFuture::new(GateFuture::done(render(
                    not_covered(),
                    req.headers(),
                    None,
                )));
            }
            return ResponseFuture::new(GateFuture::pass(forward(inner, req), None));
        };
        let extra_threads = shared.coverage.threads_in_request(&req);
        // A covered route that checks nothing (Mastra's listing) needs no store and no body.
        if route.checks_nothing()
            && req.extensions().get::<ResourceId>().is_some()
            && extra_threads.as_ref().is_ok_and(Vec::is_empty)
        {
            return ResponseFuture::new(GateFuture::pass(forward(inner, req), None));
        }
        let route = Arc::clone(route);
        // Privileged: see `Input::privileged`.
        let privileged = || {
            req.extensions()
                .get::<Privileged>()
                .filter(|_| req.extensions().get::<ActingAs>().is_none())
                .cloned()
        };
        let read = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
        if route.checks_only_its_thread()
            && extra_threads.as_ref().is_ok_and(Vec::is_empty)
            && let Ok(client_thread) = route.thread_in_request(&req)
        {
            let decision: Decision = Box::pin(decide_thread(
                shared.check.clone(),
                route.missing,
                req.extensions().get::<ResourceId>().cloned(),
                privileged(),
                read,
                req.extensions().get::<ThreadId>().cloned(),
                client_thread,
            ));
            return deciding(inner, decision, req, route);
        }
        let input = Input {
            scope: req.extensions().get::<ResourceId>().cloned(),
            // A request the scope layer already re-targeted (an `ActingAs` there) acts as that
            // resource only: the guard does not move it on to a thread's owner.
            privileged: privileged(),
            read,
            trusted: req.extensions().get::<ThreadId>().cloned(),
            client_thread: route.thread_in_request(&req),
            extra_threads,
            include: include_query(&route, &req),
            path_message: route
                .messages_path
                .as_ref()
                .and_then(|p| route.path_value(req.uri().path(), p))
                .map(|raw| query::decode_segment(raw).map(Cow::into_owned)),
            body: route.needs_body().then(|| request_body::take(&mut req)),
        };
        let decision: Decision = Box::pin(decide(
            shared.check.clone(),
            Arc::clone(&route),
            input,
            shared.limits,
        ));
        deciding(inner, decision, req, route)
    }
}

/// Waits for the guard's `decision` with the readied `inner` service.
fn deciding<S, ReqB>(
    inner: &mut S,
    decision: Decision,
    req: Request<ReqB>,
    route: Arc<GuardRoute>,
) -> ResponseFuture<S, ReqB>
where
    S: Service<Request<ReqB>> + Clone,
    ReqB: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
{
    ResponseFuture::new(GateFuture::deciding(
        decision,
        req,
        take_ready(inner),
        GuardGate {
            route,
            restore: request_body::put_back::<ReqB>,
        },
    ))
}

/// The raw `include`-style query value: given twice is an error, not UTF-8 is `None`.
fn include_query<B>(
    route: &GuardRoute,
    req: &Request<B>,
) -> Option<Result<Option<Option<String>>, Rejection>> {
    let name = route.include_query.as_ref()?;
    let q = req.uri().query()?;
    Some(
        single(query::pairs(q).filter(|p| p.key == **name).map(|p| p.value))
            .map(|v| v.map(|raw| query::decode(raw).map(Cow::into_owned))),
    )
}

/// How [`ThreadGuard`] applies an admitted decision to the request.
pub(crate) struct GuardGate<B> {
    route: Arc<GuardRoute>,
    restore: fn(&mut Request<B>, request_body::Buffered),
}

impl<B> Gate<B> for GuardGate<B> {
    type Outcome = Result<Admit, Rejection>;

    fn admit(&self, outcome: Self::Outcome, req: &mut Request<B>) -> Result<(), Rejection> {
        let admit = outcome?;
        if let Some(body) = admit.body {
            (self.restore)(req, body);
        }
        if let Some(trusted) = &admit.rewrite {
            rewrite_thread(&self.route, req, trusted)?;
        }
        if let Some(thread) = admit.thread {
            req.extensions_mut().insert(thread);
        }
        if let Some(message) = admit.message {
            req.extensions_mut().insert(message);
        }
        if let Some(record) = admit.prefetched {
            req.extensions_mut().insert(super::PrefetchedThread(record));
        }
        if let Some(acting) = admit.acting_as {
            // The handler serves the thread's owner: what the guard decided on is what it reads.
            req.extensions_mut().insert(acting.resource.clone());
            req.extensions_mut().insert(acting);
        }
        Ok(())
    }
}
