//! JWKS verification through `BearerAuthLayer`, with and without the verified-token cache,
//! against `jsonwebtoken::decode` and the bare service in the same run.
//!
//! `cargo bench --bench jwt`. Keys come from the mock issuer over loopback HTTP, once, before
//! measuring; after that every request's future is ready on its first poll (the key is known),
//! so each iteration drives exactly what hyper-util does (clone, `oneshot`) without a runtime.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_scope::BearerAuthLayer;
use tower_scope::jwks::JwksAuthenticator;
use tower_scope::jwks::mock::MockIssuer;
use tower_scope::jwt::Algorithm;

#[derive(Clone, Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    iss: String,
    exp: u64,
}

async fn handler(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

fn drive<S>(svc: &S, auth: &HeaderValue) -> u16
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    let mut req = Request::get("/api/memory/threads")
        .body(String::new())
        .unwrap();
    req.headers_mut().insert(AUTHORIZATION, auth.clone());
    let res = svc
        .clone()
        .oneshot(req)
        .now_or_never()
        .expect("ready on first poll")
        .unwrap();
    res.status().as_u16()
}

const ALGS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
    Algorithm::HS256,
];

fn benches(c: &mut Criterion) {
    // `jsonwebtoken::decode` (the baseline) needs the process-wide provider.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let idp = runtime.block_on(MockIssuer::start()).unwrap();
    let build = |cache: bool| {
        let builder = JwksAuthenticator::<Claims>::builder()
            .issuer(idp.jwks())
            .algorithms(ALGS);
        let builder = if cache {
            builder.token_cache(10_000)
        } else {
            builder
        };
        runtime.block_on(builder.build()).unwrap()
    };
    let plain = build(false);
    let cached = build(true);
    let body = runtime.block_on(async {
        reqwest::get(idp.jwks_url())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    let jwks: JwkSet = serde_json::from_slice(&body).unwrap();

    let mut g = c.benchmark_group("jwt");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);

    let bare = ServiceBuilder::new().service(service_fn(handler));
    let any = HeaderValue::from_static("Bearer x");
    g.bench_function("bare_service", |b| b.iter(|| black_box(drive(&bare, &any))));

    let layer = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(plain))
        .service(service_fn(handler));
    let layer_cached = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(cached))
        .service(service_fn(handler));

    for alg in ALGS {
        let name = format!("{alg:?}");
        let token = idp.mint_with(alg, json!({"sub": "alice"}));
        // Digest and grammar check scale with the token: report its size with the times.
        println!("{name}: token of {} bytes", token.len());
        let header = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let key = DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[idp.issuer()]);
        validation.validate_aud = false;
        assert!(jsonwebtoken::decode::<Claims>(&token, &key, &validation).is_ok());
        assert_eq!(drive(&layer, &header), 200);
        assert_eq!(drive(&layer_cached, &header), 200);

        g.bench_function(format!("{name}/jsonwebtoken_decode"), |b| {
            b.iter(|| {
                black_box(
                    jsonwebtoken::decode::<Claims>(black_box(&token), &key, &validation).is_ok(),
                )
            })
        });
        g.bench_function(format!("{name}/layer"), |b| {
            b.iter(|| black_box(drive(&layer, &header)))
        });
        g.bench_function(format!("{name}/layer_cached"), |b| {
            b.iter(|| black_box(drive(&layer_cached, &header)))
        });
    }

    // IdP tokens often carry more claims than `sub`: the cache-hit cost grows with the token
    // (digest and grammar check run over every byte), so show a ~1 KiB RS256 token too.
    let claims = json!({
        "sub": "auth0|5f7c8ec7c33c6c004bbafe82",
        "picture": "https://s.gravatar.com/avatar/8f9c3b6a1d2e4f5a6b7c8d9e0f1a2b3c?s=480&r=pg",
        "azp": "Xq1cW3mWq4yGcE2q5Y3z7KJcP0aLw9Ht",
        "scope": "openid profile email read:threads write:threads delete:threads read:messages",
        "permissions": ["read:threads", "write:threads", "delete:threads", "read:messages",
                        "write:messages", "read:working-memory", "write:working-memory"],
        "https://example.com/roles": ["member", "beta-tester"],
        "https://example.com/org": "org_7Hs2Kd9QmZx41LpB",
        "email": "alice@example.com",
        "name": "Alice Example"
    });
    let token = idp.mint_with(Algorithm::RS256, claims);
    println!(
        "RS256 with IdP-style claims: token of {} bytes",
        token.len()
    );
    let header = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    assert_eq!(drive(&layer_cached, &header), 200);
    g.bench_function("RS256_idp_claims/layer_cached", |b| {
        b.iter(|| black_box(drive(&layer_cached, &header)))
    });
    g.finish();
    drop(idp);
}

criterion_group!(jwt, benches);
criterion_main!(jwt);
