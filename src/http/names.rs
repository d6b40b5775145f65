//! The one validator for configured header and cookie names.
//!
//! Both are RFC 9110 `token`s (§5.6.2): a header's field-name is a token (§5.1), and so is an
//! RFC 6265 cookie-name (§4.1.1), so `~`, `!` or `^` are as valid as `-`. Names are checked when
//! a layer is built, never per request.

use http::HeaderName;

use crate::ConfigError;

/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
/// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `name` is an RFC 9110 `token` (`1*tchar`).
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar)
}

/// Parses a configured header name (case-insensitive; stored lowercase).
///
/// # Errors
///
/// [`ConfigError::InvalidHeaderName`] when `name` is not a token.
pub(crate) fn header_name(name: &str) -> Result<HeaderName, ConfigError> {
    let invalid = || ConfigError::InvalidHeaderName(name.to_owned());
    if !is_token(name) {
        return Err(invalid());
    }
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())
}

/// Checks a configured cookie name (case-sensitive, kept as given) for `setting`.
///
/// # Errors
///
/// [`ConfigError::InvalidValue`] for `setting` when `name` is not a token.
pub(crate) fn cookie_name(setting: &'static str, name: &str) -> Result<Box<str>, ConfigError> {
    if !is_token(name) {
        return Err(ConfigError::InvalidValue {
            setting,
            reason:
                "a cookie name is a token (RFC 6265 §4.1.1): letters, digits and !#$%&'*+-.^_`|~"
                    .into(),
        });
    }
    Ok(name.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTING: &str = "cookie name";

    #[test]
    fn plain_names_are_accepted() {
        for name in [
            "x-api-key",
            "authorization",
            "a",
            "X1",
            "session_id",
            "v1.2",
        ] {
            assert!(header_name(name).is_ok(), "{name}");
            assert_eq!(cookie_name(SETTING, name).as_deref(), Ok(name), "{name}");
        }
    }

    #[test]
    fn every_tchar_symbol_is_accepted_tilde_included() {
        for name in [
            "~", "a~b", "!", "#", "$", "%", "&", "'", "*", "+", "-", ".", "^", "_", "`", "|",
        ] {
            assert!(header_name(name).is_ok(), "{name}");
            assert!(cookie_name(SETTING, name).is_ok(), "{name}");
        }
        assert!(header_name("!#$%&'*+-.^_`|~").is_ok());
        assert!(cookie_name(SETTING, "!#$%&'*+-.^_`|~").is_ok());
    }

    #[test]
    fn header_names_are_lowercased_cookie_names_are_kept() {
        assert_eq!(header_name("X-Api-Key").unwrap(), "x-api-key");
        assert_eq!(
            cookie_name(SETTING, "SessionID").as_deref(),
            Ok("SessionID")
        );
    }

    #[test]
    fn an_empty_name_is_refused() {
        assert_eq!(
            header_name(""),
            Err(ConfigError::InvalidHeaderName(String::new()))
        );
        assert!(matches!(
            cookie_name(SETTING, ""),
            Err(ConfigError::InvalidValue {
                setting: SETTING,
                ..
            })
        ));
    }

    #[test]
    fn separators_spaces_and_controls_are_refused() {
        // RFC 9110 §5.6.2 delimiters, whitespace, controls, and `=` / `;` that split cookies.
        for name in [
            "a b", "a:b", "a;b", "a=b", "a,b", "a/b", "a\"b", "a(b", "a)b", "a<b", "a>b", "a@b",
            "a[b", "a]b", "a?b", "a{b", "a}b", "a\\b", "a\tb", "a\nb", "a\0b", "a\x7fb", " a",
            "a ",
        ] {
            assert_eq!(
                header_name(name),
                Err(ConfigError::InvalidHeaderName(name.to_owned())),
                "{name:?}"
            );
            assert!(cookie_name(SETTING, name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn non_ascii_is_refused() {
        for name in ["é", "x-ключ", "a\u{a0}b"] {
            assert!(header_name(name).is_err(), "{name:?}");
            assert!(cookie_name(SETTING, name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn the_cookie_error_names_the_setting_and_the_rule() {
        let err = cookie_name("anonymous cookie", "a;b").unwrap_err();
        assert!(matches!(
            err,
            ConfigError::InvalidValue {
                setting: "anonymous cookie",
                ..
            }
        ));
        assert!(err.to_string().contains("RFC 6265"), "{err}");
    }

    #[test]
    fn tchar_agrees_with_the_http_crate_on_every_byte() {
        // Our grammar must never accept a name `HeaderName` would refuse, nor refuse one it
        // takes: a name that parses here is a name the layer can really send and match.
        for b in 0..=u8::MAX {
            let bytes = [b'x', b];
            let http_ok = HeaderName::from_bytes(&bytes).is_ok();
            let ours = std::str::from_utf8(&bytes).is_ok_and(is_token);
            assert_eq!(ours, http_ok, "byte {b:#04x}");
        }
    }
}
