//! tower-scope against jwt-authorizer, axum-jwt-auth, tower-oauth2-resource-server and a
//! hand-written `jsonwebtoken` middleware; see the crate docs and `scripts/peer-bench.sh`.
//!
//! Rows: valid / bad signature / missing token for HS256, RS256 and ES256, plus tower-scope's
//! JWKS authenticator with and without its token cache. Each contestant's 200 / 401 answers
//! are asserted before anything is timed. The ratio table is printed at the end.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use criterion::Criterion;
use http::HeaderValue;
use serde_json::{Value, json};
use tower_scope::BearerAuthLayer;
use tower_scope::jwks::JwksAuthenticator;
use tower_scope::jwks::mock::MockIssuer;
use tower_scope::jwt::{Algorithm, JwtAuthenticator};
use tower_scope_peer_bench::report::{self, BARE, BARE07, JWKS};
use tower_scope_peer_bench::{
    AUDIENCE, Claims, HandWrittenLayer, PATH, count_loop, drive, handler, handler_with_claims,
    handler07, interleaved,
};

/// The token of one row, its bad-signature twin, and the one-key JWK set that verifies it.
struct Material {
    alg: Algorithm,
    token: HeaderValue,
    bad: HeaderValue,
    jwk: Value,
    jwks: String,
}

fn material(idp: &MockIssuer, alg: Algorithm) -> Material {
    let token = idp.mint_with(alg, json!({"sub": "alice", "aud": AUDIENCE}));
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    // Change one character early in the signature: for ES256 that is R, so S stays low and
    // every contestant reaches the signature check.
    let sig_at = token.rfind('.').unwrap() + 4;
    let mut bad = token.clone().into_bytes();
    bad[sig_at] = if bad[sig_at] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let jwk = idp.jwk(&kid).unwrap();
    let jwks = json!({ "keys": [jwk] }).to_string();
    println!("{alg:?}: token of {} bytes", token.len());
    Material {
        alg,
        token: HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        bad: HeaderValue::from_str(&format!("Bearer {bad}")).unwrap(),
        jwk,
        jwks,
    }
}

fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// Whether this run is unfiltered (a filtered run skips the alternating target timings).
fn criterion_filter_matches_all() -> bool {
    !std::env::args().skip(1).any(|a| !a.starts_with('-'))
}

/// Where criterion writes, and the report reads, the estimates.
fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// Whether only the alternated target timings run (`PEER_TARGETS_ONLY`).
fn targets_only() -> bool {
    std::env::var_os("PEER_TARGETS_ONLY").is_some()
}

/// `PEER_COUNT=<ALG>:<contestant>:<case>`, split.
fn counted() -> Option<Vec<String>> {
    let spec = std::env::var("PEER_COUNT").ok()?;
    let parts: Vec<String> = spec.split(':').map(str::to_owned).collect();
    assert_eq!(parts.len(), 3, "PEER_COUNT=<ALG>:<contestant>:<case>");
    Some(parts)
}

