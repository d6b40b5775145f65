//! The Node side of the agent: `tests/js/agent-client.mjs` (`@mastra/client-js` 1.47.0
//! streaming from `memAgent` and reading the saved messages back) and
//! `tests/js/browser-chat.mjs` (the page at `/` in headless Chromium via `playwright-core`),
//! each against the memory server started here on `127.0.0.1:0` with a fresh SQLite file.
//!
//! `#[ignore]`d: they need Node 20, `npm ci` in `tests/js` and (for the page) Chromium at
//! `/usr/bin/chromium`; `.ci/run` installs those and runs `-- --ignored`.
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

use std::path::Path;
use std::process::Command;

use backend::{Backend, Db};

const SECRET: &str = "agent-js-secret-0123456789abcdef012345";

fn token(sub: &str) -> String {
    backend::token(SECRET, sub)
}

/// The memory server in dev mode (the page offers alice and bob) on a fresh database.
async fn serve(db: &Db) -> String {
    let settings = app::Settings {
        jwt_secret: SECRET.into(),
        issuer: None,
        audience: None,
        cors_origins: Vec::new(),
        public_url: None,
        dev_tokens: ["alice", "bob"]
            .map(|user| (user.to_owned(), token(user)))
            .to_vec(),
    };
    backend::serve(app::app(db.store.clone(), &settings).unwrap()).await
}

/// Runs `node tests/js/<script>` with `env`; panics with its output unless it exits 0.
async fn node(script: &str, env: &[(&str, String)]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in tests/js first (.ci/run does)"
    );
    let mut command = Command::new("node");
    command.arg(script).current_dir(&dir);
    for (key, value) in env {
        command.env(key, value);
    }
    // The server runs on this runtime's workers while node runs on a blocking thread.
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("node is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and `npm ci` in tests/js (run by .ci/run)"]
async fn mastra_client_streams_from_mem_agent_and_reads_the_messages_back() {
    let db = Db::new(Backend::Sqlite).await;
    let base = serve(&db).await;
    node(
        "agent-client.mjs",
        &[
            ("BASE_URL", base),
            ("ALICE_TOKEN", token("alice")),
            ("BOB_TOKEN", token("bob")),
        ],
    )
    .await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node, `npm ci` in tests/js and Chromium (run by .ci/run)"]
async fn the_chat_page_streams_recalls_and_keeps_bob_out() {
    let db = Db::new(Backend::Sqlite).await;
    let base = serve(&db).await;
    // The screenshot is this run's artifact; docs/chat.png is a committed copy of one.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chat.png");
    node(
        "browser-chat.mjs",
        &[
            ("BASE_URL", base),
            ("SCREENSHOT", shot.display().to_string()),
        ],
    )
    .await;
    assert!(shot.is_file(), "the screenshot was saved");
    db.finish().await;
}
