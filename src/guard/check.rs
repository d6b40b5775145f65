//! The ownership decisions, shared by [`ThreadGuardLayer`](super::ThreadGuardLayer) and by
//! handlers that find ids a layer cannot see (inside gRPC messages, behind nested routers).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::store::{StoreError, ThreadOwner, ThreadStore};
use crate::mastra::messages;
use crate::reject::{Rejection, RejectionKind};
use crate::{MessageId, ResourceId, ThreadId};

/// The default time a store lookup may take before the request gets 503.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the caller may not touch a thread or message: the guard's refusals, and those of the
/// stores' owner-conditional writes ([`ThreadWrites`](super::ThreadWrites)), so both render alike.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuardError {
    /// The request carries no [`ResourceId`]: nothing can be owned by it (403, fail closed).
    NotScoped,
    /// The thread belongs to another resource (403).
    ForeignThread,
    /// The thread does not exist — or belongs to another resource when foreign threads are
    /// hidden (404).
    ThreadNotFound,
    /// The thread has no owner and unowned threads are not allowed (403).
    UnownedThread,
    /// A message has no thread, or its thread is gone: ownership cannot be verified (403).
    UnverifiableMessage,
    /// A message names another resource (403).
    ForeignResource,
    /// The store could not answer: it failed or timed out (503, with `Retry-After`; never a
    /// pass), or refused a value of the request ([`StoreError::InvalidInput`], 400).
    Store(StoreError),
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Rejection::from(self.clone()).message())
    }
}

impl std::error::Error for GuardError {}

impl From<GuardError> for Rejection {
    fn from(err: GuardError) -> Self {
        let (kind, message) = match err {
            GuardError::NotScoped => (RejectionKind::Forbidden, messages::NOT_SCOPED),
            GuardError::ForeignThread => (RejectionKind::Forbidden, messages::FOREIGN_THREAD),
            GuardError::ThreadNotFound => (RejectionKind::NotFound, messages::THREAD_NOT_FOUND),
            GuardError::UnownedThread => (
                RejectionKind::Forbidden,
                "Access denied: thread has no owner",
            ),
            GuardError::UnverifiableMessage => {
                (RejectionKind::Forbidden, messages::UNVERIFIABLE_MESSAGE)
            }
            GuardError::ForeignResource => {
                (RejectionKind::Forbidden, messages::SAVE_FOREIGN_RESOURCE)
            }
            // The store's detail may name hosts, queries or quote the database: it stays out of
            // the answer. A value the database refused is the request's fault, not an outage:
            // answering 503 would let one character fire an outage alert.
            GuardError::Store(StoreError::InvalidInput(_)) => (
                RejectionKind::BadRequest,
                "Invalid request: a value cannot be stored",
            ),
            GuardError::Store(_) => (RejectionKind::Unavailable, "Thread store unavailable"),
        };
        Rejection::with_message(kind, message)
    }
}

#[cfg(feature = "tonic")]
impl From<GuardError> for tonic::Status {
    fn from(err: GuardError) -> Self {
        Rejection::from(err).into()
    }
}

/// Whether a thread that passed the check exists yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadPresence {
    /// The thread exists and the caller may use it.
    Exists,
    /// The thread does not exist (allowed only where creation is).
    Missing,
}

#[derive(Debug, Clone)]
struct Policy {
    hide_foreign: bool,
    allow_unowned: bool,
    timeout: Duration,
}

/// Ownership checks over a [`ThreadStore`]; cheap to clone.
///
/// ```
/// use tower_scope::guard::{GuardError, MemoryThreadStore, OwnershipCheck};
/// use tower_scope::{ResourceId, ThreadId};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryThreadStore::new();
/// let alice = ResourceId::new("alice").unwrap();
/// let thread = ThreadId::new("t1").unwrap();
/// store.insert_thread(thread.clone(), Some(alice.clone()));
///
/// let guard = OwnershipCheck::new(store);
/// assert!(guard.check_thread(&alice, &thread).await.is_ok());
/// let bob = ResourceId::new("bob").unwrap();
/// assert_eq!(guard.check_thread(&bob, &thread).await, Err(GuardError::ForeignThread));
/// # }
/// ```
#[derive(Debug)]
pub struct OwnershipCheck<S> {
    /// One shared allocation: the guard clones the check into every decision, and a clone is
    /// one reference count, not one per part (under load the counts are shared by every core).
    shared: Arc<Shared<S>>,
}

