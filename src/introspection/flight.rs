//! One introspection call in flight per token: the first request for a token starts it (in a
//! spawned task), every concurrent request for the same token waits for its outcome.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::{Inner, Outcome};
use crate::auth::AuthError;
use crate::jwks::cache::TokenDigest;

/// The outcome of one call, once it is known.
pub(super) struct Flight<U>(watch::Receiver<Option<Outcome<U>>>);

/// Removes a finished (or panicked) call from the map, so the next request asks again.
struct Landing<'a, C, U> {
    inner: &'a Inner<C, U>,
    digest: TokenDigest,
}

impl<C, U> Drop for Landing<'_, C, U> {
    fn drop(&mut self) {
        lock(&self.inner.flights).remove(&self.digest);
    }
}

/// Waits for the call in flight for `digest`, or starts it.
pub(super) fn join_or_start<C, U>(
    inner: &Arc<Inner<C, U>>,
    digest: TokenDigest,
    token: &str,
) -> impl Future<Output = Outcome<U>> + Send + 'static
where
    C: DeserializeOwned + 'static,
    U: Send + Sync + 'static,
{
    let joined = {
        let mut flights = lock(&inner.flights);
        if let Some(flight) = flights.get(&digest) {
            Ok(flight.0.clone())
        } else if let Some(result) = inner.cached(&digest) {
            // A call finished between our cache miss and taking the lock.
            Err(result)
        } else if let Ok(permit) = Arc::clone(&inner.calls).try_acquire_owned() {
            let (done, waiting) = watch::channel(None);
            flights.insert(digest, Flight(waiting.clone()));
            let task = Arc::clone(inner);
            let token: Box<str> = token.into();
            // Spawned: the call completes and lands in the cache even if every request
            // waiting for it is cancelled.
            inner.runtime.spawn(async move {
                let _permit = permit;
                let _landing = Landing {
                    inner: &task,
                    digest,
                };
                let outcome = task.ask(&token, digest).await;
                // Sent before `_landing` removes the flight: whoever joined gets this outcome.
                let _ = done.send(Some(outcome));
            });
            Ok(waiting)
        } else {
            // A flood of distinct tokens must not become a flood of calls to the
            // authorization server: past the limit, fail closed.
            Err(Err(
                inner.unavailable("too many introspection calls in flight")
            ))
        }
    };
    async move {
        let mut waiting = match joined {
            Ok(waiting) => waiting,
            Err(result) => return result,
        };
        match waiting.wait_for(Option::is_some).await {
            Ok(outcome) => outcome
                .clone()
                .unwrap_or_else(|| Err(AuthError::unavailable())),
            // The task ended without an outcome (it panicked): never a pass.
            Err(_) => Err(AuthError::unavailable()),
        }
    }
}

/// A poisoned lock only means a panic elsewhere; the map is still sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
