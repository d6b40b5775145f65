//! The harness shared with the stable replay test.
#[path = "../../tests/fuzz_harness/mod.rs"]
pub mod harness;
