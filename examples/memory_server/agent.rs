//! The memory server's agent, `memAgent`: Mastra's agent routes and the seeds' `POST /api/chat`,
//! answered as Mastra streams (`data: <json>` server-sent events ending with `data: [DONE]`).
//!
//! The agent is deterministic and local: no model, no network. It saves the user's message
//! into the thread, answers from that thread's history (what this user said earlier in *this*
//! thread, nothing from another thread or resource), streams its answer a few words per event,
//! and saves the answer as an assistant message.
//!
//! What it may touch was decided before it runs, and it reads only those decisions:
//!
//! - the resource is the caller's ([`Caller`], from `ResourceScopeLayer`), never the body's
//!   `memory.resource` (which the scope layer forced to the same value anyway);
//! - the thread is the one `ThreadGuardLayer` admitted ([`ThreadId`] extension) from
//!   `memory.thread` (an id or `{id}`) or the legacy `threadId`;
//! - a thread that does not exist yet is created for the caller by the first owner-conditional
//!   write ([`ThreadWrites::save_messages`]): of two users racing on one new id, exactly one
//!   owns it and the other gets 403 before any event is sent.
//!
//! A request without `memory` (and without `threadId`) uses no memory: nothing is read or saved.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;
use tower_scope::guard::{
    GuardError, GuardRoute, NewMessage, SqlThreadStore, ThreadFields, ThreadWrites,
};
use tower_scope::scope::BodyRule;
use tower_scope::{ConfigError, MessageId, Rejection, RejectionKind, ResourceId, ThreadId, mastra};

use super::{ApiError, Body, Caller, now_iso, random_id, store_failed};

/// The one agent this server runs.
pub const AGENT_ID: &str = "memAgent";

/// The response header naming the thread in force.
pub const X_THREAD_ID: &str = "x-thread-id";

/// The pause between two streamed events, so that a page shows the answer arriving.
const PACE: Duration = Duration::from_millis(15);

/// Words per `text-delta` event.
const WORDS_PER_EVENT: usize = 3;

/// How many earlier messages of the thread the answer recalls, at most.
const RECALLED: usize = 5;

/// The agent's routes (state: the store), for the memory server's router.
pub fn routes() -> Router<SqlThreadStore> {
    Router::new()
        .route("/api/agents", get(list_agents))
        .route("/api/agents/{agent_id}", get(get_agent))
        .route("/api/agents/{agent_id}/generate", post(generate))
        .route("/api/agents/{agent_id}/stream", post(stream))
        .route("/api/chat", post(chat))
}

/// What the scope layer forces on the agent routes: Mastra's preset.
///
/// # Errors
///
/// Never for this prefix; a [`ConfigError`] would name a malformed one.
pub fn body_rules() -> Result<Vec<BodyRule>, ConfigError> {
    mastra::agent_body_rules("/api")
}

/// What the guard checks: Mastra's agent preset, and the seeds' chat route, whose body
/// `threadId` must be the caller's thread or a new one.
///
/// # Errors
///
/// Never for these paths; a [`ConfigError`] would name a malformed one.
pub fn guard_routes() -> Result<Vec<GuardRoute>, ConfigError> {
    let mut routes = mastra::agent_guard_routes("/api")?;
    routes.push(
        GuardRoute::new(Method::POST, "/api/chat")?
            .thread_from_body("threadId")?
            .allow_missing_thread(),
    );
    Ok(routes)
}

