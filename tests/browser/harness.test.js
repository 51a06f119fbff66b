'use strict';
// The harness itself: the real binary starts, minted tokens are accepted (user and admin), the
// browser reaches the server and chats over its WebSocket, and the scripted upstream streams
// through an `openai` provider.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

let browser;
let server;
let upstream;

test.before(async () => {
  upstream = await h.scriptedUpstream((text) => ({ chunks: ['up:', text], delayMs: 20 }));
  server = await h.startServer({
    providers: [
      { id: 'echo', name: 'Echo' },
      { id: 'scripted', name: 'Scripted', type: 'openai', endpoint: upstream.endpoint },
    ],
  });
  browser = await h.launchBrowser();
});
test.after(h.cleanup);

test('harness: the browser loads a JSON route and minted tokens are accepted', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  const response = await page.goto(server.url('/healthz'));
  assert.equal(response.status(), 200);
  const body = JSON.parse(await page.locator('body').innerText());
  assert.equal(body.status, 'healthy');

  const user = server.token('harness-user', { name: 'Harness User' });
  const list = await server.api('GET', '/sessions', user);
  assert.equal(list.status, 200, list.text);
  assert.equal(list.json.user_id, 'harness-user');
  const forbidden = await server.api('GET', '/admin/metrics', user);
  assert.equal(forbidden.status, 403, forbidden.text);
  const metrics = await server.api('GET', '/admin/metrics', server.adminToken('harness-admin', 'Ada'));
  assert.equal(metrics.status, 200, metrics.text);
  const wrong = h.signJwt('another-strong-key-0f9e8d7c6b5a4f3e2d1c0b9a', { user_id: 'x', roles: [] });
  assert.equal((await server.api('GET', '/sessions', wrong)).status, 401);
}));

test('harness: a WebSocket chat from the browser is stored and the scripted upstream streams', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  const user = server.token('harness-chat');
  const session = await h.wsChat(page, server, user, ['hello from the harness']);
  assert.match(session, /^[0-9a-f]{32}$/);
  const stored = await server.api('GET', `/sessions/${session}`, user);
  assert.equal(stored.status, 200, stored.text);
  assert.deepEqual(
    stored.json.messages.map((m) => [m.sender, m.content]),
    [
      ['user', 'hello from the harness'],
      ['ai', 'hello from the harness'],
    ],
  );

  // The scripted provider: select it, chat, and see the upstream's reply stored.
  await page.goto(server.url('/healthz'));
  const reply = await page.evaluate(
    async ({ wsUrl }) => {
      const ws = new WebSocket(wsUrl);
      const frames = [];
      await new Promise((resolve) => (ws.onopen = resolve));
      const done = new Promise((resolve) => {
        ws.onmessage = (e) => {
          const f = JSON.parse(e.data);
          frames.push(f);
          if ((f.type === 'ai_response' && f.metadata && f.metadata.done === 'true') || f.type === 'error') resolve();
        };
      });
      const sid = 'f'.repeat(32);
      ws.send(JSON.stringify({ type: 'model_select', session_id: sid, model_id: 'scripted' }));
      await new Promise((r) => setTimeout(r, 300));
      const session = frames.map((f) => f.session_id).filter(Boolean).pop() || sid;
      ws.send(JSON.stringify({ type: 'user_message', session_id: session, content: 'ping' }));
      await done;
      ws.close();
      return frames
        .filter((f) => f.type === 'ai_response' && f.content)
        .map((f) => f.content)
        .join('');
    },
    { wsUrl: `ws://127.0.0.1:${server.port}${h.PREFIX}/ws?token=${encodeURIComponent(server.token('harness-up'))}` },
  );
  assert.equal(reply, 'up:ping');
  assert.equal(upstream.requests.length, 1);
  assert.equal(upstream.requests[0].stream, true);
}));
