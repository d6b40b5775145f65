//! `BearerAuthLayer`: the layer, its service and its response future.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::extract::{ExtractConfig, Found, Source, check_grammar, extract};
use super::metadata::{BearerMethod, ProtectedResourceMetadata, ProtectedResourceMetadataLayer};
use super::{AuthError, Authenticate, Token, TokenSource};
use crate::gate::{Gate, GateFuture, forward, response_future, take_ready};
use crate::http::names;
use crate::http::protocol::is_preflight;
use crate::path::{PathPattern, PathSet};
use crate::reject::{
    BEARER, ChallengeHint, HeadOnly, JsonBody, JsonErrors, Rejection, RejectionKind, challenge,
    render_challenged,
};
use crate::{AuthState, Authenticated, ConfigError};

/// The default maximum token length: 8 KiB, far above real JWTs, far below header limits.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

#[derive(Debug, Clone)]
struct Config {
    realm: Option<Arc<str>>,
    optional: bool,
    public: PathSet,
    bypass_preflight: bool,
    extract: ExtractConfig,
    /// RFC 9728 §5.1: the metadata URL every challenge names, this layer's and those behind.
    resource_metadata: Option<Arc<str>>,
    #[cfg(feature = "dpop")]
    dpop: Option<crate::dpop::DpopConfig>,
    /// The challenge of a refusal without an error code (no credentials, RFC 6750 §3.1),
    /// which depends only on the settings above: made on first use, forgotten when a setting
    /// changes.
    plain_challenge: OnceLock<HeaderValue>,
}

impl Config {
    /// The `WWW-Authenticate` value of `rejection` under these settings.
    fn challenge(&self, rejection: &Rejection) -> Option<HeaderValue> {
        let (realm, metadata) = (self.realm.as_deref(), self.resource_metadata.as_deref());
        if rejection.kind() != RejectionKind::MissingCredentials {
            return challenge(rejection, realm, metadata);
        }
        let plain = self
            .plain_challenge
            .get_or_init(|| challenge(rejection, realm, metadata).unwrap_or(BEARER));
        Some(plain.clone())
    }
}

/// Authenticates every request's bearer token; see the [module docs](crate::auth).
///
/// - **Required** (default): no token gives 401 with a bare `Bearer` challenge.
/// - **Optional** ([`optional`](Self::optional)): no token passes as anonymous (no
///   [`Authenticated`] inserted), a bad token still gives 401.
/// - **Public paths** ([`public_path`](Self::public_path)) skip authentication.
/// - CORS preflights are authenticated like every other request: whether a request is
///   authenticated never depends on headers the client chooses (`Origin`,
///   `Access-Control-Request-Method`). Put [`CorsLayer`](crate::CorsLayer) outside this layer so
///   it answers preflights before they get here, or opt in with
///   [`pass_preflights_unauthenticated`](Self::pass_preflights_unauthenticated).
///
/// Every request that passes carries an [`AuthState`] saying what was concluded, and every
/// answer to a verified request carries `Cache-Control: private` unless the handler set its
/// own `Cache-Control`: it depends on who asked, so a shared cache must not serve it to others.
///
/// Malformed or ambiguous credentials (two `Authorization` headers, a token in two places,
/// characters outside `b64token`, a token over the length limit) give 400 `invalid_request`.
/// On success the user is inserted as [`Authenticated<A::User>`](Authenticated) and the
/// `Authorization` header is marked sensitive.
///
/// The second type parameter says how refusals are written: [`HeadOnly`] (the default) or,
/// after [`json_errors`](Self::json_errors), [`JsonBody`].
#[derive(Clone)]
pub struct BearerAuthLayer<A, E = HeadOnly> {
    authenticator: A,
    config: Arc<Config>,
    _errors: E,
}

impl<A, E> std::fmt::Debug for BearerAuthLayer<A, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn header_safe(setting: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty()
        || !value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(ConfigError::InvalidValue {
            setting,
            reason: "use printable ASCII without `\"` or `\\`".into(),
        });
    }
    Ok(())
}

/// Query parameter names: unreserved characters only (RFC 3986 §2.3), so no encoding is needed.
fn query_name_safe(setting: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty()
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    {
        return Err(ConfigError::InvalidValue {
            setting,
            reason: "use letters, digits, `-`, `_`, `.` or `~`".into(),
        });
    }
    Ok(())
}

