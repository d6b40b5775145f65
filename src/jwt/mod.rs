//! JSON Web Token verification on `jsonwebtoken` 11, with the footguns removed.
//!
//! - Algorithms come from the configured keys, never from the token header; `alg: none` and
//!   unknown algorithms are refused, and an HMAC key never verifies an RSA-declared token.
//! - `exp` is required; `nbf` and `iat` are checked when present; leeway defaults to 30 s
//!   (at most 60 s is recommended); `exp`/`nbf`/`iat` of the wrong JSON type are refused
//!   (CVE-2026-25537).
//! - A configured issuer or audience is a *required* claim, compared exactly.
//! - `crit` header parameters are refused, `"crit": null` included (RFC 7515 §4.1.11: we
//!   implement no extension); `jku`, `x5u` and embedded `jwk` headers are ignored and never
//!   fetched.
//! - The header and the claims set must be JSON objects in valid UTF-8 (RFC 7515 §4, RFC 7519
//!   §7.2): an array (which serde would read by position), raw invalid UTF-8 or a lone
//!   surrogate escape (`\ud800`) is refused, also inside members nothing reads.
//! - Only the low-S form of an ES256/ES384 signature verifies, so a token has one spelling for
//!   deny lists and replay caches keyed on its bytes; an issuer must normalize S (see
//!   [`JwtKey::ec_pem`]), or the application opts out with
//!   [`accept_high_s_ecdsa`](JwtAuthenticatorBuilder::accept_high_s_ecdsa).
//! - Five segments is a JWE and refused as such; any count but three or five is malformed.
//! - Optional explicit typing (`typ: at+jwt`, RFC 9068).
//! - Sender-constrained tokens (a `cnf` claim: DPoP `jkt`, mTLS `x5t#S256`, or any other) are
//!   refused as bearer tokens (RFC 9449 §6, RFC 8705 §3) unless the application opts in with
//!   [`accept_sender_constrained`](JwtAuthenticatorBuilder::accept_sender_constrained); see
//!   [`Confirmation`] for the exact policy.
//! - HMAC secrets shorter than the hash output are refused by [`build`](JwtAuthenticatorBuilder::build).
//! - The crypto backend is chosen by tower-scope's features (`aws-lc` by default, or
//!   `rust-crypto`; AWS-LC wins deterministically when both are on), per authenticator, without
//!   touching `jsonwebtoken`'s process-wide default. With neither, `build()` returns
//!   [`ConfigError::NoCryptoBackend`] instead of panicking at the first request.
//!
//! ```
//! use serde::Deserialize;
//! use tower_scope::jwt::{JwtAuthenticator, JwtKey, Algorithm};
//!
//! #[derive(Deserialize)]
//! struct Claims { sub: String }
//!
//! let auth = JwtAuthenticator::<Claims>::builder()
//!     .key(JwtKey::hmac(Algorithm::HS256, b"a 32-byte or longer random secret!"))
//!     .issuer("https://auth.example.com")
//!     .audience("memory-api")
//!     .map_user(|claims: Claims| Ok(claims.sub))
//!     .build()
//!     .unwrap();
//! # let _ = auth;
//! ```

use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::time::Duration;

pub use jsonwebtoken::Algorithm;
use jsonwebtoken::crypto::CryptoProvider;
use serde::de::DeserializeOwned;

use crate::Authenticated;
use crate::ConfigError;
use crate::auth::{AuthError, Authenticate, Token};
use crate::reject::Rejection;

mod claims;
mod confirmation;
pub(crate) mod ecdsa;
mod jws;
mod keys;
pub(crate) mod strict_json;
#[cfg(test)]
mod tests;

pub(crate) use self::claims::{ClaimRules, claim_rule_setters, invalid, registered};
pub(crate) use self::confirmation::Binding;
pub use self::confirmation::Confirmation;
pub(crate) use self::jws::Buffers;
pub use self::keys::JwtKey;
use self::keys::jwk_set_keys;
pub(crate) use self::keys::{ASYMMETRIC, VerifyKey};
// What only the JWKS authenticator builds on: per-issuer policies, key sets fetched as JSON,
// refetch decisions and the token cache's validity window.
#[cfg(feature = "jwks")]
pub(crate) use self::{
    claims::{Lifetime, Policy},
    jws::SignatureError,
    keys::JwkSetDocument,
};
// What DPoP proof verification builds on: the JWS steps, the proof's embedded key.
#[cfg(feature = "dpop")]
pub(crate) use self::jws::Jws;
#[cfg(any(feature = "jwks", feature = "dpop"))]
pub(crate) use self::keys::jwk_value_key;

