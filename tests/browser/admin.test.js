'use strict';
// The admin console (`{P}/console`): takeover and two-way chat between a user's browser context
// and an admin's (a held session cannot be taken by another admin); search with filters, sorting
// and paging; metrics cards and the chart.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

const TABLE = '#admin-sessions';

let browser;
let server; // takeover
let searchServer; // search and metrics, with a known set of sessions

test.before(async () => {
  server = await h.startServer();
  searchServer = await h.startServer();
  browser = await h.launchBrowser();
});
test.after(h.cleanup);

/** Opens the console as an admin and waits for the search form. */
async function openConsole(page, srv, name = 'Jane Admin', id = 'admin-1') {
  await page.goto(srv.pageUrl('/console', srv.adminToken(id, name)));
  await page.locator('#search-form').waitFor();
}

/** Sets the filters given (by element id without `#`), submits, waits for `pred` on the row ids. */
async function search(page, fields, pred, what) {
  for (const [id, value] of Object.entries(fields)) {
    const el = page.locator(`#${id}`);
    const tag = await el.evaluate((e) => e.tagName);
    if (tag === 'SELECT') await el.selectOption(String(value));
    else await el.fill(String(value));
  }
  await page.locator('#search-button').click();
  return p.waitRows(page, TABLE, pred, what);
}

test('admin: takeover, then the admin and the user chat both ways; leave hands the session back', h.withServerLog(() => server, async () => {
  const user = await h.newPage(browser);
  await p.openChat(user, server, server.token('assisted-user', { name: 'Assisted User' }));
  await p.chatOnce(user, 'I need a human');
  const sid = await p.sessionId(user);
  assert.equal(await p.shown(user, '#assist-banner'), false, 'no assist banner before the takeover');

  const admin = await h.newPage(browser);
  await openConsole(admin, server, 'Jane Admin');
  assert.equal(await p.shown(admin, '#takeover-panel'), false, '#takeover-panel is hidden before a takeover');
  await search(admin, { 'f-user-id': 'assisted-user' }, (ids) => ids.length === 1 && ids[0] === sid, `[${sid}]`);
  await admin.locator(`${TABLE} tr.session-row[data-session-id="${sid}"] .takeover`).click();
  await admin.locator('#takeover-panel').waitFor({ state: 'visible' });

  const banner = user.locator('#assist-banner');
  await banner.waitFor({ state: 'visible', timeout: 5000 });
  assert.ok((await banner.textContent()).includes('Jane Admin'), `the banner names the admin: ${await banner.textContent()}`);

  // Admin → user.
  await admin.locator('#admin-input').fill('Hello, this is Jane. How can I help?');
  await admin.locator('#admin-send').click();
  const fromAdmin = user.locator('#messages .msg[data-sender="admin"]');
  await fromAdmin.first().waitFor({ timeout: 5000 });
  assert.equal(await p.msgText(fromAdmin.last()), 'Hello, this is Jane. How can I help?');

  // User → admin (and, while assisted, the AI stays quiet).
  const repliesBefore = await p.doneReplies(user).count();
  await p.send(user, 'My invoice is wrong');
  const fromUser = admin.locator('#admin-messages .msg[data-sender="user"]', { hasText: 'My invoice is wrong' });
  await fromUser.first().waitFor({ timeout: 5000 });
  assert.equal(await p.msgText(fromUser.last()), 'My invoice is wrong');
  await user.waitForTimeout(500);
  assert.equal(await p.doneReplies(user).count(), repliesBefore, 'no AI reply while an admin assists');
  assert.equal(await p.shown(admin, '#admin-error'), false, 'no admin error');

  // A second admin cannot take the assisted session over: the row says who holds it and its
  // "Take over" is disabled (issue 15); the panel's one too.
  const other = await h.newPage(browser);
  await openConsole(other, server, 'Bob Admin', 'admin-2');
  await search(other, { 'f-user-id': 'assisted-user' }, (ids) => ids.length === 1 && ids[0] === sid, `[${sid}]`);
  const otherRow = other.locator(`${TABLE} tr.session-row[data-session-id="${sid}"]`);
  assert.equal((await otherRow.locator('.assisted-by').textContent()).trim(), 'Jane Admin', 'the row names who assists');
  assert.ok(await otherRow.locator('.takeover').isDisabled(), 'Take over is disabled while Jane holds the session');
  assert.equal(await p.shown(other, '#takeover-panel'), false, 'no takeover panel for the other admin');
  await otherRow.locator('.open-session').click();
  await other.locator('#takeover-panel').waitFor({ state: 'visible' });
  assert.ok(await other.locator('#panel-takeover').isDisabled(), "the panel's Take over is disabled too");
  assert.match(await other.locator('#conversation-state').textContent(), /assisted by Jane Admin/);
  assert.equal(await p.shown(other, '#admin-error'), false, 'no error for the other admin');

  // Leave: the banner disappears and the AI answers again.
  await admin.locator('#leave-button').click();
  await banner.waitFor({ state: 'hidden', timeout: 5000 });
  await p.chatOnce(user, 'Back to the bot');
  assert.equal(await p.msgText(p.doneReplies(user).last()), 'Back to the bot');

  const stored = await server.api('GET', `/sessions/${sid}`, server.token('assisted-user'));
  const senders = stored.json.messages.map((m) => [m.sender, m.content]);
  assert.deepEqual(senders, [
    ['user', 'I need a human'],
    ['ai', 'I need a human'],
    ['admin', 'Hello, this is Jane. How can I help?'],
    ['user', 'My invoice is wrong'],
    ['user', 'Back to the bot'],
    ['ai', 'Back to the bot'],
  ]);
}));

