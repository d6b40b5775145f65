//! `Authorize`: the service, its hook future and its response future.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::grants::PermissionSource;
use super::layer::{AuthorizeLayer, Config, Policy, PolicyError, RequestHead, Verdict};
use crate::gate::{Gate, GateFuture, forward, note, take_ready};
use crate::mastra::messages;
use crate::query;
use crate::reject::{Rejection, RejectionKind, render_request};
use crate::{AuthState, Authenticated, Privileged, ResourceId};

/// The service made by [`AuthorizeLayer`]: the inner service `S`, the permission source `G`,
/// the policy hook `P`.
pub struct Authorize<S, G: PermissionSource, P> {
    inner: S,
    source: Arc<G>,
    policy: Option<P>,
    config: Arc<Config<G::User>>,
}

impl<S, G: PermissionSource, P: Clone> Authorize<S, G, P> {
    pub(crate) fn new<E>(inner: S, layer: &AuthorizeLayer<G, P, E>) -> Self {
        Self {
            inner,
            source: Arc::clone(&layer.source),
            policy: layer.policy.clone(),
            config: Arc::clone(&layer.config),
        }
    }
}

impl<S: Clone, G: PermissionSource, P: Clone> Clone for Authorize<S, G, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            source: Arc::clone(&self.source),
            policy: self.policy.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, G: PermissionSource, P> fmt::Debug for Authorize<S, G, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// What the hook said, panics included.
pub(crate) enum Outcome {
    Allow,
    Deny,
    Unavailable,
    Failed,
}

pin_project! {
    /// The policy hook's future, with a panic turned into [`Outcome::Failed`].
    #[project = HookProj]
    pub(crate) enum Hook<F> {
        /// No hook is configured: allow.
        None,
        /// Calling the hook panicked.
        Panicked,
        Running { #[pin] fut: F },
    }
}

type Approval = Pin<Box<dyn Future<Output = (Outcome, Option<Privileged>)> + Send>>;

pin_project! {
    /// What [`Authorize`] waits for: the policy hook (privilege known), or an approval of the
    /// named resource followed by the hook (boxed: it is rare and waits on a backend anyway).
    #[project = DecisionProj]
    pub(crate) enum Decision<F> {
        Hook { #[pin] hook: Hook<F>, privileged: Option<Privileged> },
        Approve { fut: Approval },
    }
}

impl<F: Future<Output = Result<bool, PolicyError>>> Future for Decision<F> {
    type Output = (Outcome, Option<Privileged>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DecisionProj::Hook { hook, privileged } => {
                let outcome = std::task::ready!(hook.poll(cx));
                Poll::Ready((outcome, privileged.take()))
            }
            DecisionProj::Approve { fut } => fut.as_mut().poll(cx),
        }
    }
}

impl<F: Future<Output = Result<bool, PolicyError>>> Future for Hook<F> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let fut = match self.project() {
            HookProj::None => return Poll::Ready(Outcome::Allow),
            HookProj::Panicked => return Poll::Ready(Outcome::Failed),
            HookProj::Running { fut } => fut,
        };
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(true))) => Poll::Ready(Outcome::Allow),
            Ok(Poll::Ready(Ok(false))) => Poll::Ready(Outcome::Deny),
            Ok(Poll::Ready(Err(PolicyError::Unavailable))) => Poll::Ready(Outcome::Unavailable),
            Ok(Poll::Ready(Err(PolicyError::Failed(err)))) => {
                tracing::warn!(target: "tower_scope::authz", "authorization policy failed");
                tracing::debug!(target: "tower_scope::authz", error = %err, "authorization policy error");
                Poll::Ready(Outcome::Failed)
            }
            Err(_) => {
                tracing::warn!(target: "tower_scope::authz", "authorization policy panicked");
                Poll::Ready(Outcome::Failed)
            }
        }
    }
}

type Deciding<S, G, P, B> =
    GateFuture<S, AuthzGate, Decision<<P as Policy<<G as PermissionSource>::User>>::Future>, B>;

