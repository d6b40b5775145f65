//! Where thread and message ownership lives: the [`ThreadStore`] trait and its in-memory
//! implementation.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};

use super::check::GuardError;
use super::write::{
    MessageRecord, NewMessage, ThreadFields, ThreadRecord, ThreadWrites, last_per_id, refusal,
    storable_fields, storable_messages, target_threads,
};
use crate::{MessageId, ResourceId, ThreadId};

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

/// Why a store could not answer: the backend, or a value of the request.
///
/// The guard and the stores' writes report it as [`GuardError::Store`]; it renders as 503
/// (gRPC 14, with `Retry-After`) for [`Backend`](Self::Backend) and [`Timeout`](Self::Timeout)
/// and as 400 (gRPC 3) for [`InvalidInput`](Self::InvalidInput), so a client can never make
/// the server report an outage by sending a value the database refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed: unreachable (connection refused or lost, TLS, pool closed or
    /// exhausted), shutting down, busy past its retries, or answering with data the store
    /// cannot report (fail closed). Retrying later may succeed. The detail is for logs only.
    Backend(String),
    /// The lookup took longer than the configured timeout.
    Timeout,
    /// The backend refused a value the request carried (a constraint violation, a value too
    /// long for its column, text it cannot encode such as PostgreSQL's NUL): retrying the same
    /// request cannot succeed. The detail is for logs only; it may quote the database.
    InvalidInput(String),
}

impl StoreError {
    /// Whether the request's own values caused the error (400), rather than the backend (503).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::InvalidInput(_))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backend(detail) => write!(f, "thread store failed: {detail}"),
            Self::Timeout => f.write_str("thread store timed out"),
            Self::InvalidInput(detail) => write!(f, "thread store refused the input: {detail}"),
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
        messages: &[MessageId],
    ) -> impl Future<Output = Result<HashMap<MessageId, MessageThread>, StoreError>> + Send;

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

/// A [`ThreadStore`] that can read a thread's whole record in the ownership lookup itself, so a
/// guarded read queries once: the guard decides on the record's owner and hands the record to
/// the handler ([`PrefetchedThread`](super::PrefetchedThread); enable with
/// [`ThreadGuardLayer::prefetch_thread_records`](super::ThreadGuardLayer::prefetch_thread_records)).
pub trait ThreadRecords: ThreadStore {
    /// The thread's record, `None` when it does not exist.
    fn thread_record(
        &self,
        thread: &ThreadId,
    ) -> impl Future<Output = Result<Option<super::ThreadRecord>, StoreError>> + Send;
}

#[derive(Debug, Default)]
struct Tables {
    threads: HashMap<ThreadId, ThreadRow>,
    messages: HashMap<MessageId, MessageRow>,
}

#[derive(Debug, Clone, Default)]
struct ThreadRow {
    owner: Option<ResourceId>,
    title: Option<String>,
    metadata: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct MessageRow {
    thread: Option<ThreadId>,
    resource: Option<ResourceId>,
    role: Option<String>,
    kind: Option<String>,
    content: Option<String>,
    created_at: Option<String>,
}

/// An in-memory [`ThreadStore`] and [`ThreadWrites`] for tests and examples. Cloning shares the
/// data.
///
/// Every write holds one lock for its whole check-and-write, so writes are serial: the owner a
/// write checks is the owner it writes under.
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
        // A panic while holding the lock cannot leave the maps half-updated: every write checks
        // everything first and then only inserts and removes, which do not panic.
        self.tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a thread and its owner (`None`: a shared, unowned thread), replacing any thread
    /// with that id. Not owner-conditional: for fixtures; requests go through [`ThreadWrites`].
    pub fn insert_thread(&self, thread: ThreadId, owner: Option<ResourceId>) {
        self.write().threads.insert(
            thread,
            ThreadRow {
                owner,
                ..ThreadRow::default()
            },
        );
    }

