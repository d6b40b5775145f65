//! DPoP (RFC 9449): sender-constrained access tokens, verified by [`BearerAuthLayer`].
//!
//! With [`BearerAuthLayer::dpop`], a request may present `Authorization: DPoP <token>` and one
//! `DPoP` proof header: a JWT signed by the client's private key, naming the request (`htm`,
//! `htu`), its time (`iat`), a unique id (`jti`) and the token (`ath`). The layer verifies the
//! proof (RFC 9449 §4.3), then hands the token to the authenticator with the proof key's
//! thumbprint ([`Token::dpop_thumbprint`](crate::auth::Token::dpop_thumbprint)); the
//! authenticator (`JwtAuthenticatorBuilder::accept_dpop`) accepts the token only when its
//! `cnf.jkt` is that thumbprint (RFC 9449 §6.1). A DPoP-bound token sent as `Bearer` is refused.
//!
//! What the proof must be, each refused with 401 and `WWW-Authenticate: DPoP
//! error="invalid_dpop_proof"`:
//!
//! - exactly one `DPoP` header, at most 8 KiB, a compact JWS with `typ: dpop+jwt`;
//! - `alg` in the configured allow-list (asymmetric only: `none` and HMAC are refused when the
//!   layer is built and when a proof names them);
//! - `jwk`: the public key that verifies the signature, with no private member (`d`, `p`...);
//! - `htm` = the request method, `htu` = the configured public origin + the request path, both
//!   compared without query and fragment (§4.3); the client's `Host` header is never used;
//! - `iat` no older than [`max_age`](DpopConfig::max_age) and not in the future beyond the
//!   leeway; `jti` not seen before for this key within that window ([`ReplayCache`]);
//! - `ath` = base64url(SHA-256(access token));
//! - with [`nonces`](DpopConfig::nonces), a current server nonce, else 401
//!   `error="use_dpop_nonce"` with a fresh `DPoP-Nonce` header (§9).
//!
//! ```
//! use tower_scope::BearerAuthLayer;
//! use tower_scope::dpop::DpopConfig;
//! use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
//!
//! let auth = JwtAuthenticator::<serde_json::Value>::builder()
//!     .key(JwtKey::hmac(Algorithm::HS256, b"a 32-byte or longer random secret!"))
//!     .accept_dpop()
//!     .build()
//!     .unwrap();
//! let layer = BearerAuthLayer::new(auth)
//!     .dpop(DpopConfig::new("https://api.example.com").unwrap())
//!     .unwrap();
//! # let _ = layer;
//! ```
//!
//! [`BearerAuthLayer`]: crate::BearerAuthLayer
//! [`BearerAuthLayer::dpop`]: crate::BearerAuthLayer::dpop

pub(crate) mod challenge;
mod nonce;
pub(crate) mod proof;
mod replay;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use self::nonce::{DpopNonces, RotatingNonces};
pub(crate) use self::proof::{ProofError, Verified};
pub use self::replay::{MemoryReplayCache, ReplayCache};

use crate::ConfigError;
use crate::jwt::Algorithm;

/// The default `iat` window: a proof older than this is stale (RFC 9449 §11.1).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);

/// The default number of `jti`s the in-memory replay cache remembers.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// The proof algorithms accepted by default: every asymmetric JWS algorithm `jsonwebtoken`
/// verifies.
const DEFAULT_ALGORITHMS: [Algorithm; 9] = crate::jwt::ASYMMETRIC;

type Clock = dyn Fn() -> SystemTime + Send + Sync;

/// How [`BearerAuthLayer::dpop`](crate::BearerAuthLayer::dpop) verifies DPoP proofs.
#[derive(Clone)]
pub struct DpopConfig {
    pub(crate) origin: Box<str>,
    pub(crate) algorithms: Vec<Algorithm>,
    /// `algs="..."` of the challenge, precomputed.
    pub(crate) algs: Box<str>,
    pub(crate) max_age: Duration,
    pub(crate) leeway: Duration,
    pub(crate) replay: Arc<dyn ReplayCache>,
    pub(crate) nonces: Option<Arc<dyn DpopNonces>>,
    clock: Option<Arc<Clock>>,
}

impl fmt::Debug for DpopConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopConfig")
            .field("origin", &self.origin)
            .field("algorithms", &self.algorithms)
            .field("max_age", &self.max_age)
            .field("leeway", &self.leeway)
            .field("nonces", &self.nonces.is_some())
            .finish_non_exhaustive()
    }
}

impl DpopConfig {
    /// Proofs for requests to `public_origin` (`https://api.example.com`, with a port when it
    /// is not the scheme's default): the origin clients use, as a reverse proxy exposes it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] unless it is an `http` or `https` origin with no path,
    /// query or fragment.
    pub fn new(public_origin: &str) -> Result<Self, ConfigError> {
        let origin =
            proof::normalize_origin(public_origin).ok_or_else(|| ConfigError::InvalidValue {
                setting: "DPoP public origin",
                reason: "use scheme://host[:port] with http or https and no path".into(),
            })?;
        Ok(Self {
            origin: origin.into(),
            algs: algs(&DEFAULT_ALGORITHMS),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            max_age: DEFAULT_MAX_AGE,
            leeway: Duration::from_secs(5),
            replay: Arc::new(MemoryReplayCache::new(DEFAULT_REPLAY_CAPACITY)),
            nonces: None,
            clock: None,
        })
    }

    /// Accepts proofs signed with these algorithms only (default: every asymmetric one).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for an empty list or an HMAC algorithm: a proof is
    /// signed with the client's private key (RFC 9449 §4.2), never a shared secret.
    pub fn algorithms(
        mut self,
        algorithms: impl IntoIterator<Item = Algorithm>,
    ) -> Result<Self, ConfigError> {
        let algorithms: Vec<Algorithm> = algorithms.into_iter().collect();
        if algorithms.is_empty() || algorithms.iter().any(|a| !DEFAULT_ALGORITHMS.contains(a)) {
            return Err(ConfigError::InvalidValue {
                setting: "DPoP algorithms",
                reason: "name at least one asymmetric algorithm (no HMAC)".into(),
            });
        }
        self.algs = algs(&algorithms);
        self.algorithms = algorithms;
        Ok(self)
    }

    /// Refuses proofs whose `iat` is older than `max_age` (default 60 s).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Tolerates client clocks this far ahead (default 5 s).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Remembers `jti`s in `cache` instead of the in-memory default, e.g. one store that
    /// every replica shares.
    #[must_use]
    pub fn replay_cache(mut self, cache: impl ReplayCache + 'static) -> Self {
        self.replay = Arc::new(cache);
        self
    }

    /// Requires server-provided nonces (RFC 9449 §9) from `nonces`.
    #[must_use]
    pub fn nonces(mut self, nonces: impl DpopNonces + 'static) -> Self {
        self.nonces = Some(Arc::new(nonces));
        self
    }

    /// Uses this clock instead of the system clock (for tests).
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    pub(crate) fn now(&self) -> u64 {
        let now = self
            .clock
            .as_ref()
            .map_or_else(SystemTime::now, |clock| clock());
        now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

fn algs(algorithms: &[Algorithm]) -> Box<str> {
    let names: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
    names.join(" ").into()
}
