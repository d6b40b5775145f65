//! Mastra's memory API, the way `@mastra/client-js` 1.47 calls it: threads, messages, working
//! memory, clone, search, status and config, under `/api/memory` and its `/api/memory/network`
//! aliases.
//!
//! Every read is filtered by the caller's resource in SQL (a thread recreated by someone else
//! after the guard looked is not shown); every write is owner-conditional in one statement or one
//! transaction (the store's [`ThreadWrites`], or the statements here for clone and working
//! memory), so the guard's snapshot decision is never what protects the data.
//!
//! Deliberate differences from Mastra's server: `agentId` is optional (validated when given,
//! 404 `Agent not found` as Mastra answers); message deletion reports the real count; re-saving
//! another user's message id is 403 (Mastra moves it); cloning into an id the caller already has
//! is 409 (Mastra: 500).

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower_scope::guard::{
    GuardError, NewMessage, PrefetchedThread, SqlThreadStore, ThreadFields, ThreadRecord,
    ThreadWrites,
};
use tower_scope::{MessageId, Rejection, RejectionKind, ResourceId, ThreadId};

use super::{ApiError, Body, Caller, Params, ThreadPath, iso, now_iso, store_failed};

/// The agents this server knows; an `agentId` naming another is refused where Mastra refuses it.
pub const AGENTS: &[&str] = &["memAgent"];

/// Mastra's message listing page size when `perPage` is not given.
const MESSAGES_PER_PAGE: usize = 40;

/// Mastra's `lastMessages` default: how many recent messages a recall (and so a search) sees.
const LAST_MESSAGES: usize = 10;

/// Messages of context a search result carries on each side (Mastra's default range).
const SEARCH_CONTEXT: usize = 2;

/// Mastra's default working-memory template (markdown), which its config and working-memory
/// answers show.
const WORKING_MEMORY_TEMPLATE: &str = "\n# User Information\n- **First Name**: \n- **Last Name**: \n- **Location**: \n- **Occupation**: \n- **Interests**: \n- **Goals**: \n- **Events**: \n- **Facts**: \n- **Projects**: \n";

/// Mastra's 400 on the observational-memory routes of an agent that does not use it.
const NO_OBSERVATIONAL_MEMORY: &str = "Observational Memory is not enabled for this agent";

/// Where working memory lives: per resource (Mastra's default `workingMemory.scope`, shared by
/// all of a user's threads) or per thread (in the thread's `metadata.workingMemory`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WorkingMemoryScope {
    #[default]
    Resource,
    Thread,
}

impl WorkingMemoryScope {
    /// `WORKING_MEMORY_SCOPE` = `thread` or `resource` (the default when unset or empty).
    ///
    /// # Errors
    ///
    /// Any other value, so a typo never silently shares memory across threads.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("WORKING_MEMORY_SCOPE").as_deref() {
            Err(_) | Ok("" | "resource") => Ok(Self::Resource),
            Ok("thread") => Ok(Self::Thread),
            Ok(other) => Err(format!(
                "WORKING_MEMORY_SCOPE must be `resource` or `thread`, not {other:?}"
            )),
        }
    }
}

/// The handlers' state.
#[derive(Clone)]
struct Memory {
    store: SqlThreadStore,
    working_memory: WorkingMemoryScope,
    sqlite: bool,
}

/// Creates the table resource-scoped working memory lives in (Mastra's `mastra_resources`),
/// unless it exists. Run next to [`SqlThreadStore::create_schema`].
///
/// # Errors
///
/// The database's error.
pub async fn create_schema(store: &SqlThreadStore) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"CREATE TABLE IF NOT EXISTS mastra_resources (id TEXT PRIMARY KEY,
            "workingMemory" TEXT, metadata TEXT, "createdAt" TEXT, "updatedAt" TEXT)"#,
    )
    .execute(store.pool())
    .await
    .map(|_| ())
}

/// The memory API's routes on `store`, working memory scoped by `WORKING_MEMORY_SCOPE`.
///
/// # Panics
///
/// When `WORKING_MEMORY_SCOPE` has a value other than `resource` or `thread`.
pub fn routes(store: SqlThreadStore) -> Router {
    let scope = WorkingMemoryScope::from_env().unwrap_or_else(|err| panic!("{err}"));
    routes_with(store, scope)
}

/// The memory API's routes with working memory scoped by `working_memory`.
pub fn routes_with(store: SqlThreadStore, working_memory: WorkingMemoryScope) -> Router {
    let sqlite = store.pool().connect_options().database_url.scheme() == "sqlite";
    let state = Memory {
        store,
        working_memory,
        sqlite,
    };
    let mut router = Router::new();
    for base in ["/api/memory", "/api/memory/network"] {
        router = router
            .route(
                &format!("{base}/threads"),
                get(list_threads).post(create_thread),
            )
            .route(
                &format!("{base}/threads/{{thread_id}}"),
                get(get_thread).patch(update_thread).delete(delete_thread),
            )
            .route(
                &format!("{base}/threads/{{thread_id}}/messages"),
                get(list_messages),
            )
            .route(&format!("{base}/save-messages"), post(save_messages))
            .route(&format!("{base}/messages/delete"), post(delete_messages))
            .route(&format!("{base}/status"), get(status));
    }
    router
        .route("/api/memory/config", get(config))
        .route(
            "/api/memory/threads/{thread_id}/working-memory",
            get(get_working_memory).post(update_working_memory),
        )
        .route("/api/memory/threads/{thread_id}/clone", post(clone_thread))
        .route("/api/memory/search", get(search))
        .route(
            "/api/memory/observational-memory",
            get(observational_memory),
        )
        .route(
            "/api/memory/observational-memory/buffer-status",
            post(observational_memory_buffer),
        )
        .with_state(state)
}

// ---- small answers: agents, refusals with Mastra's `issues` -----------------------------------

#[derive(Deserialize)]
struct AgentQuery {
    #[serde(rename = "agentId")]
    agent_id: Option<String>,
}

fn unknown_agent(agent: Option<&str>) -> bool {
    agent.is_some_and(|a| !AGENTS.contains(&a))
}

/// 404 `Agent not found` for an `agentId` this server does not know (absent is fine).
fn known_agent(agent: Option<&str>) -> Result<(), ApiError> {
    if unknown_agent(agent) {
        return Err(Rejection::with_message(RejectionKind::NotFound, "Agent not found").into());
    }
    Ok(())
}

