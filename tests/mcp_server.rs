//! The MCP example over real HTTP with rmcp's own client: the MCP authorization spec's
//! resource-server side (RFC 9728 metadata and challenges, RFC 8707 audience, step-up 403s),
//! and the JSON-RPC authorization read from the body as an attacker would probe it.
#![cfg(all(
    feature = "axum",
    feature = "test-util",
    feature = "authz",
    feature = "json-body"
))]

#[path = "../examples/mcp_server/app.rs"]
#[allow(dead_code)]
mod app;

use std::net::SocketAddr;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_scope::jwks::mock::MockIssuer;

struct Server {
    addr: SocketAddr,
    resource: String,
    issuer: MockIssuer,
}

impl Server {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let resource = format!("http://{addr}/mcp");
        let issuer = MockIssuer::start().await.unwrap();
        let settings = app::Settings {
            resource: resource.clone(),
            issuer: issuer.issuer().to_owned(),
            body_timeout: Duration::from_millis(500),
        };
        let router = app::app(&settings, app::Store::default()).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            addr,
            resource,
            issuer,
        }
    }

    fn metadata_url(&self) -> String {
        format!(
            "http://{}/.well-known/oauth-protected-resource/mcp",
            self.addr
        )
    }

    fn token(&self, sub: &str, scope: &str) -> String {
        self.token_for(sub, scope, &self.resource)
    }

    fn token_for(&self, sub: &str, scope: &str, audience: &str) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        self.issuer.mint(json!({
            "iss": self.issuer.issuer(), "aud": audience, "sub": sub, "exp": exp, "scope": scope,
        }))
    }

    async fn client(
        &self,
        token: Option<&str>,
    ) -> Result<rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>, String> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.resource.clone());
        if let Some(token) = token {
            config = config.auth_header(token.to_owned());
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        ClientConfig::default()
            .serve(transport)
            .await
            .map_err(|e| format!("{e:?}"))
    }

    /// A raw JSON-RPC POST, as an attacker sends it.
    async fn post(
        &self,
        token: &str,
        content_type: Option<&str>,
        body: String,
    ) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .post(&self.resource)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send().await.unwrap()
    }
}

fn call(name: &str, args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_owned()).with_arguments(args.as_object().unwrap().clone())
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn www_authenticate(res: &reqwest::Response) -> String {
    res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// RFC 9728 §5.1 and §3: the 401 names the metadata, the document names the issuer.
#[tokio::test]
async fn rfc9728_5_1_unauthenticated_client_is_told_where_the_metadata_is_and_can_fetch_it() {
    let server = Server::start().await;
    let expected = format!(
        r#"Bearer realm="api", resource_metadata="{}""#,
        server.metadata_url()
    );

    // rmcp's own client: initialize without a token is refused with that challenge.
    let Err(err) = server.client(None).await else {
        panic!("unauthenticated initialize must fail");
    };
    assert!(err.contains("AuthRequired"), "{err}");
    assert!(err.contains(&server.metadata_url()), "{err}");

    // The same on the wire, exactly.
    let res = reqwest::Client::new()
        .post(&server.resource)
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(www_authenticate(&res), expected);

    // §3.1/§3.2: the document at that URL; §3.3: `resource` equals the identifier.
    let res = reqwest::get(server.metadata_url()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public")
    );
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["resource"], server.resource.as_str());
    assert_eq!(
        doc["authorization_servers"],
        json!([server.issuer.issuer()])
    );
    assert_eq!(doc["scopes_supported"], json!([app::READ, app::WRITE]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));

    // The root form describes no resource here: a resource with a path has its own URL.
    let root = reqwest::get(format!(
        "http://{}/.well-known/oauth-protected-resource",
        server.addr
    ))
    .await
    .unwrap();
    assert_ne!(root.status(), 200);
}

#[tokio::test]
async fn tool_calls_with_the_tools_scope_are_answered_each_user_on_their_own_notes() {
    let server = Server::start().await;
    let alice = server
        .client(Some(&server.token("alice", "notes:read notes:write")))
        .await
        .unwrap();
    let tools = alice.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["recall", "remember"]);

    let done = alice
        .call_tool(call("remember", json!({"note": "buy milk"})))
        .await
        .unwrap();
    assert_eq!(text_of(&done), "remembered (1 notes)");
    let notes = alice.call_tool(call("recall", json!({}))).await.unwrap();
    assert_eq!(text_of(&notes), r#"["buy milk"]"#);

    // Bob reaches his own (empty) notes, never Alice's: the resource id is per user.
    let bob = server
        .client(Some(&server.token("bob", "notes:read notes:write")))
        .await
        .unwrap();
    let notes = bob.call_tool(call("recall", json!({}))).await.unwrap();
    assert_eq!(text_of(&notes), "[]");
    let _ = alice.cancel().await;
    let _ = bob.cancel().await;
}

