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

use std::borrow::Cow;
use std::fmt;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{AlgorithmFamily, DecodingKey};
use serde::de::{self, DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};

use crate::Authenticated;
use crate::ConfigError;
use crate::auth::{AuthError, Authenticate, Token};

mod confirmation;
pub(crate) mod ecdsa;
mod strict_json;

pub(crate) use self::confirmation::Binding;
pub use self::confirmation::Confirmation;

/// The default clock leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

pub(crate) type MapUser<C, U> = dyn Fn(C) -> Result<U, AuthError> + Send + Sync;
type Clock = dyn Fn() -> SystemTime + Send + Sync;

/// A verification key and the algorithms it may verify.
///
/// `Debug` never shows key material.
#[derive(Clone)]
pub struct JwtKey {
    material: Material,
    algorithms: Vec<Algorithm>,
    kid: Option<String>,
}

#[derive(Clone)]
enum Material {
    Secret(Arc<[u8]>),
    RsaPem(Arc<[u8]>),
    EcPem(Arc<[u8]>),
    EdPem(Arc<[u8]>),
}

impl JwtKey {
    /// An HMAC secret for `algorithm` (HS256, HS384 or HS512).
    pub fn hmac(algorithm: Algorithm, secret: impl AsRef<[u8]>) -> Self {
        Self::with(Material::Secret(Arc::from(secret.as_ref())), algorithm)
    }

    /// An RSA public key (PEM, PKCS#1 or SPKI) for `algorithm` (RS* or PS*).
    pub fn rsa_pem(algorithm: Algorithm, pem: impl AsRef<[u8]>) -> Self {
        Self::with(Material::RsaPem(Arc::from(pem.as_ref())), algorithm)
    }

    /// An EC public key (PEM) for `algorithm` (ES256 or ES384).
    ///
    /// Only low-S signatures verify (`s <= n/2`): a signer that does not normalize S (e.g.
    /// Go's `crypto/ecdsa`, or `jsonwebtoken` itself) produces tokens that are refused about
    /// half the time. Normalize S when signing (`s = n − s` when `s > n/2`), or accept both
    /// forms with `accept_high_s_ecdsa()` on the authenticator's builder.
    pub fn ec_pem(algorithm: Algorithm, pem: impl AsRef<[u8]>) -> Self {
        Self::with(Material::EcPem(Arc::from(pem.as_ref())), algorithm)
    }

    /// An Ed25519 public key (PEM) for EdDSA.
    pub fn ed_pem(pem: impl AsRef<[u8]>) -> Self {
        Self::with(Material::EdPem(Arc::from(pem.as_ref())), Algorithm::EdDSA)
    }

    fn with(material: Material, algorithm: Algorithm) -> Self {
        Self {
            material,
            algorithms: vec![algorithm],
            kid: None,
        }
    }

    /// Also accepts `algorithm` with this key (same family only, checked at build).
    #[must_use]
    pub fn also_allow(mut self, algorithm: Algorithm) -> Self {
        if !self.algorithms.contains(&algorithm) {
            self.algorithms.push(algorithm);
        }
        self
    }

