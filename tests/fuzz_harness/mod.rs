//! Fuzz and differential harnesses, shared by the cargo-fuzz targets (`fuzz/`, nightly) and the
//! stable replay test (`tests/fuzz_replay.rs`). Each function takes arbitrary bytes and panics
//! only when a property fails: no panic inside the crate, a documented refusal or a pass, and
//! "what the layer decided on is what the handler reads" (DESIGN.md decision 12).
//!
//! Inputs are split on `\n` so corpora stay readable.

#![allow(dead_code, clippy::missing_panics_doc)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request as AxumRequest};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, ORIGIN};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::Value;
use tower::{Layer, ServiceExt, service_fn};
use tower_scope::guard::MemoryThreadStore;
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
use tower_scope::{
    AuthErrorKind, Authenticated, BearerAuthLayer, ConfigError, CorsLayer, PathPattern, Rejection,
    RejectionKind, ResourceId, ResourceScopeLayer, StaticTokens, ThreadId,
};

/// One harness: arbitrary bytes in, a panic when a property fails.
pub type Harness = fn(&[u8]);

/// Every harness, by the name of its fuzz target and corpus directory.
pub const TARGETS: &[(&str, Harness)] = &[
    ("bearer", bearer),
    ("jws", jws),
    ("jwks_doc", jwks_doc),
    ("path_pattern", path_pattern),
    ("cors_origin", cors_origin),
    ("scope_query", scope_query),
    ("guard_json", guard_json),
    ("guard_route", guard_route),
];

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

fn block_on<F: Future>(fut: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(fut))
}

/// The first `n - 1` `\n`-separated parts, and everything after them as the last.
fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |&b| b == b'\n').collect()
}

fn rejection<B>(res: &Response<B>) -> Option<&Rejection> {
    res.extensions().get::<Rejection>()
}

/// A refusal must be a typed `Rejection` whose kind is one of `allowed`, rendered with its status.
fn assert_refusal<B>(res: &Response<B>, allowed: &[RejectionKind], what: &str) {
    let why = rejection(res).unwrap_or_else(|| {
        panic!(
            "{what}: status {} without a Rejection extension",
            res.status()
        )
    });
    assert!(
        allowed.contains(&why.kind()),
        "{what}: refusal {:?} ({}) is not one of {allowed:?}",
        why.kind(),
        why.message()
    );
    assert_eq!(res.status(), why.kind().status(), "{what}: status/kind");
}

// ---------------------------------------------------------------------------------------------
// Bearer extraction and the RFC 6750 `b64token` grammar.

const TOKEN: &str = "alice-api-key-0123456789abcdef";
const MAX_TOKEN: usize = 256;

/// RFC 6750 §2.1 written out as the grammar reads, independently of the crate.
pub fn reference_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c.is_ascii_digit() || "-._~+/".contains(c))
}

