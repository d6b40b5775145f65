//! The one event per request: what it records, redaction, and when it is emitted (on drop).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::header::{HeaderMap, HeaderValue};
use http::{Extensions, Method, Request, Uri, response};
use tracing::Level;

use super::layer::{Config, UserAccessor};
use crate::http::protocol::{GRPC_STATUS, is_grpc};
use crate::query;
use crate::reject::Rejection;
use crate::{ActingAs, ActingVia, AuthState, Privileged, ResourceId, ThreadId};

/// The event's target, for filters (`RUST_LOG=tower_scope::log=info`).
pub(super) const TARGET: &str = "tower_scope::log";

/// Shown instead of a secret.
const REDACTED: &str = "[REDACTED]";

/// Query parameters that usually carry credentials (compared lowercase, `-` as `_`).
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "token",
    "apikey",
    "api_key",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "code",
    "refresh_token",
    "id_token",
    "jwt",
    "auth",
    "authorization",
    "signature",
    "sig",
    "session",
    "sessionid",
];

/// Words that mark any query parameter containing them as a credential (`my_refresh_token`).
const SECRET_WORDS: &[&str] = &["token", "secret", "password", "passwd"];

/// Whether an event at `level` would be recorded; `event!` needs a constant level.
pub(super) fn enabled(level: Level) -> bool {
    match level {
        Level::ERROR => tracing::enabled!(target: TARGET, Level::ERROR),
        Level::WARN => tracing::enabled!(target: TARGET, Level::WARN),
        Level::INFO => tracing::enabled!(target: TARGET, Level::INFO),
        Level::DEBUG => tracing::enabled!(target: TARGET, Level::DEBUG),
        _ => tracing::enabled!(target: TARGET, Level::TRACE),
    }
}

/// Values inner layers concluded after this layer ran, handed back through the request's
/// extensions (see `crate::gate::note`).
#[derive(Clone)]
pub(super) struct Slot(Arc<SlotInner>);

struct SlotInner {
    user_of: Option<UserAccessor>,
    auth: OnceLock<AuthState>,
    user: OnceLock<String>,
    resource_id: OnceLock<ResourceId>,
    thread_id: OnceLock<ThreadId>,
    privileged: OnceLock<Privileged>,
    acting_as: OnceLock<ActingAs>,
}

impl Slot {
    pub(super) fn new(user_of: Option<UserAccessor>) -> Self {
        Self(Arc::new(SlotInner {
            user_of,
            auth: OnceLock::new(),
            user: OnceLock::new(),
            resource_id: OnceLock::new(),
            thread_id: OnceLock::new(),
            privileged: OnceLock::new(),
            acting_as: OnceLock::new(),
        }))
    }