/// The MCP step-up flow: a token without the tool's scope is refused at the HTTP level, with
/// `insufficient_scope` naming the scope and the metadata URL (RFC 6750 §3.1, RFC 9728 §5.1).
#[tokio::test]
async fn a_tool_call_without_its_scope_is_403_insufficient_scope_naming_it() {
    let server = Server::start().await;
    let viewer_token = server.token("viewer", "notes:read");
    let viewer = server.client(Some(&viewer_token)).await.unwrap();
    let err = viewer
        .call_tool(call("remember", json!({"note": "x"})))
        .await
        .expect_err("remember needs notes:write");
    let err = format!("{err:?}");
    assert!(err.contains("insufficient_scope"), "{err}");
    assert!(err.contains("notes:write"), "{err}");

    // On the wire: exactly what the client reads to step up.
    let res = server
        .post(
            &viewer_token,
            Some("application/json"),
            json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"remember","arguments":{"note":"x"}}}).to_string(),
        )
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        www_authenticate(&res),
        format!(
            r#"Bearer error="insufficient_scope", error_description="Missing required permission: notes:write", scope="notes:write", resource_metadata="{}""#,
            server.metadata_url()
        )
    );
    // The read tool is still the viewer's.
    let viewer = server.client(Some(&viewer_token)).await.unwrap();
    let notes = viewer.call_tool(call("recall", json!({}))).await.unwrap();
    assert_eq!(text_of(&notes), "[]");
    let _ = viewer.cancel().await;
}

/// RFC 8707: a token minted for another resource is not this resource's.
#[tokio::test]
async fn a_token_for_another_audience_is_401_invalid_token() {
    let server = Server::start().await;
    let token = server.token_for(
        "alice",
        "notes:read notes:write",
        "http://127.0.0.1:1/other",
    );
    let res = server
        .post(
            &token,
            Some("application/json"),
            json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string(),
        )
        .await;
    assert_eq!(res.status(), 401);
    let challenge = www_authenticate(&res);
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(challenge.contains(&server.metadata_url()), "{challenge}");
}

/// Attacker probes of the JSON-RPC body read (DESIGN decision 12: what the layer decided on
/// is what the handler reads).
#[tokio::test]
async fn json_rpc_bodies_that_could_be_read_two_ways_are_refused() {
    let server = Server::start().await;
    let viewer = server.token("viewer", "notes:read");
    let cases = [
        // A first-wins and a last-wins parser would see different methods or tools.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping","params":{"name":"remember"}}"#,
            400,
            "duplicate method",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"recall"},"params":{"name":"remember","arguments":{"note":"x"}}}"#,
            400,
            "duplicate params",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"recall","name":"remember"}}"#,
            400,
            "duplicate name",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["remember"]}}"#,
            400,
            "name not a string",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null}}"#,
            400,
            "name null",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["remember"]}"#,
            400,
            "params an array",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            400,
            "no params",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            400,
            "method not a string",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"remember"}"#,
            400,
            "truncated JSON",
        ),
        (r#"[]"#, 400, "empty batch"),
        (r#""tools/call""#, 400, "not an object"),
        // A batch is allowed only when every call in it is.
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"recall"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"remember","arguments":{"note":"x"}}}]"#,
            403,
            "batch with a refused call",
        ),
        // Escapes decode to the same name the server dispatches on.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"rem\u0065mber","arguments":{"note":"x"}}}"#,
            403,
            "escaped names",
        ),
        // A method nobody described is refused (fail closed).
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#,
            403,
            "unlisted method",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all"}}"#,
            403,
            "unlisted tool",
        ),
    ];
    for (body, status, what) in cases {
        let res = server
            .post(&viewer, Some("application/json"), body.to_owned())
            .await;
        assert_eq!(res.status(), status, "{what}: {body}");
    }
    // The refusal for the mixed batch names the scope the refused call lacks.
    let res = server
        .post(&viewer, Some("application/json"), cases[11].0.to_owned())
        .await;
    assert!(www_authenticate(&res).contains(r#"scope="notes:write""#));
}

/// DESIGN decision 9: the content type changes how an answer is written, never whether the
/// body is checked.
#[tokio::test]
async fn content_types_that_claim_json_or_not_are_checked_the_same() {
    let server = Server::start().await;
    let viewer = server.token("viewer", "notes:read");
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"remember","arguments":{"note":"x"}}}).to_string();
    for ct in [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("APPLICATION/JSON"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/octet-stream"),
        None,
    ] {
        let res = server.post(&viewer, ct, body.clone()).await;
        assert_eq!(res.status(), 403, "content type {ct:?}");
    }
}

#[tokio::test]
async fn a_huge_body_is_413_and_a_body_that_never_ends_is_408() {
    let server = Server::start().await;
    let viewer = server.token("viewer", "notes:read");
    // Over the 4.5 MB default: refused, not buffered.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"recall","arguments":{{"pad":"{}"}}}}}}"#,
        "a".repeat(5 * 1024 * 1024)
    );
    let res = server.post(&viewer, Some("application/json"), huge).await;
    assert_eq!(res.status(), 413);

    // Declares 100 bytes, sends 10, then waits: the whole-body deadline (500 ms here) answers.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {viewer}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 100\r\n\r\n{{\"jsonrpc\"",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("the server answers a stalled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// Without a declared length the cap still holds: a chunked body is counted as it arrives.
#[tokio::test]
async fn a_huge_chunked_body_is_413() {
    let server = Server::start().await;
    let viewer = server.token("viewer", "notes:read");
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {viewer}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
    // 5 MB in 64 KiB chunks; the server may answer and stop reading before the end.
    for _ in 0..80 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("the server answers an oversized chunked body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}
