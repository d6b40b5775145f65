//! `AuthorizeLayer`: its configuration (routes, requirements, rules, privilege, policy hook).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Uri};
use tower_layer::Layer;

use super::grants::PermissionSource;
use super::permission::{Permission, matches_parts, permission_matches};
use super::service::Authorize;
use crate::http::protocol::method_matches;
use crate::mastra::messages;
use crate::path::{PathPattern, PathSet, path_head};
use crate::reject::{HeadOnly, JsonBody, JsonErrors, Rejection, RejectionKind};
use crate::{Authenticated, ConfigError, ResourceId};

/// What a route requires of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Requirement {
    /// Every one of these permissions.
    AllOf(Vec<Permission>),
    /// At least one of these permissions.
    AnyOf(Vec<Permission>),
    /// The permission derived from the request (`{resource}:{action}`, see
    /// [`AuthorizeLayer::derive_permissions`]); refused when none can be derived.
    Derived,
    /// Only an authenticated caller (rules and the policy hook still apply).
    Authenticated,
}

impl Requirement {
    /// Every one of `permissions` (validated).
    pub fn all_of<I, P>(permissions: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        Ok(Self::AllOf(list(permissions)?))
    }

    /// At least one of `permissions` (validated; an empty list is refused, it could never
    /// be met).
    pub fn any_of<I, P>(permissions: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let permissions = list(permissions)?;
        if permissions.is_empty() {
            return Err(ConfigError::InvalidValue {
                setting: "Requirement::any_of",
                reason: "an empty list can never be met".into(),
            });
        }
        Ok(Self::AnyOf(permissions))
    }
}

fn list<I, P>(permissions: I) -> Result<Vec<Permission>, ConfigError>
where
    I: IntoIterator<Item = P>,
    P: AsRef<str>,
{
    permissions
        .into_iter()
        .map(|p| Permission::new(p.as_ref()))
        .collect()
}

/// The parts of a request a policy hook or a permission derivation sees.
#[derive(Clone, Copy)]
pub struct RequestHead<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request URI (the path is still percent-encoded).
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request headers (`Authorization` included: never log them).
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions (the [`Authenticated`] user, a request id, ...).
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

impl fmt::Debug for RequestHead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", self.method)
            .field("path", &self.uri.path())
            .finish_non_exhaustive()
    }
}

/// Why a [`Policy`] could not decide.
#[derive(Debug)]
#[non_exhaustive]
pub enum PolicyError {
    /// A backend the policy needs is down or too slow: 503 with `Retry-After`, gRPC 14.
    Unavailable,
    /// The policy failed: 500 `Authorization error`, gRPC 13. The detail is never sent.
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable => f.write_str("authorization backend unavailable"),
            Self::Failed(err) => write!(f, "authorization policy failed: {err}"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// An async authorization hook (Mastra's `authorize` / `authorizeUser`): sees the request head
/// and the user, answers allow (`Ok(true)`), deny (`Ok(false)`, 403 `Access denied`), or
/// [`PolicyError`]. A panic in the hook is a 500 `Authorization error`, never a pass.
///
/// Use a closure through [`AuthorizeLayer::policy`]; implement the trait for a type whose
/// name you need to write down.
pub trait Policy<U>: Clone + Send + Sync + 'static {
    /// The pending answer; it must not borrow the request (copy what you need from `head`).
    type Future: Future<Output = Result<bool, PolicyError>> + Send + 'static;

    /// Decides one request.
    fn check(&self, head: RequestHead<'_>, user: &Authenticated<U>) -> Self::Future;
}

/// No policy hook (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPolicy;

impl<U> Policy<U> for NoPolicy {
    type Future = std::future::Ready<Result<bool, PolicyError>>;

    fn check(&self, _head: RequestHead<'_>, _user: &Authenticated<U>) -> Self::Future {
        std::future::ready(Ok(true))
    }
}

/// A closure as a [`Policy`] (made by [`AuthorizeLayer::policy`]).
#[derive(Clone)]
pub struct PolicyFn<F>(F);

impl<F> fmt::Debug for PolicyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PolicyFn")
    }
}

