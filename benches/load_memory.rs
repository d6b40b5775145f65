//! What the five layers cost in the full stack under load (issue 17, item 3): the memory server's
//! own handlers over real loopback HTTP/1.1 keep-alive, with the whole stack (JSON errors, log,
//! CORS, bearer auth, authorization, scope, guard) and with no layer at all, on one SQLite file,
//! in the same process, runs alternated.
//!
//! `scripts/load-memory.sh` (or `cargo bench --bench load_memory --features
//! axum,sqlite,postgres,cors,log,authz -- [secs] [connections] [rounds]`). Every phase stops
//! after `secs` seconds (default 2); traffic goes to `127.0.0.1` only; any unexpected status fails
//! the run. `LOAD_LAYERS=1` also measures the handlers behind the guard, bearer auth and the log
//! layer alone, and the stack without the server's outer router; `LOAD_WORKLOADS=read,list`
//! picks workloads. Without layers, a trusted test-only layer inserts the caller's `ResourceId` from a
//! header, so the handlers run exactly as behind the stack (their reads are owner-filtered).
#![allow(dead_code)]

#[path = "../examples/memory_server/app.rs"]
mod app;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower_scope::ResourceId;
use tower_scope::guard::SqlThreadStore;

const SECRET: &str = "load-memory-secret-0123456789abcdef-xyz";
const USERS: usize = 64;
/// The header the layerless server trusts for the caller (never do this in a real server).
const TRUSTED: &str = "x-load-test-resource";

fn token(sub: &str) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = app::Claims::user(sub, exp);
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let svc = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// One request of a workload: path, headers, the status it must get.
#[derive(Clone)]
struct Call {
    path: String,
    headers: Vec<(&'static str, String)>,
    status: StatusCode,
}

struct Outcome {
    requests: u64,
    unexpected: Option<String>,
    latencies_us: Vec<u32>,
}

async fn client(addr: SocketAddr, calls: Arc<Vec<Call>>, offset: usize, until: Instant) -> Outcome {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Outcome {
        requests: 0,
        unexpected: None,
        latencies_us: Vec::with_capacity(1 << 16),
    };
    let mut i = offset;
    while Instant::now() < until {
        let call = &calls[i % calls.len()];
        i += 1;
        let mut req = Request::get(&call.path);
        for (name, value) in &call.headers {
            req = req.header(*name, value);
        }
        let req = req.body(Empty::<Bytes>::new()).unwrap();
        let start = Instant::now();
        let status = match async {
            sender.ready().await?;
            sender.send_request(req).await
        }
        .await
        {
            Ok(res) => {
                let status = res.status();
                res.into_body().collect().await.map(|_| status).ok()
            }
            Err(_) => None,
        };
        out.latencies_us
            .push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX));
        out.requests += 1;
        if status != Some(call.status) {
            out.unexpected = Some(format!(
                "{} answered {status:?}, expected {}",
                call.path, call.status
            ));
            break;
        }
    }
    out
}

struct Measured {
    rps: f64,
    p50_us: u32,
    p99_us: u32,
}

async fn measure(
    addr: SocketAddr,
    calls: &Arc<Vec<Call>>,
    secs: u64,
    connections: usize,
) -> Measured {
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..connections)
        .map(|c| tokio::spawn(client(addr, Arc::clone(calls), c * 7, until)))
        .collect();
    let mut requests = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let out = task.await.unwrap();
        if let Some(problem) = out.unexpected {
            panic!("load run stopped: {problem}");
        }
        requests += out.requests;
        latencies.extend(out.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pick = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(index).copied().unwrap_or(0)
    };
    Measured {
        rps: requests as f64 / elapsed,
        p50_us: pick(0.50),
        p99_us: pick(0.99),
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

/// The same handlers with no layer: a trusted header names the caller.
fn layerless(store: SqlThreadStore) -> axum::Router {
    trusted_caller(app::handlers(store))
}

/// `router` with the caller's `ResourceId` taken from the trusted header.
fn trusted_caller(router: axum::Router) -> axum::Router {
    router.layer(tower::util::MapRequestLayer::new(
        |mut req: Request<axum::body::Body>| {
            let id = req
                .headers()
                .get(TRUSTED)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| ResourceId::new(v).ok());
            if let Some(id) = id {
                req.extensions_mut().insert(id);
            }
            req
        },
    ))
}

