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
#[path = "page.rs"]
mod page;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};
use tower::ServiceBuilder;
use tower_scope::auth::BearerAuth;
use tower_scope::cors::Cors;
use tower_scope::guard::ThreadGuard;
use tower_scope::guard::{
    DEFAULT_MAX_BODY, GuardError, NewMessage, SqlThreadStore, StoreError, ThreadFields,
    ThreadRecord, ThreadWrites,
};
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
use tower_scope::log::Log;
use tower_scope::reject::JsonErrors;
use tower_scope::scope::{BodyRules, ResolveResource, ResourceScope};
use tower_scope::{
    Authenticated, BearerAuthLayer, ConfigError, JsonErrorLayer, LogLayer, MessageId, Rejection,
    RejectionKind, ResourceId, ResourceScopeLayer, ThreadId, mastra,
};

/// The claims the server accepts: `sub`, and an optional `org_id` for org-scoped resources.
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

/// Builds the full stack: JSON errors -> log -> CORS -> auth -> scope -> guard -> handlers.
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
    // The page and its static files are public and outside the stack; everything else is not.
    let api = app_with_auth(store, auth.build()?, &settings.cors_origins)?;
    Ok(page::routes(&settings.dev_tokens).merge(api))
}

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
                ResourceScope<ThreadGuard<Router, SqlThreadStore>, ResourceOf, BodyRules>,
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
    let routes = Router::new()
        .route("/health", get(health))
        .route("/api/memory/threads", get(list_threads).post(create_thread))
        .route(
            "/api/memory/threads/{thread_id}",
            get(get_thread).patch(update_thread).delete(delete_thread),
        )
        .route(
            "/api/memory/threads/{thread_id}/messages",
            get(list_messages),
        )
        .route("/api/memory/save-messages", post(save_messages))
        .route("/api/memory/messages/delete", post(delete_messages))
        .merge(agent::routes())
        .with_state(store.clone())
        // One body limit for scope, the guard and axum's extractors: Mastra's 4.5 MB.
        .layer(DefaultBodyLimit::max(DEFAULT_MAX_BODY));
    // `ServiceBuilder`: the first `.layer()` is outermost.
    Ok(ServiceBuilder::new()
        .layer(JsonErrorLayer::new()) // every refusal, the panic 500 included, as JSON
        .layer(log) // logs every answer, names user and resource on refusals too, turns panics into 500s
        .layer(cors) // outside auth: preflights never meet auth, and 401s carry CORS headers
        .layer(BearerAuthLayer::new(auth).public_path("/health")?)
        // Scope forces the caller's id into the query and into the JSON bodies that name a
        // resource (thread creation's `resourceId` …), editing only that field.
        .layer(
            ResourceScopeLayer::with_resolver(ResourceOf)
                .body_rules(mastra::memory_body_rules("/api")?)
                .body_rules(agent::body_rules()?),
        )
        .layer(mastra::memory_guard(store, "/api")?.routes(agent::guard_routes()?))
        .service(routes))
}

// ---- refusals and extractors: Mastra's JSON shape for every answer that is not a 200 ----------

/// A refusal rendered as Mastra renders it: `{"error": "..."}`, plus `issues` for input that
/// does not parse.
#[derive(Debug)]
pub struct ApiError {
    rejection: Rejection,
    issues: Option<Value>,
}

impl ApiError {
    fn bad_request(message: &'static str) -> Self {
        Rejection::with_message(RejectionKind::BadRequest, message).into()
    }

