//! Unit tests of the authorization layer.
