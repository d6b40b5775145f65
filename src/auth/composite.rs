//! [`CompositeAuth`]: several authenticators behind one layer, each for its own credentials.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderName;
use pin_project_lite::pin_project;

use super::{AuthError, AuthErrorKind, Authenticate, Token, TokenSource};
use crate::{Authenticated, ConfigError};

/// Where a member's credential comes from (one [`TokenSource`], named).
#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceKind {
    Bearer,
    Dpop,
    Header(HeaderName),
    Cookie(Box<str>),
    Query(Box<str>),
}

impl SourceKind {
    fn matches(&self, source: TokenSource<'_>) -> bool {
        match (self, source) {
            (Self::Bearer, TokenSource::Bearer) | (Self::Dpop, TokenSource::Dpop) => true,
            (Self::Header(want), TokenSource::Header(got)) => want.as_str() == got,
            (Self::Cookie(want), TokenSource::Cookie(got))
            | (Self::Query(want), TokenSource::Query(got)) => **want == *got,
            _ => false,
        }
    }
}

/// The credentials one [`Member`] handles: one or more sources, optionally narrowed by the
/// token's shape (three JWS segments, a prefix) or, for JWTs, by its issuer.
#[derive(Clone)]
pub struct Credential {
    sources: Vec<SourceKind>,
    jws: bool,
    prefix: Option<Box<str>>,
    #[cfg(feature = "jwt")]
    issuer: Option<Box<str>>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credential");
        d.field("sources", &self.sources)
            .field("jws", &self.jws)
            .field("prefix", &self.prefix.is_some());
        #[cfg(feature = "jwt")]
        d.field("issuer", &self.issuer);
        d.finish()
    }
}

impl Credential {
    fn from_source(source: SourceKind) -> Self {
        Self {
            sources: vec![source],
            jws: false,
            prefix: None,
            #[cfg(feature = "jwt")]
            issuer: None,
        }
    }

    /// Tokens sent as `Authorization: Bearer`.
    pub fn bearer() -> Self {
        Self::from_source(SourceKind::Bearer)
    }

    /// Tokens sent as `Authorization: DPoP` with a verified proof (RFC 9449 §7.1).
    pub fn dpop() -> Self {
        Self::from_source(SourceKind::Dpop)
    }

    /// Tokens in the custom header `name` (as configured with
    /// [`token_from_header`](super::BearerAuthLayer::token_from_header)).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when `name` is not a header name.
    pub fn header(name: &str) -> Result<Self, ConfigError> {
        let name = HeaderName::try_from(name).map_err(|_| ConfigError::InvalidValue {
            setting: "credential header",
            reason: "not a header name".into(),
        })?;
        Ok(Self::from_source(SourceKind::Header(name)))
    }

    /// Tokens in the cookie `name`.
    pub fn cookie(name: &str) -> Self {
        Self::from_source(SourceKind::Cookie(name.into()))
    }

    /// Tokens in the query parameter `name`.
    pub fn query(name: &str) -> Self {
        Self::from_source(SourceKind::Query(name.into()))
    }

    /// Also the sources of `other` (its shape rules are not taken).
    #[must_use]
    pub fn or(mut self, other: Credential) -> Self {
        for source in other.sources {
            if !self.sources.contains(&source) {
                self.sources.push(source);
            }
        }
        self
    }

    /// Only tokens shaped as a compact JWS: three non-empty base64url segments.
    #[must_use]
    pub fn jws(mut self) -> Self {
        self.jws = true;
        self
    }

    /// Only tokens starting with `prefix` (API keys such as `sk_live_...`).
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Only JWS tokens whose `iss` is `issuer`. The payload is decoded *unverified*, to
    /// route the token and nothing else: the member then verifies it, issuer included.
    #[cfg(feature = "jwt")]
    #[must_use]
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.jws = true;
        self.issuer = Some(issuer.into());
        self
    }

    /// Whether this credential covers `token`.
    pub fn claims(&self, token: &Token<'_>) -> bool {
        let source = token.source();
        if !self.sources.iter().any(|s| s.matches(source)) {
            return false;
        }
        let secret = token.expose_secret();
        if let Some(prefix) = &self.prefix
            && !secret.starts_with(&**prefix)
        {
            return false;
        }
        if self.jws && !is_jws_shaped(secret) {
            return false;
        }
        #[cfg(feature = "jwt")]
        if let Some(issuer) = &self.issuer {
            return unverified_issuer(secret).is_some_and(|iss| iss == **issuer);
        }
        true
    }

    fn includes_dpop(&self) -> bool {
        self.sources.contains(&SourceKind::Dpop)
    }
}

/// Three non-empty segments of the base64url alphabet (RFC 7515 §7.1).
fn is_jws_shaped(token: &str) -> bool {
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        if segment.is_empty()
            || !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    segments == 3
}

/// The `iss` of a JWS payload, decoded without verifying anything: for routing only.
#[cfg(feature = "jwt")]
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;

    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Iss>(&json).ok().map(|c| c.iss)
}

