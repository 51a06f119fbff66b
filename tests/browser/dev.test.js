'use strict';
// `serve --dev`: the printed `Chat page:` URL opens a working chat, and a page opened without a
// token offers `#token-form` to paste one. Outside dev mode the form stays hidden.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

let browser;
let dev;
let normal;

test.before(async () => {
  dev = await h.startServer({ dev: true });
  normal = await h.startServer();
  browser = await h.launchBrowser();
});
test.after(h.cleanup);

/** The value printed after `label` in the dev banner. */
function banner(label) {
  const line = dev.stdout.find((l) => l.startsWith(label));
  assert.ok(line, `the dev banner has "${label}": ${JSON.stringify(dev.stdout)}`);
  return line.slice(label.length).trim();
}

test('dev: the printed chat URL works; without a token the page takes a pasted one', h.withServerLog(() => dev, async () => {
  const chatUrl = banner('Chat page:');
  assert.ok(chatUrl.startsWith(dev.url('/chat?token=')), `Chat page: ${chatUrl}`);
  const page = await h.newPage(browser);
  await page.goto(chatUrl);
  await page.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached' });
  assert.equal(await p.shown(page, '#token-form'), false, 'no paste form when the URL has a token');
  await p.chatOnce(page, 'Hello dev mode');
  assert.equal(await p.msgText(p.doneReplies(page).last()), 'Hello dev mode');

  const userToken = new URL(chatUrl).searchParams.get('token');
  const fresh = await h.newPage(browser);
  await fresh.goto(dev.url('/chat'));
  await fresh.locator('#token-form').waitFor({ state: 'visible' });
  await fresh.getByLabel(/token/i).fill(userToken);
  await fresh.locator('#token-submit').click();
  await fresh.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached' });
  await fresh.locator('#token-form').waitFor({ state: 'hidden' });
  await p.chatOnce(fresh, 'Pasted token works');
  assert.equal(await p.msgText(p.doneReplies(fresh).last()), 'Pasted token works');
}));

test('dev: outside dev mode a page without a token offers no paste form and does not connect', h.withServerLog(() => normal, async () => {
  const page = await h.newPage(browser);
  await page.goto(normal.url('/chat'));
  await page.waitForTimeout(1000);
  assert.equal(await p.shown(page, '#token-form'), false, '#token-form stays hidden');
  assert.notEqual(await page.locator('#conn-status').getAttribute('data-state'), 'open', 'no connection without a token');
  const told = (await page.locator('body').innerText()).toLowerCase();
  assert.ok(/token|sign/.test(told), `the page says why it cannot chat: ${told.slice(0, 300)}`);
}));
