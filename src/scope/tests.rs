//! Behaviour of `ResourceScopeLayer`, driven through `oneshot` against an echo service.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::{CONTENT_TYPE, COOKIE};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::reject::RejectionKind;
use crate::{AuthState, Authenticated, ResourceId};

#[derive(Clone)]
struct User {
    id: String,
    org: Option<String>,
}

fn alice() -> Authenticated<User> {
    Authenticated::new(User {
        id: "alice".into(),
        org: None,
    })
}

/// Echoes the scope the handler saw and the URI it was given.
async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let scope = req
        .extensions()
        .get::<ResourceId>()
        .map_or("-".to_owned(), ToString::to_string);
    let header = req
        .headers()
        .get("x-resource-id")
        .map_or("-", |v| v.to_str().unwrap())
        .to_owned();
    Ok(Response::new(format!("{scope} {} {header}", req.uri())))
}

fn mapper(u: &User) -> Option<String> {
    Some(match &u.org {
        Some(org) => format!("{org}:{}", u.id),
        None => u.id.clone(),
    })
}

type EchoFut = std::pin::Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

fn echo_boxed(req: Request<String>) -> EchoFut {
    Box::pin(echo(req))
}

/// A request as `BearerAuthLayer` hands it on: with the user, or marked anonymous.
fn request(uri: &str, user: Option<Authenticated<User>>) -> Request<String> {
    let mut req = Request::get(uri).body(String::new()).unwrap();
    match user {
        Some(user) => {
            req.extensions_mut().insert(user);
            req.extensions_mut().insert(AuthState::verified::<User>());
        }
        None => {
            req.extensions_mut().insert(AuthState::Anonymous);
        }
    }
    req
}

/// Every content type that says "gRPC", and none.
const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("application/json"),
    Some("application/grpc"),
    Some("application/grpc+json"),
    Some("application/grpc-web-text"),
    Some("application/grpc-web+proto"),
];

async fn run<L>(layer: L, req: Request<String>) -> Response<String>
where
    L: Layer<tower::util::ServiceFn<fn(Request<String>) -> EchoFut>>,
    L::Service: Service<Request<String>, Response = Response<String>, Error = Infallible>,
{
    layer
        .layer(service_fn(echo_boxed as fn(Request<String>) -> EchoFut))
        .oneshot(req)
        .await
        .unwrap()
}

#[tokio::test]
async fn user_is_mapped_to_resource_id_and_listing_is_scoped() {
    let res = run(
        ResourceScopeLayer::new(mapper),
        request("/api/memory/threads", Some(alice())),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "alice /api/memory/threads?resourceId=alice -");
}

#[tokio::test]
async fn composite_org_user_ids_are_supported() {
    let user = Authenticated::new(User {
        id: "bob".into(),
        org: Some("acme".into()),
    });
    let res = run(ResourceScopeLayer::new(mapper), request("/t", Some(user))).await;
    assert_eq!(res.body(), "acme:bob /t?resourceId=acme%3Abob -");
}

#[tokio::test]
async fn client_supplied_resource_id_is_rewritten_to_the_callers() {
    let uri = "/api/memory/threads?page=2&resourceId=bob&perPage=10&resourceId=carol";
    let res = run(ResourceScopeLayer::new(mapper), request(uri, Some(alice()))).await;
    assert_eq!(
        res.body(),
        "alice /api/memory/threads?page=2&resourceId=alice&perPage=10 -"
    );
}

#[tokio::test]
async fn percent_encoded_parameter_name_is_rewritten_too() {
    let res = run(
        ResourceScopeLayer::new(mapper),
        request("/t?resource%49d=bob", Some(alice())),
    )
    .await;
    assert_eq!(res.body(), "alice /t?resourceId=alice -");
}

#[tokio::test]
async fn added_parameter_can_be_turned_off() {
    let layer = ResourceScopeLayer::new(mapper).without_added_param();
    let res = run(layer.clone(), request("/t?x=1", Some(alice()))).await;
    assert_eq!(res.body(), "alice /t?x=1 -");
    let res = run(layer, request("/t?resourceId=bob", Some(alice()))).await;
    assert_eq!(res.body(), "alice /t?resourceId=alice -");
}

#[tokio::test]
async fn mismatch_is_forbidden_when_rejection_is_chosen() {
    let layer = ResourceScopeLayer::new(mapper).reject_mismatch();
    let res = run(layer.clone(), request("/t?resourceId=bob", Some(alice()))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.body(), "");
    let res = run(layer, request("/t?resourceId=alice", Some(alice()))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "alice /t?resourceId=alice -");
}

