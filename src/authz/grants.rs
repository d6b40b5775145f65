//! Where a user's permissions come from: the common claim shapes, roles, implications.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use super::permission::Permission;
use crate::ConfigError;

/// The permissions a user holds, as [`AuthorizeLayer`](super::AuthorizeLayer) asks for them.
///
/// `any_granted` calls `wanted` with each permission the user holds (in any order, possibly
/// with repeats) until it returns `true`, and says whether it did. Visiting instead of
/// returning a set lets a check stop at the first match without building anything.
pub trait PermissionSource: Send + Sync + 'static {
    /// The authenticated user type ([`Authenticated<U>`](crate::Authenticated)).
    type User: Send + Sync + 'static;

    /// Whether `user` holds a permission for which `wanted` returns `true`.
    fn any_granted(&self, user: &Self::User, wanted: &mut dyn FnMut(&str) -> bool) -> bool;
}

/// A list claim that arrives either as one space-delimited string (`"a b c"`, RFC 9068's
/// `scope`) or as an array of strings (`scp`, Auth0's `permissions`, role lists).
///
/// Empty entries are dropped; the claim being present at all is what counts as "the token
/// lists its grants" (see [`ClaimPermissions::default_role`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClaimList(Vec<String>);

impl ClaimList {
    /// The entries.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Debug for ClaimList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

impl<S: Into<String>> FromIterator<S> for ClaimList {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self(iter.into_iter().map(Into::into).collect())
    }
}

impl<'de> Deserialize<'de> for ClaimList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Text(String),
            List(Vec<String>),
        }
        Ok(match Shape::deserialize(deserializer)? {
            Shape::Text(text) => Self(text.split_ascii_whitespace().map(str::to_owned).collect()),
            Shape::List(items) => Self(items.into_iter().filter(|s| !s.is_empty()).collect()),
        })
    }
}

impl Serialize for ClaimList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Keycloak's `{"roles": [...]}` objects (`realm_access`, each `resource_access.<client>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RoleClaim {
    /// The role names.
    #[serde(default)]
    pub roles: ClaimList,
}

/// The grant-carrying claims of the common token shapes, to embed in your claims type with
/// `#[serde(flatten)]`; read by [`ClaimPermissions`]. Every field is optional.
///
/// ```
/// use serde::Deserialize;
/// use tower_scope::authz::ClaimGrants;
///
/// #[derive(Deserialize)]
/// struct Claims {
///     sub: String,
///     #[serde(flatten)]
///     grants: ClaimGrants,
/// }
///
/// let claims: Claims = serde_json::from_str(
///     r#"{"sub":"alice","scope":"memory:read openid","realm_access":{"roles":["admin"]}}"#,
/// ).unwrap();
/// assert_eq!(claims.grants.scope.unwrap().iter().collect::<Vec<_>>(), ["memory:read", "openid"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ClaimGrants {
    /// RFC 9068 / OAuth `scope`: a space-delimited string (an array is accepted too; written
    /// back as a string).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "space_delimited"
    )]
    pub scope: Option<ClaimList>,
    /// `scp` (Azure AD, Okta): an array (a space-delimited string is accepted too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<ClaimList>,
    /// Auth0's RBAC `permissions` array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<ClaimList>,
    /// A plain `roles` array (Azure AD app roles, many custom issuers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<ClaimList>,
    /// Keycloak's realm roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_access: Option<RoleClaim>,
    /// Keycloak's client roles, per client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_access: Option<BTreeMap<String, RoleClaim>>,
}