impl<F, U, Fut> Policy<U> for PolicyFn<F>
where
    F: Fn(RequestHead<'_>, &Authenticated<U>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, PolicyError>> + Send + 'static,
{
    type Future = Fut;

    fn check(&self, head: RequestHead<'_>, user: &Authenticated<U>) -> Fut {
        (self.0)(head, user)
    }
}

type Condition<U> = Arc<dyn Fn(&U) -> bool + Send + Sync>;

/// One entry of the rules list (Mastra's `rules[]`): where it applies (methods, path), a
/// condition on the user, and whether a match allows or denies. The first rule that matches
/// decides; when rules are configured and none matches, the request is denied.
pub struct Rule<U> {
    methods: Option<Vec<Method>>,
    path: Option<PathPattern>,
    condition: Option<Condition<U>>,
    allow: bool,
}

impl<U> Clone for Rule<U> {
    fn clone(&self) -> Self {
        Self {
            methods: self.methods.clone(),
            path: self.path.clone(),
            condition: self.condition.clone(),
            allow: self.allow,
        }
    }
}

impl<U> fmt::Debug for Rule<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("methods", &self.methods)
            .field("path", &self.path)
            .field("condition", &self.condition.is_some())
            .field("allow", &self.allow)
            .finish()
    }
}

impl<U> Rule<U> {
    /// A rule that allows what it matches (every request until narrowed).
    pub fn allow() -> Self {
        Self {
            methods: None,
            path: None,
            condition: None,
            allow: true,
        }
    }

    /// A rule that denies what it matches (403 `Access denied`).
    pub fn deny() -> Self {
        Self {
            allow: false,
            ..Self::allow()
        }
    }

    /// Applies only to these methods (`GET` covers `HEAD`).
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// Applies only to paths matching `pattern` ([`PathPattern`] syntax).
    pub fn path(mut self, pattern: &str) -> Result<Self, ConfigError> {
        self.path = Some(PathPattern::new(pattern)?);
        Ok(self)
    }

    /// Applies only to users for whom `condition` is true; a condition that panics counts as
    /// false (Mastra: "condition errors count as false").
    #[must_use]
    pub fn when(mut self, condition: impl Fn(&U) -> bool + Send + Sync + 'static) -> Self {
        self.condition = Some(Arc::new(condition));
        self
    }

    fn matches(&self, method: &Method, path: &str, user: &U) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| method_matches(m, method)))
            && self.path.as_ref().is_none_or(|p| p.matches(path))
            && self.condition.as_ref().is_none_or(|c| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c(user))).unwrap_or(false)
            })
    }
}

/// Privileged cross-resource access: a user holding `permission` (default `memory:admin`)
/// may act on another resource's data, on the methods and paths configured here.
///
/// [`AuthorizeLayer`] marks such a request with the [`Privileged`](crate::Privileged)
/// extension; [`ResourceScopeLayer`](crate::ResourceScopeLayer) then keeps a client-named
/// resource id instead of forcing the caller's, and
/// [`ThreadGuardLayer`](crate::ThreadGuardLayer) lets another resource's threads pass (acting
/// as their owner). Every such request is logged with `privileged=true` and `acting_as`.
#[derive(Debug, Clone)]
pub struct Privilege {
    permission: Permission,
    methods: Option<Vec<Method>>,
    paths: Option<PathSet>,
}

impl Default for Privilege {
    fn default() -> Self {
        Self {
            permission: Permission::new("memory:admin").expect("a valid permission"),
            methods: None,
            paths: None,
        }
    }
}

impl Privilege {
    /// `memory:admin`, on every method and path the layer covers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The permission that makes a request privileged.
    pub fn permission(mut self, permission: &str) -> Result<Self, ConfigError> {
        self.permission = Permission::new(permission)?;
        Ok(self)
    }

    /// Only these methods (`GET` covers `HEAD`): `[Method::GET]` for read-only admin access.
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// Only paths matching `pattern` (may be called more than once).
    pub fn path(mut self, pattern: &str) -> Result<Self, ConfigError> {
        let pattern = PathPattern::new(pattern)?;
        self.paths
            .get_or_insert_with(PathSet::default)
            .push(pattern);
        Ok(self)
    }

    pub(crate) fn applies(&self, method: &Method, path: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| method_matches(m, method)))
            && self.paths.as_ref().is_none_or(|p| p.matches(path))
    }

    pub(crate) fn granted(&self) -> &Permission {
        &self.permission
    }
}

