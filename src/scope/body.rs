//! JSON body rules: which fields of which routes' bodies carry the caller's resource id.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use super::layer::{Mismatch, NoBodyRules, ResourceScopeLayer};
use crate::http::body::BodyLimits;
use crate::http::json::{Doc, Edits, FieldPath, JsonError};
use crate::http::protocol::method_matches;
use crate::path::PathPattern;
use crate::reject::{Rejection, RejectionKind};
use crate::{ConfigError, ResourceId};

/// One route whose JSON body names resources: the fields forced to the caller's id, and the
/// fields that must already equal it.
///
/// ```
/// use http::Method;
/// use tower_scope::scope::BodyRule;
///
/// let create = BodyRule::new(Method::POST, "/api/memory/threads")?.force("resourceId")?;
/// let agent = BodyRule::new(Method::POST, "/api/agents/{agentId}/stream")?
///     .force("memory.resource")?;
/// let save = BodyRule::new(Method::POST, "/api/memory/save-messages")?
///     .require("messages[].resourceId")?;
/// # let _ = (create, agent, save);
/// # Ok::<(), tower_scope::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct BodyRule {
    method: Method,
    pattern: PathPattern,
    force: Vec<FieldPath>,
    require: Vec<FieldPath>,
    refusal: Option<Box<str>>,
    no_body: bool,
}

impl fmt::Debug for BodyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyRule")
            .field("method", &self.method)
            .field("pattern", &self.pattern)
            .field(
                "force",
                &self.force.iter().map(FieldPath::as_str).collect::<Vec<_>>(),
            )
            .field(
                "require",
                &self
                    .require
                    .iter()
                    .map(FieldPath::as_str)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl BodyRule {
    /// A rule for `method` on `template` (`/api/agents/{agentId}/stream` style); `GET` rules
    /// cover `HEAD` too.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathPattern`] for a malformed template.
    pub fn new(method: Method, template: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            method,
            pattern: PathPattern::new(template)?,
            force: Vec::new(),
            require: Vec::new(),
            refusal: None,
            no_body: false,
        })
    }

    /// The field at `path` is set to the caller's resource id: `resourceId` (appended when
    /// absent; an empty body becomes `{"resourceId": ..}`), `memory.resource` (set where
    /// `memory` is an object; a body without `memory` is left alone),
    /// `messages[].resourceId` (in every element). With
    /// [`reject_mismatch`](ResourceScopeLayer::reject_mismatch), a different value is a 403.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for a malformed path.
    pub fn force(mut self, path: &str) -> Result<Self, ConfigError> {
        let path = FieldPath::parse(path)?;
        // `memory` and `memory.resource` (or one path twice) would edit inside each other.
        if let Some(other) = self.force.iter().find(|other| other.overlaps(&path)) {
            return Err(ConfigError::InvalidValue {
                setting: "JSON body field",
                reason: format!(
                    "{:?} overlaps {:?}: force each field once, and not a field inside another",
                    path.as_str(),
                    other.as_str()
                ),
            });
        }
        self.force.push(path);
        Ok(self)
    }

    /// The route takes no body: a request that sends one is refused with 400 before the
    /// handler, so a handler that reads a body anyway (axum's `Json<T>` on a `GET`) cannot read
    /// a resource id no rule forced. A request without a body costs nothing extra.
    #[must_use]
    pub fn no_body(mut self) -> Self {
        self.no_body = true;
        self
    }

    pub(crate) fn takes_no_body(&self) -> bool {
        self.no_body
    }

    /// The field at `path`, where present, must already be the caller's resource id: any other
    /// value is 403 (Mastra refuses a save-messages batch naming another resource this way).
    /// Whether it must be present is the handler's to say: missing, `null` or `""` pass.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for a malformed path.
    pub fn require(mut self, path: &str) -> Result<Self, ConfigError> {
        self.require.push(FieldPath::parse(path)?);
        Ok(self)
    }

    /// The message of this rule's 403 (default "Access denied: cannot access a different
    /// resource").
    #[must_use]
    pub fn refusal(mut self, message: &str) -> Self {
        self.refusal = Some(message.into());
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        method_matches(&self.method, method) && self.pattern.matches(path)
    }

    /// Forces and checks the body's resource fields; `None` when the bytes go on unchanged.
    pub(crate) fn apply(
        &self,
        bytes: &Bytes,
        id: &ResourceId,
        mismatch: Mismatch,
    ) -> Result<Option<Bytes>, Rejection> {
        if self.no_body {
            return match bytes.is_empty() {
                true => Ok(None),
                false => Err(Rejection::with_message(
                    RejectionKind::BadRequest,
                    "This route takes no request body",
                )),
            };
        }
        let doc = Doc::parse(bytes).map_err(invalid)?;
        for path in &self.require {
            for node in doc.find(path).map_err(invalid)? {
                match node.as_str() {
                    _ if node.is_null() => {}
                    Some(value) if value.is_empty() || value == id.as_str() => {}
                    _ => return Err(self.mismatch()),
                }
            }
        }
        let mut edits = Edits::new(&doc);
        for path in &self.force {
            if mismatch == Mismatch::Reject
                && doc
                    .find(path)
                    .map_err(invalid)?
                    .iter()
                    .any(|node| node.as_str().as_deref() != Some(id.as_str()))
            {
                return Err(self.mismatch());
            }
            edits.force(path, id).map_err(invalid)?;
        }
        Ok(edits.finish())
    }
}