/// A 400 naming the field, as Mastra's schema errors do: `{"error", "issues": [{field, message}]}`.
fn invalid(what: &'static str, field: &str, message: impl Into<String>) -> ApiError {
    ApiError::with_issues(what, json!([{ "field": field, "message": message.into() }]))
}

fn invalid_query(field: &str, message: impl Into<String>) -> ApiError {
    invalid("Invalid query parameters", field, message)
}

/// Mastra's page numbers: a non-negative integer, or `default` when absent.
fn page_number(field: &str, value: Option<&str>, default: usize) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<i64>() {
        Ok(n) if n < 0 => Err(invalid_query(field, "Too small: expected number to be >=0")),
        Ok(n) => usize::try_from(n).map_err(|_| invalid_query(field, "Too big")),
        Err(_) => Err(invalid_query(
            field,
            "Invalid input: expected number, received NaN",
        )),
    }
}

/// A client-chosen thread id, or a fresh UUID v4 (Mastra's server-made ids); invalid is 400.
fn thread_id_or_new(id: Option<String>) -> Result<ThreadId, ApiError> {
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    ThreadId::new(id).map_err(|_| ApiError::bad_request("Invalid thread id"))
}

/// A message id: the rules every id follows, checked by the crate's one id validator.
fn message_id(id: String) -> Result<MessageId, ApiError> {
    MessageId::try_from(id).map_err(|_| ApiError::bad_request("Invalid message id"))
}

/// A timestamp as Mastra accepts one (RFC 3339 text, or milliseconds since the epoch), in
/// Mastra's format; `None` when it is neither.
fn timestamp(value: &Value) -> Option<String> {
    let at = match value {
        Value::String(text) => OffsetDateTime::parse(text, &Rfc3339).ok()?,
        Value::Number(n) => {
            let ms = i128::from(n.as_i64()?);
            OffsetDateTime::from_unix_timestamp_nanos(ms.checked_mul(1_000_000)?).ok()?
        }
        _ => return None,
    };
    Some(iso(at))
}

/// Mastra's timestamps compare as instants; ours are all in one format, so as text, but the
/// bounds a client sends are parsed first.
fn bound(value: Option<&Value>, field: &str) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => timestamp(v)
            .map(Some)
            .ok_or_else(|| invalid_query(field, "Invalid input: expected date, received Date")),
    }
}

// ---- threads -----------------------------------------------------------------------------------

/// Mastra's thread JSON. `metadata` is the client's JSON text sent back as that text
/// ([`RawValue`]): numbers of any size, key order and spacing come back as sent. Its outer
/// `Option` is whether the key is there at all: a created thread without metadata has none,
/// as Mastra answers; read back, it is `null`.
#[derive(Serialize)]
struct ThreadJson {
    id: Option<String>,
    #[serde(rename = "resourceId")]
    resource_id: Option<String>,
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Option<Box<RawValue>>>,
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
        metadata: Some(metadata_json(thread.metadata.as_deref())),
        created_at: thread.created_at.clone(),
        updated_at: thread.updated_at.clone(),
    }
}

fn text(row: &AnyRow, column: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(column).ok().flatten()
}

fn thread_row_json(row: &AnyRow) -> ThreadJson {
    ThreadJson {
        id: text(row, "id"),
        resource_id: text(row, "resourceId"),
        title: text(row, "title"),
        metadata: Some(metadata_json(text(row, "metadata").as_deref())),
        created_at: text(row, "createdAt"),
        updated_at: text(row, "updatedAt"),
    }
}

/// One page of the caller's threads.
#[derive(Serialize)]
struct ThreadPage {
    threads: Vec<ThreadJson>,
    total: usize,
    page: usize,
    #[serde(rename = "perPage")]
    per_page: usize,
    #[serde(rename = "hasMore")]
    has_more: bool,
}

const THREAD_COLUMNS: &str = r#"id, "resourceId", title, metadata, "createdAt", "updatedAt""#;

/// `GET /threads`' query, in both of `@mastra/client-js`'s spellings of the order:
/// `orderBy[field]` / `orderBy[direction]` (1.18 and later) and `orderBy=<field>` with
/// `sortDirection` (older clients); `orderBy` as JSON works too.
#[derive(Deserialize)]
struct ListThreads {
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
    metadata: Option<String>,
    #[serde(rename = "orderBy")]
    order_by: Option<String>,
    #[serde(rename = "orderBy[field]")]
    order_field: Option<String>,
    #[serde(rename = "orderBy[direction]")]
    order_direction: Option<String>,
    #[serde(rename = "sortDirection")]
    sort_direction: Option<String>,
}

/// An order a client asked for: a column of an allow-list (never the client's text in SQL).
#[derive(Clone, Copy)]
struct Order {
    updated: bool,
    ascending: bool,
}

impl Order {
    fn sql(self) -> &'static str {
        match (self.updated, self.ascending) {
            (false, false) => r#""createdAt" DESC, id DESC"#,
            (false, true) => r#""createdAt" ASC, id ASC"#,
            (true, false) => r#""updatedAt" DESC, id DESC"#,
            (true, true) => r#""updatedAt" ASC, id ASC"#,
        }
    }
}

/// `field` and `direction` from the three spellings; Mastra's enum errors otherwise.
fn thread_order(q: &ListThreads) -> Result<Order, ApiError> {
    let (mut field, mut direction) = (None, None);
    if let Some(raw) = &q.order_by {
        let trimmed = raw.trim();
        if trimmed.starts_with('{') {
            // Mastra ignores an `orderBy` that is not JSON.
            if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(trimmed) {
                field = o.get("field").cloned();
                direction = o.get("direction").cloned();
            }
        } else {
            field = Some(Value::String(raw.clone()));
            direction = q.sort_direction.clone().map(Value::String);
        }
    }
    if let Some(f) = &q.order_field {
        field = Some(Value::String(f.clone()));
    }
    if let Some(d) = &q.order_direction {
        direction = Some(Value::String(d.clone()));
    }
    let updated = match field.as_ref().map(Value::as_str) {
        None | Some(Some("createdAt")) => false,
        Some(Some("updatedAt")) => true,
        _ => {
            return Err(invalid_query(
                "orderBy.field",
                r#"Invalid option: expected one of "createdAt"|"updatedAt""#,
            ));
        }
    };
    let ascending = match direction.as_ref().map(Value::as_str) {
        None | Some(Some("DESC")) => false,
        Some(Some("ASC")) => true,
        _ => {
            return Err(invalid_query(
                "orderBy.direction",
                r#"Invalid option: expected one of "ASC"|"DESC""#,
            ));
        }
    };
    Ok(Order { updated, ascending })
}

