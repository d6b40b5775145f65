//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells a client which
//! authorization servers issue tokens for this resource, which scopes it knows and how it
//! takes tokens, served at `/.well-known/oauth-protected-resource[/<resource path>]` and named
//! in every `WWW-Authenticate` challenge (`resource_metadata="<url>"`, §5.1). The MCP
//! authorization spec requires both.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_scope::ConfigError> {
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::auth::ProtectedResourceMetadata;
//! use tower_scope::{BearerAuthLayer, StaticTokens};
//!
//! let metadata = ProtectedResourceMetadata::new("https://api.example.com/mcp")?
//!     .authorization_servers(["https://auth.example.com"])?
//!     .scopes_supported(["notes:read", "notes:write"])?;
//! let tokens = StaticTokens::new().token("a-long-random-api-key-0123456789", "alice");
//! let (auth, well_known) = BearerAuthLayer::new(tokens).protected_resource(metadata)?;
//! let svc = ServiceBuilder::new()
//!     .layer(well_known) // in front of auth: the document is public
//!     .layer(auth)
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//!
//! let res = svc.clone().oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     res.headers()[header::WWW_AUTHENTICATE],
//!     r#"Bearer realm="api", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp""#
//! );
//!
//! let req = Request::get("/.well-known/oauth-protected-resource/mcp").body(String::new()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
//! assert_eq!(
//!     res.into_body(),
//!     r#"{"resource":"https://api.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes_supported":["notes:read","notes:write"],"bearer_methods_supported":["header"]}"#
//! );
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::ConfigError;
use crate::reject::push_json_string;

/// The well-known URI suffix registered by RFC 9728 §3.
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// How long clients and caches may keep the document by default: one hour.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// How a resource accepts bearer tokens (RFC 9728 §2 `bearer_methods_supported`, the RFC 6750
/// §2 methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BearerMethod {
    /// The `Authorization: Bearer` header (RFC 6750 §2.1).
    Header,
    /// A form-encoded body parameter (RFC 6750 §2.2).
    Body,
    /// The `access_token` query parameter (RFC 6750 §2.3).
    Query,
}

impl BearerMethod {
    /// The registered name: `header`, `body` or `query`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Body => "body",
            Self::Query => "query",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
struct Document {
    resource: String,
    /// The path the document is served at (§3.1).
    path: String,
    /// The absolute URL of the document, named in challenges (§5.1).
    url: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    bearer_methods: Vec<BearerMethod>,
    resource_name: Option<String>,
    max_age: Duration,
}

/// An RFC 9728 protected-resource metadata document, validated when built.
///
/// Give it to [`BearerAuthLayer::protected_resource`](crate::BearerAuthLayer::protected_resource),
/// which names it in its challenges, fills in `bearer_methods_supported` from its token
/// sources and returns the [`ProtectedResourceMetadataLayer`] that serves it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProtectedResourceMetadata {
    doc: Arc<Document>,
}

impl fmt::Debug for ProtectedResourceMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectedResourceMetadata")
            .field("resource", &self.doc.resource)
            .field("url", &self.doc.url)
            .field("authorization_servers", &self.doc.authorization_servers)
            .field("scopes_supported", &self.doc.scopes_supported)
            .field("bearer_methods", &self.doc.bearer_methods)
            .finish_non_exhaustive()
    }
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        setting,
        reason: reason.into(),
    }
}

/// Splits an absolute `http(s)` URL without query, fragment or user info into its origin and
/// its path (`""` when it has none). Plain `http` only for loopback hosts (local development):
/// RFC 9728 §1.2 and RFC 8414 §2 want `https` identifiers.
fn split_url(setting: &'static str, url: &str) -> Result<(String, String), ConfigError> {
    if !url
        .bytes()
        .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(invalid(
            setting,
            format!("{url:?}: use printable ASCII without spaces, `\"` or `\\`"),
        ));
    }
    if url.contains('#') || url.contains('?') {
        return Err(invalid(
            setting,
            format!("{url:?}: an identifier has no query or fragment (RFC 9728 §1.2)"),
        ));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| invalid(setting, format!("{url:?} is not an absolute URL")))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(invalid(setting, format!("{url:?} is not an absolute URL")));
    };
    if authority.as_str().contains('@') {
        return Err(invalid(
            setting,
            format!("{url:?}: no user info in the URL"),
        ));
    }
    let host = authority.host();
    let loopback = host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(invalid(
                setting,
                format!("{url:?}: use https (plain http only for a loopback host)"),
            ));
        }
    }
    // `Uri` reports "/" for an empty path; the identifier's own spelling decides (§3.1).
    let rest = &url[scheme.len() + 3 + authority.as_str().len()..];
    Ok((format!("{scheme}://{authority}"), rest.to_owned()))
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

