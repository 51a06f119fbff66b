'use strict';
// My sessions (`{P}/my-sessions`): the list shows the user's sessions with name, time, message
// count and status; open shows the transcript read-only; share gives a link whose page
// (`{P}/view/<token>`) shows the transcript without any token; end changes the status.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

const TABLE = '#sessions-table';

let browser;
let server;
h.serverAndBrowser((started) => ({ server, browser } = started));

test('my sessions: list, open read-only, share (link works without a token), end', h.withServerLog(() => server, async () => {
  const token = server.token('lister', { name: 'Lister' });
  const helper = await h.newPage(browser);
  const sid = await h.wsChat(helper, server, token, ['Hello there. How are you?', 'Second question']);
  // Another user's session must not be listed.
  const other = await h.wsChat(helper, server, server.token('someone-else'), ['Not yours']);

  const page = await h.newPage(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
  await page.goto(server.pageUrl('/my-sessions', token));
  await p.waitRows(page, TABLE, (ids) => ids.length === 1, 'one row');
  assert.deepEqual(await p.rowIds(page, TABLE), [sid], `only the user's session (not ${other})`);
  const row = page.locator(`${TABLE} tbody tr.session-row[data-session-id="${sid}"]`);
  assert.equal((await row.locator('.name').textContent()).trim(), 'Hello there.');
  assert.equal((await row.locator('.count').textContent()).trim(), '4');
  assert.match((await row.locator('.status').textContent()).trim(), /active/i);
  assert.ok(/\d/.test(await row.locator('.time').textContent()), 'the time cell shows a time');

  assert.deepEqual(await p.unnamedControls(page), [], 'every visible control has an accessible name');

  // Open: the transcript, read-only.
  await row.locator('.open-session').click();
  await page.locator('#transcript .msg').nth(3).waitFor();
  assert.deepEqual(await p.messages(page, '#transcript'), [
    ['user', 'Hello there. How are you?'],
    ['ai', 'Hello there. How are you?'],
    ['user', 'Second question'],
    ['ai', 'Second question'],
  ]);
  assert.equal(await page.locator('#transcript textarea, #transcript input:not([type=hidden]), #transcript [contenteditable="true"]').count(), 0, 'no input in the transcript');
  assert.equal(await page.locator('#transcript button').count(), 0, 'no send button in the transcript');

  // Share: a link to the view page; copying says "Copied".
  await row.locator('.share-session').click();
  const link = page.locator('#share-link');
  await h.waitFor(async () => (await link.inputValue()).length > 0, 5000, '#share-link to be filled');
  const url = await link.inputValue();
  assert.match(url, new RegExp(`^http://127\\.0\\.0\\.1:${server.port}${h.PREFIX}/view/[A-Za-z0-9_-]{16,}$`));
  assert.ok(await link.evaluate((e) => e.readOnly), '#share-link is read-only');
  const shareToken = url.slice(url.lastIndexOf('/') + 1);
  const listed = await server.api('GET', '/sessions', token);
  assert.equal(listed.json.sessions[0].share_token, shareToken, 'the link carries the stored share token');
  await page.locator('#copy-share').click();
  await h.waitFor(async () => /Copied/.test(await page.locator('#share-status').textContent()), 5000, '#share-status "Copied"');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), url, 'the clipboard holds the link');

  // The link in a fresh context, without any token.
  const viewer = await h.newPage(browser);
  await viewer.goto(url);
  await viewer.locator('#transcript .msg').nth(3).waitFor();
  assert.deepEqual(await p.messages(viewer, '#transcript'), [
    ['user', 'Hello there. How are you?'],
    ['ai', 'Hello there. How are you?'],
    ['user', 'Second question'],
    ['ai', 'Second question'],
  ]);
  assert.equal((await viewer.locator('#session-name').textContent()).trim(), 'Hello there.');
  assert.equal(await viewer.locator('textarea, input:not([type=hidden])').count(), 0, 'the view page has no input');

  // End: the status changes (here and on the server).
  await row.locator('.end-session').click();
  await h.waitFor(async () => /ended/i.test(await row.locator('.status').textContent()), 5000, 'status "ended"');
  const after = await server.api('GET', '/sessions', token);
  assert.equal(after.json.sessions[0].is_active, false, 'the server ended the session');
}));
