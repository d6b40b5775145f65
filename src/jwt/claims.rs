//! The claim rules every verified token goes through (`exp`/`nbf`/`iat` with leeway,
//! `max_lifetime`, exact `iss`/`aud`, `typ`, `cnf`, high-S ECDSA) and the `map_user` mapping:
//! one [`ClaimRules`] that both JWT builders hold and both authenticators apply, with one
//! set of setters ([`claim_rule_setters`]) so the static and JWKS authenticators cannot drift.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::crypto::CryptoProvider;
use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer};

use super::jws::{Jws, KnownHeaders};
use super::{Binding, DEFAULT_LEEWAY, default_provider};
use crate::ConfigError;
use crate::auth::AuthError;

pub(crate) type MapUser<C, U> = dyn Fn(C) -> Result<U, AuthError> + Send + Sync;
pub(crate) type Clock = dyn Fn() -> SystemTime + Send + Sync;

/// What a JWT builder configures about claims, and what its authenticator applies to them.
///
/// The crypto backend rides along because both builders set and resolve it the same way.
pub(crate) struct ClaimRules<C, U> {
    pub(crate) policy: Policy,
    pub(crate) provider: Option<&'static CryptoProvider>,
    map_user: Box<MapUser<C, U>>,
    /// Headers of tokens that verified: not checked again (see [`KnownHeaders`]).
    pub(crate) headers: KnownHeaders,
}

impl<C: DeserializeOwned + 'static> ClaimRules<C, C> {
    /// The default rules, with the claims value itself as the user.
    pub(crate) fn new() -> Self {
        Self {
            policy: Policy::default(),
            provider: None,
            map_user: Box::new(Ok),
            headers: KnownHeaders::default(),
        }
    }
}

impl<C: DeserializeOwned, U> ClaimRules<C, U> {
    /// The same rules with another user mapping.
    pub(crate) fn map_user<V>(
        self,
        map: impl Fn(C) -> Result<V, AuthError> + Send + Sync + 'static,
    ) -> ClaimRules<C, V> {
        ClaimRules {
            policy: self.policy,
            provider: self.provider,
            map_user: Box::new(map),
            headers: self.headers,
        }
    }

    /// The configured crypto backend, else the one tower-scope's features pick.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoCryptoBackend`] when neither exists.
    pub(crate) fn crypto_provider(&self) -> Result<&'static CryptoProvider, ConfigError> {
        self.provider
            .or_else(default_provider)
            .ok_or(ConfigError::NoCryptoBackend)
    }

    /// Splits `token` and checks its header against these rules (`typ`, high-S ECDSA); the
    /// signature is decoded into `signature` when it fits.
    pub(crate) fn parse<'t>(
        &self,
        token: &'t str,
        signature: &'t mut [u8],
    ) -> Result<Jws<'t>, AuthError> {
        Jws::parse(
            token,
            self.policy.typ.as_deref(),
            self.policy.accept_high_s,
            signature,
            Some(&self.headers),
        )
    }

    /// Maps a verified payload, which passed the claim checks, to the user.
    pub(crate) fn user(&self, payload: &str) -> Result<U, AuthError> {
        (self.map_user)(claims(payload)?)
    }
}

