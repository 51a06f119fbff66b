'use strict';
// Stopping a reply on the chat page (issue 15), against a slow scripted upstream: while a reply
// streams, Stop is shown and Send is disabled; Escape stops it (the `stop` frame); the bubble is
// marked interrupted and keeps the text that arrived; Send comes back; the stored reply carries
// `metadata.interrupted` and, after a reload, the transcript still shows it marked. Stop also
// works with a click. Screenshots of a streaming and of a stopped reply.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

// Forty words 250 ms apart: ten seconds of streaming unless stopped.
const WORDS = Array.from({ length: 40 }, (_, i) => `word${i} `);

let browser;
let server;

test.before(async () => {
  const upstream = await h.scriptedUpstream(() => ({ chunks: WORDS, delayMs: 250 }));
  server = await h.startServer({
    providers: [{ id: 'slow', name: 'Slow model', type: 'openai', endpoint: upstream.endpoint }],
  });
  browser = await h.launchBrowser();
});
test.after(h.cleanup);

const streaming = '#messages .msg[data-sender="ai"][data-streaming="true"]';

test('stop: Escape stops a streaming reply; it is stored and shown marked interrupted, also after a reload', h.withServerLog(() => server, async () => {
  const token = server.token('stop-user');
  const page = await h.newPage(browser);
  await p.openChat(page, server, token);
  assert.equal(await p.shown(page, '#stop-button'), false, 'no Stop button while idle');

  await p.send(page, 'Tell me a long story');
  await page.locator(streaming, { hasText: 'word2' }).waitFor();
  assert.equal(await p.shown(page, '#stop-button'), true, 'Stop shows while the reply streams');
  assert.ok(await page.locator('#send-button').isDisabled(), 'Send is disabled while the reply streams');
  await h.screenshot(page, 'chat-reply-streaming');

  await page.keyboard.press('Escape');
  const bubble = page.locator('#messages .msg[data-sender="ai"]').last();
  await bubble.locator('.interrupted-note').waitFor();
  assert.equal(await bubble.getAttribute('data-streaming'), 'false');
  const shown = (await bubble.locator('.body').textContent()).trim();
  assert.match(shown, /^word0 word1 word2/, shown);
  assert.doesNotMatch(shown, /word39/, 'stopped before the end');
  await page.locator('#stop-button').waitFor({ state: 'hidden' });
  await page.locator('#send-button:not([disabled])').waitFor();
  await h.screenshot(page, 'chat-reply-stopped');
  assert.equal(await page.getByText(/That conversation was ended/).count(), 0, 'a first message starts no "new conversation" notice');

  const sid = await p.sessionId(page);
  const stored = await server.api('GET', `/sessions/${sid}`, token);
  assert.equal(stored.status, 200, stored.text);
  const reply = stored.json.messages[stored.json.messages.length - 1];
  assert.equal(reply.sender, 'ai');
  assert.equal(reply.metadata?.interrupted, 'true', JSON.stringify(reply));
  assert.equal(reply.content.trim(), shown, 'the stored text is the text shown');

  // After a reload, the stored transcript shows the reply marked.
  await page.reload();
  await page.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached' });
  const again = page.locator('#messages .msg[data-sender="ai"]').last();
  await again.locator('.interrupted-note').waitFor();
  assert.equal((await again.locator('.body').textContent()).trim(), shown);

  // Stop with a click, in the same session.
  await p.send(page, 'Another one');
  await page.locator(streaming, { hasText: 'word1' }).waitFor();
  await page.locator('#stop-button').click();
  await page.locator('#messages .msg[data-sender="ai"]').nth(1).locator('.interrupted-note').waitFor();
  await page.locator('#send-button:not([disabled])').waitFor();
  assert.deepEqual(page.records.pageErrors, [], 'no script error');
}));
