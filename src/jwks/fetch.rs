//! The HTTP side of a key source: URL policy, timeouts, a size cap and `Cache-Control`.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use http::header::CACHE_CONTROL;
use reqwest::{Client, Url, redirect};

use crate::ConfigError;

/// Why one fetch failed. Safe to log: it never contains a response body or a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// Connect or total timeout.
    Timeout,
    /// Connection refused, TLS failure, reset...
    Network,
    /// A non-2xx status.
    Status(u16),
    /// The body is over the configured size cap.
    TooLarge,
    /// The body is not the JSON document we expect.
    Malformed,
    /// The discovery document names another issuer (OIDC Discovery §4.3).
    IssuerMismatch,
    /// A discovered `jwks_uri` breaks a rule configured URLs follow (the reason says which).
    RefusedJwksUri(&'static str),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Network => f.write_str("network error"),
            Self::Status(code) => write!(f, "HTTP status {code}"),
            Self::TooLarge => f.write_str("response larger than the configured cap"),
            Self::Malformed => f.write_str("malformed JSON document"),
            Self::IssuerMismatch => {
                f.write_str("the discovery document's `issuer` differs from the configured issuer")
            }
            Self::RefusedJwksUri(reason) => write!(f, "the discovered `jwks_uri` {reason}"),
        }
    }
}

/// Parses `url` and checks it against [`key_url_rules`]: for configured URLs.
pub(crate) fn checked_url(setting: &'static str, url: &str) -> Result<Url, ConfigError> {
    key_url(url).map_err(|reason| ConfigError::InvalidValue {
        setting,
        reason: reason.into(),
    })
}

/// Parses a URL a key fetch may go to, configured or discovered (OIDC discovery's `jwks_uri`
/// is held to the same rules: whoever serves the discovery document must not be able to
/// loosen them), or says which rule it breaks.
pub(crate) fn key_url(url: &str) -> Result<Url, &'static str> {
    let parsed = Url::parse(url).map_err(|_| "must be an absolute URL")?;
    key_url_rules(&parsed)?;
    Ok(parsed)
}

/// The rules of every key URL: no credentials, HTTPS (plain HTTP to loopback hosts only).
fn key_url_rules(url: &Url) -> Result<(), &'static str> {
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in logs and error messages, and reqwest would send them
        // as Basic authentication.
        return Err("must not contain credentials");
    }
    if !is_allowed(url) {
        return Err("must use https (http is allowed for loopback hosts only)");
    }
    Ok(())
}

/// HTTPS anywhere; plain HTTP only to 127.0.0.0/8, ::1 and `localhost`.
fn is_allowed(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host_str().is_some(),
        "http" => url.host_str().is_some_and(|host| {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

/// A `reqwest` client with the limits every key fetch needs.
pub(crate) struct Http {
    client: Client,
    max_bytes: usize,
}

impl Http {
    pub(crate) fn new(
        connect_timeout: Duration,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Self, ConfigError> {
        let client = Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            // A redirect could leave HTTPS or loopback; key URLs are configured exactly.
            .redirect(redirect::Policy::none())
            .build()
            .map_err(|_| ConfigError::InvalidValue {
                setting: "HTTP client",
                reason: "could not be built (TLS backend unavailable)".into(),
            })?;
        Ok(Self { client, max_bytes })
    }

    /// GETs `url` and returns its body and `Cache-Control: max-age`, if any.
    pub(crate) async fn get(&self, url: &Url) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        let response = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(classify)?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = self.body(response).await?;
        Ok((body, max_age))
    }

    /// POSTs a form body (`application/x-www-form-urlencoded`, already encoded) with an
    /// optional `Authorization` value, and returns the status and the (capped) body whatever
    /// the status, for endpoints whose error answers carry a JSON error code.
    #[cfg(feature = "introspection")]
    pub(crate) async fn post_form(
        &self,
        url: &Url,
        authorization: Option<&http::HeaderValue>,
        form: String,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        if let Some(value) = authorization {
            request = request.header(http::header::AUTHORIZATION, value.clone());
        }
        let response = request.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        Ok((status, self.body(response).await?))
    }

    /// Reads a body up to the size cap.
    async fn body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        // Chunked responses have no length: count as we go so a huge body is cut short.
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn classify(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Network
    }
}

/// `max-age` from a `Cache-Control` value; `no-cache`/`no-store` count as zero (RFC 9111 §5.2.2).
pub(crate) fn max_age(value: &str) -> Option<Duration> {
    let mut found = None;
    for directive in value.split(',').map(str::trim) {
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        if let Some((name, secs)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            found = secs
                .trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_allowed() {
        for ok in [
            "https://auth.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://127.1.2.3/jwks",
            "http://[::1]:9000/jwks",
            "http://localhost/jwks",
        ] {
            assert!(checked_url("jwks", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://auth.example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.evil.com/jwks",
            "ftp://127.0.0.1/jwks",
            "https://user:pw@auth.example.com/jwks",
            "/relative",
        ] {
            assert!(checked_url("jwks", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_control_max_age_is_parsed() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            max_age("Max-Age=60, must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
