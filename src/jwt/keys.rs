//! Verification keys: [`JwtKey`] as configured, the parsed [`VerifyKey`] both authenticators
//! verify with, and JWK (set) parsing with the rules for which keys may verify at all.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{AlgorithmFamily, DecodingKey};
use serde::Deserialize;

use super::Algorithm;
use crate::ConfigError;

/// A verification key and the algorithms it may verify.
///
/// `Debug` never shows key material.
#[derive(Clone)]
pub struct JwtKey {
    material: Material,
    algorithms: Vec<Algorithm>,
    kid: Option<String>,
}

#[derive(Clone)]
enum Material {
    Secret(Arc<[u8]>),
    RsaPem(Arc<[u8]>),
    EcPem(Arc<[u8]>),
    EdPem(Arc<[u8]>),
}

impl JwtKey {
    /// An HMAC secret for `algorithm` (HS256, HS384 or HS512).
    pub fn hmac(algorithm: Algorithm, secret: impl AsRef<[u8]>) -> Self {
        Self::with(Material::Secret(Arc::from(secret.as_ref())), algorithm)
    }

    /// An RSA public key (PEM, PKCS#1 or SPKI) for `algorithm` (RS* or PS*).
    pub fn rsa_pem(algorithm: Algorithm, pem: impl AsRef<[u8]>) -> Self {
        Self::with(Material::RsaPem(Arc::from(pem.as_ref())), algorithm)
    }

    /// An EC public key (PEM) for `algorithm` (ES256 or ES384).
    ///
    /// Only low-S signatures verify (`s <= n/2`): a signer that does not normalize S (e.g.
    /// Go's `crypto/ecdsa`, or `jsonwebtoken` itself) produces tokens that are refused about
    /// half the time. Normalize S when signing (`s = n − s` when `s > n/2`), or accept both
    /// forms with `accept_high_s_ecdsa()` on the authenticator's builder.
    pub fn ec_pem(algorithm: Algorithm, pem: impl AsRef<[u8]>) -> Self {
        Self::with(Material::EcPem(Arc::from(pem.as_ref())), algorithm)
    }

    /// An Ed25519 public key (PEM) for EdDSA.
    pub fn ed_pem(pem: impl AsRef<[u8]>) -> Self {
        Self::with(Material::EdPem(Arc::from(pem.as_ref())), Algorithm::EdDSA)
    }

    fn with(material: Material, algorithm: Algorithm) -> Self {
        Self {
            material,
            algorithms: vec![algorithm],
            kid: None,
        }
    }

    /// Also accepts `algorithm` with this key (same family only, checked at build).
    #[must_use]
    pub fn also_allow(mut self, algorithm: Algorithm) -> Self {
        if !self.algorithms.contains(&algorithm) {
            self.algorithms.push(algorithm);
        }
        self
    }

