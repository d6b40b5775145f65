//! Conformance of the authorization layer: Mastra's wildcard semantics case by case, the
//! claim shapes of the common identity providers, and privileged / approved cross-resource
//! access through the real scope and guard layers (in-memory thread store), audited in the log.
#![cfg(all(feature = "authz", feature = "guard", feature = "log"))]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_scope::authz::{
    AuthorizeLayer, ClaimGrants, ClaimPermissions, PermissionSource, Privilege, permission_matches,
};
use tower_scope::guard::MemoryThreadStore;
use tower_scope::{
    ActingAs, ActingVia, AuthState, Authenticated, LogLayer, ResourceId, ResourceScopeLayer,
    ThreadId, mastra,
};

// ---- wildcards --------------------------------------------------------------------------------

#[test]
fn wildcards_follow_mastras_matches_permission_case_by_case() {
    // (granted, required, satisfied)
    let table = [
        ("*", "memory:read", true),
        ("*", "anything", true),
        ("memory:read", "memory:read", true),
        ("memory:read", "memory:write", false),
        ("memory:read", "Memory:read", false), // case-sensitive
        ("memory:*", "memory:read", true),
        ("memory:*", "memory:delete", true),
        ("memory:*", "agents:read", false),
        ("*:read", "memory:read", true),
        ("*:read", "agents:read", true),
        ("*:read", "memory:write", false),
        ("*:*", "memory:write", true),
        // A permission without an id covers every id of it.
        ("memory:read", "memory:read:t1", true),
        ("memory:*", "memory:read:t1", true),
        // An id-scoped grant covers only that id.
        ("memory:read:t1", "memory:read:t1", true),
        ("memory:read:t1", "memory:read:t2", false),
        ("memory:read:t1", "memory:read", false),
        // Stricter than Mastra: the id is everything after the second colon.
        ("a:b:c:x", "a:b:c:y", false),
        ("a:b:c:x", "a:b:c:x", true),
        // Wildcards stand for whole parts only.
        ("mem*:read", "memory:read", false),
        ("memory:re*", "memory:read", false),
        // A required string without an action: exact or `*` only.
        ("memory:*", "memory", false),
        ("memory", "memory", true),
        ("*", "memory", true),
        // Grants that are not permissions satisfy nothing but themselves.
        ("", "memory:read", false),
        ("memory", "memory:read", false),
        ("openid", "memory:read", false),
    ];
    for (granted, required, satisfied) in table {
        assert_eq!(
            permission_matches(granted, required),
            satisfied,
            "{granted:?} satisfies {required:?}"
        );
    }
}

// ---- claim shapes -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(flatten)]
    grants: ClaimGrants,
}

fn claims(json: &str) -> Claims {
    serde_json::from_str(json).unwrap()
}

fn holds<G: PermissionSource<User = Claims>>(source: &G, json: &str, required: &str) -> bool {
    source.any_granted(&claims(json), &mut |g| permission_matches(g, required))
}

fn grants_of(c: &Claims) -> &ClaimGrants {
    &c.grants
}

