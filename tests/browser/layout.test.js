'use strict';
// Layout and screenshots: each page (chat, my sessions, console, shared view) at 1280×800 and
// 375×740, saved as `<page>-desktop.png` / `<page>-phone.png` in the artifacts directory
// (target/browser-artifacts, or BROWSER_ARTIFACTS). At phone width no page overflows
// horizontally and the chat's composer is on screen.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const h = require('./harness');
const p = require('./pages');

let browser;
let server;
let userToken;
let shareToken;

test.before(async () => {
  server = await h.startServer({
    providers: [
      { id: 'echo', name: 'Echo' },
      { id: 'echo-long', name: 'Echo (second model)' },
    ],
  });
  browser = await h.launchBrowser();
  userToken = server.token('layout-user', { name: 'Layout User' });
  const helper = await h.newPage(browser);
  const sid = await h.wsChat(helper, server, userToken, [
    'How do I reset my password? I tried the link in the email twice.',
    'A long word that must wrap: Pneumonoultramicroscopicsilicovolcanoconiosis_and_a_very_long_identifier_without_spaces_0123456789',
  ]);
  await h.wsChat(helper, server, server.token('other-user'), ['Another user, another session.']);
  const shared = await server.api('POST', `/sessions/${sid}/share`, userToken);
  assert.equal(shared.status, 200, shared.text);
  shareToken = shared.json.share_token;
  await helper.context().close();
});
test.after(h.cleanup);

/** Each page, opened and filled the way a person would see it. */
const PAGES = {
  chat: async (page) => {
    await p.openChat(page, server, userToken);
    await p.chatOnce(page, 'Hello! What does this page look like on **my** screen?');
  },
  'my-sessions': async (page) => {
    await page.goto(server.pageUrl('/my-sessions', userToken));
    await p.waitRows(page, '#sessions-table', (ids) => ids.length >= 1, 'a row');
    await page.locator('#sessions-table tbody tr.session-row .open-session').first().click();
    await page.locator('#transcript .msg').first().waitFor();
  },
  console: async (page) => {
    await page.goto(server.pageUrl('/console', server.adminToken('layout-admin', 'Layout Admin')));
    await page.locator('#search-button').click();
    await p.waitRows(page, '#admin-sessions', (ids) => ids.length >= 2, 'two rows');
    await page.locator('#sessions-chart svg').waitFor({ state: 'attached' });
  },
  view: async (page) => {
    await page.goto(server.url(`/view/${shareToken}`));
    await page.locator('#transcript .msg').first().waitFor();
  },
};

for (const [width, viewport] of [
  ['desktop', h.DESKTOP],
  ['phone', h.PHONE],
]) {
  test(`layout: every page at ${viewport.width}×${viewport.height} (${width})${width === 'phone' ? ': no horizontal overflow, composer on screen' : ''}; screenshots saved`, h.withServerLog(() => server, async () => {
    const problems = [];
    for (const [name, open] of Object.entries(PAGES)) {
      const page = await h.newPage(browser, { viewport });
      await open(page);
      await page.waitForTimeout(150); // let the layout settle (fonts, late rows)
      const file = await h.screenshot(page, `${name}-${width}`);
      assert.ok(fs.statSync(file).size > 1000, `${file} is a real picture`);
      if (width === 'phone') {
        for (const check of [
          () => p.assertNoHorizontalOverflow(page, name),
          ...(name === 'chat'
            ? [() => p.assertInViewport(page, '#message-input'), () => p.assertInViewport(page, '#send-button')]
            : []),
        ]) {
          try {
            await check();
          } catch (error) {
            problems.push(error.message);
          }
        }
      }
      await page.context().close();
    }
    assert.deepEqual(problems, [], 'layout problems');
  }));
}
