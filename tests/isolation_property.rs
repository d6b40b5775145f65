//! Property: whatever sequence of memory operations several users send, no user ever observes
//! or changes another user's thread or message. Runs against the memory server's full stack.
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

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_scope::guard::SqlThreadStore;

const SECRET: &str = "property-test-secret-0123456789abcdef";
const USERS: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Debug, Clone)]
enum Op {
    Create {
        user: usize,
    },
    Get {
        user: usize,
        thread: usize,
    },
    Rename {
        user: usize,
        thread: usize,
    },
    Delete {
        user: usize,
        thread: usize,
    },
    ReadMessages {
        user: usize,
        thread: usize,
    },
    Save {
        user: usize,
        thread: usize,
        claimed: usize,
    },
    DeleteMessages {
        user: usize,
        messages: Vec<usize>,
    },
    List {
        user: usize,
        claimed: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS.len();
    prop_oneof![
        u.clone().prop_map(|user| Op::Create { user }),
        (u.clone(), 0..8usize).prop_map(|(user, thread)| Op::Get { user, thread }),
        (u.clone(), 0..8usize).prop_map(|(user, thread)| Op::Rename { user, thread }),
        (u.clone(), 0..8usize).prop_map(|(user, thread)| Op::Delete { user, thread }),
        (u.clone(), 0..8usize).prop_map(|(user, thread)| Op::ReadMessages { user, thread }),
        (u.clone(), 0..8usize, u.clone()).prop_map(|(user, thread, claimed)| Op::Save {
            user,
            thread,
            claimed
        }),
        (u.clone(), proptest::collection::vec(0..12usize, 1..4))
            .prop_map(|(user, messages)| Op::DeleteMessages { user, messages }),
        (u.clone(), u).prop_map(|(user, claimed)| Op::List { user, claimed }),
    ]
}

/// What the world must look like: thread -> (owner, title), message -> (thread, content).
#[derive(Default)]
struct Model {
    threads: BTreeMap<String, (usize, String)>,
    messages: BTreeMap<String, (String, String)>,
    created: Vec<String>,
    sent: Vec<String>,
}

fn token(user: usize) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = app::Claims {
        sub: USERS[user].into(),
        org_id: None,
        exp,
        iss: None,
        aud: None,
        grants: Default::default(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn call(
    app: &Router,
    user: usize,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", token(user)));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn pick(list: &[String], i: usize) -> Option<&String> {
    if list.is_empty() {
        None
    } else {
        Some(&list[i % list.len()])
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let path = std::env::temp_dir().join(format!("tower-scope-prop-{}.db", app::random_id(8)));
    let store = SqlThreadStore::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    store.create_schema().await.unwrap();
    let settings = app::Settings {
        jwt_secret: SECRET.into(),
        issuer: None,
        audience: None,
        cors_origins: vec![],
        public_url: None,
        dev_tokens: Vec::new(),
    };
    let app = app::app(store, &settings).unwrap();
    let mut m = Model::default();

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Create { user } => {
                let (status, t) = call(
                    &app,
                    user,
                    Method::POST,
                    "/api/memory/threads",
                    Some(json!({"title": "t", "resourceId": USERS[(user + 1) % 3]})),
                )
                .await;
                prop_assert_eq!(status, StatusCode::OK);
                prop_assert_eq!(t["resourceId"].as_str(), Some(USERS[user]));
                let id = t["id"].as_str().unwrap().to_owned();
                m.threads.insert(id.clone(), (user, "t".into()));
                m.created.push(id);
            }
            Op::Get { user, thread } | Op::ReadMessages { user, thread }
                if pick(&m.created, thread).is_some() =>
            {
                let id = pick(&m.created, thread).unwrap().clone();
                let suffix = if matches!(op, Op::ReadMessages { .. }) {
                    "/messages"
                } else {
                    ""
                };
                let (status, body) = call(
                    &app,
                    user,
                    Method::GET,
                    &format!(
                        "/api/memory/threads/{id}{suffix}?resourceId={}",
                        USERS[(user + 1) % 3]
                    ),
                    None,
                )
                .await;
                match m.threads.get(&id) {
                    None => prop_assert_eq!(status, StatusCode::NOT_FOUND),
                    Some((owner, _)) if *owner != user => {
                        prop_assert_eq!(status, StatusCode::FORBIDDEN)
                    }
                    Some(_) if suffix.is_empty() => {
                        prop_assert_eq!(body["resourceId"].as_str(), Some(USERS[user]))
                    }
                    Some(_) => {
                        let seen: BTreeSet<String> = body["messages"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|x| x["id"].as_str().unwrap().to_owned())
                            .collect();
                        let expected: BTreeSet<String> = m
                            .messages
                            .iter()
                            .filter(|(_, (t, _))| *t == id)
                            .map(|(k, _)| k.clone())
                            .collect();
                        prop_assert_eq!(seen, expected);
                    }
                }
            }
            Op::Rename { user, thread } if pick(&m.created, thread).is_some() => {
                let id = pick(&m.created, thread).unwrap().clone();
                let title = format!("renamed-{step}");
                let (status, _) = call(
                    &app,
                    user,
                    Method::PATCH,
                    &format!("/api/memory/threads/{id}"),
                    Some(json!({"title": title, "resourceId": USERS[(user + 2) % 3]})),
                )
                .await;
                match m.threads.get_mut(&id) {
                    None => prop_assert_eq!(status, StatusCode::NOT_FOUND),
                    Some((owner, _)) if *owner != user => {
                        prop_assert_eq!(status, StatusCode::FORBIDDEN)
                    }
                    Some((_, t)) => {
                        prop_assert_eq!(status, StatusCode::OK);
                        *t = title;
                    }
                }
            }
            Op::Delete { user, thread } if pick(&m.created, thread).is_some() => {
                let id = pick(&m.created, thread).unwrap().clone();
                let (status, _) = call(
                    &app,
                    user,
                    Method::DELETE,
                    &format!("/api/memory/threads/{id}"),
                    None,
                )
                .await;
                match m.threads.get(&id) {
                    None => prop_assert_eq!(status, StatusCode::NOT_FOUND),
                    Some((owner, _)) if *owner != user => {
                        prop_assert_eq!(status, StatusCode::FORBIDDEN)
                    }
                    Some(_) => {
                        prop_assert_eq!(status, StatusCode::OK);
                        m.threads.remove(&id);
                        m.messages.retain(|_, (t, _)| *t != id);
                    }
                }
            }
            Op::Save {
                user,
                thread,
                claimed,
            } if pick(&m.created, thread).is_some() => {
                let id = pick(&m.created, thread).unwrap().clone();
                let msg = format!("m{step}");
                let body = json!({"messages": [{"id": msg, "threadId": id, "resourceId": USERS[claimed], "role": "user", "content": format!("c{step}")}]});
                let (status, _) = call(
                    &app,
                    user,
                    Method::POST,
                    "/api/memory/save-messages",
                    Some(body),
                )
                .await;
                let owner = m.threads.get(&id).map(|(o, _)| *o);
                if claimed != user || owner.is_some_and(|o| o != user) {
                    prop_assert_eq!(status, StatusCode::FORBIDDEN);
                } else {
                    prop_assert_eq!(status, StatusCode::OK);
                    if owner.is_none() {
                        // Saving into a deleted thread id recreates it for the caller.
                        m.threads.insert(id.clone(), (user, String::new()));
                    }
                    m.messages.insert(msg.clone(), (id, format!("c{step}")));
                    m.sent.push(msg);
                }
            }
            Op::DeleteMessages { user, messages } if !m.sent.is_empty() => {
                let ids: Vec<String> = messages
                    .iter()
                    .map(|i| pick(&m.sent, *i).unwrap().clone())
                    .collect();
                let (status, _) = call(
                    &app,
                    user,
                    Method::POST,
                    "/api/memory/messages/delete",
                    Some(json!({"messageIds": ids})),
                )
                .await;
                let all_mine = ids.iter().all(|id| match m.messages.get(id) {
                    None => true,
                    Some((t, _)) => m.threads.get(t).is_some_and(|(o, _)| *o == user),
                });
                if all_mine {
                    prop_assert_eq!(status, StatusCode::OK);
                    for id in &ids {
                        m.messages.remove(id);
                    }
                } else {
                    prop_assert_eq!(status, StatusCode::FORBIDDEN);
                }
            }
            Op::List { user, claimed } => {
                let (status, body) = call(
                    &app,
                    user,
                    Method::GET,
                    &format!(
                        "/api/memory/threads?perPage=1000&resourceId={}",
                        USERS[claimed]
                    ),
                    None,
                )
                .await;
                prop_assert_eq!(status, StatusCode::OK);
                let seen: BTreeSet<String> = body["threads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["id"].as_str().unwrap().to_owned())
                    .collect();
                let expected: BTreeSet<String> = m
                    .threads
                    .iter()
                    .filter(|(_, (o, _))| *o == user)
                    .map(|(k, _)| k.clone())
                    .collect();
                prop_assert_eq!(seen, expected);
            }
            _ => {}
        }
    }

    // Finally every owner sees exactly the model: titles and messages untouched by others.
    for (id, (owner, title)) in &m.threads {
        let (status, t) = call(
            &app,
            *owner,
            Method::GET,
            &format!("/api/memory/threads/{id}"),
            None,
        )
        .await;
        prop_assert_eq!(status, StatusCode::OK);
        if !title.is_empty() {
            prop_assert_eq!(t["title"].as_str(), Some(title.as_str()));
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_user_observes_or_changes_another_users_data(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}

// ---- concurrent interleavings of the store's owner-conditional writes ---------------------

mod interleavings {
    use std::collections::{BTreeMap, BTreeSet};

    use futures_util::FutureExt;
    use proptest::prelude::*;
    use tower_scope::guard::{
        GuardError, MemoryThreadStore, NewMessage, ThreadFields, ThreadOwner, ThreadStore,
        ThreadWrites,
    };
    use tower_scope::{MessageId, ResourceId, ThreadId};

    const USERS: [&str; 3] = ["alice", "bob", "carol"];
    /// Few ids, shared by every user, so that users collide on them all the time.
    const THREADS: usize = 3;
    const MESSAGES: usize = 4;

    #[derive(Debug, Clone)]
    enum Write {
        Create(usize),
        Update(usize),
        DeleteThread(usize),
        Save(Vec<(usize, usize)>),
        DeleteMessages(Vec<usize>),
    }

    fn write() -> impl Strategy<Value = Write> {
        prop_oneof![
            (0..THREADS).prop_map(Write::Create),
            (0..THREADS).prop_map(Write::Update),
            (0..THREADS).prop_map(Write::DeleteThread),
            proptest::collection::vec((0..MESSAGES, 0..THREADS), 1..3).prop_map(Write::Save),
            proptest::collection::vec(0..MESSAGES, 1..4).prop_map(Write::DeleteMessages),
        ]
    }

    fn thread(t: usize) -> ThreadId {
        ThreadId::new(format!("t{t}")).unwrap()
    }

    fn message(m: usize) -> String {
        format!("m{m}")
    }

    /// What one user owns, from that user's own acknowledged writes alone. No one else can add
    /// to it or take from it, so it must equal the store's view of that user at every point.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Own {
        /// thread -> title
        threads: BTreeMap<String, Option<String>>,
        /// message -> (thread, content)
        messages: BTreeMap<String, (String, String)>,
    }

    /// Runs one write of `user` and checks its answer against what `user` owns. `alone`: no
    /// other user writes concurrently, so the store's state just before the write is known.
    fn apply(
        store: &MemoryThreadStore,
        (user, step, alone): (usize, usize, bool),
        op: &Write,
        own: &mut Own,
    ) -> Result<(), TestCaseError> {
        let scope = ResourceId::new(USERS[user]).unwrap();
        let at = format!("2026-01-01T00:00:{:02}.{:03}Z", step / 1000, step % 1000);
        let label = format!("{}-{step}", USERS[user]);
        match op {
            Write::Create(t) => {
                let result = store
                    .create_thread(&scope, &thread(*t), &ThreadFields::titled(&label), &at)
                    .now_or_never()
                    .unwrap();
                match result {
                    Ok(record) => {
                        prop_assert_eq!(record.resource, Some(scope));
                        own.threads.insert(format!("t{t}"), Some(label));
                    }
                    Err(err) => {
                        prop_assert!(!own.threads.contains_key(&format!("t{t}")), "{err:?}");
                        prop_assert_eq!(err, GuardError::ForeignThread);
                    }
                }
            }
            Write::Update(t) => {
                let result = store
                    .update_thread(&scope, &thread(*t), &ThreadFields::titled(&label), &at)
                    .now_or_never()
                    .unwrap();
                let mine = own.threads.contains_key(&format!("t{t}"));
                prop_assert_eq!(result.is_ok(), mine, "{:?}", result);
                if mine {
                    own.threads.insert(format!("t{t}"), Some(label));
                }
            }
            Write::DeleteThread(t) => {
                let result = store
                    .delete_thread(&scope, &thread(*t))
                    .now_or_never()
                    .unwrap();
                let id = format!("t{t}");
                prop_assert_eq!(
                    result.is_ok(),
                    own.threads.contains_key(&id),
                    "{:?}",
                    result
                );
                own.threads.remove(&id);
                own.messages.retain(|_, (thread, _)| *thread != id);
            }
            Write::Save(entries) => {
                let batch: Vec<NewMessage> = entries
                    .iter()
                    .map(|(m, t)| NewMessage {
                        id: MessageId::new(message(*m)).unwrap(),
                        thread: thread(*t),
                        role: "user".into(),
                        kind: "v2".into(),
                        content: label.clone(),
                        created_at: at.clone(),
                    })
                    .collect();
                // A batch inside what we own (our threads; our messages, or — when no one else
                // can write meanwhile — ids no one has) must succeed.
                let all_mine = entries.iter().all(|(m, t)| {
                    own.threads.contains_key(&format!("t{t}"))
                        && (own.messages.contains_key(&message(*m))
                            || (alone && store.message(&message(*m)).is_none()))
                });
                let result = store
                    .save_messages(&scope, &batch, &at)
                    .now_or_never()
                    .unwrap();
                if all_mine {
                    prop_assert!(result.is_ok(), "{result:?}");
                }
                if result.is_ok() {
                    for (m, t) in entries {
                        own.threads.entry(format!("t{t}")).or_insert(None);
                        own.messages
                            .insert(message(*m), (format!("t{t}"), label.clone()));
                    }
                }
            }
            Write::DeleteMessages(ids) => {
                let ids: Vec<MessageId> = ids
                    .iter()
                    .map(|m| MessageId::new(message(*m)).unwrap())
                    .collect();
                let deleted = store
                    .delete_messages(&scope, &ids)
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                let distinct: BTreeSet<&MessageId> = ids.iter().collect();
                let expected = distinct
                    .iter()
                    .filter(|id| own.messages.contains_key(id.as_str()))
                    .count();
                prop_assert_eq!(deleted, expected as u64, "the real count, only ours");
                for id in &ids {
                    own.messages.remove(id.as_str());
                }
            }
        }
        Ok(())
    }

    /// What the store says `user` owns.
    fn observed(store: &MemoryThreadStore, user: usize) -> Result<Own, TestCaseError> {
        let scope = ResourceId::new(USERS[user]).unwrap();
        let mut seen = Own::default();
        for t in 0..THREADS {
            let id = thread(t);
            if store.thread_owner(&id).now_or_never().unwrap().unwrap()
                == ThreadOwner::Owned(scope.clone())
            {
                seen.threads
                    .insert(id.to_string(), store.thread(&id).unwrap().title);
            }
        }
        for m in 0..MESSAGES {
            if let Some(record) = store.message(&message(m))
                && let Some(thread) = record.thread
                && seen.threads.contains_key(thread.as_str())
            {
                prop_assert_eq!(
                    &record.resource,
                    &Some(scope.clone()),
                    "a message in a user's thread was saved for someone else"
                );
                seen.messages
                    .insert(message(m), (thread.to_string(), record.content.unwrap()));
            }
        }
        Ok(seen)
    }

    /// Every user owns exactly what their own acknowledged writes say.
    fn check_all(store: &MemoryThreadStore, own: &[Own]) -> Result<(), TestCaseError> {
        for (user, own) in own.iter().enumerate() {
            prop_assert_eq!(&observed(store, user)?, own, "{}", USERS[user]);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Three users' write programs, interleaved write by write in an order proptest picks:
        /// after every write, each user owns exactly what their own acknowledged writes say —
        /// nothing taken over, cross-written or lost — and the only refusals are of things the
        /// user did not own.
        #[test]
        fn writes_interleaved_in_any_order_keep_every_user_whole(
            programs in proptest::collection::vec(proptest::collection::vec(write(), 1..12), USERS.len()),
            schedule in proptest::collection::vec(0..USERS.len(), 0..64),
        ) {
            let store = MemoryThreadStore::new();
            let mut own: Vec<Own> = (0..USERS.len()).map(|_| Own::default()).collect();
            let mut next = vec![0usize; USERS.len()];
            // The schedule picks who writes next; then everyone finishes, round robin.
            let tail = (0..programs.iter().map(Vec::len).sum::<usize>()).map(|i| i % USERS.len());
            for (step, user) in schedule.into_iter().chain(tail).enumerate() {
                let Some(op) = programs[user].get(next[user]) else { continue };
                next[user] += 1;
                apply(&store, (user, step, true), op, &mut own[user])?;
                check_all(&store, &own)?;
            }
        }

        /// The same programs on real threads, racing for the store's lock.
        #[test]
        fn writes_racing_on_threads_keep_every_user_whole(
            programs in proptest::collection::vec(proptest::collection::vec(write(), 1..24), USERS.len()),
        ) {
            let store = MemoryThreadStore::new();
            let barrier = std::sync::Barrier::new(USERS.len());
            let owns: Vec<Result<Own, TestCaseError>> = std::thread::scope(|scope| {
                let runs: Vec<_> = programs
                    .iter()
                    .enumerate()
                    .map(|(user, program)| {
                        let (store, barrier) = (&store, &barrier);
                        scope.spawn(move || {
                            let mut own = Own::default();
                            barrier.wait();
                            for (i, op) in program.iter().enumerate() {
                                // Steps are unique per user, so contents never repeat.
                                apply(store, (user, user * 1000 + i, false), op, &mut own)?;
                                std::thread::yield_now();
                            }
                            Ok(own)
                        })
                    })
                    .collect();
                runs.into_iter().map(|run| run.join().unwrap()).collect()
            });
            let owns = owns.into_iter().collect::<Result<Vec<_>, _>>()?;
            check_all(&store, &owns)?;
        }
    }
}
