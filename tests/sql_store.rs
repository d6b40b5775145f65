//! `SqlThreadStore` against real databases: every scenario runs on a SQLite file, on
//! `sqlite::memory:`, and (ignored unless `TOWER_SCOPE_TEST_PG_URL` is set, run with
//! `--ignored`) on PostgreSQL in a schema of its own.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tower_scope::guard::{
    GuardError, MemoryThreadStore, MessageThread, NewMessage, SqlThreadStore, StoreError,
    TableNames, ThreadFields, ThreadOwner, ThreadStore, ThreadWrites,
};
use tower_scope::{ConfigError, MessageId, ResourceId, ThreadId};

// ---- fixtures -----------------------------------------------------------------------------

/// A name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh, empty database and how to throw it away.
struct Db {
    store: SqlThreadStore,
    #[cfg(feature = "sqlite")]
    file: Option<std::path::PathBuf>,
    #[cfg(feature = "postgres")]
    pg_schema: Option<(sqlx::AnyPool, String)>,
}

impl Db {
    #[cfg(feature = "sqlite")]
    async fn sqlite_file() -> Self {
        let path = std::env::temp_dir().join(format!("{}.db", unique("tower_scope_sql")));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = SqlThreadStore::connect(&url)
            .await
            .expect("open sqlite file");
        Self {
            store,
            file: Some(path),
            #[cfg(feature = "postgres")]
            pg_schema: None,
        }
    }

    #[cfg(feature = "sqlite")]
    async fn sqlite_memory() -> Self {
        let store = SqlThreadStore::connect("sqlite::memory:")
            .await
            .expect("open sqlite memory");
        Self {
            store,
            file: None,
            #[cfg(feature = "postgres")]
            pg_schema: None,
        }
    }

    /// A pool whose connections all see only a new schema, so runs never collide.
    #[cfg(feature = "postgres")]
    async fn postgres() -> Self {
        let url = pg_url();
        let admin = SqlThreadStore::connect(&url)
            .await
            .expect("connect to TOWER_SCOPE_TEST_PG_URL")
            .pool()
            .clone();
        let schema = unique("tower_scope_test");
        exec(&admin, &format!("CREATE SCHEMA \"{schema}\"")).await;
        // The recipe TableNames documents for tables outside `public`.
        let separator = if url.contains('?') { '&' } else { '?' };
        let store = SqlThreadStore::connect(&format!(
            "{url}{separator}options=-c%20search_path%3D{schema}"
        ))
        .await
        .expect("connect to TOWER_SCOPE_TEST_PG_URL");
        Self {
            store,
            #[cfg(feature = "sqlite")]
            file: None,
            pg_schema: Some((admin, schema)),
        }
    }

