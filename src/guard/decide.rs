//! One guarded request's decision: read the ids (path, query, header, JSON body), ask the
//! store, and say what to admit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Request;
use http::header::HeaderValue;
use http_body::Body;

use super::check::{GuardError, OwnershipCheck, ThreadPresence};
use super::route::{GuardRoute, Missing, invalid_message, invalid_thread, message_id};
use super::store::{ThreadOwner, ThreadStore};
use super::write::ThreadRecord;
use crate::http::body::{BodyLimits, BoxError, Buffered, Pending, invalid_body};
use crate::http::json::{Doc, Edits, FieldPath, JsonError, Node};
use crate::mastra::messages;
use crate::query::{self, PairEdit};
use crate::reject::{Rejection, RejectionKind};
use crate::{ActingAs, MessageId, Privileged, ResourceId, ThreadId};

/// The pending decision of one guarded request (store I/O, maybe body buffering). Boxed:
/// the store's futures cannot be named, and the request waits on the network anyway.
pub(crate) type Decision = Pin<Box<dyn Future<Output = Result<Admit, Rejection>> + Send>>;

pub(crate) struct Input<B> {
    pub(crate) scope: Option<ResourceId>,
    /// Set by the authorization layer: the route's thread may belong to another resource.
    pub(crate) privileged: Option<Privileged>,
    /// A GET or HEAD: the route's thread record may be prefetched for the handler.
    pub(crate) read: bool,
    pub(crate) trusted: Option<ThreadId>,
    pub(crate) client_thread: Result<Option<ThreadId>, Rejection>,
    pub(crate) extra_threads: Result<Vec<ThreadId>, Rejection>,
    /// The raw `include`-style query value: given twice is an error, not UTF-8 is `None`.
    pub(crate) include: Option<Result<Option<Option<String>>, Rejection>>,
    pub(crate) path_message: Option<Option<String>>,
    pub(crate) body: Option<Pending<B>>,
}

/// What the guard admits: the checked thread, the body to pass on, a trusted id to rewrite.
pub(crate) struct Admit {
    pub(crate) thread: Option<ThreadId>,
    /// The message the path named, checked to be the caller's.
    pub(crate) message: Option<MessageId>,
    pub(crate) body: Option<Buffered>,
    pub(crate) rewrite: Option<ThreadId>,
    /// A privileged request acting on the owner of the route's thread.
    pub(crate) acting_as: Option<ActingAs>,
    /// The route's thread as the guard's lookup read it (prefetching, reads only).
    pub(crate) prefetched: Option<ThreadRecord>,
}

fn json(error: JsonError) -> Rejection {
    match error {
        JsonError::Duplicate(_) => {
            Rejection::with_message(RejectionKind::BadRequest, error.to_string())
        }
        _ => invalid_body(),
    }
}

/// The one value at `path`; a path that fans out to two is ambiguous.
fn one<'a>(doc: &Doc<'a>, path: Option<&FieldPath>) -> Result<Option<Node<'a>>, Rejection> {
    let Some(path) = path else { return Ok(None) };
    let mut found = doc.find(path).map_err(json)?.into_iter();
    let first = found.next();
    if found.next().is_some() {
        return Err(Rejection::with_message(
            RejectionKind::BadRequest,
            format!("More than one {}", path.as_str()),
        ));
    }
    Ok(first.filter(|node| !node.is_null()))
}

/// A thread id in a body: a string, or an object with a string `id` (`memory.thread`);
/// returns the id and the node holding the string (for a trusted rewrite).
fn thread_node<'a>(doc: &Doc<'a>, node: Node<'a>) -> Result<(ThreadId, Node<'a>), Rejection> {
    let node = match node.object(doc.text()).map_err(json)? {
        Some(object) => object.get("id").map_err(json)?.ok_or_else(invalid_thread)?,
        None => node,
    };
    let id = node.as_str().ok_or_else(invalid_thread)?;
    Ok((ThreadId::new(id).map_err(|_| invalid_thread())?, node))
}

