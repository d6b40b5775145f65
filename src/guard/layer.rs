//! `ThreadGuardLayer`: configuration and the `Layer` impls.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http::header::HeaderName;
use tower_layer::Layer;

use super::check::OwnershipCheck;
use super::route::{GuardRoute, Routes, invalid_thread, single};
use super::service::ThreadGuard;
use super::store::ThreadStore;
use crate::http::body::BodyLimits;
use crate::http::names;
use crate::path::{PathPattern, PathSet};
use crate::reject::{HeadOnly, JsonBody, JsonErrors, Rejection};
use crate::{ConfigError, ThreadId, query};

/// Checks, before the handler runs, that the thread or messages a request names belong to
/// the caller's [`ResourceId`](crate::ResourceId); see the [module docs](crate::guard).
///
/// Decisions: owner is the caller → pass, with [`ThreadId`] inserted; another owner → 403
/// (or 404 with [`hide_foreign_threads`](Self::hide_foreign_threads)); missing → 404 or pass,
/// per route; unowned → 403 unless [`allow_unowned_threads`](Self::allow_unowned_threads); no
/// `ResourceId` → 403; a thread or message id [`ThreadId`] / [`MessageId`](crate::MessageId)
/// refuses (empty, over [`MAX_ID_LEN`](crate::extensions::MAX_ID_LEN) bytes, a control
/// character such as NUL) → 400 before any store lookup, alike on every backend; a JSON body
/// with a key given twice on the path to an id → 400; a value the store refuses → 400; store
/// unreachable, failing or timed out → 503 with `Retry-After`. A `ThreadId` already set by a
/// trusted earlier layer replaces the client's id, and the request is rewritten to it.
///
/// `T` is the [`ThreadStore`]; `E` says how refusals are written ([`HeadOnly`] or, after
/// [`json_errors`](Self::json_errors), [`JsonBody`]).
pub struct ThreadGuardLayer<T, E = HeadOnly> {
    pub(crate) check: OwnershipCheck<T>,
    pub(crate) routes: Routes,
    pub(crate) coverage: Arc<Coverage>,
    pub(crate) limits: BodyLimits,
    errors: E,
}

/// Which paths must match a route, and which thread ids every matched route checks too.
#[derive(Debug, Clone, Default)]
pub(crate) struct Coverage {
    pub(crate) covered: PathSet,
    thread_queries: Vec<Box<str>>,
    thread_headers: Vec<HeaderName>,
}

impl<T: Clone, E: Clone> Clone for ThreadGuardLayer<T, E> {
    fn clone(&self) -> Self {
        Self {
            check: self.check.clone(),
            routes: self.routes.clone(),
            coverage: Arc::clone(&self.coverage),
            limits: self.limits,
            errors: self.errors.clone(),
        }
    }
}

impl<T, E> fmt::Debug for ThreadGuardLayer<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadGuardLayer")
            .field("routes", &self.routes.0)
            .field("coverage", &self.coverage)
            .field("max_body", &self.limits.max)
            .field("body_timeout", &self.limits.timeout)
            .finish()
    }
}

impl<T: ThreadStore> ThreadGuardLayer<T> {
    /// A guard over `store` with no routes yet.
    pub fn new(store: T) -> Self {
        Self {
            check: OwnershipCheck::new(store),
            routes: Routes::default(),
            coverage: Arc::new(Coverage::default()),
            limits: BodyLimits::default(),
            errors: HeadOnly,
        }
    }
}

impl<T: ThreadStore, E> ThreadGuardLayer<T, E> {
    /// Refuses (403, gRPC 7) every request below `pattern` that no route matches, so a route
    /// added to the router later is never silently unguarded. Recommended for every prefix
    /// the guard protects; [`mastra::memory_guard`](crate::mastra::memory_guard) covers
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
        let parsed = names::header_name(name)?;
        Arc::make_mut(&mut self.coverage)
            .thread_headers
            .push(parsed);
        Ok(self)
    }

    /// Adds a guarded route; the first route that matches a request decides.
    #[must_use]
    pub fn route(self, route: GuardRoute) -> Self {
        self.routes([route])
    }

    /// Adds guarded routes, in order (e.g. [`mastra::memory_guard_routes`](crate::mastra::memory_guard_routes)).
    #[must_use]
    pub fn routes(mut self, routes: impl IntoIterator<Item = GuardRoute>) -> Self {
        let mut all = self.routes.0.to_vec();
        all.extend(routes.into_iter().map(Arc::new));
        self.routes = Routes(all.into());
        self
    }

    /// Answers 404 instead of 403 for another resource's thread, hiding that it exists.
    #[must_use]
    pub fn hide_foreign_threads(mut self) -> Self {
        self.check = self.check.hide_foreign_threads();
        self
    }

    /// Lets anyone use threads that have no owner (Mastra treats them as shared).
    #[must_use]
    pub fn allow_unowned_threads(mut self) -> Self {
        self.check = self.check.allow_unowned_threads();
        self
    }

    /// Sets how long one store lookup may take before the answer is 503 (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.check = self.check.timeout(timeout);
        self
    }

    /// Sets the largest JSON body buffered on routes that read it (default 4.5 MB); larger
    /// bodies get 413 before the handler runs.
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.limits.max = max;
        self
    }

    /// Sets how long the guard waits for the whole JSON body on routes that read it (default
    /// [`DEFAULT_BODY_TIMEOUT`](super::DEFAULT_BODY_TIMEOUT), 10 s), counted from the start of
    /// the read, not per chunk; a client that has not sent it all by then gets 408 Request
    /// Timeout (gRPC 4, deadline exceeded) and what was buffered is dropped, so a trickling
    /// upload cannot hold a task and a buffer open. The store lookups that follow have their
    /// own [`timeout`](Self::timeout). A body the scope layer already read is not read again.
    #[must_use]
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// The ownership checks this layer makes, for handlers that need the same (gRPC).
    pub fn check(&self) -> &OwnershipCheck<T> {
        &self.check
    }

    /// Renders this layer's rejections as JSON `{"error": "..."}` bodies; the other settings
    /// can come before or after it.
    pub fn json_errors(self) -> ThreadGuardLayer<T, JsonBody> {
        ThreadGuardLayer {
            check: self.check,
            routes: self.routes,
            coverage: self.coverage,
            limits: self.limits,
            errors: JsonBody,
        }
    }
}

impl<T: super::ThreadRecords, E> ThreadGuardLayer<T, E> {
    /// On guarded reads (GET, HEAD), reads the route's thread's whole record in the ownership
    /// lookup and hands it to the handler as [`PrefetchedThread`](super::PrefetchedThread), so
    /// a handler that serves the thread need not query again: one store round trip per read
    /// instead of two. The decision is unchanged (made on the record's owner).
    #[must_use]
    pub fn prefetch_thread_records(mut self) -> Self {
        self.check.set_prefetch(super::check::prefetch_of::<T>);
        self
    }
}

impl<S, T: Clone> Layer<S> for ThreadGuardLayer<T, HeadOnly> {
    type Service = ThreadGuard<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        ThreadGuard::new(inner, self)
    }
}

impl<S, T: Clone> Layer<S> for ThreadGuardLayer<T, JsonBody> {
    type Service = JsonErrors<ThreadGuard<S, T>>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonErrors::new(ThreadGuard::new(inner, self))
    }
}

impl Coverage {
    /// The thread ids every matched route checks besides its own (query, headers).
    pub(crate) fn threads_in_request<B>(
        &self,
        req: &Request<B>,
    ) -> Result<Vec<ThreadId>, Rejection> {
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
