//! The `Cors` service and its response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::config::Config;
use crate::http::protocol::is_preflight;
use crate::reject::{Rejection, RejectionKind, render};

/// The service made by [`CorsLayer`](super::CorsLayer).
#[derive(Clone)]
pub struct Cors<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Cors<S> {
    pub(super) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Cors<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cors")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

/// `GET`, `HEAD` and `OPTIONS` do not change state (RFC 9110 §9.2.1), so strict mode lets them by.
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Cors<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let origin = req.headers().get(header::ORIGIN);
        let allowed = self.config.allowed_origin(origin);
        if is_preflight(&req) {
            let mut response = Response::new(ResB::default());
            *response.status_mut() = StatusCode::NO_CONTENT;
            self.config.preflight(&mut response, allowed, req.headers());
            return ResponseFuture::done(response);
        }
        if self.config.strict
            && allowed.is_none()
            && origin.is_some()
            && changes_state(req.method())
        {
            let rejection = Rejection::with_message(RejectionKind::Forbidden, "Origin not allowed");
            let mut response = render(rejection, req.headers(), None);
            self.config.actual(&mut response, None);
            return ResponseFuture::done(response);
        }
        ResponseFuture {
            kind: Kind::Inner {
                fut: self.inner.call(req),
                allowed,
                config: Arc::clone(&self.config),
            },
        }
    }
}

pin_project! {
    /// The response future of [`Cors`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] fut: F, allowed: Option<HeaderValue>, config: Arc<Config> },
        Done { response: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn done(response: Response<B>) -> Self {
        Self {
            kind: Kind::Done {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner {
                fut,
                allowed,
                config,
            } => {
                let mut response = ready!(fut.poll(cx))?;
                config.actual(&mut response, allowed.take());
                Poll::Ready(Ok(response))
            }
            KindProj::Done { response } => Poll::Ready(Ok(response
                .take()
                .expect("cors::ResponseFuture polled after completion"))),
        }
    }
}
