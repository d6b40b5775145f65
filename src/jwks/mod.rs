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
//!   503 ([`AuthError::unavailable`](crate::AuthError::unavailable), gRPC 14), never a pass.
//! - **Issuer binding.** The unverified `iss` only picks the issuer; the token is then verified
//!   with that issuer's keys alone, so issuer B's key never vouches for a token claiming A.
//! - **Cache.** [`token_cache`](JwksAuthenticatorBuilder::token_cache) keeps verified users by
//!   a keyed digest of the token (SipHash-1-3, 128-bit, secret random key per cache), never
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

mod builder;
pub(crate) mod cache;
pub(crate) mod fetch;
mod future;
#[cfg(feature = "test-util")]
pub mod mock;
mod source;
mod stats;
mod verify;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

pub use self::builder::JwksAuthenticatorBuilder;
pub use self::future::JwksFuture;
pub use self::stats::JwksStats;
use self::verify::{Failure, Inner};
use crate::auth::{Authenticate, Token};
use crate::reject::Rejection;

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
            .field("audiences", &self.inner.rules.policy.audiences)
            .field("cache", &self.inner.cache.is_some())
            .field(
                "sender_constrained",
                &self.inner.rules.policy.binding.is_configured(),
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

    /// The issuers this authenticator trusts, in the order configured: the
    /// `authorization_servers` of a [`ProtectedResourceMetadata`](crate::auth::ProtectedResourceMetadata).
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.inner.issuers.iter().map(|i| &*i.source.issuer)
    }

    /// The counters since this authenticator was built.
    pub fn stats(&self) -> JwksStats {
        self.inner.stats.snapshot()
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
        let Ok(future) = self.decide(token, |_| Ok::<_, Infallible>(()));
        future
    }

    fn checks_dpop_binding(&self) -> bool {
        self.inner.rules.policy.binding.checks_dpop()
    }

    fn ready_outcome(
        future: JwksFuture<U>,
    ) -> Result<Result<crate::Authenticated<U>, crate::AuthError>, JwksFuture<U>> {
        future.into_ready()
    }

    fn authenticate_unchecked(
        &self,
        token: Token<'_>,
        check: fn(&str) -> Result<(), Rejection>,
    ) -> Result<JwksFuture<U>, Rejection> {
        // A hit needs no second pass over bytes that already verified once.
        self.decide(token, check)
    }
}

impl<C, U> JwksAuthenticator<C, U>
where
    C: DeserializeOwned + 'static,
    U: Send + Sync + 'static,
{
    /// The cache, then `check`, then verification with the loaded keys or after a refetch.
    fn decide<E>(
        &self,
        token: Token<'_>,
        check: impl FnOnce(&str) -> Result<(), E>,
    ) -> Result<JwksFuture<U>, E> {
        let proof = token.dpop_thumbprint();
        let token = token.expose_secret();
        let inner = &*self.inner;
        let digest = inner.cache.as_ref().map(|cache| cache.digest(token));
        if let Some(digest) = &digest
            && let Some(result) = inner.cached(digest, proof)
        {
            inner.stats.outcome(&result);
            return Ok(JwksFuture::ready(result));
        }
        check(token)?;
        if digest.is_some() {
            inner.stats.cache_miss();
        }
        let index = match inner.attempt(token, proof, digest.as_ref()) {
            Ok(user) => {
                let result = Ok(user);
                inner.stats.outcome(&result);
                return Ok(JwksFuture::ready(result));
            }
            Err(Failure::Refused(err)) => {
                let result = Err(err);
                inner.stats.outcome(&result);
                return Ok(JwksFuture::ready(result));
            }
            Err(Failure::Refetch(index, _)) => index,
        };
        // The slow path: wait for one (shared) refetch of this issuer's keys, then decide.
        let inner = Arc::clone(&self.inner);
        let token: Box<str> = token.into();
        let proof: Option<Box<str>> = proof.map(Into::into);
        Ok(JwksFuture::fetching(async move {
            let source = Arc::clone(&inner.issuers[index].source);
            source.refetch().await;
            let result = inner.settle(&token, proof.as_deref(), digest.as_ref());
            inner.stats.outcome(&result);
            result
        }))
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::crypto::CryptoProvider;

    use super::*;
    use crate::ConfigError;

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
