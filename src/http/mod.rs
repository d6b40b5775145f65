//! HTTP mechanics shared by every layer, each in one place: what a request looks like on the
//! wire ([`protocol`]), which header and cookie names a configuration may use ([`names`]),
//! query rewriting, body buffering and lossless JSON edits.
//!
//! Crate-private: these are mechanisms, not API.

#[cfg(feature = "json-body")]
pub(crate) mod body;
#[cfg(feature = "json-body")]
pub(crate) mod json;
pub(crate) mod names;
pub(crate) mod protocol;
pub(crate) mod query;
