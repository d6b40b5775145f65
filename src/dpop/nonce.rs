//! Server-provided nonces (RFC 9449 §9): a proof must carry a nonce the server recently issued.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Issues and checks DPoP nonces; the layer sends [`issue`](Self::issue) in a `DPoP-Nonce`
/// header when a proof lacks a valid one.
pub trait DpopNonces: Send + Sync {
    /// A nonce to hand the client now.
    fn issue(&self) -> String;
    /// Whether `nonce` is one this server issued and still accepts.
    fn accepts(&self, nonce: &str) -> bool;
}

/// Stateless nonces: an HMAC-SHA-256 tag of the current time window, valid for the current
/// and the previous window, so replicas sharing the secret accept each other's nonces.
pub struct RotatingNonces {
    key: hmac::Key,
    period: u64,
}

impl RotatingNonces {
    /// Nonces under `secret` (at least 32 bytes, random), rotating every `period` (at least 1 s).
    ///
    /// # Errors
    ///
    /// [`ConfigError::WeakHmacSecret`](crate::ConfigError::WeakHmacSecret) for a shorter secret.
    pub fn new(secret: &[u8], period: Duration) -> Result<Self, crate::ConfigError> {
        if secret.len() < 32 {
            return Err(crate::ConfigError::WeakHmacSecret {
                algorithm: "HS256",
                min_len: 32,
                actual_len: secret.len(),
            });
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            period: period.as_secs().max(1),
        })
    }

    fn window(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            / self.period
    }

    fn nonce(&self, window: u64) -> String {
        let tag = hmac::sign(&self.key, &window.to_be_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }
}

impl fmt::Debug for RotatingNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingNonces")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl DpopNonces for RotatingNonces {
    fn issue(&self) -> String {
        self.nonce(self.window())
    }

    fn accepts(&self, nonce: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let window = self.window();
        [window, window.saturating_sub(1)]
            .iter()
            .any(|w| hmac::verify(&self.key, &w.to_be_bytes(), &tag).is_ok())
    }
}
