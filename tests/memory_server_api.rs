//! The memory API routes `@mastra/client-js` calls beyond threads and messages — clone, working
//! memory, search, config, status — attacked over real HTTP by bob (and by alice racing herself),
//! on SQLite (plain `cargo test`) and PostgreSQL (`--ignored`, `.ci/run`), from one source.
//!
//! Every refusal must leave alice's data exactly as it was; every write by a client-chosen id is
//! decided in the statement or transaction that writes, so races cannot take anything over.
#![cfg(all(
    feature = "axum",
    feature = "sqlite",
    feature = "postgres",
    feature = "aws-lc",
    feature = "cors",
    feature = "log"
))]

#[path = "../examples/memory_server/app.rs"]
mod app;
#[macro_use]
#[path = "common/backend.rs"]
mod backend;
mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use backend::Db;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const SECRET: &str = "memory-api-test-secret-0123456789abcdef";
const FOREIGN: &str = "Access denied: thread belongs to a different resource";

fn token(sub: &str) -> String {
    backend::token(SECRET, sub)
}

#[derive(Clone)]
struct User {
    base: String,
    token: String,
    client: Client,
}

impl User {
    fn new(base: &str, sub: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: token(sub),
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
        read(req).await
    }

    async fn raw(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_owned());
        read(req).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn thread(&self, id: &str, title: &str) {
        let (status, body) = self
            .post(
                "/api/memory/threads",
                json!({"threadId": id, "title": title, "metadata": {"keep": [1, 2]}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn say(&self, me: &str, thread: &str, id: &str, text: &str) {
        let message = json!({"id": id, "threadId": thread, "resourceId": me, "role": "user", "content": text});
        let (status, body) = self
            .post("/api/memory/save-messages", json!({"messages": [message]}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// The ids and texts of a thread's messages, as its owner lists them.
    async fn texts(&self, thread: &str) -> Vec<(String, String)> {
        let (status, body) = self
            .get(&format!("/api/memory/threads/{thread}/messages"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_owned(),
                    m["content"]["content"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }
}

async fn read(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn start(db: &Db) -> (User, User) {
    let base = backend::serve(backend::router(db.store.clone(), SECRET)).await;
    (User::new(&base, "alice"), User::new(&base, "bob"))
}

/// Alice's thread `a1` with two messages, and bob's thread `b1` with one.
async fn fixtures(alice: &User, bob: &User) {
    alice.thread("a1", "diary").await;
    alice.say("alice", "a1", "am1", "secret one").await;
    alice.say("alice", "a1", "am2", "secret two").await;
    bob.thread("b1", "bob's").await;
    bob.say("bob", "b1", "bm1", "bob's own").await;
}

async fn assert_alice_intact(db: &Db, alice: &User) {
    let (status, thread) = alice.get("/api/memory/threads/a1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&thread["title"], &thread["resourceId"]),
        (&json!("diary"), &json!("alice"))
    );
    assert_eq!(thread["metadata"], json!({"keep": [1, 2]}));
    assert_eq!(
        alice.texts("a1").await,
        vec![
            ("am1".to_owned(), "secret one".to_owned()),
            ("am2".to_owned(), "secret two".to_owned())
        ]
    );
    let owners: Vec<(String,)> =
        sqlx::query_as(r#"SELECT "resourceId" FROM mastra_messages WHERE thread_id = 'a1'"#)
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert!(owners.iter().all(|(o,)| o == "alice"), "{owners:?}");
}

async fn bob_cannot_clone_from_or_onto_alices_threads(db: &Db) {
    let (alice, bob) = start(db).await;
    fixtures(&alice, &bob).await;
    let threads = db.count("mastra_threads").await;
    let messages = db.count("mastra_messages").await;

    let (status, body) = bob
        .post(
            "/api/memory/threads/a1/clone",
            json!({"newThreadId": "stolen"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some(FOREIGN))
    );
    // His own thread onto alice's id, by body field and with her resourceId in the body.
    for body in [
        json!({"newThreadId": "a1"}),
        json!({"newThreadId": "a1", "resourceId": "alice", "title": "mine now"}),
    ] {
        let (status, answer) = bob.post("/api/memory/threads/b1/clone", body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    }
    // A duplicate `newThreadId` key: the guard and the handler must not read different ones.
    let (status, answer) = bob
        .raw(
            Method::POST,
            "/api/memory/threads/b1/clone",
            r#"{"newThreadId":"fresh","newThreadId":"a1"}"#,
        )
        .await;
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN,
        "{status} {answer}"
    );
    assert_eq!(db.count("mastra_threads").await, threads);
    assert_eq!(db.count("mastra_messages").await, messages);
    assert_alice_intact(db, &alice).await;

    // Alice's own clone copies her messages with new ids into a thread of hers.
    let (status, clone) = alice
        .post(
            "/api/memory/threads/a1/clone",
            json!({"newThreadId": "a1-copy"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{clone}");
    assert_eq!(clone["thread"]["resourceId"], "alice");
    assert_eq!(clone["thread"]["title"], "Clone of diary");
    assert_eq!(clone["thread"]["metadata"]["clone"]["sourceThreadId"], "a1");
    let texts: Vec<String> = alice
        .texts("a1-copy")
        .await
        .into_iter()
        .map(|t| t.1)
        .collect();
    assert_eq!(texts, ["secret one", "secret two"]);
    assert_eq!(clone["messageIdMap"].as_object().unwrap().len(), 2);
    // Into an id she already has: 409, and nothing is added.
    let (status, body) = alice
        .post(
            "/api/memory/threads/a1/clone",
            json!({"newThreadId": "a1-copy"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("Thread with id a1-copy already exists")
        )
    );
    assert_eq!(alice.texts("a1-copy").await.len(), 2);
    // Bob cannot read the copy either.
    let (status, _) = bob.get("/api/memory/threads/a1-copy/messages").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn racing_clones_into_one_id_give_it_to_exactly_one(db: &Db) {
    let (alice, bob) = start(db).await;
    fixtures(&alice, &bob).await;
    for round in 0..6 {
        let target = format!("contested-{round}");
        let mut tasks = Vec::new();
        for (user, source) in [(&alice, "a1"), (&bob, "b1"), (&alice, "a1"), (&bob, "b1")] {
            let (user, path, target) = (
                user.clone(),
                format!("/api/memory/threads/{source}/clone"),
                target.clone(),
            );
            tasks.push(tokio::spawn(async move {
                user.post(&path, json!({"newThreadId": target})).await
            }));
        }
        let mut codes = Vec::new();
        for task in tasks {
            codes.push(task.await.unwrap().0);
        }
        assert_eq!(
            codes.iter().filter(|c| **c == StatusCode::OK).count(),
            1,
            "round {round}: {codes:?}"
        );
        assert!(
            codes
                .iter()
                .all(|c| [StatusCode::OK, StatusCode::FORBIDDEN, StatusCode::CONFLICT].contains(c)),
            "{codes:?}"
        );
        // The winner's thread holds only the winner's copies.
        let rows: Vec<(Option<String>,)> =
            sqlx::query_as(r#"SELECT t."resourceId" FROM mastra_threads AS t WHERE t.id = $1"#)
                .bind(&target)
                .fetch_all(db.pool())
                .await
                .unwrap();
        let owner = rows[0].0.clone().unwrap();
        let foreign: i64 = sqlx::query_scalar(
            r#"SELECT COUNT(*) FROM mastra_messages WHERE thread_id = $1 AND "resourceId" <> $2"#,
        )
        .bind(&target)
        .bind(&owner)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(foreign, 0);
        let copies: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM mastra_messages WHERE thread_id = $1")
                .bind(&target)
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(copies, if owner == "alice" { 2 } else { 1 }, "{owner}");
    }
    assert_alice_intact(db, &alice).await;
}

async fn working_memory_is_the_callers_resource_only(db: &Db) {
    let (alice, bob) = start(db).await;
    fixtures(&alice, &bob).await;
    let wm = "/api/memory/threads/a1/working-memory";
    let (status, body) = alice.post(wm, json!({"workingMemory": "likes tea"})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"success": true})));

    for (method, path, body) in [
        (Method::GET, format!("{wm}?resourceId=alice"), None),
        (
            Method::POST,
            wm.to_owned(),
            Some(json!({"workingMemory": "pwned", "resourceId": "alice"})),
        ),
    ] {
        let (status, answer) = bob.call(method, &path, body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::FORBIDDEN, Some(FOREIGN))
        );
    }
    // Through his own thread, naming alice in body and query: he writes and reads his own.
    let (status, _) = bob
        .post(
            "/api/memory/threads/b1/working-memory?resourceId=alice",
            json!({"workingMemory": "bob's notes", "resourceId": "alice"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, mine) = bob
        .get("/api/memory/threads/b1/working-memory?resourceId=alice")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["workingMemory"], "bob's notes", "{mine}");
    // Through a thread id that does not exist: his resource, never hers.
    let (status, missing) = bob.get("/api/memory/threads/nowhere/working-memory").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&missing["workingMemory"], &missing["threadExists"]),
        (&json!("bob's notes"), &json!(false))
    );
    let (status, body) = bob
        .post(
            "/api/memory/threads/nowhere/working-memory",
            json!({"workingMemory": "x"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("Thread not found"))
    );
    // Duplicate `resourceId` keys in the body cannot smuggle alice's resource in.
    let (status, _) = bob
        .raw(
            Method::POST,
            "/api/memory/threads/b1/working-memory",
            r#"{"workingMemory":"dup","resourceId":"bob","resourceId":"alice"}"#,
        )
        .await;
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (_, hers) = alice.get(wm).await;
    assert_eq!(hers["workingMemory"], "likes tea");
    assert_eq!(hers["source"], "resource");
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as(r#"SELECT id, "workingMemory" FROM mastra_resources ORDER BY id"#)
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(rows[0], ("alice".to_owned(), Some("likes tea".to_owned())));
    assert_eq!(rows.len(), 2);
    // Bad input: no text, a number, NUL.
    for body in [
        json!({}),
        json!({"workingMemory": 5}),
        json!({"workingMemory": "a\u{0}"}),
    ] {
        let (status, _) = alice.post(wm, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    assert_alice_intact(db, &alice).await;
}

async fn search_never_crosses_resources(db: &Db) {
    let (alice, bob) = start(db).await;
    fixtures(&alice, &bob).await;
    let (status, found) = alice
        .get("/api/memory/search?searchQuery=secret&resourceId=alice&threadId=a1")
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let ids: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["am2", "am1"]);
    assert_eq!(
        found["results"][0]["context"]["before"][0]["content"],
        "secret one"
    );

    // Every way of naming alice: her resource, her thread, both, twice, encoded.
    for query in [
        "searchQuery=secret&resourceId=alice",
        "searchQuery=secret&resourceId=alice&resourceId=alice",
        "searchQuery=secret&resourceId=%61lice",
    ] {
        let (status, found) = bob.get(&format!("/api/memory/search?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {found}");
        let text = found.to_string();
        assert!(
            !text.contains("secret one") && !text.contains("\"a1\""),
            "{query}: {text}"
        );
    }
    for query in [
        "searchQuery=secret&threadId=a1",
        "searchQuery=secret&threadId=%61%31",
        "searchQuery=secret&threadId=b1&threadId=a1",
        "searchQuery=secret&threadId=a1&threadId=b1",
    ] {
        let (status, found) = bob.get(&format!("/api/memory/search?{query}")).await;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::BAD_REQUEST,
            "{query}: {status} {found}"
        );
        assert!(!found.to_string().contains("secret"), "{query}: {found}");
    }
    for query in ["", "searchQuery=x&limit=abc", "searchQuery=x&agentId=nope"] {
        let (status, _) = bob.get(&format!("/api/memory/search?{query}")).await;
        assert!(status.is_client_error(), "{query}: {status}");
    }
}

async fn listing_options_are_checked_and_filtered_by_owner(db: &Db) {
    let (alice, bob) = start(db).await;
    fixtures(&alice, &bob).await;
    for query in [
        "orderBy%5Bfield%5D=title",
        "orderBy%5Bdirection%5D=sideways",
        "metadata=notjson",
        "metadata=%5B1%5D",
        "perPage=-1",
        "page=9223372036854775807&perPage=100",
    ] {
        let (status, body) = bob.get(&format!("/api/memory/threads?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"], "Invalid query parameters");
    }
    let (_, listed) = bob
        .get("/api/memory/threads?resourceId=alice&metadata=%7B%22keep%22%3A%5B1%2C2%5D%7D")
        .await;
    let ids: Vec<&str> = listed["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b1"]);
    for query in [
        "perPage=abc",
        "include=notjson",
        "orderBy=%7B%22field%22%3A%22role%22%7D",
    ] {
        let (status, _) = alice
            .get(&format!("/api/memory/threads/a1/messages?{query}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
    // Include names alice's message from bob's listing: refused, nothing of hers shown.
    let include = "%5B%7B%22id%22%3A%22am1%22%2C%22withNextMessages%22%3A5%7D%5D";
    let (status, body) = bob
        .get(&format!(
            "/api/memory/threads/b1/messages?include={include}"
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.to_string().contains("secret"));
    let (status, page) = alice
        .get(&format!(
            "/api/memory/threads/a1/messages?perPage=0&include={include}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert_eq!(
        (page["total"].as_u64(), page["hasMore"].as_bool()),
        (Some(2), Some(true))
    );
}

async fn moving_a_message_only_moves_ones_own(db: &Db) {
    let (alice, bob) = start(db).await;
    fixtures(&alice, &bob).await;
    alice.thread("a2", "other").await;
    alice.say("alice", "a2", "am2", "secret two, moved").await;
    assert_eq!(
        alice.texts("a2").await,
        [("am2".to_owned(), "secret two, moved".to_owned())]
    );
    assert_eq!(alice.texts("a1").await.len(), 1);
    let message = json!({"id": "bm1", "threadId": "a1", "resourceId": "alice", "role": "user", "content": "taken"});
    let (status, body) = alice
        .post("/api/memory/save-messages", json!({"messages": [message]}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some(FOREIGN))
    );
    assert_eq!(
        bob.texts("b1").await,
        [("bm1".to_owned(), "bob's own".to_owned())]
    );
}

async fn config_status_and_unknown_agents(db: &Db) {
    let (alice, _) = start(db).await;
    let (status, config) = alice.get("/api/memory/config?agentId=memAgent").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["config"]["workingMemory"]["enabled"], true);
    assert_eq!(
        alice.get("/api/memory/config?agentId=nope").await.1,
        json!({"config": null})
    );
    assert_eq!(
        alice.get("/api/memory/status").await.1,
        json!({"result": true, "memoryType": "local"})
    );
    let (status, body) = alice
        .post("/api/memory/threads?agentId=nope", json!({"title": "x"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("Agent not found"))
    );
    assert_eq!(db.count("mastra_threads").await, 0);
    // Unknown memory routes below the guarded prefix are refused, not served.
    for (method, path) in [
        (Method::GET, "/api/memory/threads/a1/unknown"),
        (Method::PUT, "/api/memory/threads/a1/working-memory"),
        (Method::DELETE, "/api/memory/search"),
    ] {
        let (status, _) = alice.call(method.clone(), path, None).await;
        assert!(!status.is_success(), "{method} {path}: {status}");
    }
    let (status, body) = alice
        .post(
            "/api/memory/threads/a1/transfer",
            json!({"resourceId": "bob"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

/// A token whose grant claims are exactly `permissions` (`scope`, space-delimited).
fn granted(base: &str, sub: &str, scope: &str) -> User {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut claims = app::Claims::user(sub, exp);
    claims.grants.scope = Some(scope.split(' ').collect());
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    User {
        base: base.to_owned(),
        token: jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap(),
        client: Client::new(),
    }
}

async fn admins_read_but_never_write_through_the_new_routes(db: &Db) {
    let (alice, bob) = start(db).await;
    fixtures(&alice, &bob).await;
    let wm = "/api/memory/threads/a1/working-memory";
    assert_eq!(
        alice
            .post(wm, json!({"workingMemory": "likes tea"}))
            .await
            .0,
        StatusCode::OK
    );
    let admin = granted(&alice.base, "root", "memory:admin");
    // Reads act as the thread's owner: her working memory, her search.
    let (status, hers) = admin.get(wm).await;
    assert_eq!(
        (status, &hers["workingMemory"]),
        (StatusCode::OK, &json!("likes tea"))
    );
    let (status, found) = admin
        .get("/api/memory/search?searchQuery=x&resourceId=alice")
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["results"][0]["id"], "am2");
    // A `?threadId=` is checked as the admin's own (the guard's query check is not
    // privileged): refused, fail-closed.
    let (status, _) = admin
        .get("/api/memory/search?searchQuery=x&threadId=a1")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Writes through her thread: refused, nothing changed.
    for (path, body) in [
        (wm, json!({"workingMemory": "admin was here"})),
        (
            "/api/memory/threads/a1/clone",
            json!({"newThreadId": "admin-copy"}),
        ),
        (
            "/api/memory/threads/a1/transfer",
            json!({"resourceId": "root"}),
        ),
    ] {
        let (status, answer) = admin.post(path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
    }
    assert_eq!(alice.get(wm).await.1["workingMemory"], "likes tea");
    assert_eq!(db.count("mastra_threads").await, 2);
    // A read-only token reads its own, and every new write route is refused.
    let viewer = granted(&alice.base, "alice", "memory:read");
    assert_eq!(viewer.get(wm).await.0, StatusCode::OK);
    assert_eq!(
        viewer.get("/api/memory/search?searchQuery=x").await.0,
        StatusCode::OK
    );
    for (path, body) in [
        (wm, json!({"workingMemory": "viewer"})),
        ("/api/memory/threads/a1/clone", json!({})),
    ] {
        let (status, answer) = viewer.post(path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
    }
    assert_eq!(db.count("mastra_threads").await, 2);
    assert_alice_intact(db, &alice).await;
}

on_both_backends!(
    bob_cannot_clone_from_or_onto_alices_threads,
    racing_clones_into_one_id_give_it_to_exactly_one,
    working_memory_is_the_callers_resource_only,
    search_never_crosses_resources,
    listing_options_are_checked_and_filtered_by_owner,
    moving_a_message_only_moves_ones_own,
    config_status_and_unknown_agents,
    admins_read_but_never_write_through_the_new_routes,
);

// ---- thread-scoped working memory: the example binary with WORKING_MEMORY_SCOPE=thread ------

async fn thread_scoped_working_memory_lives_in_each_thread(db: &Db) {
    let server = common::spawn_memory_server(
        &db.url,
        SECRET,
        &[("WORKING_MEMORY_SCOPE", "thread"), ("RUST_LOG", "warn")],
    );
    let (alice, bob) = (
        User::new(&server.base, "alice"),
        User::new(&server.base, "bob"),
    );
    fixtures(&alice, &bob).await;
    alice.thread("a2", "second").await;
    let (status, _) = alice
        .post(
            "/api/memory/threads/a1/working-memory",
            json!({"workingMemory": "only a1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, a1) = alice.get("/api/memory/threads/a1/working-memory").await;
    assert_eq!(
        (&a1["workingMemory"], &a1["source"]),
        (&json!("only a1"), &json!("thread"))
    );
    let (_, a2) = alice.get("/api/memory/threads/a2/working-memory").await;
    assert_eq!(a2["workingMemory"], Value::Null);
    // The thread's other metadata is kept; the working memory sits beside it.
    let (_, thread) = alice.get("/api/memory/threads/a1").await;
    assert_eq!(
        thread["metadata"],
        json!({"keep": [1, 2], "workingMemory": "only a1"})
    );
    let (_, config) = alice.get("/api/memory/config").await;
    assert_eq!(config["config"]["workingMemory"]["scope"], "thread");
    let (status, _) = bob
        .post(
            "/api/memory/threads/a1/working-memory",
            json!({"workingMemory": "pwned"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = bob.get("/api/memory/threads/a1/working-memory").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, a1) = alice.get("/api/memory/threads/a1/working-memory").await;
    assert_eq!(a1["workingMemory"], "only a1");
    // Concurrent writes of alice's to one thread: the last one wins whole, nothing is lost.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            alice
                .post(
                    "/api/memory/threads/a1/working-memory",
                    json!({"workingMemory": format!("v{n}")}),
                )
                .await
                .0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let (_, thread) = alice.get("/api/memory/threads/a1").await;
    assert_eq!(thread["metadata"]["keep"], json!([1, 2]));
    assert!(
        thread["metadata"]["workingMemory"]
            .as_str()
            .unwrap()
            .starts_with('v')
    );
    drop(server);
}

#[tokio::test]
async fn thread_scoped_working_memory_lives_in_each_thread_sqlite() {
    let db = Db::new(backend::Backend::Sqlite).await;
    thread_scoped_working_memory_lives_in_each_thread(&db).await;
    db.finish().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TOWER_SCOPE_TEST_PG_URL (run by .ci/run)"]
async fn thread_scoped_working_memory_lives_in_each_thread_postgres() {
    let db = Db::new(backend::Backend::Postgres).await;
    thread_scoped_working_memory_lives_in_each_thread(&db).await;
    db.finish().await;
}

#[test]
fn a_bad_working_memory_scope_stops_the_server() {
    let output = Command::new(common::example_binary())
        .env("PORT", "0")
        .env("DATABASE_URL", "sqlite::memory:")
        .env("JWT_SECRET", SECRET)
        .env("WORKING_MEMORY_SCOPE", "threads")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("WORKING_MEMORY_SCOPE"));
}