/// Derives a permission from a request: `(method, path)` to `resource:action`.
pub type DeriveFn = Arc<dyn Fn(&Method, &str) -> Option<String> + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Derive {
    /// Mastra's: the first segment below `prefix`, the action from the method.
    Prefix(Arc<str>),
    Custom(DeriveFn),
}

/// The action Mastra derives from a method: `read`, `write`, `delete`.
pub(crate) fn action_of(method: &Method) -> Option<&'static str> {
    match *method {
        Method::GET | Method::HEAD => Some("read"),
        Method::POST | Method::PUT | Method::PATCH => Some("write"),
        Method::DELETE => Some("delete"),
        _ => None,
    }
}

/// The first path segment below `prefix`, when it is a valid permission part (one pass over
/// its bytes: this runs on every request below the prefix).
pub(crate) fn resource_of<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?.strip_prefix('/')?;
    let end = rest
        .bytes()
        .position(|b| b == b'/' || b == b':' || !b.is_ascii_graphic())
        .unwrap_or(rest.len());
    if end == 0 || rest.as_bytes().get(end).is_some_and(|&b| b != b'/') {
        return None;
    }
    Some(&rest[..end])
}

#[derive(Clone)]
pub(crate) struct Route {
    method: Option<Method>,
    pattern: PathPattern,
    pub(crate) requirement: Requirement,
}

/// The resource-approval hook (Mastra's `authorizeUserResource`).
pub(crate) type ApproveFn<U> = Arc<
    dyn Fn(&Authenticated<U>, &ResourceId) -> Pin<Box<dyn Future<Output = bool> + Send>>
        + Send
        + Sync,
>;

pub(crate) struct Approver<U> {
    pub(crate) hook: ApproveFn<U>,
    pub(crate) params: Vec<Box<str>>,
}

impl<U> Clone for Approver<U> {
    fn clone(&self) -> Self {
        Self {
            hook: Arc::clone(&self.hook),
            params: self.params.clone(),
        }
    }
}

pub(crate) struct Config<U> {
    routes: Vec<Route>,
    protected: PathSet,
    derive: Option<Derive>,
    rules: Vec<Rule<U>>,
    pub(crate) privilege: Option<Privilege>,
    pub(crate) approver: Option<Approver<U>>,
}

impl<U> Clone for Config<U> {
    fn clone(&self) -> Self {
        Self {
            routes: self.routes.clone(),
            protected: self.protected.clone(),
            derive: self.derive.clone(),
            rules: self.rules.clone(),
            privilege: self.privilege.clone(),
            approver: self.approver.clone(),
        }
    }
}

/// How one request is decided by the static part of the configuration.
pub(crate) enum Verdict {
    /// Not this layer's business: no route, not below a protected path.
    Uncovered,
    Allowed,
    Refused(Rejection),
}

pub(crate) fn no_rule() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: no authorization rule covers this route",
    )
}

/// Mastra's RBAC refusal: `Forbidden`, detail `Missing required permission: X`, and the RFC
/// 6750 `insufficient_scope` challenge naming `X`.
fn missing(required: &str) -> Rejection {
    Rejection::with_message(RejectionKind::InsufficientScope, messages::FORBIDDEN)
        .with_scope(required.to_owned())
        .with_detail(format!("{}{required}", messages::MISSING_PERMISSION))
}

impl<U> Config<U> {
    fn route(&self, method: &Method, path: &str) -> Option<&Requirement> {
        // The path's first word, compared with each pattern's before anything else: a table
        // of routes under one prefix rejects the others in a few instructions each.
        let head = path_head(path);
        self.routes
            .iter()
            .find(|r| {
                r.pattern.head().is_none_or(|h| Some(h) == head)
                    && r.method.as_ref().is_none_or(|m| method_matches(m, method))
                    && r.pattern.matches(path)
            })
            .map(|r| &r.requirement)
    }

    fn covered(&self, path: &str) -> bool {
        self.protected.is_empty() || self.protected.matches(path)
    }

