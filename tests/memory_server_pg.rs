//! Two memory server processes on different ports sharing one PostgreSQL: a thread created
//! through one is guarded identically through the other. Needs `TOWER_SCOPE_TEST_PG_URL`
//! (`.ci/run` starts a private PostgreSQL and sets it), hence `#[ignore]`.
#![cfg(all(
    feature = "axum",
    feature = "sqlite",
    feature = "postgres",
    feature = "aws-lc",
    feature = "cors",
    feature = "log"
))]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{MemoryServer, spawn_memory_server};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const SECRET: &str = "two-process-test-secret-0123456789abcdef";

fn spawn(database_url: &str) -> MemoryServer {
    spawn_memory_server(database_url, SECRET, &[])
}

fn token(sub: &str) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": sub, "exp": exp}),
        &key,
    )
    .unwrap()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TOWER_SCOPE_TEST_PG_URL (run by .ci/run)"]
async fn two_processes_sharing_postgres_guard_identically() {
    let url = std::env::var("TOWER_SCOPE_TEST_PG_URL").expect("TOWER_SCOPE_TEST_PG_URL");
    let one = spawn(&url);
    let two = spawn(&url);
    assert_ne!(one.base, two.base);
    let client = Client::new();
    let (alice, bob) = (token("alice-pg"), token("bob-pg"));

    let created: Value = client
        .post(format!("{}/api/memory/threads", one.base))
        .bearer_auth(&alice)
        .json(&json!({"title": "shared db", "resourceId": "bob-pg"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["resourceId"], "alice-pg");
    let path = format!("/api/memory/threads/{}", created["id"].as_str().unwrap());

    for server in [&one, &two] {
        let res = client
            .get(format!("{}{path}", server.base))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "owner through {}",
            server.base
        );
        let res = client
            .get(format!("{}{path}", server.base))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::FORBIDDEN,
            "foreigner through {}",
            server.base
        );
        let res = client
            .delete(format!("{}{path}", server.base))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    let res = client
        .delete(format!("{}{path}", two.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = client
        .get(format!("{}{path}", one.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "deleted through two, gone through one"
    );
}
