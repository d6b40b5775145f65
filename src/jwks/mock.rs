//! A mock OIDC issuer on loopback (feature `test-util`): mints tokens, serves a JWKS and a
//! discovery document, counts fetches, and rotates keys, fails or hangs on demand, so you can
//! test your own [`JwksAuthenticator`](super::JwksAuthenticator) setup over real HTTP.
//!
//! Its keys are fixed test keys compiled into the crate: never trust them outside tests.
//!
//! ```
//! use tower_scope::jwks::{JwksAuthenticator, mock::MockIssuer};
//! use tower_scope::{Authenticate, Token};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let idp = MockIssuer::start().await.unwrap();
//! let auth = JwksAuthenticator::<serde_json::Value>::builder()
//!     .issuer(idp.jwks())
//!     .build()
//!     .await
//!     .unwrap();
//!
//! idp.rotate(); // the next token is signed by a key the authenticator has not seen
//! let token = idp.mint(serde_json::json!({"sub": "alice"}));
//! let claims = auth.authenticate(Token::new(&token)).await.unwrap();
//! assert_eq!(claims["sub"], "alice");
//! assert_eq!(idp.jwks_fetches(), 2); // one at build, one for the unknown `kid`
//! # }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::jwk::EllipticCurve;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::Issuer;
use crate::ConfigError;
use crate::jwt::{Algorithm, default_provider};

const RSA_KEYS: [&[u8]; 3] = [
    include_bytes!("mock_keys/rsa1_private.pem"),
    include_bytes!("mock_keys/rsa2_private.pem"),
    include_bytes!("mock_keys/rsa3_private.pem"),
];
const EC256_KEY: &[u8] = include_bytes!("mock_keys/ec256_private.pem");
const ED_KEY: &[u8] = include_bytes!("mock_keys/ed_private.pem");
const HMAC_SECRET: &[u8] = b"tower-scope mock issuer HS256 secret: tests only!";

struct MockKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

struct Settings {
    rsa: usize,
    extra: Vec<Value>,
    failing: bool,
    hanging: bool,
    max_age: Option<u64>,
    discovery_issuer: Option<String>,
    discovery_jwks_uri: Option<String>,
    /// When set, the JWKS holds exactly these JWKs instead of the issuer's keys.
    published: Option<Vec<Value>>,
    introspection: Introspection,
}

/// The introspection endpoint's state (RFC 7662).
struct Introspection {
    /// Registered tokens and the exact answer body each gets; unknown tokens are inactive.
    answers: HashMap<String, String>,
    client: (String, String),
    status: Option<u16>,
    hanging: bool,
    delay: Duration,
    oauth_metadata: bool,
    last_client_auth: Option<&'static str>,
}

struct State {
    issuer: String,
    provider: &'static CryptoProvider,
    rsa: Vec<MockKey>,
    others: Vec<MockKey>,
    settings: Mutex<Settings>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    introspections: AtomicUsize,
    requests: AtomicUsize,
}

/// A running mock issuer; the server stops when this value is dropped.
///
/// It publishes one RSA key (`RS256`, kid `rsa-1`; [`rotate`](Self::rotate) replaces it with
/// the next one), a P-256 key (`ES256`, `ec-1`), an Ed25519 key (`EdDSA`, `ed-1`) and an HMAC
/// key (`HS256`, `hs-1`, ignored unless your authenticator allows HS256).
pub struct MockIssuer {
    state: Arc<State>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl fmt::Debug for MockIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockIssuer")
            .field("issuer", &self.state.issuer)
            .finish_non_exhaustive()
    }
}

impl Drop for MockIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn invalid_key(_: jsonwebtoken::errors::Error) -> ConfigError {
    ConfigError::InvalidKey("a built-in mock issuer key could not be loaded".into())
}

