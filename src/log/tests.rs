use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use super::*;
use crate::{BearerAuthLayer, ConfigError, ResourceId, ResourceScopeLayer, StaticTokens, ThreadId};

const KEY: &str = "k-0123456789abcdef0123456789abcdef";

/// One recorded event: its level and fields as text.
#[derive(Debug, Clone)]
struct Recorded {
    level: Level,
    fields: BTreeMap<String, String>,
}

impl Recorded {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// A recording `tracing` subscriber, enabled up to `max`.
#[derive(Clone)]
struct Recorder {
    events: Arc<Mutex<Vec<Recorded>>>,
    max: Level,
}

impl Recorder {
    fn new(max: Level) -> Self {
        Self {
            events: Arc::default(),
            max,
        }
    }

    fn events(&self) -> Vec<Recorded> {
        self.events.lock().unwrap().clone()
    }

    fn only(&self) -> Recorded {
        let events = self.events();
        assert_eq!(events.len(), 1, "{events:#?}");
        events.into_iter().next().unwrap()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(Recorded {
            level: *event.metadata().level(),
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Runs `f` with `recorder` as the thread's subscriber; every future here is ready at once.
fn recorded<T>(recorder: &Recorder, f: impl FnOnce() -> T) -> T {
    tracing::subscriber::with_default(recorder.clone(), f)
}

type BoxBody = UnsyncBoxBody<Bytes, Infallible>;

/// Echo: `x-status` sets the status; the body is the request id the handler saw.
fn echo() -> impl Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone
{
    service_fn(|req: Request<String>| {
        let id = req
            .extensions()
            .get::<RequestId>()
            .map(|id| format!("{id}|{}", req.headers()["x-request-id"].to_str().unwrap()))
            .unwrap_or_default();
        let mut res = Response::new(id);
        if let Some(status) = req.headers().get("x-status") {
            *res.status_mut() = StatusCode::from_bytes(status.as_bytes()).unwrap();
        }
        async move { Ok::<_, Infallible>(res) }
    })
}

fn call<S, B>(svc: S, req: Request<String>) -> Response<LogBody<B>>
where
    S: Service<Request<String>, Response = Response<LogBody<B>>, Error = Infallible>,
{
    svc.oneshot(req).now_or_never().unwrap().unwrap()
}

fn body<B: http_body::Body<Error = Infallible>>(res: Response<B>) -> Bytes {
    res.into_body()
        .collect()
        .now_or_never()
        .unwrap()
        .unwrap()
        .to_bytes()
}

fn req(uri: &str) -> http::request::Builder {
    Request::get(uri)
}

#[test]
fn one_event_per_request_with_method_path_status_latency_and_size() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new().layer(LogLayer::new()).service(echo());
    let res = recorded(&rec, || {
        call(
            svc,
            Request::post("/api/threads?page=2&sort=asc")
                .body(String::new())
                .unwrap(),
        )
    });
    let e = rec.only();
    assert_eq!(e.level, Level::INFO);
    assert_eq!(e.get("message"), Some("request"));
    assert_eq!(e.get("method"), Some("POST"));
    assert_eq!(e.get("path"), Some("/api/threads"), "no query by default");
    assert_eq!(e.get("status"), Some("200"));
    assert!(e.get("latency_us").unwrap().parse::<u64>().is_ok());
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(e.get("request_id"), Some(id.as_str()));
    assert_eq!(
        e.get("response_size"),
        Some(body(res).len().to_string().as_str())
    );
    assert_eq!(e.get("grpc_status"), None);
    assert_eq!(e.get("user"), None);
}

/// The event for a GET of `uri` through a layer that logs the query and also redacts
/// `X-Tenant-Pin`.
fn query_logged(uri: &str) -> Recorded {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(
            LogLayer::new()
                .log_query(true)
                .redact_query_param("X-Tenant-Pin"),
        )
        .service(echo());
    recorded(&rec, || call(svc, req(uri).body(String::new()).unwrap()));
    rec.only()
}

#[test]
fn query_is_logged_only_when_enabled_and_secret_parameters_are_redacted() {
    let uri = "/cb?code=C0DE&state=s1&access_token=T0K3N&apiKey=AP1K3Y&api_key=AP1K3Y2\
               &password=PW&my_refresh_token=RT&x_tenant_pin=P1N&page=2&key=K3Y";
    let e = query_logged(uri);
    assert_eq!(
        e.get("path"),
        Some(
            "/cb?code=[REDACTED]&state=s1&access_token=[REDACTED]&apiKey=[REDACTED]\
             &api_key=[REDACTED]&password=[REDACTED]&my_refresh_token=[REDACTED]\
             &x_tenant_pin=[REDACTED]&page=2&key=[REDACTED]"
        )
    );
    let all = format!("{:?}", e.fields);
    for secret in ["C0DE", "T0K3N", "AP1K3Y", "PW", "RT", "P1N", "K3Y"] {
        assert!(
            !all.contains(&format!("={secret}")),
            "{secret} leaked: {all}"
        );
    }
}

#[test]
fn secret_parameter_names_match_in_any_case_with_dashes_or_underscores() {
    let uri = "/cb?Access-Token=A&API_KEY=B&x_PassWord=C&Client-Secret=D&SESSIONID=E\
               &X_TENANT-pin=F&My-Refresh-TOKEN=G&keys=1&api=2&tokn=3&pass-word=4&x-tenant=5";
    assert_eq!(
        query_logged(uri).get("path"),
        Some(
            "/cb?Access-Token=[REDACTED]&API_KEY=[REDACTED]&x_PassWord=[REDACTED]\
             &Client-Secret=[REDACTED]&SESSIONID=[REDACTED]&X_TENANT-pin=[REDACTED]\
             &My-Refresh-TOKEN=[REDACTED]&keys=1&api=2&tokn=3&pass-word=4&x-tenant=5"
        )
    );
}

#[test]
fn credential_headers_are_redacted_when_headers_are_logged() {
    let rec = Recorder::new(Level::TRACE);
    let layer = LogLayer::new()
        .log_request_headers(true)
        .redact_header("x-api-key")
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(echo());
    let r = req("/api")
        .header(header::AUTHORIZATION, "Bearer s3cr3t-t0ken")
        .header(header::COOKIE, "sid=c00kie")
        .header(header::PROXY_AUTHORIZATION, "Basic cHJveHk=")
        .header("x-api-key", "ap1-k3y")
        .header(header::ACCEPT, "application/json")
        .body(String::new())
        .unwrap();
    recorded(&rec, || call(svc, r));
    let e = rec.only();
    let headers = e.get("headers").unwrap();
    assert!(headers.contains("authorization: [REDACTED]"), "{headers}");
    assert!(headers.contains("cookie: [REDACTED]"), "{headers}");
    assert!(
        headers.contains("proxy-authorization: [REDACTED]"),
        "{headers}"
    );
    assert!(headers.contains("x-api-key: [REDACTED]"), "{headers}");
    assert!(headers.contains("accept: application/json"), "{headers}");
    let all = format!("{:?}", e.fields);
    for secret in ["s3cr3t", "c00kie", "cHJveHk", "ap1-k3y"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}

#[test]
fn valid_incoming_request_id_is_kept_and_visible_to_the_handler() {
    let svc = ServiceBuilder::new().layer(LogLayer::new()).service(echo());
    let res = call(
        svc,
        req("/")
            .header("x-request-id", "edge:4f2a-9_b.1")
            .body(String::new())
            .unwrap(),
    );
    assert_eq!(res.headers()["x-request-id"], "edge:4f2a-9_b.1");
    assert_eq!(body(res), "edge:4f2a-9_b.1|edge:4f2a-9_b.1");
}

#[test]
fn unsafe_or_oversized_request_ids_are_replaced_by_generated_ones() {
    let svc = ServiceBuilder::new().layer(LogLayer::new()).service(echo());
    let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
    let mut seen = Vec::new();
    for bad in ["", "a b", "<script>", "id\"quoted", long.as_str()] {
        let res = call(
            svc.clone(),
            req("/")
                .header("x-request-id", bad)
                .body(String::new())
                .unwrap(),
        );
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32, "{bad:?} -> {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(body(res), format!("{id}|{id}"), "handler sees the new id");
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "ids are unique");
}

#[test]
fn two_request_id_headers_are_replaced() {
    let svc = ServiceBuilder::new().layer(LogLayer::new()).service(echo());
    let res = call(
        svc,
        req("/")
            .header("x-request-id", "one")
            .header("x-request-id", "two")
            .body(String::new())
            .unwrap(),
    );
    assert_eq!(res.headers()["x-request-id"].len(), 32);
}

#[test]
fn request_ids_can_be_turned_off() {
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new().request_ids(false))
        .service(echo());
    let res = call(svc, req("/").body(String::new()).unwrap());
    assert!(!res.headers().contains_key("x-request-id"));
}

#[test]
fn excluded_paths_are_segment_aware() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new().exclude_path("/health").unwrap())
        .service(echo());
    recorded(&rec, || {
        for path in ["/health", "/health/deep", "/healthcheck", "/api/health"] {
            call(svc.clone(), req(path).body(String::new()).unwrap());
        }
    });
    let paths: Vec<_> = rec
        .events()
        .iter()
        .map(|e| e.get("path").unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["/healthcheck", "/api/health"]);
}

#[test]
fn server_errors_log_at_warn_and_client_errors_at_info_by_default() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new().layer(LogLayer::new()).service(echo());
    recorded(&rec, || {
        for status in ["500", "404", "204"] {
            call(
                svc.clone(),
                req("/")
                    .header("x-status", status)
                    .body(String::new())
                    .unwrap(),
            );
        }
    });
    let levels: Vec<_> = rec.events().iter().map(|e| e.level).collect();
    assert_eq!(levels, [Level::WARN, Level::INFO, Level::INFO]);
}

#[test]
fn levels_per_outcome_are_configurable() {
    let rec = Recorder::new(Level::TRACE);
    let layer = LogLayer::new()
        .server_error_level(Level::ERROR)
        .client_error_level(Level::WARN)
        .success_level(Level::DEBUG);
    let svc = ServiceBuilder::new().layer(layer).service(echo());
    recorded(&rec, || {
        for status in ["503", "401", "200"] {
            call(
                svc.clone(),
                req("/")
                    .header("x-status", status)
                    .body(String::new())
                    .unwrap(),
            );
        }
    });
    let levels: Vec<_> = rec.events().iter().map(|e| e.level).collect();
    assert_eq!(levels, [Level::ERROR, Level::WARN, Level::DEBUG]);
}

#[test]
fn nothing_is_logged_below_the_subscribers_level_but_ids_still_flow() {
    let rec = Recorder::new(Level::WARN);
    let svc = ServiceBuilder::new().layer(LogLayer::new()).service(echo());
    let res = recorded(&rec, || call(svc, req("/").body(String::new()).unwrap()));
    assert!(rec.events().is_empty());
    assert_eq!(res.headers()["x-request-id"].len(), 32);
}

#[test]
fn a_warn_only_subscriber_still_gets_server_errors() {
    let rec = Recorder::new(Level::WARN);
    let svc = ServiceBuilder::new().layer(LogLayer::new()).service(echo());
    recorded(&rec, || {
        for status in ["200", "502"] {
            call(
                svc.clone(),
                req("/")
                    .header("x-status", status)
                    .body(String::new())
                    .unwrap(),
            );
        }
    });
    let e = rec.only();
    assert_eq!(e.level, Level::WARN);
    assert_eq!(e.get("status"), Some("502"));
}

#[test]
fn rejection_reason_from_an_inner_layer_is_logged() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .layer(BearerAuthLayer::new(
            StaticTokens::new().token(KEY, "alice"),
        ))
        .service(echo());
    recorded(&rec, || {
        call(
            svc,
            req("/api")
                .header(header::AUTHORIZATION, "Bearer wrong-token-0123456789")
                .body(String::new())
                .unwrap(),
        )
    });
    let e = rec.only();
    assert_eq!(e.get("status"), Some("401"));
    assert_eq!(e.get("rejection"), Some("InvalidToken"));
    assert_eq!(e.get("rejection_message"), Some("Invalid or expired token"));
    assert!(!format!("{:?}", e.fields).contains("wrong-token"));
}

