//! `LogBody`: passes the inner body through, counting bytes and reading gRPC trailers.

use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::event::PendingEvent;

pin_project! {
    /// The response body of [`Log`](super::Log): the inner body, unbuffered; the request's
    /// event is emitted at its end (or when it is dropped) when the status is in trailers or
    /// the length is unknown.
    pub struct LogBody<B> {
        #[pin]
        inner: B,
        pending: Option<Box<PendingEvent>>,
    }
}

impl<B> LogBody<B> {
    pub(super) fn new(inner: B, pending: Option<Box<PendingEvent>>) -> Self {
        Self { inner, pending }
    }

    /// Unwraps the inner body (the event, if still pending, is emitted now).
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Default> Default for LogBody<B> {
    fn default() -> Self {
        Self::new(B::default(), None)
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for LogBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for LogBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        // A panic while streaming cannot become a 500 (the head is sent): record it as the
        // server's failure, emit the event, and let the panic go on to drop the connection.
        let frame =
            match panic::catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll_frame(cx))) {
                Ok(frame) => ready!(frame),
                Err(payload) => {
                    if let Some(mut pending) = this.pending.take() {
                        pending.panicked();
                    }
                    panic::resume_unwind(payload);
                }
            };
        let Some(pending) = this.pending.as_mut() else {
            return Poll::Ready(frame);
        };
        let finished = match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    pending.data(data.remaining());
                } else if let Some(trailers) = frame.trailers_ref() {
                    pending.trailers(trailers);
                }
                this.inner.is_end_stream()
            }
            Some(Err(_)) => {
                // A body error ends the stream: log what is known, as not completed.
                *this.pending = None;
                return Poll::Ready(frame);
            }
            None => true,
        };
        if finished {
            pending.body_done();
            *this.pending = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
