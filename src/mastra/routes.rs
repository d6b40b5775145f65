//! Mastra's memory API as route presets: what scope forces and what the guard checks.

use http::Method;

use crate::ConfigError;
use crate::guard::{GuardRoute, ThreadGuardLayer, ThreadStore};
use crate::scope::BodyRule;

/// The bases Mastra serves its memory API under: `{prefix}/memory` and its legacy
/// `{prefix}/memory/network` aliases.
fn bases(prefix: &str) -> [String; 2] {
    let p = prefix.trim_end_matches('/');
    [format!("{p}/memory"), format!("{p}/memory/network")]
}

/// The JSON body rules of Mastra's memory API under `prefix` (usually `/api`), for
/// [`ResourceScopeLayer::body_rules`](crate::ResourceScopeLayer::body_rules):
///
/// | route | body |
/// |---|---|
/// | `POST /memory/threads` | `resourceId` forced to the caller's |
/// | `PATCH /memory/threads/{threadId}` | `resourceId` forced |
/// | `POST /memory/threads/{threadId}/working-memory` | `resourceId` forced |
/// | `POST /memory/threads/{threadId}/clone` | `resourceId` forced |
/// | `POST /memory/observational-memory/buffer-status` | `resourceId` forced |
/// | `POST /memory/save-messages` | every `messages[].resourceId` must be the caller's (403) |
/// | `GET`, `HEAD`, `DELETE /memory/*` | no body (400 when one is sent) |
///
/// # Errors
///
/// [`ConfigError::InvalidPathPattern`] for a malformed prefix.
pub fn memory_body_rules(prefix: &str) -> Result<Vec<BodyRule>, ConfigError> {
    let mut rules = Vec::new();
    for m in bases(prefix) {
        let thread = format!("{m}/threads/{{threadId}}");
        let force = |method: Method, path: &str| BodyRule::new(method, path)?.force("resourceId");
        rules.push(force(Method::POST, &format!("{m}/threads"))?);
        rules.push(force(Method::PATCH, &thread)?);
        rules.push(force(Method::POST, &format!("{thread}/working-memory"))?);
        rules.push(force(Method::POST, &format!("{thread}/clone"))?);
        rules.push(force(
            Method::POST,
            &format!("{m}/observational-memory/buffer-status"),
        )?);
        rules.push(
            BodyRule::new(Method::POST, &format!("{m}/save-messages"))?
                .require("messages[].resourceId")?
                .refusal(super::messages::SAVE_FOREIGN_RESOURCE),
        );
    }
    // Mastra's GET and DELETE memory routes take no body; one sent anyway could carry a
    // `resourceId` that no rule forces to a handler that reads it.
    let p = prefix.trim_end_matches('/');
    for method in [Method::GET, Method::DELETE] {
        rules.push(BodyRule::new(method, &format!("{p}/memory/*"))?.no_body());
    }
    Ok(rules)
}

/// The guarded routes of Mastra's memory API under `prefix`, for
/// [`ThreadGuardLayer::routes`]; routes whose body names a resource expect the scope layer's
/// [`memory_body_rules`] to have run ([`GuardRoute::expect_scoped_body`]).
///
/// | route | check |
/// |---|---|
/// | `GET /memory/threads` | none here (the scope layer forces `?resourceId=`) |
/// | `POST /memory/threads` | body `threadId` missing or the caller's |
/// | `GET`, `PATCH`, `DELETE /memory/threads/{threadId}` | the caller's thread |
/// | `GET /memory/threads/{threadId}/messages` | the caller's thread; every message and thread in `?include=` the caller's |
/// | `GET /memory/threads/{threadId}/working-memory` | the caller's thread, or missing |
/// | `POST /memory/threads/{threadId}/working-memory` | the caller's thread |
/// | `POST /memory/threads/{threadId}/clone` | the caller's source; `newThreadId` missing or the caller's |
/// | `POST /memory/threads/{threadId}/transfer` | refused: it needs a privileged, unscoped context |
/// | `POST /memory/save-messages` | every message names a thread that is the caller's or missing; existing message ids the caller's |
/// | `POST /memory/messages/delete` | every message is the caller's, all or nothing |
/// | `GET /memory/status`, `/memory/config`, `/memory/search`, `/memory/observational-memory` | `?threadId=` the caller's or missing |
/// | `POST /memory/observational-memory/buffer-status` | body `threadId` the caller's or missing |
///
/// # Errors
///
/// [`ConfigError::InvalidPathPattern`] for a malformed prefix.
pub fn memory_guard_routes(prefix: &str) -> Result<Vec<GuardRoute>, ConfigError> {
    let mut routes = Vec::new();
    for m in bases(prefix) {
        let thread = format!("{m}/threads/{{threadId}}");
        let get = |path: &str| GuardRoute::new(Method::GET, path);
        let post = |path: &str| GuardRoute::new(Method::POST, path);
        routes.extend([
            get(&format!("{m}/threads"))?,
            post(&format!("{m}/threads"))?
                .thread_from_body("threadId")?
                .allow_missing_thread()
                .expect_scoped_body(),
            get(&thread)?.thread_from_path("threadId")?,
            GuardRoute::new(Method::PATCH, &thread)?
                .thread_from_path("threadId")?
                .expect_scoped_body(),
            GuardRoute::new(Method::DELETE, &thread)?.thread_from_path("threadId")?,
            get(&format!("{thread}/messages"))?
                .thread_from_path("threadId")?
                .messages_from_query_json("include")?,
            get(&format!("{thread}/working-memory"))?
                .thread_from_path("threadId")?
                .allow_missing_thread(),
            post(&format!("{thread}/working-memory"))?
                .thread_from_path("threadId")?
                .expect_scoped_body(),
            post(&format!("{thread}/clone"))?
                .thread_from_path("threadId")?
                .new_thread_from_body("newThreadId")?
                .expect_scoped_body(),
            post(&format!("{thread}/transfer"))?.deny(super::messages::TRANSFER_DENIED),
            post(&format!("{m}/save-messages"))?
                .save_messages("messages")?
                .expect_scoped_body(),
            post(&format!("{m}/messages/delete"))?.messages_from_body("messageIds")?,
            get(&format!("{m}/status"))?.allow_missing_thread(),
            get(&format!("{m}/config"))?.allow_missing_thread(),
            get(&format!("{m}/search"))?.allow_missing_thread(),
            get(&format!("{m}/observational-memory"))?.allow_missing_thread(),
            post(&format!("{m}/observational-memory/buffer-status"))?
                .thread_from_body("threadId")?
                .allow_missing_thread()
                .expect_scoped_body(),
        ]);
    }
    Ok(routes)
}