fn load_keys(provider: &CryptoProvider) -> Result<(Vec<MockKey>, Vec<MockKey>), ConfigError> {
    let utils = &provider.key_utils;
    let mut rsa = Vec::new();
    for (i, pem) in RSA_KEYS.iter().enumerate() {
        let encoding = EncodingKey::from_rsa_pem(pem).map_err(invalid_key)?;
        let (n, e) = (utils.rsa_pub_components_from_private_key)(encoding.as_bytes())
            .map_err(invalid_key)?;
        let kid = format!("rsa-{}", i + 1);
        let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(&n), "e": b64(&e)});
        rsa.push(MockKey {
            kid,
            alg: Algorithm::RS256,
            encoding,
            jwk,
        });
    }
    let ec = EncodingKey::from_ec_pem(EC256_KEY).map_err(invalid_key)?;
    let (_, x, y) = (utils.ec_pub_components_from_private_key)(ec.as_bytes(), Algorithm::ES256)
        .map_err(invalid_key)?;
    let ed = EncodingKey::from_ed_pem(ED_KEY).map_err(invalid_key)?;
    let ed_x = (utils.ed_pub_components_from_private_key)(ed.as_bytes(), &EllipticCurve::Ed25519)
        .map_err(invalid_key)?;
    let others = vec![
        MockKey {
            kid: "ec-1".into(),
            alg: Algorithm::ES256,
            encoding: ec,
            jwk: json!({"kty": "EC", "kid": "ec-1", "use": "sig", "alg": "ES256", "crv": "P-256",
                "x": b64(&x), "y": b64(&y)}),
        },
        MockKey {
            kid: "ed-1".into(),
            alg: Algorithm::EdDSA,
            encoding: ed,
            jwk: json!({"kty": "OKP", "kid": "ed-1", "use": "sig", "alg": "EdDSA",
                "crv": "Ed25519", "x": b64(&ed_x)}),
        },
        MockKey {
            kid: "hs-1".into(),
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(HMAC_SECRET),
            jwk: json!({"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": b64(HMAC_SECRET)}),
        },
    ];
    Ok((rsa, others))
}