test('admin: search filters, sorts and pages; the metrics cards and the chart match the sessions', h.withServerLog(() => searchServer, async () => {
  const srv = searchServer;
  const helper = await h.newPage(browser);
  const ids = {};
  ids.alice = await h.wsChat(helper, srv, srv.token('alice'), ['Alice asks one thing', 'and another']);
  ids.bob = await h.wsChat(helper, srv, srv.token('bob'), ['Bob says hi']);
  ids.carol = await h.wsChat(helper, srv, srv.token('carol'), ['Carol is done']);
  const ended = await srv.api('POST', `/sessions/${ids.carol}/end`, srv.token('carol'));
  assert.equal(ended.status, 200, ended.text);

  const page = await h.newPage(browser);
  await openConsole(page, srv);
  const all = [ids.alice, ids.bob, ids.carol];
  const sameSet = (a, b) => a.length === b.length && a.every((x) => b.includes(x));

  await search(page, {}, (got) => sameSet(got, all), 'all three sessions');
  await search(page, { 'f-user-id': 'bob' }, (got) => sameSet(got, [ids.bob]), 'only bob');
  await search(page, { 'f-user-id': '', 'f-status': 'ended' }, (got) => sameSet(got, [ids.carol]), 'only the ended one');
  await search(page, { 'f-status': 'active' }, (got) => sameSet(got, [ids.alice, ids.bob]), 'the two active ones');
  await search(page, { 'f-status': '', 'f-admin-assisted': 'true' }, (got) => got.length === 0, 'none (no takeover)');
  await search(page, { 'f-admin-assisted': '', 'f-sort-by': 'user_id', 'f-sort-order': 'asc' },
    (got) => JSON.stringify(got) === JSON.stringify([ids.alice, ids.bob, ids.carol]), 'alice, bob, carol');
  await search(page, { 'f-sort-order': 'desc' },
    (got) => JSON.stringify(got) === JSON.stringify([ids.carol, ids.bob, ids.alice]), 'carol, bob, alice');
  await search(page, { 'f-sort-by': 'message_count', 'f-sort-order': 'desc' }, (got) => got[0] === ids.alice, 'alice first (4 messages)');

  // Start-time bounds (datetime-local, in the browser's zone: UTC, see newPage).
  const local = (ms) => new Date(ms).toISOString().slice(0, 16);
  const now = Date.now();
  await search(page, { 'f-sort-by': 'start_time', 'f-sort-order': 'desc', 'f-from': local(now + 86400000) }, (got) => got.length === 0, 'none (from tomorrow)');
  await search(page, { 'f-from': local(now - 3600000), 'f-to': local(now + 3600000) }, (got) => sameSet(got, all), 'all three (within the hour)');
  await search(page, { 'f-from': '', 'f-to': local(now - 86400000) }, (got) => got.length === 0, 'none (until yesterday)');
  await search(page, { 'f-to': '' }, (got) => sameSet(got, all), 'all three again');

  // Paging with a small limit.
  await search(page, { 'f-sort-by': 'user_id', 'f-sort-order': 'asc', 'f-limit': '2' },
    (got) => JSON.stringify(got) === JSON.stringify([ids.alice, ids.bob]), 'page 1: alice, bob');
  const info1 = (await page.locator('#page-info').textContent()).trim();
  assert.ok(await page.locator('#next-page').isEnabled(), '#next-page is enabled on a full page');
  await page.locator('#next-page').click();
  await p.waitRows(page, TABLE, (got) => JSON.stringify(got) === JSON.stringify([ids.carol]), 'page 2: carol');
  const info2 = (await page.locator('#page-info').textContent()).trim();
  assert.notEqual(info2, info1, `#page-info changes between pages ("${info1}" → "${info2}")`);
  assert.ok(/\d/.test(info2), `#page-info has a number: "${info2}"`);
  await page.locator('#prev-page').click();
  await p.waitRows(page, TABLE, (got) => JSON.stringify(got) === JSON.stringify([ids.alice, ids.bob]), 'back to page 1');
  assert.ok(await page.locator('#prev-page').isDisabled(), '#prev-page is disabled on the first page');

  // The metrics cards show the API's numbers, and those match what was created.
  const api = await srv.api('GET', '/admin/metrics', srv.adminToken('admin-1', 'Jane Admin'));
  assert.equal(api.status, 200, api.text);
  const m = api.json;
  assert.equal(m.total_sessions, 3);
  assert.equal(m.active_sessions, 2);
  assert.equal(m.admin_assisted_count, 0);
  assert.ok(m.total_tokens > 0, 'tokens were counted');
  const card = async (id) => {
    const loc = page.locator(`#${id}`);
    await h.waitFor(async () => /\d/.test(await loc.textContent()), 5000, `#${id} to show a number`);
    return (await loc.textContent()).trim();
  };
  for (const [id, value] of [
    ['metric-total-sessions', m.total_sessions],
    ['metric-active-sessions', m.active_sessions],
    ['metric-total-tokens', m.total_tokens],
    ['metric-avg-response', m.avg_response_time],
    ['metric-max-response', m.max_response_time],
    ['metric-admin-assisted', m.admin_assisted_count],
    ['metric-max-concurrent', m.max_concurrent],
  ]) {
    const text = await card(id);
    assert.equal(Number(text.replace(/,/g, '')), value, `#${id} shows ${value}: "${text}"`);
  }
  const avgConcurrent = Number((await card('metric-avg-concurrent')).replace(/,/g, ''));
  assert.ok(Math.abs(avgConcurrent - m.avg_concurrent) < 0.5, `#metric-avg-concurrent ≈ ${m.avg_concurrent}: ${avgConcurrent}`);

  assert.deepEqual(await p.unnamedControls(page), [], 'every visible control of the console has an accessible name');

  const bars = page.locator('#sessions-chart svg rect.bar');
  await bars.first().waitFor({ state: 'attached' });
  const heights = await bars.evaluateAll((rs) => rs.map((r) => Number(r.getAttribute('height')) || r.getBBox().height));
  assert.ok(heights.length >= 1, 'the chart has bars');
  assert.ok(heights.some((v) => v > 0), `some bar is taller than zero: ${JSON.stringify(heights)}`);
}));
