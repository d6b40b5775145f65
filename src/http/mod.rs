//! HTTP facts shared by every layer, each in one place: what a request looks like on the wire
//! ([`protocol`]) and which header and cookie names a configuration may use ([`names`]).
//!
//! Crate-private: these are mechanisms, not API.

pub(crate) mod names;
pub(crate) mod protocol;
