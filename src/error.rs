//! Configuration errors, reported when a layer or authenticator is built.

use std::fmt;

/// A configuration that cannot work, found when it was built (never at request time).
///
/// The message says what to change. It never contains a secret or key material.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// An HMAC secret shorter than the hash output (RFC 7518 §3.2).
    WeakHmacSecret {
        /// The algorithm the secret was configured for.
        algorithm: &'static str,
        /// The minimum length in bytes.
        min_len: usize,
        /// The length that was given.
        actual_len: usize,
    },
    /// No JWT crypto backend is compiled in and none was given.
    NoCryptoBackend,
    /// A key could not be parsed or does not fit its algorithm.
    InvalidKey(String),
    /// No verification key was configured.
    NoKeys,
    /// A path pattern is malformed.
    InvalidPathPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A header name is not a valid HTTP header name.
    InvalidHeaderName(String),
    /// A value (realm, parameter name, id...) is not allowed where it was given.
    InvalidValue {
        /// Which setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An issuer's keys could not be loaded when the authenticator was built.
    KeySource {
        /// The configured issuer.
        issuer: String,
        /// What failed (timeout, HTTP status, issuer mismatch...), never a response body.
        reason: String,
    },
    /// A CORS origin is not `scheme://host[:port]` (a path, query or `*` in the wrong place).
    InvalidOrigin {
        /// The origin as given.
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `*` was given inside a list, where it would be sent (or matched) literally.
    WildcardInList {
        /// Which setting (`allow_origins`, `allow_headers`, ...).
        setting: &'static str,
    },
    /// Credentials were allowed together with a `*` wildcard, which browsers refuse (Fetch §3.2.5).
    CredentialsWithWildcard {
        /// Which setting holds the wildcard.
        setting: &'static str,
    },
    /// Credentials were allowed with a mirrored origin that no list or predicate restricts: every
    /// website could read answers made with the user's cookies or token.
    CredentialsWithMirroredOrigin,
    /// Credentials were allowed for the opaque origin `null`, which any website can send.
    CredentialsWithNullOrigin,
    /// Credentials were allowed for a wildcard over a single label (`https://*.com`), which
    /// every site under that top-level domain matches.
    CredentialsWithTopLevelWildcard {
        /// The origin rule as configured.
        origin: String,
    },
    /// The operating system's random number generator failed (a secret key could not be drawn).
    NoRandomness,
    /// An authorization server's metadata (RFC 8414, OIDC discovery) could not be read or
    /// does not name what was needed, when the authenticator was built.
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// What failed (timeout, HTTP status, issuer mismatch, a missing endpoint...), never a
        /// response body.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WeakHmacSecret { algorithm, min_len, actual_len } => write!(
                f,
                "the {algorithm} secret is {actual_len} bytes; use at least {min_len} random bytes (RFC 7518 section 3.2)"
            ),
            Self::NoCryptoBackend => f.write_str(
                "no JWT crypto backend: enable the `aws-lc` or `rust-crypto` feature of tower-scope, or pass a provider with `crypto_provider`",
            ),
            Self::InvalidKey(what) => write!(f, "invalid key: {what}"),
            Self::NoKeys => f.write_str("no verification key configured: add a secret, a PEM key or a JWK set"),
            Self::InvalidPathPattern { pattern, reason } => {
                write!(f, "invalid path pattern {pattern:?}: {reason}")
            }
            Self::InvalidHeaderName(name) => write!(f, "invalid header name {name:?}"),
            Self::InvalidValue { setting, reason } => write!(f, "invalid {setting}: {reason}"),
            Self::KeySource { issuer, reason } => {
                write!(f, "could not load the keys of issuer {issuer:?}: {reason}")
            }
            Self::InvalidOrigin { origin, reason } => write!(f, "invalid CORS origin {origin:?}: {reason}"),
            Self::WildcardInList { setting } => write!(
                f,
                "`*` inside the {setting} list: use the `*` on its own (the any_ method) or list the values"
            ),
            // Mirroring is the fix for headers and methods, never for origins (see below).
            Self::CredentialsWithWildcard { setting: "allow_origins" } => f.write_str(
                "credentials cannot be combined with `*` in allow_origins: browsers refuse it; list the origins with allow_origins or allow_origin_predicate",
            ),
            Self::CredentialsWithWildcard { setting } => write!(
                f,
                "credentials cannot be combined with `*` in {setting}: browsers refuse it; list the values, or mirror the request"
            ),
            Self::CredentialsWithMirroredOrigin => f.write_str(
                "credentials with a mirrored origin let every website read responses made with the user's cookies or token: name the origins with allow_origins or allow_origin_predicate, or, if any site may truly act as the user, call allow_any_origin_with_credentials_dangerously()",
            ),
            Self::CredentialsWithNullOrigin => f.write_str(
                "credentials with the `null` origin let every website read responses made with the user's cookies or token (any page can send `Origin: null` from a sandboxed iframe): remove `null` from allow_origins",
            ),
            Self::CredentialsWithTopLevelWildcard { origin } => write!(
                f,
                "credentials with `{origin}` let every website under that top-level domain read responses made with the user's cookies or token: wildcard a domain you control (`https://*.example.com`), or list the origins"
            ),
            Self::NoRandomness => f.write_str("the operating system's random number generator failed"),
            Self::Discovery { issuer, reason } => {
                write!(f, "could not discover the metadata of authorization server {issuer:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}
