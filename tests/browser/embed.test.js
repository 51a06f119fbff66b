'use strict';
// Embedding: a portal page on another origin (a loopback server on another port) embeds
// `{P}/chat` in an iframe and answers the page's postMessage handshake
// (`{"type":"request_token"}` → `{"type":"token","token":…}`). With FRAME_ANCESTORS naming the
// portal the chat works inside the frame; without it the browser blocks the frame.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

let browser;
let portal;
let allowed; // FRAME_ANCESTORS = the portal's origin
let refused; // FRAME_ANCESTORS unset

/** The portal: `/?src=<chat url>&token=<jwt>` embeds the chat and hands it the token on request. */
async function startPortal() {
  return h.listen((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const src = url.searchParams.get('src') || '';
    const token = url.searchParams.get('token') || '';
    const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>Portal</title>
<script>
  window.received = [];
  const chatOrigin = new URL(${JSON.stringify(src)}).origin;
  window.addEventListener('message', (event) => {
    if (event.origin !== chatOrigin) return;
    let data = event.data;
    if (typeof data === 'string') { try { data = JSON.parse(data); } catch (_) {} }
    window.received.push(data);
    if (data && data.type === 'request_token') {
      event.source.postMessage({ type: 'token', token: ${JSON.stringify(token)} }, chatOrigin);
    }
  });
</script></head>
<body><h1>Portal</h1>
<iframe id="chat" title="Chat" src="${src.replace(/"/g, '&quot;')}" width="420" height="640"></iframe>
</body></html>`;
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(html);
  });
}

test.before(async () => {
  portal = await startPortal();
  allowed = await h.startServer({ env: { FRAME_ANCESTORS: portal.url } });
  refused = await h.startServer();
  browser = await h.launchBrowser();
});
test.after(h.cleanup);

function portalUrl(server, token) {
  const q = new URLSearchParams({ src: server.url('/chat'), token });
  return `${portal.url}/?${q}`;
}

test('embed: with FRAME_ANCESTORS the chat works in an iframe and gets its token by postMessage', h.withServerLog(() => allowed, async () => {
  const page = await h.newPage(browser);
  await page.goto(portalUrl(allowed, allowed.token('embedded-user', { name: 'Embedded' })));
  const frame = page.frameLocator('#chat');
  await frame.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached', timeout: 10000 });
  const received = await page.evaluate(() => window.received);
  assert.ok(received.some((m) => m && m.type === 'request_token'), `the chat asked its parent for a token: ${JSON.stringify(received)}`);

  await frame.locator('#message-input').fill('Hello from inside a frame');
  await frame.locator('#send-button').click();
  await frame.locator('#messages .msg[data-sender="ai"][data-streaming="false"]').first().waitFor({ timeout: 10000 });
  assert.equal(await p.msgText(frame.locator('#messages .msg[data-sender="ai"]').first()), 'Hello from inside a frame');
}));

test('embed: without FRAME_ANCESTORS the browser refuses to show the chat in a frame', h.withServerLog(() => refused, async () => {
  const page = await h.newPage(browser);
  const response = await page.request.get(refused.url('/chat'));
  const csp = response.headers()['content-security-policy'] || '';
  assert.match(csp, /frame-ancestors 'none'/, `the page forbids framing: ${csp}`);

  await page.goto(portalUrl(refused, refused.token('blocked-user')));
  // Give a frame every chance to load and ask for its token.
  await page.waitForTimeout(2000);
  const received = await page.evaluate(() => window.received);
  assert.deepEqual(received, [], 'the blocked frame never ran the chat script');
  const frame = page.frames().find((f) => f !== page.mainFrame());
  assert.ok(frame, 'the iframe exists');
  assert.equal(await frame.locator('#message-input').count(), 0, 'the chat is not shown in the frame');
}));