/// An authenticator that says which credentials it claims; [`Member`] and [`CompositeAuth`]
/// are the implementations (sealed: compose members instead).
pub trait Route: Authenticate + sealed::Sealed {
    /// How many members claim `token`.
    fn claimed_by(&self, token: &Token<'_>) -> usize;

    /// Whether every member that claims DPoP tokens checks their binding, and one does.
    fn routes_dpop_checked(&self) -> Option<bool>;
}

mod sealed {
    pub trait Sealed {}
    impl<A> Sealed for super::Member<A> {}
    impl<A, B> Sealed for super::CompositeAuth<A, B> {}
}

/// One authenticator of a [`CompositeAuth`], with the [`Credential`] it handles.
#[derive(Clone, Debug)]
pub struct Member<A> {
    credential: Credential,
    authenticator: A,
}

impl<A: Authenticate> Member<A> {
    /// `authenticator` for the tokens `credential` describes.
    pub fn new(credential: Credential, authenticator: A) -> Self {
        Self {
            credential,
            authenticator,
        }
    }
}

impl<A: Authenticate> Authenticate for Member<A> {
    type User = A::User;
    type Future = A::Future;

    fn authenticate(&self, token: Token<'_>) -> A::Future {
        self.authenticator.authenticate(token)
    }

    fn ready_outcome(
        future: A::Future,
    ) -> Result<Result<Authenticated<A::User>, AuthError>, A::Future> {
        A::ready_outcome(future)
    }

    fn checks_dpop_binding(&self) -> bool {
        self.authenticator.checks_dpop_binding()
    }
}

impl<A: Authenticate> Route for Member<A> {
    fn claimed_by(&self, token: &Token<'_>) -> usize {
        usize::from(self.credential.claims(token))
    }

    fn routes_dpop_checked(&self) -> Option<bool> {
        self.credential
            .includes_dpop()
            .then(|| self.authenticator.checks_dpop_binding())
    }
}

/// Several authenticators behind one layer, each for the credentials it
/// declares (Mastra's `CompositeAuth`, without its "first one that does not throw" order).
///
/// Every member says which credentials it handles ([`Credential`]: the source, a token shape,
/// for JWTs the issuer). Exactly one member must claim a request's credential: none is 401
/// `invalid_token`, more than one is 400 `invalid_request` (the deployment is ambiguous, and
/// trying members in turn would let the weakest one decide). The issuer is read from the
/// *unverified* payload only to pick the member; that member then verifies the token.
///
/// The members share one user type: the layer inserts one [`Authenticated<U>`], and the scope,
/// authorization and guard layers behind it are written against that `U`. Map each member's
/// user into it where the member is built (`JwtAuthenticatorBuilder::map_user`, the value type
/// of [`StaticTokens`](super::StaticTokens), a closure's output), for example into an enum
/// with one variant per kind of caller.
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_scope::auth::{CompositeAuth, Credential, Member};
/// use tower_scope::{Authenticated, BearerAuthLayer, StaticTokens};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let services = StaticTokens::new().token("svc-0123456789abcdef0123", String::from("billing"));
/// let people = StaticTokens::new().token("usr-0123456789abcdef0123", String::from("alice"));
/// let auth = CompositeAuth::new(
///     Member::new(Credential::header("x-api-key").unwrap(), services),
///     Member::new(Credential::bearer(), people),
/// );
/// let svc = ServiceBuilder::new()
///     .layer(BearerAuthLayer::new(auth).token_from_header("x-api-key").unwrap())
///     .service(service_fn(|req: Request<String>| async move {
///         let user = req.extensions().get::<Authenticated<String>>().unwrap();
///         Ok::<_, std::convert::Infallible>(Response::new(user.to_string()))
///     }));
///
/// let req = Request::get("/").header("x-api-key", "svc-0123456789abcdef0123")
///     .body(String::new()).unwrap();
/// assert_eq!(svc.clone().oneshot(req).await.unwrap().into_body(), "billing");
/// // The service key sent as a bearer token is not the API-key member's credential.
/// let req = Request::get("/").header("authorization", "Bearer svc-0123456789abcdef0123")
///     .body(String::new()).unwrap();
/// assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
/// # }
/// ```
///
/// Build with [`CompositeAuth::new`] and [`or`](Self::or).
#[derive(Clone, Debug)]
pub struct CompositeAuth<A, B> {
    first: A,
    second: B,
}

impl<A: Authenticate, B: Authenticate> CompositeAuth<Member<A>, Member<B>> {
    /// A composite of two members.
    pub fn new(first: Member<A>, second: Member<B>) -> Self {
        Self { first, second }
    }
}

impl<A: Route, B: Route<User = A::User>> CompositeAuth<A, B> {
    /// Adds a member.
    pub fn or<C: Authenticate<User = A::User>>(
        self,
        member: Member<C>,
    ) -> CompositeAuth<Self, Member<C>> {
        CompositeAuth {
            first: self,
            second: member,
        }
    }
}

impl<A: Route, B: Route<User = A::User>> Authenticate for CompositeAuth<A, B> {
    type User = A::User;
    type Future = CompositeFuture<A::Future, B::Future>;

