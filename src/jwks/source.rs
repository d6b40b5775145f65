//! One issuer's keys: an atomically swapped snapshot, refreshed in the background and on demand.
//!
//! Requests only ever `load()` the snapshot; fetching happens in a spawned task and the new set
//! is `store()`d when complete, so no lock is ever held across network I/O and a hung endpoint
//! delays nobody whose key is already known.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwapOption, Guard};
use reqwest::Url;
use serde::Deserialize;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::fetch::{FetchError, Http, key_url};
use super::stats::Counters;
use crate::jwt::{Algorithm, JwkSetDocument, VerifyKey, jwk_value_key};

/// Where an issuer's keys come from.
pub(crate) enum Location {
    /// A JWKS URL, configured directly.
    Jwks(Url),
    /// An OIDC discovery document whose `jwks_uri` names the JWKS.
    Discovery(Url),
}

/// Settings shared by every issuer of one authenticator.
pub(crate) struct SourceConfig {
    pub(crate) http: Http,
    pub(crate) allowed: Vec<Algorithm>,
    pub(crate) default_ttl: Duration,
    pub(crate) min_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) cooldown: Duration,
    pub(crate) grace: Duration,
    pub(crate) runtime: Handle,
}

/// A key from a JWK set, identified across refreshes by a digest of its JWK.
pub(crate) struct SourceKey {
    pub(crate) key: VerifyKey,
    fingerprint: [u8; 32],
}

/// One fetched JWK set: fresh until its `max-age`, usable until that plus the grace period.
///
/// `keys` may be empty: an issuer that answers with no key we can use has withdrawn them all.
pub(crate) struct KeySet {
    pub(crate) keys: Vec<Arc<SourceKey>>,
    fresh_until: Instant,
    usable_until: Instant,
}

impl KeySet {
    /// Whether this set may still verify tokens (fresh, or stale within the grace period).
    pub(crate) fn usable(&self, now: Instant) -> bool {
        now < self.usable_until
    }
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

/// The keys of one issuer.
pub(crate) struct KeySource {
    pub(crate) issuer: Box<str>,
    location: Location,
    /// The `jwks_uri` found by discovery; only the fetch task touches it, never across I/O.
    discovered: Mutex<Option<Url>>,
    keys: ArcSwapOption<KeySet>,
    /// Set while one fetch is in flight: the single-flight flag.
    fetching: AtomicBool,
    failing: AtomicBool,
    /// The last fetch attempt, for the unknown-`kid` cooldown; read only by the flag holder.
    last_attempt: Mutex<Option<Instant>>,
    last_error: Mutex<Option<FetchError>>,
    /// Bumped after every fetch, so waiters wake whatever the outcome.
    done: watch::Sender<u64>,
    config: Arc<SourceConfig>,
    stats: Arc<Counters>,
}

impl KeySource {
    pub(crate) fn new(
        issuer: Box<str>,
        location: Location,
        config: Arc<SourceConfig>,
        stats: Arc<Counters>,
    ) -> Arc<Self> {
        Arc::new(Self {
            issuer,
            location,
            discovered: Mutex::new(None),
            keys: ArcSwapOption::empty(),
            fetching: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            last_attempt: Mutex::new(None),
            last_error: Mutex::new(None),
            done: watch::channel(0).0,
            config,
            stats,
        })
    }

    /// The current key set, if any; lock-free.
    pub(crate) fn snapshot(&self) -> Guard<Option<Arc<KeySet>>> {
        self.keys.load()
    }

    /// Whether a usable key set with at least one key is loaded.
    pub(crate) fn is_ready(&self) -> bool {
        self.snapshot()
            .as_ref()
            .is_some_and(|set| set.usable(Instant::now()) && !set.keys.is_empty())
    }

    /// Whether `key` is still in the usable key set (a cached token signed by a key the issuer
    /// has since withdrawn must be verified again).
    pub(crate) fn holds(&self, key: &Arc<SourceKey>) -> bool {
        self.snapshot().as_ref().is_some_and(|set| {
            set.usable(Instant::now()) && set.keys.iter().any(|k| Arc::ptr_eq(k, key))
        })
    }

    /// On an unknown `kid` or a missing key set: joins the fetch in flight, or starts one unless
    /// the last attempt was within the cooldown, then waits for it to finish.
    pub(crate) async fn refetch(self: &Arc<Self>) {
        // Subscribe before looking at the flag, so a fetch finishing in between still wakes us.
        let mut done = self.done.subscribe();
        if self
            .fetching
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if !self.claim_cooldown() {
                // A random-`kid` flood must not turn into a flood of fetches.
                self.fetching.store(false, Ordering::Release);
                self.done.send_modify(|n| *n += 1);
                return;
            }
            let source = Arc::clone(self);
            // Spawned, so the fetch completes (and the flag is released) even if every waiting
            // request is cancelled.
            self.config.runtime.spawn(async move {
                let result = source.fetch().await;
                source.finish(result);
            });
        }
        let _ = done.changed().await;
    }