    /// Binds the key to a key id: tokens naming another `kid` never use it.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    fn family(&self) -> AlgorithmFamily {
        match self.material {
            Material::Secret(_) => AlgorithmFamily::Hmac,
            Material::RsaPem(_) => AlgorithmFamily::Rsa,
            Material::EcPem(_) => AlgorithmFamily::Ec,
            Material::EdPem(_) => AlgorithmFamily::Ed,
        }
    }

    fn into_verify_key(self) -> Result<VerifyKey, ConfigError> {
        let family = self.family();
        if let Some(alg) = self.algorithms.iter().find(|a| a.family() != family) {
            return Err(ConfigError::InvalidKey(format!(
                "a {family:?} key cannot verify {alg:?} tokens"
            )));
        }
        let invalid =
            |what: &str| ConfigError::InvalidKey(format!("the {what} could not be parsed"));
        let key = match &self.material {
            Material::Secret(secret) => {
                for alg in &self.algorithms {
                    let min_len = hmac_min_len(*alg);
                    if secret.len() < min_len {
                        return Err(ConfigError::WeakHmacSecret {
                            algorithm: alg_name(*alg),
                            min_len,
                            actual_len: secret.len(),
                        });
                    }
                }
                DecodingKey::from_secret(secret)
            }
            Material::RsaPem(pem) => {
                DecodingKey::from_rsa_pem(pem).map_err(|_| invalid("RSA PEM key"))?
            }
            Material::EcPem(pem) => {
                DecodingKey::from_ec_pem(pem).map_err(|_| invalid("EC PEM key"))?
            }
            Material::EdPem(pem) => {
                DecodingKey::from_ed_pem(pem).map_err(|_| invalid("Ed25519 PEM key"))?
            }
        };
        Ok(VerifyKey {
            kid: self.kid.map(Into::into),
            key,
            algorithms: self.algorithms,
        })
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("family", &self.family())
            .field("algorithms", &self.algorithms)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
fn hmac_min_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

pub(crate) fn parse_alg(name: &str) -> Option<Algorithm> {
    // Exact, case-sensitive names (RFC 7518 §3.1): `none`, `None`, `HS256 ` are all refused.
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A parsed key, ready to verify; shared by static keys and JWKS key sources.
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<Box<str>>,
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
}

impl VerifyKey {
    /// Whether this key may verify a token with this `alg` and (optional) `kid`.
    pub(crate) fn matches(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        self.algorithms.contains(&alg)
            && match (kid, &self.kid) {
                (Some(wanted), Some(kid)) => wanted == &**kid,
                _ => true,
            }
    }
}

pub(crate) const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Turns one JWK into a verification key, or `None` when it must not or cannot verify.
pub(crate) fn jwk_key(jwk: &Jwk, allowed: &[Algorithm]) -> Option<VerifyKey> {
    let common = &jwk.common;
    // RFC 7517 §4.2/§4.3: an encryption key, or one whose operations exclude `verify`, never verifies.
    if matches!(
        common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    if let Some(ops) = &common.key_operations
        && !ops.iter().any(|op| matches!(op, KeyOperations::Verify))
    {
        return None;
    }
    let family_algs: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            // Moduli under 2048 bits are too weak to trust (NIST SP 800-131A).
            let n = URL_SAFE_NO_PAD.decode(rsa.n.trim_end_matches('=')).ok()?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return None;
            }
            AlgorithmFamily::Rsa.algorithms().to_vec()
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        AlgorithmParameters::OctetKey(_) => AlgorithmFamily::Hmac.algorithms().to_vec(),
        _ => return None,
    };
    let algorithms: Vec<Algorithm> = match common.key_algorithm {
        Some(key_alg) => {
            let alg = parse_alg(&key_alg.to_string())?;
            if !family_algs.contains(&alg) {
                return None;
            }
            vec![alg]
        }
        None => family_algs,
    };
    let algorithms: Vec<Algorithm> = algorithms
        .into_iter()
        .filter(|a| allowed.contains(a))
        .collect();
    if algorithms.is_empty() {
        return None;
    }
    if let AlgorithmParameters::OctetKey(oct) = &jwk.algorithm {
        let secret = URL_SAFE_NO_PAD
            .decode(oct.value.trim_end_matches('='))
            .ok()?;
        if algorithms.iter().any(|a| secret.len() < hmac_min_len(*a)) {
            return None;
        }
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey {
        kid: common.key_id.as_deref().map(Into::into),
        key,
        algorithms,
    })
}

/// Verifies JWTs and maps their claims `C` to a user `U`; see the [module docs](self).
///
/// Build one with [`JwtAuthenticator::builder`]. Cloning is cheap (one `Arc`).
pub struct JwtAuthenticator<C, U = C> {
    inner: Arc<Inner<C, U>>,
}