/// `?metadata=` as Mastra reads it: a JSON object whose every key the thread's metadata has
/// with an equal value.
fn metadata_filter(raw: Option<&str>) -> Result<Option<Map<String, Value>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(filter)) => Ok(Some(filter)),
        Ok(other) => Err(invalid_query(
            "metadata",
            format!(
                "Invalid input: expected record, received {}",
                json_type(&other)
            ),
        )),
        Err(_) => Err(invalid_query(
            "metadata",
            "Invalid input: expected record, received string",
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn metadata_matches(row: &AnyRow, filter: &Map<String, Value>) -> bool {
    let stored = text(row, "metadata").and_then(|m| serde_json::from_str::<Value>(&m).ok());
    let Some(Value::Object(stored)) = stored else {
        return filter.is_empty();
    };
    filter.iter().all(|(k, v)| stored.get(k) == Some(v))
}

/// Lists the caller's threads, newest first unless `orderBy` says otherwise, optionally only
/// those whose metadata matches `?metadata=`. A `?resourceId=` is ignored: the scope decides.
async fn list_threads(
    State(m): State<Memory>,
    Caller(scope): Caller,
    Params(q): Params<ListThreads>,
) -> Result<Json<ThreadPage>, ApiError> {
    let page = page_number("page", q.page.as_deref(), 0)?;
    let per_page = page_number("perPage", q.per_page.as_deref(), 100)?.max(1);
    let order = thread_order(&q)?;
    let filter = metadata_filter(q.metadata.as_deref())?;
    // `?page=9223372036854775807` must be a 400, not an overflow panic.
    let offset = page
        .checked_mul(per_page)
        .filter(|o| i64::try_from(*o).is_ok())
        .ok_or_else(|| invalid_query("page", "Too big"))?;
    let sql = format!(
        r#"SELECT {THREAD_COLUMNS} FROM mastra_threads WHERE "resourceId" = $1 ORDER BY {}"#,
        order.sql()
    );
    let (threads, total) = match filter {
        // The metadata filter runs here, on the caller's threads only; the page is cut after it.
        Some(filter) => {
            let rows = sqlx::query(&sql)
                .bind(scope.as_str())
                .fetch_all(m.store.pool())
                .await
                .map_err(store_failed)?;
            let matching: Vec<&AnyRow> = rows
                .iter()
                .filter(|r| metadata_matches(r, &filter))
                .collect();
            let total = matching.len();
            let threads = matching
                .into_iter()
                .skip(offset)
                .take(per_page)
                .map(thread_row_json)
                .collect();
            (threads, total)
        }
        None => {
            let total: i64 = sqlx::query(
                r#"SELECT COUNT(*) AS total FROM mastra_threads WHERE "resourceId" = $1"#,
            )
            .bind(scope.as_str())
            .fetch_one(m.store.pool())
            .await
            .map_err(store_failed)?
            .try_get("total")
            .unwrap_or(0);
            let rows = sqlx::query(&format!("{sql} LIMIT $2 OFFSET $3"))
                .bind(scope.as_str())
                .bind(i64::try_from(per_page).unwrap_or(i64::MAX))
                .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                .fetch_all(m.store.pool())
                .await
                .map_err(store_failed)?;
            let total = usize::try_from(total).unwrap_or(0);
            (rows.iter().map(thread_row_json).collect(), total)
        }
    };
    let has_more = offset.checked_add(per_page).is_some_and(|end| end < total);
    Ok(Json(ThreadPage {
        threads,
        total,
        page,
        per_page,
        has_more,
    }))
}

/// The caller's thread row, read by id *and* owner.
async fn own_thread<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    scope: &ResourceId,
    thread: &ThreadId,
) -> Result<Option<AnyRow>, ApiError> {
    let sql = format!(
        r#"SELECT {THREAD_COLUMNS} FROM mastra_threads WHERE id = $1 AND "resourceId" = $2"#
    );
    sqlx::query(&sql)
        .bind(thread.as_str())
        .bind(scope.as_str())
        .fetch_optional(db)
        .await
        .map_err(store_failed)
}

/// Why `thread` is not the caller's, read after a conditional write matched nothing: 404 when
/// it does not exist, 403 when another resource (or none) owns it.
async fn not_own_thread(m: &Memory, scope: &ResourceId, thread: &ThreadId) -> ApiError {
    let owner = sqlx::query(r#"SELECT "resourceId" FROM mastra_threads WHERE id = $1"#)
        .bind(thread.as_str())
        .fetch_optional(m.store.pool())
        .await;
    match owner {
        Err(err) => store_failed(err),
        Ok(None) => GuardError::ThreadNotFound.into(),
        Ok(Some(row)) => match text(&row, "resourceId") {
            Some(owner) if owner == scope.as_str() => {
                // Changed under us twice in a row: say so rather than guess.
                Rejection::new(RejectionKind::Unavailable).into()
            }
            Some(_) => GuardError::ForeignThread.into(),
            None => GuardError::UnownedThread.into(),
        },
    }
}

/// The thread the guard read while checking its owner, taken out of the request (axum's
/// `Extension` would copy every field of it).
struct Prefetched(Option<PrefetchedThread>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Prefetched {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.remove::<PrefetchedThread>()))
    }
}

/// The caller's thread: read by id *and* owner, so a thread recreated by someone else after the
/// guard looked is not shown.
async fn get_thread(
    State(m): State<Memory>,
    Caller(scope): Caller,
    ThreadPath(thread): ThreadPath,
    Prefetched(prefetched): Prefetched,
) -> Result<Json<ThreadJson>, ApiError> {
    // The guard read the thread in the lookup that checked its owner: serve that record, one
    // query per read instead of two (still only the caller's: the same owner filter).
    if let Some(PrefetchedThread(record)) = prefetched
        && record.id == thread
        && record.resource.as_ref() == Some(&scope)
    {
        return Ok(Json(thread_json(&record)));
    }
    own_thread(m.store.pool(), &scope, &thread)
        .await?
        .map(|row| Json(thread_row_json(&row)))
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
    State(m): State<Memory>,
    Caller(scope): Caller,
    Params(agent): Params<AgentQuery>,
    Body(body): Body<CreateThread>,
) -> Result<Json<ThreadJson>, ApiError> {
    known_agent(agent.agent_id.as_deref())?;
    let thread = thread_id_or_new(body.thread_id)?;
    let given_metadata = body.metadata.is_some();
    let fields = ThreadFields {
        // Mastra stores an untitled thread's title as "".
        title: Some(body.title.unwrap_or_default()),
        metadata: body.metadata.map(|m| m.get().to_owned()),
    };
    let created = m
        .store
        .create_thread(&scope, &thread, &fields, &now_iso())
        .await?;
    let mut json = thread_json(&created);
    if !given_metadata {
        json.metadata = None;
    }
    Ok(Json(json))
}

