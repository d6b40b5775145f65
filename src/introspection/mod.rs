//! Opaque access tokens checked by OAuth 2.0 Token Introspection (RFC 7662).
//!
//! [`IntrospectionAuthenticator`] implements [`Authenticate`]: it POSTs the token to the
//! authorization server's introspection endpoint and turns the answer into your claims type.
//!
//! - **Endpoint.** Configured ([`Endpoint::url`]) or discovered at `build()` ([`Endpoint::discover`]:
//!   RFC 8414 `/.well-known/oauth-authorization-server`, then OIDC
//!   `/.well-known/openid-configuration`), whose `issuer` must equal the configured one exactly
//!   (RFC 8414 §3.3). HTTPS is required except for loopback hosts, like every URL the crate
//!   fetches; redirects are never followed.
//! - **Client authentication** (RFC 7662 §2.1): [`ClientAuth::basic`] (`client_secret_basic`,
//!   id and secret form-encoded before base64 as RFC 6749 §2.3.1 says), [`ClientAuth::post`]
//!   (`client_secret_post`) or [`ClientAuth::bearer`]. The secret is never in `Debug`, logs or
//!   errors.
//! - **The answer** (RFC 7662 §2.2): `active` must be the JSON boolean `true` — `false`, missing,
//!   `"true"`, `1` or a duplicated `active` are 401 `invalid_token`. Then the crate's claim
//!   rules: `exp` (optional in RFC 7662, required with [`require_exp`]) and `nbf`/`iat` with
//!   leeway, `iss` against [`issuer`], `aud` (string or array) against [`audience`],
//!   `token_type` against [`require_token_type`] (so a refresh token the server also answers
//!   `active` for is not taken as an access token). The whole
//!   answer is then deserialized into your claims type `C`, so
//!   [`ClaimGrants`](crate::authz::ClaimGrants) reads the introspected `scope` as it reads a
//!   JWT's.
//! - **`cnf`** (RFC 7800 §3.1 in an introspection answer, RFC 9449 §6.2): refused as on the
//!   JWT path — a DPoP- or mTLS-bound opaque token never passes as a plain bearer token —
//!   unless [`accept_sender_constrained`] approves the [`Confirmation`](crate::jwt::Confirmation),
//!   on every request, cache hits included. That verifier is the hook for proof-of-possession
//!   checks.
//! - **Cache.** Active answers are cached by a keyed digest of the token (SipHash-1-3, 128-bit,
//!   a random key per authenticator; the cache never holds a usable token), never past `exp`
//!   nor [`cache_max_ttl`] (default 60 s: a revoked token keeps working at most that long).
//!   The cache holds the *claims*, never a decision: `AuthorizeLayer` and every other layer
//!   decide each request from them, so a token cached on a read route is still refused on a
//!   write route (the per-route decision cache of Ory Oathkeeper, CVE-2021-32701, is what this
//!   avoids). `exp`/`nbf` and `cnf` are checked again on every hit.
//! - **Inactive answers are not cached**: a token that was not active yet (or a transient
//!   refusal) must not be remembered as bad, and random tokens must not evict good entries.
//!   Concurrent requests with the same token still share one call (below), and at most
//!   [`max_concurrent_calls`] calls (default 256) run at once: past that, a request whose token
//!   needs a new call gets 503, so a flood of random tokens cannot become a flood of calls to
//!   the authorization server (cached tokens keep working).
//! - **One request in flight per token.** Concurrent first requests for the same token wait for
//!   one POST; the call runs in a spawned task, so it completes (and is cached) even if every
//!   waiting request is cancelled.
//! - **Failures.** Endpoint down, slow ([`timeout`], default 5 s), a 5xx, a 401/403 (the endpoint
//!   refused *our* client credentials), a 400 `invalid_client`, an answer over
//!   [`max_response_bytes`] or one that is not a JSON object: 503
//!   ([`AuthError::unavailable`](crate::AuthError::unavailable)), never a pass. A 400 for any
//!   other reason means the endpoint refused the token: 401. Failures are logged (`tracing`
//!   warning, endpoint and status only).
//!
//! [`require_exp`]: IntrospectionAuthenticatorBuilder::require_exp
//! [`issuer`]: IntrospectionAuthenticatorBuilder::issuer
//! [`audience`]: IntrospectionAuthenticatorBuilder::audience
//! [`require_token_type`]: IntrospectionAuthenticatorBuilder::require_token_type
//! [`accept_sender_constrained`]: IntrospectionAuthenticatorBuilder::accept_sender_constrained
//! [`cache_max_ttl`]: IntrospectionAuthenticatorBuilder::cache_max_ttl
//! [`timeout`]: IntrospectionAuthenticatorBuilder::timeout
//! [`max_concurrent_calls`]: IntrospectionAuthenticatorBuilder::max_concurrent_calls
//! [`max_response_bytes`]: IntrospectionAuthenticatorBuilder::max_response_bytes
//!
//! With feature `test-util`, [`MockIssuer`](crate::jwks::mock::MockIssuer) serves an
//! introspection endpoint on loopback:
//!
#![cfg_attr(feature = "test-util", doc = "```")]
#![cfg_attr(not(feature = "test-util"), doc = "```ignore")]
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::BearerAuthLayer;
//! use tower_scope::introspection::{ClientAuth, Endpoint, IntrospectionAuthenticator};
//! use tower_scope::jwks::mock::MockIssuer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let idp = MockIssuer::start().await.unwrap();
//! idp.register_introspection("opaque-alice", serde_json::json!({
//!     "active": true, "sub": "alice", "scope": "memory:read", "iss": idp.issuer(),
//! }));
//! let (id, secret) = MockIssuer::INTROSPECTION_CLIENT;
//! let auth = IntrospectionAuthenticator::<serde_json::Value>::builder()
//!     .endpoint(Endpoint::discover(idp.issuer()))
//!     .client_auth(ClientAuth::basic(id, secret))
//!     .issuer(idp.issuer())
//!     .build()
//!     .await
//!     .unwrap();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(auth))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! for _ in 0..3 {
//!     let req = Request::get("/").header(header::AUTHORIZATION, "Bearer opaque-alice")
//!         .body(String::new()).unwrap();
//!     assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
//! }
//! assert_eq!(idp.introspection_requests(), 1); // then served from the cache
//! # }
//! ```