#[test]
fn rfc_9068_scope_is_space_delimited_and_scp_is_an_array() {
    let scope = ClaimPermissions::new(grants_of).scope();
    assert!(holds(
        &scope,
        r#"{"sub":"a","scope":"openid memory:read  email"}"#,
        "memory:read"
    ));
    assert!(!holds(
        &scope,
        r#"{"sub":"a","scope":"openid memory:read"}"#,
        "memory:write"
    ));
    // One permission spelled with a space is two tokens, neither of which is it.
    assert!(!holds(
        &scope,
        r#"{"sub":"a","scope":"memory :read"}"#,
        "memory:read"
    ));
    // Lenient on shape: an array is accepted for `scope` too.
    assert!(holds(
        &scope,
        r#"{"sub":"a","scope":["memory:read"]}"#,
        "memory:read"
    ));
    // `scp` is not honored unless asked for.
    assert!(!holds(
        &scope,
        r#"{"sub":"a","scp":["memory:read"]}"#,
        "memory:read"
    ));
    let scp = ClaimPermissions::new(grants_of).scp();
    assert!(holds(
        &scp,
        r#"{"sub":"a","scp":["memory:read","x"]}"#,
        "memory:read"
    ));
    assert!(holds(
        &scp,
        r#"{"sub":"a","scp":"x memory:read"}"#,
        "memory:read"
    ));
    // A claim of the wrong type does not parse: the token is refused, not read as empty.
    assert!(serde_json::from_str::<Claims>(r#"{"sub":"a","scope":5}"#).is_err());
    assert!(serde_json::from_str::<Claims>(r#"{"sub":"a","permissions":[1]}"#).is_err());
}

#[test]
fn auth0_permissions_and_role_maps() {
    let source = ClaimPermissions::new(grants_of)
        .permissions()
        .roles()
        .role("editor", ["memory:read", "memory:write"])
        .unwrap();
    assert!(holds(
        &source,
        r#"{"sub":"a","permissions":["memory:delete"]}"#,
        "memory:delete"
    ));
    assert!(holds(
        &source,
        r#"{"sub":"a","roles":["editor"]}"#,
        "memory:write"
    ));
    assert!(!holds(
        &source,
        r#"{"sub":"a","roles":["editor"]}"#,
        "memory:delete"
    ));
    // A role name is never a permission by itself.
    assert!(!holds(
        &source,
        r#"{"sub":"a","roles":["memory:delete"]}"#,
        "memory:delete"
    ));
    assert!(!holds(
        &source,
        r#"{"sub":"a","roles":["unknown"]}"#,
        "memory:read"
    ));
    // Invalid permissions in the configuration are refused when built.
    assert!(
        ClaimPermissions::new(grants_of)
            .role("r", ["not a permission"])
            .is_err()
    );
    assert!(
        ClaimPermissions::new(grants_of)
            .default_role("missing")
            .is_err()
    );
}

#[test]
fn keycloak_client_roles_never_satisfy_another_clients_requirement() {
    let source = ClaimPermissions::new(grants_of)
        .realm_roles()
        .role("admin", ["memory:*"])
        .unwrap()
        .client_roles("memory-api")
        .client_role("memory-api", "editor", ["memory:write"])
        .unwrap();
    let realm = r#"{"sub":"a","realm_access":{"roles":["admin"]}}"#;
    assert!(holds(&source, realm, "memory:delete"));
    // The same role name as a client role of an unnamed client grants nothing …
    let other = r#"{"sub":"a","resource_access":{"other-app":{"roles":["admin","editor","memory:write"]}}}"#;
    for wanted in ["memory:delete", "memory:write", "memory:read"] {
        assert!(!holds(&source, other, wanted), "{wanted}");
    }
    // … while the named client's roles count, as permissions and through its map.
    let mine = r#"{"sub":"a","resource_access":{"memory-api":{"roles":["editor","memory:read"]}}}"#;
    assert!(holds(&source, mine, "memory:write"));
    assert!(holds(&source, mine, "memory:read"));
    assert!(!holds(&source, mine, "memory:delete"));
    // A client role named like a realm role does not pick up the realm role's grants.
    let client_admin = r#"{"sub":"a","resource_access":{"memory-api":{"roles":["admin"]}}}"#;
    assert!(!holds(&source, client_admin, "memory:delete"));
    // Realm roles are not read as client roles either.
    let realm_editor = r#"{"sub":"a","realm_access":{"roles":["editor"]}}"#;
    assert!(!holds(&source, realm_editor, "memory:write"));
}

#[test]
fn the_default_role_is_for_tokens_that_list_nothing() {
    let source = ClaimPermissions::new(grants_of)
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
        .unwrap();
    assert!(holds(&source, r#"{"sub":"a"}"#, "memory:delete"));
    // Listing anything — even nothing — replaces the default role.
    for json in [
        r#"{"sub":"a","scope":""}"#,
        r#"{"sub":"a","scope":"openid email"}"#,
        r#"{"sub":"a","permissions":[]}"#,
    ] {
        assert!(!holds(&source, json, "memory:read"), "{json}");
    }
    // Both claims are honored, united.
    let both = r#"{"sub":"a","scope":"memory:read","permissions":["memory:delete"]}"#;
    assert!(holds(&source, both, "memory:read"));
    assert!(holds(&source, both, "memory:delete"));
    assert!(!holds(&source, both, "memory:write"));
    // Implications: one level, from what the token lists.
    let admin = r#"{"sub":"a","permissions":["memory:admin"]}"#;
    for wanted in [
        "memory:read",
        "memory:write",
        "memory:delete",
        "memory:admin",
    ] {
        assert!(holds(&source, admin, wanted), "{wanted}");
    }
    assert!(!holds(&source, admin, "agents:read"));
}

// ---- privileged and approved access through scope and guard ----------------------------------

/// What the handler saw: the resource in force, what it acts as, and the query it got.
#[derive(Debug, Default, Clone)]
struct Saw {
    resource: Option<String>,
    acting: Option<ActingAs>,
    uri: String,
    thread: Option<String>,
}

type Svc = tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<String>, Infallible>;

fn stack(store: MemoryThreadStore, seen: Arc<Mutex<Option<Saw>>>, approve: bool) -> Svc {
    let source = ClaimPermissions::new(grants_of as fn(&Claims) -> &ClaimGrants)
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
        .unwrap();
    let mut authz = AuthorizeLayer::new(source)
        .derive_permissions("/api")
        .unwrap()
        .privileged(Privilege::new().methods([Method::GET]));
    if approve {
        // Alice may act on her team's resource.
        authz = authz.approve_resource(|user: &Authenticated<Claims>, requested: &ResourceId| {
            let ok = user.sub == "alice" && requested.as_str() == "team";
            async move { ok }
        });
    }
    let handler = service_fn(move |req: Request<Full<Bytes>>| {
        let saw = Saw {
            resource: req
                .extensions()
                .get::<ResourceId>()
                .map(ToString::to_string),
            acting: req.extensions().get::<ActingAs>().cloned(),
            uri: req.uri().to_string(),
            thread: req.extensions().get::<ThreadId>().map(ToString::to_string),
        };
        *seen.lock().unwrap() = Some(saw);
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    });
    let svc = ServiceBuilder::new()
        .layer(LogLayer::new().user(|c: &Claims| c.sub.clone()))
        .layer(authz)
        .layer(
            ResourceScopeLayer::new(|c: &Claims| Some(c.sub.clone()))
                .headers(["x-resource-id"])
                .unwrap(),
        )
        .layer(mastra::memory_guard(store, "/api").unwrap())
        .service(handler);
    tower::util::BoxCloneSyncService::new(svc.map_response(|r| r.map(|_| String::new())))
}

fn store() -> MemoryThreadStore {
    let store = MemoryThreadStore::new();
    for (thread, owner) in [("t-alice", "alice"), ("t-bob", "bob"), ("t-team", "team")] {
        store.insert_thread(
            ThreadId::new(thread).unwrap(),
            Some(ResourceId::new(owner).unwrap()),
        );
    }
    store.insert_message(
        tower_scope::MessageId::new("m-bob").unwrap(),
        Some(ThreadId::new("t-bob").unwrap()),
    );
    store
}

fn as_user(method: Method, uri: &str, json: &str) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::new()))
        .unwrap();
    req.extensions_mut()
        .insert(Authenticated::new(claims(json)));
    req.extensions_mut().insert(AuthState::verified::<Claims>());
    req
}

const ALICE: &str = r#"{"sub":"alice"}"#;
const ADMIN: &str = r#"{"sub":"ada","permissions":["memory:admin"]}"#;
const VIEWER: &str = r#"{"sub":"vera","scope":"memory:read"}"#;

async fn call(
    svc: &Svc,
    seen: &Arc<Mutex<Option<Saw>>>,
    req: Request<Full<Bytes>>,
) -> (StatusCode, Option<Saw>) {
    *seen.lock().unwrap() = None;
    let status = svc.clone().oneshot(req).await.unwrap().status();
    (status, seen.lock().unwrap().clone())
}

#[tokio::test]
async fn an_admin_lists_any_resource_by_name_and_everyone_else_stays_scoped() {
    let seen = Arc::new(Mutex::new(None));
    let svc = stack(store(), Arc::clone(&seen), false);
    let (status, saw) = call(
        &svc,
        &seen,
        as_user(Method::GET, "/api/memory/threads?resourceId=bob", ADMIN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let saw = saw.unwrap();
    assert_eq!(saw.resource.as_deref(), Some("bob"));
    assert_eq!(saw.uri, "/api/memory/threads?resourceId=bob");
    assert_eq!(
        saw.acting,
        Some(ActingAs {
            resource: ResourceId::new("bob").unwrap(),
            via: ActingVia::Privilege
        })
    );
    // Naming nothing: the admin's own.
    let (_, saw) = call(
        &svc,
        &seen,
        as_user(Method::GET, "/api/memory/threads", ADMIN),
    )
    .await;
    assert_eq!(saw.unwrap().resource.as_deref(), Some("ada"));
    // Alice and the viewer naming bob are forced to their own, as before.
    for who in [ALICE, VIEWER] {
        let (status, saw) = call(
            &svc,
            &seen,
            as_user(Method::GET, "/api/memory/threads?resourceId=bob", who),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let saw = saw.unwrap();
        assert_ne!(saw.resource.as_deref(), Some("bob"));
        assert!(!saw.uri.contains("bob"), "{}", saw.uri);
        assert_eq!(saw.acting, None);
    }
}

#[tokio::test]
async fn an_ambiguous_or_invalid_resource_for_an_admin_is_400_never_a_guess() {
    let seen = Arc::new(Mutex::new(None));
    let svc = stack(store(), Arc::clone(&seen), false);
    for uri in [
        "/api/memory/threads?resourceId=bob&resourceId=alice",
        "/api/memory/threads?resourceId=bob&resourceId=%62ob%20",
        "/api/memory/threads?resourceId=%00",
        "/api/memory/threads?resourceId=%ff",
    ] {
        let (status, saw) = call(&svc, &seen, as_user(Method::GET, uri, ADMIN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(saw.is_none(), "{uri}");
    }
    // The header and the query disagreeing.
    let mut req = as_user(Method::GET, "/api/memory/threads?resourceId=bob", ADMIN);
    req.headers_mut()
        .insert("x-resource-id", "alice".parse().unwrap());
    assert_eq!(call(&svc, &seen, req).await.0, StatusCode::BAD_REQUEST);
    // The same id spelled twice is one id.
    let (status, saw) = call(
        &svc,
        &seen,
        as_user(
            Method::GET,
            "/api/memory/threads?resourceId=bob&resourceId=b%6Fb",
            ADMIN,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let saw = saw.unwrap();
    assert_eq!(saw.resource.as_deref(), Some("bob"));
    assert_eq!(saw.uri, "/api/memory/threads?resourceId=bob");
}

#[tokio::test]
async fn an_admin_reads_another_resources_thread_by_path_but_cannot_write_it() {
    let seen = Arc::new(Mutex::new(None));
    let svc = stack(store(), Arc::clone(&seen), false);
    for uri in [
        "/api/memory/threads/t-bob",
        "/api/memory/threads/t-bob/messages",
    ] {
        let (status, saw) = call(&svc, &seen, as_user(Method::GET, uri, ADMIN)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let saw = saw.unwrap();
        // The handler serves the thread's owner: what the guard decided on.
        assert_eq!(saw.resource.as_deref(), Some("bob"));
        assert_eq!(saw.thread.as_deref(), Some("t-bob"));
        assert_eq!(saw.acting.unwrap().resource.as_str(), "bob");
    }
    for method in [Method::PATCH, Method::DELETE] {
        let (status, saw) = call(
            &svc,
            &seen,
            as_user(method.clone(), "/api/memory/threads/t-bob", ADMIN),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
        assert!(saw.is_none());
    }
    // A missing thread is still 404; alice still cannot read bob's.
    assert_eq!(
        call(
            &svc,
            &seen,
            as_user(Method::GET, "/api/memory/threads/nope", ADMIN)
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(
            &svc,
            &seen,
            as_user(Method::GET, "/api/memory/threads/t-bob", ALICE)
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // Deleting bob's messages is a write: the admin is refused.
    let mut req = as_user(Method::POST, "/api/memory/messages/delete", ADMIN);
    *req.body_mut() = Full::new(Bytes::from_static(br#"{"messageIds":["m1"]}"#));
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    let (_, saw) = call(&svc, &seen, req).await;
    assert!(saw.is_none_or(|s| s.resource.as_deref() == Some("ada")));
}

#[tokio::test]
async fn an_approved_shared_resource_opens_that_resource_only() {
    let seen = Arc::new(Mutex::new(None));
    let svc = stack(store(), Arc::clone(&seen), true);
    let (status, saw) = call(
        &svc,
        &seen,
        as_user(Method::GET, "/api/memory/threads?resourceId=team", ALICE),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let saw = saw.unwrap();
    assert_eq!(saw.resource.as_deref(), Some("team"));
    assert_eq!(saw.acting.unwrap().via, ActingVia::Approval);
    // The team's thread, named with the team's resource, passes the guard as the team.
    let (status, saw) = call(
        &svc,
        &seen,
        as_user(
            Method::GET,
            "/api/memory/threads/t-team?resourceId=team",
            ALICE,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(saw.unwrap().resource.as_deref(), Some("team"));
    // Approval for the team does not open bob's thread, nor bob's listing.
    let (status, _) = call(
        &svc,
        &seen,
        as_user(
            Method::GET,
            "/api/memory/threads/t-bob?resourceId=team",
            ALICE,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, saw) = call(
        &svc,
        &seen,
        as_user(Method::GET, "/api/memory/threads?resourceId=bob", ALICE),
    )
    .await;
    assert_eq!(saw.unwrap().resource.as_deref(), Some("alice"));
    // Bob is not approved for the team.
    let (_, saw) = call(
        &svc,
        &seen,
        as_user(
            Method::GET,
            "/api/memory/threads?resourceId=team",
            r#"{"sub":"bob"}"#,
        ),
    )
    .await;
    assert_eq!(saw.unwrap().resource.as_deref(), Some("bob"));
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn privileged_requests_are_logged_with_their_own_fields() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let seen = Arc::new(Mutex::new(None));
    let svc = stack(store(), Arc::clone(&seen), false);
    call(
        &svc,
        &seen,
        as_user(Method::GET, "/api/memory/threads/t-bob", ADMIN),
    )
    .await;
    call(
        &svc,
        &seen,
        as_user(Method::GET, "/api/memory/threads/t-alice", ALICE),
    )
    .await;
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains(r#"user="ada""#), "{}", lines[0]);
    assert!(lines[0].contains("privileged=true"), "{}", lines[0]);
    assert!(
        lines[0].contains(r#"privilege="memory:admin""#),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(r#"acting_as="bob""#), "{}", lines[0]);
    assert!(
        lines[0].contains(r#"acting_via="privilege""#),
        "{}",
        lines[0]
    );
    assert!(!lines[1].contains("privileged"), "{}", lines[1]);
    assert!(!lines[1].contains("acting_as"), "{}", lines[1]);
}