#[derive(Deserialize)]
struct UpdateThread {
    title: Option<String>,
    metadata: Option<Box<RawValue>>,
}

/// Changes title and metadata of the caller's thread; its owner never changes (a body
/// `resourceId` is ignored).
async fn update_thread(
    State(m): State<Memory>,
    Caller(scope): Caller,
    ThreadPath(thread): ThreadPath,
    Params(agent): Params<AgentQuery>,
    Body(body): Body<UpdateThread>,
) -> Result<Json<ThreadJson>, ApiError> {
    known_agent(agent.agent_id.as_deref())?;
    let fields = ThreadFields {
        title: body.title,
        metadata: body.metadata.map(|m| m.get().to_owned()),
    };
    let updated = m
        .store
        .update_thread(&scope, &thread, &fields, &now_iso())
        .await?;
    Ok(Json(thread_json(&updated)))
}

/// Deletes the caller's thread and its messages, only if it is still the caller's.
async fn delete_thread(
    State(m): State<Memory>,
    Caller(scope): Caller,
    ThreadPath(thread): ThreadPath,
    Params(agent): Params<AgentQuery>,
) -> Result<Json<Value>, ApiError> {
    known_agent(agent.agent_id.as_deref())?;
    m.store.delete_thread(&scope, &thread).await?;
    Ok(Json(json!({ "result": "Thread deleted" })))
}

// ---- messages ----------------------------------------------------------------------------------

const MESSAGE_COLUMNS: &str =
    r#"m.id, m.thread_id, m.content, m.role, m.type, m."createdAt", m."resourceId""#;

/// A message as read from the database.
struct Message {
    id: String,
    thread: String,
    resource: Option<String>,
    role: Option<String>,
    kind: Option<String>,
    content: Value,
    created_at: String,
}

impl Message {
    fn from_row(row: &AnyRow) -> Self {
        Self {
            id: text(row, "id").unwrap_or_default(),
            thread: text(row, "thread_id").unwrap_or_default(),
            resource: text(row, "resourceId"),
            role: text(row, "role"),
            kind: text(row, "type"),
            content: stored_content(text(row, "content")),
            created_at: text(row, "createdAt").unwrap_or_default(),
        }
    }

    /// Mastra's message JSON; `type` only when it is not the default `v2`, as Mastra answers.
    fn json(&self) -> Value {
        let mut json = json!({
            "id": self.id,
            "threadId": self.thread,
            "resourceId": self.resource,
            "role": self.role,
            "content": self.content,
            "createdAt": self.created_at,
        });
        if let Some(kind) = self.kind.as_deref().filter(|k| *k != "v2") {
            json["type"] = Value::String(kind.to_owned());
        }
        json
    }

    /// The first text part, as Mastra's search shows a message.
    fn text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("parts")
                .and_then(Value::as_array)
                .and_then(|parts| {
                    parts
                        .iter()
                        .find(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                })
                .and_then(|p| p.get("text"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        }
    }
}

/// Plain text as Mastra's format-2 content: one text part, and the text again in `content`.
fn format_2(text: &str) -> Value {
    json!({ "format": 2, "parts": [{ "type": "text", "text": text }], "content": text })
}

/// Stored content: a JSON document, or (rows written before contents were normalised, or by
/// another program) plain text, shown in format 2.
fn stored_content(content: Option<String>) -> Value {
    match content {
        None => Value::Null,
        Some(c) => match serde_json::from_str::<Value>(&c) {
            Ok(Value::Object(o)) => Value::Object(o),
            _ => format_2(&c),
        },
    }
}

/// Every message of the caller's `thread`, oldest first (joined on the owner).
async fn thread_messages<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    scope: &ResourceId,
    thread: &str,
) -> Result<Vec<Message>, ApiError> {
    let sql = format!(
        r#"SELECT {MESSAGE_COLUMNS}
        FROM mastra_messages AS m JOIN mastra_threads AS t ON t.id = m.thread_id
        WHERE m.thread_id = $1 AND t."resourceId" = $2 ORDER BY m."createdAt", m.id"#
    );
    let rows = sqlx::query(&sql)
        .bind(thread)
        .bind(scope.as_str())
        .fetch_all(db)
        .await
        .map_err(store_failed)?;
    Ok(rows.iter().map(Message::from_row).collect())
}

/// The caller's message `id` (in any of the caller's threads), if there is one.
async fn own_message(
    m: &Memory,
    scope: &ResourceId,
    id: &str,
) -> Result<Option<Message>, ApiError> {
    let sql = format!(
        r#"SELECT {MESSAGE_COLUMNS}
        FROM mastra_messages AS m JOIN mastra_threads AS t ON t.id = m.thread_id
        WHERE m.id = $1 AND t."resourceId" = $2"#
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(scope.as_str())
        .fetch_optional(m.store.pool())
        .await
        .map_err(store_failed)?;
    Ok(row.as_ref().map(Message::from_row))
}

#[derive(Deserialize)]
struct ListMessages {
    page: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<String>,
    #[serde(rename = "orderBy")]
    order_by: Option<String>,
    include: Option<String>,
    filter: Option<String>,
}

#[derive(Deserialize)]
struct Include {
    id: String,
    #[serde(rename = "withPreviousMessages")]
    previous: Option<f64>,
    #[serde(rename = "withNextMessages")]
    next: Option<f64>,
}

/// `orderBy` (JSON, `createdAt` only): ascending unless `DESC`; text that is not JSON is
/// ignored, as Mastra ignores it.
fn message_order(raw: Option<&str>) -> Result<bool, ApiError> {
    let Some(Ok(Value::Object(o))) = raw.map(serde_json::from_str::<Value>) else {
        return Ok(true);
    };
    match o.get("field") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "createdAt" => {}
        Some(_) => {
            return Err(invalid_query(
                "orderBy.field",
                r#"Invalid option: expected one of "createdAt""#,
            ));
        }
    }
    match o.get("direction").map(Value::as_str) {
        None | Some(Some("ASC")) => Ok(true),
        Some(Some("DESC")) => Ok(false),
        _ => Err(invalid_query(
            "orderBy.direction",
            r#"Invalid option: expected one of "ASC"|"DESC""#,
        )),
    }
}

