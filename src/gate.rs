//! The one state machine every deciding layer shares: wait for a decision, then either admit
//! the request (possibly changed) to the inner service or answer with a rendered rejection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::reject::{Rejection, render_request};

/// What a layer does with a decision.
pub(crate) trait Gate<ReqB> {
    /// The decision's output.
    type Outcome;

    /// Applies the decision to the request, or says why it is refused.
    fn admit(&self, outcome: Self::Outcome, req: &mut Request<ReqB>) -> Result<(), Rejection>;

    /// Renders a refusal for this request.
    fn render<ResB: Default>(&self, rejection: Rejection, req: &Request<ReqB>) -> Response<ResB> {
        render_request(rejection, req)
    }

    /// Touches up every response the gate produced (`admitted == false`) or let through.
    fn finish<ResB>(&self, _response: &mut Response<ResB>, _admitted: bool) {}
}

pin_project! {
    /// The state machine inside each deciding layer's own `ResponseFuture`.
    pub(crate) struct GateFuture<S, G, D, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        state: State<S, D, ReqB>,
        gate: Option<G>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, D, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        Deciding { #[pin] decision: D, request: Option<Request<ReqB>>, inner: Option<S> },
        Inner { #[pin] fut: S::Future },
        Done { response: Option<S::Response> },
    }
}

impl<S, G, D, ReqB> GateFuture<S, G, D, ReqB>
where
    S: Service<Request<ReqB>>,
{
    /// Waits for `decision`, then calls `inner` (already ready) or refuses.
    pub(crate) fn deciding(decision: D, request: Request<ReqB>, inner: S, gate: G) -> Self {
        Self {
            state: State::Deciding {
                decision,
                request: Some(request),
                inner: Some(inner),
            },
            gate: Some(gate),
        }
    }

    /// Applies an outcome known in `call`: the request goes to `inner` (ready) now, or the
    /// refusal is rendered now; either way the future holds no request.
    pub(crate) fn decided<ResB>(
        outcome: G::Outcome,
        mut req: Request<ReqB>,
        inner: &mut S,
        gate: G,
    ) -> Self
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        G: Gate<ReqB>,
        ResB: Default,
    {
        match apply(&gate, outcome, &mut req) {
            Ok(()) => Self::pass(inner.call(req), Some(gate)),
            Err(response) => Self::done(response),
        }
    }

    /// The request went to the inner service straight away.
    pub(crate) fn pass(fut: S::Future, gate: Option<G>) -> Self {
        Self {
            state: State::Inner { fut },
            gate,
        }
    }

    /// The request was refused straight away.
    pub(crate) fn done(response: S::Response) -> Self {
        Self {
            state: State::Done {
                response: Some(response),
            },
            gate: None,
        }
    }
}

/// Hands what the deciding layers concluded so far (user, resource, thread) to an outer
/// `LogLayer`'s event: called on every pass and every refusal, so refusals are audited too.
#[inline]
pub(crate) fn note<B>(_req: &Request<B>) {
    #[cfg(feature = "log")]
    crate::log::note(_req.extensions());
}

/// Calls the inner service after [`note`]-ing the request.
#[inline]
pub(crate) fn forward<S: Service<Request<B>>, B>(inner: &mut S, req: Request<B>) -> S::Future {
    note(&req);
    inner.call(req)
}

/// Declares a layer's response future: a named wrapper around [`GateFuture`], so the public
/// type shows only the inner service, the layer's one configuration type and the body.
macro_rules! response_future {
    ($(#[$doc:meta])* $name:ident<$s:ident, [$($c:ident),*], $b:ident>
        where [$($bounds:tt)*] => $gate:ty, $decision:ty) => {
        pin_project_lite::pin_project! {
            $(#[$doc])*
            pub struct $name<$s, $($c,)* $b>
            where
                $s: tower_service::Service<http::Request<$b>>,
                $($bounds)*
            {
                #[pin]
                inner: $crate::gate::GateFuture<$s, $gate, $decision, $b>,
            }
        }

        impl<$s, $($c,)* $b> $name<$s, $($c,)* $b>
        where
            $s: tower_service::Service<http::Request<$b>>,
            $($bounds)*
        {
            pub(crate) fn new(inner: $crate::gate::GateFuture<$s, $gate, $decision, $b>) -> Self {
                Self { inner }
            }
        }

        impl<$s, $($c,)* $b, ResB> std::future::Future for $name<$s, $($c,)* $b>
        where
            $s: tower_service::Service<http::Request<$b>, Response = http::Response<ResB>>,
            $($bounds)*
            ResB: Default,
        {
            type Output = Result<http::Response<ResB>, $s::Error>;

            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                self.project().inner.poll(cx)
            }
        }
    };
}
pub(crate) use response_future;

/// Swaps the readied service out for a fresh clone, so the ready one serves this request.
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// Admits the request with `outcome`, or renders (and finishes) its refusal.
fn apply<G: Gate<ReqB>, ReqB, ResB: Default>(
    gate: &G,
    outcome: G::Outcome,
    req: &mut Request<ReqB>,
) -> Result<(), Response<ResB>> {
    let admitted = gate.admit(outcome, req);
    note(req);
    admitted.map_err(|rejection| {
        let mut response = gate.render(rejection, req);
        gate.finish(&mut response, false);
        response
    })
}

const POLLED_AFTER_DONE: &str = "GateFuture polled after completion";

impl<S, G, D, ReqB, ResB> Future for GateFuture<S, G, D, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    G: Gate<ReqB>,
    D: Future<Output = G::Outcome>,
    ResB: Default,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Deciding {
                    decision,
                    request,
                    inner,
                } => {
                    let outcome = ready!(decision.poll(cx));
                    let mut req = request.take().expect(POLLED_AFTER_DONE);
                    let gate = this.gate.as_ref().expect(POLLED_AFTER_DONE);
                    match apply(gate, outcome, &mut req) {
                        Ok(()) => {
                            let fut = inner.take().expect(POLLED_AFTER_DONE).call(req);
                            this.state.set(State::Inner { fut });
                        }
                        Err(response) => {
                            this.state.set(State::Done { response: None });
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Inner { fut } => {
                    let mut response = ready!(fut.poll(cx))?;
                    if let Some(gate) = this.gate.as_ref() {
                        gate.finish(&mut response, true);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done { response } => {
                    return Poll::Ready(Ok(response.take().expect(POLLED_AFTER_DONE)));
                }
            }
        }
    }
}
