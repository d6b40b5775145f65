//! [`TableNames`]: which tables and columns the store reads, checked to be plain identifiers,
//! and the SQL text built once from them.

use std::fmt;
use std::sync::Arc;

use super::write::{Backend, WriteQueries};
use crate::ConfigError;

/// The most ids bound in one query. SQLite before 3.32 allows 999 parameters, PostgreSQL 65535.
pub(super) const MAX_IDS_PER_QUERY: usize = 512;

/// The longest table or column name accepted: PostgreSQL's identifier limit (NAMEDATALEN - 1).
const MAX_IDENTIFIER_LEN: usize = 63;

/// A plain SQL identifier, safe to put between double quotes.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Identifier(Arc<str>);

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
    pub(super) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Where [`SqlThreadStore`](super::SqlThreadStore) finds threads and messages: two tables and the four columns it reads.
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
    pub(super) threads: Identifier,
    pub(super) thread_id: Identifier,
    pub(super) thread_resource: Identifier,
    pub(super) messages: Identifier,
    pub(super) message_id: Identifier,
    pub(super) message_thread: Identifier,
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
pub(super) struct Queries {
    pub(super) tables: TableNames,
    pub(super) backend: Backend,
    pub(super) writes: WriteQueries,
    /// `thread_owners[k]` binds `2^k` ids.
    pub(super) thread_owners: Vec<String>,
    /// `message_threads[k]` binds `2^k` ids.
    pub(super) message_threads: Vec<String>,
}

impl Queries {
    pub(super) fn new(tables: TableNames, backend: Backend) -> Self {
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
    pub(super) fn for_len(statements: &[String], len: usize) -> &str {
        &statements[len.trailing_zeros() as usize]
    }

    pub(super) fn create_schema(&self) -> [String; 3] {
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
}