impl ProtectedResourceMetadata {
    /// The document for the resource identified by `resource` (RFC 9728 §2 `resource`; RFC
    /// 8707's identifier, the audience its tokens carry), served at the well-known URL made
    /// from it as §3.1 says: `https://api.example.com/mcp` is described at
    /// `https://api.example.com/.well-known/oauth-protected-resource/mcp`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] unless `resource` is an absolute `https` URL (plain
    /// `http` for a loopback host) without query, fragment or user info.
    pub fn new(resource: &str) -> Result<Self, ConfigError> {
        let (origin, path) = split_url("resource", resource)?;
        // §3.1: a terminating `/` after the host is removed before the suffix is inserted.
        let path = match path.as_str() {
            "" | "/" => WELL_KNOWN_PATH.to_owned(),
            rest => format!("{WELL_KNOWN_PATH}{rest}"),
        };
        Ok(Self {
            doc: Arc::new(Document {
                resource: resource.to_owned(),
                url: format!("{origin}{path}"),
                path,
                authorization_servers: Vec::new(),
                scopes_supported: Vec::new(),
                bearer_methods: vec![BearerMethod::Header],
                resource_name: None,
                max_age: DEFAULT_MAX_AGE,
            }),
        })
    }

    fn doc_mut(&mut self) -> &mut Document {
        Arc::make_mut(&mut self.doc)
    }

    /// Adds issuers to `authorization_servers` (RFC 9728 §2): the issuers your authenticator
    /// trusts, e.g. [`JwtAuthenticator::issuers`](crate::jwt::JwtAuthenticator::issuers).
    /// Repeats are listed once.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] unless each is an issuer identifier (RFC 8414 §2: an
    /// `https` URL, plain `http` for a loopback host, without query or fragment).
    pub fn authorization_servers<I, S>(mut self, issuers: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for issuer in issuers {
            let issuer = issuer.as_ref();
            split_url("authorization_servers", issuer)?;
            let list = &mut self.doc_mut().authorization_servers;
            if !list.iter().any(|known| known == issuer) {
                list.push(issuer.to_owned());
            }
        }
        Ok(self)
    }

