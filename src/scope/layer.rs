//! `ResourceScopeLayer`: configuration and the `Layer` impls.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use http::header::HeaderName;
use tower_layer::Layer;

use super::service::ResourceScope;
use super::{AsyncResolver, ResolveResource, SyncResolver};
use crate::reject::{HeadOnly, JsonBody, JsonErrors, Rejection};
use crate::{Authenticated, ConfigError, ResourceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mismatch {
    Rewrite,
    Reject,
}

#[derive(Debug, Clone)]
pub(crate) struct AnonymousScope {
    pub(crate) cookie: Box<str>,
    pub(crate) prefix: Box<str>,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) params: Vec<Box<str>>,
    pub(crate) headers: Vec<HeaderName>,
    pub(crate) mismatch: Mismatch,
    pub(crate) add_param: bool,
    pub(crate) anonymous: Option<AnonymousScope>,
    pub(crate) anonymous_unscoped: bool,
}

/// The layer has no JSON body rules: it works over any request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoBodyRules;

/// Derives a [`ResourceId`] from the [`Authenticated`] user; see the [module docs](super).
///
/// `R` resolves the user, `K` is [`NoBodyRules`] or, after
/// [`body_rule`](Self::body_rule), [`BodyRules`](super::BodyRules), and `E` says how refusals
/// are written ([`HeadOnly`] or, after [`json_errors`](Self::json_errors), [`JsonBody`]).
pub struct ResourceScopeLayer<R, K = NoBodyRules, E = HeadOnly> {
    pub(crate) resolver: R,
    pub(crate) config: Arc<Config>,
    pub(crate) bodies: K,
    pub(crate) errors: E,
}

impl<R: Clone, K: Clone, E: Clone> Clone for ResourceScopeLayer<R, K, E> {
    fn clone(&self) -> Self {
        Self {
            resolver: self.resolver.clone(),
            config: Arc::clone(&self.config),
            bodies: self.bodies.clone(),
            errors: self.errors.clone(),
        }
    }
}

impl<R, K: fmt::Debug, E> fmt::Debug for ResourceScopeLayer<R, K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceScopeLayer")
            .field("config", &self.config)
            .field("bodies", &self.bodies)
            .finish_non_exhaustive()
    }
}

fn default_config() -> Arc<Config> {
    Arc::new(Config {
        params: vec!["resourceId".into()],
        headers: Vec::new(),
        mismatch: Mismatch::Rewrite,
        add_param: true,
        anonymous: None,
        anonymous_unscoped: false,
    })
}

impl<F, U, S> ResourceScopeLayer<SyncResolver<F, U>>
where
    F: Fn(&U) -> Option<S> + Clone + Send + Sync + 'static,
    S: AsRef<str> + 'static,
    U: Send + Sync + 'static,
{
    /// Scopes requests with a synchronous mapper; `None` (or an invalid id) gives 403.
    pub fn new(map: F) -> Self {
        Self::with_resolver(SyncResolver {
            map,
            _user: PhantomData,
        })
    }
}

