//! The memory server's application: Mastra's memory API on SQL, behind the tower-scope stack.
//!
//! The handlers are deliberately naive: they trust the `resourceId` and thread ids they are
//! given. Every isolation guarantee comes from the layers in front of them.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use tower_scope::guard::{SqlThreadStore, ThreadGuardLayer};
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
use tower_scope::{
    BearerAuthLayer, ConfigError, CorsLayer, JsonErrorLayer, LogLayer, ResourceScopeLayer,
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
#[derive(Debug, Clone)]
pub struct Settings {
    pub jwt_secret: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub cors_origins: Vec<String>,
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
    let auth = auth.build()?;
    // No configured origins: any origin, no credentials; with origins: exactly those, with
    // credentials (Mastra's two defaults).
    let cors = if settings.cors_origins.is_empty() {
        CorsLayer::mastra_defaults().build()?
    } else {
        CorsLayer::mastra_defaults_with_credentials()
            .allow_origins(settings.cors_origins.iter().map(String::as_str))
            .build()?
    };
    let log = LogLayer::new()
        .exclude_path("/health")?
        .user(|c: &Claims| c.sub.clone());
    let pool = store.pool().clone();
    let router = Router::new()
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
        .with_state(pool)
        // Last `.layer()` is outermost.
        .layer(ThreadGuardLayer::new(store).mastra_memory_routes("/api")?)
        .layer(ResourceScopeLayer::new(resource_of))
        .layer(BearerAuthLayer::new(auth).public_path("/health")?)
        .layer(cors) // outside auth: preflights never meet auth, and 401s carry CORS headers
        .layer(log) // logs every answer, names user and resource on refusals too, turns panics into 500s
        .layer(JsonErrorLayer::new()); // outermost: every refusal, the panic 500 included, as JSON
    Ok(router)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn db_error(_err: sqlx::Error) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "Database error")
}

/// An RFC 3339 UTC timestamp with milliseconds, like Mastra stores.
pub fn now_iso() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, millis) = (now.as_secs() as i64, now.subsec_millis());
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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

fn thread_json(row: &AnyRow) -> Value {
    let metadata: Option<String> = row.try_get("metadata").ok().flatten();
    json!({
        "id": row.try_get::<String, _>("id").unwrap_or_default(),
        "resourceId": row.try_get::<Option<String>, _>("resourceId").ok().flatten(),
        "title": row.try_get::<Option<String>, _>("title").ok().flatten(),
        "metadata": metadata.and_then(|m| serde_json::from_str::<Value>(&m).ok()),
        "createdAt": row.try_get::<Option<String>, _>("createdAt").ok().flatten(),
        "updatedAt": row.try_get::<Option<String>, _>("updatedAt").ok().flatten(),
    })
}

const THREAD_COLUMNS: &str = r#"id, "resourceId", title, metadata, "createdAt", "updatedAt""#;

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "resourceId")]
    resource_id: Option<String>,
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

