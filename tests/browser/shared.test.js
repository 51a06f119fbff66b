'use strict';
// The pieces the pages share (assets/common.js), exercised in a real page: the streamed-reply
// helper (one bubble per reply, rendering coalesced to animation frames, the final text shown
// at once, a cut reply ended so the next one gets a fresh bubble even after the log is
// cleared), following the end of a log only when the reader is near it, sending stamped frames,
// and message → bubble. Then the console's paging keeps the page size of the results shown.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');
const p = require('./pages');

const TABLE = '#admin-sessions';

let browser;
let server;
h.serverAndBrowser((started) => ({ server, browser } = started));

/** A page of the server's that loads common.js: the view page of a share that does not exist. */
async function sharedPage() {
  const page = await h.newPage(browser);
  await page.goto(server.url('/view/no-such-share'));
  await page.locator('#error-banner').waitFor({ state: 'visible' });
  return page;
}

test('shared: reply stream, follow-the-end scrolling, sendFrame and bubbleOf behave as documented', h.withServerLog(() => server, async () => {
  const page = await sharedPage();

  const out = await page.evaluate(async () => {
    const m = await import(new URL('../assets/common.js', location.href).href);
    const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
    const bodyText = (node) => node.querySelector('.body').textContent;
    const atEnd = (log) => log.scrollHeight - log.scrollTop - log.clientHeight <= 1;
    const result = {};

    const log = document.createElement('div');
    log.className = 'messages';
    log.style.cssText = 'height: 150px; max-height: 150px; min-height: 0; overflow-y: auto;';
    document.body.append(log);
    const started = [];
    const replies = m.createReplyStream(log, { onStreamStart: (node) => started.push(node) });
    const chunk = (content, done = false) =>
      replies.onFrame({ type: 'ai_response', content, metadata: { streaming: 'true', ...(done ? { done: 'true' } : {}) } });

    // Chunks accumulate at once but render on the next animation frame.
    chunk('Hello ');
    chunk('**wor');
    const first = log.querySelector('.msg[data-sender="ai"]');
    result.bubblesWhileStreaming = log.querySelectorAll('.msg').length;
    result.sourceBeforeFrame = m.bubbleSource(first);
    result.renderedBeforeFrame = bodyText(first);
    await nextFrame();
    result.renderedAfterFrame = bodyText(first);
    result.streamingMid = first.dataset.streaming;

    // A reply cut short (socket closed, panel left): finish() shows its text and ends it.
    chunk('ld**');
    replies.finish();
    result.cut = { streaming: first.dataset.streaming, text: bodyText(first), bold: first.querySelector('strong')?.textContent };

    // The log is cleared (a new takeover): the next reply is a new bubble in the log, finished
    // and fully rendered as soon as its last chunk arrives (no frame awaited).
    log.replaceChildren();
    chunk('Next ');
    chunk('reply', true);
    const second = log.querySelector('.msg[data-sender="ai"]');
    result.second = {
      inLog: Boolean(second && second.isConnected && second.parentNode === log),
      fresh: second !== first,
      streaming: second?.dataset.streaming,
      text: second ? bodyText(second) : null,
    };
    result.started = started.length;
    // A reply that is not streamed is a finished bubble of its own.
    replies.onFrame({ type: 'ai_response', content: 'Whole reply', metadata: {} });
    result.afterWhole = Array.from(log.querySelectorAll('.msg'), (n) => [n.dataset.streaming, bodyText(n)]);

    // Following the end: a reader at the end (or within ~40 px of it) follows new content; one
    // scrolled further up stays where they are.
    log.replaceChildren();
    for (let i = 0; i < 30; i += 1) m.appendToLog(log, m.messageNode('user', `line ${i}`));
    result.overflows = log.scrollHeight > log.clientHeight + 100;
    result.followedAtEnd = atEnd(log);
    log.scrollTop = 0;
    m.appendToLog(log, m.messageNode('user', 'while scrolled up'));
    result.stayedUp = log.scrollTop;
    log.scrollTop = log.scrollHeight - log.clientHeight - 20;
    m.appendToLog(log, m.messageNode('user', 'while near the end'));
    result.followedNearEnd = atEnd(log);
    log.scrollTop = 0;
    m.appendToLog(log, m.messageNode('user', 'my own message'), { own: true });
    result.ownFollowed = atEnd(log);
    chunk('one\n\ntwo\n\nthree\n\nfour');
    await nextFrame();
    result.followedStreamChunk = atEnd(log);
    log.scrollTop = 0;
    chunk('\n\nfive\n\nsix\n\nseven', true);
    result.streamLeftReaderUp = log.scrollTop;

    // sendFrame: only on an open socket, stamped with the time of sending.
    const sent = [];
    const fake = (readyState) => ({ readyState, send: (text) => sent.push(JSON.parse(text)) });
    result.sendOpen = m.sendFrame(fake(WebSocket.OPEN), m.bindFrame('s-1', 'admin'));
    result.sendClosed = m.sendFrame(fake(WebSocket.CLOSED), { type: 'user_message' });
    result.sendConnecting = m.sendFrame(fake(WebSocket.CONNECTING), { type: 'user_message' });
    result.sendNone = m.sendFrame(null, { type: 'user_message' });
    result.sent = sent;

    // bubbleOf: one rendering of stored messages, attachments included.
    result.bubbles = [
      m.bubbleOf({ sender: 'user', content: 'See this', file_url: 'https://example.com/a.png' }),
      m.bubbleOf({ sender: 'ai', content: 'Plain' }),
      m.bubbleOf({ sender: 'robot', content: 'Odd sender' }),
      m.bubbleOf({ sender: 'admin', file_url: 'https://example.com/b.ogg' }),
    ];
    const transcript = document.createElement('div');
    m.renderTranscript(transcript, [{ sender: 'user', content: 'See this', file_url: 'https://example.com/a.png' }]);
    result.transcriptLink = transcript.querySelector('.msg[data-sender="user"] a')?.getAttribute('href') ?? null;
    log.remove();
    return result;
  });

  assert.equal(out.bubblesWhileStreaming, 1, 'one bubble for the streamed chunks');
  assert.equal(out.sourceBeforeFrame, 'Hello **wor', 'the chunks are accumulated at once');
  assert.equal(out.renderedBeforeFrame, '', 'rendering waits for the next animation frame');
  assert.equal(out.renderedAfterFrame, 'Hello **wor', 'the accumulated text is rendered on the next frame');
  assert.equal(out.streamingMid, 'true');
  assert.deepEqual(out.cut, { streaming: 'false', text: 'Hello world', bold: 'world' }, 'finish() renders the cut reply and ends it');
  assert.deepEqual(out.second, { inLog: true, fresh: true, streaming: 'false', text: 'Next reply' },
    'after a cut reply and a cleared log, the next reply is a new, visible bubble with its final text');
  assert.equal(out.started, 2, 'onStreamStart is told of each streamed bubble');
  assert.deepEqual(out.afterWhole, [['false', 'Next reply'], ['false', 'Whole reply']]);

  assert.ok(out.overflows, 'the test log overflows');
  assert.ok(out.followedAtEnd, 'a log read at its end follows new messages');
  assert.equal(out.stayedUp, 0, 'a reader scrolled up is not moved by a new message');
  assert.ok(out.followedNearEnd, 'a reader within 40 px of the end follows new messages');
  assert.ok(out.ownFollowed, 'the reader\'s own message scrolls to the end even from further up');
  assert.ok(out.followedStreamChunk, 'a streamed chunk is followed when the reader is at the end');
  assert.equal(out.streamLeftReaderUp, 0, 'a streamed reply does not move a reader scrolled up');

  assert.equal(out.sendOpen, true, 'sendFrame sends on an open socket');
  assert.equal(out.sendClosed, false, 'nothing is sent on a closed socket');
  assert.equal(out.sendConnecting, false, 'nothing is sent on a socket still connecting');
  assert.equal(out.sendNone, false, 'nothing is sent without a socket');
  assert.equal(out.sent.length, 1, `one frame sent: ${JSON.stringify(out.sent)}`);
  const [bind] = out.sent;
  assert.deepEqual({ ...bind, timestamp: undefined }, { type: 'typing_indicator', session_id: 's-1', sender: 'admin', timestamp: undefined });
  assert.ok(Math.abs(Date.parse(bind.timestamp) - Date.now()) < 60000, `the frame is stamped with the time: ${bind.timestamp}`);

  assert.deepEqual(out.bubbles, [
    { sender: 'user', text: 'See this\n\nhttps://example.com/a.png' },
    { sender: 'ai', text: 'Plain' },
    { sender: 'system', text: 'Odd sender' },
    { sender: 'admin', text: 'https://example.com/b.ogg' },
  ]);
  assert.equal(out.transcriptLink, 'https://example.com/a.png', 'a transcript shows the attachment as a link');
  assert.deepEqual(page.records.pageErrors, [], 'no script error on the page');
}));

