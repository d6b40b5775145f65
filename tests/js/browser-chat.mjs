// The memory server's chat page in headless Chromium (playwright-core): alice chats twice and
// sees the recall, rendered as the stream arrives; bob, in another browser context, sees none
// of alice's threads and gets the 403 message when the page is pointed at alice's thread.
//
// Env: BASE_URL (a memory server in dev mode), SCREENSHOT (where to save the page, optional).
// Exits non-zero on the first failed check.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const { BASE_URL, SCREENSHOT } = process.env;
assert.ok(BASE_URL, "BASE_URL is required");

let checks = 0;
const check = (what, fn) => {
  fn();
  checks += 1;
  console.log(`ok - ${what}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  // Sends `text` and waits until the answer's stream has ended; returns the answer and how
  // many text events the page rendered into it before the end.
  async function say(page, text) {
    const before = await page.locator(".msg.assistant[data-done]").count();
    await page.fill("#input", text);
    await page.click("#send");
    const answer = page.locator(".msg.assistant").nth(before);
    await answer.waitFor();
    await page.waitForFunction((n) => document.querySelectorAll(".msg.assistant[data-done]").length > n, before);
    return { text: await answer.textContent(), deltas: Number(await answer.getAttribute("data-deltas")) };
  }

  const aliceContext = await browser.newContext({ viewport: { width: 1100, height: 640 } });
  const alice = await aliceContext.newPage();
  await alice.goto(`${BASE_URL}/?user=alice`);
  await alice.waitForSelector('body[data-ready="alice"]');
  const users = await alice.locator("#users button").allTextContents();
  check("the page offers the dev users in dev mode", () => assert.deepEqual(users, ["alice", "bob"]));

  // Watch the answer bubble grow: each change of its text is one rendering while streaming.
  await alice.evaluate(() => {
    window.renders = 0;
    new MutationObserver(() => {
      const streaming = document.querySelector(".msg.assistant.streaming");
      if (streaming && streaming.textContent) window.renders += 1;
    }).observe(document.getElementById("messages"), { subtree: true, childList: true, characterData: true });
  });
  const first = await say(alice, "My favourite colour is teal");
  const renders = await alice.evaluate(() => window.renders);
  check("alice's first answer streams in several events, rendered as they arrive", () => {
    assert.match(first.text, /Nice to meet you/);
    assert.ok(first.deltas > 1, `deltas: ${first.deltas}`);
    assert.ok(renders > 1, `renders while streaming: ${renders}`);
  });
  const thread = await alice.evaluate(() => localStorage.getItem("threadId:alice"));
  check("the thread id is kept in localStorage, a UUID chosen by the server", () => {
    assert.match(thread ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
  const second = await say(alice, "What is my favourite colour?");
  check("alice's second answer recalls the first message", () => {
    assert.match(second.text, /Earlier in this thread you said: "My favourite colour is teal"/);
  });

  // A reload keeps the thread (localStorage) and shows its history from the memory API.
  await alice.reload();
  await alice.waitForSelector('body[data-ready="alice"]');
  await alice.waitForFunction(() => document.querySelectorAll(".msg").length >= 4);
  const shown = await alice.locator(".msg").count();
  const listed = await alice.locator(`#threads button[data-thread="${thread}"]`).textContent();
  check("after a reload the page reopens the same thread with its four messages", () => {
    assert.equal(shown, 4);
    assert.match(listed, /My favourite colour is teal/);
  });
  if (SCREENSHOT) {
    await alice.screenshot({ path: SCREENSHOT });
    console.log(`screenshot: ${SCREENSHOT}`);
  }

  const bobContext = await browser.newContext();
  const bob = await bobContext.newPage();
  await bob.goto(`${BASE_URL}/?user=bob`);
  await bob.waitForSelector('body[data-ready="bob"]');
  const bobsList = await bob.locator("#threads button").evaluateAll((bs) => bs.map((b) => b.dataset.thread));
  const aliceKey = await bob.evaluate(() => localStorage.getItem("threadId:alice"));
  check("bob, in another context, sees none of alice's threads", () => {
    assert.ok(!bobsList.includes(thread), bobsList.join(","));
    assert.equal(aliceKey, null);
  });

  await bob.goto(`${BASE_URL}/?user=bob&thread=${encodeURIComponent(thread)}`);
  await bob.waitForSelector('body[data-ready="bob"]');
  await bob.waitForSelector("#error.shown");
  const opened = await bob.locator("#error").textContent();
  const bobSees = await bob.locator(".msg").count();
  check("bob pointed at alice's thread gets the 403 message, and none of her messages", () => {
    assert.equal(opened, "403: Access denied: thread belongs to a different resource");
    assert.equal(bobSees, 0);
  });

  await bob.fill("#input", "Tell me what alice said");
  await bob.click("#send");
  await bob.waitForFunction(() => document.querySelectorAll(".msg.user").length === 1 && !document.querySelector(".msg.assistant"));
  await bob.waitForSelector("#error.shown");
  const sent = await bob.locator("#error").textContent();
  check("bob sending into alice's thread gets the 403 message and no answer", () => {
    assert.equal(sent, "403: Access denied: thread belongs to a different resource");
  });
  const bobsListAfter = await bob.locator("#threads button").evaluateAll((bs) => bs.map((b) => b.dataset.thread));
  check("bob's list still has none of alice's threads", () => assert.ok(!bobsListAfter.includes(thread)));

  // Alice's thread is as she left it.
  await alice.reload();
  await alice.waitForFunction(() => document.querySelectorAll(".msg").length >= 4);
  const aliceAfter = await alice.locator(".msg").count();
  check("alice's thread is unchanged after bob's attempts", () => assert.equal(aliceAfter, 4));
} finally {
  await browser.close();
}
console.log(`browser-chat: ${checks} checks passed`);
