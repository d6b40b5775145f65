//! A soak: steady loopback load on the memory server with a JWKS authenticator and a token
//! cache while the issuer rotates its signing key, measuring the server's resident memory.
//!
//! Not part of `cargo test` or CI (it runs for minutes): `scripts/soak.sh` runs it. The driver
//! (`soak_memory_stays_flat`) starts the mock issuer, then this same test binary again as the
//! server process (`soak_server_process`, which does nothing unless `TOWER_SCOPE_SOAK_CHILD` is
//! set), so `/proc/<pid>/status` measures the server alone: the stack, the SQLite store, the
//! JWKS client and the token cache, without the load generator.
//!
//! Settings (environment): `SOAK_SECS` (600), `SOAK_WARMUP_SECS` (60), `SOAK_ROTATE_SECS` (60),
//! `SOAK_WORKERS` (8), `SOAK_RATE` (requests per second in all, 200: steady, not flat out, so
//! the machine stays usable and the rate does not drift with the CPU). It asserts that VmRSS at the end is less than 10 % above VmRSS after
//! warm-up, and that every answer was the expected one.
#![cfg(all(
    feature = "test-util",
    feature = "axum",
    feature = "sqlite",
    feature = "postgres",
    feature = "aws-lc",
    feature = "cors",
    feature = "log",
    feature = "authz"
))]

