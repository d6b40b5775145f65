//! Mastra's CORS defaults (`getCorsConfig` in Mastra's deployer, on `hono/cors`).

use std::time::Duration;

use http::Method;
use http::header::{self, HeaderName};

use crate::ConfigError;
use crate::cors::{CorsLayer, Preset};

/// Mastra's lists: methods, request headers, exposed headers, and the one-hour preflight cache.
fn preset(any_origin: bool) -> Preset {
    Preset {
        any_origin,
        methods: vec![
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ],
        allow_headers: vec![
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("a2a-version"),
            HeaderName::from_static("x-mastra-client-type"),
            HeaderName::from_static("x-mastra-dev-playground"),
        ],
        expose_headers: vec![
            header::CONTENT_LENGTH,
            HeaderName::from_static("x-requested-with"),
        ],
        max_age: Some(Duration::from_secs(3600)),
    }
}

/// Mastra's CORS defaults: methods `GET, POST, PUT, PATCH, DELETE, OPTIONS`; headers
/// `Content-Type, Authorization, A2A-Version, x-mastra-client-type, x-mastra-dev-playground`;
/// exposed `Content-Length, X-Requested-With`; max age 3600 s; any origin (`*`), no credentials.
///
/// Headers you add are appended to these, as Mastra does.
pub fn cors() -> CorsLayer {
    CorsLayer::from(preset(true))
}

/// Mastra's CORS defaults when auth is configured: credentials allowed, for `origins` only.
///
/// Mastra reflects any request's origin with credentials here; this preset takes the origins
/// instead, because a reflected origin with credentials lets every website act as the signed-in
/// user. To allow origins by a predicate, start from [`cors`] and call
/// [`allow_origin_predicate`](CorsLayer::allow_origin_predicate) and
/// [`allow_credentials`](CorsLayer::allow_credentials);
/// [`allow_any_origin_with_credentials_dangerously`](CorsLayer::allow_any_origin_with_credentials_dangerously)
/// restores Mastra's behaviour.
///
/// # Errors
///
/// As [`CorsLayer::allow_origins`] and [`CorsLayer::allow_credentials`]: an empty list, a
/// malformed origin, `*`, `null`, or a wildcard over a top-level domain (`https://*.com`).
pub fn cors_with_credentials<I>(origins: I) -> Result<CorsLayer, ConfigError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    CorsLayer::from(preset(false))
        .allow_origins(origins)?
        .allow_credentials(true)
}
