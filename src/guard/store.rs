//! Where thread and message ownership lives: the [`ThreadStore`] trait and its in-memory
//! implementation.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};

use crate::{ResourceId, ThreadId};

/// Who owns a thread, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadOwner {
    /// There is no such thread.
    Missing,
    /// The thread exists but has no resource (Mastra treats these as shared).
    Unowned,
    /// The thread belongs to this resource.
    Owned(ResourceId),
}

/// The thread a message lives in, and that thread's owner, found in one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageThread {
    /// The message's thread, `None` when the message has no thread id.
    pub thread: Option<ThreadId>,
    /// The owner of that thread (`Missing` when the thread does not exist).
    pub owner: ThreadOwner,
}

/// Why a store could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (connection refused, query error...). The detail is for logs only.
    Backend(String),
    /// The lookup took longer than the configured timeout.
    Timeout,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backend(detail) => write!(f, "thread store failed: {detail}"),
            Self::Timeout => f.write_str("thread store timed out"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Answers the two ownership questions the guard asks, each in one call (no N+1 lookups).
pub trait ThreadStore: Clone + Send + Sync + 'static {
    /// The owners of these threads; a thread absent from the map does not exist.
    fn thread_owners(
        &self,
        threads: &[ThreadId],
    ) -> impl Future<Output = Result<HashMap<ThreadId, ThreadOwner>, StoreError>> + Send;

    /// The thread (and its owner) of each message; unknown message ids are absent from the map.
    fn message_threads(
        &self,
        messages: &[String],
    ) -> impl Future<Output = Result<HashMap<String, MessageThread>, StoreError>> + Send;

    /// The owner of one thread.
    fn thread_owner(
        &self,
        thread: &ThreadId,
    ) -> impl Future<Output = Result<ThreadOwner, StoreError>> + Send {
        let lookup = self.thread_owners(std::slice::from_ref(thread));
        let thread = thread.clone();
        async move {
            Ok(lookup
                .await?
                .remove(&thread)
                .unwrap_or(ThreadOwner::Missing))
        }
    }
}

#[derive(Debug, Default)]
struct Tables {
    threads: HashMap<ThreadId, Option<ResourceId>>,
    messages: HashMap<String, Option<ThreadId>>,
}

/// An in-memory [`ThreadStore`] for tests and examples. Cloning shares the data.
#[derive(Debug, Clone, Default)]
pub struct MemoryThreadStore {
    tables: Arc<RwLock<Tables>>,
}

impl MemoryThreadStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps half-updated: every write is
        // a single insert or remove, so the poisoned data is still consistent.
        self.tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a thread and its owner (`None`: a shared, unowned thread).
    pub fn insert_thread(&self, thread: ThreadId, owner: Option<ResourceId>) {
        self.write().threads.insert(thread, owner);
    }

    /// Records a message in a thread (`None`: a message without a thread).
    pub fn insert_message(&self, message: impl Into<String>, thread: Option<ThreadId>) {
        self.write().messages.insert(message.into(), thread);
    }

    /// Removes a thread and its messages.
    pub fn remove_thread(&self, thread: &ThreadId) {
        let mut tables = self.write();
        tables.threads.remove(thread);
        tables.messages.retain(|_, t| t.as_ref() != Some(thread));
    }

    /// Removes a message.
    pub fn remove_message(&self, message: &str) {
        self.write().messages.remove(message);
    }
}

fn owner_of(tables: &Tables, thread: &ThreadId) -> ThreadOwner {
    match tables.threads.get(thread) {
        None => ThreadOwner::Missing,
        Some(None) => ThreadOwner::Unowned,
        Some(Some(owner)) => ThreadOwner::Owned(owner.clone()),
    }
}

impl ThreadStore for MemoryThreadStore {
    fn thread_owners(
        &self,
        threads: &[ThreadId],
    ) -> impl Future<Output = Result<HashMap<ThreadId, ThreadOwner>, StoreError>> + Send {
        let tables = self.read();
        let found = threads
            .iter()
            .filter_map(|t| match owner_of(&tables, t) {
                ThreadOwner::Missing => None,
                owner => Some((t.clone(), owner)),
            })
            .collect();
        std::future::ready(Ok(found))
    }

    fn message_threads(
        &self,
        messages: &[String],
    ) -> impl Future<Output = Result<HashMap<String, MessageThread>, StoreError>> + Send {
        let tables = self.read();
        let found = messages
            .iter()
            .filter_map(|m| {
                let thread = tables.messages.get(m)?.clone();
                let owner = thread
                    .as_ref()
                    .map_or(ThreadOwner::Missing, |t| owner_of(&tables, t));
                Some((m.clone(), MessageThread { thread, owner }))
            })
            .collect();
        std::future::ready(Ok(found))
    }
}
