//! Behaviour of `AuthorizeLayer`, driven through `oneshot` against a counting echo service.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, Request, Response, StatusCode, header};
use serde::Deserialize;
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::reject::RejectionKind;
use crate::{AuthState, Authenticated, Privileged, Rejection};

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(flatten)]
    grants: ClaimGrants,
}

fn user(json: &str) -> Authenticated<Claims> {
    Authenticated::new(serde_json::from_str(json).unwrap())
}

fn grants_of(c: &Claims) -> &ClaimGrants {
    &c.grants
}

type Source = ClaimPermissions<fn(&Claims) -> &ClaimGrants, Claims>;

fn source() -> Source {
    ClaimPermissions::new(grants_of as fn(&Claims) -> &ClaimGrants)
        .scope()
        .permissions()
        .role("user", ["memory:read", "memory:write", "memory:delete"])
        .unwrap()
        .default_role("user")
        .unwrap()
        .imply(
            "memory:admin",
            ["memory:read", "memory:write", "memory:delete"],
        )
        .unwrap()
}

fn request(method: Method, uri: &str, who: Option<&str>) -> Request<String> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(String::new())
        .unwrap();
    match who {
        Some(json) => {
            req.extensions_mut().insert(user(json));
            req.extensions_mut().insert(AuthState::verified::<Claims>());
        }
        None => {
            req.extensions_mut().insert(AuthState::Anonymous);
        }
    }
    req
}

/// What the handler saw (`None`: it was not called) and the answer.
struct Seen {
    called: bool,
    privileged: Option<Privileged>,
    response: Response<String>,
}

async fn send<L>(layer: &L, req: Request<String>) -> Seen
where
    L: Layer<tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>>,
    L::Service: Service<Request<String>, Response = Response<String>, Error = Infallible>,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let privileged = Arc::new(std::sync::Mutex::new(None));
    let (c, p) = (Arc::clone(&calls), Arc::clone(&privileged));
    let inner = tower::util::BoxCloneSyncService::new(service_fn(move |req: Request<String>| {
        c.fetch_add(1, Ordering::SeqCst);
        *p.lock().unwrap() = req.extensions().get::<Privileged>().cloned();
        async { Ok::<_, Infallible>(Response::new("ok".to_owned())) }
    }));
    let response = layer.layer(inner).oneshot(req).await.unwrap();
    let called = calls.load(Ordering::SeqCst) == 1;
    let privileged = privileged.lock().unwrap().clone();
    Seen {
        called,
        privileged,
        response,
    }
}

const ALICE: &str = r#"{"sub":"alice"}"#;
const VIEWER: &str = r#"{"sub":"vera","scope":"memory:read"}"#;
const IDP: &str = r#"{"sub":"olga","scope":"openid email"}"#;
const ADMIN: &str = r#"{"sub":"ada","permissions":["memory:admin"]}"#;

fn derived() -> AuthorizeLayer<Source> {
    AuthorizeLayer::new(source())
        .derive_permissions("/api")
        .unwrap()
}

fn rejection(seen: &Seen) -> &Rejection {
    seen.response.extensions().get::<Rejection>().unwrap()
}

#[tokio::test]
async fn derived_permissions_follow_the_method() {
    let layer = derived();
    for (method, who, allowed) in [
        (Method::GET, ALICE, true),
        (Method::POST, ALICE, true),
        (Method::DELETE, ALICE, true),
        (Method::GET, VIEWER, true),
        (Method::HEAD, VIEWER, true),
        (Method::POST, VIEWER, false),
        (Method::PUT, VIEWER, false),
        (Method::PATCH, VIEWER, false),
        (Method::DELETE, VIEWER, false),
        (Method::GET, IDP, false),
        (Method::GET, ADMIN, true),
        (Method::DELETE, ADMIN, true),
    ] {
        let seen = send(
            &layer,
            request(method.clone(), "/api/memory/threads/t1", Some(who)),
        )
        .await;
        assert_eq!(seen.called, allowed, "{method} {who}");
        if !allowed {
            assert_eq!(seen.response.status(), StatusCode::FORBIDDEN);
            let action = match method {
                Method::GET | Method::HEAD => "read",
                Method::DELETE => "delete",
                _ => "write",
            };
            assert_eq!(
                seen.response.headers()[header::WWW_AUTHENTICATE],
                format!(
                    "Bearer error=\"insufficient_scope\", error_description=\"Missing required \
                     permission: memory:{action}\", scope=\"memory:{action}\""
                )
                .as_str()
            );
        }
    }
}

