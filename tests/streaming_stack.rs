//! Server-sent events through the whole stack — JSON errors, log, CORS, auth, scope and guard
//! with Mastra's agent presets — over real HTTP: every event reaches the client as the handler
//! produces it, never buffered, and `LogLayer` logs the request once, when the stream ends,
//! with its size, its duration and whether the client went away mid-stream.
//!
//! The handler sends its first event, then waits for a signal that the test gives only after
//! it has read that event; the last event cannot exist before the first has been received.
#![cfg(all(feature = "axum", feature = "guard", feature = "cors", feature = "log"))]

use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tower::ServiceBuilder;
use tower_scope::guard::MemoryThreadStore;
use tower_scope::{
    BearerAuthLayer, JsonErrorLayer, LogLayer, ResourceId, ResourceScopeLayer, StaticTokens,
    ThreadId, mastra,
};

const ALICE: &str = "alice-stream-key-0123456789abcdef";
const BOB: &str = "bob-stream-key-0123456789abcdef01";

/// What the handler shares with the test: the signal to finish, and whether it has produced
/// its last event yet.
#[derive(Clone, Default)]
struct Gate {
    release: Arc<Notify>,
    produced_last: Arc<AtomicBool>,
}

/// The first event names what the handler was given (thread, resource, body as received);
/// the last comes only after the test's signal.
async fn stream(
    State(gate): State<Gate>,
    thread: Option<Extension<ThreadId>>,
    Extension(resource): Extension<ResourceId>,
    body: Bytes,
) -> Response {
    let first = json!({
        "type": "seen",
        "thread": thread.map(|t| t.0.to_string()),
        "resource": resource.as_str(),
        "body": String::from_utf8_lossy(&body),
    });
    let frames = futures_util::stream::unfold(0u8, move |step| {
        let gate = gate.clone();
        let first = first.clone();
        async move {
            let frame = match step {
                0 => format!("data: {first}\n\n"),
                1 => {
                    gate.release.notified().await;
                    gate.produced_last.store(true, Ordering::SeqCst);
                    format!(
                        "data: {}\n\n",
                        json!({"type": "finish", "pad": "x".repeat(4000)})
                    )
                }
                2 => "data: [DONE]\n\n".to_owned(),
                _ => return None,
            };
            Some((Ok::<_, Infallible>(Bytes::from(frame)), step + 1))
        }
    });
    let mut res = Body::from_stream(frames).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    res
}