impl<S> Clone for OwnershipCheck<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Debug, Clone)]
struct Shared<S> {
    store: S,
    policy: Policy,
    /// Reads a thread's whole record in the ownership lookup (set by
    /// `ThreadGuardLayer::prefetch_thread_records`, for stores that can).
    prefetch: Option<Prefetch<S>>,
}

/// A boxed read of one thread's record, borrowing the store and the id.
pub(crate) type Prefetch<S> = for<'a> fn(&'a S, &'a ThreadId) -> PrefetchFuture<'a>;

pub(crate) type PrefetchFuture<'a> = std::pin::Pin<
    Box<dyn Future<Output = Result<Option<super::ThreadRecord>, StoreError>> + Send + 'a>,
>;

/// The [`Prefetch`] of a store that can read records.
pub(crate) fn prefetch_of<'a, S: super::store::ThreadRecords>(
    store: &'a S,
    thread: &'a ThreadId,
) -> PrefetchFuture<'a> {
    Box::pin(store.thread_record(thread))
}

impl<S: ThreadStore> OwnershipCheck<S> {
    /// Checks ownership against `store`: foreign threads are 403, unowned threads denied.
    pub fn new(store: S) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                policy: Policy {
                    hide_foreign: false,
                    allow_unowned: false,
                    timeout: DEFAULT_STORE_TIMEOUT,
                },
                prefetch: None,
            }),
        }
    }

    /// Settings change before the check is shared; a shared one is copied first.
    fn policy_mut(&mut self) -> &mut Policy {
        &mut Arc::make_mut(&mut self.shared).policy
    }

    /// Reads whole thread records in the ownership lookup (the guard's prefetch).
    pub(crate) fn set_prefetch(&mut self, prefetch: Prefetch<S>) {
        Arc::make_mut(&mut self.shared).prefetch = Some(prefetch);
    }

    /// Reports another resource's thread as not found (404), hiding that it exists.
    #[must_use]
    pub fn hide_foreign_threads(mut self) -> Self {
        self.policy_mut().hide_foreign = true;
        self
    }

    /// Lets anyone use threads without an owner (Mastra treats them as shared).
    #[must_use]
    pub fn allow_unowned_threads(mut self) -> Self {
        self.policy_mut().allow_unowned = true;
        self
    }

    /// Sets how long one store lookup may take before the answer is 503 (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy_mut().timeout = timeout;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    async fn bounded<T>(
        &self,
        lookup: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, GuardError> {
        match tokio::time::timeout(self.shared.policy.timeout, lookup).await {
            Ok(result) => result.map_err(GuardError::Store),
            Err(_) => Err(GuardError::Store(StoreError::Timeout)),
        }
    }

    fn decide(
        &self,
        scope: &ResourceId,
        owner: &ThreadOwner,
    ) -> Result<ThreadPresence, GuardError> {
        match owner {
            ThreadOwner::Owned(owner) if owner == scope => Ok(ThreadPresence::Exists),
            ThreadOwner::Owned(_) if self.shared.policy.hide_foreign => {
                Err(GuardError::ThreadNotFound)
            }
            ThreadOwner::Owned(_) => Err(GuardError::ForeignThread),
            ThreadOwner::Unowned if self.shared.policy.allow_unowned => Ok(ThreadPresence::Exists),
            ThreadOwner::Unowned => Err(GuardError::UnownedThread),
            ThreadOwner::Missing => Ok(ThreadPresence::Missing),
        }
    }

    /// Checks that `thread` exists and belongs to `scope`.
    ///
    /// # Errors
    ///
    /// [`GuardError::ThreadNotFound`] for a missing thread, otherwise as
    /// [`check_thread_or_missing`](Self::check_thread_or_missing).
    pub async fn check_thread(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
    ) -> Result<(), GuardError> {
        match self.check_thread_or_missing(scope, thread).await? {
            ThreadPresence::Exists => Ok(()),
            ThreadPresence::Missing => Err(GuardError::ThreadNotFound),
        }
    }

    /// The owner of `thread` as the store records it, and its record when prefetching (bounded
    /// by the timeout). The guard's lookup of a route's own thread; decide with
    /// [`decide_owner`](Self::decide_owner).
    pub(crate) async fn thread_owner_and_record(
        &self,
        thread: &ThreadId,
    ) -> Result<(ThreadOwner, Option<super::ThreadRecord>), GuardError> {
        let Some(prefetch) = self.shared.prefetch else {
            return Ok((
                self.bounded(self.shared.store.thread_owner(thread)).await?,
                None,
            ));
        };
        let record = self.bounded(prefetch(&self.shared.store, thread)).await?;
        let owner = match &record {
            None => ThreadOwner::Missing,
            Some(r) => match &r.resource {
                Some(owner) => ThreadOwner::Owned(owner.clone()),
                None => ThreadOwner::Unowned,
            },
        };
        Ok((owner, record))
    }

    /// The owner of `thread` (bounded by the timeout), never prefetching.
    pub(crate) async fn thread_owner_only(
        &self,
        thread: &ThreadId,
    ) -> Result<ThreadOwner, GuardError> {
        self.bounded(self.shared.store.thread_owner(thread)).await
    }

    /// The ownership decision for a looked-up owner.
    pub(crate) fn decide_owner(
        &self,
        scope: &ResourceId,
        owner: &ThreadOwner,
    ) -> Result<ThreadPresence, GuardError> {
        self.decide(scope, owner)
    }

    /// Checks that `thread` belongs to `scope` or does not exist yet (for creation).
    ///
    /// # Errors
    ///
    /// [`GuardError::ForeignThread`] (or `ThreadNotFound` when hiding), `UnownedThread`, or
    /// `Store` when the lookup fails or times out.
    pub async fn check_thread_or_missing(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
    ) -> Result<ThreadPresence, GuardError> {
        let owner = self.bounded(self.shared.store.thread_owner(thread)).await?;
        self.decide(scope, &owner)
    }

    /// Checks every thread of a batch in one lookup; missing threads are allowed.
    ///
    /// # Errors
    ///
    /// The first refusal among the threads, or `Store`.
    pub async fn check_threads_or_missing(
        &self,
        scope: &ResourceId,
        threads: &[ThreadId],
    ) -> Result<(), GuardError> {
        if threads.is_empty() {
            return Ok(());
        }
        let owners = self
            .bounded(self.shared.store.thread_owners(threads))
            .await?;
        for thread in threads {
            self.decide(scope, owners.get(thread).unwrap_or(&ThreadOwner::Missing))?;
        }
        Ok(())
    }

    /// Checks that every known message lives in a thread owned by `scope`; unknown ids are
    /// ignored (nothing of anyone's can be touched through them). One store lookup.
    ///
    /// # Errors
    ///
    /// `UnverifiableMessage` for a message without a thread or whose thread is gone,
    /// `ForeignThread` / `ThreadNotFound` / `UnownedThread` for a message in a thread the caller
    /// may not use, or `Store`.
    pub async fn check_messages(
        &self,
        scope: &ResourceId,
        messages: &[MessageId],
    ) -> Result<(), GuardError> {
        if messages.is_empty() {
            return Ok(());
        }
        let unique: Vec<MessageId> = messages
            .iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let found = self
            .bounded(self.shared.store.message_threads(&unique))
            .await?;
        for message in found.values() {
            if message.thread.is_none() {
                return Err(GuardError::UnverifiableMessage);
            }
            match self.decide(scope, &message.owner)? {
                ThreadPresence::Exists => {}
                ThreadPresence::Missing => return Err(GuardError::UnverifiableMessage),
            }
        }
        Ok(())
    }
}
