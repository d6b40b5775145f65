//! Authorization in the memory server, end to end over real HTTP, on SQLite (plain `cargo
//! test`) and PostgreSQL (`--ignored`, `.ci/run`): a read-only `viewer` (`scope:
//! "memory:read"`), an identity-provider token that lists no memory permission, and an
//! `admin` (`permissions: ["memory:admin"]`) who reads every resource but changes only its own.
//! After every refused request, alice's data is checked unchanged.
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

use std::time::{SystemTime, UNIX_EPOCH};

use backend::Db;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const SECRET: &str = "authz-test-secret-0123456789abcdef-xyz";

/// A token for `sub` with these grant claims (`None`: the claim is absent).
fn token(sub: &str, scope: Option<&str>, permissions: Option<&[&str]>) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut claims = app::Claims::user(sub, exp);
    claims.grants.scope = scope.map(|s| s.split(' ').collect());
    claims.grants.permissions = permissions.map(|p| p.iter().copied().collect());
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

struct Caller {
    base: String,
    token: String,
    client: Client,
}

/// A refusal's or an answer's parts.
struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

impl Caller {
    fn new(base: &str, token: String) -> Self {
        Self {
            base: base.to_owned(),
            token,
            client: Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            challenge,
            body,
        }
    }
}

async fn start(db: &Db) -> String {
    backend::serve(backend::router(db.store.clone(), SECRET)).await
}

