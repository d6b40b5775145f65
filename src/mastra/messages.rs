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