fn includes(raw: Option<&str>) -> Result<Vec<Include>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let value: Value = serde_json::from_str(raw)
        .map_err(|_| invalid_query("include", "Invalid input: expected array, received string"))?;
    if !value.is_array() {
        return Err(invalid_query(
            "include",
            format!(
                "Invalid input: expected array, received {}",
                json_type(&value)
            ),
        ));
    }
    serde_json::from_value(value).map_err(|err| invalid_query("include", err.to_string()))
}

/// `filter.dateRange` bounds (`start`/`end`, exclusive when asked); Mastra ignores the rest.
struct DateRange {
    start: Option<String>,
    end: Option<String>,
    start_exclusive: bool,
    end_exclusive: bool,
}

impl DateRange {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut range = Self {
            start: None,
            end: None,
            start_exclusive: false,
            end_exclusive: false,
        };
        let Some(raw) = raw else { return Ok(range) };
        let filter: Value = serde_json::from_str(raw).map_err(|_| {
            invalid_query("filter", "Invalid input: expected object, received string")
        })?;
        let Some(dates) = filter.get("dateRange") else {
            return Ok(range);
        };
        range.start = bound(dates.get("start"), "filter.dateRange.start")?;
        range.end = bound(dates.get("end"), "filter.dateRange.end")?;
        range.start_exclusive = dates.get("startExclusive") == Some(&Value::Bool(true));
        range.end_exclusive = dates.get("endExclusive") == Some(&Value::Bool(true));
        Ok(range)
    }

    fn contains(&self, at: &str) -> bool {
        let after = self.start.as_deref().is_none_or(|s| {
            if self.start_exclusive {
                at > s
            } else {
                at >= s
            }
        });
        let before = self
            .end
            .as_deref()
            .is_none_or(|e| if self.end_exclusive { at < e } else { at <= e });
        after && before
    }
}

/// A page of the caller's thread's messages, plus the messages `include` asks for around given
/// ids (of the caller's, in any of their threads), with Mastra's `total`, `page`, `perPage`,
/// `hasMore` (joined on the owner, like `get_thread`).
async fn list_messages(
    State(m): State<Memory>,
    Caller(scope): Caller,
    ThreadPath(thread): ThreadPath,
    Params(q): Params<ListMessages>,
) -> Result<Json<Value>, ApiError> {
    let page = page_number("page", q.page.as_deref(), 0)?;
    let per_page = page_number("perPage", q.per_page.as_deref(), MESSAGES_PER_PAGE)?;
    let ascending = message_order(q.order_by.as_deref())?;
    let include = includes(q.include.as_deref())?;
    let range = DateRange::parse(q.filter.as_deref())?;
    if own_thread(m.store.pool(), &scope, &thread).await?.is_none() {
        return Err(GuardError::ThreadNotFound.into());
    }
    let mut all: Vec<Message> = thread_messages(m.store.pool(), &scope, thread.as_str())
        .await?
        .into_iter()
        .filter(|msg| range.contains(&msg.created_at))
        .collect();
    if !ascending {
        all.reverse();
    }
    let total = all.len();
    let offset = page.saturating_mul(per_page);
    let mut chosen: BTreeMap<String, Message> = BTreeMap::new();
    for msg in all.into_iter().skip(offset).take(per_page) {
        chosen.insert(msg.id.clone(), msg);
    }
    for item in include {
        let Some(target) = own_message(&m, &scope, &item.id).await? else {
            continue;
        };
        let around = thread_messages(m.store.pool(), &scope, &target.thread).await?;
        let Some(at) = around.iter().position(|msg| msg.id == target.id) else {
            continue;
        };
        let before = count(item.previous);
        let after = count(item.next);
        let from = at.saturating_sub(before);
        let to = at.saturating_add(after).saturating_add(1).min(around.len());
        for msg in around.into_iter().take(to).skip(from) {
            chosen.entry(msg.id.clone()).or_insert(msg);
        }
    }
    let mut messages: Vec<Message> = chosen.into_values().collect();
    messages.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    if !ascending {
        messages.reverse();
    }
    let has_more = offset.saturating_add(per_page) < total;
    Ok(Json(json!({
        "messages": messages.iter().map(Message::json).collect::<Vec<_>>(),
        "total": total,
        "page": page,
        "perPage": per_page,
        "hasMore": has_more,
        "uiMessages": null,
    })))
}

/// A `withPreviousMessages` / `withNextMessages` count: non-negative, whole, bounded.
fn count(n: Option<f64>) -> usize {
    match n {
        Some(n) if n.is_finite() && n > 0.0 => n.min(10_000.0) as usize,
        _ => 0,
    }
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
    #[serde(rename = "type")]
    kind: Option<String>,
    content: Value,
    #[serde(rename = "createdAt")]
    created_at: Option<Value>,
}

/// Saves messages for the caller, all or none, in one transaction: each thread is the caller's
/// or is created for them, and an existing message id must already be the caller's (and is
/// moved when it names another of the caller's threads). The client's `createdAt` and `type`
/// are kept; plain-text content becomes Mastra's format 2.
async fn save_messages(
    State(m): State<Memory>,
    Caller(scope): Caller,
    Params(agent): Params<AgentQuery>,
    Body(body): Body<SaveMessages>,
) -> Result<Json<Value>, ApiError> {
    known_agent(agent.agent_id.as_deref())?;
    let now = now_iso();
    let mut batch = Vec::with_capacity(body.messages.len());
    let mut saved = Vec::with_capacity(body.messages.len());
    for msg in body.messages {
        if msg.resource_id != scope.as_str() {
            return Err(GuardError::ForeignResource.into());
        }
        let thread = ThreadId::new(&msg.thread_id)
            .map_err(|_| ApiError::bad_request("Invalid thread id"))?;
        let id = message_id(msg.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()))?;
        let created_at = match &msg.created_at {
            None | Some(Value::Null) => now.clone(),
            Some(value) => timestamp(value).ok_or_else(|| {
                invalid(
                    "Invalid request body",
                    "createdAt",
                    "Invalid input: expected date",
                )
            })?,
        };
        let content = match msg.content {
            Value::String(s) => format_2(&s),
            other => other,
        };
        let message = Message {
            id: id.as_str().to_owned(),
            thread: thread.as_str().to_owned(),
            resource: Some(scope.as_str().to_owned()),
            role: Some(msg.role.unwrap_or_else(|| "user".into())),
            kind: msg.kind,
            content,
            created_at,
        };
        saved.push(message.json());
        batch.push(NewMessage {
            id,
            thread,
            role: message.role.clone().unwrap_or_default(),
            kind: message.kind.clone().unwrap_or_else(|| "v2".into()),
            content: message.content.to_string(),
            created_at: message.created_at.clone(),
        });
    }
    m.store.save_messages(&scope, &batch, &now).await?;
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
    State(m): State<Memory>,
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
    let n = m.store.delete_messages(&scope, &ids).await?;
    let message = if n == 1 {
        "1 message deleted successfully".to_owned()
    } else {
        format!("{n} messages deleted successfully")
    };
    Ok(Json(json!({ "success": true, "message": message })))
}

