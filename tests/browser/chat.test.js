'use strict';
// The chat page (`{P}/chat`): a streamed reply from a slow scripted upstream, markdown rendered
// but HTML shown as text, the model selector, keyboard order and accessible names.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

const STREAMED = ['Streaming ', 'reply ', 'in ', 'four parts.'];
const MARKDOWN = [
  '**Bold words** and `inline code`\n\n',
  '- first item\n- second item\n\n',
  'Model HTML: <img src=x onerror=alert(3)> <script>alert(4)</script> ',
  '[a link](javascript:alert(5)) end',
];

let browser;
let server; // one scripted provider
let twoModels; // two echo providers
let upstream;

test.before(async () => {
  upstream = await h.scriptedUpstream((text) =>
    /markdown/.test(text) ? { chunks: MARKDOWN, delayMs: 40 } : { chunks: STREAMED, delayMs: 300 },
  );
  server = await h.startServer({
    providers: [{ id: 'scripted', name: 'Scripted model', type: 'openai', endpoint: upstream.endpoint }],
  });
  twoModels = await h.startServer({
    providers: [
      { id: 'echo-a', name: 'Echo A' },
      { id: 'echo-b', name: 'Echo B' },
    ],
  });
  browser = await h.launchBrowser();
});
test.after(h.cleanup);

test('chat: a reply streams visibly (data-streaming="true", growing text) and ends with the upstream\'s text', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  const token = server.token('stream-user', { name: 'Stream User' });
  await p.openChat(page, server, token);
  assert.ok(await p.shown(page, '#composer'), 'the composer is shown');
  assert.equal(await p.shown(page, '#model-select'), false, '#model-select is hidden with one model');
  assert.equal(await p.shown(page, '#error-banner'), false, 'no error banner at start');

  // Record every text an AI message shows while it is marked as streaming.
  await page.evaluate(() => {
    window.__streamed = [];
    window.__loadingSeen = false;
    const loading = document.getElementById('loading');
    new MutationObserver(() => {
      if (loading.checkVisibility()) window.__loadingSeen = true;
    }).observe(document.body, { subtree: true, attributes: true, childList: true });
    new MutationObserver(() => {
      for (const el of document.querySelectorAll('#messages .msg[data-sender="ai"][data-streaming="true"]')) {
        const part = el.querySelector('.content, .msg-content, .msg-text, .text, .body');
        const text = (part || el).textContent.trim();
        if (window.__streamed[window.__streamed.length - 1] !== text) window.__streamed.push(text);
      }
    }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true, attributes: true });
  });

  await p.send(page, 'Please stream something');
  await page.locator('#messages .msg[data-sender="user"]').first().waitFor();
  const first = page.locator('#messages .msg').first();
  assert.equal(await first.getAttribute('data-sender'), 'user');
  assert.equal(await p.msgText(first), 'Please stream something');
  assert.equal(await page.locator('#message-input').inputValue(), '', 'the input is cleared after sending');
  await page.locator('#messages .msg[data-sender="ai"][data-streaming="true"]').waitFor({ timeout: 5000 });
  await p.waitReplies(page, 1);

  const streamed = await page.evaluate(() => window.__streamed);
  const partial = streamed.filter((t) => t.length > 0 && t.length < STREAMED.join('').length);
  assert.ok(partial.length >= 2, `at least two partial texts were shown while streaming: ${JSON.stringify(streamed)}`);
  const reply = page.locator('#messages .msg[data-sender="ai"]');
  assert.equal(await reply.count(), 1);
  assert.equal(await reply.getAttribute('data-streaming'), 'false');
  assert.equal(await p.msgText(reply), STREAMED.join(''));
  assert.equal(await page.evaluate(() => window.__loadingSeen), true, '#loading was shown while waiting for the reply');
  assert.equal(await p.shown(page, '#loading'), false, '#loading is hidden once the reply is done');

  const sid = await p.sessionId(page);
  assert.match(sid || '', /^[0-9a-f]{32}$/, 'body[data-session-id] is the server\'s session id');
  const stored = await server.api('GET', `/sessions/${sid}`, token);
  assert.equal(stored.status, 200, stored.text);
  assert.deepEqual(
    stored.json.messages.map((m) => [m.sender, m.content]),
    [
      ['user', 'Please stream something'],
      ['ai', STREAMED.join('')],
    ],
  );
  assert.deepEqual(page.records.pageErrors, [], 'no script error on the page');

  // The link to the user's sessions carries the sign-in along.
  await page.locator('#my-sessions-link').click();
  await page.waitForURL(/\/my-sessions(\?|$)/);
  await p.waitRows(page, '#sessions-table', (ids) => ids.length === 1 && ids[0] === sid, `[${sid}]`);
}));

