//! `CorsBuilder` and `CorsLayer`: the policy, validated and precomputed once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response};
use tower_layer::Layer;

use super::origin::OriginRule;
use super::service::Cors;
use crate::ConfigError;

type OriginPredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

const STAR: HeaderValue = HeaderValue::from_static("*");
const TRUE: HeaderValue = HeaderValue::from_static("true");

/// Which origins the builder was told to allow.
#[derive(Clone, Default)]
enum OriginSpec {
    #[default]
    Unset,
    Any,
    Mirror,
    List {
        origins: Vec<String>,
        predicate: Option<OriginPredicate>,
    },
}

/// A header or method list as configured: values, `*`, or the request's own (mirror).
#[derive(Clone, Debug, Default)]
enum ListSpec {
    #[default]
    Unset,
    Any,
    Mirror,
    List(Vec<String>),
}

impl ListSpec {
    fn extend<I>(&mut self, values: I)
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let values = values.into_iter().map(|v| v.as_ref().trim().to_owned());
        match self {
            Self::List(list) => list.extend(values),
            _ => *self = Self::List(values.collect()),
        }
    }

    /// `["*"]` alone means any; `*` next to other values is a mistake.
    fn normalized(&self, setting: &'static str) -> Result<Self, ConfigError> {
        match self {
            Self::List(list) if list.iter().any(|v| v == "*") => {
                if list.len() == 1 {
                    Ok(Self::Any)
                } else {
                    Err(ConfigError::WildcardInList { setting })
                }
            }
            other => Ok(other.clone()),
        }
    }
}

/// Builds a [`CorsLayer`]; every mistake is reported by [`build`](Self::build).
///
/// List setters (`allow_origins`, `allow_methods`, `allow_headers`, `expose_headers`) *add* to
/// what is already there, so a preset can be extended; the `any`/`mirror` setters replace the
/// list. See the [module docs](crate::cors) for an example.
#[derive(Clone, Default)]
#[must_use]
pub struct CorsBuilder {
    origin: OriginSpec,
    methods: ListSpec,
    headers: ListSpec,
    expose: ListSpec,
    max_age: Option<Duration>,
    credentials: bool,
    /// Set only by `allow_any_origin_with_credentials_dangerously`: mirror + credentials is meant.
    any_origin_with_credentials: bool,
    private_network: bool,
    strict: bool,
}