    /// Binds the key to a key id: tokens naming another `kid` never use it.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    fn family(&self) -> AlgorithmFamily {
        match self.material {
            Material::Secret(_) => AlgorithmFamily::Hmac,
            Material::RsaPem(_) => AlgorithmFamily::Rsa,
            Material::EcPem(_) => AlgorithmFamily::Ec,
            Material::EdPem(_) => AlgorithmFamily::Ed,
        }
    }

    pub(crate) fn into_verify_key(self) -> Result<VerifyKey, ConfigError> {
        let family = self.family();
        if let Some(alg) = self.algorithms.iter().find(|a| a.family() != family) {
            return Err(ConfigError::InvalidKey(format!(
                "a {family:?} key cannot verify {alg:?} tokens"
            )));
        }
        let invalid =
            |what: &str| ConfigError::InvalidKey(format!("the {what} could not be parsed"));
        let key = match &self.material {
            Material::Secret(secret) => {
                for alg in &self.algorithms {
                    let min_len = hmac_min_len(*alg);
                    if secret.len() < min_len {
                        return Err(ConfigError::WeakHmacSecret {
                            algorithm: alg_name(*alg),
                            min_len,
                            actual_len: secret.len(),
                        });
                    }
                }
                DecodingKey::from_secret(secret)
            }
            Material::RsaPem(pem) => {
                DecodingKey::from_rsa_pem(pem).map_err(|_| invalid("RSA PEM key"))?
            }
            Material::EcPem(pem) => {
                DecodingKey::from_ec_pem(pem).map_err(|_| invalid("EC PEM key"))?
            }
            Material::EdPem(pem) => {
                DecodingKey::from_ed_pem(pem).map_err(|_| invalid("Ed25519 PEM key"))?
            }
        };
        Ok(VerifyKey::new(
            self.kid.map(Into::into),
            key,
            self.algorithms,
        ))
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("family", &self.family())
            .field("algorithms", &self.algorithms)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
fn hmac_min_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

pub(crate) fn parse_alg(name: &str) -> Option<Algorithm> {
    // Exact, case-sensitive names (RFC 7518 §3.1): `none`, `None`, `HS256 ` are all refused.
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A parsed key, ready to verify; shared by static keys and JWKS key sources.
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<Box<str>>,
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
    /// The same key prepared once per algorithm for AWS-LC (see [`Prepared`]).
    #[cfg(feature = "aws-lc")]
    prepared: Vec<(Algorithm, Prepared)>,
}

impl VerifyKey {
    pub(crate) fn new(kid: Option<Box<str>>, key: DecodingKey, algorithms: Vec<Algorithm>) -> Self {
        Self {
            kid,
            #[cfg(feature = "aws-lc")]
            prepared: algorithms
                .iter()
                .filter_map(|&alg| Some((alg, Prepared::new(alg, &key)?)))
                .collect(),
            key,
            algorithms,
        }
    }

    /// AWS-LC's verdict on `signature` with the key prepared for `alg`, or `None` when it was
    /// not prepared (then the crypto provider decides).
    #[cfg(feature = "aws-lc")]
    pub(crate) fn verify_prepared(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Option<bool> {
        let (_, prepared) = self.prepared.iter().find(|(a, _)| *a == alg)?;
        Some(prepared.verify(message, signature))
    }

    /// Whether this key may verify a token with this `alg` and (optional) `kid`.
    pub(crate) fn matches(&self, alg: Algorithm, kid: Option<&[u8]>) -> bool {
        self.algorithms.contains(&alg)
            && match (kid, &self.kid) {
                (Some(wanted), Some(kid)) => wanted == kid.as_bytes(),
                _ => true,
            }
    }
}

pub(crate) const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Turns one JWK into a verification key, or `None` when it must not or cannot verify.
fn jwk_key(jwk: &Jwk, allowed: &[Algorithm]) -> Option<VerifyKey> {
    let common = &jwk.common;
    // RFC 7517 §4.2/§4.3: an encryption key, or one whose operations exclude `verify`, never verifies.
    if matches!(
        common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    if let Some(ops) = &common.key_operations
        && !ops.iter().any(|op| matches!(op, KeyOperations::Verify))
    {
        return None;
    }
    let family_algs: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            // Moduli under 2048 bits are too weak to trust (NIST SP 800-131A).
            let n = URL_SAFE_NO_PAD.decode(rsa.n.trim_end_matches('=')).ok()?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return None;
            }
            AlgorithmFamily::Rsa.algorithms().to_vec()
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        AlgorithmParameters::OctetKey(_) => AlgorithmFamily::Hmac.algorithms().to_vec(),
        _ => return None,
    };
    let algorithms: Vec<Algorithm> = match common.key_algorithm {
        Some(key_alg) => {
            let alg = parse_alg(&key_alg.to_string())?;
            if !family_algs.contains(&alg) {
                return None;
            }
            vec![alg]
        }
        None => family_algs,
    };
    let algorithms: Vec<Algorithm> = algorithms
        .into_iter()
        .filter(|a| allowed.contains(a))
        .collect();
    if algorithms.is_empty() {
        return None;
    }
    if let AlgorithmParameters::OctetKey(oct) = &jwk.algorithm {
        let secret = URL_SAFE_NO_PAD
            .decode(oct.value.trim_end_matches('='))
            .ok()?;
        if algorithms.iter().any(|a| secret.len() < hmac_min_len(*a)) {
            return None;
        }
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey::new(
        common.key_id.as_deref().map(Into::into),
        key,
        algorithms,
    ))
}

/// A JWK set document; each key stays raw JSON so one malformed key cannot fail the set.
#[derive(Deserialize)]
pub(crate) struct JwkSetDocument {
    pub(crate) keys: Vec<serde_json::Value>,
}

/// One JWK as raw JSON to a verification key, or `None` when malformed or not for verifying.
pub(crate) fn jwk_value_key(value: &serde_json::Value, allowed: &[Algorithm]) -> Option<VerifyKey> {
    let jwk = Jwk::deserialize(value).ok()?;
    jwk_key(&jwk, allowed)
}

/// The usable keys of a configured JWK set document; malformed or non-verifying keys are
/// skipped, a document that is not a JWK set is an error.
pub(crate) fn jwk_set_keys(
    json: &str,
    allowed: &[Algorithm],
) -> Result<Vec<VerifyKey>, ConfigError> {
    let set: JwkSetDocument =
        serde_json::from_str(json).map_err(|_| ConfigError::InvalidValue {
            setting: "JWK set",
            reason: "not a JSON object with a `keys` array".into(),
        })?;
    Ok(set
        .keys
        .iter()
        .filter_map(|v| jwk_value_key(v, allowed))
        .collect())
}

/// A verification key parsed once into AWS-LC's own form.
///
/// `jsonwebtoken`'s AWS-LC verifier sets the key up again on every call: the HMAC key schedule,
/// the RSA modulus, the EC point's on-curve check, and a boxed verifier. These are the same
/// AWS-LC primitives with the same parameters, set up once (DESIGN decision 6), so every token
/// gets the verdict `jsonwebtoken` would give it.
#[cfg(feature = "aws-lc")]
// Built once per key and algorithm and never moved on the request path: size does not matter.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    Hmac(aws_lc_rs::hmac::Key),
    Public(aws_lc_rs::signature::ParsedPublicKey),
}