impl<A: Authenticate> BearerAuthLayer<A> {
    /// Requires a valid bearer token on every request, checked by `authenticator`.
    pub fn new(authenticator: A) -> Self {
        Self {
            _errors: HeadOnly,
            authenticator,
            config: Arc::new(Config {
                realm: Some(Arc::from("api")),
                optional: false,
                public: PathSet::default(),
                bypass_preflight: false,
                extract: ExtractConfig {
                    max_len: DEFAULT_MAX_TOKEN_LEN,
                    cookie: None,
                    query: None,
                    header: None,
                    dpop: false,
                },
                resource_metadata: None,
                #[cfg(feature = "dpop")]
                dpop: None,
                plain_challenge: OnceLock::new(),
            }),
        }
    }
}

impl<A: Authenticate, E> BearerAuthLayer<A, E> {
    fn config_mut(&mut self) -> &mut Config {
        let config = Arc::make_mut(&mut self.config);
        config.plain_challenge = OnceLock::new();
        config
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenge (default `api`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] unless the realm is non-empty printable ASCII without `"`
    /// or `\`.
    pub fn realm(mut self, realm: &str) -> Result<Self, ConfigError> {
        header_safe("realm", realm)?;
        self.config_mut().realm = Some(Arc::from(realm));
        Ok(self)
    }

    /// Lets requests without any token through as anonymous; a bad token is still a 401.
    #[must_use]
    pub fn optional(mut self) -> Self {
        self.config_mut().optional = true;
        self
    }

    /// Skips authentication on paths matching `pattern` (see [`PathPattern`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathPattern`] when the pattern is malformed.
    pub fn public_path(mut self, pattern: &str) -> Result<Self, ConfigError> {
        let pattern = PathPattern::new(pattern)?;
        self.config_mut().public.push(pattern);
        Ok(self)
    }

    /// Sets the maximum token length in bytes (default 8 KiB), checked before any decoding.
    #[must_use]
    pub fn max_token_len(mut self, max_len: usize) -> Self {
        self.config_mut().extract.max_len = max_len;
        self
    }

    /// Also accepts the token from the cookie `name` (off by default).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when `name` is not a cookie name (an RFC 6265 token).
    pub fn token_from_cookie(mut self, name: &str) -> Result<Self, ConfigError> {
        let name = names::cookie_name("cookie name", name)?;
        self.config_mut().extract.cookie = Some(name);
        Ok(self)
    }

    /// Also accepts the token from the query parameter `name`, e.g. `access_token` (off by
    /// default). Responses then carry `Cache-Control: private` (RFC 6750 §2.3); keep the query
    /// string out of your logs.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when `name` is not a plain parameter name.
    pub fn token_from_query(mut self, name: &str) -> Result<Self, ConfigError> {
        query_name_safe("query parameter", name)?;
        self.config_mut().extract.query = Some(name.into());
        Ok(self)
    }

    /// Names `metadata`'s URL in every `WWW-Authenticate` challenge (RFC 9728 §5.1): this
    /// layer's 401s and 400s, and the 403 `insufficient_scope` of the layers behind it
    /// ([`AuthorizeLayer`](crate::authz::AuthorizeLayer)), so a client can find the
    /// authorization server and step up. Returns the layer that serves the document, with
    /// `bearer_methods_supported` set from the token sources enabled so far (configure them
    /// first); put it in front of this one.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when a token source is the cookie, which RFC 9728 has no
    /// name for: the document would not tell clients how this resource takes tokens.
    pub fn protected_resource(
        mut self,
        metadata: ProtectedResourceMetadata,
    ) -> Result<(Self, ProtectedResourceMetadataLayer), ConfigError> {
        if self.config.extract.cookie.is_some() {
            return Err(ConfigError::InvalidValue {
                setting: "protected_resource",
                reason: "RFC 9728 names no bearer method for a cookie; drop token_from_cookie"
                    .into(),
            });
        }
        let methods: &[BearerMethod] = if self.config.extract.query.is_some() {
            &[BearerMethod::Header, BearerMethod::Query]
        } else {
            &[BearerMethod::Header]
        };
        let metadata = metadata.bearer_methods(methods.iter().copied());
        self.config_mut().resource_metadata = Some(Arc::from(metadata.url()));
        Ok((self, metadata.layer()))
    }

    /// Also accepts the token as the whole value of the header `name`, e.g. `X-API-Key`
    /// (Kong's and Mastra's API-key header; off by default). Exactly one such header is
    /// allowed, with the same length limit and `b64token` grammar as a bearer token; a token
    /// here *and* in another place is 400 `invalid_request`. The header is marked sensitive
    /// before the request is passed on. Authenticators see it as [`TokenSource::Header`].
    /// `LogLayer` redacts `x-api-key` by default; add any other name to its redacted headers,
    /// since it may read the request before this layer marks the header.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidHeaderName`] when `name` is not a header name;
    /// [`ConfigError::InvalidValue`] for `Authorization`, `Cookie`, `DPoP` or `Host`, which
    /// mean something else.
    pub fn token_from_header(mut self, name: &str) -> Result<Self, ConfigError> {
        let name = names::header_name(name)?;
        if [header::AUTHORIZATION, header::COOKIE, header::HOST].contains(&name) || name == "dpop" {
            return Err(ConfigError::InvalidValue {
                setting: "token header",
                reason: "use a header of its own, such as x-api-key".into(),
            });
        }
        self.config_mut().extract.header = Some(name);
        Ok(self)
    }

    /// Accepts DPoP-bound tokens (RFC 9449): `Authorization: DPoP <token>` with a `DPoP` proof
    /// header, verified as [`crate::dpop`] describes; 401 challenges then also offer
    /// `DPoP algs="..."`. The authenticator must compare the binding (`cnf.jkt`), e.g. a JWT
    /// authenticator built with `accept_dpop()`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when the authenticator does not check DPoP bindings
    /// ([`Authenticate::checks_dpop_binding`]): a verified proof would prove nothing.
    #[cfg(feature = "dpop")]
    pub fn dpop(mut self, config: crate::dpop::DpopConfig) -> Result<Self, ConfigError> {
        if !self.authenticator.checks_dpop_binding() {
            return Err(ConfigError::InvalidValue {
                setting: "DPoP",
                reason: "the authenticator does not check DPoP bindings (accept_dpop())".into(),
            });
        }
        let settings = self.config_mut();
        settings.extract.dpop = true;
        settings.dpop = Some(config);
        Ok(self)
    }

    /// Lets CORS preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    /// through without authentication, marked [`AuthState::Preflight`].
    ///
    /// Off by default: those headers are the client's choice, so with this on, any `OPTIONS`
    /// request that names them reaches the inner service unauthenticated. Only use it when
    /// the inner service answers `OPTIONS` with nothing but CORS headers; the usual fix is a
    /// [`CorsLayer`](crate::CorsLayer) outside this layer, which answers preflights itself.
    #[must_use]
    pub fn pass_preflights_unauthenticated(mut self) -> Self {
        self.config_mut().bypass_preflight = true;
        self
    }

    /// Renders this layer's rejections as JSON `{"error": "..."}` bodies (Mastra's shape); the
    /// other settings can come before or after it.
    pub fn json_errors(self) -> BearerAuthLayer<A, JsonBody> {
        BearerAuthLayer {
            authenticator: self.authenticator,
            config: self.config,
            _errors: JsonBody,
        }
    }

    /// The authenticator, to share with code that authenticates outside the layer.
    pub fn authenticator(&self) -> &A {
        &self.authenticator
    }

    /// Authenticates the bearer token (header, or cookie when configured) of a `HeaderMap`,
    /// with the same rules as the layer: Mastra's `getAuthenticatedUser`.
    ///
    /// Resolves to `Ok(None)` when no token was sent.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] the layer would have answered with.
    pub fn authenticate_headers(
        &self,
        headers: &HeaderMap,
    ) -> impl Future<Output = Result<Option<Authenticated<A::User>>, Rejection>> + Send + 'static
    {
        let pending = match extract(headers, None, &self.config.extract, false) {
            // A DPoP proof names a method and URI, which a header map does not have.
            Ok(Some(found)) if found.source == Source::Dpop => Err(Rejection::with_message(
                RejectionKind::InvalidToken,
                "DPoP tokens need the whole request",
            )),
            Ok(Some(found)) => Ok(Some(
                self.authenticator
                    .authenticate(token_of(&found, &self.config.extract)),
            )),
            Ok(None) => Ok(None),
            Err(rejection) => Err(rejection),
        };
        async move {
            match pending? {
                Some(fut) => fut.await.map(Some).map_err(Rejection::from),
                None => Ok(None),
            }
        }
    }
}

impl<S, A: Clone> Layer<S> for BearerAuthLayer<A, HeadOnly> {
    type Service = BearerAuth<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            authenticator: self.authenticator.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S, A: Clone> Layer<S> for BearerAuthLayer<A, JsonBody> {
    type Service = JsonErrors<BearerAuth<S, A>>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonErrors::new(BearerAuth {
            inner,
            authenticator: self.authenticator.clone(),
            config: Arc::clone(&self.config),
        })
    }
}

/// The service made by [`BearerAuthLayer`].
#[derive(Clone)]
pub struct BearerAuth<S, A> {
    inner: S,
    authenticator: A,
    config: Arc<Config>,
}

impl<S: std::fmt::Debug, A> std::fmt::Debug for BearerAuth<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, A, ReqB, ResB> Service<Request<ReqB>> for BearerAuth<S, A>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    A: Authenticate,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, A, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let config = &self.config;
        if let Some(url) = &config.resource_metadata {
            // For the challenges of the layers behind (authz's 403 `insufficient_scope`).
            req.extensions_mut().insert(ChallengeHint {
                resource_metadata: Arc::clone(url),
            });
        }
        if !config.public.is_empty() && config.public.matches(req.uri().path()) {
            return pass_unauthenticated::<S, A, ReqB>(&mut self.inner, req, AuthState::PublicPath);
        }
        // The opt-in preflight pass: a client-chosen header decides here, so it is off by default.
        if config.bypass_preflight && is_preflight(&req) {
            return pass_unauthenticated::<S, A, ReqB>(&mut self.inner, req, AuthState::Preflight);
        }
        #[cfg(feature = "dpop")]
        let mut proof = None;
        let (decision, private) =
            match extract(req.headers(), req.uri().query(), &config.extract, true) {
                Ok(Some(found)) if found.grammar_deferred => {
                    match self
                        .authenticator
                        .authenticate_unchecked(Token::new(&found.token), check_grammar)
                    {
                        Ok(decision) => (decision, false),
                        Err(rejection) => return refuse(&req, rejection, config),
                    }
                }
                #[cfg(feature = "dpop")]
                Ok(Some(found)) if found.source == Source::Dpop => {
                    // The scheme is only extracted with DPoP configured; never panic on it.
                    let Some(dpop) = &config.dpop else {
                        let rejection = Rejection::new(RejectionKind::MissingCredentials);
                        return refuse(&req, rejection, config);
                    };
                    let verified = match crate::dpop::proof::verify(
                        dpop,
                        req.headers(),
                        req.method(),
                        req.uri().path(),
                        &found.token,
                    ) {
                        Ok(verified) => verified,
                        Err(err) => {
                            let response = crate::dpop::challenge::render_proof(
                                err,
                                req.headers(),
                                config.realm.as_deref(),
                                dpop,
                            );
                            return ResponseFuture::new(GateFuture::done(response));
                        }
                    };
                    let decision = self
                        .authenticator
                        .authenticate(Token::with_proof(&found.token, &verified.jkt));
                    proof = Some(verified);
                    (decision, false)
                }
                Ok(Some(found)) => (
                    self.authenticator
                        .authenticate(token_of(&found, &config.extract)),
                    found.source == Source::Query,
                ),
                Ok(None) if config.optional => {
                    return pass_unauthenticated::<S, A, ReqB>(
                        &mut self.inner,
                        req,
                        AuthState::Anonymous,
                    );
                }
                Ok(None) => {
                    let rejection = Rejection::new(RejectionKind::MissingCredentials);
                    return refuse(&req, rejection, config);
                }
                Err(rejection) => return refuse(&req, rejection, config),
            };
        let gate = AuthGate {
            config: Arc::clone(config),
            private,
            #[cfg(feature = "dpop")]
            proof,
            _user: PhantomData,
        };
        // A decision made without waiting (a signature check, a cache hit) applies now: the
        // request goes straight on, and the response future never holds it.
        match A::ready_outcome(decision) {
            Ok(outcome) => {
                ResponseFuture::new(GateFuture::decided(outcome, req, &mut self.inner, gate))
            }
            Err(decision) => ResponseFuture::new(GateFuture::deciding(
                decision,
                req,
                take_ready(&mut self.inner),
                gate,
            )),
        }
    }
}

