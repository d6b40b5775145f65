//! Buffering a request body once, capped and time-limited, for the layers that read JSON.
//!
//! Scope and guard may both need a route's body. The first layer that reads it leaves the
//! bytes it handed on in a [`Buffered`] extension; the next layer reads those instead of the
//! body, and puts the same bytes back as the body, so the handler reads exactly what every
//! layer decided on, whatever a layer in between did to the body.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::{CONTENT_LENGTH, HeaderValue, TRANSFER_ENCODING};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::reject::{Rejection, RejectionKind};

/// Mastra's default request body limit: 4.5 MB.
pub const DEFAULT_MAX_BODY: usize = 4_718_592;

/// How long a layer waits for a whole JSON body on routes that read it: 10 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How much of a body a layer buffers, and for how long it waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyLimits {
    pub(crate) max: usize,
    pub(crate) timeout: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            max: DEFAULT_MAX_BODY,
            timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

/// The body bytes an earlier layer buffered and handed on, and whether the scope layer's
/// body rules were applied to them.
#[derive(Debug, Clone)]
pub(crate) struct Buffered {
    pub(crate) bytes: Bytes,
    /// How many bytes the client sent: every layer's limit applies to that, not to the body
    /// after an earlier layer appended a forced field.
    pub(crate) received: usize,
    pub(crate) scoped: bool,
}

/// Where a layer's body comes from: already buffered upstream, or still to be read.
pub(crate) enum Pending<B> {
    Ready(Buffered),
    Read { body: B, declared_len: Option<u64> },
}

/// Takes the request's body for reading (or the bytes an earlier layer already read),
/// leaving an empty body in its place until [`put_back`] runs.
pub(crate) fn take<B: From<Bytes>>(req: &mut Request<B>) -> Pending<B> {
    if let Some(buffered) = req.extensions_mut().remove::<Buffered>() {
        return Pending::Ready(buffered);
    }
    let declared_len = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = std::mem::replace(req.body_mut(), B::from(Bytes::new()));
    Pending::Read { body, declared_len }
}

impl<B> Pending<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    /// The whole body: 413 over `limits.max` (declared or read), 408 after `limits.timeout`.
    pub(crate) async fn bytes(self, limits: BodyLimits) -> Result<Buffered, Rejection> {
        let (body, declared_len) = match self {
            // Read upstream under that layer's limit; this layer's own limit still holds.
            Pending::Ready(buffered) if buffered.received > limits.max => {
                return Err(too_large());
            }
            Pending::Ready(buffered) => return Ok(buffered),
            Pending::Read { body, declared_len } => (body, declared_len),
        };
        if declared_len.is_some_and(|len| len > limits.max as u64) {
            return Err(too_large());
        }
        // A deadline for the whole body, not per chunk: one byte a second would renew a
        // per-read timeout forever (slowloris). Dropping the future drops what it buffered.
        let read = Limited::new(body, limits.max).collect();
        match tokio::time::timeout(limits.timeout, read).await {
            Err(_) => Err(Rejection::new(RejectionKind::RequestTimeout)),
            Ok(Ok(collected)) => {
                let bytes = collected.to_bytes();
                Ok(Buffered {
                    received: bytes.len(),
                    bytes,
                    scoped: false,
                })
            }
            Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Ok(Err(_)) => Err(invalid_body()),
        }
    }
}

/// Makes `buffered` the request's body (and its `Content-Length`), and leaves it for the
/// next layer that reads bodies.
pub(crate) fn put_back<B: From<Bytes>>(req: &mut Request<B>, buffered: Buffered) {
    // One framing (RFC 9112 §6.3): the rebuilt body has a known length, no chunking.
    req.headers_mut().remove(TRANSFER_ENCODING);
    req.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(buffered.bytes.len()));
    *req.body_mut() = B::from(buffered.bytes.clone());
    req.extensions_mut().insert(buffered);
}

pub(crate) fn invalid_body() -> Rejection {
    Rejection::with_message(RejectionKind::BadRequest, "Invalid request body")
}

fn too_large() -> Rejection {
    Rejection::with_message(
        RejectionKind::PayloadTooLarge,
        crate::mastra::messages::REQUEST_BODY_TOO_LARGE,
    )
}