    /// Adds scopes to `scopes_supported` (RFC 9728 §2), in order; repeats are listed once.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when one is not an RFC 6749 §3.3 scope token.
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for scope in scopes {
            let scope = scope.as_ref();
            if !scope_token(scope) {
                return Err(invalid(
                    "scopes_supported",
                    format!("{scope:?} is not a scope token (RFC 6749 §3.3)"),
                ));
            }
            let list = &mut self.doc_mut().scopes_supported;
            if !list.iter().any(|known| known == scope) {
                list.push(scope.to_owned());
            }
        }
        Ok(self)
    }

    /// Sets `bearer_methods_supported` (default `["header"]`).
    /// [`BearerAuthLayer::protected_resource`](crate::BearerAuthLayer::protected_resource)
    /// sets it from the layer's token sources.
    #[must_use]
    pub fn bearer_methods(mut self, methods: impl IntoIterator<Item = BearerMethod>) -> Self {
        let list = &mut self.doc_mut().bearer_methods;
        list.clear();
        for method in methods {
            if !list.contains(&method) {
                list.push(method);
            }
        }
        self
    }

    /// Sets `resource_name`, a human-readable name (RFC 9728 §2).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] when it is empty or holds control characters.
    pub fn resource_name(mut self, name: &str) -> Result<Self, ConfigError> {
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            return Err(invalid(
                "resource_name",
                "use a non-empty name without control characters",
            ));
        }
        self.doc_mut().resource_name = Some(name.to_owned());
        Ok(self)
    }

    /// How long clients and shared caches may keep the document (`Cache-Control: public,
    /// max-age=..`, default [`DEFAULT_MAX_AGE`]); a rotated authorization server shows after
    /// at most this long.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.doc_mut().max_age = max_age;
        self
    }

    /// The resource identifier (`resource`).
    pub fn resource(&self) -> &str {
        &self.doc.resource
    }

    /// The absolute URL of the document (§3.1), as challenges name it (§5.1).
    pub fn url(&self) -> &str {
        &self.doc.url
    }

    /// The path the document is served at: [`WELL_KNOWN_PATH`] plus the resource's path.
    pub fn path(&self) -> &str {
        &self.doc.path
    }

    /// The document as JSON (§3.2), members in the order of §2.
    pub fn to_json(&self) -> String {
        let doc = &self.doc;
        let mut out = String::with_capacity(256);
        out.push_str("{\"resource\":");
        push_json_string(&mut out, &doc.resource);
        let list = |out: &mut String, name: &str, items: &mut dyn Iterator<Item = &str>| {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":[");
            for (i, item) in items.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(out, item);
            }
            out.push(']');
        };
        if !doc.authorization_servers.is_empty() {
            list(
                &mut out,
                "authorization_servers",
                &mut doc.authorization_servers.iter().map(String::as_str),
            );
        }
        if !doc.scopes_supported.is_empty() {
            list(
                &mut out,
                "scopes_supported",
                &mut doc.scopes_supported.iter().map(String::as_str),
            );
        }
        list(
            &mut out,
            "bearer_methods_supported",
            &mut doc.bearer_methods.iter().map(|m| m.as_str()),
        );
        if let Some(name) = &doc.resource_name {
            out.push_str(",\"resource_name\":");
            push_json_string(&mut out, name);
        }
        out.push('}');
        out
    }

    /// The layer that answers `GET`/`HEAD` on [`path`](Self::path) with the document and
    /// passes every other request on.
    pub fn layer(&self) -> ProtectedResourceMetadataLayer {
        let mut cache = String::from("public, max-age=");
        cache.push_str(&self.doc.max_age.as_secs().to_string());
        ProtectedResourceMetadataLayer {
            served: Arc::new(Served {
                path: self.doc.path.clone(),
                body: Arc::from(self.to_json()),
                cache_control: HeaderValue::try_from(cache)
                    .unwrap_or(HeaderValue::from_static("public, max-age=3600")),
            }),
        }
    }
}

#[derive(Debug)]
struct Served {
    path: String,
    body: Arc<str>,
    cache_control: HeaderValue,
}

impl Served {
    fn answer<B: From<String>>(&self, method: &Method) -> Response<B> {
        let head = *method == Method::HEAD;
        if !head && *method != Method::GET {
            let mut response = Response::new(B::from(String::new()));
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let body = if head {
            String::new()
        } else {
            self.body.to_string()
        };
        let mut response = Response::new(B::from(body));
        let headers = response.headers_mut();
        // §3.2: the document is `application/json`.
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        // The same for every caller: a shared cache may keep it.
        headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
        response
    }
}

/// Serves one [`ProtectedResourceMetadata`] document at its well-known path, in front of any
/// service; made by [`ProtectedResourceMetadata::layer`] or
/// [`BearerAuthLayer::protected_resource`](crate::BearerAuthLayer::protected_resource).
///
/// `GET` and `HEAD` there get the document (200, `application/json`, `Cache-Control: public`),
/// any other method 405 with `Allow: GET, HEAD`; every other path goes to the inner service.
/// Stack one per resource to describe several.
#[derive(Debug, Clone)]
pub struct ProtectedResourceMetadataLayer {
    served: Arc<Served>,
}

impl<S> Layer<S> for ProtectedResourceMetadataLayer {
    type Service = ProtectedResourceMetadataService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProtectedResourceMetadataService {
            inner,
            served: Arc::clone(&self.served),
        }
    }
}

/// The service made by [`ProtectedResourceMetadataLayer`].
#[derive(Debug, Clone)]
pub struct ProtectedResourceMetadataService<S> {
    inner: S,
    served: Arc<Served>,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ProtectedResourceMetadataService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: From<String>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = MetadataFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The raw path, compared whole: `/.well-known/oauth-protected-resource/mcp/x` and
        // encoded spellings are another resource's (or nobody's) document.
        if req.uri().path() == self.served.path {
            return MetadataFuture {
                state: State::Ready {
                    response: Some(self.served.answer(req.method())),
                },
            };
        }
        MetadataFuture {
            state: State::Inner {
                fut: self.inner.call(req),
            },
        }
    }
}

