//! DPoP (RFC 9449) verification cost, against the bare service and a plain bearer JWT in the
//! same run.
//!
//! `cargo bench --bench dpop --features dpop`. Each DPoP iteration gets a freshly signed proof
//! (signed in the untimed setup: a proof is used once), so the timed part is what a server
//! does per request: proof parse, ES256 signature, claims, thumbprint, replay record, and the
//! bound token's verification.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_scope::BearerAuthLayer;
use tower_scope::dpop::{DpopConfig, MemoryReplayCache};
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};

const SECRET: &[u8] = b"bench-secret-0123456789abcdef-0123456789abcdef";
const ORIGIN: &str = "https://api.bench";

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    format!(
        "{message}.{}",
        b64(aws_lc_rs::hmac::sign(&key, message.as_bytes()).as_ref())
    )
}

struct Client {
    key: EcdsaKeyPair,
    jwk: Value,
    token: String,
    rng: SystemRandom,
    counter: std::cell::Cell<u64>,
}

impl Client {
    fn new() -> Self {
        let key = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = key.public_key().as_ref();
        let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let jkt = b64(&Sha256::digest(canonical.as_bytes()));
        let token = hs256(&json!({"sub": "alice", "exp": now() + 3600, "cnf": {"jkt": jkt}}));
        Self {
            key,
            jwk,
            token,
            rng: SystemRandom::new(),
            counter: std::cell::Cell::new(0),
        }
    }

    fn request(&self) -> Request<String> {
        self.counter.set(self.counter.get() + 1);
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let claims = json!({
            "jti": format!("bench-{}", self.counter.get()),
            "htm": "GET",
            "htu": format!("{ORIGIN}/api/memory/threads"),
            "iat": now(),
            "ath": b64(&Sha256::digest(self.token.as_bytes())),
        });
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.key.sign(&self.rng, message.as_bytes()).unwrap();
        let proof = format!("{message}.{}", b64(sig.as_ref()));
        let mut req = Request::get("/api/memory/threads")
            .body(String::new())
            .unwrap();
        let headers = req.headers_mut();
        let auth = HeaderValue::try_from(format!("DPoP {}", self.token)).unwrap();
        headers.insert(AUTHORIZATION, auth);
        headers.insert("dpop", HeaderValue::try_from(proof).unwrap());
        req
    }

    fn bearer_request(&self, token: &str) -> Request<String> {
        let mut req = Request::get("/api/memory/threads")
            .body(String::new())
            .unwrap();
        let auth = HeaderValue::try_from(format!("Bearer {token}")).unwrap();
        req.headers_mut().insert(AUTHORIZATION, auth);
        req
    }
}

async fn handler(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

fn drive<S>(svc: &S, req: Request<String>) -> u16
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    let res = svc
        .clone()
        .oneshot(req)
        .now_or_never()
        .expect("ready on first poll")
        .unwrap();
    res.status().as_u16()
}

fn authenticator() -> JwtAuthenticator<Value> {
    JwtAuthenticator::<Value>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .accept_dpop()
        .build()
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let client = Client::new();
    let bare = ServiceBuilder::new().service(service_fn(handler));
    let dpop = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::new(authenticator())
                // Room for every proof of the run: each iteration's `jti` stays live for 65 s.
                .dpop(
                    DpopConfig::new(ORIGIN)
                        .unwrap()
                        .replay_cache(MemoryReplayCache::new(20_000_000)),
                )
                .unwrap(),
        )
        .service(service_fn(handler));
    let plain = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(authenticator()))
        .service(service_fn(handler));
    let unbound = hs256(&json!({"sub": "alice", "exp": now() + 3600}));
    assert_eq!(drive(&dpop, client.request()), 200);
    assert_eq!(drive(&plain, client.bearer_request(&unbound)), 200);

    let mut g = c.benchmark_group("dpop");
    g.bench_function("bare", |b| {
        b.iter_batched(
            || client.request(),
            |req| black_box(drive(&bare, req)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("bearer_jwt_hs256", |b| {
        b.iter_batched(
            || client.bearer_request(&unbound),
            |req| black_box(drive(&plain, req)),
            BatchSize::SmallInput,
        )
    });
    // The floor: one ES256 signature check, which every proof needs.
    let message = b"header.payload";
    let sig = client.key.sign(&client.rng, message).unwrap();
    let public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_FIXED,
        client.key.public_key().as_ref().to_vec(),
    );
    g.bench_function("es256_verify_only", |b| {
        b.iter(|| black_box(public.verify(message, sig.as_ref()).is_ok()))
    });
    g.bench_function("dpop_es256_proof_and_bound_jwt", |b| {
        b.iter_batched(
            || client.request(),
            |req| black_box(drive(&dpop, req)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    // Still verifying, not refusing: the numbers above are of successful requests.
    assert_eq!(drive(&dpop, client.request()), 200);
}

criterion_group!(dpop_benches, benches);
criterion_main!(dpop_benches);
