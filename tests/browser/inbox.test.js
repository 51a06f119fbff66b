'use strict';
// The support inbox and the chat controls (issue 15), in a user's and an admin's browser
// contexts: a help request reaches an open console live, within 2 s (the admin event stream; no
// reload, no click), the
// admin reads the earlier messages, takes over, both chat, the admin hands back and the AI
// answers again; "Request help" is honest; New chat; an ended session; copy a reply; revoke a
// share link; the share view's labels; the index page; dark mode and 375 px screenshots; axe-core
// on every page (no serious or critical violation).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const h = require('./harness');
const p = require('./pages');

const TABLE = '#admin-sessions';
// The bound for a help request to show in an open console.
const LIVE = 2000;
// A generous bound for the other live updates of the list (takeovers, leaves, unread counts).
const SOON = 5000;

let browser;
let server;
h.serverAndBrowser((started) => ({ server, browser } = started));

/** Asserts no serious or critical axe-core violation on `page`, named `name` in the message. */
async function assertAccessible(page, name) {
  const violations = await h.accessibilityViolations(page);
  assert.deepEqual(violations, [], `${name}: serious or critical accessibility violations`);
}

/** Opens the console as admin `id` and waits for its first list. */
async function openConsole(page, id, name) {
  await page.goto(server.pageUrl('/console', server.adminToken(id, name)));
  await page.locator('#refresh-status').filter({ hasText: /Updated/ }).waitFor();
  await page.locator('#refresh-status[data-live="live"]').waitFor();
}

test('inbox: a help request appears live within 2 s; the admin reads, takes over, chats, hands back; the AI answers again', h.withServerLog(() => server, async () => {
  const admin = await h.newPage(browser);
  await openConsole(admin, 'inbox-admin', 'Ines Admin');

  const user = await h.newPage(browser);
  await p.openChat(user, server, server.token('inbox-user', { name: 'Inbox User' }));
  await p.chatOnce(user, 'My parcel is late');
  await p.chatOnce(user, 'It was due on Monday');
  const sid = await p.sessionId(user);

  // The console learns of the help request without a reload or a click, within 2 s: flagged,
  // on top.
  const row = admin.locator(`${TABLE} tr.session-row[data-session-id="${sid}"]`);
  await user.locator('#help-button').click();
  await row.locator('.help-badge').waitFor({ timeout: LIVE });
  // A second press says the request is already with the team.
  await user.getByText(/Help request sent/i).first().waitFor();
  await user.locator('#help-button').click();
  await user.getByText(/already with the support team/i).first().waitFor();
  assert.equal(await user.getByText(/Help request sent/i).count(), 1, 'a second press does not say "sent" again');

  assert.equal((await p.rowIds(admin, TABLE))[0], sid, 'the help request is the first row');
  assert.equal(await row.getAttribute('data-help'), 'true');

  // Open: the whole transcript so far.
  await row.locator('.open-session').click();
  await admin.locator('#takeover-panel').waitFor({ state: 'visible' });
  const earlier = [
    ['user', 'My parcel is late'],
    ['ai', 'My parcel is late'],
    ['user', 'It was due on Monday'],
    ['ai', 'It was due on Monday'],
  ];
  await admin.locator('#admin-messages .msg').nth(3).waitFor();
  assert.deepEqual(await p.messages(admin, '#takeover-panel #admin-messages'), earlier);
  assert.equal(await p.shown(admin, '#admin-composer'), false, 'no composer before the takeover');
  await assertAccessible(admin, 'console with a conversation open');

  // Take over: the transcript stays, the live conversation is added.
  await admin.locator('#panel-takeover').click();
  await admin.locator('#admin-composer').waitFor({ state: 'visible' });
  await admin.locator('#admin-conn[data-state="open"]').waitFor();
  const shown = await p.messages(admin, '#admin-messages');
  assert.deepEqual(shown.filter(([s]) => s !== 'system'), earlier, 'the earlier messages are kept');
  await user.locator('#assist-banner').waitFor({ state: 'visible' });
  assert.match(await user.locator('#assist-banner').textContent(), /Ines Admin/);
  assert.equal(await p.shown(user, '#help-button'), false, 'no help button while an admin assists');
  // The row says who assists and no longer offers a takeover.
  await h.waitFor(async () => (await row.locator('.assisted-by').textContent()).trim() === 'Ines Admin', SOON, 'the row to name the admin');
  assert.ok(await row.locator('.takeover').isDisabled(), 'Take over is disabled while held');

  // Both ways.
  await admin.locator('#admin-input').fill('Hi, Ines here. Let me check.');
  await admin.locator('#admin-send').click();
  const fromAdmin = user.locator('#messages .msg[data-sender="admin"]');
  await fromAdmin.first().waitFor();
  assert.equal(await p.msgText(fromAdmin.last()), 'Hi, Ines here. Let me check.');
  await p.send(user, 'Thank you!');
  await admin.locator('#admin-messages .msg[data-sender="user"]', { hasText: 'Thank you!' }).waitFor();

  // Hand back: the user sees it, and the AI answers the next message.
  await admin.locator('#leave-button').click();
  await user.locator('#assist-banner').waitFor({ state: 'hidden' });
  assert.equal(await p.shown(user, '#help-button'), true, 'the help button is back');
  await p.chatOnce(user, 'Back to the assistant');
  assert.equal(await p.msgText(p.doneReplies(user).last()), 'Back to the assistant');
  assert.equal(await p.shown(admin, '#admin-composer'), false, 'the admin composer is gone after the hand-back');
  await h.waitFor(async () => !(await row.locator('.takeover').isDisabled()), SOON, 'Take over to be offered again');
  assert.equal(await p.shown(admin, '#admin-error'), false, 'no console error');
  assert.deepEqual(admin.records.pageErrors, [], 'no script error in the console');
  assert.deepEqual(user.records.pageErrors, [], 'no script error in the chat');

  const stored = await server.api('GET', `/admin/sessions/${sid}`, server.adminToken('inbox-admin', 'Ines Admin'));
  assert.equal(stored.status, 200, stored.text);
  assert.equal(stored.json.admin_assisted, true, 'assisted once, and it stays so');
  assert.equal(stored.json.assisting_admin_name, undefined, 'nobody assists now');
  assert.deepEqual(stored.json.messages.map((m) => [m.sender, m.content]).slice(4), [
    ['admin', 'Hi, Ines here. Let me check.'],
    ['user', 'Thank you!'],
    ['user', 'Back to the assistant'],
    ['ai', 'Back to the assistant'],
  ]);
}));

