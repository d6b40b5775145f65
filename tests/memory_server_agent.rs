//! The memory server's agent `memAgent` and the seeds' chat route, end to end over real HTTP,
//! on SQLite (plain `cargo test`) and PostgreSQL (`--ignored`, `.ci/run`), users alice and bob.
//!
//! Bob tries every way the agent body offers to reach Alice's memory — `memory.thread` as an id
//! and as `{id}`, the legacy `threadId`, `memory.resource` = alice, escaped spellings, duplicate
//! keys, disagreeing fields, Mastra's reserved request-context key — and Alice's thread must be
//! unchanged. Two users racing on one new thread id: exactly one owns it, the other gets 403.
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

use std::sync::Arc;

use backend::{Backend, Db};
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const SECRET: &str = "agent-test-secret-0123456789abcdef0123";

fn token(sub: &str) -> String {
    backend::token(SECRET, sub)
}

/// One answer: status, headers, body text, and the `data:` events when it streamed.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// The JSON events of a `text/event-stream` answer; the stream must end with `[DONE]`.
    fn events(&self) -> Vec<Value> {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        assert!(
            self.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        assert!(self.text.ends_with("data: [DONE]\n\n"), "{}", self.text);
        self.text
            .split("\n\n")
            .filter_map(|block| block.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .map(|data| serde_json::from_str(data).unwrap())
            .collect()
    }

    /// The agent's answer, assembled from the `text-delta` events.
    fn answer(&self) -> String {
        self.events()
            .iter()
            .filter(|e| e["type"] == "text-delta")
            .map(|e| e["payload"]["text"].as_str().unwrap().to_owned())
            .collect()
    }

    fn thread_header(&self) -> Option<&str> {
        self.headers.get("x-thread-id").map(|v| v.to_str().unwrap())
    }

    fn error(&self) -> (StatusCode, String) {
        (
            self.status,
            self.json()["error"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

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

    /// POSTs `body` (raw text, sent as JSON) to `path`.
    async fn post_raw(&self, path: &str, body: &str) -> Answer {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        Answer {
            status: res.status(),
            headers: res.headers().clone(),
            text: res.text().await.unwrap(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.post_raw(path, &body.to_string()).await
    }

    async fn stream(&self, body: Value) -> Answer {
        self.post("/api/agents/memAgent/stream", body).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    /// The messages of a thread as `(role, text)`, through the memory API.
    async fn messages(&self, thread: &str) -> Vec<(String, String)> {
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
                    m["role"].as_str().unwrap().to_owned(),
                    m["content"]["content"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

async fn start(db: &Db) -> (User, User) {
    let base = backend::serve(backend::router(db.store.clone(), SECRET)).await;
    (User::new(&base, "alice"), User::new(&base, "bob"))
}

fn say(text: &str, thread: Value) -> Value {
    json!({ "messages": text, "memory": { "thread": thread, "resource": "alice" } })
}

async fn the_agent_recalls_this_thread_and_nothing_else(db: &Db) {
    let (alice, bob) = start(db).await;
    let res = alice
        .client
        .post(format!("{}/api/agents/memAgent/stream", alice.base))
        .bearer_auth(&alice.token)
        .header("origin", "https://app.example")
        .body(say("My favourite colour is teal", json!("a-1")).to_string())
        .send()
        .await
        .unwrap();
    let first = Answer {
        status: res.status(),
        headers: res.headers().clone(),
        text: res.text().await.unwrap(),
    };
    assert_eq!(first.thread_header(), Some("a-1"));
    // A page on another origin may read it.
    let exposed = first.headers["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-thread-id"), "{exposed}");
    let events = first.events();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"start"));
    assert_eq!(types.last(), Some(&"finish"));
    assert!(types.iter().filter(|t| **t == "text-delta").count() > 1);
    assert!(first.answer().starts_with("Nice to meet you."));
    // As Mastra: one message id from `start` to `finish`, and the answer is saved under it.
    let message_id = events[0]["payload"]["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        events
            .iter()
            .filter(
                |e| ["step-start", "step-finish", "finish"].contains(&e["type"].as_str().unwrap())
            )
            .all(|e| e["payload"]["messageId"] == message_id.as_str())
    );
    assert_eq!(
        events.last().unwrap()["payload"]["output"]["text"],
        first.answer()
    );

    // Same thread, `{id}` form: the earlier message is recalled.
    let second = alice
        .stream(say("What did I tell you?", json!({ "id": "a-1" })))
        .await;
    assert!(
        second
            .answer()
            .contains(r#"Earlier in this thread you said: "My favourite colour is teal""#),
        "{}",
        second.answer()
    );
    // Another thread of alice's: nothing from a-1.
    let other = alice
        .stream(say("What did I tell you?", json!("a-2")))
        .await;
    assert!(!other.answer().contains("teal"), "{}", other.answer());
    // Bob's own thread: nothing of alice's, even naming her as the resource.
    let bobs = bob.stream(say("What did alice say?", json!("b-1"))).await;
    assert!(!bobs.answer().contains("teal"));

    // Every turn is saved: user message, then the assistant's answer.
    let saved = alice.messages("a-1").await;
    let roles: Vec<&str> = saved.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(saved[0].1, "My favourite colour is teal");
    assert_eq!(saved[1].1, first.answer());
    let (_, listed) = alice.get("/api/memory/threads/a-1/messages").await;
    assert_eq!(listed["messages"][1]["id"], message_id.as_str());
    assert_eq!(saved[3].1, second.answer());
}

async fn recall_names_the_last_five_messages_of_the_thread(db: &Db) {
    let (alice, _) = start(db).await;
    let generate = "/api/agents/memAgent/generate";
    for n in 1..=7 {
        let res = alice
            .post(generate, say(&format!("fact {n}"), json!("long")))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    }
    let res = alice.post(generate, say("recall", json!("long"))).await;
    let text = res.json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with(
            r#"Earlier in this thread you said: "fact 3", "fact 4", "fact 5", "fact 6", "fact 7"."#
        ),
        "{text}"
    );
    assert_eq!(alice.messages("long").await.len(), 16);
}

async fn memory_resource_naming_alice_is_forced_to_the_caller(db: &Db) {
    let (alice, bob) = start(db).await;
    let res = bob.stream(say("mine", json!("bobs-thread"))).await;
    assert_eq!(res.status, StatusCode::OK);
    let (status, thread) = bob.get("/api/memory/threads/bobs-thread").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(thread["resourceId"], "bob");
    let (status, _) = alice.get("/api/memory/threads/bobs-thread").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Generate too, and the legacy top-level fields.
    let res = bob
        .post(
            "/api/agents/memAgent/generate",
            json!({"messages": "legacy", "threadId": "bobs-legacy", "resourceId": "alice"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.thread_header(), Some("bobs-legacy"));
    assert_eq!(res.json()["resourceId"], "bob");
    let (_, thread) = bob.get("/api/memory/threads/bobs-legacy").await;
    assert_eq!(thread["resourceId"], "bob");
}

async fn bob_cannot_reach_alices_thread_in_any_spelling(db: &Db) {
    let (alice, bob) = start(db).await;
    alice.stream(say("secret plans", json!("alices"))).await;
    let foreign = (
        StatusCode::FORBIDDEN,
        "Access denied: thread belongs to a different resource".to_owned(),
    );
    let stream = "/api/agents/memAgent/stream";
    let generate = "/api/agents/memAgent/generate";
    for (path, body) in [
        (
            stream,
            r#"{"messages":"hi","memory":{"thread":"alices","resource":"bob"}}"#,
        ),
        (
            stream,
            r#"{"messages":"hi","memory":{"thread":{"id":"alices"},"resource":"alice"}}"#,
        ),
        (
            stream,
            r#"{"messages":"hi","memory":{"thread":"\u0061lices"}}"#,
        ),
        (
            stream,
            r#"{"messages":"hi","threadId":"alices","resourceId":"alice"}"#,
        ),
        (
            stream,
            r#"{"messages":"hi","memory":{"thread":"alices"},"threadId":"alices"}"#,
        ),
        (
            generate,
            r#"{"messages":"hi","memory":{"thread":"alices","resource":"alice"}}"#,
        ),
        (generate, r#"{"messages":"hi","threadId":"alices"}"#),
        ("/api/chat", r#"{"message":"hi","threadId":"alices"}"#),
    ] {
        let res = bob.post_raw(path, body).await;
        assert_eq!(res.error(), foreign, "{path} {body}");
        assert!(res.thread_header().is_none());
    }
    // Alice's thread is as she left it: one turn.
    assert_eq!(alice.messages("alices").await.len(), 2);
}

async fn ambiguous_or_forged_bodies_are_refused(db: &Db) {
    let (alice, bob) = start(db).await;
    alice.stream(say("secret", json!("alices"))).await;
    let stream = "/api/agents/memAgent/stream";
    for (body, status, message) in [
        // Duplicate keys: a handler might read either value.
        (
            r#"{"messages":"hi","memory":{"thread":"bobs"},"memory":{"thread":"alices"}}"#,
            StatusCode::BAD_REQUEST,
            r#"Duplicate key "memory" in request body"#,
        ),
        (
            r#"{"messages":"hi","memory":{"thread":"bobs","thread":"alices"}}"#,
            StatusCode::BAD_REQUEST,
            r#"Duplicate key "thread" in request body"#,
        ),
        (
            r#"{"messages":"hi","memory":{"thread":{"id":"bobs","id":"alices"}}}"#,
            StatusCode::BAD_REQUEST,
            r#"Duplicate key "id" in request body"#,
        ),
        // Nested and legacy fields disagreeing.
        (
            r#"{"messages":"hi","memory":{"thread":"bobs"},"threadId":"alices"}"#,
            StatusCode::BAD_REQUEST,
            "The request names two different threads",
        ),
        (
            r#"{"messages":"hi","memory":{"thread":"alices"},"threadId":"bobs"}"#,
            StatusCode::BAD_REQUEST,
            "The request names two different threads",
        ),
        // Shapes no thread id has.
        (
            r#"{"messages":"hi","memory":{"thread":42}}"#,
            StatusCode::BAD_REQUEST,
            "Invalid thread id",
        ),
        (
            r#"{"messages":"hi","memory":{"thread":{"id":["alices"]}}}"#,
            StatusCode::BAD_REQUEST,
            "Invalid thread id",
        ),
        (
            r#"{"messages":"hi","memory":{"thread":""}}"#,
            StatusCode::BAD_REQUEST,
            "Invalid thread id",
        ),
        // Mastra's reserved context key and the legacy spelling must be the caller's.
        (
            r#"{"messages":"hi","requestContext":{"mastra__resourceId":"alice"}}"#,
            StatusCode::FORBIDDEN,
            "Access denied: cannot access a different resource",
        ),
        (
            r#"{"messages":"hi","resourceid":"alice"}"#,
            StatusCode::FORBIDDEN,
            "Access denied: cannot access a different resource",
        ),
        // `memory` must be an object to be scoped.
        (
            r#"{"messages":"hi","memory":"alices"}"#,
            StatusCode::BAD_REQUEST,
            "",
        ),
        // Memory without a thread, and no user message.
        (
            r#"{"messages":"hi","memory":{"resource":"bob"}}"#,
            StatusCode::BAD_REQUEST,
            "memory.thread is required when memory is used",
        ),
        (
            r#"{"messages":[],"memory":{"thread":"bobs"}}"#,
            StatusCode::BAD_REQUEST,
            "messages must contain a user message",
        ),
        (r#"{"messages":"hi""#, StatusCode::BAD_REQUEST, ""),
    ] {
        let res = bob.post_raw(stream, body).await;
        assert_eq!(res.status, status, "{body}: {}", res.text);
        if !message.is_empty() {
            assert_eq!(res.error().1, message, "{body}");
        } else {
            assert!(!res.error().1.is_empty(), "{body}: a JSON error");
        }
    }
    // Over the one body limit (4.5 MB): 413, before any handler or store.
    let huge = format!(
        r#"{{"messages":"{}","memory":{{"thread":"bobs"}}}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    assert_eq!(
        bob.post_raw(stream, &huge).await.error(),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large".to_owned()
        )
    );
    // Nothing was written for bob, nothing changed for alice.
    let (_, threads) = bob.get("/api/memory/threads").await;
    assert_eq!(threads["total"], 0, "{threads}");
    assert_eq!(alice.messages("alices").await.len(), 2);
}

async fn a_request_without_memory_uses_none(db: &Db) {
    let (alice, _) = start(db).await;
    let res = alice
        .stream(json!({"messages": [{"role": "user", "content": "hello"}]}))
        .await;
    assert!(res.answer().contains("no memory for this request"));
    assert!(res.thread_header().is_none());
    let (_, threads) = alice.get("/api/memory/threads").await;
    assert_eq!(threads["total"], 0);
    assert_eq!(db.count("mastra_messages").await, 0);
}

async fn the_chat_route_names_a_new_thread_first_and_remembers_it(db: &Db) {
    let (alice, bob) = start(db).await;
    let first = alice
        .post("/api/chat", json!({"message": "My name is Alice"}))
        .await;
    let events = first.events();
    assert_eq!(events[0]["type"], "thread");
    let thread = events[0]["threadId"].as_str().unwrap().to_owned();
    assert_eq!(first.thread_header(), Some(thread.as_str()));
    // A UUID v4, as the seeds' `crypto.randomUUID()`.
    let b = thread.as_bytes();
    assert_eq!(thread.len(), 36, "{thread}");
    assert!(b[8] == b'-' && b[13] == b'-' && b[18] == b'-' && b[23] == b'-');
    assert_eq!(b[14], b'4');
    assert!(b"89ab".contains(&b[19]));
    let again = alice
        .post("/api/chat", json!({"message": "Who am I?"}))
        .await;
    assert_ne!(
        again.events()[0]["threadId"],
        thread.as_str(),
        "a new one each time"
    );
    let recalled = alice
        .post(
            "/api/chat",
            json!({"message": "Who am I?", "threadId": thread}),
        )
        .await;
    assert!(recalled.answer().contains(r#""My name is Alice""#));
    let (_, listed) = alice.get(&format!("/api/memory/threads/{thread}")).await;
    assert_eq!(listed["title"], "My name is Alice");
    assert_eq!(
        bob.post("/api/chat", json!({"message": "hi", "threadId": thread}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        bob.post("/api/chat", json!({"message": "  "}))
            .await
            .error(),
        (StatusCode::BAD_REQUEST, "message is required".to_owned())
    );
}

async fn agents_are_listed_and_unknown_ones_are_404(db: &Db) {
    let (alice, _) = start(db).await;
    let (status, agents) = alice.get("/api/agents").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agents["memAgent"]["id"], "memAgent");
    assert_eq!(agents.as_object().unwrap().len(), 1);
    let res = alice
        .post("/api/agents/otherAgent/stream", say("hi", json!("x-1")))
        .await;
    assert_eq!(
        res.error(),
        (StatusCode::NOT_FOUND, "Agent not found".to_owned())
    );
    // Nothing saved for an agent that does not exist.
    assert_eq!(db.count("mastra_threads").await, 0);
    let (status, _) = alice.get("/api/agents/otherAgent").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Without a token: 401, as everywhere.
    let res = Client::new()
        .post(format!("{}/api/agents/memAgent/stream", alice.base))
        .body(say("hi", json!("x-2")).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn the_page_is_public_and_dev_tokens_exist_only_in_dev_mode(db: &Db) {
    let (alice, _) = start(db).await;
    let page = Client::new().get(&alice.base).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(page.text().await.unwrap().contains("/chat.js"));
    let script = Client::new()
        .get(format!("{}/chat.js", alice.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    let tokens = Client::new()
        .get(format!("{}/dev/tokens", alice.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tokens.status(),
        StatusCode::UNAUTHORIZED,
        "not a route outside dev mode"
    );

    let settings = app::Settings {
        jwt_secret: SECRET.into(),
        issuer: None,
        audience: None,
        cors_origins: Vec::new(),
        public_url: None,
        dev_tokens: vec![("alice".into(), token("alice"))],
    };
    // Neither the secret nor a dev token shows in Debug output (a log line of the settings).
    let debug = format!("{settings:?}");
    assert!(
        !debug.contains(SECRET) && !debug.contains(&settings.dev_tokens[0].1),
        "{debug}"
    );
    assert!(debug.contains("alice"));
    let dev = backend::serve(app::app(db.store.clone(), &settings).unwrap()).await;
    let users: Value = Client::new()
        .get(format!("{dev}/dev/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users["users"][0]["user"], "alice");
    let dev_alice = User {
        base: dev,
        token: users["users"][0]["token"].as_str().unwrap().to_owned(),
        client: Client::new(),
    };
    assert_eq!(dev_alice.get("/api/memory/threads").await.0, StatusCode::OK);
}

on_both_backends!(
    the_agent_recalls_this_thread_and_nothing_else,
    recall_names_the_last_five_messages_of_the_thread,
    memory_resource_naming_alice_is_forced_to_the_caller,
    bob_cannot_reach_alices_thread_in_any_spelling,
    ambiguous_or_forged_bodies_are_refused,
    a_request_without_memory_uses_none,
    the_chat_route_names_a_new_thread_first_and_remembers_it,
    agents_are_listed_and_unknown_ones_are_404,
    the_page_is_public_and_dev_tokens_exist_only_in_dev_mode,
);

/// Alice and bob stream into the same new thread id at the same moment, many times: exactly one
/// of them owns each thread, the other gets 403 before any event, and the thread holds only the
/// owner's turn.
async fn racing_on_a_new_thread_id_leaves_exactly_one_owner(backend: Backend) {
    let db = Db::new(backend).await;
    let (alice, bob) = start(&db).await;
    let (alice, bob) = (Arc::new(alice), Arc::new(bob));
    let mut wins = [0, 0];
    for round in 0..25 {
        let thread = format!("race-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let runs = [&alice, &bob].map(|user| {
            let (user, barrier, thread) = (Arc::clone(user), Arc::clone(&barrier), thread.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                user.post(
                    "/api/agents/memAgent/stream",
                    json!({"messages": "first!", "memory": {"thread": thread}}),
                )
                .await
            })
        });
        let [a, b] = runs;
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let statuses = (a.status, b.status);
        let winner = match statuses {
            (StatusCode::OK, StatusCode::FORBIDDEN) => 0,
            (StatusCode::FORBIDDEN, StatusCode::OK) => 1,
            other => panic!("round {round}: {other:?}: {} / {}", a.text, b.text),
        };
        wins[winner] += 1;
        let (winner, loser, won) = if winner == 0 {
            (&alice, &bob, &a)
        } else {
            (&bob, &alice, &b)
        };
        assert_eq!(won.thread_header(), Some(thread.as_str()));
        assert!(won.answer().starts_with("Nice to meet you."));
        let (status, record) = winner.get(&format!("/api/memory/threads/{thread}")).await;
        assert_eq!(status, StatusCode::OK);
        let owner = if std::ptr::eq(winner.as_ref(), alice.as_ref()) {
            "alice"
        } else {
            "bob"
        };
        assert_eq!(record["resourceId"], owner);
        assert_eq!(
            winner.messages(&thread).await.len(),
            2,
            "only the owner's turn"
        );
        let (status, _) = loser
            .get(&format!("/api/memory/threads/{thread}/messages"))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    assert_eq!(wins[0] + wins[1], 25);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_on_a_new_thread_id_leaves_exactly_one_owner_sqlite() {
    racing_on_a_new_thread_id_leaves_exactly_one_owner(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set TOWER_SCOPE_TEST_PG_URL (run by .ci/run)"]
async fn racing_on_a_new_thread_id_leaves_exactly_one_owner_postgres() {
    racing_on_a_new_thread_id_leaves_exactly_one_owner(Backend::Postgres).await;
}
