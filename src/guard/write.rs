//! Owner-conditional writes: [`ThreadWrites`] creates, changes and deletes threads and messages
//! only where the caller owns them, deciding in the same statement or transaction that writes.
//!
//! [`ThreadGuardLayer`](super::ThreadGuardLayer) decides on a snapshot, before the handler runs;
//! a write that follows in separate statements can meet a world that changed in between (two
//! users creating the same client-chosen thread id, one deleting a thread while the other
//! recreates it). These writes close that gap: the owner check and the write are one atomic step,
//! so the guard stays the fast first line and the store has the last word. Refusals are the
//! guard's own [`GuardError`]s, so they render exactly as the guard's (403 / 404 / 400 / 503,
//! gRPC 7 / 5 / 3 / 14).
//!
//! ```
//! use tower_scope::guard::{GuardError, MemoryThreadStore, ThreadFields, ThreadWrites};
//! use tower_scope::{ResourceId, ThreadId};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = MemoryThreadStore::new();
//! let (alice, bob) = (ResourceId::new("alice").unwrap(), ResourceId::new("bob").unwrap());
//! let thread = ThreadId::new("t1").unwrap();
//! let now = "2026-01-01T00:00:00.000Z";
//!
//! let created = store.create_thread(&alice, &thread, &ThreadFields::titled("diary"), now).await;
//! assert_eq!(created.unwrap().resource, Some(alice.clone()));
//! // Bob names the same id: refused, and nothing of Alice's changes.
//! let taken = store.create_thread(&bob, &thread, &ThreadFields::titled("mine"), now).await;
//! assert_eq!(taken.unwrap_err(), GuardError::ForeignThread);
//! assert_eq!(store.delete_thread(&bob, &thread).await, Err(GuardError::ForeignThread));
//! assert_eq!(store.thread(&thread).unwrap().title.as_deref(), Some("diary"));
//! # }
//! ```

use std::future::Future;

use super::check::GuardError;
use super::store::{StoreError, ThreadOwner, ThreadStore};
use crate::{MessageId, ResourceId, ThreadId};

/// The fields of a thread a caller sets when creating or updating it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadFields {
    /// The thread's title.
    pub title: Option<String>,
    /// The thread's metadata as JSON text, stored as given.
    pub metadata: Option<String>,
}

impl ThreadFields {
    /// Fields with only a title.
    pub fn titled(title: impl Into<String>) -> Self {
        Self {
            title: Some(title.into()),
            metadata: None,
        }
    }
}

/// A thread as the store holds it after a write (or as the in-memory store reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRecord {
    /// The thread id.
    pub id: ThreadId,
    /// The owner; always the caller's resource for a thread a write returns.
    pub resource: Option<ResourceId>,
    /// The title.
    pub title: Option<String>,
    /// The metadata as JSON text.
    pub metadata: Option<String>,
    /// When the thread was created (RFC 3339 text, as the writer gave it).
    pub created_at: Option<String>,
    /// When the thread was last written.
    pub updated_at: Option<String>,
}

/// A message to save (insert, or overwrite one of the caller's own by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The message id, chosen by the client or the server.
    pub id: MessageId,
    /// The thread it goes into: the caller's, or created for the caller.
    pub thread: ThreadId,
    /// `user`, `assistant`, ...
    pub role: String,
    /// Mastra's message format tag (`v2`).
    pub kind: String,
    /// The content as text (a JSON document or a plain string).
    pub content: String,
    /// When the message was created (RFC 3339 text).
    pub created_at: String,
}

/// A message as the in-memory store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// The message id.
    pub id: MessageId,
    /// The thread it lives in, `None` for a message without a thread.
    pub thread: Option<ThreadId>,
    /// The resource the message was saved for.
    pub resource: Option<ResourceId>,
    /// The role.
    pub role: Option<String>,
    /// Mastra's message format tag.
    pub kind: Option<String>,
    /// The content.
    pub content: Option<String>,
    /// When the message was created.
    pub created_at: Option<String>,
}

/// Writes that happen only where the caller owns what they touch; each is one statement or one
/// transaction, all or nothing.
///
/// A shared thread (no owner) is never written through these methods: claiming or changing it
/// is refused with [`GuardError::UnownedThread`], even where the guard lets everyone read it.
/// Timestamps come from the caller (`at`, RFC 3339 text) so that every backend stores the same.
///
/// Text besides ids (titles, metadata, roles, content, timestamps) is stored as given, except
/// U+0000: PostgreSQL's `text` cannot hold it, so that every store answers alike every write
/// first refuses text containing it with [`GuardError::Store`]`(`[`StoreError::InvalidInput`]`)`
/// (400) and writes nothing. A JSON document escapes NUL as `\u0000`, so JSON-valued fields
/// hold it losslessly. A value the database itself refuses (a constraint, a column too narrow)
/// is reported the same way: never as an outage.
pub trait ThreadWrites: ThreadStore {
    /// Creates `thread` for `scope`, or — when it is already `scope`'s — replaces its title and
    /// metadata (Mastra's upsert). Returns the thread as stored.
    ///
    /// # Errors
    ///
    /// [`GuardError::ForeignThread`] when another resource owns the id,
    /// [`GuardError::UnownedThread`] for a shared thread (nothing is written in either case), or
    /// [`GuardError::Store`].
    fn create_thread(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
        fields: &ThreadFields,
        at: &str,
    ) -> impl Future<Output = Result<ThreadRecord, GuardError>> + Send;

