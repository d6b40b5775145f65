//! Allowed-origin rules: exact origins and wildcard subdomains, parsed and checked when configured.

use crate::ConfigError;

/// One allowed origin, in the lowercase serialization browsers send (RFC 6454 §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OriginRule {
    /// `https://app.example.com`, `http://127.0.0.1:8080` or `null`.
    Exact(Box<str>),
    /// `https://*.example.com[:port]`: one or more labels before `suffix`, same scheme and port.
    Subdomains {
        /// `https://`
        prefix: Box<str>,
        /// `.example.com` or `.example.com:8443`
        suffix: Box<str>,
    },
}

impl OriginRule {
    /// Parses `scheme://host[:port]`, `scheme://*.host[:port]` or `null`.
    pub(super) fn parse(origin: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidOrigin {
            origin: origin.to_owned(),
            reason,
        };
        let lower = origin.to_ascii_lowercase();
        if lower == "null" {
            return Ok(Self::Exact(lower.into()));
        }
        let Some((scheme, authority)) = lower.split_once("://") else {
            return Err(invalid(
                "write `scheme://host[:port]`, e.g. `https://app.example.com`",
            ));
        };
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(invalid("the scheme is not valid"));
        }
        if authority.contains(['/', '?', '#']) {
            return Err(invalid(
                "an origin has no path, query or trailing `/`: browsers send `scheme://host[:port]`",
            ));
        }
        if authority.contains('@') {
            return Err(invalid("an origin has no user info"));
        }
        let (host, port) = split_port(authority)
            .ok_or_else(|| invalid("the port is not a number in 1..=65535"))?;
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if matches!(
            (scheme, port),
            ("https", Some("443")) | ("http", Some("80"))
        ) {
            return Err(invalid("browsers omit the default port: remove it"));
        }
        let wildcard = host.strip_prefix("*.");
        let plain = wildcard.unwrap_or(host);
        let valid_host = plain.starts_with('[') && plain.ends_with(']')
            || (!plain.is_empty()
                && !plain.starts_with('.')
                && !plain.ends_with('.')
                && !plain.contains("..")
                && plain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        if !valid_host {
            return Err(invalid(
                "the host may use letters, digits, `-` and `.`, and `*` only as the whole first label (`https://*.example.com`)",
            ));
        }
        match wildcard {
            Some(rest) => {
                let mut suffix = String::with_capacity(rest.len() + 7);
                suffix.push('.');
                suffix.push_str(rest);
                if let Some(port) = port {
                    suffix.push(':');
                    suffix.push_str(port);
                }
                Ok(Self::Subdomains {
                    prefix: format!("{scheme}://").into(),
                    suffix: suffix.into(),
                })
            }
            None => Ok(Self::Exact(lower.into())),
        }
    }

    /// The rule as an origin pattern (`https://*.example.com`), for error messages.
    pub(super) fn as_written(&self) -> String {
        match self {
            Self::Exact(exact) => exact.to_string(),
            Self::Subdomains { prefix, suffix } => format!("{prefix}*{suffix}"),
        }
    }

    /// Whether this is a wildcard over a single label (`https://*.com`, `http://*.localhost:3000`):
    /// every site under a top-level domain matches it.
    pub(super) fn is_top_level_wildcard(&self) -> bool {
        match self {
            Self::Subdomains { suffix, .. } => {
                let host = suffix.trim_start_matches('.');
                let host = host.rsplit_once(':').map_or(host, |(host, _port)| host);
                !host.contains('.')
            }
            Self::Exact(_) => false,
        }
    }

    /// Whether this is the opaque origin `null`, which any page can send (a sandboxed iframe, a
    /// `data:` URL, a local file), so it names nobody in particular.
    pub(super) fn is_null(&self) -> bool {
        matches!(self, Self::Exact(exact) if &**exact == "null")
    }

    /// Whether a request's `Origin` value is allowed by this rule (ASCII case-insensitive).
    pub(super) fn matches(&self, origin: &[u8]) -> bool {
        match self {
            Self::Exact(exact) => origin.eq_ignore_ascii_case(exact.as_bytes()),
            Self::Subdomains { prefix, suffix } => {
                let (prefix, suffix) = (prefix.as_bytes(), suffix.as_bytes());
                if origin.len() <= prefix.len() + suffix.len()
                    || !origin[..prefix.len()].eq_ignore_ascii_case(prefix)
                    || !origin[origin.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                {
                    return false;
                }
                // The labels `*` stands for: no port, path or user info can hide in them.
                let labels = &origin[prefix.len()..origin.len() - suffix.len()];
                labels.first() != Some(&b'.')
                    && labels.last() != Some(&b'.')
                    && !labels.windows(2).any(|w| w == b"..")
                    && labels
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
            }
        }
    }
}

/// Splits `host[:port]` (IPv6 hosts in brackets); `None` when the port is not valid.
fn split_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |i| i + 1)
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, rest) = authority.split_at(host_end);
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Some((host, None)),
        None => None,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && !port.starts_with('0'))
            .map(|_| (host, Some(port))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> OriginRule {
        OriginRule::parse(s).unwrap()
    }

    #[test]
    fn exact_origin_matches_case_insensitively_and_nothing_else() {
        let r = rule("https://App.example.com");
        assert!(r.matches(b"https://app.example.com"));
        assert!(r.matches(b"HTTPS://APP.EXAMPLE.COM"));
        assert!(!r.matches(b"http://app.example.com"));
        assert!(!r.matches(b"https://app.example.com:8443"));
        assert!(!r.matches(b"https://app.example.com.evil.test"));
    }

    #[test]
    fn wildcard_subdomain_respects_scheme_port_and_label_boundaries() {
        let r = rule("https://*.example.com");
        assert!(r.matches(b"https://a.example.com"));
        assert!(r.matches(b"https://a.b.example.com"));
        assert!(!r.matches(b"https://example.com"));
        assert!(!r.matches(b"https://evilexample.com"));
        assert!(!r.matches(b"http://a.example.com"));
        assert!(!r.matches(b"https://a.example.com:8443"));
        assert!(!r.matches(b"https://a.example.com.evil.test"));
        assert!(!r.matches(b"https://x@a.example.com"));
        assert!(!r.matches(b"https://.example.com"));
        let with_port = rule("http://*.local.test:8080");
        assert!(with_port.matches(b"http://api.local.test:8080"));
        assert!(!with_port.matches(b"http://api.local.test"));
        assert!(!with_port.matches(b"http://api.local.test:9090"));
    }

    #[test]
    fn malformed_origins_are_config_errors() {
        for bad in [
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "app.example.com",
            "https://",
            "https://a.*.example.com",
            "https://*example.com",
            "https://app.example.com:99999",
            "https://app.example.com:443",
            "https://user@app.example.com",
        ] {
            assert!(
                matches!(
                    OriginRule::parse(bad),
                    Err(ConfigError::InvalidOrigin { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn ipv6_null_and_ports_parse() {
        assert!(rule("http://[::1]:3000").matches(b"http://[::1]:3000"));
        assert!(rule("null").matches(b"null"));
        assert!(rule("http://127.0.0.1:5173").matches(b"http://127.0.0.1:5173"));
    }
}