impl fmt::Debug for CorsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorsBuilder")
            .field("methods", &self.methods)
            .field("headers", &self.headers)
            .field("expose", &self.expose)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl CorsBuilder {
    /// Allows these origins (`https://app.example.com`, `https://*.example.com`, `null`).
    ///
    /// `*` on its own means any origin. Wildcards stand for one or more whole labels at the
    /// start of the host; scheme and port must match exactly.
    pub fn allow_origins<I>(mut self, origins: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let new = origins.into_iter().map(|o| o.as_ref().trim().to_owned());
        match &mut self.origin {
            OriginSpec::List { origins, .. } => origins.extend(new),
            other => {
                *other = OriginSpec::List {
                    origins: new.collect(),
                    predicate: None,
                }
            }
        }
        self
    }

    /// Also allows every origin for which `predicate` returns `true` (checked after the list).
    pub fn allow_origin_predicate<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        let predicate: OriginPredicate = Arc::new(predicate);
        match &mut self.origin {
            OriginSpec::List { predicate: p, .. } => *p = Some(predicate),
            other => {
                *other = OriginSpec::List {
                    origins: Vec::new(),
                    predicate: Some(predicate),
                }
            }
        }
        self
    }

    /// Allows any origin with `Access-Control-Allow-Origin: *` (not with credentials).
    pub fn allow_any_origin(mut self) -> Self {
        self.origin = OriginSpec::Any;
        self
    }

    /// Allows any origin by echoing the request's `Origin`.
    ///
    /// Not with credentials: [`build`](Self::build) refuses that, because every website could
    /// then read answers made with the user's cookies or token. Name the origins instead, or
    /// see [`allow_any_origin_with_credentials_dangerously`](Self::allow_any_origin_with_credentials_dangerously).
    pub fn mirror_origin(mut self) -> Self {
        self.origin = OriginSpec::Mirror;
        self
    }

    /// Echoes any request's `Origin` **and** allows credentials: every website the user visits
    /// can then call this API as the user and read the answers (cookies and browser-held
    /// `Authorization` included) — a cross-site request forgery that can also read.
    ///
    /// Only for APIs where that is harmless or intended (a local development server, a service
    /// whose credentials never live in a browser). Prefer [`allow_origins`](Self::allow_origins)
    /// or [`allow_origin_predicate`](Self::allow_origin_predicate); calling either afterwards
    /// restricts the origins again.
    pub fn allow_any_origin_with_credentials_dangerously(mut self) -> Self {
        self.origin = OriginSpec::Mirror;
        self.credentials = true;
        self.any_origin_with_credentials = true;
        self
    }

    /// Adds methods to `Access-Control-Allow-Methods` (`GET`, `POST`, ...).
    pub fn allow_methods<I>(mut self, methods: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.methods.extend(methods);
        self
    }

    /// Answers `Access-Control-Allow-Methods: *` (not with credentials).
    pub fn allow_any_method(mut self) -> Self {
        self.methods = ListSpec::Any;
        self
    }

    /// Adds request headers to `Access-Control-Allow-Headers`.
    pub fn allow_headers<I>(mut self, headers: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.headers.extend(headers);
        self
    }

    /// Answers `Access-Control-Allow-Headers: *` (not with credentials).
    ///
    /// Per the Fetch standard `*` never covers `Authorization`: list it explicitly, or use
    /// [`mirror_headers`](Self::mirror_headers).
    pub fn allow_any_header(mut self) -> Self {
        self.headers = ListSpec::Any;
        self
    }

    /// Allows whatever headers the preflight asks for (`Access-Control-Request-Headers`).
    pub fn mirror_headers(mut self) -> Self {
        self.headers = ListSpec::Mirror;
        self
    }

    /// Adds response headers scripts may read (`Access-Control-Expose-Headers`).
    pub fn expose_headers<I>(mut self, headers: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.expose.extend(headers);
        self
    }

    /// Answers `Access-Control-Expose-Headers: *` (not with credentials).
    pub fn expose_any_header(mut self) -> Self {
        self.expose = ListSpec::Any;
        self
    }

    /// How long browsers may cache a preflight answer (`Access-Control-Max-Age`, in seconds).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Lets browsers send cookies and `Authorization` and expose the response to scripts.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.credentials = allow;
        self
    }

    /// Answers private network access preflights
    /// (`Access-Control-Request-Private-Network: true`) with consent.
    pub fn allow_private_network(mut self, allow: bool) -> Self {
        self.private_network = allow;
        self
    }

    /// Strict mode: a state-changing request (not `GET`, `HEAD` or `OPTIONS`) from a
    /// disallowed `Origin` gets 403 before it reaches the handler.
    ///
    /// Browsers only hide the *response* from a disallowed origin; a "simple" cross-site `POST`
    /// still runs the handler (a CSRF). Strict mode stops it.
    pub fn reject_disallowed_origins(mut self, reject: bool) -> Self {
        self.strict = reject;
        self
    }

    /// Validates the policy and precomputes every header value.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::InvalidValue`] when no origin is allowed at all (an empty
    ///   `allow_origins` list too), or a method is invalid;
    /// - [`ConfigError::InvalidOrigin`] for an origin that is not `scheme://host[:port]`;
    /// - [`ConfigError::WildcardInList`] for `*` inside a list;
    /// - [`ConfigError::CredentialsWithWildcard`] for credentials with `*` anywhere;
    /// - [`ConfigError::CredentialsWithMirroredOrigin`] for credentials with a mirrored origin
    ///   (unless [`allow_any_origin_with_credentials_dangerously`](Self::allow_any_origin_with_credentials_dangerously));
    /// - [`ConfigError::CredentialsWithNullOrigin`] for credentials with `null` in the origin list;
    /// - [`ConfigError::InvalidHeaderName`] for a header name that is not a valid token.
    pub fn build(self) -> Result<CorsLayer, ConfigError> {
        let origin = match self.origin {
            OriginSpec::Unset => {
                return Err(ConfigError::InvalidValue {
                    setting: "allow_origins",
                    reason: "no origin is allowed: call allow_origins, mirror_origin or allow_any_origin".into(),
                });
            }
            OriginSpec::Any => AllowOrigin::Any,
            OriginSpec::Mirror => AllowOrigin::Mirror,
            OriginSpec::List { origins, predicate } => {
                if origins.iter().any(|o| o == "*") {
                    if origins.len() > 1 || predicate.is_some() {
                        return Err(ConfigError::WildcardInList {
                            setting: "allow_origins",
                        });
                    }
                    AllowOrigin::Any
                } else {
                    if origins.is_empty() && predicate.is_none() {
                        // Typically an unset environment variable: the policy would allow nobody.
                        return Err(ConfigError::InvalidValue {
                            setting: "allow_origins",
                            reason:
                                "no origin is allowed: the list is empty; name at least one origin"
                                    .into(),
                        });
                    }
                    let rules = origins
                        .iter()
                        .map(|o| OriginRule::parse(o))
                        .collect::<Result<Vec<_>, _>>()?;
                    AllowOrigin::List {
                        rules: rules.into(),
                        predicate,
                    }
                }
            }
        };
        let methods = self.methods.normalized("allow_methods")?;
        let headers = self.headers.normalized("allow_headers")?;
        let expose = self.expose.normalized("expose_headers")?;
        if self.credentials {
            // Mirroring with credentials hands every site the user's session, just like `*` would
            // if browsers allowed it (Fetch §3.2.5); so does `null`, which any page can send.
            match &origin {
                AllowOrigin::Mirror if !self.any_origin_with_credentials => {
                    return Err(ConfigError::CredentialsWithMirroredOrigin);
                }
                AllowOrigin::List { rules, .. } if rules.iter().any(OriginRule::is_null) => {
                    return Err(ConfigError::CredentialsWithNullOrigin);
                }
                // `*.com` names every site under a TLD. (Public suffixes such as `*.github.io`
                // cannot be told apart without a suffix list; the docs say so.)
                AllowOrigin::List { rules, .. } => {
                    if let Some(rule) = rules.iter().find(|r| r.is_top_level_wildcard()) {
                        return Err(ConfigError::CredentialsWithTopLevelWildcard {
                            origin: rule.as_written(),
                        });
                    }
                }
                _ => {}
            }
            for (setting, any) in [
                ("allow_origins", matches!(origin, AllowOrigin::Any)),
                ("allow_methods", matches!(methods, ListSpec::Any)),
                ("allow_headers", matches!(headers, ListSpec::Any)),
                ("expose_headers", matches!(expose, ListSpec::Any)),
            ] {
                if any {
                    return Err(ConfigError::CredentialsWithWildcard { setting });
                }
            }
        }

        let allow_methods = match methods {
            ListSpec::Unset | ListSpec::Mirror => None,
            ListSpec::Any => Some(STAR),
            ListSpec::List(list) => {
                for m in &list {
                    Method::from_bytes(m.as_bytes()).map_err(|_| ConfigError::InvalidValue {
                        setting: "allow_methods",
                        reason: format!("{m:?} is not an HTTP method"),
                    })?;
                }
                joined(list.iter().map(String::as_str))
            }
        };
        let allow_headers = match headers {
            ListSpec::Unset => AllowHeaders::Fixed(None),
            ListSpec::Any => AllowHeaders::Fixed(Some(STAR)),
            ListSpec::Mirror => AllowHeaders::Mirror,
            ListSpec::List(list) => AllowHeaders::Fixed(header_list(&list)?),
        };
        let expose_headers = match expose {
            ListSpec::Unset | ListSpec::Mirror => None,
            ListSpec::Any => Some(STAR),
            ListSpec::List(list) => header_list(&list)?,
        };

        // Vary names only what the answer really depends on (RFC 9110 §12.5.5).
        let origin_varies = !matches!(origin, AllowOrigin::Any);
        let vary_actual = origin_varies.then_some(HeaderValue::from_static("origin"));
        let vary_preflight = joined(
            [
                origin_varies.then_some("origin"),
                matches!(allow_headers, AllowHeaders::Mirror)
                    .then_some("access-control-request-headers"),
                self.private_network
                    .then_some("access-control-request-private-network"),
            ]
            .into_iter()
            .flatten(),
        );

        Ok(CorsLayer {
            config: Arc::new(Config {
                origin,
                allow_methods,
                allow_headers,
                expose_headers,
                max_age: self.max_age.map(|d| HeaderValue::from(d.as_secs())),
                credentials: self.credentials,
                private_network: self.private_network,
                strict: self.strict,
                vary_actual,
                vary_preflight,
            }),
        })
    }
}

