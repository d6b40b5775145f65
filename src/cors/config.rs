//! The compiled CORS policy: every constant header value built once, applied per request.

use std::fmt;
use std::sync::Arc;

use http::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::origin::OriginRule;
use super::policy::OriginPredicate;

pub(super) const STAR: HeaderValue = HeaderValue::from_static("*");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

#[derive(Clone)]
pub(super) enum AllowOrigin {
    Any,
    Mirror,
    List {
        rules: Arc<[OriginRule]>,
        predicate: Option<OriginPredicate>,
    },
}

impl fmt::Debug for AllowOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("Any"),
            Self::Mirror => f.write_str("Mirror"),
            Self::List { rules, predicate } => f
                .debug_struct("List")
                .field("rules", rules)
                .field("predicate", &predicate.as_ref().map(|_| "Fn(&str) -> bool"))
                .finish(),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum AllowHeaders {
    Fixed(Option<HeaderValue>),
    Mirror,
}

/// The validated policy with every constant header value built once.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) origin: AllowOrigin,
    pub(super) allow_methods: Option<HeaderValue>,
    pub(super) allow_headers: AllowHeaders,
    pub(super) expose_headers: Option<HeaderValue>,
    pub(super) max_age: Option<HeaderValue>,
    pub(super) credentials: bool,
    pub(super) private_network: bool,
    pub(super) strict: bool,
    pub(super) vary_actual: Option<HeaderValue>,
    pub(super) vary_preflight: Option<HeaderValue>,
}

impl Config {
    /// The `Access-Control-Allow-Origin` value for this request, or `None` when not allowed.
    pub(super) fn allowed_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.origin {
            AllowOrigin::Any => Some(STAR),
            AllowOrigin::Mirror => origin.cloned(),
            AllowOrigin::List { rules, predicate } => {
                let origin = origin?;
                let bytes = origin.as_bytes();
                let allowed = rules.iter().any(|r| r.matches(bytes))
                    || predicate
                        .as_ref()
                        .is_some_and(|p| origin.to_str().is_ok_and(|o| p(o)));
                allowed.then(|| origin.clone())
            }
        }
    }

    /// Fills a preflight answer's headers.
    pub(super) fn preflight<B>(
        &self,
        response: &mut Response<B>,
        allowed: Option<HeaderValue>,
        request: &HeaderMap,
    ) {
        let headers = response.headers_mut();
        // Without allow headers at all the browser fails the preflight.
        if !self.allow(headers, self.vary_preflight.as_ref(), allowed) {
            return;
        }
        if let Some(methods) = &self.allow_methods {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods.clone());
        }
        let allow_headers = match &self.allow_headers {
            AllowHeaders::Fixed(value) => value.clone(),
            AllowHeaders::Mirror => request.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned(),
        };
        if let Some(value) = allow_headers {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        if let Some(max_age) = &self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        if self.private_network
            && request
                .get(REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v == "true")
        {
            headers.insert(ALLOW_PRIVATE_NETWORK, TRUE);
        }
    }

    /// Decorates an actual response (the inner service's, errors included).
    pub(super) fn actual<B>(&self, response: &mut Response<B>, allowed: Option<HeaderValue>) {
        let headers = response.headers_mut();
        if !self.allow(headers, self.vary_actual.as_ref(), allowed) {
            return;
        }
        if let Some(expose) = &self.expose_headers {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }

    /// What preflight and actual answers share: `Vary`, then for an allowed origin
    /// `Access-Control-Allow-Origin` and credentials. Returns whether the origin is allowed.
    fn allow(
        &self,
        headers: &mut HeaderMap,
        vary: Option<&HeaderValue>,
        allowed: Option<HeaderValue>,
    ) -> bool {
        if let Some(vary) = vary {
            // Append: the inner service may vary on other headers (e.g. Accept-Encoding).
            headers.append(header::VARY, vary.clone());
        }
        let Some(origin) = allowed else {
            return false;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        true
    }
}
