//! [`ThreadStore`] for [`SqlThreadStore`]: batched reads of thread owners and message threads,
//! failing closed on rows the guard cannot trust.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;

use super::schema::{MAX_IDS_PER_QUERY, Queries};
use super::{SqlThreadStore, classify};
use crate::guard::{MessageThread, StoreError, ThreadOwner, ThreadStore};
use crate::{MessageId, ResourceId, ThreadId};

/// A row of the message query: the message id, its thread column, the joined thread's id (NULL
/// when no thread row matched) and that thread's owner column.
pub(super) type MessageRow = (String, Option<String>, Option<String>, Option<String>);

impl SqlThreadStore {
    /// Runs the statement of the right size (from `statements`) over `ids` in chunks, returning
    /// every row.
    async fn fetch_chunked<Row>(
        &self,
        statements: &[String],
        ids: &[&str],
    ) -> Result<Vec<Row>, StoreError>
    where
        Row: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let mut rows = Vec::new();
        for chunk in ids.chunks(MAX_IDS_PER_QUERY) {
            // Padding to a power of two (repeating an id) keeps to ten distinct statements, so
            // each connection's prepared-statement cache is not churned by every batch size.
            let Some(&last) = chunk.last() else { continue };
            let len = chunk.len().next_power_of_two();
            let mut query = sqlx::query_as::<_, Row>(Queries::for_len(statements, len));
            for &id in chunk
                .iter()
                .chain(std::iter::repeat_n(&last, len - chunk.len()))
            {
                query = query.bind(id);
            }
            rows.extend(
                query
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|err| classify("thread store query failed", &err))?,
            );
        }
        Ok(rows)
    }

    async fn lookup_thread_owners(
        &self,
        threads: &[ThreadId],
    ) -> Result<HashMap<ThreadId, ThreadOwner>, StoreError> {
        let requested: HashMap<&str, &ThreadId> = threads.iter().map(|t| (t.as_str(), t)).collect();
        if requested.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = requested.keys().copied().collect();
        let rows: Vec<(String, Option<String>)> = self
            .fetch_chunked(&self.queries.thread_owners, &ids)
            .await?;

        let mut found = HashMap::with_capacity(rows.len());
        for (id, resource) in rows {
            // A row for an id that was not asked for means the database compares ids loosely
            // (a case-insensitive or padding collation) while handlers would act on that row:
            // fail closed rather than report the thread as missing.
            let Some(&thread) = requested.get(id.as_str()) else {
                return Err(StoreError::Backend(
                    "thread id matched a row with a different id (collation)".into(),
                ));
            };
            insert_consistent(&mut found, thread.clone(), owner_from(Some(id), resource)?)?;
        }
        Ok(found)
    }

    async fn lookup_message_threads(
        &self,
        messages: &[MessageId],
    ) -> Result<HashMap<MessageId, MessageThread>, StoreError> {
        let requested: HashMap<&str, &MessageId> =
            messages.iter().map(|m| (m.as_str(), m)).collect();
        if requested.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = requested.keys().copied().collect();
        let rows: Vec<MessageRow> = self
            .fetch_chunked(&self.queries.message_threads, &ids)
            .await?;

        let mut found = HashMap::with_capacity(rows.len());
        for (id, thread, joined_thread, resource) in rows {
            let Some(&message) = requested.get(id.as_str()) else {
                return Err(StoreError::Backend(
                    "message id matched a row with a different id (collation)".into(),
                ));
            };
            let entry = match thread.filter(|t| !t.is_empty()) {
                None => MessageThread {
                    thread: None,
                    owner: ThreadOwner::Missing,
                },
                Some(thread) => MessageThread {
                    thread: Some(ThreadId::new(&thread).map_err(|_| {
                        StoreError::Backend("invalid thread id in the message store".into())
                    })?),
                    owner: owner_from(joined_thread, resource)?,
                },
            };
            insert_consistent(&mut found, message.clone(), entry)?;
        }
        Ok(found)
    }
}

impl ThreadStore for SqlThreadStore {
    fn thread_owners(
        &self,
        threads: &[ThreadId],
    ) -> impl Future<Output = Result<HashMap<ThreadId, ThreadOwner>, StoreError>> + Send {
        self.lookup_thread_owners(threads)
    }

    fn message_threads(
        &self,
        messages: &[MessageId],
    ) -> impl Future<Output = Result<HashMap<MessageId, MessageThread>, StoreError>> + Send {
        self.lookup_message_threads(messages)
    }
}

/// The owner a thread row says: `thread` is the row's id (`None` when the join found no row).
pub(super) fn owner_from(
    thread: Option<String>,
    resource: Option<String>,
) -> Result<ThreadOwner, StoreError> {
    if thread.is_none() {
        return Ok(ThreadOwner::Missing);
    }
    match resource.filter(|r| !r.is_empty()) {
        None => Ok(ThreadOwner::Unowned),
        // An owner we cannot represent must not become "unowned" (shared): fail closed.
        Some(resource) => ResourceId::new(resource)
            .map(ThreadOwner::Owned)
            .map_err(|_| StoreError::Backend("invalid resource id in the thread store".into())),
    }
}

/// Inserts `value`, refusing an id that several rows map to different answers (no unique key).
fn insert_consistent<K, V>(map: &mut HashMap<K, V>, key: K, value: V) -> Result<(), StoreError>
where
    K: std::hash::Hash + Eq,
    V: PartialEq,
{
    match map.entry(key) {
        Entry::Vacant(slot) => {
            slot.insert(value);
            Ok(())
        }
        Entry::Occupied(slot) if *slot.get() == value => Ok(()),
        Entry::Occupied(_) => Err(StoreError::Backend(
            "an id matches several rows that disagree about the owner".into(),
        )),
    }
}
