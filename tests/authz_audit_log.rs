//! Privileged access is audited: its own log fields, on its own test binary (a `tracing`
//! subscriber set for one test must not race other tests' callsites).
#![cfg(all(feature = "authz", feature = "guard", feature = "log"))]

use std::sync::{Arc, Mutex};

use http::Method;

#[path = "common/authz_stack.rs"]
mod authz_stack;
use authz_stack::{ADMIN, ALICE, as_user, call, stack, store};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn privileged_requests_are_logged_with_their_own_fields() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let seen = Arc::new(Mutex::new(None));
    let svc = stack(store(), Arc::clone(&seen), false);
    call(
        &svc,
        &seen,
        as_user(Method::GET, "/api/memory/threads/t-bob", ADMIN),
    )
    .await;
    call(
        &svc,
        &seen,
        as_user(Method::GET, "/api/memory/threads?resourceId=alice", ADMIN),
    )
    .await;
    call(
        &svc,
        &seen,
        as_user(Method::GET, "/api/memory/threads/t-alice", ALICE),
    )
    .await;
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, acting) in [(lines[0], "bob"), (lines[1], "alice")] {
        assert!(line.contains(r#"user="ada""#), "{line}");
        assert!(line.contains("privileged=true"), "{line}");
        assert!(line.contains(r#"privilege="memory:admin""#), "{line}");
        assert!(line.contains(&format!(r#"acting_as="{acting}""#)), "{line}");
        assert!(line.contains(r#"acting_via="privilege""#), "{line}");
    }
    assert!(!lines[2].contains("privileged"), "{}", lines[2]);
    assert!(!lines[2].contains("acting_as"), "{}", lines[2]);
}
