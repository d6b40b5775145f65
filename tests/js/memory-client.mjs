// Every memory call of @mastra/client-js 1.47.0, as alice and as bob, against a running server.
//
// env: BASE_URL (http://127.0.0.1:<port>), ALICE_TOKEN, BOB_TOKEN (bearer tokens whose resource
// ids are `alice` and `bob`), TARGET=mastra when BASE_URL is Mastra's own server (the reference
// in ../shared/reference/mastra-server): the few answers where the memory server differs on
// purpose are then checked as Mastra gives them.
//
// Prints one line per check; exits 1 when any check fails.
import { isDeepStrictEqual } from 'node:util';
import { MastraClient } from '@mastra/client-js';

const { BASE_URL, ALICE_TOKEN, BOB_TOKEN } = process.env;
if (!BASE_URL || !ALICE_TOKEN || !BOB_TOKEN) {
  console.error('BASE_URL, ALICE_TOKEN and BOB_TOKEN are required');
  process.exit(2);
}
const ours = process.env.TARGET !== 'mastra';
const agentId = 'memAgent';
const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

// No retries: a refusal must be seen once, as it is.
const client = (token) => new MastraClient({ baseUrl: BASE_URL, headers: { Authorization: `Bearer ${token}` }, retries: 0 });
const alice = client(ALICE_TOKEN);
const bob = client(BOB_TOKEN);

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name}${detail === undefined ? '' : `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  }
}
// JSON objects are unordered: key order is not compared.
const same = (a, b) => isDeepStrictEqual(a, b);
function equal(name, actual, expected) {
  check(name, same(actual, expected), { actual, expected });
}

/** The call must fail with `status` (and Mastra's `{"error": message}` when given). */
async function refused(name, call, status, message) {
  try {
    const answer = await call();
    check(name, false, { expected: status, got: 'success', answer });
  } catch (err) {
    const got = { status: err.status, error: err.body?.error };
    const ok = err.status === status && (message === undefined || err.body?.error === message);
    check(`${name} -> ${status}`, ok, ok ? undefined : { ...got, expected: { status, message }, err: String(err) });
  }
}

/** The call must succeed; returns its answer (undefined after a failure, which is counted). */
async function answer(name, call) {
  try {
    return await call();
  } catch (err) {
    check(`${name} succeeds`, false, { status: err.status, body: err.body, err: String(err) });
    return undefined;
  }
}

const FOREIGN = 'Access denied: thread belongs to a different resource';
const NOT_FOUND = 'Thread not found';

// ---- threads ---------------------------------------------------------------------------------
const a1 = `a1-${run}`;
const a2 = `a2-${run}`;
const b1 = `b1-${run}`;
const meta = { run, topic: 'tea', n: 1 };

let t = await answer('alice creates a thread', () =>
  alice.createMemoryThread({ agentId, resourceId: 'alice', threadId: a1, title: 'first', metadata: meta }));
check('created thread: id, title, owner', t?.id === a1 && t?.title === 'first' && t?.resourceId === 'alice', t);
equal('created thread: metadata as sent', t?.metadata, meta);
check('created thread: Mastra timestamps', ISO.test(t?.createdAt) && ISO.test(t?.updatedAt), t);

t = await answer('alice creates a second thread', () =>
  alice.createMemoryThread({ agentId, resourceId: 'alice', threadId: a2, title: 'second', metadata: { run, topic: 'coffee' } }));
check('second thread created', t?.id === a2, t);

const plain = await answer('alice creates a thread without id or metadata', () =>
  alice.createMemoryThread({ agentId, resourceId: 'alice', title: 'plain' }));
check('server-made thread id is a UUID v4', UUID_V4.test(plain?.id ?? ''), plain);
check('created without metadata: no metadata key', plain !== undefined && !('metadata' in plain), plain);

await refused('unknown agentId on create', () =>
  alice.createMemoryThread({ agentId: 'nope', resourceId: 'alice', title: 'x' }), 404, 'Agent not found');

t = await answer('bob creates a thread naming alice as resourceId', () =>
  bob.createMemoryThread({ agentId, resourceId: 'alice', threadId: b1, title: 'bob', metadata: { run } }));
check("bob's body resourceId is forced to bob", t?.resourceId === 'bob', t);
if (ours) {
  // Mastra's server (1.67) answers 200 here and gives alice's thread to bob (its thread upsert
  // does not check the owner); the memory server refuses, in the same statement that writes.
  await refused("bob creates a thread with alice's id", () =>
    bob.createMemoryThread({ agentId, resourceId: 'bob', threadId: a1, title: 'taken' }), 403, FOREIGN);
}

let list = await answer('alice lists her threads by metadata, oldest first', () =>
  alice.listMemoryThreads({ agentId, metadata: { run }, orderBy: { field: 'createdAt', direction: 'ASC' } }));
equal('metadata filter and ASC order', list?.threads.map((x) => x.id), [a1, a2]);
check('listing: total, page, perPage, hasMore', list?.total === 2 && list?.page === 0 && list?.perPage === 100 && list?.hasMore === false, list);
check('listed threads carry metadata (null when none)', list?.threads.every((x) => 'metadata' in x), list);

list = await answer('alice lists one page, newest first', () =>
  alice.listMemoryThreads({ agentId, metadata: { run }, perPage: 1, page: 0, orderBy: { field: 'updatedAt', direction: 'DESC' } }));
equal('DESC by updatedAt, one per page', list?.threads.map((x) => x.id), [a2]);
check('hasMore on a partial page', list?.total === 2 && list?.perPage === 1 && list?.hasMore === true, list);

list = await answer('alice filters on two metadata keys', () =>
  alice.listMemoryThreads({ agentId, metadata: { run, topic: 'coffee' } }));
equal('AND of metadata keys', list?.threads.map((x) => x.id), [a2]);

list = await answer("bob lists with alice's resourceId and her metadata", () =>
  bob.listMemoryThreads({ agentId, resourceId: 'alice', metadata: { run } }));
equal('bob sees only his own thread', list?.threads.map((x) => x.id), [b1]);

await refused('orderBy field outside createdAt/updatedAt', () =>
  alice.listMemoryThreads({ agentId, orderBy: { field: 'title' } }), 400, 'Invalid query parameters');

const thread = alice.getMemoryThread({ threadId: a1, agentId });
t = await answer('alice gets her thread', () => thread.get());
check('get: id, owner, metadata', t?.id === a1 && t?.resourceId === 'alice' && same(t?.metadata, meta), t);
await refused("bob gets alice's thread", () => bob.getMemoryThread({ threadId: a1, agentId }).get(), 403, FOREIGN);
await refused('a thread that does not exist', () => alice.getMemoryThread({ threadId: `none-${run}`, agentId }).get(), 404, NOT_FOUND);

t = await answer('alice renames her thread', () => thread.update({ title: 'renamed', metadata: { ...meta, edited: true } }));
check('update answers the new title and metadata', t?.title === 'renamed' && t?.metadata?.edited === true, t);
await refused("bob updates alice's thread", () =>
  bob.getMemoryThread({ threadId: a1, agentId }).update({ title: 'pwned', metadata: {} }), 403, FOREIGN);
await refused('unknown agentId on update', () => thread.update({ agentId: 'nope', title: 'x' }), 404, 'Agent not found');

// ---- messages --------------------------------------------------------------------------------
const m1 = `m1-${run}`;
const m2 = `m2-${run}`;
const t0 = '2025-01-01T00:00:00.000Z';
const t1 = '2025-01-01T00:00:01.000Z';
const v2 = { format: 2, parts: [{ type: 'text', text: 'a reply about tea' }] };
let saved = await answer('alice saves three messages', () =>
  alice.saveMessageToMemory({
    agentId,
    messages: [
      { id: m1, threadId: a1, resourceId: 'alice', role: 'user', content: 'plain text', createdAt: t0 },
      { id: m2, threadId: a1, resourceId: 'alice', role: 'assistant', type: 'text', content: v2, createdAt: t1 },
      { threadId: a1, resourceId: 'alice', role: 'user', content: 'third' },
    ],
  }));
const [s1, s2, s3] = saved?.messages ?? [];
equal('plain text becomes format 2', s1?.content, { format: 2, parts: [{ type: 'text', text: 'plain text' }], content: 'plain text' });
check("the client's createdAt is kept", s1?.createdAt === t0 && s2?.createdAt === t1, saved);
check('type comes back when sent', s2?.type === 'text' && !('type' in (s1 ?? {})), saved);
check('saved message: thread and owner', s1?.threadId === a1 && s1?.resourceId === 'alice' && s1?.role === 'user', s1);
check('a message without id gets a UUID v4 and a timestamp now', UUID_V4.test(s3?.id ?? '') && ISO.test(s3?.createdAt ?? '') && s3.createdAt > t1, s3);
const m3 = s3?.id;

await refused('unknown agentId on save', () =>
  alice.saveMessageToMemory({ agentId: 'nope', messages: [{ threadId: a1, resourceId: 'alice', role: 'user', content: 'x' }] }), 404, 'Agent not found');
await refused("bob saves into alice's thread", () =>
  bob.saveMessageToMemory({ agentId, messages: [{ threadId: a1, resourceId: 'bob', role: 'user', content: 'hi' }] }), 403, FOREIGN);
await refused("bob saves for alice's resource", () =>
  bob.saveMessageToMemory({ agentId, messages: [{ threadId: b1, resourceId: 'alice', role: 'user', content: 'hi' }] }), 403,
  'Access denied: cannot save messages for a different resource');

let page = await answer('alice lists the messages', () => thread.listMessages());
equal('messages oldest first', page?.messages.map((x) => x.id), [m1, m2, m3]);
check('message page: total, page, perPage 40, hasMore, uiMessages', page?.total === 3 && page?.page === 0 && page?.perPage === 40 && page?.hasMore === false && page?.uiMessages === null, page);
check('listed messages keep type and format 2', page?.messages[1]?.type === 'text' && page?.messages[0]?.content?.format === 2, page?.messages);

page = await answer('page 1 of 1, newest first', () => thread.listMessages({ page: 1, perPage: 1, orderBy: { field: 'createdAt', direction: 'DESC' } }));
equal('DESC, second page', page?.messages.map((x) => x.id), [m2]);
check('hasMore in the middle', page?.total === 3 && page?.page === 1 && page?.perPage === 1 && page?.hasMore === true, page);

page = await answer('include the message after m1', () => thread.listMessages({ perPage: 1, include: [{ id: m1, withNextMessages: 1 }] }));
if (ours) {
  // Mastra's LibSQL store answers this page differently from run to run (m3 alone here, m1 and
  // m2 in a hand-made probe); the memory server answers the page plus the included messages.
  equal('include adds the next message', page?.messages.map((x) => x.id), [m1, m2]);
}

page = await answer('filter by date range', () => thread.listMessages({ filter: { dateRange: { start: '2025-01-01T00:00:00.500Z' } } }));
equal('only messages after the start', page?.messages.map((x) => x.id), [m2, m3]);

page = await answer('network route lists the same messages', () => alice.listThreadMessages(a1, { networkId: agentId }));
equal('network listing', page?.messages.map((x) => x.id), [m1, m2, m3]);

await refused("bob lists alice's messages", () => bob.listThreadMessages(a1, { agentId }), 403, FOREIGN);
if (ours) {
  // Mastra answers 200 with no messages; the memory server's guard refuses the foreign id.
  await refused("bob includes alice's message in his own listing", () =>
    bob.getMemoryThread({ threadId: b1, agentId }).listMessages({ include: [{ id: m1, withNextMessages: 5 }] }), 403);
}

// Re-saving one's own message id into another of one's threads moves it.
saved = await answer('alice re-saves m3 into her second thread', () =>
  alice.saveMessageToMemory({ agentId, messages: [{ id: m3, threadId: a2, resourceId: 'alice', role: 'user', content: 'moved' }] }));
page = await answer('list the second thread', () => alice.listThreadMessages(a2, { agentId }));
equal('m3 is now in the second thread', page?.messages.map((x) => x.id), [m3]);
page = await answer('list the first thread', () => thread.listMessages());
equal('and no longer in the first', page?.messages.map((x) => x.id), [m1, m2]);

const bm = `bm-${run}`;
await answer('bob saves a message of his own', () =>
  bob.saveMessageToMemory({ agentId, messages: [{ id: bm, threadId: b1, resourceId: 'bob', role: 'user', content: "bob's secret" }] }));
if (ours) {
  // Mastra's server (1.67) answers 200 and moves alice's message into bob's thread.
  await refused("bob re-saves alice's message id into his thread", () =>
    bob.saveMessageToMemory({ agentId, messages: [{ id: m1, threadId: b1, resourceId: 'bob', role: 'user', content: 'stolen' }] }), 403, FOREIGN);
  // Mastra itself moves bob's message into alice's thread here (200); the memory server refuses.
  await refused("alice re-saves bob's message id into her thread", () =>
    alice.saveMessageToMemory({ agentId, messages: [{ id: bm, threadId: a1, resourceId: 'alice', role: 'user', content: 'taken' }] }), 403, FOREIGN);
  page = await answer("bob's thread after alice's attempt", () => bob.listThreadMessages(b1, { agentId }));
  equal("bob's message stays his", page?.messages.map((x) => [x.id, x.content?.content]), [[bm, "bob's secret"]]);
}

// ---- working memory (resource-scoped, Mastra's default) ---------------------------------------
let wm = await answer('alice reads working memory before any', () => alice.getWorkingMemory({ agentId, threadId: a1 }));
// The resource outlives a run: on a fresh database this is null, and never this run's notes.
check('no working memory of this run yet, resource source, markdown template',
  wm !== undefined && !String(wm.workingMemory).includes(run) && wm?.source === 'resource' && wm?.workingMemoryTemplate?.format === 'markdown' && wm?.threadExists === true, wm);
const notes = `# Notes ${run}\n- likes tea`;
equal('alice writes working memory', await answer('update working memory', () =>
  alice.updateWorkingMemory({ agentId, threadId: a1, workingMemory: notes })), { success: true });
wm = await answer('alice reads it back', () => alice.getWorkingMemory({ agentId, threadId: a1 }));
check('working memory as written', wm?.workingMemory === notes, wm);
wm = await answer('alice reads it through her other thread', () => alice.getWorkingMemory({ agentId, threadId: a2 }));
check('resource-scoped: the same in every thread of hers', wm?.workingMemory === notes, wm);
wm = await answer('alice reads it for a thread that does not exist', () => alice.getWorkingMemory({ agentId, threadId: `none-${run}` }));
check('missing thread: threadExists false', wm?.threadExists === false && wm?.workingMemory === notes, wm);
await refused('writing working memory of a missing thread', () =>
  alice.updateWorkingMemory({ agentId, threadId: `none-${run}`, workingMemory: 'x' }), 404, NOT_FOUND);
await refused("bob reads working memory through alice's thread", () => bob.getWorkingMemory({ agentId, threadId: a1, resourceId: 'alice' }), 403, FOREIGN);
await refused("bob writes working memory through alice's thread", () =>
  bob.updateWorkingMemory({ agentId, threadId: a1, resourceId: 'alice', workingMemory: 'pwned' }), 403, FOREIGN);
wm = await answer('bob reads his own working memory naming alice', () => bob.getWorkingMemory({ agentId, threadId: b1, resourceId: 'alice' }));
check("bob never sees alice's working memory", wm !== undefined && wm.workingMemory !== notes, wm);
await refused('unknown agentId on working-memory update', () =>
  alice.updateWorkingMemory({ agentId: 'nope', threadId: a1, workingMemory: 'x' }), 404, 'Agent not found');

// ---- config, status, observational memory -----------------------------------------------------
const config = await answer('memory config', () => alice.getMemoryConfig({ agentId }));
check('config: last messages, working memory on, no observational memory',
  config?.config?.lastMessages === 10 && config?.config?.workingMemory?.enabled === true && config?.config?.observationalMemory?.enabled === false, config);
equal('config of an unknown agent', await answer('config of an unknown agent', () => alice.getMemoryConfig({ agentId: 'nope' })), { config: null });
equal('memory status', await answer('memory status', () => alice.getMemoryStatus(agentId)), { result: true, memoryType: 'local' });
equal('memory status for her thread', await answer('memory status with thread', () =>
  alice.getMemoryStatus(agentId, undefined, { resourceId: 'alice', threadId: a1 })), { result: true, memoryType: 'local' });
if (ours) {
  // Mastra's status route does not look at threadId; the memory server's guard checks it everywhere.
  await refused("bob asks status naming alice's thread", () => bob.getMemoryStatus(agentId, undefined, { threadId: a1 }), 403, FOREIGN);
}
await refused('observational memory is off', () => alice.getObservationalMemory({ agentId, resourceId: 'alice' }), 400,
  'Observational Memory is not enabled for this agent');
await refused('observational memory buffer is off', () => alice.awaitBufferStatus({ agentId, resourceId: 'alice', threadId: a1 }), 400,
  'Observational Memory is not enabled for this agent');
await refused("bob's observational memory call naming alice's thread", () =>
  bob.awaitBufferStatus({ agentId, resourceId: 'alice', threadId: a1 }), ours ? 403 : 400);

// ---- search ----------------------------------------------------------------------------------
let found = await answer('alice searches her thread', () => alice.searchMemory({ agentId, resourceId: 'alice', threadId: a1, searchQuery: 'tea' }));
equal('search results newest first', found?.results.map((r) => r.id), [m2, m1]);
check('search answer: count, query, scope, type', found?.count === 2 && found?.query === 'tea' && found?.searchScope === 'resource' && found?.searchType === 'text', found);
const r0 = found?.results[0];
check('a result: text content, thread and title, context', r0?.content === 'a reply about tea' && r0?.threadId === a1 && r0?.threadTitle === 'renamed'
  && same(r0?.context?.before.map((c) => c.id), [m1]) && same(r0?.context?.after, []), r0);
found = await answer("bob searches naming alice's resource", () => bob.searchMemory({ agentId, resourceId: 'alice', searchQuery: 'tea' }));
check("bob's search never shows alice's messages", found !== undefined && found.results.every((r) => r.threadId !== a1 && r.threadId !== a2), found);
if (ours) {
  // Mastra answers 500 here (its thread check throws); the memory server's guard says 403.
  await refused("bob searches alice's thread", () => bob.searchMemory({ agentId, resourceId: 'alice', threadId: a1, searchQuery: 'tea' }), 403, FOREIGN);
}
await refused('unknown agentId on search', () => alice.searchMemory({ agentId: 'nope', resourceId: 'alice', searchQuery: 'x' }), 404, 'Agent not found');

// ---- clone and transfer ----------------------------------------------------------------------
const c1 = `c1-${run}`;
let cloned = await answer('alice clones her thread', () => thread.clone({ newThreadId: c1, title: 'copy', metadata: { run: `${run}-clone` } }));
check('clone: new thread of hers with clone metadata', cloned?.thread?.id === c1 && cloned?.thread?.resourceId === 'alice' && cloned?.thread?.title === 'copy'
  && cloned?.thread?.metadata?.clone?.sourceThreadId === a1 && cloned?.thread?.metadata?.clone?.lastMessageId === m2 && cloned?.thread?.metadata?.run === `${run}-clone`, cloned?.thread);
check('clone: copies with new ids and the original timestamps', cloned?.clonedMessages?.length === 2
  && cloned.clonedMessages.every((x) => x.threadId === c1 && UUID_V4.test(x.id)) && cloned.clonedMessages[0].createdAt === t0, cloned?.clonedMessages);
check('clone: messageIdMap maps old to new', same(Object.keys(cloned?.messageIdMap ?? {}).sort(), [m1, m2].sort())
  && cloned?.messageIdMap?.[m1] === cloned?.clonedMessages?.[0]?.id, cloned?.messageIdMap);
page = await answer('list the clone', () => alice.listThreadMessages(c1, { agentId }));
equal('the clone holds the copies', page?.messages.map((x) => x.content), [s1?.content, v2]);

cloned = await answer('alice clones without an id, last message only', () => thread.clone({ options: { messageLimit: 1 } }));
check('clone without id: UUID v4, "Clone of" title, one message', UUID_V4.test(cloned?.thread?.id ?? '') && cloned?.thread?.title === 'Clone of renamed'
  && cloned?.clonedMessages?.length === 1 && cloned?.clonedMessages?.[0]?.content?.parts?.[0]?.text === 'a reply about tea', cloned);
const c2 = cloned?.thread?.id;

await refused('clone into an id she already has', () => thread.clone({ newThreadId: c1 }), ours ? 409 : 500, `Thread with id ${c1} already exists`);
await refused("bob clones alice's thread", () => bob.getMemoryThread({ threadId: a1, agentId }).clone({ newThreadId: `bc-${run}` }), 403, FOREIGN);
// Mastra: 500 `Thread with id .. already exists` (nothing written either).
await refused("bob clones his thread onto alice's id", () => bob.getMemoryThread({ threadId: b1, agentId }).clone({ newThreadId: a2 }),
  ours ? 403 : 500, ours ? FOREIGN : `Thread with id ${a2} already exists`);
await refused('unknown agentId on clone', () => thread.clone({ agentId: 'nope' }), 404, 'Agent not found');
await refused('transfer in a resource-scoped context', () => thread.transfer({ resourceId: 'bob' }), 403,
  'Thread transfer requires a privileged (non-resource-scoped) context');
await refused('bob transfers alice\'s thread to himself', () => bob.getMemoryThread({ threadId: a1, agentId }).transfer({ resourceId: 'bob' }), 403);

// ---- deletes ---------------------------------------------------------------------------------
await refused("bob deletes alice's message", () => bob.getMemoryThread({ threadId: b1, agentId }).deleteMessages([m1]), 403);
await refused("bob deletes alice's thread", () => bob.deleteThread(a1, { agentId }), 403, FOREIGN);
await refused("bob deletes alice's clone", () => bob.getMemoryThread({ threadId: c1, agentId }).delete(), 403, FOREIGN);
await refused('unknown agentId on delete', () => alice.deleteThread(c1, { agentId: 'nope' }), 404, 'Agent not found');

// Nothing of alice's changed through any of bob's attempts.
t = await answer("alice's thread after bob", () => thread.get());
check("alice's thread unchanged by bob", t?.title === 'renamed' && t?.resourceId === 'alice' && t?.metadata?.edited === true, t);
page = await answer("alice's messages after bob", () => thread.listMessages());
equal("alice's messages unchanged by bob", page?.messages.map((x) => [x.id, x.content?.content ?? x.content?.parts?.[0]?.text]),
  [[m1, 'plain text'], [m2, 'a reply about tea']]);
t = await answer("alice's second thread after bob", () => alice.getMemoryThread({ threadId: a2, agentId }).get());
check("alice's second thread still hers", t?.resourceId === 'alice' && t?.title === 'second', t);
wm = await answer("alice's working memory after bob", () => alice.getWorkingMemory({ agentId, threadId: a1 }));
check("alice's working memory unchanged by bob", wm?.workingMemory === notes, wm);

const deleted = await answer('alice deletes a message', () => thread.deleteMessages([m1]));
equal('delete answer', deleted, { success: true, message: '1 message deleted successfully' });
page = await answer('list after delete', () => thread.listMessages());
equal('m1 is gone', page?.messages.map((x) => x.id), [m2]);
equal('alice deletes the clone', await answer('delete clone', () => alice.deleteThread(c1, { agentId })), { result: 'Thread deleted' });
equal('alice deletes the second clone', await answer('delete clone 2', () => alice.getMemoryThread({ threadId: c2, agentId }).delete()), { result: 'Thread deleted' });
await refused('the deleted clone is gone', () => alice.getMemoryThread({ threadId: c1, agentId }).get(), 404, NOT_FOUND);
list = await answer('alice lists the clones by metadata', () => alice.listMemoryThreads({ agentId, metadata: { run: `${run}-clone` } }));
equal('no clone left', list?.threads.length, 0);

console.log(`\n${passed} checks passed, ${failed} failed (${ours ? 'memory server' : "Mastra's server"} at ${BASE_URL})`);
process.exit(failed === 0 ? 0 : 1);
