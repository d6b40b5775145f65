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

/// JSON body rules: only forced fields change, everything else arrives as the client sent it.
#[cfg(feature = "json-body")]
mod body_rules {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::Method;
    use http_body::{Body, Frame};
    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::scope::BodyRule;

    fn rule(path: &str) -> BodyRule {
        BodyRule::new(Method::POST, "/threads")
            .unwrap()
            .force(path)
            .unwrap()
    }

    fn post(body: &str) -> Request<Full<Bytes>> {
        let mut req = Request::post("/threads")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        req.extensions_mut().insert(alice());
        req.extensions_mut().insert(AuthState::verified::<User>());
        req
    }

    /// Sends `req` to a handler that answers with the body it read; counts handler calls.
    async fn send<L>(layer: L, req: Request<Full<Bytes>>) -> (StatusCode, String, usize)
    where
        L: Layer<
            tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<String>, Infallible>,
        >,
        L::Service: Service<Request<Full<Bytes>>, Response = Response<String>, Error = Infallible>,
    {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let handler =
            tower::util::BoxCloneSyncService::new(service_fn(move |req: Request<Full<Bytes>>| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    let length = req.headers().get("content-length").cloned();
                    let bytes = req.into_body().collect().await.unwrap().to_bytes();
                    if let Some(length) = length {
                        assert_eq!(length.to_str().unwrap(), bytes.len().to_string());
                    }
                    Ok::<_, Infallible>(Response::new(String::from_utf8(bytes.to_vec()).unwrap()))
                }
            }));
        let res = layer.layer(handler).oneshot(req).await.unwrap();
        let status = res.status();
        (status, res.into_body(), calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_forced_field_is_the_only_change_to_the_body() {
        let layer = ResourceScopeLayer::new(mapper).body_rule(rule("resourceId"));
        let body = "{\n  \"big\": 123456789012345678901234567890, \"f\": 0.30000000000000004,\n  \"z\": -0, \"e\": 1E+2, \"u\": \"\\u00e9\", \"resourceId\": \"bob\", \"k\": {\"b\":1,\"a\":2}\n}";
        let (status, seen, _) = send(layer.clone(), post(body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen, body.replace("\"bob\"", "\"alice\""));
        // Absent: appended as the last member; already the caller's: the bytes are untouched.
        let (_, seen, _) = send(layer.clone(), post(r#"{"title":"x"}"#)).await;
        assert_eq!(seen, r#"{"title":"x","resourceId":"alice"}"#);
        let exact = r#"{"resourceId" : "al\u0069ce"}"#;
        let (_, seen, _) = send(layer.clone(), post(exact)).await;
        assert_eq!(seen, exact);
        let (_, seen, _) = send(layer, post("")).await;
        assert_eq!(seen, r#"{"resourceId":"alice"}"#);
    }

    #[test]
    fn rules_refuse_forced_paths_that_repeat_or_nest() {
        let rule = BodyRule::new(Method::POST, "/threads").unwrap();
        assert!(
            rule.clone()
                .force("memory")
                .unwrap()
                .force("memory.resource")
                .is_err()
        );
        assert!(rule.clone().force("a").unwrap().force("a").is_err());
        assert!(
            rule.force("memory.resource")
                .unwrap()
                .force("memory.thread")
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_no_body_route_refuses_a_body_and_passes_without_one() {
        let layer = ResourceScopeLayer::new(mapper)
            .body_rule(BodyRule::new(Method::GET, "/threads").unwrap().no_body());
        let get = |body: &'static str| {
            let mut req = Request::get("/threads")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap();
            req.extensions_mut().insert(alice());
            req
        };
        let (status, _, calls) = send(layer.clone(), get(r#"{"resourceId":"bob"}"#)).await;
        assert_eq!((status, calls), (StatusCode::BAD_REQUEST, 0));
        let (status, seen, calls) = send(layer, get("")).await;
        assert_eq!((status, seen.as_str(), calls), (StatusCode::OK, "", 1));
    }

    #[tokio::test]
    async fn nested_agent_memory_resource_is_forced_only_where_memory_is_given() {
        let layer = ResourceScopeLayer::new(mapper).body_rule(rule("memory.resource"));
        let (_, seen, _) = send(
            layer.clone(),
            post(r#"{"messages":[1],"memory":{"thread":"t1","resource":"bob"}}"#),
        )
        .await;
        assert_eq!(
            seen,
            r#"{"messages":[1],"memory":{"thread":"t1","resource":"alice"}}"#
        );
        let (_, seen, _) = send(layer.clone(), post(r#"{"memory":{"thread":{"id":"t1"}}}"#)).await;
        assert_eq!(
            seen,
            r#"{"memory":{"thread":{"id":"t1"},"resource":"alice"}}"#
        );
        // No memory: Mastra uses none, so there is nothing to scope and nothing changes.
        let (_, seen, _) = send(layer, post(r#"{"messages":[]}"#)).await;
        assert_eq!(seen, r#"{"messages":[]}"#);
    }

    #[tokio::test]
    async fn duplicate_or_malformed_bodies_are_refused_before_the_handler() {
        let layer = ResourceScopeLayer::new(mapper).body_rule(rule("memory.resource"));
        for body in [
            r#"{"memory":{"resource":"alice","resource":"bob"}}"#,
            r#"{"memory":{"resource":"alice"},"memory":{"resource":"bob"}}"#,
            r#"{"memory":{"resource":"bob","reso\u0075rce":"alice"}}"#,
            r#"{"memory":"#,
            r#"{"memory":"t1"}"#,
            "\u{feff}{}",
        ] {
            let (status, _, calls) = send(layer.clone(), post(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(calls, 0, "{body}");
        }
        // A duplicate away from the forced path is the handler's business: passed on as sent.
        let body = r#"{"title":"a","title":"b","memory":{"resource":"alice"}}"#;
        let (status, seen, _) = send(layer, post(body)).await;
        assert_eq!((status, seen.as_str()), (StatusCode::OK, body));
    }

    #[tokio::test]
    async fn reject_mismatch_refuses_a_body_naming_another_resource() {
        let layer = ResourceScopeLayer::new(mapper)
            .reject_mismatch()
            .body_rule(rule("resourceId"));
        let (status, _, calls) = send(layer.clone(), post(r#"{"resourceId":"bob"}"#)).await;
        assert_eq!((status, calls), (StatusCode::FORBIDDEN, 0));
        let (status, seen, _) = send(layer, post(r#"{"resourceId":"alice"}"#)).await;
        assert_eq!(
            (status, seen.as_str()),
            (StatusCode::OK, r#"{"resourceId":"alice"}"#)
        );
    }

    #[tokio::test]
    async fn required_fields_must_name_the_caller_where_present() {
        let layer = ResourceScopeLayer::new(mapper).body_rule(
            BodyRule::new(Method::POST, "/threads")
                .unwrap()
                .require("messages[].resourceId")
                .unwrap()
                .refusal("not yours"),
        );
        for (body, status) in [
            (
                r#"{"messages":[{"resourceId":"alice"},{"resourceId":"bob"}]}"#,
                StatusCode::FORBIDDEN,
            ),
            (r#"{"messages":[{"resourceId":7}]}"#, StatusCode::FORBIDDEN),
            (
                r#"{"messages":[{"resourceId":"alice"},{"x":1},{"resourceId":null}]}"#,
                StatusCode::OK,
            ),
            (
                r#"{"messages":[{"resourceId":"alice","resourceId":"bob"}]}"#,
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let (got, seen, calls) = send(layer.clone(), post(body)).await;
            assert_eq!(got, status, "{body}");
            assert_eq!(calls, usize::from(status == StatusCode::OK), "{body}");
            if status == StatusCode::OK {
                assert_eq!(seen, body, "required fields are checked, never edited");
            }
        }
    }

    #[tokio::test]
    async fn routes_without_rules_and_unscoped_requests() {
        let layer = ResourceScopeLayer::new(mapper).body_rule(rule("resourceId"));
        // Another route: the body is not read or touched.
        let mut req = post(r#"{"resourceId":"bob"}"#);
        *req.uri_mut() = "/other".parse().unwrap();
        let (status, seen, _) = send(layer.clone(), req).await;
        assert_eq!(
            (status, seen.as_str()),
            (StatusCode::OK, r#"{"resourceId":"bob"}"#)
        );
        // A public path cannot be served unscoped on a route whose body names a resource.
        let mut req = Request::post("/threads")
            .body(Full::new(Bytes::from_static(br#"{"resourceId":"bob"}"#)))
            .unwrap();
        req.extensions_mut().insert(AuthState::PublicPath);
        let (status, _, calls) = send(layer, req).await;
        assert_eq!((status, calls), (StatusCode::FORBIDDEN, 0));
    }

    #[tokio::test]
    async fn oversized_bodies_are_413_and_json_errors_composes_anywhere() {
        let layer = ResourceScopeLayer::new(mapper)
            .json_errors()
            .body_rule(rule("resourceId"))
            .max_body_bytes(16)
            .reject_mismatch();
        let svc = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        let res = svc
            .oneshot(post(r#"{"title":"far too long for sixteen"}"#))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"error":"Request body too large"}"#);
    }

    /// A client body that counts how often it is polled; the bodies the layers rebuild from
    /// bytes do not count.
    struct Counted {
        data: Option<Bytes>,
        polls: Option<Arc<AtomicUsize>>,
    }

    impl From<Bytes> for Counted {
        fn from(bytes: Bytes) -> Self {
            Self {
                data: Some(bytes),
                polls: None,
            }
        }
    }

    impl Body for Counted {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if let Some(polls) = &self.polls {
                polls.fetch_add(1, Ordering::SeqCst);
            }
            Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
        }
    }

    #[tokio::test]
    async fn scope_and_guard_read_one_body_once() {
        use crate::guard::{GuardRoute, MemoryThreadStore, ThreadGuardLayer};
        let store = MemoryThreadStore::new();
        store.insert_thread(
            crate::ThreadId::new("t-b").unwrap(),
            Some(ResourceId::new("bob").unwrap()),
        );
        let guard = ThreadGuardLayer::new(store).route(
            GuardRoute::new(Method::POST, "/threads")
                .unwrap()
                .thread_from_body("threadId")
                .unwrap()
                .allow_missing_thread()
                .expect_scoped_body(),
        );
        let stack = tower::ServiceBuilder::new()
            .layer(ResourceScopeLayer::new(mapper).body_rule(rule("resourceId")))
            .layer(guard)
            .service(service_fn(|req: Request<Counted>| async move {
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                Ok::<_, Infallible>(Response::new(String::from_utf8(bytes.to_vec()).unwrap()))
            }));
        let polls = Arc::new(AtomicUsize::new(0));
        let request = |body: &'static [u8]| {
            let mut req = Request::post("/threads")
                .body(Counted {
                    data: Some(Bytes::from_static(body)),
                    polls: Some(Arc::clone(&polls)),
                })
                .unwrap();
            req.extensions_mut().insert(alice());
            req
        };
        let res = stack
            .clone()
            .oneshot(request(br#"{"threadId":"t-new"}"#))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.into_body(),
            r#"{"threadId":"t-new","resourceId":"alice"}"#
        );
        // One data frame and the end: the client's body was read by one layer, once.
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        let res = stack
            .oneshot(request(br#"{"threadId":"t-b"}"#))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn the_guard_refuses_a_body_route_the_scope_layer_did_not_scope() {
        use crate::guard::MemoryThreadStore;
        // The Mastra guard behind a scope layer without the Mastra body rules: thread creation
        // would otherwise keep a client-chosen `resourceId`.
        let stack = tower::ServiceBuilder::new()
            .layer(ResourceScopeLayer::new(mapper))
            .layer(crate::mastra::memory_guard(MemoryThreadStore::new(), "/api").unwrap())
            .service(service_fn(|_req: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            }));
        let mut req = post(r#"{"resourceId":"bob"}"#);
        *req.uri_mut() = "/api/memory/threads".parse().unwrap();
        let res = stack.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(
            res.extensions()
                .get::<Rejection>()
                .unwrap()
                .message()
                .contains("not scoped"),
        );
    }
}

/// Without body rules the layer needs nothing of the body: not `From<Bytes>`, not even `Body`.
#[tokio::test]
async fn without_body_rules_any_body_type_works() {
    struct Opaque;
    let svc =
        ResourceScopeLayer::new(mapper).layer(service_fn(|req: Request<Opaque>| async move {
            let _ = req.body();
            Ok::<_, Infallible>(Response::new(req.uri().to_string()))
        }));
    let mut req = Request::get("/t").body(Opaque).unwrap();
    req.extensions_mut().insert(alice());
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.into_body(), "/t?resourceId=alice");
}
