//! `WWW-Authenticate: DPoP` challenges (RFC 9449 §7.1) and the replay record after a token
//! verified.

use http::header::{self, HeaderMap, HeaderValue};
use http::{HeaderName, Response};

use super::{DpopConfig, ProofError, Verified};
use crate::http::protocol::is_grpc;
use crate::reject::{self, Rejection, RejectionKind};

/// The fixed description of a replayed proof (RFC 9449 §11.1).
const REPLAYED: &str = "The DPoP proof was already used";
const NONCE_NEEDED: &str = "A DPoP nonce from this server is required";

/// `DPoP-Nonce` (RFC 9449 §8.1).
static DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Records a verified proof's `jti` for its key; a second use is refused.
pub(crate) fn record(config: &DpopConfig, proof: &Verified) -> Result<(), Rejection> {
    match config
        .replay
        .first_use(&proof.replay_key, proof.expires_at, config.now())
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(Rejection::with_message(
            RejectionKind::InvalidToken,
            REPLAYED,
        )),
        Err(err) => Err(err.into()),
    }
}

/// RFC 9449 §8.2: a successful answer may carry the next nonce, so the client need not fail
/// once when the current one rotates out.
pub(crate) fn fresh_nonce<B>(config: &DpopConfig, response: &mut Response<B>) {
    if let Some(nonces) = &config.nonces
        && let Ok(nonce) = HeaderValue::try_from(nonces.issue())
    {
        response.headers_mut().insert(DPOP_NONCE.clone(), nonce);
    }
}

/// A refusal of the request's proof, with its `DPoP` challenge.
pub(crate) fn render_proof<B: Default>(
    err: ProofError,
    headers: &HeaderMap,
    realm: Option<&str>,
    config: &DpopConfig,
) -> Response<B> {
    let (code, message) = match err {
        ProofError::Invalid(message) => ("invalid_dpop_proof", message),
        ProofError::UseNonce => ("use_dpop_nonce", NONCE_NEEDED),
    };
    let rejection = Rejection::with_message(RejectionKind::InvalidToken, message);
    let mut response = reject::render(rejection, headers, realm);
    if !is_grpc(headers) {
        let value = challenge(config, Some((code, message)));
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
        if err == ProofError::UseNonce
            && let Some(nonces) = &config.nonces
            && let Ok(nonce) = HeaderValue::try_from(nonces.issue())
        {
            response.headers_mut().insert(DPOP_NONCE.clone(), nonce);
        }
    }
    response
}

/// Any other refusal of a layer with DPoP on: the `Bearer` challenge plus `DPoP algs=...`,
/// or for a request that used the `DPoP` scheme, a `DPoP` challenge with the error.
pub(crate) fn render<B: Default>(
    rejection: Rejection,
    headers: &HeaderMap,
    realm: Option<&str>,
    resource_metadata: Option<&str>,
    config: &DpopConfig,
) -> Response<B> {
    if rejection.message() == REPLAYED {
        let err = ProofError::Invalid(REPLAYED);
        return render_proof(err, headers, realm, config);
    }
    let code = rejection.kind().bearer_error();
    let description = rejection.description().to_owned();
    // The Bearer challenge names the RFC 9728 metadata as without DPoP.
    let mut response = reject::render_with(rejection, headers, realm, resource_metadata);
    if is_grpc(headers) || !response.headers().contains_key(header::WWW_AUTHENTICATE) {
        return response;
    }
    let used_dpop = headers.get(header::AUTHORIZATION).is_some_and(|v| {
        v.as_bytes()
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"dpop "))
    });
    let dpop = challenge(config, code.map(|c| (c, description.as_str())));
    let challenges = response.headers_mut();
    if used_dpop {
        challenges.insert(header::WWW_AUTHENTICATE, dpop);
    } else if code != Some("invalid_request") {
        // RFC 9449 §7.1: a server accepting both schemes offers both.
        challenges.append(header::WWW_AUTHENTICATE, challenge(config, None));
    }
    response
}

fn challenge(config: &DpopConfig, error: Option<(&str, &str)>) -> HeaderValue {
    let mut value = format!("DPoP algs=\"{}\"", config.algs);
    if let Some((code, description)) = error {
        value.push_str(", error=\"");
        value.push_str(code);
        value.push_str("\", error_description=");
        reject::push_quoted_safe(&mut value, description);
    }
    HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("DPoP"))
}
