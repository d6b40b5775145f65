//! `CorsLayer`: the public builder; each setter changes the policy and checks it at once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::header::{self, HeaderName};
use tower_layer::Layer;

use super::config::Config;
use super::policy::{Origins, Policy, Values, method};
use super::service::Cors;
use crate::ConfigError;
use crate::http::names;

/// Browser-correct CORS that cooperates with auth; see the [module docs](crate::cors).
///
/// Made by [`CorsLayer::new`] (no origin allowed yet), [`CorsLayer::grpc_web`] or a preset in
/// [`mastra`](crate::mastra), then adjusted with setters. Each setter checks what it changes at
/// once, together with what is already set: the setter that completes a mistake (credentials
/// after `*`, or `*` after credentials) returns the [`ConfigError`].
///
/// List setters (`allow_origins`, `allow_methods`, `allow_headers`, `expose_headers`) *add* to
/// what is already there, so a preset can be extended; the `any`/`mirror` setters replace the
/// list.
#[derive(Clone)]
pub struct CorsLayer {
    policy: Arc<Policy>,
    config: Arc<Config>,
}

impl fmt::Debug for CorsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The compiled policy says everything; the predicate shows as its type only.
        f.debug_struct("CorsLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl Default for CorsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CorsLayer {
    /// An empty policy that allows no cross-origin request: add origins and whatever else the
    /// clients need.
    pub fn new() -> Self {
        Self::from_policy(Policy::default())
    }

    /// For grpc-web browser clients from `origins`: `POST`; allows `x-grpc-web, x-user-agent,
    /// grpc-timeout, content-type, authorization`; exposes `grpc-status, grpc-message,
    /// grpc-status-details-bin` so scripts can read the call's outcome.
    ///
    /// # Errors
    ///
    /// As [`allow_origins`](Self::allow_origins): an empty list, a malformed origin or `*`
    /// inside the list.
    pub fn grpc_web<I>(origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::from(Preset {
            any_origin: false,
            methods: vec![Method::POST],
            allow_headers: vec![
                HeaderName::from_static("x-grpc-web"),
                HeaderName::from_static("x-user-agent"),
                HeaderName::from_static("grpc-timeout"),
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
            ],
            expose_headers: vec![
                HeaderName::from_static("grpc-status"),
                HeaderName::from_static("grpc-message"),
                HeaderName::from_static("grpc-status-details-bin"),
            ],
            max_age: None,
        })
        .allow_origins(origins)
    }

    fn from_policy(policy: Policy) -> Self {
        let config = Arc::new(policy.compile());
        Self {
            policy: Arc::new(policy),
            config,
        }
    }

    /// Applies a change that cannot make the policy invalid.
    fn with(mut self, change: impl FnOnce(&mut Policy)) -> Self {
        let policy = Arc::make_mut(&mut self.policy);
        change(policy);
        self.config = Arc::new(policy.compile());
        self
    }

    /// Applies a change and checks it against everything already set.
    fn try_with(
        mut self,
        change: impl FnOnce(&mut Policy) -> Result<(), ConfigError>,
    ) -> Result<Self, ConfigError> {
        let policy = Arc::make_mut(&mut self.policy);
        change(policy)?;
        policy.check_credentials()?;
        self.config = Arc::new(policy.compile());
        Ok(self)
    }

    /// Allows these origins (`https://app.example.com`, `https://*.example.com`, `null`).
    ///
    /// `*` on its own means any origin. Wildcards stand for one or more whole labels at the
    /// start of the host; scheme and port must match exactly.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::InvalidOrigin`] for an origin that is not `scheme://host[:port]`;
    /// - [`ConfigError::WildcardInList`] for `*` next to other origins or a predicate;
    /// - [`ConfigError::InvalidValue`] when the list is empty and nothing else is allowed
    ///   (typically an unset environment variable);
    /// - with credentials allowed: [`ConfigError::CredentialsWithNullOrigin`] for `null`,
    ///   [`ConfigError::CredentialsWithTopLevelWildcard`] for `https://*.com`,
    ///   [`ConfigError::CredentialsWithWildcard`] for `*`.
    pub fn allow_origins<I>(self, origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.try_with(|p| p.add_origins(origins))
    }

    /// Also allows every origin for which `predicate` returns `true` (checked after the list).
    ///
    /// # Errors
    ///
    /// [`ConfigError::WildcardInList`] when the origin list is `*`.
    pub fn allow_origin_predicate<F>(self, predicate: F) -> Result<Self, ConfigError>
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        self.try_with(|p| p.set_predicate(Arc::new(predicate)))
    }

    /// Allows any origin with `Access-Control-Allow-Origin: *` (not with credentials).
    ///
    /// # Errors
    ///
    /// [`ConfigError::CredentialsWithWildcard`] when credentials are allowed.
    pub fn allow_any_origin(self) -> Result<Self, ConfigError> {
        self.try_with(|p| {
            p.origins = Origins::Any;
            Ok(())
        })
    }

    /// Allows any origin by echoing the request's `Origin`.
    ///
    /// Not with credentials: every website could then read answers made with the user's
    /// cookies or token. Name the origins instead, or see
    /// [`allow_any_origin_with_credentials_dangerously`](Self::allow_any_origin_with_credentials_dangerously).
    ///
    /// # Errors
    ///
    /// [`ConfigError::CredentialsWithMirroredOrigin`] when credentials are allowed.
    pub fn mirror_origin(self) -> Result<Self, ConfigError> {
        self.try_with(|p| {
            p.origins = Origins::Mirror;
            Ok(())
        })
    }

    /// Echoes any request's `Origin` **and** allows credentials: every website the user visits
    /// can then call this API as the user and read the answers (cookies and browser-held
    /// `Authorization` included) — a cross-site request forgery that can also read.
    ///
    /// Only for APIs where that is harmless or intended (a local development server, a service
    /// whose credentials never live in a browser). Prefer [`allow_origins`](Self::allow_origins)
    /// or [`allow_origin_predicate`](Self::allow_origin_predicate); calling either afterwards
    /// restricts the origins again.
    ///
    /// # Errors
    ///
    /// [`ConfigError::CredentialsWithWildcard`] when methods or headers are `*`.
    pub fn allow_any_origin_with_credentials_dangerously(self) -> Result<Self, ConfigError> {
        self.try_with(|p| {
            p.origins = Origins::Mirror;
            p.credentials = true;
            p.any_origin_with_credentials = true;
            Ok(())
        })
    }

    /// Adds methods to `Access-Control-Allow-Methods` (`GET`, `POST`, ...).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for a value that is not a method,
    /// [`ConfigError::WildcardInList`] for `*` next to other methods, and
    /// [`ConfigError::CredentialsWithWildcard`] for `*` with credentials.
    pub fn allow_methods<I>(self, methods: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.try_with(|p| p.methods.extend("allow_methods", methods, method))
    }

    /// Answers `Access-Control-Allow-Methods: *` (not with credentials).
    ///
    /// # Errors
    ///
    /// [`ConfigError::CredentialsWithWildcard`] when credentials are allowed.
    pub fn allow_any_method(self) -> Result<Self, ConfigError> {
        self.try_with(|p| {
            p.methods = Values::Any;
            Ok(())
        })
    }

    /// Adds request headers to `Access-Control-Allow-Headers`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`] for a name that is not a token,
    /// [`ConfigError::WildcardInList`] for `*` next to other names, and
    /// [`ConfigError::CredentialsWithWildcard`] for `*` with credentials.
    pub fn allow_headers<I>(self, headers: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.try_with(|p| {
            p.headers
                .extend("allow_headers", headers, names::header_name)
        })
    }

    /// Answers `Access-Control-Allow-Headers: *` (not with credentials).
    ///
    /// Per the Fetch standard `*` never covers `Authorization`: list it explicitly, or use
    /// [`mirror_headers`](Self::mirror_headers).
    ///
    /// # Errors
    ///
    /// [`ConfigError::CredentialsWithWildcard`] when credentials are allowed.
    pub fn allow_any_header(self) -> Result<Self, ConfigError> {
        self.try_with(|p| {
            p.headers = Values::Any;
            Ok(())
        })
    }

    /// Allows whatever headers the preflight asks for (`Access-Control-Request-Headers`).
    #[must_use]
    pub fn mirror_headers(self) -> Self {
        self.with(|p| p.headers = Values::Mirror)
    }

    /// Adds response headers scripts may read (`Access-Control-Expose-Headers`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`] for a name that is not a token,
    /// [`ConfigError::WildcardInList`] for `*` next to other names, and
    /// [`ConfigError::CredentialsWithWildcard`] for `*` with credentials.
    pub fn expose_headers<I>(self, headers: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.try_with(|p| {
            p.expose
                .extend("expose_headers", headers, names::header_name)
        })
    }

    /// Answers `Access-Control-Expose-Headers: *` (not with credentials).
    ///
    /// # Errors
    ///
    /// [`ConfigError::CredentialsWithWildcard`] when credentials are allowed.
    pub fn expose_any_header(self) -> Result<Self, ConfigError> {
        self.try_with(|p| {
            p.expose = Values::Any;
            Ok(())
        })
    }

    /// How long browsers may cache a preflight answer (`Access-Control-Max-Age`, in seconds).
    #[must_use]
    pub fn max_age(self, max_age: Duration) -> Self {
        self.with(|p| p.max_age = Some(max_age))
    }

    /// Lets browsers send cookies and `Authorization` and expose the response to scripts.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::CredentialsWithMirroredOrigin`] for a mirrored origin (unless
    ///   [`allow_any_origin_with_credentials_dangerously`](Self::allow_any_origin_with_credentials_dangerously));
    /// - [`ConfigError::CredentialsWithNullOrigin`] for `null` in the origin list;
    /// - [`ConfigError::CredentialsWithTopLevelWildcard`] for `https://*.com`;
    /// - [`ConfigError::CredentialsWithWildcard`] for `*` in origins, methods or headers.
    pub fn allow_credentials(self, allow: bool) -> Result<Self, ConfigError> {
        self.try_with(|p| {
            p.credentials = allow;
            Ok(())
        })
    }

    /// Answers private network access preflights
    /// (`Access-Control-Request-Private-Network: true`) with consent.
    #[must_use]
    pub fn allow_private_network(self, allow: bool) -> Self {
        self.with(|p| p.private_network = allow)
    }

    /// Strict mode: a state-changing request (not `GET`, `HEAD` or `OPTIONS`) from a
    /// disallowed `Origin` gets 403 before it reaches the handler.
    ///
    /// Browsers only hide the *response* from a disallowed origin; a "simple" cross-site `POST`
    /// still runs the handler (a CSRF). Strict mode stops it.
    #[must_use]
    pub fn reject_disallowed_origins(self, reject: bool) -> Self {
        self.with(|p| p.strict = reject)
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cors::new(inner, Arc::clone(&self.config))
    }
}

/// A fixed policy without credentials or origins (a preset): its values are known valid, so
/// making it cannot fail.
pub(crate) struct Preset {
    /// `Access-Control-Allow-Origin: *`; otherwise no origin until the caller names some.
    pub(crate) any_origin: bool,
    pub(crate) methods: Vec<Method>,
    pub(crate) allow_headers: Vec<HeaderName>,
    pub(crate) expose_headers: Vec<HeaderName>,
    pub(crate) max_age: Option<Duration>,
}

impl From<Preset> for CorsLayer {
    fn from(preset: Preset) -> Self {
        Self::from_policy(Policy {
            origins: if preset.any_origin {
                Origins::Any
            } else {
                Origins::Unset
            },
            methods: Values::listed(preset.methods),
            headers: Values::listed(preset.allow_headers),
            expose: Values::listed(preset.expose_headers),
            max_age: preset.max_age,
            ..Policy::default()
        })
    }
}
