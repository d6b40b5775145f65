//! Thread ownership: whether the thread or message a request names belongs to the caller.
//!
//! [`ThreadStore`] answers who owns a thread and which thread each message lives in;
//! [`MemoryThreadStore`] keeps that in memory for tests and examples; `SqlThreadStore` (features
//! `sqlite`, `postgres`) reads it from SQLite or PostgreSQL, in Mastra's schema by default.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod store;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use sql::{SqlThreadStore, TableNames};
pub use store::{MemoryThreadStore, MessageThread, StoreError, ThreadOwner, ThreadStore};
