//! [`JwksAuthenticatorBuilder`]: key-source, fetch and cache settings, plus the claim rules
//! shared with [`jwt`](crate::jwt); [`build`](JwksAuthenticatorBuilder::build) checks them all
//! and loads the keys.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::runtime::Handle;

use super::cache::TokenCache;
use super::fetch::{Http, checked_url};
use super::source::{KeySource, Location, SourceConfig};
use super::stats::Counters;
use super::verify::{Inner, IssuerState};
use super::{
    DEFAULT_CACHE_MAX_TTL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_REFRESH,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MIN_REFRESH, DEFAULT_REFRESH_INTERVAL, DEFAULT_STALE_GRACE,
    DEFAULT_UNKNOWN_KID_COOLDOWN, Issuer, JwksAuthenticator,
};
use crate::ConfigError;
use crate::jwt::{ASYMMETRIC, Algorithm, ClaimRules, Policy, claim_rule_setters};

impl<C: DeserializeOwned + 'static> JwksAuthenticator<C, C> {
    /// Starts a builder whose user is the claims value itself (see
    /// [`map_user`](JwksAuthenticatorBuilder::map_user)).
    pub fn builder() -> JwksAuthenticatorBuilder<C, C> {
        JwksAuthenticatorBuilder {
            settings: Settings::default(),
            rules: ClaimRules::new(),
        }
    }
}

/// Builds a [`JwksAuthenticator`]; every setting is checked by [`build`](Self::build).
pub struct JwksAuthenticatorBuilder<C, U> {
    settings: Settings,
    rules: ClaimRules<C, U>,
}

/// Where keys come from, how they are fetched, and the token cache (the claim rules are in
/// `rules`).
struct Settings {
    issuers: Vec<Issuer>,
    algorithms: Option<Vec<Algorithm>>,
    connect_timeout: Duration,
    fetch_timeout: Duration,
    max_response_bytes: usize,
    refresh_interval: Duration,
    refresh_bounds: (Duration, Duration),
    cooldown: Duration,
    grace: Duration,
    lazy: bool,
    cache_capacity: Option<usize>,
    cache_max_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            algorithms: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            refresh_bounds: (DEFAULT_MIN_REFRESH, DEFAULT_MAX_REFRESH),
            cooldown: DEFAULT_UNKNOWN_KID_COOLDOWN,
            grace: DEFAULT_STALE_GRACE,
            lazy: false,
            cache_capacity: None,
            cache_max_ttl: DEFAULT_CACHE_MAX_TTL,
        }
    }
}

impl<C, U> fmt::Debug for JwksAuthenticatorBuilder<C, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksAuthenticatorBuilder")
            .field("issuers", &self.settings.issuers)
            .finish_non_exhaustive()
    }
}