#[tokio::test]
async fn json_errors_give_mastras_rbac_body_and_grpc_gets_code_7() {
    let layer = derived().json_errors();
    let inner = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new("ok".to_owned()))
    });
    let svc = layer.layer(inner);
    let res = svc
        .clone()
        .oneshot(request(Method::POST, "/api/memory/threads", Some(VIEWER)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        &body[..],
        br#"{"error":"Forbidden","message":"Missing required permission: memory:write"}"#
    );

    let mut grpc = request(Method::POST, "/api/memory/threads", Some(VIEWER));
    grpc.headers_mut()
        .insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
    let res = svc.oneshot(grpc).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "7");
    assert_eq!(
        res.headers()["grpc-message"],
        "Missing required permission: memory:write"
    );
}

#[tokio::test]
async fn below_the_prefix_what_cannot_be_derived_is_refused_and_outside_passes() {
    let layer = derived();
    for (method, path) in [
        (Method::GET, "/api"),
        (Method::GET, "/api/"),
        (Method::OPTIONS, "/api/memory/threads"),
        (Method::TRACE, "/api/memory/threads"),
        (Method::GET, "/api//threads"),
        (Method::GET, "/api/a:b/threads"),
    ] {
        let seen = send(&layer, request(method.clone(), path, Some(ALICE))).await;
        assert!(!seen.called, "{method} {path}");
        assert_eq!(
            seen.response.status(),
            StatusCode::FORBIDDEN,
            "{method} {path}"
        );
        assert_eq!(
            rejection(&seen).message(),
            "Access denied: no authorization rule covers this route"
        );
    }
    // Not below the prefix (`/apix` is not `/api/*`): not this layer's.
    for path in ["/apix/memory", "/health", "/"] {
        let seen = send(&layer, request(Method::GET, path, Some(IDP))).await;
        assert!(seen.called, "{path}");
    }
}

#[tokio::test]
async fn without_protect_or_derive_every_path_needs_a_route() {
    let layer = AuthorizeLayer::new(source())
        .route(Some(Method::GET), "/health", Requirement::Authenticated)
        .unwrap();
    assert!(
        send(&layer, request(Method::GET, "/health", Some(IDP)))
            .await
            .called
    );
    let seen = send(&layer, request(Method::POST, "/health", Some(ALICE))).await;
    assert_eq!(seen.response.status(), StatusCode::FORBIDDEN);
    assert!(
        !send(&layer, request(Method::GET, "/anything", Some(ALICE)))
            .await
            .called
    );

    // `protect` narrows what must be covered.
    let layer = AuthorizeLayer::new(source()).protect("/admin/*").unwrap();
    assert!(
        send(&layer, request(Method::GET, "/public", Some(IDP)))
            .await
            .called
    );
    assert!(
        !send(&layer, request(Method::GET, "/admin/users", Some(ALICE)))
            .await
            .called
    );
}

