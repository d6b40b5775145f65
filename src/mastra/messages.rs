//! The refusal messages Mastra's server answers with, copied so that clients written against
//! Mastra (`@mastra/client-js`, scripts matching on `{"error": "..."}`) read the same text.
//!
//! One home for every Mastra string: the layers reference these instead of repeating them.

/// Mastra's 401 when no token was sent.
pub(crate) const AUTHENTICATION_REQUIRED: &str = "Authentication required";

/// Mastra's 401 when `authenticateToken` refused the token.
pub(crate) const INVALID_OR_EXPIRED_TOKEN: &str = "Invalid or expired token";

/// Mastra's 403 when `authorizeUser` said no.
pub(crate) const ACCESS_DENIED: &str = "Access denied";

/// Mastra's 403 `error` when RBAC finds a route permission missing.
#[cfg(feature = "authz")]
pub(crate) const FORBIDDEN: &str = "Forbidden";

/// Mastra's 403 `message` prefix when RBAC finds a route permission missing (the permission
/// follows).
#[cfg(feature = "authz")]
pub(crate) const MISSING_PERMISSION: &str = "Missing required permission: ";

/// Mastra's 500 when `authorizeUser` / `authorize` threw.
#[cfg(feature = "authz")]
pub(crate) const AUTHORIZATION_ERROR: &str = "Authorization error";

/// Mastra's 413 over `server.bodySizeLimit`.
pub(crate) const REQUEST_BODY_TOO_LARGE: &str = "Request body too large";

/// Mastra's refusal of thread transfer in a resource-scoped context.
#[cfg(feature = "guard")]
pub(crate) const TRANSFER_DENIED: &str =
    "Thread transfer requires a privileged (non-resource-scoped) context";

/// Mastra's 400 for a save-messages batch with messages lacking a thread or resource.
#[cfg(feature = "guard")]
pub(crate) fn invalid_saved_messages(count: usize) -> String {
    format!(
        "All messages must have threadId and resourceId fields. Found {count} invalid message(s)."
    )
}

/// Mastra's 403 for a save-messages batch naming another resource.
#[cfg(feature = "guard")]
pub(crate) const SAVE_FOREIGN_RESOURCE: &str =
    "Access denied: cannot save messages for a different resource";

/// Mastra's 403 when an authenticated request has no resource scope (`requireResourceScope`,
/// the fail-closed fix for issue #18911): its first sentence, without Mastra's advice on
/// configuring `mapUserToResourceId`, which does not apply here.
pub(crate) const NOT_SCOPED: &str = "Access denied: request could not be scoped to a resource";

/// Mastra's 403 from `validateThreadOwnership`: the thread belongs to another resource.
#[cfg(feature = "guard")]
pub(crate) const FOREIGN_THREAD: &str = "Access denied: thread belongs to a different resource";

/// Mastra's 404 on the `/api/memory/threads/:threadId` routes for a thread that does not exist.
#[cfg(feature = "guard")]
pub(crate) const THREAD_NOT_FOUND: &str = "Thread not found";

/// Mastra's 403 on `POST /api/memory/messages/delete` for a message without a thread, or whose
/// thread is gone.
#[cfg(feature = "guard")]
pub(crate) const UNVERIFIABLE_MESSAGE: &str =
    "Access denied: unable to verify message thread access";

/// Mastra's 400 on `GET /api/memory/threads/:threadId/messages` without a thread id.
#[cfg(feature = "guard")]
pub(crate) const NO_THREAD_ID: &str = "No threadId found";

/// Mastra's 400 on `POST /api/memory/messages/delete` without `messageIds`.
#[cfg(feature = "guard")]
pub(crate) const MESSAGE_IDS_REQUIRED: &str = "messageIds is required";

/// Mastra's 400 for a query parameter that fails its schema (Mastra adds an `issues` list).
#[cfg(feature = "guard")]
pub(crate) const INVALID_QUERY_PARAMETERS: &str = "Invalid query parameters";
