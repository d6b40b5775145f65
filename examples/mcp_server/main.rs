//! An MCP server (rmcp's streamable HTTP) behind tower-scope: OAuth 2.0 protected-resource
//! metadata (RFC 9728), audience-bound tokens (RFC 8707), a scope per tool and the caller's
//! resource id reaching each tool — the MCP authorization spec's resource-server side.
//!
//! ```text
//! cargo run --example mcp_server --features axum,jwt,aws-lc,test-util,authz,json-body
//! ```
//!
//! Environment: `HOST` (127.0.0.1), `PORT` (0: a free port), `PUBLIC_URL` (default
//! `http://<host>:<port>`; the resource is `<PUBLIC_URL>/mcp`). For local use the example
//! starts a mock OIDC issuer on loopback and prints tokens: one with both scopes, one with
//! `notes:read` only (its `remember` calls get 403 `insufficient_scope`).

mod app;

use std::time::Duration;

use serde_json::json;
use tower_scope::jwks::mock::MockIssuer;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = env("HOST").unwrap_or_else(|| "127.0.0.1".into());
    let port = env("PORT").unwrap_or_else(|| "0".into());
    let listener = tokio::net::TcpListener::bind(format!("{host}:{port}")).await?;
    let addr = listener.local_addr()?;
    let public = env("PUBLIC_URL").unwrap_or_else(|| format!("http://{addr}"));
    let resource = format!("{}/mcp", public.trim_end_matches('/'));

    let issuer = MockIssuer::start().await?;
    let settings = app::Settings {
        resource: resource.clone(),
        issuer: issuer.issuer().to_owned(),
        body_timeout: Duration::from_secs(10),
    };
    let router = app::app(&settings, app::Store::default()).await?;

    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    for (sub, scope) in [
        ("alice", "notes:read notes:write"),
        ("viewer", "notes:read"),
    ] {
        let token = issuer.mint(json!({
            "iss": issuer.issuer(), "aud": resource, "sub": sub, "exp": exp, "scope": scope,
        }));
        println!("{sub} ({scope}): {token}");
    }
    println!("MCP endpoint: {resource}");
    println!(
        "metadata:     {}/.well-known/oauth-protected-resource/mcp",
        public.trim_end_matches('/')
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
