//! The databases the memory server runs on, for black-box tests written once and run on each:
//! a SQLite file under plain `cargo test`, and PostgreSQL (`#[ignore]`d; `.ci/run` starts a
//! private cluster and sets `TOWER_SCOPE_TEST_PG_URL`). One source for both, so the backends
//! cannot drift apart unnoticed: a request must get the same answer on each.
//!
//! Include with `#[macro_use] #[path = "common/backend.rs"] mod backend;` next to
//! `#[path = "../examples/memory_server/app.rs"] mod app;`.
#![allow(dead_code)]

use sqlx::AnyPool;
use tower_scope::guard::SqlThreadStore;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

enum Cleanup {
    File(std::path::PathBuf),
    PgSchema(AnyPool, String),
}

/// A fresh database with Mastra's schema (a SQLite file, or a PostgreSQL schema of its own
/// reached through `search_path`, so parallel tests never see each other's rows).
pub struct Db {
    pub store: SqlThreadStore,
    pub backend: Backend,
    /// The URL `store` was opened with (another pool on the same database).
    pub url: String,
    cleanup: Cleanup,
}

fn suffix() -> String {
    crate::app::random_id(8)
}

impl Db {
    pub async fn new(backend: Backend) -> Self {
        let db = match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
        };
        db.store.create_schema().await.expect("create the schema");
        crate::app::create_schema(&db.store)
            .await
            .expect("create the working-memory table");
        db
    }

    async fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("tower-scope-{}.db", suffix()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = SqlThreadStore::connect(&url)
            .await
            .expect("open sqlite file");
        Self {
            store,
            backend: Backend::Sqlite,
            url,
            cleanup: Cleanup::File(path),
        }
    }

    async fn postgres() -> Self {
        let url = pg_url();
        let admin = SqlThreadStore::connect(&url)
            .await
            .expect("connect to TOWER_SCOPE_TEST_PG_URL")
            .pool()
            .clone();
        let schema = format!("tower_scope_{}", suffix());
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&admin)
            .await
            .unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
        let store = SqlThreadStore::connect(&url)
            .await
            .expect("connect to TOWER_SCOPE_TEST_PG_URL");
        Self {
            store,
            backend: Backend::Postgres,
            url,
            cleanup: Cleanup::PgSchema(admin, schema),
        }
    }

    /// The pool, for reading what the server wrote, directly.
    pub fn pool(&self) -> &AnyPool {
        self.store.pool()
    }

    /// Runs statements on this database (fixtures, schema changes), panicking on failure.
    pub async fn exec(&self, sql: &str) {
        sqlx::query(sql)
            .execute(self.pool())
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }

    /// How many rows `table` holds.
    pub async fn count(&self, table: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(self.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap()
    }

    pub async fn finish(self) {
        self.store.pool().close().await;
        match self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::PgSchema(admin, schema) => {
                let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                    .execute(&admin)
                    .await;
                admin.close().await;
            }
        }
    }
}

/// A 10-minute HS256 token for the memory server's `Claims` with this `sub`.
pub fn token(secret: &str, sub: &str) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = crate::app::Claims::user(sub, exp);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

pub fn pg_url() -> String {
    std::env::var("TOWER_SCOPE_TEST_PG_URL").expect("TOWER_SCOPE_TEST_PG_URL")
}

/// The memory server's full stack on `store`, tokens signed with `secret`.
pub fn router(store: SqlThreadStore, secret: &str) -> axum::Router {
    let settings = crate::app::Settings {
        jwt_secret: secret.to_owned(),
        issuer: None,
        audience: None,
        cors_origins: Vec::new(),
        public_url: None,
        dev_tokens: Vec::new(),
    };
    crate::app::app(store, &settings).expect("the memory server's stack builds")
}

/// Serves `router` on `127.0.0.1:0` with axum; returns `http://127.0.0.1:<port>`.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// Defines each `async fn name(db: &Db)` as a test on SQLite (module `sqlite`) and on
/// PostgreSQL (module `postgres`, `#[ignore]`d: run with `--ignored` and
/// `TOWER_SCOPE_TEST_PG_URL`, as `.ci/run` does). Client and server share the test's
/// single-threaded runtime, as they did before the tests ran on both backends: a 5 MB upload the
/// server refuses early (413) is then read back instead of racing the server's close.
#[allow(unused_macros)] // the races define their own runner
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = $crate::backend::Db::new($crate::backend::Backend::Sqlite).await;
                    super::$test(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: set TOWER_SCOPE_TEST_PG_URL (run by .ci/run)"]
                async fn $test() {
                    let db = $crate::backend::Db::new($crate::backend::Backend::Postgres).await;
                    super::$test(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}
