//! The memory server's application: Mastra's memory API on SQL, behind the tower-scope stack.
//!
//! Two lines of defence, and the handlers are the second one:
//!
//! 1. The layers refuse early, on a snapshot: no token, a forged `resourceId`, another user's
//!    thread or message id. Cheap, and the handler never sees those requests.
//! 2. Every handler write is owner-conditional ([`ThreadWrites`]): the store checks the owner
//!    in the same statement or transaction that writes. Between the guard's look and the
//!    write another user may create, delete or recreate the same client-chosen id; the store
//!    refuses then (403 / 404, as the guard would), so no one takes over, cross-writes or
//!    deletes another user's thread or message. Reads are filtered by owner too.
//!
//! Handlers take the caller's resource from the request extensions ([`Caller`], set by
//! `ResourceScopeLayer`), never from the body or query. Every refusal is Mastra's JSON shape
//! `{"error": "..."}`: bodies and queries go through [`Body`] and [`Params`], whose rejections
//! are 400 `Invalid request body` / `Invalid query parameters` (with `issues`) and 413
//! `Request body too large` over the one body limit, [`DEFAULT_MAX_BODY`] (4.5 MB, Mastra's
//! default), which the guard and axum share.
#![allow(dead_code)]

#[path = "agent.rs"]
pub mod agent;
#[path = "memory.rs"]
mod memory;
#[path = "page.rs"]
mod page;
#[allow(unused_imports)] // main.rs uses both; the tests only `create_schema`
pub use memory::{WorkingMemoryScope, create_schema};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};
use tower::ServiceBuilder;
use tower_scope::auth::BearerAuth;
use tower_scope::authz::{
    Authorize, AuthorizeLayer, ClaimGrants, ClaimPermissions, NoPolicy, Privilege, Requirement,
};
use tower_scope::cors::Cors;
use tower_scope::guard::ThreadGuard;
use tower_scope::guard::{DEFAULT_MAX_BODY, GuardError, SqlThreadStore, StoreError};
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
use tower_scope::log::Log;
use tower_scope::reject::JsonErrors;
use tower_scope::scope::{BodyRules, ResolveResource, ResourceScope};
use tower_scope::{
    Authenticated, BearerAuthLayer, ConfigError, JsonErrorLayer, LogLayer, Rejection,
    RejectionKind, ResourceId, ResourceScopeLayer, ThreadId, mastra,
};

/// The claims the server accepts: `sub`, an optional `org_id` for org-scoped resources, and
/// the grant claims (`scope`, `permissions`) that [`permissions`] reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// `scope` (space-delimited) and `permissions` (array), both honored, united.
    #[serde(flatten)]
    pub grants: ClaimGrants,
}

impl Claims {
    /// A first-party user token's claims: no grant claims, so the `user` role.
    pub fn user(sub: &str, exp: u64) -> Self {
        Self {
            sub: sub.to_owned(),
            org_id: None,
            exp,
            iss: None,
            aud: None,
            grants: ClaimGrants::default(),
        }
    }
}

/// The memory permissions, derived from the routes (`memory:read` for GET, `memory:write`
/// for POST/PATCH, `memory:delete` for DELETE).
pub const MEMORY_PERMISSIONS: [&str; 3] = ["memory:read", "memory:write", "memory:delete"];

fn grants_of(claims: &Claims) -> &ClaimGrants {
    &claims.grants
}

/// Where the permissions come from, as a type the stack's name can mention.
pub type Permissions = ClaimPermissions<fn(&Claims) -> &ClaimGrants, Claims>;

/// What the agent routes need besides the memory permissions: `GET /api/agents` is
/// `agents:read`, running an agent `agents:write`.
pub const AGENT_PERMISSIONS: [&str; 2] = ["agents:read", "agents:write"];

/// The permission model:
///
/// - a token with neither `scope` nor `permissions` is a first-party user token: the role
///   `user` = `memory:read memory:write memory:delete` on its own data, plus
///   `agents:read agents:write` to chat with the agent;
/// - a token with either gets exactly what it lists (`scope: "memory:read"` is read-only;
///   `scope: "openid email"` reaches no memory route);
/// - `memory:admin` implies read, write and delete on its own data, and read access to every
///   resource (the [`Privilege`] below: GET only).
pub fn permissions() -> Result<Permissions, ConfigError> {
    ClaimPermissions::new(grants_of as fn(&Claims) -> &ClaimGrants)
        .scope()
        .permissions()
        .role("user", MEMORY_PERMISSIONS)?
        .role("user", AGENT_PERMISSIONS)?
        .default_role("user")?
        .imply("memory:admin", MEMORY_PERMISSIONS)
}

