//! [`ThreadWrites`] for [`SqlThreadStore`]: the owner check and the write in one transaction.
//!
//! Every write is one transaction that begins by writing, on one connection:
//!
//! - **SQLite** — `BEGIN IMMEDIATE` takes the database's single write lock before the first
//!   statement (waiting up to the connection's busy timeout, sqlx's default 5 s), so write
//!   transactions run one after another and each sees the latest committed data. A plain
//!   (deferred) `BEGIN` would start as a reader and could fail with `SQLITE_BUSY` when it later
//!   tries to write while another connection holds the lock: under the `Any` pool's several
//!   connections that is a spurious error, not a retryable wait.
//! - **PostgreSQL** — `SERIALIZABLE` (serializable snapshot isolation), retried with a short,
//!   growing, jittered backoff on serialization failure (`40001`) and deadlock (`40P01`), at most
//!   [`MAX_ATTEMPTS`] times, then 503. The owner check of a message write reads one row (the
//!   thread) and writes another (the message); under `READ COMMITTED` that read comes from the
//!   statement's snapshot and a concurrent delete-and-recreate of the thread could slip between.
//!   Serializable isolation makes every interleaving equal to some serial order — the guarantee
//!   SQLite's single writer gives — so one argument covers both backends.
//!
//! Inside the transaction each check is part of the write itself: `INSERT .. ON CONFLICT (id) DO
//! UPDATE .. WHERE <owner is the caller> RETURNING`, `UPDATE` / `DELETE .. WHERE id = $ AND
//! <owner> = $`. No row back means nothing was written; only then is the owner read (in the same
//! transaction) to say why. The writes need Mastra's other columns (`title`, `metadata`,
//! `createdAt`, `updatedAt`; `content`, `role`, `type`, `createdAt`, `resourceId`), as
//! [`SqlThreadStore::create_schema`] makes them, and a unique key on each id column.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Any, AnyPool, Transaction};

use super::read::{MessageRow, owner_from};
use super::schema::{Queries, TableNames};
use super::{SqlThreadStore, classify};
use crate::guard::check::GuardError;
use crate::guard::store::{StoreError, ThreadOwner};
use crate::guard::write::{
    NewMessage, ThreadFields, ThreadRecord, ThreadWrites, last_per_id, refusal, storable_fields,
    storable_messages, target_threads,
};
use crate::{MessageId, ResourceId, ThreadId};

/// How often a PostgreSQL write is tried before a serialization failure becomes 503.
pub(super) const MAX_ATTEMPTS: u32 = 8;

/// The SQL dialect of the pool: the writes begin, retry and bind id lists differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    Sqlite,
    Postgres,
    /// A driver the writes do not support; reads still work.
    Other,
}

impl Backend {
    pub(super) fn of(pool: &AnyPool) -> Self {
        match pool.connect_options().database_url.scheme() {
            "sqlite" => Self::Sqlite,
            "postgres" | "postgresql" => Self::Postgres,
            _ => Self::Other,
        }
    }

    fn begin(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => Some("BEGIN IMMEDIATE"),
            Self::Postgres => Some("BEGIN ISOLATION LEVEL SERIALIZABLE"),
            Self::Other => None,
        }
    }

    fn retryable(self, err: &sqlx::Error) -> bool {
        self == Self::Postgres
            && err
                .as_database_error()
                .and_then(|db| db.code())
                .is_some_and(|code| code == "40001" || code == "40P01")
    }
}

/// The SQL text of the writes, built once from validated names.
#[derive(Debug)]
pub(super) struct WriteQueries {
    create_thread: String,
    update_thread: String,
    delete_thread: String,
    delete_thread_messages: String,
    touch_thread: String,
    save_message: String,
    delete_messages: String,
    read_thread: String,
}

