//! A real tonic server (the standard gRPC health service) behind the layers, called by a real
//! tonic client: codes and messages must survive the trip.
#![cfg(all(feature = "jwt", any(feature = "aws-lc", feature = "rust-crypto")))]

mod common;

use common::{Claims, authenticator, resource_of, token_for};
use tonic::metadata::MetadataValue;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower_scope::{Authenticated, BearerAuthLayer, ResourceId, ResourceScopeLayer};

/// A health service that reports what the layers handed it in response metadata.
struct ScopedHealth;

#[tonic::async_trait]
impl Health for ScopedHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let user = request
            .extensions()
            .get::<Authenticated<Claims>>()
            .ok_or_else(|| Status::internal("no user"))?;
        let scope = request
            .extensions()
            .get::<ResourceId>()
            .ok_or_else(|| Status::internal("no scope"))?;
        let mut response = Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        });
        response
            .metadata_mut()
            .insert("x-user", user.sub.parse().unwrap());
        response
            .metadata_mut()
            .insert("x-resource-id", scope.as_str().parse().unwrap());
        Ok(response)
    }

    type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(tonic::codegen::tokio_stream::empty()))
    }
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        Server::builder()
            .layer(BearerAuthLayer::new(authenticator()))
            .layer(ResourceScopeLayer::new(resource_of))
            .add_service(HealthServer::new(ScopedHealth))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

async fn check(base: &str, token: Option<&str>) -> Result<Response<HealthCheckResponse>, Status> {
    let channel = Endpoint::from_shared(base.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let header = token.map(|t| MetadataValue::try_from(format!("Bearer {t}")).unwrap());
    let mut client = HealthClient::with_interceptor(channel, move |mut req: Request<()>| {
        if let Some(h) = &header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    });
    client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
}

#[tokio::test]
async fn missing_token_is_unauthenticated_with_message() {
    let base = serve().await;
    let status = check(&base, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Authentication required");
}

#[tokio::test]
async fn bad_token_is_unauthenticated_with_the_reason() {
    let base = serve().await;
    let forged = format!("{}x", token_for("alice"));
    let status = check(&base, Some(&forged)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "The token signature is invalid");
}

#[tokio::test]
async fn unscopable_user_is_permission_denied_with_message() {
    let base = serve().await;
    let status = check(&base, Some(&token_for("nobody"))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "Access denied: request could not be scoped to a resource"
    );
}

#[tokio::test]
async fn valid_token_reaches_the_handler_with_user_and_scope() {
    let base = serve().await;
    let response = check(&base, Some(&token_for("alice"))).await.unwrap();
    assert_eq!(response.get_ref().status, ServingStatus::Serving as i32);
    assert_eq!(response.metadata().get("x-user").unwrap(), "alice");
    assert_eq!(response.metadata().get("x-resource-id").unwrap(), "alice");
}
