//! JWT verification with keys from JWKS URLs or OIDC discovery, rotated safely, for one or
//! several issuers, with an optional verified-token cache.
//!
//! - **Key sources.** Per [`Issuer`]: a JWKS URL, or OIDC discovery
//!   (`{issuer}/.well-known/openid-configuration`), whose `issuer` must equal the configured one
//!   exactly. HTTPS is required except for loopback hosts, and URLs carry no credentials; a
//!   discovered `jwks_uri` is held to the same rules as a configured URL. Fetches have connect
//!   and total timeouts, a response size cap, and never follow redirects.
//! - **No lock across I/O.** Each issuer's keys are an atomically swapped snapshot; requests
//!   only read it. A hung JWKS endpoint delays only requests whose key is unknown.
//! - **Rotation.** A background task refreshes each set when its `Cache-Control: max-age`
//!   (clamped to [`refresh_bounds`](JwksAuthenticatorBuilder::refresh_bounds)) runs out. An
//!   unknown `kid` triggers one single-flight refetch, at most once per
//!   [`unknown_kid_cooldown`](JwksAuthenticatorBuilder::unknown_kid_cooldown).
//! - **Withdrawn keys.** Every successful fetch replaces the set, also when it holds no key this
//!   authenticator can use (`{"keys":[]}`, only `use: enc` keys, only unsupported ones): a key
//!   that left the JWKS stops verifying at once, cached tokens included, and while the issuer
//!   publishes no usable key its tokens get 401 `invalid_token` ("The issuer has no usable
//!   keys"), not 503: the issuer answered.
//! - **Stale-if-error.** When fetches fail (network, timeout, non-2xx status, a document that
//!   is not a JWK set), the last good set keeps serving for
//!   [`stale_grace`](JwksAuthenticatorBuilder::stale_grace); with no usable set, requests get
//!   503 ([`AuthError::unavailable`], gRPC 14), never a pass.
//! - **Issuer binding.** The unverified `iss` only picks the issuer; the token is then verified
//!   with that issuer's keys alone, so issuer B's key never vouches for a token claiming A.
//! - **Cache.** [`token_cache`](JwksAuthenticatorBuilder::token_cache) keeps verified users by
//!   a keyed digest of the token (SipHash-2-4, 128-bit, secret random key per cache), never
//!   past `exp`, rechecking `exp`/`nbf` on every hit and dropping entries whose key has left the
//!   set. Every hit hands out the same shared user: nothing is copied per request.
//! - **Stats.** [`JwksAuthenticator::stats`] counts allowed and denied requests, fetches and
//!   cache hits.
//!
//! Every claim rule of [`jwt`](crate::jwt) applies: algorithms from the keys (JWK `use`,
//! `key_ops` and `alg` respected), `exp` required, exact `iss`/`aud`, `crit` refused,
//! `jku`/`x5u`/`jwk` headers never fetched or used, and sender-constrained (`cnf`) tokens
//! refused unless [`accept_sender_constrained`](JwksAuthenticatorBuilder::accept_sender_constrained)
//! approves them, on a cache hit too (see [`Confirmation`](crate::jwt::Confirmation)).
//!
//! With feature `test-util`, [`mock::MockIssuer`] serves a JWKS and a discovery document on
//! loopback, so you can test your own stack:
//!
#![cfg_attr(feature = "test-util", doc = "```")]
#![cfg_attr(not(feature = "test-util"), doc = "```ignore")]
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::BearerAuthLayer;
//! use tower_scope::jwks::{Issuer, JwksAuthenticator, mock::MockIssuer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let idp = MockIssuer::start().await.unwrap(); // stands in for Auth0, Keycloak, Cognito...
//! let auth = JwksAuthenticator::<serde_json::Value>::builder()
//!     .issuer(Issuer::discover(idp.issuer()))
//!     .audience("memory-api")
//!     .token_cache(10_000)
//!     .build()
//!     .await
//!     .unwrap();
//! assert!(auth.is_ready());
//!
//! let svc = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(auth.clone()))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! let token = idp.mint(serde_json::json!({"sub": "alice", "aud": "memory-api"}));
//! let req = Request::get("/").header(header::AUTHORIZATION, format!("Bearer {token}"))
//!     .body(String::new()).unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(auth.stats().allowed, 1);
//! # }
//! ```