/// A random UUID (version 4, RFC 9562 section 5.4), as the seeds' `crypto.randomUUID()`.
pub fn uuid_v4() -> String {
    let mut hex: Vec<u8> = random_id(16).into_bytes();
    hex[12] = b'4';
    // The variant: the two high bits of this digit are `10`.
    let digit = char::from(hex[16]).to_digit(16).unwrap_or(0);
    hex[16] = b"89ab"[(digit & 3) as usize];
    let hex = String::from_utf8(hex).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

// ---- the agent list ----------------------------------------------------------------------

fn agent_json() -> Value {
    json!({
        "id": AGENT_ID,
        "name": AGENT_ID,
        "description": "A deterministic, local agent that remembers what you said earlier in the same thread.",
        "instructions": "Recall the user's earlier messages in this thread; never anything from another thread or user.",
        "tools": {},
        "workflows": {},
        "agents": {},
        "provider": "local",
        "modelId": "echo-memory",
        "supportsMemory": true,
        "defaultOptions": {},
    })
}

/// Mastra's shape: an object keyed by agent id.
async fn list_agents() -> Json<Value> {
    Json(json!({ AGENT_ID: agent_json() }))
}

async fn get_agent(Path(agent_id): Path<String>) -> Result<Json<Value>, ApiError> {
    known_agent(&agent_id)?;
    Ok(Json(agent_json()))
}

fn known_agent(agent_id: &str) -> Result<(), ApiError> {
    if agent_id == AGENT_ID {
        Ok(())
    } else {
        Err(Rejection::with_message(RejectionKind::NotFound, "Agent not found").into())
    }
}

// ---- requests ------------------------------------------------------------------------------

/// The part of Mastra's agent body this agent reads; the rest (`requestContext`,
/// `clientTools`, model settings) is accepted and ignored. The resource is never read from
/// here: the caller's is the only one.
#[derive(Deserialize)]
struct AgentRequest {
    messages: Option<Messages>,
    memory: Option<MemoryOption>,
    /// The legacy top-level thread id (the guard checked it like `memory.thread`).
    #[serde(rename = "threadId")]
    thread_id: Option<String>,
}

#[derive(Deserialize)]
struct MemoryOption {
    thread: Option<Value>,
}

/// `messages` as Mastra takes it: a string, one message, or a list of strings and messages.
#[derive(Deserialize)]
#[serde(untagged)]
enum Messages {
    Text(String),
    Many(Vec<MessageItem>),
    One(MessageIn),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MessageItem {
    Text(String),
    Message(MessageIn),
}

#[derive(Deserialize)]
struct MessageIn {
    role: Option<String>,
    content: Content,
}

/// A message's content: text, or AI SDK parts of which the text ones count.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
}

impl Content {
    fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// The input messages as `(role, text)`; roles other than `user`, `assistant` and `system`
/// are 400, as is input without any user text.
fn input_messages(messages: Option<Messages>) -> Result<Vec<(String, String)>, ApiError> {
    let items = match messages {
        None => Vec::new(),
        Some(Messages::Text(text)) => vec![MessageItem::Text(text)],
        Some(Messages::One(one)) => vec![MessageItem::Message(one)],
        Some(Messages::Many(many)) => many,
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (role, text) = match item {
            MessageItem::Text(text) => ("user".to_owned(), text),
            MessageItem::Message(m) => (m.role.unwrap_or_else(|| "user".into()), m.content.text()),
        };
        if !matches!(role.as_str(), "user" | "assistant" | "system") {
            return Err(ApiError::bad_request("Invalid message role"));
        }
        out.push((role, text));
    }
    if !out
        .iter()
        .any(|(role, text)| role == "user" && !text.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "messages must contain a user message",
        ));
    }
    Ok(out)
}

/// A thread the body names but the guard did not admit: refused, whatever the reason.
fn unchecked_thread() -> ApiError {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: the thread was not checked",
    )
    .into()
}

/// The thread in force: the one the guard admitted. A body naming a thread the guard did not
/// admit never reaches memory (fail closed); `memory` without any thread is 400.
fn thread_in_force(
    body_names_thread: bool,
    memory_given: bool,
    admitted: Option<ThreadId>,
) -> Result<Option<ThreadId>, ApiError> {
    match admitted {
        Some(thread) => Ok(Some(thread)),
        None if body_names_thread => Err(unchecked_thread()),
        None if memory_given => Err(ApiError::bad_request(
            "memory.thread is required when memory is used",
        )),
        None => Ok(None),
    }
}

// ---- the run ------------------------------------------------------------------------------

/// One agent run: what was said, the answer, and the thread it is remembered in.
struct Run {
    store: SqlThreadStore,
    scope: ResourceId,
    thread: Option<ThreadId>,
    run_id: String,
    /// The assistant message's id: streamed in `start` / `step-start` and saved under it, as
    /// Mastra does (the client names its message after it).
    message_id: String,
    answer: String,
    input_words: usize,
}