    /// Whether the derivation covers `path`: below the prefix (the prefix itself included, as
    /// `/api/*` matches `/api`), or anywhere protected for a custom derivation.
    fn derives(&self, path: &str) -> bool {
        match &self.derive {
            Some(Derive::Prefix(prefix)) => path
                .strip_prefix(&**prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            Some(Derive::Custom(_)) => self.covered(path),
            None => false,
        }
    }

    /// Rules, then the route's permissions.
    pub(crate) fn decide<G>(&self, source: &G, method: &Method, path: &str, user: &U) -> Verdict
    where
        G: PermissionSource<User = U>,
    {
        let requirement = match self.route(method, path) {
            Some(requirement) => requirement,
            None if self.derives(path) => &Requirement::Derived,
            None if self.covered(path) => return Verdict::Refused(no_rule()),
            None => return Verdict::Uncovered,
        };
        if !self.rules.is_empty() {
            match self.rules.iter().find(|r| r.matches(method, path, user)) {
                Some(rule) if rule.allow => {}
                _ => return Verdict::Refused(Rejection::new(RejectionKind::Forbidden)),
            }
        }
        match requirement {
            Requirement::Derived => self.derived(source, method, path, user),
            held => held_by(held, source, user),
        }
    }

    fn derived<G>(&self, source: &G, method: &Method, path: &str, user: &U) -> Verdict
    where
        G: PermissionSource<User = U>,
    {
        match &self.derive {
            Some(Derive::Prefix(prefix)) => {
                let (Some(resource), Some(action)) = (resource_of(prefix, path), action_of(method))
                else {
                    return Verdict::Refused(no_rule());
                };
                if source.any_granted(user, &mut |g| matches_parts(g, resource, action)) {
                    Verdict::Allowed
                } else {
                    Verdict::Refused(missing(&format!("{resource}:{action}")))
                }
            }
            Some(Derive::Custom(derive)) => match derive(method, path) {
                Some(required) if Permission::new(&required).is_ok() => {
                    if source.any_granted(user, &mut |g| permission_matches(g, &required)) {
                        Verdict::Allowed
                    } else {
                        Verdict::Refused(missing(&required))
                    }
                }
                _ => Verdict::Refused(no_rule()),
            },
            None => Verdict::Refused(no_rule()),
        }
    }
}

/// Whether `user` meets a requirement that names its permissions (or none): [`Verdict::Allowed`]
/// or the refusal naming what is missing. [`Requirement::Derived`] needs a request to derive
/// from, so here it is refused.
pub(crate) fn held_by<G: PermissionSource>(
    requirement: &Requirement,
    source: &G,
    user: &G::User,
) -> Verdict {
    let holds = |required: &Permission| {
        source.any_granted(user, &mut |granted| required.is_satisfied_by(granted))
    };
    match requirement {
        Requirement::Authenticated => Verdict::Allowed,
        Requirement::AllOf(all) => match all.iter().find(|p| !holds(p)) {
            None => Verdict::Allowed,
            Some(first) => {
                let scope: Vec<&str> = all.iter().map(Permission::as_str).collect();
                Verdict::Refused(missing(first.as_str()).with_scope(scope.join(" ")))
            }
        },
        Requirement::AnyOf(any) => {
            if any.iter().any(holds) {
                Verdict::Allowed
            } else {
                let scope: Vec<&str> = any.iter().map(Permission::as_str).collect();
                let text = scope.join(" or ");
                Verdict::Refused(missing(&text).with_scope(scope.join(" ")))
            }
        }
        Requirement::Derived => Verdict::Refused(no_rule()),
    }
}

/// Authorization: what an authenticated caller may do. Place it right after
/// [`BearerAuthLayer`](crate::BearerAuthLayer) and before
/// [`ResourceScopeLayer`](crate::ResourceScopeLayer).
///
/// `G` is where permissions come from ([`ClaimPermissions`](super::ClaimPermissions) or
/// [`from_fn`](super::from_fn)), `P` the optional async [`Policy`] hook, `E` how refusals are
/// written ([`HeadOnly`] or, after [`json_errors`](Self::json_errors), [`JsonBody`]).
///
/// Each request is decided in this order:
///
/// 1. no verified user: a public path or a let-through preflight passes; an anonymous request
///    is 401; a request no authentication layer saw is 403 (a wiring error fails closed);
/// 2. the route's [`Requirement`]: the first [`route`](Self::route) that matches, else the
///    derived permission below [`derive_permissions`](Self::derive_permissions)' prefix;
///    below a [`protect`](Self::protect)ed path (every path when none is given) a request no
///    route covers is refused — fail closed;
/// 3. the [`rules`](Self::rule), when there are any: the first that matches decides, none
///    matching is 403 `Access denied`;
/// 4. the requirement against the user's permissions (Mastra's wildcards, see
///    [`permission_matches`](super::permission_matches)): a missing one is 403
///    `insufficient_scope` naming it (RFC 6750 §3.1), with Mastra's
///    `{"error":"Forbidden","message":"Missing required permission: X"}` as JSON, gRPC 7;
/// 5. the [`policy`](Self::policy) hook, last, so a backend is only asked about requests the
///    static checks admitted: `false` is 403 `Access denied`, [`PolicyError::Unavailable`] 503,
///    an error or a panic 500 `Authorization error`.
///
/// A request that passes and holds the configured [`Privilege`] is marked
/// [`Privileged`](crate::Privileged) for the layers behind.
pub struct AuthorizeLayer<G: PermissionSource, P = NoPolicy, E = HeadOnly> {
    pub(crate) source: Arc<G>,
    pub(crate) policy: Option<P>,
    pub(crate) config: Arc<Config<G::User>>,
    errors: E,
}

impl<G: PermissionSource, P: Clone, E: Clone> Clone for AuthorizeLayer<G, P, E> {
    fn clone(&self) -> Self {
        Self {
            source: Arc::clone(&self.source),
            policy: self.policy.clone(),
            config: Arc::clone(&self.config),
            errors: self.errors.clone(),
        }
    }
}

impl<G: PermissionSource, P, E> fmt::Debug for AuthorizeLayer<G, P, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("routes", &self.config.routes.len())
            .field("rules", &self.config.rules.len())
            .field("policy", &self.policy.is_some())
            .field("privilege", &self.config.privilege)
            .finish_non_exhaustive()
    }
}

