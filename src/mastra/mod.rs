//! Mastra's policy as presets: the memory API's route tables for the scope and guard layers,
//! and the error strings Mastra's clients see.
//!
//! ```
//! use tower_scope::guard::MemoryThreadStore;
//! use tower_scope::{ResourceScopeLayer, mastra};
//!
//! let scope = ResourceScopeLayer::new(|user: &String| Some(user.clone()))
//!     .body_rules(mastra::memory_body_rules("/api")?);
//! let guard = mastra::memory_guard(MemoryThreadStore::new(), "/api")?;
//! # let _ = (scope, guard);
//! # Ok::<(), tower_scope::ConfigError>(())
//! ```

pub(crate) mod messages;
#[cfg(feature = "guard")]
mod routes;

#[cfg(feature = "guard")]
pub use routes::{memory_body_rules, memory_guard, memory_guard_routes};