/// Saves the input into the thread (creating it for the caller when new), reads the thread's
/// earlier messages, and composes the answer. Without a thread nothing is read or saved.
async fn start_run(
    store: SqlThreadStore,
    scope: ResourceId,
    thread: Option<ThreadId>,
    input: Vec<(String, String)>,
) -> Result<Run, ApiError> {
    let said = input
        .iter()
        .rev()
        .find(|(role, _)| role == "user")
        .map(|(_, text)| text.clone())
        .unwrap_or_default();
    let input_words = input
        .iter()
        .map(|(_, t)| t.split_whitespace().count())
        .sum();
    let answer = match &thread {
        None => answer(None, &said),
        Some(thread) => {
            let now = now_iso();
            let batch = input
                .iter()
                .map(|(role, text)| message(uuid_v4(), thread, role, text, &now))
                .collect::<Result<Vec<_>, _>>()?;
            // The owner-conditional write: the thread is the caller's, or becomes theirs now.
            store.save_messages(&scope, &batch, &now).await?;
            name_new_thread(&store, &scope, thread, &said).await?;
            let saved: Vec<&str> = batch.iter().map(|m| m.id.as_str()).collect();
            let earlier = recent_user_messages(&store, &scope, thread, RECALLED + saved.len())
                .await?
                .into_iter()
                .filter(|(id, _)| !saved.contains(&id.as_str()))
                .map(|(_, text)| text)
                .collect::<Vec<_>>();
            answer(Some(&earlier), &said)
        }
    };
    Ok(Run {
        store,
        scope,
        thread,
        run_id: uuid_v4(),
        message_id: uuid_v4(),
        answer,
        input_words,
    })
}

/// A message in Mastra's stored format (v2: `{format: 2, parts, content}`).
fn message(
    id: String,
    thread: &ThreadId,
    role: &str,
    text: &str,
    at: &str,
) -> Result<NewMessage, ApiError> {
    let content =
        json!({ "format": 2, "parts": [{ "type": "text", "text": text }], "content": text });
    Ok(NewMessage {
        id: MessageId::new(id).map_err(|_| ApiError::bad_request("Invalid message id"))?,
        thread: thread.clone(),
        role: role.to_owned(),
        kind: "v2".into(),
        content: content.to_string(),
        created_at: at.to_owned(),
    })
}

/// Gives an untitled thread of the caller's the first words of its first message, so a
/// thread list can show it (owner-conditional, like every write).
async fn name_new_thread(
    store: &SqlThreadStore,
    scope: &ResourceId,
    thread: &ThreadId,
    said: &str,
) -> Result<(), ApiError> {
    let untitled =
        sqlx::query(r#"SELECT title FROM mastra_threads WHERE id = $1 AND "resourceId" = $2"#)
            .bind(thread.as_str())
            .bind(scope.as_str())
            .fetch_optional(store.pool())
            .await
            .map_err(store_failed)?
            .is_some_and(|row| {
                row.try_get::<Option<String>, _>("title")
                    .ok()
                    .flatten()
                    .is_none()
            });
    if untitled {
        let title: String = said
            .split_whitespace()
            .take(6)
            .collect::<Vec<_>>()
            .join(" ");
        let title = clip(&title, 60);
        store
            .update_thread(scope, thread, &ThreadFields::titled(title), &now_iso())
            .await?;
    }
    Ok(())
}

/// The thread's last `limit` user messages `(id, text)`, oldest first, read by id *and*
/// owner; bounded, so a long thread costs no more than a short one.
async fn recent_user_messages(
    store: &SqlThreadStore,
    scope: &ResourceId,
    thread: &ThreadId,
    limit: usize,
) -> Result<Vec<(String, String)>, ApiError> {
    let rows = sqlx::query(
        r#"SELECT m.id, m.content FROM mastra_messages AS m
        JOIN mastra_threads AS t ON t.id = m.thread_id
        WHERE m.thread_id = $1 AND t."resourceId" = $2 AND m.role = 'user'
        ORDER BY m."createdAt" DESC, m.id DESC LIMIT $3"#,
    )
    .bind(thread.as_str())
    .bind(scope.as_str())
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(store.pool())
    .await
    .map_err(store_failed)?;
    let mut messages: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            let text = |c: &str| row.try_get::<Option<String>, _>(c).ok().flatten();
            (
                text("id").unwrap_or_default(),
                stored_text(&text("content").unwrap_or_default()),
            )
        })
        .collect();
    messages.reverse();
    Ok(messages)
}

/// The text of stored content: Mastra's v2 JSON (`content`, else the text parts), or the
/// plain string another writer stored.
fn stored_text(content: &str) -> String {
    match serde_json::from_str::<Value>(content) {
        Ok(Value::Object(doc)) => match doc.get("content").and_then(Value::as_str) {
            Some(text) => text.to_owned(),
            None => doc
                .get("parts")
                .and_then(Value::as_array)
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("")
                })
                .unwrap_or_default(),
        },
        Ok(Value::String(text)) => text,
        _ => content.to_owned(),
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// The deterministic answer: `earlier` is the thread's earlier user messages (`None`: no
/// memory for this request).
fn answer(earlier: Option<&[String]>, said: &str) -> String {
    let said = clip(said.trim(), 200);
    match earlier {
        None => format!(
            "You said: \"{said}\". I have no memory for this request: name a thread in memory.thread and I will remember."
        ),
        Some([]) => {
            format!("Nice to meet you. You said: \"{said}\". I will remember it in this thread.")
        }
        Some(earlier) => {
            let recalled = earlier[earlier.len().saturating_sub(RECALLED)..]
                .iter()
                .map(|text| format!("\"{}\"", clip(text.trim(), 200)))
                .collect::<Vec<_>>()
                .join(", ");
            format!("Earlier in this thread you said: {recalled}. Just now you said: \"{said}\".")
        }
    }
}