fn invalid(error: JsonError) -> Rejection {
    Rejection::with_message(RejectionKind::BadRequest, error.to_string())
}

impl BodyRule {
    fn mismatch(&self) -> Rejection {
        match &self.refusal {
            Some(message) => Rejection::with_message(RejectionKind::Forbidden, message.to_string()),
            None => super::service::mismatch(),
        }
    }
}

/// The body rules of a [`ResourceScopeLayer`], and how much of a body it buffers.
#[derive(Debug, Clone, Default)]
pub struct BodyRules {
    rules: Arc<[Arc<BodyRule>]>,
    pub(crate) limits: BodyLimits,
}

impl BodyRules {
    /// The first rule that matches the request.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&Arc<BodyRule>> {
        self.rules.iter().find(|rule| rule.matches(method, path))
    }
}

/// What a layer's body rules are so far (sealed: [`NoBodyRules`] or [`BodyRules`]).
pub trait IntoBodyRules: sealed::Sealed {
    #[doc(hidden)]
    fn into_body_rules(self) -> BodyRules;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::NoBodyRules {}
    impl Sealed for super::BodyRules {}
}

impl IntoBodyRules for NoBodyRules {
    fn into_body_rules(self) -> BodyRules {
        BodyRules::default()
    }
}

impl IntoBodyRules for BodyRules {
    fn into_body_rules(self) -> BodyRules {
        self
    }
}

impl<R, K: IntoBodyRules, E> ResourceScopeLayer<R, K, E> {
    /// Adds JSON body rules (the first rule matching a request decides). The request body
    /// must then be rebuildable (`From<Bytes>`); it is buffered only on matching routes, up to
    /// [`max_body_bytes`](ResourceScopeLayer::max_body_bytes), and read once even when the
    /// guard reads it too.
    pub fn body_rules(
        self,
        rules: impl IntoIterator<Item = BodyRule>,
    ) -> ResourceScopeLayer<R, BodyRules, E> {
        let mut bodies = self.bodies.into_body_rules();
        let mut all = bodies.rules.to_vec();
        all.extend(rules.into_iter().map(Arc::new));
        bodies.rules = all.into();
        ResourceScopeLayer {
            resolver: self.resolver,
            config: self.config,
            bodies,
            errors: self.errors,
        }
    }

    /// Adds one JSON body rule; see [`body_rules`](Self::body_rules).
    pub fn body_rule(self, rule: BodyRule) -> ResourceScopeLayer<R, BodyRules, E> {
        self.body_rules([rule])
    }
}

impl<R, E> ResourceScopeLayer<R, BodyRules, E> {
    /// Sets the largest JSON body buffered on routes with body rules (default 4.5 MB,
    /// [`DEFAULT_MAX_BODY`](super::DEFAULT_MAX_BODY)); larger bodies get 413.
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.bodies.limits.max = max;
        self
    }

    /// Sets how long the layer waits for a whole JSON body (default 10 s,
    /// [`DEFAULT_BODY_TIMEOUT`](super::DEFAULT_BODY_TIMEOUT)), counted from the start of the
    /// read; a client that has not sent it all by then gets 408 (gRPC 4).
    #[must_use]
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.bodies.limits.timeout = timeout;
        self
    }
}
