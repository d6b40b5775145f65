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
