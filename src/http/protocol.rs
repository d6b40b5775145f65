//! Protocol facts: is this a gRPC call, a CORS preflight, a HEAD the router serves with GET.
//!
//! [`is_grpc`] and [`is_preflight`] read headers the client chooses (`content-type`, `Origin`,
//! `Access-Control-Request-Method`), so they serve **rendering** only: they may change how a
//! refusal is written, never whether a request is authenticated, scoped, guarded or refused
//! (DESIGN decision 9, STYLE rule 12). A layer that needs another layer's verdict reads the typed
//! value that layer left in the extensions instead.
//!
//! [`method_matches`] is a routing fact, not a rendering one: it tells which configured route a
//! request reaches, the way the router dispatches it, so a layer protects exactly what the
//! handler will run (DESIGN decision 12).

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request};

/// The gRPC status header (or trailer) of a trailers-only answer.
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The percent-encoded gRPC status message header (or trailer).
pub(crate) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Whether a message's content type makes it a gRPC (or grpc-web) call: for rendering only.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method` (Fetch §3.2.2).
///
/// For rendering only: it decides how CORS answers, never whether a request is authenticated.
pub(crate) fn is_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether a request with method `request` reaches a route registered for `route`.
///
/// axum (and most routers) answer `HEAD` with the `GET` handler (RFC 9110 §9.3.2), so a `GET`
/// route covers `HEAD` too; a layer that skipped it would leave the `GET` handler unprotected.
pub(crate) fn method_matches(route: &Method, request: &Method) -> bool {
    route == request || (request == Method::HEAD && route == Method::GET)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with_content_type(ct: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        headers
    }

    #[test]
    fn grpc_and_grpc_web_content_types_are_grpc() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc-web",
            "application/grpc-web-text+proto",
        ] {
            assert!(is_grpc(&with_content_type(ct)), "{ct}");
        }
        for ct in ["application/json", "text/plain", "application/grp"] {
            assert!(!is_grpc(&with_content_type(ct)), "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn a_preflight_needs_options_origin_and_request_method() {
        let request = |method: Method, origin: bool, acrm: bool| {
            let mut b = Request::builder().method(method).uri("/");
            if origin {
                b = b.header(header::ORIGIN, "https://a.test");
            }
            if acrm {
                b = b.header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET");
            }
            b.body(()).unwrap()
        };
        assert!(is_preflight(&request(Method::OPTIONS, true, true)));
        assert!(!is_preflight(&request(Method::OPTIONS, false, true)));
        assert!(!is_preflight(&request(Method::OPTIONS, true, false)));
        assert!(!is_preflight(&request(Method::GET, true, true)));
    }

    #[test]
    fn head_reaches_get_routes_and_nothing_else_is_widened() {
        assert!(method_matches(&Method::GET, &Method::GET));
        assert!(method_matches(&Method::GET, &Method::HEAD));
        assert!(method_matches(&Method::HEAD, &Method::HEAD));
        assert!(method_matches(&Method::POST, &Method::POST));
        assert!(!method_matches(&Method::HEAD, &Method::GET));
        assert!(!method_matches(&Method::POST, &Method::HEAD));
        assert!(!method_matches(&Method::GET, &Method::POST));
        assert!(!method_matches(&Method::GET, &Method::OPTIONS));
    }
}