impl<G: PermissionSource> AuthorizeLayer<G> {
    /// Authorizes with permissions from `source`; no routes, rules or hook yet, and every path
    /// protected (so, until configured, every authenticated request is refused).
    pub fn new(source: G) -> Self {
        Self {
            source: Arc::new(source),
            policy: None,
            config: Arc::new(Config {
                routes: Vec::new(),
                protected: PathSet::default(),
                derive: None,
                rules: Vec::new(),
                privilege: None,
                approver: None,
            }),
            errors: HeadOnly,
        }
    }
}

impl<G: PermissionSource, P, E> AuthorizeLayer<G, P, E> {
    fn config_mut(&mut self) -> &mut Config<G::User> {
        Arc::make_mut(&mut self.config)
    }

    /// Requires `requirement` for `method` (`None`: every method; `GET` covers `HEAD`) on
    /// paths matching `pattern`. Routes are tried in the order added; the first match wins.
    pub fn route(
        mut self,
        method: Option<Method>,
        pattern: &str,
        requirement: Requirement,
    ) -> Result<Self, ConfigError> {
        let pattern = PathPattern::new(pattern)?;
        self.config_mut().routes.push(Route {
            method,
            pattern,
            requirement,
        });
        Ok(self)
    }

    /// Requires `requirement` for one gRPC method, by its path
    /// (`/memory.v1.Memory/GetThread`; gRPC calls are `POST`s).
    pub fn grpc_method(self, path: &str, requirement: Requirement) -> Result<Self, ConfigError> {
        if !path.starts_with('/')
            || path.matches('/').count() != 2
            || path.contains(['*', ':', '{'])
        {
            return Err(ConfigError::InvalidValue {
                setting: "grpc_method",
                reason: format!("{path:?} is not a gRPC method path like /package.Service/Method"),
            });
        }
        self.route(Some(Method::POST), path, requirement)
    }

    /// Protects paths matching `pattern`: a request there that no route covers is refused.
    /// Without any `protect`, every path is protected (unless only
    /// [`derive_permissions`](Self::derive_permissions) is set, which protects its prefix).
    pub fn protect(mut self, pattern: &str) -> Result<Self, ConfigError> {
        let pattern = PathPattern::new(pattern)?;
        self.config_mut().protected.push(pattern);
        Ok(self)
    }

