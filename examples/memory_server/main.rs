//! A Mastra-compatible memory API where every user reaches only their own threads, an agent
//! (`memAgent`, streaming) that remembers per thread, and a chat page at `/`.
//!
//! ```text
//! cargo run --example memory_server --features axum,sqlite,postgres,cors,log
//! ```
//!
//! Environment: `HOST` (127.0.0.1), `PORT` (4111; 0 picks a free port), `DATABASE_URL`
//! (default: the SQLite file `memory_server.db`, created on first run; `postgres://...` works),
//! `JWT_SECRET` (HS256, 32 bytes or more; when unset a random secret is generated and dev
//! tokens for `alice` and `bob` are printed with ready curl lines and offered by the page),
//! `JWT_ISSUER` / `JWT_AUDIENCE` (required claims when set), `CORS_ORIGINS` (comma list).

mod app;

use std::time::{SystemTime, UNIX_EPOCH};

use app::{Claims, Settings};
use tower_scope::guard::SqlThreadStore;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn dev_token(settings: &Settings, sub: &str) -> Result<String, jsonwebtoken::errors::Error> {
    // Minting dev tokens uses jsonwebtoken's process-wide provider; verification does not.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 24 * 3600;
    let claims = Claims {
        sub: sub.to_owned(),
        org_id: None,
        exp,
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(settings.jwt_secret.as_bytes()),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One line per request from LogLayer, filtered by `RUST_LOG` (e.g. `warn`, or
    // `info,tower_scope::log=warn`); `info` when it is unset or empty. Invalid directives are
    // reported on stderr and skipped rather than silently replaced by the default.
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let host = env("HOST").unwrap_or_else(|| "127.0.0.1".into());
    let port = env("PORT").unwrap_or_else(|| "4111".into());
    let database_url =
        env("DATABASE_URL").unwrap_or_else(|| "sqlite://memory_server.db?mode=rwc".into());
    let generated_secret = env("JWT_SECRET").is_none();
    let mut settings = Settings {
        jwt_secret: env("JWT_SECRET").unwrap_or_else(|| app::random_id(32)),
        issuer: env("JWT_ISSUER"),
        audience: env("JWT_AUDIENCE"),
        cors_origins: env("CORS_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        dev_tokens: Vec::new(),
    };
    if generated_secret {
        // Dev mode: the page at `/` offers these users (`GET /dev/tokens`).
        for user in ["alice", "bob"] {
            let token = dev_token(&settings, user)?;
            settings.dev_tokens.push((user.to_owned(), token));
        }
    }

    let store = SqlThreadStore::connect(&database_url).await?;
    store.create_schema().await?;
    let router = app::app(store, &settings)?;

    let listener = tokio::net::TcpListener::bind(format!("{host}:{port}")).await?;
    let addr = listener.local_addr()?;
    if generated_secret {
        println!("JWT_SECRET was not set: generated a random one for this run. Dev tokens (24 h):");
        for (user, token) in &settings.dev_tokens {
            println!("  {user}: {token}");
            println!(
                "    curl -H 'Authorization: Bearer {token}' http://{addr}/api/memory/threads"
            );
        }
        println!("Chat in the browser as either of them: http://{addr}/");
    }
    println!("memory server listening on http://{addr}");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
