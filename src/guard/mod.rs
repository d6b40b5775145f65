//! Thread ownership: whether the thread or message a request names belongs to the caller.
//!
//! [`ThreadStore`] answers who owns a thread and which thread each message lives in;
//! [`MemoryThreadStore`] keeps that in memory for tests and examples.

mod store;

pub use store::{MemoryThreadStore, MessageThread, StoreError, ThreadOwner, ThreadStore};