impl Run {
    fn usage(&self) -> Value {
        let output = self.answer.split_whitespace().count();
        json!({
            "inputTokens": self.input_words,
            "outputTokens": output,
            "totalTokens": self.input_words + output,
        })
    }

    /// Saves the answer as the assistant's message in the thread (nothing without memory).
    async fn save_answer(&self) -> Result<(), GuardError> {
        let Some(thread) = &self.thread else {
            return Ok(());
        };
        let now = now_iso();
        let id = self.message_id.clone();
        let Ok(answer) = message(id, thread, "assistant", &self.answer, &now) else {
            return Ok(());
        };
        self.store.save_messages(&self.scope, &[answer], &now).await
    }

    /// A Mastra stream chunk: `{type, runId, from: "AGENT", payload}`.
    fn chunk(&self, kind: &str, payload: Value) -> Value {
        json!({ "type": kind, "runId": self.run_id, "from": "AGENT", "payload": payload })
    }

    /// The events before the answer is saved: start, the text a few words at a time.
    fn text_events(&self) -> Vec<Value> {
        let words: Vec<&str> = self.answer.split_whitespace().collect();
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut events = vec![
            self.chunk(
                "start",
                json!({ "id": AGENT_ID, "messageId": self.message_id }),
            ),
            self.chunk(
                "step-start",
                json!({
                    "warnings": [],
                    "messageId": self.message_id,
                    "startedAt": started_at,
                    "request": {},
                }),
            ),
            self.chunk("text-start", json!({ "id": "text-0" })),
        ];
        let groups = words.chunks(WORDS_PER_EVENT).collect::<Vec<_>>();
        for (i, group) in groups.iter().enumerate() {
            let mut text = group.join(" ");
            if i + 1 < groups.len() {
                text.push(' ');
            }
            events.push(self.chunk("text-delta", json!({ "id": "text-0", "text": text })));
        }
        events.push(self.chunk("text-end", json!({ "id": "text-0" })));
        events
    }

    /// The events after the answer is saved: the step's and the run's end.
    fn finish_events(&self) -> Vec<Value> {
        // Mastra's shape (compared with its own server): the step's and the run's end name the
        // message, the reason and the output.
        let payload = json!({
            "messageId": self.message_id,
            "stepResult": { "reason": "stop", "isContinued": false },
            "metadata": { "modelId": "echo-memory", "modelProvider": "local" },
            "output": { "text": self.answer, "toolCalls": [], "usage": self.usage() },
        });
        vec![
            self.chunk("step-finish", payload.clone()),
            self.chunk("finish", payload),
        ]
    }
}

/// The stream of one run: optional leading events, the text events paced, the answer saved,
/// the finish events, `[DONE]`. Produced lazily: each event is made when the client's
/// connection asks for the next frame, so nothing is buffered and a client that leaves stops
/// the run.
struct Events {
    run: Run,
    before: VecDeque<Value>,
    saved: bool,
    after: VecDeque<Value>,
    done: bool,
    sent: usize,
}

