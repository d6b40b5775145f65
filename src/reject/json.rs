//! Opt-in JSON error bodies: [`JsonErrorLayer`], its service and future, and [`ErrorBody`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::Rejection;
use super::render::json_error;
use crate::http::protocol::is_grpc;

/// Opt-in JSON error bodies: turns every rejection from an inner tower-scope layer into
/// `{"error": "<message>"}` with `content-type: application/json`.
///
/// gRPC rejections and every other response pass through unchanged. The response body type
/// becomes [`ErrorBody<B>`]. Each layer's `json_errors()` method stacks this layer on top of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonErrorLayer;

impl JsonErrorLayer {
    /// Creates the layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for JsonErrorLayer {
    type Service = JsonErrors<S>;

    fn layer(&self, inner: S) -> JsonErrors<S> {
        JsonErrors { inner }
    }
}

/// The service made by [`JsonErrorLayer`], and by a layer after its `json_errors()`.
#[derive(Debug, Clone)]
pub struct JsonErrors<S> {
    inner: S,
}

impl<S> JsonErrors<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

/// A layer's refusals are head-only: status, `WWW-Authenticate` or gRPC trailers, no body
/// (the default of every deciding layer; RFC 6750 puts the error in the challenge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadOnly;

/// A layer's refusals carry a JSON `{"error": "..."}` body: the layer's service is wrapped
/// in [`JsonErrors`] (set by each layer's `json_errors()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonBody;

impl<S, ReqB, ResB> Service<http::Request<ReqB>> for JsonErrors<S>
where
    S: Service<http::Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ErrorBody<ResB>>;
    type Error = S::Error;
    type Future = JsonErrorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        JsonErrorsFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`JsonErrors`].
    pub struct JsonErrorsFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for JsonErrorsFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ErrorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = std::task::ready!(self.project().inner.poll(cx))?;
        let json = match response.extensions().get::<Rejection>() {
            Some(rejection) if !is_grpc(response.headers()) => {
                Some(json_error(rejection.message(), rejection.detail()))
            }
            _ => None,
        };
        let (mut parts, body) = response.into_parts();
        let body = match json {
            Some(json) => {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(json.len()));
                ErrorBody::json(json)
            }
            None => ErrorBody::inner(body),
        };
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}

pin_project! {
    /// A response body that is either the inner service's body or a JSON error document.
    pub struct ErrorBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner { #[pin] body: B },
        Json { data: Option<Bytes> },
    }
}

impl<B> ErrorBody<B> {
    /// Wraps an inner body.
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: BodyKind::Inner { body },
        }
    }

    fn json(data: Bytes) -> Self {
        Self {
            kind: BodyKind::Json { data: Some(data) },
        }
    }
}

impl<B: Default> Default for ErrorBody<B> {
    fn default() -> Self {
        Self::inner(B::default())
    }
}

impl<B> Body for ErrorBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body } => body.poll_frame(cx),
            BodyKindProj::Json { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Json { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Json { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