impl<F, U, Fut> ResourceScopeLayer<AsyncResolver<F, U>>
where
    F: Fn(Authenticated<U>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<ResourceId>, Rejection>> + Send + 'static,
    U: Send + Sync + 'static,
{
    /// Scopes requests with an asynchronous mapper (a database lookup, say). `Ok(None)` gives
    /// 403; return `Err(Rejection::new(RejectionKind::Unavailable))` when the backend is down.
    ///
    /// [`RejectionKind::Unavailable`]: crate::RejectionKind::Unavailable
    pub fn new_async(map: F) -> Self {
        Self::with_resolver(AsyncResolver {
            map,
            _user: PhantomData,
        })
    }
}

impl<R: ResolveResource> ResourceScopeLayer<R> {
    /// Scopes requests with your own [`ResolveResource`] type, whose name can be written down.
    pub fn with_resolver(resolver: R) -> Self {
        Self {
            resolver,
            config: default_config(),
            bodies: NoBodyRules,
            errors: HeadOnly,
        }
    }
}

impl<R, K, E> ResourceScopeLayer<R, K, E> {
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Sets the query parameters carrying client-supplied scope (default `["resourceId"]`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for an empty name or more than 64 names.
    pub fn query_params<'a>(
        mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ConfigError> {
        let names: Vec<Box<str>> = names.into_iter().map(Into::into).collect();
        if names.iter().any(|n| n.is_empty()) || names.len() > 64 {
            return Err(ConfigError::InvalidValue {
                setting: "query parameter",
                reason: "give 1 to 64 non-empty names".into(),
            });
        }
        self.config_mut().params = names;
        Ok(self)
    }

    /// Also overrides these request headers (e.g. `x-resource-id`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`] for an invalid header name.
    pub fn headers<'a>(
        mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ConfigError> {
        for name in names {
            let parsed = crate::http::names::header_name(name)?;
            self.config_mut().headers.push(parsed);
        }
        Ok(self)
    }

    /// Refuses (403) a request whose client-supplied scope — query, headers, forced JSON body
    /// fields — differs from the caller's, instead of rewriting it.
    #[must_use]
    pub fn reject_mismatch(mut self) -> Self {
        self.config_mut().mismatch = Mismatch::Reject;
        self
    }

    /// Lets anonymous requests that no anonymous scope covers (optional auth without
    /// credentials, no session cookie) through *unscoped*, with any client-supplied scope
    /// removed; by default they are refused with 403.
    ///
    /// Off by default because a handler that lists by `?resourceId=` would list every
    /// resource's data for a request without one. Turn it on only when the handlers behind it
    /// read `Option<ResourceId>` and serve nothing private without one. Public paths
    /// ([`BearerAuthLayer::public_path`](crate::BearerAuthLayer::public_path)) always pass
    /// unscoped: the operator declared them public. A route with body rules is never served
    /// unscoped (its body cannot be scoped).
    #[must_use]
    pub fn allow_anonymous_unscoped(mut self) -> Self {
        self.config_mut().anonymous_unscoped = true;
        self
    }

    /// Does not add the scope parameter to requests that did not send it (it is added by
    /// default, so listings are scoped too).
    #[must_use]
    pub fn without_added_param(mut self) -> Self {
        self.config_mut().add_param = false;
        self
    }

    /// Gives anonymous requests that carry the cookie `cookie` the scope `{prefix}{value}`
    /// (e.g. `anon_<session>`), for public agents.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when the cookie name is not an RFC 6265 token or the
    /// prefix is empty.
    pub fn anonymous_cookie(mut self, cookie: &str, prefix: &str) -> Result<Self, ConfigError> {
        // An empty prefix would let a cookie value name any user's resource.
        if prefix.is_empty() {
            return Err(ConfigError::InvalidValue {
                setting: "anonymous scope prefix",
                reason: "use a prefix such as `anon_` so anonymous ids never equal user ids".into(),
            });
        }
        let cookie = crate::http::names::cookie_name("anonymous cookie", cookie)?;
        self.config_mut().anonymous = Some(AnonymousScope {
            cookie,
            prefix: prefix.into(),
        });
        Ok(self)
    }

    /// Renders this layer's rejections as JSON `{"error": "..."}` bodies; the other settings
    /// can come before or after it.
    pub fn json_errors(self) -> ResourceScopeLayer<R, K, JsonBody> {
        ResourceScopeLayer {
            resolver: self.resolver,
            config: self.config,
            bodies: self.bodies,
            errors: JsonBody,
        }
    }
}

impl<S, R: Clone, K: Clone> Layer<S> for ResourceScopeLayer<R, K, HeadOnly> {
    type Service = ResourceScope<S, R, K>;

    fn layer(&self, inner: S) -> Self::Service {
        ResourceScope::new(inner, self)
    }
}

impl<S, R: Clone, K: Clone> Layer<S> for ResourceScopeLayer<R, K, JsonBody> {
    type Service = JsonErrors<ResourceScope<S, R, K>>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonErrors::new(ResourceScope::new(inner, self))
    }
}