// ---- status and config -------------------------------------------------------------------------

/// Whether memory is available: Mastra's `{result, memoryType}` (no `memoryType` for an agent
/// it does not know).
async fn status(Caller(_): Caller, Params(q): Params<AgentQuery>) -> Json<Value> {
    if unknown_agent(q.agent_id.as_deref()) {
        return Json(json!({ "result": true }));
    }
    Json(json!({ "result": true, "memoryType": "local" }))
}

/// The memory configuration of `memAgent` as Mastra reports it; `{config: null}` for an agent
/// it does not know.
async fn config(
    State(m): State<Memory>,
    Caller(_): Caller,
    Params(q): Params<AgentQuery>,
) -> Json<Value> {
    if unknown_agent(q.agent_id.as_deref()) {
        return Json(json!({ "config": null }));
    }
    let mut working_memory = json!({ "enabled": true, "template": WORKING_MEMORY_TEMPLATE });
    if m.working_memory == WorkingMemoryScope::Thread {
        working_memory["scope"] = json!("thread");
    }
    Json(json!({ "config": {
        "lastMessages": LAST_MESSAGES,
        "semanticRecall": false,
        "generateTitle": false,
        "workingMemory": working_memory,
        "observationalMemory": { "enabled": false },
    }}))
}

/// Observational memory is not enabled for `memAgent`: Mastra's 400 (404 for an unknown agent).
async fn observational_memory(
    Caller(_): Caller,
    Params(q): Params<AgentQuery>,
) -> Result<Json<Value>, ApiError> {
    known_agent(q.agent_id.as_deref())?;
    Err(ApiError::bad_request(NO_OBSERVATIONAL_MEMORY))
}

/// Same for the buffer-status wait, whose body names the agent.
async fn observational_memory_buffer(
    Caller(_): Caller,
    Body(body): Body<AgentQuery>,
) -> Result<Json<Value>, ApiError> {
    known_agent(body.agent_id.as_deref())?;
    Err(ApiError::bad_request(NO_OBSERVATIONAL_MEMORY))
}

// ---- working memory ----------------------------------------------------------------------------