impl MockIssuer {
    /// Starts the issuer on `127.0.0.1` with a free port.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoCryptoBackend`] without a crypto backend to sign with, or
    /// [`ConfigError::InvalidValue`] when no loopback port can be bound.
    pub async fn start() -> Result<Self, ConfigError> {
        let provider = default_provider().ok_or(ConfigError::NoCryptoBackend)?;
        let (rsa, others) = load_keys(provider)?;
        let listener =
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| ConfigError::InvalidValue {
                    setting: "mock issuer",
                    reason: format!("cannot bind a loopback port: {e}"),
                })?;
        let addr = listener
            .local_addr()
            .map_err(|e| ConfigError::InvalidValue {
                setting: "mock issuer",
                reason: e.to_string(),
            })?;
        let state = Arc::new(State {
            issuer: format!("http://{addr}"),
            provider,
            rsa,
            others,
            settings: Mutex::new(Settings {
                rsa: 0,
                extra: Vec::new(),
                failing: false,
                hanging: false,
                max_age: None,
                discovery_issuer: None,
                discovery_jwks_uri: None,
                published: None,
                introspection: Introspection {
                    answers: HashMap::new(),
                    client: (
                        Self::INTROSPECTION_CLIENT.0.into(),
                        Self::INTROSPECTION_CLIENT.1.into(),
                    ),
                    status: None,
                    hanging: false,
                    delay: Duration::ZERO,
                    oauth_metadata: true,
                    last_client_auth: None,
                },
            }),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            introspections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        Ok(Self {
            state,
            addr,
            server,
        })
    }

    /// The issuer identifier, `http://127.0.0.1:<port>` (also the discovery base URL).
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The JWKS URL, `{issuer}/jwks.json`.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.state.issuer)
    }

    /// This issuer configured through OIDC discovery.
    pub fn discovery(&self) -> Issuer {
        Issuer::discover(self.issuer())
    }

    /// This issuer configured with its JWKS URL.
    pub fn jwks(&self) -> Issuer {
        Issuer::jwks(self.issuer(), self.jwks_url())
    }

    /// The `kid` of the RSA key that signs [`mint`](Self::mint)ed tokens now.
    pub fn current_kid(&self) -> String {
        self.state.rsa[self.settings().rsa].kid.clone()
    }

    /// Signs `claims` with the current RSA key (RS256); see [`mint_with`](Self::mint_with).
    pub fn mint(&self, claims: Value) -> String {
        self.mint_with(Algorithm::RS256, claims)
    }

    /// Signs `claims` with this issuer's key for `alg` (RS256, ES256, EdDSA or HS256).
    ///
    /// `iss` (this issuer), `iat` (now) and `exp` (in 10 minutes) are added unless present.
    pub fn mint_with(&self, alg: Algorithm, claims: Value) -> String {
        self.mint_with_header(alg, json!({}), claims)
    }

    /// Like [`mint_with`](Self::mint_with), with `header` fields merged over the default
    /// header (`alg`, `typ: JWT`, `kid`), e.g. a foreign `kid` or a `jku`.
    ///
    /// # Panics
    ///
    /// If `alg` is not one this issuer has a key for (a bug in the calling test).
    pub fn mint_with_header(&self, alg: Algorithm, header: Value, mut claims: Value) -> String {
        let rsa = self.settings().rsa;
        let key = if alg == Algorithm::RS256 {
            &self.state.rsa[rsa]
        } else {
            self.state
                .others
                .iter()
                .find(|k| k.alg == alg)
                .expect("the mock issuer signs RS256, ES256, EdDSA and HS256 only")
        };
        let mut full = json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": key.kid});
        if let (Some(full), Value::Object(extra)) = (full.as_object_mut(), header) {
            full.extend(extra);
        }
        if let Some(claims) = claims.as_object_mut() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            claims
                .entry("iss")
                .or_insert_with(|| self.state.issuer.clone().into());
            claims.entry("iat").or_insert_with(|| now.into());
            claims.entry("exp").or_insert_with(|| (now + 600).into());
        }
        let message = format!(
            "{}.{}",
            b64(full.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signer = (self.state.provider.signer_factory)(&key.alg, &key.encoding)
            .expect("the mock issuer's keys are valid");
        let mut signature = jsonwebtoken::signature::Signer::try_sign(&*signer, message.as_bytes())
            .expect("signing with a valid key succeeds");
        // Verifiers accept low-S ECDSA signatures only; neither backend's signer normalizes.
        crate::jwt::ecdsa::normalize(key.alg, &mut signature);
        format!("{message}.{}", b64(&signature))
    }

    /// Replaces the published RSA key with the next one: new tokens carry a new `kid`, and the
    /// old key disappears from the JWKS (tokens it signed stop verifying after a refresh).
    pub fn rotate(&self) {
        let mut settings = self.settings();
        settings.rsa = (settings.rsa + 1) % self.state.rsa.len();
    }

    /// Publishes an extra raw JWK (malformed, `use: enc`...) next to the real keys.
    pub fn add_jwk(&self, jwk: Value) {
        self.settings().extra.push(jwk);
    }

    /// The public JWK this issuer publishes for `kid` (the current RSA key or `ec-1`, `ed-1`,
    /// `hs-1`), e.g. to re-publish it changed with [`publish_only`](Self::publish_only).
    pub fn jwk(&self, kid: &str) -> Option<Value> {
        let rsa = &self.state.rsa[self.settings().rsa];
        std::iter::once(rsa)
            .chain(&self.state.others)
            .find(|k| k.kid == kid)
            .map(|k| k.jwk.clone())
    }

    /// Makes the JWKS hold exactly `keys` (raw JWKs; empty for `{"keys":[]}`) instead of this
    /// issuer's keys, as an issuer that withdraws its keys does; tokens keep being signed with
    /// the real keys.
    pub fn publish_only(&self, keys: Vec<Value>) {
        self.settings().published = Some(keys);
    }

    /// Publishes this issuer's own keys again (undoes [`publish_only`](Self::publish_only)).
    pub fn publish_default(&self) {
        self.settings().published = None;
    }

    /// Makes the discovery document name `uri` as its `jwks_uri` (to test the URL rules).
    pub fn set_discovery_jwks_uri(&self, uri: impl Into<String>) {
        self.settings().discovery_jwks_uri = Some(uri.into());
    }

    /// Makes the JWKS and discovery endpoints answer 500 (`true`) or work again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.settings().failing = failing;
    }

    /// Makes the JWKS and discovery endpoints never answer (`true`) or work again (`false`).
    pub fn set_hanging(&self, hanging: bool) {
        self.settings().hanging = hanging;
    }

    /// Sends `Cache-Control: max-age=<secs>` with the JWKS (`None`: no header).
    pub fn set_max_age(&self, secs: Option<u64>) {
        self.settings().max_age = secs;
    }

    /// Makes the discovery document claim another `issuer` (to test the mismatch check).
    pub fn set_discovery_issuer(&self, issuer: impl Into<String>) {
        self.settings().discovery_issuer = Some(issuer.into());
    }

    /// The client id and secret the introspection endpoint accepts unless
    /// [`set_introspection_client`](Self::set_introspection_client) changes them.
    pub const INTROSPECTION_CLIENT: (&'static str, &'static str) =
        ("resource-server", "mock introspection secret: tests only!");

    /// The introspection endpoint (RFC 7662), `{issuer}/introspect`; also named by the
    /// RFC 8414 and OIDC discovery documents.
    ///
    /// It answers POSTed forms only, requires the client credentials by `client_secret_basic`
    /// or `client_secret_post` (exactly one, RFC 6749 §2.3.1; otherwise 401 `invalid_client`),
    /// answers 400 `invalid_request` without exactly one `token`, and for a registered token
    /// its registered answer, else `{"active":false}`.
    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.state.issuer)
    }

    /// Answers introspection of `token` with `answer` (e.g. `{"active": true, "sub": ...}`).
    pub fn register_introspection(&self, token: impl Into<String>, answer: Value) {
        self.register_introspection_raw(token, answer.to_string());
    }

    /// Answers introspection of `token` with exactly this body (duplicate members, not JSON...).
    pub fn register_introspection_raw(&self, token: impl Into<String>, body: impl Into<String>) {
        self.settings()
            .introspection
            .answers
            .insert(token.into(), body.into());
    }

    /// Forgets `token`: it is inactive from now on (a revocation at the authorization server).
    pub fn revoke_introspection(&self, token: &str) {
        self.settings().introspection.answers.remove(token);
    }

    /// Sets the client id and secret the introspection endpoint accepts.
    pub fn set_introspection_client(&self, id: impl Into<String>, secret: impl Into<String>) {
        self.settings().introspection.client = (id.into(), secret.into());
    }

    /// Makes the introspection endpoint answer every call with `status` and a JSON error body
    /// (`Some(500)`, `Some(400)`...), or work again (`None`).
    pub fn set_introspection_status(&self, status: Option<u16>) {
        self.settings().introspection.status = status;
    }

    /// Makes the introspection endpoint never answer (`true`) or work again (`false`).
    pub fn set_introspection_hanging(&self, hanging: bool) {
        self.settings().introspection.hanging = hanging;
    }

    /// Delays every introspection answer by `delay` (to make concurrent calls overlap).
    pub fn set_introspection_delay(&self, delay: Duration) {
        self.settings().introspection.delay = delay;
    }

    /// Serves the RFC 8414 metadata document (`true`, the default) or answers it 404, so
    /// discovery falls back to OIDC.
    pub fn set_oauth_metadata(&self, served: bool) {
        self.settings().introspection.oauth_metadata = served;
    }

    /// How many calls reached the introspection endpoint.
    pub fn introspection_requests(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }

    /// The client authentication method of the last accepted introspection call: `"basic"`
    /// or `"post"`.
    pub fn last_client_auth(&self) -> Option<&'static str> {
        self.settings().introspection.last_client_auth
    }

    /// How many times the JWKS was requested.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the discovery document was requested.
    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// How many HTTP requests of any kind reached this issuer.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.state.settings()
    }
}

