//! Shared helpers for the integration tests: HS256 tokens and the authenticator they need.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};

pub const SECRET: &[u8] = b"integration-test-secret-0123456789-abcdefghijklmnop";
pub const ISSUER: &str = "https://auth.tower-scope.test";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    pub iss: String,
    pub exp: u64,
}

pub fn token_for(sub: &str) -> String {
    token_with(sub, None, 600)
}

pub fn token_with(sub: &str, org: Option<&str>, ttl: i64) -> String {
    #[cfg(feature = "aws-lc")]
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = Claims {
        sub: sub.to_owned(),
        org_id: org.map(str::to_owned),
        iss: ISSUER.to_owned(),
        exp: (now + ttl) as u64,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

pub fn authenticator() -> JwtAuthenticator<Claims> {
    JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .issuer(ISSUER)
        .build()
        .unwrap()
}

/// Resource id = `sub`, or `{org_id}:{sub}`; the user `nobody` cannot be scoped.
pub fn resource_of(claims: &Claims) -> Option<String> {
    if claims.sub == "nobody" {
        return None;
    }
    Some(match &claims.org_id {
        Some(org) => format!("{org}:{}", claims.sub),
        None => claims.sub.clone(),
    })
}

/// The `memory_server` example binary that `cargo test --all-features` built next to the
/// running test's directory (`target/<profile>/examples/`).
pub fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join("memory_server")
}

/// A `memory_server` example process on a free loopback port, killed when dropped.
pub struct MemoryServer {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Drop for MemoryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the example on `database_url` with HS256 `secret` and the extra environment `env`;
/// waits (30 s at most) for its "listening on" line.
pub fn spawn_memory_server(database_url: &str, secret: &str, env: &[(&str, &str)]) -> MemoryServer {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let mut child = Command::new(example_binary())
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", secret)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the memory_server example is built by `cargo test --all-features`");
    let stdout = child.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = BufReader::new(stdout).lines();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(base) = line.strip_prefix("memory server listening on ") {
            return MemoryServer {
                child,
                base: base.trim().to_owned(),
            };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("memory_server did not start");
}