pin_project! {
    /// The response future of [`Authorize`]: the inner service `S`, the permission source
    /// `G`, the policy hook `P`, the request body `B`.
    ///
    /// A request the static checks decide is the inner service's own future (or the refusal):
    /// nothing else is carried, so the common path moves no more bytes than the bare service.
    /// Only a request waiting on the policy or approval hook holds the request and a ready
    /// service, boxed (it waits on a backend anyway).
    pub struct ResponseFuture<S, G, P, B>
    where
        S: Service<Request<B>>,
        G: PermissionSource,
        P: Policy<G::User>,
    {
        #[pin]
        state: FutureState<S, G, P, B>,
    }
}

pin_project! {
    #[project = FutureStateProj]
    enum FutureState<S, G, P, B>
    where
        S: Service<Request<B>>,
        G: PermissionSource,
        P: Policy<G::User>,
    {
        Inner { #[pin] fut: S::Future },
        Done { response: Option<S::Response> },
        Deciding { fut: Pin<Box<Deciding<S, G, P, B>>> },
    }
}

impl<S, G, P, B, ResB> Future for ResponseFuture<S, G, P, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    G: PermissionSource,
    P: Policy<G::User>,
    ResB: Default,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            FutureStateProj::Inner { fut } => fut.poll(cx),
            FutureStateProj::Done { response } => Poll::Ready(Ok(response
                .take()
                .expect("authz ResponseFuture polled after completion"))),
            FutureStateProj::Deciding { fut } => fut.as_mut().poll(cx),
        }
    }
}

/// How [`Authorize`] applies the hook's answer.
pub(crate) struct AuthzGate;

impl<B> Gate<B> for AuthzGate {
    type Outcome = (Outcome, Option<Privileged>);

    fn admit(
        &self,
        (outcome, privileged): Self::Outcome,
        req: &mut Request<B>,
    ) -> Result<(), Rejection> {
        match outcome {
            Outcome::Allow => {
                if let Some(privileged) = privileged {
                    req.extensions_mut().insert(privileged);
                }
                Ok(())
            }
            Outcome::Deny => Err(Rejection::new(RejectionKind::Forbidden)),
            Outcome::Unavailable => Err(Rejection::with_message(
                RejectionKind::Unavailable,
                "Authorization backend unavailable",
            )),
            Outcome::Failed => Err(Rejection::with_message(
                RejectionKind::Internal,
                messages::AUTHORIZATION_ERROR,
            )),
        }
    }
}

pin_project! {
    /// A future whose panic becomes `None`.
    struct CatchPanic<F> {
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.project().fut;
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Some(value)),
            Err(_) => {
                tracing::warn!(target: "tower_scope::authz", "resource approval hook panicked");
                Poll::Ready(None)
            }
        }
    }
}

/// The one resource the request names in these query parameters (the same value every time);
/// `None` when it names none, several different ones, or an invalid id.
fn named_resource<B>(req: &Request<B>, params: &[Box<str>]) -> Option<ResourceId> {
    let mut named: Option<std::borrow::Cow<'_, str>> = None;
    for pair in query::pairs(req.uri().query()?).filter(|p| params.iter().any(|n| **n == *p.key)) {
        let value = query::decode(pair.value)?;
        match &named {
            Some(seen) if *seen != value => return None,
            Some(_) => {}
            None => named = Some(value),
        }
    }
    ResourceId::new(&*named?).ok()
}

fn no_auth_layer() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: no authentication layer ran before the authorization layer",
    )
}

/// What the static checks concluded for one request.
enum Step<U> {
    Pass,
    Refuse(Rejection),
    Allowed {
        /// For the hooks only: cloning it costs an atomic increment, so only when one is set.
        user: Option<Authenticated<U>>,
        privileged: Option<Privileged>,
    },
}