/// The working memory of the caller's resource (default) or of the caller's thread, with
/// Mastra's template; a missing thread is fine (`threadExists: false`), as in Mastra.
async fn get_working_memory(
    State(m): State<Memory>,
    Caller(scope): Caller,
    ThreadPath(thread): ThreadPath,
    Params(q): Params<AgentQuery>,
) -> Result<Json<Value>, ApiError> {
    if unknown_agent(q.agent_id.as_deref()) {
        return Ok(Json(json!({
            "workingMemory": null, "source": "thread",
            "workingMemoryTemplate": null, "threadExists": false,
        })));
    }
    let own = own_thread(m.store.pool(), &scope, &thread).await?;
    let (working_memory, source) = match m.working_memory {
        WorkingMemoryScope::Resource => {
            let row = sqlx::query(r#"SELECT "workingMemory" FROM mastra_resources WHERE id = $1"#)
                .bind(scope.as_str())
                .fetch_optional(m.store.pool())
                .await
                .map_err(store_failed)?;
            (row.and_then(|r| text(&r, "workingMemory")), "resource")
        }
        WorkingMemoryScope::Thread => {
            let stored = own
                .as_ref()
                .and_then(|row| text(row, "metadata"))
                .and_then(|meta| serde_json::from_str::<Value>(&meta).ok());
            let wm = stored
                .as_ref()
                .and_then(|meta| meta.get("workingMemory"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            (wm, "thread")
        }
    };
    Ok(Json(json!({
        "workingMemory": working_memory,
        "source": source,
        "workingMemoryTemplate": {
            "format": "markdown",
            "content": WORKING_MEMORY_TEMPLATE.trim(),
        },
        "threadExists": own.is_some(),
    })))
}

#[derive(Deserialize)]
struct UpdateWorkingMemory {
    #[serde(rename = "workingMemory")]
    working_memory: Option<String>,
}

/// Replaces the working memory of the caller's resource or thread. The thread must be the
/// caller's, checked in the statement that writes.
async fn update_working_memory(
    State(m): State<Memory>,
    Caller(scope): Caller,
    ThreadPath(thread): ThreadPath,
    Params(q): Params<AgentQuery>,
    Body(body): Body<UpdateWorkingMemory>,
) -> Result<Json<Value>, ApiError> {
    let Some(working_memory) = body.working_memory else {
        return Err(invalid(
            "Invalid request body",
            "workingMemory",
            "Invalid input: expected string, received undefined",
        ));
    };
    known_agent(q.agent_id.as_deref())?;
    if working_memory.contains('\0') {
        return Err(ApiError::bad_request("Invalid request body"));
    }
    let now = now_iso();
    match m.working_memory {
        WorkingMemoryScope::Resource => {
            // One statement: the resource row is written only while the thread is the
            // caller's, so a thread taken over in between is refused, not written through.
            let written = sqlx::query(
                r#"INSERT INTO mastra_resources (id, "workingMemory", "createdAt", "updatedAt")
                SELECT $1, $2, $3, $3 WHERE EXISTS
                    (SELECT 1 FROM mastra_threads WHERE id = $4 AND "resourceId" = $1)
                ON CONFLICT (id) DO UPDATE SET "workingMemory" = excluded."workingMemory",
                    "updatedAt" = excluded."updatedAt""#,
            )
            .bind(scope.as_str())
            .bind(working_memory.as_str())
            .bind(now.as_str())
            .bind(thread.as_str())
            .execute(m.store.pool())
            .await
            .map_err(store_failed)?;
            if written.rows_affected() == 0 {
                return Err(not_own_thread(&m, &scope, &thread).await);
            }
        }
        WorkingMemoryScope::Thread => {
            thread_working_memory(&m, &scope, &thread, &working_memory, &now).await?;
        }
    }
    Ok(Json(json!({ "success": true })))
}

/// Sets `metadata.workingMemory` of the caller's thread, keeping its other keys byte for byte:
/// read, then a compare-and-swap `UPDATE` conditional on the owner and on the metadata read,
/// retried when a concurrent write of the caller's changed it.
async fn thread_working_memory(
    m: &Memory,
    scope: &ResourceId,
    thread: &ThreadId,
    working_memory: &str,
    now: &str,
) -> Result<(), ApiError> {
    for _ in 0..8 {
        let Some(row) = own_thread(m.store.pool(), scope, thread).await? else {
            return Err(not_own_thread(m, scope, thread).await);
        };
        let old = text(&row, "metadata");
        let mut keys: BTreeMap<String, Box<RawValue>> = old
            .as_deref()
            .and_then(|meta| serde_json::from_str(meta).ok())
            .unwrap_or_default();
        let value = serde_json::to_string(working_memory)
            .ok()
            .and_then(|s| RawValue::from_string(s).ok())
            .ok_or_else(|| ApiError::bad_request("Invalid request body"))?;
        keys.insert("workingMemory".into(), value);
        let new = serde_json::to_string(&keys)
            .map_err(|_| ApiError::bad_request("Invalid request body"))?;
        let written = sqlx::query(
            r#"UPDATE mastra_threads SET metadata = $1, "updatedAt" = $2
            WHERE id = $3 AND "resourceId" = $4 AND COALESCE(metadata, '') = $5"#,
        )
        .bind(new.as_str())
        .bind(now)
        .bind(thread.as_str())
        .bind(scope.as_str())
        .bind(old.as_deref().unwrap_or(""))
        .execute(m.store.pool())
        .await
        .map_err(store_failed)?;
        if written.rows_affected() == 1 {
            return Ok(());
        }
    }
    Err(Rejection::new(RejectionKind::Unavailable).into())
}

// ---- clone -------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CloneThread {
    #[serde(rename = "newThreadId")]
    new_thread_id: Option<String>,
    title: Option<String>,
    metadata: Option<BTreeMap<String, Box<RawValue>>>,
    options: Option<CloneOptions>,
}

#[derive(Deserialize)]
struct CloneOptions {
    #[serde(rename = "messageLimit")]
    message_limit: Option<f64>,
    #[serde(rename = "messageFilter")]
    message_filter: Option<CloneFilter>,
}

#[derive(Deserialize)]
struct CloneFilter {
    #[serde(rename = "startDate")]
    start_date: Option<Value>,
    #[serde(rename = "endDate")]
    end_date: Option<Value>,
    #[serde(rename = "messageIds")]
    message_ids: Option<Vec<String>>,
}

/// Copies the caller's thread and its messages (all, or those the options pick) into a new
/// thread of the caller's, in one transaction that creates the new id only while it is free
/// and the source is the caller's: a client-chosen `newThreadId` never takes over another
/// user's thread, and a failure leaves nothing behind.
async fn clone_thread(
    State(m): State<Memory>,
    Caller(scope): Caller,
    ThreadPath(source): ThreadPath,
    Params(q): Params<AgentQuery>,
    Body(body): Body<CloneThread>,
) -> Result<Json<Value>, ApiError> {
    known_agent(q.agent_id.as_deref())?;
    let target = thread_id_or_new(body.new_thread_id)?;
    let options = body.options.unwrap_or(CloneOptions {
        message_limit: None,
        message_filter: None,
    });
    let filter = options.message_filter;
    let start = bound(
        filter.as_ref().and_then(|f| f.start_date.as_ref()),
        "options.messageFilter.startDate",
    )?;
    let end = bound(
        filter.as_ref().and_then(|f| f.end_date.as_ref()),
        "options.messageFilter.endDate",
    )?;
    let picked: Option<BTreeSet<String>> = filter
        .and_then(|f| f.message_ids)
        .map(|ids| ids.into_iter().collect());
    // One transaction from the first read: on SQLite it holds the write lock throughout, so the
    // messages copied are the source's at the moment the copy is made. PostgreSQL's default
    // isolation suffices: the statement that creates the thread is owner-conditional by itself
    // (source the caller's, id free — a concurrent insert of the same id waits for the other
    // transaction and then inserts nothing), and the copies go only into that new thread.
    let begin = if m.sqlite { "BEGIN IMMEDIATE" } else { "BEGIN" };
    let mut tx = m
        .store
        .pool()
        .begin_with(begin)
        .await
        .map_err(store_failed)?;
    let Some(source_row) = own_thread(&mut *tx, &scope, &source).await? else {
        drop(tx);
        return Err(not_own_thread(&m, &scope, &source).await);
    };
    let mut messages: Vec<Message> = thread_messages(&mut *tx, &scope, source.as_str())
        .await?
        .into_iter()
        .filter(|msg| {
            start
                .as_deref()
                .is_none_or(|s| msg.created_at.as_str() >= s)
        })
        .filter(|msg| end.as_deref().is_none_or(|e| msg.created_at.as_str() <= e))
        .filter(|msg| picked.as_ref().is_none_or(|ids| ids.contains(&msg.id)))
        .collect();
    if let Some(limit) = options.message_limit.filter(|l| l.is_finite() && *l > 0.0) {
        let keep = (limit as usize).min(messages.len());
        messages.drain(..messages.len() - keep);
    }
    let now = now_iso();
    let title = body
        .title
        .unwrap_or_else(|| match text(&source_row, "title") {
            Some(t) if !t.is_empty() => format!("Clone of {t}"),
            _ => String::new(),
        });
    let mut clone = json!({ "sourceThreadId": source.as_str(), "clonedAt": now });
    if let Some(last) = messages.last() {
        clone["lastMessageId"] = json!(last.id);
    }
    let mut metadata = body.metadata.unwrap_or_default();
    metadata.insert(
        "clone".into(),
        RawValue::from_string(clone.to_string())
            .map_err(|_| ApiError::bad_request("Invalid request body"))?,
    );
    let metadata = serde_json::to_string(&metadata)
        .map_err(|_| ApiError::bad_request("Invalid request body"))?;
    if title.contains('\0') {
        return Err(ApiError::bad_request("Invalid request body"));
    }

    let created = sqlx::query(
        r#"INSERT INTO mastra_threads (id, "resourceId", title, metadata, "createdAt", "updatedAt")
        SELECT $1, $2, $3, $4, $5, $5 WHERE EXISTS
            (SELECT 1 FROM mastra_threads WHERE id = $6 AND "resourceId" = $2)
        ON CONFLICT (id) DO NOTHING"#,
    )
    .bind(target.as_str())
    .bind(scope.as_str())
    .bind(title.as_str())
    .bind(metadata.as_str())
    .bind(now.as_str())
    .bind(source.as_str())
    .execute(&mut *tx)
    .await
    .map_err(store_failed)?;
    if created.rows_affected() == 0 {
        drop(tx);
        return Err(clone_refused(&m, &scope, &source, &target).await);
    }
    let mut id_map = Map::new();
    let mut cloned = Vec::with_capacity(messages.len());
    for msg in messages {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            r#"INSERT INTO mastra_messages
                (id, thread_id, content, role, type, "createdAt", "resourceId")
            VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
        )
        .bind(id.as_str())
        .bind(target.as_str())
        .bind(msg.content.to_string())
        .bind(msg.role.as_deref())
        .bind(msg.kind.as_deref().unwrap_or("v2"))
        .bind(msg.created_at.as_str())
        .bind(scope.as_str())
        .execute(&mut *tx)
        .await
        .map_err(store_failed)?;
        id_map.insert(msg.id.clone(), Value::String(id.clone()));
        cloned.push(
            Message {
                id,
                thread: target.as_str().to_owned(),
                resource: Some(scope.as_str().to_owned()),
                ..msg
            }
            .json(),
        );
    }
    tx.commit().await.map_err(store_failed)?;
    let thread = ThreadJson {
        id: Some(target.as_str().to_owned()),
        resource_id: Some(scope.as_str().to_owned()),
        title: Some(title),
        metadata: Some(RawValue::from_string(metadata).ok()),
        created_at: Some(now.clone()),
        updated_at: Some(now),
    };
    Ok(Json(json!({
        "thread": thread,
        "messageIdMap": id_map,
        "clonedMessages": cloned,
    })))
}

/// Why a clone created nothing: the source is no longer the caller's (404 / 403), the new id is
/// another user's (403), or the caller already has a thread with that id (409).
async fn clone_refused(
    m: &Memory,
    scope: &ResourceId,
    source: &ThreadId,
    target: &ThreadId,
) -> ApiError {
    match own_thread(m.store.pool(), scope, source).await {
        Err(err) => return err,
        Ok(None) => return not_own_thread(m, scope, source).await,
        Ok(Some(_)) => {}
    }
    match own_thread(m.store.pool(), scope, target).await {
        Err(err) => err,
        Ok(Some(_)) => ApiError::conflict(format!("Thread with id {target} already exists")),
        Ok(None) => not_own_thread(m, scope, target).await,
    }
}

// ---- search ------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(rename = "agentId")]
    agent_id: Option<String>,
    #[serde(rename = "searchQuery")]
    search_query: Option<String>,
    #[serde(rename = "threadId")]
    thread_id: Option<String>,
    limit: Option<String>,
}

