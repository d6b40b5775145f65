//! [`IntrospectionAuthenticatorBuilder`]: endpoint, client authentication, claim rules, cache
//! and HTTP limits; [`build`](IntrospectionAuthenticatorBuilder::build) checks them all and
//! discovers the endpoint when asked to.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use super::{
    ClientAuth, DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_MAX_TTL, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_CALLS, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, Inner,
    IntrospectionAuthenticator,
};
use crate::jwks::cache::TokenCache;
use crate::jwks::fetch::{FetchError, Http, checked_url, key_url};
use crate::jwt::{ClaimRules, Confirmation};
use crate::{AuthError, ConfigError};

/// Where the introspection endpoint is.
#[derive(Debug, Clone)]
pub struct Endpoint(Where);

#[derive(Debug, Clone)]
enum Where {
    Url(String),
    Discover(String),
}

impl Endpoint {
    /// This introspection endpoint URL (HTTPS, or HTTP to a loopback host).
    pub fn url(url: impl Into<String>) -> Self {
        Self(Where::Url(url.into()))
    }

    /// The `introspection_endpoint` of `issuer`'s metadata, read once at `build()`: RFC 8414
    /// (`/.well-known/oauth-authorization-server`, inserted before the issuer's path), and
    /// when that answers 4xx, OIDC discovery (`{issuer}/.well-known/openid-configuration`).
    /// The document's `issuer` must equal `issuer` exactly (RFC 8414 §3.3), and the endpoint
    /// it names is held to the same URL rules as a configured one.
    pub fn discover(issuer: impl Into<String>) -> Self {
        Self(Where::Discover(issuer.into()))
    }
}

impl<C: DeserializeOwned + 'static> IntrospectionAuthenticator<C, C> {
    /// Starts a builder whose user is the claims value itself (see
    /// [`map_user`](IntrospectionAuthenticatorBuilder::map_user)).
    pub fn builder() -> IntrospectionAuthenticatorBuilder<C, C> {
        IntrospectionAuthenticatorBuilder {
            settings: Settings::default(),
            rules: ClaimRules::new(),
        }
    }
}

/// Builds an [`IntrospectionAuthenticator`]; every setting is checked by [`build`](Self::build).
pub struct IntrospectionAuthenticatorBuilder<C, U> {
    settings: Settings,
    rules: ClaimRules<C, U>,
}

struct Settings {
    endpoint: Option<Endpoint>,
    client: Option<ClientAuth>,
    connect_timeout: Duration,
    timeout: Duration,
    max_response_bytes: usize,
    cache_capacity: usize,
    cache_max_ttl: Duration,
    exp_required: bool,
    token_type: Option<String>,
    max_calls: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            client: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            cache_max_ttl: DEFAULT_CACHE_MAX_TTL,
            exp_required: false,
            token_type: None,
            max_calls: DEFAULT_MAX_CONCURRENT_CALLS,
        }
    }
}

impl<C, U> fmt::Debug for IntrospectionAuthenticatorBuilder<C, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionAuthenticatorBuilder")
            .field("endpoint", &self.settings.endpoint)
            .field("client_auth", &self.settings.client)
            .finish_non_exhaustive()
    }
}