// The introspection authenticator checks an answer's registered claims with the same rules.
#[cfg(feature = "introspection")]
pub(crate) use self::claims::Registered;

/// The default clock leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Verifies JWTs and maps their claims `C` to a user `U`; see the [module docs](self).
///
/// Build one with [`JwtAuthenticator::builder`]. Cloning is cheap (one `Arc`).
pub struct JwtAuthenticator<C, U = C> {
    inner: Arc<Inner<C, U>>,
}

struct Inner<C, U> {
    keys: Vec<VerifyKey>,
    rules: ClaimRules<C, U>,
    provider: &'static CryptoProvider,
}

impl<C, U> Clone for JwtAuthenticator<C, U> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, U> fmt::Debug for JwtAuthenticator<C, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<_> = self
            .inner
            .keys
            .iter()
            .map(|k| (k.kid.as_deref(), &k.algorithms))
            .collect();
        f.debug_struct("JwtAuthenticator")
            .field("keys", &kids)
            .field("issuers", &self.inner.rules.policy.issuers)
            .field("audiences", &self.inner.rules.policy.audiences)
            .field(
                "sender_constrained",
                &self.inner.rules.policy.binding.is_configured(),
            )
            .finish_non_exhaustive()
    }
}

impl<C, U> JwtAuthenticator<C, U> {
    /// The issuers this authenticator requires (`iss`), in the order configured: the
    /// `authorization_servers` of a [`ProtectedResourceMetadata`](crate::auth::ProtectedResourceMetadata).
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.inner.rules.policy.issuers.iter().map(String::as_str)
    }
}

impl<C: DeserializeOwned + 'static> JwtAuthenticator<C, C> {
    /// Starts a builder whose user is the claims value itself (see
    /// [`map_user`](JwtAuthenticatorBuilder::map_user)).
    pub fn builder() -> JwtAuthenticatorBuilder<C, C> {
        JwtAuthenticatorBuilder {
            settings: Settings::default(),
            rules: ClaimRules::new(),
        }
    }
}

/// Builds a [`JwtAuthenticator`]; every setting is checked by [`build`](Self::build).
pub struct JwtAuthenticatorBuilder<C, U> {
    settings: Settings,
    rules: ClaimRules<C, U>,
}

/// Where the static authenticator's keys come from (the claim rules are in `rules`).
#[derive(Default)]
struct Settings {
    keys: Vec<JwtKey>,
    jwk_sets: Vec<String>,
    algorithms: Option<Vec<Algorithm>>,
}

impl<C, U> fmt::Debug for JwtAuthenticatorBuilder<C, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticatorBuilder")
            .field("keys", &self.settings.keys)
            .finish_non_exhaustive()
    }
}

impl<C: DeserializeOwned, U> JwtAuthenticatorBuilder<C, U> {
    /// Adds a verification key.
    #[must_use]
    pub fn key(mut self, key: JwtKey) -> Self {
        self.settings.keys.push(key);
        self
    }

    /// Adds the keys of a JWK set document (`{"keys": [...]}`).
    ///
    /// Keys with `use: enc`, `key_ops` without `verify`, an unsupported type, an RSA modulus
    /// under 2048 bits, or an algorithm outside [`algorithms`](Self::algorithms) are skipped;
    /// one malformed key does not discard the others. Symmetric (`oct`) keys are used only
    /// when `algorithms` explicitly allows HS*.
    #[must_use]
    pub fn jwk_set_json(mut self, json: impl Into<String>) -> Self {
        self.settings.jwk_sets.push(json.into());
        self
    }

