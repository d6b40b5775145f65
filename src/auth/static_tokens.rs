//! `StaticTokens`: fixed API keys mapped to users, compared in constant time.

use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::{AuthError, Authenticate, Token};
use crate::Authenticated;

/// A fixed set of API keys, each mapped to a user.
///
/// Keys are stored only as SHA-256 digests, and every lookup compares the digest of the
/// presented token with *all* stored digests in constant time, so neither timing nor a memory
/// dump reveals a key. `Debug` shows only how many keys there are.
///
/// ```
/// use tower_scope::StaticTokens;
///
/// let tokens = StaticTokens::new()
///     .token("k3y-for-the-billing-service-0001", "billing")
///     .token("k3y-for-the-reporting-job-000002", "reports");
/// assert_eq!(format!("{tokens:?}"), "StaticTokens { keys: 2 }");
/// ```
pub struct StaticTokens<U> {
    entries: Arc<[([u8; 32], Arc<U>)]>,
}

impl<U> StaticTokens<U> {
    /// An empty set: every token is refused until keys are added.
    pub fn new() -> Self {
        Self {
            entries: Arc::new([]),
        }
    }

    /// Adds a key and the user it authenticates.
    ///
    /// Keys should be long random strings of `b64token` characters (letters, digits,
    /// `-._~+/`); other keys can never match a bearer token.
    #[must_use]
    pub fn token(self, key: impl AsRef<str>, user: U) -> Self {
        let mut entries: Vec<_> = self
            .entries
            .iter()
            .map(|(d, u)| (*d, Arc::clone(u)))
            .collect();
        entries.push((digest(key.as_ref()), Arc::new(user)));
        Self {
            entries: entries.into(),
        }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, token: &str) -> Option<&Arc<U>> {
        let presented = digest(token);
        let mut found = None;
        // No early exit: every stored digest is compared whatever matches.
        for (stored, user) in self.entries.iter() {
            if bool::from(stored.ct_eq(&presented)) && found.is_none() {
                found = Some(user);
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    crate::digest::sha256(token.as_bytes())
}

impl<U> Default for StaticTokens<U> {
    fn default() -> Self {
        Self::new()
    }
}

impl<U> Clone for StaticTokens<U> {
    fn clone(&self) -> Self {
        Self {
            entries: Arc::clone(&self.entries),
        }
    }
}

impl<U> fmt::Debug for StaticTokens<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokens")
            .field("keys", &self.entries.len())
            .finish()
    }
}

impl<U> Authenticate for StaticTokens<U>
where
    U: Send + Sync + 'static,
{
    type User = U;
    type Future = Ready<Result<Authenticated<U>, AuthError>>;

    /// Every request of a key shares the key's one user value: nothing is copied.
    fn authenticate(&self, token: Token<'_>) -> Self::Future {
        ready(
            self.find(token.expose_secret())
                .map(|u| Authenticated::from(Arc::clone(u)))
                .ok_or_else(AuthError::invalid_token),
        )
    }

    fn ready_outcome(
        future: Self::Future,
    ) -> Result<Result<Authenticated<U>, AuthError>, Self::Future> {
        Ok(future.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_user_of_each_key_and_nothing_else() {
        let tokens = StaticTokens::new().token("key-one", 1).token("key-two", 2);
        assert_eq!(tokens.find("key-two").map(|u| **u), Some(2));
        assert_eq!(tokens.find("key-one").map(|u| **u), Some(1));
        assert!(tokens.find("key-three").is_none());
        assert!(tokens.find("key-on").is_none());
    }

    #[tokio::test]
    async fn every_request_of_a_key_shares_its_one_user() {
        // Not `Clone`: the user is never copied, only shared.
        struct User(&'static str);
        let tokens = StaticTokens::new().token("key-one", User("alice"));
        let first = tokens.authenticate(Token::new("key-one")).await.unwrap();
        let second = tokens.authenticate(Token::new("key-one")).await.unwrap();
        assert!(Arc::ptr_eq(first.shared(), second.shared()));
        assert_eq!(second.0, "alice");
        assert!(tokens.authenticate(Token::new("key-two")).await.is_err());
    }

    #[test]
    fn debug_never_shows_keys() {
        let tokens = StaticTokens::new().token("super-secret-key", "alice");
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("super-secret-key"));
        assert!(!shown.contains("alice"));
    }
}
