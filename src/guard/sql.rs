//! [`SqlThreadStore`]: thread ownership read from SQLite or PostgreSQL, in Mastra's schema by
//! default.
//!
//! One implementation serves both databases through [`sqlx::AnyPool`]. The default
//! [`TableNames`] are Mastra's storage tables (`mastra_threads` with `id` and `"resourceId"`,
//! `mastra_messages` with `id` and `thread_id`), so a Rust service can guard a database it
//! shares with a Mastra deployment. Each [`ThreadStore`] call is one query per 512 distinct ids
//! (a `LEFT JOIN` for messages), never one per id.
//!
//! The owner-conditional writes (`write`) decide and write in one transaction; that module's
//! docs say which isolation each backend relies on and why.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use super::{MessageThread, StoreError, ThreadOwner, ThreadStore};
use crate::{ConfigError, MessageId, ResourceId, ThreadId};

mod write;

use write::{Backend, WriteQueries};

/// The most ids bound in one query. SQLite before 3.32 allows 999 parameters, PostgreSQL 65535.
const MAX_IDS_PER_QUERY: usize = 512;

/// How long [`SqlThreadStore::connect`]'s pool waits for a connection before the query fails
/// (503): 2 s, under the guard's [`DEFAULT_STORE_TIMEOUT`](super::DEFAULT_STORE_TIMEOUT) of 5 s.
/// sqlx's own default is 30 s, and it keeps retrying a refused connection until then, so a
/// handler query on a database that is down would otherwise hang for half a minute.
pub const DEFAULT_POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest table or column name accepted: PostgreSQL's identifier limit (NAMEDATALEN - 1).
const MAX_IDENTIFIER_LEN: usize = 63;

/// A plain SQL identifier, safe to put between double quotes.
#[derive(Clone, PartialEq, Eq)]
struct Identifier(Arc<str>);

impl Identifier {
    fn new(setting: &'static str, name: &str) -> Result<Self, ConfigError> {
        let mut chars = name.chars();
        let plain = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= MAX_IDENTIFIER_LEN;
        if !plain {
            return Err(ConfigError::InvalidValue {
                setting,
                reason: format!(
                    "{name:?} is not a plain SQL identifier: use 1 to {MAX_IDENTIFIER_LEN} ASCII \
                     letters, digits or '_', not starting with a digit"
                ),
            });
        }
        Ok(Self(Arc::from(name)))
    }

    fn mastra(name: &'static str) -> Self {
        Self(Arc::from(name))
    }

    /// The name between double quotes: the grammar above leaves nothing to escape.
    fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Where [`SqlThreadStore`] finds threads and messages: two tables and the four columns it reads.
///
/// The default is Mastra's storage schema: `mastra_threads` (`id`, `"resourceId"`) and
/// `mastra_messages` (`id`, `thread_id`). Every name is checked when it is set to be a plain
/// identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 63 characters) and is always double-quoted in
/// SQL, so it must match the stored name exactly, case included (PostgreSQL folds *unquoted*
/// names to lowercase when a table is created). Tables in another PostgreSQL schema (Mastra's
/// `schemaName`) are reached through the connection's `search_path`, for example
/// `postgres://host/db?options=-c%20search_path%3Dmastra`.
///
/// ```
/// use tower_scope::guard::TableNames;
///
/// let tables = TableNames::default()
///     .threads("conversations")?
///     .thread_resource_column("owner")?
///     .messages("chat_messages")?
///     .message_thread_column("conversation_id")?;
/// assert!(TableNames::default().threads("threads; DROP TABLE users").is_err());
/// # Ok::<(), tower_scope::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    threads: Identifier,
    thread_id: Identifier,
    thread_resource: Identifier,
    messages: Identifier,
    message_id: Identifier,
    message_thread: Identifier,
}

impl Default for TableNames {
    fn default() -> Self {
        Self {
            threads: Identifier::mastra("mastra_threads"),
            thread_id: Identifier::mastra("id"),
            thread_resource: Identifier::mastra("resourceId"),
            messages: Identifier::mastra("mastra_messages"),
            message_id: Identifier::mastra("id"),
            message_thread: Identifier::mastra("thread_id"),
        }
    }
}