mod builder;
mod client;
mod flight;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use serde::de::{self, DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

pub use self::builder::{Endpoint, IntrospectionAuthenticatorBuilder};
pub use self::client::ClientAuth;
use self::flight::Flight;
use crate::Authenticated;
use crate::auth::{AuthError, Authenticate, Token};
use crate::jwks::JwksFuture;
use crate::jwks::cache::{TokenCache, TokenDigest};
use crate::jwks::fetch::{FetchError, Http};
use crate::jwt::{ClaimRules, Registered, invalid, registered, strict_json};
use crate::reject::Rejection;

/// The default cap on how long an introspection answer is cached (never past its `exp`):
/// how long a token revoked at the authorization server may keep working here.
pub const DEFAULT_CACHE_MAX_TTL: Duration = Duration::from_secs(60);
/// The default number of cached introspection answers.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// The default TCP/TLS connect timeout of an introspection call.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default total timeout of an introspection call (and of discovery at `build()`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default number of introspection calls (distinct tokens) in flight at once.
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 256;
/// The default cap on an introspection (or metadata) response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The future of one [`IntrospectionAuthenticator`] authentication: ready at once on a cache
/// hit, boxed while the introspection call runs.
pub type IntrospectionFuture<U> = JwksFuture<U>;

/// What a cache hit must check again: the binding (`cnf`) and the issuer it names.
pub(crate) struct Cached {
    cnf: Option<serde_json::Value>,
    iss: Option<Box<str>>,
}

type Outcome<U> = Result<Authenticated<U>, AuthError>;

/// Checks opaque tokens with RFC 7662 introspection; see the [module docs](self).
///
/// Build one with [`IntrospectionAuthenticator::builder`]. Cloning is cheap (one `Arc`);
/// clones share the cache and the calls in flight.
pub struct IntrospectionAuthenticator<C, U = C> {
    inner: Arc<Inner<C, U>>,
}

pub(crate) struct Inner<C, U> {
    endpoint: Url,
    client: ClientAuth,
    http: Http,
    rules: ClaimRules<C, U>,
    exp_required: bool,
    token_type: Option<Box<str>>,
    cache: TokenCache<U, Cached>,
    flights: Mutex<HashMap<TokenDigest, Flight<U>>>,
    /// Bounds the calls in flight (distinct tokens) at once.
    calls: Arc<Semaphore>,
    runtime: Handle,
}

impl<C, U> Clone for IntrospectionAuthenticator<C, U> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, U> fmt::Debug for IntrospectionAuthenticator<C, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionAuthenticator")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("client_auth", &self.inner.client)
            .field("issuers", &self.inner.rules.policy.issuers)
            .field("audiences", &self.inner.rules.policy.audiences)
            .field(
                "sender_constrained",
                &self.inner.rules.policy.binding.is_configured(),
            )
            .finish_non_exhaustive()
    }
}