/// Validated header names joined by `, ` (names are case-insensitive; sent lowercase).
fn header_list(list: &[String]) -> Result<Option<HeaderValue>, ConfigError> {
    let mut names = Vec::with_capacity(list.len());
    for name in list {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::InvalidHeaderName(name.clone()))?;
        if !names.contains(&parsed) {
            names.push(parsed);
        }
    }
    Ok(joined(names.iter().map(HeaderName::as_str)))
}

/// `a, b, c` as one header value; `None` for no values.
fn joined<'a>(values: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let joined = values.collect::<Vec<_>>().join(", ");
    // Every piece was validated as a token, so this only fails for an empty list.
    (!joined.is_empty())
        .then(|| HeaderValue::try_from(joined).ok())
        .flatten()
}

#[derive(Clone)]
pub(super) enum AllowOrigin {
    Any,
    Mirror,
    List {
        rules: Arc<[OriginRule]>,
        predicate: Option<OriginPredicate>,
    },
}

impl fmt::Debug for AllowOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("Any"),
            Self::Mirror => f.write_str("Mirror"),
            Self::List { rules, predicate } => f
                .debug_struct("List")
                .field("rules", rules)
                .field("predicate", &predicate.as_ref().map(|_| "Fn(&str) -> bool"))
                .finish(),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum AllowHeaders {
    Fixed(Option<HeaderValue>),
    Mirror,
}

