'use strict';
// Attach (issue 17 item 5): `#attach-button` uploads the chosen file to {P}/upload and sends a
// `file_upload` frame with the returned signed URL; the image is shown in the conversation (loaded
// from that URL: its natural size is the uploaded PNG's), and after a reload the stored message
// still shows it; an administrator opening the session in the console sees it too. A refused file
// (executable bytes named .png) shows the server's error.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

// A 1×1 PNG.
const PNG = Buffer.from(
  '89504e470d0a1a0a0000000d4948445200000001000000010806000000' +
  '1f15c4890000000d49444154789c63f80f00000101000518d84e0000000049454e44ae426082', 'hex');

let browser;
let server;
h.serverAndBrowser((started) => ({ server, browser } = started));

test('attach: an image is uploaded, sent as file_upload and shown, also after a reload', h.withServerLog(() => server, async () => {
  const page = await h.newPage(browser);
  await p.openChat(page, server, server.token('attach-user'));
  await p.chatOnce(page, 'Here comes a picture');

  await page.locator('#file-input').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: PNG });
  const image = page.locator('#messages img.attachment-image');
  await image.first().waitFor({ timeout: 5000 });
  await h.waitFor(() => image.first().evaluate((img) => img.complete && img.naturalWidth === 1), 5000, 'the image loads');
  const src = await image.first().getAttribute('src');
  assert.match(src, /\/files\/[0-9a-f]{32}\?expires=\d+&sig=[0-9a-f]{64}$/);
  assert.equal(await p.shown(page, '#error-banner'), false, 'no error shown');

  await page.reload();
  await image.first().waitFor({ timeout: 5000 });
  await h.waitFor(() => image.first().evaluate((img) => img.complete && img.naturalWidth === 1), 5000, 'the image loads after a reload');

  const admin = await h.newPage(browser);
  await admin.goto(server.pageUrl('/console', server.adminToken('admin-1', 'Jane Admin')));
  await admin.locator('#search-form').waitFor();
  await admin.locator('#f-user-id').fill('attach-user');
  await admin.locator('#search-button').click();
  const sid = await p.sessionId(page);
  await p.waitRows(admin, '#admin-sessions', (ids) => ids.includes(sid), `[${sid}]`);
  await admin.locator(`#admin-sessions tr.session-row[data-session-id="${sid}"] .open-session`).click();
  const seen = admin.locator('#admin-messages img.attachment-image');
  await seen.first().waitFor({ timeout: 5000 });
  await h.waitFor(() => seen.first().evaluate((img) => img.complete && img.naturalWidth === 1), 5000, 'the console shows the image');

  await page.locator('#file-input').setInputFiles({ name: 'evil.png', mimeType: 'image/png', buffer: Buffer.from('MZ\x90\x00\x03\x00', 'latin1') });
  await page.locator('#error-banner').waitFor({ state: 'visible', timeout: 5000 });
  assert.match(await page.locator('#error-text').innerText(), /not allowed/i);
}));