    async fn finish(self) {
        self.store.pool().close().await;
        #[cfg(feature = "sqlite")]
        if let Some(path) = self.file {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        #[cfg(feature = "postgres")]
        if let Some((admin, schema)) = self.pg_schema {
            exec(&admin, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
            admin.close().await;
        }
    }
}

#[cfg(feature = "postgres")]
fn pg_url() -> String {
    std::env::var("TOWER_SCOPE_TEST_PG_URL")
        .expect("set TOWER_SCOPE_TEST_PG_URL, e.g. postgres://postgres@127.0.0.1:5433/postgres")
}

async fn exec(pool: &sqlx::AnyPool, sql: &str) {
    sqlx::query(sql)
        .execute(pool)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
}

async fn insert_thread(store: &SqlThreadStore, id: &str, owner: Option<&str>) {
    sqlx::query(r#"INSERT INTO "mastra_threads" ("id", "resourceId") VALUES ($1, $2)"#)
        .bind(id)
        .bind(owner)
        .execute(store.pool())
        .await
        .expect("insert thread");
}

async fn insert_message(store: &SqlThreadStore, id: &str, thread: Option<&str>) {
    sqlx::query(r#"INSERT INTO "mastra_messages" ("id", "thread_id") VALUES ($1, $2)"#)
        .bind(id)
        .bind(thread)
        .execute(store.pool())
        .await
        .expect("insert message");
}

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

fn owned(resource: &str) -> ThreadOwner {
    ThreadOwner::Owned(ResourceId::new(resource).unwrap())
}

fn mid(id: &str) -> MessageId {
    MessageId::new(id).unwrap()
}

fn mids(ids: &[&str]) -> Vec<MessageId> {
    ids.iter().map(|s| mid(s)).collect()
}

fn assert_backend(result: Result<impl std::fmt::Debug, StoreError>) -> String {
    match result {
        Err(StoreError::Backend(detail)) => detail,
        other => panic!("expected StoreError::Backend, got {other:?}"),
    }
}

// ---- scenarios, each run on every backend -------------------------------------------------

async fn owned_unowned_and_missing_threads(store: &SqlThreadStore) {
    store.create_schema().await.unwrap();
    insert_thread(store, "t-alice", Some("user:alice")).await;
    insert_thread(store, "t-null", None).await;
    insert_thread(store, "t-empty", Some("")).await;

    let owners = store
        .thread_owners(&[
            thread("t-alice"),
            thread("t-null"),
            thread("t-empty"),
            thread("t-ghost"),
            thread("t-alice"),
        ])
        .await
        .unwrap();
    assert_eq!(
        owners,
        HashMap::from([
            (thread("t-alice"), owned("user:alice")),
            (thread("t-null"), ThreadOwner::Unowned),
            (thread("t-empty"), ThreadOwner::Unowned),
        ])
    );
    assert_eq!(
        store.thread_owner(&thread("t-ghost")).await.unwrap(),
        ThreadOwner::Missing
    );
    assert_eq!(
        store.thread_owner(&thread("T-ALICE")).await.unwrap(),
        ThreadOwner::Missing,
        "ids are compared exactly"
    );
}

async fn batches_larger_than_one_query(store: &SqlThreadStore) {
    store.create_schema().await.unwrap();
    let total = 1200;
    for first in (0..total).step_by(100) {
        let values = (first..first + 100)
            .map(|i| format!("('t{i}', 'user:{}')", i % 7))
            .collect::<Vec<_>>()
            .join(", ");
        exec(
            store.pool(),
            &format!(r#"INSERT INTO "mastra_threads" ("id", "resourceId") VALUES {values}"#),
        )
        .await;
    }
    // 1200 stored + 100 missing: three chunks (512, 512, 276 padded to 512).
    let wanted: Vec<ThreadId> = (0..total + 100).map(|i| thread(&format!("t{i}"))).collect();
    let owners = store.thread_owners(&wanted).await.unwrap();
    assert_eq!(owners.len(), total);
    assert_eq!(owners[&thread("t1199")], owned("user:2"));
    assert!(!owners.contains_key(&thread("t1200")));
}

async fn message_threads_join_their_owner(store: &SqlThreadStore) {
    store.create_schema().await.unwrap();
    insert_thread(store, "t-alice", Some("user:alice")).await;
    insert_thread(store, "t-shared", None).await;
    insert_message(store, "m-alice", Some("t-alice")).await;
    insert_message(store, "m-shared", Some("t-shared")).await;
    insert_message(store, "m-null", None).await;
    insert_message(store, "m-empty", Some("")).await;
    insert_message(store, "m-orphan", Some("t-deleted")).await;

    let found = store
        .message_threads(&mids(&[
            "m-alice",
            "m-shared",
            "m-null",
            "m-empty",
            "m-orphan",
            "m-unknown",
            "m-alice",
        ]))
        .await
        .unwrap();
    let expect = |thread_id: Option<&str>, owner| MessageThread {
        thread: thread_id.map(thread),
        owner,
    };
    assert_eq!(
        found,
        HashMap::from([
            (mid("m-alice"), expect(Some("t-alice"), owned("user:alice"))),
            (
                mid("m-shared"),
                expect(Some("t-shared"), ThreadOwner::Unowned)
            ),
            (mid("m-null"), expect(None, ThreadOwner::Missing)),
            (mid("m-empty"), expect(None, ThreadOwner::Missing)),
            (
                mid("m-orphan"),
                expect(Some("t-deleted"), ThreadOwner::Missing)
            ),
        ])
    );
}

async fn empty_input_runs_no_query(store: &SqlThreadStore) {
    // A closed pool fails every query, so an answer proves none was sent.
    store.pool().close().await;
    assert!(store.thread_owners(&[]).await.unwrap().is_empty());
    assert!(store.message_threads(&[]).await.unwrap().is_empty());
}

async fn custom_table_and_column_names(store: &SqlThreadStore) {
    let tables = TableNames::default()
        .threads("conversations")
        .unwrap()
        .thread_id_column("conversation_key")
        .unwrap()
        .thread_resource_column("owner")
        .unwrap()
        .messages("chat_lines")
        .unwrap()
        .message_id_column("line_key")
        .unwrap()
        .message_thread_column("conversation_key")
        .unwrap();
    let store = store.clone().with_tables(tables);
    store.create_schema().await.unwrap();
    store
        .create_schema()
        .await
        .expect("create_schema is idempotent");
    exec(
        store.pool(),
        r#"INSERT INTO "conversations" ("conversation_key", "owner") VALUES ('c1', 'org:acme:bob')"#,
    )
    .await;
    exec(
        store.pool(),
        r#"INSERT INTO "chat_lines" ("line_key", "conversation_key") VALUES ('l1', 'c1')"#,
    )
    .await;

    assert_eq!(
        store.thread_owner(&thread("c1")).await.unwrap(),
        owned("org:acme:bob")
    );
    let found = store.message_threads(&mids(&["l1"])).await.unwrap();
    assert_eq!(
        found["l1"],
        MessageThread {
            thread: Some(thread("c1")),
            owner: owned("org:acme:bob")
        }
    );
    // Mastra's tables were not created: the store only touches what it was told to.
    let mastra = SqlThreadStore::from_pool(store.pool().clone());
    assert_backend(mastra.thread_owner(&thread("c1")).await);
}

async fn mastra_schema_created_by_plain_sql(store: &SqlThreadStore) {
    // Mastra's own DDL (PostgreSQL store; the libSQL one differs only in quoting).
    exec(
        store.pool(),
        r#"CREATE TABLE "mastra_threads" (
            id TEXT NOT NULL PRIMARY KEY,
            "resourceId" TEXT NOT NULL,
            title TEXT NOT NULL,
            metadata TEXT,
            "createdAt" TIMESTAMP NOT NULL,
            "updatedAt" TIMESTAMP NOT NULL
        )"#,
    )
    .await;
    exec(
        store.pool(),
        r#"CREATE TABLE "mastra_messages" (
            id TEXT NOT NULL PRIMARY KEY,
            thread_id TEXT NOT NULL,
            content TEXT NOT NULL,
            role TEXT NOT NULL,
            type TEXT NOT NULL,
            "createdAt" TIMESTAMP NOT NULL,
            "resourceId" TEXT
        )"#,
    )
    .await;
    exec(
        store.pool(),
        r#"INSERT INTO mastra_threads (id, "resourceId", title, metadata, "createdAt", "updatedAt")
           VALUES ('thread-1', 'user:alice', 'Trip', '{}', '2025-01-01 10:00:00', '2025-01-01 10:00:00'),
                  ('thread-2', '', 'Shared', NULL, '2025-01-01 10:00:00', '2025-01-01 10:00:00')"#,
    )
    .await;
    exec(
        store.pool(),
        r#"INSERT INTO mastra_messages (id, thread_id, content, role, type, "createdAt", "resourceId")
           VALUES ('msg-1', 'thread-1', '{"parts":[]}', 'user', 'v2', '2025-01-01 10:00:01', 'user:alice'),
                  ('msg-2', 'thread-2', 'hi', 'assistant', 'text', '2025-01-01 10:00:02', NULL)"#,
    )
    .await;

    let owners = store
        .thread_owners(&[thread("thread-1"), thread("thread-2")])
        .await
        .unwrap();
    assert_eq!(owners[&thread("thread-1")], owned("user:alice"));
    assert_eq!(owners[&thread("thread-2")], ThreadOwner::Unowned);
    let found = store
        .message_threads(&mids(&["msg-1", "msg-2"]))
        .await
        .unwrap();
    assert_eq!(found["msg-1"].owner, owned("user:alice"));
    assert_eq!(found["msg-2"].thread, Some(thread("thread-2")));
    // The existing schema is left as it is.
    store.create_schema().await.unwrap();
}

async fn invalid_stored_ids_fail_closed(store: &SqlThreadStore) {
    store.create_schema().await.unwrap();
    let too_long = "x".repeat(300);
    insert_thread(store, "t-bad-owner", Some("user:\u{1}evil")).await;
    insert_thread(store, "t-long-owner", Some(&too_long)).await;
    insert_message(store, "m-bad-owner", Some("t-bad-owner")).await;
    insert_message(store, "m-long-thread", Some(&too_long)).await;

    for id in ["t-bad-owner", "t-long-owner"] {
        let detail = assert_backend(store.thread_owner(&thread(id)).await);
        assert!(detail.contains("invalid resource id"), "{detail}");
    }
    assert_backend(store.message_threads(&mids(&["m-bad-owner"])).await);
    let detail = assert_backend(store.message_threads(&mids(&["m-long-thread"])).await);
    assert!(detail.contains("invalid thread id"), "{detail}");
}

async fn rows_that_disagree_fail_closed(store: &SqlThreadStore) {
    // A custom table without a unique key can hold one id twice with different owners.
    exec(
        store.pool(),
        r#"CREATE TABLE "loose_threads" ("id" TEXT, "owner" TEXT)"#,
    )
    .await;
    exec(
        store.pool(),
        r#"INSERT INTO "loose_threads" VALUES ('t1', 'user:alice'), ('t1', 'user:bob'), ('t2', 'user:carol'), ('t2', 'user:carol')"#,
    )
    .await;
    let tables = TableNames::default()
        .threads("loose_threads")
        .unwrap()
        .thread_resource_column("owner")
        .unwrap();
    let store = store.clone().with_tables(tables);
    assert_backend(store.thread_owner(&thread("t1")).await);
    assert_eq!(
        store.thread_owner(&thread("t2")).await.unwrap(),
        owned("user:carol"),
        "identical duplicate rows agree"
    );
}

async fn backend_failures_are_backend_errors(store: &SqlThreadStore) {
    store.create_schema().await.unwrap();
    exec(store.pool(), r#"DROP TABLE "mastra_messages""#).await;
    assert_backend(store.message_threads(&mids(&["m1"])).await);
    assert_eq!(
        store.thread_owner(&thread("t1")).await.unwrap(),
        ThreadOwner::Missing,
        "the other table still answers"
    );

    store.pool().close().await;
    let detail = assert_backend(store.thread_owner(&thread("t1")).await);
    assert!(detail.contains("closed"), "{detail}");
    assert!(!format!("{store:?}").contains("postgres://"));
}

fn is_postgres(store: &SqlThreadStore) -> bool {
    store.pool().connect_options().database_url.scheme() == "postgres"
}

fn assert_invalid_input<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::InvalidInput(_)) => {}
        other => panic!("{what}: expected StoreError::InvalidInput, got {other:?}"),
    }
}

/// Errors the request's values caused are `InvalidInput` (400), whatever the backend: the
/// database's own errors, classified by SQLSTATE class (PostgreSQL) or result code (SQLite).
async fn errors_the_input_caused_are_invalid_input(store: &SqlThreadStore) {
    store.create_schema().await.unwrap();
    let classify = |err: sqlx::Error| Err::<(), _>(StoreError::from(err));
    let run = |sql: &'static str, value: &'static str| {
        let pool = store.pool().clone();
        async move { sqlx::query(sql).bind(value).execute(&pool).await.map(drop) }
    };
    // Integrity constraints (class 23, SQLITE_CONSTRAINT_*): unique, not null, check.
    exec(
        store.pool(),
        r#"CREATE TABLE "strict_things" ("id" TEXT PRIMARY KEY, "label" TEXT NOT NULL CHECK (length("label") <= 4))"#,
    )
    .await;
    exec(
        store.pool(),
        r#"INSERT INTO "strict_things" VALUES ('a', 'ok')"#,
    )
    .await;
    for (what, sql, value) in [
        (
            "unique",
            r#"INSERT INTO "strict_things" VALUES ($1, 'ok')"#,
            "a",
        ),
        (
            "check",
            r#"INSERT INTO "strict_things" VALUES ('b', $1)"#,
            "too long",
        ),
        (
            "not null",
            r#"INSERT INTO "strict_things" VALUES ($1, NULL)"#,
            "c",
        ),
    ] {
        assert_invalid_input(what, classify(run(sql, value).await.unwrap_err()));
    }
    if is_postgres(store) {
        // Data exceptions (class 22): NUL in text (22021), the one that once answered 503;
        // invalid text representation (22P02); value too long for its column (22001).
        exec(store.pool(), r#"CREATE TABLE "narrow" ("v" VARCHAR(2))"#).await;
        for (what, sql, value) in [
            ("NUL in text", "SELECT $1::text", "m1\0"),
            ("not an integer", "SELECT $1::text::integer", "x"),
            ("too long", r#"INSERT INTO "narrow" VALUES ($1)"#, "abc"),
        ] {
            assert_invalid_input(what, classify(run(sql, value).await.unwrap_err()));
        }
    } else {
        // SQLITE_MISMATCH: a non-integer for an INTEGER PRIMARY KEY.
        exec(
            store.pool(),
            r#"CREATE TABLE "numbered" ("n" INTEGER PRIMARY KEY)"#,
        )
        .await;
        let err = run(r#"INSERT INTO "numbered" VALUES ($1)"#, "x").await;
        assert_invalid_input("mismatch", classify(err.unwrap_err()));
    }

    // The store's own writes, refused by a constraint the operator added: 400, nothing kept.
    exec(
        store.pool(),
        r#"CREATE TABLE "checked_threads" ("id" TEXT PRIMARY KEY, "resourceId" TEXT,
            "title" TEXT CHECK (length("title") <= 8), "metadata" TEXT, "createdAt" TEXT,
            "updatedAt" TEXT)"#,
    )
    .await;
    let checked = store
        .clone()
        .with_tables(TableNames::default().threads("checked_threads").unwrap());
    let created = checked
        .create_thread(
            &resource("user:alice"),
            &thread("t1"),
            &ThreadFields::titled("far too long"),
            &at(0),
        )
        .await;
    match created {
        Err(GuardError::Store(StoreError::InvalidInput(_))) => {}
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(
        checked.thread_owner(&thread("t1")).await.unwrap(),
        ThreadOwner::Missing
    );
    // Text PostgreSQL cannot hold is refused before the database, on every backend alike.
    let nul = store
        .create_thread(
            &resource("user:alice"),
            &thread("t2"),
            &ThreadFields::titled("a\0b"),
            &at(0),
        )
        .await;
    assert!(
        matches!(&nul, Err(GuardError::Store(e)) if e.is_invalid_input()),
        "{nul:?}"
    );
}

/// The backend failing is `Backend` (503), never `InvalidInput`: a missing table, a closed
/// pool, an exhausted pool, nothing listening.
async fn outages_are_backend_errors(store: &SqlThreadStore) {
    store.create_schema().await.unwrap();
    let missing = TableNames::default().threads("no_such_table").unwrap();
    assert_backend(
        store
            .clone()
            .with_tables(missing)
            .thread_owner(&thread("t1"))
            .await,
    );

    // Exhausted: the only connection is held, acquiring times out (PoolTimedOut).
    let url = store.pool().connect_options().database_url.to_string();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_millis(200))
        .connect(&url)
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let exhausted = SqlThreadStore::from_pool(pool.clone());
    let detail = assert_backend(exhausted.thread_owner(&thread("t1")).await);
    assert!(detail.contains("timed out"), "{detail}");
    let written = exhausted
        .create_thread(
            &resource("user:alice"),
            &thread("t1"),
            &ThreadFields::default(),
            &at(0),
        )
        .await;
    assert!(
        matches!(&written, Err(GuardError::Store(StoreError::Backend(_)))),
        "{written:?}"
    );
    drop(held);
    pool.close().await;

    // Nothing listens (PostgreSQL: connection refused; SQLite: the file cannot be opened).
    let unreachable = if is_postgres(store) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    } else {
        let dir = std::env::temp_dir().join(unique("no_such_dir"));
        format!("sqlite://{}/x.db?mode=ro", dir.display())
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(300))
        .connect_lazy(&unreachable)
        .unwrap();
    assert_backend(
        SqlThreadStore::from_pool(pool)
            .thread_owner(&thread("t1"))
            .await,
    );
}

// ---- owner-conditional writes, each run on every store (memory included) ------------------

/// How a scenario plants what no owner-conditional write can make: shared threads, orphans.
trait Fixtures: ThreadWrites {
    async fn prepare(&self) {}
    async fn shared_thread(&self, id: &str);
    async fn orphan_message(&self, id: &str, thread: &str);
}

impl Fixtures for SqlThreadStore {
    async fn prepare(&self) {
        self.create_schema().await.unwrap();
    }

    async fn shared_thread(&self, id: &str) {
        insert_thread(self, id, None).await;
    }

    async fn orphan_message(&self, id: &str, thread: &str) {
        insert_message(self, id, Some(thread)).await;
    }
}

impl Fixtures for MemoryThreadStore {
    async fn shared_thread(&self, id: &str) {
        self.insert_thread(thread(id), None);
    }

    async fn orphan_message(&self, id: &str, thread_id: &str) {
        self.insert_message(mid(id), Some(thread(thread_id)));
    }
}

fn resource(id: &str) -> ResourceId {
    ResourceId::new(id).unwrap()
}

fn at(second: u32) -> String {
    format!("2026-01-01T00:00:{second:02}.000Z")
}

fn fields(title: &str, metadata: &str) -> ThreadFields {
    ThreadFields {
        title: Some(title.to_owned()),
        metadata: Some(metadata.to_owned()),
    }
}

fn message(id: &str, thread_id: &str, content: &str) -> NewMessage {
    NewMessage {
        id: mid(id),
        thread: thread(thread_id),
        role: "user".to_owned(),
        kind: "v2".to_owned(),
        content: content.to_owned(),
        created_at: at(0),
    }
}

/// The thread each message lives in (absent: no such message).
async fn threads_of(store: &impl ThreadStore, ids: &[&str]) -> HashMap<String, Option<String>> {
    store
        .message_threads(&mids(ids))
        .await
        .unwrap()
        .into_iter()
        .map(|(id, m)| (id.to_string(), m.thread.map(|t| t.to_string())))
        .collect()
}

async fn create_is_an_upsert_for_the_owner_only(store: &impl Fixtures) {
    store.prepare().await;
    let (alice, bob, t1) = (resource("alice"), resource("bob"), thread("t1"));

    let created = store
        .create_thread(&alice, &t1, &fields("diary", r#"{"v":1}"#), &at(1))
        .await
        .unwrap();
    assert_eq!(created.id, t1);
    assert_eq!(created.resource, Some(alice.clone()));
    assert_eq!(created.title.as_deref(), Some("diary"));
    assert_eq!(created.metadata.as_deref(), Some(r#"{"v":1}"#));
    assert_eq!(
        (created.created_at.as_deref(), created.updated_at.as_deref()),
        (Some(at(1).as_str()), Some(at(1).as_str()))
    );

    // Re-saving one's own thread replaces title and metadata (Mastra's upsert).
    let resaved = store
        .create_thread(&alice, &t1, &ThreadFields::titled("journal"), &at(2))
        .await
        .unwrap();
    assert_eq!(resaved.title.as_deref(), Some("journal"));
    assert_eq!(resaved.metadata, None);
    assert_eq!(resaved.created_at.as_deref(), Some(at(1).as_str()));
    assert_eq!(resaved.updated_at.as_deref(), Some(at(2).as_str()));

    // Someone else's id: refused, nothing written.
    assert_eq!(
        store
            .create_thread(&bob, &t1, &fields("mine", "{}"), &at(3))
            .await,
        Err(GuardError::ForeignThread)
    );
    let unchanged = store
        .update_thread(&alice, &t1, &ThreadFields::default(), &at(4))
        .await
        .unwrap();
    assert_eq!(unchanged.resource, Some(alice));
    assert_eq!(unchanged.title.as_deref(), Some("journal"));
    assert_eq!(unchanged.metadata, None);
}

async fn update_and_delete_only_where_the_owner_matches(store: &impl Fixtures) {
    store.prepare().await;
    let (alice, bob, t1) = (resource("alice"), resource("bob"), thread("t1"));
    store
        .create_thread(&alice, &t1, &fields("diary", "{}"), &at(1))
        .await
        .unwrap();
    store
        .save_messages(&alice, &[message("m1", "t1", "secret")], &at(1))
        .await
        .unwrap();

    let rename = ThreadFields::titled("pwned");
    assert_eq!(
        store.update_thread(&bob, &t1, &rename, &at(2)).await,
        Err(GuardError::ForeignThread)
    );
    assert_eq!(
        store
            .update_thread(&alice, &thread("ghost"), &rename, &at(2))
            .await,
        Err(GuardError::ThreadNotFound)
    );
    assert_eq!(
        store.delete_thread(&bob, &t1).await,
        Err(GuardError::ForeignThread)
    );
    assert_eq!(store.thread_owner(&t1).await.unwrap(), owned("alice"));
    assert_eq!(threads_of(store, &["m1"]).await.len(), 1);

    // A `None` field keeps its value.
    let renamed = store
        .update_thread(
            &alice,
            &t1,
            &ThreadFields {
                title: None,
                metadata: Some(r#"{"k":2}"#.into()),
            },
            &at(3),
        )
        .await
        .unwrap();
    assert_eq!(renamed.title.as_deref(), Some("diary"));
    assert_eq!(renamed.metadata.as_deref(), Some(r#"{"k":2}"#));
    assert_eq!(renamed.updated_at.as_deref(), Some(at(3).as_str()));

    store.delete_thread(&alice, &t1).await.unwrap();
    assert_eq!(store.thread_owner(&t1).await.unwrap(), ThreadOwner::Missing);
    assert!(
        threads_of(store, &["m1"]).await.is_empty(),
        "its messages go too"
    );
    assert_eq!(
        store.delete_thread(&alice, &t1).await,
        Err(GuardError::ThreadNotFound)
    );
}

async fn saved_messages_are_all_or_none_and_never_anothers(store: &impl Fixtures) {
    store.prepare().await;
    let (alice, bob) = (resource("alice"), resource("bob"));

    // A missing thread is created for the caller in the same transaction.
    store
        .save_messages(&alice, &[message("m1", "t-a", "alice's")], &at(1))
        .await
        .unwrap();
    assert_eq!(
        store.thread_owner(&thread("t-a")).await.unwrap(),
        owned("alice")
    );
    store
        .create_thread(&bob, &thread("t-b"), &ThreadFields::default(), &at(1))
        .await
        .unwrap();

    // Bob can neither write into alice's thread nor overwrite (or move) alice's message id.
    assert_eq!(
        store
            .save_messages(&bob, &[message("m-b", "t-a", "bob's")], &at(2))
            .await,
        Err(GuardError::ForeignThread)
    );
    assert_eq!(
        store
            .save_messages(&bob, &[message("m1", "t-b", "bob's")], &at(2))
            .await,
        Err(GuardError::ForeignThread)
    );
    // All or none: a refused entry undoes the whole batch, a thread it would create included.
    let batch = [
        message("m-b2", "t-b-new", "bob's"),
        message("m-b3", "t-b", "bob's"),
        message("m1", "t-b", "bob's"),
    ];
    assert_eq!(
        store.save_messages(&bob, &batch, &at(3)).await,
        Err(GuardError::ForeignThread)
    );
    assert_eq!(
        store.thread_owner(&thread("t-b-new")).await.unwrap(),
        ThreadOwner::Missing
    );
    assert_eq!(
        threads_of(store, &["m1", "m-b", "m-b2", "m-b3"]).await,
        HashMap::from([("m1".to_owned(), Some("t-a".to_owned()))])
    );

    // The owner moves her own message between her threads (Mastra's upsert by id).
    store
        .save_messages(
            &alice,
            &[message("m1", "t-a2", "edited"), message("m2", "t-a", "two")],
            &at(4),
        )
        .await
        .unwrap();
    assert_eq!(
        threads_of(store, &["m1", "m2"]).await,
        HashMap::from([
            ("m1".to_owned(), Some("t-a2".to_owned())),
            ("m2".to_owned(), Some("t-a".to_owned())),
        ])
    );
    assert_eq!(store.save_messages(&alice, &[], &at(5)).await, Ok(()));
}

async fn shared_threads_and_orphans_are_never_written(store: &impl Fixtures) {
    store.prepare().await;
    let alice = resource("alice");
    store.shared_thread("t-shared").await;
    store.orphan_message("m-orphan", "t-gone").await;
    let shared = thread("t-shared");
    let title = ThreadFields::titled("mine now");

    assert_eq!(
        store.create_thread(&alice, &shared, &title, &at(1)).await,
        Err(GuardError::UnownedThread)
    );
    assert_eq!(
        store.update_thread(&alice, &shared, &title, &at(1)).await,
        Err(GuardError::UnownedThread)
    );
    assert_eq!(
        store.delete_thread(&alice, &shared).await,
        Err(GuardError::UnownedThread)
    );
    assert_eq!(
        store
            .save_messages(&alice, &[message("m1", "t-shared", "x")], &at(1))
            .await,
        Err(GuardError::UnownedThread)
    );
    assert_eq!(
        store
            .save_messages(&alice, &[message("m-orphan", "t-a", "x")], &at(1))
            .await,
        Err(GuardError::UnverifiableMessage)
    );
    assert_eq!(
        store.thread_owner(&shared).await.unwrap(),
        ThreadOwner::Unowned
    );
    assert_eq!(
        store.thread_owner(&thread("t-a")).await.unwrap(),
        ThreadOwner::Missing
    );
    assert_eq!(
        store.delete_messages(&alice, &mids(&["m-orphan"])).await,
        Ok(0)
    );
}

async fn message_deletion_counts_only_the_callers(store: &impl Fixtures) {
    store.prepare().await;
    let (alice, bob) = (resource("alice"), resource("bob"));
    store
        .save_messages(
            &alice,
            &[message("m1", "t-a", "1"), message("m2", "t-a", "2")],
            &at(1),
        )
        .await
        .unwrap();
    store
        .save_messages(&bob, &[message("m3", "t-b", "3")], &at(1))
        .await
        .unwrap();

    assert_eq!(
        store
            .delete_messages(&bob, &mids(&["m1", "m3", "ghost"]))
            .await,
        Ok(1),
        "bob's own message only"
    );
    assert_eq!(threads_of(store, &["m1", "m3"]).await.len(), 1);
    assert_eq!(store.delete_messages(&alice, &[]).await, Ok(0));

    // Far more ids than any database binds as parameters: still one statement, exact count.
    let mut many: Vec<MessageId> = (0..70_000).map(|i| mid(&format!("unknown-{i}"))).collect();
    many.extend(mids(&["m1", "m1", "m2", "m3"]));
    assert_eq!(store.delete_messages(&alice, &many).await, Ok(2));
    assert!(threads_of(store, &["m1", "m2"]).await.is_empty());
}

macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(&tower_scope::guard::MemoryThreadStore::new()).await;
                }
            )*
        }
        on_every_backend!($($scenario),*);
    };
}

macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite_file {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let db = super::Db::sqlite_file().await;
                    super::$scenario(&db.store).await;
                    db.finish().await;
                }
            )*
        }

        #[cfg(feature = "sqlite")]
        mod sqlite_memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let db = super::Db::sqlite_memory().await;
                    super::$scenario(&db.store).await;
                    db.finish().await;
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: set TOWER_SCOPE_TEST_PG_URL and pass --ignored"]
                async fn $scenario() {
                    let db = super::Db::postgres().await;
                    super::$scenario(&db.store).await;
                    db.finish().await;
                }
            )*
        }
    };
}