impl WriteQueries {
    pub(super) fn new(t: &TableNames, backend: Backend) -> Self {
        let threads = t.threads.quoted();
        let id = t.thread_id.quoted();
        let owner = t.thread_resource.quoted();
        let messages = t.messages.quoted();
        let message_id = t.message_id.quoted();
        let message_thread = t.message_thread.quoted();
        let returning =
            format!(r#"RETURNING {id}, {owner}, "title", "metadata", "createdAt", "updatedAt""#);
        // Placeholders first appear in ascending order everywhere: SQLite numbers `$N`
        // parameters by name, but keeping the order also keeps the statements easy to audit.
        let delete_ids = match backend {
            Backend::Postgres => "SELECT jsonb_array_elements_text($1::jsonb)",
            Backend::Sqlite | Backend::Other => "SELECT value FROM json_each($1)",
        };
        Self {
            create_thread: format!(
                r#"INSERT INTO {threads} ({id}, {owner}, "title", "metadata", "createdAt", "updatedAt")
                VALUES ($1, $2, $3, $4, $5, $5)
                ON CONFLICT ({id}) DO UPDATE SET "title" = excluded."title",
                    "metadata" = excluded."metadata", "updatedAt" = excluded."updatedAt"
                WHERE {threads}.{owner} = excluded.{owner} {returning}"#
            ),
            update_thread: format!(
                r#"UPDATE {threads} SET "title" = COALESCE($1, "title"),
                    "metadata" = COALESCE($2, "metadata"), "updatedAt" = $3
                WHERE {id} = $4 AND {owner} = $5 {returning}"#
            ),
            delete_thread: format!("DELETE FROM {threads} WHERE {id} = $1 AND {owner} = $2"),
            delete_thread_messages: format!("DELETE FROM {messages} WHERE {message_thread} = $1"),
            touch_thread: format!(
                r#"INSERT INTO {threads} ({id}, {owner}, "createdAt", "updatedAt")
                VALUES ($1, $2, $3, $3)
                ON CONFLICT ({id}) DO UPDATE SET "updatedAt" = excluded."updatedAt"
                WHERE {threads}.{owner} = excluded.{owner} RETURNING {id}"#
            ),
            save_message: format!(
                r#"INSERT INTO {messages}
                    ({message_id}, {message_thread}, "content", "role", "type", "createdAt", "resourceId")
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT ({message_id}) DO UPDATE SET {message_thread} = excluded.{message_thread},
                    "content" = excluded."content", "role" = excluded."role",
                    "type" = excluded."type", "createdAt" = excluded."createdAt",
                    "resourceId" = excluded."resourceId"
                WHERE EXISTS (SELECT 1 FROM {threads} AS t
                    WHERE t.{id} = {messages}.{message_thread} AND t.{owner} = $7)
                RETURNING {message_id}"#
            ),
            read_thread: format!(
                r#"SELECT {id}, {owner}, "title", "metadata", "createdAt", "updatedAt"
                FROM {threads} WHERE {id} = $1"#
            ),
            // One statement for any number of ids: they travel as one JSON array parameter, so
            // no bind-parameter limit applies and the database runs one semi-join.
            delete_messages: format!(
                "DELETE FROM {messages} WHERE {message_id} IN ({delete_ids}) \
                 AND {message_thread} IN (SELECT {id} FROM {threads} WHERE {owner} = $2)"
            ),
        }
    }
}

type Tx = Transaction<'static, Any>;

/// The columns a thread write returns: id, owner, title, metadata, createdAt, updatedAt.
type ThreadRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// How one attempt ended, when it did not succeed.
enum Failure {
    /// The answer: a refusal (nothing was written) or a store error that retrying cannot fix.
    Final(GuardError),
    /// A database error, retried when the backend says it is transient.
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for Failure {
    fn from(err: sqlx::Error) -> Self {
        Self::Sql(err)
    }
}

fn store_error(detail: impl Into<String>) -> GuardError {
    GuardError::Store(StoreError::Backend(detail.into()))
}

/// Up to `2^attempt` ms, so two writers that collided do not collide again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let cap_micros = 1000u64 << attempt.min(7);
    Duration::from_micros(u64::from(nanos) % cap_micros + 100)
}

fn record_from(row: ThreadRow) -> Result<ThreadRecord, Failure> {
    let (id, owner, title, metadata, created_at, updated_at) = row;
    let invalid = || Failure::Final(store_error("invalid id in a written thread row"));
    Ok(ThreadRecord {
        id: ThreadId::new(&id).map_err(|_| invalid())?,
        resource: owner
            .map(|owner| ResourceId::new(owner).map_err(|_| invalid()))
            .transpose()?,
        title,
        metadata,
        created_at,
        updated_at,
    })
}

impl crate::guard::store::ThreadRecords for SqlThreadStore {
    async fn thread_record(&self, thread: &ThreadId) -> Result<Option<ThreadRecord>, StoreError> {
        let row: Option<ThreadRow> = sqlx::query_as(&self.queries.writes.read_thread)
            .bind(thread.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| classify("thread store query failed", &err))?;
        let Some(row) = row else { return Ok(None) };
        // A row for another id: the database compares ids loosely (a collation); fail closed,
        // as the ownership lookup does.
        if row.0 != thread.as_str() {
            return Err(StoreError::Backend(
                "thread id matched a row with a different id (collation)".into(),
            ));
        }
        match record_from(row) {
            Ok(record) => Ok(Some(record)),
            Err(_) => Err(StoreError::Backend("invalid id in a thread row".into())),
        }
    }
}

impl SqlThreadStore {
    /// Runs `attempt` in a write transaction, again while PostgreSQL reports a transient
    /// conflict. `attempt` commits on success; dropping an uncommitted transaction rolls it back.
    async fn transaction<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, GuardError>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let backend = self.queries.backend;
        let Some(begin) = backend.begin() else {
            return Err(store_error(
                "owner-conditional writes need SQLite or PostgreSQL",
            ));
        };
        let mut tried = 1;
        loop {
            let outcome = match self.pool.begin_with(begin).await {
                Ok(tx) => attempt(tx).await,
                Err(err) => Err(Failure::Sql(err)),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(Failure::Final(err)) => return Err(err),
                Err(Failure::Sql(err)) if tried < MAX_ATTEMPTS && backend.retryable(&err) => {
                    tokio::time::sleep(backoff(tried)).await;
                    tried += 1;
                }
                // A value the database refused (a constraint, NUL in text) is the request's
                // fault and answers 400; anything else is the backend's and answers 503.
                Err(Failure::Sql(err)) => {
                    return Err(GuardError::Store(classify(&format!("{what} failed"), &err)));
                }
            }
        }
    }