test('inbox: messages stored after the console first showed a session count as unread until it is opened', h.withServerLog(() => server, async () => {
  const token = server.token('unread-user');
  const helper = await h.newPage(browser);
  const sid = await h.wsChat(helper, server, token, ['First message']);
  const admin = await h.newPage(browser);
  await openConsole(admin, 'unread-admin', 'Una Admin');
  const row = admin.locator(`${TABLE} tr.session-row[data-session-id="${sid}"]`);
  await row.waitFor();
  assert.equal(await row.locator('.unread-badge').count(), 0, 'nothing unread at first sight');

  // The user's active session goes on: one more exchange (two stored messages).
  assert.equal(await h.wsChat(helper, server, token, ['Second message']), sid, 'the same session');
  await row.locator('.unread-badge', { hasText: '2 new' }).waitFor({ timeout: SOON });
  await row.locator('.open-session').click();
  await admin.locator('#admin-messages .msg').nth(3).waitFor();
  assert.equal(await row.locator('.unread-badge').count(), 0, 'opened: read');
}));

test('chat: New chat ends the session and starts another; an ended session shows as ended; replies can be copied', h.withServerLog(() => server, async () => {
  const token = server.token('newchat-user');
  const page = await h.newPage(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
  await p.openChat(page, server, token);
  await p.chatOnce(page, 'Copy **this** answer');
  const first = await p.sessionId(page);

  // Copy: the reply's text (its markdown source) lands on the clipboard.
  const reply = p.doneReplies(page).last();
  await reply.locator('.copy-reply').click();
  await reply.locator('.copy-reply', { hasText: 'Copied' }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), 'Copy **this** answer');

  // New chat: confirmed (the harness accepts the dialog), the session ended on the server.
  await page.locator('#new-chat').click();
  await h.waitFor(async () => (await page.locator('#messages .msg:not([data-sender="system"])').count()) === 0, 5000, 'the conversation to be cleared');
  assert.deepEqual(page.records.dialogs.map((d) => d.type), ['confirm'], 'New chat asks first');
  const list = await server.api('GET', '/sessions', token);
  assert.equal(list.json.sessions.find((s) => s.session_id === first).is_active, false, 'the old session is ended');
  await p.chatOnce(page, 'A fresh start');
  const second = await p.sessionId(page);
  assert.notEqual(second, first, 'a new session');
  const said = (await p.messages(page, '#messages')).filter(([s]) => s === 'user').map(([, t]) => t);
  assert.deepEqual(said, ['A fresh start'], 'the old conversation is gone from the page');

  // Ended elsewhere, then reloaded: shown as ended, with "Start a new chat" instead of a composer.
  const ended = await server.api('POST', `/sessions/${second}/end`, token);
  assert.equal(ended.status, 200, ended.text);
  await page.reload();
  await page.locator('#ended-bar').waitFor({ state: 'visible' });
  assert.equal(await p.shown(page, '#composer'), false, 'no live composer on an ended session');
  assert.equal(await p.msgText(page.locator('#messages .msg[data-sender="user"]').last()), 'A fresh start');
  await assertAccessible(page, 'chat (ended)');
  await page.locator('#start-new-chat').click();
  await page.locator('#composer').waitFor({ state: 'visible' });
  assert.equal(await p.shown(page, '#ended-bar'), false);
  await p.chatOnce(page, 'Third session');
  assert.ok(![first, second].includes(await p.sessionId(page)), 'yet another session');
  assert.deepEqual(page.records.pageErrors, [], 'no script error');
}));

