//! Isolation and robustness, end to end: the memory server example over real HTTP, users alice
//! and bob, on SQLite (plain `cargo test`) and on PostgreSQL (`--ignored`, `.ci/run`), from this
//! one source: a request gets the same answer on every backend.
//!
//! Bob tries every way Mastra's memory API offers to read or change Alice's data — by id,
//! by `?resourceId=`, by body `resourceId`, by header — and Alice's data must be unchanged.
//! Hostile input (ids and text a database cannot hold, values a constraint refuses) gets a
//! clear 400 with a safe message, never a 503; a database that is really gone gets 503 with
//! `Retry-After`.
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
#[macro_use]
#[path = "common/backend.rs"]
mod backend;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backend::{Backend, Db};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sqlx::any::AnyPoolOptions;
use tower_scope::guard::SqlThreadStore;

const SECRET: &str = "isolation-test-secret-0123456789abcdef";

pub fn token(sub: &str, org: Option<&str>) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = app::Claims {
        sub: sub.into(),
        org_id: org.map(str::to_owned),
        exp,
        iss: None,
        aud: None,
        grants: Default::default(),
    };
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// The memory server on `store`, over real HTTP.
async fn serve(store: SqlThreadStore) -> String {
    backend::serve(backend::router(store, SECRET)).await
}

async fn start(db: &Db) -> String {
    serve(db.store.clone()).await
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
            token: token(sub, None),
            client: Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(method, path, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        answer(req).await.without_headers()
    }

    /// A request with these raw body bytes (not necessarily UTF-8, not necessarily JSON).
    async fn raw(&self, method: Method, path: &str, body: &[u8]) -> Answer {
        let req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_vec());
        answer(req).await
    }

    /// Like [`call`](Self::call), keeping the `Retry-After` header.
    async fn full(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        answer(req).await
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    json: Value,
}

impl Answer {
    fn without_headers(self) -> (StatusCode, Value) {
        (self.status, self.json)
    }
}