impl<C: DeserializeOwned, U> IntrospectionAuthenticatorBuilder<C, U> {
    /// Sets where the introspection endpoint is (required).
    #[must_use]
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.settings.endpoint = Some(endpoint);
        self
    }

    /// Sets how this resource server authenticates to the endpoint (required).
    #[must_use]
    pub fn client_auth(mut self, client: ClientAuth) -> Self {
        self.settings.client = Some(client);
        self
    }

    /// Requires the answer's `iss` to be `issuer` (call again to accept several). Without it,
    /// `iss` is not checked.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.rules.policy.issuers.push(issuer.into());
        self
    }

    /// Requires the answer's `aud` (a string or an array) to contain this audience (call again
    /// to accept several). Without any, an answer carrying `aud` is refused unless
    /// [`accept_any_audience`](Self::accept_any_audience) (RFC 7519 §4.1.3, as for JWTs).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.rules.policy.audiences.push(audience.into());
        self
    }

    /// Accepts answers carrying any `aud` when no audience is configured.
    #[must_use]
    pub fn accept_any_audience(mut self) -> Self {
        self.rules.policy.accept_any_audience = true;
        self
    }

    /// Refuses active answers without `exp` (RFC 7662 makes it optional; without this, such an
    /// answer is cached for [`cache_max_ttl`](Self::cache_max_ttl) at most).
    #[must_use]
    pub fn require_exp(mut self) -> Self {
        self.settings.exp_required = true;
        self
    }

    /// Requires the answer's `token_type` to be `token_type` (compared case-insensitively,
    /// e.g. `Bearer`): an authorization server may answer `active: true` for a refresh token
    /// sent as a bearer token (`token_type_hint` is only a hint, RFC 7662 §2.1). Without this,
    /// `token_type` is not checked.
    #[must_use]
    pub fn require_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.settings.token_type = Some(token_type.into());
        self
    }

    /// Sets the clock leeway for `exp`, `nbf` and `iat` (default 30 s).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.rules.policy.leeway = leeway.as_secs_f64();
        self
    }

    /// Refuses tokens that remain valid for longer than `max`.
    #[must_use]
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.rules.policy.max_lifetime = Some(max.as_secs_f64());
        self
    }

    /// Accepts sender-constrained tokens (a `cnf` member in the answer, RFC 7800 §3.1) when
    /// `verifier` approves their [`Confirmation`]; without this, every answer carrying `cnf`
    /// is refused with 401 `invalid_token`, as on the JWT path (RFC 9449 §6, RFC 8705 §3).
    ///
    /// The verifier runs after every other check, on every request (cache hits too), and sees
    /// no request: it is the hook for a proof-of-possession check (a DPoP proof verified by a
    /// layer that compares its key thumbprint with `cnf.jkt`). A `cnf` that is not a JSON
    /// object is refused before the verifier is asked.
    #[must_use]
    pub fn accept_sender_constrained(
        mut self,
        verifier: impl Fn(&Confirmation<'_>) -> Result<(), AuthError> + Send + Sync + 'static,
    ) -> Self {
        self.rules.policy.binding.accept_with(Arc::new(verifier));
        self
    }

    /// Uses this clock instead of the system clock, for the claim checks and the cache (for
    /// tests: no sleeping).
    #[must_use]
    pub fn clock(
        mut self,
        clock: impl Fn() -> std::time::SystemTime + Send + Sync + 'static,
    ) -> Self {
        self.rules.policy.clock = Some(Arc::new(clock));
        self
    }

    /// Maps the introspected claims to your user type; return an [`AuthError`] to refuse.
    /// Runs once per introspection call, not once per request: cache hits share its result.
    pub fn map_user<V>(
        self,
        map: impl Fn(C) -> Result<V, AuthError> + Send + Sync + 'static,
    ) -> IntrospectionAuthenticatorBuilder<C, V> {
        IntrospectionAuthenticatorBuilder {
            settings: self.settings,
            rules: self.rules.map_user(map),
        }
    }

    /// Sets the TCP/TLS connect timeout of each call (default 2 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Sets the total timeout of each call, and of discovery (default 5 s); past it, 503.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Caps the size of an introspection or metadata answer (default 64 KiB); a larger one is
    /// a failure (503).
    #[must_use]
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_response_bytes = bytes;
        self
    }

    /// Sets how many introspection calls (for distinct tokens) may run at once (default 256);
    /// a request whose token needs one more gets 503 until one finishes.
    #[must_use]
    pub fn max_concurrent_calls(mut self, calls: usize) -> Self {
        self.settings.max_calls = calls;
        self
    }

    /// Sets how many active answers are cached (default 10 000).
    #[must_use]
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.settings.cache_capacity = capacity;
        self
    }

    /// Caps how long an active answer is cached (default 60 s, never past its `exp`): how
    /// long a token revoked at the authorization server may keep working. `Duration::ZERO`
    /// turns caching off (every request is introspected).
    #[must_use]
    pub fn cache_max_ttl(mut self, ttl: Duration) -> Self {
        self.settings.cache_max_ttl = ttl;
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |setting: &'static str, reason: &str| {
            Err(ConfigError::InvalidValue {
                setting,
                reason: reason.into(),
            })
        };
        if self.settings.endpoint.is_none() {
            return bad("introspection endpoint", "set one with `endpoint`");
        }
        match &self.settings.client {
            None => {
                return bad(
                    "client authentication",
                    "set one with `client_auth` (RFC 7662 section 2.1)",
                );
            }
            Some(client) => {
                if let Some(problem) = client.problem() {
                    return bad("client authentication", problem);
                }
            }
        }
        if self.settings.connect_timeout.is_zero() || self.settings.timeout.is_zero() {
            return bad("introspection timeouts", "must be positive");
        }
        if self.settings.max_response_bytes == 0 {
            return bad("max response bytes", "must be positive");
        }
        if self.settings.cache_capacity == 0 {
            return bad("cache capacity", "must be positive");
        }
        if self.settings.max_calls == 0 || self.settings.max_calls > Semaphore::MAX_PERMITS {
            return bad("max concurrent calls", "must be positive");
        }
        if self.settings.token_type.as_deref() == Some("") {
            return bad("token type", "must not be empty");
        }
        self.rules.policy.validate()
    }

    /// Checks the configuration and, for [`Endpoint::discover`], reads the authorization
    /// server's metadata. Must run inside a Tokio runtime, which then runs the calls.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::InvalidValue`] for a missing endpoint or client authentication, empty
    ///   credentials, a URL that is not HTTPS (or loopback HTTP) or carries credentials, zero
    ///   limits, an empty issuer or audience, or no Tokio runtime;
    /// - [`ConfigError::Discovery`] when the metadata cannot be read, names another issuer, or
    ///   names no usable `introspection_endpoint`;
    /// - [`ConfigError::NoRandomness`] when the cache's secret key cannot be drawn.
    pub async fn build(self) -> Result<IntrospectionAuthenticator<C, U>, ConfigError> {
        self.check()?;
        let runtime = Handle::try_current().map_err(|_| ConfigError::InvalidValue {
            setting: "runtime",
            reason: "build() must run inside a Tokio runtime".into(),
        })?;
        let Settings {
            endpoint,
            client,
            connect_timeout,
            timeout,
            max_response_bytes,
            cache_capacity,
            cache_max_ttl,
            exp_required,
            token_type,
            max_calls,
        } = self.settings;
        // `check` refused both `None`s already; this only spares an `unwrap`.
        let (Some(Endpoint(endpoint)), Some(client)) = (endpoint, client) else {
            return Err(ConfigError::InvalidValue {
                setting: "introspection endpoint",
                reason: "set an endpoint and a client authentication".into(),
            });
        };
        let http = Http::new(connect_timeout, timeout, max_response_bytes)?;
        let endpoint = match endpoint {
            Where::Url(url) => checked_url("introspection endpoint", &url)?,
            Where::Discover(issuer) => discover(&http, &issuer).await?,
        };
        let cache = TokenCache::new(cache_capacity, cache_max_ttl.as_secs_f64())
            .map_err(|_| ConfigError::NoRandomness)?;
        Ok(IntrospectionAuthenticator {
            inner: Arc::new(Inner {
                endpoint,
                client,
                http,
                rules: self.rules,
                exp_required,
                token_type: token_type.map(String::into_boxed_str),
                cache,
                flights: Mutex::new(HashMap::new()),
                calls: Arc::new(Semaphore::new(max_calls)),
                runtime,
            }),
        })
    }
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    #[serde(default)]
    introspection_endpoint: Option<String>,
}