#[tokio::test]
async fn explicit_routes_win_in_order_with_all_of_and_any_of() {
    let layer = derived()
        .route(
            Some(Method::POST),
            "/api/memory/threads/:id/transfer",
            Requirement::all_of(["memory:write", "memory:transfer"]).unwrap(),
        )
        .unwrap()
        .route(
            None,
            "/api/reports/*",
            Requirement::any_of(["reports:read", "memory:admin"]).unwrap(),
        )
        .unwrap();
    // alice (role user) has memory:write but not memory:transfer.
    let seen = send(
        &layer,
        request(Method::POST, "/api/memory/threads/t/transfer", Some(ALICE)),
    )
    .await;
    assert!(!seen.called);
    assert_eq!(
        rejection(&seen).scope(),
        Some("memory:write memory:transfer")
    );
    assert_eq!(
        rejection(&seen).detail(),
        Some("Missing required permission: memory:transfer")
    );
    let both = r#"{"sub":"t","permissions":["memory:write","memory:transfer"]}"#;
    assert!(
        send(
            &layer,
            request(Method::POST, "/api/memory/threads/t/transfer", Some(both))
        )
        .await
        .called
    );
    // any_of: the admin holds one of them; the viewer none.
    assert!(
        send(&layer, request(Method::GET, "/api/reports/x", Some(ADMIN)))
            .await
            .called
    );
    let seen = send(&layer, request(Method::GET, "/api/reports/x", Some(VIEWER))).await;
    assert!(!seen.called);
    assert_eq!(
        rejection(&seen).detail(),
        Some("Missing required permission: reports:read or memory:admin")
    );
    assert_eq!(rejection(&seen).scope(), Some("reports:read memory:admin"));
}

#[tokio::test]
async fn grpc_methods_have_their_own_permission() {
    let layer = AuthorizeLayer::new(source())
        .grpc_method(
            "/memory.v1.Memory/DeleteThread",
            Requirement::all_of(["memory:delete"]).unwrap(),
        )
        .unwrap()
        .grpc_method(
            "/memory.v1.Memory/GetThread",
            Requirement::all_of(["memory:read"]).unwrap(),
        )
        .unwrap();
    assert!(
        AuthorizeLayer::new(source())
            .grpc_method("/memory.v1.Memory/*", Requirement::Authenticated)
            .is_err()
    );
    let viewer = |path: &str| request(Method::POST, path, Some(VIEWER));
    assert!(
        send(&layer, viewer("/memory.v1.Memory/GetThread"))
            .await
            .called
    );
    assert!(
        !send(&layer, viewer("/memory.v1.Memory/DeleteThread"))
            .await
            .called
    );
    // A method nobody described: refused, not passed.
    assert!(
        !send(&layer, viewer("/memory.v1.Memory/ListThreads"))
            .await
            .called
    );
}

#[tokio::test]
async fn custom_derivation_replaces_mastras() {
    let layer = AuthorizeLayer::new(source())
        .protect("/v2/*")
        .unwrap()
        .derive_with(|method, path| {
            let kind = path.strip_prefix("/v2/")?.split('/').next()?;
            if kind == "bad" {
                return Some("not a permission".to_owned());
            }
            Some(format!(
                "{kind}:{}",
                if method == Method::GET {
                    "read"
                } else {
                    "write"
                }
            ))
        });
    assert!(
        send(&layer, request(Method::GET, "/v2/memory/x", Some(VIEWER)))
            .await
            .called
    );
    assert!(
        !send(&layer, request(Method::POST, "/v2/memory/x", Some(VIEWER)))
            .await
            .called
    );
    // A derived string that is not a permission is refused.
    let seen = send(&layer, request(Method::GET, "/v2/bad/x", Some(ALICE))).await;
    assert!(!seen.called);
    assert_eq!(seen.response.status(), StatusCode::FORBIDDEN);
    // Outside the protected paths: not this layer's.
    assert!(
        send(&layer, request(Method::GET, "/v1/memory", Some(IDP)))
            .await
            .called
    );
}

