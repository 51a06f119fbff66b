'use strict';
// Helpers that drive chatbox's pages through the DOM contract (ids, classes and data-attributes
// the pages promise): open the chat, send, wait for replies, read messages and table rows.

const assert = require('node:assert/strict');

const STEP = 10000;

/** Opens `{P}/chat?token=…` and waits for `#conn-status[data-state=open]`. */
async function openChat(page, server, token) {
  await page.goto(server.pageUrl('/chat', token));
  await page.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached', timeout: STEP });
}

/** Types `text` into `#message-input` and clicks `#send-button`. */
async function send(page, text) {
  await page.locator('#message-input').fill(text);
  await page.locator('#send-button').click();
}

/** The AI messages that finished streaming. */
function doneReplies(page) {
  return page.locator('#messages .msg[data-sender="ai"][data-streaming="false"]');
}

/** Waits until at least `n` AI replies have finished streaming. */
async function waitReplies(page, n, timeout = STEP) {
  await page.waitForFunction(
    (count) => document.querySelectorAll('#messages .msg[data-sender="ai"][data-streaming="false"]').length >= count,
    n,
    { timeout },
  );
}

/** Sends `text` and waits for its (n-th) reply to finish. */
async function chatOnce(page, text) {
  const before = await doneReplies(page).count();
  await send(page, text);
  await waitReplies(page, before + 1);
}

/**
 * The visible text of a message element: its content part when the page splits a message into
 * parts (sender label, time), else the whole element; trimmed.
 */
async function msgText(locator) {
  return locator.evaluate((el) => {
    const part = el.querySelector('.content, .msg-content, .msg-text, .text, .body');
    return (part || el).textContent.trim();
  });
}

/** `[sender, text]` of every `.msg` under `root` (a selector), in order. */
async function messages(page, root) {
  const list = page.locator(`${root} .msg`);
  const out = [];
  for (let i = 0; i < (await list.count()); i += 1) {
    const item = list.nth(i);
    out.push([await item.getAttribute('data-sender'), await msgText(item)]);
  }
  return out;
}

/** `body[data-session-id]` of the page. */
function sessionId(page) {
  return page.locator('body').getAttribute('data-session-id');
}

/** Whether the element exists and is rendered (not `hidden`, not display:none, has a box). */
async function shown(page, selector) {
  const loc = page.locator(selector);
  return (await loc.count()) > 0 && loc.first().isVisible();
}

/** The `data-session-id` of every `tr.session-row` under `table` (a selector), in order. */
async function rowIds(page, table) {
  return page.locator(`${table} tbody tr.session-row`).evaluateAll((rows) => rows.map((r) => r.getAttribute('data-session-id')));
}

/** Waits until the ids of `table`'s rows satisfy `pred` (the rows are loaded asynchronously). */
async function waitRows(page, table, pred, what, timeout = STEP) {
  const deadline = Date.now() + timeout;
  let ids = [];
  for (;;) {
    ids = await rowIds(page, table);
    if (pred(ids)) return ids;
    if (Date.now() > deadline) assert.fail(`rows of ${table} never became ${what}; last: ${JSON.stringify(ids)}`);
    await page.waitForTimeout(100);
  }
}

/** The page has no horizontal overflow (the layout fits the viewport width). */
async function assertNoHorizontalOverflow(page, name) {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  assert.ok(scrollWidth <= innerWidth, `${name}: document is ${scrollWidth}px wide in a ${innerWidth}px viewport`);
}

/** The element's box lies inside the viewport (visible without scrolling). */
async function assertInViewport(page, selector) {
  const box = await page.locator(selector).boundingBox();
  assert.ok(box, `${selector} has a box`);
  const vp = page.viewportSize();
  assert.ok(
    box.x >= 0 && box.y >= 0 && box.x + box.width <= vp.width + 0.5 && box.y + box.height <= vp.height + 0.5,
    `${selector} at ${JSON.stringify(box)} is outside the ${vp.width}×${vp.height} viewport`,
  );
}

/** Visible buttons, inputs, selects, textareas and links whose accessible name is empty. */
async function unnamedControls(page) {
  const snapshot = await page.locator('body').ariaSnapshot();
  return snapshot
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /^- (button|textbox|combobox|checkbox|radio|link|searchbox|spinbutton)\b/.test(line))
    .filter((line) => !/^- \w+ "[^"]+"/.test(line) && !/^- \w+ \/.+\//.test(line));
}

module.exports = {
  unnamedControls,
  STEP,
  assertInViewport,
  assertNoHorizontalOverflow,
  chatOnce,
  doneReplies,
  messages,
  msgText,
  openChat,
  rowIds,
  send,
  sessionId,
  shown,
  waitReplies,
  waitRows,
};