mod cache;
mod fetch;
#[cfg(feature = "test-util")]
pub mod mock;
mod source;
mod stats;

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::crypto::CryptoProvider;
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;

use self::cache::{Source as CacheSource, TokenCache, TokenDigest};
use self::fetch::{Http, checked_url};
use self::source::{KeySource, Location, SourceConfig};
use self::stats::Counters;
pub use self::stats::JwksStats;
use crate::Authenticated;
use crate::ConfigError;
use crate::auth::{AuthError, Authenticate, Token};
use crate::jwt::{
    ASYMMETRIC, Algorithm, Jws, MapUser, Policy, SignatureError, claim_rule_setters, claims,
    default_provider, invalid, registered,
};

/// The default refresh interval when the JWKS response has no `Cache-Control: max-age`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// The default lower bound on a `max-age` (a JWKS saying `no-store` is not refetched in a loop).
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(30);
/// The default upper bound on a `max-age`.
pub const DEFAULT_MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// The default minimum time between two fetches triggered by unknown key ids.
pub const DEFAULT_UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(30);
/// The default time a key set keeps serving after it should have been refreshed, if fetches fail.
pub const DEFAULT_STALE_GRACE: Duration = Duration::from_secs(3600);
/// The default TCP/TLS connect timeout of a fetch.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default total timeout of a fetch.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The default cap on a JWKS or discovery response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 512 * 1024;
/// The default cap on how long a verified token stays cached (never past its `exp` either).
pub const DEFAULT_CACHE_MAX_TTL: Duration = Duration::from_secs(600);

/// One trusted issuer and where its keys come from.
#[derive(Debug, Clone)]
pub struct Issuer {
    issuer: String,
    jwks_url: Option<String>,
}

impl Issuer {
    /// Keys from OIDC discovery: `{issuer}/.well-known/openid-configuration`'s `jwks_uri`.
    ///
    /// The document's `issuer` must equal `issuer` exactly (OIDC Discovery §4.3).
    pub fn discover(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_url: None,
        }
    }

    /// Keys from a JWKS URL; tokens must carry exactly `issuer` as `iss`.
    pub fn jwks(issuer: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_url: Some(jwks_url.into()),
        }
    }
}

/// Verifies JWTs against keys fetched per issuer; see the [module docs](self).
///
/// Build one with [`JwksAuthenticator::builder`]. Cloning is cheap (one `Arc`); clones share
/// keys, cache and stats. Background refreshing stops when the last clone is dropped.
pub struct JwksAuthenticator<C, U = C> {
    inner: Arc<Inner<C, U>>,
}

struct IssuerState {
    source: Arc<KeySource>,
    policy: Policy,
}

struct Inner<C, U> {
    issuers: Vec<IssuerState>,
    /// Leeway, `typ` and clock, shared by all issuers.
    base: Policy,
    provider: &'static CryptoProvider,
    cache: Option<TokenCache<U>>,
    stats: Arc<Counters>,
    map_user: Box<MapUser<C, U>>,
}

impl<C, U> Clone for JwksAuthenticator<C, U> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, U> fmt::Debug for JwksAuthenticator<C, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issuers: Vec<&str> = self
            .inner
            .issuers
            .iter()
            .map(|i| &*i.source.issuer)
            .collect();
        f.debug_struct("JwksAuthenticator")
            .field("issuers", &issuers)
            .field("audiences", &self.inner.base.audiences)
            .field("cache", &self.inner.cache.is_some())
            .field(
                "sender_constrained",
                &self.inner.base.binding.is_configured(),
            )
            .finish_non_exhaustive()
    }
}

