//! The memory server example honours `RUST_LOG` (default `info`): the built example binary is
//! run as a user would run it, and its per-request log lines are read from its output.
#![cfg(all(
    unix,
    feature = "axum",
    feature = "sqlite",
    feature = "postgres",
    feature = "aws-lc",
    feature = "cors",
    feature = "log"
))]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{SECRET, example_binary, token_for};

/// Drops ANSI colour sequences, so the check does not depend on the terminal settings.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs the example with `rust_log` (`None`: unset), sends one authenticated listing and one
/// request without credentials, shuts it down gracefully and returns everything it wrote.
async fn run(rust_log: Option<&str>, name: &str) -> Vec<String> {
    let db = std::env::temp_dir().join(format!(
        "tower-scope-rust-log-{name}-{}.db",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&db);
    let mut command = Command::new(example_binary());
    command
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .env("JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
        .env_remove("CORS_ORIGINS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match rust_log {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    let mut child = command
        .spawn()
        .expect("the memory_server example is built by `cargo test --all-features`");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let base = loop {
        let mut line = String::new();
        if Instant::now() > deadline || stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            panic!("memory_server did not start: {output:?}");
        }
        let line = strip_ansi(line.trim_end());
        if let Some(base) = line.strip_prefix("memory server listening on ") {
            break base.trim().to_owned();
        }
        output.push(line);
    };

    let client = reqwest::Client::new();
    let listing = client
        .get(format!("{base}/api/memory/threads"))
        .bearer_auth(token_for("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), reqwest::StatusCode::OK);
    let anonymous = client
        .get(format!("{base}/api/memory/threads"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    drop(client);

    // Graceful shutdown (SIGINT, as Ctrl-C) drains the connections, so every event of the two
    // requests has been written before the output ends: an absent line is really absent.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}: {stderr}");
    let _ = std::fs::remove_file(&db);
    output.extend(rest.lines().chain(stderr.lines()).map(strip_ansi));
    output
}

/// The LogLayer lines of the two requests at `level`.
fn request_lines<'a>(output: &'a [String], level: &str) -> Vec<&'a String> {
    output
        .iter()
        .filter(|l| l.contains("/api/memory/threads") && l.contains("status="))
        .filter(|l| l.split_whitespace().any(|word| word == level))
        .collect()
}

#[tokio::test]
async fn rust_log_unset_defaults_to_info_and_logs_each_request() {
    let output = run(None, "default").await;
    let lines = request_lines(&output, "INFO");
    assert_eq!(lines.len(), 2, "one INFO line per request: {output:#?}");
    assert!(lines.iter().any(|l| l.contains("status=200")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("status=401")), "{lines:?}");
    // `info`, not everything: no DEBUG or TRACE lines from the server's dependencies.
    assert!(
        !output
            .iter()
            .any(|l| l.split_whitespace().any(|w| w == "DEBUG" || w == "TRACE")),
        "{output:#?}"
    );
}

#[tokio::test]
async fn rust_log_warn_silences_the_per_request_info_lines() {
    let output = run(Some("warn"), "warn").await;
    assert_eq!(
        request_lines(&output, "INFO"),
        Vec::<&String>::new(),
        "{output:#?}"
    );
}

#[tokio::test]
async fn rust_log_directives_can_target_the_request_log() {
    // Per-target directives work, not just a global level: `info` everywhere but the request log.
    let output = run(Some("info,tower_scope::log=warn"), "directive").await;
    assert_eq!(
        request_lines(&output, "INFO"),
        Vec::<&String>::new(),
        "{output:#?}"
    );
}
