//! `LogLayer` (configuration) and `CaptureLayer` (hands inner layers' results back to it).

use std::fmt;
use std::sync::Arc;

use http::header::{self, HeaderName};
use http::{Extensions, Request};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Level;

use super::service::Log;
use crate::http::names;
use crate::path::{PathPattern, PathSet};
use crate::{Authenticated, ConfigError};

/// Reads a printable user out of request or response extensions.
pub(super) type UserAccessor = Arc<dyn Fn(&Extensions) -> Option<String> + Send + Sync>;

#[derive(Clone)]
pub(super) struct Config {
    pub(super) exclude: PathSet,
    pub(super) log_query: bool,
    pub(super) redact_query: Vec<Box<str>>,
    pub(super) log_headers: bool,
    pub(super) redact_headers: Vec<HeaderName>,
    pub(super) server_error_level: Level,
    pub(super) client_error_level: Level,
    pub(super) success_level: Level,
    pub(super) request_ids: bool,
    pub(super) user: Option<UserAccessor>,
}

impl Config {
    /// The least verbose configured level: when even it is disabled, no event can be
    /// recorded and nothing is worth preparing.
    pub(super) fn least_verbose(&self) -> Level {
        self.server_error_level
            .min(self.client_error_level)
            .min(self.success_level)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("exclude", &self.exclude)
            .field("log_query", &self.log_query)
            .field("redact_query", &self.redact_query)
            .field("log_headers", &self.log_headers)
            .field("redact_headers", &self.redact_headers)
            .field("server_error_level", &self.server_error_level)
            .field("client_error_level", &self.client_error_level)
            .field("success_level", &self.success_level)
            .field("request_ids", &self.request_ids)
            .field("user", &self.user.as_ref().map(|_| "Fn(&U) -> String"))
            .finish()
    }
}

/// One structured `tracing` event per request; see the [module docs](crate::log).
#[derive(Clone, Debug)]
pub struct LogLayer {
    config: Arc<Config>,
}

impl Default for LogLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl LogLayer {
    /// Logs every request: 5xx at WARN, 4xx and 2xx at INFO, no query string, request ids on.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                exclude: PathSet::default(),
                log_query: false,
                redact_query: Vec::new(),
                log_headers: false,
                redact_headers: vec![
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::SET_COOKIE,
                    header::PROXY_AUTHORIZATION,
                    // `BearerAuthLayer::token_from_header`'s usual name, and DPoP proofs.
                    HeaderName::from_static("x-api-key"),
                    HeaderName::from_static("dpop"),
                ],
                server_error_level: Level::WARN,
                client_error_level: Level::INFO,
                success_level: Level::INFO,
                request_ids: true,
                user: None,
            }),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Skips `path` and everything below it: `/health` skips `/health` and `/health/deep`, not
    /// `/healthcheck`. Globs and parameters work as in [`PathPattern`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathPattern`] when the pattern is malformed.
    pub fn exclude_path(mut self, path: &str) -> Result<Self, ConfigError> {
        let segment_aware = if path == "*" || path.ends_with("/*") || path == "/" {
            PathPattern::new(path)?
        } else {
            PathPattern::new(path)?;
            PathPattern::new(&format!("{path}/*"))?
        };
        self.config().exclude.push(segment_aware);
        Ok(self)
    }

    /// Logs the query string too, with secret-looking parameters (`access_token`, `token`,
    /// `apiKey`, `api_key`, `key`, `password`, `secret`, `code`, anything containing `token`,
    /// `secret` or `password`, ...) shown as `[REDACTED]`.
    #[must_use]
    pub fn log_query(mut self, log: bool) -> Self {
        self.config().log_query = log;
        self
    }

    /// Also redacts this query parameter (case-insensitive).
    #[must_use]
    pub fn redact_query_param(mut self, name: &str) -> Self {
        let name = name.to_ascii_lowercase().replace('-', "_");
        self.config().redact_query.push(name.into());
        self
    }

    /// Logs the request headers in a `headers` field; `authorization`, `cookie`, `set-cookie`,
    /// `proxy-authorization`, headers marked sensitive and [redacted](Self::redact_header)
    /// ones show as `[REDACTED]`.
    #[must_use]
    pub fn log_request_headers(mut self, log: bool) -> Self {
        self.config().log_headers = log;
        self
    }

    /// Also redacts this header.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`] when `name` is not a valid header name.
    pub fn redact_header(mut self, name: &str) -> Result<Self, ConfigError> {
        let name = names::header_name(name)?;
        self.config().redact_headers.push(name);
        Ok(self)
    }

    /// The level for 5xx answers, gRPC server-side failures and inner service errors (WARN).
    #[must_use]
    pub fn server_error_level(mut self, level: Level) -> Self {
        self.config().server_error_level = level;
        self
    }

    /// The level for 4xx answers, other gRPC failures and cancelled requests (INFO).
    #[must_use]
    pub fn client_error_level(mut self, level: Level) -> Self {
        self.config().client_error_level = level;
        self
    }

    /// The level for successful requests (INFO).
    #[must_use]
    pub fn success_level(mut self, level: Level) -> Self {
        self.config().success_level = level;
        self
    }

    /// Whether to take or generate an `x-request-id` (on by default); see [`RequestId`](super::RequestId).
    #[must_use]
    pub fn request_ids(mut self, on: bool) -> Self {
        self.config().request_ids = on;
        self
    }

    /// Logs the user of [`Authenticated<U>`] as `user`, printed by `f` (e.g. the `sub` claim).
    ///
    /// Only one user type is logged; a later call replaces an earlier one.
    #[must_use]
    pub fn user<U, F>(mut self, f: F) -> Self
    where
        U: Send + Sync + 'static,
        F: Fn(&U) -> String + Send + Sync + 'static,
    {
        self.config().user = Some(Arc::new(move |ext: &Extensions| {
            ext.get::<Authenticated<U>>().map(|user| f(user))
        }));
        self
    }

    /// A companion layer for *your own* layers: put it after a custom layer that inserts
    /// [`Authenticated<U>`], [`ResourceId`](crate::ResourceId) or
    /// [`ThreadId`](crate::ThreadId), and it hands them back to this outer layer's event.
    ///
    /// tower-scope's own layers need no companion: auth, scope and guard hand what they
    /// concluded to the event themselves, on every pass and every refusal.
    pub fn capture(&self) -> CaptureLayer {
        CaptureLayer { _private: () }
    }
}

impl<S> Layer<S> for LogLayer {
    type Service = Log<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Log::new(inner, Arc::clone(&self.config))
    }
}

/// Copies what inner layers inserted to the outer [`LogLayer`]'s event; see
/// [`LogLayer::capture`].
#[derive(Clone, Debug)]
pub struct CaptureLayer {
    _private: (),
}

impl<S> Layer<S> for CaptureLayer {
    type Service = Capture<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Capture { inner }
    }
}

/// The service made by [`CaptureLayer`].
#[derive(Clone, Debug)]
pub struct Capture<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Capture<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        super::note(req.extensions());
        self.inner.call(req)
    }
}
