//! DPoP conformance (RFC 9449): every proof check of §4.3, the token binding of §6.1 and §7.1,
//! challenges (§7.1), nonces (§9) and replay (§11.1), each tried as an attacker would. Proofs
//! are signed in the test with real keys: ES256 (P-256) and PS256/RS256 (RSA 2048).
#![cfg(feature = "dpop")]

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_scope::auth::{CompositeAuth, Credential, Member};
use tower_scope::dpop::{DpopConfig, MemoryReplayCache, RotatingNonces};
use tower_scope::jwt::{Algorithm, JwtAuthenticator, JwtKey};
use tower_scope::{Authenticated, BearerAuthLayer, ConfigError, StaticTokens};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef";
const ORIGIN: &str = "https://api.example.test";

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A client's DPoP key: ES256 or RSA (PS256 / RS256).
enum ClientKey {
    Ec(EcdsaKeyPair),
    Rsa(&'static RsaKeyPair),
}

impl ClientKey {
    fn es256() -> Self {
        Self::Ec(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }

    fn rsa() -> Self {
        // One 2048-bit key for the whole run: generating one takes a while.
        static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
        Self::Rsa(
            KEY.get_or_init(|| RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap()),
        )
    }

    fn public_jwk(&self) -> Value {
        match self {
            Self::Ec(key) => {
                let point = key.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Self::Rsa(key) => rsa_jwk(key),
        }
    }

    fn sign(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Ec(key) => key.sign(&rng, message).unwrap().as_ref().to_vec(),
            Self::Rsa(key) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    "PS256" => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(padding, &rng, message, &mut sig).unwrap();
                sig
            }
        }
    }

    /// RFC 7638 thumbprint, computed here independently of the crate.
    fn thumbprint(&self) -> String {
        let jwk = self.public_jwk();
        let canonical = match self {
            Self::Ec(_) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                jwk["x"].as_str().unwrap(),
                jwk["y"].as_str().unwrap()
            ),
            Self::Rsa(_) => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                jwk["e"].as_str().unwrap(),
                jwk["n"].as_str().unwrap()
            ),
        };
        b64(&Sha256::digest(canonical.as_bytes()))
    }
}

fn rsa_jwk(key: &RsaKeyPair) -> Value {
    let public = key.public_key();
    json!({
        "kty": "RSA",
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero()),
    })
}

/// Signs `header` and `claims` as a compact JWS with `key`.
fn sign_jws(key: &ClientKey, header: &Value, claims: &Value) -> String {
    let alg = header["alg"].as_str().unwrap_or("ES256").to_owned();
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(&alg, message.as_bytes());
    format!("{message}.{}", b64(&sig))
}

/// An HS256 access token with `claims` (the authorization server's side).
fn access_token(claims: Value) -> String {
    let message = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"at+jwt"}"#),
        b64(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
    format!("{message}.{}", b64(tag.as_ref()))
}

fn bound_token(jkt: &str) -> String {
    access_token(json!({"sub": "alice", "exp": now() + 300, "cnf": {"jkt": jkt}}))
}

fn ath(token: &str) -> String {
    b64(&Sha256::digest(token.as_bytes()))
}

/// A proof under construction: the defaults are a valid proof for `GET {ORIGIN}/api/items`.
struct Proof<'k> {
    key: &'k ClientKey,
    header: Value,
    claims: Value,
}

impl<'k> Proof<'k> {
    fn new(key: &'k ClientKey, token: &str) -> Self {
        let alg = match key {
            ClientKey::Ec(_) => "ES256",
            ClientKey::Rsa(_) => "PS256",
        };
        Self {
            key,
            header: json!({"typ": "dpop+jwt", "alg": alg, "jwk": key.public_jwk()}),
            claims: json!({
                "jti": uuid(),
                "htm": "GET",
                "htu": format!("{ORIGIN}/api/items"),
                "iat": now(),
                "ath": ath(token),
            }),
        }
    }

    fn header(mut self, name: &str, value: Value) -> Self {
        set(&mut self.header, name, value);
        self
    }

    fn claim(mut self, name: &str, value: Value) -> Self {
        set(&mut self.claims, name, value);
        self
    }

    fn sign(&self) -> String {
        sign_jws(self.key, &self.header, &self.claims)
    }
}