impl State {
    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/introspect" => {
                self.requests.fetch_add(1, Ordering::SeqCst);
                self.introspect(req).await
            }
            "/.well-known/oauth-authorization-server" => {
                self.requests.fetch_add(1, Ordering::SeqCst);
                self.discovery_fetches.fetch_add(1, Ordering::SeqCst);
                if !self.settings().introspection.oauth_metadata {
                    return status(StatusCode::NOT_FOUND);
                }
                self.respond_json(self.metadata())
            }
            path => self.respond(path).await,
        }
    }

    /// The discovery document (RFC 8414 and OIDC share these members here).
    fn metadata(&self) -> Value {
        let settings = self.settings();
        let issuer = settings
            .discovery_issuer
            .clone()
            .unwrap_or_else(|| self.issuer.clone());
        let jwks_uri = settings
            .discovery_jwks_uri
            .clone()
            .unwrap_or_else(|| format!("{}/jwks.json", self.issuer));
        json!({"issuer": issuer, "jwks_uri": jwks_uri,
            "introspection_endpoint": format!("{}/introspect", self.issuer),
            "introspection_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post"]})
    }

    fn respond_json(&self, body: Value) -> Response<Full<Bytes>> {
        json_response(StatusCode::OK, body.to_string())
    }

    async fn introspect(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        use http_body_util::BodyExt as _;

        self.introspections.fetch_add(1, Ordering::SeqCst);
        let (hanging, delay, fail) = {
            let s = self.settings();
            (
                s.introspection.hanging,
                s.introspection.delay,
                s.introspection.status,
            )
        };
        if hanging {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(code) = fail {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return json_response(code, json!({"error": "server_error"}).to_string());
        }
        if req.method() != http::Method::POST {
            return status(StatusCode::METHOD_NOT_ALLOWED);
        }
        let basic = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .map(str::to_owned);
        let Ok(body) = http_body_util::Limited::new(req.into_body(), 64 * 1024)
            .collect()
            .await
        else {
            return status(StatusCode::PAYLOAD_TOO_LARGE);
        };
        let form: Vec<(String, String)> = form_urlencoded::parse(&body.to_bytes())
            .into_owned()
            .collect();
        let one = |name: &str| {
            let mut values = form.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
            match (values.next(), values.next()) {
                (Some(v), None) => Ok(Some(v.clone())),
                (None, _) => Ok(None),
                _ => Err(()),
            }
        };
        let (Ok(token), Ok(id), Ok(secret)) =
            (one("token"), one("client_id"), one("client_secret"))
        else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        let method = match (basic, id, secret) {
            // RFC 6749 §2.3.1: one method only.
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
            }
            (Some(basic), None, None) => decode_basic(&basic).map(|c| ("basic", c)),
            (None, Some(id), Some(secret)) => Some(("post", (id, secret))),
            _ => None,
        };
        let mut settings = self.settings();
        let accepted = method.filter(|(_, creds)| *creds == settings.introspection.client);
        let Some((method, _)) = accepted else {
            drop(settings);
            let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"introspection\""),
            );
            return response;
        };
        settings.introspection.last_client_auth = Some(method);
        let Some(token) = token else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        let answer = settings
            .introspection
            .answers
            .get(&token)
            .cloned()
            .unwrap_or_else(|| json!({"active": false}).to_string());
        drop(settings);
        json_response(StatusCode::OK, answer)
    }

    async fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let counter = match path {
            "/.well-known/openid-configuration" => &self.discovery_fetches,
            "/jwks.json" => &self.jwks_fetches,
            _ => return status(StatusCode::NOT_FOUND),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let (hanging, failing) = {
            let s = self.settings();
            (s.hanging, s.failing)
        };
        if hanging {
            // Longer than any sensible client timeout; the client gives up first.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if failing {
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        }
        let settings = self.settings();
        let (body, max_age) = if path == "/jwks.json" {
            let keys = match &settings.published {
                Some(keys) => keys.clone(),
                None => {
                    let mut keys = vec![self.rsa[settings.rsa].jwk.clone()];
                    keys.extend(self.others.iter().map(|k| k.jwk.clone()));
                    keys.extend(settings.extra.iter().cloned());
                    keys
                }
            };
            (json!({ "keys": keys }), settings.max_age)
        } else {
            drop(settings);
            (self.metadata(), None)
        };
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = max_age
            && let Ok(value) = http::HeaderValue::from_str(&format!("max-age={secs}"))
        {
            response.headers_mut().insert(CACHE_CONTROL, value);
        }
        response
    }
}

/// `Basic` credentials: base64 of the form-encoded id and secret joined by `:` (RFC 6749 §2.3.1).
fn decode_basic(value: &str) -> Option<(String, String)> {
    use base64::engine::general_purpose::STANDARD;
    let decoded = String::from_utf8(STANDARD.decode(value).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unform = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    Some((unform(id)?, unform(secret)?))
}

fn json_response(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn oauth_error(code: StatusCode, error: &str) -> Response<Full<Bytes>> {
    json_response(code, json!({ "error": error }).to_string())
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(state.route(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
