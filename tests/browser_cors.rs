//! A real browser (headless Chromium) against `CorsLayer` + `BearerAuthLayer`.
//!
//! The page is served from one loopback port and `fetch`es the API on another with an
//! `Authorization` header (which forces a preflight). Ignored by default because it needs the
//! `chromium` package; `.ci/run` installs it and runs
//! `cargo test --all-features --test browser_cors -- --ignored`.
#![cfg(feature = "cors")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::response::Html;
use axum::routing::get;
use tower_scope::{Authenticated, BearerAuthLayer, CorsLayer, StaticTokens};

const TOKEN: &str = "browser-test-key-0123456789abcdef";

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    (listener, origin)
}

async fn whoami(req: Request) -> String {
    req.extensions()
        .get::<Authenticated<String>>()
        .map(|u| u.to_string())
        .unwrap_or_default()
}

/// A page whose script fetches the API three ways and writes one line per result.
fn page(api: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const api = "{api}/api/me";
async function probe(label, headers) {{
  try {{
    const r = await fetch(api, {{ headers }});
    return label + ": status=" + r.status + " body=" + (await r.text());
  }} catch (e) {{
    return label + ": " + e.name;
  }}
}}
(async () => {{
  const lines = [];
  lines.push(await probe("token", {{ "Authorization": "Bearer {TOKEN}" }}));
  lines.push(await probe("no-token", {{}}));
  lines.push(await probe("wrong-token", {{ "Authorization": "Bearer not-the-right-key-0123456789" }}));
  lines.push("done");
  document.getElementById("out").textContent = lines.join("\n");
}})();
</script></body></html>"#
    )
}

/// Loads `url` in headless Chromium and returns the `<pre id="out">` text after the fetches.
fn chromium_dump(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!(
        "tower-scope-chromium-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ url.len() as u128
    ));
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (apt-get install -y chromium)");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    let start = dom.find("<pre id=\"out\">").expect("the page was dumped") + 14;
    let end = dom[start..].find("</pre>").unwrap() + start;
    dom[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the chromium package; run by .ci/run"]
async fn browser_reads_the_200_and_the_401_and_is_refused_from_another_origin() {
    let (page_listener, page_origin) = bind().await;
    let (other_listener, other_origin) = bind().await;

    let cors = CorsLayer::new()
        .allow_origins([page_origin.as_str()])
        .unwrap()
        .allow_methods(["GET"])
        .unwrap()
        .allow_headers(["authorization"])
        .unwrap();
    let auth = BearerAuthLayer::new(StaticTokens::new().token(TOKEN, String::from("alice")));
    // axum: the last `.layer()` is the outermost, so CORS wraps auth.
    let api = serve(
        Router::new()
            .route("/api/me", get(whoami))
            .layer(auth)
            .layer(cors),
    )
    .await;

    let html = page(&api);
    for listener in [page_listener, other_listener] {
        let html = html.clone();
        let app = Router::new().route("/", get(move || async move { Html(html) }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    let allowed = {
        let url = format!("{page_origin}/");
        tokio::task::spawn_blocking(move || chromium_dump(&url))
            .await
            .unwrap()
    };
    let lines: Vec<&str> = allowed.lines().collect();
    assert_eq!(
        lines,
        [
            "token: status=200 body=alice",
            "no-token: status=401 body=",
            "wrong-token: status=401 body=",
            "done"
        ],
        "from the allowed origin: {allowed}"
    );

    let refused = {
        let url = format!("{other_origin}/");
        tokio::task::spawn_blocking(move || chromium_dump(&url))
            .await
            .unwrap()
    };
    let lines: Vec<&str> = refused.lines().collect();
    assert_eq!(
        lines,
        [
            "token: TypeError",
            "no-token: TypeError",
            "wrong-token: TypeError",
            "done"
        ],
        "from a disallowed origin: {refused}"
    );
}
