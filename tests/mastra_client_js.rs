//! The real Mastra client against the memory server: `tests/js/memory-client.mjs` calls every
//! memory method of `@mastra/client-js` 1.47.0 as alice and as bob over real HTTP and asserts
//! the codes and shapes Mastra's own server gives (and that every cross-user attempt is refused
//! with nothing of alice's changed).
//!
//! `#[ignore]`d because it needs Node and `npm ci` in `tests/js`; `.ci/run` runs the SQLite one
//! in its Node step and the PostgreSQL one on its private cluster (`TOWER_SCOPE_TEST_PG_URL`).
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
#[path = "common/backend.rs"]
mod backend;

use std::process::Command;

use backend::{Backend, Db};

const SECRET: &str = "mastra-client-js-test-secret-0123456789";

fn token(sub: &str) -> String {
    backend::token(SECRET, sub)
}

/// Serves the memory server on `backend`, runs the Node script against it, and fails with the
/// script's output unless every check passed.
async fn run_client_script(backend: Backend) {
    let db = Db::new(backend).await;
    let base = backend::serve(backend::router(db.store.clone(), SECRET)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/memory-client.mjs");
    let (alice, bob) = (token("alice"), token("bob"));
    // The server runs on this runtime's other threads while node blocks one of its own.
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("BASE_URL", base)
            .env("ALICE_TOKEN", alice)
            .env("BOB_TOKEN", bob)
            .output()
            .expect("node is installed (and `npm ci` ran in tests/js)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "memory-client.mjs failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(" checks passed, 0 failed"),
        "no summary line:\n{stdout}"
    );
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and `npm ci` in tests/js (run by .ci/run)"]
async fn mastra_client_js_every_memory_call_sqlite() {
    run_client_script(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node, `npm ci` in tests/js and TOWER_SCOPE_TEST_PG_URL (run by .ci/run)"]
async fn mastra_client_js_every_memory_call_postgres() {
    run_client_script(Backend::Postgres).await;
}
