//! The `Log` service, its response future, and request ids.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::LogBody;
use super::event::{PendingEvent, enabled};
use super::layer::Config;

/// The request id header, read from the request and set on both request and response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id that is trusted; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The request's id, in the request's extensions for handlers (and in `x-request-id`).
///
/// An incoming `x-request-id` is kept when it is 1 to [`MAX_REQUEST_ID_LEN`] characters of
/// `A-Z a-z 0-9 - _ . :`; anything else is replaced by a generated id, so a client cannot
/// inject log lines or oversized values.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ids of safe ASCII characters are ever built.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn valid_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_REQUEST_ID_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// 32 hex digits, unique per process (a counter) and unpredictable across processes (a
/// random hash key); no RNG dependency needed.
fn generate_request_id() -> HeaderValue {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hasher = KEY.get_or_init(RandomState::new).build_hasher();
    hasher.write_u64(n);
    let high = hasher.finish();
    hasher.write_u64(high);
    let low = hasher.finish();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in high
        .to_be_bytes()
        .iter()
        .chain(&low.to_be_bytes())
        .enumerate()
    {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

/// Keeps a valid incoming id or sets a new one, on the request's header and extensions.
fn request_id<B>(req: &mut Request<B>) -> HeaderValue {
    let headers = req.headers();
    let id = match headers.get(&X_REQUEST_ID) {
        Some(v) if valid_request_id(v) && headers.get_all(&X_REQUEST_ID).iter().count() == 1 => {
            v.clone()
        }
        _ => {
            let id = generate_request_id();
            req.headers_mut().insert(X_REQUEST_ID, id.clone());
            id
        }
    };
    req.extensions_mut().insert(RequestId(id.clone()));
    id
}

/// The service made by [`LogLayer`](super::LogLayer).
#[derive(Clone)]
pub struct Log<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Log<S> {
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

impl<S: fmt::Debug> fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Log<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body + Default,
{
    type Response = Response<LogBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let config = &self.config;
        // Only to render a caught panic the way the client can read it (trailers-only gRPC).
        let grpc = crate::reject::grpc_content_type(req.headers());
        let excluded = !config.exclude.is_empty() && config.exclude.matches(req.uri().path());
        let request_id = (!excluded && config.request_ids).then(|| request_id(&mut req));
        // Nothing is prepared for an event no subscriber wants. The user accessor is the
        // application's code: a panic there costs the event, never the answer.
        let mut pending = if !excluded && enabled(config.least_verbose()) {
            panic::catch_unwind(AssertUnwindSafe(|| {
                PendingEvent::start(Arc::clone(config), &mut req, request_id.clone())
            }))
            .ok()
        } else {
            None
        };
        // `call` may run application code synchronously (a hand-written service, a
        // `service_fn` closure): a panic there is answered like one in the future.
        let inner = &mut self.inner;
        let fut = match panic::catch_unwind(AssertUnwindSafe(|| inner.call(req))) {
            Ok(fut) => Some(fut),
            Err(_payload) => {
                if let Some(pending) = pending.as_mut() {
                    pending.panicked();
                }
                None
            }
        };
        ResponseFuture {
            fut,
            pending,
            request_id,
            grpc,
        }
    }
}

pin_project! {
    /// The response future of [`Log`].
    pub struct ResponseFuture<F> {
        // `None` once the inner service panicked in `call`.
        #[pin]
        fut: Option<F>,
        pending: Option<Box<PendingEvent>>,
        request_id: Option<HeaderValue>,
        grpc: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body + Default,
{
    type Output = Result<Response<LogBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // A handler panic must not drop the connection unanswered: the client gets a 500 and
        // the event records it. The future is not polled again: this poll returns Ready.
        let polled = match this.fut.as_mut().as_pin_mut() {
            Some(fut) => panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))),
            None => Err(Box::new(()) as Box<dyn std::any::Any + Send>),
        };
        let polled = match polled {
            Ok(polled) => polled,
            Err(_payload) => {
                if let Some(pending) = this.pending.as_mut() {
                    pending.panicked();
                }
                Poll::Ready(Ok(crate::reject::render_internal(this.grpc.take())))
            }
        };
        let response = match ready!(polled) {
            Ok(response) => response,
            Err(error) => {
                if let Some(mut pending) = this.pending.take() {
                    pending.service_error();
                }
                return Poll::Ready(Err(error));
            }
        };
        let (mut parts, body) = response.into_parts();
        if let Some(id) = this.request_id.take() {
            parts.headers.insert(X_REQUEST_ID, id);
        }
        let mut pending = this.pending.take();
        if let Some(event) = pending.as_mut() {
            let exact = if body.is_end_stream() {
                Some(0)
            } else {
                body.size_hint().exact()
            };
            if !event.head(&parts, exact) {
                // Everything is known: emit now rather than when the body is dropped.
                pending = None;
            }
        }
        Poll::Ready(Ok(Response::from_parts(parts, LogBody::new(body, pending))))
    }
}
