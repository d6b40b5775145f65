//! The CORS policy as configured, with the invariants each setter checks: `*` only alone,
//! no empty origin list, credentials only for origins somebody named.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::header::{HeaderName, HeaderValue};

use super::config::{AllowHeaders, AllowOrigin, Config, STAR};
use super::origin::OriginRule;
use crate::ConfigError;

pub(super) type OriginPredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Which origins the policy allows, as configured.
#[derive(Clone, Default)]
pub(super) enum Origins {
    /// No origin setter was called yet: no cross-origin request is allowed.
    #[default]
    Unset,
    Any,
    Mirror,
    /// Listed rules and an optional predicate; a lone `*` in the list (`stars == 1`, nothing
    /// else) means any. The `*` is counted, not dropped, so a later addition is still refused.
    List {
        rules: Vec<OriginRule>,
        stars: usize,
        predicate: Option<OriginPredicate>,
    },
}

/// A method or header list as configured: values, `*`, or the request's own (mirror).
#[derive(Clone, Debug, Default)]
pub(super) enum Values<T> {
    #[default]
    Unset,
    Any,
    Mirror,
    /// Like [`Origins::List`]: a lone `*` means any, and is counted so a later addition fails.
    List {
        values: Vec<T>,
        stars: usize,
    },
}

impl<T> Values<T> {
    pub(super) fn listed(values: Vec<T>) -> Self {
        Self::List { values, stars: 0 }
    }

    /// Whether the answer is `*`: [`Values::Any`], or a list that is a lone `*`.
    fn is_any(&self) -> bool {
        match self {
            Self::Any => true,
            Self::List { values, stars } => values.is_empty() && *stars > 0,
            Self::Unset | Self::Mirror => false,
        }
    }

    /// Adds values, each parsed by `parse`; `*` alone means any, `*` beside anything is refused.
    pub(super) fn extend<I>(
        &mut self,
        setting: &'static str,
        new: I,
        parse: impl Fn(&str) -> Result<T, ConfigError>,
    ) -> Result<(), ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let new: Vec<String> = new
            .into_iter()
            .map(|v| v.as_ref().trim().to_owned())
            .collect();
        let (mut values, mut stars) = match std::mem::take(self) {
            Self::List { values, stars } => (values, stars),
            _ => (Vec::new(), 0),
        };
        let new_stars = new.iter().filter(|v| *v == "*").count();
        stars += new_stars;
        // Checked before parsing, so `*` in a list is named as such even next to a bad value.
        if stars > 0 && stars + values.len() + (new.len() - new_stars) > 1 {
            return Err(ConfigError::WildcardInList { setting });
        }
        for value in new.iter().filter(|v| *v != "*") {
            values.push(parse(value)?);
        }
        *self = Self::List { values, stars };
        Ok(())
    }
}

/// The policy as configured; always valid, because every setter checks what it changes.
#[derive(Clone, Default)]
pub(super) struct Policy {
    pub(super) origins: Origins,
    pub(super) methods: Values<Method>,
    pub(super) headers: Values<HeaderName>,
    pub(super) expose: Values<HeaderName>,
    pub(super) max_age: Option<Duration>,
    pub(super) credentials: bool,
    /// Set only by `allow_any_origin_with_credentials_dangerously`: mirror + credentials is meant.
    pub(super) any_origin_with_credentials: bool,
    pub(super) private_network: bool,
    pub(super) strict: bool,
}