/// The memory server's order of layers, with Mastra's agent presets, in front of `stream`.
async fn serve(gate: Gate, store: MemoryThreadStore) -> String {
    let routes = Router::new()
        .route("/api/agents/{agentId}/stream", post(stream))
        .with_state(gate);
    let stack = ServiceBuilder::new()
        .layer(JsonErrorLayer::new())
        .layer(LogLayer::new().user(|u: &String| u.clone()))
        .layer(mastra::cors())
        .layer(BearerAuthLayer::new(
            StaticTokens::new()
                .token(ALICE, "alice".to_owned())
                .token(BOB, "bob".to_owned()),
        ))
        .layer(
            ResourceScopeLayer::new(|u: &String| Some(u.clone()))
                .body_rules(mastra::agent_body_rules("/api").unwrap()),
        )
        .layer(
            mastra::memory_guard(store, "/api")
                .unwrap()
                .routes(mastra::agent_guard_routes("/api").unwrap()),
        )
        .service(routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback_service(stack);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Every log line the process writes, for the tests to search (one subscriber per process).
fn log_lines() -> &'static Arc<Mutex<Vec<u8>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        lines
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The request log lines naming `thread`, waiting up to `wait` for at least one.
async fn logged_within(thread: &str, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    loop {
        let text = String::from_utf8_lossy(&log_lines().lock().unwrap()).into_owned();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("request") && l.contains(thread))
            .map(str::to_owned)
            .collect();
        if !lines.is_empty() || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn logged(thread: &str) -> Vec<String> {
    logged_within(thread, Duration::from_secs(2)).await
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    Some(rest.split(' ').next().unwrap_or(rest).trim_matches('"'))
}

async fn post_stream(base: &str, token: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/agents/memAgent/stream"))
        .bearer_auth(token)
        .header("origin", "https://app.example")
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Reads from `res` until one whole event (`\n\n`) has arrived.
async fn first_event(res: &mut reqwest::Response) -> (Value, usize) {
    let mut buf = Vec::new();
    while !buf.windows(2).any(|w| w == b"\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk())
            .await
            .expect("the first event arrives while the handler still waits")
            .unwrap()
            .expect("the stream is not over");
        buf.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(buf.clone()).unwrap();
    let event = text.split("\n\n").next().unwrap();
    let json = serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap();
    (json, buf.len())
}

#[tokio::test]
async fn events_pass_every_layer_as_produced_and_the_log_line_comes_at_the_end() {
    log_lines();
    let gate = Gate::default();
    let base = serve(gate.clone(), MemoryThreadStore::new()).await;
    let thread = "stream-thread-complete";
    let started = Instant::now();
    let mut res = post_stream(
        &base,
        ALICE,
        json!({"messages": "hi", "memory": {"thread": {"id": thread}, "resource": "bob"}}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert!(res.headers().contains_key("x-request-id"));

    let (first, _) = first_event(&mut res).await;
    assert!(
        !gate.produced_last.load(Ordering::SeqCst),
        "the first event was read before the handler produced the last"
    );
    // What the handler was given: the guard's thread, the caller's resource, and the body with
    // `memory.resource` forced to the caller's (and the rest as sent).
    assert_eq!(first["thread"], thread);
    assert_eq!(first["resource"], "alice");
    let body: Value = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["memory"]["resource"], "alice");
    assert_eq!(body["memory"]["thread"]["id"], thread);
    assert!(
        logged_within(thread, Duration::from_millis(100))
            .await
            .is_empty(),
        "nothing is logged while the stream is open"
    );

    tokio::time::sleep(Duration::from_millis(150)).await;
    gate.release.notify_one();
    let rest = res.bytes().await.unwrap();
    let rest = String::from_utf8(rest.to_vec()).unwrap();
    assert!(gate.produced_last.load(Ordering::SeqCst));
    assert!(rest.contains(r#""type":"finish""#));
    assert!(rest.ends_with("data: [DONE]\n\n"));

    let lines = logged(thread).await;
    assert_eq!(lines.len(), 1, "one event per request: {lines:?}");
    let line = &lines[0];
    assert_eq!(field(line, "status"), Some("200"));
    assert_eq!(field(line, "user"), Some("alice"));
    assert_eq!(field(line, "thread_id"), Some(thread));
    assert_eq!(field(line, "aborted"), None);
    let size: usize = field(line, "response_size").unwrap().parse().unwrap();
    assert!(size > 4000, "the whole stream is counted: {size}");
    // The latency runs to the stream's end, past the 150 ms the test waited before releasing.
    let latency: u128 = field(line, "latency_us").unwrap().parse().unwrap();
    assert!(latency >= 150_000, "latency {latency} us");
    assert!(latency <= started.elapsed().as_micros());
}

#[tokio::test]
async fn a_client_leaving_mid_stream_is_logged_once_as_aborted_with_the_bytes_sent() {
    log_lines();
    let gate = Gate::default();
    let base = serve(gate.clone(), MemoryThreadStore::new()).await;
    let thread = "stream-thread-abandoned";
    let mut res = post_stream(
        &base,
        ALICE,
        json!({"messages": "hi", "memory": {"thread": thread}}),
    )
    .await;
    let (_, received) = first_event(&mut res).await;
    drop(res);
    let lines = logged(thread).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(field(line, "aborted"), Some("during_body"));
    assert_eq!(field(line, "status"), Some("200"));
    let size: usize = field(line, "response_size").unwrap().parse().unwrap();
    assert_eq!(size, received, "the bytes sent before the client left");
    assert!(!gate.produced_last.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_refused_stream_is_a_json_error_with_cors_headers() {
    let store = MemoryThreadStore::new();
    store.insert_thread(
        ThreadId::new("alices").unwrap(),
        Some(ResourceId::new("alice").unwrap()),
    );
    let base = serve(Gate::default(), store).await;
    let res = post_stream(
        &base,
        BOB,
        json!({"messages": "hi", "memory": {"thread": "alices", "resource": "alice"}}),
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "Access denied: thread belongs to a different resource"})
    );
}
