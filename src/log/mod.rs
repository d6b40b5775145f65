//! `LogLayer`: one structured [`tracing`] event per request, secrets redacted.
//!
//! The event (target `tower_scope::log`, message `request`) is emitted after the response,
//! with these fields when known:
//!
//! | field | what |
//! |---|---|
//! | `method`, `path` | the path only; the query string only with [`LogLayer::log_query`], secrets redacted |
//! | `status`, `grpc_status` | HTTP status; gRPC status from the headers or the trailers |
//! | `latency_us`, `response_size` | microseconds to the end of the response (a streamed body's last byte, or the client leaving); bytes: the whole body, or what was sent before the client left |
//! | `request_id` | see [`RequestId`] |
//! | `auth` | what authentication concluded ([`AuthState`](crate::AuthState)): `verified`, `public_path`, `anonymous`, `preflight` |
//! | `user`, `resource_id`, `thread_id` | from [`Authenticated<U>`](crate::Authenticated) (with [`LogLayer::user`]), [`ResourceId`](crate::ResourceId), [`ThreadId`](crate::ThreadId) |
//! | `rejection`, `rejection_message` | the [`Rejection`](crate::Rejection) kind and message when a layer refused |
//! | `headers` | only with [`LogLayer::log_request_headers`]; credentials show as `[REDACTED]` |
//! | `service_error`, `panicked`, `aborted` | the inner service failed; it panicked (answered 500); the client went away `before_response` or `during_body` |
//!
//! Levels: 5xx (and gRPC server failures) at WARN, 4xx and success at INFO, all configurable.
//! For gRPC and streaming answers the event waits for the end of the body (the status is in
//! the trailers) and is emitted when the body ends or is dropped; the body is never buffered.
//!
//! Put `LogLayer` outermost. tower-scope's auth, scope and guard layers hand the user and ids
//! they concluded back to the event on every pass *and every refusal*, so a guard's 403 names
//! the user and resource it refused; no second layer is needed (only your own layers that
//! insert these values need [`LogLayer::capture`]).
//!
//! A panic in the inner service is caught here: the client gets a 500 (gRPC 13, trailers-only;
//! the [`Rejection`](crate::Rejection) of kind `Internal` is attached, so an outer
//! [`JsonErrorLayer`](crate::JsonErrorLayer) renders it as JSON) and the connection is kept; the event
//! records `status=500 panicked=true` at the server-error level (WARN by default). The panic's
//! message is not logged: it may hold request data.
//!
//! ```
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::log::RequestId;
//! use tower_scope::{BearerAuthLayer, LogLayer, StaticTokens};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_scope::ConfigError> {
//! let log = LogLayer::new()
//!     .exclude_path("/health")?
//!     .user(|user: &String| user.clone());
//! let tokens = StaticTokens::new().token("a-long-random-api-key-0123456789", String::from("alice"));
//! let svc = ServiceBuilder::new()
//!     .layer(log.clone())
//!     .layer(BearerAuthLayer::new(tokens))
//!     .service(service_fn(|req: Request<String>| async move {
//!         // Handlers see the request id too.
//!         let id = req.extensions().get::<RequestId>().unwrap().to_string();
//!         Ok::<_, std::convert::Infallible>(Response::new(id))
//!     }));
//!
//! let req = Request::get("/api/threads")
//!     .header(header::AUTHORIZATION, "Bearer a-long-random-api-key-0123456789")
//!     .header("x-request-id", "req-42")
//!     .body(String::new())
//!     .unwrap();
//! // Logs: method="GET" path="/api/threads" status=200 ... request_id="req-42" user="alice"
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["x-request-id"], "req-42");
//! assert_eq!(res.into_body().into_inner(), "req-42");
//! # Ok(()) }
//! ```

/// Hands what a deciding layer concluded (user, resource id, thread id) to the event of an
/// outer `LogLayer`, if there is one on this request.
pub(crate) fn note(extensions: &http::Extensions) {
    if let Some(slot) = extensions.get::<event::Slot>() {
        slot.capture(extensions);
    }
}

mod body;
mod event;
mod layer;
mod service;
#[cfg(test)]
mod tests;

pub use body::LogBody;
pub use layer::{Capture, CaptureLayer, LogLayer};
pub use service::{Log, MAX_REQUEST_ID_LEN, RequestId, ResponseFuture, X_REQUEST_ID};
pub use tracing::Level;