fn set(object: &mut Value, name: &str, value: Value) {
    let map = object.as_object_mut().unwrap();
    if value.is_null() {
        map.remove(name);
    } else {
        map.insert(name.to_owned(), value);
    }
}

fn uuid() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    b64(&bytes)
}

fn authenticator() -> JwtAuthenticator<Value, String> {
    JwtAuthenticator::<Value>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .accept_dpop()
        .map_user(|claims: Value| Ok(claims["sub"].as_str().unwrap_or_default().to_owned()))
        .build()
        .unwrap()
}

fn config() -> DpopConfig {
    DpopConfig::new(ORIGIN).unwrap()
}

type Svc = tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>;

fn stack(config: DpopConfig) -> Svc {
    let layer = BearerAuthLayer::new(authenticator()).dpop(config).unwrap();
    tower::util::BoxCloneSyncService::new(ServiceBuilder::new().layer(layer).service(service_fn(
        |req: Request<String>| async move {
            let user = req.extensions().get::<Authenticated<String>>().unwrap();
            Ok::<_, Infallible>(Response::new(format!("hello {}", &**user)))
        },
    )))
}

async fn send(
    svc: &Svc,
    method: Method,
    uri: &str,
    auth: &str,
    proofs: &[&str],
) -> Response<String> {
    let mut req = Request::builder().method(method).uri(uri);
    if !auth.is_empty() {
        req = req.header(AUTHORIZATION, auth);
    }
    for proof in proofs {
        req = req.header("dpop", *proof);
    }
    svc.clone()
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap()
}

async fn get(svc: &Svc, token: &str, proof: &str) -> Response<String> {
    send(
        svc,
        Method::GET,
        "/api/items",
        &format!("DPoP {token}"),
        &[proof],
    )
    .await
}

fn challenge(res: &Response<String>) -> Vec<String> {
    res.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The answer to a refused proof: 401 with a `DPoP` challenge naming `invalid_dpop_proof`.
fn assert_invalid_proof(res: &Response<String>, what: &str) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
    let challenges = challenge(res);
    assert_eq!(challenges.len(), 1, "{what}: {challenges:?}");
    assert!(
        challenges[0].starts_with("DPoP algs=\"")
            && challenges[0].contains("error=\"invalid_dpop_proof\""),
        "{what}: {challenges:?}"
    );
}

// RFC 9449 §4.3, §7.1: a valid proof by the key the token is bound to passes, ES256 and RSA.
#[tokio::test]
async fn rfc9449_7_1_valid_proof_with_bound_token_passes_es256_ps256_rs256() {
    let svc = stack(config());
    let ec = ClientKey::es256();
    let token = bound_token(&ec.thumbprint());
    let res = get(&svc, &token, &Proof::new(&ec, &token).sign()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body(), "hello alice");

    let rsa = ClientKey::rsa();
    let token = bound_token(&rsa.thumbprint());
    for alg in ["PS256", "RS256"] {
        let proof = Proof::new(&rsa, &token).header("alg", json!(alg)).sign();
        let res = get(&svc, &token, &proof).await;
        assert_eq!(res.status(), StatusCode::OK, "{alg}");
    }
}

// RFC 9449 §11.1: a proof is used once; the replay is refused.
#[tokio::test]
async fn rfc9449_11_1_replayed_jti_is_refused() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let proof = Proof::new(&key, &token).sign();
    assert_eq!(get(&svc, &token, &proof).await.status(), StatusCode::OK);
    let res = get(&svc, &token, &proof).await;
    assert_invalid_proof(&res, "replay");
    assert!(challenge(&res)[0].contains("already used"));
    // The same jti in a freshly signed proof (new signature bytes) is still a replay.
    let again = Proof::new(&key, &token)
        .claim(
            "jti",
            serde_json::from_str::<Value>(&proof_claims(&proof)).unwrap()["jti"].clone(),
        )
        .sign();
    assert_invalid_proof(&get(&svc, &token, &again).await, "re-signed replay");
}

