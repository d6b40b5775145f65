//! Bearer authentication: who is calling.
//!
//! [`BearerAuthLayer`] extracts a bearer token strictly (RFC 6750), hands it to an
//! [`Authenticate`] implementation — [`JwtAuthenticator`](crate::jwt::JwtAuthenticator),
//! [`StaticTokens`], or any async closure — and inserts the result as
//! [`Authenticated<U>`](crate::Authenticated) for the layers and handlers behind it.
//!
//! ```
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::{AuthError, Authenticated, BearerAuthLayer, BearerToken};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Any async closure is an authenticator: look the token up in your session store here.
//! let lookup = |token: BearerToken| async move {
//!     match token.expose_secret() {
//!         "s3ss10n-alice" => Ok(String::from("alice")),
//!         _ => Err(AuthError::invalid_token()),
//!     }
//! };
//! let svc = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(lookup))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let user = req.extensions().get::<Authenticated<String>>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("hello {}", &**user)))
//!     }));
//!
//! let req = Request::get("/").header(header::AUTHORIZATION, "bearer s3ss10n-alice")
//!     .body(String::new()).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.into_body(), "hello alice");
//!
//! let req = Request::get("/").header(header::AUTHORIZATION, "Bearer wrong")
//!     .body(String::new()).unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```

mod composite;
mod extract;
mod layer;
pub mod metadata;
mod static_tokens;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;

pub use composite::{CompositeAuth, CompositeFuture, Credential, Member, Route};
pub use layer::{BearerAuth, BearerAuthLayer, DEFAULT_MAX_TOKEN_LEN, ResponseFuture};
pub use metadata::{
    BearerMethod, DEFAULT_MAX_AGE, ProtectedResourceMetadata, ProtectedResourceMetadataLayer,
    ProtectedResourceMetadataService, WELL_KNOWN_PATH,
};
pub use static_tokens::StaticTokens;

use closure::ClosureFuture;

use crate::Authenticated;
use crate::mastra::messages;
use crate::reject::{Rejection, RejectionKind};

/// How a credential reached the server: what a [`Token`] says about where it came from.
///
/// Authenticators that handle several kinds of credentials (a [`CompositeAuth`] member,
/// an API-key table beside a JWT verifier) route on it; it is decided by the layer from the
/// configured sources, never by a header the client chose to name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenSource<'a> {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    Bearer,
    /// `Authorization: DPoP <token>` with a verified DPoP proof (RFC 9449 §7.1).
    Dpop,
    /// A custom header such as `x-api-key` (its lowercase name), see
    /// [`BearerAuthLayer::token_from_header`].
    Header(&'a str),
    /// The configured cookie (its name).
    Cookie(&'a str),
    /// The configured query parameter (its name).
    Query(&'a str),
}

/// A bearer token borrowed from the request. Its `Debug` output never shows the secret.
#[derive(Clone, Copy)]
pub struct Token<'a> {
    secret: &'a str,
    source: TokenSource<'a>,
    /// The JWK thumbprint (RFC 7638) of a DPoP proof the layer verified for this token.
    proof_jkt: Option<&'a str>,
}

impl<'a> Token<'a> {
    /// Wraps a token string, as if sent as `Authorization: Bearer`.
    pub fn new(token: &'a str) -> Self {
        Self::with_source(token, TokenSource::Bearer)
    }

    /// Wraps a token string that came from `source`.
    ///
    /// [`TokenSource::Dpop`] made here carries no proof: a DPoP-bound token built this way is
    /// refused, only the layer's own verification attaches one.
    pub fn with_source(token: &'a str, source: TokenSource<'a>) -> Self {
        Self {
            secret: token,
            source,
            proof_jkt: None,
        }
    }

    /// The token of a request whose DPoP proof verified with the key of thumbprint `jkt`.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub(crate) fn with_proof(token: &'a str, jkt: &'a str) -> Self {
        Self {
            secret: token,
            source: TokenSource::Dpop,
            proof_jkt: Some(jkt),
        }
    }

    /// The secret token text. Do not log it.
    pub fn expose_secret(&self) -> &'a str {
        self.secret
    }

    /// Where the token came from.
    pub fn source(&self) -> TokenSource<'a> {
        self.source
    }

    /// The RFC 7638 thumbprint of the key whose DPoP proof the layer verified for this token
    /// (`htm`, `htu`, `iat`, `jti`, `ath`), `None` for every other token.
    pub fn dpop_thumbprint(&self) -> Option<&'a str> {
        self.proof_jkt
    }

    /// An owned copy, for authenticators whose future outlives the request.
    pub fn to_owned_token(&self) -> BearerToken {
        BearerToken(self.secret.into())
    }
}