fn space_delimited<S: serde::Serializer>(
    list: &Option<ClaimList>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match list {
        Some(list) => serializer.serialize_str(&list.0.join(" ")),
        None => serializer.serialize_none(),
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Honor {
    scope: bool,
    scp: bool,
    permissions: bool,
    roles: bool,
    realm_roles: bool,
}

#[derive(Debug, Clone, Default)]
struct ClientRoles {
    as_permissions: bool,
    map: HashMap<String, Vec<Permission>>,
}

#[derive(Debug, Clone, Default)]
struct Rules {
    honor: Honor,
    roles: HashMap<String, Vec<Permission>>,
    clients: BTreeMap<String, ClientRoles>,
    default_role: Option<Vec<Permission>>,
    implies: Vec<(Permission, Vec<Permission>)>,
}

/// Permissions read from a [`ClaimGrants`] inside the user's claims: which claims count,
/// what each role grants, and what a token that lists nothing gets.
///
/// Nothing is honored until you say so. Roles grant only what the role map gives them (a
/// role name is never taken as a permission by itself), and a Keycloak client's roles count
/// only for a client you named: `resource_access.other-app.roles: ["admin"]` can never
/// satisfy a requirement meant for `memory-api`.
///
/// ```
/// use serde::Deserialize;
/// use tower_scope::authz::{ClaimGrants, ClaimPermissions, PermissionSource};
///
/// #[derive(Deserialize)]
/// struct Claims { #[serde(flatten)] grants: ClaimGrants }
///
/// # fn main() -> Result<(), tower_scope::ConfigError> {
/// let source = ClaimPermissions::new(|c: &Claims| &c.grants)
///     .scope()
///     .permissions()
///     .client_roles("memory-api")
///     .client_role("memory-api", "editor", ["memory:read", "memory:write"])?
///     .role("user", ["memory:read", "memory:write", "memory:delete"])?
///     .default_role("user")?;
///
/// let holds = |json: &str, wanted: &str| {
///     let claims: Claims = serde_json::from_str(json).unwrap();
///     source.any_granted(&claims, &mut |p| p == wanted)
/// };
/// assert!(holds(r#"{"scope":"memory:read"}"#, "memory:read"));
/// assert!(!holds(r#"{"scope":"memory:read"}"#, "memory:write"));
/// assert!(holds(r#"{}"#, "memory:write")); // no grant claims: the default role
/// assert!(!holds(r#"{"resource_access":{"other":{"roles":["editor"]}}}"#, "memory:write"));
/// assert!(holds(r#"{"resource_access":{"memory-api":{"roles":["editor"]}}}"#, "memory:write"));
/// # Ok(()) }
/// ```
pub struct ClaimPermissions<F, U> {
    access: Arc<F>,
    rules: Arc<Rules>,
    _user: PhantomData<fn(&U)>,
}

impl<F, U> Clone for ClaimPermissions<F, U> {
    fn clone(&self) -> Self {
        Self {
            access: Arc::clone(&self.access),
            rules: Arc::clone(&self.rules),
            _user: PhantomData,
        }
    }
}

impl<F, U> fmt::Debug for ClaimPermissions<F, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimPermissions")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

fn permissions<I, P>(items: I) -> Result<Vec<Permission>, ConfigError>
where
    I: IntoIterator<Item = P>,
    P: AsRef<str>,
{
    items
        .into_iter()
        .map(|p| Permission::new(p.as_ref()))
        .collect()
}

impl<F, U> ClaimPermissions<F, U>
where
    F: Fn(&U) -> &ClaimGrants + Send + Sync + 'static,
    U: Send + Sync + 'static,
{
    /// Reads the grants through `access` (usually `|claims| &claims.grants`); honors nothing
    /// until told which claims count.
    pub fn new(access: F) -> Self {
        Self {
            access: Arc::new(access),
            rules: Arc::new(Rules::default()),
            _user: PhantomData,
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Rules)) -> Self {
        f(Arc::make_mut(&mut self.rules));
        self
    }

    /// Honors `scope` (RFC 9068): each entry is a permission.
    #[must_use]
    pub fn scope(self) -> Self {
        self.edit(|r| r.honor.scope = true)
    }

    /// Honors `scp`: each entry is a permission.
    #[must_use]
    pub fn scp(self) -> Self {
        self.edit(|r| r.honor.scp = true)
    }

    /// Honors Auth0's `permissions`: each entry is a permission.
    #[must_use]
    pub fn permissions(self) -> Self {
        self.edit(|r| r.honor.permissions = true)
    }

    /// Honors the `roles` claim, through the role map ([`role`](Self::role)).
    #[must_use]
    pub fn roles(self) -> Self {
        self.edit(|r| r.honor.roles = true)
    }

    /// Honors Keycloak's `realm_access.roles`, through the role map ([`role`](Self::role)).
    #[must_use]
    pub fn realm_roles(self) -> Self {
        self.edit(|r| r.honor.realm_roles = true)
    }

    /// Honors Keycloak's `resource_access.<client>.roles` for this one client: each role name
    /// is taken as a permission, and the client's role map ([`client_role`](Self::client_role))
    /// applies. Roles of clients never named here grant nothing.
    #[must_use]
    pub fn client_roles(self, client: &str) -> Self {
        self.edit(|r| {
            r.clients
                .entry(client.to_owned())
                .or_default()
                .as_permissions = true;
        })
    }

    /// What a role (from `roles`, `realm_access.roles` or [`default_role`](Self::default_role))
    /// grants. Names may repeat: the grants add up.
    pub fn role<I, P>(self, name: &str, grants: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let grants = permissions(grants)?;
        Ok(self.edit(|r| {
            r.roles.entry(name.to_owned()).or_default().extend(grants);
        }))
    }

    /// What a role of one Keycloak client grants (only in `resource_access.<client>`).
    pub fn client_role<I, P>(self, client: &str, role: &str, grants: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let grants = permissions(grants)?;
        Ok(self.edit(|r| {
            r.clients
                .entry(client.to_owned())
                .or_default()
                .map
                .entry(role.to_owned())
                .or_default()
                .extend(grants);
        }))
    }

    /// The role of a token that carries none of the honored claims (a first-party user token
    /// that lists no grants). A token that carries one, even empty (`"scope": ""`), gets
    /// exactly what it lists. The role must be in the role map already.
    pub fn default_role(self, name: &str) -> Result<Self, ConfigError> {
        let Some(grants) = self.rules.roles.get(name).cloned() else {
            return Err(ConfigError::InvalidValue {
                setting: "default_role",
                reason: format!("role {name:?} is not in the role map; add it with `role()` first"),
            });
        };
        Ok(self.edit(|r| r.default_role = Some(grants)))
    }

    /// Holding `permission` (exactly, as listed in the token or by a role) also grants
    /// `grants`: `imply("memory:admin", ["memory:read", "memory:write"])`. One level: implied
    /// permissions imply nothing further.
    pub fn imply<I, P>(self, permission: &str, grants: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let key = Permission::new(permission)?;
        let grants = permissions(grants)?;
        Ok(self.edit(|r| r.implies.push((key, grants))))
    }
}

impl Rules {
    fn visit(&self, granted: &str, wanted: &mut dyn FnMut(&str) -> bool) -> bool {
        if wanted(granted) {
            return true;
        }
        self.implies
            .iter()
            .filter(|(key, _)| key.as_str() == granted)
            .any(|(_, grants)| grants.iter().any(|p| wanted(p.as_str())))
    }

    fn visit_all<'a>(
        &self,
        list: impl IntoIterator<Item = &'a str>,
        wanted: &mut dyn FnMut(&str) -> bool,
    ) -> bool {
        list.into_iter().any(|p| self.visit(p, wanted))
    }

    fn visit_role(
        &self,
        map: &HashMap<String, Vec<Permission>>,
        role: &str,
        wanted: &mut dyn FnMut(&str) -> bool,
    ) -> bool {
        map.get(role)
            .is_some_and(|grants| self.visit_all(grants.iter().map(Permission::as_str), wanted))
    }
}

impl<F, U> PermissionSource for ClaimPermissions<F, U>
where
    F: Fn(&U) -> &ClaimGrants + Send + Sync + 'static,
    U: Send + Sync + 'static,
{
    type User = U;

    fn any_granted(&self, user: &U, wanted: &mut dyn FnMut(&str) -> bool) -> bool {
        let grants = (self.access)(user);
        let rules = &*self.rules;
        let honor = rules.honor;
        let mut listed = false;
        for (on, list) in [
            (honor.scope, &grants.scope),
            (honor.scp, &grants.scp),
            (honor.permissions, &grants.permissions),
        ] {
            if let (true, Some(list)) = (on, list) {
                listed = true;
                if rules.visit_all(list.iter(), wanted) {
                    return true;
                }
            }
        }
        for (on, list) in [
            (honor.roles, grants.roles.as_ref()),
            (
                honor.realm_roles,
                grants.realm_access.as_ref().map(|r| &r.roles),
            ),
        ] {
            if let (true, Some(list)) = (on, list) {
                listed = true;
                if list
                    .iter()
                    .any(|role| rules.visit_role(&rules.roles, role, wanted))
                {
                    return true;
                }
            }
        }
        if let Some(access) = &grants.resource_access {
            for (client, config) in &rules.clients {
                let Some(claim) = access.get(client) else {
                    continue;
                };
                listed = true;
                for role in claim.roles.iter() {
                    if (config.as_permissions && rules.visit(role, wanted))
                        || rules.visit_role(&config.map, role, wanted)
                    {
                        return true;
                    }
                }
            }
        }
        match (&rules.default_role, listed) {
            (Some(grants), false) => rules.visit_all(grants.iter().map(Permission::as_str), wanted),
            _ => false,
        }
    }
}

/// Permissions from any function of the user: `from_fn(|user: &User| user.permissions.clone())`.
///
/// Each call builds the list, so prefer [`ClaimPermissions`] on hot paths.
pub fn from_fn<F, U, I>(f: F) -> FnPermissions<F, U>
where
    F: Fn(&U) -> I + Send + Sync + 'static,
    I: IntoIterator,
    I::Item: AsRef<str>,
    U: Send + Sync + 'static,
{
    FnPermissions {
        f: Arc::new(f),
        _user: PhantomData,
    }
}

/// The [`PermissionSource`] made by [`from_fn`].
pub struct FnPermissions<F, U> {
    f: Arc<F>,
    _user: PhantomData<fn(&U)>,
}

impl<F, U> Clone for FnPermissions<F, U> {
    fn clone(&self) -> Self {
        Self {
            f: Arc::clone(&self.f),
            _user: PhantomData,
        }
    }
}

impl<F, U> fmt::Debug for FnPermissions<F, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnPermissions").finish_non_exhaustive()
    }
}

impl<F, U, I> PermissionSource for FnPermissions<F, U>
where
    F: Fn(&U) -> I + Send + Sync + 'static,
    I: IntoIterator,
    I::Item: AsRef<str>,
    U: Send + Sync + 'static,
{
    type User = U;

    fn any_granted(&self, user: &U, wanted: &mut dyn FnMut(&str) -> bool) -> bool {
        (self.f)(user).into_iter().any(|p| wanted(p.as_ref()))
    }
}
