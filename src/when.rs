//! Apply any layer only where the request path (and optionally the method) matches.
//!
//! The equivalent of Mastra's `middleware: [{ path: '/api/*', handler }]`, with the same glob
//! semantics (see [`PathPattern`]). Other requests go straight to the inner service.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::{BearerAuthLayer, StaticTokens, when_path};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let auth = BearerAuthLayer::new(StaticTokens::new().token("a-long-random-api-key-0123456789", "svc"));
//! let svc = ServiceBuilder::new()
//!     .layer(when_path("/api/*", auth).unwrap())
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//!
//! let health = Request::get("/health").body(String::new()).unwrap();
//! assert_eq!(svc.clone().oneshot(health).await.unwrap().status(), StatusCode::OK);
//! let api = Request::get("/api/memory/threads").body(String::new()).unwrap();
//! assert_eq!(svc.oneshot(api).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::ConfigError;
use crate::http::protocol::method_matches;
use crate::path::PathPattern;

/// Applies `layer` only to requests whose path matches `pattern`.
///
/// # Errors
///
/// [`ConfigError::InvalidPathPattern`] when the pattern is malformed.
pub fn when_path<L>(pattern: &str, layer: L) -> Result<WhenPathLayer<L>, ConfigError> {
    Ok(WhenPathLayer {
        layer,
        filter: Arc::new(Filter {
            pattern: PathPattern::new(pattern)?,
            methods: Vec::new(),
        }),
    })
}

#[derive(Debug, Clone)]
struct Filter {
    pattern: PathPattern,
    methods: Vec<Method>,
}

impl Filter {
    fn matches<B>(&self, req: &Request<B>) -> bool {
        // HEAD is served by GET handlers in most routers, so a GET filter covers it too.
        let method_ok = self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|route| method_matches(route, req.method()));
        method_ok && self.pattern.matches(req.uri().path())
    }
}

/// A layer applied only where the path (and method) match. Built by [`when_path`].
#[derive(Debug, Clone)]
pub struct WhenPathLayer<L> {
    layer: L,
    filter: Arc<Filter>,
}

impl<L> WhenPathLayer<L> {
    /// Restricts the layer to these methods too (any method when never called).
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        Arc::make_mut(&mut self.filter).methods.extend(methods);
        self
    }
}

impl<L, S> Layer<S> for WhenPathLayer<L>
where
    L: Layer<S>,
    S: Clone,
{
    type Service = WhenPath<S, L::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        WhenPath {
            matched: self.layer.layer(inner.clone()),
            unmatched: inner,
            filter: Arc::clone(&self.filter),
        }
    }
}

/// The service made by [`WhenPathLayer`].
#[derive(Debug, Clone)]
pub struct WhenPath<S, T> {
    matched: T,
    unmatched: S,
    filter: Arc<Filter>,
}

impl<S, T, B> Service<Request<B>> for WhenPath<S, T>
where
    S: Service<Request<B>>,
    T: Service<Request<B>, Response = S::Response, Error = S::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = WhenPathFuture<S::Future, T::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both must be ready: the request's path is only known in `call`.
        let matched = self.matched.poll_ready(cx)?;
        let unmatched = self.unmatched.poll_ready(cx)?;
        if matched.is_ready() && unmatched.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.filter.matches(&req) {
            WhenPathFuture {
                branch: Branch::Matched {
                    fut: self.matched.call(req),
                },
            }
        } else {
            WhenPathFuture {
                branch: Branch::Unmatched {
                    fut: self.unmatched.call(req),
                },
            }
        }
    }
}

pin_project! {
    /// The response future of [`WhenPath`].
    pub struct WhenPathFuture<U, M> {
        #[pin]
        branch: Branch<U, M>,
    }
}

pin_project! {
    #[project = BranchProj]
    enum Branch<U, M> {
        Matched { #[pin] fut: M },
        Unmatched { #[pin] fut: U },
    }
}

impl<U, M, R, E> Future for WhenPathFuture<U, M>
where
    U: Future<Output = Result<R, E>>,
    M: Future<Output = Result<R, E>>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().branch.project() {
            BranchProj::Matched { fut } => fut.poll(cx),
            BranchProj::Unmatched { fut } => fut.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Method, Request, Response, StatusCode};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::{BearerAuthLayer, StaticTokens};

    fn svc(
        layer: WhenPathLayer<BearerAuthLayer<StaticTokens<&'static str>>>,
    ) -> impl tower::Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone
    {
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|_r: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            }))
    }

    fn auth() -> BearerAuthLayer<StaticTokens<&'static str>> {
        BearerAuthLayer::new(StaticTokens::new().token("k-0123456789abcdef0123456789abcdef", "svc"))
    }

    async fn status(
        s: impl tower::Service<Request<String>, Response = Response<String>, Error = Infallible>,
        method: Method,
        path: &str,
    ) -> StatusCode {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(String::new())
            .unwrap();
        s.oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn layer_applies_only_where_the_glob_matches() {
        let s = svc(when_path("/api/*", auth()).unwrap());
        for path in ["/api", "/api/", "/api/memory/threads"] {
            assert_eq!(
                status(s.clone(), Method::GET, path).await,
                StatusCode::UNAUTHORIZED,
                "{path}"
            );
        }
        for path in ["/apix", "/health", "/"] {
            assert_eq!(
                status(s.clone(), Method::GET, path).await,
                StatusCode::OK,
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn method_filter_narrows_the_layer() {
        let s = svc(when_path("/api/*", auth())
            .unwrap()
            .methods([Method::POST, Method::DELETE]));
        assert_eq!(
            status(s.clone(), Method::GET, "/api/x").await,
            StatusCode::OK
        );
        assert_eq!(
            status(s.clone(), Method::POST, "/api/x").await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(s, Method::DELETE, "/api/x").await,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn head_is_covered_by_a_get_filter() {
        let s = svc(when_path("/api/*", auth()).unwrap().methods([Method::GET]));
        assert_eq!(
            status(s, Method::HEAD, "/api/x").await,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn malformed_pattern_is_a_config_error() {
        assert!(when_path("api/*", auth()).is_err());
    }
}