/// The `introspection_endpoint` of `issuer`: RFC 8414 first, OIDC discovery when that is 4xx.
async fn discover(http: &Http, issuer: &str) -> Result<Url, ConfigError> {
    let failed = |reason: String| ConfigError::Discovery {
        issuer: issuer.to_owned(),
        reason,
    };
    let base = checked_url("issuer (for metadata discovery)", issuer)?;
    if base.query().is_some() || base.fragment().is_some() {
        // RFC 8414 §2: an issuer has no query or fragment.
        return Err(ConfigError::InvalidValue {
            setting: "issuer (for metadata discovery)",
            reason: "must not have a query or fragment".into(),
        });
    }
    // RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
    let mut oauth = base.clone();
    oauth.set_path(&format!(
        "/.well-known/oauth-authorization-server{}",
        base.path().trim_end_matches('/')
    ));
    let body = match http.get(&oauth).await {
        Ok((body, _)) => body,
        Err(FetchError::Status(400..=499)) => {
            let oidc = checked_url(
                "issuer (for metadata discovery)",
                &format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                ),
            )?;
            http.get(&oidc)
                .await
                .map_err(|err| failed(err.to_string()))?
                .0
        }
        Err(err) => return Err(failed(err.to_string())),
    };
    let doc: Metadata =
        serde_json::from_slice(&body).map_err(|_| failed("malformed JSON document".into()))?;
    // RFC 8414 §3.3 / OIDC Discovery §4.3: a document about another issuer could point us at
    // an endpoint that vouches for anything.
    if doc.issuer != issuer {
        return Err(failed(
            "the metadata's `issuer` differs from the configured issuer".into(),
        ));
    }
    let endpoint = doc
        .introspection_endpoint
        .ok_or_else(|| failed("the metadata names no `introspection_endpoint`".into()))?;
    key_url(&endpoint)
        .map_err(|reason| failed(format!("the discovered `introspection_endpoint` {reason}")))
}
