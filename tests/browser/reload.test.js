'use strict';
// Reloading the chat page: the session id survives in sessionStorage (`body[data-session-id]`)
// and the page fetches `GET {P}/sessions/{id}` to show the earlier messages again, in order and
// before the new ones, without duplicating any that also arrive over the socket. A stored id
// the server does not know for this user (404) is forgotten: the page starts fresh.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

let browser;
let server; // the built-in echo provider

test.before(async () => {
  server = await h.startServer();
  browser = await h.launchBrowser();
});
test.after(h.cleanup);

/** `[sender, text]` of the user and AI messages in #messages, in order. */
async function conversation(page) {
  return (await p.messages(page, '#messages')).filter(([sender]) => sender === 'user' || sender === 'ai');
}

/** Waits until #messages shows at least `n` user/AI messages. */
async function waitConversation(page, n) {
  await page.waitForFunction(
    (count) => document.querySelectorAll('#messages .msg[data-sender="user"], #messages .msg[data-sender="ai"]').length >= count,
    n,
    { timeout: p.STEP },
  );
}

test('reload: the earlier messages are shown again in order, and new ones follow without duplicates', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  const token = server.token('reload-user', { name: 'Reload User' });
  await p.openChat(page, server, token);
  await p.chatOnce(page, 'First message before the reload');
  await p.chatOnce(page, 'Second message with **markdown**');
  const sid = await p.sessionId(page);
  assert.match(sid || '', /^[0-9a-f]{32}$/);
  const before = [
    ['user', 'First message before the reload'],
    ['ai', 'First message before the reload'],
    ['user', 'Second message with markdown'],
    ['ai', 'Second message with markdown'],
  ];
  assert.deepEqual(await conversation(page), before, 'the conversation before the reload');

  await page.reload();
  await page.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached', timeout: p.STEP });
  assert.equal(await p.sessionId(page), sid, 'body[data-session-id] survives the reload');
  await waitConversation(page, 4);
  assert.deepEqual(await conversation(page), before, 'the earlier messages are shown again, in order');
  const replies = page.locator('#messages .msg[data-sender="ai"]');
  assert.deepEqual(
    await replies.evaluateAll((els) => els.map((e) => e.getAttribute('data-streaming'))),
    ['false', 'false'],
    'earlier replies are shown as finished (data-streaming="false")',
  );
  assert.equal(await replies.last().locator('strong, b').first().textContent(), 'markdown', 'an earlier AI reply is rendered as markdown');

  await p.chatOnce(page, 'Third message after the reload');
  await page.waitForTimeout(500); // anything late (a second history load) would land by now
  const after = [
    ...before,
    ['user', 'Third message after the reload'],
    ['ai', 'Third message after the reload'],
  ];
  assert.deepEqual(await conversation(page), after, 'the new exchange follows the earlier one, nothing duplicated');
  assert.equal(await p.sessionId(page), sid, 'the same session continues');

  const stored = await server.api('GET', `/sessions/${sid}`, token);
  assert.equal(stored.status, 200, stored.text);
  assert.deepEqual(
    stored.json.messages.map((m) => [m.sender, m.content]),
    after.map(([sender, text], i) => [sender, i === 2 || i === 3 ? 'Second message with **markdown**' : text]),
  );

  // A second reload shows all three exchanges, once each.
  await page.reload();
  await page.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached', timeout: p.STEP });
  await waitConversation(page, 6);
  await page.waitForTimeout(300);
  assert.deepEqual(await conversation(page), after, 'a second reload shows the whole conversation once');
  assert.equal(await p.shown(page, '#error-banner'), false, 'no error banner');
  assert.deepEqual(page.records.pageErrors, [], 'no script error on the page');
}));

test('reload: a stored session id the server does not know for this user (404) is dropped and the page starts fresh', h.withServerLog(() => server, async () => {
  // Someone else's session id ends up stored for this user.
  const page = await h.newPage(browser);
  const otherSid = await h.wsChat(page, server, server.token('reload-other'), ['A message in someone else\'s session']);
  assert.match(otherSid || '', /^[0-9a-f]{32}$/);

  const token = server.token('reload-fresh');
  await p.openChat(page, server, token);
  await page.evaluate((id) => sessionStorage.setItem('chatbox.session.reload-fresh', id), otherSid);
  await page.reload();
  await page.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached', timeout: p.STEP });
  await page.waitForFunction(() => !document.body.dataset.sessionId, null, { timeout: p.STEP });
  assert.deepEqual(await conversation(page), [], 'nothing of the other session is shown');

  await p.chatOnce(page, 'A fresh start');
  const sid = await p.sessionId(page);
  assert.match(sid || '', /^[0-9a-f]{32}$/);
  assert.notEqual(sid, otherSid, 'a new session, not the other user\'s');
  assert.deepEqual(await conversation(page), [['user', 'A fresh start'], ['ai', 'A fresh start']]);
  assert.equal(await p.shown(page, '#error-banner'), false, 'no error banner');
  assert.deepEqual(page.records.pageErrors, [], 'no script error on the page');
}));