    /// Changes the title and/or metadata of `scope`'s thread (a `None` field keeps its value);
    /// the owner never changes. Returns the thread as stored.
    ///
    /// # Errors
    ///
    /// [`GuardError::ThreadNotFound`], [`GuardError::ForeignThread`],
    /// [`GuardError::UnownedThread`] (nothing written), or [`GuardError::Store`].
    fn update_thread(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
        fields: &ThreadFields,
        at: &str,
    ) -> impl Future<Output = Result<ThreadRecord, GuardError>> + Send;

    /// Deletes `scope`'s thread and every message in it.
    ///
    /// # Errors
    ///
    /// [`GuardError::ThreadNotFound`], [`GuardError::ForeignThread`],
    /// [`GuardError::UnownedThread`] (nothing deleted), or [`GuardError::Store`].
    fn delete_thread(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
    ) -> impl Future<Output = Result<(), GuardError>> + Send;

    /// Saves `messages` for `scope`, all or none: each target thread is `scope`'s or is created
    /// for `scope` (its `updatedAt` becomes `at`); each message id is new, or already `scope`'s
    /// and is then overwritten — and moved, when it names another of `scope`'s threads. A later
    /// entry with the same id wins.
    ///
    /// # Errors
    ///
    /// [`GuardError::ForeignThread`] when a target thread, or the thread an existing message
    /// lives in, is another resource's; [`GuardError::UnownedThread`] for a shared one;
    /// [`GuardError::UnverifiableMessage`] for an existing message without a (live) thread; or
    /// [`GuardError::Store`]. Nothing is written on any error.
    fn save_messages(
        &self,
        scope: &ResourceId,
        messages: &[NewMessage],
        at: &str,
    ) -> impl Future<Output = Result<(), GuardError>> + Send;

    /// Deletes those of `messages` that live in `scope`'s threads, in one statement, and
    /// returns how many were deleted. Unknown ids and other resources' messages are left alone
    /// and not counted.
    ///
    /// # Errors
    ///
    /// [`GuardError::Store`] when the backend fails.
    fn delete_messages(
        &self,
        scope: &ResourceId,
        messages: &[MessageId],
    ) -> impl Future<Output = Result<u64, GuardError>> + Send;
}

/// Why a write on a thread with this owner is refused, in the guard's words; `None` when the
/// owner is `scope`. `missing` is the refusal for a thread that does not exist.
pub(crate) fn refusal(
    scope: &ResourceId,
    owner: &ThreadOwner,
    missing: GuardError,
) -> Option<GuardError> {
    match owner {
        ThreadOwner::Owned(owner) if owner == scope => None,
        ThreadOwner::Owned(_) => Some(GuardError::ForeignThread),
        ThreadOwner::Unowned => Some(GuardError::UnownedThread),
        ThreadOwner::Missing => Some(missing),
    }
}

/// Refuses text PostgreSQL's `text` cannot hold, for every store alike; `what` names the field
/// in the (log-only) detail.
fn storable(what: &str, text: &str) -> Result<(), GuardError> {
    if text.contains('\0') {
        return Err(GuardError::Store(StoreError::InvalidInput(format!(
            "{what} contains U+0000, which PostgreSQL text cannot hold"
        ))));
    }
    Ok(())
}

/// Checks the text a thread write stores: title, metadata and the timestamp.
pub(crate) fn storable_fields(fields: &ThreadFields, at: &str) -> Result<(), GuardError> {
    if let Some(title) = &fields.title {
        storable("title", title)?;
    }
    if let Some(metadata) = &fields.metadata {
        storable("metadata", metadata)?;
    }
    storable("timestamp", at)
}

/// Checks the text a message write stores, for every message of the batch.
pub(crate) fn storable_messages(messages: &[NewMessage], at: &str) -> Result<(), GuardError> {
    storable("timestamp", at)?;
    for message in messages {
        storable("message role", &message.role)?;
        storable("message type", &message.kind)?;
        storable("message content", &message.content)?;
        storable("message timestamp", &message.created_at)?;
    }
    Ok(())
}

/// The distinct messages of a batch, sorted by id, the last entry of an id winning.
///
/// One order for every writer means two transactions never lock the same rows in opposite
/// orders, which on PostgreSQL would be a deadlock that one of them loses.
pub(crate) fn last_per_id(messages: &[NewMessage]) -> Vec<&NewMessage> {
    let mut by_id = std::collections::BTreeMap::new();
    for message in messages {
        by_id.insert(message.id.as_str(), message);
    }
    by_id.into_values().collect()
}

/// The distinct target threads of a batch, sorted (same reason as [`last_per_id`]).
pub(crate) fn target_threads(messages: &[NewMessage]) -> Vec<&ThreadId> {
    let set: std::collections::BTreeSet<&ThreadId> = messages.iter().map(|m| &m.thread).collect();
    set.into_iter().collect()
}
