// @mastra/client-js 1.47.0 against the memory server's agent `memAgent`: streams with
// `memory: {thread, resource}`, then reads the saved messages back through the memory API.
// Bob naming Alice's thread (and Alice as resource) is refused; Alice's data is unchanged.
//
// Env: BASE_URL, ALICE_TOKEN, BOB_TOKEN. Exits non-zero on the first failed check.
import assert from "node:assert/strict";
import { MastraClient } from "@mastra/client-js";

const { BASE_URL, ALICE_TOKEN, BOB_TOKEN } = process.env;
assert.ok(BASE_URL && ALICE_TOKEN && BOB_TOKEN, "BASE_URL, ALICE_TOKEN and BOB_TOKEN are required");

const client = (token) =>
  new MastraClient({ baseUrl: BASE_URL, headers: { Authorization: `Bearer ${token}` }, retries: 0 });
const alice = client(ALICE_TOKEN);
const bob = client(BOB_TOKEN);

let checks = 0;
const check = (what, fn) => {
  fn();
  checks += 1;
  console.log(`ok - ${what}`);
};

// Streams one message; returns the text the client assembled and the chunk types in order.
async function stream(agent, messages, memory) {
  const res = await agent.stream(messages, memory ? { memory } : {});
  const types = [];
  let text = "";
  await res.processDataStream({
    onChunk: async (chunk) => {
      types.push(chunk.type);
      if (chunk.type === "text-delta") text += chunk.payload.text;
    },
  });
  return { text, types, threadHeader: res.headers.get("x-thread-id") };
}

const thread = `client-js-${Date.now()}-${Math.random().toString(16).slice(2)}`;

const agents = await alice.listAgents();
check("GET /api/agents lists memAgent, keyed by id", () => {
  assert.equal(agents.memAgent?.id, "memAgent");
});

const memAgent = alice.getAgent("memAgent");
const first = await stream(memAgent, "My favourite colour is teal", { thread, resource: "alice" });
check("the first stream is Mastra's chunk sequence, text in several deltas", () => {
  assert.equal(first.types[0], "start");
  assert.equal(first.types.at(-1), "finish");
  assert.ok(first.types.filter((t) => t === "text-delta").length > 1, first.types.join(","));
  assert.match(first.text, /My favourite colour is teal/);
  assert.equal(first.threadHeader, thread);
});

// The resource the client names is not the one used: the caller's is (forced by the scope layer).
const second = await stream(memAgent, [{ role: "user", content: "Which colour did I name?" }], {
  thread: { id: thread },
  resource: "somebody-else",
});
check("the second stream recalls the first message of this thread", () => {
  assert.match(second.text, /Earlier in this thread you said: "My favourite colour is teal"/);
});

const { messages } = await alice.getMemoryThread({ threadId: thread, agentId: "memAgent" }).listMessages();
const texts = messages.map((m) => [m.role, m.content?.content ?? m.content]);
check("the memory API returns the four saved messages, in order", () => {
  assert.deepEqual(
    texts.map(([role]) => role),
    ["user", "assistant", "user", "assistant"],
  );
  assert.equal(texts[0][1], "My favourite colour is teal");
  assert.equal(texts[1][1], first.text);
  assert.equal(texts[3][1], second.text);
});

const threadInfo = await alice.getMemoryThread({ threadId: thread, agentId: "memAgent" }).get();
check("the thread was created for alice, whatever memory.resource said", () => {
  assert.equal(threadInfo.resourceId, "alice");
});

const generated = await memAgent.generate("And what did I say first?", { memory: { thread, resource: "alice" } });
check("generate answers in one document and recalls the thread", () => {
  assert.equal(generated.finishReason, "stop");
  assert.match(generated.text, /My favourite colour is teal/);
});

const noMemory = await stream(memAgent, "Remember nothing of this");
check("a request without memory uses none", () => {
  assert.match(noMemory.text, /no memory for this request/);
  assert.equal(noMemory.threadHeader, null);
});

// Bob: Alice's thread by id, by object, and with Alice named as the resource.
for (const memory of [
  { thread, resource: "bob" },
  { thread: { id: thread }, resource: "alice" },
]) {
  let status = 0;
  let body = null;
  try {
    await stream(bob.getAgent("memAgent"), "Tell me what alice said", memory);
  } catch (e) {
    status = e.status;
    body = e.body;
  }
  check(`bob naming alice's thread (${JSON.stringify(memory.thread)}) gets 403`, () => {
    assert.equal(status, 403);
    assert.equal(body?.error, "Access denied: thread belongs to a different resource");
  });
}
const bobsOwn = await stream(bob.getAgent("memAgent"), "What do you know about me?", {
  thread: `${thread}-bob`,
  resource: "alice",
});
check("bob's own new thread recalls nothing of alice's", () => {
  assert.doesNotMatch(bobsOwn.text, /teal/);
  assert.match(bobsOwn.text, /Nice to meet you/);
});
const bobThreads = await bob.listMemoryThreads({ agentId: "memAgent" });
check("bob's thread list holds bob's thread and none of alice's", () => {
  const threads = bobThreads.threads ?? bobThreads;
  const ids = threads.map((t) => t.id);
  assert.ok(ids.includes(`${thread}-bob`), ids.join(","));
  assert.ok(!ids.includes(thread), ids.join(","));
  assert.ok(threads.every((t) => t.resourceId === "bob"));
});

const { messages: after } = await alice
  .getMemoryThread({ threadId: thread, agentId: "memAgent" })
  .listMessages();
check("alice's thread is unchanged by bob's attempts (6 messages: 3 turns)", () => {
  assert.equal(after.length, 6);
});

let unknown = 0;
try {
  await stream(alice.getAgent("noSuchAgent"), "hello");
} catch (e) {
  unknown = e.status;
}
check("an unknown agent is 404", () => assert.equal(unknown, 404));

console.log(`agent-client: ${checks} checks passed`);
