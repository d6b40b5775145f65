//! tower-scope in front of a tonic gRPC server: `Server::builder().layer(..)` runs auth,
//! authorization (a permission per RPC) and scope for every call (the standard health service
//! included), and the handler checks the thread id that lives inside the protobuf message with
//! `OwnershipCheck`. Clients get `Unauthenticated`, `PermissionDenied` (`Missing required
//! permission: memory:read` for a token whose `scope` lacks it), `NotFound` or `Unavailable`
//! with a message.
//!
//! Browsers reach the same service through gRPC-web (tonic-web), with the `grpc_web(origins)` CORS
//! preset, in the order CORS -> grpc-web -> auth: CORS answers preflights before grpc-web
//! (which refuses plain HTTP/1.1) and auth see them, and decorates auth's answers.
//!
//! ```text
//! cargo run --example tonic_grpc --features tonic,guard,cors,authz
//! ```
//!
//! `HOST`, `PORT` (default 50051) and `JWT_SECRET` as in the memory server; dev tokens are
//! printed when `JWT_SECRET` is unset. `CORS_ORIGINS` (comma list) names the gRPC-web origins
//! (default `http://localhost:3000`).

#[path = "../shared/demo.rs"]
pub mod demo;

/// Code generated from `memory.proto` (checked in, so building needs no `protoc`).
pub mod memory {
    #![allow(clippy::all, missing_docs, unreachable_pub)]
    include!("memory.v1.rs");
}

use demo::Claims;
use memory::threads_server::{Threads, ThreadsServer};
use memory::{GetThreadRequest, Thread, WhoAmIRequest, WhoAmIResponse};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tower_scope::authz::{AuthorizeLayer, PermissionSource, Requirement};
use tower_scope::guard::{OwnershipCheck, ThreadStore};
use tower_scope::{Authenticated, CorsLayer, ResourceId, ResourceScopeLayer, ThreadId};

/// The service: reads what the layers inserted, checks thread ids itself.
pub struct MemoryService<S> {
    guard: OwnershipCheck<S>,
}

fn scope<T>(request: &Request<T>) -> Result<ResourceId, Status> {
    // Only reachable without the layers: a wiring bug, answered fail-closed.
    request
        .extensions()
        .get::<ResourceId>()
        .cloned()
        .ok_or_else(|| Status::permission_denied("request is not scoped"))
}

#[tonic::async_trait]
impl<S: ThreadStore> Threads for MemoryService<S> {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let user = request
            .extensions()
            .get::<Authenticated<Claims>>()
            .ok_or_else(|| Status::unauthenticated("no user"))?;
        Ok(Response::new(WhoAmIResponse {
            user: user.sub.clone(),
            resource_id: scope(&request)?.to_string(),
        }))
    }

    async fn get_thread(
        &self,
        request: Request<GetThreadRequest>,
    ) -> Result<Response<Thread>, Status> {
        let scope = scope(&request)?;
        let thread = ThreadId::new(&request.get_ref().thread_id)
            .map_err(|_| Status::invalid_argument("invalid thread id"))?;
        // The id is inside the message, where no layer can see it: the same check, by hand.
        self.guard.check_thread(&scope, &thread).await?;
        Ok(Response::new(Thread {
            id: thread.to_string(),
            resource_id: scope.to_string(),
        }))
    }
}

/// The caller's permissions: what the token's `scope` lists, or — a first-party token that
/// lists nothing — `memory:read`. Implemented by hand to show the trait; no allocation.
#[derive(Debug, Clone, Copy)]
pub struct ScopeOrUser;

impl PermissionSource for ScopeOrUser {
    type User = Claims;

    fn any_granted(&self, user: &Claims, wanted: &mut dyn FnMut(&str) -> bool) -> bool {
        match &user.scope {
            Some(scope) => scope.split_ascii_whitespace().any(|p| wanted(p)),
            None => wanted("memory:read"),
        }
    }
}

/// A permission per RPC; any other method (the service grows, a path is misspelled) is
/// refused with `PermissionDenied`, never passed.
pub fn authorization() -> AuthorizeLayer<ScopeOrUser> {
    let read = || Requirement::all_of(["memory:read"]).expect("a valid permission");
    AuthorizeLayer::new(ScopeOrUser)
        .grpc_method("/memory.v1.Threads/WhoAmI", Requirement::Authenticated)
        .and_then(|a| a.grpc_method("/memory.v1.Threads/GetThread", read()))
        .and_then(|a| a.grpc_method("/grpc.health.v1.Health/Check", Requirement::Authenticated))
        .and_then(|a| a.grpc_method("/grpc.health.v1.Health/Watch", Requirement::Authenticated))
        .expect("valid gRPC method paths")
}

/// Serves the gRPC API and the standard health service on `listener`.
pub async fn serve<S: ThreadStore>(listener: tokio::net::TcpListener, store: S) {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ThreadsServer<MemoryService<S>>>()
        .await;
    let origins = std::env::var("CORS_ORIGINS").unwrap_or_else(|_| "http://localhost:3000".into());
    let cors = CorsLayer::grpc_web(origins.split(',').map(str::trim).filter(|o| !o.is_empty()))
        .expect("CORS_ORIGINS must be origins like https://app.example.com");
    Server::builder()
        .accept_http1(true)
        // ServiceBuilder order: the first .layer() is the outermost.
        .layer(cors)
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(demo::auth_layer())
        .layer(authorization())
        .layer(ResourceScopeLayer::new(demo::resource_of))
        .add_service(health)
        .add_service(ThreadsServer::new(MemoryService {
            guard: OwnershipCheck::new(store),
        }))
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
        .expect("server error");
}

#[tokio::main]
async fn main() {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "50051".into());
    let listener = tokio::net::TcpListener::bind(format!("{host}:{port}"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    if std::env::var("JWT_SECRET").is_err() {
        for user in ["alice", "bob"] {
            println!(
                "{user}: grpcurl -plaintext -H 'authorization: Bearer {}' {addr} memory.v1.Threads/WhoAmI",
                demo::token(user, None)
            );
        }
    }
    println!("gRPC listening on {addr}");
    serve(listener, demo::seeded_store()).await;
}
