'use strict';
// Help request: `#help-button` sends a help request; the page shows the confirmation and the
// alert reaches the webhook (ALERT_WEBHOOK_URL on a loopback recorder) with the session's id.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

let browser;
let server;
let hook;

test.before(async () => {
  hook = await h.webhookRecorder();
  server = await h.startServer({ env: { ALERT_WEBHOOK_URL: `${hook.url}/alerts` } });
  browser = await h.launchBrowser();
});
test.after(h.cleanup);

test('help: #help-button shows the confirmation and alerts the admins', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  await p.openChat(page, server, server.token('help-user', { name: 'Help User' }));
  await p.chatOnce(page, 'I am stuck');
  const sid = await p.sessionId(page);

  await page.locator('#help-button').click();
  await page.getByText(/Help request sent/i).first().waitFor({ timeout: 5000 });
  assert.equal(await p.shown(page, '#error-banner'), false, 'no error shown');

  const alert = await h.waitFor(() => hook.received.find((r) => r.body && r.body.event === 'help_request'), 5000, 'the webhook alert');
  assert.equal(alert.method, 'POST');
  assert.equal(alert.body.session_id, sid);
  assert.equal(alert.body.user_id, 'help-user');
}));