/// Mastra's text search (its answer when semantic recall is off): the recent messages of the
/// caller's given thread, or of the caller's most recently updated thread, newest first, each
/// with two messages of context either side. Every read is filtered by the caller's resource:
/// a search never crosses resources, whatever `resourceId` or `threadId` says.
async fn search(
    State(m): State<Memory>,
    Caller(scope): Caller,
    Params(q): Params<SearchQuery>,
) -> Result<Json<Value>, ApiError> {
    let Some(query) = q.search_query else {
        return Err(invalid_query(
            "searchQuery",
            "Invalid input: expected string, received undefined",
        ));
    };
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(l) => l
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|l| l.is_finite())
            .map(|l| l.clamp(0.0, 10_000.0) as usize)
            .ok_or_else(|| {
                invalid_query("limit", "Invalid input: expected number, received NaN")
            })?,
    };
    known_agent(q.agent_id.as_deref())?;
    let empty = || {
        Json(json!({
            "results": [], "count": 0, "query": query,
            "searchScope": "resource", "searchType": "text",
        }))
    };
    let thread = match q.thread_id {
        Some(id) => {
            let id = ThreadId::new(id).map_err(|_| ApiError::bad_request("Invalid thread id"))?;
            match own_thread(m.store.pool(), &scope, &id).await? {
                Some(row) => row,
                None => return Ok(empty()),
            }
        }
        None => {
            let sql = format!(
                r#"SELECT {THREAD_COLUMNS} FROM mastra_threads WHERE "resourceId" = $1
                ORDER BY "updatedAt" DESC, id DESC LIMIT 1"#
            );
            let row = sqlx::query(&sql)
                .bind(scope.as_str())
                .fetch_optional(m.store.pool())
                .await
                .map_err(store_failed)?;
            match row {
                Some(row) => row,
                None => return Ok(empty()),
            }
        }
    };
    let thread_id = text(&thread, "id").unwrap_or_default();
    let title = text(&thread, "title")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| thread_id.clone());
    let mut recent = thread_messages(m.store.pool(), &scope, &thread_id).await?;
    recent.drain(..recent.len().saturating_sub(LAST_MESSAGES));
    let brief = |msg: &Message| json!({ "id": msg.id, "role": msg.role, "content": msg.text(), "createdAt": msg.created_at });
    let mut results: Vec<Value> = recent
        .iter()
        .enumerate()
        .map(|(i, msg)| {
            let before: Vec<Value> = recent[i.saturating_sub(SEARCH_CONTEXT)..i]
                .iter()
                .map(brief)
                .collect();
            let after: Vec<Value> = recent[i + 1..(i + 1 + SEARCH_CONTEXT).min(recent.len())]
                .iter()
                .map(brief)
                .collect();
            json!({
                "id": msg.id,
                "role": msg.role,
                "content": msg.text(),
                "createdAt": msg.created_at,
                "threadId": thread_id,
                "threadTitle": title,
                "context": { "before": before, "after": after },
            })
        })
        .collect();
    results.reverse();
    results.truncate(limit);
    Ok(Json(json!({
        "count": results.len(),
        "results": results,
        "query": query,
        "searchScope": "resource",
        "searchType": "text",
    })))
}