pin_project! {
    /// The response future of [`ProtectedResourceMetadataService`]: the document, or the inner
    /// service's answer.
    pub struct MetadataFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Ready { response: Option<Response<B>> },
        Inner { #[pin] fut: F },
    }
}

impl<F, B, E> Future for MetadataFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("MetadataFuture polled after completion"))),
            StateProj::Inner { fut } => fut.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9728_3_1_path_suffixed_url_inserts_the_well_known_segment_after_the_host() {
        let m = ProtectedResourceMetadata::new("https://api.example.com/mcp").unwrap();
        assert_eq!(m.path(), "/.well-known/oauth-protected-resource/mcp");
        assert_eq!(
            m.url(),
            "https://api.example.com/.well-known/oauth-protected-resource/mcp"
        );
        let m = ProtectedResourceMetadata::new("https://api.example.com:8443/a/b").unwrap();
        assert_eq!(
            m.url(),
            "https://api.example.com:8443/.well-known/oauth-protected-resource/a/b"
        );
    }

    #[test]
    fn rfc9728_3_1_terminating_slash_after_the_host_is_removed() {
        for resource in ["https://api.example.com", "https://api.example.com/"] {
            let m = ProtectedResourceMetadata::new(resource).unwrap();
            assert_eq!(m.path(), WELL_KNOWN_PATH);
            assert_eq!(
                m.url(),
                "https://api.example.com/.well-known/oauth-protected-resource"
            );
            // §3.3: `resource` is the identifier exactly as configured.
            assert!(
                m.to_json()
                    .contains(&format!("\"resource\":\"{resource}\""))
            );
        }
    }

    #[test]
    fn rfc9728_1_2_identifiers_without_https_query_or_fragment_are_refused() {
        for bad in [
            "http://api.example.com/mcp",
            "https://api.example.com/mcp?tenant=a",
            "https://api.example.com/mcp#x",
            "https://user@api.example.com/mcp",
            "/mcp",
            "api.example.com",
            "ftp://127.0.0.1/x",
            "https://api.example.com/a b",
            "https://api.example.com/\"",
            "",
        ] {
            assert!(
                matches!(
                    ProtectedResourceMetadata::new(bad),
                    Err(ConfigError::InvalidValue {
                        setting: "resource",
                        ..
                    })
                ),
                "{bad:?} was accepted"
            );
        }
        for dev in [
            "http://127.0.0.1:8080/mcp",
            "http://localhost:3000",
            "http://[::1]:9/x",
        ] {
            assert!(ProtectedResourceMetadata::new(dev).is_ok(), "{dev}");
        }
    }

    #[test]
    fn rfc9728_2_authorization_servers_and_scopes_are_validated_and_listed_once() {
        let base = || ProtectedResourceMetadata::new("https://r.example").unwrap();
        assert!(
            base()
                .authorization_servers(["http://auth.example.com"])
                .is_err()
        );
        assert!(
            base()
                .authorization_servers(["https://auth.example.com?x"])
                .is_err()
        );
        assert!(base().scopes_supported(["a b"]).is_err());
        assert!(base().scopes_supported(["quote\""]).is_err());
        assert!(base().scopes_supported([""]).is_err());
        let m = base()
            .authorization_servers([
                "https://a.example",
                "https://a.example",
                "https://b.example",
            ])
            .unwrap()
            .scopes_supported(["x:read", "x:read", "x:write"])
            .unwrap();
        assert_eq!(
            m.to_json(),
            r#"{"resource":"https://r.example","authorization_servers":["https://a.example","https://b.example"],"scopes_supported":["x:read","x:write"],"bearer_methods_supported":["header"]}"#
        );
    }

    #[test]
    fn rfc9728_3_2_the_document_is_valid_json_with_names_escaped() {
        let m = ProtectedResourceMetadata::new("https://r.example")
            .unwrap()
            .resource_name("Notes \"beta\" \\ ünïcode")
            .unwrap()
            .bearer_methods([
                BearerMethod::Header,
                BearerMethod::Query,
                BearerMethod::Header,
            ]);
        let value: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(value["resource_name"], "Notes \"beta\" \\ ünïcode");
        assert_eq!(
            value["bearer_methods_supported"],
            serde_json::json!(["header", "query"])
        );
        assert!(value.get("authorization_servers").is_none());
        assert!(
            ProtectedResourceMetadata::new("https://r.example")
                .unwrap()
                .resource_name("a\nb")
                .is_err()
        );
    }
}
