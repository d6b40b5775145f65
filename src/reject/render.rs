//! The one renderer: a [`Rejection`] as head-only HTTP, trailers-only gRPC, or a JSON body.

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderMap, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::{Rejection, RejectionKind};
use crate::http::protocol::{GRPC_MESSAGE, GRPC_STATUS, is_grpc};

/// The request's content type when it is a gRPC one, kept to render a later refusal.
#[cfg_attr(not(feature = "log"), allow(dead_code))]
pub(crate) fn grpc_content_type(headers: &HeaderMap) -> Option<HeaderValue> {
    is_grpc(headers)
        .then(|| headers.get(header::CONTENT_TYPE).cloned())
        .flatten()
}

/// The 500 that replaces the answer of a service that panicked.
#[cfg_attr(not(feature = "log"), allow(dead_code))]
pub(crate) fn render_internal<B: Default>(grpc: Option<HeaderValue>) -> Response<B> {
    let mut headers = HeaderMap::new();
    if let Some(ct) = grpc {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    render(Rejection::new(RejectionKind::Internal), &headers, None)
}

/// `grpc-message` is percent-encoded: everything outside printable ASCII, and `%` itself.
const GRPC_MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// RFC 6750 §3: `error_description` and `scope` use `%x20-21 / %x23-5B / %x5D-7E` only.
pub(crate) fn push_quoted_safe(out: &mut String, value: &str) {
    out.push('"');
    out.extend(
        value
            .chars()
            .filter(|c| matches!(*c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')),
    );
    out.push('"');
}

/// Where the protected resource's metadata lives (RFC 9728 §5.1), for the challenges of every
/// layer behind the one that knows it: [`BearerAuthLayer`](crate::BearerAuthLayer) leaves it
/// in the request's extensions when configured. It changes how a refusal is written, never
/// whether a request is refused.
#[derive(Debug, Clone)]
pub(crate) struct ChallengeHint {
    pub(crate) resource_metadata: std::sync::Arc<str>,
}

/// Renders a rejection for a request, naming the resource metadata an earlier layer left in
/// its extensions (a [`ChallengeHint`]).
pub(crate) fn render_request<B: Default, ReqB>(
    rejection: Rejection,
    req: &http::Request<ReqB>,
) -> Response<B> {
    let hint = req.extensions().get::<ChallengeHint>();
    render_with(
        rejection,
        req.headers(),
        None,
        hint.map(|h| &*h.resource_metadata),
    )
}

/// Builds the `WWW-Authenticate` value for a rejection, or `None` when it has no challenge.
// Constants, so the header bytes are checked at compile time rather than on every response.
pub(crate) const BEARER: HeaderValue = HeaderValue::from_static("Bearer");
pub(crate) const PRIVATE: HeaderValue = HeaderValue::from_static("private");

pub(crate) fn challenge(
    rejection: &Rejection,
    realm: Option<&str>,
    resource_metadata: Option<&str>,
) -> Option<HeaderValue> {
    if !rejection.kind.has_challenge() {
        return None;
    }
    let error = rejection.kind.bearer_error();
    if realm.is_none() && error.is_none() && resource_metadata.is_none() {
        // RFC 6750 §3.1: no credentials, no error code; the bare scheme needs no formatting.
        return Some(BEARER);
    }
    let mut value = String::from("Bearer");
    let mut sep = " ";
    if let Some(realm) = realm {
        value.push_str(" realm=");
        push_quoted_safe(&mut value, realm);
        sep = ", ";
    }
    if let Some(code) = error {
        value.push_str(sep);
        value.push_str("error=\"");
        value.push_str(code);
        value.push_str("\", error_description=");
        push_quoted_safe(&mut value, rejection.description());
        if let Some(scope) = &rejection.scope {
            value.push_str(", scope=");
            push_quoted_safe(&mut value, scope);
        }
        sep = ", ";
    }
    // RFC 9728 §5.1: every challenge names the metadata, so a client can discover the
    // authorization server (401) or step up to the scope it lacks (403).
    if let Some(url) = resource_metadata {
        value.push_str(sep);
        value.push_str("resource_metadata=");
        push_quoted_safe(&mut value, url);
    }
    // Only filtered printable ASCII went in, so this cannot fail; fall back to a bare challenge.
    Some(HeaderValue::try_from(value).unwrap_or(BEARER))
}

/// Marks an answer that depends on who asked `Cache-Control: private`, unless the inner
/// service chose its own caching: a shared cache must never serve one user's answer to another.
pub(crate) fn private_unless_cached<B>(response: &mut Response<B>) {
    // One lookup of the name; an existing `Cache-Control` is the handler's and stays.
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(PRIVATE);
}

/// Renders a rejection for a request: trailers-only gRPC or head-only HTTP.
pub(crate) fn render<B: Default>(
    rejection: Rejection,
    request_headers: &HeaderMap,
    realm: Option<&str>,
) -> Response<B> {
    render_with(rejection, request_headers, realm, None)
}

/// [`render`], with the `resource_metadata` URL (RFC 9728 §5.1) in the challenge.
pub(crate) fn render_with<B: Default>(
    rejection: Rejection,
    request_headers: &HeaderMap,
    realm: Option<&str>,
    resource_metadata: Option<&str>,
) -> Response<B> {
    render_challenged(rejection, request_headers, |rejection| {
        challenge(rejection, realm, resource_metadata)
    })
}

/// [`render_with`], the HTTP challenge (if any) made by `challenge`: a layer with fixed
/// settings can hand out one prepared for them.
pub(crate) fn render_challenged<B: Default>(
    rejection: Rejection,
    request_headers: &HeaderMap,
    challenge: impl FnOnce(&Rejection) -> Option<HeaderValue>,
) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    if is_grpc(request_headers) {
        // Trailers-only gRPC answer: HTTP 200, status in the headers, empty body.
        if let Some(ct) = request_headers.get(header::CONTENT_TYPE) {
            headers.insert(header::CONTENT_TYPE, ct.clone());
        }
        headers.insert(
            GRPC_STATUS,
            HeaderValue::from(u16::from(rejection.kind.grpc_code())),
        );
        let message =
            utf8_percent_encode(rejection.description(), GRPC_MESSAGE_ESCAPES).to_string();
        if let Ok(value) = HeaderValue::try_from(message) {
            headers.insert(GRPC_MESSAGE, value);
        }
    } else {
        *response.status_mut() = rejection.kind.status();
        if let Some(value) = challenge(&rejection) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(wait) = rejection.kind.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
        }
    }
    response.extensions_mut().insert(rejection);
    response
}

/// `{"error":"<message>"}`, or `{"error":"<message>","message":"<detail>"}`, with the texts
/// escaped as JSON strings.
pub(crate) fn json_error(message: &str, detail: Option<&str>) -> Bytes {
    let mut out = String::with_capacity(message.len() + detail.map_or(0, str::len) + 26);
    out.push_str("{\"error\":");
    push_json_string(&mut out, message);
    if let Some(detail) = detail {
        out.push_str(",\"message\":");
        push_json_string(&mut out, detail);
    }
    out.push('}');
    Bytes::from(out)
}

pub(crate) fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