impl<C, U> IntrospectionAuthenticator<C, U> {
    /// The introspection endpoint in use (configured or discovered).
    pub fn endpoint(&self) -> &str {
        self.inner.endpoint.as_str()
    }
}

impl<C, U> Authenticate for IntrospectionAuthenticator<C, U>
where
    C: DeserializeOwned + 'static,
    U: Send + Sync + 'static,
{
    type User = U;
    type Future = IntrospectionFuture<U>;

    fn authenticate(&self, token: Token<'_>) -> IntrospectionFuture<U> {
        self.decide(token.expose_secret())
    }

    fn ready_outcome(
        future: IntrospectionFuture<U>,
    ) -> Result<Result<Authenticated<U>, AuthError>, IntrospectionFuture<U>> {
        future.into_ready()
    }

    fn authenticate_unchecked(
        &self,
        token: Token<'_>,
        check: fn(&str) -> Result<(), Rejection>,
    ) -> Result<IntrospectionFuture<U>, Rejection> {
        // A hit is a token that was well-formed when it was introspected.
        let digest = self.inner.cache.digest(token.expose_secret());
        if let Some(result) = self.inner.cached(&digest) {
            return Ok(JwksFuture::ready(result));
        }
        check(token.expose_secret())?;
        Ok(self.introspect(token.expose_secret(), digest))
    }
}

impl<C, U> IntrospectionAuthenticator<C, U>
where
    C: DeserializeOwned + 'static,
    U: Send + Sync + 'static,
{
    fn decide(&self, token: &str) -> IntrospectionFuture<U> {
        let digest = self.inner.cache.digest(token);
        match self.inner.cached(&digest) {
            Some(result) => JwksFuture::ready(result),
            None => self.introspect(token, digest),
        }
    }

    /// Joins the call in flight for this token, or starts one.
    fn introspect(&self, token: &str, digest: TokenDigest) -> IntrospectionFuture<U> {
        let inner = Arc::clone(&self.inner);
        let waiter = flight::join_or_start(&inner, digest, token);
        JwksFuture::fetching(waiter)
    }
}

impl<C: DeserializeOwned, U> Inner<C, U> {
    /// A live cache entry whose binding (if any) the verifier still approves.
    fn cached(&self, digest: &TokenDigest) -> Option<Outcome<U>> {
        let policy = &self.rules.policy;
        let entry = self.cache.get(digest, policy.now(), policy.leeway)?;
        // The verifier decides again on every hit: it may have changed its mind, and it is the
        // application's gate for sender-constrained tokens.
        if let Err(err) =
            policy
                .binding
                .check(entry.source.cnf.as_ref(), entry.source.iss.as_deref(), None)
        {
            self.cache.remove(digest);
            return Some(Err(err));
        }
        Some(Ok(entry.user.clone()))
    }