fn proof_claims(proof: &str) -> String {
    String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(proof.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

// RFC 9449 §11.1: many concurrent requests racing with one proof: exactly one passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rfc9449_11_1_concurrent_replays_admit_exactly_one() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let proof = Proof::new(&key, &token).sign();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (svc, token, proof) = (svc.clone(), token.clone(), proof.clone());
        tasks.push(tokio::spawn(async move {
            get(&svc, &token, &proof).await.status()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}

// RFC 9449 §4.3 check 8: `htm` must be the request method.
#[tokio::test]
async fn rfc9449_4_3_wrong_htm_is_refused() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let proof = Proof::new(&key, &token).claim("htm", json!("POST")).sign();
    assert_invalid_proof(&get(&svc, &token, &proof).await, "htm POST on GET");
    let proof = Proof::new(&key, &token).claim("htm", json!("get")).sign();
    assert_invalid_proof(&get(&svc, &token, &proof).await, "lowercase htm");
    // The right method on a POST passes.
    let proof = Proof::new(&key, &token).claim("htm", json!("POST")).sign();
    let res = send(
        &svc,
        Method::POST,
        "/api/items",
        &format!("DPoP {token}"),
        &[&proof],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

// RFC 9449 §4.3 check 9: `htu` is the configured origin plus the path; query and fragment
// are ignored; another path, host, scheme or port is refused.
#[tokio::test]
async fn rfc9449_4_3_htu_is_checked_against_the_configured_origin() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let ok = Proof::new(&key, &token)
        .claim("htu", json!(format!("{ORIGIN}/api/items?page=2#top")))
        .sign();
    let res = send(
        &svc,
        Method::GET,
        "/api/items?other=1",
        &format!("DPoP {token}"),
        &[&ok],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "query and fragment are ignored"
    );
    for htu in [
        format!("{ORIGIN}/api/other"),
        format!("{ORIGIN}/api/items/"),
        "https://evil.example/api/items".to_owned(),
        "http://api.example.test/api/items".to_owned(),
        "https://api.example.test:8443/api/items".to_owned(),
        "https://api.example.test@evil.example/api/items".to_owned(),
        "/api/items".to_owned(),
    ] {
        let proof = Proof::new(&key, &token).claim("htu", json!(htu)).sign();
        assert_invalid_proof(&get(&svc, &token, &proof).await, &htu);
    }
}

// RFC 9449 §4.3 check 9 with a client-chosen `Host`: a proof for the host the client names
// is refused when it is not the configured public origin, over a real connection.
#[tokio::test]
async fn rfc9449_4_3_htu_naming_the_clients_host_header_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = stack(config());
    tokio::spawn(async move {
        loop {
            let (io, _) = listener.accept().await.unwrap();
            let svc = svc.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let svc = svc.clone();
                    async move {
                        let (parts, _) = req.into_parts();
                        svc.oneshot(Request::from_parts(parts, String::new())).await
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    let client = reqwest::Client::new();
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let url = format!("http://{addr}/api/items");
    // The client says `Host: evil.example` and signs a proof for it.
    let proof = Proof::new(&key, &token)
        .claim("htu", json!("http://evil.example/api/items"))
        .sign();
    let res = client
        .get(&url)
        .header("host", "evil.example")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_dpop_proof")
    );
    // Nor does the address the client actually connected to count.
    let proof = Proof::new(&key, &token).claim("htu", json!(url)).sign();
    let res = client
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The configured public origin does.
    let proof = Proof::new(&key, &token).sign();
    let res = client
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "hello alice");
}

// RFC 9449 §4.3 check 11, §11.1: `iat` within the window, not stale, not in the future.
#[tokio::test]
async fn rfc9449_4_3_stale_or_future_iat_is_refused() {
    let svc = stack(
        config()
            .max_age(Duration::from_secs(60))
            .leeway(Duration::from_secs(5)),
    );
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    for (iat, what) in [
        (json!(now() - 120), "two minutes old"),
        (json!(now() + 60), "a minute ahead"),
        (json!(now().to_string()), "a string"),
        (Value::Null, "missing"),
    ] {
        let proof = Proof::new(&key, &token).claim("iat", iat).sign();
        assert_invalid_proof(&get(&svc, &token, &proof).await, what);
    }
    let proof = Proof::new(&key, &token)
        .claim("iat", json!(now() - 30))
        .sign();
    assert_eq!(get(&svc, &token, &proof).await.status(), StatusCode::OK);
}

// RFC 9449 §4.3 check 11 / §7.1: `ath` must hash the token the proof is presented with.
#[tokio::test]
async fn rfc9449_7_1_wrong_or_missing_ath_is_refused() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let other =
        access_token(json!({"sub": "bob", "exp": now() + 300, "cnf": {"jkt": key.thumbprint()}}));
    for (ath_value, what) in [
        (json!(ath(&other)), "another token's hash"),
        (json!(ath(&token).to_uppercase()), "case-changed"),
        (json!(b64(&Sha256::digest(b"x"))), "hash of something else"),
        (Value::Null, "missing"),
    ] {
        let proof = Proof::new(&key, &token).claim("ath", ath_value).sign();
        assert_invalid_proof(&get(&svc, &token, &proof).await, what);
    }
}

// RFC 9449 §6.1, §7.1: `cnf.jkt` must be the proof key's thumbprint.
#[tokio::test]
async fn rfc9449_6_1_proof_by_another_key_is_refused() {
    let svc = stack(config());
    let victim = ClientKey::es256();
    let thief = ClientKey::es256();
    let token = bound_token(&victim.thumbprint());
    // The thief holds the stolen token and signs a perfect proof with its own key.
    let res = get(&svc, &token, &Proof::new(&thief, &token).sign()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenges = challenge(&res);
    assert!(
        challenges[0].starts_with("DPoP ") && challenges[0].contains("invalid_token"),
        "{challenges:?}"
    );
    // Or embeds the victim's public key but signs with its own private key.
    let forged = Proof::new(&thief, &token)
        .header("jwk", victim.public_jwk())
        .sign();
    assert_invalid_proof(
        &get(&svc, &token, &forged).await,
        "victim's jwk, thief's signature",
    );
}

// RFC 9449 §7.1: a DPoP-bound token sent as `Bearer` is refused (the binding would be lost),
// with or without a proof; an unbound token sent with the `DPoP` scheme is refused too.
#[tokio::test]
async fn rfc9449_7_1_bound_token_as_bearer_and_unbound_token_as_dpop_are_refused() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let proof = Proof::new(&key, &token).sign();
    for proofs in [vec![], vec![proof.as_str()]] {
        let res = send(
            &svc,
            Method::GET,
            "/api/items",
            &format!("Bearer {token}"),
            &proofs,
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let challenges = challenge(&res);
        assert!(challenges[0].starts_with("Bearer") && challenges[0].contains("invalid_token"));
        // RFC 9449 §7.1: both schemes are offered.
        assert!(
            challenges.iter().any(|c| c.starts_with("DPoP algs=\"")),
            "{challenges:?}"
        );
    }
    let unbound = access_token(json!({"sub": "alice", "exp": now() + 300}));
    let res = get(&svc, &unbound, &Proof::new(&key, &unbound).sign()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The unbound token as a bearer token is fine.
    let res = send(
        &svc,
        Method::GET,
        "/api/items",
        &format!("Bearer {unbound}"),
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

// RFC 9449 §4.3 check 1: exactly one `DPoP` header; none is refused too.
#[tokio::test]
async fn rfc9449_4_3_two_or_no_dpop_headers_are_refused() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let (a, b) = (
        Proof::new(&key, &token).sign(),
        Proof::new(&key, &token).sign(),
    );
    let auth = format!("DPoP {token}");
    assert_invalid_proof(
        &send(&svc, Method::GET, "/api/items", &auth, &[&a, &b]).await,
        "two",
    );
    assert_invalid_proof(
        &send(&svc, Method::GET, "/api/items", &auth, &[]).await,
        "none",
    );
    let list = format!("{a}, {b}");
    assert_invalid_proof(
        &send(&svc, Method::GET, "/api/items", &auth, &[&list]).await,
        "folded",
    );
    // Neither of the two was recorded: the first alone still passes.
    assert_eq!(get(&svc, &token, &a).await.status(), StatusCode::OK);
}

// RFC 9449 §4.3 checks 4-7: `typ`, asymmetric `alg` (no `none`, no HMAC), a public `jwk`.
#[tokio::test]
async fn rfc9449_4_3_typ_alg_and_jwk_are_checked() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    for (proof, what) in [
        (
            Proof::new(&key, &token).header("typ", json!("jwt")).sign(),
            "typ jwt",
        ),
        (
            Proof::new(&key, &token).header("typ", Value::Null).sign(),
            "no typ",
        ),
        (
            Proof::new(&key, &token).header("jwk", Value::Null).sign(),
            "no jwk",
        ),
        (
            Proof::new(&key, &token)
                .header("alg", json!("ES384"))
                .sign(),
            "alg not the key's",
        ),
        (
            Proof::new(&key, &token)
                .header(
                    "jwk",
                    json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}),
                )
                .sign(),
            "garbage key",
        ),
    ] {
        assert_invalid_proof(&get(&svc, &token, &proof).await, what);
    }
    // `alg: none` with an empty signature.
    let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk()});
    let claims = Proof::new(&key, &token).claims;
    let none = format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    assert_invalid_proof(&get(&svc, &token, &none).await, "alg none");
    // HS256 keyed with a symmetric `oct` JWK the attacker chose.
    let k = b"attacker-chosen-secret-0123456789abcdef";
    let header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64(k)}});
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k),
        message.as_bytes(),
    );
    let hmac = format!("{message}.{}", b64(tag.as_ref()));
    assert_invalid_proof(&get(&svc, &token, &hmac).await, "HS256");
    // A bad signature.
    let mut tampered = Proof::new(&key, &token).sign().into_bytes();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_invalid_proof(&get(&svc, &token, &tampered).await, "tampered signature");
}