/// The authorization layer: permissions derived below `/api` (every route there needs one),
/// and `memory:admin`'s read-only access to every resource. Running the agent saves into the
/// thread, so it needs `memory:write` too; the seeds' chat route is a memory write.
pub fn authorization() -> Result<AuthorizeLayer<Permissions>, ConfigError> {
    let run_agent = Requirement::all_of(["agents:write", "memory:write"])?;
    Ok(AuthorizeLayer::new(permissions()?)
        .route(Some(Method::POST), "/api/agents/:agentId/*", run_agent)?
        .route(
            Some(Method::POST),
            "/api/chat",
            Requirement::all_of(["memory:write"])?,
        )?
        .derive_permissions("/api")?
        .privileged(Privilege::new().methods([Method::GET])))
}

/// Resource id = `sub`, or `{org_id}:{sub}` when the token names an organisation.
pub fn resource_of(claims: &Claims) -> Option<String> {
    Some(match &claims.org_id {
        Some(org) => format!("{org}:{}", claims.sub),
        None => claims.sub.clone(),
    })
}

/// How the server is configured (from the environment in `main.rs`).
#[derive(Clone)]
pub struct Settings {
    pub jwt_secret: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub cors_origins: Vec<String>,
    /// The server's public URL (RFC 9728 `resource`): when set, the server describes itself at
    /// `/.well-known/oauth-protected-resource` and names that document in every challenge.
    pub public_url: Option<String>,
    /// Dev mode: the dev users and their tokens, offered by the browser page at `/` through
    /// `GET /dev/tokens` (a route that exists only when this is non-empty). `main.rs` fills it
    /// only when it generated the secret itself.
    pub dev_tokens: Vec<(String, String)>,
}

/// The secret and the dev tokens stay out of `Debug` output.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dev_users: Vec<&str> = self.dev_tokens.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("Settings")
            .field("jwt_secret", &"<redacted>")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("cors_origins", &self.cors_origins)
            .field("dev_users", &dev_users)
            .finish()
    }
}

/// Builds the full stack: JSON errors -> log -> CORS -> auth -> authorization -> scope ->
/// guard -> handlers.
pub fn app(store: SqlThreadStore, settings: &Settings) -> Result<Router, ConfigError> {
    let mut auth = JwtAuthenticator::<Claims>::builder().key(JwtKey::hmac(
        Algorithm::HS256,
        settings.jwt_secret.as_bytes(),
    ));
    if let Some(issuer) = &settings.issuer {
        auth = auth.issuer(issuer.clone());
    }
    if let Some(audience) = &settings.audience {
        auth = auth.audience(audience.clone());
    }
    let auth = auth.build()?;
    let metadata = match &settings.public_url {
        Some(url) => Some(
            tower_scope::auth::ProtectedResourceMetadata::new(url)?
                .authorization_servers(auth.issuers())?
                .scopes_supported(SCOPES)?
                .resource_name("tower-scope memory server")?,
        ),
        None => None,
    };
    let (stack, well_known) = stack_with_metadata(store, auth, &settings.cors_origins, metadata)?;
    let mut api = Router::new().fallback_service(stack);
    if let Some(well_known) = well_known {
        // Public, in front of the whole stack: a client reads it before it has a token.
        api = api.layer(well_known);
    }
    // The page and its static files are public and outside the stack; everything else is not.
    Ok(page::routes(&settings.dev_tokens).merge(api))
}

/// The permissions this server's routes require, listed in its protected-resource metadata.
pub const SCOPES: [&str; 5] = [
    "memory:read",
    "memory:write",
    "memory:delete",
    "agents:write",
    "memory:admin",
];

/// The same stack with any authenticator yielding [`Claims`] (the soak test puts a JWKS
/// authenticator with a token cache here), as an axum `Router`.
pub fn app_with_auth<A>(
    store: SqlThreadStore,
    auth: A,
    cors_origins: &[String],
) -> Result<Router, ConfigError>
where
    A: tower_scope::Authenticate<User = Claims>,
{
    Ok(Router::new().fallback_service(stack(store, auth, cors_origins)?))
}

/// The whole stack's type, written down: JSON errors -> log -> CORS -> auth -> scope ->
/// guard -> the memory API's routes. Every layer's service names only the inner service and
/// its own configuration.
pub type MemoryStack<A> = JsonErrors<
    Log<
        Cors<
            BearerAuth<
                Authorize<
                    ResourceScope<ThreadGuard<Router, SqlThreadStore>, ResourceOf, BodyRules>,
                    Permissions,
                    NoPolicy,
                >,
                A,
            >,
        >,
    >,
>;

