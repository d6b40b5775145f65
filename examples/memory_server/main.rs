//! A Mastra-compatible memory API where every user reaches only their own threads, an agent
//! (`memAgent`, streaming) that remembers per thread, and a chat page at `/`.
//!
//! ```text
//! cargo run --example memory_server --features axum,sqlite,postgres,cors,log,authz
//! ```
//!
//! Environment: `HOST` (127.0.0.1), `PORT` (4111; 0 picks a free port), `DATABASE_URL`
//! (default: the SQLite file `memory_server.db`, created on first run; `postgres://...` works),
//! `JWT_SECRET` (HS256, 32 bytes or more; when unset a random secret is generated and dev
//! tokens for `alice`, `bob`, `admin` (reads every resource) and `viewer` (read-only) are
//! printed with ready curl lines and offered by the page), `JWT_ISSUER` /
//! `JWT_AUDIENCE` (required claims when set), `CORS_ORIGINS` (comma list),
//! `WORKING_MEMORY_SCOPE` (`resource`, Mastra's default, or `thread`), `PUBLIC_URL` (the
//! server's https URL, described at `/.well-known/oauth-protected-resource` (RFC 9728) and
//! named in every `WWW-Authenticate`; default `http://<host>:<port>` on a loopback host).

mod app;

use std::time::{SystemTime, UNIX_EPOCH};

use app::{Claims, Settings};
use tower_scope::guard::SqlThreadStore;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A dev user: its name, and the grant claims its token carries.
struct DevUser {
    sub: &'static str,
    about: &'static str,
    scope: Option<&'static str>,
    permissions: Option<&'static [&'static str]>,
}

const DEV_USERS: [DevUser; 4] = [
    DevUser {
        sub: "alice",
        about: "a user (role `user`: read, write, delete own data)",
        scope: None,
        permissions: None,
    },
    DevUser {
        sub: "bob",
        about: "another user",
        scope: None,
        permissions: None,
    },
    DevUser {
        sub: "admin",
        about: "`memory:admin`: own data, and reads every resource",
        scope: None,
        permissions: Some(&["memory:admin"]),
    },
    DevUser {
        sub: "viewer",
        about: "`scope: memory:read`: reads own data, every write is 403",
        scope: Some("memory:read"),
        permissions: None,
    },
];

fn dev_token(settings: &Settings, user: &DevUser) -> Result<String, jsonwebtoken::errors::Error> {
    // Minting dev tokens uses jsonwebtoken's process-wide provider; verification does not.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 24 * 3600;
    let mut claims = Claims::user(user.sub, exp);
    claims.iss = settings.issuer.clone();
    claims.aud = settings.audience.clone();
    claims.grants.scope = user.scope.map(|s| s.split(' ').collect());
    claims.grants.permissions = user.permissions.map(|p| p.iter().copied().collect());
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
        public_url: None,
        dev_tokens: Vec::new(),
    };
    if generated_secret {
        // Dev mode: the page at `/` offers these users (`GET /dev/tokens`).
        for user in &DEV_USERS {
            let token = dev_token(&settings, user)?;
            settings.dev_tokens.push((user.sub.to_owned(), token));
        }
    }

    let store = SqlThreadStore::connect(&database_url).await?;
    store.create_schema().await?;
    app::create_schema(&store).await?;
    // A bad `WORKING_MEMORY_SCOPE` stops the server here, with a message, not at the first request.
    app::WorkingMemoryScope::from_env()?;
    let listener = tokio::net::TcpListener::bind(format!("{host}:{port}")).await?;
    let addr = listener.local_addr()?;
    // RFC 9728: the server describes itself at `/.well-known/oauth-protected-resource` and
    // names that in its challenges. Its identifier must be https (or plain http on loopback).
    settings.public_url = match env("PUBLIC_URL") {
        Some(url) => Some(url),
        None if addr.ip().is_loopback() => Some(format!("http://{addr}")),
        None => {
            eprintln!(
                "PUBLIC_URL is not set and {addr} is not loopback: no protected-resource metadata"
            );
            None
        }
    };
    let router = app::app(store, &settings)?;
    if generated_secret {
        println!("JWT_SECRET was not set: generated a random one for this run. Dev tokens (24 h):");
        for (user, (_, token)) in DEV_USERS.iter().zip(&settings.dev_tokens) {
            println!("  {} ({}): {token}", user.sub, user.about);
            println!(
                "    curl -H 'Authorization: Bearer {token}' http://{addr}/api/memory/threads"
            );
        }
        println!("Chat in the browser as any of them: http://{addr}/");
    }
    println!("memory server listening on http://{addr}");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