#[test]
fn user_resource_and_thread_ids_from_inner_layers_are_logged_through_capture() {
    let rec = Recorder::new(Level::TRACE);
    let log = LogLayer::new().user(|u: &String| u.to_uppercase());
    let svc = ServiceBuilder::new()
        .layer(log.clone())
        .layer(BearerAuthLayer::new(
            StaticTokens::new().token(KEY, String::from("alice")),
        ))
        .layer(ResourceScopeLayer::new(|u: &String| {
            Some(format!("user:{u}"))
        }))
        .map_request(|mut r: Request<String>| {
            r.extensions_mut().insert(ThreadId::new("t-1").unwrap());
            r
        })
        .layer(log.capture())
        .service(echo());
    recorded(&rec, || {
        call(
            svc,
            req("/api/threads/t-1")
                .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                .body(String::new())
                .unwrap(),
        )
    });
    let e = rec.only();
    assert_eq!(e.get("user"), Some("ALICE"));
    assert_eq!(e.get("resource_id"), Some("user:alice"));
    assert_eq!(e.get("thread_id"), Some("t-1"));
    assert!(!format!("{:?}", e.fields).contains(KEY));
}

#[test]
fn ids_already_in_the_request_are_logged_without_capture() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .map_request(|mut r: Request<String>| {
            r.extensions_mut()
                .insert(ResourceId::new("org:bob").unwrap());
            r
        })
        .layer(LogLayer::new())
        .service(echo());
    recorded(&rec, || call(svc, req("/").body(String::new()).unwrap()));
    assert_eq!(rec.only().get("resource_id"), Some("org:bob"));
}