impl<C, U> JwksAuthenticator<C, U> {
    /// Whether every issuer has a usable key set (for a readiness probe): loaded, not past its
    /// stale grace, and holding at least one key this authenticator can verify with.
    pub fn is_ready(&self) -> bool {
        self.inner.issuers.iter().all(|i| i.source.is_ready())
    }

    /// The counters since this authenticator was built.
    pub fn stats(&self) -> JwksStats {
        self.inner.stats.snapshot()
    }
}

impl<C: DeserializeOwned + 'static> JwksAuthenticator<C, C> {
    /// Starts a builder whose user is the claims value itself (see
    /// [`map_user`](JwksAuthenticatorBuilder::map_user)).
    pub fn builder() -> JwksAuthenticatorBuilder<C, C> {
        JwksAuthenticatorBuilder {
            issuers: Vec::new(),
            algorithms: None,
            policy: Policy::default(),
            provider: None,
            map_user: Box::new(Ok),
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
            _claims: PhantomData,
        }
    }
}

/// Builds a [`JwksAuthenticator`]; every setting is checked by [`build`](Self::build).
pub struct JwksAuthenticatorBuilder<C, U> {
    issuers: Vec<Issuer>,
    algorithms: Option<Vec<Algorithm>>,
    policy: Policy,
    provider: Option<&'static CryptoProvider>,
    map_user: Box<MapUser<C, U>>,
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
    _claims: PhantomData<fn(C)>,
}

impl<C, U> fmt::Debug for JwksAuthenticatorBuilder<C, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksAuthenticatorBuilder")
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

impl<C: DeserializeOwned, U> JwksAuthenticatorBuilder<C, U> {
    /// Trusts this issuer (call again for several; each token is verified with its own
    /// issuer's keys only).
    #[must_use]
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Restricts keys to these algorithms (default: every asymmetric algorithm).
    ///
    /// Symmetric (`oct`) JWKs are used only when this explicitly allows HS*.
    #[must_use]
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    claim_rule_setters!();

    /// Sets the TCP/TLS connect timeout of each fetch (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the total timeout of each fetch (default 10 s).
    #[must_use]
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Caps the size of a JWKS or discovery response (default 512 KiB).
    #[must_use]
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Sets the refresh interval used when the JWKS has no `Cache-Control: max-age` (default
    /// 10 min; still clamped to the bounds).
    #[must_use]
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Clamps the JWKS `max-age` to `[min, max]` (default 30 s to 24 h); `min` is also the
    /// retry interval after a failed refresh.
    #[must_use]
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.refresh_bounds = (min, max);
        self
    }

    /// Sets the minimum time between two fetches triggered by unknown `kid`s (default 30 s).
    #[must_use]
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Sets how long a key set keeps serving past its refresh time while fetches fail
    /// (default 1 h); after that, requests get 503.
    #[must_use]
    pub fn stale_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Builds without fetching: keys load in the background, and requests answer 503 until
    /// they have (use [`JwksAuthenticator::is_ready`] as a readiness probe).
    #[must_use]
    pub fn lazy_start(mut self) -> Self {
        self.lazy = true;
        self
    }

    /// Caches up to `capacity` verified tokens, so a repeated token skips the signature check;
    /// `map_user` then runs once per token, not once per request, and every hit shares the one
    /// user value it produced.
    ///
    /// Entries are keyed by SipHash-2-4 (128-bit output) of the whole token under a random key
    /// drawn for this cache: the cache never holds a usable token, and a token that differs by
    /// any byte misses. A hit costs one pass of that digest over the token, a map lookup and
    /// two clock reads.
    #[must_use]
    pub fn token_cache(mut self, capacity: usize) -> Self {
        self.cache_capacity = Some(capacity);
        self
    }

    /// Caps how long a verified token stays cached (default 10 min; never past its `exp`).
    #[must_use]
    pub fn token_cache_max_ttl(mut self, ttl: Duration) -> Self {
        self.cache_max_ttl = ttl;
        self
    }