async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.unwrap();
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    Answer {
        status,
        retry_after,
        json: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

async fn bob_cannot_reach_alices_threads_or_messages_by_any_id(db: &Db) {
    let base = start(db).await;
    let alice = User::new(&base, "alice");
    let bob = User::new(&base, "bob");

    let (status, thread) = alice
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"title": "diary", "resourceId": "bob"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{thread}");
    assert_eq!(
        thread["resourceId"], "alice",
        "creation is forced to the caller"
    );
    let t = thread["id"].as_str().unwrap().to_owned();
    let msgs = json!({"messages": [
        {"id": "m-a1", "threadId": t, "resourceId": "alice", "role": "user", "content": "secret one"},
        {"id": "m-a2", "threadId": t, "resourceId": "alice", "role": "assistant", "content": "secret two"}
    ]});
    assert_eq!(
        alice
            .call(Method::POST, "/api/memory/save-messages", Some(msgs))
            .await
            .0,
        StatusCode::OK
    );
    let (status, own) = bob
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"title": "bob's"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let bob_thread = own["id"].as_str().unwrap().to_owned();
    let bob_msg = json!({"messages": [{"id": "m-b1", "threadId": bob_thread, "resourceId": "bob", "role": "user", "content": "mine"}]});
    assert_eq!(
        bob.call(Method::POST, "/api/memory/save-messages", Some(bob_msg))
            .await
            .0,
        StatusCode::OK
    );

    let thread_path = format!("/api/memory/threads/{t}");
    let forbidden = [
        (Method::GET, thread_path.clone(), None),
        (Method::GET, format!("{thread_path}?resourceId=alice"), None),
        (
            Method::PATCH,
            thread_path.clone(),
            Some(json!({"title": "pwned", "resourceId": "bob"})),
        ),
        (
            Method::PATCH,
            format!("{thread_path}?resourceId=alice"),
            Some(json!({"title": "pwned", "resourceId": "alice"})),
        ),
        (Method::DELETE, thread_path.clone(), None),
        (
            Method::DELETE,
            format!("{thread_path}?resourceId=alice"),
            None,
        ),
        (Method::GET, format!("{thread_path}/messages"), None),
        (
            Method::GET,
            format!("{thread_path}/messages?resourceId=alice"),
            None,
        ),
        (
            Method::POST,
            "/api/memory/threads".into(),
            Some(json!({"threadId": t, "title": "hijack", "resourceId": "alice"})),
        ),
        (
            Method::POST,
            "/api/memory/save-messages".into(),
            Some(
                json!({"messages": [{"threadId": t, "resourceId": "bob", "role": "user", "content": "injected"}]}),
            ),
        ),
        (
            Method::POST,
            "/api/memory/save-messages".into(),
            Some(
                json!({"messages": [{"threadId": t, "resourceId": "alice", "role": "user", "content": "injected"}]}),
            ),
        ),
        (
            Method::POST,
            "/api/memory/messages/delete".into(),
            Some(json!({"messageIds": ["m-a1"]})),
        ),
        (
            Method::POST,
            "/api/memory/messages/delete".into(),
            Some(json!({"messageIds": [{"id": "m-b1"}, {"id": "m-a2"}]})),
        ),
        (
            Method::POST,
            "/api/memory/messages/delete?resourceId=alice".into(),
            Some(json!({"messageIds": "m-a1"})),
        ),
    ];
    for (method, path, body) in forbidden {
        for headers in [
            &[][..],
            &[("x-resource-id", "alice"), ("x-thread-id", t.as_str())][..],
        ] {
            let (status, answer) = bob
                .call_with(method.clone(), &path, body.clone(), headers)
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} -> {answer}");
            assert!(
                answer["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("Access denied"),
                "{answer}"
            );
        }
    }

    // Listing with Alice's resourceId shows Bob only his own thread.
    let (status, list) = bob
        .call(Method::GET, "/api/memory/threads?resourceId=alice", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![bob_thread.as_str()]);
    assert_eq!(list["total"], 1);

    // Alice's data is exactly as she left it; Bob's message survived the refused mixed delete.
    let (status, mine) = alice.call(Method::GET, &thread_path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["title"], "diary");
    assert_eq!(mine["resourceId"], "alice");
    let (_, messages) = alice
        .call(Method::GET, &format!("{thread_path}/messages"), None)
        .await;
    let contents: Vec<&str> = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec!["secret one", "secret two"]);
    let (_, bobs) = bob
        .call(
            Method::GET,
            &format!("/api/memory/threads/{bob_thread}/messages"),
            None,
        )
        .await;
    assert_eq!(bobs["messages"].as_array().unwrap().len(), 1);
    let (_, list) = alice.call(Method::GET, "/api/memory/threads", None).await;
    assert_eq!(list["total"], 1);

    // Alice can still do everything with her own thread.
    let (status, renamed) = alice
        .call(
            Method::PATCH,
            &thread_path,
            Some(json!({"title": "journal", "resourceId": "bob"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (renamed["title"].as_str(), renamed["resourceId"].as_str()),
        (Some("journal"), Some("alice"))
    );
    let (status, deleted) = alice
        .call(
            Method::POST,
            "/api/memory/messages/delete",
            Some(json!({"messageIds": ["m-a1"]})),
        )
        .await;
    assert_eq!(
        (status, deleted["message"].as_str()),
        (StatusCode::OK, Some("1 message deleted successfully"))
    );
    let (status, gone) = alice.call(Method::DELETE, &thread_path, None).await;
    assert_eq!(
        (status, gone),
        (StatusCode::OK, json!({"result": "Thread deleted"}))
    );
}

async fn missing_threads_and_missing_credentials_get_mastras_answers(db: &Db) {
    let base = start(db).await;
    let alice = User::new(&base, "alice");
    let (status, body) = alice
        .call(Method::GET, "/api/memory/threads/nope", None)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"error": "Thread not found"}))
    );

    let client = Client::new();
    let res = client
        .get(format!("{base}/api/memory/threads"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"error": "Authentication required"})
    );

    // CORS sits outside auth: the 401 carries CORS headers, and preflights never meet auth.
    let res = client
        .get(format!("{base}/api/memory/threads"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let res = client
        .request(Method::OPTIONS, format!("{base}/api/memory/threads"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(
        res.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("authorization")
    );
    assert!(
        res.headers().contains_key("x-request-id"),
        "LogLayer sets a request id"
    );

    let res = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"success": true}));
}

