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

/// The fixed `error_description` of a DPoP proof presented with a token not bound to its key.
pub(crate) const KEY_MISMATCH: &str = "The DPoP proof key does not match the token binding";

/// The binding rule of one authenticator: refuse every `cnf`, ask the configured verifier,
/// and (with DPoP on) compare `cnf.jkt` with the key of the proof the layer verified.
#[derive(Clone, Default)]
pub(crate) struct Binding {
    verifier: Option<Arc<BindingVerifier>>,
    dpop: bool,
}

impl Binding {
    pub(crate) fn accept_with(&mut self, verifier: Arc<BindingVerifier>) {
        self.verifier = Some(verifier);
    }

    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub(crate) fn accept_dpop(&mut self) {
        self.dpop = true;
    }

    pub(crate) fn is_configured(&self) -> bool {
        self.verifier.is_some() || self.dpop
    }

    /// Whether `cnf.jkt` is compared with the layer's verified DPoP proof.
    pub(crate) fn checks_dpop(&self) -> bool {
        self.dpop
    }

    /// Decides a verified token's `cnf` claim (`None`: the token has none); `proof` is the
    /// thumbprint of the DPoP proof key the layer verified for this request, if any.
    pub(crate) fn check(
        &self,
        cnf: Option<&Value>,
        issuer: Option<&str>,
        proof: Option<&str>,
    ) -> Result<(), AuthError> {
        let Some(cnf) = cnf else {
            // RFC 9449 §7.1: the `DPoP` scheme is for DPoP-bound tokens; a bearer token sent
            // with a proof is a confused or downgraded client, and the binding is not there.
            return match proof {
                Some(_) => Err(super::invalid(KEY_MISMATCH)),
                None => Ok(()),
            };
        };
        let Value::Object(members) = cnf else {
            return Err(super::invalid("The token claims are malformed"));
        };
        let confirmation = Confirmation::new(members, issuer);
        if self.dpop
            && let Some(jkt) = confirmation.jkt()
        {
            // RFC 9449 §6.1 and §7.1: the proof's key must be the one the token is bound to.
            // A DPoP-bound token sent as `Bearer` has no proof, so it is refused here.
            let Some(proof) = proof else {
                return Err(super::invalid(SENDER_CONSTRAINED));
            };
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                jkt.as_bytes(),
                proof.as_bytes(),
            )) {
                return Err(super::invalid(KEY_MISMATCH));
            }
            // Other confirmation methods beside `jkt` still need the application's verifier.
            if confirmation.methods().count() == 1 {
                return Ok(());
            }
        } else if proof.is_some() {
            return Err(super::invalid(KEY_MISMATCH));
        }
        match &self.verifier {
            // RFC 9449 §6 / RFC 8705 §3: without a proof of possession the token is not usable.
            None => Err(super::invalid(SENDER_CONSTRAINED)),
            Some(verify) => verify(&confirmation),
        }
    }
}