fn grpc_service(
    trailers_status: &'static str,
) -> impl Service<Request<String>, Response = Response<BoxBody>, Error = Infallible> + Clone {
    service_fn(move |_req: Request<String>| async move {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(trailers_status));
        let body = Full::new(Bytes::from_static(b"\0\0\0\0\x02hi"))
            .with_trailers(async move { Some(Ok(trailers)) })
            .boxed_unsync();
        let mut res = Response::new(body);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        Ok::<_, Infallible>(res)
    })
}

fn grpc_request() -> Request<String> {
    Request::post("/pkg.Memory/GetThread")
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(String::new())
        .unwrap()
}

#[test]
fn grpc_status_is_read_from_trailers_when_the_body_ends() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(grpc_service("13"));
    recorded(&rec, || {
        let res = call(svc, grpc_request());
        assert!(rec.events().is_empty(), "waits for the trailers");
        assert_eq!(body(res).len(), 7);
    });
    let e = rec.only();
    assert_eq!(e.get("status"), Some("200"));
    assert_eq!(e.get("grpc_status"), Some("13"));
    assert_eq!(e.get("response_size"), Some("7"));
    assert_eq!(e.level, Level::WARN, "INTERNAL is a server error");
    assert_eq!(e.get("aborted"), None);
}

#[test]
fn trailers_only_grpc_rejection_is_logged_at_once() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .layer(BearerAuthLayer::new(
            StaticTokens::new().token(KEY, "alice"),
        ))
        .service(grpc_service("0"));
    recorded(&rec, || call(svc, grpc_request()));
    let e = rec.only();
    assert_eq!(e.get("grpc_status"), Some("16"));
    assert_eq!(e.get("rejection"), Some("MissingCredentials"));
    assert_eq!(e.level, Level::INFO);
}

