//! The typed values the layers hand to the inner service through [`http::Extensions`].
//!
//! Every value is cheap to clone (an [`Arc`] inside) and `Send + Sync + 'static`, as axum's
//! `Extension`, warp's `ext::get` and tonic's `Request::extensions` require.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

/// The user a [`BearerAuthLayer`](crate::BearerAuthLayer) authenticated, shared behind an [`Arc`].
///
/// It dereferences to `U`, so `user.sub` reads a field of your claims or user type.
pub struct Authenticated<U>(Arc<U>);

impl<U> Authenticated<U> {
    /// Wraps an authenticated user.
    pub fn new(user: U) -> Self {
        Self(Arc::new(user))
    }

    /// The shared user value.
    pub fn shared(&self) -> &Arc<U> {
        &self.0
    }

    /// Returns the inner `Arc<U>`.
    pub fn into_shared(self) -> Arc<U> {
        self.0
    }
}

impl<U> From<Arc<U>> for Authenticated<U> {
    fn from(user: Arc<U>) -> Self {
        Self(user)
    }
}

impl<U> Clone for Authenticated<U> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<U> Deref for Authenticated<U> {
    type Target = U;

    fn deref(&self) -> &U {
        &self.0
    }
}

impl<U: fmt::Debug> fmt::Debug for Authenticated<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Authenticated").field(&self.0).finish()
    }
}

impl<U: PartialEq> PartialEq for Authenticated<U> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// What authentication concluded for a request: the typed verdict
/// [`BearerAuthLayer`](crate::BearerAuthLayer) always leaves in the extensions, so the layers
/// behind it (scope, guard, log) never infer it from raw headers.
///
/// A trusted custom authentication layer sets the same value: [`AuthState::verified`] next to
/// the [`Authenticated<U>`] it inserts, or one of the unauthenticated states.
///
/// [`ResourceScopeLayer`](crate::ResourceScopeLayer) refuses a request that carries no
/// `AuthState`, no [`Authenticated<U>`] and no trusted [`ResourceId`]: no authentication layer
/// ran in front of it, which is a wiring error, never a reason to serve the request unscoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthState {
    /// Credentials were verified; an [`Authenticated<U>`] of the named user type is present.
    Verified {
        /// [`std::any::type_name`] of the user type, for diagnostics when a later layer
        /// expects another type.
        user_type: &'static str,
    },
    /// The path is public: authentication was deliberately skipped.
    PublicPath,
    /// Authentication is optional and the request carried no credentials.
    Anonymous,
    /// A CORS preflight the layer was told to let through unauthenticated.
    Preflight,
}

impl AuthState {
    /// The state for a verified user of type `U`.
    pub fn verified<U>() -> Self {
        Self::Verified {
            user_type: std::any::type_name::<U>(),
        }
    }

    /// Whether credentials were verified.
    pub fn is_verified(self) -> bool {
        matches!(self, Self::Verified { .. })
    }

    /// A short name for logs: `verified`, `public_path`, `anonymous` or `preflight`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified { .. } => "verified",
            Self::PublicPath => "public_path",
            Self::Anonymous => "anonymous",
            Self::Preflight => "preflight",
        }
    }
}

/// The longest id, in bytes, that [`ResourceId`], [`ThreadId`] and [`MessageId`] accept.
pub const MAX_ID_LEN: usize = 256;

/// Why a string is not a valid [`ResourceId`], [`ThreadId`] or [`MessageId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidId {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    TooLong,
    /// The id contains a control character (U+0000..U+001F, U+007F..U+009F), NUL included.
    ControlCharacter,
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "id is empty",
            Self::TooLong => "id is longer than 256 bytes",
            Self::ControlCharacter => "id contains a control character",
        })
    }
}

impl std::error::Error for InvalidId {}