struct Inner<C, U> {
    keys: Vec<VerifyKey>,
    policy: Policy,
    provider: &'static CryptoProvider,
    map_user: Box<MapUser<C, U>>,
}

/// The claim checks every verified token goes through; shared with JWKS authenticators.
#[derive(Clone)]
pub(crate) struct Policy {
    pub(crate) issuers: Vec<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) accept_any_audience: bool,
    pub(crate) leeway: f64,
    pub(crate) max_lifetime: Option<f64>,
    pub(crate) typ: Option<String>,
    pub(crate) clock: Option<Arc<Clock>>,
    pub(crate) binding: Binding,
    pub(crate) accept_high_s: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            accept_any_audience: false,
            leeway: DEFAULT_LEEWAY.as_secs_f64(),
            max_lifetime: None,
            typ: None,
            clock: None,
            binding: Binding::default(),
            accept_high_s: false,
        }
    }
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
            .field("issuers", &self.inner.policy.issuers)
            .field("audiences", &self.inner.policy.audiences)
            .field(
                "sender_constrained",
                &self.inner.policy.binding.is_configured(),
            )
            .finish_non_exhaustive()
    }
}

impl<C: DeserializeOwned + 'static> JwtAuthenticator<C, C> {
    /// Starts a builder whose user is the claims value itself (see
    /// [`map_user`](JwtAuthenticatorBuilder::map_user)).
    pub fn builder() -> JwtAuthenticatorBuilder<C, C> {
        JwtAuthenticatorBuilder {
            keys: Vec::new(),
            jwks: Vec::new(),
            algorithms: None,
            policy: Policy::default(),
            provider: None,
            map_user: Box::new(Ok),
            _claims: PhantomData,
        }
    }
}