#[path = "../examples/memory_server/app.rs"]
mod app;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::json;
use tower_scope::guard::SqlThreadStore;
use tower_scope::jwks::{Issuer, JwksAuthenticator, mock::MockIssuer};

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
/// A hard cap on requests, so the soak is bounded in count as well as in time.
const MAX_REQUESTS: u64 = 20_000_000;

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// The server half: the memory server's stack behind a JWKS authenticator with a token cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the server process of the soak; scripts/soak.sh starts it through the driver"]
async fn soak_server_process() {
    let Ok(issuer) = std::env::var("TOWER_SCOPE_SOAK_CHILD") else {
        return;
    };
    let jwks_url = std::env::var("TOWER_SCOPE_SOAK_JWKS").unwrap();
    let db = std::env::var("TOWER_SCOPE_SOAK_DB").unwrap();
    let lifetime = Duration::from_secs(env_secs("TOWER_SCOPE_SOAK_LIFETIME", 900));
    let auth = JwksAuthenticator::<app::Claims>::builder()
        .issuer(Issuer::jwks(issuer, jwks_url))
        .token_cache(1024)
        // Short bounds so the rotated key is picked up by refreshes as well as by unknown kids.
        .refresh_bounds(Duration::from_secs(5), Duration::from_secs(30))
        .refresh_interval(Duration::from_secs(20))
        .unknown_kid_cooldown(Duration::from_secs(1))
        .build()
        .await
        .expect("JWKS authenticator");
    let store = SqlThreadStore::connect(&format!("sqlite://{db}?mode=rwc"))
        .await
        .unwrap();
    store.create_schema().await.unwrap();
    let router = app::app_with_auth(store, auth, &[]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("SOAK_ADDR={}", listener.local_addr().unwrap());
    // Bounded even if the driver dies without killing this process.
    let _ = tokio::time::timeout(lifetime, axum::serve(listener, router).into_future()).await;
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    unexpected: AtomicU64,
    /// The first few unexpected answers, for the report.
    samples: std::sync::Mutex<Vec<String>>,
}

/// One user's loop: create a thread, save a message, read it back, list, delete (so the
/// database stays the same size), refreshing the token whenever the driver mints new ones.
async fn worker(
    base: String,
    id: usize,
    user: usize,
    tokens: Arc<RwLock<Vec<String>>>,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    cycle: Duration,
) {
    let client = Client::new();
    let mut n = 0u64;
    let mut pace = tokio::time::interval(cycle);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        pace.tick().await;
        n += 1;
        let token = tokens.read().unwrap()[user].clone();
        let thread = format!("soak-{}-w{id}-{n}", USERS[user]);
        let steps = [
            (
                reqwest::Method::POST,
                "/api/memory/threads".to_owned(),
                Some(json!({"threadId": thread, "title": "soak"})),
            ),
            (
                reqwest::Method::POST,
                "/api/memory/save-messages".to_owned(),
                Some(
                    json!({"messages": [{"id": format!("{thread}-m"), "threadId": thread,
                    "resourceId": USERS[user], "role": "user", "content": "hello",
                    "type": "text", "createdAt": app::now_iso()}]}),
                ),
            ),
            (
                reqwest::Method::GET,
                format!("/api/memory/threads/{thread}/messages"),
                None,
            ),
            (reqwest::Method::GET, "/api/memory/threads".to_owned(), None),
            (
                reqwest::Method::DELETE,
                format!("/api/memory/threads/{thread}"),
                None,
            ),
        ];
        for (method, path, body) in steps {
            let mut req = client
                .request(method, format!("{base}{path}"))
                .bearer_auth(&token);
            if let Some(body) = body {
                req = req.json(&body);
            }
            let outcome = match req.send().await {
                Ok(res) => {
                    let status = res.status();
                    let body = res.text().await.unwrap_or_default();
                    (status != StatusCode::OK).then(|| format!("{status} {path}: {body}"))
                }
                Err(err) => Some(format!("{path}: {err}")),
            };
            counts.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(what) = outcome {
                counts.unexpected.fetch_add(1, Ordering::Relaxed);
                let mut samples = counts.samples.lock().unwrap();
                if samples.len() < 10 {
                    samples.push(what);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 10-minute soak; run it with scripts/soak.sh"]
async fn soak_memory_stays_flat() {
    let secs = env_secs("SOAK_SECS", 600);
    let warmup = env_secs("SOAK_WARMUP_SECS", 60);
    let rotate = env_secs("SOAK_ROTATE_SECS", 60);
    let workers = env_secs("SOAK_WORKERS", 8).max(1) as usize;
    let rate = env_secs("SOAK_RATE", 200).max(1);
    // Each cycle is five requests; the workers share the rate.
    let cycle = Duration::from_secs_f64(5.0 * workers as f64 / rate as f64);
    assert!(warmup < secs, "SOAK_WARMUP_SECS must be below SOAK_SECS");

    let idp = MockIssuer::start().await.unwrap();
    let db = std::env::temp_dir().join(format!("tower-scope-soak-{}.db", app::random_id(8)));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "soak_server_process", "--nocapture"])
        .env("TOWER_SCOPE_SOAK_CHILD", idp.issuer())
        .env("TOWER_SCOPE_SOAK_JWKS", idp.jwks_url())
        .env("TOWER_SCOPE_SOAK_DB", &db)
        .env("TOWER_SCOPE_SOAK_LIFETIME", (secs + 120).to_string())
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let server = Server(child);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("SOAK_ADDR=") {
                let _ = addr_tx.send(addr.to_owned());
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server process prints its address");
    let base = format!("http://{addr}");

    let mint_all = |idp: &MockIssuer| -> Vec<String> {
        USERS.iter().map(|u| idp.mint(json!({"sub": u}))).collect()
    };
    let tokens = Arc::new(RwLock::new(mint_all(&idp)));
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut tasks = Vec::new();
    for i in 0..workers {
        tasks.push(tokio::spawn(worker(
            base.clone(),
            i,
            i % USERS.len(),
            Arc::clone(&tokens),
            Arc::clone(&stop),
            Arc::clone(&counts),
            cycle,
        )));
    }

    let start = Instant::now();
    let mut warm_rss = None;
    let mut peak = 0;
    let mut rotations = 0;
    let mut last_rotation = Instant::now();
    let mut last_mint = Instant::now();
    println!(
        "soak: {secs} s, warm-up {warmup} s, rotation every {rotate} s, {workers} workers, \
         {rate} requests/s"
    );
    while start.elapsed() < Duration::from_secs(secs)
        && counts.requests.load(Ordering::Relaxed) < MAX_REQUESTS
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if last_rotation.elapsed() >= Duration::from_secs(rotate) {
            // As real issuers do, the old key stays published for one more period, so tokens
            // already handed out keep verifying while clients switch to the new key.
            let old = idp.jwk(&idp.current_kid()).unwrap();
            idp.rotate();
            idp.publish_only(vec![old, idp.jwk(&idp.current_kid()).unwrap()]);
            rotations += 1;
            last_rotation = Instant::now();
            *tokens.write().unwrap() = mint_all(&idp);
            last_mint = Instant::now();
        } else if last_mint.elapsed() >= Duration::from_secs(5) {
            // New tokens every few seconds: the token cache keeps inserting and evicting.
            *tokens.write().unwrap() = mint_all(&idp);
            last_mint = Instant::now();
        }
        let elapsed = start.elapsed().as_secs();
        let rss = rss_kib(pid);
        peak = peak.max(rss);
        if warm_rss.is_none() && elapsed >= warmup {
            warm_rss = Some(rss);
        }
        if elapsed.is_multiple_of(30) {
            println!(
                "soak: t={elapsed:>4}s rss={rss} KiB requests={} unexpected={} jwks_fetches={}",
                counts.requests.load(Ordering::Relaxed),
                counts.unexpected.load(Ordering::Relaxed),
                idp.jwks_fetches()
            );
        }
    }
    let end_rss = rss_kib(pid);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    drop(server);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }

    let warm = warm_rss.expect("warm-up ended before the soak did");
    let requests = counts.requests.load(Ordering::Relaxed);
    let unexpected = counts.unexpected.load(Ordering::Relaxed);
    let growth = (end_rss as f64 - warm as f64) / warm as f64 * 100.0;
    println!(
        "soak result: {:.0} s, {requests} requests ({:.0}/s), {unexpected} unexpected, \
         {rotations} key rotations, {} JWKS fetches; VmRSS after warm-up {warm} KiB, \
         peak {peak} KiB, end {end_rss} KiB, growth {growth:+.1} %",
        start.elapsed().as_secs_f64(),
        requests as f64 / start.elapsed().as_secs_f64(),
        idp.jwks_fetches()
    );
    assert_eq!(
        unexpected,
        0,
        "every soak request answers 200; first ones: {:#?}",
        counts.samples.lock().unwrap()
    );
    assert!(
        rotations > 0 || secs < rotate,
        "the key rotated during the run"
    );
    assert!(
        growth < 10.0,
        "resident memory grew {growth:.1} % after warm-up"
    );
}
