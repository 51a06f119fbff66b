'use strict';
// Rate limit (RATE_LIMIT=2 per RATE_LIMIT_WINDOW=6s): the third message shows `#error-banner`
// (role=alert) in words with `#retry-countdown` counting down whole seconds; `#send-button` is
// disabled until the countdown ends, then sending works again.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

const WINDOW_S = 6;
// The limiter releases a bucket's events together (core/src/rate/mod.rs: a wait is less than one
// bucket, W / 20, longer than an exact sliding log's), so a third message sent within 0.3 s of the
// first may wait up to 6.3 s, which the page shows rounded up.
const MAX_WAIT_S = Math.ceil(WINDOW_S + WINDOW_S / 20);

let browser;
let server;

test.before(async () => {
  server = await h.startServer({ env: { RATE_LIMIT: '2', RATE_LIMIT_WINDOW: `${WINDOW_S}s` } });
  browser = await h.launchBrowser();
});
test.after(h.cleanup);

test('rate limit: the third message shows a countdown and send stays disabled until it ends', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  await p.openChat(page, server, server.token('limited-user'));
  await p.chatOnce(page, 'one');
  await p.chatOnce(page, 'two');
  await p.send(page, 'three');

  const banner = page.locator('#error-banner');
  await banner.waitFor({ state: 'visible', timeout: 5000 });
  assert.equal(await banner.getAttribute('role'), 'alert');
  const words = (await banner.textContent()).trim();
  assert.ok(/[a-z]{3,}.*[a-z]{3,}/i.test(words), `the banner explains in words: "${words}"`);
  const countdown = page.locator('#retry-countdown');
  await countdown.waitFor({ state: 'visible' });
  const first = Number((await countdown.textContent()).trim());
  assert.ok(Number.isInteger(first) && first >= 1 && first <= MAX_WAIT_S, `countdown starts at whole seconds ≤ ${MAX_WAIT_S}: ${first}`);
  assert.ok(await page.locator('#send-button').isDisabled(), 'send is disabled while counting down');

  await page.waitForTimeout(1300);
  const later = Number((await countdown.textContent()).trim());
  assert.ok(Number.isInteger(later) && later < first, `the countdown goes down: ${first} → ${later}`);
  assert.ok(await page.locator('#send-button').isDisabled(), 'send is still disabled');

  // The countdown ends: send is enabled again and works.
  await page.waitForFunction(() => !document.getElementById('send-button').disabled, null, { timeout: (WINDOW_S + 3) * 1000 });
  assert.equal(await countdown.isVisible().catch(() => false), false, 'the countdown is gone when it ends');
  const replies = await p.doneReplies(page).count();
  await p.send(page, 'four');
  await p.waitReplies(page, replies + 1);
  assert.equal(await p.msgText(p.doneReplies(page).last()), 'four');
}));