/// The claim-rule and backend setters shared by every JWT builder (fields `policy` and
/// `provider`), so the static and JWKS authenticators cannot drift apart.
macro_rules! claim_rule_setters {
    () => {
        /// Requires `aud` to contain this audience (call again to accept several).
        #[must_use]
        pub fn audience(mut self, audience: impl Into<String>) -> Self {
            self.policy.audiences.push(audience.into());
            self
        }

        /// Accepts tokens carrying any `aud` when no audience is configured.
        ///
        /// By default a token with an `aud` claim is refused unless one of its audiences is
        /// configured (RFC 7519 §4.1.3); this opts out of that rule.
        #[must_use]
        pub fn accept_any_audience(mut self) -> Self {
            self.policy.accept_any_audience = true;
            self
        }

        /// Sets the clock leeway for `exp`, `nbf` and `iat` (default 30 s).
        #[must_use]
        pub fn leeway(mut self, leeway: Duration) -> Self {
            self.policy.leeway = leeway.as_secs_f64();
            self
        }

        /// Refuses tokens that remain valid for longer than `max` (Envoy's `max_lifetime`).
        #[must_use]
        pub fn max_lifetime(mut self, max: Duration) -> Self {
            self.policy.max_lifetime = Some(max.as_secs_f64());
            self
        }

        /// Requires the header `typ` to be `typ` (case-insensitive, `application/` prefix optional),
        /// e.g. `at+jwt` for RFC 9068 access tokens, so ID tokens are not accepted as access tokens.
        #[must_use]
        pub fn require_typ(mut self, typ: impl Into<String>) -> Self {
            self.policy.typ = Some(typ.into());
            self
        }

        /// Accepts sender-constrained tokens (a `cnf` claim, RFC 7800 §3.1) when `verifier`
        /// approves their [`Confirmation`](crate::jwt::Confirmation); without this, every
        /// token carrying `cnf` is refused with 401 `invalid_token`, because accepting it as a
        /// plain bearer token defeats the binding (RFC 9449 §6, RFC 8705 §3).
        ///
        /// The verifier runs after the signature and every claim rule passed, on every request
        /// (also on a token-cache hit), and sees no request: tower-scope does **not** verify
        /// DPoP proofs (RFC 9449 §4.3) or TLS client certificates (RFC 8705 §3) yet. Approving
        /// a binding here means your service checks the proof of possession itself before it
        /// trusts the request — for example in a layer behind `BearerAuthLayer` that compares
        /// the DPoP proof's key thumbprint with `cnf.jkt` from your claims type. Return an
        /// [`AuthError`] to refuse (`AuthError::invalid_token()` for a method you do not
        /// verify). A `cnf` that is not a JSON object is refused before the verifier is asked.
        ///
        /// ```
        /// # use tower_scope::jwt::{Algorithm, Confirmation, JwtAuthenticator, JwtKey};
        /// # use tower_scope::AuthError;
        /// let auth = JwtAuthenticator::<serde_json::Value>::builder()
        ///     .key(JwtKey::hmac(Algorithm::HS256, b"a 32-byte or longer random secret!"))
        ///     // Only DPoP-bound tokens; the DPoP proof is checked by a later layer.
        ///     .accept_sender_constrained(|cnf: &Confirmation<'_>| match cnf.jkt() {
        ///         Some(_) if cnf.methods().count() == 1 => Ok(()),
        ///         _ => Err(AuthError::invalid_token()),
        ///     })
        ///     .build()
        ///     .unwrap();
        /// # let _ = auth;
        /// ```
        #[must_use]
        pub fn accept_sender_constrained(
            mut self,
            verifier: impl Fn(&$crate::jwt::Confirmation<'_>) -> Result<(), AuthError>
            + Send
            + Sync
            + 'static,
        ) -> Self {
            self.policy.binding = $crate::jwt::Binding::accept_with(Arc::new(verifier));
            self
        }

        /// Accepts ES256/ES384 signatures whose `S` is in the upper half of the curve order.
        ///
        /// By default only low-S signatures verify: `(r, n − s)` is a second valid signature
        /// for the same claims, so a deny list, replay cache or log keyed on the token bytes
        /// would see two tokens. But signers that do not normalize `S` (Go's `crypto/ecdsa`,
        /// Java and so Keycloak, `jsonwebtoken` itself) produce a high-S signature in about
        /// half their tokens: if your issuer is one of them, about half its ES256/ES384
        /// tokens are refused until you call this.
        #[must_use]
        pub fn accept_high_s_ecdsa(mut self) -> Self {
            self.policy.accept_high_s = true;
            self
        }

        /// Uses this clock instead of the system clock (for tests: no sleeping).
        #[must_use]
        pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
            self.policy.clock = Some(Arc::new(clock));
            self
        }

        /// Uses this `jsonwebtoken` crypto provider instead of the one tower-scope's features pick.
        #[must_use]
        pub fn crypto_provider(mut self, provider: &'static CryptoProvider) -> Self {
            self.provider = Some(provider);
            self
        }
    };
}
#[cfg_attr(not(feature = "jwks"), allow(unused_imports))]
pub(crate) use claim_rule_setters;

/// Builds a [`JwtAuthenticator`]; every setting is checked by [`build`](Self::build).
pub struct JwtAuthenticatorBuilder<C, U> {
    keys: Vec<JwtKey>,
    jwks: Vec<String>,
    algorithms: Option<Vec<Algorithm>>,
    policy: Policy,
    provider: Option<&'static CryptoProvider>,
    map_user: Box<MapUser<C, U>>,
    _claims: PhantomData<fn(C)>,
}

