//! axum extractors for [`Authenticated<U>`], [`ResourceId`], [`ThreadId`] and [`MessageId`]
//! (feature `axum`).
//!
//! Each is an extractor, required or as `Option<..>`. A missing value is answered like the
//! layers answer: 401 with a `Bearer` challenge for the user, 403 for the resource, thread or
//! message id (trailers-only for gRPC requests). `Option<..>` never rejects. The ids come from
//! the layers that checked them, never from the request itself.
//! [`Rejection`] implements `IntoResponse`, so handlers can return it.

use std::convert::Infallible;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::reject::{Rejection, RejectionKind, render};
use crate::{Authenticated, MessageId, ResourceId, ThreadId};

impl<S, U> FromRequestParts<S> for Authenticated<U>
where
    S: Send + Sync,
    U: Send + Sync + 'static,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            render(
                Rejection::new(RejectionKind::MissingCredentials),
                &parts.headers,
                None,
            )
        })
    }
}

impl<S, U> OptionalFromRequestParts<S> for Authenticated<U>
where
    S: Send + Sync,
    U: Send + Sync + 'static,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ResourceId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            let rejection = Rejection::with_message(
                RejectionKind::Forbidden,
                crate::mastra::messages::NOT_SCOPED,
            );
            render(rejection, &parts.headers, None)
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ResourceId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// The thread the guard checked (or a trusted layer set); 403 when there is none, so a
/// handler behind a route the guard does not check cannot read one by mistake.
impl<S: Send + Sync> FromRequestParts<S> for ThreadId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        checked(
            parts,
            "Access denied: no thread was checked for this request",
        )
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ThreadId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// The message the guard checked (a route with
/// [`messages_from_path`](crate::guard::GuardRoute::messages_from_path)); 403 when there is none.
impl<S: Send + Sync> FromRequestParts<S> for MessageId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        checked(
            parts,
            "Access denied: no message was checked for this request",
        )
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for MessageId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// A value a layer checked, or a 403 rendered for this request (gRPC-aware). The `Err` is
/// the extractor's own rejection type, which axum wants unboxed.
#[allow(clippy::result_large_err)]
fn checked<T: Clone + Send + Sync + 'static>(
    parts: &Parts,
    message: &'static str,
) -> Result<T, Response> {
    parts.extensions.get::<T>().cloned().ok_or_else(|| {
        render(
            Rejection::with_message(RejectionKind::Forbidden, message),
            &parts.headers,
            None,
        )
    })
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        render(self, &http::HeaderMap::new(), None)
    }
}