/// The thread the body names in any of `paths` (`memory.thread`, legacy `threadId`); two
/// fields naming different threads are 400: the handler might read either, and the guard would
/// have checked only one.
fn body_thread(doc: &Doc<'_>, paths: &[FieldPath]) -> Result<Option<ThreadId>, Rejection> {
    let mut found: Option<ThreadId> = None;
    for path in paths {
        let Some(node) = one(doc, Some(path))? else {
            continue;
        };
        let (id, _) = thread_node(doc, node)?;
        match &found {
            None => found = Some(id),
            Some(first) if *first == id => {}
            Some(_) => {
                return Err(Rejection::with_message(
                    RejectionKind::BadRequest,
                    "The request names two different threads",
                ));
            }
        }
    }
    Ok(found)
}

/// `messageIds` as Mastra accepts it: a string, `{id}`, or a list of either; every id valid.
fn message_ids(doc: &Doc<'_>, node: Option<Node<'_>>) -> Result<Vec<MessageId>, Rejection> {
    let bad = || {
        Rejection::with_message(
            RejectionKind::BadRequest,
            "messageIds must be ids or objects with an id",
        )
    };
    let single = |node: Node<'_>| -> Result<MessageId, Rejection> {
        let node = match node.object(doc.text()).map_err(json)? {
            Some(object) => object.get("id").map_err(json)?.ok_or_else(bad)?,
            None => node,
        };
        message_id(&node.as_str().ok_or_else(bad)?)
    };
    let Some(node) = node else {
        return Err(Rejection::with_message(
            RejectionKind::BadRequest,
            messages::MESSAGE_IDS_REQUIRED,
        ));
    };
    match node.array(doc.text()).map_err(json)? {
        Some(items) => items.into_iter().map(single).collect(),
        None => Ok(vec![single(node)?]),
    }
}

/// A save-messages body's message ids (to be the caller's if they exist) and threads (the
/// caller's or missing).
fn saved_messages(
    doc: &Doc<'_>,
    node: Option<Node<'_>>,
) -> Result<(Vec<MessageId>, Vec<ThreadId>), Rejection> {
    let items = match node {
        Some(n) => n.array(doc.text()).map_err(json)?,
        None => None,
    };
    let Some(items) = items else {
        return Err(Rejection::with_message(
            RejectionKind::BadRequest,
            "messages must be an array",
        ));
    };
    let mut ids = Vec::new();
    let mut threads: Vec<ThreadId> = Vec::new();
    let mut invalid = 0;
    for item in &items {
        let Some(object) = item.object(doc.text()).map_err(json)? else {
            invalid += 1;
            continue;
        };
        // Both must be there (Mastra's rule); which resource is named is the scope layer's
        // to check.
        let resource = object
            .get("resourceId")
            .map_err(json)?
            .and_then(|n| n.as_str());
        match object
            .get("threadId")
            .map_err(json)?
            .and_then(|n| n.as_str())
        {
            Some(thread) if !thread.is_empty() && resource.is_some_and(|r| !r.is_empty()) => {
                let thread = ThreadId::new(thread).map_err(|_| invalid_thread())?;
                if !threads.contains(&thread) {
                    threads.push(thread);
                }
            }
            _ => invalid += 1,
        }
        // Saving is an upsert by id: an existing message id must already be the caller's.
        match object.get("id").map_err(json)? {
            None => {}
            Some(node) if node.is_null() => {}
            Some(node) => match node.as_str() {
                Some(id) => ids.push(message_id(&id)?),
                None => {
                    return Err(Rejection::with_message(
                        RejectionKind::BadRequest,
                        "Message ids must be strings",
                    ));
                }
            },
        }
    }
    if invalid > 0 {
        return Err(Rejection::with_message(
            RejectionKind::BadRequest,
            messages::invalid_saved_messages(invalid),
        ));
    }
    Ok((ids, threads))
}

