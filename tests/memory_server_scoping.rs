//! Scoping no request can switch off, end to end: the memory server over real HTTP/1.1 and
//! HTTP/2 (h2c), with every content type a client can claim.
//!
//! A `content-type: application/grpc` header once made the scope layer skip the added
//! `?resourceId=`, and the listing handler then served every user's threads.
//!
//! Each test runs on SQLite (plain `cargo test`) and on PostgreSQL (`--ignored`, `.ci/run`).
#![cfg(all(
    feature = "axum",
    feature = "sqlite",
    feature = "postgres",
    feature = "aws-lc",
    feature = "cors",
    feature = "log",
    feature = "authz"
))]

#[path = "../examples/memory_server/app.rs"]
mod app;
#[macro_use]
#[path = "common/backend.rs"]
mod backend;

use std::time::{SystemTime, UNIX_EPOCH};

use backend::Db;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};

const SECRET: &str = "scoping-test-secret-0123456789abcdef";

/// Every content type a client might send; several say "gRPC" without being gRPC.
const CONTENT_TYPES: [Option<&str>; 8] = [
    Some("application/grpc"),
    None,
    Some("application/json"),
    Some("application/grpc+json"),
    Some("application/grpc+proto"),
    Some("application/grpc-web"),
    Some("application/grpc-web-text"),
    Some("application/grpc-web+proto"),
];

fn token(sub: &str) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = app::Claims {
        sub: sub.into(),
        org_id: None,
        exp,
        iss: None,
        aud: None,
        grants: Default::default(),
    };
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// Serves the memory server's router with hyper-util's auto builder: HTTP/1.1 and h2c.
async fn start(db: &Db) -> std::net::SocketAddr {
    let router = backend::router(db.store.clone(), SECRET);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Http1,
    H2c,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

/// One request on a fresh connection of the given protocol.
async fn send(
    addr: std::net::SocketAddr,
    protocol: Protocol,
    method: Method,
    path: &str,
    who: &str,
    content_type: Option<&str>,
    body: &str,
) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = TokioIo::new(stream);
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(header::AUTHORIZATION, format!("Bearer {}", token(who)));
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let res = match protocol {
        Protocol::Http1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap()
        }
        Protocol::H2c => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap()
        }
    };
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        json,
    }
}

async fn create(addr: std::net::SocketAddr, who: &str, title: &str) -> String {
    let body = json!({ "title": title, "resourceId": who, "metadata": {"secret": title} });
    let answer = send(
        addr,
        Protocol::Http1,
        Method::POST,
        "/api/memory/threads",
        who,
        Some("application/json"),
        &body.to_string(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    answer.json["id"].as_str().unwrap().to_owned()
}

async fn the_listing_shows_only_the_callers_threads_whatever_the_content_type_or_protocol(db: &Db) {
    let addr = start(db).await;
    create(addr, "alice", "alice-diary").await;
    create(addr, "alice", "alice-notes").await;
    let bobs = create(addr, "bob", "bob-todo").await;

    for protocol in [Protocol::Http1, Protocol::H2c] {
        for ct in CONTENT_TYPES {
            for path in [
                "/api/memory/threads",
                "/api/memory/threads?resourceId=alice",
                "/api/memory/threads?resourceId=alice&resourceId=bob",
                "/api/memory/threads?resource%49d=alice",
                "/api/memory/threads?perPage=1000",
            ] {
                let answer = send(addr, protocol, Method::GET, path, "bob", ct, "").await;
                assert_eq!(
                    answer.status,
                    StatusCode::OK,
                    "{protocol:?} {ct:?} {path}: {}",
                    answer.json
                );
                let threads = answer.json["threads"].as_array().unwrap();
                let ids: Vec<&str> = threads.iter().map(|t| t["id"].as_str().unwrap()).collect();
                assert_eq!(ids, vec![bobs.as_str()], "{protocol:?} {ct:?} {path}");
                assert!(
                    !answer.json.to_string().contains("alice"),
                    "{protocol:?} {ct:?} {path}: {}",
                    answer.json
                );
                // The answer depends on who asked: no shared cache may keep it.
                assert_eq!(
                    answer
                        .headers
                        .get(header::CACHE_CONTROL)
                        .map(|v| v.as_bytes()),
                    Some(&b"private"[..]),
                    "{protocol:?} {ct:?} {path}"
                );
            }
        }
    }
}

async fn a_refusal_is_the_same_decision_whatever_the_content_type_only_rendered_differently(
    db: &Db,
) {
    let addr = start(db).await;
    let alices = create(addr, "alice", "alice-diary").await;
    for protocol in [Protocol::Http1, Protocol::H2c] {
        for ct in CONTENT_TYPES {
            let grpc = ct.is_some_and(|ct| ct.starts_with("application/grpc"));
            for (method, path) in [
                (Method::GET, format!("/api/memory/threads/{alices}")),
                (
                    Method::GET,
                    format!("/api/memory/threads/{alices}/messages"),
                ),
                (Method::DELETE, format!("/api/memory/threads/{alices}")),
                (
                    Method::POST,
                    format!("/api/memory/threads/{alices}/transfer"),
                ),
                (
                    Method::GET,
                    format!("/api/memory/search?searchQuery=x&threadId={alices}"),
                ),
                (Method::GET, "/api/memory/not-a-route".to_owned()),
            ] {
                let answer = send(addr, protocol, method.clone(), &path, "bob", ct, "").await;
                let what = format!("{protocol:?} {ct:?} {method} {path}");
                if grpc {
                    // Trailers-only gRPC: HTTP 200, PERMISSION_DENIED.
                    assert_eq!(answer.status, StatusCode::OK, "{what}");
                    assert_eq!(answer.headers["grpc-status"], "7", "{what}");
                } else {
                    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{what}");
                    assert!(answer.json["error"].is_string(), "{what}: {}", answer.json);
                }
            }
        }
    }
    // Alice's thread is untouched by all of it.
    let answer = send(
        addr,
        Protocol::Http1,
        Method::GET,
        &format!("/api/memory/threads/{alices}"),
        "alice",
        None,
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json["title"], "alice-diary");
}

async fn memory_routes_the_server_does_not_serve_are_refused_by_the_guard_not_left_open(db: &Db) {
    let addr = start(db).await;
    let bobs = create(addr, "bob", "bob-todo").await;
    for (method, path) in [
        (
            Method::GET,
            "/api/memory/threads/x/messages/paginated".to_owned(),
        ),
        (Method::PUT, format!("/api/memory/threads/{bobs}")),
        (Method::POST, format!("/api/memory/threads/{bobs}/transfer")),
    ] {
        let answer = send(
            addr,
            Protocol::Http1,
            method.clone(),
            &path,
            "bob",
            None,
            "",
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert!(
            answer.json["error"].is_string(),
            "{method} {path}: {}",
            answer.json
        );
    }
}

on_both_backends!(
    the_listing_shows_only_the_callers_threads_whatever_the_content_type_or_protocol,
    a_refusal_is_the_same_decision_whatever_the_content_type_only_rendered_differently,
    memory_routes_the_server_does_not_serve_are_refused_by_the_guard_not_left_open,
);
