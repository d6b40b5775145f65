//! `GuardRoute`: one guarded route, where its ids are, and how they are read from a request.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::header::HeaderName;
use http::{Method, Request};

use crate::http::json::FieldPath;
use crate::http::names;
use crate::http::protocol::method_matches;
use crate::path::PathPattern;
use crate::reject::{Rejection, RejectionKind};
use crate::{ConfigError, MessageId, ThreadId, query};

/// What to do when the named thread does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    NotFound,
    Allow,
}

/// One guarded route: a method, a path template, and where its thread or message ids are.
///
/// Setters whose input can be wrong (a parameter the template lacks, an empty or malformed
/// name) return [`ConfigError`] at once.
///
/// ```
/// use http::Method;
/// use tower_scope::guard::GuardRoute;
///
/// let rename = GuardRoute::new(Method::PATCH, "/api/memory/threads/{threadId}")?
///     .thread_from_path("threadId")?
///     .expect_scoped_body();
/// # let _ = rename;
/// # Ok::<(), tower_scope::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct GuardRoute {
    pub(crate) method: Method,
    pub(crate) pattern: PathPattern,
    pub(crate) thread_path: Option<Box<str>>,
    pub(crate) thread_query: Option<Box<str>>,
    pub(crate) thread_header: Option<HeaderName>,
    /// Body fields that may name the thread (`memory.thread`, legacy `threadId`): all that are
    /// present must name the same one.
    pub(crate) thread_body: Vec<FieldPath>,
    pub(crate) missing: Missing,
    pub(crate) messages_path: Option<Box<str>>,
    pub(crate) messages_body: Option<FieldPath>,
    pub(crate) save_messages: Option<FieldPath>,
    pub(crate) new_thread_body: Option<FieldPath>,
    pub(crate) include_query: Option<Box<str>>,
    pub(crate) deny: Option<Box<str>>,
    pub(crate) scoped_body: bool,
}

impl fmt::Debug for GuardRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardRoute")
            .field("method", &self.method)
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

fn non_empty(setting: &'static str, name: &str) -> Result<Box<str>, ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::InvalidValue {
            setting,
            reason: "empty name".into(),
        });
    }
    Ok(name.into())
}

