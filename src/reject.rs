//! One typed rejection, rendered in one place for HTTP, gRPC and (opt-in) JSON.
//!
//! Every layer refuses a request by building a [`Rejection`] and rendering it here:
//!
//! - plain HTTP: the status code and, for bearer-auth failures, an RFC 6750
//!   `WWW-Authenticate: Bearer realm="..", error="..", error_description=".."` header; the body
//!   is empty (head-only) so the inner service's body type is kept;
//! - gRPC (`content-type: application/grpc*`, grpc-web included): a trailers-only answer, HTTP
//!   200 with the request's content type echoed, `grpc-status` and a percent-encoded
//!   `grpc-message`, because a plain 401 breaks gRPC clients;
//! - JSON, only when asked for with [`JsonErrorLayer`]: `{"error": "<message>"}` (Mastra's shape).
//!
//! The rejection itself is attached to the response's extensions, so an outer layer (logging,
//! metrics, a custom error page) can read why the request was refused.
//!
//! ```
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::{BearerAuthLayer, Rejection, RejectionKind, StaticTokens};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let tokens = StaticTokens::new().token("a-long-random-api-key-0123456789", "alice");
//! let svc = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(tokens).realm("example").unwrap())
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//!
//! let res = svc.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="example""#);
//! let why = res.extensions().get::<Rejection>().unwrap();
//! assert_eq!(why.kind(), RejectionKind::MissingCredentials);
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::http::protocol::{GRPC_MESSAGE, GRPC_STATUS, is_grpc};
use crate::mastra::messages;

/// The `Retry-After` of every 503: 5 seconds.
///
/// Long enough that clients do not hammer a database that is failing over or a pool that is
/// exhausted (the guard's own store timeout and SQLite's busy wait are 5 s too), short enough
/// that a blip does not keep clients away for long.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What kind of refusal a [`Rejection`] is; it fixes the HTTP status and the gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credentials were sent: 401 with a bare `Bearer` challenge (RFC 6750 §3.1), gRPC 16.
    MissingCredentials,
    /// The credentials are malformed or ambiguous: 400 `invalid_request`, gRPC 3.
    InvalidRequest,
    /// The token is expired, forged, malformed or unknown: 401 `invalid_token`, gRPC 16.
    InvalidToken,
    /// The token lacks a required scope: 403 `insufficient_scope`, gRPC 7.
    InsufficientScope,
    /// The caller is known but may not do this: 403, gRPC 7.
    Forbidden,
    /// The target does not exist (or is hidden from the caller): 404, gRPC 5.
    NotFound,
    /// The request itself is invalid (not an authentication problem): 400, gRPC 3.
    BadRequest,
    /// The request body is larger than allowed: 413, gRPC 8.
    PayloadTooLarge,
    /// The client did not send the request body in time (a trickling or stalled upload): 408,
    /// gRPC 4 (deadline exceeded).
    RequestTimeout,
    /// A backend the decision needs is down or too slow: 503 with `Retry-After`, gRPC 14.
    /// Never a pass.
    Unavailable,
    /// The service failed while answering (it panicked): 500, gRPC 13.
    Internal,
}

impl RejectionKind {
    /// The HTTP status code for this kind.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingCredentials | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::InsufficientScope | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status code for this kind.
    pub fn grpc_code(self) -> u8 {
        match self {
            Self::MissingCredentials | Self::InvalidToken => 16,
            Self::InvalidRequest | Self::BadRequest => 3,
            Self::InsufficientScope | Self::Forbidden => 7,
            Self::NotFound => 5,
            Self::PayloadTooLarge => 8,
            Self::RequestTimeout => 4,
            Self::Unavailable => 14,
            Self::Internal => 13,
        }
    }

    /// How long a client should wait before retrying, sent as `Retry-After` (RFC 9110 §10.2.3)
    /// on HTTP answers: [`RETRY_AFTER`] for [`Unavailable`](Self::Unavailable), `None` for every
    /// other kind (retrying them unchanged cannot succeed). gRPC answers carry code 14 instead,
    /// which gRPC clients already treat as retryable.
    pub fn retry_after(self) -> Option<Duration> {
        matches!(self, Self::Unavailable).then_some(RETRY_AFTER)
    }

    /// The RFC 6750 `error` code, for kinds that carry a bearer challenge.
    pub fn bearer_error(self) -> Option<&'static str> {
        match self {
            Self::InvalidRequest => Some("invalid_request"),
            Self::InvalidToken => Some("invalid_token"),
            Self::InsufficientScope => Some("insufficient_scope"),
            _ => None,
        }
    }

    /// Whether the HTTP answer carries a `WWW-Authenticate: Bearer` challenge.
    pub fn has_challenge(self) -> bool {
        matches!(self, Self::MissingCredentials) || self.bearer_error().is_some()
    }

    fn default_message(self) -> &'static str {
        match self {
            Self::MissingCredentials => messages::AUTHENTICATION_REQUIRED,
            Self::InvalidRequest => "Malformed credentials",
            Self::InvalidToken => messages::INVALID_OR_EXPIRED_TOKEN,
            Self::InsufficientScope => "Insufficient scope",
            Self::Forbidden => messages::ACCESS_DENIED,
            Self::NotFound => "Not found",
            Self::BadRequest => "Bad request",
            Self::PayloadTooLarge => messages::REQUEST_BODY_TOO_LARGE,
            Self::RequestTimeout => "Request body not received in time",
            Self::Unavailable => "Service unavailable",
            Self::Internal => "Internal server error",
        }
    }
}