    fn authenticate(&self, token: Token<'_>) -> Self::Future {
        let first = self.first.claimed_by(&token);
        let second = self.second.claimed_by(&token);
        let refused = CompositeFuture::refused;
        match (first, second) {
            (0, 0) => refused(AuthError::new(
                AuthErrorKind::InvalidToken,
                "No authenticator accepts this credential",
            )),
            (1, 0) => CompositeFuture::first(self.first.authenticate(token)),
            (0, 1) => CompositeFuture::second(self.second.authenticate(token)),
            // Two claims: which member decides would be an accident of order.
            _ => refused(AuthError::new(
                AuthErrorKind::InvalidRequest,
                "More than one authenticator claims this credential",
            )),
        }
    }

    fn ready_outcome(
        future: Self::Future,
    ) -> Result<Result<Authenticated<A::User>, AuthError>, Self::Future> {
        match future.state {
            State::First { inner } => A::ready_outcome(inner).map_err(CompositeFuture::first),
            State::Second { inner } => B::ready_outcome(inner).map_err(CompositeFuture::second),
            State::Refused { err } => Ok(Err(err.unwrap_or_else(AuthError::invalid_token))),
        }
    }

    fn checks_dpop_binding(&self) -> bool {
        self.routes_dpop_checked() == Some(true)
    }
}

impl<A: Route, B: Route<User = A::User>> Route for CompositeAuth<A, B> {
    fn claimed_by(&self, token: &Token<'_>) -> usize {
        self.first.claimed_by(token) + self.second.claimed_by(token)
    }

    fn routes_dpop_checked(&self) -> Option<bool> {
        match (
            self.first.routes_dpop_checked(),
            self.second.routes_dpop_checked(),
        ) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a),
            (Some(a), Some(b)) => Some(a && b),
        }
    }
}

pin_project! {
    /// The future of a [`CompositeAuth`]: the future of the one member that claimed the
    /// token, or its refusal.
    pub struct CompositeFuture<F, G> {
        #[pin]
        state: State<F, G>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, G> {
        First { #[pin] inner: F },
        Second { #[pin] inner: G },
        Refused { err: Option<AuthError> },
    }
}

impl<F, G> CompositeFuture<F, G> {
    fn first(inner: F) -> Self {
        Self {
            state: State::First { inner },
        }
    }

    fn second(inner: G) -> Self {
        Self {
            state: State::Second { inner },
        }
    }

    fn refused(err: AuthError) -> Self {
        Self {
            state: State::Refused { err: Some(err) },
        }
    }
}

impl<F, G, U> Future for CompositeFuture<F, G>
where
    F: Future<Output = Result<Authenticated<U>, AuthError>>,
    G: Future<Output = Result<Authenticated<U>, AuthError>>,
{
    type Output = Result<Authenticated<U>, AuthError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::First { inner } => inner.poll(cx),
            StateProj::Second { inner } => inner.poll(cx),
            StateProj::Refused { err } => {
                Poll::Ready(Err(err.take().unwrap_or_else(AuthError::invalid_token)))
            }
        }
    }
}

impl<F, G> fmt::Debug for CompositeFuture<F, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CompositeFuture")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jws_shape_is_three_non_empty_base64url_segments() {
        assert!(is_jws_shaped("eyJ.eyJ.c2ln"));
        assert!(!is_jws_shaped("eyJ.eyJ."));
        assert!(!is_jws_shaped("eyJ.eyJ"));
        assert!(!is_jws_shaped("a.b.c.d.e"));
        assert!(!is_jws_shaped("a+b.c.d"));
        assert!(!is_jws_shaped("svc-0123456789"));
    }

    #[test]
    fn credentials_match_their_sources_only() {
        let both = Credential::dpop().or(Credential::bearer());
        assert!(both.claims(&Token::new("t")));
        assert!(both.claims(&Token::with_source("t", TokenSource::Dpop)));
        assert!(!both.claims(&Token::with_source("t", TokenSource::Header("x-api-key"))));
        let header = Credential::header("X-Api-Key").unwrap().prefix("svc-");
        assert!(header.claims(&Token::with_source(
            "svc-1",
            TokenSource::Header("x-api-key")
        )));
        assert!(!header.claims(&Token::with_source(
            "usr-1",
            TokenSource::Header("x-api-key")
        )));
        assert!(!header.claims(&Token::with_source("svc-1", TokenSource::Header("x-other"))));
        assert!(
            !Credential::cookie("a").claims(&Token::with_source("t", TokenSource::Cookie("b")))
        );
        assert!(Credential::query("a").claims(&Token::with_source("t", TokenSource::Query("a"))));
    }
}