/// The claim-rule setters of a JWT builder holding `rules: ClaimRules<C, U>` and one other
/// field, `settings`; each setter is written here once for both authenticators' builders.
macro_rules! claim_rule_setters {
    ($builder:ident) => {
        /// Requires `aud` to contain this audience (call again to accept several).
        #[must_use]
        pub fn audience(mut self, audience: impl Into<String>) -> Self {
            self.rules.policy.audiences.push(audience.into());
            self
        }

        /// Accepts tokens carrying any `aud` when no audience is configured.
        ///
        /// By default a token with an `aud` claim is refused unless one of its audiences is
        /// configured (RFC 7519 §4.1.3); this opts out of that rule.
        #[must_use]
        pub fn accept_any_audience(mut self) -> Self {
            self.rules.policy.accept_any_audience = true;
            self
        }

        /// Sets the clock leeway for `exp`, `nbf` and `iat` (default 30 s).
        #[must_use]
        pub fn leeway(mut self, leeway: ::std::time::Duration) -> Self {
            self.rules.policy.leeway = leeway.as_secs_f64();
            self
        }

        /// Refuses tokens that remain valid for longer than `max` (Envoy's `max_lifetime`).
        #[must_use]
        pub fn max_lifetime(mut self, max: ::std::time::Duration) -> Self {
            self.rules.policy.max_lifetime = Some(max.as_secs_f64());
            self
        }

        /// Requires the header `typ` to be `typ` (case-insensitive, `application/` prefix optional),
        /// e.g. `at+jwt` for RFC 9068 access tokens, so ID tokens are not accepted as access tokens.
        #[must_use]
        pub fn require_typ(mut self, typ: impl Into<String>) -> Self {
            self.rules.policy.typ = Some(typ.into());
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
        /// [`AuthError`](crate::AuthError) to refuse (`AuthError::invalid_token()` for a
        /// method you do not verify). A `cnf` that is not a JSON object is refused before the
        /// verifier is asked.
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
            verifier: impl Fn(&$crate::jwt::Confirmation<'_>) -> Result<(), $crate::AuthError>
            + Send
            + Sync
            + 'static,
        ) -> Self {
            self.rules
                .policy
                .binding
                .accept_with(::std::sync::Arc::new(verifier));
            self
        }

        /// Accepts DPoP-bound tokens (`cnf.jkt`, RFC 9449 §6.1) sent with the `DPoP` scheme
        /// and a proof that [`BearerAuthLayer::dpop`](crate::BearerAuthLayer::dpop) verified,
        /// when `cnf.jkt` equals the proof key's thumbprint (RFC 9449 §7.1). The same token
        /// sent as `Bearer`, or with another key's proof, is refused with 401 `invalid_token`;
        /// an unbound token sent with a proof too. `cnf` members beside `jkt` still go to the
        /// [`accept_sender_constrained`](Self::accept_sender_constrained) verifier.
        #[cfg(feature = "dpop")]
        #[must_use]
        pub fn accept_dpop(mut self) -> Self {
            self.rules.policy.binding.accept_dpop();
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
            self.rules.policy.accept_high_s = true;
            self
        }

        /// Uses this clock instead of the system clock (for tests: no sleeping).
        #[must_use]
        pub fn clock(
            mut self,
            clock: impl Fn() -> ::std::time::SystemTime + Send + Sync + 'static,
        ) -> Self {
            self.rules.policy.clock = Some(::std::sync::Arc::new(clock));
            self
        }

        /// Uses this `jsonwebtoken` crypto provider instead of the one tower-scope's features pick.
        #[must_use]
        pub fn crypto_provider(
            mut self,
            provider: &'static ::jsonwebtoken::crypto::CryptoProvider,
        ) -> Self {
            self.rules.provider = Some(provider);
            self
        }

        /// Maps verified claims to your user type; return an [`AuthError`](crate::AuthError)
        /// to refuse the token (for example [`AuthError::forbidden`](crate::AuthError::forbidden)
        /// for a disabled account).
        pub fn map_user<V>(
            self,
            map: impl Fn(C) -> Result<V, $crate::AuthError> + Send + Sync + 'static,
        ) -> $builder<C, V> {
            $builder {
                settings: self.settings,
                rules: self.rules.map_user(map),
            }
        }
    };
}
pub(crate) use claim_rule_setters;

/// The claim checks every verified token goes through; JWKS issuers each hold a copy bound
/// to their own `iss`.
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

/// A 401 `invalid_token` with a fixed message: never token content.
pub(crate) fn invalid(message: &'static str) -> AuthError {
    AuthError::invalid_token().with_message(message)
}

/// The registered claims of a decoded payload.
pub(crate) fn registered(payload: &str) -> Result<Registered<'_>, AuthError> {
    serde_json::from_str(payload).map_err(|_| invalid("The token claims are malformed"))
}

/// The application's claims type from a decoded payload.
fn claims<C: DeserializeOwned>(payload: &str) -> Result<C, AuthError> {
    serde_json::from_str(payload).map_err(|_| invalid("The token claims are malformed"))
}

/// The validity window of a verified token, for caches that must recheck it.
// Only the JWKS and introspection caches read it; the static authenticator has no cache.
#[cfg_attr(not(feature = "jwks"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) struct Lifetime {
    pub(crate) exp: f64,
    pub(crate) nbf: Option<f64>,
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

    /// Checks the registered claims and returns the token's validity window; `proof` is the
    /// thumbprint of the request's verified DPoP proof key, if any.
    pub(crate) fn check(
        &self,
        claims: &Registered<'_>,
        proof: Option<&str>,
    ) -> Result<Lifetime, AuthError> {
        self.check_with(claims, proof, true)
    }

    /// Checks the registered claims; without `exp_required`, a missing `exp` means "no expiry
    /// stated" (an introspection answer, RFC 7662 §2.2) and the window's `exp` is infinite.
    pub(crate) fn check_with(
        &self,
        claims: &Registered<'_>,
        proof: Option<&str>,
        exp_required: bool,
    ) -> Result<Lifetime, AuthError> {
        let now = self.now();
        let exp = match claims.exp {
            Some(NumericDate(exp)) => exp,
            None if exp_required => return Err(invalid("The token has no expiry")),
            None => f64::INFINITY,
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
            .check(claims.cnf.as_ref(), claims.iss.as_deref(), proof)?;
        Ok(Lifetime {
            exp,
            nbf: claims.nbf.map(|NumericDate(nbf)| nbf),
        })
    }
}
