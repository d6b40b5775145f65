//! How the resource server authenticates itself to the introspection endpoint (RFC 7662 §2.1),
//! and the form it posts.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;

/// How this resource server authenticates to the introspection endpoint (RFC 7662 §2.1 requires
/// the endpoint to demand some authorization, so one is always configured).
///
/// `Debug` shows the method and the client id, never the secret; the secret is never logged or
/// put in an error either.
#[derive(Clone)]
pub struct ClientAuth(Method);

#[derive(Clone)]
enum Method {
    /// `client_secret_basic`: the precomputed, sensitive `Authorization: Basic` value.
    Basic {
        client_id: String,
        header: HeaderValue,
        empty_secret: bool,
    },
    /// `client_secret_post`: id and secret in the form body.
    Post { client_id: String, secret: Secret },
    /// An access token of the resource server's own (RFC 7662 §2.1 names it as an option).
    Bearer { header: HeaderValue },
}

/// A client secret: `Debug` is redacted.
#[derive(Clone)]
struct Secret(Box<str>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 Appendix B).
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn sensitive(value: String) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

impl ClientAuth {
    /// `client_secret_basic` (RFC 6749 §2.3.1): `Authorization: Basic` with the id and secret
    /// each form-encoded (RFC 6749 Appendix B) before they are joined by `:` and base64-encoded,
    /// so an id or secret holding `:`, `%`, `+`, spaces or non-ASCII text arrives intact.
    pub fn basic(client_id: impl Into<String>, secret: impl AsRef<str>) -> Self {
        let client_id = client_id.into();
        let joined = format!(
            "{}:{}",
            form_encode(&client_id),
            form_encode(secret.as_ref())
        );
        // Base64 output is always a valid header value.
        let header = sensitive(format!("Basic {}", STANDARD.encode(joined)))
            .unwrap_or_else(|| HeaderValue::from_static(""));
        Self(Method::Basic {
            client_id,
            header,
            empty_secret: secret.as_ref().is_empty(),
        })
    }

    /// `client_secret_post` (RFC 6749 §2.3.1): `client_id` and `client_secret` in the form body.
    pub fn post(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self(Method::Post {
            client_id: client_id.into(),
            secret: Secret(secret.into().into_boxed_str()),
        })
    }

    /// An access token of this resource server's own, sent as `Authorization: Bearer`.
    pub fn bearer(token: impl AsRef<str>) -> Self {
        let header = sensitive(format!("Bearer {}", token.as_ref()))
            .unwrap_or_else(|| HeaderValue::from_static(""));
        Self(Method::Bearer { header })
    }

    /// What is wrong with this configuration, if anything (checked by `build()`).
    pub(super) fn problem(&self) -> Option<&'static str> {
        match &self.0 {
            Method::Basic {
                client_id,
                empty_secret,
                ..
            } if client_id.is_empty() || *empty_secret => {
                Some("the client id and secret must not be empty")
            }
            Method::Post { client_id, secret } if client_id.is_empty() || secret.0.is_empty() => {
                Some("the client id and secret must not be empty")
            }
            // `bearer` leaves the value empty when the token is not a valid header value.
            Method::Bearer { header } if header.is_empty() => {
                Some("the bearer token must be a non-empty visible-ASCII string")
            }
            _ => None,
        }
    }

    /// The `Authorization` value to send, if this method uses one.
    pub(super) fn authorization(&self) -> Option<&HeaderValue> {
        match &self.0 {
            Method::Basic { header, .. } | Method::Bearer { header } => Some(header),
            Method::Post { .. } => None,
        }
    }

    /// The request body: `token`, the hint, and the client credentials for `client_secret_post`.
    pub(super) fn form(&self, token: &str) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        form.append_pair("token_type_hint", "access_token");
        if let Method::Post { client_id, secret } = &self.0 {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", &secret.0);
        }
        form.finish()
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Method::Basic { client_id, .. } => f
                .debug_struct("ClientAuth::Basic")
                .field("client_id", client_id)
                .field("secret", &Secret("".into()))
                .finish(),
            Method::Post { client_id, secret } => f
                .debug_struct("ClientAuth::Post")
                .field("client_id", client_id)
                .field("secret", secret)
                .finish(),
            Method::Bearer { .. } => f
                .debug_struct("ClientAuth::Bearer")
                .field("token", &Secret("".into()))
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_form_encodes_id_and_secret_before_base64() {
        // RFC 6749 §2.3.1 / Appendix B: space -> '+', reserved and non-ASCII -> %XX.
        let auth = ClientAuth::basic("my client:1", "p@ss w+rd/é%");
        let value = auth.authorization().unwrap();
        assert!(value.is_sensitive());
        let b64 = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        assert_eq!(decoded, "my+client%3A1:p%40ss+w%2Brd%2F%C3%A9%25");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        for auth in [
            ClientAuth::basic("rs", "hunter2-secret"),
            ClientAuth::post("rs", "hunter2-secret"),
            ClientAuth::bearer("hunter2-secret"),
        ] {
            let debug = format!("{auth:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(!debug.contains("aHVudGVy"), "{debug}");
        }
    }

    #[test]
    fn post_puts_the_credentials_in_the_form() {
        let form = ClientAuth::post("rs 1", "s&cret").form("tok=en");
        assert_eq!(
            form,
            "token=tok%3Den&token_type_hint=access_token&client_id=rs+1&client_secret=s%26cret"
        );
        assert!(ClientAuth::post("rs", "x").authorization().is_none());
    }

    #[test]
    fn empty_credentials_are_problems() {
        assert!(ClientAuth::basic("", "x").problem().is_some());
        assert!(ClientAuth::basic("rs", "").problem().is_some());
        assert!(ClientAuth::post("rs", "").problem().is_some());
        assert!(ClientAuth::bearer("bad\ntoken").problem().is_some());
        assert!(ClientAuth::basic("rs", "x").problem().is_none());
    }
}
