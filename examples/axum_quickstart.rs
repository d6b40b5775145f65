//! The README quick start: an axum API behind `BearerAuthLayer` (JWT HS256) and
//! `ResourceScopeLayer`.
//!
//! ```text
//! cargo run --example axum_quickstart
//! ```
//!
//! `JWT_SECRET` sets the HS256 secret (32 bytes or more); without it a random one is made and
//! a dev token for `alice` is printed with a ready curl line. `PORT` defaults to 4111.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::RawQuery;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
use tower_scope::{Authenticated, BearerAuthLayer, ResourceId, ResourceScopeLayer};

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

async fn threads(user: Authenticated<Claims>, scope: ResourceId, RawQuery(q): RawQuery) -> String {
    format!(
        "{} may list the threads of {scope} (query seen by the handler: {})\n",
        user.sub,
        q.unwrap_or_default()
    )
}

fn random_secret() -> String {
    // Good enough for a throwaway dev secret: hash a few sources of entropy.
    use std::hash::{BuildHasher, Hasher};
    (0..4)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
                    + i,
            );
            format!("{:016x}", h.finish())
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| random_secret());
    let port = std::env::var("PORT").unwrap_or_else(|_| "4111".into());

    let auth = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, secret.as_bytes()))
        .build()?;
    let app = Router::new()
        .route("/api/memory/threads", get(threads))
        .layer(ResourceScopeLayer::new(|c: &Claims| Some(c.sub.clone())))
        .layer(BearerAuthLayer::new(auth).json_errors());

    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    if std::env::var("JWT_SECRET").is_err() {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
        let claims = Claims {
            sub: "alice".into(),
            exp,
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )?;
        println!(
            "dev token for alice (1 h):\n  curl -H 'Authorization: Bearer {token}' 'http://{}/api/memory/threads?resourceId=bob'",
            listener.local_addr()?
        );
    }
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
