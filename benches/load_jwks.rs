//! A bounded load run over real loopback HTTP/1.1: the bare service, then `BearerAuthLayer`
//! with a `JwksAuthenticator` with and without its verified-token cache, in the same process
//! and the same run, so the ratios mean something on a noisy machine.
//!
//! `scripts/load.sh` (or `cargo bench --bench load_jwks --features test-util,aws-lc -- [secs]
//! [connections] [users]`). Every phase stops after `secs` seconds (default 5); traffic goes to
//! `127.0.0.1` only. Each connection sends requests back to back, cycling through `users`
//! distinct RS256 tokens minted by the mock issuer; any answer other than 200 fails the run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, service_fn};
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

type Svc = BoxCloneSyncService<Request<Incoming>, Response<Full<Bytes>>, Infallible>;

async fn handler(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// Serves `svc` on a fresh loopback port until the process ends.
async fn serve(svc: Svc) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            // Small responses must not wait for delayed ACKs (Nagle).
            let _ = stream.set_nodelay(true);
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Outcome {
    requests: u64,
    failures: u64,
    latencies_us: Vec<u32>,
}

/// When a client stops.
#[derive(Clone, Copy)]
enum Limit {
    Until(Instant),
    Requests(usize),
}

/// One keep-alive connection sending requests back to back until its limit.
async fn client(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    offset: usize,
    limit: Limit,
) -> Outcome {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Outcome {
        requests: 0,
        failures: 0,
        latencies_us: Vec::with_capacity(1 << 16),
    };
    let mut i = offset;
    loop {
        let more = match limit {
            Limit::Until(deadline) => Instant::now() < deadline,
            Limit::Requests(n) => out.requests < n as u64,
        };
        if !more {
            break;
        }
        let req = Request::get("/api/memory/threads")
            .header(AUTHORIZATION, &tokens[i % tokens.len()])
            .body(Empty::<Bytes>::new())
            .unwrap();
        i += 1;
        let start = Instant::now();
        // The connection takes the next request only once it has finished the last one.
        let ok = match async {
            sender.ready().await?;
            sender.send_request(req).await
        }
        .await
        {
            Ok(res) => {
                let status = res.status();
                res.into_body().collect().await.is_ok() && status == StatusCode::OK
            }
            Err(_) => false,
        };
        let micros = start.elapsed().as_micros();
        out.latencies_us
            .push(u32::try_from(micros).unwrap_or(u32::MAX));
        out.requests += 1;
        if !ok {
            out.failures += 1;
            break;
        }
    }
    out
}

struct Phase {
    name: &'static str,
    rps: f64,
    p50_us: u32,
    p99_us: u32,
    failures: u64,
}

async fn phase(
    name: &'static str,
    svc: Svc,
    tokens: &Arc<Vec<String>>,
    secs: u64,
    connections: usize,
) -> Phase {
    let addr = serve(svc).await;
    // Warm-up: every token once, in turn, so the cached phase measures hits only.
    let warm = client(addr, Arc::clone(tokens), 0, Limit::Requests(tokens.len())).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            tokio::spawn(client(
                addr,
                Arc::clone(tokens),
                c * 7,
                Limit::Until(deadline),
            ))
        })
        .collect();
    let mut requests = 0;
    let mut failures = warm.failures;
    let mut latencies = Vec::new();
    for task in tasks {
        let out = task.await.unwrap();
        requests += out.requests;
        failures += out.failures;
        latencies.extend(out.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pick = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(index).copied().unwrap_or(0)
    };
    Phase {
        name,
        rps: requests as f64 / elapsed,
        p50_us: pick(0.50),
        p99_us: pick(0.99),
        failures,
    }
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs = arg(0, 5).clamp(1, 60);
    let connections = usize::try_from(arg(1, 16).clamp(1, 256)).unwrap_or(16);
    let users = usize::try_from(arg(2, 200).clamp(1, 100_000)).unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let idp = MockIssuer::start().await.unwrap();
        let tokens: Arc<Vec<String>> = Arc::new(
            (0..users)
                .map(|u| {
                    let token =
                        idp.mint_with(Algorithm::RS256, json!({ "sub": format!("user-{u}") }));
                    format!("Bearer {token}")
                })
                .collect(),
        );
        let authenticator = |cache: bool| {
            let builder = JwksAuthenticator::<Claims>::builder()
                .issuer(idp.jwks())
                .algorithms([Algorithm::RS256]);
            let builder = if cache {
                builder.token_cache(100_000)
            } else {
                builder
            };
            builder.build()
        };
        let cached = authenticator(true).await.unwrap();
        let uncached = authenticator(false).await.unwrap();
        let bare: Svc = BoxCloneSyncService::new(service_fn(handler));
        let with = |auth: JwksAuthenticator<Claims>| -> Svc {
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(BearerAuthLayer::new(auth))
                    .service(service_fn(handler)),
            )
        };
        println!(
            "load: {secs} s per phase, {connections} connections, {users} RS256 tokens, \
             2 runtime workers, client and server in one process on 127.0.0.1"
        );
        let phases = [
            phase("bare service", bare, &tokens, secs, connections).await,
            phase(
                "BearerAuth(JWKS, cache)",
                with(cached.clone()),
                &tokens,
                secs,
                connections,
            )
            .await,
            phase(
                "BearerAuth(JWKS, no cache)",
                with(uncached),
                &tokens,
                secs,
                connections,
            )
            .await,
        ];
        let base = phases[0].rps;
        println!("| stack | requests/s | vs bare | p50 | p99 |");
        println!("|---|---|---|---|---|");
        for p in &phases {
            println!(
                "| {} | {:.0} | {:.2} | {} µs | {} µs |",
                p.name,
                p.rps,
                p.rps / base,
                p.p50_us,
                p.p99_us
            );
        }
        let stats = cached.stats();
        println!(
            "cache: {} hits, {} misses; JWKS fetches: {}",
            stats.cache_hit,
            stats.cache_miss,
            idp.jwks_fetches()
        );
        let failures: u64 = phases.iter().map(|p| p.failures).sum();
        assert_eq!(failures, 0, "every request must be answered 200");
        assert_eq!(
            stats.cache_miss as usize, users,
            "one miss per token, then hits only"
        );
    });
}
