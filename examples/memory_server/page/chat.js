// The memory server's chat page: pick a user, keep the thread id in localStorage (as the
// seeds' React component does), send `POST /api/chat` with the bearer token and render the
// `data: <json>` events as they arrive. No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  user: null,
  token: null,
  thread: null,
  busy: false,
  named: new URLSearchParams(location.search).get("thread"),
};

const threadKey = () => `threadId:${state.user}`;

function showError(text) {
  const box = $("error");
  box.textContent = text || "";
  box.classList.toggle("shown", Boolean(text));
}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: {
      Authorization: `Bearer ${state.token}`,
      ...(options.body ? { "Content-Type": "application/json" } : {}),
    },
  });
  if (!res.ok) {
    let message = res.statusText;
    try {
      message = (await res.json()).error || message;
    } catch {}
    const error = new Error(`${res.status}: ${message}`);
    error.status = res.status;
    throw error;
  }
  return res;
}

function setThread(id) {
  state.thread = id || null;
  if (state.thread) localStorage.setItem(threadKey(), state.thread);
  else localStorage.removeItem(threadKey());
  $("thread-label").textContent = state.thread ? `Thread ${state.thread}` : "New chat";
  for (const b of document.querySelectorAll("#threads button")) {
    b.setAttribute("aria-current", String(b.dataset.thread === state.thread));
  }
}

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  $("messages").append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function messageText(content) {
  if (typeof content === "string") return content;
  if (content && typeof content.content === "string") return content.content;
  return (content?.parts || []).filter((p) => p.type === "text").map((p) => p.text).join("");
}

async function loadThreads() {
  const list = $("threads");
  const { threads } = await (await api("/api/memory/threads")).json();
  list.replaceChildren(
    ...threads.map((t) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.thread = t.id;
      b.textContent = t.title || "(untitled)";
      const small = document.createElement("small");
      small.textContent = t.id;
      b.append(small);
      b.setAttribute("aria-current", String(t.id === state.thread));
      b.addEventListener("click", () => openThread(t.id));
      li.append(b);
      return li;
    }),
  );
}

async function openThread(id) {
  showError("");
  setThread(id);
  $("messages").replaceChildren();
  if (!id) return;
  try {
    const { messages } = await (await api(`/api/memory/threads/${encodeURIComponent(id)}/messages`)).json();
    for (const m of messages) bubble(m.role, messageText(m.content));
  } catch (e) {
    // A thread that does not exist yet is created by the first message.
    if (e.status !== 404) showError(e.message);
  }
}

// Server-sent events from a fetch body: `data: <json>` blocks separated by a blank line.
async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const blocks = buffer.split("\n\n");
    buffer = blocks.pop();
    for (const block of blocks) {
      if (!block.startsWith("data: ")) continue;
      const data = block.slice(6);
      if (data === "[DONE]") return;
      onEvent(JSON.parse(data));
    }
  }
}

async function send(text) {
  showError("");
  bubble("user", text);
  const answer = bubble("assistant", "");
  answer.classList.add("streaming");
  const body = { message: text, ...(state.thread ? { threadId: state.thread } : {}) };
  try {
    const res = await api("/api/chat", { method: "POST", body: JSON.stringify(body) });
    await readEvents(res, (event) => {
      if (event.type === "thread") setThread(event.threadId);
      else if (event.type === "text-delta") {
        answer.textContent += event.payload.text;
        answer.dataset.deltas = String(Number(answer.dataset.deltas || 0) + 1);
      } else if (event.type === "error") showError(event.payload.error.message);
    });
    answer.classList.remove("streaming");
    answer.dataset.done = "true";
    await loadThreads();
  } catch (e) {
    answer.remove();
    showError(e.message);
  }
}

async function useUser(user, token) {
  state.user = user;
  state.token = token;
  sessionStorage.setItem("user", user);
  for (const b of document.querySelectorAll("#users button")) {
    b.setAttribute("aria-pressed", String(b.dataset.user === user));
  }
  // `?thread=<id>` points the page at a thread once, on load; afterwards localStorage decides.
  const named = state.named;
  state.named = null;
  await openThread(named || localStorage.getItem(threadKey()));
  try {
    await loadThreads();
  } catch (e) {
    showError(e.message);
  }
  document.body.dataset.ready = user;
}

async function start() {
  $("composer").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("input");
    const text = input.value.trim();
    if (!text || state.busy || !state.token) return;
    input.value = "";
    state.busy = true;
    $("send").disabled = true;
    try {
      await send(text);
    } finally {
      state.busy = false;
      $("send").disabled = false;
      input.focus();
    }
  });
  $("new-chat").addEventListener("click", () => openThread(null));

  const res = await fetch("/dev/tokens");
  if (!res.ok) {
    // Not in dev mode: the server's secret is configured, so bring a token of your own.
    $("mode").textContent = "";
    $("token-form").classList.add("shown");
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      useUser("token", $("token").value.trim());
    });
    return;
  }
  $("mode").textContent = "dev mode";
  const { users } = await res.json();
  const tokens = new Map(users.map((u) => [u.user, u.token]));
  $("users").replaceChildren(
    ...users.map(({ user }) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.user = user;
      b.textContent = user;
      b.addEventListener("click", () => useUser(user, tokens.get(user)));
      return b;
    }),
  );
  const wanted = new URLSearchParams(location.search).get("user") || sessionStorage.getItem("user");
  const first = tokens.has(wanted) ? wanted : users[0]?.user;
  if (first) await useUser(first, tokens.get(first));
}

start().catch((e) => showError(String(e)));