test('console: Prev/Next keep the page size of the results shown when the limit field is edited', h.withServerLog(() => server, async () => {
  const helper = await h.newPage(browser);
  const ids = {};
  for (const user of ['pager-a', 'pager-b', 'pager-c']) ids[user] = await h.wsChat(helper, server, server.token(user), [`Hello from ${user}`]);

  // This server has no other sessions (the test above makes none).
  const page = await h.newPage(browser);
  await page.goto(server.pageUrl('/console', server.adminToken('pager-admin', 'Pat Admin')));
  await page.locator('#search-form').waitFor();
  await page.locator('#f-sort-by').selectOption('user_id');
  await page.locator('#f-sort-order').selectOption('asc');
  await page.locator('#f-limit').fill('1');
  await page.locator('#search-button').click();
  const only = (want) => (got) => JSON.stringify(got) === JSON.stringify(want);
  await p.waitRows(page, TABLE, only([ids['pager-a']]), 'page 1 of size 1: pager-a');

  // The field changes, but no search was submitted: paging keeps the size shown (1).
  await page.locator('#f-limit').fill('2');
  await page.locator('#next-page').click();
  await p.waitRows(page, TABLE, only([ids['pager-b']]), 'page 2 of size 1: pager-b');
  assert.match((await page.locator('#page-info').textContent()).trim(), /^Page 2\b/);
  await page.locator('#next-page').click();
  await p.waitRows(page, TABLE, only([ids['pager-c']]), 'page 3 of size 1: pager-c');
  await page.locator('#prev-page').click();
  await p.waitRows(page, TABLE, only([ids['pager-b']]), 'back to page 2: pager-b');

  // Submitting the search applies the new size from the first page.
  await page.locator('#search-button').click();
  await p.waitRows(page, TABLE, only([ids['pager-a'], ids['pager-b']]), 'page 1 of size 2');
  await page.locator('#next-page').click();
  await p.waitRows(page, TABLE, only([ids['pager-c']]), 'page 2 of size 2: pager-c');
  assert.equal(await p.shown(page, '#admin-error'), false, 'no console error');
  assert.deepEqual(page.records.pageErrors, [], 'no script error on the page');
}));

