use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderMap, HeaderValue};

use super::render::{json_error, render};
use super::*;

fn grpc_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc-web+proto"),
    );
    h
}

#[test]
fn missing_credentials_challenge_has_no_error_attribute() {
    let res: Response<()> = render(
        Rejection::new(RejectionKind::MissingCredentials),
        &HeaderMap::new(),
        Some("api"),
    );
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"api\""
    );
}

#[test]
fn invalid_token_challenge_carries_error_and_description() {
    let rejection = Rejection::with_message(RejectionKind::InvalidToken, "The token expired");
    let res: Response<()> = render(rejection, &HeaderMap::new(), Some("api"));
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api", error="invalid_token", error_description="The token expired""#
    );
}

#[test]
fn description_drops_quotes_backslashes_and_non_ascii() {
    let rejection = Rejection::with_message(RejectionKind::InvalidToken, "a\"b\\c\u{e9}d\ne");
    let res: Response<()> = render(rejection, &HeaderMap::new(), None);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token", error_description="abcde""#
    );
}

#[test]
fn insufficient_scope_names_the_scope() {
    let res: Response<()> = render(
        Rejection::insufficient_scope("threads:write"),
        &HeaderMap::new(),
        None,
    );
    assert_eq!(res.status(), 403);
    assert!(
        res.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .ends_with(r#"scope="threads:write""#)
    );
}

#[test]
fn forbidden_and_unavailable_have_no_challenge() {
    for kind in [
        RejectionKind::Forbidden,
        RejectionKind::Unavailable,
        RejectionKind::NotFound,
    ] {
        let res: Response<()> = render(Rejection::new(kind), &HeaderMap::new(), Some("api"));
        assert_eq!(res.status(), kind.status());
        assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}

#[test]
fn grpc_rejection_is_trailers_only_with_percent_encoded_message() {
    let rejection = Rejection::with_message(RejectionKind::Forbidden, "100% denied: é");
    let res: Response<()> = render(rejection, &grpc_headers(), Some("api"));
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/grpc-web+proto"
    );
    assert_eq!(res.headers()["grpc-status"], "7");
    assert_eq!(res.headers()["grpc-message"], "100%25 denied: %C3%A9");
    assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
}

#[test]
fn only_unavailable_tells_the_client_when_to_retry() {
    let res: Response<()> = render(
        Rejection::new(RejectionKind::Unavailable),
        &HeaderMap::new(),
        None,
    );
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()[header::RETRY_AFTER], "5");
    for kind in [
        RejectionKind::BadRequest,
        RejectionKind::Forbidden,
        RejectionKind::Internal,
        RejectionKind::InvalidToken,
    ] {
        let res: Response<()> = render(Rejection::new(kind), &HeaderMap::new(), None);
        assert!(res.headers().get(header::RETRY_AFTER).is_none(), "{kind:?}");
    }
}

#[test]
fn rejection_is_attached_to_the_response() {
    let res: Response<()> = render(
        Rejection::new(RejectionKind::Unavailable),
        &HeaderMap::new(),
        None,
    );
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::Unavailable
    );
}

#[test]
fn json_error_escapes_the_message() {
    assert_eq!(
        json_error("a \"b\"\n", None),
        Bytes::from_static(br#"{"error":"a \"b\"\u000a"}"#)
    );
}