macro_rules! name_setter {
    ($(#[$doc:meta])* $method:ident, $field:ident, $setting:literal) => {
        $(#[$doc])*
        ///
        /// # Errors
        ///
        /// [`ConfigError::InvalidValue`] when the name is not a plain SQL identifier.
        pub fn $method(mut self, name: &str) -> Result<Self, ConfigError> {
            self.$field = Identifier::new($setting, name)?;
            Ok(self)
        }
    };
}

impl TableNames {
    name_setter!(
        /// The threads table (default `mastra_threads`).
        threads, threads, "threads table"
    );
    name_setter!(
        /// The threads table's id column (default `id`).
        thread_id_column, thread_id, "thread id column"
    );
    name_setter!(
        /// The threads table's owner column (default `resourceId`).
        thread_resource_column, thread_resource, "thread resource column"
    );
    name_setter!(
        /// The messages table (default `mastra_messages`).
        messages, messages, "messages table"
    );
    name_setter!(
        /// The messages table's id column (default `id`).
        message_id_column, message_id, "message id column"
    );
    name_setter!(
        /// The messages table's thread column (default `thread_id`).
        message_thread_column, message_thread, "message thread column"
    );
}

/// The SQL text of every statement the store runs, built once from validated names.
#[derive(Debug)]
struct Queries {
    tables: TableNames,
    backend: Backend,
    writes: WriteQueries,
    /// `thread_owners[k]` binds `2^k` ids.
    thread_owners: Vec<String>,
    /// `message_threads[k]` binds `2^k` ids.
    message_threads: Vec<String>,
}

impl Queries {
    fn new(tables: TableNames, backend: Backend) -> Self {
        let threads = tables.threads.quoted();
        let thread_id = tables.thread_id.quoted();
        let thread_resource = tables.thread_resource.quoted();
        let messages = tables.messages.quoted();
        let message_id = tables.message_id.quoted();
        let message_thread = tables.message_thread.quoted();

        let mut thread_owners = Vec::new();
        let mut message_threads = Vec::new();
        let mut len = 1;
        while len <= MAX_IDS_PER_QUERY {
            let placeholders = (1..=len)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            thread_owners.push(format!(
                "SELECT {thread_id}, {thread_resource} FROM {threads} \
                 WHERE {thread_id} IN ({placeholders})"
            ));
            message_threads.push(format!(
                "SELECT m.{message_id}, m.{message_thread}, t.{thread_id}, t.{thread_resource} \
                 FROM {messages} AS m LEFT JOIN {threads} AS t ON t.{thread_id} = m.{message_thread} \
                 WHERE m.{message_id} IN ({placeholders})"
            ));
            len *= 2;
        }
        Self {
            writes: WriteQueries::new(&tables, backend),
            tables,
            backend,
            thread_owners,
            message_threads,
        }
    }

    /// The statement for `len` ids (`len` a power of two, at most [`MAX_IDS_PER_QUERY`]).
    fn for_len(statements: &[String], len: usize) -> &str {
        &statements[len.trailing_zeros() as usize]
    }

    fn create_schema(&self) -> [String; 3] {
        let t = &self.tables;
        let threads = table_ddl(
            &t.threads,
            &t.thread_id,
            &[&t.thread_resource],
            &["title", "metadata", "createdAt", "updatedAt"],
        );
        let messages = table_ddl(
            &t.messages,
            &t.message_id,
            &[&t.message_thread],
            &["content", "role", "type", "createdAt", "resourceId"],
        );
        let mut index = format!("{}_{}_idx", t.messages.0, t.message_thread.0);
        // PostgreSQL would cut a longer name itself; cutting here keeps both databases alike.
        index.truncate(MAX_IDENTIFIER_LEN);
        let index = format!(
            "CREATE INDEX IF NOT EXISTS \"{index}\" ON {} ({})",
            t.messages.quoted(),
            t.message_thread.quoted()
        );
        [threads, messages, index]
    }
}

/// `CREATE TABLE IF NOT EXISTS` with a TEXT primary key, the configured TEXT columns, and
/// Mastra's other columns (nullable TEXT) unless a configured column already has that name.
fn table_ddl(
    table: &Identifier,
    id: &Identifier,
    configured: &[&Identifier],
    mastra_extra: &[&'static str],
) -> String {
    let mut columns = vec![format!("{} TEXT PRIMARY KEY", id.quoted())];
    let mut seen: Vec<&str> = vec![&id.0];
    for column in configured {
        if !seen.contains(&&*column.0) {
            seen.push(&column.0);
            columns.push(format!("{} TEXT", column.quoted()));
        }
    }
    for &column in mastra_extra {
        if !seen.contains(&column) {
            seen.push(column);
            columns.push(format!("\"{column}\" TEXT"));
        }
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        table.quoted(),
        columns.join(", ")
    )
}

/// A row of the message query: the message id, its thread column, the joined thread's id (NULL
/// when no thread row matched) and that thread's owner column.
type MessageRow = (String, Option<String>, Option<String>, Option<String>);

/// A [`ThreadStore`] and [`ThreadWrites`](super::ThreadWrites) on SQLite or PostgreSQL through a
/// [`sqlx::AnyPool`]. Cloning shares the pool.
///
/// Its reads report whatever the tables say; its writes are owner-conditional, each one
/// transaction (`BEGIN IMMEDIATE` on SQLite, `SERIALIZABLE` with retry on PostgreSQL; see
/// [`ThreadWrites`](super::ThreadWrites) for what each write guarantees).
///
/// # Writes under concurrency
///
/// - **SQLite** has one writer at a time: each write transaction takes the write lock first
///   (`BEGIN IMMEDIATE`, waiting up to the busy timeout, 5 s by default), so its owner check
///   and its write see the same, latest data. A deferred `BEGIN` could fail with `SQLITE_BUSY`
///   when several pooled connections upgrade from reading to writing at once.
/// - **PostgreSQL** runs each write `SERIALIZABLE` and retries it (up to 8 attempts, short
///   jittered backoff) on serialization failures and deadlocks; then it reports
///   [`StoreError::Backend`] (503). A message write checks one row and writes another, which
///   `READ COMMITTED` would check against a stale snapshot; serializable isolation makes every
///   interleaving equal to a serial one, as SQLite's single writer does.
///
/// Each check is part of its write (`INSERT .. ON CONFLICT (id) DO UPDATE .. WHERE <owner>`,
/// `UPDATE`/`DELETE .. WHERE <owner>`), so no row changes unless the caller owns it. The writes
/// need a unique key on each id column and Mastra's other columns (`title`, `metadata`,
/// `createdAt`, `updatedAt`; `content`, `role`, `type`, `createdAt`, `resourceId`) as TEXT, as
/// [`create_schema`](Self::create_schema) makes them. Message deletion is one statement for any
/// number of ids (they travel as one JSON array parameter). A thread whose owner column is NULL or
/// empty is [`ThreadOwner::Unowned`]; a message whose thread column is NULL or empty has no
/// thread. A stored owner or thread id that [`ResourceId`] / [`ThreadId`] would refuse (too long,
/// control characters), or one id matching rows that disagree, is reported as
/// [`StoreError::Backend`] so that the guard fails closed (503) instead of guessing.
///
/// The id columns must hold text (`TEXT`, `VARCHAR`): ids are bound as text parameters.
///
/// # Errors
///
/// A database error the request's values caused is [`StoreError::InvalidInput`] (400): a data
/// exception or integrity constraint, PostgreSQL SQLSTATE classes `22` (NUL in text `22021`,
/// value too long `22001`, invalid text representation `22P02`...) and `23` (unique, foreign
/// key, not null, check), SQLite's `SQLITE_CONSTRAINT`, `SQLITE_TOOBIG` and `SQLITE_MISMATCH`.
/// Everything else is [`StoreError::Backend`] (503 with `Retry-After`): I/O, TLS, a closed or
/// exhausted pool, a lost connection, the server shutting down or out of connections,
/// serialization failures past their retries, `SQLITE_BUSY`, a missing table. Ids never cause
/// either: [`ThreadId`] and [`MessageId`] refuse what a database cannot hold before a query.
/// `From<sqlx::Error>` applies the same classification to a handler's own queries.
///
/// ```
/// use tower_scope::ResourceId;
/// use tower_scope::ThreadId;
/// use tower_scope::guard::{SqlThreadStore, ThreadOwner, ThreadStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqlThreadStore::connect("sqlite::memory:").await?;
/// store.create_schema().await?;
/// sqlx::query(r#"INSERT INTO mastra_threads (id, "resourceId") VALUES ('t1', 'user:alice')"#)
///     .execute(store.pool())
///     .await?;
///
/// let owner = store.thread_owner(&ThreadId::new("t1")?).await?;
/// assert_eq!(owner, ThreadOwner::Owned(ResourceId::new("user:alice")?));
/// let owner = store.thread_owner(&ThreadId::new("t2")?).await?;
/// assert_eq!(owner, ThreadOwner::Missing);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqlThreadStore {
    pool: AnyPool,
    queries: Arc<Queries>,
}

impl fmt::Debug for SqlThreadStore {
    // Written by hand so that no connection option (a URL with a password) can ever show up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlThreadStore")
            .field("tables", &self.queries.tables)
            .field("pool_size", &self.pool.size())
            .field("pool_closed", &self.pool.is_closed())
            .finish()
    }
}

impl SqlThreadStore {
    /// Connects to `url` (`sqlite://path?mode=rwc`, `sqlite::memory:`, `postgres://...`) with
    /// Mastra's table names.
    ///
    /// This installs sqlx's default `Any` drivers (once per process). If your program installs
    /// its own set with `sqlx::any::install_drivers`, build the pool yourself and use
    /// [`from_pool`](Self::from_pool). An in-memory SQLite database lives in one connection, so
    /// its pool is held at exactly one connection that is never recycled. The pool waits at
    /// most [`DEFAULT_POOL_ACQUIRE_TIMEOUT`] (2 s) for a connection, so while the database is down or
    /// every connection is stuck (a locked SQLite file) queries fail promptly with
    /// [`StoreError::Backend`] (503) instead of waiting sqlx's default 30 s; a pool of your own
    /// ([`from_pool`](Self::from_pool)) keeps the settings you gave it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the URL is unusable or the database cannot be reached; the
    /// detail never contains the URL's password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let mut options = AnyPoolOptions::new().acquire_timeout(DEFAULT_POOL_ACQUIRE_TIMEOUT);
        if is_sqlite_memory(url) {
            // Each new connection to `sqlite::memory:` opens a new, empty database.
            options = options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = options.connect(url).await.map_err(|err| {
            // Whatever the database said, failing to connect is the backend's, not a request's.
            StoreError::Backend(redact_password(
                url,
                format!("cannot connect to the thread store: {err}"),
            ))
        })?;
        Ok(Self::from_pool(pool))
    }

    /// Uses an existing pool (drivers installed, options chosen by the caller) with Mastra's
    /// table names.
    pub fn from_pool(pool: AnyPool) -> Self {
        Self {
            queries: Arc::new(Queries::new(TableNames::default(), Backend::of(&pool))),
            pool,
        }
    }

    /// Reads these tables and columns instead of Mastra's.
    #[must_use]
    pub fn with_tables(self, tables: TableNames) -> Self {
        Self {
            pool: self.pool,
            queries: Arc::new(Queries::new(tables, self.queries.backend)),
        }
    }

    /// The pool, for the application's own queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Creates both tables (TEXT columns, Mastra's other columns as nullable TEXT) and an index on
    /// the messages' thread column, unless they exist; one transaction, SQLite or PostgreSQL.
    ///
    /// Never called implicitly: run it from your migrations or at startup. A database Mastra
    /// already created needs nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when a statement fails.
    pub async fn create_schema(&self) -> Result<(), StoreError> {
        let failed = |err: sqlx::Error| classify("create_schema failed", &err);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        for statement in self.queries.create_schema() {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }

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

/// Whose fault a database error is: the request's values ([`StoreError::InvalidInput`], 400)
/// or the backend's ([`StoreError::Backend`], 503). `what` prefixes the log-only detail.
///
/// Input: a data exception or an integrity constraint — PostgreSQL SQLSTATE classes `22`
/// (NUL in text `22021`, value too long `22001`, invalid text representation `22P02`, ...) and
/// `23` (unique, foreign key, not null, check); SQLite's `SQLITE_CONSTRAINT` (every extended
/// code), `SQLITE_TOOBIG` and `SQLITE_MISMATCH`. Retrying the same request cannot succeed.
///
/// Everything else is the backend's: I/O, TLS, a closed or exhausted pool, a lost connection,
/// PostgreSQL shutting down or out of connections, serialization failures past their retries,
/// `SQLITE_BUSY`, a missing table. That is 503, fail closed, never a pass.
pub(crate) fn classify(what: &str, err: &sqlx::Error) -> StoreError {
    let detail = format!("{what}: {err}");
    if caused_by_input(err) {
        StoreError::InvalidInput(detail)
    } else {
        StoreError::Backend(detail)
    }
}

fn caused_by_input(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    // The constraint kinds sqlx recognises on every driver.
    if !matches!(db.kind(), sqlx::error::ErrorKind::Other) {
        return true;
    }
    // The `Any` driver hands over the native error, so the native codes can be read.
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return matches!(pg.code().get(..2), Some("22" | "23"));
    }
    #[cfg(feature = "sqlite")]
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // The code is the extended result code; its low byte is the primary one.
        const TOOBIG: i64 = 18;
        const CONSTRAINT: i64 = 19;
        const MISMATCH: i64 = 20;
        return db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| matches!(code & 0xff, TOOBIG | CONSTRAINT | MISMATCH));
    }
    false
}