async fn org_scoped_users_are_isolated_by_org_and_user(db: &Db) {
    let base = start(db).await;
    let acme_carol = User {
        token: token("carol", Some("acme")),
        ..User::new(&base, "x")
    };
    let globex_carol = User {
        token: token("carol", Some("globex")),
        ..User::new(&base, "x")
    };
    let (_, thread) = acme_carol
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"title": "acme"})),
        )
        .await;
    assert_eq!(thread["resourceId"], "acme:carol");
    let path = format!("/api/memory/threads/{}", thread["id"].as_str().unwrap());
    assert_eq!(
        globex_carol.call(Method::GET, &path, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        acme_carol.call(Method::GET, &path, None).await.0,
        StatusCode::OK
    );
}

/// Input built to break the handlers: every answer is a clear status with Mastra's JSON body,
/// nothing panics, nothing is half-written.
async fn hostile_input_gets_mastras_json_answers_and_no_panic(db: &Db) {
    let base = start(db).await;
    let alice = User::new(&base, "alice");
    let (status, thread) = alice
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": "t-robust", "title": "kept"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{thread}");

    // Pagination that overflows `page * perPage` is a 400, not a panic and a dropped connection.
    for query in [
        "page=9223372036854775807",
        "page=2&perPage=9223372036854775807",
        "page=4611686018427387904&perPage=2",
        "page=99999999999999999999",
        "perPage=-1",
        "page=1.5",
    ] {
        let (status, body) = alice
            .call(Method::GET, &format!("/api/memory/threads?{query}"), None)
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("Invalid query parameters")),
            "{query}: {body}"
        );
    }
    let (status, body) = alice
        .call(
            Method::GET,
            "/api/memory/threads?perPage=9223372036854775807",
            None,
        )
        .await;
    assert_eq!((status, body["total"].as_i64()), (StatusCode::OK, Some(1)));
    assert_eq!(body["hasMore"], false);

    // Bodies that are JSON but not what the route takes: Mastra's 400, never axum's 415/422.
    for (method, path, bad) in [
        (Method::POST, "/api/memory/threads", json!({"title": 5})),
        (
            Method::PATCH,
            "/api/memory/threads/t-robust",
            json!({"metadata": "x", "title": []}),
        ),
        (
            Method::POST,
            "/api/memory/save-messages",
            json!({"messages": [{"threadId": "t-robust", "resourceId": "alice", "role": "user"}]}),
        ),
        (
            Method::POST,
            "/api/memory/messages/delete",
            json!({"messageIds": [7]}),
        ),
    ] {
        let (status, body) = alice.call(method.clone(), path, Some(bad.clone())).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {bad}: {body}"
        );
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("Invalid request body")
                || body["error"] == "messageIds must be ids or objects with an id",
            "{body}"
        );
    }
    // The handler parses the same bytes the guard parsed, whatever the content type says.
    let res = alice
        .client
        .post(format!("{base}/api/memory/threads"))
        .bearer_auth(&alice.token)
        .header("content-type", "text/plain")
        .body(r#"{"threadId": "t-plain", "title": "no json content type"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = alice
        .client
        .patch(format!("{base}/api/memory/threads/t-robust"))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body(r#"{"title": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "Invalid request body"
    );

    // One body limit, 4.5 MB: 3 MB is fine (axum alone would stop at 2 MB), 5 MB is a JSON 413.
    let big = "x".repeat(3 * 1024 * 1024);
    let (status, body) = alice
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": "t-big", "metadata": {"blob": big}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let huge = "x".repeat(5 * 1024 * 1024);
    for path in ["/api/memory/threads", "/api/memory/threads/t-robust"] {
        let method = if path.ends_with("threads") {
            Method::POST
        } else {
            Method::PATCH
        };
        let (status, body) = alice.call(method, path, Some(json!({"title": huge}))).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "Request body too large"})
            ),
            "{path}"
        );
    }

    // Empty ids are refused with 400, and nothing is written.
    for (path, body) in [
        ("/api/memory/threads", json!({"threadId": ""})),
        (
            "/api/memory/save-messages",
            json!({"messages": [{"id": "", "threadId": "t-robust", "resourceId": "alice", "role": "user", "content": "x"}]}),
        ),
        (
            "/api/memory/save-messages",
            json!({"messages": [{"id": "m-ok", "threadId": "", "resourceId": "alice", "role": "user", "content": "x"}]}),
        ),
        ("/api/memory/messages/delete", json!({"messageIds": [""]})),
        (
            "/api/memory/messages/delete",
            json!({"messageIds": {"id": ""}}),
        ),
    ] {
        let (status, answer) = alice.call(Method::POST, path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (_, messages) = alice
        .call(Method::GET, "/api/memory/threads/t-robust/messages", None)
        .await;
    assert_eq!(messages["messages"], json!([]));

    // Deleting messages reports what happened: unknown ids are not counted.
    let save = json!({"messages": [{"id": "m-real", "threadId": "t-robust", "resourceId": "alice", "role": "user", "content": "x"}]});
    assert_eq!(
        alice
            .call(Method::POST, "/api/memory/save-messages", Some(save))
            .await
            .0,
        StatusCode::OK
    );
    let (status, deleted) = alice
        .call(
            Method::POST,
            "/api/memory/messages/delete",
            Some(json!({"messageIds": ["m-real", "m-real", "ghost", {"id": "ghost-2"}]})),
        )
        .await;
    assert_eq!(
        (status, deleted),
        (
            StatusCode::OK,
            json!({"success": true, "message": "1 message deleted successfully"})
        )
    );

    // The thread survived all of it unchanged.
    let (_, thread) = alice
        .call(Method::GET, "/api/memory/threads/t-robust", None)
        .await;
    assert_eq!(thread["title"], "kept");
}

// ---- input no database can hold, values a database refuses, databases that are gone --------

const SAVE: &str = "/api/memory/save-messages";
const DELETE: &str = "/api/memory/messages/delete";

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A 400 with exactly this message: nothing of the database (its error text, SQLSTATE, the
/// refused value) reaches the client, and nothing tells it to come back later.
fn assert_refused(what: &str, answer: &Answer, message: &str) {
    assert_eq!(
        (answer.status, answer.json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some(message)),
        "{what}: {}",
        answer.json
    );
    assert_eq!(answer.retry_after, None, "{what}");
}

fn message_to(id: &str, thread: &str) -> Value {
    json!({"id": id, "threadId": thread, "resourceId": "alice", "role": "user", "content": "x"})
}

/// Ids with NUL (PostgreSQL's `text` cannot hold it: once a 503 there, a 400 on SQLite), other
/// control characters, or over the length cap: 400 on every backend, before any store sees
/// them, and nothing is written or deleted.
async fn ids_no_database_can_hold_are_400_on_every_backend(db: &Db) {
    let base = start(db).await;
    let alice = User::new(&base, "alice");
    let created = alice
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": "t-keep", "title": "kept"})),
        )
        .await;
    assert_eq!(created.0, StatusCode::OK, "{}", created.1);
    let keep = json!({"messages": [message_to("m-keep", "t-keep")]});
    assert_eq!(
        alice.call(Method::POST, SAVE, Some(keep)).await.0,
        StatusCode::OK
    );
    let before = (
        db.count("mastra_threads").await,
        db.count("mastra_messages").await,
    );

    let long = "x".repeat(257);
    for bad in [
        "m1\u{0}",
        "\u{0}",
        "m\u{0}m",
        "m\u{1}",
        "m\n",
        "m\u{7f}",
        "m\u{9f}",
        long.as_str(),
    ] {
        let message_cases = [
            (SAVE, json!({"messages": [message_to(bad, "t-keep")]})),
            (
                SAVE,
                json!({"messages": [message_to("m-new", "t-keep"), message_to(bad, "t-keep")]}),
            ),
            (SAVE, json!({"messages": [message_to(bad, "t-new")]})),
            (DELETE, json!({"messageIds": bad})),
            (DELETE, json!({"messageIds": [bad]})),
            (DELETE, json!({"messageIds": {"id": bad}})),
            (DELETE, json!({"messageIds": ["m-keep", {"id": bad}]})),
        ];
        for (path, body) in message_cases {
            let answer = alice.full(Method::POST, path, Some(body.clone())).await;
            assert_refused(&format!("{path} {body}"), &answer, "Invalid message id");
        }
        let include = pct(&json!([{"id": bad, "threadId": "t-keep"}]).to_string());
        let path = format!("/api/memory/threads/t-keep/messages?include={include}");
        let answer = alice.full(Method::GET, &path, None).await;
        assert_refused(&path, &answer, "Invalid message id");

        let thread_cases = [
            (
                Method::POST,
                "/api/memory/threads".to_owned(),
                Some(json!({"threadId": bad, "title": "x"})),
            ),
            (
                Method::POST,
                SAVE.to_owned(),
                Some(json!({"messages": [message_to("m-new", bad)]})),
            ),
            (
                Method::GET,
                format!("/api/memory/threads/{}", pct(bad)),
                None,
            ),
            (
                Method::PATCH,
                format!("/api/memory/threads/{}", pct(bad)),
                Some(json!({"title": "x"})),
            ),
            (
                Method::DELETE,
                format!("/api/memory/threads/{}", pct(bad)),
                None,
            ),
            (
                Method::GET,
                format!("/api/memory/threads/{}/messages", pct(bad)),
                None,
            ),
            (
                Method::GET,
                format!("/api/memory/threads?threadId={}", pct(bad)),
                None,
            ),
        ];
        for (method, path, body) in thread_cases {
            let answer = alice.full(method.clone(), &path, body).await;
            assert_refused(&format!("{method} {path}"), &answer, "Invalid thread id");
        }
    }

    // Nothing was written, nothing deleted: Alice's message is still there.
    let after = (
        db.count("mastra_threads").await,
        db.count("mastra_messages").await,
    );
    assert_eq!(after, before);
    let (_, listed) = alice
        .call(Method::GET, "/api/memory/threads/t-keep/messages", None)
        .await;
    assert_eq!(listed["messages"][0]["id"], "m-keep");
}

/// A token whose subject (or organisation) no resource id can hold cannot be scoped: 403 on
/// every backend, and nothing reaches the store.
async fn tokens_no_resource_id_can_hold_are_refused_on_every_backend(db: &Db) {
    let base = start(db).await;
    let long = "a".repeat(300);
    for (sub, org) in [
        ("alice\u{0}", None),
        ("\u{0}", None),
        ("alice\n", None),
        ("alice\u{7f}", None),
        (long.as_str(), None),
        ("alice", Some("acme\u{0}")),
    ] {
        let user = User {
            token: token(sub, org),
            ..User::new(&base, "x")
        };
        for (method, path, body) in [
            (Method::GET, "/api/memory/threads", None),
            (
                Method::POST,
                "/api/memory/threads",
                Some(json!({"threadId": "t-x", "title": "x"})),
            ),
            (
                Method::POST,
                SAVE,
                Some(
                    json!({"messages": [{"threadId": "t-x", "resourceId": sub, "role": "user", "content": "x"}]}),
                ),
            ),
            (Method::POST, DELETE, Some(json!({"messageIds": ["m-x"]}))),
        ] {
            let answer = user.full(method.clone(), path, body).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{sub:?} {org:?} {method} {path}: {}",
                answer.json
            );
            assert_eq!(
                answer.json["error"],
                "Access denied: request could not be scoped to a resource"
            );
        }
    }
    assert_eq!(db.count("mastra_threads").await, 0);
    assert_eq!(db.count("mastra_messages").await, 0);
}