/// The same handlers behind the thread guard alone (the trusted header names the caller): what
/// the guard's share of the stack's cost is.
fn guard_only(store: SqlThreadStore) -> axum::Router {
    let guard = tower_scope::mastra::memory_guard(store.clone(), "/api")
        .unwrap()
        .prefetch_thread_records();
    trusted_caller(app::handlers(store).layer(guard))
}

/// The same handlers behind bearer auth alone (HS256, as the memory server), the caller's
/// `ResourceId` taken from the verified `sub`: what verifying a token costs under load.
fn auth_only(store: SqlThreadStore) -> axum::Router {
    use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
    let auth = JwtAuthenticator::<app::Claims>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET.as_bytes()))
        .build()
        .unwrap();
    app::handlers(store)
        .layer(tower::util::MapRequestLayer::new(
            |mut req: Request<axum::body::Body>| {
                let id = req
                    .extensions()
                    .get::<tower_scope::Authenticated<app::Claims>>()
                    .and_then(|user| ResourceId::new(&user.sub).ok());
                if let Some(id) = id {
                    req.extensions_mut().insert(id);
                }
                req
            },
        ))
        .layer(tower_scope::BearerAuthLayer::new(auth))
}

/// The same handlers behind the log layer alone (the trusted header names the caller).
fn log_only(store: SqlThreadStore) -> axum::Router {
    trusted_caller(app::handlers(store).layer(tower_scope::LogLayer::new()))
}