/// Input: `Authorization` value, `Cookie` value, query string (each optional when empty).
pub fn bearer(data: &[u8]) {
    let p = parts(data, 3);
    let header = p.first().filter(|h| !h.is_empty()).copied();
    let cookie = p.get(1).filter(|c| !c.is_empty()).copied();
    let query = p.get(2).and_then(|q| std::str::from_utf8(q).ok());
    let uri = match query {
        Some(q) if !q.is_empty() => format!("/api/x?{q}"),
        _ => "/api/x".to_owned(),
    };
    let Ok(uri) = uri.parse::<Uri>() else { return };
    let mut req = Request::builder().uri(uri.clone());
    if let Some(h) = header {
        let Ok(v) = HeaderValue::from_bytes(h) else {
            return;
        };
        req = req.header(AUTHORIZATION, v);
    }
    if let Some(c) = cookie {
        let Ok(v) = HeaderValue::from_bytes(c) else {
            return;
        };
        req = req.header(COOKIE, v);
    }
    let req = req.body(String::new()).unwrap();

    let layer = BearerAuthLayer::new(StaticTokens::new().token(TOKEN, "alice".to_owned()))
        .max_token_len(MAX_TOKEN)
        .token_from_cookie("session")
        .unwrap()
        .token_from_query("access_token")
        .unwrap();
    let svc = layer.layer(service_fn(|req: Request<String>| async move {
        let user = req
            .extensions()
            .get::<Authenticated<String>>()
            .map(|u| u.shared().to_string())
            .unwrap_or_default();
        Ok::<_, Infallible>(Response::new(user))
    }));
    let res = block_on(svc.oneshot(req)).unwrap();

    // What each method carries, read the way a client would have meant it.
    let header_token = header.and_then(|h| {
        let (scheme, rest) = h.split_at(h.iter().position(|&b| b == b' ').unwrap_or(h.len()));
        scheme.eq_ignore_ascii_case(b"bearer").then(|| {
            String::from_utf8_lossy(rest)
                .trim_start_matches(' ')
                .to_owned()
        })
    });
    // A `Cookie` value with bytes outside visible ASCII is not a cookie list (RFC 6265 §4.2.1).
    let cookie_tokens: Vec<String> = cookie
        .and_then(|c| {
            std::str::from_utf8(c)
                .ok()
                .filter(|c| !c.bytes().any(|b| b >= 0x7F))
        })
        .map(|c| {
            c.split(';')
                .filter_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    (k == "session").then(|| v.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let query_tokens: Vec<String> = uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
                .collect()
        })
        .unwrap_or_default();
    let offered = usize::from(header_token.is_some()) + cookie_tokens.len() + query_tokens.len();

    if res.status() == StatusCode::OK {
        assert_eq!(res.body(), "alice", "a pass names the one known user");
        assert_eq!(offered, 1, "a pass came from exactly one method");
        let sent = header_token
            .or_else(|| {
                cookie_tokens
                    .first()
                    .map(|c| c.trim_matches('"').to_owned())
            })
            .or_else(|| query_tokens.first().cloned())
            .unwrap();
        assert_eq!(sent, TOKEN, "a pass carried the known token");
        return;
    }
    assert_refusal(
        &res,
        &[
            RejectionKind::MissingCredentials,
            RejectionKind::InvalidRequest,
            RejectionKind::InvalidToken,
        ],
        "bearer",
    );
    let kind = rejection(&res).unwrap().kind();
    // An `Authorization` header longer than any acceptable token is refused before its scheme
    // is read, whatever the scheme (fail closed, and no work for oversized input).
    if header.is_some_and(|h| h.len() > MAX_TOKEN + 64) {
        assert_eq!(kind, RejectionKind::InvalidRequest, "oversized header");
        return;
    }
    if offered == 0 {
        assert_eq!(kind, RejectionKind::MissingCredentials, "nothing offered");
    }
    if offered > 1 {
        assert_eq!(
            kind,
            RejectionKind::InvalidRequest,
            "two methods are ambiguous"
        );
    }
    // The grammar, when the header is the only method and is plain ASCII.
    if let (1, Some(h)) = (offered, header)
        && h.is_ascii()
        && !cookie_tokens.iter().chain(&query_tokens).any(|_| true)
    {
        let token = String::from_utf8_lossy(h);
        let token = token[6..].trim_start_matches(' ');
        let want = if token.len() <= MAX_TOKEN && reference_b64token(token) {
            RejectionKind::InvalidToken
        } else {
            RejectionKind::InvalidRequest
        };
        assert_eq!(kind, want, "b64token grammar for {token:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// JWS parse and verify on arbitrary bytes (HS256 key).

const SECRET: &[u8] = b"fuzzing-secret-0123456789abcdefghijkl";

fn hs256(message: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
}

fn hs256_authenticator() -> JwtAuthenticator<Value> {
    JwtAuthenticator::<Value>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .build()
        .unwrap()
}

/// Input: first byte even: the rest is a compact token as sent. Odd: `header-json\npayload-json`,
/// signed here with the right key so the fuzzer reaches header rules, claims and lifetimes.
pub fn jws(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        token.to_owned()
    } else {
        let p = parts(rest, 2);
        let (header, payload) = (p[0], p.get(1).copied().unwrap_or_default());
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = URL_SAFE_NO_PAD.encode(hs256(message.as_bytes()));
        format!("{message}.{signature}")
    };
    let auth = hs256_authenticator();
    match auth.verify(&token) {
        Ok(claims) => {
            // A pass is a correctly signed HS256 token whose payload is exactly these claims.
            let mut it = token.split('.');
            let (h, p, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            assert!(it.next().is_none(), "three parts");
            let signature = URL_SAFE_NO_PAD.decode(s).expect("signature is base64url");
            assert_eq!(signature, hs256(format!("{h}.{p}").as_bytes()), "HMAC");
            // Only `alg` is read: other members may hold numbers `Value` cannot represent.
            #[derive(Deserialize)]
            struct Alg {
                alg: String,
            }
            let header: Alg = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
            assert_eq!(header.alg, "HS256", "alg comes from the key");
            let payload: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
            assert_eq!(claims, payload, "the handler gets the verified claims");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            let exp = payload["exp"].as_f64().expect("a pass has a numeric exp");
            assert!(exp + 30.0 > now, "a pass is not expired");
        }
        Err(err) => {
            assert_eq!(err.kind(), AuthErrorKind::InvalidToken, "{}", err.message());
            assert!(!err.message().is_empty());
            // Only token-shaped input: a short string may just be part of a fixed message.
            if token.len() >= 8 && token.matches('.').count() >= 2 {
                assert!(
                    !err.message().contains(&token),
                    "errors never echo the token"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JWK set documents (the same parser the JWKS key source uses for fetched documents).

#[derive(Deserialize)]
struct KeySetShape {
    #[allow(dead_code)]
    keys: Vec<Value>,
}

const ALL_ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Input: a JWK set document.
pub fn jwks_doc(data: &[u8]) {
    let Ok(doc) = std::str::from_utf8(data) else {
        return;
    };
    let shape = serde_json::from_str::<KeySetShape>(doc);
    let built = JwtAuthenticator::<Value>::builder()
        .algorithms(ALL_ALGORITHMS)
        .jwk_set_json(doc)
        .build();
    match built {
        Ok(auth) => {
            assert!(
                shape.is_ok_and(|s| !s.keys.is_empty()),
                "keys came from a key set"
            );
            let err = auth.verify("e30.e30.AAAA").unwrap_err();
            assert_eq!(err.kind(), AuthErrorKind::InvalidToken);
        }
        Err(ConfigError::InvalidValue { .. }) => {
            assert!(
                shape.is_err(),
                "a `{{\"keys\": [...]}}` document is not refused as a whole"
            )
        }
        Err(ConfigError::NoKeys) => assert!(shape.is_ok(), "NoKeys only for a key set"),
        Err(other) => panic!("undocumented refusal of a JWK set: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// PathPattern compile and match, against the module docs' rules written out independently.

/// The documented glob semantics, on segments, for a pattern `PathPattern::new` accepted.
pub fn reference_match(pattern: &str, path: &str) -> bool {
    if pattern == "*" || pattern == "/*" {
        return true;
    }
    let Some(path_body) = path.strip_prefix('/') else {
        return false;
    };
    let mut pattern_segments: Vec<&str> = pattern[1..].split('/').collect();
    if pattern == "/" {
        return path == "/";
    }
    let wildcard = pattern_segments.last() == Some(&"*");
    if wildcard {
        pattern_segments.pop();
    }
    let path_segments: Vec<&str> = path_body.split('/').collect();
    if path_segments.len() < pattern_segments.len()
        || (!wildcard && path_segments.len() != pattern_segments.len())
    {
        return false;
    }
    pattern_segments
        .iter()
        .zip(&path_segments)
        .all(|(pat, seg)| match param_name(pat) {
            Some(_) => !seg.is_empty(),
            None => pat == seg,
        })
}

fn param_name(segment: &str) -> Option<&str> {
    segment
        .strip_prefix(':')
        .or_else(|| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// Input: `pattern\npath`.
pub fn path_pattern(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, path) = text.split_once('\n').unwrap_or((text, "/"));
    let Ok(compiled) = PathPattern::new(pattern) else {
        return;
    };
    assert_eq!(compiled.as_str(), pattern);
    let matched = compiled.matches(path);
    assert_eq!(
        matched,
        reference_match(pattern, path),
        "{pattern:?} against {path:?}"
    );
    if pattern == "*" || pattern == "/*" {
        return;
    }
    let path_segments: Vec<&str> = path.get(1..).unwrap_or("").split('/').collect();
    for (i, segment) in pattern[1..].split('/').enumerate() {
        let Some(name) = param_name(segment) else {
            continue;
        };
        assert!(compiled.has_param(name));
        let span = compiled.param(path, name).map(|value| {
            let start = value.as_ptr() as usize - path.as_ptr() as usize;
            start..start + value.len()
        });
        assert_eq!(
            span.is_some(),
            matched,
            "a parameter has a span iff the path matches"
        );
        if let Some(span) = span {
            // The last parameter of a given name wins: find the last segment so named.
            let last = pattern[1..]
                .split('/')
                .enumerate()
                .filter(|(_, s)| param_name(s) == Some(name))
                .map(|(j, _)| j)
                .last()
                .unwrap();
            if i == last {
                assert_eq!(&path[span], path_segments[i], "{pattern:?} {path:?} {name}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CORS origin rules, through the layer.

/// The documented origin rules: exact (ASCII case-insensitive), or `scheme://*.host[:port]`
/// standing for one or more non-empty labels of letters, digits and `-`.
pub fn reference_origin_allowed(rule: &str, origin: &str) -> bool {
    let rule = rule.trim().to_ascii_lowercase();
    let origin = origin.to_ascii_lowercase();
    match rule.split_once("://*.") {
        None => rule == origin,
        Some((scheme, rest)) => {
            let prefix = format!("{scheme}://");
            let suffix = format!(".{rest}");
            let Some(labels) = origin
                .strip_prefix(&prefix)
                .and_then(|o| o.strip_suffix(&suffix))
            else {
                return false;
            };
            !labels.is_empty()
                && labels.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
    }
}

/// Input: `allowed-origin-rule\nrequest-origin`.
pub fn cors_origin(data: &[u8]) {
    let p = parts(data, 2);
    let Ok(rule) = std::str::from_utf8(p[0]) else {
        return;
    };
    let origin = p.get(1).copied().unwrap_or_default();
    let Ok(origin_value) = HeaderValue::from_bytes(origin) else {
        return;
    };
    let Ok(layer) = CorsLayer::new().allow_origins([rule]) else {
        return;
    };
    let svc = layer.layer(service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    }));
    let req = Request::get("/")
        .header(ORIGIN, origin_value)
        .body(String::new())
        .unwrap();
    let res = block_on(svc.oneshot(req)).unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a simple request is never refused here"
    );
    let allowed = res.headers().get("access-control-allow-origin");
    if rule.trim() == "*" {
        assert_eq!(allowed.map(HeaderValue::as_bytes), Some(&b"*"[..]));
        return;
    }
    let Ok(origin_text) = std::str::from_utf8(origin) else {
        assert!(allowed.is_none(), "a non-UTF-8 origin matches no rule");
        return;
    };
    assert_eq!(
        allowed.is_some(),
        reference_origin_allowed(rule, origin_text),
        "rule {rule:?}, origin {origin_text:?}"
    );
    if let Some(allowed) = allowed {
        assert_eq!(
            allowed.as_bytes(),
            origin,
            "the allowed origin is echoed as sent"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Scope rewrite: every query parser a handler might use sees exactly one resourceId, the scope.

/// Input: `scope\nquery`.
pub fn scope_query(data: &[u8]) {
    let p = parts(data, 2);
    let scope = std::str::from_utf8(p[0])
        .ok()
        .and_then(|s| ResourceId::new(s).ok())
        .unwrap_or_else(|| ResourceId::new("org:al ice/é&x=1").unwrap());
    let Ok(query) = std::str::from_utf8(p.get(1).copied().unwrap_or_default()) else {
        return;
    };
    let Ok(uri) = format!("/api/memory/threads?{query}").parse::<Uri>() else {
        return;
    };
    let original: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .filter(|(k, _)| k != "resourceId")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();

    let seen = Arc::new(Mutex::new(None::<Uri>));
    let record = Arc::clone(&seen);
    let svc = ResourceScopeLayer::new(|user: &String| Some(user.clone())).layer(service_fn(
        move |req: Request<String>| {
            *record.lock().unwrap() = Some(req.uri().clone());
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        },
    ));
    let mut req = Request::get(uri).body(String::new()).unwrap();
    req.extensions_mut()
        .insert(Authenticated::new(scope.as_str().to_owned()));
    let res = block_on(svc.oneshot(req)).unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{:?}",
        rejection(&res).map(Rejection::message)
    );
    let handled = seen.lock().unwrap().take().expect("the handler ran");
    let q = handled.query().expect("the scoped query is present");
    let want = vec![scope.as_str().to_owned()];

    let form: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let ids: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "resourceId")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(ids, want, "form_urlencoded sees one resourceId: {q:?}");

    let serde: Vec<(String, String)> = serde_urlencoded::from_str(q).expect("serde_urlencoded");
    let ids: Vec<&String> = serde
        .iter()
        .filter(|(k, _)| k == "resourceId")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        ids,
        vec![&want[0]],
        "serde_urlencoded sees one resourceId: {q:?}"
    );

    let Query(map) = Query::<HashMap<String, String>>::try_from_uri(&handled).expect("axum Query");
    assert_eq!(map.get("resourceId"), Some(&want[0]), "axum Query: {q:?}");

    // Everything else is passed through, in order.
    let kept: Vec<(String, String)> = form
        .into_iter()
        .filter(|(k, _)| k != "resourceId")
        .collect();
    assert_eq!(kept, original, "other parameters are kept: {q:?}");
}

// ---------------------------------------------------------------------------------------------
// The guard's JSON ids against what axum::Json gives the handler.

/// alice owns t-a (m-a1); bob owns t-b (m-b1); t-shared has no owner (m-s1); m-orphan no thread.
fn store() -> MemoryThreadStore {
    let s = MemoryThreadStore::new();
    let tid = |s: &str| ThreadId::new(s).unwrap();
    s.insert_thread(tid("t-a"), Some(ResourceId::new("alice").unwrap()));
    s.insert_thread(tid("t-b"), Some(ResourceId::new("bob").unwrap()));
    s.insert_thread(tid("t-shared"), None);
    s.insert_message(
        tower_scope::MessageId::new("m-a1").unwrap(),
        Some(tid("t-a")),
    );
    s.insert_message(
        tower_scope::MessageId::new("m-b1").unwrap(),
        Some(tid("t-b")),
    );
    s.insert_message(
        tower_scope::MessageId::new("m-s1").unwrap(),
        Some(tid("t-shared")),
    );
    s.insert_message(tower_scope::MessageId::new("m-orphan").unwrap(), None);
    s
}

/// A thread id the handler may act on for alice: hers, or not there yet.
fn thread_is_alices_or_missing(store: &MemoryThreadStore, id: &str) -> bool {
    let Ok(id) = ThreadId::new(id) else {
        return true;
    };
    store
        .thread(&id)
        .is_none_or(|t| t.resource.as_ref().is_some_and(|r| r.as_str() == "alice"))
}

fn message_is_alices_or_missing(store: &MemoryThreadStore, id: &str) -> bool {
    match store.message(id) {
        None => true,
        Some(m) => m
            .thread
            .is_some_and(|t| thread_is_alices_or_missing(store, &t) && store.thread(&t).is_some()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateThread {
    thread_id: Option<String>,
    resource_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloneThread {
    new_thread_id: Option<String>,
    resource_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MessageRef {
    Id(String),
    Object { id: String },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MessageRefs {
    One(MessageRef),
    Many(Vec<MessageRef>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteMessages {
    message_ids: MessageRefs,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SavedMessage {
    id: Option<String>,
    thread_id: String,
    resource_id: String,
}

#[derive(Deserialize)]
struct SaveMessages {
    messages: Vec<SavedMessage>,
}

const JSON_ROUTES: [&str; 4] = [
    "/api/memory/threads",
    "/api/memory/threads/t-a/clone",
    "/api/memory/messages/delete",
    "/api/memory/save-messages",
];

/// The scope layer as the memory server has it, for requests that already carry the caller's
/// `ResourceId`: it forces `resourceId` in Mastra's bodies, which the guard expects.
type NeverResolves = tower_scope::scope::SyncResolver<fn(&()) -> Option<String>, ()>;

fn scope_bodies() -> ResourceScopeLayer<NeverResolves, tower_scope::scope::BodyRules> {
    let never: fn(&()) -> Option<String> = |_| None;
    ResourceScopeLayer::new(never)
        .without_added_param()
        .body_rules(tower_scope::mastra::memory_body_rules("/api").unwrap())
}

/// Input: a route selector byte, then the JSON body.
pub fn guard_json(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let route = usize::from(selector) % JSON_ROUTES.len();
    let store = store();
    let handler_store = store.clone();
    let ran = Arc::new(Mutex::new(false));
    let ran_in_handler = Arc::clone(&ran);
    let svc = scope_bodies().layer(
        tower_scope::mastra::memory_guard(store, "/api")
            .unwrap()
            .layer(service_fn(move |req: Request<Body>| {
                let store = handler_store.clone();
                let ran = Arc::clone(&ran_in_handler);
                async move {
                    let guard_thread = req.extensions().get::<ThreadId>().map(|t| t.to_string());
                    let bytes = req.into_body().collect().await.unwrap().to_bytes();
                    check_json_handler(route, &store, guard_thread.as_deref(), &bytes);
                    *ran.lock().unwrap() = true;
                    Ok::<_, Infallible>(Response::new(Body::empty()))
                }
            })),
    );
    let mut req = Request::post(JSON_ROUTES[route])
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(Bytes::copy_from_slice(body)))
        .unwrap();
    req.extensions_mut()
        .insert(ResourceId::new("alice").unwrap());
    let res = block_on(svc.oneshot(req)).unwrap();
    if res.status() == StatusCode::OK {
        assert!(*ran.lock().unwrap(), "a 200 came from the handler");
    } else {
        assert!(!*ran.lock().unwrap(), "a refusal never reaches the handler");
        assert_refusal(
            &res,
            &[
                RejectionKind::BadRequest,
                RejectionKind::Forbidden,
                RejectionKind::NotFound,
                RejectionKind::PayloadTooLarge,
            ],
            "guard_json",
        );
    }
}

/// What a handler behind the guard reads with `axum::Json<T>`, checked against the guard.
fn check_json_handler(
    route: usize,
    store: &MemoryThreadStore,
    guard_thread: Option<&str>,
    body: &[u8],
) {
    // A body the handler's own extractor refuses is a 4xx from the handler: no id was used.
    match route {
        0 => {
            let Ok(axum::Json(b)) = axum::Json::<CreateThread>::from_bytes(body) else {
                return;
            };
            assert_eq!(
                b.resource_id.as_deref(),
                Some("alice"),
                "resourceId is forced"
            );
            assert_eq!(
                b.thread_id.as_deref(),
                guard_thread,
                "the guard checked this threadId"
            );
            if let Some(t) = &b.thread_id {
                assert!(thread_is_alices_or_missing(store, t), "create into {t:?}");
            }
        }
        1 => {
            let Ok(axum::Json(b)) = axum::Json::<CloneThread>::from_bytes(body) else {
                return;
            };
            assert_eq!(guard_thread, Some("t-a"));
            assert_eq!(
                b.resource_id.as_deref(),
                Some("alice"),
                "resourceId is forced"
            );
            if let Some(t) = &b.new_thread_id {
                assert!(thread_is_alices_or_missing(store, t), "clone into {t:?}");
            }
        }
        2 => {
            let Ok(axum::Json(b)) = axum::Json::<DeleteMessages>::from_bytes(body) else {
                return;
            };
            let ids = match b.message_ids {
                MessageRefs::One(one) => vec![one],
                MessageRefs::Many(many) => many,
            };
            for id in ids {
                let (MessageRef::Id(id) | MessageRef::Object { id }) = id;
                assert!(message_is_alices_or_missing(store, &id), "delete {id:?}");
            }
        }
        _ => {
            let Ok(axum::Json(b)) = axum::Json::<SaveMessages>::from_bytes(body) else {
                return;
            };
            for m in b.messages {
                assert_eq!(m.resource_id, "alice", "save under alice only");
                assert!(
                    thread_is_alices_or_missing(store, &m.thread_id),
                    "save into {:?}",
                    m.thread_id
                );
                if let Some(id) = &m.id {
                    assert!(message_is_alices_or_missing(store, id), "overwrite {id:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The guard's route decision against axum's router, for the same path.

#[derive(Debug, Clone)]
struct Dispatch {
    route: &'static str,
    /// The `{threadId}` axum's `Path` extractor gave the handler.
    path_thread: Option<String>,
    /// The `ThreadId` the guard inserted.
    guard_thread: Option<String>,
    query: Option<String>,
}

type Record = Arc<Mutex<Option<Dispatch>>>;

fn plain(record: &Record, route: &'static str) -> axum::routing::MethodRouter {
    let record = Arc::clone(record);
    get(move |req: AxumRequest| async move { note(&record, route, None, &req) })
}

fn note(
    record: &Record,
    route: &'static str,
    path_thread: Option<String>,
    req: &AxumRequest,
) -> &'static str {
    *record.lock().unwrap() = Some(Dispatch {
        route,
        path_thread,
        guard_thread: req.extensions().get::<ThreadId>().map(|t| t.to_string()),
        query: req.uri().query().map(str::to_owned),
    });
    route
}

macro_rules! handler {
    ($record:expr, $route:expr, thread) => {{
        let record = Arc::clone(&$record);
        move |Path(id): Path<String>, req: AxumRequest| async move {
            note(&record, $route, Some(id), &req)
        }
    }};
    ($record:expr, $route:expr) => {{
        let record = Arc::clone(&$record);
        move |req: AxumRequest| async move { note(&record, $route, None, &req) }
    }};
}

/// axum's router with the templates of `mastra::memory_guard_routes("/api")`.
fn axum_router(record: &Record) -> Router {
    let mut router = Router::new();
    for m in ["/api/memory", "/api/memory/network"] {
        let t = format!("{m}/threads/{{threadId}}");
        router = router
            .route(
                &format!("{m}/threads"),
                get(handler!(record, "list")).post(handler!(record, "create")),
            )
            .route(
                &t,
                get(handler!(record, "get", thread))
                    .patch(handler!(record, "patch", thread))
                    .delete(handler!(record, "delete", thread)),
            )
            .route(
                &format!("{t}/messages"),
                get(handler!(record, "messages", thread)),
            )
            .route(
                &format!("{t}/working-memory"),
                get(handler!(record, "wm-get", thread)).post(handler!(record, "wm-post", thread)),
            )
            .route(
                &format!("{t}/clone"),
                post(handler!(record, "clone", thread)),
            )
            .route(
                &format!("{t}/transfer"),
                post(handler!(record, "transfer", thread)),
            )
            .route(
                &format!("{m}/save-messages"),
                post(handler!(record, "save")),
            )
            .route(
                &format!("{m}/messages/delete"),
                post(handler!(record, "delete-messages")),
            )
            .route(&format!("{m}/status"), plain(record, "status"))
            .route(&format!("{m}/config"), plain(record, "config"))
            .route(&format!("{m}/search"), plain(record, "search"))
            .route(&format!("{m}/observational-memory"), plain(record, "om"))
            .route(
                &format!("{m}/observational-memory/buffer-status"),
                post(handler!(record, "buffer-status")),
            );
    }
    router
}

const METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PATCH,
    Method::DELETE,
    Method::PUT,
    Method::HEAD,
];

/// Input: a method selector byte, then the path and query.
pub fn guard_route(data: &[u8]) {
    let Some((&selector, target)) = data.split_first() else {
        return;
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    if !target.starts_with('/') {
        return;
    }
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let method = METHODS[usize::from(selector) % METHODS.len()].clone();
    let store = store();
    let record: Record = Arc::default();
    let svc = scope_bodies().layer(
        tower_scope::mastra::memory_guard(store.clone(), "/api")
            .unwrap()
            .layer(axum_router(&record)),
    );
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    req.extensions_mut()
        .insert(ResourceId::new("alice").unwrap());
    let res = block_on(svc.oneshot(req)).unwrap();
    let Some(seen) = record.lock().unwrap().take() else {
        if rejection(&res).is_some() {
            assert_refusal(
                &res,
                &[
                    RejectionKind::BadRequest,
                    RejectionKind::Forbidden,
                    RejectionKind::NotFound,
                ],
                "guard_route",
            );
        }
        return;
    };
    let what = format!("{method} {target} -> axum {seen:?}");
    assert!(
        rejection(&res).is_none(),
        "{what}: the handler ran, yet a refusal"
    );
    // The guard refuses these outright (transfer) or for this `{}` body (save, delete): if a
    // handler ran, the guard did not take the route axum dispatched to.
    assert!(
        !matches!(seen.route, "transfer" | "save" | "delete-messages"),
        "{what}: an unguarded dispatch"
    );
    if let Some(path_thread) = &seen.path_thread {
        assert_eq!(
            seen.guard_thread.as_ref(),
            Some(path_thread),
            "{what}: the guard checked another thread than the handler reads"
        );
        assert!(thread_is_alices_or_missing(&store, path_thread), "{what}");
    }
    // Any `threadId` the handler could read from the query was checked.
    let query_threads: Vec<String> = seen
        .query
        .as_deref()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == "threadId")
                .map(|(_, v)| v.into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(query_threads.len() <= 1, "{what}: two threadIds passed");
    for t in &query_threads {
        assert!(
            thread_is_alices_or_missing(&store, t),
            "{what}: ?threadId={t:?}"
        );
    }
}