    fn invalid(message: &'static str, reason: String) -> Self {
        Self {
            issues: Some(json!([{ "message": reason }])),
            ..Self::bad_request(message)
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        Self {
            rejection,
            issues: None,
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

/// A client-chosen thread id, or a fresh one; an empty or otherwise invalid id is 400.
fn thread_id_or_new(id: Option<String>) -> Result<ThreadId, ApiError> {
    let id = id.unwrap_or_else(|| random_id(16));
    ThreadId::new(id).map_err(|_| ApiError::bad_request("Invalid thread id"))
}

/// A message id: the rules every id follows (non-empty, at most 256 bytes, no control
/// characters, so nothing a database cannot hold), checked by the crate's one id validator.
fn message_id(id: String) -> Result<MessageId, ApiError> {
    MessageId::try_from(id).map_err(|_| ApiError::bad_request("Invalid message id"))
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

/// Mastra's thread JSON. `metadata` is stored as the client's JSON text and sent back as that
/// text ([`RawValue`]): numbers of any size or precision, key order and spacing come back as
/// sent (a `Value` would turn `123456789012345678901234567890` into `1.2345678901234568e29`).
#[derive(Serialize)]
struct ThreadJson {
    id: Option<String>,
    #[serde(rename = "resourceId")]
    resource_id: Option<String>,
    title: Option<String>,
    metadata: Option<Box<RawValue>>,
    #[serde(rename = "createdAt")]
    created_at: Option<String>,
    #[serde(rename = "updatedAt")]
    updated_at: Option<String>,
}

/// Stored metadata text as JSON; text that is not JSON (written by another program) is `null`.
fn metadata_json(text: Option<&str>) -> Option<Box<RawValue>> {
    text.and_then(|m| RawValue::from_string(m.to_owned()).ok())
}

fn thread_json(thread: &ThreadRecord) -> ThreadJson {
    ThreadJson {
        id: Some(thread.id.to_string()),
        resource_id: thread.resource.as_ref().map(ToString::to_string),
        title: thread.title.clone(),
        metadata: metadata_json(thread.metadata.as_deref()),
        created_at: thread.created_at.clone(),
        updated_at: thread.updated_at.clone(),
    }
}

fn thread_row_json(row: &AnyRow) -> ThreadJson {
    let text = |column: &str| row.try_get::<Option<String>, _>(column).ok().flatten();
    ThreadJson {
        id: text("id"),
        resource_id: text("resourceId"),
        title: text("title"),
        metadata: metadata_json(text("metadata").as_deref()),
        created_at: text("createdAt"),
        updated_at: text("updatedAt"),
    }
}

/// One page of the caller's threads.
#[derive(Serialize)]
struct ThreadPage {
    threads: Vec<ThreadJson>,
    total: i64,
    page: i64,
    #[serde(rename = "perPage")]
    per_page: i64,
    #[serde(rename = "hasMore")]
    has_more: bool,
}

const THREAD_COLUMNS: &str = r#"id, "resourceId", title, metadata, "createdAt", "updatedAt""#;

#[derive(Deserialize)]
struct ListQuery {
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
}

/// Mastra's pagination: a non-negative integer, or the default when absent.
fn non_negative(value: Option<&str>, default: i64) -> Option<i64> {
    match value {
        None => Some(default),
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0),
    }
}

/// Lists the caller's threads, newest first. A `?resourceId=` is ignored: the scope decides.
async fn list_threads(
    State(store): State<SqlThreadStore>,
    Caller(scope): Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<ThreadPage>, ApiError> {
    let invalid = || ApiError::bad_request("Invalid query parameters");
    let page = non_negative(q.page.as_deref(), 0).ok_or_else(invalid)?;
    let per_page = non_negative(q.per_page.as_deref(), 100)
        .ok_or_else(invalid)?
        .max(1);
    // `?page=9223372036854775807` must be a 400, not an overflow panic.
    let offset = page.checked_mul(per_page).ok_or_else(invalid)?;
    let total: i64 =
        sqlx::query(r#"SELECT COUNT(*) AS total FROM mastra_threads WHERE "resourceId" = $1"#)
            .bind(scope.as_str())
            .fetch_one(store.pool())
            .await
            .map_err(store_failed)?
            .try_get("total")
            .unwrap_or(0);
    let sql = format!(
        r#"SELECT {THREAD_COLUMNS} FROM mastra_threads WHERE "resourceId" = $1
        ORDER BY "createdAt" DESC, id LIMIT $2 OFFSET $3"#
    );
    let rows = sqlx::query(&sql)
        .bind(scope.as_str())
        .bind(per_page)
        .bind(offset)
        .fetch_all(store.pool())
        .await
        .map_err(store_failed)?;
    let threads = rows.iter().map(thread_row_json).collect();
    let has_more = offset.checked_add(per_page).is_some_and(|end| end < total);
    Ok(Json(ThreadPage {
        threads,
        total,
        page,
        per_page,
        has_more,
    }))
}

/// The caller's thread: read by id *and* owner, so a thread recreated by someone else after the
/// guard looked is not shown.
async fn get_thread(
    State(store): State<SqlThreadStore>,
    Caller(scope): Caller,
    ThreadPath(thread): ThreadPath,
) -> Result<Json<ThreadJson>, ApiError> {
    let sql = format!(
        r#"SELECT {THREAD_COLUMNS} FROM mastra_threads WHERE id = $1 AND "resourceId" = $2"#
    );
    let row = sqlx::query(&sql)
        .bind(thread.as_str())
        .bind(scope.as_str())
        .fetch_optional(store.pool())
        .await
        .map_err(store_failed)?;
    row.map(|row| Json(thread_row_json(&row)))
        .ok_or_else(|| GuardError::ThreadNotFound.into())
}

#[derive(Deserialize)]
struct CreateThread {
    title: Option<String>,
    metadata: Option<Box<RawValue>>,
    #[serde(rename = "threadId")]
    thread_id: Option<String>,
}

/// Creates a thread for the caller, or re-saves the caller's own (Mastra's upsert); another
/// user's id is refused by the store even when it appeared after the guard looked.
async fn create_thread(
    State(store): State<SqlThreadStore>,
    Caller(scope): Caller,
    Body(body): Body<CreateThread>,
) -> Result<Json<ThreadJson>, ApiError> {
    let thread = thread_id_or_new(body.thread_id)?;
    let fields = ThreadFields {
        title: body.title,
        metadata: body.metadata.map(|m| m.get().to_owned()),
    };
    let created = store
        .create_thread(&scope, &thread, &fields, &now_iso())
        .await?;
    Ok(Json(thread_json(&created)))
}

#[derive(Deserialize)]
struct UpdateThread {
    title: Option<String>,
    metadata: Option<Box<RawValue>>,
}

/// Changes title and metadata of the caller's thread; its owner never changes (a body
/// `resourceId` is ignored).
async fn update_thread(
    State(store): State<SqlThreadStore>,
    Caller(scope): Caller,
    ThreadPath(thread): ThreadPath,
    Body(body): Body<UpdateThread>,
) -> Result<Json<ThreadJson>, ApiError> {
    let fields = ThreadFields {
        title: body.title,
        metadata: body.metadata.map(|m| m.get().to_owned()),
    };
    let updated = store
        .update_thread(&scope, &thread, &fields, &now_iso())
        .await?;
    Ok(Json(thread_json(&updated)))
}

/// Deletes the caller's thread and its messages, only if it is still the caller's.
async fn delete_thread(
    State(store): State<SqlThreadStore>,
    Caller(scope): Caller,
    ThreadPath(thread): ThreadPath,
) -> Result<Json<Value>, ApiError> {
    store.delete_thread(&scope, &thread).await?;
    Ok(Json(json!({ "result": "Thread deleted" })))
}

fn message_json(row: &AnyRow) -> Value {
    let text = |column: &str| row.try_get::<Option<String>, _>(column).ok().flatten();
    json!({
        "id": text("id"),
        "threadId": text("thread_id"),
        "resourceId": text("resourceId"),
        "role": text("role"),
        "type": text("type"),
        "content": text("content").map(|c| serde_json::from_str::<Value>(&c).unwrap_or(Value::String(c))),
        "createdAt": text("createdAt"),
    })
}

/// The messages of the caller's thread (joined on the owner, like `get_thread`).
async fn list_messages(
    State(store): State<SqlThreadStore>,
    Caller(scope): Caller,
    ThreadPath(thread): ThreadPath,
) -> Result<Json<Value>, ApiError> {
    let sql = r#"SELECT m.id, m.thread_id, m.content, m.role, m.type, m."createdAt", m."resourceId"
        FROM mastra_messages AS m JOIN mastra_threads AS t ON t.id = m.thread_id
        WHERE m.thread_id = $1 AND t."resourceId" = $2 ORDER BY m."createdAt", m.id"#;
    let rows = sqlx::query(sql)
        .bind(thread.as_str())
        .bind(scope.as_str())
        .fetch_all(store.pool())
        .await
        .map_err(store_failed)?;
    let messages: Vec<Value> = rows.iter().map(message_json).collect();
    Ok(Json(json!({ "messages": messages, "uiMessages": [] })))
}

#[derive(Deserialize)]
struct SaveMessages {
    messages: Vec<MessageIn>,
}

#[derive(Deserialize)]
struct MessageIn {
    id: Option<String>,
    #[serde(rename = "threadId")]
    thread_id: String,
    #[serde(rename = "resourceId")]
    resource_id: String,
    role: Option<String>,
    content: Value,
}

/// Saves messages for the caller, all or none, in one transaction: each thread is the caller's
/// or is created for them, and an existing message id must already be the caller's.
async fn save_messages(
    State(store): State<SqlThreadStore>,
    Caller(scope): Caller,
    Body(body): Body<SaveMessages>,
) -> Result<Json<Value>, ApiError> {
    let now = now_iso();
    let mut batch = Vec::with_capacity(body.messages.len());
    let mut saved = Vec::with_capacity(body.messages.len());
    for m in body.messages {
        if m.resource_id != scope.as_str() {
            return Err(GuardError::ForeignResource.into());
        }
        let thread =
            ThreadId::new(&m.thread_id).map_err(|_| ApiError::bad_request("Invalid thread id"))?;
        let id = match m.id {
            Some(id) => message_id(id)?,
            None => message_id(random_id(16))?,
        };
        let role = m.role.unwrap_or_else(|| "user".into());
        let content = match &m.content {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        saved.push(json!({ "id": id.as_str(), "threadId": thread.as_str(), "resourceId": scope.as_str(), "role": role, "content": m.content, "createdAt": now }));
        batch.push(NewMessage {
            id,
            thread,
            role,
            kind: "v2".into(),
            content,
            created_at: now.clone(),
        });
    }
    store.save_messages(&scope, &batch, &now).await?;
    Ok(Json(json!({ "messages": saved })))
}

#[derive(Deserialize)]
struct DeleteMessages {
    #[serde(rename = "messageIds")]
    message_ids: Option<MessageIds>,
}

/// `messageIds` as Mastra accepts it: an id, `{id}`, or a list of either.
#[derive(Deserialize)]
#[serde(untagged)]
enum MessageIds {
    One(MessageRef),
    Many(Vec<MessageRef>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MessageRef {
    Id(String),
    Object { id: String },
}

impl MessageRef {
    fn into_id(self) -> String {
        match self {
            Self::Id(id) | Self::Object { id } => id,
        }
    }
}

/// Deletes those listed messages that are the caller's, in one statement, and reports how many
/// that was (Mastra counts unknown ids as deleted; we say what happened, in Mastra's shape).
async fn delete_messages(
    State(store): State<SqlThreadStore>,
    Caller(scope): Caller,
    Body(body): Body<DeleteMessages>,
) -> Result<Json<Value>, ApiError> {
    let refs = match body.message_ids {
        None => return Err(ApiError::bad_request("messageIds is required")),
        Some(MessageIds::One(one)) => vec![one],
        Some(MessageIds::Many(many)) => many,
    };
    let ids = refs
        .into_iter()
        .map(|r| message_id(r.into_id()))
        .collect::<Result<Vec<_>, _>>()?;
    let n = store.delete_messages(&scope, &ids).await?;
    let message = if n == 1 {
        "1 message deleted successfully".to_owned()
    } else {
        format!("{n} messages deleted successfully")
    };
    Ok(Json(json!({ "success": true, "message": message })))
}
