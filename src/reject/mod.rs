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
use std::time::Duration;

use http::header::HeaderMap;
use http::{Response, StatusCode};

use crate::mastra::messages;

mod json;
mod render;
#[cfg(test)]
mod tests;

pub use json::{ErrorBody, HeadOnly, JsonBody, JsonErrorLayer, JsonErrors, JsonErrorsFuture};
#[cfg(feature = "dpop")]
pub(crate) use render::push_quoted_safe;
#[cfg(feature = "dpop")]
pub(crate) use render::render_with;
pub(crate) use render::{
    BEARER, ChallengeHint, PRIVATE, challenge, private_unless_cached, push_json_string, render,
    render_challenged, render_request,
};
#[cfg(feature = "log")]
pub(crate) use render::{grpc_content_type, render_internal};

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
    detail: Option<Cow<'static, str>>,
    scope: Option<Cow<'static, str>>,
}

impl Rejection {
    /// A rejection of `kind` with that kind's default message.
    pub fn new(kind: RejectionKind) -> Self {
        Self {
            kind,
            message: Cow::Borrowed(kind.default_message()),
            detail: None,
            scope: None,
        }
    }

    /// A rejection of `kind` with a specific message.
    pub fn with_message(kind: RejectionKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            detail: None,
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

    /// Adds a longer explanation: the JSON body becomes `{"error": message, "message":
    /// detail}` (Mastra's shape for permission refusals), and the detail replaces the message
    /// in the `error_description` and `grpc-message`.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The longer explanation, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The text a client reads in a header: the detail, else the message.
    pub(crate) fn description(&self) -> &str {
        self.detail.as_deref().unwrap_or(&self.message)
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
        if let Some(detail) = &self.detail {
            d.field("detail", detail);
        }
        if let Some(scope) = &self.scope {
            d.field("scope", scope);
        }
        d.finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.status().as_u16(), self.description())
    }
}

impl std::error::Error for Rejection {}

#[cfg(feature = "tonic")]
impl From<Rejection> for tonic::Status {
    fn from(rejection: Rejection) -> Self {
        let code = tonic::Code::from_i32(i32::from(rejection.kind.grpc_code()));
        let message = match rejection.detail {
            Some(detail) => detail.into_owned(),
            None => rejection.message.into_owned(),
        };
        tonic::Status::new(code, message)
    }
}