/// A typed refusal: its kind, a safe message, and for `insufficient_scope` the scope required.
///
/// Messages come from a fixed vocabulary or from your own code; they must never contain token
/// or claim content. When rendered, characters RFC 6750 forbids in `error_description` are
/// dropped and the gRPC message is percent-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    message: Cow<'static, str>,
    scope: Option<Cow<'static, str>>,
}

impl Rejection {
    /// A rejection of `kind` with that kind's default message.
    pub fn new(kind: RejectionKind) -> Self {
        Self {
            kind,
            message: Cow::Borrowed(kind.default_message()),
            scope: None,
        }
    }

    /// A rejection of `kind` with a specific message.
    pub fn with_message(kind: RejectionKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            scope: None,
        }
    }

    /// A 403 `insufficient_scope` rejection naming the scope the request needs.
    pub fn insufficient_scope(scope: impl Into<Cow<'static, str>>) -> Self {
        Self {
            scope: Some(scope.into()),
            ..Self::new(RejectionKind::InsufficientScope)
        }
    }

    /// Names the scope the request needs (for `insufficient_scope`).
    #[must_use]
    pub fn with_scope(mut self, scope: impl Into<Cow<'static, str>>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// What kind of refusal this is.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The safe, human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The scope an `insufficient_scope` rejection requires.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The HTTP status this rejection renders to.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Renders this rejection for the request whose headers are given, with no realm.
    ///
    /// Use it in handlers, for checks a layer cannot do (ids inside a gRPC message, nested
    /// routers), so the answer matches what the layers send.
    pub fn into_response<B: Default>(self, request_headers: &HeaderMap) -> Response<B> {
        render(self, request_headers, None)
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Rejection");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(scope) = &self.scope {
            d.field("scope", scope);
        }
        d.finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.status().as_u16(), self.message)
    }
}

impl std::error::Error for Rejection {}

#[cfg(feature = "tonic")]
impl From<Rejection> for tonic::Status {
    fn from(rejection: Rejection) -> Self {
        let code = tonic::Code::from_i32(i32::from(rejection.kind.grpc_code()));
        tonic::Status::new(code, rejection.message.into_owned())
    }
}

/// The request's content type when it is a gRPC one, kept to render a later refusal.
#[cfg_attr(not(feature = "log"), allow(dead_code))]
pub(crate) fn grpc_content_type(headers: &HeaderMap) -> Option<HeaderValue> {
    is_grpc(headers)
        .then(|| headers.get(header::CONTENT_TYPE).cloned())
        .flatten()
}

/// The 500 that replaces the answer of a service that panicked.
#[cfg_attr(not(feature = "log"), allow(dead_code))]
pub(crate) fn render_internal<B: Default>(grpc: Option<HeaderValue>) -> Response<B> {
    let mut headers = HeaderMap::new();
    if let Some(ct) = grpc {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    render(Rejection::new(RejectionKind::Internal), &headers, None)
}

/// `grpc-message` is percent-encoded: everything outside printable ASCII, and `%` itself.
const GRPC_MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// RFC 6750 §3: `error_description` and `scope` use `%x20-21 / %x23-5B / %x5D-7E` only.
fn push_quoted_safe(out: &mut String, value: &str) {
    out.push('"');
    out.extend(
        value
            .chars()
            .filter(|c| matches!(*c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')),
    );
    out.push('"');
}

/// Builds the `WWW-Authenticate` value for a rejection, or `None` when it has no challenge.
fn challenge(rejection: &Rejection, realm: Option<&str>) -> Option<HeaderValue> {
    if !rejection.kind.has_challenge() {
        return None;
    }
    let mut value = String::from("Bearer");
    let mut sep = " ";
    if let Some(realm) = realm {
        value.push_str(" realm=");
        push_quoted_safe(&mut value, realm);
        sep = ", ";
    }
    if let Some(code) = rejection.kind.bearer_error() {
        value.push_str(sep);
        value.push_str("error=\"");
        value.push_str(code);
        value.push_str("\", error_description=");
        push_quoted_safe(&mut value, &rejection.message);
        if let Some(scope) = &rejection.scope {
            value.push_str(", scope=");
            push_quoted_safe(&mut value, scope);
        }
    }
    // Only filtered printable ASCII went in, so this cannot fail; fall back to a bare challenge.
    Some(HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("Bearer")))
}

/// Marks an answer that depends on who asked `Cache-Control: private`, unless the inner
/// service chose its own caching: a shared cache must never serve one user's answer to another.
pub(crate) fn private_unless_cached<B>(response: &mut Response<B>) {
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    }
}

/// Renders a rejection for a request: trailers-only gRPC or head-only HTTP.
pub(crate) fn render<B: Default>(
    rejection: Rejection,
    request_headers: &HeaderMap,
    realm: Option<&str>,
) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    if is_grpc(request_headers) {
        // Trailers-only gRPC answer: HTTP 200, status in the headers, empty body.
        if let Some(ct) = request_headers.get(header::CONTENT_TYPE) {
            headers.insert(header::CONTENT_TYPE, ct.clone());
        }
        headers.insert(
            GRPC_STATUS,
            HeaderValue::from(u16::from(rejection.kind.grpc_code())),
        );
        let message = utf8_percent_encode(&rejection.message, GRPC_MESSAGE_ESCAPES).to_string();
        if let Ok(value) = HeaderValue::try_from(message) {
            headers.insert(GRPC_MESSAGE, value);
        }
    } else {
        *response.status_mut() = rejection.kind.status();
        if let Some(value) = challenge(&rejection, realm) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(wait) = rejection.kind.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
        }
    }
    response.extensions_mut().insert(rejection);
    response
}

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
                Some(json_error(rejection.message()))
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