impl<C, U> fmt::Debug for JwtAuthenticatorBuilder<C, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticatorBuilder")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl<C: DeserializeOwned, U> JwtAuthenticatorBuilder<C, U> {
    /// Adds a verification key.
    #[must_use]
    pub fn key(mut self, key: JwtKey) -> Self {
        self.keys.push(key);
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
        self.jwks.push(json.into());
        self
    }

    /// Restricts JWK-set keys to these algorithms (default: every asymmetric algorithm).
    #[must_use]
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Requires `iss` to equal this issuer exactly (call again to accept several).
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.policy.issuers.push(issuer.into());
        self
    }

    claim_rule_setters!();

    /// Maps verified claims to your user type; return an [`AuthError`] to refuse the token
    /// (for example [`AuthError::forbidden`] for a disabled account).
    pub fn map_user<V>(
        self,
        map: impl Fn(C) -> Result<V, AuthError> + Send + Sync + 'static,
    ) -> JwtAuthenticatorBuilder<C, V> {
        JwtAuthenticatorBuilder {
            keys: self.keys,
            jwks: self.jwks,
            algorithms: self.algorithms,
            policy: self.policy,
            provider: self.provider,
            map_user: Box::new(map),
            _claims: PhantomData,
        }
    }

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
        let provider = self
            .provider
            .or_else(default_provider)
            .ok_or(ConfigError::NoCryptoBackend)?;
        self.policy.validate()?;
        let mut keys = Vec::new();
        for key in self.keys {
            keys.push(key.into_verify_key()?);
        }
        let allowed = self.algorithms.unwrap_or_else(|| ASYMMETRIC.to_vec());
        for json in &self.jwks {
            let set: JwkSetDocument =
                serde_json::from_str(json).map_err(|_| ConfigError::InvalidValue {
                    setting: "JWK set",
                    reason: "not a JSON object with a `keys` array".into(),
                })?;
            keys.extend(set.keys.iter().filter_map(|v| jwk_value_key(v, &allowed)));
        }
        if keys.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        Ok(JwtAuthenticator {
            inner: Arc::new(Inner {
                keys,
                policy: self.policy,
                provider,
                map_user: self.map_user,
            }),
        })
    }
}

/// A JWK set document; each key stays raw JSON so one malformed key cannot fail the set.
#[derive(Deserialize)]
pub(crate) struct JwkSetDocument {
    pub(crate) keys: Vec<serde_json::Value>,
}

/// One JWK as raw JSON to a verification key, or `None` when malformed or not for verifying.
pub(crate) fn jwk_value_key(value: &serde_json::Value, allowed: &[Algorithm]) -> Option<VerifyKey> {
    let jwk = Jwk::deserialize(value).ok()?;
    jwk_key(&jwk, allowed)
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

#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    typ: Option<Cow<'a, str>>,
    /// RFC 7515 §4.1.11: present means refused, whatever the value; `"crit": null` included.
    #[serde(default, deserialize_with = "present_ignored")]
    crit: Option<IgnoredAny>,
    /// RFC 7516 §4.1.2: `enc` marks a JWE, `"enc": null` too.
    #[serde(default, deserialize_with = "present_ignored")]
    enc: Option<IgnoredAny>,
}

/// Deserializes a member that is present, whatever its value, so `null` is not "absent".
fn present_ignored<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IgnoredAny>, D::Error> {
    IgnoredAny::deserialize(d).map(Some)
}

