//! One stack, every framework: the same assertions against axum, plain hyper and warp servers
//! (real servers on 127.0.0.1:0, reqwest as the client), and the gRPC contract against tonic
//! with the generated tonic client.
#![cfg(all(
    feature = "axum",
    feature = "guard",
    feature = "tonic",
    feature = "aws-lc",
    feature = "cors",
    feature = "authz"
))]
// Each example includes the shared demo module itself, as a standalone example must.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/axum_app.rs"]
mod axum_app;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/hyper_plain.rs"]
mod hyper_plain;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/tonic_grpc/main.rs"]
mod tonic_grpc;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/warp_app.rs"]
mod warp_app;

use std::collections::HashMap;

use reqwest::StatusCode;
use tonic::{Code, Request};
use tonic_grpc::memory::threads_client::ThreadsClient;
use tonic_grpc::memory::{GetThreadRequest, WhoAmIRequest};
use tower_scope::guard::{MessageThread, StoreError, ThreadOwner, ThreadStore};
use tower_scope::{MessageId, ThreadId};

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// The contract every HTTP framework must meet with the same stack.
async fn assert_contract(base: &str, token: impl Fn(&str) -> String) {
    let client = reqwest::Client::new();
    let get = |path: &str, bearer: Option<String>| {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let res = get("/api/whoami", None).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "{base}: missing token"
    );
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api""#);
    let res = get("/api/whoami", Some("not-a-jwt".into())).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{base}: bad token");
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let res = get("/api/whoami", Some(token("alice"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{base}: valid token");
    assert_eq!(res.text().await.unwrap(), "user=alice resource=alice");
    let res = get("/api/threads/t-bob", Some(token("alice")))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "{base}: foreign thread"
    );
    let res = get("/api/threads/t-alice", Some(token("alice")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{base}: own thread");
    assert_eq!(res.text().await.unwrap(), "thread=t-alice checked=t-alice");
    let res = get("/api/threads/t-none", Some(token("alice")))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "{base}: missing thread"
    );
    let res = get("/health", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{base}: public health");
}

#[tokio::test]
async fn axum_meets_the_contract() {
    let (l, base) = listener().await;
    tokio::spawn(axum_app::serve(l, axum_app::demo::seeded_store()));
    assert_contract(&base, |u| axum_app::demo::token(u, None)).await;
}

#[tokio::test]
async fn plain_hyper_meets_the_contract() {
    let (l, base) = listener().await;
    tokio::spawn(hyper_plain::serve(l, hyper_plain::demo::seeded_store()));
    assert_contract(&base, |u| hyper_plain::demo::token(u, None)).await;
}

#[tokio::test]
async fn warp_meets_the_contract() {
    let (l, base) = listener().await;
    tokio::spawn(warp_app::serve(l, warp_app::demo::seeded_store()));
    assert_contract(&base, |u| warp_app::demo::token(u, None)).await;
}

/// A store whose backend is down.
#[derive(Clone)]
struct DownStore;

impl ThreadStore for DownStore {
    async fn thread_owners(
        &self,
        _: &[ThreadId],
    ) -> Result<HashMap<ThreadId, ThreadOwner>, StoreError> {
        Err(StoreError::Backend("connection refused".into()))
    }

    async fn message_threads(
        &self,
        _: &[MessageId],
    ) -> Result<HashMap<MessageId, MessageThread>, StoreError> {
        Err(StoreError::Backend("connection refused".into()))
    }
}

async fn grpc_client(
    base: &str,
    token: Option<String>,
) -> ThreadsClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor,
    >,
> {
    let channel = tonic::transport::Endpoint::from_shared(base.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    ThreadsClient::with_interceptor(channel, move |mut req: Request<()>| {
        if let Some(t) = &token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(req)
    })
}

#[tokio::test]
async fn tonic_meets_the_contract_with_grpc_codes() {
    let (l, base) = listener().await;
    tokio::spawn(tonic_grpc::serve(l, tonic_grpc::demo::seeded_store()));
    let token = |u: &str| Some(tonic_grpc::demo::token(u, None));

    let err = grpc_client(&base, None)
        .await
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unauthenticated, "Authentication required")
    );
    let err = grpc_client(&base, Some("x.y.z".into()))
        .await
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unauthenticated, "The token is malformed")
    );
    let me = grpc_client(&base, token("alice"))
        .await
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap();
    assert_eq!(
        (
            me.get_ref().user.as_str(),
            me.get_ref().resource_id.as_str()
        ),
        ("alice", "alice")
    );

    let mut alice = grpc_client(&base, token("alice")).await;
    let own = alice
        .get_thread(GetThreadRequest {
            thread_id: "t-alice".into(),
        })
        .await
        .unwrap();
    assert_eq!(own.get_ref().id, "t-alice");
    let err = alice
        .get_thread(GetThreadRequest {
            thread_id: "t-bob".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::PermissionDenied,
            "Access denied: thread belongs to a different resource"
        )
    );
    let err = alice
        .get_thread(GetThreadRequest {
            thread_id: "t-none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "Thread not found")
    );

    // The standard health service sits behind the same layers.
    let channel = tonic::transport::Endpoint::from_shared(base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn tonic_checks_a_permission_per_rpc() {
    let (l, base) = listener().await;
    tokio::spawn(tonic_grpc::serve(l, tonic_grpc::demo::seeded_store()));
    let scoped = |scope: &str| {
        Some(tonic_grpc::demo::token_with_scope(
            "alice",
            None,
            Some(scope),
        ))
    };

    // `scope: "openid"`: WhoAmI needs only a user; GetThread needs memory:read.
    let mut idp = grpc_client(&base, scoped("openid profile")).await;
    assert_eq!(
        idp.who_am_i(WhoAmIRequest {}).await.unwrap().get_ref().user,
        "alice"
    );
    let err = idp
        .get_thread(GetThreadRequest {
            thread_id: "t-alice".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::PermissionDenied,
            "Missing required permission: memory:read"
        )
    );
    // Listing memory:read (among others) reaches the handler, which still checks ownership.
    let mut reader = grpc_client(&base, scoped("openid memory:read")).await;
    let own = reader
        .get_thread(GetThreadRequest {
            thread_id: "t-alice".into(),
        })
        .await
        .unwrap();
    assert_eq!(own.get_ref().id, "t-alice");
    let err = reader
        .get_thread(GetThreadRequest {
            thread_id: "t-bob".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A method no rule names is refused before tonic's Unimplemented: fail closed.
    let channel = tonic::transport::Endpoint::from_shared(base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(WhoAmIRequest {});
    let bearer = format!("Bearer {}", tonic_grpc::demo::token("alice", None));
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let err = grpc
        .unary::<_, tonic_grpc::memory::WhoAmIResponse, _>(
            request,
            "/memory.v1.Threads/DeleteEverything".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::PermissionDenied,
            "Access denied: no authorization rule covers this route"
        )
    );
}

#[tokio::test]
async fn tonic_store_outage_is_unavailable() {
    let (l, base) = listener().await;
    tokio::spawn(tonic_grpc::serve(l, DownStore));
    let mut alice = grpc_client(&base, Some(tonic_grpc::demo::token("alice", None))).await;
    let err = alice
        .get_thread(GetThreadRequest {
            thread_id: "t-alice".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unavailable, "Thread store unavailable")
    );
}

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/multi_tenant.rs"]
mod multi_tenant;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/request_context.rs"]
mod request_context;

#[tokio::test]
async fn org_and_anonymous_scopes_over_real_http() {
    let (l, base) = listener().await;
    tokio::spawn(async move { axum::serve(l, multi_tenant::app()).await.unwrap() });
    let client = reqwest::Client::new();
    let scope = |req: reqwest::RequestBuilder| async move {
        req.send().await.unwrap().text().await.unwrap()
    };
    let url = format!("{base}/api/scope");
    assert_eq!(
        scope(
            client
                .get(&url)
                .bearer_auth(multi_tenant::demo::token("carol", Some("acme")))
        )
        .await,
        "acme:carol"
    );
    assert_eq!(
        scope(
            client
                .get(&url)
                .bearer_auth(multi_tenant::demo::token("carol", Some("globex")))
        )
        .await,
        "globex:carol"
    );
    assert_eq!(
        scope(client.get(&url).header("cookie", "session=s3ss10n")).await,
        "anon_s3ss10n"
    );
    assert_eq!(scope(client.get(&url)).await, "unscoped");
}

#[tokio::test]
async fn typed_request_context_reaches_the_handler() {
    let (l, base) = listener().await;
    tokio::spawn(async move { axum::serve(l, request_context::app()).await.unwrap() });
    let client = reqwest::Client::new();
    let url = format!("{base}/api/weather");
    let token = request_context::demo::token("alice", None);
    let us = client
        .get(&url)
        .bearer_auth(&token)
        .header("cf-ipcountry", "US")
        .send()
        .await
        .unwrap();
    assert_eq!(us.text().await.unwrap(), "alice: 68°F");
    let fr = client
        .get(&url)
        .bearer_auth(&token)
        .header("cf-ipcountry", "FR")
        .send()
        .await
        .unwrap();
    assert_eq!(fr.text().await.unwrap(), "alice: 20°C");
    let anon = client
        .get(&url)
        .header("cf-ipcountry", "US")
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn stack_wraps_a_whole_axum_router_from_outside_for_axum_serve() {
    use tower::ServiceBuilder;
    // Outside the Router the response type must stay axum's: head-only rejections keep it.
    let router = axum::Router::new().route("/api/whoami", axum::routing::get(|| async { "inner" }));
    let svc = ServiceBuilder::new()
        .layer(axum_app::demo::auth_layer())
        .layer(tower_scope::ResourceScopeLayer::new(
            axum_app::demo::resource_of,
        ))
        .service(router);
    let (l, base) = listener().await;
    tokio::spawn(async move { axum::serve(l, tower::make::Shared::new(svc)).await.unwrap() });
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{base}/api/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = client
        .get(format!("{base}/api/whoami"))
        .bearer_auth(axum_app::demo::token("alice", None))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "inner");
}

/// A raw grpc-web call over HTTP/1.1, as a browser's fetch would make it.
async fn grpc_web_call(base: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/memory.v1.Threads/WhoAmI"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "http://localhost:3000")
        .body(vec![0u8, 0, 0, 0, 0]); // one empty WhoAmIRequest frame
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn grpc_web_goes_through_cors_then_grpc_web_then_auth() {
    let (l, base) = listener().await;
    tokio::spawn(tonic_grpc::serve(l, tonic_grpc::demo::seeded_store()));

    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{base}/memory.v1.Threads/WhoAmI"),
        )
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "x-grpc-web, content-type, authorization",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );

    let denied = grpc_web_call(&base, None).await;
    assert_eq!(denied.status(), StatusCode::OK);
    assert_eq!(denied.headers()["grpc-status"], "16");
    assert_eq!(
        denied.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let exposed = denied.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("grpc-status") && exposed.contains("grpc-message"));

    let token = tonic_grpc::demo::token("alice", None);
    let ok = grpc_web_call(&base, Some(&token)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body = ok.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("alice"), "the reply message names the user");
    assert!(
        text.contains("grpc-status:0"),
        "the trailer frame reports OK: {text:?}"
    );
}
