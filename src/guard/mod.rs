//! Thread ownership: whether the thread or message a request names belongs to the caller.
//!
//! [`ThreadGuardLayer`] runs after [`ResourceScopeLayer`](crate::ResourceScopeLayer): for each
//! guarded route it finds the thread id (path, query, header or JSON body) or the message ids,
//! asks a [`ThreadStore`] who owns them, and refuses anything that is not the caller's before
//! the handler runs. Handlers that see ids a layer cannot (inside gRPC messages) call the same
//! checks through [`OwnershipCheck`].
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_scope::guard::MemoryThreadStore;
//! use tower_scope::{ResourceId, ThreadId};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = MemoryThreadStore::new();
//! store.insert_thread(ThreadId::new("t-alice").unwrap(), Some(ResourceId::new("alice").unwrap()));
//! let svc = ServiceBuilder::new()
//!     .layer(tower_scope::mastra::memory_guard(store, "/api").unwrap())
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//!
//! let as_user = |who: &str| {
//!     let mut req = Request::get("/api/memory/threads/t-alice").body(Full::default()).unwrap();
//!     req.extensions_mut().insert(ResourceId::new(who).unwrap()); // ResourceScopeLayer does this
//!     req
//! };
//! assert_eq!(svc.clone().oneshot(as_user("alice")).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(svc.oneshot(as_user("bob")).await.unwrap().status(), StatusCode::FORBIDDEN);
//! # }
//! ```
//!
//! Stores: [`MemoryThreadStore`] keeps ownership in memory for tests and examples;
//! `SqlThreadStore` (features `sqlite`, `postgres`) reads it from SQLite or PostgreSQL, in
//! Mastra's schema by default.
//!
//! The guard decides on a snapshot, so it cannot protect the write that follows: both stores
//! also implement [`ThreadWrites`], writes that check the owner in the same statement or
//! transaction. Handlers that create, upsert or delete by client-chosen ids use them.

mod check;
mod decide;
mod layer;
mod route;
mod service;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod store;
mod write;

pub use crate::http::body::{DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY};
pub use check::{DEFAULT_STORE_TIMEOUT, GuardError, OwnershipCheck, ThreadPresence};
pub use layer::ThreadGuardLayer;
pub use route::GuardRoute;
pub use service::{ResponseFuture, ThreadGuard};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use sql::{DEFAULT_POOL_ACQUIRE_TIMEOUT, SqlThreadStore, TableNames};
pub use store::{
    MemoryThreadStore, MessageThread, StoreError, ThreadOwner, ThreadRecords, ThreadStore,
};

/// The route's thread as the guard read it while checking its owner, for a handler that would
/// otherwise read it again: inserted on guarded reads (GET, HEAD) when
/// [`ThreadGuardLayer::prefetch_thread_records`] is on. The record and the decision come from one
/// lookup, so a read queries the store once. Only the thread row: a handler still reads messages
/// itself (owner-filtered, as always).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefetchedThread(pub ThreadRecord);
pub use write::{MessageRecord, NewMessage, ThreadFields, ThreadRecord, ThreadWrites};

#[cfg(test)]
mod tests;