/// Text besides ids: NUL in plain text (title, role, string content) is refused with 400 on
/// every backend, SQLite included (which could store it), so no answer depends on the
/// backend; JSON documents (metadata, structured content) keep NUL losslessly as `\u0000`;
/// other control characters are stored as given; bytes that are not UTF-8 never parse.
async fn text_no_database_can_hold_is_refused_alike_and_json_keeps_it(db: &Db) {
    let base = start(db).await;
    let alice = User::new(&base, "alice");
    let stored = "Invalid request: a value cannot be stored";
    let ok = alice
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": "t-text", "title": "kept"})),
        )
        .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);

    let answer = alice
        .full(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": "t-nul", "title": "a\u{0}b"})),
        )
        .await;
    assert_refused("NUL title on create", &answer, stored);
    let answer = alice
        .full(
            Method::PATCH,
            "/api/memory/threads/t-text",
            Some(json!({"title": "\u{0}"})),
        )
        .await;
    assert_refused("NUL title on update", &answer, stored);
    for message in [
        json!({"id": "m-nul", "threadId": "t-new", "resourceId": "alice", "role": "user", "type": "v\u{0}", "content": "x"}),
        json!({"id": "m-nul", "threadId": "t-text", "resourceId": "alice", "role": "u\u{0}", "content": "x"}),
    ] {
        let body = json!({"messages": [message_to("m-fine", "t-text"), message]});
        let answer = alice.full(Method::POST, SAVE, Some(body.clone())).await;
        assert_refused(&format!("save {body}"), &answer, stored);
    }
    // None of it was written, not even the batch's valid message or its new thread.
    assert_eq!(db.count("mastra_threads").await, 1);
    assert_eq!(db.count("mastra_messages").await, 0);
    let (_, thread) = alice
        .call(Method::GET, "/api/memory/threads/t-text", None)
        .await;
    assert_eq!(thread["title"], "kept");

    // JSON documents hold NUL losslessly; other control characters are plain text.
    let metadata = json!({"k": "a\u{0}b", "nested": ["\u{0}"]});
    let (status, updated) = alice
        .call(
            Method::PATCH,
            "/api/memory/threads/t-text",
            Some(json!({"title": "tab\there\u{1}", "metadata": metadata})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (_, thread) = alice
        .call(Method::GET, "/api/memory/threads/t-text", None)
        .await;
    assert_eq!(
        (&thread["title"], &thread["metadata"]),
        (&json!("tab\there\u{1}"), &metadata)
    );
    let content = json!({"format": 2, "parts": [{"type": "text", "text": "a\u{0}b"}]});
    let body = json!({"messages": [{"id": "m-json", "threadId": "t-text", "resourceId": "alice", "role": "user", "content": content}]});
    assert_eq!(
        alice.call(Method::POST, SAVE, Some(body)).await.0,
        StatusCode::OK
    );
    let (_, listed) = alice
        .call(Method::GET, "/api/memory/threads/t-text/messages", None)
        .await;
    assert_eq!(listed["messages"][0]["content"], content);
    // Plain text is saved as a format-2 JSON document, so it holds NUL too.
    let body = json!({"messages": [{"id": "m-text", "threadId": "t-text", "resourceId": "alice", "role": "user", "content": "a\u{0}b"}]});
    assert_eq!(
        alice.call(Method::POST, SAVE, Some(body)).await.0,
        StatusCode::OK
    );
    let (_, listed) = alice
        .call(Method::GET, "/api/memory/threads/t-text/messages", None)
        .await;
    assert_eq!(listed["messages"][1]["content"]["content"], "a\u{0}b");

    // Bytes that are not UTF-8, and escapes that are not Unicode, are not JSON text.
    for body in [
        &b"{\"title\": \"\xff\"}"[..],
        b"{\"title\": \"\xc3\x28\"}",
        br#"{"title": "\ud800"}"#,
    ] {
        for (method, path) in [
            (Method::POST, "/api/memory/threads"),
            (Method::PATCH, "/api/memory/threads/t-text"),
        ] {
            let answer = alice.raw(method.clone(), path, body).await;
            assert_refused(&format!("{method} {path}"), &answer, "Invalid request body");
        }
    }
}

/// A value the database itself refuses (here a CHECK constraint the operator added; on other
/// schemas a too-narrow `VARCHAR`, a unique key) is the request's fault: 400, never the 503
/// that says the database is down, and the transaction leaves nothing behind.
async fn values_the_database_refuses_are_400_not_an_outage(db: &Db) {
    db.exec("DROP TABLE mastra_messages").await;
    db.exec("DROP TABLE mastra_threads").await;
    db.exec(
        r#"CREATE TABLE mastra_threads (id TEXT PRIMARY KEY, "resourceId" TEXT,
            title TEXT CHECK (length(title) <= 16), metadata TEXT, "createdAt" TEXT,
            "updatedAt" TEXT)"#,
    )
    .await;
    db.exec(
        r#"CREATE TABLE mastra_messages (id TEXT PRIMARY KEY, thread_id TEXT,
            content TEXT CHECK (length(content) <= 16), role TEXT, type TEXT,
            "createdAt" TEXT, "resourceId" TEXT)"#,
    )
    .await;
    let base = start(db).await;
    let alice = User::new(&base, "alice");
    let stored = "Invalid request: a value cannot be stored";
    let too_long = "a title far longer than sixteen";

    let answer = alice
        .full(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": "t-long", "title": too_long})),
        )
        .await;
    assert_refused("create", &answer, stored);
    assert_eq!(db.count("mastra_threads").await, 0);

    let ok = alice
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": "t-ok", "title": "short"})),
        )
        .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    let answer = alice
        .full(
            Method::PATCH,
            "/api/memory/threads/t-ok",
            Some(json!({"title": too_long})),
        )
        .await;
    assert_refused("update", &answer, stored);

    for thread in ["t-ok", "t-new"] {
        let body = json!({"messages": [
            {"id": "m-short", "threadId": thread, "resourceId": "alice", "role": "user", "content": "fits"},
            {"id": "m-long", "threadId": thread, "resourceId": "alice", "role": "user", "content": too_long},
        ]});
        let answer = alice.full(Method::POST, SAVE, Some(body)).await;
        assert_refused(&format!("save into {thread}"), &answer, stored);
    }
    // All or nothing: no message, and the new thread the batch would have created is not there.
    assert_eq!(db.count("mastra_threads").await, 1);
    assert_eq!(db.count("mastra_messages").await, 0);
    let (_, thread) = alice
        .call(Method::GET, "/api/memory/threads/t-ok", None)
        .await;
    assert_eq!(thread["title"], "short");
}

