//! Mastra's own error strings, where clients may match on them; the generic layers keep
//! their own plain wording.

/// Mastra's refusal of thread transfer in a resource-scoped context.
pub(crate) const TRANSFER_DENIED: &str =
    "Thread transfer requires a privileged (non-resource-scoped) context";

/// Mastra's 400 for a save-messages batch with messages lacking a thread or resource.
pub(crate) fn invalid_saved_messages(count: usize) -> String {
    format!(
        "All messages must have threadId and resourceId fields. Found {count} invalid message(s)."
    )
}

/// Mastra's 403 for a save-messages batch naming another resource.
pub(crate) const SAVE_FOREIGN_RESOURCE: &str =
    "Access denied: cannot save messages for a different resource";