    /// Copies the user, resource id and thread id out of the request's extensions.
    pub(super) fn capture(&self, extensions: &Extensions) {
        let inner = &self.0;
        if let Some(state) = extensions.get::<AuthState>() {
            let _ = inner.auth.set(*state);
        }
        if let Some(user) = inner.user_of.as_ref().and_then(|f| f(extensions)) {
            let _ = inner.user.set(user);
        }
        if let Some(id) = extensions.get::<ResourceId>() {
            let _ = inner.resource_id.set(id.clone());
        }
        if let Some(id) = extensions.get::<ThreadId>() {
            let _ = inner.thread_id.set(id.clone());
        }
        if let Some(privileged) = extensions.get::<Privileged>() {
            let _ = inner.privileged.set(privileged.clone());
        }
        if let Some(acting) = extensions.get::<ActingAs>() {
            let _ = inner.acting_as.set(acting.clone());
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the inner service.
    Waiting,
    /// The inner service failed.
    ServiceError,
    /// Waiting for the end of the body (gRPC trailers, streaming).
    Body,
    /// Everything known.
    Done,
}

/// Everything the event needs; emitted when dropped, so no path can lose it.
pub(super) struct PendingEvent {
    config: Arc<Config>,
    method: Method,
    uri: Uri,
    headers: Option<String>,
    request_id: Option<HeaderValue>,
    start: Instant,
    phase: Phase,
    status: Option<u16>,
    grpc_status: Option<u16>,
    size: Option<u64>,
    streamed: u64,
    auth: Option<AuthState>,
    user: Option<String>,
    resource_id: Option<ResourceId>,
    thread_id: Option<ThreadId>,
    privileged: Option<Privileged>,
    acting_as: Option<ActingAs>,
    slot: Option<Slot>,
    rejection: Option<Rejection>,
    panicked: bool,
}

impl PendingEvent {
    /// Starts the event for a request; `extensions` may already hold a user or ids.
    pub(super) fn start<B>(
        config: Arc<Config>,
        req: &mut Request<B>,
        request_id: Option<HeaderValue>,
    ) -> Box<Self> {
        let logged_headers = config
            .log_headers
            .then(|| render_headers(req.headers(), &config));
        let extensions = req.extensions_mut();
        let auth = extensions.get::<AuthState>().copied();
        let user = config.user.as_ref().and_then(|f| f(extensions));
        let resource_id = extensions.get::<ResourceId>().cloned();
        let thread_id = extensions.get::<ThreadId>().cloned();
        let slot = Slot::new(config.user.clone());
        extensions.insert(slot.clone());
        let slot = Some(slot);
        // Boxed: the futures and the body that carry it stay small and cheap to move.
        Box::new(Self {
            config,
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: logged_headers,
            request_id,
            start: Instant::now(),
            phase: Phase::Waiting,
            status: None,
            grpc_status: None,
            size: None,
            streamed: 0,
            auth,
            user,
            resource_id,
            thread_id,
            privileged: None,
            acting_as: None,
            slot,
            rejection: None,
            panicked: false,
        })
    }

    pub(super) fn service_error(&mut self) {
        self.phase = Phase::ServiceError;
    }

    /// The inner service panicked: before its answer (the 500 that replaced it is recorded by
    /// `head`) or while streaming the body.
    pub(super) fn panicked(&mut self) {
        self.panicked = true;
    }

    /// Records the response head; returns whether the event must wait for the body's end.
    pub(super) fn head(&mut self, parts: &response::Parts, exact_size: Option<u64>) -> bool {
        self.status = Some(parts.status.as_u16());
        self.grpc_status = grpc_status(&parts.headers);
        self.rejection = parts.extensions.get::<Rejection>().cloned();
        if let Some(user) = self.config.user.as_ref().and_then(|f| f(&parts.extensions)) {
            self.user = Some(user);
        }
        if let Some(id) = parts.extensions.get::<ResourceId>() {
            self.resource_id = Some(id.clone());
        }
        if let Some(id) = parts.extensions.get::<ThreadId>() {
            self.thread_id = Some(id.clone());
        }
        self.size = exact_size;
        // gRPC puts its status in trailers unless the answer is trailers-only.
        let wait = (self.grpc_status.is_none() && is_grpc(&parts.headers)) || exact_size.is_none();
        self.phase = if wait { Phase::Body } else { Phase::Done };
        wait
    }

    pub(super) fn data(&mut self, len: usize) {
        self.streamed += len as u64;
    }

    pub(super) fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(code) = grpc_status(trailers) {
            self.grpc_status = Some(code);
        }
    }

    pub(super) fn body_done(&mut self) {
        self.size = Some(self.streamed);
        self.phase = Phase::Done;
    }

    fn level(&self) -> Level {
        let config = &self.config;
        let server = self.phase == Phase::ServiceError
            || self.panicked
            || self.status.is_some_and(|s| s >= 500)
            || self.grpc_status.is_some_and(grpc_server_error);
        let client = self.phase == Phase::Waiting
            || self.status.is_some_and(|s| (400..500).contains(&s))
            || self.grpc_status.is_some_and(|c| c != 0);
        if server {
            config.server_error_level
        } else if client {
            config.client_error_level
        } else {
            config.success_level
        }
    }

    fn emit(&mut self) {
        let level = self.level();
        if !enabled(level) {
            return;
        }
        if let Some(slot) = self.slot.take() {
            let slot = &slot.0;
            self.auth = self.auth.or_else(|| slot.auth.get().copied());
            self.user = self.user.take().or_else(|| slot.user.get().cloned());
            self.resource_id = self
                .resource_id
                .take()
                .or_else(|| slot.resource_id.get().cloned());
            self.thread_id = self
                .thread_id
                .take()
                .or_else(|| slot.thread_id.get().cloned());
            self.privileged = self
                .privileged
                .take()
                .or_else(|| slot.privileged.get().cloned());
            self.acting_as = self
                .acting_as
                .take()
                .or_else(|| slot.acting_as.get().cloned());
        }
        let path = logged_path(&self.uri, &self.config);
        let latency_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let aborted = match self.phase {
            Phase::Waiting => Some("before_response"),
            Phase::Body => Some("during_body"),
            Phase::ServiceError | Phase::Done => None,
        };
        // A stream the client left mid-body still says how much of it was sent.
        let size = match self.phase {
            Phase::Body => Some(self.streamed),
            _ => self.size,
        };
        let rejection = self.rejection.as_ref();
        macro_rules! event_at {
            ($level:expr) => {
                tracing::event!(
                    target: TARGET,
                    $level,
                    method = self.method.as_str(),
                    path = &*path,
                    status = self.status,
                    grpc_status = self.grpc_status,
                    latency_us,
                    response_size = size,
                    request_id = self.request_id.as_ref().and_then(|v| v.to_str().ok()),
                    auth = self.auth.map(AuthState::as_str),
                    user = self.user.as_deref(),
                    resource_id = self.resource_id.as_ref().map(ResourceId::as_str),
                    thread_id = self.thread_id.as_ref().map(ThreadId::as_str),
                    privileged = self.privileged.as_ref().map(|_| true),
                    privilege = self.privileged.as_ref().and_then(Privileged::permission),
                    acting_as = self.acting_as.as_ref().map(|a| a.resource.as_str()),
                    acting_via = self.acting_as.as_ref().map(|a| match a.via {
                        ActingVia::Privilege => "privilege",
                        ActingVia::Approval => "approval",
                    }),
                    rejection = rejection.map(|r| tracing::field::debug(r.kind())),
                    rejection_message = rejection.map(Rejection::message),
                    headers = self.headers.as_deref(),
                    service_error = (self.phase == Phase::ServiceError).then_some(true),
                    panicked = self.panicked.then_some(true),
                    aborted,
                    "request"
                )
            };
        }
        match level {
            Level::ERROR => event_at!(Level::ERROR),
            Level::WARN => event_at!(Level::WARN),
            Level::INFO => event_at!(Level::INFO),
            Level::DEBUG => event_at!(Level::DEBUG),
            _ => event_at!(Level::TRACE),
        }
    }
}

impl Drop for PendingEvent {
    fn drop(&mut self) {
        self.emit();
    }
}

/// The `grpc-status` in headers or trailers.
fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    headers
        .get(GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// gRPC codes that mean the server failed: UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE,
/// DATA_LOSS.
fn grpc_server_error(code: u16) -> bool {
    matches!(code, 2 | 4 | 13 | 14 | 15)
}

/// The path, plus the query with secret-looking values redacted when the query is logged.
fn logged_path<'a>(uri: &'a Uri, config: &Config) -> Cow<'a, str> {
    match uri.query() {
        Some(q) if config.log_query => {
            let mut out = String::with_capacity(uri.path().len() + q.len() + 1);
            out.push_str(uri.path());
            out.push('?');
            redact_query(&mut out, q, config);
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(uri.path()),
    }
}

fn redact_query(out: &mut String, query: &str, config: &Config) {
    for (i, pair) in query::pairs(query).enumerate() {
        if i > 0 {
            out.push('&');
        }
        if is_secret_param(&pair.key, config) {
            let raw_key = pair.raw.split_once('=').map_or(pair.raw, |(k, _)| k);
            out.push_str(raw_key);
            out.push('=');
            out.push_str(REDACTED);
        } else {
            out.push_str(pair.raw);
        }
    }
}

/// Whether a query key names a credential: one of [`SECRET_PARAMS`], a configured name, or
/// anything containing one of [`SECRET_WORDS`]. Runs for every logged query pair, so it
/// compares in place instead of building a normalised copy of the key.
fn is_secret_param(key: &str, config: &Config) -> bool {
    let key = key.as_bytes();
    SECRET_PARAMS.iter().any(|name| same_param(key, name))
        || config.redact_query.iter().any(|name| same_param(key, name))
        || SECRET_WORDS.iter().any(|word| {
            key.windows(word.len())
                .any(|window| same_param(window, word))
        })
}

/// `key` equals `normalised` (ASCII lowercase, `_` for `-`) once `key` is normalised likewise.
fn same_param(key: &[u8], normalised: &str) -> bool {
    let fold = |b: u8| {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_lowercase()
        }
    };
    key.len() == normalised.len()
        && key
            .iter()
            .zip(normalised.as_bytes())
            .all(|(&k, &n)| fold(k) == n)
}

/// `name: value; ...` with credentials and configured headers shown as `[REDACTED]`.
fn render_headers(headers: &HeaderMap, config: &Config) -> String {
    let mut out = String::new();
    for (name, value) in headers {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(name.as_str());
        out.push_str(": ");
        if value.is_sensitive() || config.redact_headers.contains(name) {
            out.push_str(REDACTED);
        } else {
            out.push_str(value.to_str().unwrap_or("[non-ASCII]"));
        }
    }
    out
}