/// Lists the threads of `?resourceId=` — which the scope layer has forced to the caller's.
async fn list_threads(State(pool): State<AnyPool>, Query(q): Query<ListQuery>) -> Response {
    let (Some(page), Some(per_page)) = (
        non_negative(q.page.as_deref(), 0),
        non_negative(q.per_page.as_deref(), 100),
    ) else {
        return error(StatusCode::BAD_REQUEST, "Invalid query parameters");
    };
    let per_page = per_page.max(1);
    // Naive on purpose: without a resourceId it would list everyone's threads.
    let (filter, resource) = match &q.resource_id {
        Some(r) => (r#"WHERE "resourceId" = $1"#, Some(r.clone())),
        None => ("", None),
    };
    let count_sql = format!(r#"SELECT COUNT(*) AS total FROM mastra_threads {filter}"#);
    let mut count = sqlx::query(&count_sql);
    if let Some(r) = &resource {
        count = count.bind(r.clone());
    }
    let total: i64 = match count.fetch_one(&pool).await {
        Ok(row) => row.try_get("total").unwrap_or(0),
        Err(e) => return db_error(e),
    };
    let list_sql = format!(
        r#"SELECT {THREAD_COLUMNS} FROM mastra_threads {filter} ORDER BY "createdAt" DESC, id LIMIT {per_page} OFFSET {}"#,
        page * per_page
    );
    let mut list = sqlx::query(&list_sql);
    if let Some(r) = &resource {
        list = list.bind(r.clone());
    }
    match list.fetch_all(&pool).await {
        Ok(rows) => {
            let threads: Vec<Value> = rows.iter().map(thread_json).collect();
            let has_more = (page + 1) * per_page < total;
            Json(json!({ "threads": threads, "total": total, "page": page, "perPage": per_page, "hasMore": has_more }))
                .into_response()
        }
        Err(e) => db_error(e),
    }
}

async fn fetch_thread(pool: &AnyPool, id: &str) -> Result<Option<Value>, sqlx::Error> {
    let sql = format!(r#"SELECT {THREAD_COLUMNS} FROM mastra_threads WHERE id = $1"#);
    Ok(sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(thread_json))
}

#[derive(Deserialize)]
struct CreateThread {
    title: Option<String>,
    metadata: Option<Value>,
    #[serde(rename = "threadId")]
    thread_id: Option<String>,
    #[serde(rename = "resourceId")]
    resource_id: Option<String>,
}

/// Creates (or re-saves) a thread for the body's `resourceId` — forced to the caller's.
async fn create_thread(State(pool): State<AnyPool>, Json(body): Json<CreateThread>) -> Response {
    let Some(resource) = body.resource_id.filter(|r| !r.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Argument \"resourceId\" is required",
        );
    };
    let id = body.thread_id.unwrap_or_else(|| random_id(16));
    let now = now_iso();
    let sql = r#"INSERT INTO mastra_threads (id, "resourceId", title, metadata, "createdAt", "updatedAt")
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (id) DO UPDATE SET title = excluded.title, metadata = excluded.metadata,
            "resourceId" = excluded."resourceId", "updatedAt" = excluded."updatedAt""#;
    let result = sqlx::query(sql)
        .bind(id.clone())
        .bind(resource)
        .bind(body.title)
        .bind(body.metadata.map(|m| m.to_string()))
        .bind(now.clone())
        .bind(now)
        .execute(&pool)
        .await;
    match result {
        Ok(_) => match fetch_thread(&pool, &id).await {
            Ok(Some(thread)) => Json(thread).into_response(),
            Ok(None) => error(StatusCode::NOT_FOUND, "Thread not found"),
            Err(e) => db_error(e),
        },
        Err(e) => db_error(e),
    }
}

async fn get_thread(State(pool): State<AnyPool>, Path(thread_id): Path<String>) -> Response {
    match fetch_thread(&pool, &thread_id).await {
        Ok(Some(thread)) => Json(thread).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "Thread not found"),
        Err(e) => db_error(e),
    }
}

#[derive(Deserialize)]
struct UpdateThread {
    title: Option<String>,
    metadata: Option<Value>,
    #[serde(rename = "resourceId")]
    resource_id: Option<String>,
}

/// Updates title, metadata and — naively — `resourceId` (the guard forces it to the caller's).
async fn update_thread(
    State(pool): State<AnyPool>,
    Path(thread_id): Path<String>,
    Json(body): Json<UpdateThread>,
) -> Response {
    let sql = r#"UPDATE mastra_threads SET title = COALESCE($1, title), metadata = COALESCE($2, metadata),
        "resourceId" = COALESCE($3, "resourceId"), "updatedAt" = $4 WHERE id = $5"#;
    let result = sqlx::query(sql)
        .bind(body.title)
        .bind(body.metadata.map(|m| m.to_string()))
        .bind(body.resource_id)
        .bind(now_iso())
        .bind(thread_id.clone())
        .execute(&pool)
        .await;
    match result {
        Ok(_) => get_thread(State(pool), Path(thread_id)).await,
        Err(e) => db_error(e),
    }
}

async fn delete_thread(State(pool): State<AnyPool>, Path(thread_id): Path<String>) -> Response {
    let messages = sqlx::query("DELETE FROM mastra_messages WHERE thread_id = $1")
        .bind(thread_id.clone())
        .execute(&pool)
        .await;
    let thread = sqlx::query("DELETE FROM mastra_threads WHERE id = $1")
        .bind(thread_id)
        .execute(&pool)
        .await;
    match (messages, thread) {
        (Ok(_), Ok(done)) if done.rows_affected() > 0 => {
            Json(json!({ "result": "Thread deleted" })).into_response()
        }
        (Ok(_), Ok(_)) => error(StatusCode::NOT_FOUND, "Thread not found"),
        (Err(e), _) | (_, Err(e)) => db_error(e),
    }
}

fn message_json(row: &AnyRow) -> Value {
    let content: Option<String> = row.try_get("content").ok().flatten();
    json!({
        "id": row.try_get::<String, _>("id").unwrap_or_default(),
        "threadId": row.try_get::<Option<String>, _>("thread_id").ok().flatten(),
        "resourceId": row.try_get::<Option<String>, _>("resourceId").ok().flatten(),
        "role": row.try_get::<Option<String>, _>("role").ok().flatten(),
        "type": row.try_get::<Option<String>, _>("type").ok().flatten(),
        "content": content.map(|c| serde_json::from_str::<Value>(&c).unwrap_or(Value::String(c))),
        "createdAt": row.try_get::<Option<String>, _>("createdAt").ok().flatten(),
    })
}

async fn list_messages(State(pool): State<AnyPool>, Path(thread_id): Path<String>) -> Response {
    let sql = r#"SELECT id, thread_id, content, role, type, "createdAt", "resourceId" FROM mastra_messages
        WHERE thread_id = $1 ORDER BY "createdAt", id"#;
    match sqlx::query(sql).bind(thread_id).fetch_all(&pool).await {
        Ok(rows) => {
            let messages: Vec<Value> = rows.iter().map(message_json).collect();
            Json(json!({ "messages": messages, "uiMessages": [] })).into_response()
        }
        Err(e) => db_error(e),
    }
}

#[derive(Deserialize)]
struct SaveMessages {
    messages: Vec<NewMessage>,
}

#[derive(Deserialize)]
struct NewMessage {
    id: Option<String>,
    #[serde(rename = "threadId")]
    thread_id: String,
    #[serde(rename = "resourceId")]
    resource_id: String,
    role: Option<String>,
    content: Value,
}

/// Saves messages as given (the guard checked resource and thread of each), creating a
/// missing thread under the message's resource.
async fn save_messages(State(pool): State<AnyPool>, Json(body): Json<SaveMessages>) -> Response {
    let mut saved = Vec::new();
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return db_error(e),
    };
    for m in body.messages {
        let now = now_iso();
        let thread = r#"INSERT INTO mastra_threads (id, "resourceId", title, metadata, "createdAt", "updatedAt")
            VALUES ($1, $2, NULL, NULL, $3, $4) ON CONFLICT (id) DO NOTHING"#;
        if let Err(e) = sqlx::query(thread)
            .bind(m.thread_id.clone())
            .bind(m.resource_id.clone())
            .bind(now.clone())
            .bind(now.clone())
            .execute(&mut *tx)
            .await
        {
            return db_error(e);
        }
        let id = m.id.unwrap_or_else(|| random_id(16));
        let content = match &m.content {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let sql = r#"INSERT INTO mastra_messages (id, thread_id, content, role, type, "createdAt", "resourceId")
            VALUES ($1, $2, $3, $4, 'v2', $5, $6)
            ON CONFLICT (id) DO UPDATE SET content = excluded.content, role = excluded.role"#;
        let result = sqlx::query(sql)
            .bind(id.clone())
            .bind(m.thread_id.clone())
            .bind(content)
            .bind(m.role.clone().unwrap_or_else(|| "user".into()))
            .bind(now.clone())
            .bind(m.resource_id.clone())
            .execute(&mut *tx)
            .await;
        if let Err(e) = result {
            return db_error(e);
        }
        saved.push(json!({ "id": id, "threadId": m.thread_id, "resourceId": m.resource_id, "role": m.role, "content": m.content, "createdAt": now }));
    }
    match tx.commit().await {
        Ok(()) => Json(json!({ "messages": saved })).into_response(),
        Err(e) => db_error(e),
    }
}

/// Deletes the listed messages (the guard checked that every one is the caller's).
async fn delete_messages(State(pool): State<AnyPool>, Json(body): Json<Value>) -> Response {
    let ids: Vec<String> = match body.get("messageIds") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.get("id").and_then(Value::as_str).map(str::to_owned))
            })
            .collect(),
        Some(Value::Object(o)) => o
            .get("id")
            .and_then(Value::as_str)
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default(),
        _ => return error(StatusCode::BAD_REQUEST, "messageIds is required"),
    };
    for id in &ids {
        if let Err(e) = sqlx::query("DELETE FROM mastra_messages WHERE id = $1")
            .bind(id.clone())
            .execute(&pool)
            .await
        {
            return db_error(e);
        }
    }
    let n = ids.len();
    let message = if n == 1 {
        "1 message deleted successfully".to_owned()
    } else {
        format!("{n} messages deleted successfully")
    };
    Json(json!({ "success": true, "message": message })).into_response()
}
