'use strict';
// Reconnect: the server goes away under an open chat page (SIGTERM: close 1001 to every socket)
// and comes back on the same port and data directory. The page shows
// `#conn-status[data-state=reconnecting]`, then `open` again, and the next message continues in
// the same session (`body[data-session-id]` unchanged; the stored session has every exchange).
// Then the same after SIGKILL (the socket ends without a close frame).

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

let browser;
let server;
h.serverAndBrowser((started) => ({ server, browser } = started));

test('reconnect: the page reconnects after the server drops the socket (shutdown, then crash) and keeps its session', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  const token = server.token('reconnect-user', { name: 'Reconnect User' });
  await p.openChat(page, server, token);
  const openText = (await page.locator('#conn-status').textContent()).trim();
  assert.ok(/[a-z]{3,}/i.test(openText), `#conn-status says the state in words: "${openText}"`);
  await p.chatOnce(page, 'First message before the drop');
  const sid = await p.sessionId(page);
  assert.match(sid || '', /^[0-9a-f]{32}$/);

  await server.stop();
  await page.locator('#conn-status[data-state="reconnecting"]').waitFor({ state: 'attached', timeout: 10000 });
  const lostText = (await page.locator('#conn-status').textContent()).trim();
  assert.ok(/[a-z]{3,}/i.test(lostText) && lostText !== openText, `#conn-status words change: "${openText}" → "${lostText}"`);

  await server.restart();
  await page.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached', timeout: 20000 });
  await p.chatOnce(page, 'Second message after the reconnect');
  assert.equal(await p.sessionId(page), sid, 'body[data-session-id] is unchanged');
  assert.equal(await p.msgText(p.doneReplies(page).last()), 'Second message after the reconnect');

  // An abrupt end (SIGKILL: no close frame at all) is survived the same way.
  await server.kill();
  await page.locator('#conn-status[data-state="reconnecting"]').waitFor({ state: 'attached', timeout: 10000 });
  await server.restart();
  await page.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached', timeout: 20000 });
  await p.chatOnce(page, 'Third message after a crash');
  assert.equal(await p.sessionId(page), sid, 'body[data-session-id] is still unchanged');
  assert.equal(await p.msgText(p.doneReplies(page).last()), 'Third message after a crash');
  assert.deepEqual(
    (await p.messages(page, '#messages')).filter(([sender]) => sender === 'user').map(([, text]) => text),
    ['First message before the drop', 'Second message after the reconnect', 'Third message after a crash'],
    'the conversation stays on the page across reconnects',
  );

  const stored = await server.api('GET', `/sessions/${sid}`, token);
  assert.equal(stored.status, 200, stored.text);
  assert.deepEqual(
    stored.json.messages.map((m) => [m.sender, m.content]),
    [
      ['user', 'First message before the drop'],
      ['ai', 'First message before the drop'],
      ['user', 'Second message after the reconnect'],
      ['ai', 'Second message after the reconnect'],
      ['user', 'Third message after a crash'],
      ['ai', 'Third message after a crash'],
    ],
  );
}));