/// A NumericDate (RFC 7519 §2): a JSON number, integer or not. Strings are refused.
#[derive(Clone, Copy)]
struct NumericDate(f64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() {
                    Ok(NumericDate(v))
                } else {
                    Err(E::custom("not finite"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
struct Audience<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Audience<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> de::Visitor<'de> for V<'a> {
            type Value = Audience<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Audience<'a>, E> {
                Ok(Audience(vec![Cow::Borrowed(v)]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience<'a>, E> {
                Ok(Audience(vec![Cow::Owned(v.to_owned())]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Audience<'a>, A::Error> {
                let mut all = Vec::new();
                while let Some(item) = seq.next_element::<Cow<'de, str>>()? {
                    all.push(item);
                }
                Ok(Audience(all))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// The registered claims we validate. Serde refuses duplicate keys, so two `exp` fail here.
#[derive(Deserialize)]
pub(crate) struct Registered<'a> {
    #[serde(default)]
    exp: Option<NumericDate>,
    #[serde(default)]
    nbf: Option<NumericDate>,
    #[serde(default)]
    iat: Option<NumericDate>,
    #[serde(default, borrow)]
    pub(crate) iss: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    aud: Option<Audience<'a>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    sub: Option<Cow<'a, str>>,
    /// RFC 7800 §3.1. `Some(Value::Null)` for `"cnf": null`: present, and not an object.
    #[serde(default, deserialize_with = "present")]
    pub(crate) cnf: Option<serde_json::Value>,
}

/// Deserializes a member that is present, whatever its value, so `null` is not "absent".
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

pub(crate) fn invalid(message: &'static str) -> AuthError {
    AuthError::invalid_token().with_message(message)
}

fn b64(part: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| invalid("The token is malformed"))
}

fn typ_matches(given: &str, wanted: &str) -> bool {
    // RFC 7515 §4.1.9: `application/` may be omitted; media types compare case-insensitively.
    // Byte-wise on purpose: the header is attacker input, and may not be ASCII.
    fn strip(s: &str) -> &[u8] {
        let b = s.as_bytes();
        match b.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case(b"application/") => &b[12..],
            _ => b,
        }
    }
    strip(given).eq_ignore_ascii_case(strip(wanted))
}

/// A compact JWS split and checked up to (not including) the signature: the shared first
/// step of every verification.
pub(crate) struct Jws<'a> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Box<str>>,
    message: &'a [u8],
    signature: Vec<u8>,
    payload_b64: &'a str,
}

/// Why no key verified a token: none was eligible (maybe a rotation), or the signature is bad.
pub(crate) enum SignatureError {
    NoKey,
    Invalid,
}

impl From<SignatureError> for AuthError {
    fn from(err: SignatureError) -> Self {
        match err {
            SignatureError::NoKey => invalid("No key matches the token"),
            SignatureError::Invalid => invalid("The token signature is invalid"),
        }
    }
}

impl<'a> Jws<'a> {
    /// Splits the token and checks its header (`alg`, `crit`, JWE, `typ` when `typ` is set).
    pub(crate) fn parse(
        token: &'a str,
        typ: Option<&str>,
        accept_high_s: bool,
    ) -> Result<Self, AuthError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("The token is malformed"));
        };
        match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => {}
            // RFC 7516 §7.1: a compact JWE has exactly five parts; four or six are just broken.
            (Some(_), Some(_), None) => {
                return Err(invalid("Encrypted tokens (JWE) are not accepted"));
            }
            _ => return Err(invalid("The token is malformed")),
        }

        let header_json = b64(header_b64)?;
        let malformed = || invalid("The token header is malformed");
        if !strict_json::is_strict_object(&header_json) {
            return Err(malformed());
        }
        let header: JoseHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| malformed())?;
        if header.enc.is_some() {
            return Err(invalid("Encrypted tokens (JWE) are not accepted"));
        }
        let alg =
            parse_alg(&header.alg).ok_or_else(|| invalid("The token algorithm is not allowed"))?;
        if header.crit.is_some() {
            return Err(invalid(
                "The token has critical header parameters this server does not understand",
            ));
        }
        if let Some(wanted) = typ
            && !header
                .typ
                .as_deref()
                .is_some_and(|t| typ_matches(t, wanted))
        {
            return Err(invalid("The token type is not accepted"));
        }

        let signature = b64(signature_b64)?;
        // Before any key is looked up: a high-S twin is never accepted, and never worth a
        // JWKS refetch either.
        if !accept_high_s && !ecdsa::is_canonical(alg, &signature) {
            return Err(SignatureError::Invalid.into());
        }
        let message = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        Ok(Self {
            alg,
            kid: header.kid.map(|kid| kid.into()),
            message,
            signature,
            payload_b64,
        })
    }

    /// Verifies the signature with the first eligible key that accepts it, and returns that key.
    pub(crate) fn verify_with<'k>(
        &self,
        provider: &CryptoProvider,
        keys: impl IntoIterator<Item = &'k VerifyKey>,
    ) -> Result<&'k VerifyKey, SignatureError> {
        let mut any_key = false;
        for key in keys {
            if !key.matches(self.alg, self.kid.as_deref()) {
                continue;
            }
            any_key = true;
            if (provider.verifier_factory)(&self.alg, &key.key)
                .is_ok_and(|verifier| verifier.verify(self.message, &self.signature).is_ok())
            {
                return Ok(key);
            }
        }
        Err(if any_key {
            SignatureError::Invalid
        } else {
            SignatureError::NoKey
        })
    }

    /// The decoded (not yet trusted) payload: a JSON object in valid UTF-8, or an error.
    pub(crate) fn payload(&self) -> Result<Vec<u8>, AuthError> {
        let payload = b64(self.payload_b64)?;
        if !strict_json::is_strict_object(&payload) {
            return Err(invalid("The token claims are malformed"));
        }
        Ok(payload)
    }
}