impl fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// An owned bearer token, as async closure authenticators receive it. `Debug` is redacted.
#[derive(Clone)]
pub struct BearerToken(Box<str>);

impl BearerToken {
    /// The secret token text. Do not log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// Turns a bearer token into a user, or says why not.
///
/// Implemented by [`JwtAuthenticator`](crate::jwt::JwtAuthenticator), [`StaticTokens`], and
/// every `Fn(BearerToken) -> impl Future<Output = Result<U, AuthError>>` closure.
/// Return [`AuthError::unavailable`] when a backend the decision needs is down: the layer
/// answers 503 and never lets the request pass.
///
/// The future resolves to the user already wrapped in [`Authenticated`], the extension the
/// layer inserts as is: an authenticator that keeps its users (a token cache, a fixed key table)
/// hands every request the same shared user instead of a copy. Wrap a fresh user with
/// [`Authenticated::new`].
pub trait Authenticate: Clone + Send + Sync + 'static {
    /// The authenticated user (claims, a user record...).
    type User: Send + Sync + 'static;
    /// The future of one authentication.
    type Future: Future<Output = Result<Authenticated<Self::User>, AuthError>> + Send + 'static;

    /// Authenticates one token.
    fn authenticate(&self, token: Token<'_>) -> Self::Future;

    /// Authenticates a token whose `b64token` grammar `check` has not run yet: the default runs
    /// it, then [`authenticate`](Self::authenticate). An authenticator with a cache of verified
    /// tokens may answer a hit first (a token that verified is well-formed), then must run
    /// `check` before anything else.
    ///
    /// # Errors
    ///
    /// The refusal of `check`.
    #[doc(hidden)]
    fn authenticate_unchecked(
        &self,
        token: Token<'_>,
        check: fn(&str) -> Result<(), Rejection>,
    ) -> Result<Self::Future, Rejection> {
        check(token.expose_secret())?;
        Ok(self.authenticate(token))
    }

    /// The outcome `future` already holds (an authenticator that decided without waiting,
    /// such as a signature check or a cache hit), else the future back: the layer then admits
    /// or refuses inside `call`, and the request goes on without waiting in its response
    /// future. The default always gives the future back.
    #[doc(hidden)]
    #[allow(clippy::type_complexity)]
    fn ready_outcome(
        future: Self::Future,
    ) -> Result<Result<Authenticated<Self::User>, AuthError>, Self::Future> {
        Err(future)
    }

    /// Whether this authenticator compares the key binding of every token it accepts with the
    /// request's verified DPoP proof ([`Token::dpop_thumbprint`]): it accepts a DPoP-bound
    /// token only with a proof by that key, and refuses an unbound token sent with a proof.
    ///
    /// [`BearerAuthLayer::dpop`] refuses an authenticator that says `false` (the default): the
    /// proof alone proves nothing about a token its authenticator did not compare.
    fn checks_dpop_binding(&self) -> bool {
        false
    }
}

impl<F, Fut, U> Authenticate for F
where
    F: Fn(BearerToken) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<U, AuthError>> + Send + 'static,
    U: Send + Sync + 'static,
{
    type User = U;
    type Future = ClosureFuture<Fut>;

    fn authenticate(&self, token: Token<'_>) -> ClosureFuture<Fut> {
        ClosureFuture::new(self(token.to_owned_token()))
    }
}

mod closure {
    //! The future of closure authenticators: `pub` so the blanket impl may name it, inside a
    //! private module so users cannot (they write `<F as Authenticate>::Future`), which keeps
    //! it free to change.

    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use pin_project_lite::pin_project;