    /// The owner of `thread` as this transaction sees it.
    async fn owner_in(&self, tx: &mut Tx, thread: &ThreadId) -> Result<ThreadOwner, Failure> {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as(Queries::for_len(&self.queries.thread_owners, 1))
                .bind(thread.as_str())
                .fetch_all(&mut **tx)
                .await?;
        let any_row = !rows.is_empty();
        match rows.into_iter().find(|(id, _)| id == thread.as_str()) {
            Some((id, owner)) => {
                owner_from(Some(id), owner).map_err(|e| Failure::Final(GuardError::Store(e)))
            }
            // A row under another spelling: the id column compares loosely (a collation), as
            // the reads refuse it too.
            None if any_row => Err(Failure::Final(store_error(
                "thread id matched a row with a different id (collation)",
            ))),
            None => Ok(ThreadOwner::Missing),
        }
    }

    /// Nothing was written to `thread`: rolls back and says why, in the guard's words.
    async fn refuse_thread(&self, mut tx: Tx, scope: &ResourceId, thread: &ThreadId) -> Failure {
        let owner = match self.owner_in(&mut tx, thread).await {
            Ok(owner) => owner,
            Err(failure) => return failure,
        };
        // Nothing to undo; dropping the transaction would roll back as well.
        let _ = tx.rollback().await;
        Failure::Final(
            refusal(scope, &owner, GuardError::ThreadNotFound)
                .unwrap_or_else(|| store_error("a conditional write matched no row of its owner")),
        )
    }

    /// Message `id` exists and was not overwritten: rolls back and says why.
    async fn refuse_message(&self, mut tx: Tx, scope: &ResourceId, id: &str) -> Failure {
        let rows: Result<Vec<MessageRow>, _> =
            sqlx::query_as(Queries::for_len(&self.queries.message_threads, 1))
                .bind(id)
                .fetch_all(&mut *tx)
                .await;
        let row = match rows {
            Ok(rows) => rows.into_iter().find(|row| row.0 == id),
            Err(err) => return Failure::Sql(err),
        };
        let _ = tx.rollback().await;
        let refused = match row {
            Some((_, Some(thread), joined, owner)) if !thread.is_empty() => {
                match owner_from(joined, owner) {
                    Ok(owner) => refusal(scope, &owner, GuardError::UnverifiableMessage),
                    Err(err) => Some(GuardError::Store(err)),
                }
            }
            _ => Some(GuardError::UnverifiableMessage),
        };
        Failure::Final(refused.unwrap_or(GuardError::UnverifiableMessage))
    }

    /// Commits a thread write that returned `row`, or refuses when it returned none.
    async fn settle(
        &self,
        tx: Tx,
        scope: &ResourceId,
        thread: &ThreadId,
        row: Option<ThreadRow>,
    ) -> Result<ThreadRecord, Failure> {
        match row {
            Some(row) => {
                let record = record_from(row)?;
                tx.commit().await?;
                Ok(record)
            }
            None => Err(self.refuse_thread(tx, scope, thread).await),
        }
    }

    async fn create_once(
        &self,
        mut tx: Tx,
        scope: &ResourceId,
        thread: &ThreadId,
        fields: &ThreadFields,
        at: &str,
    ) -> Result<ThreadRecord, Failure> {
        let row: Option<ThreadRow> = sqlx::query_as(&self.queries.writes.create_thread)
            .bind(thread.as_str())
            .bind(scope.as_str())
            .bind(fields.title.as_deref())
            .bind(fields.metadata.as_deref())
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?;
        self.settle(tx, scope, thread, row).await
    }

