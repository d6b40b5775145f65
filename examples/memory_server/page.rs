//! The memory server's browser page at `/`: a thread list and a chat pane that renders the
//! agent's stream as it arrives, the thread id kept in `localStorage` as in the seeds' React
//! component. Static files embedded at compile time: no build step.
//!
//! In dev mode (the server generated its own secret and minted dev tokens) the page offers the
//! dev users; `GET /dev/tokens` exists only then. Otherwise the page asks for a token.

use axum::Json;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/chat.js");

/// The page's routes; `dev_tokens` (user, token) non-empty adds `GET /dev/tokens`.
pub fn routes(dev_tokens: &[(String, String)]) -> Router {
    let router = Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/chat.js",
            get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
        );
    if dev_tokens.is_empty() {
        return router;
    }
    let users: Vec<Value> = dev_tokens
        .iter()
        .map(|(user, token)| json!({ "user": user, "token": token }))
        .collect();
    let users = json!({ "users": users });
    router.route(
        "/dev/tokens",
        get(move || {
            let users = users.clone();
            async move {
                let mut res = Json(users).into_response();
                res.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                res
            }
        }),
    )
}

fn page(text: &'static str, content_type: &'static str) -> Response {
    let mut res = text.into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page talks only to this origin; nothing else may run in it.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}