fn refuse<S, A, ReqB, ResB>(
    req: &Request<ReqB>,
    rejection: Rejection,
    config: &Config,
) -> ResponseFuture<S, A, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    A: Authenticate,
    ResB: Default,
{
    let response = render_refusal(rejection, req.headers(), config);
    ResponseFuture::new(GateFuture::done(response))
}

/// The authenticator's view of a token that came without a DPoP proof.
fn token_of<'a>(found: &'a Found<'a>, config: &'a ExtractConfig) -> Token<'a> {
    let source = match found.source {
        Source::Header | Source::Dpop => TokenSource::Bearer,
        Source::Custom => TokenSource::Header(config.header.as_ref().map_or("", |h| h.as_str())),
        Source::Cookie => TokenSource::Cookie(config.cookie.as_deref().unwrap_or_default()),
        Source::Query => TokenSource::Query(config.query.as_deref().unwrap_or_default()),
    };
    Token::with_source(&found.token, source)
}

/// Renders a refusal with this layer's challenges: `Bearer`, and `DPoP` when it is on.
fn render_refusal<B: Default>(
    rejection: Rejection,
    headers: &HeaderMap,
    config: &Config,
) -> Response<B> {
    #[cfg(feature = "dpop")]
    if let Some(dpop) = &config.dpop {
        return crate::dpop::challenge::render(
            rejection,
            headers,
            config.realm.as_deref(),
            config.resource_metadata.as_deref(),
            dpop,
        );
    }
    render_challenged(rejection, headers, |rejection| config.challenge(rejection))
}