impl GuardRoute {
    /// A route for `method` on `template` (`/api/memory/threads/{threadId}` style); `GET`
    /// routes guard `HEAD` too.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathPattern`] for a malformed template.
    pub fn new(method: Method, template: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            method,
            pattern: PathPattern::new(template)?,
            thread_path: None,
            thread_query: None,
            thread_header: None,
            thread_body: Vec::new(),
            missing: Missing::NotFound,
            messages_path: None,
            messages_body: None,
            save_messages: None,
            new_thread_body: None,
            include_query: None,
            deny: None,
            scoped_body: false,
        })
    }

    fn path_param(&self, param: &str) -> Result<Box<str>, ConfigError> {
        if !self.pattern.has_param(param) {
            return Err(ConfigError::InvalidValue {
                setting: "guard route",
                reason: format!("{:?} has no parameter {param:?}", self.pattern.as_str()),
            });
        }
        Ok(param.into())
    }

    /// The query parameter `name` is a JSON list of messages to fetch besides the thread's own
    /// (Mastra's `include=[{"id": .., "threadId": ..}]`): every message must be the caller's
    /// and every named thread the caller's or missing. Not JSON of that shape: 400.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for an empty name.
    pub fn messages_from_query_json(mut self, name: &str) -> Result<Self, ConfigError> {
        self.include_query = Some(non_empty("guard route query parameter", name)?);
        Ok(self)
    }

    /// Refuses every request to this route with 403 and `message` (Mastra refuses thread
    /// transfer in a resource-scoped context this way).
    #[must_use]
    pub fn deny(mut self, message: &str) -> Self {
        self.deny = Some(message.into());
        self
    }

    /// The JSON body field at `path` may name a thread this route creates (clone's
    /// `newThreadId`): refused when that thread exists and is not the caller's.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for a malformed path.
    pub fn new_thread_from_body(mut self, path: &str) -> Result<Self, ConfigError> {
        self.new_thread_body = Some(FieldPath::parse(path)?);
        Ok(self)
    }

    /// The thread id is the path parameter `param`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when the template has no such parameter.
    pub fn thread_from_path(mut self, param: &str) -> Result<Self, ConfigError> {
        self.thread_path = Some(self.path_param(param)?);
        Ok(self)
    }

    /// The thread id may come from the query parameter `name` (e.g. `threadId`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for an empty name.
    pub fn thread_from_query(mut self, name: &str) -> Result<Self, ConfigError> {
        self.thread_query = Some(non_empty("guard route query parameter", name)?);
        Ok(self)
    }

    /// The thread id may come from the header `name` (e.g. `x-thread-id`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`] for an invalid header name.
    pub fn thread_from_header(mut self, name: &str) -> Result<Self, ConfigError> {
        self.thread_header = Some(names::header_name(name)?);
        Ok(self)
    }

    /// The thread id may come from the JSON body field at `path` (`threadId`, or nested such
    /// as `memory.thread`): a string, or an object with a string `id`. Called again with
    /// another path (Mastra's agent routes take `memory.thread` and the legacy `threadId`),
    /// every field present must name the same thread: two different ids are 400, since the
    /// handler might read either.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for a malformed path, or one given twice.
    pub fn thread_from_body(mut self, path: &str) -> Result<Self, ConfigError> {
        let path = FieldPath::parse(path)?;
        if self.thread_body.iter().any(|other| other.overlaps(&path)) {
            return Err(ConfigError::InvalidValue {
                setting: "guard route body field",
                reason: format!("{:?} overlaps a thread field already named", path.as_str()),
            });
        }
        self.thread_body.push(path);
        Ok(self)
    }

    /// A thread that does not exist (or no thread id at all) is allowed: the route creates it.
    #[must_use]
    pub fn allow_missing_thread(mut self) -> Self {
        self.missing = Missing::Allow;
        self
    }

    /// The message id is the path parameter `param`; its thread must be the caller's.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when the template has no such parameter.
    pub fn messages_from_path(mut self, param: &str) -> Result<Self, ConfigError> {
        self.messages_path = Some(self.path_param(param)?);
        Ok(self)
    }

    /// Message ids are in the JSON body field at `path` (a string, a list of strings, `{id}`
    /// or a list of `{id}`); every message's thread must be the caller's, all or nothing.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for a malformed path.
    pub fn messages_from_body(mut self, path: &str) -> Result<Self, ConfigError> {
        self.messages_body = Some(FieldPath::parse(path)?);
        Ok(self)
    }

    /// The JSON body field at `path` is a list of messages to save (`[{id, threadId, ..}]`):
    /// each must name a thread, each existing thread must be the caller's, and each existing
    /// message id must already be the caller's. Which resource the messages name is the scope
    /// layer's to check ([`BodyRule::require`](crate::scope::BodyRule::require)).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for a malformed path.
    pub fn save_messages(mut self, path: &str) -> Result<Self, ConfigError> {
        self.save_messages = Some(FieldPath::parse(path)?);
        Ok(self)
    }

    /// The request must have passed [`ResourceScopeLayer`](crate::ResourceScopeLayer)'s JSON
    /// body rules: a body that names a resource (thread creation's `resourceId`) and reached the
    /// guard unscoped is refused with 403, so a missing scope rule fails closed.
    #[must_use]
    pub fn expect_scoped_body(mut self) -> Self {
        self.scoped_body = true;
        self
    }

    pub(crate) fn checks_thread(&self) -> bool {
        self.thread_path.is_some()
            || self.thread_query.is_some()
            || self.thread_header.is_some()
            || !self.thread_body.is_empty()
    }

    pub(crate) fn checks_nothing(&self) -> bool {
        !self.checks_thread()
            && !self.needs_body()
            && self.messages_path.is_none()
            && self.include_query.is_none()
            && self.deny.is_none()
    }

    /// Whether the route's own thread, from the path, query or a header, is all it checks.
    pub(crate) fn checks_only_its_thread(&self) -> bool {
        self.checks_thread()
            && !self.needs_body()
            && self.messages_path.is_none()
            && self.include_query.is_none()
            && self.deny.is_none()
    }

    pub(crate) fn needs_body(&self) -> bool {
        !self.thread_body.is_empty()
            || self.messages_body.is_some()
            || self.save_messages.is_some()
            || self.new_thread_body.is_some()
            || self.scoped_body
    }

    pub(crate) fn path_value<'a>(&self, path: &'a str, param: &str) -> Option<&'a str> {
        self.pattern.param(path, param)
    }

    /// The client's thread id from the path, query or header, in that order.
    pub(crate) fn thread_in_request<B>(
        &self,
        req: &Request<B>,
    ) -> Result<Option<ThreadId>, Rejection> {
        let raw: Option<Cow<'_, str>> = if let Some(param) = &self.thread_path
            && let Some(raw) = self.path_value(req.uri().path(), param)
        {
            Some(query::decode_segment(raw).ok_or_else(invalid_thread)?)
        } else if let Some(name) = &self.thread_query
            && let Some(q) = req.uri().query()
            && let Some(value) =
                single(query::pairs(q).filter(|p| p.key == **name).map(|p| p.value))?
        {
            Some(query::decode(value).ok_or_else(invalid_thread)?)
        } else if let Some(name) = &self.thread_header
            && let Some(value) = single(req.headers().get_all(name).iter())?
        {
            Some(Cow::Borrowed(value.to_str().map_err(|_| invalid_thread())?))
        } else {
            None
        };
        raw.map(|id| ThreadId::new(id).map_err(|_| invalid_thread()))
            .transpose()
    }
}

/// The only item of `items`; two or more are ambiguous (a handler might read either).
pub(crate) fn single<T>(mut items: impl Iterator<Item = T>) -> Result<Option<T>, Rejection> {
    let first = items.next();
    if first.is_some() && items.next().is_some() {
        return Err(Rejection::with_message(
            RejectionKind::BadRequest,
            "More than one threadId",
        ));
    }
    Ok(first)
}

pub(crate) fn invalid_thread() -> Rejection {
    Rejection::with_message(RejectionKind::BadRequest, "Invalid thread id")
}

pub(crate) fn invalid_message() -> Rejection {
    Rejection::with_message(RejectionKind::BadRequest, "Invalid message id")
}

/// A client's message id, validated before any store sees it (400 otherwise).
pub(crate) fn message_id(id: &str) -> Result<MessageId, Rejection> {
    MessageId::new(id).map_err(|_| invalid_message())
}

/// The guarded routes, in the order given; the first that matches decides.
#[derive(Clone, Default)]
pub(crate) struct Routes(pub(crate) Arc<[Arc<GuardRoute>]>);

impl Routes {
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&Arc<GuardRoute>> {
        self.0
            .iter()
            .find(|r| method_matches(&r.method, method) && r.pattern.matches(path))
    }
}