test('my sessions: End asks first; a share link can be revoked (the old link stops working) and shared anew; the share view says "User"', h.withServerLog(() => server, async () => {
  const token = server.token('revoke-user');
  const helper = await h.newPage(browser);
  const sid = await h.wsChat(helper, server, token, ['Shared question']);

  const page = await h.newPage(browser);
  await page.goto(server.pageUrl('/my-sessions', token));
  await p.waitRows(page, '#sessions-table', (ids) => ids.length === 1, 'one row');
  const row = page.locator(`#sessions-table tr.session-row[data-session-id="${sid}"]`);
  await row.locator('.share-session').click();
  const link = page.locator('#share-link');
  await h.waitFor(async () => (await link.inputValue()).length > 0, 5000, 'the share link');
  const url = await link.inputValue();

  const viewer = await h.newPage(browser);
  await viewer.goto(url);
  await viewer.locator('#transcript .msg').nth(1).waitFor();
  assert.equal((await viewer.locator('#transcript .msg[data-sender="user"] .who').first().textContent()).trim().startsWith('User'), true, 'the owner is "User" on the share view');
  assert.equal(await viewer.getByText(/^You/).count(), 0, 'nobody is "You" on the share view');
  await assertAccessible(viewer, 'share view');

  await page.locator('#revoke-share').click();
  await page.locator('#share-status').filter({ hasText: /revoked/i }).waitFor();
  assert.equal(await link.inputValue(), '', 'the revoked link is no longer shown');
  await viewer.reload();
  await viewer.locator('#error-banner').waitFor({ state: 'visible' });
  assert.equal(await viewer.locator('#transcript .msg').count(), 0, 'the old link shows nothing');

  await row.locator('.share-session').click();
  await h.waitFor(async () => (await link.inputValue()).length > 0, 5000, 'a new share link');
  const fresh = await link.inputValue();
  assert.notEqual(fresh, url, 'sharing again makes a new link');
  await viewer.goto(fresh);
  await viewer.locator('#transcript .msg').nth(1).waitFor();

  // End asks first, then ends.
  await row.locator('.end-session').click();
  await h.waitFor(async () => /ended/i.test(await row.locator('.status').textContent()), 5000, 'status "ended"');
  assert.deepEqual(page.records.dialogs.map((d) => d.type), ['confirm'], 'End asks first');
  await assertAccessible(page, 'my sessions');
}));

