//! [`SqlThreadStore`]: thread ownership read from SQLite or PostgreSQL, in Mastra's schema by
//! default.
//!
//! One implementation serves both databases through [`sqlx::AnyPool`]. The default
//! [`TableNames`] are Mastra's storage tables (`mastra_threads` with `id` and `"resourceId"`,
//! `mastra_messages` with `id` and `thread_id`), so a Rust service can guard a database it
//! shares with a Mastra deployment. Each [`ThreadStore`](super::ThreadStore) call is one query per 512 distinct ids
//! (a `LEFT JOIN` for messages), never one per id.
//!
//! The owner-conditional writes (`write`) decide and write in one transaction; that module's
//! docs say which isolation each backend relies on and why. `schema` holds the table names and
//! the SQL built from them, `read` the [`ThreadStore`](super::ThreadStore) reads, `error` the
//! 400-or-503 classification of database errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use super::StoreError;

mod error;
mod read;
mod schema;
mod write;

pub(crate) use self::error::classify;
use self::schema::Queries;
pub use self::schema::TableNames;
use self::write::Backend;

/// How long [`SqlThreadStore::connect`]'s pool waits for a connection before the query fails
/// (503): 2 s, under the guard's [`DEFAULT_STORE_TIMEOUT`](super::DEFAULT_STORE_TIMEOUT) of 5 s.
/// sqlx's own default is 30 s, and it keeps retrying a refused connection until then, so a
/// handler query on a database that is down would otherwise hang for half a minute.
pub const DEFAULT_POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

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
///
/// [`ThreadStore`]: crate::guard::ThreadStore
/// [`ThreadOwner::Unowned`]: crate::guard::ThreadOwner::Unowned
/// [`ResourceId`]: crate::ResourceId
/// [`ThreadId`]: crate::ThreadId
/// [`MessageId`]: crate::MessageId
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