impl Events {
    fn new(run: Run, leading: Vec<Value>) -> Self {
        let mut before: VecDeque<Value> = leading.into();
        before.extend(run.text_events());
        let after = run.finish_events().into();
        Self {
            run,
            before,
            saved: false,
            after,
            done: false,
            sent: 0,
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        if let Some(event) = self.before.pop_front() {
            if self.sent > 0 {
                tokio::time::sleep(PACE).await;
            }
            self.sent += 1;
            return Some(frame(&event));
        }
        if !self.saved {
            self.saved = true;
            if let Err(err) = self.run.save_answer().await {
                // The head is sent: the refusal goes in the stream, as Mastra reports errors.
                self.after.clear();
                let message = Rejection::from(err).message().to_owned();
                return Some(frame(&self.run.chunk(
                    "error",
                    json!({ "type": "error", "error": { "name": "Error", "message": message } }),
                )));
            }
        }
        if let Some(event) = self.after.pop_front() {
            return Some(frame(&event));
        }
        if !self.done {
            self.done = true;
            return Some(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        None
    }
}

fn frame(event: &Value) -> Bytes {
    Bytes::from(format!("data: {event}\n\n"))
}

/// A `text-event-stream` answer naming the thread in force in `x-thread-id`.
fn event_stream(events: Events) -> Response {
    let thread = events.run.thread.clone();
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        let frame = events.next().await?;
        Some((Ok::<_, Infallible>(frame), events))
    });
    let mut res = axum::body::Body::from_stream(stream).into_response();
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx buffer answers unless told not to.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    name_thread(&mut res, thread.as_ref());
    res
}

fn name_thread(res: &mut Response, thread: Option<&ThreadId>) {
    if let Some(value) = thread.and_then(|t| HeaderValue::from_str(t.as_str()).ok()) {
        res.headers_mut().insert(X_THREAD_ID, value);
    }
}

// ---- handlers -----------------------------------------------------------------------------

/// Reads an agent request: the agent must exist, the thread is the guard's.
async fn agent_run(
    store: SqlThreadStore,
    agent_id: &str,
    scope: ResourceId,
    admitted: Option<ThreadId>,
    body: AgentRequest,
) -> Result<Run, ApiError> {
    known_agent(agent_id)?;
    let memory_thread = body
        .memory
        .as_ref()
        .and_then(|m| m.thread.as_ref())
        .is_some_and(|t| !t.is_null());
    let names_thread = memory_thread || body.thread_id.is_some();
    let thread = thread_in_force(names_thread, body.memory.is_some(), admitted)?;
    let input = input_messages(body.messages)?;
    start_run(store, scope, thread, input).await
}

/// `POST /api/agents/{agentId}/stream`: Mastra's stream, as `@mastra/client-js` reads it.
async fn stream(
    State(store): State<SqlThreadStore>,
    Path(agent_id): Path<String>,
    Caller(scope): Caller,
    admitted: Option<Extension<ThreadId>>,
    Body(body): Body<AgentRequest>,
) -> Result<Response, ApiError> {
    let run = agent_run(store, &agent_id, scope, admitted.map(|e| e.0), body).await?;
    Ok(event_stream(Events::new(run, Vec::new())))
}

/// `POST /api/agents/{agentId}/generate`: the whole answer as one JSON document.
async fn generate(
    State(store): State<SqlThreadStore>,
    Path(agent_id): Path<String>,
    Caller(scope): Caller,
    admitted: Option<Extension<ThreadId>>,
    Body(body): Body<AgentRequest>,
) -> Result<Response, ApiError> {
    let run = agent_run(store, &agent_id, scope, admitted.map(|e| e.0), body).await?;
    run.save_answer().await?;
    let usage = run.usage();
    let mut res = Json(json!({
        "text": run.answer,
        "finishReason": "stop",
        "usage": usage,
        "totalUsage": usage,
        "runId": run.run_id,
        "threadId": run.thread.as_ref().map(ThreadId::as_str),
        "resourceId": run.thread.as_ref().map(|_| run.scope.as_str()),
        "response": {
            "id": run.run_id,
            "messages": [{ "role": "assistant", "content": [{ "type": "text", "text": run.answer }] }],
        },
        "steps": [],
        "warnings": [],
    }))
    .into_response();
    name_thread(&mut res, run.thread.as_ref());
    Ok(res)
}

#[derive(Deserialize)]
struct ChatRequest {
    message: String,
    #[serde(rename = "threadId")]
    thread_id: Option<String>,
}

/// The seeds' chat route: `{message, threadId?}`, a new thread (UUID) when none is named; the
/// first event names the thread: `{"type":"thread","threadId":"<id>"}`.
async fn chat(
    State(store): State<SqlThreadStore>,
    Caller(scope): Caller,
    admitted: Option<Extension<ThreadId>>,
    Body(body): Body<ChatRequest>,
) -> Result<Response, ApiError> {
    if body.message.trim().is_empty() {
        return Err(ApiError::bad_request("message is required"));
    }
    let thread = match (admitted, body.thread_id) {
        (Some(Extension(thread)), _) => thread,
        (None, Some(_)) => return Err(unchecked_thread()),
        (None, None) => {
            ThreadId::new(uuid_v4()).map_err(|_| ApiError::bad_request("Invalid thread id"))?
        }
    };
    let run = start_run(
        store,
        scope,
        Some(thread.clone()),
        vec![("user".into(), body.message)],
    )
    .await?;
    let first = json!({ "type": "thread", "threadId": thread.as_str() });
    Ok(event_stream(Events::new(run, vec![first])))
}