    /// Maps verified claims to your user type; return an [`AuthError`] to refuse the token.
    pub fn map_user<V>(
        self,
        map: impl Fn(C) -> Result<V, AuthError> + Send + Sync + 'static,
    ) -> JwksAuthenticatorBuilder<C, V> {
        JwksAuthenticatorBuilder {
            issuers: self.issuers,
            algorithms: self.algorithms,
            policy: self.policy,
            provider: self.provider,
            map_user: Box::new(map),
            connect_timeout: self.connect_timeout,
            fetch_timeout: self.fetch_timeout,
            max_response_bytes: self.max_response_bytes,
            refresh_interval: self.refresh_interval,
            refresh_bounds: self.refresh_bounds,
            cooldown: self.cooldown,
            grace: self.grace,
            lazy: self.lazy,
            cache_capacity: self.cache_capacity,
            cache_max_ttl: self.cache_max_ttl,
            _claims: PhantomData,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |setting: &'static str, reason: &str| {
            Err(ConfigError::InvalidValue {
                setting,
                reason: reason.into(),
            })
        };
        if self.issuers.is_empty() {
            return bad("issuers", "add at least one `Issuer`");
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            if issuer.issuer.is_empty() {
                return bad("issuer", "must not be empty");
            }
            if self.issuers[..i].iter().any(|o| o.issuer == issuer.issuer) {
                return bad("issuer", "configured twice");
            }
        }
        let (min, max) = self.refresh_bounds;
        if min.is_zero() || min > max {
            return bad("refresh bounds", "need 0 < min <= max");
        }
        if self.connect_timeout.is_zero() || self.fetch_timeout.is_zero() {
            return bad("fetch timeouts", "must be positive");
        }
        if self.max_response_bytes == 0 {
            return bad("max response bytes", "must be positive");
        }
        if self.cache_capacity == Some(0) {
            return bad("token cache", "capacity must be positive");
        }
        self.policy.validate()
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
        let provider = self
            .provider
            .or_else(default_provider)
            .ok_or(ConfigError::NoCryptoBackend)?;
        self.check()?;
        let runtime = Handle::try_current().map_err(|_| ConfigError::InvalidValue {
            setting: "runtime",
            reason: "build() must run inside a Tokio runtime".into(),
        })?;
        let cache = self
            .cache_capacity
            .map(|capacity| TokenCache::new(capacity, self.cache_max_ttl.as_secs_f64()))
            .transpose()
            .map_err(|_| ConfigError::NoRandomness)?;
        let config = Arc::new(SourceConfig {
            http: Http::new(
                self.connect_timeout,
                self.fetch_timeout,
                self.max_response_bytes,
            )?,
            allowed: self.algorithms.unwrap_or_else(|| ASYMMETRIC.to_vec()),
            default_ttl: self.refresh_interval,
            min_ttl: self.refresh_bounds.0,
            max_ttl: self.refresh_bounds.1,
            cooldown: self.cooldown,
            grace: self.grace,
            runtime,
        });
        let stats = Arc::new(Counters::default());
        let mut issuers = Vec::with_capacity(self.issuers.len());
        for issuer in &self.issuers {
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
                ..self.policy.clone()
            };
            issuers.push(IssuerState { source, policy });
        }
        if !self.lazy {
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
            issuer.source.spawn_background(self.lazy);
        }
        Ok(JwksAuthenticator {
            inner: Arc::new(Inner {
                issuers,
                base: self.policy,
                provider,
                cache,
                stats,
                map_user: self.map_user,
            }),
        })
    }
}

/// What a fast-path attempt could not do without a fetch.
enum Missing {
    /// The issuer has no usable key set.
    KeySet,
    /// No key of the issuer matches the token's `kid`/`alg`.
    Kid,
    /// The issuer's current set holds no usable key at all.
    AnyKey,
}

enum Failure {
    Refused(AuthError),
    Refetch(usize, Missing),
}

impl From<AuthError> for Failure {
    fn from(err: AuthError) -> Self {
        Self::Refused(err)
    }
}