    /// Restricts JWK-set keys to these algorithms (default: every asymmetric algorithm).
    #[must_use]
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.settings.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Requires `iss` to equal this issuer exactly (call again to accept several).
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.rules.policy.issuers.push(issuer.into());
        self
    }

    claim_rule_setters!(JwtAuthenticatorBuilder);

    /// Checks the configuration and builds the authenticator.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::NoCryptoBackend`] without a crypto backend;
    /// - [`ConfigError::WeakHmacSecret`] for an HMAC secret shorter than the hash output;
    /// - [`ConfigError::InvalidKey`] for an unparsable key or an algorithm outside its family;
    /// - [`ConfigError::InvalidValue`] for an unparsable JWK set or an empty issuer/audience;
    /// - [`ConfigError::NoKeys`] when no usable key remains.
    pub fn build(self) -> Result<JwtAuthenticator<C, U>, ConfigError> {
        let provider = self.rules.crypto_provider()?;
        self.rules.policy.validate()?;
        let Settings {
            keys: configured,
            jwk_sets,
            algorithms,
        } = self.settings;
        let mut keys = Vec::new();
        for key in configured {
            keys.push(key.into_verify_key()?);
        }
        let allowed = algorithms.unwrap_or_else(|| ASYMMETRIC.to_vec());
        for json in &jwk_sets {
            keys.extend(jwk_set_keys(json, &allowed)?);
        }
        if keys.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        Ok(JwtAuthenticator {
            inner: Arc::new(Inner {
                keys,
                rules: self.rules,
                provider,
            }),
        })
    }
}

/// The backend picked by features: AWS-LC when enabled (also when both are), else RustCrypto.
pub(crate) fn default_provider() -> Option<&'static CryptoProvider> {
    #[cfg(feature = "aws-lc")]
    {
        Some(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER)
    }
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
    {
        Some(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER)
    }
    #[cfg(not(any(feature = "aws-lc", feature = "rust-crypto")))]
    {
        None
    }
}

impl<C: DeserializeOwned, U> JwtAuthenticator<C, U> {
    /// Verifies a token and maps its claims to the user.
    ///
    /// # Errors
    ///
    /// An [`AuthError`] with a fixed, safe message saying what is wrong; never token content.
    pub fn verify(&self, token: &str) -> Result<U, AuthError> {
        self.verify_bound(token, None)
    }

    fn verify_bound(&self, token: &str, proof: Option<&str>) -> Result<U, AuthError> {
        let inner = &*self.inner;
        let mut buffers = Buffers::new();
        let jws = inner.rules.parse(token, &mut buffers.signature)?;
        jws.verify_with(inner.provider, &inner.keys)?;
        let payload = jws.payload(&mut buffers.payload)?;
        inner.rules.policy.check(&registered(&payload)?, proof)?;
        let user = inner.rules.user(&payload)?;
        jws.verified(&inner.rules.headers);
        Ok(user)
    }
}

impl<C, U> Authenticate for JwtAuthenticator<C, U>
where
    C: DeserializeOwned + 'static,
    U: Send + Sync + 'static,
{
    type User = U;
    type Future = Ready<Result<Authenticated<U>, AuthError>>;

    fn authenticate(&self, token: Token<'_>) -> Self::Future {
        ready(
            self.verify_bound(token.expose_secret(), token.dpop_thumbprint())
                .map(Authenticated::new),
        )
    }

    fn ready_outcome(
        future: Self::Future,
    ) -> Result<Result<Authenticated<U>, AuthError>, Self::Future> {
        Ok(future.into_inner())
    }

    fn checks_dpop_binding(&self) -> bool {
        self.inner.rules.policy.binding.checks_dpop()
    }

    fn authenticate_unchecked(
        &self,
        token: Token<'_>,
        check: fn(&str) -> Result<(), Rejection>,
    ) -> Result<Self::Future, Rejection> {
        // A token that verifies is a compact JWS: base64url without padding and two dots,
        // every byte inside the `b64token` grammar. So the check only has to run when
        // verification fails, and then its refusal (400) comes first, as without deferral.
        let outcome = self.verify_bound(token.expose_secret(), token.dpop_thumbprint());
        if outcome.is_err() {
            check(token.expose_secret())?;
        }
        Ok(ready(outcome.map(Authenticated::new)))
    }
}
