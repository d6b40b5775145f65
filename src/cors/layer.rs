//! `CorsLayer`: the policy, checked by each setter and precomputed into header values.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response};
use tower_layer::Layer;

use super::origin::OriginRule;
use super::service::Cors;
use crate::ConfigError;
use crate::http::names;

type OriginPredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

const STAR: HeaderValue = HeaderValue::from_static("*");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// Which origins the policy allows, as configured.
#[derive(Clone, Default)]
enum Origins {
    /// No origin setter was called yet: no cross-origin request is allowed.
    #[default]
    Unset,
    Any,
    Mirror,
    /// Listed rules and an optional predicate; a lone `*` in the list (`stars == 1`, nothing
    /// else) means any. The `*` is counted, not dropped, so a later addition is still refused.
    List {
        rules: Vec<OriginRule>,
        stars: usize,
        predicate: Option<OriginPredicate>,
    },
}

/// A method or header list as configured: values, `*`, or the request's own (mirror).
#[derive(Clone, Debug, Default)]
enum Values<T> {
    #[default]
    Unset,
    Any,
    Mirror,
    /// Like [`Origins::List`]: a lone `*` means any, and is counted so a later addition fails.
    List {
        values: Vec<T>,
        stars: usize,
    },
}

impl<T> Values<T> {
    fn listed(values: Vec<T>) -> Self {
        Self::List { values, stars: 0 }
    }

    /// Whether the answer is `*`: [`Values::Any`], or a list that is a lone `*`.
    fn is_any(&self) -> bool {
        match self {
            Self::Any => true,
            Self::List { values, stars } => values.is_empty() && *stars > 0,
            Self::Unset | Self::Mirror => false,
        }
    }

    /// Adds values, each parsed by `parse`; `*` alone means any, `*` beside anything is refused.
    fn extend<I>(
        &mut self,
        setting: &'static str,
        new: I,
        parse: impl Fn(&str) -> Result<T, ConfigError>,
    ) -> Result<(), ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let new: Vec<String> = new
            .into_iter()
            .map(|v| v.as_ref().trim().to_owned())
            .collect();
        let (mut values, mut stars) = match std::mem::take(self) {
            Self::List { values, stars } => (values, stars),
            _ => (Vec::new(), 0),
        };
        let new_stars = new.iter().filter(|v| *v == "*").count();
        stars += new_stars;
        // Checked before parsing, so `*` in a list is named as such even next to a bad value.
        if stars > 0 && stars + values.len() + (new.len() - new_stars) > 1 {
            return Err(ConfigError::WildcardInList { setting });
        }
        for value in new.iter().filter(|v| *v != "*") {
            values.push(parse(value)?);
        }
        *self = Self::List { values, stars };
        Ok(())
    }
}

/// The policy as configured; always valid, because every setter checks what it changes.
#[derive(Clone, Default)]
struct Policy {
    origins: Origins,
    methods: Values<Method>,
    headers: Values<HeaderName>,
    expose: Values<HeaderName>,
    max_age: Option<Duration>,
    credentials: bool,
    /// Set only by `allow_any_origin_with_credentials_dangerously`: mirror + credentials is meant.
    any_origin_with_credentials: bool,
    private_network: bool,
    strict: bool,
}