#[cfg(feature = "aws-lc")]
impl Prepared {
    /// `key` prepared for `alg`, as `jsonwebtoken`'s AWS-LC provider would use it; `None` for an
    /// algorithm outside the key's family or a key AWS-LC refuses (the provider then decides).
    fn new(alg: Algorithm, key: &DecodingKey) -> Option<Self> {
        use aws_lc_rs::{hmac, signature as sig};
        use jsonwebtoken::DecodingKeyKind;

        let params: &'static sig::RsaParameters = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                if key.family() != AlgorithmFamily::Hmac {
                    return None;
                }
                let hash = match alg {
                    Algorithm::HS256 => hmac::HMAC_SHA256,
                    Algorithm::HS384 => hmac::HMAC_SHA384,
                    _ => hmac::HMAC_SHA512,
                };
                let DecodingKeyKind::SecretOrDer(secret) = key.kind() else {
                    return None;
                };
                return Some(Self::Hmac(hmac::Key::new(hash, secret)));
            }
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => {
                let (family, verification): (_, &'static dyn sig::VerificationAlgorithm) = match alg
                {
                    Algorithm::ES256 => (AlgorithmFamily::Ec, &sig::ECDSA_P256_SHA256_FIXED),
                    Algorithm::ES384 => (AlgorithmFamily::Ec, &sig::ECDSA_P384_SHA384_FIXED),
                    _ => (AlgorithmFamily::Ed, &sig::ED25519),
                };
                let DecodingKeyKind::SecretOrDer(bytes) = key.kind() else {
                    return None;
                };
                if key.family() != family {
                    return None;
                }
                return sig::ParsedPublicKey::new(verification, bytes)
                    .ok()
                    .map(Self::Public);
            }
            Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        };
        if key.family() != AlgorithmFamily::Rsa {
            return None;
        }
        let parsed = match key.kind() {
            DecodingKeyKind::SecretOrDer(der) => sig::UnparsedPublicKey::new(params, der).parse(),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                sig::RsaPublicKeyComponents { n, e }.to_parsed_public_key(params)
            }
        };
        parsed.ok().map(Self::Public)
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            // Constant-time comparison of the tags, as `jsonwebtoken`'s HMAC verifier does.
            Self::Hmac(key) => aws_lc_rs::hmac::verify(key, message, signature).is_ok(),
            Self::Public(key) => key.verify_sig(message, signature).is_ok(),
        }
    }
}