    /// Records a message in a thread (`None`: a message without a thread). For fixtures.
    pub fn insert_message(&self, message: MessageId, thread: Option<ThreadId>) {
        self.write().messages.insert(
            message,
            MessageRow {
                thread,
                ..MessageRow::default()
            },
        );
    }

    /// Removes a thread and its messages. For fixtures.
    pub fn remove_thread(&self, thread: &ThreadId) {
        let mut tables = self.write();
        tables.threads.remove(thread);
        tables
            .messages
            .retain(|_, m| m.thread.as_ref() != Some(thread));
    }

    /// Removes a message. For fixtures.
    pub fn remove_message(&self, message: &str) {
        self.write().messages.remove(message);
    }

    /// The thread with this id, if any.
    pub fn thread(&self, thread: &ThreadId) -> Option<ThreadRecord> {
        let tables = self.read();
        tables.threads.get(thread).map(|row| record(thread, row))
    }

    /// The message with this id, if any.
    pub fn message(&self, message: &str) -> Option<MessageRecord> {
        let tables = self.read();
        let (id, row) = tables.messages.get_key_value(message)?;
        Some(MessageRecord {
            id: id.clone(),
            thread: row.thread.clone(),
            resource: row.resource.clone(),
            role: row.role.clone(),
            kind: row.kind.clone(),
            content: row.content.clone(),
            created_at: row.created_at.clone(),
        })
    }
}

fn owner_of(tables: &Tables, thread: &ThreadId) -> ThreadOwner {
    match tables.threads.get(thread) {
        None => ThreadOwner::Missing,
        Some(ThreadRow { owner: None, .. }) => ThreadOwner::Unowned,
        Some(ThreadRow {
            owner: Some(owner), ..
        }) => ThreadOwner::Owned(owner.clone()),
    }
}

fn record(id: &ThreadId, row: &ThreadRow) -> ThreadRecord {
    ThreadRecord {
        id: id.clone(),
        resource: row.owner.clone(),
        title: row.title.clone(),
        metadata: row.metadata.clone(),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
    }
}

impl Tables {
    /// The caller's own thread row, or the refusal the guard would give.
    fn own_thread(
        &mut self,
        scope: &ResourceId,
        thread: &ThreadId,
    ) -> Result<&mut ThreadRow, GuardError> {
        if let Some(refused) = refusal(scope, &owner_of(self, thread), GuardError::ThreadNotFound) {
            return Err(refused);
        }
        self.threads
            .get_mut(thread)
            .ok_or(GuardError::ThreadNotFound)
    }

    /// Whether an existing message may be overwritten by `scope`: it lives in `scope`'s thread.
    fn check_overwrite(&self, scope: &ResourceId, message: &str) -> Result<(), GuardError> {
        let Some(row) = self.messages.get(message) else {
            return Ok(());
        };
        let Some(thread) = &row.thread else {
            return Err(GuardError::UnverifiableMessage);
        };
        match refusal(
            scope,
            &owner_of(self, thread),
            GuardError::UnverifiableMessage,
        ) {
            Some(refused) => Err(refused),
            None => Ok(()),
        }
    }
}

impl ThreadWrites for MemoryThreadStore {
    fn create_thread(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
        fields: &ThreadFields,
        at: &str,
    ) -> impl Future<Output = Result<ThreadRecord, GuardError>> + Send {
        if let Err(refused) = storable_fields(fields, at) {
            return std::future::ready(Err(refused));
        }
        let mut tables = self.write();
        let result = match owner_of(&tables, thread) {
            ThreadOwner::Missing => {
                let row = ThreadRow {
                    owner: Some(scope.clone()),
                    title: fields.title.clone(),
                    metadata: fields.metadata.clone(),
                    created_at: Some(at.to_owned()),
                    updated_at: Some(at.to_owned()),
                };
                let created = record(thread, &row);
                tables.threads.insert(thread.clone(), row);
                Ok(created)
            }
            _ => tables.own_thread(scope, thread).map(|row| {
                row.title.clone_from(&fields.title);
                row.metadata.clone_from(&fields.metadata);
                row.updated_at = Some(at.to_owned());
                record(thread, row)
            }),
        };
        std::future::ready(result)
    }

