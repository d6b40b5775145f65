//! tower-scope against its peers: the contestants, the driver, and the ratio report.
//!
//! Every contestant is the same axum `Router` with one route and the same handler, behind the
//! contestant's own middleware (or, for axum-jwt-auth, its extractor), verifying the same token
//! with the same key and the same checks: signature, `exp`, `iss` and `aud`. Keys and tokens
//! come from tower-scope's mock issuer, which also serves the JWKS over loopback for
//! tower-scope's JWKS authenticator; the peers get the same JWK set as text.

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::{Either, Ready, ready};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use serde::Deserialize;
use tower::{Layer, Service, ServiceExt};

pub mod report;

/// The route every contestant serves.
pub const PATH: &str = "/api/memory/threads";
/// The audience every contestant requires.
pub const AUDIENCE: &str = "memory-api";

/// The claims every contestant deserializes.
#[derive(Clone, Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
}

/// The handler, on axum 0.8.
pub async fn handler() -> StatusCode {
    StatusCode::OK
}

/// The same handler for axum-jwt-auth, whose claims come through an extractor.
pub async fn handler_with_claims(_claims: axum_jwt_auth::Claims<Claims>) -> StatusCode {
    StatusCode::OK
}

/// The same handler, on axum 0.7 (for jwt-authorizer).
pub async fn handler07() -> axum07::http::StatusCode {
    axum07::http::StatusCode::OK
}

/// A Router of either axum version, driven the same way.
pub trait Contestant {
    /// The status of one `GET` [`PATH`] with this `Authorization` header, through [`drive_with`].
    fn status(&self, auth: Option<&HeaderValue>) -> u16;
}

impl Contestant for axum::Router {
    #[inline]
    fn status(&self, auth: Option<&HeaderValue>) -> u16 {
        drive_with::<_, axum::body::Body, _>(self, auth)
    }
}

impl Contestant for axum07::Router {
    #[inline]
    fn status(&self, auth: Option<&HeaderValue>) -> u16 {
        drive_with::<_, axum07::body::Body, _>(self, auth)
    }
}

/// The driver of every benchmark: [`Contestant::status`].
#[inline]
pub fn drive(svc: &impl Contestant, auth: Option<&HeaderValue>) -> u16 {
    svc.status(auth)
}

/// One request through `svc`, as hyper-util drives a service: clone, `oneshot`. Every
/// contestant's future is ready on its first poll (keys are loaded), so no runtime is needed.
#[inline]
pub fn drive_with<S, B, RB>(svc: &S, auth: Option<&HeaderValue>) -> u16
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible> + Clone,
    B: Default,
{
    let mut req = Request::get(PATH).body(B::default()).unwrap();
    if let Some(value) = auth {
        req.headers_mut().insert(AUTHORIZATION, value.clone());
    }
    let res = svc
        .clone()
        .oneshot(req)
        .now_or_never()
        .expect("ready on first poll")
        .unwrap();
    res.status().as_u16()
}

/// A hand-written `jsonwebtoken` middleware: what an application writes without a crate.
#[derive(Clone)]
pub struct HandWrittenLayer {
    shared: Arc<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>,
}

impl HandWrittenLayer {
    /// Verifies with `key` under `validation`.
    pub fn new(key: jsonwebtoken::DecodingKey, validation: jsonwebtoken::Validation) -> Self {
        Self {
            shared: Arc::new((key, validation)),
        }
    }
}

impl<S> Layer<S> for HandWrittenLayer {
    type Service = HandWritten<S>;

    fn layer(&self, inner: S) -> HandWritten<S> {
        HandWritten {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of [`HandWrittenLayer`].
#[derive(Clone)]
pub struct HandWritten<S> {
    inner: S,
    shared: Arc<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>,
}

impl<S, B> Service<Request<B>> for HandWritten<S>
where
    S: Service<Request<B>, Response = axum::response::Response>,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<axum::response::Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let (key, validation) = &*self.shared;
        let claims = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| jsonwebtoken::decode::<Claims>(token, key, validation).ok());
        match claims {
            Some(data) => {
                req.extensions_mut().insert(data.claims);
                Either::Right(self.inner.call(req))
            }
            None => {
                let mut res = axum::response::Response::new(axum::body::Body::empty());
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                res.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                Either::Left(ready(Ok(res)))
            }
        }
    }
}

/// Medians of `contestants` timed in alternation, in ns per call: each round runs every
/// contestant for one batch of about 200 µs, in rotating order, so load that comes and goes
/// (other jobs on a shared machine) falls on all of them alike.
pub fn interleaved(contestants: &[&dyn Fn() -> u16], rounds: usize) -> Vec<f64> {
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    let batches: Vec<usize> = contestants
        .iter()
        .map(|f| {
            let start = Instant::now();
            let mut n = 0usize;
            while start.elapsed() < Duration::from_millis(20) {
                black_box(f());
                n += 1;
            }
            (n / 100).max(1)
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(rounds); contestants.len()];
    for round in 0..rounds {
        for k in 0..contestants.len() {
            let i = (round + k) % contestants.len();
            let f = contestants[i];
            let start = Instant::now();
            for _ in 0..batches[i] {
                black_box(f());
            }
            samples[i].push(start.elapsed().as_nanos() as f64 / batches[i] as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

/// Runs `f` `n` times, for an instruction count: `scripts/peer-instructions.sh` has callgrind
/// collect inside this function only (`--toggle-collect`), so setup never counts.
#[inline(never)]
pub fn count_loop(f: &dyn Fn() -> u16, n: usize) {
    for _ in 0..n {
        std::hint::black_box(f());
    }
}