/// `{"error":"<message>"}` with the message escaped as a JSON string.
pub(crate) fn json_error(message: &str) -> Bytes {
    let mut out = String::with_capacity(message.len() + 12);
    out.push_str("{\"error\":\"");
    for c in message.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    Bytes::from(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc-web+proto"),
        );
        h
    }

    #[test]
    fn missing_credentials_challenge_has_no_error_attribute() {
        let res: Response<()> = render(
            Rejection::new(RejectionKind::MissingCredentials),
            &HeaderMap::new(),
            Some("api"),
        );
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"api\""
        );
    }

    #[test]
    fn invalid_token_challenge_carries_error_and_description() {
        let rejection = Rejection::with_message(RejectionKind::InvalidToken, "The token expired");
        let res: Response<()> = render(rejection, &HeaderMap::new(), Some("api"));
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="api", error="invalid_token", error_description="The token expired""#
        );
    }

    #[test]
    fn description_drops_quotes_backslashes_and_non_ascii() {
        let rejection = Rejection::with_message(RejectionKind::InvalidToken, "a\"b\\c\u{e9}d\ne");
        let res: Response<()> = render(rejection, &HeaderMap::new(), None);
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token", error_description="abcde""#
        );
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let res: Response<()> = render(
            Rejection::insufficient_scope("threads:write"),
            &HeaderMap::new(),
            None,
        );
        assert_eq!(res.status(), 403);
        assert!(
            res.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .ends_with(r#"scope="threads:write""#)
        );
    }

    #[test]
    fn forbidden_and_unavailable_have_no_challenge() {
        for kind in [
            RejectionKind::Forbidden,
            RejectionKind::Unavailable,
            RejectionKind::NotFound,
        ] {
            let res: Response<()> = render(Rejection::new(kind), &HeaderMap::new(), Some("api"));
            assert_eq!(res.status(), kind.status());
            assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
        }
    }

    #[test]
    fn grpc_rejection_is_trailers_only_with_percent_encoded_message() {
        let rejection = Rejection::with_message(RejectionKind::Forbidden, "100% denied: é");
        let res: Response<()> = render(rejection, &grpc_headers(), Some("api"));
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "application/grpc-web+proto"
        );
        assert_eq!(res.headers()["grpc-status"], "7");
        assert_eq!(res.headers()["grpc-message"], "100%25 denied: %C3%A9");
        assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn only_unavailable_tells_the_client_when_to_retry() {
        let res: Response<()> = render(
            Rejection::new(RejectionKind::Unavailable),
            &HeaderMap::new(),
            None,
        );
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[header::RETRY_AFTER], "5");
        for kind in [
            RejectionKind::BadRequest,
            RejectionKind::Forbidden,
            RejectionKind::Internal,
            RejectionKind::InvalidToken,
        ] {
            let res: Response<()> = render(Rejection::new(kind), &HeaderMap::new(), None);
            assert!(res.headers().get(header::RETRY_AFTER).is_none(), "{kind:?}");
        }
    }

    #[test]
    fn rejection_is_attached_to_the_response() {
        let res: Response<()> = render(
            Rejection::new(RejectionKind::Unavailable),
            &HeaderMap::new(),
            None,
        );
        assert_eq!(
            res.extensions().get::<Rejection>().unwrap().kind(),
            RejectionKind::Unavailable
        );
    }

    #[test]
    fn json_error_escapes_the_message() {
        assert_eq!(
            json_error("a \"b\"\n"),
            Bytes::from_static(br#"{"error":"a \"b\"\u000a"}"#)
        );
    }
}