// RFC 9449 §4.3 check 7: the embedded key must be public; a proof carrying the private key
// (`d`) is refused even though its signature verifies.
#[tokio::test]
async fn rfc9449_4_3_proof_with_a_private_key_is_refused() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let mut jwk = key.public_jwk();
    // Any `d` member marks a private key; the value does not matter to the check.
    jwk["d"] = json!(b64(&[7u8; 32]));
    let proof = Proof::new(&key, &token).header("jwk", jwk).sign();
    let res = get(&svc, &token, &proof).await;
    assert_invalid_proof(&res, "private jwk");
    assert!(challenge(&res)[0].contains("public key"));
    let rsa = ClientKey::rsa();
    let mut jwk = rsa.public_jwk();
    jwk["p"] = json!("AQAB");
    let token = bound_token(&rsa.thumbprint());
    let proof = Proof::new(&rsa, &token).header("jwk", jwk).sign();
    assert_invalid_proof(&get(&svc, &token, &proof).await, "RSA private member");
}

// RFC 9449 §9: with nonces on, a proof without the server's nonce gets `use_dpop_nonce` and a
// `DPoP-Nonce`; the retry with it passes; a made-up nonce is refused.
#[tokio::test]
async fn rfc9449_9_server_nonce_is_required_and_issued() {
    let nonces = RotatingNonces::new(
        b"nonce-secret-0123456789abcdef0123456789",
        Duration::from_secs(300),
    )
    .unwrap();
    let svc = stack(config().nonces(nonces));
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let res = get(&svc, &token, &Proof::new(&key, &token).sign()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&res)[0].contains("error=\"use_dpop_nonce\""),
        "{:?}",
        challenge(&res)
    );
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let bad = Proof::new(&key, &token)
        .claim("nonce", json!("made-up"))
        .sign();
    assert!(challenge(&get(&svc, &token, &bad).await)[0].contains("use_dpop_nonce"));
    let proof = Proof::new(&key, &token).claim("nonce", json!(nonce)).sign();
    let res = get(&svc, &token, &proof).await;
    assert_eq!(res.status(), StatusCode::OK);
    // RFC 9449 §8.2: the answer carries the nonce to use next.
    assert!(res.headers().contains_key("dpop-nonce"));
}