impl<C: DeserializeOwned, U> Inner<C, U> {
    /// The fast path: a cache hit, or a verification with the keys already loaded.
    fn cached(&self, digest: &TokenDigest) -> Option<Result<Authenticated<U>, AuthError>> {
        let cache = self.cache.as_ref()?;
        let entry = cache.get(digest, self.base.now(), self.base.leeway)?;
        let issuer = &self.issuers[entry.source.issuer];
        if !issuer.source.holds(&entry.source.key) {
            cache.remove(digest);
            return None;
        }
        self.stats.cache_hit();
        // A cached answer must not skip the binding verifier: it may have changed its mind
        // (a revoked key thumbprint), and it is the application's gate for `cnf` tokens.
        if let Err(err) = issuer
            .policy
            .binding
            .check(entry.source.cnf.as_ref(), Some(&*issuer.source.issuer))
        {
            cache.remove(digest);
            return Some(Err(err));
        }
        Some(Ok(entry.user.clone()))
    }

    fn attempt(
        &self,
        token: &str,
        digest: Option<&TokenDigest>,
    ) -> Result<Authenticated<U>, Failure> {
        let jws = Jws::parse(token, self.base.typ.as_deref(), self.base.accept_high_s)?;
        let payload = jws.payload()?;
        let mut registered = registered(&payload)?;
        // The unverified `iss` only picks whose keys to try (RFC 8725 §3.8): a token is trusted
        // only once that issuer's own key has verified it.
        let index = registered
            .iss
            .as_deref()
            .and_then(|iss| self.issuers.iter().position(|i| *i.source.issuer == *iss))
            .ok_or_else(|| invalid("The token issuer is not accepted"))?;
        let issuer = &self.issuers[index];
        let snapshot = issuer.source.snapshot();
        let Some(set) = snapshot.as_ref().filter(|s| s.usable(Instant::now())) else {
            return Err(Failure::Refetch(index, Missing::KeySet));
        };
        if set.keys.is_empty() {
            // Like an unknown `kid`: the issuer may have published keys again since (one
            // refetch, within the cooldown).
            return Err(Failure::Refetch(index, Missing::AnyKey));
        }
        let key = match jws.verify_with(self.provider, set.keys.iter().map(|k| &k.key)) {
            Ok(key) => key,
            Err(SignatureError::NoKey) => return Err(Failure::Refetch(index, Missing::Kid)),
            Err(err) => return Err(Failure::Refused(err.into())),
        };
        let lifetime = issuer.policy.check(&registered)?;
        let user = Authenticated::new((self.map_user)(claims(&payload)?)?);
        if let (Some(cache), Some(digest)) = (&self.cache, digest)
            && let Some(key) = set.keys.iter().find(|k| std::ptr::eq(&k.key, key))
        {
            let now = issuer.policy.now();
            let source = CacheSource {
                issuer: index,
                key: Arc::clone(key),
                cnf: registered.cnf.take(),
            };
            cache.insert(*digest, user.clone(), lifetime, now, source);
        }
        Ok(user)
    }

    /// After a refetch: whatever is still missing is final.
    fn settle(
        &self,
        token: &str,
        digest: Option<&TokenDigest>,
    ) -> Result<Authenticated<U>, AuthError> {
        match self.attempt(token, digest) {
            Ok(user) => Ok(user),
            Err(Failure::Refused(err)) => Err(err),
            Err(Failure::Refetch(_, Missing::KeySet)) => Err(AuthError::unavailable()),
            Err(Failure::Refetch(_, Missing::Kid)) => {
                self.stats.unknown_kid();
                Err(SignatureError::NoKey.into())
            }
            Err(Failure::Refetch(_, Missing::AnyKey)) => {
                Err(invalid("The issuer has no usable keys"))
            }
        }
    }
}