impl Policy {
    fn add_origins<I>(&mut self, new: I) -> Result<(), ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let new: Vec<String> = new
            .into_iter()
            .map(|o| o.as_ref().trim().to_owned())
            .collect();
        let (mut rules, mut stars, predicate) = match std::mem::take(&mut self.origins) {
            Origins::List {
                rules,
                stars,
                predicate,
            } => (rules, stars, predicate),
            _ => (Vec::new(), 0, None),
        };
        let new_stars = new.iter().filter(|o| *o == "*").count();
        stars += new_stars;
        if stars > 0 && (stars + rules.len() + (new.len() - new_stars) > 1 || predicate.is_some()) {
            return Err(ConfigError::WildcardInList {
                setting: "allow_origins",
            });
        }
        if stars == 0 && rules.is_empty() && new.is_empty() && predicate.is_none() {
            // Typically an unset environment variable: the policy would allow nobody.
            return Err(ConfigError::InvalidValue {
                setting: "allow_origins",
                reason: "no origin is allowed: the list is empty; name at least one origin".into(),
            });
        }
        for origin in new.iter().filter(|o| *o != "*") {
            rules.push(OriginRule::parse(origin)?);
        }
        self.origins = Origins::List {
            rules,
            stars,
            predicate,
        };
        Ok(())
    }

    fn set_predicate(&mut self, new: OriginPredicate) -> Result<(), ConfigError> {
        match &mut self.origins {
            Origins::List { stars, .. } if *stars > 0 => Err(ConfigError::WildcardInList {
                setting: "allow_origins",
            }),
            Origins::List { predicate, .. } => {
                *predicate = Some(new);
                Ok(())
            }
            other => {
                *other = Origins::List {
                    rules: Vec::new(),
                    stars: 0,
                    predicate: Some(new),
                };
                Ok(())
            }
        }
    }

    /// Refuses credentials for an origin nobody named, whichever setter completed the mix.
    fn check_credentials(&self) -> Result<(), ConfigError> {
        if !self.credentials {
            return Ok(());
        }
        // Mirroring with credentials hands every site the user's session, just like `*` would
        // if browsers allowed it (Fetch §3.2.5); so does `null`, which any page can send.
        let any_origin = match &self.origins {
            Origins::Mirror if !self.any_origin_with_credentials => {
                return Err(ConfigError::CredentialsWithMirroredOrigin);
            }
            Origins::List { stars, .. } if *stars > 0 => true,
            Origins::List { rules, .. } if rules.iter().any(OriginRule::is_null) => {
                return Err(ConfigError::CredentialsWithNullOrigin);
            }
            // `*.com` names every site under a TLD. (Public suffixes such as `*.github.io`
            // cannot be told apart without a suffix list; the docs say so.)
            Origins::List { rules, .. } => {
                if let Some(rule) = rules.iter().find(|r| r.is_top_level_wildcard()) {
                    return Err(ConfigError::CredentialsWithTopLevelWildcard {
                        origin: rule.as_written(),
                    });
                }
                false
            }
            Origins::Any => true,
            Origins::Unset | Origins::Mirror => false,
        };
        for (setting, any) in [
            ("allow_origins", any_origin),
            ("allow_methods", self.methods.is_any()),
            ("allow_headers", self.headers.is_any()),
            ("expose_headers", self.expose.is_any()),
        ] {
            if any {
                return Err(ConfigError::CredentialsWithWildcard { setting });
            }
        }
        Ok(())
    }

    /// Builds every constant header value; cannot fail, every value was checked when set.
    fn compile(&self) -> Config {
        let origin = match &self.origins {
            Origins::Unset => AllowOrigin::List {
                rules: Arc::new([]),
                predicate: None,
            },
            Origins::Any => AllowOrigin::Any,
            Origins::List { stars, .. } if *stars > 0 => AllowOrigin::Any,
            Origins::Mirror => AllowOrigin::Mirror,
            Origins::List {
                rules, predicate, ..
            } => AllowOrigin::List {
                rules: rules.as_slice().into(),
                predicate: predicate.clone(),
            },
        };
        let allow_methods = match &self.methods {
            any if any.is_any() => Some(STAR),
            Values::List { values, .. } => joined(values.iter().map(Method::as_str)),
            _ => None,
        };
        let allow_headers = match &self.headers {
            any if any.is_any() => AllowHeaders::Fixed(Some(STAR)),
            Values::Mirror => AllowHeaders::Mirror,
            Values::List { values, .. } => AllowHeaders::Fixed(header_list(values)),
            _ => AllowHeaders::Fixed(None),
        };
        let expose_headers = match &self.expose {
            any if any.is_any() => Some(STAR),
            Values::List { values, .. } => header_list(values),
            _ => None,
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

        Config {
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
        }
    }
}

/// Header names joined by `, ` once each (names are case-insensitive; sent lowercase).
fn header_list(names: &[HeaderName]) -> Option<HeaderValue> {
    let mut unique: Vec<&HeaderName> = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    joined(unique.into_iter().map(HeaderName::as_str))
}

fn method(value: &str) -> Result<Method, ConfigError> {
    Method::from_bytes(value.as_bytes()).map_err(|_| ConfigError::InvalidValue {
        setting: "allow_methods",
        reason: format!("{value:?} is not an HTTP method"),
    })
}

/// `a, b, c` as one header value; `None` for no values.
fn joined<'a>(values: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let joined = values.collect::<Vec<_>>().join(", ");
    // Every piece was validated as a token, so this only fails for an empty list.
    (!joined.is_empty())
        .then(|| HeaderValue::try_from(joined).ok())
        .flatten()
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
                .get(REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v == "true")
        {
            headers.insert(ALLOW_PRIVATE_NETWORK, TRUE);
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