// RFC 9449 §7.1: the 401 without credentials offers both schemes, DPoP with `algs`.
#[tokio::test]
async fn rfc9449_7_1_missing_credentials_challenge_offers_dpop_algs() {
    let config = config()
        .algorithms([Algorithm::ES256, Algorithm::PS256])
        .unwrap();
    let res = send(&stack(config), Method::GET, "/api/items", "", &[]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenges = challenge(&res);
    assert_eq!(
        challenges,
        ["Bearer realm=\"api\"", "DPoP algs=\"ES256 PS256\""]
    );
}

// Only the allow-listed algorithms verify; HMAC cannot be allow-listed.
#[tokio::test]
async fn rfc9449_4_3_algorithm_allow_list_is_enforced() {
    let svc = stack(config().algorithms([Algorithm::PS256]).unwrap());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    assert_invalid_proof(
        &get(&svc, &token, &Proof::new(&key, &token).sign()).await,
        "ES256 not listed",
    );
    for algs in [vec![Algorithm::HS256], vec![]] {
        assert!(matches!(
            config().algorithms(algs),
            Err(ConfigError::InvalidValue { .. })
        ));
    }
}

// A layer whose authenticator ignores `cnf.jkt` cannot turn DPoP on: the proof would prove
// nothing about the token.
#[test]
fn dpop_needs_an_authenticator_that_checks_the_binding() {
    let plain = JwtAuthenticator::<Value>::builder()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET))
        .build()
        .unwrap();
    assert!(BearerAuthLayer::new(plain).dpop(config()).is_err());
    let keys = StaticTokens::new().token("k-0123456789abcdef", String::from("a"));
    assert!(BearerAuthLayer::new(keys).dpop(config()).is_err());
    for origin in [
        "api.example.test",
        "https://api.example.test/base",
        "ftp://x",
    ] {
        assert!(DpopConfig::new(origin).is_err(), "{origin}");
    }
}