    /// One introspection call and its decision; active answers are cached.
    async fn ask(&self, token: &str, digest: TokenDigest) -> Outcome<U> {
        let form = self.client.form(token);
        let answer = self
            .http
            .post_form(&self.endpoint, self.client.authorization(), form)
            .await;
        let (status, body) = match answer {
            Ok(answer) => answer,
            Err(err) => return Err(self.unavailable(&err.to_string())),
        };
        match status {
            200 => self.accept(&body, digest),
            // RFC 7662 §2.3 / RFC 6749 §5.2: our own credentials were refused. The token is
            // not to blame, and the operator must hear about it.
            401 | 403 => Err(self.unavailable(&format!(
                "HTTP status {status}: the endpoint refused this resource server's client credentials"
            ))),
            400 if is_client_error(&body) => Err(self.unavailable(
                "HTTP status 400 invalid_client: check the client credentials",
            )),
            400 => Err(invalid(
                "The token was refused by the authorization server",
            )),
            _ => Err(self.unavailable(&FetchError::Status(status).to_string())),
        }
    }

    /// Logs why the endpoint could not decide and returns the 503 error.
    fn unavailable(&self, reason: &str) -> AuthError {
        tracing::warn!(
            endpoint = %self.endpoint,
            reason,
            "token introspection failed; answering 503"
        );
        AuthError::unavailable()
    }

    /// Decides a 200 answer (RFC 7662 §2.2) and caches it when active.
    fn accept(&self, body: &[u8], digest: TokenDigest) -> Outcome<U> {
        // Not a JSON object at all (an HTML error page, truncated JSON): the endpoint is
        // broken, which says nothing about the token.
        if !strict_json::is_strict_object(body)
            || serde_json::from_slice::<IgnoredAny>(body).is_err()
        {
            return Err(self.unavailable("the answer is not a JSON object"));
        }
        let Ok(TopLevel { active, token_type }) = serde_json::from_slice::<TopLevel>(body) else {
            return Err(invalid("The introspection answer is malformed"));
        };
        if !active {
            return Err(invalid("The token is not active"));
        }
        // Token types are case-insensitive (RFC 6749 §7.1): `Bearer` and `bearer` are one.
        if let Some(required) = &self.token_type
            && !token_type.is_some_and(|t| t.eq_ignore_ascii_case(required))
        {
            return Err(invalid("The token type is not accepted"));
        }
        // RFC 8259 §8.1: JSON text is UTF-8; the claim passes read it as text.
        let body = std::str::from_utf8(body)
            .map_err(|_| invalid("The introspection answer is malformed"))?;
        let mut claims: Registered<'_> = registered(body)?;
        let lifetime = self
            .rules
            .policy
            .check_with(&claims, None, self.exp_required)?;
        let user = Authenticated::new(self.rules.user(body)?);
        let now = self.rules.policy.now();
        let source = Cached {
            cnf: claims.cnf.take(),
            iss: claims.iss.as_deref().map(Into::into),
        };
        self.cache
            .insert(digest, user.clone(), lifetime, now, source);
        Ok(user)
    }
}

/// Whether a 400 answer names a client-authentication error (RFC 6749 §5.2).
fn is_client_error(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct ErrorAnswer {
        error: String,
    }
    serde_json::from_slice::<ErrorAnswer>(body)
        .is_ok_and(|a| matches!(&*a.error, "invalid_client" | "unauthorized_client"))
}

/// The top level of an answer: every member name once, whether `active` is `true`, and the
/// `token_type` when it is a string.
struct TopLevel {
    active: bool,
    token_type: Option<String>,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = TopLevel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an introspection answer")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                // A member given twice would let the checks here and the claims type read
                // different values: refuse it (serde_json keeps the last one silently).
                let mut seen = std::collections::HashSet::new();
                let mut active = false;
                let mut token_type = None;
                while let Some(name) = map.next_key::<String>()? {
                    if name == "active" {
                        // RFC 7662 §2.2: a boolean; `"true"` or `1` is not one.
                        active = matches!(map.next_value()?, serde_json::Value::Bool(true));
                    } else if name == "token_type" {
                        token_type = match map.next_value()? {
                            serde_json::Value::String(t) => Some(t),
                            _ => None,
                        };
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                    if !seen.insert(name) {
                        return Err(de::Error::custom("duplicate member"));
                    }
                }
                Ok(TopLevel { active, token_type })
            }
        }
        d.deserialize_map(V)
    }
}