fn streaming()
-> impl Service<Request<String>, Response = Response<BoxBody>, Error = Infallible> + Clone {
    service_fn(|_req: Request<String>| async {
        let chunks = futures_util::stream::iter(
            ["abc", "defg"].map(|c| Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(c)))),
        );
        Ok::<_, Infallible>(Response::new(StreamBody::new(chunks).boxed_unsync()))
    })
}

#[test]
fn streaming_body_is_counted_and_logged_at_its_end() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(streaming());
    recorded(&rec, || {
        let res = call(svc, req("/events").body(String::new()).unwrap());
        assert!(rec.events().is_empty());
        assert_eq!(body(res), "abcdefg");
    });
    assert_eq!(rec.only().get("response_size"), Some("7"));
}

#[test]
fn a_body_left_mid_stream_logs_the_bytes_sent_before() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(streaming());
    recorded(&rec, || {
        let mut body = call(svc, req("/events").body(String::new()).unwrap()).into_body();
        let first = body.frame().now_or_never().unwrap().unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        assert!(rec.events().is_empty(), "nothing before the stream ends");
        drop(body);
    });
    let e = rec.only();
    assert_eq!(e.get("aborted"), Some("during_body"));
    assert_eq!(e.get("response_size"), Some("3"));
}

#[test]
fn dropped_body_still_emits_the_event_marked_aborted() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(streaming());
    recorded(&rec, || {
        drop(call(svc, req("/events").body(String::new()).unwrap()))
    });
    let e = rec.only();
    assert_eq!(e.get("aborted"), Some("during_body"));
    assert_eq!(e.get("status"), Some("200"));
}