/// The caller's resource, as a type the stack's name can mention (a closure or `fn` item
/// cannot be named): [`resource_of`] of the verified [`Claims`].
#[derive(Debug, Clone, Copy)]
pub struct ResourceOf;

impl ResolveResource for ResourceOf {
    type User = Claims;
    type Future = std::future::Ready<Result<Option<ResourceId>, Rejection>>;

    fn resolve(&self, user: &Authenticated<Claims>) -> Self::Future {
        std::future::ready(Ok(resource_of(user).and_then(|id| ResourceId::new(id).ok())))
    }
}

/// Builds [`MemoryStack`] around the memory API's routes.
///
/// # Errors
///
/// A [`ConfigError`] from a layer's configuration (a CORS origin, say).
pub fn stack<A>(
    store: SqlThreadStore,
    auth: A,
    cors_origins: &[String],
) -> Result<MemoryStack<A>, ConfigError>
where
    A: tower_scope::Authenticate<User = Claims>,
{
    Ok(stack_with_metadata(store, auth, cors_origins, None)?.0)
}

/// [`stack`], naming `metadata` (RFC 9728) in every challenge when given, with the layer
/// that serves it.
pub fn stack_with_metadata<A>(
    store: SqlThreadStore,
    auth: A,
    cors_origins: &[String],
    metadata: Option<tower_scope::auth::ProtectedResourceMetadata>,
) -> Result<
    (
        MemoryStack<A>,
        Option<tower_scope::auth::ProtectedResourceMetadataLayer>,
    ),
    ConfigError,
>
where
    A: tower_scope::Authenticate<User = Claims>,
{
    let auth = BearerAuthLayer::new(auth).public_path("/health")?;
    let (auth, well_known) = match metadata {
        Some(metadata) => {
            let (auth, layer) = auth.protected_resource(metadata)?;
            (auth, Some(layer))
        }
        None => (auth, None),
    };
    // No configured origins: any origin, no credentials; with origins: exactly those, with
    // credentials (Mastra's two defaults).
    let cors = if cors_origins.is_empty() {
        mastra::cors()
    } else {
        mastra::cors_with_credentials(cors_origins.iter().map(String::as_str))?
    };
    // Browser clients on another origin may read which thread the agent used.
    let cors = cors.expose_headers([agent::X_THREAD_ID])?;
    let log = LogLayer::new()
        .exclude_path("/health")?
        .user(|c: &Claims| c.sub.clone());
    let routes = handlers(store.clone());
    // `ServiceBuilder`: the first `.layer()` is outermost.
    let stack = ServiceBuilder::new()
        .layer(JsonErrorLayer::new()) // every refusal, the panic 500 included, as JSON
        .layer(log) // logs every answer, names user and resource on refusals too, turns panics into 500s
        .layer(cors) // outside auth: preflights never meet auth, and 401s carry CORS headers
        .layer(auth)
        // What the caller may do: `memory:read|write|delete` from the route, 403
        // `insufficient_scope` naming the missing one; admins read every resource.
        .layer(authorization()?)
        // Scope forces the caller's id into the query and into the JSON bodies that name a
        // resource (thread creation's `resourceId` …), editing only that field.
        .layer(
            ResourceScopeLayer::with_resolver(ResourceOf)
                .body_rules(mastra::memory_body_rules("/api")?)
                .body_rules(agent::body_rules()?),
        )
        // Reads (GET) get the thread's record from the guard's own lookup: one query, not two.
        .layer(
            mastra::memory_guard(store, "/api")?
                .routes(agent::guard_routes()?)
                .prefetch_thread_records(),
        )
        .service(routes);
    Ok((stack, well_known))
}

/// The handlers alone, without any layer: what [`stack`] wraps. They read the caller from the
/// [`ResourceId`] extension, so without the stack every request is refused (fail closed) —
/// unless something trusted inserts one, as the load comparison in `benches/load_memory.rs`
/// does to measure what the layers cost.
pub fn handlers(store: SqlThreadStore) -> Router {
    Router::new()
        .route("/health", get(health))
        // Mastra's memory API (threads, messages, working memory, clone, search, ...).
        .merge(memory::routes(store.clone()))
        // The agent `memAgent` (generate, stream) and the seeds' `POST /api/chat`.
        .merge(agent::routes().with_state(store))
        // One body limit for scope, the guard and axum's extractors: Mastra's 4.5 MB.
        .layer(DefaultBodyLimit::max(DEFAULT_MAX_BODY))
}

// ---- refusals and extractors: Mastra's JSON shape for every answer that is not a 200 ----------

/// A refusal rendered as Mastra renders it: `{"error": "..."}`, plus `issues` for input that
/// does not parse.
#[derive(Debug)]
pub struct ApiError {
    rejection: Rejection,
    issues: Option<Value>,
    /// A status no rejection kind has (409 for a clone into an id the caller already has).
    status: Option<StatusCode>,
}

