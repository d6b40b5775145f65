//! axum extractors for [`Authenticated<U>`] and [`ResourceId`] (feature `axum`).
//!
//! `Authenticated<U>` and `ResourceId` are extractors, required or as `Option<..>`. A missing
//! value is answered like the layers answer: 401 with a `Bearer` challenge for the user, 403
//! for the resource id (trailers-only for gRPC requests). `Option<..>` never rejects.
//! [`Rejection`] implements `IntoResponse`, so handlers can return it.

use std::convert::Infallible;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::reject::{Rejection, RejectionKind, render};
use crate::{Authenticated, ResourceId};

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
                "Access denied: request could not be scoped to a resource",
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

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        render(self, &http::HeaderMap::new(), None)
    }
}