impl<S, G: PermissionSource, P> Authorize<S, G, P> {
    fn step<B>(&self, req: &Request<B>) -> Step<G::User> {
        let Some(user) = req.extensions().get::<Authenticated<G::User>>() else {
            return match req.extensions().get::<AuthState>() {
                // Declared public, or a preflight auth was told to let through.
                Some(AuthState::PublicPath | AuthState::Preflight) => Step::Pass,
                Some(AuthState::Anonymous) => {
                    Step::Refuse(Rejection::new(RejectionKind::MissingCredentials))
                }
                // Another user type, or no authentication layer: a wiring error fails closed.
                Some(_) | None => Step::Refuse(no_auth_layer()),
            };
        };
        let (method, path) = (req.method(), req.uri().path());
        match self.config.decide(&*self.source, method, path, user) {
            Verdict::Uncovered => Step::Pass,
            Verdict::Refused(rejection) => Step::Refuse(rejection),
            Verdict::Allowed => {
                let privileged = self.config.privilege.as_ref().and_then(|privilege| {
                    let wanted = privilege.granted();
                    (privilege.applies(method, path)
                        && self
                            .source
                            .any_granted(user, &mut |g| wanted.is_satisfied_by(g)))
                    .then(|| Privileged::any(wanted.as_str()))
                });
                let hooked = self.policy.is_some() || self.config.approver.is_some();
                Step::Allowed {
                    user: hooked.then(|| user.clone()),
                    privileged,
                }
            }
        }
    }
}

impl<S, G, P, ReqB, ResB> Service<Request<ReqB>> for Authorize<S, G, P>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    G: PermissionSource,
    P: Policy<G::User>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, G, P, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        match self.step(&req) {
            Step::Pass => ResponseFuture {
                state: FutureState::Inner {
                    fut: forward(&mut self.inner, req),
                },
            },
            Step::Refuse(rejection) => {
                note(&req);
                ResponseFuture {
                    state: FutureState::Done {
                        response: Some(render_request(rejection, &req)),
                    },
                }
            }
            Step::Allowed {
                user: None,
                privileged,
            } => {
                if let Some(privileged) = privileged {
                    req.extensions_mut().insert(privileged);
                }
                ResponseFuture {
                    state: FutureState::Inner {
                        fut: forward(&mut self.inner, req),
                    },
                }
            }
            Step::Allowed {
                user: Some(user),
                privileged,
            } => {
                let approval = match (&privileged, &self.config.approver) {
                    (None, Some(approver)) => named_resource(&req, &approver.params)
                        .map(|named| (Arc::clone(&approver.hook), named)),
                    _ => None,
                };
                if self.policy.is_none() && approval.is_none() {
                    if let Some(privileged) = privileged {
                        req.extensions_mut().insert(privileged);
                    }
                    return ResponseFuture {
                        state: FutureState::Inner {
                            fut: forward(&mut self.inner, req),
                        },
                    };
                }
                let hook = match &self.policy {
                    None => Hook::None,
                    Some(policy) => {
                        let head = RequestHead {
                            method: req.method(),
                            uri: req.uri(),
                            headers: req.headers(),
                            extensions: req.extensions(),
                        };
                        match catch_unwind(AssertUnwindSafe(|| policy.check(head, &user))) {
                            Ok(fut) => Hook::Running { fut },
                            Err(_) => {
                                tracing::warn!(target: "tower_scope::authz", "authorization policy panicked");
                                Hook::Panicked
                            }
                        }
                    }
                };
                let decision = match approval {
                    None => Decision::Hook { hook, privileged },
                    Some((approve, named)) => Decision::Approve {
                        fut: Box::pin(async move {
                            // A panicking approval hook approves nothing.
                            let approved =
                                match catch_unwind(AssertUnwindSafe(|| approve(&user, &named))) {
                                    Ok(fut) => CatchPanic { fut }.await.unwrap_or(false),
                                    Err(_) => false,
                                };
                            let privileged = approved.then(|| Privileged::approved(named));
                            (hook.await, privileged)
                        }),
                    },
                };
                ResponseFuture {
                    state: FutureState::Deciding {
                        fut: Box::pin(GateFuture::deciding(
                            decision,
                            req,
                            take_ready(&mut self.inner),
                            AuthzGate,
                        )),
                    },
                }
            }
        }
    }
}