/// The registered claims of a decoded payload.
pub(crate) fn registered(payload: &[u8]) -> Result<Registered<'_>, AuthError> {
    serde_json::from_slice(payload).map_err(|_| invalid("The token claims are malformed"))
}

/// The application's claims type from a decoded payload.
pub(crate) fn claims<C: DeserializeOwned>(payload: &[u8]) -> Result<C, AuthError> {
    serde_json::from_slice(payload).map_err(|_| invalid("The token claims are malformed"))
}

/// The validity window of a verified token, for caches that must recheck it.
// Only the JWKS token cache reads it; the static authenticator has no cache.
#[cfg_attr(not(feature = "jwks"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) struct Lifetime {
    pub(crate) exp: f64,
    pub(crate) nbf: Option<f64>,
}

impl<C: DeserializeOwned, U> JwtAuthenticator<C, U> {
    /// Verifies a token and maps its claims to the user.
    ///
    /// # Errors
    ///
    /// An [`AuthError`] with a fixed, safe message saying what is wrong; never token content.
    pub fn verify(&self, token: &str) -> Result<U, AuthError> {
        let inner = &*self.inner;
        let jws = Jws::parse(
            token,
            inner.policy.typ.as_deref(),
            inner.policy.accept_high_s,
        )?;
        jws.verify_with(inner.provider, &inner.keys)?;
        let payload = jws.payload()?;
        inner.policy.check(&registered(&payload)?)?;
        (inner.map_user)(claims(&payload)?)
    }
}

