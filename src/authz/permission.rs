//! Permission strings and Mastra's wildcard matching.

use std::fmt;
use std::sync::Arc;

use crate::ConfigError;

/// A permission a route requires or a user holds: `resource:action`, `resource:action:id`,
/// or `*`, validated when built.
///
/// Each part is a non-empty run of visible ASCII without `:` or whitespace (the id, the part
/// after the second `:`, may contain `:`). `*` as a whole part is a wildcard, see
/// [`permission_matches`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    text: Arc<str>,
    /// Where `resource:action` ends, when the permission has that shape (no id, not `*`):
    /// the resource is `text[..colon]`, the action `text[colon + 1..]`.
    colon: Option<usize>,
}

impl Permission {
    /// Validates `text` as a permission.
    pub fn new(text: &str) -> Result<Self, ConfigError> {
        if is_valid(text) {
            let colon = match split(text) {
                Some((resource, _, None)) => Some(resource.len()),
                _ => None,
            };
            Ok(Self {
                text: Arc::from(text),
                colon,
            })
        } else {
            Err(ConfigError::InvalidValue {
                setting: "permission",
                reason: format!(
                    "{text:?} is not `*`, `resource:action` or `resource:action:id` (visible \
                     ASCII, no spaces, no empty part)"
                ),
            })
        }
    }

    /// The permission as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether holding `granted` satisfies this permission ([`permission_matches`]); the
    /// common `resource:action` shape is compared in parts split once, when it was built.
    pub(crate) fn is_satisfied_by(&self, granted: &str) -> bool {
        match self.colon {
            Some(colon) => matches_parts(granted, &self.text[..colon], &self.text[colon + 1..]),
            None => permission_matches(granted, &self.text),
        }
    }
}

impl fmt::Debug for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for Permission {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

fn is_part(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn is_valid(text: &str) -> bool {
    if text == "*" {
        return true;
    }
    let mut parts = text.splitn(3, ':');
    let (Some(resource), Some(action)) = (parts.next(), parts.next()) else {
        return false;
    };
    let id_ok = match parts.next() {
        None => true,
        Some(id) => !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic()),
    };
    is_part(resource) && is_part(action) && id_ok
}

/// Splits a permission into resource, action and optional id; `None` when it has no action.
fn split(text: &str) -> Option<(&str, &str, Option<&str>)> {
    let (resource, rest) = text.split_once(':')?;
    Some(match rest.split_once(':') {
        Some((action, id)) => (resource, action, Some(id)),
        None => (resource, rest, None),
    })
}

/// Whether a `granted` permission satisfies a `required` one, with Mastra's wildcard rules:
///
/// | granted | satisfies |
/// |---|---|
/// | `*` | everything |
/// | `memory:read` (exact) | `memory:read`, and `memory:read:<any id>` |
/// | `memory:*` | every action on `memory` (`memory:read`, `memory:delete:t1`, ...) |
/// | `*:read` | `read` on every resource |
/// | `memory:read:t1` | `memory:read:t1` only — not `memory:read`, not `memory:read:t2` |
///
/// Matching is case-sensitive, and a wildcard only stands for a whole part: `mem*:read`
/// satisfies nothing but itself. A required permission without an action (`memory`) is only
/// satisfied by the same string or by `*`. One deliberate difference from Mastra: the id is
/// everything after the second `:` (Mastra compares only the third `:`-separated part, so its
/// `a:b:c:x` would satisfy `a:b:c:y`). Mastra's special `stored:` resource alias is not
/// reproduced.
pub fn permission_matches(granted: &str, required: &str) -> bool {
    if granted == "*" || granted == required {
        return true;
    }
    let (Some(granted), Some((resource, action, id))) = (split(granted), split(required)) else {
        return false;
    };
    parts_match(granted, resource, action, id)
}

/// [`permission_matches`] against a required permission given in parts (no string built).
pub(crate) fn matches_parts(granted: &str, resource: &str, action: &str) -> bool {
    if granted == "*" {
        return true;
    }
    // The hot path of derived permissions: two prefix comparisons, no search. What follows
    // the resource is the action, or `*`; an id-scoped grant (`memory:read:t1`) never
    // satisfies a permission without an id, and never equals a bare action.
    if granted.as_bytes().first() != resource.as_bytes().first() && !granted.starts_with("*:") {
        return false;
    }
    let after = granted
        .strip_prefix(resource)
        .and_then(|rest| rest.strip_prefix(':'))
        .or_else(|| granted.strip_prefix("*:"));
    after.is_some_and(|rest| rest == action || rest == "*")
}

fn parts_match(
    (g_resource, g_action, g_id): (&str, &str, Option<&str>),
    resource: &str,
    action: &str,
    id: Option<&str>,
) -> bool {
    (g_resource == "*" || g_resource == resource)
        && (g_action == "*" || g_action == action)
        && match g_id {
            None => true,
            Some(g_id) => Some(g_id) == id,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_validated() {
        for ok in [
            "*",
            "memory:read",
            "memory:*",
            "*:read",
            "a:b:c",
            "a:b:c:d",
            "x-y:z.w",
        ] {
            assert!(Permission::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "memory",
            ":read",
            "memory:",
            "memory::x",
            "mem ory:read",
            "memory:read:",
            "memory:re\tad",
            "mémoire:read",
            "a:b: c",
        ] {
            assert!(Permission::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parts_and_strings_agree() {
        for granted in [
            "*",
            "memory:read",
            "memory:*",
            "*:read",
            "*:*",
            "memory:read:t1",
            "agents:read",
        ] {
            assert_eq!(
                matches_parts(granted, "memory", "read"),
                permission_matches(granted, "memory:read"),
                "{granted}"
            );
        }
    }
}