    fn update_thread(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
        fields: &ThreadFields,
        at: &str,
    ) -> impl Future<Output = Result<ThreadRecord, GuardError>> + Send {
        if let Err(refused) = storable_fields(fields, at) {
            return std::future::ready(Err(refused));
        }
        let mut tables = self.write();
        let result = tables.own_thread(scope, thread).map(|row| {
            if let Some(title) = &fields.title {
                row.title = Some(title.clone());
            }
            if let Some(metadata) = &fields.metadata {
                row.metadata = Some(metadata.clone());
            }
            row.updated_at = Some(at.to_owned());
            record(thread, row)
        });
        std::future::ready(result)
    }

    fn delete_thread(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
    ) -> impl Future<Output = Result<(), GuardError>> + Send {
        let mut tables = self.write();
        let result = tables.own_thread(scope, thread).map(|_| ());
        if result.is_ok() {
            tables.threads.remove(thread);
            tables
                .messages
                .retain(|_, m| m.thread.as_ref() != Some(thread));
        }
        std::future::ready(result)
    }

    fn save_messages(
        &self,
        scope: &ResourceId,
        messages: &[NewMessage],
        at: &str,
    ) -> impl Future<Output = Result<(), GuardError>> + Send {
        let mut tables = self.write();
        let checked = (|| {
            storable_messages(messages, at)?;
            for thread in target_threads(messages) {
                let owner = owner_of(&tables, thread);
                if owner != ThreadOwner::Missing
                    && let Some(refused) = refusal(scope, &owner, GuardError::ThreadNotFound)
                {
                    return Err(refused);
                }
            }
            for message in last_per_id(messages) {
                tables.check_overwrite(scope, &message.id)?;
            }
            Ok(())
        })();
        if checked.is_ok() {
            for thread in target_threads(messages) {
                let row = tables
                    .threads
                    .entry(thread.clone())
                    .or_insert_with(|| ThreadRow {
                        owner: Some(scope.clone()),
                        created_at: Some(at.to_owned()),
                        ..ThreadRow::default()
                    });
                row.updated_at = Some(at.to_owned());
            }
            for message in last_per_id(messages) {
                tables.messages.insert(
                    message.id.clone(),
                    MessageRow {
                        thread: Some(message.thread.clone()),
                        resource: Some(scope.clone()),
                        role: Some(message.role.clone()),
                        kind: Some(message.kind.clone()),
                        content: Some(message.content.clone()),
                        created_at: Some(message.created_at.clone()),
                    },
                );
            }
        }
        std::future::ready(checked)
    }

    fn delete_messages(
        &self,
        scope: &ResourceId,
        messages: &[MessageId],
    ) -> impl Future<Output = Result<u64, GuardError>> + Send {
        let mut tables = self.write();
        let mine: HashSet<&MessageId> = messages
            .iter()
            .filter(|id| {
                tables
                    .messages
                    .get(id.as_str())
                    .and_then(|m| m.thread.as_ref())
                    .is_some_and(|t| {
                        refusal(scope, &owner_of(&tables, t), GuardError::ThreadNotFound).is_none()
                    })
            })
            .collect();
        for id in &mine {
            tables.messages.remove(id.as_str());
        }
        std::future::ready(Ok(mine.len() as u64))
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
        messages: &[MessageId],
    ) -> impl Future<Output = Result<HashMap<MessageId, MessageThread>, StoreError>> + Send {
        let tables = self.read();
        let found = messages
            .iter()
            .filter_map(|m| {
                let thread = tables.messages.get(m)?.thread.clone();
                let owner = thread
                    .as_ref()
                    .map_or(ThreadOwner::Missing, |t| owner_of(&tables, t));
                Some((m.clone(), MessageThread { thread, owner }))
            })
            .collect();
        std::future::ready(Ok(found))
    }
}