/// Passes a request on without a user, saying why in its [`AuthState`].
fn pass_unauthenticated<S, A, ReqB>(
    inner: &mut S,
    mut req: Request<ReqB>,
    state: AuthState,
) -> ResponseFuture<S, A, ReqB>
where
    S: Service<Request<ReqB>>,
    A: Authenticate,
{
    // A client-sent `AuthState` cannot exist (extensions are server-side), but an earlier
    // layer's must not survive into a decision this layer made.
    req.extensions_mut().insert(state);
    ResponseFuture::new(GateFuture::pass(forward(inner, req), None))
}

response_future! {
    /// The response future of [`BearerAuth`]: the inner service `S`, the authenticator `A`,
    /// the request body `B`.
    ResponseFuture<S, [A], B> where [A: Authenticate,]
        => AuthGate<<A as Authenticate>::User>, <A as Authenticate>::Future
}

/// How [`BearerAuth`] applies an authentication outcome.
pub(crate) struct AuthGate<U> {
    config: Arc<Config>,
    private: bool,
    /// The verified DPoP proof, whose `jti` is recorded once the token verified too.
    #[cfg(feature = "dpop")]
    proof: Option<crate::dpop::Verified>,
    _user: PhantomData<fn() -> U>,
}

impl<U, ReqB> Gate<ReqB> for AuthGate<U>
where
    U: Send + Sync + 'static,
{
    type Outcome = Result<Authenticated<U>, AuthError>;

    fn admit(
        &self,
        outcome: <Self as Gate<ReqB>>::Outcome,
        req: &mut Request<ReqB>,
    ) -> Result<(), Rejection> {
        let user = outcome?;
        // Last, so that proofs for tokens that do not verify cannot fill the cache.
        #[cfg(feature = "dpop")]
        if let (Some(proof), Some(dpop)) = (&self.proof, &self.config.dpop) {
            crate::dpop::challenge::record(dpop, proof)?;
        }
        mark_sensitive(req.headers_mut(), &self.config.extract);
        req.extensions_mut().insert(user);
        req.extensions_mut().insert(AuthState::verified::<U>());
        Ok(())
    }

    fn render<ResB: Default>(&self, rejection: Rejection, req: &Request<ReqB>) -> Response<ResB> {
        render_refusal(rejection, req.headers(), &self.config)
    }

    fn finish<ResB>(&self, response: &mut Response<ResB>, admitted: bool) {
        #[cfg(feature = "dpop")]
        if admitted
            && self.proof.is_some()
            && let Some(dpop) = &self.config.dpop
        {
            crate::dpop::challenge::fresh_nonce(dpop, response);
        }
        if self.private {
            mark_private(response);
        } else if admitted {
            // The answer depends on who asked: a shared cache must not hand it to someone else.
            crate::reject::private_unless_cached(response);
        }
    }
}

/// Credentials must not show in `Debug` output or HPACK tables downstream.
fn mark_sensitive(headers: &mut HeaderMap, config: &ExtractConfig) {
    // One pass over the values: `HeaderMap::entry` would hash each name and may grow the map.
    for (name, value) in headers.iter_mut() {
        if name == header::AUTHORIZATION
            || name == header::COOKIE
            || config.header.as_ref() == Some(name)
            || (config.dpop && name == "dpop")
        {
            value.set_sensitive(true);
        }
    }
}

/// RFC 6750 §2.3: a response to a request with the token in the URI must not be shared-cached.
fn mark_private<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    let already = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("private") || v.contains("no-store"));
    if !already {
        headers.insert(header::CACHE_CONTROL, crate::reject::PRIVATE);
    }
}
