//! Concurrency, end to end: alice and bob race each other over real HTTP against the memory
//! server, and no acknowledged write may be taken over, cross-written or lost.
//!
//! Each race runs [`PAIRS`] racing pairs (several pairs at a time, on fresh ids) and then reads
//! the database directly: a 200 answered to a user must mean that user's data is there, as they
//! sent it, unless they removed it themselves; nothing of one user may end up in the other's
//! thread. The guard alone decides on a snapshot and cannot pass these; the store's
//! owner-conditional writes do. SQLite runs under plain `cargo test`; PostgreSQL needs
//! `TOWER_SCOPE_TEST_PG_URL` (`.ci/run` starts a private cluster), hence `#[ignore]`.
#![cfg(all(
    feature = "axum",
    feature = "sqlite",
    feature = "postgres",
    feature = "aws-lc",
    feature = "cors",
    feature = "log",
    feature = "authz"
))]

#[path = "../examples/memory_server/app.rs"]
mod app;
#[path = "common/backend.rs"]
mod backend;
mod common;

use std::sync::Arc;
use std::time::Instant;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{AnyPool, Row};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Racing pairs per race (the issue's acceptance asks for at least 200).
const PAIRS: usize = 200;
/// Pairs in flight at once: enough to keep both users' requests overlapping.
const PARALLEL: usize = 8;

// ---- the database and the server ----------------------------------------------------------

use backend::{Backend, Db};

struct User {
    base: String,
    token: String,
    client: Client,
}

impl User {
    fn new(base: &str, sub: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: common::token_for(sub),
            client: Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("the server answers");
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn create(&self, thread: &str, title: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": thread, "title": title, "metadata": {"by": title}})),
        )
        .await
    }

    async fn save(&self, message: &str, thread: &str, resource: &str) -> (StatusCode, Value) {
        let body = json!({"messages": [{
            "id": message, "threadId": thread, "resourceId": resource,
            "role": "user", "content": format!("from-{resource}"),
        }]});
        self.call(Method::POST, "/api/memory/save-messages", Some(body))
            .await
    }
}

struct Race {
    pool: AnyPool,
    alice: User,
    bob: User,
    /// Keeps ids of this run apart from any other run on the same database.
    run: String,
}

/// A thread row: owner, title, metadata.
type ThreadRow = (Option<String>, Option<String>, Option<String>);

impl Race {
    fn id(&self, kind: &str, pair: usize) -> String {
        format!("{}-{kind}-{pair}", self.run)
    }

    async fn thread(&self, id: &str) -> Option<ThreadRow> {
        sqlx::query(r#"SELECT "resourceId", title, metadata FROM mastra_threads WHERE id = $1"#)
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await
            .unwrap()
            .map(|row| {
                (
                    row.try_get("resourceId").unwrap(),
                    row.try_get("title").unwrap(),
                    row.try_get("metadata").unwrap(),
                )
            })
    }

    /// A message row: its thread and its text (the server stores plain text in Mastra's
    /// format 2, `{"format": 2, "parts": [..], "content": text}`).
    async fn message(&self, id: &str) -> Option<(Option<String>, Option<String>)> {
        sqlx::query("SELECT thread_id, content FROM mastra_messages WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await
            .unwrap()
            .map(|row| {
                let content: Option<String> = row.try_get("content").unwrap();
                let text = content.map(|c| {
                    serde_json::from_str::<serde_json::Value>(&c)
                        .ok()
                        .and_then(|v| v["content"].as_str().map(str::to_owned))
                        .unwrap_or(c)
                });
                (row.try_get("thread_id").unwrap(), text)
            })
    }

    /// The ids and `resourceId`s of every message in a thread.
    async fn messages_in(&self, thread: &str) -> Vec<(String, Option<String>)> {
        sqlx::query(r#"SELECT id, "resourceId" FROM mastra_messages WHERE thread_id = $1"#)
            .bind(thread.to_owned())
            .fetch_all(&self.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row.try_get("id").unwrap(),
                    row.try_get("resourceId").unwrap(),
                )
            })
            .collect()
    }
}

async fn start(db: &Db) -> Arc<Race> {
    let secret = String::from_utf8(common::SECRET.to_vec()).unwrap();
    let base = backend::serve(backend::router(db.store.clone(), &secret)).await;
    Arc::new(Race {
        pool: db.store.pool().clone(),
        alice: User::new(&base, "alice"),
        bob: User::new(&base, "bob"),
        run: app::random_id(4),
    })
}

/// One racing pair: `Ok(true)` when the write the race is about was acknowledged and held,
/// `Ok(false)` when it was (rightly) refused, `Err` with what went wrong.
type PairFuture = std::pin::Pin<Box<dyn Future<Output = Result<bool, String>> + Send>>;

/// A 5xx is never a right answer here: the store must decide, not fail.
fn no_server_error(what: &str, statuses: &[StatusCode]) -> Result<(), String> {
    match statuses.iter().find(|s| s.is_server_error()) {
        Some(status) => Err(format!("{what}: answered {status}")),
        None => Ok(()),
    }
}

/// Runs `pair` [`PAIRS`] times, [`PARALLEL`] at once, and asserts that none went wrong.
async fn run_race(name: &str, db: Db, pair: fn(Arc<Race>, usize) -> PairFuture) {
    let race = start(&db).await;
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(PARALLEL));
    let mut pairs = JoinSet::new();
    for i in 0..PAIRS {
        let (race, permits) = (Arc::clone(&race), Arc::clone(&permits));
        pairs.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            pair(race, i).await
        });
    }
    let (mut failures, mut acknowledged) = (Vec::new(), 0);
    while let Some(result) = pairs.join_next().await {
        match result.expect("a pair panicked") {
            Ok(held) => acknowledged += usize::from(held),
            Err(failure) => failures.push(failure),
        }
    }
    println!(
        "{name}: {} of {PAIRS} pairs failed, {acknowledged} raced writes acknowledged ({:.1} s)",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    db.finish().await;
    // A race where nothing was ever acknowledged would prove nothing.
    assert!(acknowledged > 0, "{name}: no raced write was acknowledged");
    assert!(
        failures.is_empty(),
        "{name}: {} of {PAIRS} pairs lost or crossed an acknowledged write, e.g. {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

// ---- the races ----------------------------------------------------------------------------

/// Both create the same client-chosen thread id: a 200 means the thread is the caller's, with
/// the caller's title and metadata, in the answer and in the database.
fn same_thread_id_created_by_both(race: Arc<Race>, i: usize) -> PairFuture {
    Box::pin(async move {
        let x = race.id("create", i);
        let ((a, a_body), (b, b_body)) =
            tokio::join!(race.alice.create(&x, "alice"), race.bob.create(&x, "bob"));
        no_server_error(&x, &[a, b])?;
        let row = race.thread(&x).await;
        for (who, status, body) in [("alice", a, &a_body), ("bob", b, &b_body)] {
            if status != StatusCode::OK {
                continue;
            }
            let meta = json!({"by": who}).to_string();
            let expected = (Some(who.to_owned()), Some(who.to_owned()), Some(meta));
            if row.as_ref() != Some(&expected) {
                return Err(format!("{x}: {who} got 200 but the thread is {row:?}"));
            }
            if body["resourceId"] != who || body["title"] != who {
                return Err(format!("{x}: {who} got 200 with {body}"));
            }
        }
        if a != StatusCode::OK && b != StatusCode::OK {
            return Err(format!("{x}: neither creation succeeded ({a}, {b})"));
        }
        Ok(true)
    })
}

/// Bob saves a message into thread X while alice creates X: alice's 200 means X is hers and
/// holds nothing of bob's; bob's 200 means X is his and holds his message.
fn save_into_thread_while_other_creates_it(race: Arc<Race>, i: usize) -> PairFuture {
    Box::pin(async move {
        let (x, m) = (race.id("saveinto", i), race.id("saveinto-msg", i));
        let ((a, _), (b, _)) =
            tokio::join!(race.alice.create(&x, "alice"), race.bob.save(&m, &x, "bob"));
        no_server_error(&x, &[a, b])?;
        let owner = race.thread(&x).await.and_then(|(owner, _, _)| owner);
        let messages = race.messages_in(&x).await;
        if a == StatusCode::OK
            && (owner.as_deref() != Some("alice")
                || messages.iter().any(|(_, r)| r.as_deref() != Some("alice")))
        {
            return Err(format!(
                "{x}: alice got 200, owner {owner:?}, messages {messages:?}"
            ));
        }
        if b == StatusCode::OK
            && (owner.as_deref() != Some("bob") || !messages.iter().any(|(id, _)| *id == m))
        {
            return Err(format!(
                "{x}: bob got 200, owner {owner:?}, messages {messages:?}"
            ));
        }
        if a != StatusCode::OK && b != StatusCode::OK {
            return Err(format!("{x}: both were refused ({a}, {b})"));
        }
        Ok(true)
    })
}

/// Both save the same new message id into their own threads: a 200 means the message is in the
/// caller's thread with the caller's content.
fn same_new_message_id_saved_by_both(race: Arc<Race>, i: usize) -> PairFuture {
    Box::pin(async move {
        let (ta, tb, m) = (
            race.id("sameid-a", i),
            race.id("sameid-b", i),
            race.id("sameid-msg", i),
        );
        assert_eq!(race.alice.create(&ta, "alice").await.0, StatusCode::OK);
        assert_eq!(race.bob.create(&tb, "bob").await.0, StatusCode::OK);
        let ((a, _), (b, _)) = tokio::join!(
            race.alice.save(&m, &ta, "alice"),
            race.bob.save(&m, &tb, "bob")
        );
        no_server_error(&m, &[a, b])?;
        let stored = race.message(&m).await;
        for (who, status, thread) in [("alice", a, &ta), ("bob", b, &tb)] {
            let expected = (Some(thread.clone()), Some(format!("from-{who}")));
            if status == StatusCode::OK && stored.as_ref() != Some(&expected) {
                return Err(format!("{m}: {who} got 200 but the message is {stored:?}"));
            }
        }
        if a != StatusCode::OK && b != StatusCode::OK {
            return Err(format!("{m}: both were refused ({a}, {b})"));
        }
        Ok(true)
    })
}

/// Bob deletes his own thread X several times at once while alice recreates X: once alice has
/// a 200, X is hers and stays hers.
fn repeated_delete_while_other_recreates(race: Arc<Race>, i: usize) -> PairFuture {
    Box::pin(async move {
        let x = race.id("recreate", i);
        let path = format!("/api/memory/threads/{x}");
        assert_eq!(race.bob.create(&x, "bob").await.0, StatusCode::OK);
        let bob = async {
            tokio::join!(
                race.bob.call(Method::DELETE, &path, None),
                race.bob.call(Method::DELETE, &path, None),
                race.bob.call(Method::DELETE, &path, None),
            )
        };
        let alice = async {
            // Alice retries until X is free: her create must land while bob's deletes run.
            let mut statuses = Vec::new();
            for _ in 0..6 {
                let status = race.alice.create(&x, "alice").await.0;
                statuses.push(status);
                if status == StatusCode::OK {
                    break;
                }
                tokio::task::yield_now().await;
            }
            statuses
        };
        let ((d1, d2, d3), statuses) = tokio::join!(bob, alice);
        no_server_error(&x, &[d1.0, d2.0, d3.0])?;
        no_server_error(&x, &statuses)?;
        let alice_created = statuses.contains(&StatusCode::OK);
        let owner = race.thread(&x).await.and_then(|(owner, _, _)| owner);
        if alice_created && owner.as_deref() != Some("alice") {
            return Err(format!(
                "{x}: alice got 200 but the thread's owner is {owner:?}"
            ));
        }
        Ok(alice_created)
    })
}

/// Bob deletes a message id that does not exist yet while alice saves it: alice's 200 means her
/// message is there afterwards.
fn delete_unknown_message_while_other_saves_it(race: Arc<Race>, i: usize) -> PairFuture {
    Box::pin(async move {
        let (t, m) = (race.id("lost", i), race.id("lost-msg", i));
        assert_eq!(race.alice.create(&t, "alice").await.0, StatusCode::OK);
        let delete = json!({"messageIds": [m]});
        let ((a, _), (d1, _), (d2, _)) = tokio::join!(
            race.alice.save(&m, &t, "alice"),
            race.bob.call(
                Method::POST,
                "/api/memory/messages/delete",
                Some(delete.clone())
            ),
            race.bob
                .call(Method::POST, "/api/memory/messages/delete", Some(delete)),
        );
        no_server_error(&m, &[a, d1, d2])?;
        let stored = race.message(&m).await;
        let expected = (Some(t.clone()), Some("from-alice".to_owned()));
        if a == StatusCode::OK && stored.as_ref() != Some(&expected) {
            return Err(format!("{m}: alice got 200 but the message is {stored:?}"));
        }
        if a != StatusCode::OK {
            return Err(format!(
                "{m}: alice's save into her own thread answered {a}"
            ));
        }
        Ok(true)
    })
}

macro_rules! races {
    ($($race:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $race() {
                    super::run_race(stringify!($race), super::Db::new(super::Backend::Sqlite).await, super::$race)
                        .await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[ignore = "needs PostgreSQL: set TOWER_SCOPE_TEST_PG_URL (run by .ci/run)"]
                async fn $race() {
                    super::run_race(stringify!($race), super::Db::new(super::Backend::Postgres).await, super::$race)
                        .await;
                }
            )*
        }
    };
}

races!(
    same_thread_id_created_by_both,
    save_into_thread_while_other_creates_it,
    same_new_message_id_saved_by_both,
    repeated_delete_while_other_recreates,
    delete_unknown_message_while_other_saves_it,
);
