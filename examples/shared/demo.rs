//! What every framework example shares: the claims, a dev secret, dev tokens, and a seeded
//! thread store (alice owns `t-alice`, bob owns `t-bob`). Included with `#[path]`.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tower_scope::guard::MemoryThreadStore;
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
use tower_scope::{BearerAuthLayer, ResourceId, ThreadId};

/// The token's claims: `sub`, an optional `org_id`, expiry, and an optional space-delimited
/// `scope` (the gRPC example checks a permission per RPC from it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `JWT_SECRET`, or a fixed development secret.
pub fn secret() -> String {
    std::env::var("JWT_SECRET")
        .unwrap_or_else(|_| "tower-scope-dev-secret-change-me-0123456789".into())
}

/// `{org_id}:{sub}`, or `sub`.
pub fn resource_of(claims: &Claims) -> Option<String> {
    Some(match &claims.org_id {
        Some(org) => format!("{org}:{}", claims.sub),
        None => claims.sub.clone(),
    })
}

/// `BearerAuthLayer` over an HS256 `JwtAuthenticator`, `/health` public.
pub fn auth_layer() -> BearerAuthLayer<JwtAuthenticator<Claims>> {
    let auth = JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, secret().as_bytes()))
        .build()
        .expect("JWT_SECRET must be 32 bytes or longer");
    BearerAuthLayer::new(auth)
        .public_path("/health")
        .expect("valid pattern")
}

/// A dev token for `sub` (and `org`), valid one hour.
pub fn token(sub: &str, org: Option<&str>) -> String {
    token_with_scope(sub, org, None)
}

/// A dev token for `sub` (and `org`) listing `scope`, valid one hour.
pub fn token_with_scope(sub: &str, org: Option<&str>, scope: Option<&str>) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let claims = Claims {
        sub: sub.into(),
        org_id: org.map(str::to_owned),
        exp,
        scope: scope.map(str::to_owned),
    };
    let key = jsonwebtoken::EncodingKey::from_secret(secret().as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("HS256 signing")
}

/// A store where alice owns `t-alice` and bob owns `t-bob`.
pub fn seeded_store() -> MemoryThreadStore {
    let store = MemoryThreadStore::new();
    for (thread, owner) in [("t-alice", "alice"), ("t-bob", "bob")] {
        store.insert_thread(
            ThreadId::new(thread).expect("valid id"),
            Some(ResourceId::new(owner).expect("valid id")),
        );
    }
    store
}

/// Prints dev tokens and curl lines for a server at `addr`.
pub fn print_dev_tokens(addr: std::net::SocketAddr) {
    for user in ["alice", "bob"] {
        println!(
            "{user}: curl -H 'Authorization: Bearer {}' http://{addr}/api/whoami",
            token(user, None)
        );
    }
}

/// Serves a tower service on every connection of `listener` with hyper-util (HTTP/1.1 and h2c):
/// the loop the hyper and warp examples share.
pub async fn serve_connections<S, B>(listener: tokio::net::TcpListener, svc: S)
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