#[tokio::test]
async fn rules_first_match_wins_default_deny_and_panics_count_as_false() {
    let layer = derived()
        .rule(Rule::deny().path("/api/memory/threads/locked").unwrap())
        .rule(Rule::allow().methods([Method::GET]))
        .rule(Rule::allow().when(|c: &Claims| c.sub == "alice"))
        .rule(Rule::allow().when(|_: &Claims| panic!("condition bug")));
    // Deny first.
    let seen = send(
        &layer,
        request(Method::GET, "/api/memory/threads/locked", Some(ALICE)),
    )
    .await;
    assert!(!seen.called);
    assert_eq!(rejection(&seen).message(), "Access denied");
    assert!(
        send(
            &layer,
            request(Method::GET, "/api/memory/threads", Some(VIEWER))
        )
        .await
        .called
    );
    assert!(
        send(
            &layer,
            request(Method::POST, "/api/memory/threads", Some(ALICE))
        )
        .await
        .called
    );
    // bob: no rule matches (the panicking one counts as false): deny.
    let bob = r#"{"sub":"bob"}"#;
    let seen = send(
        &layer,
        request(Method::POST, "/api/memory/threads", Some(bob)),
    )
    .await;
    assert!(!seen.called);
    assert_eq!(rejection(&seen).kind(), RejectionKind::Forbidden);
    // A rule's allow does not lift the permission check.
    assert!(
        !send(
            &layer,
            request(Method::POST, "/api/memory/threads", Some(VIEWER))
        )
        .await
        .called
    );
}

#[tokio::test]
async fn the_policy_hook_decides_last_and_never_fails_open() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = |answer: &'static str| {
        let calls = Arc::clone(&calls);
        derived().policy(move |head: RequestHead<'_>, user: &Authenticated<Claims>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let path = head.uri().path().to_owned();
            let sub = user.sub.clone();
            if answer == "panic-now" {
                panic!("hook bug");
            }
            async move {
                match answer {
                    "allow" => Ok(path.starts_with("/api/") && sub == "alice"),
                    "unavailable" => Err(PolicyError::Unavailable),
                    "failed" => Err(PolicyError::Failed("db said no: password=hunter2".into())),
                    _ => panic!("hook bug in the future"),
                }
            }
        })
    };
    let allow = layer("allow");
    assert!(
        send(
            &allow,
            request(Method::GET, "/api/memory/threads", Some(ALICE))
        )
        .await
        .called
    );
    let seen = send(
        &allow,
        request(Method::GET, "/api/memory/threads", Some(r#"{"sub":"bob"}"#)),
    )
    .await;
    assert!(!seen.called);
    assert_eq!(seen.response.status(), StatusCode::FORBIDDEN);
    assert_eq!(rejection(&seen).message(), "Access denied");
    // The hook is not asked about a request the permissions refused already.
    let before = calls.load(Ordering::SeqCst);
    send(
        &allow,
        request(Method::POST, "/api/memory/threads", Some(VIEWER)),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), before);

    let seen = send(
        &layer("unavailable"),
        request(Method::GET, "/api/memory/threads", Some(ALICE)),
    )
    .await;
    assert!(!seen.called);
    assert_eq!(seen.response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.response.headers()[header::RETRY_AFTER], "5");
    for answer in ["failed", "panic-now", "panic-later"] {
        let seen = send(
            &layer(answer),
            request(Method::GET, "/api/memory/threads", Some(ALICE)),
        )
        .await;
        assert!(!seen.called, "{answer}");
        assert_eq!(
            seen.response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{answer}"
        );
        assert_eq!(rejection(&seen).message(), "Authorization error");
        assert!(!format!("{:?}", rejection(&seen)).contains("hunter2"));
    }
}

#[tokio::test]
async fn without_a_verified_user_nothing_passes_but_public_paths() {
    let layer = derived();
    let seen = send(&layer, request(Method::GET, "/api/memory/threads", None)).await;
    assert!(!seen.called);
    assert_eq!(seen.response.status(), StatusCode::UNAUTHORIZED);
    // No authentication layer at all: a wiring error, refused.
    let bare = Request::get("/api/memory/threads")
        .body(String::new())
        .unwrap();
    let seen = send(&layer, bare).await;
    assert!(!seen.called);
    assert_eq!(seen.response.status(), StatusCode::FORBIDDEN);
    // Another user type than the layer's.
    let mut other = Request::get("/api/memory/threads")
        .body(String::new())
        .unwrap();
    other
        .extensions_mut()
        .insert(Authenticated::new("alice".to_owned()));
    other
        .extensions_mut()
        .insert(AuthState::verified::<String>());
    assert!(!send(&layer, other).await.called);
    // A client header cannot make a request public.
    let mut forged = request(Method::GET, "/api/memory/threads", None);
    forged
        .headers_mut()
        .insert("x-auth-state", "public_path".parse().unwrap());
    assert!(!send(&layer, forged).await.called);
    // What auth declared public stays public.
    let mut public = Request::get("/api/memory/threads")
        .body(String::new())
        .unwrap();
    public.extensions_mut().insert(AuthState::PublicPath);
    assert!(send(&layer, public).await.called);
}

