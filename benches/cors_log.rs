//! `CorsLayer` and `LogLayer` overhead, against the bare service and tower-http's `CorsLayer`
//! and `TraceLayer` doing the same work, in the same run.
//!
//! `cargo bench --features cors,log --bench cors_log`. Every future here is ready on the first
//! poll, so each iteration drives exactly what hyper-util does (clone, `oneshot`) without a
//! runtime.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_scope::{CorsLayer, LogLayer};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const APP: &str = "https://app.example.com";

async fn handler(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

fn actual() -> Request<String> {
    Request::get("/api/memory/threads?page=2")
        .header(header::ORIGIN, APP)
        .header(header::AUTHORIZATION, "Bearer k-0123456789abcdef")
        .body(String::new())
        .unwrap()
}

fn preflight() -> Request<String> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/memory/threads")
        .header(header::ORIGIN, APP)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
        .body(String::new())
        .unwrap()
}

fn drive<S, B>(svc: &S, req: Request<String>) -> u16
where
    S: Service<Request<String>, Response = Response<B>, Error = Infallible> + Clone,
{
    let res = svc
        .clone()
        .oneshot(req)
        .now_or_never()
        .expect("ready on first poll")
        .unwrap();
    res.status().as_u16()
}

/// Enabled for everything, records nothing: the cost of producing the events.
struct Sink;

struct Discard;

impl Visit for Discard {
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl Subscriber for Sink {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        event.record(&mut Discard);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn cors(c: &mut Criterion) {
    let mut g = c.benchmark_group("cors");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);

    let bare = ServiceBuilder::new().service(service_fn(handler));
    let ours = ServiceBuilder::new()
        .layer(
            CorsLayer::new()
                .allow_origins([APP])
                .unwrap()
                .allow_methods(["GET", "POST"])
                .unwrap()
                .allow_headers(["authorization", "content-type"])
                .unwrap()
                .expose_headers(["x-request-id"])
                .unwrap()
                .max_age(Duration::from_secs(600))
                .allow_credentials(true)
                .unwrap(),
        )
        .service(service_fn(handler));
    let theirs = ServiceBuilder::new()
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin([HeaderValue::from_static(APP)])
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .expose_headers([header::HeaderName::from_static("x-request-id")])
                .max_age(Duration::from_secs(600))
                .allow_credentials(true),
        )
        .service(service_fn(handler));
    assert_eq!(drive(&ours, preflight()), 204);
    assert_eq!(drive(&theirs, preflight()), 200);

    g.bench_function("bare/actual", |b| {
        b.iter(|| black_box(drive(&bare, actual())))
    });
    g.bench_function("tower_scope/actual", |b| {
        b.iter(|| black_box(drive(&ours, actual())))
    });
    g.bench_function("tower_http/actual", |b| {
        b.iter(|| black_box(drive(&theirs, actual())))
    });
    g.bench_function("bare/options", |b| {
        b.iter(|| black_box(drive(&bare, preflight())))
    });
    g.bench_function("tower_scope/preflight", |b| {
        b.iter(|| black_box(drive(&ours, preflight())))
    });
    g.bench_function("tower_http/preflight", |b| {
        b.iter(|| black_box(drive(&theirs, preflight())))
    });
    g.finish();
}

fn log(c: &mut Criterion) {
    let bare = ServiceBuilder::new().service(service_fn(handler));
    let ours = ServiceBuilder::new()
        .layer(LogLayer::new().request_ids(false))
        .service(service_fn(handler));
    let ours_ids = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(service_fn(handler));
    let theirs = ServiceBuilder::new()
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .service(service_fn(handler));

    for (name, dispatch) in [
        (
            "log_noop_subscriber",
            tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()),
        ),
        ("log_sink_subscriber", tracing::Dispatch::new(Sink)),
    ] {
        let _guard = tracing::dispatcher::set_default(&dispatch);
        let mut g = c.benchmark_group(name);
        g.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(50);
        g.bench_function("bare", |b| b.iter(|| black_box(drive(&bare, actual()))));
        g.bench_function("tower_scope", |b| {
            b.iter(|| black_box(drive(&ours, actual())))
        });
        g.bench_function("tower_scope_with_request_ids", |b| {
            b.iter(|| black_box(drive(&ours_ids, actual())))
        });
        g.bench_function("tower_http_trace", |b| {
            b.iter(|| black_box(drive(&theirs, actual())))
        });
        g.finish();
    }
}

criterion_group!(benches, cors, log);
criterion_main!(benches);
