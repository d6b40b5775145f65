//! The verified-token cache: SHA-256 of the token to the user it verified as.
//!
//! Only successes are cached; an entry never outlives the token's `exp` (nor the configured
//! maximum), `exp` and `nbf` are checked again on every hit, and an entry whose signing key has
//! left the issuer's key set is dropped on its next hit.

use std::sync::Arc;

use quick_cache::sync::Cache;

use super::source::SourceKey;
use crate::Authenticated;
use crate::jwt::Lifetime;

/// SHA-256 of the raw token: the cache never stores a usable token.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &str) -> TokenDigest {
    crate::digest::sha256(token.as_bytes())
}

pub(crate) struct Entry<U> {
    pub(crate) user: Authenticated<U>,
    expires: f64,
    nbf: Option<f64>,
    pub(crate) issuer: usize,
    pub(crate) key: Arc<SourceKey>,
}

pub(crate) struct TokenCache<U> {
    entries: Cache<TokenDigest, Arc<Entry<U>>>,
    max_ttl: f64,
}

impl<U> TokenCache<U> {
    pub(crate) fn new(capacity: usize, max_ttl: f64) -> Self {
        Self {
            entries: Cache::new(capacity),
            max_ttl,
        }
    }

    /// A live entry: not past its expiry, `nbf` reached (within `leeway`).
    pub(crate) fn get(&self, digest: &TokenDigest, now: f64, leeway: f64) -> Option<Arc<Entry<U>>> {
        let entry = self.entries.get(digest)?;
        if now < entry.expires && entry.nbf.is_none_or(|nbf| nbf <= now + leeway) {
            Some(entry)
        } else {
            self.entries.remove(digest);
            None
        }
    }

    pub(crate) fn remove(&self, digest: &TokenDigest) {
        self.entries.remove(digest);
    }

    pub(crate) fn insert(
        &self,
        digest: TokenDigest,
        user: Authenticated<U>,
        lifetime: Lifetime,
        now: f64,
        issuer: usize,
        key: Arc<SourceKey>,
    ) {
        // Never past `exp` itself: the leeway is for clock skew at verification, not for reuse.
        let expires = lifetime.exp.min(now + self.max_ttl);
        if expires <= now {
            return;
        }
        self.entries.insert(
            digest,
            Arc::new(Entry {
                user,
                expires,
                nbf: lifetime.nbf,
                issuer,
                key,
            }),
        );
    }
}
