//! HTTP mechanics the layers share: query rewriting, body buffering, lossless JSON edits.

#[cfg(feature = "json-body")]
pub(crate) mod body;
#[cfg(feature = "json-body")]
pub(crate) mod json;
pub(crate) mod query;