    /// Fetches now unless a fetch is in flight (then waits for it); ignores the cooldown.
    pub(crate) async fn fetch_now(self: &Arc<Self>) -> Result<(), FetchError> {
        let mut done = self.done.subscribe();
        if self
            .fetching
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Scheduled fetches leave the cooldown alone: it limits only fetches that requests
            // trigger, so a rotation right after a scheduled refresh is still picked up.
            let result = self.fetch().await;
            self.finish(result);
            return result;
        }
        let _ = done.changed().await;
        match *lock(&self.last_error) {
            Some(err) if self.failing.load(Ordering::Acquire) => Err(err),
            _ => Ok(()),
        }
    }

    /// Starts the refresh loop: it wakes when the set's `max-age` runs out (or to retry after a
    /// failure) and ends when the authenticator is dropped.
    pub(crate) fn spawn_background(self: &Arc<Self>, fetch_first: bool) {
        let weak = Arc::downgrade(self);
        self.config.runtime.spawn(background(weak, fetch_first));
    }

    fn claim_cooldown(&self) -> bool {
        let now = Instant::now();
        let mut last = lock(&self.last_attempt);
        if last.is_some_and(|at| now.duration_since(at) < self.config.cooldown) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn finish(&self, result: Result<(), FetchError>) {
        match result {
            Ok(()) => {
                self.stats.fetch_ok();
                self.failing.store(false, Ordering::Release);
            }
            Err(err) => {
                self.stats.fetch_failed();
                *lock(&self.last_error) = Some(err);
                self.failing.store(true, Ordering::Release);
            }
        }
        self.fetching.store(false, Ordering::Release);
        self.done.send_modify(|n| *n += 1);
    }

    fn next_delay(&self) -> Duration {
        let retry = self.config.min_ttl.max(Duration::from_millis(10));
        match &*self.snapshot() {
            Some(set) if !self.failing.load(Ordering::Acquire) => set
                .fresh_until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
            _ => retry,
        }
    }

    async fn jwks_url(&self) -> Result<Url, FetchError> {
        let discovery = match &self.location {
            Location::Jwks(url) => return Ok(url.clone()),
            Location::Discovery(url) => url,
        };
        if let Some(url) = lock(&self.discovered).clone() {
            return Ok(url);
        }
        let (body, _) = self.config.http.get(discovery).await?;
        let doc: DiscoveryDocument =
            serde_json::from_slice(&body).map_err(|_| FetchError::Malformed)?;
        // OIDC Discovery §4.3: the document must be about the issuer we were configured with,
        // compared exactly, or an attacker-controlled document could substitute its own keys.
        if doc.issuer != *self.issuer {
            return Err(FetchError::IssuerMismatch);
        }
        let url = key_url(&doc.jwks_uri).map_err(FetchError::RefusedJwksUri)?;
        *lock(&self.discovered) = Some(url.clone());
        Ok(url)
    }

    async fn fetch(&self) -> Result<(), FetchError> {
        let url = self.jwks_url().await?;
        let (body, max_age) = self.config.http.get(&url).await?;
        let doc: JwkSetDocument =
            serde_json::from_slice(&body).map_err(|_| FetchError::Malformed)?;
        let old = self.snapshot();
        let previous: &[Arc<SourceKey>] = old.as_ref().map_or(&[], |set| &set.keys);
        let mut keys = Vec::with_capacity(doc.keys.len());
        for value in &doc.keys {
            let fingerprint = crate::digest::sha256(value.to_string().as_bytes());
            // An unchanged JWK keeps its identity, so cached tokens it signed stay valid.
            if let Some(same) = previous.iter().find(|k| k.fingerprint == fingerprint) {
                keys.push(Arc::clone(same));
            } else if let Some(key) = jwk_value_key(value, &self.config.allowed) {
                keys.push(Arc::new(SourceKey { key, fingerprint }));
            }
        }
        // The set the issuer answers with replaces the last one, even when it holds no key we
        // can use (`{"keys":[]}`, only `use: enc`, only unsupported keys): a key that left the
        // JWKS is withdrawn (RFC 7517 §5, OIDC Core §10.1.1), and tokens it signed must stop
        // verifying now, not when the stale grace runs out. Only a failed fetch keeps the old set.
        let ttl = max_age
            .unwrap_or(self.config.default_ttl)
            .clamp(self.config.min_ttl, self.config.max_ttl);
        let now = Instant::now();
        // Durations come from configuration and the IdP's max-age: never overflow an Instant.
        let far = |d: Duration| {
            now.checked_add(d)
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
        };
        self.keys.store(Some(Arc::new(KeySet {
            keys,
            fresh_until: far(ttl),
            usable_until: far(ttl.saturating_add(self.config.grace)),
        })));
        Ok(())
    }
}

async fn background(weak: Weak<KeySource>, fetch_first: bool) {
    let mut first = fetch_first;
    loop {
        let delay = match weak.upgrade() {
            Some(_) if first => Duration::ZERO,
            Some(source) => source.next_delay(),
            None => return,
        };
        first = false;
        tokio::time::sleep(delay).await;
        let Some(source) = weak.upgrade() else {
            return;
        };
        let _ = source.fetch_now().await;
    }
}

/// A poisoned lock only means a panic elsewhere; the data (a URL, an instant) is still sound.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
