//! Layer overhead, measured against the bare service in the same run.
//!
//! `cargo bench --bench auth`. Futures of these stacks are ready on the first poll, so each
//! iteration drives exactly what hyper-util does (clone, `oneshot`) without a runtime.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
use tower_scope::{Authenticated, BearerAuthLayer, ResourceScopeLayer, StaticTokens};

const SECRET: &[u8] = b"bench-secret-0123456789abcdef-0123456789abcdef";
const ISSUER: &str = "https://auth.bench";

#[derive(Clone, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    exp: u64,
}

fn token() -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = Claims {
        sub: "alice".into(),
        iss: ISSUER.into(),
        exp,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

async fn handler(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

fn request(auth: Option<&HeaderValue>) -> Request<String> {
    let mut req = Request::get("/api/memory/threads")
        .body(String::new())
        .unwrap();
    if let Some(value) = auth {
        req.headers_mut().insert(AUTHORIZATION, value.clone());
    }
    req
}

fn drive<S>(svc: &S, auth: Option<&HeaderValue>) -> u16
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    let res = svc
        .clone()
        .oneshot(request(auth))
        .now_or_never()
        .expect("ready on first poll")
        .unwrap();
    res.status().as_u16()
}

fn jwt() -> JwtAuthenticator<Claims> {
    JwtAuthenticator::<Claims>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .issuer(ISSUER)
        .build()
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let token = token();
    let good = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let forged = HeaderValue::from_str(&format!("Bearer {}", &token[..token.len() - 2])).unwrap();
    let api_key = HeaderValue::from_static("Bearer alice-api-key-0123456789abcdef");

    let mut g = c.benchmark_group("auth");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);

    let bare = ServiceBuilder::new().service(service_fn(handler));
    g.bench_function("bare", |b| b.iter(|| black_box(drive(&bare, Some(&good)))));

    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    let key = DecodingKey::from_secret(SECRET);
    g.bench_function("jsonwebtoken_decode_only", |b| {
        b.iter(|| {
            black_box(jsonwebtoken::decode::<Claims>(black_box(&token), &key, &validation).is_ok())
        })
    });

    let verifier = jwt();
    g.bench_function("tower_scope_verify_only", |b| {
        b.iter(|| black_box(verifier.verify(black_box(&token)).is_ok()))
    });

    let statics = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(
            StaticTokens::new().token("alice-api-key-0123456789abcdef", "alice"),
        ))
        .service(service_fn(handler));
    g.bench_function("static_tokens/success", |b| {
        b.iter(|| black_box(drive(&statics, Some(&api_key))))
    });
    g.bench_function("static_tokens/reject", |b| {
        b.iter(|| black_box(drive(&statics, Some(&forged))))
    });

    let hs256 = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(jwt()))
        .service(service_fn(handler));
    g.bench_function("jwt_hs256/success", |b| {
        b.iter(|| black_box(drive(&hs256, Some(&good))))
    });
    g.bench_function("jwt_hs256/reject_bad_signature", |b| {
        b.iter(|| black_box(drive(&hs256, Some(&forged))))
    });
    g.bench_function("jwt_hs256/reject_missing", |b| {
        b.iter(|| black_box(drive(&hs256, None)))
    });

    let scope_only = ServiceBuilder::new()
        .map_request(|mut req: Request<String>| {
            req.extensions_mut()
                .insert(Authenticated::new(String::from("alice")));
            req
        })
        .layer(ResourceScopeLayer::new(|u: &String| Some(u.clone())))
        .service(service_fn(handler));
    let with_user_only = ServiceBuilder::new()
        .map_request(|mut req: Request<String>| {
            req.extensions_mut()
                .insert(Authenticated::new(String::from("alice")));
            req
        })
        .service(service_fn(handler));
    g.bench_function("scope/baseline_insert_user", |b| {
        b.iter(|| black_box(drive(&with_user_only, None)))
    });
    g.bench_function("scope/success", |b| {
        b.iter(|| black_box(drive(&scope_only, None)))
    });

    let stack = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(jwt()))
        .layer(ResourceScopeLayer::new(|c: &Claims| Some(c.sub.clone())))
        .service(service_fn(handler));
    g.bench_function("jwt_hs256+scope/success", |b| {
        b.iter(|| black_box(drive(&stack, Some(&good))))
    });
    g.bench_function("jwt_hs256+scope/reject", |b| {
        b.iter(|| black_box(drive(&stack, Some(&forged))))
    });
    g.finish();
}

criterion_group!(auth, benches);
criterion_main!(auth);