/// Alice's thread with one message, created by alice herself.
async fn alices_data(base: &str) -> Caller {
    let alice = Caller::new(base, token("alice", None, None));
    let created = alice
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": "t-alice", "resourceId": "alice", "title": "mine"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let saved = alice
        .call(
            Method::POST,
            "/api/memory/save-messages",
            Some(json!({"messages": [{"id": "m-alice", "threadId": "t-alice", "resourceId": "alice",
                "role": "user", "content": "secret of alice", "createdAt": "2026-01-01T00:00:00Z"}]})),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    alice
}

/// Alice's thread and message exactly as created.
async fn assert_alice_unchanged(alice: &Caller) {
    let thread = alice
        .call(Method::GET, "/api/memory/threads/t-alice", None)
        .await;
    assert_eq!(thread.status, StatusCode::OK);
    assert_eq!(thread.body["title"], "mine");
    assert_eq!(thread.body["resourceId"], "alice");
    let messages = alice
        .call(Method::GET, "/api/memory/threads/t-alice/messages", None)
        .await;
    let list = messages.body["messages"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", messages.body);
    assert_eq!(list[0]["id"], "m-alice");
    let threads = alice.call(Method::GET, "/api/memory/threads", None).await;
    assert_eq!(threads.body["total"], 1, "{}", threads.body);
}

/// Every write and delete route of the memory API, aimed at `thread` / `message`.
fn writes(
    resource: &str,
    thread: &str,
    message: &str,
) -> Vec<(Method, String, Option<Value>, &'static str)> {
    vec![
        (
            Method::POST,
            "/api/memory/threads".into(),
            Some(json!({"threadId": "t-new", "resourceId": resource})),
            "memory:write",
        ),
        (
            Method::PATCH,
            format!("/api/memory/threads/{thread}"),
            Some(json!({"title": "changed"})),
            "memory:write",
        ),
        (
            Method::DELETE,
            format!("/api/memory/threads/{thread}"),
            None,
            "memory:delete",
        ),
        (
            Method::POST,
            "/api/memory/save-messages".into(),
            Some(
                json!({"messages": [{"id": message, "threadId": thread, "resourceId": resource,
                "role": "user", "content": "overwritten"}]}),
            ),
            "memory:write",
        ),
        (
            Method::POST,
            "/api/memory/messages/delete".into(),
            Some(json!({"messageIds": [message]})),
            "memory:write",
        ),
    ]
}

async fn viewer_reads_its_own_data_and_every_write_is_insufficient_scope(db: &Db) {
    let base = start(db).await;
    let alice = alices_data(&base).await;
    // Vera's data, made with her first-party token; then her read-only token.
    let vera_user = Caller::new(&base, token("vera", None, None));
    vera_user
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": "t-vera", "resourceId": "vera", "title": "v"})),
        )
        .await;
    vera_user
        .call(
            Method::POST,
            "/api/memory/save-messages",
            Some(
                json!({"messages": [{"id": "m-vera", "threadId": "t-vera", "resourceId": "vera",
                "role": "user", "content": "hello"}]}),
            ),
        )
        .await;
    let viewer = Caller::new(&base, token("vera", Some("memory:read"), None));
    let list = viewer.call(Method::GET, "/api/memory/threads", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["threads"][0]["id"], "t-vera");
    let thread = viewer
        .call(Method::GET, "/api/memory/threads/t-vera", None)
        .await;
    assert_eq!(thread.status, StatusCode::OK);
    let messages = viewer
        .call(Method::GET, "/api/memory/threads/t-vera/messages", None)
        .await;
    assert_eq!(messages.status, StatusCode::OK);
    assert_eq!(messages.body["messages"][0]["id"], "m-vera");
    // Reading is not reading others'.
    assert_eq!(
        viewer
            .call(Method::GET, "/api/memory/threads/t-alice", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let listed = viewer
        .call(Method::GET, "/api/memory/threads?resourceId=alice", None)
        .await;
    assert_eq!(listed.body["total"], 1);
    assert_eq!(listed.body["threads"][0]["id"], "t-vera");

    for (method, path, body, needed) in writes("vera", "t-vera", "m-vera")
        .into_iter()
        .chain(writes("alice", "t-alice", "m-alice"))
    {
        let answer = viewer.call(method.clone(), &path, body).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(
            answer.body,
            json!({"error": "Forbidden", "message": format!("Missing required permission: {needed}")}),
            "{method} {path}"
        );
        let challenge = answer.challenge.unwrap();
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{challenge}"
        );
        assert!(
            challenge.contains(&format!(r#"scope="{needed}""#)),
            "{challenge}"
        );
    }
    // Nothing the viewer tried changed anything.
    let mine = vera_user
        .call(Method::GET, "/api/memory/threads/t-vera", None)
        .await;
    assert_eq!(mine.body["title"], "v");
    let msgs = vera_user
        .call(Method::GET, "/api/memory/threads/t-vera/messages", None)
        .await;
    assert!(
        msgs.body["messages"][0]["content"]
            .to_string()
            .contains("hello"),
        "{}",
        msgs.body
    );
    assert_eq!(
        vera_user
            .call(Method::GET, "/api/memory/threads", None)
            .await
            .body["total"],
        1
    );
    assert_alice_unchanged(&alice).await;
}

async fn a_token_listing_no_memory_permission_reaches_no_memory_route(db: &Db) {
    let base = start(db).await;
    let alice = alices_data(&base).await;
    for idp in [
        token("alice", Some("openid email"), None),
        token("alice", Some(""), None),
        token("alice", None, Some(&[])),
        token("alice", Some("memory"), Some(&["agents:read"])),
    ] {
        let caller = Caller::new(&base, idp);
        let mut routes = writes("alice", "t-alice", "m-alice");
        routes.push((
            Method::GET,
            "/api/memory/threads".into(),
            None,
            "memory:read",
        ));
        routes.push((
            Method::GET,
            "/api/memory/threads/t-alice".into(),
            None,
            "memory:read",
        ));
        routes.push((
            Method::GET,
            "/api/memory/threads/t-alice/messages".into(),
            None,
            "memory:read",
        ));
        for (method, path, body, needed) in routes {
            let answer = caller.call(method.clone(), &path, body).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(
                answer.body["message"],
                format!("Missing required permission: {needed}")
            );
        }
    }
    // An unknown route under /api is refused too, not passed to a 404.
    let caller = Caller::new(&base, token("alice", Some("openid"), None));
    assert_eq!(
        caller.call(Method::GET, "/api/secrets", None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_alice_unchanged(&alice).await;
}

async fn an_admin_reads_every_resource_and_changes_only_its_own(db: &Db) {
    let base = start(db).await;
    let alice = alices_data(&base).await;
    let admin = Caller::new(&base, token("root", None, Some(&["memory:admin"])));

    // Listing by `?resourceId=` any resource.
    let listed = admin
        .call(Method::GET, "/api/memory/threads?resourceId=alice", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["total"], 1, "{}", listed.body);
    assert_eq!(listed.body["threads"][0]["id"], "t-alice");
    // Reading a thread and its messages by path, without naming the resource.
    let thread = admin
        .call(Method::GET, "/api/memory/threads/t-alice", None)
        .await;
    assert_eq!(thread.status, StatusCode::OK, "{}", thread.body);
    assert_eq!(thread.body["resourceId"], "alice");
    let messages = admin
        .call(Method::GET, "/api/memory/threads/t-alice/messages", None)
        .await;
    assert_eq!(messages.status, StatusCode::OK);
    assert_eq!(messages.body["messages"][0]["id"], "m-alice");
    // A thread that does not exist is still 404.
    assert_eq!(
        admin
            .call(Method::GET, "/api/memory/threads/nope", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Two different resources named: 400, never a guess.
    let ambiguous = admin
        .call(
            Method::GET,
            "/api/memory/threads?resourceId=alice&resourceId=bob",
            None,
        )
        .await;
    assert_eq!(ambiguous.status, StatusCode::BAD_REQUEST);

    // Writes and deletes on alice's data: 403, and alice's data unchanged.
    for (method, path, body, _) in writes("alice", "t-alice", "m-alice").into_iter().skip(1) {
        let answer = admin.call(method.clone(), &path, body).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            answer.body
        );
    }
    // Creating "for alice" creates for the admin (the body's resourceId is forced).
    let created = admin
        .call(
            Method::POST,
            "/api/memory/threads",
            Some(json!({"threadId": "t-root", "resourceId": "alice"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(created.body["resourceId"], "root");
    assert_alice_unchanged(&alice).await;

    // Its own data: read, write, delete (memory:admin implies them).
    let renamed = admin
        .call(
            Method::PATCH,
            "/api/memory/threads/t-root",
            Some(json!({"title": "admin's"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    let own = admin.call(Method::GET, "/api/memory/threads", None).await;
    assert_eq!(own.body["total"], 1);
    assert_eq!(own.body["threads"][0]["id"], "t-root");
    assert_eq!(
        admin
            .call(Method::DELETE, "/api/memory/threads/t-root", None)
            .await
            .status,
        StatusCode::OK
    );

    // Alice is no admin: her `?resourceId=root` is forced back to her own.
    let hers = alice
        .call(Method::GET, "/api/memory/threads?resourceId=root", None)
        .await;
    assert_eq!(hers.body["threads"][0]["id"], "t-alice");
}

on_both_backends!(
    viewer_reads_its_own_data_and_every_write_is_insufficient_scope,
    a_token_listing_no_memory_permission_reaches_no_memory_route,
    an_admin_reads_every_resource_and_changes_only_its_own,
);
