//! Whose fault a database error is: the request's (400) or the backend's (503).

use super::StoreError;

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
    ///
    /// [`SqlThreadStore`]: super::SqlThreadStore
    /// [`SqlThreadStore::pool`]: super::SqlThreadStore::pool
    fn from(err: sqlx::Error) -> Self {
        classify("query failed", &err)
    }
}
