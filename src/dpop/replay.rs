//! The `jti` replay cache (RFC 9449 §11.1): a proof is used once.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use crate::auth::AuthError;

/// Remembers which proofs were used, so a captured proof cannot be replayed (RFC 9449 §11.1).
///
/// Keys are 32-byte digests of the proof key's thumbprint and the proof's `jti`; `expires_at`
/// (seconds since the Unix epoch) is when the proof would be stale anyway, after which the
/// entry may be forgotten. Replicas behind one load balancer must share one cache, or a proof
/// replayed to another replica passes. It is called synchronously on the request path, once
/// per request whose token already verified; keep it fast (a local store, a shared store with
/// a short timeout).
pub trait ReplayCache: Send + Sync {
    /// Records `key` and returns `Ok(true)` when it was not there yet, `Ok(false)` when it was
    /// (a replay). An error (the shared store is down) refuses the request with its status.
    ///
    /// # Errors
    ///
    /// Whatever the store's failure should answer, typically [`AuthError::unavailable`].
    fn first_use(&self, key: &[u8; 32], expires_at: u64, now: u64) -> Result<bool, AuthError>;
}

/// The default [`ReplayCache`]: in memory, bounded to `capacity` live entries.
///
/// When every slot holds a proof that is not stale yet, new proofs are refused with 503 (fail
/// closed) until entries expire: forgetting a live `jti` would let its proof be replayed.
pub struct MemoryReplayCache {
    capacity: usize,
    seen: Mutex<HashMap<[u8; 32], u64>>,
}

impl MemoryReplayCache {
    /// A cache for at most `capacity` live proofs (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl fmt::Debug for MemoryReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl ReplayCache for MemoryReplayCache {
    fn first_use(&self, key: &[u8; 32], expires_at: u64, now: u64) -> Result<bool, AuthError> {
        // A poisoned lock only means another request panicked mid-insert; the map is intact.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&until) = seen.get(key) {
            if until >= now {
                return Ok(false);
            }
            seen.remove(key);
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= self.capacity {
                return Err(AuthError::unavailable().with_message("The DPoP replay cache is full"));
            }
        }
        seen.insert(*key, expires_at);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_used_once_until_it_expires() {
        let cache = MemoryReplayCache::new(2);
        assert_eq!(cache.first_use(&[1; 32], 100, 10), Ok(true));
        assert_eq!(cache.first_use(&[1; 32], 100, 50), Ok(false));
        // Full with live entries: refused, never forgotten.
        assert_eq!(cache.first_use(&[2; 32], 100, 50), Ok(true));
        assert!(cache.first_use(&[3; 32], 100, 50).is_err());
        assert_eq!(cache.first_use(&[1; 32], 100, 60), Ok(false));
        // Past their expiry, slots are reclaimed.
        assert_eq!(cache.first_use(&[3; 32], 300, 101), Ok(true));
    }
}
