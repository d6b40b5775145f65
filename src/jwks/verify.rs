//! One authentication: the cache fast path, verification with the loaded keys, and what to
//! refetch when they are not enough.

use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::crypto::CryptoProvider;
use serde::de::DeserializeOwned;

use super::cache::{Source as CacheSource, TokenCache, TokenDigest};
use super::source::KeySource;
use super::stats::Counters;
use crate::Authenticated;
use crate::auth::AuthError;
use crate::jwt::{Buffers, ClaimRules, Policy, SignatureError, invalid, registered};

/// One trusted issuer: its keys, and the claim rules bound to its `iss`.
pub(super) struct IssuerState {
    pub(super) source: Arc<KeySource>,
    pub(super) policy: Policy,
}

/// What every clone of a [`JwksAuthenticator`](super::JwksAuthenticator) shares.
pub(super) struct Inner<C, U> {
    pub(super) issuers: Vec<IssuerState>,
    /// The configured claim rules: leeway, `typ`, clock and `map_user` apply to all issuers
    /// alike; each issuer checks claims with its own copy of the policy.
    pub(super) rules: ClaimRules<C, U>,
    pub(super) provider: &'static CryptoProvider,
    pub(super) cache: Option<TokenCache<U>>,
    pub(super) stats: Arc<Counters>,
}

/// What a fast-path attempt could not do without a fetch.
pub(super) enum Missing {
    /// The issuer has no usable key set.
    KeySet,
    /// No key of the issuer matches the token's `kid`/`alg`.
    Kid,
    /// The issuer's current set holds no usable key at all.
    AnyKey,
}

/// Why the fast path stopped: a final refusal, or the issuer (by index) to refetch for.
pub(super) enum Failure {
    Refused(AuthError),
    Refetch(usize, Missing),
}

impl From<AuthError> for Failure {
    fn from(err: AuthError) -> Self {
        Self::Refused(err)
    }
}

impl<C: DeserializeOwned, U> Inner<C, U> {
    /// The fast path: a cache hit, or a verification with the keys already loaded.
    pub(super) fn cached(
        &self,
        digest: &TokenDigest,
        proof: Option<&str>,
    ) -> Option<Result<Authenticated<U>, AuthError>> {
        let cache = self.cache.as_ref()?;
        let entry = cache.get(digest, self.rules.policy.now(), self.rules.policy.leeway)?;
        let issuer = &self.issuers[entry.source.issuer];
        if !issuer.source.holds(&entry.source.key) {
            cache.remove(digest);
            return None;
        }
        self.stats.cache_hit();
        // A cached answer must not skip the binding verifier: it may have changed its mind
        // (a revoked key thumbprint), and it is the application's gate for `cnf` tokens.
        if let Err(err) = issuer.policy.binding.check(
            entry.source.cnf.as_ref(),
            Some(&*issuer.source.issuer),
            proof,
        ) {
            cache.remove(digest);
            return Some(Err(err));
        }
        Some(Ok(entry.user.clone()))
    }

    pub(super) fn attempt(
        &self,
        token: &str,
        proof: Option<&str>,
        digest: Option<&TokenDigest>,
    ) -> Result<Authenticated<U>, Failure> {
        let mut buffers = Buffers::new();
        let jws = self.rules.parse(token, &mut buffers.signature)?;
        let payload = jws.payload(&mut buffers.payload)?;
        let mut registered = registered(&payload)?;
        // The unverified `iss` only picks whose keys to try (RFC 8725 §3.8): a token is trusted
        // only once that issuer's own key has verified it.
        let index = registered
            .iss
            .as_deref()
            .and_then(|iss| self.issuers.iter().position(|i| *i.source.issuer == *iss))
            .ok_or_else(|| invalid("The token issuer is not accepted"))?;
        let issuer = &self.issuers[index];
        let snapshot = issuer.source.snapshot();
        let Some(set) = snapshot.as_ref().filter(|s| s.usable(Instant::now())) else {
            return Err(Failure::Refetch(index, Missing::KeySet));
        };
        if set.keys.is_empty() {
            // Like an unknown `kid`: the issuer may have published keys again since (one
            // refetch, within the cooldown).
            return Err(Failure::Refetch(index, Missing::AnyKey));
        }
        let key = match jws.verify_with(self.provider, set.keys.iter().map(|k| &k.key)) {
            Ok(key) => key,
            Err(SignatureError::NoKey) => return Err(Failure::Refetch(index, Missing::Kid)),
            Err(err) => return Err(Failure::Refused(err.into())),
        };
        let lifetime = issuer.policy.check(&registered, proof)?;
        let user = Authenticated::new(self.rules.user(&payload)?);
        jws.verified(&self.rules.headers);
        if let (Some(cache), Some(digest)) = (&self.cache, digest)
            && let Some(key) = set.keys.iter().find(|k| std::ptr::eq(&k.key, key))
        {
            let now = issuer.policy.now();
            let source = CacheSource {
                issuer: index,
                key: Arc::clone(key),
                cnf: registered.cnf.take(),
            };
            cache.insert(*digest, user.clone(), lifetime, now, source);
        }
        Ok(user)
    }

    /// After a refetch: whatever is still missing is final.
    pub(super) fn settle(
        &self,
        token: &str,
        proof: Option<&str>,
        digest: Option<&TokenDigest>,
    ) -> Result<Authenticated<U>, AuthError> {
        match self.attempt(token, proof, digest) {
            Ok(user) => Ok(user),
            Err(Failure::Refused(err)) => Err(err),
            Err(Failure::Refetch(_, Missing::KeySet)) => Err(AuthError::unavailable()),
            Err(Failure::Refetch(_, Missing::Kid)) => {
                self.stats.unknown_kid();
                Err(SignatureError::NoKey.into())
            }
            Err(Failure::Refetch(_, Missing::AnyKey)) => {
                Err(invalid("The issuer has no usable keys"))
            }
        }
    }
}
