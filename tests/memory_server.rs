//! Isolation, end to end: the memory server example over real HTTP, users alice and bob.
//!
//! Bob tries every way Mastra's memory API offers to read or change Alice's data — by id,
//! by `?resourceId=`, by body `resourceId`, by header — and Alice's data must be unchanged.
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

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tower_scope::guard::SqlThreadStore;

const SECRET: &str = "isolation-test-secret-0123456789abcdef";

fn settings() -> app::Settings {
    app::Settings {
        jwt_secret: SECRET.into(),
        issuer: None,
        audience: None,
        cors_origins: Vec::new(),
    }
}

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
    };
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

fn sqlite_url() -> String {
    let path = std::env::temp_dir().join(format!("tower-scope-{}.db", app::random_id(8)));
    format!("sqlite://{}?mode=rwc", path.display())
}

async fn start() -> String {
    let store = SqlThreadStore::connect(&sqlite_url()).await.unwrap();
    store.create_schema().await.unwrap();
    let router = app::app(store, &settings()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
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
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[tokio::test]
async fn bob_cannot_reach_alices_threads_or_messages_by_any_id() {
    let base = start().await;
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
        .map(|m| m["content"].as_str().unwrap())
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

#[tokio::test]
async fn missing_threads_and_missing_credentials_get_mastras_answers() {
    let base = start().await;
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

#[tokio::test]
async fn org_scoped_users_are_isolated_by_org_and_user() {
    let base = start().await;
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
#[tokio::test]
async fn hostile_input_gets_mastras_json_answers_and_no_panic() {
    let base = start().await;
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
