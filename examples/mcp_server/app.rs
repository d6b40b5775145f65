//! The MCP server's stack and tools, shared by `main.rs` and `tests/mcp_server.rs`.
//!
//! `well-known metadata -> BearerAuthLayer (audience = the resource URL) -> AuthorizeLayer
//! (a scope per tool, read from the JSON-RPC body) -> ResourceScopeLayer (the caller's
//! resource id) -> rmcp's streamable-HTTP service`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_scope::auth::ProtectedResourceMetadata;
use tower_scope::authz::{AuthorizeLayer, ClaimGrants, ClaimPermissions, JsonRpc, Requirement};
use tower_scope::jwks::{Issuer, JwksAuthenticator};
use tower_scope::{BearerAuthLayer, ConfigError, ResourceId, ResourceScopeLayer};

/// The scope the `recall` tool needs.
pub const READ: &str = "notes:read";
/// The scope the `remember` tool needs.
pub const WRITE: &str = "notes:write";

/// The claims of an access token for this resource.
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(flatten)]
    pub grants: ClaimGrants,
}

/// Each resource's notes: a user only ever reaches the list under their own resource id.
pub type Store = Arc<Mutex<HashMap<String, Vec<String>>>>;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RememberArgs {
    /// The note to keep.
    pub note: String,
}

/// The MCP tools: `remember` and `recall`, over the caller's notes.
#[derive(Clone)]
pub struct Notes {
    store: Store,
    tool_router: ToolRouter<Self>,
}

/// The resource id the scope layer put in the HTTP request's extensions (rmcp hands the
/// request's parts to each tool call).
fn resource_of(parts: &http::request::Parts) -> Result<String, ErrorData> {
    parts
        .extensions
        .get::<ResourceId>()
        .map(|id| id.as_str().to_owned())
        // Unreachable behind the stack; fail closed if the example is wired without it.
        .ok_or_else(|| ErrorData::internal_error("no resource id: the stack is missing", None))
}

#[tool_router]
impl Notes {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        name = "remember",
        description = "Keeps a note for the caller (needs notes:write)"
    )]
    async fn remember(
        &self,
        Parameters(RememberArgs { note }): Parameters<RememberArgs>,
        rmcp::handler::server::common::Extension(parts): rmcp::handler::server::common::Extension<
            http::request::Parts,
        >,
    ) -> Result<String, ErrorData> {
        let resource = resource_of(&parts)?;
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let notes = store.entry(resource).or_default();
        notes.push(note);
        Ok(format!("remembered ({} notes)", notes.len()))
    }

    #[tool(
        name = "recall",
        description = "Lists the caller's notes (needs notes:read)"
    )]
    async fn recall(
        &self,
        rmcp::handler::server::common::Extension(parts): rmcp::handler::server::common::Extension<
            http::request::Parts,
        >,
    ) -> Result<String, ErrorData> {
        let resource = resource_of(&parts)?;
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let notes = store.get(&resource).cloned().unwrap_or_default();
        Ok(serde_json::to_string(&notes).unwrap_or_else(|_| "[]".into()))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// What the server needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The resource URL (RFC 8707 / RFC 9728 `resource`): `PUBLIC_URL` + `/mcp`. Tokens must
    /// carry it as their audience.
    pub resource: String,
    /// The OIDC issuer whose keys sign the tokens (discovered).
    pub issuer: String,
    /// How long a JSON-RPC body may take to arrive.
    pub body_timeout: Duration,
}

/// Which JSON-RPC calls need what: the protocol's own calls need a valid token, each tool
/// its scope. Anything else is refused.
pub fn json_rpc(settings: &Settings) -> Result<JsonRpc, ConfigError> {
    let mut rules = JsonRpc::new().body_timeout(settings.body_timeout);
    for method in [
        "initialize",
        "notifications/initialized",
        "notifications/cancelled",
        "ping",
        "tools/list",
    ] {
        rules = rules.method(method, Requirement::Authenticated)?;
    }
    rules
        .tool("remember", Requirement::all_of([WRITE])?)?
        .tool("recall", Requirement::all_of([READ])?)
}

/// The whole server as an axum `Router`.
///
/// # Errors
///
/// A configuration the layers refuse, or an issuer whose keys cannot be fetched.
pub async fn app(settings: &Settings, store: Store) -> Result<Router, ConfigError> {
    let authn = JwksAuthenticator::<Claims>::builder()
        .issuer(Issuer::discover(settings.issuer.clone()))
        // RFC 8707: a token minted for another resource is refused here.
        .audience(settings.resource.clone())
        .build()
        .await?;
    let metadata = ProtectedResourceMetadata::new(&settings.resource)?
        .authorization_servers(authn.issuers())?
        .scopes_supported([READ, WRITE])?
        .resource_name("tower-scope MCP notes")?;
    let (auth, well_known) = BearerAuthLayer::new(authn).protected_resource(metadata)?;
    let authz = AuthorizeLayer::new(ClaimPermissions::new(|c: &Claims| &c.grants).scope())
        .json_rpc("/mcp", json_rpc(settings)?)?;
    let scope = ResourceScopeLayer::new(|c: &Claims| Some(c.sub.clone()));
    // rmcp checks `Host` against DNS rebinding: the public URL's host is the one to expect
    // (the metadata above already validated it as an absolute URL).
    let host = settings
        .resource
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.host().map(str::to_owned))
        .unwrap_or_else(|| "localhost".into());
    let mcp = StreamableHttpService::new(
        move || Ok(Notes::new(store.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_sse_keep_alive(None)
            .with_allowed_hosts([host]),
    );
    let stack = ServiceBuilder::new()
        .layer(well_known) // public: the client reads it before it has a token
        .layer(auth)
        .layer(authz)
        .layer(scope)
        .service(Router::new().route_service("/mcp", mcp));
    Ok(Router::new().fallback_service(stack))
}