#[tokio::test]
async fn configured_headers_are_overridden_or_rejected() {
    let layer = ResourceScopeLayer::new(mapper)
        .headers(["x-resource-id"])
        .unwrap();
    let mut req = request("/t", Some(alice()));
    req.headers_mut()
        .insert("x-resource-id", "bob".parse().unwrap());
    req.headers_mut()
        .append("x-resource-id", "carol".parse().unwrap());
    let res = run(layer.clone(), req).await;
    assert_eq!(res.body(), "alice /t?resourceId=alice alice");

    let mut req = request("/t", Some(alice()));
    req.headers_mut()
        .insert("x-resource-id", "bob".parse().unwrap());
    let res = run(layer.reject_mismatch(), req).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unmappable_user_is_forbidden_and_handler_not_called() {
    let called = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&called);
    let svc = ResourceScopeLayer::new(|_u: &User| None::<String>).layer(service_fn(
        move |_r: Request<String>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        },
    ));
    let res = svc.oneshot(request("/t", Some(alice()))).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let rejection = res.extensions().get::<Rejection>().unwrap();
    assert_eq!(
        rejection.message(),
        "Access denied: request could not be scoped to a resource"
    );
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn invalid_mapped_id_is_forbidden() {
    let res = run(
        ResourceScopeLayer::new(|_u: &User| Some("")),
        request("/t", Some(alice())),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = run(
        ResourceScopeLayer::new(|_u: &User| Some("a\nb")),
        request("/t", Some(alice())),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn async_mapper_resolves_and_can_report_an_outage() {
    let layer = ResourceScopeLayer::new_async(|u: Authenticated<User>| async move {
        tokio::task::yield_now().await;
        Ok(Some(ResourceId::new(format!("db:{}", u.id)).unwrap()))
    });
    let res = run(layer, request("/t", Some(alice()))).await;
    assert_eq!(res.body(), "db:alice /t?resourceId=db%3Aalice -");

    let down = ResourceScopeLayer::new_async(|_u: Authenticated<User>| async {
        Err(Rejection::new(RejectionKind::Unavailable))
    });
    let res = run(down, request("/t", Some(alice()))).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn resource_id_set_by_a_trusted_layer_is_kept() {
    let mut req = request("/t?resourceId=bob", Some(alice()));
    req.extensions_mut()
        .insert(ResourceId::new("tenant-7").unwrap());
    let res = run(
        ResourceScopeLayer::new(|_u: &User| -> Option<String> { panic!("mapper must not run") }),
        req,
    )
    .await;
    assert_eq!(res.body(), "tenant-7 /t?resourceId=tenant-7 -");
}

#[tokio::test]
async fn anonymous_request_without_a_scope_is_refused_by_default() {
    // A naive listing handler would serve everyone's data to a request without `resourceId`.
    let res = run(
        ResourceScopeLayer::new(mapper),
        request("/t?resourceId=bob", None),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().message(),
        "Access denied: request could not be scoped to a resource (no credentials)"
    );
}

#[tokio::test]
async fn anonymous_request_loses_client_supplied_scope_when_let_through() {
    let layer = ResourceScopeLayer::new(mapper)
        .allow_anonymous_unscoped()
        .headers(["x-resource-id"])
        .unwrap();
    let mut req = request("/t?a=1&resourceId=bob&b=2", None);
    req.headers_mut()
        .insert("x-resource-id", "bob".parse().unwrap());
    let res = run(layer, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "- /t?a=1&b=2 -");
}

#[tokio::test]
async fn anonymous_cookie_gives_an_anon_scope() {
    let layer = ResourceScopeLayer::new(mapper)
        .allow_anonymous_unscoped()
        .anonymous_cookie("session", "anon_")
        .unwrap();
    let mut req = request("/t?resourceId=bob", None);
    req.headers_mut()
        .insert(COOKIE, "theme=x; session=s3ss-1".parse().unwrap());
    let res = run(layer.clone(), req).await;
    assert_eq!(res.body(), "anon_s3ss-1 /t?resourceId=anon_s3ss-1 -");

    // A cookie value that could reach into another scope is not used.
    let mut req = request("/t?resourceId=bob", None);
    req.headers_mut()
        .insert(COOKIE, "session=x:alice".parse().unwrap());
    let res = run(layer.clone(), req).await;
    assert_eq!(res.body(), "- /t -");

    // An authenticated caller is scoped by the mapper, not by the cookie.
    let mut req = request("/t", Some(alice()));
    req.headers_mut()
        .insert(COOKIE, "session=s3ss-1".parse().unwrap());
    assert_eq!(run(layer, req).await.body(), "alice /t?resourceId=alice -");
}

#[tokio::test]
async fn content_type_never_changes_the_scope_the_handler_sees() {
    // `content-type: application/grpc` once switched the added `?resourceId=` off, so a naive
    // listing handler served every user's threads.
    for ct in CONTENT_TYPES {
        for uri in [
            "/api/memory/threads",
            "/api/memory/threads?resourceId=bob",
            "/api/memory/threads?resource%49d=bob&resourceId=carol",
        ] {
            let mut req = request(uri, Some(alice()));
            if let Some(ct) = ct {
                req.headers_mut().insert(CONTENT_TYPE, ct.parse().unwrap());
            }
            let res = run(ResourceScopeLayer::new(mapper), req).await;
            assert_eq!(
                res.body(),
                "alice /api/memory/threads?resourceId=alice -",
                "{ct:?} {uri}"
            );
        }
        // Anonymous requests lose client scope whatever they say they are.
        let mut req = request("/t?resourceId=bob", None);
        if let Some(ct) = ct {
            req.headers_mut().insert(CONTENT_TYPE, ct.parse().unwrap());
        }
        let res = run(
            ResourceScopeLayer::new(mapper).allow_anonymous_unscoped(),
            req,
        )
        .await;
        assert_eq!(res.body(), "- /t -", "{ct:?}");
    }
}

#[tokio::test]
async fn scoped_answers_are_private_unless_the_handler_chose_caching() {
    let res = run(
        ResourceScopeLayer::new(mapper),
        request("/t", Some(alice())),
    )
    .await;
    assert_eq!(res.headers()[http::header::CACHE_CONTROL], "private");
    // A trusted layer's id and an anonymous-scope cookie make the answer per-caller too.
    let mut req = request("/t", None);
    req.extensions_mut()
        .insert(ResourceId::new("tenant-7").unwrap());
    let res = run(ResourceScopeLayer::new(mapper), req).await;
    assert_eq!(res.headers()[http::header::CACHE_CONTROL], "private");
    let mut req = request("/t", None);
    req.headers_mut()
        .insert(COOKIE, "session=s3ss-1".parse().unwrap());
    let layer = ResourceScopeLayer::new(mapper)
        .anonymous_cookie("session", "anon_")
        .unwrap();
    let res = run(layer, req).await;
    assert_eq!(res.headers()[http::header::CACHE_CONTROL], "private");
    // An unscoped anonymous answer is the same for everyone.
    let layer = ResourceScopeLayer::new(mapper).allow_anonymous_unscoped();
    let res = run(layer, request("/t", None)).await;
    assert!(res.headers().get(http::header::CACHE_CONTROL).is_none());
    // The handler's own choice is kept.
    let svc = ResourceScopeLayer::new(mapper).layer(service_fn(|_req: Request<String>| async {
        let mut res = Response::new(String::new());
        res.headers_mut()
            .insert(http::header::CACHE_CONTROL, "no-store".parse().unwrap());
        Ok::<_, Infallible>(res)
    }));
    let res = svc.oneshot(request("/t", Some(alice()))).await.unwrap();
    assert_eq!(res.headers()[http::header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn grpc_forbidden_is_permission_denied() {
    let mut req = request("/pkg.Svc/Method", Some(alice()));
    req.headers_mut()
        .insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
    let res = run(ResourceScopeLayer::new(|_u: &User| None::<String>), req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "7");
}

#[test]
fn invalid_configuration_is_reported() {
    assert!(
        ResourceScopeLayer::new(mapper)
            .headers(["bad header"])
            .is_err()
    );
    assert!(ResourceScopeLayer::new(mapper).query_params([""]).is_err());
    assert!(
        ResourceScopeLayer::new(mapper)
            .anonymous_cookie("a=b", "anon_")
            .is_err()
    );
}

#[tokio::test]
async fn a_request_no_auth_layer_saw_is_refused_with_a_diagnosable_message() {
    // No AuthState, no user, no trusted id: whatever headers it carries, it is not served.
    for auth in [None, Some("Bearer whatever")] {
        for ct in CONTENT_TYPES {
            let mut req = Request::get("/api/memory/threads?resourceId=bob")
                .body(String::new())
                .unwrap();
            if let Some(auth) = auth {
                req.headers_mut()
                    .insert(http::header::AUTHORIZATION, auth.parse().unwrap());
            }
            if let Some(ct) = ct {
                req.headers_mut().insert(CONTENT_TYPE, ct.parse().unwrap());
            }
            let res = run(ResourceScopeLayer::new(mapper), req).await;
            let rejection = res.extensions().get::<Rejection>().unwrap();
            assert_eq!(rejection.kind(), RejectionKind::Forbidden, "{ct:?}");
            assert!(
                rejection.message().contains("no authentication layer ran"),
                "{}",
                rejection.message()
            );
        }
    }
}

#[tokio::test]
async fn a_user_of_another_type_is_refused_naming_the_mismatch() {
    // Auth verified a `String` user; this scope layer was built for `User`.
    let mut req = Request::get("/t").body(String::new()).unwrap();
    req.extensions_mut()
        .insert(Authenticated::new(String::from("alice")));
    req.extensions_mut().insert(AuthState::verified::<String>());
    let res = run(ResourceScopeLayer::new(mapper), req).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let rejection = res.extensions().get::<Rejection>().unwrap();
    assert!(
        rejection.message().contains("another type"),
        "{}",
        rejection.message()
    );
}

#[tokio::test]
async fn credentials_on_a_path_auth_let_through_are_anonymous() {
    let mut req = request("/health?resourceId=bob", None);
    req.extensions_mut().insert(AuthState::PublicPath);
    req.headers_mut().insert(
        http::header::AUTHORIZATION,
        "Bearer whatever".parse().unwrap(),
    );
    let res = run(ResourceScopeLayer::new(mapper), req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "- /health -");
}

#[test]
fn anonymous_scope_needs_a_prefix() {
    assert!(
        ResourceScopeLayer::new(mapper)
            .anonymous_cookie("session", "")
            .is_err()
    );
}