impl<C: DeserializeOwned, U> JwksAuthenticatorBuilder<C, U> {
    /// Trusts this issuer (call again for several; each token is verified with its own
    /// issuer's keys only).
    #[must_use]
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.settings.issuers.push(issuer);
        self
    }

    /// Restricts keys to these algorithms (default: every asymmetric algorithm).
    ///
    /// Symmetric (`oct`) JWKs are used only when this explicitly allows HS*.
    #[must_use]
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.settings.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    claim_rule_setters!(JwksAuthenticatorBuilder);

    /// Sets the TCP/TLS connect timeout of each fetch (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Sets the total timeout of each fetch (default 10 s).
    #[must_use]
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.settings.fetch_timeout = timeout;
        self
    }

    /// Caps the size of a JWKS or discovery response (default 512 KiB).
    #[must_use]
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_response_bytes = bytes;
        self
    }

    /// Sets the refresh interval used when the JWKS has no `Cache-Control: max-age` (default
    /// 10 min; still clamped to the bounds).
    #[must_use]
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.settings.refresh_interval = interval;
        self
    }

    /// Clamps the JWKS `max-age` to `[min, max]` (default 30 s to 24 h); `min` is also the
    /// retry interval after a failed refresh.
    #[must_use]
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.settings.refresh_bounds = (min, max);
        self
    }

    /// Sets the minimum time between two fetches triggered by unknown `kid`s (default 30 s).
    #[must_use]
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.settings.cooldown = cooldown;
        self
    }

    /// Sets how long a key set keeps serving past its refresh time while fetches fail
    /// (default 1 h); after that, requests get 503.
    #[must_use]
    pub fn stale_grace(mut self, grace: Duration) -> Self {
        self.settings.grace = grace;
        self
    }

    /// Builds without fetching: keys load in the background, and requests answer 503 until
    /// they have (use [`JwksAuthenticator::is_ready`] as a readiness probe).
    #[must_use]
    pub fn lazy_start(mut self) -> Self {
        self.settings.lazy = true;
        self
    }

    /// Caches up to `capacity` verified tokens, so a repeated token skips the signature check;
    /// `map_user` then runs once per token, not once per request, and every hit shares the one
    /// user value it produced.
    ///
    /// Entries are keyed by SipHash-1-3 (128-bit output) of the whole token under a random key
    /// drawn for this cache: the cache never holds a usable token, and a token that differs by
    /// any byte misses. A hit costs one pass of that digest over the token, a map lookup and
    /// two clock reads.
    #[must_use]
    pub fn token_cache(mut self, capacity: usize) -> Self {
        self.settings.cache_capacity = Some(capacity);
        self
    }

    /// Caps how long a verified token stays cached (default 10 min; never past its `exp`).
    #[must_use]
    pub fn token_cache_max_ttl(mut self, ttl: Duration) -> Self {
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
        if self.settings.issuers.is_empty() {
            return bad("issuers", "add at least one `Issuer`");
        }
        for (i, issuer) in self.settings.issuers.iter().enumerate() {
            if issuer.issuer.is_empty() {
                return bad("issuer", "must not be empty");
            }
            if self.settings.issuers[..i]
                .iter()
                .any(|o| o.issuer == issuer.issuer)
            {
                return bad("issuer", "configured twice");
            }
        }
        let (min, max) = self.settings.refresh_bounds;
        if min.is_zero() || min > max {
            return bad("refresh bounds", "need 0 < min <= max");
        }
        if self.settings.connect_timeout.is_zero() || self.settings.fetch_timeout.is_zero() {
            return bad("fetch timeouts", "must be positive");
        }
        if self.settings.max_response_bytes == 0 {
            return bad("max response bytes", "must be positive");
        }
        if self.settings.cache_capacity == Some(0) {
            return bad("token cache", "capacity must be positive");
        }
        self.rules.policy.validate()
    }

    /// Checks the configuration, loads every issuer's keys (unless
    /// [`lazy_start`](Self::lazy_start)) and starts background refreshing.
    ///
    /// Must run inside a Tokio runtime, which then runs the refresh tasks.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::NoCryptoBackend`] without a crypto backend;
    /// - [`ConfigError::InvalidValue`] for no or duplicate issuers, a URL that is not HTTPS
    ///   (or loopback HTTP), inconsistent bounds, or no Tokio runtime;
    /// - [`ConfigError::KeySource`] when an issuer's keys cannot be loaded (timeout, HTTP
    ///   error, discovery `issuer` mismatch, a discovered `jwks_uri` that breaks the URL rules,
    ///   no usable key);
    /// - [`ConfigError::NoRandomness`] when the token cache's secret key cannot be drawn.
    pub async fn build(self) -> Result<JwksAuthenticator<C, U>, ConfigError> {
        let provider = self.rules.crypto_provider()?;
        self.check()?;
        let runtime = Handle::try_current().map_err(|_| ConfigError::InvalidValue {
            setting: "runtime",
            reason: "build() must run inside a Tokio runtime".into(),
        })?;
        let cache = self
            .settings
            .cache_capacity
            .map(|capacity| TokenCache::new(capacity, self.settings.cache_max_ttl.as_secs_f64()))
            .transpose()
            .map_err(|_| ConfigError::NoRandomness)?;
        let config = Arc::new(SourceConfig {
            http: Http::new(
                self.settings.connect_timeout,
                self.settings.fetch_timeout,
                self.settings.max_response_bytes,
            )?,
            allowed: self
                .settings
                .algorithms
                .unwrap_or_else(|| ASYMMETRIC.to_vec()),
            default_ttl: self.settings.refresh_interval,
            min_ttl: self.settings.refresh_bounds.0,
            max_ttl: self.settings.refresh_bounds.1,
            cooldown: self.settings.cooldown,
            grace: self.settings.grace,
            runtime,
        });
        let stats = Arc::new(Counters::default());
        let mut issuers = Vec::with_capacity(self.settings.issuers.len());
        for issuer in &self.settings.issuers {
            let location = match &issuer.jwks_url {
                Some(url) => Location::Jwks(checked_url("JWKS URL", url)?),
                None => Location::Discovery(checked_url(
                    "issuer (for OIDC discovery)",
                    &format!(
                        "{}/.well-known/openid-configuration",
                        issuer.issuer.trim_end_matches('/')
                    ),
                )?),
            };
            let source = KeySource::new(
                issuer.issuer.as_str().into(),
                location,
                Arc::clone(&config),
                Arc::clone(&stats),
            );
            let policy = Policy {
                issuers: vec![issuer.issuer.clone()],
                ..self.rules.policy.clone()
            };
            issuers.push(IssuerState { source, policy });
        }
        if !self.settings.lazy {
            for issuer in &issuers {
                issuer
                    .source
                    .fetch_now()
                    .await
                    .map_err(|err| ConfigError::KeySource {
                        issuer: issuer.source.issuer.to_string(),
                        reason: err.to_string(),
                    })?;
                // Eagerly built means ready: an issuer without a usable key is a setup error
                // (`algorithms` too narrow, the wrong JWKS URL) worth failing fast on.
                if !issuer.source.is_ready() {
                    return Err(ConfigError::KeySource {
                        issuer: issuer.source.issuer.to_string(),
                        reason: "the JWK set holds no usable verification key".into(),
                    });
                }
            }
        }
        for issuer in &issuers {
            issuer.source.spawn_background(self.settings.lazy);
        }
        Ok(JwksAuthenticator {
            inner: Arc::new(Inner {
                issuers,
                rules: self.rules,
                provider,
                cache,
                stats,
            }),
        })
    }
}