#[tokio::test]
async fn privilege_marks_only_holders_on_configured_methods() {
    let layer = derived().privileged(Privilege::new().methods([Method::GET]));
    let seen = send(
        &layer,
        request(Method::GET, "/api/memory/threads", Some(ADMIN)),
    )
    .await;
    assert_eq!(seen.privileged, Some(Privileged::any("memory:admin")));
    // HEAD is GET.
    let seen = send(
        &layer,
        request(Method::HEAD, "/api/memory/threads", Some(ADMIN)),
    )
    .await;
    assert!(seen.privileged.is_some());
    for (method, who) in [
        (Method::POST, ADMIN),
        (Method::DELETE, ADMIN),
        (Method::GET, ALICE),
        (Method::GET, VIEWER),
    ] {
        let seen = send(
            &layer,
            request(method.clone(), "/api/memory/threads", Some(who)),
        )
        .await;
        assert!(seen.called, "{method} {who}");
        assert_eq!(seen.privileged, None, "{method} {who}");
    }
    // `*` holds every permission, the privileged one included.
    let root = r#"{"sub":"root","permissions":["*"]}"#;
    assert!(
        send(
            &layer,
            request(Method::GET, "/api/memory/threads", Some(root))
        )
        .await
        .privileged
        .is_some()
    );
    // A privilege limited to a path.
    let layer = derived().privileged(Privilege::new().path("/api/memory/threads").unwrap());
    assert!(
        send(
            &layer,
            request(Method::GET, "/api/memory/threads/t", Some(ADMIN))
        )
        .await
        .privileged
        .is_none()
    );
}

#[tokio::test]
async fn approval_marks_the_one_named_resource() {
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&asked);
    let layer = derived().approve_resource(
        move |user: &Authenticated<Claims>, requested: &crate::ResourceId| {
            log.lock()
                .unwrap()
                .push(format!("{}->{requested}", user.sub));
            let ok = requested.as_str() == "team-a" && user.sub == "alice";
            let boom = requested.as_str() == "boom";
            async move {
                assert!(!boom, "approval hook bug");
                ok
            }
        },
    );
    let seen = send(
        &layer,
        request(
            Method::GET,
            "/api/memory/threads?resourceId=team-a",
            Some(ALICE),
        ),
    )
    .await;
    assert_eq!(
        seen.privileged,
        Some(Privileged::approved(
            crate::ResourceId::new("team-a").unwrap()
        ))
    );
    // Not approved: goes on unmarked (the scope layer then forces the caller's id).
    for uri in [
        "/api/memory/threads?resourceId=team-b",
        "/api/memory/threads?resourceId=boom",
        "/api/memory/threads?resourceId=team-a&resourceId=team-b",
        "/api/memory/threads",
    ] {
        let seen = send(&layer, request(Method::GET, uri, Some(ALICE))).await;
        assert!(seen.called, "{uri}");
        assert_eq!(seen.privileged, None, "{uri}");
    }
    let seen = send(
        &layer,
        request(
            Method::GET,
            "/api/memory/threads?resourceId=team-a",
            Some(r#"{"sub":"bob"}"#),
        ),
    )
    .await;
    assert_eq!(seen.privileged, None);
    assert_eq!(
        *asked.lock().unwrap(),
        [
            "alice->team-a",
            "alice->team-b",
            "alice->boom",
            "bob->team-a"
        ]
    );
}
