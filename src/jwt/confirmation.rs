//! Sender-constrained tokens: the `cnf` (confirmation) claim, and who may accept it.
//!
//! A token whose claims carry `cnf` is bound to a key its holder must prove it has: a DPoP key
//! (`jkt`, RFC 9449 §6.1) or a TLS client certificate (`x5t#S256`, RFC 8705 §3.1). Accepting such
//! a token as a plain bearer token throws the binding away, so a stolen token works again
//! (RFC 9449 §6, RFC 8705 §3). The policy, for both JWT authenticators:
//!
//! | claims | without a verifier | with [`accept_sender_constrained`] |
//! |---|---|---|
//! | no `cnf` member | verified as usual | verified as usual |
//! | `cnf` is an object (any members, none, unknown ones) | 401 `invalid_token` | the verifier decides |
//! | `cnf` is `null`, a string, a number, an array... | 401 `invalid_token` (malformed) | 401, the verifier is not asked |
//!
//! An empty object or one with only unknown methods is refused too: the issuer meant to constrain
//! the token, and a server cannot tell an issuer bug from a method it does not implement. `null`
//! is not "absent": RFC 7800 §3.1 makes `cnf` a JSON object, and anything else is malformed. The
//! check reads the raw claims, so it applies whatever claims type the application decodes into.
//! The refusal's `error_description` is fixed text that names no method and no thumbprint.
//!
//! [`accept_sender_constrained`]: crate::jwt::JwtAuthenticatorBuilder::accept_sender_constrained

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::auth::AuthError;

/// The fixed `error_description` of a sender-constrained token refused as a bearer token.
pub(crate) const SENDER_CONSTRAINED: &str =
    "Sender-constrained tokens are not accepted as bearer tokens";

/// The verifier an application opts in with: approves (or refuses) one token's binding.
pub(crate) type BindingVerifier = dyn Fn(&Confirmation<'_>) -> Result<(), AuthError> + Send + Sync;

/// The `cnf` claim of a token whose signature and claims have been verified (RFC 7800 §3.1),
/// as handed to the verifier given to `accept_sender_constrained`.
///
/// It holds no request: proving possession (a DPoP proof, a TLS client certificate) needs the
/// request or the connection, which an authenticator does not see. `Debug` shows the method
/// names only.
#[derive(Clone, Copy)]
pub struct Confirmation<'a> {
    members: &'a Map<String, Value>,
    issuer: Option<&'a str>,
}

impl<'a> Confirmation<'a> {
    pub(crate) fn new(members: &'a Map<String, Value>, issuer: Option<&'a str>) -> Self {
        Self { members, issuer }
    }

    /// The DPoP key thumbprint, `cnf.jkt` (RFC 9449 §6.1), when it is a string.
    pub fn jkt(&self) -> Option<&'a str> {
        self.members.get("jkt").and_then(Value::as_str)
    }

    /// The TLS client certificate thumbprint, `cnf.x5t#S256` (RFC 8705 §3.1), when it is a string.
    pub fn x5t_s256(&self) -> Option<&'a str> {
        self.members.get("x5t#S256").and_then(Value::as_str)
    }

    /// Any confirmation member by name (`jwk`, `kid`, `jku`, or one this crate does not know).
    pub fn member(&self, name: &str) -> Option<&'a Value> {
        self.members.get(name)
    }

    /// The names of every confirmation method the token carries (empty for `cnf: {}`).
    pub fn methods(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.members.keys().map(String::as_str)
    }

    /// The token's verified `iss`, when it has one.
    pub fn issuer(&self) -> Option<&'a str> {
        self.issuer
    }
}

impl fmt::Debug for Confirmation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Confirmation")
            .field("methods", &self.methods().collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// The binding rule of one authenticator: refuse every `cnf`, or ask the configured verifier.
#[derive(Clone, Default)]
pub(crate) struct Binding(Option<Arc<BindingVerifier>>);

impl Binding {
    pub(crate) fn accept_with(verifier: Arc<BindingVerifier>) -> Self {
        Self(Some(verifier))
    }

    pub(crate) fn is_configured(&self) -> bool {
        self.0.is_some()
    }

    /// Decides a verified token's `cnf` claim (`None`: the token has none).
    pub(crate) fn check(&self, cnf: Option<&Value>, issuer: Option<&str>) -> Result<(), AuthError> {
        let Some(cnf) = cnf else {
            return Ok(());
        };
        let Value::Object(members) = cnf else {
            return Err(super::invalid("The token claims are malformed"));
        };
        match &self.0 {
            // RFC 9449 §6 / RFC 8705 §3: without a proof of possession the token is not usable.
            None => Err(super::invalid(SENDER_CONSTRAINED)),
            Some(verify) => verify(&Confirmation::new(members, issuer)),
        }
    }
}
