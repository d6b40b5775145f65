//! [`JwksFuture`]: ready at once on the fast path, boxed only while a key fetch runs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::Authenticated;
use crate::auth::AuthError;

/// The future of one [`JwksAuthenticator`](super::JwksAuthenticator) authentication: ready at once when the token is
/// cached or its key is loaded; boxed only while waiting for a key fetch.
pub struct JwksFuture<U> {
    state: State<U>,
}

type Fetching<U> = Pin<Box<dyn Future<Output = Result<Authenticated<U>, AuthError>> + Send>>;

enum State<U> {
    Ready(Option<Result<Authenticated<U>, AuthError>>),
    Fetching(Fetching<U>),
}

impl<U> JwksFuture<U> {
    pub(crate) fn ready(result: Result<Authenticated<U>, AuthError>) -> Self {
        Self {
            state: State::Ready(Some(result)),
        }
    }

    /// The outcome, when it is already there (no fetch).
    #[allow(clippy::type_complexity)]
    pub(crate) fn into_ready(self) -> Result<Result<Authenticated<U>, AuthError>, Self> {
        match self.state {
            State::Ready(Some(result)) => Ok(result),
            state => Err(Self { state }),
        }
    }

    pub(crate) fn fetching(
        fetch: impl Future<Output = Result<Authenticated<U>, AuthError>> + Send + 'static,
    ) -> Self {
        Self {
            state: State::Fetching(Box::pin(fetch)),
        }
    }
}

// `U` is only ever moved out, never pinned, so the future is `Unpin` whatever `U` is.
impl<U> Unpin for JwksFuture<U> {}

impl<U> Future for JwksFuture<U> {
    type Output = Result<Authenticated<U>, AuthError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            // Polling after completion is a caller bug; answer 503 rather than panic.
            State::Ready(result) => Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err(AuthError::unavailable())),
            ),
            State::Fetching(future) => future.as_mut().poll(cx),
        }
    }
}

impl<U> fmt::Debug for JwksFuture<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready(_) => "ready",
            State::Fetching(_) => "fetching keys",
        };
        f.debug_struct("JwksFuture").field("state", &state).finish()
    }
}