#[test]
fn dropped_response_future_emits_before_response() {
    let rec = Recorder::new(Level::TRACE);
    let mut svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(service_fn(|_r: Request<String>| {
            std::future::pending::<Result<Response<String>, Infallible>>()
        }));
    recorded(&rec, || {
        let fut = svc.call(req("/slow").body(String::new()).unwrap());
        drop(fut);
    });
    assert_eq!(rec.only().get("aborted"), Some("before_response"));
}

#[test]
fn inner_service_error_is_logged_at_the_server_error_level() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(service_fn(|_r: Request<String>| async {
            Err::<Response<String>, _>(std::io::Error::other("boom"))
        }));
    recorded(&rec, || {
        svc.oneshot(req("/").body(String::new()).unwrap())
            .now_or_never()
            .unwrap()
            .unwrap_err()
    });
    let e = rec.only();
    assert_eq!(e.level, Level::WARN);
    assert_eq!(e.get("service_error"), Some("true"));
}

#[test]
fn malformed_settings_are_config_errors() {
    assert!(matches!(
        LogLayer::new().exclude_path("health"),
        Err(ConfigError::InvalidPathPattern { .. })
    ));
    assert_eq!(
        LogLayer::new().redact_header("bad header").unwrap_err(),
        ConfigError::InvalidHeaderName("bad header".into())
    );
}

#[test]
fn debug_output_hides_the_user_accessor() {
    let layer = LogLayer::new().user(|u: &String| u.clone());
    let debug = format!("{layer:?}");
    assert!(debug.contains("Fn(&U) -> String"), "{debug}");
}

#[cfg(feature = "guard")]
#[test]
fn guard_and_scope_refusals_name_the_user_and_resource_without_a_capture_layer() {
    use crate::guard::MemoryThreadStore;
    let store = MemoryThreadStore::new();
    store.insert_thread(
        ThreadId::new("t-alice").unwrap(),
        Some(ResourceId::new("alice").unwrap()),
    );
    let tokens = StaticTokens::new().token(KEY, String::from("bob")).token(
        "k-nobody-0123456789abcdef0123456789",
        String::from("nobody"),
    );
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new().user(|u: &String| u.clone()))
        .layer(BearerAuthLayer::new(tokens))
        .layer(ResourceScopeLayer::new(|u: &String| {
            (u != "nobody").then(|| u.clone())
        }))
        .layer(crate::mastra::memory_guard(store, "/api").unwrap())
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let send = |uri: &str, method: &str, token: &str| {
        rt.block_on(
            svc.clone().oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            ),
        )
        .unwrap()
    };
    let rec = Recorder::new(Level::TRACE);
    for uri in [
        "/api/memory/threads/t-alice",
        "/api/memory/threads/t-alice/messages",
        "/api/memory/threads/t-alice/transfer",
        "/api/memory/unknown",
    ] {
        let method = if uri.ends_with("transfer") {
            "POST"
        } else {
            "GET"
        };
        let res = recorded(&rec, || send(uri, method, KEY));
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{uri}");
    }
    let events = rec.events();
    assert_eq!(events.len(), 4);
    for e in &events {
        assert_eq!(e.get("status"), Some("403"), "{e:?}");
        assert_eq!(e.get("auth"), Some("verified"), "{e:?}");
        assert_eq!(e.get("user"), Some("bob"), "{e:?}");
        assert_eq!(e.get("resource_id"), Some("bob"), "{e:?}");
    }
    // A user the scope layer refuses is named too (there is no resource to name).
    let rec = Recorder::new(Level::TRACE);
    recorded(&rec, || {
        send(
            "/api/memory/threads",
            "GET",
            "k-nobody-0123456789abcdef0123456789",
        )
    });
    let e = rec.only();
    assert_eq!(e.get("status"), Some("403"));
    assert_eq!(e.get("user"), Some("nobody"));
    assert_eq!(e.get("resource_id"), None);
}