/// 503 `Thread store unavailable` with `Retry-After: 5`, from the guard and from the handlers
/// alike, exactly when the database cannot be used: connection refused, pool exhausted, pool
/// closed.
async fn a_database_that_is_gone_is_503_with_retry_after(db: &Db) {
    let unavailable = |what: &str, answer: &Answer| {
        assert_eq!(
            (answer.status, &answer.json),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "Thread store unavailable"})
            ),
            "{what}"
        );
        assert_eq!(answer.retry_after.as_deref(), Some("5"), "{what}");
    };
    let requests = || {
        [
            // the guard's lookup
            (Method::GET, "/api/memory/threads/t-1", None),
            (Method::POST, DELETE, Some(json!({"messageIds": ["m-1"]}))),
            // the handlers' reads and writes (the guard has nothing to look up)
            (Method::GET, "/api/memory/threads", None),
            (
                Method::POST,
                "/api/memory/threads",
                Some(json!({"title": "t"})),
            ),
        ]
    };

    // Nothing listens: every connection attempt is refused until the pool gives up.
    let refused_url = match db.backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("no-such-dir-{}", app::random_id(4)));
            format!("sqlite://{}/x.db?mode=ro", dir.display())
        }
        Backend::Postgres => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            format!("postgres://postgres@127.0.0.1:{port}/postgres")
        }
    };
    let pool = AnyPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&refused_url)
        .unwrap();
    let base = serve(SqlThreadStore::from_pool(pool)).await;
    let alice = User::new(&base, "alice");
    for (method, path, body) in requests() {
        let answer = alice.full(method.clone(), path, body).await;
        unavailable(&format!("unreachable: {method} {path}"), &answer);
    }

    // The pool's only connection is taken: acquiring one times out.
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .connect(&db.url)
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let base = serve(SqlThreadStore::from_pool(pool.clone())).await;
    let alice = User::new(&base, "alice");
    for (method, path, body) in requests() {
        let answer = alice.full(method.clone(), path, body).await;
        unavailable(&format!("exhausted: {method} {path}"), &answer);
    }
    drop(held);
    pool.close().await;

    // The pool is closed (the application is shutting down).
    let base = start(db).await;
    let alice = User::new(&base, "alice");
    assert_eq!(
        alice.call(Method::GET, "/api/memory/threads", None).await.0,
        StatusCode::OK
    );
    db.store.pool().close().await;
    for (method, path, body) in requests() {
        let answer = alice.full(method.clone(), path, body).await;
        unavailable(&format!("closed: {method} {path}"), &answer);
    }
}