    use super::AuthError;
    use crate::Authenticated;

    pin_project! {
        /// The future of an async-closure authenticator: the closure's future, its user wrapped
        /// in [`Authenticated`].
        pub struct ClosureFuture<F> {
            #[pin]
            inner: F,
        }
    }

    impl<F> ClosureFuture<F> {
        pub(super) fn new(inner: F) -> Self {
            Self { inner }
        }
    }

    impl<F, U> Future for ClosureFuture<F>
    where
        F: Future<Output = Result<U, AuthError>>,
    {
        type Output = Result<Authenticated<U>, AuthError>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.project().inner.poll(cx).map_ok(Authenticated::new)
        }
    }

    impl<F> fmt::Debug for ClosureFuture<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("ClosureFuture")
        }
    }
}

/// Why an [`Authenticate`] implementation refused a token.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthError {
    kind: AuthErrorKind,
    message: Cow<'static, str>,
    scope: Option<Cow<'static, str>>,
}

/// The kinds of [`AuthError`], each mapped to one HTTP status and gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// Expired, forged, malformed or unknown token: 401 `invalid_token`.
    InvalidToken,
    /// Valid token, but this caller may not use the service: 403.
    Forbidden,
    /// Valid token without a required scope: 403 `insufficient_scope`.
    InsufficientScope,
    /// The authenticator's backend is down or too slow: 503, never a pass.
    Unavailable,
    /// The credentials are ambiguous or malformed (e.g. more than one [`CompositeAuth`]
    /// member claims them): 400 `invalid_request`.
    InvalidRequest,
}

impl AuthError {
    /// 401 `invalid_token` with the default message.
    pub fn invalid_token() -> Self {
        Self::new(
            AuthErrorKind::InvalidToken,
            messages::INVALID_OR_EXPIRED_TOKEN,
        )
    }

    /// 403 with the default message.
    pub fn forbidden() -> Self {
        Self::new(AuthErrorKind::Forbidden, messages::ACCESS_DENIED)
    }

    /// 403 `insufficient_scope` naming the scope the request needs.
    pub fn insufficient_scope(scope: impl Into<Cow<'static, str>>) -> Self {
        Self {
            scope: Some(scope.into()),
            ..Self::new(AuthErrorKind::InsufficientScope, "Insufficient scope")
        }
    }

    /// 503: the authenticator could not reach what it needs to decide.
    pub fn unavailable() -> Self {
        Self::new(
            AuthErrorKind::Unavailable,
            "Authentication backend unavailable",
        )
    }

    /// An error of `kind` with a safe message of your own (never token or claim content).
    pub fn new(kind: AuthErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            scope: None,
        }
    }

    /// Replaces the message with a safe one of your own.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    /// What kind of refusal this is.
    pub fn kind(&self) -> AuthErrorKind {
        self.kind
    }

    /// The safe message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AuthError {}

impl From<AuthError> for Rejection {
    fn from(err: AuthError) -> Self {
        match err.kind {
            AuthErrorKind::InvalidToken => {
                Rejection::with_message(RejectionKind::InvalidToken, err.message)
            }
            AuthErrorKind::Forbidden => {
                Rejection::with_message(RejectionKind::Forbidden, err.message)
            }
            AuthErrorKind::InsufficientScope => {
                let rejection =
                    Rejection::with_message(RejectionKind::InsufficientScope, err.message);
                match err.scope {
                    Some(scope) => rejection.with_scope(scope),
                    None => rejection,
                }
            }
            AuthErrorKind::Unavailable => {
                Rejection::with_message(RejectionKind::Unavailable, err.message)
            }
            AuthErrorKind::InvalidRequest => {
                Rejection::with_message(RejectionKind::InvalidRequest, err.message)
            }
        }
    }
}

#[cfg(test)]
mod tests;