    /// Below `prefix` (e.g. `/api`), a request no route covers requires the permission
    /// derived Mastra's way: `resource` is the first path segment after the prefix
    /// (`/api/memory/threads` → `memory`), `action` is `read` for GET/HEAD, `write` for
    /// POST/PUT/PATCH, `delete` for DELETE. A request below the prefix with no segment or
    /// another method is refused. Paths outside the prefix are not this layer's unless
    /// [`protect`](Self::protect)ed.
    pub fn derive_permissions(mut self, prefix: &str) -> Result<Self, ConfigError> {
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.contains(['*', ':', '{'])) {
            return Err(ConfigError::InvalidValue {
                setting: "derive_permissions",
                reason: format!("{prefix:?} is not a literal path prefix like /api"),
            });
        }
        let wildcard = format!("{prefix}/*");
        let pattern = PathPattern::new(&wildcard)?;
        let config = self.config_mut();
        config.derive = Some(Derive::Prefix(Arc::from(prefix)));
        config.protected.push(pattern);
        Ok(self)
    }

    /// Replaces the derivation: `derive(method, path)` names the permission a request needs,
    /// or `None` to refuse it. Applies below the [`protect`](Self::protect)ed paths (every
    /// path when none is given) to requests no route covers. A derived string that is not a
    /// valid [`Permission`] is refused.
    #[must_use]
    pub fn derive_with(
        mut self,
        derive: impl Fn(&Method, &str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.config_mut().derive = Some(Derive::Custom(Arc::new(derive)));
        self
    }

    /// Adds a rule to the rules list (Mastra's `rules[]`; first match wins, default deny once
    /// any rule is configured).
    #[must_use]
    pub fn rule(mut self, rule: Rule<G::User>) -> Self {
        self.config_mut().rules.push(rule);
        self
    }

    /// Privileged cross-resource access (see [`Privilege`]).
    #[must_use]
    pub fn privileged(mut self, privilege: Privilege) -> Self {
        self.config_mut().privilege = Some(privilege);
        self
    }

    /// Asks `approve(user, requested)` whether a request naming another resource in its
    /// `resourceId` query parameter may act on it (Mastra's `authorizeUserResource`: shared
    /// or team resources). Approved, the request is marked
    /// [`Privileged::approved`](crate::Privileged::approved) for that one resource: the scope
    /// layer keeps it instead of forcing the caller's, the guard lets its threads pass, and
    /// the log shows `acting_as`. Not approved (or the hook panics), the request goes on as
    /// the caller's own (the scope layer forces or refuses the named id as configured).
    /// Called only when the request names exactly one valid resource id and holds no
    /// [`Privilege`]; it may also be asked about the caller's own resource.
    #[must_use]
    pub fn approve_resource<F, Fut>(mut self, approve: F) -> Self
    where
        F: Fn(&Authenticated<G::User>, &ResourceId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let hook: ApproveFn<G::User> =
            Arc::new(move |user, requested| Box::pin(approve(user, requested)));
        self.config_mut().approver = Some(Approver {
            hook,
            params: vec!["resourceId".into()],
        });
        self
    }

    /// The async policy hook (Mastra's `authorize` / `authorizeUser`), run last.
    pub fn policy<F, Fut>(self, hook: F) -> AuthorizeLayer<G, PolicyFn<F>, E>
    where
        F: Fn(RequestHead<'_>, &Authenticated<G::User>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<bool, PolicyError>> + Send + 'static,
    {
        self.with_policy(PolicyFn(hook))
    }

    /// The policy hook as your own [`Policy`] type.
    pub fn with_policy<Q: Policy<G::User>>(self, policy: Q) -> AuthorizeLayer<G, Q, E> {
        AuthorizeLayer {
            source: self.source,
            policy: Some(policy),
            config: self.config,
            errors: self.errors,
        }
    }

    /// Refusals carry a JSON body: `{"error":"Forbidden","message":"Missing required
    /// permission: X"}` for a missing permission, `{"error":"Access denied"}` for a rule or
    /// hook denial (Mastra's bodies).
    pub fn json_errors(self) -> AuthorizeLayer<G, P, JsonBody> {
        AuthorizeLayer {
            source: self.source,
            policy: self.policy,
            config: self.config,
            errors: JsonBody,
        }
    }
}

impl<S, G: PermissionSource, P: Clone> Layer<S> for AuthorizeLayer<G, P, HeadOnly> {
    type Service = Authorize<S, G, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize::new(inner, self)
    }
}

impl<S, G: PermissionSource, P: Clone> Layer<S> for AuthorizeLayer<G, P, JsonBody> {
    type Service = JsonErrors<Authorize<S, G, P>>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonErrors::new(Authorize::new(inner, self))
    }
}