fn panicking()
-> impl Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone {
    service_fn(|req: Request<String>| async move {
        if req.uri().path() == "/boom" {
            panic!("handler bug");
        }
        Ok::<_, Infallible>(Response::new(String::from("fine")))
    })
}

#[test]
fn a_handler_panic_is_answered_500_and_logged_at_the_server_error_level() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(panicking());
    let res = recorded(&rec, || {
        call(svc.clone(), req("/boom").body(String::new()).unwrap())
    });
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        res.extensions().get::<crate::Rejection>().unwrap().kind(),
        crate::RejectionKind::Internal
    );
    let e = rec.only();
    assert_eq!(e.level, Level::WARN);
    assert_eq!(e.get("status"), Some("500"));
    assert_eq!(e.get("panicked"), Some("true"));
    assert_eq!(e.get("aborted"), None);
    assert!(!format!("{:?}", e.fields).contains("handler bug"));
    drop(res);
    // The service is still usable afterwards.
    let res = call(svc, req("/fine").body(String::new()).unwrap());
    assert_eq!(body(res), "fine");
}

#[test]
fn a_grpc_handler_panic_is_internal_and_json_errors_render_the_500() {
    // Every test here records: a test that hit the event's callsite with no subscriber could
    // cache "never interested" while another test's recorder is active.
    let rec = Recorder::new(Level::TRACE);
    let _default = tracing::subscriber::set_default(rec.clone());
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(panicking());
    let res = call(
        svc,
        req("/boom")
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(String::new())
            .unwrap(),
    );
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "13");

    let svc = ServiceBuilder::new()
        .layer(crate::JsonErrorLayer::new())
        .layer(LogLayer::new())
        .service(panicking());
    let res = svc
        .oneshot(req("/boom").body(String::new()).unwrap())
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(body(res), r#"{"error":"Internal server error"}"#);
}

/// A hand-written service whose `call` panics before it returns a future.
#[derive(Clone)]
struct PanicsInCall;

impl Service<Request<String>> for PanicsInCall {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<String>) -> Self::Future {
        panic!("bug in call")
    }
}

#[test]
fn a_panic_in_the_inner_call_itself_is_answered_500_and_logged() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .map_request(|mut r: Request<String>| {
            r.extensions_mut()
                .insert(crate::Authenticated::new(String::from("alice")));
            r
        })
        .layer(LogLayer::new().user(|_u: &String| -> String { panic!("bug in accessor") }))
        .service(PanicsInCall);
    let res = recorded(&rec, || call(svc, req("/x").body(String::new()).unwrap()));
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    drop(res);
    // The accessor's panic cost the event; the answer is still a 500.
    assert!(rec.events().is_empty());

    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(PanicsInCall);
    let res = recorded(&rec, || call(svc, req("/x").body(String::new()).unwrap()));
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let e = rec.only();
    assert_eq!(e.get("status"), Some("500"));
    assert_eq!(e.get("panicked"), Some("true"));
    assert_eq!(e.level, Level::WARN);
}

/// A body whose first frame panics.
struct PanickingBody;

impl http_body::Body for PanickingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        panic!("bug while streaming")
    }
}

impl Default for PanickingBody {
    fn default() -> Self {
        Self
    }
}

#[test]
fn a_panic_while_streaming_the_body_is_logged_as_the_servers_failure() {
    let rec = Recorder::new(Level::TRACE);
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new())
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(PanickingBody))
        }));
    let res = recorded(&rec, || {
        call(svc, req("/stream").body(String::new()).unwrap())
    });
    assert_eq!(res.status(), StatusCode::OK);
    // The panic goes on (the head is sent; only dropping the connection is left), but the
    // event says what happened, at the server-error level.
    let unwound = recorded(&rec, || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            res.into_body().collect().now_or_never()
        }))
    });
    assert!(unwound.is_err());
    let e = rec.only();
    assert_eq!(e.level, Level::WARN);
    assert_eq!(e.get("panicked"), Some("true"));
    assert_eq!(e.get("aborted"), Some("during_body"));
}