/// The validated policy with every constant header value built once.
#[derive(Debug)]
pub(super) struct Config {
    origin: AllowOrigin,
    allow_methods: Option<HeaderValue>,
    allow_headers: AllowHeaders,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
    private_network: bool,
    pub(super) strict: bool,
    vary_actual: Option<HeaderValue>,
    vary_preflight: Option<HeaderValue>,
}

impl Config {
    /// The `Access-Control-Allow-Origin` value for this request, or `None` when not allowed.
    pub(super) fn allowed_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.origin {
            AllowOrigin::Any => Some(STAR),
            AllowOrigin::Mirror => origin.cloned(),
            AllowOrigin::List { rules, predicate } => {
                let origin = origin?;
                let bytes = origin.as_bytes();
                let allowed = rules.iter().any(|r| r.matches(bytes))
                    || predicate
                        .as_ref()
                        .is_some_and(|p| origin.to_str().is_ok_and(|o| p(o)));
                allowed.then(|| origin.clone())
            }
        }
    }

    /// Fills a preflight answer's headers.
    pub(super) fn preflight<B>(
        &self,
        response: &mut Response<B>,
        allowed: Option<HeaderValue>,
        request: &HeaderMap,
    ) {
        let headers = response.headers_mut();
        if let Some(vary) = &self.vary_preflight {
            headers.append(header::VARY, vary.clone());
        }
        let Some(origin) = allowed else {
            // No allow headers at all: the browser fails the preflight.
            return;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        if let Some(methods) = &self.allow_methods {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods.clone());
        }
        let allow_headers = match &self.allow_headers {
            AllowHeaders::Fixed(value) => value.clone(),
            AllowHeaders::Mirror => request.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned(),
        };
        if let Some(value) = allow_headers {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        if let Some(max_age) = &self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        if self.private_network
            && request
                .get("access-control-request-private-network")
                .is_some_and(|v| v == "true")
        {
            headers.insert("access-control-allow-private-network", TRUE);
        }
    }

    /// Decorates an actual response (the inner service's, errors included).
    pub(super) fn actual<B>(&self, response: &mut Response<B>, allowed: Option<HeaderValue>) {
        let headers = response.headers_mut();
        if let Some(vary) = &self.vary_actual {
            // Append: the inner service may vary on other headers (e.g. Accept-Encoding).
            headers.append(header::VARY, vary.clone());
        }
        let Some(origin) = allowed else {
            return;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        if let Some(expose) = &self.expose_headers {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

/// Browser-correct CORS that cooperates with auth; see the [module docs](crate::cors).
///
/// Built by [`CorsLayer::builder`] or a preset ([`mastra_defaults`](Self::mastra_defaults),
/// [`grpc_web`](Self::grpc_web)), then [`CorsBuilder::build`].
#[derive(Clone, Debug)]
pub struct CorsLayer {
    config: Arc<Config>,
}

impl CorsLayer {
    /// An empty policy: add origins (required) and whatever else the clients need.
    pub fn builder() -> CorsBuilder {
        CorsBuilder::default()
    }

    /// Mastra's defaults: methods `GET, POST, PUT, PATCH, DELETE, OPTIONS`; headers
    /// `Content-Type, Authorization, A2A-Version, x-mastra-client-type,
    /// x-mastra-dev-playground`; exposed `Content-Length, X-Requested-With`; max age 3600 s;
    /// any origin (`*`), no credentials.
    ///
    /// Headers you add are appended to these, as Mastra does.
    pub fn mastra_defaults() -> CorsBuilder {
        CorsBuilder::default()
            .allow_any_origin()
            .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
            .allow_headers([
                "Content-Type",
                "Authorization",
                "A2A-Version",
                "x-mastra-client-type",
                "x-mastra-dev-playground",
            ])
            .expose_headers(["Content-Length", "X-Requested-With"])
            .max_age(Duration::from_secs(3600))
    }

    /// Mastra's defaults when auth is configured, with credentials allowed: name the origins
    /// with [`CorsBuilder::allow_origins`] (or [`CorsBuilder::allow_origin_predicate`]).
    ///
    /// Mastra reflects any request's origin with credentials here; this preset does not build
    /// until the origins are restricted ([`ConfigError::CredentialsWithMirroredOrigin`]), because
    /// a reflected origin with credentials lets every website act as the signed-in user.
    /// [`CorsBuilder::allow_any_origin_with_credentials_dangerously`] restores Mastra's behaviour.
    pub fn mastra_defaults_with_credentials() -> CorsBuilder {
        Self::mastra_defaults()
            .mirror_origin()
            .allow_credentials(true)
    }

    /// For grpc-web browser clients: `POST`; allows `x-grpc-web, x-user-agent, grpc-timeout,
    /// content-type, authorization`; exposes `grpc-status, grpc-message,
    /// grpc-status-details-bin` so scripts can read the call's outcome. Add the origins.
    pub fn grpc_web() -> CorsBuilder {
        CorsBuilder::default()
            .allow_methods(["POST"])
            .allow_headers([
                "x-grpc-web",
                "x-user-agent",
                "grpc-timeout",
                "content-type",
                "authorization",
            ])
            .expose_headers(["grpc-status", "grpc-message", "grpc-status-details-bin"])
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cors::new(inner, Arc::clone(&self.config))
    }
}