fn main() {
    let secs = arg(0, 2).clamp(1, 60);
    let connections = usize::try_from(arg(1, 16).clamp(1, 256)).unwrap_or(16);
    let rounds = usize::try_from(arg(2, 8).clamp(1, 20)).unwrap_or(8);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = std::env::temp_dir().join(format!("tower-scope-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("load.db").display());
        let store = SqlThreadStore::connect(&url).await.unwrap();
        store.create_schema().await.unwrap();
        app::create_schema(&store).await.unwrap();
        let settings = app::Settings {
            jwt_secret: SECRET.to_owned(),
            issuer: None,
            audience: None,
            cors_origins: Vec::new(),
            dev_tokens: Vec::new(),
            public_url: None,
        };
        let layered = serve(app::app(store.clone(), &settings).unwrap()).await;
        let bare = serve(layerless(store.clone())).await;
        let guarded = serve(guard_only(store.clone())).await;
        let authed = serve(auth_only(store.clone())).await;
        let logged = serve(log_only(store.clone())).await;
        // The stack without the server's outer router (the page's routes, the metadata).
        let stacked = serve(
            app::app_with_auth(
                store.clone(),
                tower_scope::jwt::JwtAuthenticator::<app::Claims>::builder()
                    .key(tower_scope::jwt::JwtKey::hmac(
                        tower_scope::jwt::Algorithm::HS256,
                        SECRET.as_bytes(),
                    ))
                    .build()
                    .unwrap(),
                &[],
            )
            .unwrap(),
        )
        .await;

        // Each user owns one thread with a few messages, created through the whole stack.
        let http = reqwest::Client::new();
        let users: Vec<(String, String)> = (0..USERS)
            .map(|u| (format!("user-{u}"), format!("Bearer {}", token(&format!("user-{u}")))))
            .collect();
        for (sub, bearer) in &users {
            let created = http
                .post(format!("http://{layered}/api/memory/threads"))
                .header("authorization", bearer)
                .json(&serde_json::json!({"threadId": format!("t-{sub}"), "resourceId": sub, "title": "load"}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), StatusCode::OK);
            let messages: Vec<_> = (0..5)
                .map(|m| serde_json::json!({"id": format!("m-{sub}-{m}"), "threadId": format!("t-{sub}"),
                    "resourceId": sub, "role": "user", "content": format!("message {m}")}))
                .collect();
            let saved = http
                .post(format!("http://{layered}/api/memory/save-messages"))
                .header("authorization", bearer)
                .json(&serde_json::json!({"messages": messages}))
                .send()
                .await
                .unwrap();
            assert_eq!(saved.status(), StatusCode::OK);
        }

        // Three workloads; for the bare server the caller goes in the trusted header.
        // `token`: the caller goes in a bearer token (else in the trusted header); `guard`: a
        // thread guard answers another user's thread (403), else the owner-filtered handler (404).
        let workload = |token: bool, guard: bool, kind: &str| -> Arc<Vec<Call>> {
            Arc::new(
                users
                    .iter()
                    .enumerate()
                    .map(|(i, (sub, bearer))| {
                        let (path, status) = match kind {
                            "read" => (format!("/api/memory/threads/t-{sub}"), StatusCode::OK),
                            "list" => ("/api/memory/threads".to_owned(), StatusCode::OK),
                            // Another user's thread: the guard's 403; without layers the
                            // owner-filtered handler's 404.
                            _ => {
                                let other = &users[(i + 1) % users.len()].0;
                                let status = if guard { StatusCode::FORBIDDEN } else { StatusCode::NOT_FOUND };
                                (format!("/api/memory/threads/t-{other}"), status)
                            }
                        };
                        let headers = if token {
                            vec![("authorization", bearer.clone())]
                        } else {
                            vec![(TRUSTED, sub.clone())]
                        };
                        Call { path, headers, status }
                    })
                    .collect(),
            )
        };
        println!(
            "load_memory: {secs} s per phase, {connections} connections, {USERS} users, {rounds} \
             alternated rounds, SQLite, client and server in one process (2 runtime workers) on 127.0.0.1"
        );
        println!(
            "{:<26} {:>12} {:>12} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "workload", "layers req/s", "none req/s", "ratio", "p50 lay", "p50 none", "p99 lay", "p99 none"
        );
        // `LOAD_WORKLOADS=read,list` runs only those; `LOAD_LAYERS=1` adds the handlers behind
        // the guard, bearer auth and the log layer alone (each one's share of the stack's cost).
        let wanted = std::env::var("LOAD_WORKLOADS").ok();
        let guard_too = std::env::var_os("LOAD_LAYERS").is_some();
        for kind in ["read", "list", "cross-user"] {
            if wanted.as_deref().is_some_and(|w| !w.split(',').any(|k| k == kind)) {
                continue;
            }
            // The servers compared, alternated in rotating order each round so drift in the
            // machine falls on all of them; `none` is the baseline.
            let mut servers = vec![
                ("layers", layered, workload(true, true, kind)),
                ("none", bare, workload(false, false, kind)),
            ];
            if guard_too && kind != "list" {
                servers.push(("guard only", guarded, workload(false, true, kind)));
            }
            if guard_too {
                servers.push(("stack alone", stacked, workload(true, true, kind)));
                servers.push(("auth only", authed, workload(true, false, kind)));
                servers.push(("log only", logged, workload(false, false, kind)));
            }
            for (_, addr, calls) in &servers {
                measure(*addr, calls, 1, connections).await; // warm-up
            }
            let mut results: Vec<Vec<Measured>> = servers.iter().map(|_| Vec::new()).collect();
            for round in 0..rounds {
                for k in 0..servers.len() {
                    let i = (round + k) % servers.len();
                    let (_, addr, calls) = &servers[i];
                    results[i].push(measure(*addr, calls, secs, connections).await);
                }
            }
            let mean = |m: &[Measured]| m.iter().map(|x| x.rps).sum::<f64>() / m.len() as f64;
            let median = |m: &[Measured], f: fn(&Measured) -> u32| {
                let mut v: Vec<u32> = m.iter().map(f).collect();
                v.sort_unstable();
                v[v.len() / 2]
            };
            let label = match kind {
                "read" => "own-thread read",
                "list" => "listing",
                _ => "cross-user (403 / 404)",
            };
            // The ratio of each round's two runs (made next to each other), then the median
            // over rounds: a drift in the machine's speed between rounds cancels out.
            let ratio = |m: &[Measured]| {
                let mut r: Vec<f64> = m.iter().zip(&results[1]).map(|(a, b)| a.rps / b.rps).collect();
                r.sort_by(f64::total_cmp);
                r[r.len() / 2]
            };
            let without = &results[1];
            // The whole stack's line first, then each extra server's, indented.
            for (i, (name, _, _)) in servers.iter().enumerate().filter(|(i, _)| *i != 1) {
                let m = &results[i];
                let row = if i == 0 { label.to_owned() } else { format!("  {label}, {name}") };
                println!(
                    "{row:<26} {:>12.0} {:>12.0} {:>7.2} {:>8}µs {:>8}µs {:>8}µs {:>8}µs",
                    mean(m),
                    mean(without),
                    ratio(m),
                    median(m, |m| m.p50_us),
                    median(without, |m| m.p50_us),
                    median(m, |m| m.p99_us),
                    median(without, |m| m.p99_us),
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