test('shared: replies of one session streaming at the same time each keep their own bubble', h.withServerLog(() => server, async () => {
  const page = await sharedPage();

  const out = await page.evaluate(async () => {
    const m = await import(new URL('../assets/common.js', location.href).href);
    const log = document.createElement('div');
    log.className = 'messages';
    document.body.append(log);
    const ended = [];
    const replies = m.createReplyStream(log, { onDone: (node) => ended.push(m.bubbleSource(node)) });
    const chunk = (reply, seq, content, extra = {}) =>
      replies.onFrame({
        type: 'ai_response', content, metadata: { streaming: 'true', reply_id: reply, seq: String(seq), ...extra },
      });
    const texts = () => Array.from(log.querySelectorAll('.msg[data-sender="ai"]'), (n) =>
      [m.bubbleSource(n), n.dataset.streaming, n.dataset.interrupted ?? null]);
    const result = {};

    // Two replies interleaved chunk by chunk (two devices of one user, or back-to-back messages).
    chunk('aaaa', 1, 'One ');
    chunk('bbbb', 1, 'Uno ');
    chunk('aaaa', 2, 'two ');
    chunk('bbbb', 2, 'dos ');
    chunk('aaaa', 2, 'two '); // a replayed chunk of A: skipped
    result.interleaved = texts();
    result.resumeAt = replies.resumePoint();
    // A ends; B goes on in its bubble.
    chunk('aaaa', 3, 'three.', { done: 'true' });
    result.aDone = { texts: texts(), streaming: replies.streaming() };
    chunk('aaaa', 4, ' late'); // a late frame of the ended reply: no bubble of its own
    chunk('bbbb', 3, 'tres');
    result.afterLate = texts();
    // A third reply starts; the socket drops: the newest (C) is kept to resume, B is cut.
    chunk('cccc', 1, 'Eins ');
    result.resumeNewest = replies.resumePoint();
    replies.finish({ interrupted: true, except: 'cccc' });
    chunk('bbbb', 5, 'cinco'); // B's frames after the gap: not shown with a hole
    chunk('cccc', 2, 'zwei', { done: 'true' });
    result.afterDrop = texts();
    // A failed reply's named error ends that reply only.
    chunk('dddd', 1, 'Un ');
    chunk('eeee', 1, 'Ein ');
    replies.finish({ replyId: 'dddd', interrupted: true });
    result.afterNamedError = { streaming: replies.streaming(), texts: texts().slice(3) };
    chunk('eeee', 2, 'zwei', { done: 'true' });
    result.final = texts();
    result.ended = ended;
    log.remove();
    return result;
  });

  assert.deepEqual(out.interleaved, [['One two ', 'true', null], ['Uno dos ', 'true', null]],
    'interleaved chunks grow their own reply\'s bubble; a replayed chunk is skipped');
  assert.deepEqual(out.resumeAt, { reply_id: 'bbbb', after_seq: '2' }, 'the newest streaming reply is the one to resume');
  assert.deepEqual(out.aDone, {
    texts: [['One two three.', 'false', null], ['Uno dos ', 'true', null]], streaming: true,
  }, 'one reply\'s done ends its bubble only');
  assert.deepEqual(out.afterLate, [['One two three.', 'false', null], ['Uno dos tres', 'true', null]],
    'a late frame of an ended reply starts no bubble');
  assert.deepEqual(out.resumeNewest, { reply_id: 'cccc', after_seq: '1' });
  assert.deepEqual(out.afterDrop, [
    ['One two three.', 'false', null], ['Uno dos tres', 'false', 'true'], ['Eins zwei', 'false', null],
  ], 'the reply cut by the drop is marked interrupted and its later frames are not shown; the resumed one completes');
  assert.deepEqual(out.afterNamedError, { streaming: true, texts: [['Un ', 'false', 'true'], ['Ein ', 'true', null]] },
    'a named error ends its reply only');
  assert.deepEqual(out.final.slice(3), [['Un ', 'false', 'true'], ['Ein zwei', 'false', null]]);
  assert.deepEqual(out.ended, ['One two three.', 'Uno dos tres', 'Eins zwei', 'Un ', 'Ein zwei'], 'onDone is told of each bubble once');
}));