test('pages: the index links every page; axe-core finds no serious or critical violation on any page', h.withServerLog(() => server, async () => {
  const token = server.token('axe-user');
  const helper = await h.newPage(browser);
  const sid = await h.wsChat(helper, server, token, ['Hello **there**', 'Second line']);
  const shared = await server.api('POST', `/sessions/${sid}/share`, token);

  const index = await h.newPage(browser);
  await index.goto(server.pageUrl('/', token));
  const links = await index.locator('a.page-link').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  assert.deepEqual(links.map((l) => l.split('?')[0]), ['chat', 'my-sessions', 'console']);
  assert.ok(links.every((l) => l.endsWith(`?token=${encodeURIComponent(token)}`)), `links carry the token: ${links}`);
  await assertAccessible(index, 'index');
  await index.locator('a.page-link', { hasText: 'Chat' }).click();
  await index.locator('#conn-status[data-state="open"]').waitFor({ state: 'attached' });

  const pages = {
    chat: async (page) => {
      await p.openChat(page, server, token);
      await p.chatOnce(page, 'Some **markdown** and `code`');
    },
    'my-sessions': async (page) => {
      await page.goto(server.pageUrl('/my-sessions', token));
      await p.waitRows(page, '#sessions-table', (ids) => ids.length >= 1, 'a row');
    },
    console: async (page) => {
      await openConsole(page, 'axe-admin', 'Axe Admin');
      await page.locator(`${TABLE} tr.session-row .open-session`).first().click();
      await page.locator('#admin-messages .msg').first().waitFor();
    },
    view: async (page) => {
      await page.goto(server.url(`/view/${shared.json.share_token}`));
      await page.locator('#transcript .msg').first().waitFor();
    },
  };
  for (const [scheme, suffix] of [['light', ''], ['dark', '-dark']]) {
    for (const [name, open] of Object.entries(pages)) {
      const page = await h.newPage(browser, { colorScheme: scheme });
      await open(page);
      await assertAccessible(page, `${name} (${scheme})`);
      if (suffix) await h.screenshot(page, `${name}${suffix}`);
      await page.context().close();
    }
  }
  // Dark mode follows the system setting.
  const dark = await h.newPage(browser, { colorScheme: 'dark' });
  await p.openChat(dark, server, token);
  await p.chatOnce(dark, 'What does **dark mode** look like?');
  const background = await dark.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  const [r, g, b] = background.match(/\d+/g).map(Number);
  assert.ok(r + g + b < 150, `a dark background in dark mode: ${background}`);
  assert.ok(fs.statSync(await h.screenshot(dark, 'chat-dark-mode')).size > 1000);
}));

test('layout: the inbox list is the first thing at 1280×800; at 375 px no page overflows (index, console with a conversation); screenshots saved', h.withServerLog(() => server, async () => {
  const token = server.token('layout-inbox-user');
  const helper = await h.newPage(browser);
  await h.wsChat(helper, server, token, ['A question with a long word: Pneumonoultramicroscopicsilicovolcanoconiosis_0123456789']);

  const desktop = await h.newPage(browser, { viewport: h.DESKTOP });
  await openConsole(desktop, 'layout-admin', 'Layout Admin');
  await p.waitRows(desktop, TABLE, (ids) => ids.length >= 1, 'a row');
  await p.assertInViewport(desktop, `${TABLE} tbody tr.session-row:first-child`);
  await desktop.locator(`${TABLE} tr.session-row .open-session`).first().click();
  await desktop.locator('#admin-messages .msg').first().waitFor();
  await p.assertInViewport(desktop, '#takeover-panel .section-head');
  await h.screenshot(desktop, 'console-inbox-desktop');

  const problems = [];
  for (const [name, open] of Object.entries({
    index: (page) => page.goto(server.pageUrl('/', token)),
    'console-inbox': async (page) => {
      await openConsole(page, 'layout-admin', 'Layout Admin');
      await page.locator(`${TABLE} tr.session-row .open-session`).first().click();
      await page.locator('#admin-messages .msg').first().waitFor();
    },
  })) {
    const page = await h.newPage(browser, { viewport: h.PHONE });
    await open(page);
    await page.waitForTimeout(150); // let the layout settle
    await h.screenshot(page, `${name}-phone`);
    const { scrollWidth, clientWidth } = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      clientWidth: document.documentElement.clientWidth,
    }));
    if (scrollWidth > clientWidth) problems.push(`${name}: ${scrollWidth}px wide in ${clientWidth}px`);
    await page.context().close();
  }
  assert.deepEqual(problems, [], 'horizontal overflow at 375 px');
}));