    async fn update_once(
        &self,
        mut tx: Tx,
        scope: &ResourceId,
        thread: &ThreadId,
        fields: &ThreadFields,
        at: &str,
    ) -> Result<ThreadRecord, Failure> {
        let row: Option<ThreadRow> = sqlx::query_as(&self.queries.writes.update_thread)
            .bind(fields.title.as_deref())
            .bind(fields.metadata.as_deref())
            .bind(at)
            .bind(thread.as_str())
            .bind(scope.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        self.settle(tx, scope, thread, row).await
    }

    async fn delete_once(
        &self,
        mut tx: Tx,
        scope: &ResourceId,
        thread: &ThreadId,
    ) -> Result<(), Failure> {
        let deleted = sqlx::query(&self.queries.writes.delete_thread)
            .bind(thread.as_str())
            .bind(scope.as_str())
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(self.refuse_thread(tx, scope, thread).await);
        }
        // The thread row is gone (and locked) in this transaction: no one else can own the id
        // before it commits, so these messages are all the caller's.
        sqlx::query(&self.queries.writes.delete_thread_messages)
            .bind(thread.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn save_once(
        &self,
        mut tx: Tx,
        scope: &ResourceId,
        messages: &[NewMessage],
        at: &str,
    ) -> Result<(), Failure> {
        for thread in target_threads(messages) {
            let touched: Option<(String,)> = sqlx::query_as(&self.queries.writes.touch_thread)
                .bind(thread.as_str())
                .bind(scope.as_str())
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
            if touched.is_none() {
                return Err(self.refuse_thread(tx, scope, thread).await);
            }
        }
        for message in last_per_id(messages) {
            let saved: Option<(String,)> = sqlx::query_as(&self.queries.writes.save_message)
                .bind(message.id.as_str())
                .bind(message.thread.as_str())
                .bind(message.content.as_str())
                .bind(message.role.as_str())
                .bind(message.kind.as_str())
                .bind(message.created_at.as_str())
                .bind(scope.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if saved.is_none() {
                return Err(self.refuse_message(tx, scope, message.id.as_str()).await);
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_messages_once(
        &self,
        mut tx: Tx,
        scope: &ResourceId,
        ids: &str,
    ) -> Result<u64, Failure> {
        let deleted = sqlx::query(&self.queries.writes.delete_messages)
            .bind(ids)
            .bind(scope.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected())
    }

    async fn save_messages_of(
        &self,
        scope: &ResourceId,
        messages: &[NewMessage],
        at: &str,
    ) -> Result<(), GuardError> {
        if messages.is_empty() {
            return Ok(());
        }
        storable_messages(messages, at)?;
        self.transaction("save_messages", |tx| {
            self.save_once(tx, scope, messages, at)
        })
        .await
    }

    async fn delete_messages_of(
        &self,
        scope: &ResourceId,
        messages: &[MessageId],
    ) -> Result<u64, GuardError> {
        if messages.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = messages.iter().map(MessageId::as_str).collect();
        let ids = serde_json::to_string(&ids)
            .map_err(|err| store_error(format!("cannot encode message ids: {err}")))?;
        self.transaction("delete_messages", |tx| {
            self.delete_messages_once(tx, scope, &ids)
        })
        .await
    }
}

impl ThreadWrites for SqlThreadStore {
    async fn create_thread(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
        fields: &ThreadFields,
        at: &str,
    ) -> Result<ThreadRecord, GuardError> {
        storable_fields(fields, at)?;
        self.transaction("create_thread", move |tx| {
            self.create_once(tx, scope, thread, fields, at)
        })
        .await
    }

    async fn update_thread(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
        fields: &ThreadFields,
        at: &str,
    ) -> Result<ThreadRecord, GuardError> {
        storable_fields(fields, at)?;
        self.transaction("update_thread", move |tx| {
            self.update_once(tx, scope, thread, fields, at)
        })
        .await
    }

    fn delete_thread(
        &self,
        scope: &ResourceId,
        thread: &ThreadId,
    ) -> impl Future<Output = Result<(), GuardError>> + Send {
        self.transaction("delete_thread", move |tx| {
            self.delete_once(tx, scope, thread)
        })
    }

    fn save_messages(
        &self,
        scope: &ResourceId,
        messages: &[NewMessage],
        at: &str,
    ) -> impl Future<Output = Result<(), GuardError>> + Send {
        self.save_messages_of(scope, messages, at)
    }

    fn delete_messages(
        &self,
        scope: &ResourceId,
        messages: &[MessageId],
    ) -> impl Future<Output = Result<u64, GuardError>> + Send {
        self.delete_messages_of(scope, messages)
    }
}