impl Policy {
    pub(super) fn add_origins<I>(&mut self, new: I) -> Result<(), ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let new: Vec<String> = new
            .into_iter()
            .map(|o| o.as_ref().trim().to_owned())
            .collect();
        let (mut rules, mut stars, predicate) = match std::mem::take(&mut self.origins) {
            Origins::List {
                rules,
                stars,
                predicate,
            } => (rules, stars, predicate),
            _ => (Vec::new(), 0, None),
        };
        let new_stars = new.iter().filter(|o| *o == "*").count();
        stars += new_stars;
        if stars > 0 && (stars + rules.len() + (new.len() - new_stars) > 1 || predicate.is_some()) {
            return Err(ConfigError::WildcardInList {
                setting: "allow_origins",
            });
        }
        if stars == 0 && rules.is_empty() && new.is_empty() && predicate.is_none() {
            // Typically an unset environment variable: the policy would allow nobody.
            return Err(ConfigError::InvalidValue {
                setting: "allow_origins",
                reason: "no origin is allowed: the list is empty; name at least one origin".into(),
            });
        }
        for origin in new.iter().filter(|o| *o != "*") {
            rules.push(OriginRule::parse(origin)?);
        }
        self.origins = Origins::List {
            rules,
            stars,
            predicate,
        };
        Ok(())
    }

    pub(super) fn set_predicate(&mut self, new: OriginPredicate) -> Result<(), ConfigError> {
        match &mut self.origins {
            Origins::List { stars, .. } if *stars > 0 => Err(ConfigError::WildcardInList {
                setting: "allow_origins",
            }),
            Origins::List { predicate, .. } => {
                *predicate = Some(new);
                Ok(())
            }
            other => {
                *other = Origins::List {
                    rules: Vec::new(),
                    stars: 0,
                    predicate: Some(new),
                };
                Ok(())
            }
        }
    }

    /// Refuses credentials for an origin nobody named, whichever setter completed the mix.
    pub(super) fn check_credentials(&self) -> Result<(), ConfigError> {
        if !self.credentials {
            return Ok(());
        }
        // Mirroring with credentials hands every site the user's session, just like `*` would
        // if browsers allowed it (Fetch §3.2.5); so does `null`, which any page can send.
        let any_origin = match &self.origins {
            Origins::Mirror if !self.any_origin_with_credentials => {
                return Err(ConfigError::CredentialsWithMirroredOrigin);
            }
            Origins::List { stars, .. } if *stars > 0 => true,
            Origins::List { rules, .. } if rules.iter().any(OriginRule::is_null) => {
                return Err(ConfigError::CredentialsWithNullOrigin);
            }
            // `*.com` names every site under a TLD. (Public suffixes such as `*.github.io`
            // cannot be told apart without a suffix list; the docs say so.)
            Origins::List { rules, .. } => {
                if let Some(rule) = rules.iter().find(|r| r.is_top_level_wildcard()) {
                    return Err(ConfigError::CredentialsWithTopLevelWildcard {
                        origin: rule.as_written(),
                    });
                }
                false
            }
            Origins::Any => true,
            Origins::Unset | Origins::Mirror => false,
        };
        for (setting, any) in [
            ("allow_origins", any_origin),
            ("allow_methods", self.methods.is_any()),
            ("allow_headers", self.headers.is_any()),
            ("expose_headers", self.expose.is_any()),
        ] {
            if any {
                return Err(ConfigError::CredentialsWithWildcard { setting });
            }
        }
        Ok(())
    }

    /// Builds every constant header value; cannot fail, every value was checked when set.
    pub(super) fn compile(&self) -> Config {
        let origin = match &self.origins {
            Origins::Unset => AllowOrigin::List {
                rules: Arc::new([]),
                predicate: None,
            },
            Origins::Any => AllowOrigin::Any,
            Origins::List { stars, .. } if *stars > 0 => AllowOrigin::Any,
            Origins::Mirror => AllowOrigin::Mirror,
            Origins::List {
                rules, predicate, ..
            } => AllowOrigin::List {
                rules: rules.as_slice().into(),
                predicate: predicate.clone(),
            },
        };
        let allow_methods = match &self.methods {
            any if any.is_any() => Some(STAR),
            Values::List { values, .. } => joined(values.iter().map(Method::as_str)),
            _ => None,
        };
        let allow_headers = match &self.headers {
            any if any.is_any() => AllowHeaders::Fixed(Some(STAR)),
            Values::Mirror => AllowHeaders::Mirror,
            Values::List { values, .. } => AllowHeaders::Fixed(header_list(values)),
            _ => AllowHeaders::Fixed(None),
        };
        let expose_headers = match &self.expose {
            any if any.is_any() => Some(STAR),
            Values::List { values, .. } => header_list(values),
            _ => None,
        };

        // Vary names only what the answer really depends on (RFC 9110 §12.5.5).
        let origin_varies = !matches!(origin, AllowOrigin::Any);
        let vary_actual = origin_varies.then_some(HeaderValue::from_static("origin"));
        let vary_preflight = joined(
            [
                origin_varies.then_some("origin"),
                matches!(allow_headers, AllowHeaders::Mirror)
                    .then_some("access-control-request-headers"),
                self.private_network
                    .then_some("access-control-request-private-network"),
            ]
            .into_iter()
            .flatten(),
        );

        Config {
            origin,
            allow_methods,
            allow_headers,
            expose_headers,
            max_age: self.max_age.map(|d| HeaderValue::from(d.as_secs())),
            credentials: self.credentials,
            private_network: self.private_network,
            strict: self.strict,
            vary_actual,
            vary_preflight,
        }
    }
}

/// Header names joined by `, ` once each (names are case-insensitive; sent lowercase).
fn header_list(names: &[HeaderName]) -> Option<HeaderValue> {
    let mut unique: Vec<&HeaderName> = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    joined(unique.into_iter().map(HeaderName::as_str))
}

/// Parses one `allow_methods` value.
pub(super) fn method(value: &str) -> Result<Method, ConfigError> {
    Method::from_bytes(value.as_bytes()).map_err(|_| ConfigError::InvalidValue {
        setting: "allow_methods",
        reason: format!("{value:?} is not an HTTP method"),
    })
}

/// `a, b, c` as one header value; `None` for no values.
fn joined<'a>(values: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let joined = values.collect::<Vec<_>>().join(", ");
    // Every piece was validated as a token, so this only fails for an empty list.
    (!joined.is_empty())
        .then(|| HeaderValue::try_from(joined).ok())
        .flatten()
}