/// A [`ThreadGuardLayer`] over `store` for Mastra's memory API under `prefix`: its
/// [`memory_guard_routes`], coverage of `{prefix}/memory/*` (a memory route not listed is
/// refused, see [`ThreadGuardLayer::cover`]) and a `threadId` query parameter checked on
/// every route ([`ThreadGuardLayer::check_thread_query`]). Pair it with
/// [`memory_body_rules`] on the scope layer.
///
/// # Errors
///
/// [`ConfigError::InvalidPathPattern`] for a malformed prefix.
pub fn memory_guard<T: ThreadStore>(
    store: T,
    prefix: &str,
) -> Result<ThreadGuardLayer<T>, ConfigError> {
    let p = prefix.trim_end_matches('/');
    ThreadGuardLayer::new(store)
        .routes(memory_guard_routes(prefix)?)
        .cover(&format!("{p}/memory/*"))?
        .check_thread_query("threadId")
}

/// The agent routes under `{prefix}/agents/{agentId}` whose JSON body may carry Mastra's
/// `memory: {resource, thread}` (or the legacy top-level `resourceId` / `threadId`): the
/// execution routes of Mastra's `handlers/agents.ts` and those `@mastra/client-js` posts its
/// stream parameters to.
const AGENT_MEMORY_ROUTES: [&str; 11] = [
    "generate",
    "stream",
    "generate/vnext",
    "stream/vnext",
    "generate-legacy",
    "stream-legacy",
    "stream-until-idle",
    "resume-stream",
    "resume-stream-until-idle",
    "approve-tool-call",
    "decline-tool-call",
];

fn agent_paths(prefix: &str) -> impl Iterator<Item = String> {
    let p = prefix.trim_end_matches('/').to_owned();
    AGENT_MEMORY_ROUTES
        .into_iter()
        .map(move |route| format!("{p}/agents/{{agentId}}/{route}"))
}

/// The JSON body rules of Mastra's agent routes under `prefix` (usually `/api`), for
/// [`ResourceScopeLayer::body_rules`](crate::ResourceScopeLayer::body_rules), on `POST
/// /agents/{agentId}/` `generate`, `stream`, `generate/vnext`, `stream/vnext`,
/// `generate-legacy`, `stream-legacy`, `stream-until-idle`, `resume-stream`,
/// `resume-stream-until-idle`, `approve-tool-call` and `decline-tool-call`:
///
/// | field | rule |
/// |---|---|
/// | `memory.resource` | forced to the caller's where `memory` is an object (a body without `memory` uses no memory and is left alone) |
/// | `resourceId` (legacy) | forced to the caller's |
/// | `resourceid` (legacy spelling) | must be the caller's (403) |
/// | `requestContext.mastra__resourceId` | must be the caller's (403): Mastra's reserved key, never the client's to choose |
///
/// A client-chosen `memory.resource` reaching agent code is the vulnerability class of
/// Mastra's issue #22875; here it never does.
///
/// # Errors
///
/// [`ConfigError::InvalidPathPattern`] for a malformed prefix.
pub fn agent_body_rules(prefix: &str) -> Result<Vec<BodyRule>, ConfigError> {
    agent_paths(prefix)
        .map(|path| {
            BodyRule::new(Method::POST, &path)?
                .force("memory.resource")?
                .force("resourceId")?
                .require("resourceid")?
                .require("requestContext.mastra__resourceId")
        })
        .collect()
}

/// The guarded agent routes under `prefix` (the routes of [`agent_body_rules`]), for
/// [`ThreadGuardLayer::routes`]: the thread in `memory.thread` (an id, or `{id, ..}`) or the
/// legacy `threadId` must be the caller's or not exist yet (the agent then creates it for the
/// caller, with an owner-conditional write); both present and different is 400; no thread at
/// all is allowed (no memory). The admitted thread reaches the handler as a
/// [`ThreadId`](crate::ThreadId) extension. Each route expects [`agent_body_rules`] to have run
/// ([`GuardRoute::expect_scoped_body`]).
///
/// # Errors
///
/// [`ConfigError::InvalidPathPattern`] for a malformed prefix.
pub fn agent_guard_routes(prefix: &str) -> Result<Vec<GuardRoute>, ConfigError> {
    agent_paths(prefix)
        .map(|path| {
            Ok(GuardRoute::new(Method::POST, &path)?
                .thread_from_body("memory.thread")?
                .thread_from_body("threadId")?
                .allow_missing_thread()
                .expect_scoped_body())
        })
        .collect()
}