impl Policy {
    /// Rejects empty issuers or audiences, which would match nothing or everything.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self
            .issuers
            .iter()
            .chain(&self.audiences)
            .any(String::is_empty)
        {
            return Err(ConfigError::InvalidValue {
                setting: "issuer/audience",
                reason: "must not be empty".into(),
            });
        }
        Ok(())
    }

    /// Seconds since the Unix epoch on the configured clock.
    pub(crate) fn now(&self) -> f64 {
        let now = self
            .clock
            .as_ref()
            .map_or_else(SystemTime::now, |clock| clock());
        now.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    /// Checks the registered claims and returns the token's validity window.
    pub(crate) fn check(&self, claims: &Registered<'_>) -> Result<Lifetime, AuthError> {
        let now = self.now();
        let Some(NumericDate(exp)) = claims.exp else {
            return Err(invalid("The token has no expiry"));
        };
        if now >= exp + self.leeway {
            return Err(invalid("The token has expired"));
        }
        if let Some(max) = self.max_lifetime
            && exp - now > max + self.leeway
        {
            return Err(invalid("The token lifetime is too long"));
        }
        if let Some(NumericDate(nbf)) = claims.nbf
            && nbf > now + self.leeway
        {
            return Err(invalid("The token is not valid yet"));
        }
        if let Some(NumericDate(iat)) = claims.iat
            && iat > now + self.leeway
        {
            return Err(invalid("The token was issued in the future"));
        }
        if !self.issuers.is_empty()
            && !claims
                .iss
                .as_deref()
                .is_some_and(|iss| self.issuers.iter().any(|i| i == iss))
        {
            return Err(invalid("The token issuer is not accepted"));
        }
        let audience_ok = match &claims.aud {
            // A configured audience is required, and one match is enough.
            _ if !self.audiences.is_empty() => claims.aud.as_ref().is_some_and(|Audience(auds)| {
                auds.iter().any(|a| self.audiences.iter().any(|c| c == a))
            }),
            // RFC 7519 §4.1.3: a token meant for someone must name us, unless opted out.
            Some(Audience(auds)) => auds.is_empty() || self.accept_any_audience,
            None => true,
        };
        if !audience_ok {
            return Err(invalid("The token audience is not accepted"));
        }
        // Last: a binding is only worth deciding for an otherwise valid token.
        self.binding
            .check(claims.cnf.as_ref(), claims.iss.as_deref())?;
        Ok(Lifetime {
            exp,
            nbf: claims.nbf.map(|NumericDate(nbf)| nbf),
        })
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
        ready(self.verify(token.expose_secret()).map(Authenticated::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Claims {
        sub: String,
    }

    const SECRET: &[u8] = b"unit-test-secret-0123456789abcdef";

    #[test]
    #[cfg(not(any(feature = "aws-lc", feature = "rust-crypto")))]
    fn build_without_a_crypto_backend_is_an_error_not_a_panic() {
        let err = JwtAuthenticator::<Claims>::builder()
            .key(JwtKey::hmac(Algorithm::HS256, SECRET))
            .build()
            .unwrap_err();
        assert_eq!(err, ConfigError::NoCryptoBackend);
    }

    #[test]
    #[cfg(all(feature = "aws-lc", feature = "rust-crypto"))]
    fn both_backends_pick_aws_lc_deterministically() {
        assert!(std::ptr::eq(
            default_provider().unwrap(),
            &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
        ));
    }

    /// Signs with a provider directly, leaving jsonwebtoken's process default uninstalled.
    #[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
    fn sign_hs256(claims: &str) -> String {
        let provider = default_provider().unwrap();
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
        let signer = (provider.signer_factory)(&Algorithm::HS256, &key).unwrap();
        let signature =
            jsonwebtoken::signature::Signer::try_sign(&*signer, message.as_bytes()).unwrap();
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    #[test]
    #[cfg(any(feature = "aws-lc", feature = "rust-crypto"))]
    fn verifies_without_jsonwebtoken_process_default_provider() {
        // `jsonwebtoken::decode` would panic here when both backend features are on.
        let auth = JwtAuthenticator::<Claims>::builder()
            .key(JwtKey::hmac(Algorithm::HS256, SECRET))
            .build()
            .unwrap();
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let claims = auth
            .verify(&sign_hs256(&format!(r#"{{"sub":"alice","exp":{exp}}}"#)))
            .unwrap();
        assert_eq!(claims.sub, "alice");
    }

    #[test]
    fn typ_comparison_ignores_case_and_application_prefix() {
        // A multi-byte character where `application/` would end must not panic.
        assert!(!typ_matches("aaaaaaaaaaa\u{e9}xyz", "at+jwt"));
        assert!(!typ_matches(
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "at+jwt"
        ));
        assert!(typ_matches("application/AT+JWT", "at+jwt"));
        assert!(typ_matches("at+jwt", "application/at+jwt"));
        assert!(!typ_matches("jwt", "at+jwt"));
    }
}
