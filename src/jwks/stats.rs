//! Counters in the spirit of Envoy's `jwt_authn` stats, cheap enough for every request.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::{AuthError, AuthErrorKind};

/// A snapshot of a [`JwksAuthenticator`](super::JwksAuthenticator)'s counters since it was built.
///
/// Export them to your metrics system by polling
/// [`stats`](super::JwksAuthenticator::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksStats {
    /// Tokens accepted.
    pub allowed: u64,
    /// Tokens refused as invalid (401): forged, expired, wrong issuer or audience, unknown key.
    pub denied_invalid_token: u64,
    /// Tokens whose key id is in no key set, even after a refetch (a subset of 401s).
    pub denied_unknown_kid: u64,
    /// Valid tokens refused by the user mapping (403).
    pub denied_forbidden: u64,
    /// Requests refused because no usable key set was available (503).
    pub denied_unavailable: u64,
    /// Successful JWKS (or discovery plus JWKS) fetches.
    pub jwks_fetch_ok: u64,
    /// Failed JWKS fetches (timeouts, errors, malformed or keyless sets, issuer mismatches).
    pub jwks_fetch_failed: u64,
    /// Verified-token cache hits.
    pub cache_hit: u64,
    /// Verified-token cache misses (only counted when the cache is enabled).
    pub cache_miss: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    allowed: AtomicU64,
    denied_invalid_token: AtomicU64,
    denied_unknown_kid: AtomicU64,
    denied_forbidden: AtomicU64,
    denied_unavailable: AtomicU64,
    jwks_fetch_ok: AtomicU64,
    jwks_fetch_failed: AtomicU64,
    cache_hit: AtomicU64,
    cache_miss: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    // Relaxed: these are statistics, not synchronisation.
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn outcome<U>(&self, result: &Result<U, AuthError>) {
        match result {
            Ok(_) => bump(&self.allowed),
            Err(err) => match err.kind() {
                AuthErrorKind::Unavailable => bump(&self.denied_unavailable),
                AuthErrorKind::InvalidToken => bump(&self.denied_invalid_token),
                _ => bump(&self.denied_forbidden),
            },
        }
    }

    pub(crate) fn unknown_kid(&self) {
        bump(&self.denied_unknown_kid);
    }

    pub(crate) fn fetch_ok(&self) {
        bump(&self.jwks_fetch_ok);
    }

    pub(crate) fn fetch_failed(&self) {
        bump(&self.jwks_fetch_failed);
    }

    pub(crate) fn cache_hit(&self) {
        bump(&self.cache_hit);
    }

    pub(crate) fn cache_miss(&self) {
        bump(&self.cache_miss);
    }

    pub(crate) fn snapshot(&self) -> JwksStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        JwksStats {
            allowed: get(&self.allowed),
            denied_invalid_token: get(&self.denied_invalid_token),
            denied_unknown_kid: get(&self.denied_unknown_kid),
            denied_forbidden: get(&self.denied_forbidden),
            denied_unavailable: get(&self.denied_unavailable),
            jwks_fetch_ok: get(&self.jwks_fetch_ok),
            jwks_fetch_failed: get(&self.jwks_fetch_failed),
            cache_hit: get(&self.cache_hit),
            cache_miss: get(&self.cache_miss),
        }
    }
}