test('chat: markdown from the model is formatted; HTML in model and user messages is shown as text', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  await p.openChat(page, server, server.token('markdown-user'));
  const userText = 'markdown please <img src=x onerror=alert(1)> <script>alert(2)</script>';
  await p.chatOnce(page, userText);

  const user = page.locator('#messages .msg[data-sender="user"]');
  assert.equal(await p.msgText(user), userText, 'the user\'s HTML is shown as typed');
  const ai = page.locator('#messages .msg[data-sender="ai"]').last();
  assert.equal(await ai.locator('strong, b').first().textContent(), 'Bold words', '**bold** is rendered');
  assert.equal(await ai.locator('code').first().textContent(), 'inline code', '`code` is rendered');
  assert.deepEqual(await ai.locator('li').allTextContents(), ['first item', 'second item'], 'the list is rendered');
  const aiText = await ai.textContent();
  assert.ok(aiText.includes('<img src=x onerror=alert(3)>'), `the model's <img> is text: ${aiText}`);
  assert.ok(aiText.includes('<script>alert(4)</script>'), `the model's <script> is text: ${aiText}`);
  assert.equal(await page.locator('#messages img, #messages script, #messages iframe').count(), 0, 'no element made from message HTML');
  assert.equal(await page.locator('#messages [onerror], #messages a[href^="javascript:" i]').count(), 0, 'no handler, no javascript: link');
  await page.waitForTimeout(300);
  assert.deepEqual(page.records.dialogs, [], 'no dialog fired');
}));

test('chat: with two models #model-select offers both and the chosen one answers', h.withServerLog(() => twoModels, async () => {
  const page = await h.newPage(browser);
  const token = twoModels.token('model-user');
  await p.openChat(page, twoModels, token);
  const select = page.locator('#model-select');
  await select.waitFor({ state: 'visible' });
  const options = await select.locator('option').evaluateAll((os) => os.map((o) => [o.value, o.textContent.trim()]));
  assert.deepEqual(options.map(([v]) => v).sort(), ['echo-a', 'echo-b']);
  assert.ok(options.find(([v, label]) => v === 'echo-b' && label.includes('Echo B')), `labels: ${JSON.stringify(options)}`);
  await select.selectOption('echo-b');
  await p.chatOnce(page, 'Which model answers?');
  assert.equal(await p.msgText(p.doneReplies(page).last()), 'Which model answers?');
  const sid = await p.sessionId(page);
  const stored = await twoModels.api('GET', `/sessions/${sid}`, token);
  assert.equal(stored.status, 200, stored.text);
  assert.equal(stored.json.model_id, 'echo-b', 'the session uses the selected model');
}));

test('chat: Tab reaches the message input then the send button; controls have accessible names', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  await p.openChat(page, server, server.token('keyboard-user'));
  // Keyboard: from the top of the page, Tab until the send button (at most 40 steps).
  await page.locator('body').focus();
  const order = [];
  for (let i = 0; i < 40; i += 1) {
    await page.keyboard.press('Tab');
    const id = await page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.tagName));
    order.push(id);
    if (id === 'send-button') break;
  }
  const input = order.indexOf('message-input');
  const sendAt = order.indexOf('send-button');
  assert.ok(input >= 0, `Tab reaches #message-input: ${order.join(' → ')}`);
  assert.ok(sendAt > input, `Tab reaches #send-button after the input: ${order.join(' → ')}`);

  // Typing and Enter-free sending by keyboard: focus the input, type, Tab to send, press Enter.
  await page.locator('#message-input').focus();
  await page.keyboard.type('Sent with the keyboard');
  await page.locator('#send-button').focus();
  await page.keyboard.press('Enter');
  await p.waitReplies(page, 1);

  // Accessible names: the controls are found by label and role.
  assert.equal(await page.getByRole('textbox', { name: /message/i }).getAttribute('id'), 'message-input');
  assert.equal(await page.getByRole('button', { name: /send/i }).getAttribute('id'), 'send-button');
  assert.equal(await page.getByRole('button', { name: /help/i }).getAttribute('id'), 'help-button');
  assert.equal(await page.getByRole('log').getAttribute('id'), 'messages');
  // Every visible control has a name.
  const unnamed = await p.unnamedControls(page);
  assert.deepEqual(unnamed, [], 'every visible control has an accessible name');
}));

test('chat: after the session is ended elsewhere, the next message starts a new session, which the page adopts and announces', h.withServerLog(() => twoModels, async () => {
  const page = await h.newPage(browser);
  const token = twoModels.token('ended-user');
  await p.openChat(page, twoModels, token);
  await p.chatOnce(page, 'Before the end');
  const first = await p.sessionId(page);
  assert.ok(first, 'the page knows its session');

  // Ended from "My sessions" (or by an admin): final, never revived.
  const ended = await twoModels.api('POST', `/sessions/${first}/end`, token);
  assert.equal(ended.status, 200);

  await p.chatOnce(page, 'After the end');
  const second = await p.sessionId(page);
  assert.ok(second && second !== first, `a new session: ${first} → ${second}`);
  const shown = await p.messages(page, '#messages');
  const notice = shown.findIndex(([sender, text]) => sender === 'system' && /conversation was ended/i.test(text));
  const before = shown.findIndex(([sender, text]) => sender === 'user' && text === 'Before the end');
  assert.ok(notice >= 0, `the page says a new conversation started: ${JSON.stringify(shown)}`);
  assert.ok(before < notice, `the notice follows the ended conversation: ${JSON.stringify(shown)}`);
  const stored = await twoModels.api('GET', `/sessions/${first}`, token);
  assert.equal(stored.json.messages.length, 2, 'the ended session was not continued');
}));