impl ApiError {
    fn bad_request(message: &'static str) -> Self {
        Rejection::with_message(RejectionKind::BadRequest, message).into()
    }

    fn invalid(message: &'static str, reason: String) -> Self {
        Self::with_issues(message, json!([{ "message": reason }]))
    }

    /// A 400 with Mastra's `issues` list (`[{field, message}]`).
    fn with_issues(message: &'static str, issues: Value) -> Self {
        Self {
            issues: Some(issues),
            ..Self::bad_request(message)
        }
    }

    /// 409 Conflict with this message.
    fn conflict(message: String) -> Self {
        Self {
            status: Some(StatusCode::CONFLICT),
            ..Rejection::with_message(RejectionKind::BadRequest, message).into()
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        Self {
            rejection,
            issues: None,
            status: None,
        }
    }
}

impl From<GuardError> for ApiError {
    fn from(err: GuardError) -> Self {
        match &err {
            // The detail may name hosts, queries or quote the database: it goes to the log,
            // never to the client.
            GuardError::Store(detail) if detail.is_invalid_input() => {
                tracing::info!(%detail, "thread store refused the input");
            }
            GuardError::Store(detail) => tracing::error!(%detail, "thread store failed"),
            _ => {}
        }
        Rejection::from(err).into()
    }
}

/// A handler's own query failed: 400 when the request's values caused it, 503 otherwise (the
/// store's classification, so handlers and guard answer alike).
fn store_failed(err: sqlx::Error) -> ApiError {
    GuardError::Store(StoreError::from(err)).into()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Status and headers (`Retry-After` on a 503, a bearer challenge) from the crate's one
        // renderer, so the handlers' refusals match the layers'; the body is Mastra's JSON.
        let (mut parts, ()) = self
            .rejection
            .clone()
            .into_response::<()>(&axum::http::HeaderMap::new())
            .into_parts();
        let mut body = json!({ "error": self.rejection.message() });
        // The typed refusal rides along for the log; JsonErrorLayer, seeing it, renders the same
        // `{"error"}` body again, which would drop `issues`: those answers go without it.
        if let Some(issues) = self.issues {
            parts.extensions.remove::<Rejection>();
            body["issues"] = issues;
        }
        // Same for a status no rejection kind has: JsonErrorLayer would render the kind's.
        if let Some(status) = self.status {
            parts.extensions.remove::<Rejection>();
            parts.status = status;
        }
        let json = Json(body).into_response();
        parts.headers.extend(json.headers().clone());
        Response::from_parts(parts, json.into_body())
    }
}

/// The caller's resource, as `ResourceScopeLayer` set it; 403 when the request is unscoped.
pub struct Caller(pub ResourceId);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let scope = parts.extensions.get::<ResourceId>().cloned();
        scope
            .map(Caller)
            .ok_or_else(|| GuardError::NotScoped.into())
    }
}

/// A JSON body, parsed whatever its content type (as the guard parses it, and as Mastra does):
/// 400 `Invalid request body` when it does not parse into `T`, 413 over the body limit.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Rejection::new(RejectionKind::PayloadTooLarge).into()
            } else {
                ApiError::invalid("Invalid request body", rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|err| ApiError::invalid("Invalid request body", err.to_string()))
    }
}

/// Query parameters: 400 `Invalid query parameters` when they do not parse into `T`.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(query)| Params(query))
            .map_err(|rejection| {
                ApiError::invalid("Invalid query parameters", rejection.body_text())
            })
    }
}

/// The `{thread_id}` path parameter as a valid [`ThreadId`]; 400 otherwise.
pub struct ThreadPath(pub ThreadId);

impl<S: Send + Sync> FromRequestParts<S> for ThreadPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let invalid = || ApiError::bad_request("Invalid thread id");
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid())?;
        ThreadId::new(raw).map(ThreadPath).map_err(|_| invalid())
    }
}

/// An RFC 3339 UTC timestamp with milliseconds, like Mastra stores:
/// `2026-12-01T23:06:15.042Z`.
pub fn now_iso() -> String {
    iso(OffsetDateTime::now_utc())
}

/// `at` in Mastra's timestamp format; the milliseconds are truncated, never rounded.
fn iso(at: OffsetDateTime) -> String {
    const MASTRA: &[BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.to_offset(UtcOffset::UTC)
        .format(MASTRA)
        .expect("the format names only fields every OffsetDateTime has")
}

/// A random hex id from the OS.
pub fn random_id(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

async fn health() -> Json<Value> {
    Json(json!({ "success": true }))
}