impl From<sqlx::Error> for StoreError {
    /// Classifies a database error as the store does (see [`SqlThreadStore`]'s "Errors"), for
    /// handlers that run their own queries on [`SqlThreadStore::pool`] and answer as the guard
    /// would.
    fn from(err: sqlx::Error) -> Self {
        classify("query failed", &err)
    }
}

/// The owner a thread row says: `thread` is the row's id (`None` when the join found no row).
fn owner_from(thread: Option<String>, resource: Option<String>) -> Result<ThreadOwner, StoreError> {
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

fn is_sqlite_memory(url: &str) -> bool {
    url.starts_with("sqlite:") && (url.contains(":memory:") || url.contains("mode=memory"))
}

/// Removes the password of `url` (raw and percent-decoded) from `message`.
fn redact_password(url: &str, mut message: String) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return message;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return message;
    };
    let Some((_, password)) = userinfo.split_once(':') else {
        return message;
    };
    let decoded = percent_encoding::percent_decode_str(password).decode_utf8_lossy();
    for secret in [password, &decoded] {
        if !secret.is_empty() {
            message = message.replace(secret, "***");
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain() {
        for ok in [
            "a",
            "_",
            "mastra_threads",
            "resourceId",
            "T1",
            &"x".repeat(63),
        ] {
            assert!(Identifier::new("t", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "a-b",
            "a b",
            "a\"b",
            "a;b",
            "é",
            "a.b",
            &"x".repeat(64),
        ] {
            assert!(Identifier::new("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_cover_every_padded_length() {
        let queries = Queries::new(TableNames::default(), Backend::Sqlite);
        assert_eq!(
            Queries::for_len(&queries.thread_owners, 1),
            r#"SELECT "id", "resourceId" FROM "mastra_threads" WHERE "id" IN ($1)"#
        );
        let last = Queries::for_len(&queries.message_threads, MAX_IDS_PER_QUERY);
        assert!(last.ends_with(&format!("${MAX_IDS_PER_QUERY})")));
    }

    #[test]
    fn schema_does_not_repeat_a_configured_column() {
        let tables = TableNames::default()
            .thread_resource_column("title")
            .unwrap();
        let [threads, _, _] = Queries::new(tables, Backend::Sqlite).create_schema();
        assert_eq!(threads.matches("\"title\"").count(), 1, "{threads}");
    }

    #[test]
    fn passwords_are_redacted() {
        let url = "postgres://app:s3cr%21t@db.internal:5432/app";
        let message = redact_password(url, format!("failed: {url} s3cr!t"));
        assert!(!message.contains("s3cr"), "{message}");
        assert_eq!(
            redact_password("sqlite::memory:", "x".into()),
            "x".to_string()
        );
    }

    #[test]
    fn sqlite_memory_urls_are_recognised() {
        assert!(is_sqlite_memory("sqlite::memory:"));
        assert!(is_sqlite_memory("sqlite://file.db?mode=memory"));
        assert!(!is_sqlite_memory("sqlite://file.db?mode=rwc"));
        assert!(!is_sqlite_memory("postgres://h/:memory:"));
    }
}