/// How many requests a `PEER_COUNT` run makes (`COUNT`, default 20,000).
fn count() -> usize {
    std::env::var("COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

fn main() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let _ = jsonwebtoken10::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let idp = runtime.block_on(MockIssuer::start()).unwrap();
    let issuer = idp.issuer().to_owned();

    let dir = output_dir();
    let quick = std::env::var_os("PEER_BENCH_QUICK").is_some();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .warm_up_time(Duration::from_millis(if quick { 200 } else { 1000 }))
        .measurement_time(Duration::from_millis(if quick { 500 } else { 2000 }))
        .sample_size(if quick { 20 } else { 50 })
        .configure_from_args();

    let bare = axum::Router::new().route(PATH, get(handler));
    let bare07 = axum07::Router::new().route(PATH, axum07::routing::get(handler07));
    assert_eq!(drive(&bare, None), 200);
    assert_eq!(drive(&bare07, None), 200);
    if !targets_only() {
        let mut g = c.benchmark_group("bare");
        g.bench_function(BARE, |b| b.iter(|| black_box(drive(&bare, None))));
        g.bench_function(BARE07, |b| b.iter(|| black_box(drive(&bare07, None))));
        g.finish();
    }

    let mut targets = String::from(
        "\nIssue 17's targets again, each timed by alternating its contestants (see \
         `interleaved`), which a shared machine's changing load cannot bias:\n\n\
         | target | measured | limit | |\n|---|---|---|---|\n",
    );
    let mut target = |what: String, measured: f64, limit: f64| {
        let verdict = if measured <= limit { "met" } else { "NOT met" };
        targets.push_str(&format!(
            "| {what} | {measured:.2} | ≤ {limit:.2} | {verdict} |\n"
        ));
    };
    let rounds = if quick { 100 } else { 400 };

    for alg in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
        let m = material(&idp, alg);
        let name = alg_name(alg);

        // tower-scope: the static authenticator with the one-key JWK set.
        let auth = JwtAuthenticator::<Claims>::builder()
            .jwk_set_json(m.jwks.clone())
            .algorithms([m.alg])
            .issuer(issuer.clone())
            .audience(AUDIENCE)
            .build()
            .unwrap();
        let tower_scope = axum::Router::new()
            .route(PATH, get(handler))
            .layer(BearerAuthLayer::new(auth));

        // jwt-authorizer: its JWK set parser maps `oct` keys to EdDSA, so HS256 takes the secret.
        let jwt_authorizer = runtime.block_on(async {
            use jwt_authorizer::{IntoLayer, JwtAuthorizer, Validation};
            let validation = Validation::new()
                .iss(&[issuer.as_str()])
                .aud(&[AUDIENCE])
                .algs(vec![match alg {
                    Algorithm::HS256 => jsonwebtoken9::Algorithm::HS256,
                    Algorithm::RS256 => jsonwebtoken9::Algorithm::RS256,
                    _ => jsonwebtoken9::Algorithm::ES256,
                }]);
            let builder = if alg == Algorithm::HS256 {
                use base64::Engine as _;
                let k = m.jwk["k"].as_str().unwrap();
                let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k)
                    .unwrap();
                let secret = String::from_utf8(secret).unwrap();
                JwtAuthorizer::<Claims>::from_secret(&secret)
            } else {
                JwtAuthorizer::<Claims>::from_jwks_text(&m.jwks)
            };
            let auth = builder.validation(validation).build().await.unwrap();
            axum07::Router::new()
                .route(PATH, axum07::routing::get(handler07))
                .layer(auth.into_layer())
        });

        // axum-jwt-auth: a local decoder in the Router's state, claims through the extractor.
        let axum_jwt_auth = {
            let jwk: jsonwebtoken10::jwk::Jwk = serde_json::from_value(m.jwk.clone()).unwrap();
            let key = jsonwebtoken10::DecodingKey::from_jwk(&jwk).unwrap();
            let mut validation = jsonwebtoken10::Validation::new(match alg {
                Algorithm::HS256 => jsonwebtoken10::Algorithm::HS256,
                Algorithm::RS256 => jsonwebtoken10::Algorithm::RS256,
                _ => jsonwebtoken10::Algorithm::ES256,
            });
            validation.set_issuer(&[issuer.as_str()]);
            validation.set_audience(&[AUDIENCE]);
            let decoder = axum_jwt_auth::LocalDecoder::builder()
                .keys(vec![key])
                .validation(validation)
                .build()
                .unwrap();
            let decoder: axum_jwt_auth::Decoder<Claims> = Arc::new(decoder);
            axum::Router::new()
                .route(PATH, get(handler_with_claims))
                .with_state(decoder)
        };

        // tower-oauth2-resource-server: a static tenant with the same JWK set.
        let tower_oauth2 = runtime.block_on(async {
            use tower_oauth2_resource_server::server::OAuth2ResourceServer;
            use tower_oauth2_resource_server::tenant::TenantConfiguration;
            use tower_oauth2_resource_server::validation::ClaimsValidationSpec;
            let spec = ClaimsValidationSpec::new()
                .exp(true)
                .iss(&issuer)
                .aud(&vec![AUDIENCE.to_owned()]);
            let tenant = TenantConfiguration::static_builder(m.jwks.clone())
                .identifier(&issuer)
                .audiences(&[AUDIENCE])
                .claims_validation(spec)
                .allowed_algorithms(&[m.alg])
                .build()
                .unwrap();
            let server = OAuth2ResourceServer::<Claims>::builder()
                .add_tenant(tenant)
                .build()
                .await
                .unwrap();
            axum::Router::new()
                .route(PATH, get(handler))
                .layer(server.into_layer())
        });

        // Hand-written: `jsonwebtoken::decode` in a small tower layer.
        let hand_written = {
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(m.jwk.clone()).unwrap();
            let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(m.alg);
            validation.set_issuer(&[issuer.as_str()]);
            validation.set_audience(&[AUDIENCE]);
            axum::Router::new()
                .route(PATH, get(handler))
                .layer(HandWrittenLayer::new(key, validation))
        };

        // tower-scope's JWKS authenticator, keys from the mock issuer over loopback.
        let jwks = |cache: bool| {
            let builder = JwksAuthenticator::<Claims>::builder()
                .issuer(idp.jwks())
                .algorithms([m.alg])
                .audience(AUDIENCE);
            let builder = if cache {
                builder.token_cache(10_000)
            } else {
                builder
            };
            let auth = runtime.block_on(builder.build()).unwrap();
            axum::Router::new()
                .route(PATH, get(handler))
                .layer(BearerAuthLayer::new(auth))
        };
        let jwks_plain = jwks(false);
        let jwks_cached = jwks(true);

        // Every contestant answers alike before anything is timed.
        macro_rules! check {
            ($svc:expr, $who:expr) => {
                assert_eq!(drive(&$svc, Some(&m.token)), 200, "{} {name} valid", $who);
                assert_eq!(drive(&$svc, Some(&m.bad)), 401, "{} {name} bad", $who);
                assert_eq!(drive(&$svc, None), 401, "{} {name} missing", $who);
            };
        }
        check!(tower_scope, "tower-scope");
        check!(jwt_authorizer, "jwt-authorizer");
        check!(axum_jwt_auth, "axum-jwt-auth");
        check!(tower_oauth2, "tower-oauth2");
        check!(hand_written, "hand-written");
        check!(jwks_plain, "jwks");
        check!(jwks_cached, "jwks-cached");

        // `PEER_COUNT=<ALG>:<contestant>:<case>`: that one row, `COUNT` times, then exit (see
        // `scripts/peer-instructions.sh`); `bare` and `bare07` run with no token.
        if let Some(wanted) = counted() {
            let (alg_wanted, who, case) = (&wanted[0], &wanted[1], &wanted[2]);
            if *alg_wanted != name {
                continue;
            }
            let auth = match case.as_str() {
                "valid" => Some(&m.token),
                "bad-signature" => Some(&m.bad),
                _ => None,
            };
            let n = count();
            let run = |svc: &dyn Fn() -> u16| count_loop(svc, n);
            match who.as_str() {
                "bare" => run(&|| drive(&bare, None)),
                "bare07" => run(&|| drive(&bare07, None)),
                "tower-scope" => run(&|| drive(&tower_scope, auth)),
                "jwt-authorizer" => run(&|| drive(&jwt_authorizer, auth)),
                "axum-jwt-auth" => run(&|| drive(&axum_jwt_auth, auth)),
                "tower-oauth2" => run(&|| drive(&tower_oauth2, auth)),
                "hand-written" => run(&|| drive(&hand_written, auth)),
                "jwks" => run(&|| drive(&jwks_plain, auth)),
                "jwks-cached" => run(&|| drive(&jwks_cached, auth)),
                other => panic!("PEER_COUNT: unknown contestant {other}"),
            }
            return;
        }

        // `PEER_TARGETS_ONLY=1`: only the alternated target timings below (about a minute).
        let rows: &[(&str, Option<&HeaderValue>)] = if targets_only() {
            &[]
        } else {
            &[
                ("valid", Some(&m.token)),
                ("bad-signature", Some(&m.bad)),
                ("missing-token", None),
            ]
        };
        for &(kind, auth) in rows {
            let mut g = c.benchmark_group(format!("{name}-{kind}"));
            g.bench_function("tower-scope", |b| {
                b.iter(|| black_box(drive(&tower_scope, auth)))
            });
            g.bench_function("jwt-authorizer", |b| {
                b.iter(|| black_box(drive(&jwt_authorizer, auth)))
            });
            g.bench_function("axum-jwt-auth", |b| {
                b.iter(|| black_box(drive(&axum_jwt_auth, auth)))
            });
            g.bench_function("tower-oauth2", |b| {
                b.iter(|| black_box(drive(&tower_oauth2, auth)))
            });
            g.bench_function("hand-written", |b| {
                b.iter(|| black_box(drive(&hand_written, auth)))
            });
            if kind != "missing-token" {
                g.bench_function(JWKS[0], |b| b.iter(|| black_box(drive(&jwks_plain, auth))));
                g.bench_function(JWKS[1], |b| b.iter(|| black_box(drive(&jwks_cached, auth))));
            }
            g.finish();
        }

        if criterion_filter_matches_all() {
            let ts = || drive(&tower_scope, None);
            let ja = || drive(&jwt_authorizer, None);
            let t = interleaved(&[&ts, &ja], rounds);
            target(
                format!(
                    "{name} missing token: tower-scope / jwt-authorizer ({:.0} / {:.0} ns)",
                    t[0], t[1]
                ),
                t[0] / t[1],
                1.0,
            );
            let plain = || drive(&jwks_plain, Some(&m.bad));
            let cached = || drive(&jwks_cached, Some(&m.bad));
            let t = interleaved(&[&plain, &cached], rounds);
            target(
                format!("{name} bad signature through the cache / without it"),
                t[1] / t[0],
                1.05,
            );
            if alg == Algorithm::HS256 {
                let b = || drive(&bare, None);
                let b07 = || drive(&bare07, None);
                let ts = || drive(&tower_scope, Some(&m.token));
                let ja = || drive(&jwt_authorizer, Some(&m.token));
                let t = interleaved(&[&b, &b07, &ts, &ja], rounds);
                target(
                    format!(
                        "HS256 valid: tower-scope's cost over bare / jwt-authorizer's ({:.0} − {:.0} \
                         ns / {:.0} − {:.0} ns)",
                        t[2], t[0], t[3], t[1]
                    ),
                    (t[2] - t[0]) / (t[3] - t[1]),
                    0.45,
                );
            }
            if alg == Algorithm::RS256 {
                let b = || drive(&bare, None);
                let hit = || drive(&jwks_cached, Some(&m.token));
                let t = interleaved(&[&b, &hit], rounds);
                target(
                    format!(
                        "RS256 JWKS token-cache hit: cost over bare / bare (bare {:.0} ns)",
                        t[0]
                    ),
                    (t[1] - t[0]) / t[0],
                    0.7,
                );
            }
        }
    }

    c.final_summary();
    if !targets_only() {
        println!("\n{}", report::render(&dir));
    }
    if criterion_filter_matches_all() {
        println!("{targets}");
    }
}