mod writes {
    use super::*;

    on_every_store!(
        create_is_an_upsert_for_the_owner_only,
        update_and_delete_only_where_the_owner_matches,
        saved_messages_are_all_or_none_and_never_anothers,
        shared_threads_and_orphans_are_never_written,
        message_deletion_counts_only_the_callers,
    );
}

on_every_backend!(
    owned_unowned_and_missing_threads,
    batches_larger_than_one_query,
    message_threads_join_their_owner,
    empty_input_runs_no_query,
    custom_table_and_column_names,
    mastra_schema_created_by_plain_sql,
    invalid_stored_ids_fail_closed,
    rows_that_disagree_fail_closed,
    backend_failures_are_backend_errors,
    errors_the_input_caused_are_invalid_input,
    outages_are_backend_errors,
);

// ---- configuration and connection ---------------------------------------------------------

#[test]
fn table_names_that_are_not_plain_identifiers_are_refused() {
    type Setter = fn(TableNames, &str) -> Result<TableNames, ConfigError>;
    let attempts: [(&str, Setter); 6] = [
        ("threads table", TableNames::threads),
        ("thread id column", TableNames::thread_id_column),
        ("thread resource column", TableNames::thread_resource_column),
        ("messages table", TableNames::messages),
        ("message id column", TableNames::message_id_column),
        ("message thread column", TableNames::message_thread_column),
    ];
    for (setting, set) in attempts {
        for bad in [
            "",
            "x\" OR 1=1 --",
            "threads; DROP TABLE users",
            "public.threads",
            "9lives",
            "résumé",
            &"t".repeat(64),
        ] {
            match set(TableNames::default(), bad) {
                Err(ConfigError::InvalidValue { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{setting} = {bad:?} gave {other:?}"),
            }
        }
        assert!(set(TableNames::default(), "Valid_Name_2").is_ok());
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn memory_database_is_shared_by_every_query() {
    let db = Db::sqlite_memory().await;
    db.store.create_schema().await.unwrap();
    insert_thread(&db.store, "t1", Some("user:alice")).await;
    let t1 = thread("t1");
    let lookups = (0..8).map(|_| db.store.thread_owner(&t1));
    for owner in futures_util::future::join_all(lookups).await {
        assert_eq!(owner.unwrap(), owned("user:alice"));
    }
    db.finish().await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn connect_errors_never_show_the_password() {
    for url in [
        "postgres://app:hunter2-secret@127.0.0.1:notaport/app",
        "postgres://app:hunter2%2Dsecret@[::1/app",
        "nosuchdb://app:hunter2-secret@127.0.0.1/app",
    ] {
        let detail = assert_backend(SqlThreadStore::connect(url).await);
        assert!(!detail.contains("hunter2"), "{url}: {detail}");
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
#[ignore = "needs PostgreSQL: set TOWER_SCOPE_TEST_PG_URL and pass --ignored"]
async fn postgres_password_stays_out_of_debug_and_errors() {
    let url = pg_url();
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, host) = rest
        .rsplit_once('@')
        .expect("user@host in TOWER_SCOPE_TEST_PG_URL");
    let (user, _) = rest.rsplit_once('@').unwrap();
    let user = user.split(':').next().unwrap();

    // The test cluster trusts local connections, so a password is accepted and ignored.
    let store = SqlThreadStore::connect(&format!("{scheme}://{user}:hunter2-secret@{host}"))
        .await
        .unwrap();
    assert!(!format!("{store:?}").contains("hunter2"));
    let absent = TableNames::default().threads(&unique("absent")).unwrap();
    let detail = assert_backend(
        store
            .clone()
            .with_tables(absent)
            .thread_owner(&thread("t1"))
            .await,
    );
    assert!(!detail.contains("hunter2"), "{detail}");
    store.pool().close().await;

    let role = unique("no_such_role");
    let detail = assert_backend(
        SqlThreadStore::connect(&format!("{scheme}://{role}:hunter2-secret@{host}")).await,
    );
    assert!(detail.contains(&role), "{detail}");
    assert!(!detail.contains("hunter2"), "{detail}");
}

/// A loosely comparing id column (here SQLite's NOCASE) would let a handler act on a row the
/// guard was told does not exist: the store refuses to answer instead.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn ids_matched_by_a_loose_collation_fail_closed() {
    let db = Db::sqlite_memory().await;
    let pool = db.store.pool().clone();
    exec(
        &pool,
        r#"CREATE TABLE mastra_threads (id TEXT PRIMARY KEY COLLATE NOCASE, "resourceId" TEXT)"#,
    )
    .await;
    exec(
        &pool,
        r#"CREATE TABLE mastra_messages (id TEXT PRIMARY KEY COLLATE NOCASE, thread_id TEXT)"#,
    )
    .await;
    exec(
        &pool,
        r#"INSERT INTO mastra_threads (id, "resourceId") VALUES ('t1', 'bob')"#,
    )
    .await;
    exec(
        &pool,
        r#"INSERT INTO mastra_messages (id, thread_id) VALUES ('m1', 't1')"#,
    )
    .await;
    assert_eq!(db.store.thread_owner(&thread("t1")).await, Ok(owned("bob")));
    assert_backend(db.store.thread_owner(&thread("T1")).await);
    assert_backend(db.store.message_threads(&mids(&["M1"])).await);
    db.finish().await;
}