fn not_scoped_body() -> Rejection {
    Rejection::with_message(
        RejectionKind::Forbidden,
        "Access denied: the request body was not scoped to a resource (no scope body rule ran for this route)",
    )
}

/// The route's thread checked as the caller's, in one store lookup; for a [`Privileged`]
/// request, another resource's thread passes too, and the owner it acts as is returned. With
/// prefetching (reads only), the thread's record comes back for the handler.
async fn main_thread<T: ThreadStore>(
    check: &OwnershipCheck<T>,
    scope: &ResourceId,
    thread: &ThreadId,
    privileged: Option<&Privileged>,
    read: bool,
) -> Result<(ThreadPresence, Option<ActingAs>, Option<ThreadRecord>), Rejection> {
    let (owner, record) = if read {
        check.thread_owner_and_record(thread).await?
    } else {
        (check.thread_owner_only(thread).await?, None)
    };
    match check.decide_owner(scope, &owner) {
        Ok(presence) => Ok((presence, None, record)),
        Err(err @ (GuardError::ForeignThread | GuardError::ThreadNotFound)) => {
            match (owner, privileged) {
                (ThreadOwner::Owned(owner), Some(privileged)) if privileged.allows(&owner) => Ok((
                    ThreadPresence::Exists,
                    Some(ActingAs {
                        resource: owner,
                        via: privileged.via(),
                    }),
                    record,
                )),
                _ => Err(err.into()),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// What checking the route's own thread concluded.
struct RouteThread {
    /// The thread the request may use (it exists and is the caller's, or may be created).
    admitted: Option<ThreadId>,
    acting_as: Option<ActingAs>,
    record: Option<ThreadRecord>,
}

/// The route's own thread (`thread`, if the request named one) checked as the caller's.
async fn route_thread<T: ThreadStore>(
    check: &OwnershipCheck<T>,
    missing: Missing,
    scope: &ResourceId,
    thread: Option<&ThreadId>,
    privileged: Option<&Privileged>,
    read: bool,
) -> Result<RouteThread, Rejection> {
    let Some(id) = thread else {
        if missing == Missing::Allow {
            return Ok(RouteThread {
                admitted: None,
                acting_as: None,
                record: None,
            });
        }
        return Err(Rejection::with_message(
            RejectionKind::BadRequest,
            messages::NO_THREAD_ID,
        ));
    };
    match main_thread(check, scope, id, privileged, read).await? {
        (ThreadPresence::Exists, acting_as, record) => Ok(RouteThread {
            admitted: Some(id.clone()),
            acting_as,
            record,
        }),
        (ThreadPresence::Missing, _, _) if missing == Missing::Allow => Ok(RouteThread {
            admitted: Some(id.clone()),
            acting_as: None,
            record: None,
        }),
        (ThreadPresence::Missing, _, _) => Err(GuardError::ThreadNotFound.into()),
    }
}

/// [`decide`] for a route whose only check is its own thread, named in the path, query or a
/// header (a read of `/threads/{threadId}`): the same answer from a far smaller future, since
/// there is no body, no other id and nothing to edit.
pub(crate) async fn decide_thread<T: ThreadStore>(
    check: OwnershipCheck<T>,
    missing: Missing,
    scope: Option<ResourceId>,
    privileged: Option<Privileged>,
    read: bool,
    trusted: Option<ThreadId>,
    client_thread: Option<ThreadId>,
) -> Result<Admit, Rejection> {
    let scope = scope.ok_or(GuardError::NotScoped)?;
    // A trusted id wins over the client's (Mastra's MASTRA_THREAD_ID_KEY).
    let thread = trusted.clone().or(client_thread);
    let checked = route_thread(
        &check,
        missing,
        &scope,
        thread.as_ref(),
        privileged.as_ref(),
        read,
    )
    .await?;
    Ok(Admit {
        thread: checked.admitted,
        message: None,
        body: None,
        rewrite: trusted,
        acting_as: checked.acting_as,
        prefetched: checked.record,
    })
}

pub(crate) async fn decide<T, B>(
    check: OwnershipCheck<T>,
    route: Arc<GuardRoute>,
    input: Input<B>,
    limits: BodyLimits,
) -> Result<Admit, Rejection>
where
    T: ThreadStore,
    B: Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    let mut scope = input.scope.ok_or(GuardError::NotScoped)?;
    let mut acting_as = None;
    let mut prefetched = None;
    if let Some(message) = &route.deny {
        return Err(Rejection::with_message(
            RejectionKind::Forbidden,
            message.to_string(),
        ));
    }
    let extra_threads = input.extra_threads?;
    let client_thread = input.client_thread?;
    let buffered = match input.body {
        Some(pending) => Some(pending.bytes(limits).await?),
        None => None,
    };
    if route.scoped_body && !buffered.as_ref().is_some_and(|b| b.scoped) {
        return Err(not_scoped_body());
    }
    let bytes = buffered
        .as_ref()
        .map(|b| b.bytes.clone())
        .unwrap_or_default();
    let doc = Doc::parse(&bytes).map_err(json)?;

    // Every id the body names is read (and validated) before the first store lookup.
    let body_thread = body_thread(&doc, &route.thread_body)?;
    let new_thread = match one(&doc, route.new_thread_body.as_ref())? {
        Some(node) => Some(thread_node(&doc, node)?.0),
        None => None,
    };
    let body_messages = match &route.messages_body {
        Some(path) => Some(message_ids(&doc, one(&doc, Some(path))?)?),
        None => None,
    };
    let saved = match &route.save_messages {
        Some(path) => Some(saved_messages(&doc, one(&doc, Some(path))?)?),
        None => None,
    };
    let included = match input.include {
        Some(include) => match include? {
            Some(raw) => Some(included(raw.as_deref())?),
            None => None,
        },
        None => None,
    };
    let path_message = match input.path_message {
        Some(id) => Some(message_id(&id.ok_or_else(invalid_message)?)?),
        None => None,
    };

    // A trusted id wins over anything the client sent (Mastra's MASTRA_THREAD_ID_KEY).
    let thread = match (&input.trusted, client_thread) {
        (Some(trusted), _) => Some(trusted.clone()),
        (None, Some(client)) => Some(client),
        (None, None) => body_thread.clone(),
    };
    let mut admitted = None;
    if route.checks_thread() {
        let checked = route_thread(
            &check,
            route.missing,
            &scope,
            thread.as_ref(),
            input.privileged.as_ref(),
            input.read,
        )
        .await?;
        admitted = checked.admitted;
        prefetched = checked.record;
        if let Some(acting) = checked.acting_as {
            // Every later check of this request is made as the thread's owner.
            scope = acting.resource.clone();
            acting_as = Some(acting);
        }
    }
    // Thread ids the handler might also read (`?threadId=`): checked like the route's own.
    let missing_passes = route.missing == Missing::Allow || !route.checks_thread();
    for id in extra_threads
        .iter()
        .filter(|id| thread.as_ref() != Some(*id))
    {
        if check.check_thread_or_missing(&scope, id).await? == ThreadPresence::Missing
            && !missing_passes
        {
            return Err(GuardError::ThreadNotFound.into());
        }
    }
    if let Some(id) = &new_thread {
        check.check_thread_or_missing(&scope, id).await?;
    }
    if let Some((messages, threads)) = &included {
        check.check_messages(&scope, messages).await?;
        check.check_threads_or_missing(&scope, threads).await?;
    }
    if let Some(id) = &path_message {
        check
            .check_messages(&scope, std::slice::from_ref(id))
            .await?;
    }
    if let Some(ids) = &body_messages {
        check.check_messages(&scope, ids).await?;
    }
    if let Some((ids, threads)) = &saved {
        check.check_messages(&scope, ids).await?;
        check.check_threads_or_missing(&scope, threads).await?;
    }

    // The only body edit the guard makes: the trusted thread id replaces the client's. All
    // other bytes go on as the client (or the scope layer) sent them.
    let mut body = buffered;
    if let (Some(trusted), Some(_)) = (&input.trusted, &body_thread) {
        let mut edits = Edits::new(&doc);
        // Every field that named the thread (read and validated above) gets the trusted id.
        for path in &route.thread_body {
            if let Some(node) = one(&doc, Some(path))? {
                edits.replace(thread_node(&doc, node)?.1, trusted.as_str());
            }
        }
        if let (Some(edited), Some(body)) = (edits.finish(), body.as_mut()) {
            body.bytes = edited;
        }
    }
    Ok(Admit {
        thread: admitted,
        message: path_message,
        body,
        rewrite: input.trusted,
        acting_as,
        prefetched,
    })
}

/// The message and thread ids of Mastra's `include` list: `[{"id": "..", "threadId": ".."}]`.
fn included(raw: Option<&str>) -> Result<(Vec<MessageId>, Vec<ThreadId>), Rejection> {
    let bad = || {
        Rejection::with_message(
            RejectionKind::BadRequest,
            messages::INVALID_QUERY_PARAMETERS,
        )
    };
    let doc = Doc::parse(raw.ok_or_else(bad)?.as_bytes()).map_err(|_| bad())?;
    let items = doc
        .root()
        .map(|root| root.array(doc.text()))
        .transpose()
        .map_err(|_| bad())?
        .flatten()
        .ok_or_else(bad)?;
    let mut messages = Vec::with_capacity(items.len());
    let mut threads = Vec::new();
    for item in items {
        let object = item
            .object(doc.text())
            .map_err(|_| bad())?
            .ok_or_else(bad)?;
        match object.get("id").map_err(json)?.and_then(|n| n.as_str()) {
            Some(id) if !id.is_empty() => messages.push(message_id(&id)?),
            _ => return Err(bad()),
        }
        match object.get("threadId").map_err(json)? {
            None => {}
            Some(node) if node.is_null() => {}
            Some(node) => match node.as_str() {
                Some(id) => threads.push(ThreadId::new(id).map_err(|_| invalid_thread())?),
                None => return Err(bad()),
            },
        }
    }
    Ok((messages, threads))
}

/// Makes the request name the trusted thread wherever the client could have named one.
pub(crate) fn rewrite_thread<B>(
    route: &GuardRoute,
    req: &mut Request<B>,
    trusted: &ThreadId,
) -> Result<(), Rejection> {
    let path = req.uri().path();
    let mut new_path = None;
    if let Some(param) = &route.thread_path
        && let Some(span) = route.pattern.param_span(path, param)
    {
        let mut rebuilt = String::with_capacity(path.len() + trusted.len());
        rebuilt.push_str(&path[..span.start]);
        query::push_encoded(&mut rebuilt, trusted);
        rebuilt.push_str(&path[span.end..]);
        new_path = Some(rebuilt);
    }
    let path = new_path.as_deref().unwrap_or(req.uri().path());
    let rewritten = match &route.thread_query {
        Some(name) => query::rewrite(
            path,
            req.uri().query(),
            |key, _| {
                if key == &**name {
                    PairEdit::Set(trusted.as_str())
                } else {
                    PairEdit::Keep
                }
            },
            || None,
        ),
        None => None,
    };
    // Only the path changed: the client's query goes on after it, as spelled.
    let rewritten = rewritten.or_else(|| {
        new_path.as_deref().map(|path| match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        })
    });
    if let Some(pq) = rewritten {
        query::set_path_and_query(req, pq)?;
    }
    if let Some(name) = &route.thread_header
        && req.headers().contains_key(name)
    {
        let value = HeaderValue::from_bytes(trusted.as_bytes()).map_err(|_| invalid_thread())?;
        req.headers_mut().insert(name.clone(), value);
    }
    Ok(())
}