/// Checks the rules shared by every id type: non-empty, bounded, no control characters.
///
/// This is the one place an id is judged, before any store sees it, so every backend gives the
/// same answer: an id PostgreSQL's `text` cannot hold (NUL) never reaches a query, where it
/// would fail as a backend error on PostgreSQL and pass on SQLite. Valid UTF-8 is given: ids
/// are `str`, and the layers refuse path, query and header bytes that do not decode.
pub(crate) fn validate_id(id: &str) -> Result<(), InvalidId> {
    if id.is_empty() {
        return Err(InvalidId::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong);
    }
    // Control characters would let an id forge log lines or smuggle header bytes.
    if id.chars().any(char::is_control) {
        return Err(InvalidId::ControlCharacter);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps an id.
            ///
            /// # Errors
            ///
            /// [`InvalidId`] when the id is empty, longer than [`MAX_ID_LEN`] bytes, or contains a
            /// control character.
            pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidId> {
                let id = id.as_ref();
                validate_id(id)?;
                Ok(Self(Arc::from(id)))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&&*self.0).finish()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;

            fn try_from(s: String) -> Result<Self, InvalidId> {
                validate_id(&s)?;
                Ok(Self(Arc::from(s)))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;

            fn try_from(s: &str) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

id_type!(
    /// The resource (tenant, user, `org:user`...) whose data a request may touch.
    ///
    /// Inserted by [`ResourceScopeLayer`](crate::ResourceScopeLayer) from the authenticated user,
    /// or by an earlier trusted layer. Mastra calls it `MASTRA_RESOURCE_ID_KEY`.
    ResourceId
);

id_type!(
    /// The conversation thread a request operates on, once its ownership is established.
    ///
    /// A `ThreadId` set by a trusted earlier layer overrides the thread id the client sent
    /// (Mastra's `MASTRA_THREAD_ID_KEY`).
    ThreadId
);

id_type!(
    /// A message id, as a client names it in save-messages, delete and `?include=` requests.
    ///
    /// Same rules as the other ids; the guard and the stores take only this type, so an id the
    /// database cannot hold is refused (400) before any lookup or write.
    MessageId
);

/// A request that may act on another resource's data: set by
/// [`AuthorizeLayer`](crate::authz::AuthorizeLayer) when the caller holds the configured
/// [`Privilege`](crate::authz::Privilege) for this method and path (any resource), or when its
/// approval hook allowed the one resource the request names; read by
/// [`ResourceScopeLayer`](crate::ResourceScopeLayer) and
/// [`ThreadGuardLayer`](crate::ThreadGuardLayer).
///
/// Only a layer sets it (a client cannot set extensions); without it, a request is never
/// privileged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileged {
    grant: Grant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    Any(Arc<str>),
    Approved(ResourceId),
}

impl Privileged {
    /// May act on any resource, because the caller holds `permission` (e.g. `memory:admin`).
    pub fn any(permission: impl Into<Arc<str>>) -> Self {
        Self {
            grant: Grant::Any(permission.into()),
        }
    }

    /// May act on this one resource, which an approval hook allowed (a shared resource).
    pub fn approved(resource: ResourceId) -> Self {
        Self {
            grant: Grant::Approved(resource),
        }
    }

    /// The permission that made the request privileged, when it was one.
    pub fn permission(&self) -> Option<&str> {
        match &self.grant {
            Grant::Any(permission) => Some(permission),
            Grant::Approved(_) => None,
        }
    }

    /// Whether the request may act on `resource`.
    pub fn allows(&self, resource: &ResourceId) -> bool {
        match &self.grant {
            Grant::Any(_) => true,
            Grant::Approved(approved) => approved == resource,
        }
    }

    /// How acting on another resource is allowed.
    pub fn via(&self) -> ActingVia {
        match &self.grant {
            Grant::Any(_) => ActingVia::Privilege,
            Grant::Approved(_) => ActingVia::Approval,
        }
    }
}

/// The other resource a request acts on: set by the scope layer (a privileged or approved
/// client-named resource) or by the guard (a privileged read of another resource's thread),
/// next to the [`ResourceId`] then in force; logged as `acting_as`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActingAs {
    /// The resource acted on.
    pub resource: ResourceId,
    /// How it was allowed.
    pub via: ActingVia,
}

/// Why a request may act on another resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActingVia {
    /// The caller holds the [`Privilege`](crate::authz::Privilege).
    Privilege,
    /// The scope layer's approval hook allowed it (a shared or team resource).
    Approval,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_empty_long_and_control_characters() {
        assert_eq!(ResourceId::new(""), Err(InvalidId::Empty));
        assert_eq!(ResourceId::new("a".repeat(257)), Err(InvalidId::TooLong));
        assert!(ResourceId::new("a".repeat(256)).is_ok());
        assert_eq!(ThreadId::new("a\nb"), Err(InvalidId::ControlCharacter));
        assert_eq!(ThreadId::new("a\u{7f}"), Err(InvalidId::ControlCharacter));
        assert_eq!(ThreadId::new("a\u{85}"), Err(InvalidId::ControlCharacter));
    }

    #[test]
    fn message_ids_follow_the_same_rules() {
        // NUL is what PostgreSQL's `text` cannot hold: refused here, before any store.
        assert_eq!(MessageId::new("m1\0"), Err(InvalidId::ControlCharacter));
        assert_eq!(
            MessageId::try_from("\0".to_owned()),
            Err(InvalidId::ControlCharacter)
        );
        assert_eq!(MessageId::new(""), Err(InvalidId::Empty));
        assert_eq!(MessageId::new("m".repeat(257)), Err(InvalidId::TooLong));
        assert_eq!("m-1".parse::<MessageId>().unwrap(), "m-1");
        assert_eq!(ResourceId::new("alice\0"), Err(InvalidId::ControlCharacter));
    }

    #[test]
    fn composite_and_unicode_ids_are_accepted() {
        let id = ResourceId::new("org-1:alice").unwrap();
        assert_eq!(id, "org-1:alice");
        assert_eq!(ThreadId::new("fil-ü-1").unwrap().as_str(), "fil-ü-1");
    }

    #[test]
    fn authenticated_clones_share_the_user() {
        let a = Authenticated::new(String::from("alice"));
        let b = a.clone();
        assert!(Arc::ptr_eq(a.shared(), b.shared()));
        assert_eq!(b.len(), 5);
    }
}