// A composite: DPoP-bound JWTs beside API keys in `x-api-key`; the DPoP check still applies.
#[tokio::test]
async fn composite_of_dpop_jwts_and_api_keys() {
    let keys = StaticTokens::new().token("svc-0123456789abcdef01234", String::from("billing"));
    let auth = CompositeAuth::new(
        Member::new(
            Credential::dpop().or(Credential::bearer()).jws(),
            authenticator(),
        ),
        Member::new(Credential::header("x-api-key").unwrap(), keys),
    );
    let layer = BearerAuthLayer::new(auth)
        .token_from_header("x-api-key")
        .unwrap()
        .dpop(config())
        .unwrap();
    let svc: Svc =
        tower::util::BoxCloneSyncService::new(ServiceBuilder::new().layer(layer).service(
            service_fn(|req: Request<String>| async move {
                let user = req.extensions().get::<Authenticated<String>>().unwrap();
                Ok::<_, Infallible>(Response::new(user.to_string()))
            }),
        ));
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let res = get(&svc, &token, &Proof::new(&key, &token).sign()).await;
    assert_eq!(res.into_body(), "alice");
    let thief = ClientKey::es256();
    let res = get(&svc, &token, &Proof::new(&thief, &token).sign()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let req = Request::get("/api/items")
        .header("x-api-key", "svc-0123456789abcdef01234")
        .body(String::new())
        .unwrap();
    assert_eq!(
        svc.clone().oneshot(req).await.unwrap().into_body(),
        "billing"
    );
}

// The replay cache is bounded and fails closed: full of live proofs, new ones get 503.
#[tokio::test]
async fn rfc9449_11_1_full_replay_cache_fails_closed() {
    let svc = stack(config().replay_cache(MemoryReplayCache::new(1)));
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    assert_eq!(
        get(&svc, &token, &Proof::new(&key, &token).sign())
            .await
            .status(),
        StatusCode::OK
    );
    let res = get(&svc, &token, &Proof::new(&key, &token).sign()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A proof for a token that does not verify is not recorded (it cannot fill the cache).
    let svc = stack(config().replay_cache(MemoryReplayCache::new(1)));
    let forged = bound_token(&key.thumbprint()).replace(".", ".x");
    let _ = get(&svc, &forged, &Proof::new(&key, &forged).sign()).await;
    assert_eq!(
        get(&svc, &token, &Proof::new(&key, &token).sign())
            .await
            .status(),
        StatusCode::OK
    );
}

// Huge and malformed proofs get a clear refusal, never a panic.
#[tokio::test]
async fn rfc9449_4_3_malformed_and_huge_proofs_are_refused() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let huge = "a".repeat(9000);
    for proof in ["", "a.b", "a.b.c.d", "....", huge.as_str(), "e30.e30.e30"] {
        let res = send(
            &svc,
            Method::GET,
            "/api/items",
            &format!("DPoP {token}"),
            &[proof],
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{proof:.20}");
    }
    // Duplicate claims are ambiguous: refused.
    let proof = Proof::new(&key, &token);
    let claims = proof.claims.to_string();
    let duplicated = format!("{},\"htm\":\"POST\"}}", &claims[..claims.len() - 1]);
    let message = format!(
        "{}.{}",
        b64(proof.header.to_string().as_bytes()),
        b64(duplicated.as_bytes())
    );
    let signed = format!("{message}.{}", b64(&key.sign("ES256", message.as_bytes())));
    assert_invalid_proof(&get(&svc, &token, &signed).await, "duplicate htm");
}

// RFC 9449 §6.1 on the JWKS path: a DPoP-bound token served from the verified-token cache is
// still compared with each request's proof key, and still refused as `Bearer`.
#[cfg(feature = "test-util")]
#[tokio::test]
async fn rfc9449_6_1_binding_is_checked_on_every_jwks_cache_hit() {
    use tower_scope::jwks::JwksAuthenticator;
    use tower_scope::jwks::mock::MockIssuer;

    let idp = MockIssuer::start().await.unwrap();
    let auth = JwksAuthenticator::<Value>::builder()
        .issuer(idp.jwks())
        .token_cache(100)
        .accept_dpop()
        .build()
        .await
        .unwrap();
    let layer = BearerAuthLayer::new(auth.clone()).dpop(config()).unwrap();
    let svc: Svc =
        tower::util::BoxCloneSyncService::new(ServiceBuilder::new().layer(layer).service(
            service_fn(|_req: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            }),
        ));
    let key = ClientKey::es256();
    let token =
        idp.mint(json!({"sub": "alice", "exp": now() + 300, "cnf": {"jkt": key.thumbprint()}}));
    assert_eq!(
        get(&svc, &token, &Proof::new(&key, &token).sign())
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&svc, &token, &Proof::new(&key, &token).sign())
            .await
            .status(),
        StatusCode::OK
    );
    let thief = ClientKey::es256();
    let res = get(&svc, &token, &Proof::new(&thief, &token).sign()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = send(
        &svc,
        Method::GET,
        "/api/items",
        &format!("Bearer {token}"),
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(auth.stats().cache_hit >= 2, "{:?}", auth.stats());
}

// RFC 9110 §11.1: the scheme is case-insensitive; a DPoP token also sent in another place is
// ambiguous (400), as for bearer tokens.
#[tokio::test]
async fn rfc9449_7_1_scheme_case_and_ambiguity() {
    let svc = stack(config());
    let key = ClientKey::es256();
    let token = bound_token(&key.thumbprint());
    let proof = Proof::new(&key, &token).sign();
    let res = send(
        &svc,
        Method::GET,
        "/api/items",
        &format!("dpop {token}"),
        &[&proof],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);

    let layer = BearerAuthLayer::new(authenticator())
        .token_from_query("access_token")
        .unwrap()
        .dpop(config())
        .unwrap();
    let svc: Svc =
        tower::util::BoxCloneSyncService::new(ServiceBuilder::new().layer(layer).service(
            service_fn(|_req: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            }),
        ));
    let proof = Proof::new(&key, &token).sign();
    let uri = format!("/api/items?access_token={token}");
    let res = send(&svc, Method::GET, &uri, &format!("DPoP {token}"), &[&proof]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

// RFC 9449 §7.1 with RFC 9728 §5.1: with DPoP and protected-resource metadata both on, the 401
// still offers both schemes, and the Bearer challenge names the metadata document.
#[tokio::test]
async fn rfc9449_7_1_and_rfc9728_5_1_challenges_name_the_metadata_with_dpop_on() {
    let metadata =
        tower_scope::auth::ProtectedResourceMetadata::new("https://api.example.com").unwrap();
    let (layer, _well_known) = BearerAuthLayer::new(authenticator())
        .dpop(config())
        .unwrap()
        .protected_resource(metadata)
        .unwrap();
    let svc: Svc =
        tower::util::BoxCloneSyncService::new(ServiceBuilder::new().layer(layer).service(
            service_fn(|_req: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            }),
        ));
    let res = send(&svc, Method::GET, "/api/items", "", &[]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenges = challenge(&res);
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(
        challenges[0].starts_with("Bearer")
            && challenges[0].contains(
                r#"resource_metadata="https://api.example.com/.well-known/oauth-protected-resource""#
            ),
        "{challenges:?}"
    );
    assert!(challenges[1].starts_with("DPoP algs=\""), "{challenges:?}");
}