impl<C, U> Authenticate for JwksAuthenticator<C, U>
where
    C: DeserializeOwned + 'static,
    U: Send + Sync + 'static,
{
    type User = U;
    type Future = JwksFuture<U>;

    fn authenticate(&self, token: Token<'_>) -> JwksFuture<U> {
        let inner = &*self.inner;
        let token = token.expose_secret();
        let digest = inner.cache.as_ref().map(|cache| cache.digest(token));
        if let Some(digest) = &digest {
            if let Some(result) = inner.cached(digest) {
                inner.stats.outcome(&result);
                return JwksFuture::ready(result);
            }
            inner.stats.cache_miss();
        }
        let index = match inner.attempt(token, digest.as_ref()) {
            Ok(user) => {
                let result = Ok(user);
                inner.stats.outcome(&result);
                return JwksFuture::ready(result);
            }
            Err(Failure::Refused(err)) => {
                let result = Err(err);
                inner.stats.outcome(&result);
                return JwksFuture::ready(result);
            }
            Err(Failure::Refetch(index, _)) => index,
        };
        // The slow path: wait for one (shared) refetch of this issuer's keys, then decide.
        let inner = Arc::clone(&self.inner);
        let token: Box<str> = token.into();
        JwksFuture {
            state: State::Fetching(Box::pin(async move {
                let source = Arc::clone(&inner.issuers[index].source);
                source.refetch().await;
                let result = inner.settle(&token, digest.as_ref());
                inner.stats.outcome(&result);
                result
            })),
        }
    }
}

/// The future of one [`JwksAuthenticator`] authentication: ready at once when the token is
/// cached or its key is loaded; boxed only while waiting for a key fetch.
pub struct JwksFuture<U> {
    state: State<U>,
}

type Fetching<U> = Pin<Box<dyn Future<Output = Result<Authenticated<U>, AuthError>> + Send>>;

enum State<U> {
    Ready(Option<Result<Authenticated<U>, AuthError>>),
    Fetching(Fetching<U>),
}

impl<U> JwksFuture<U> {
    fn ready(result: Result<Authenticated<U>, AuthError>) -> Self {
        Self {
            state: State::Ready(Some(result)),
        }
    }
}

// `U` is only ever moved out, never pinned, so the future is `Unpin` whatever `U` is.
impl<U> Unpin for JwksFuture<U> {}

impl<U> Future for JwksFuture<U> {
    type Output = Result<Authenticated<U>, AuthError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            // Polling after completion is a caller bug; answer 503 rather than panic.
            State::Ready(result) => Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err(AuthError::unavailable())),
            ),
            State::Fetching(future) => future.as_mut().poll(cx),
        }
    }
}

impl<U> fmt::Debug for JwksFuture<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready(_) => "ready",
            State::Fetching(_) => "fetching keys",
        };
        f.debug_struct("JwksFuture").field("state", &state).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[cfg(not(any(feature = "aws-lc", feature = "rust-crypto")))]
    async fn build_without_a_crypto_backend_is_an_error_not_a_panic() {
        let err = JwksAuthenticator::<serde_json::Value>::builder()
            .issuer(Issuer::jwks("https://issuer", "https://issuer/jwks.json"))
            .build()
            .await
            .unwrap_err();
        assert_eq!(err, ConfigError::NoCryptoBackend);
    }

    #[tokio::test]
    async fn inconsistent_settings_are_config_errors() {
        let base = || {
            JwksAuthenticator::<serde_json::Value>::builder()
                .issuer(Issuer::jwks("https://issuer", "https://issuer/jwks.json"))
                .crypto_provider(&NO_PROVIDER)
        };
        let cases = [
            JwksAuthenticator::<serde_json::Value>::builder().crypto_provider(&NO_PROVIDER),
            base().issuer(Issuer::discover("https://issuer")),
            base().refresh_bounds(Duration::from_secs(2), Duration::from_secs(1)),
            base().fetch_timeout(Duration::ZERO),
            base().token_cache(0),
            base().audience(""),
        ];
        for builder in cases {
            assert!(matches!(
                builder.build().await,
                Err(ConfigError::InvalidValue { .. })
            ));
        }
    }

    /// The checks above run before any crypto, so a provider that cannot verify is enough.
    static NO_PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory: |_, _| Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
        verifier_factory: |_, _| Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
        key_utils: jsonwebtoken::crypto::KeyUtils::new_unimplemented(),
    };
}
