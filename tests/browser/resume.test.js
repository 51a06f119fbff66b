'use strict';
// Resumable replies on the chat page (issue 14): the page's socket is cut mid-reply (closed from
// page.evaluate); the page reconnects, sends `resume` with the reply id and the last seq it
// showed, and the rest of the reply arrives in the same bubble — the whole text once, no chunk
// twice, one AI bubble. A failed reply's error frame that names another reply (the user's other
// device, on another instance) is shown without cutting the bubble being streamed. A reply of the
// session streaming at the same time on another instance gets a bubble of its own: interleaved
// chunks never mix.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

const CHUNKS = ['Alpha ', 'bravo ', 'charlie ', 'delta ', 'echo ', 'foxtrot ', 'golf ', 'hotel.'];

let browser;
let server;
let upstream;

test.before(async () => {
  upstream = await h.scriptedUpstream(() => ({ chunks: CHUNKS, delayMs: 400 }));
  server = await h.startServer({
    providers: [{ id: 'scripted', name: 'Scripted model', type: 'openai', endpoint: upstream.endpoint }],
  });
  browser = await h.launchBrowser();
});
test.after(h.cleanup);

/** Keeps the page's sockets (`window.__sockets`), what it sends (`window.__sent`) and the last
 *  session a received frame named (`window.__session`) reachable from the test. */
async function trackSockets(page) {
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.__sent = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
        this.addEventListener('message', (e) => {
          const frame = JSON.parse(e.data);
          if (typeof frame.session_id === 'string' && frame.session_id) window.__session = frame.session_id;
        });
      }
      send(data) {
        window.__sent.push(String(data));
        super.send(data);
      }
    };
  });
}

/** Opens the chat page as `token`, asks for the scripted reply and waits until its second chunk
 *  shows; the AI bubbles' locator. */
async function spellUntilBravo(page, token) {
  await p.openChat(page, server, token);
  await p.send(page, 'Spell the alphabet');
  await page.waitForFunction(
    () => /bravo/.test(document.querySelector('#messages .msg[data-sender="ai"]')?.textContent || ''),
    null,
    { timeout: 10000 },
  );
  return page.locator('#messages .msg[data-sender="ai"]');
}

test('resume: a page whose socket drops mid-reply shows the rest of the reply in the same bubble, without duplicates', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  await trackSockets(page);
  const token = server.token('resume-user', { name: 'Resume User' });
  const bubble = await spellUntilBravo(page, token);
  const cutAt = await p.msgText(bubble.first());
  assert.ok(!cutAt.includes('hotel.'), `cut before the end: "${cutAt}"`);
  await page.evaluate(() => window.__sockets[window.__sockets.length - 1].close());

  await p.waitReplies(page, 1, 20000);
  assert.equal(await bubble.count(), 1, 'one AI bubble');
  assert.equal(await p.msgText(bubble.first()), CHUNKS.join('').trim(), 'the whole reply, once');
  const resumes = (await page.evaluate(() => window.__sent))
    .map((t) => JSON.parse(t))
    .filter((f) => f.type === 'resume');
  assert.equal(resumes.length, 1, 'the reconnect resumed the reply');
  assert.match(resumes[0].metadata.reply_id, /^[0-9a-f]+$/);
  assert.ok(Number(resumes[0].metadata.after_seq) >= 2, JSON.stringify(resumes[0]));
}));

test("resume: another reply's named error (the user's other device, on another instance) does not cut the bubble this page streams", h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  await trackSockets(page);
  const token = server.token('two-devices', { name: 'Two Devices' });
  const bubble = await spellUntilBravo(page, token);
  // What another instance relays when the reply of the user's other device times out: the error
  // frame names that reply. It arrives on this page's socket like any frame.
  await page.evaluate(() => {
    const frame = {
      type: 'error', session_id: 'other-device-session', sender: 'ai', timestamp: new Date().toISOString(),
      error: { code: 'LLM_TIMEOUT', message: 'AI service request timed out after 20s', recoverable: true },
      metadata: { reply_id: 'ffffffffffffffffffffffffffffffff', seq: '3' },
    };
    const ws = window.__sockets[window.__sockets.length - 1];
    ws.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(frame) }));
  });
  await page.waitForFunction(() => !document.querySelector('#error-banner').hidden, null, { timeout: 5000 });

  await p.waitReplies(page, 1, 20000);
  assert.equal(await bubble.count(), 1, 'one AI bubble');
  assert.equal(await p.msgText(bubble.first()), CHUNKS.join('').trim(), 'the whole reply, in its bubble');
  assert.equal(await bubble.first().getAttribute('data-interrupted'), null, 'not marked interrupted');
}));

test("resume: a reply of the session streaming at the same time on another instance gets a bubble of its own", h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  await trackSockets(page);
  const token = server.token('two-replies', { name: 'Two Replies' });
  const bubbles = await spellUntilBravo(page, token);
  // What another instance relays while this page's reply streams: the reply to the user's other
  // device, answered there (one instance answers a session's messages in order; two instances
  // can answer at the same time). Its chunks arrive between this reply's, on this page's socket.
  await page.evaluate(async () => {
    const ws = window.__sockets[window.__sockets.length - 1];
    const other = 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee';
    const parts = ['Uno ', 'dos ', 'tres.'];
    for (let i = 0; i <= parts.length; i += 1) {
      const last = i === parts.length;
      const frame = {
        type: 'ai_response', session_id: window.__session, sender: 'ai', timestamp: new Date().toISOString(),
        content: last ? '' : parts[i],
        metadata: { streaming: 'true', done: last ? 'true' : 'false', reply_id: other, seq: String(i + 1) },
      };
      ws.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(frame) }));
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  });

  await p.waitReplies(page, 2, 20000);
  const shown = [];
  for (let i = 0; i < await bubbles.count(); i += 1) {
    shown.push([await p.msgText(bubbles.nth(i)), await bubbles.nth(i).getAttribute('data-interrupted')]);
  }
  assert.deepEqual(shown, [[CHUNKS.join('').trim(), null], ['Uno dos tres.', null]],
    'each reply whole in its own bubble, neither cut');
}));