/// The metadata text of a JSON document, as the server sent it (`"metadata":` up to the next
/// top-level member of that thread object).
fn raw_metadata(text: &str) -> &str {
    let start = text.find("\"metadata\":").expect("metadata in the answer") + "\"metadata\":".len();
    let end = text[start..]
        .find(",\"createdAt\"")
        .expect("createdAt follows metadata");
    &text[start..start + end]
}

/// Issue "lossless JSON": what a client stores is what it reads back, byte for byte, through
/// scope (which appends `resourceId`), the guard and the store, on create, update and list.
async fn metadata_comes_back_exactly_as_sent(db: &Db) {
    let base = start(db).await;
    let alice = User::new(&base, "alice");
    let metadata = r#"{ "big": 123456789012345678901234567890, "f": 0.30000000000000004, "z": -0, "e": 1E+300, "u": "\u00e9\ud83d\ude00", "k": {"b": 1, "a": [2, 3.50]} }"#;
    let create = format!(r#"{{"threadId":"t-raw","title":"raw","metadata":{metadata}}}"#);
    let created = alice
        .client
        .post(format!("{base}/api/memory/threads"))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body(create)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let text = created.text().await.unwrap();
    assert_eq!(raw_metadata(&text), metadata, "{text}");
    assert!(text.contains(r#""resourceId":"alice""#), "{text}");

    let read = |path: String| {
        let req = alice
            .client
            .get(format!("{base}{path}"))
            .bearer_auth(&alice.token);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    assert_eq!(
        raw_metadata(&read("/api/memory/threads/t-raw".into()).await),
        metadata
    );
    assert_eq!(
        raw_metadata(&read("/api/memory/threads".into()).await),
        metadata
    );

    // An update whose body the scope layer edits (it appends `resourceId`) keeps the rest.
    let updated = r#"{"n":-1.0e-7,"big":98765432109876543210987654321}"#;
    let res = alice
        .client
        .patch(format!("{base}/api/memory/threads/t-raw"))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body(format!(r#"{{"metadata":{updated},"resourceId":"bob"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert_eq!(raw_metadata(&text), updated, "{text}");
    assert!(text.contains(r#""resourceId":"alice""#), "{text}");
}

/// The whole stack's type can be written down (`app::MemoryStack`), and the named stack
/// serves like the router built from it.
#[tokio::test]
async fn the_memory_servers_stack_has_a_nameable_type() {
    use tower::ServiceExt;
    let db = Db::new(Backend::Sqlite).await;
    let auth = tower_scope::jwt::JwtAuthenticator::<app::Claims>::builder()
        .key(tower_scope::jwt::JwtKey::hmac(
            tower_scope::jwt::Algorithm::HS256,
            SECRET.as_bytes(),
        ))
        .build()
        .unwrap();
    let stack: app::MemoryStack<tower_scope::jwt::JwtAuthenticator<app::Claims>> =
        app::stack(db.store.clone(), auth, &[]).unwrap();
    let anonymous = axum::http::Request::get("/api/memory/threads")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = stack.clone().oneshot(anonymous).await.unwrap();
    assert_eq!(res.status(), axum::http::StatusCode::UNAUTHORIZED);
    let listing = axum::http::Request::get("/api/memory/threads?resourceId=bob")
        .header("authorization", format!("Bearer {}", token("alice", None)))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = stack.oneshot(listing).await.unwrap();
    assert_eq!(res.status(), axum::http::StatusCode::OK);
    db.finish().await;
}

on_both_backends!(
    metadata_comes_back_exactly_as_sent,
    bob_cannot_reach_alices_threads_or_messages_by_any_id,
    missing_threads_and_missing_credentials_get_mastras_answers,
    org_scoped_users_are_isolated_by_org_and_user,
    hostile_input_gets_mastras_json_answers_and_no_panic,
    ids_no_database_can_hold_are_400_on_every_backend,
    tokens_no_resource_id_can_hold_are_refused_on_every_backend,
    text_no_database_can_hold_is_refused_alike_and_json_keeps_it,
    values_the_database_refuses_are_400_not_an_outage,
    a_database_that_is_gone_is_503_with_retry_after,
);
