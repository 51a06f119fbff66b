// The chat page: one WebSocket to {P}/ws, streamed replies (each with a copy button), reconnect
// with backoff that resumes the same session, errors in words with a retry countdown, honest help
// requests and the admin "assisted by" banner, "New chat" (ends the session over REST) and an
// ended session shown as ended; Stop (or Escape) while a reply streams sends the `stop` frame, and
// an interrupted reply is marked as such, also after a reload (issue 15). Frames and their order
// are PROTOCOL.md §3. Attach uploads a file (POST {P}/upload) and sends a `file_upload` frame with the
// returned signed URL; images are shown inline (issue 17 item 5).

import {
  $, TokenSource, api, apiBase, appendToLog, backoffDelay, bindFrame, bubbleOf, bubbleSource, copyText, createReplyStream,
  el, isBindReply, isInterrupted, jwtClaims, markInterrupted, keepAtEnd, messageNode, openSocket, pageLink, randomId, sendFrame,
  setBubbleText, showAttachment, isOwnFile, submitOnEnter, wireTokenForm,
} from './common.js';

// The server's answer when the bind names a session that is not this user's (§3.7).
const BIND_FAILED = 'Failed to establish session connection';

const ui = {
  status: $('conn-status'),
  models: $('model-select'),
  modelLabel: $('model-label'),
  messages: $('messages'),
  loading: $('loading'),
  composer: $('composer'),
  input: $('message-input'),
  send: $('send-button'),
  stop: $('stop-button'),
  help: $('help-button'),
  assist: $('assist-banner'),
  error: $('error-banner'),
  errorText: $('error-text'),
  retryWrap: $('retry-wrap'),
  retry: $('retry-countdown'),
  dismiss: $('error-dismiss'),
  mySessions: $('my-sessions-link'),
  newChat: $('new-chat'),
  ended: $('ended-bar'),
  startNew: $('start-new-chat'),
  attach: $('attach-button'),
  file: $('file-input'),
};

const state = {
  ws: null,
  token: '',
  userId: '',
  sessionId: '',
  attempt: 0,
  everOpened: false,
  reconnectTimer: 0,
  reconnectCountdown: 0,
  resumePoint: null, // where a reply cut by a drop continues ({reply_id, after_seq})
  countdownTimer: 0,
  retryTimer: 0,
  historyFor: '', // the session whose stored messages are being fetched ('' when none)
  heldBindError: null, // a bind refusal for historyFor, shown only if the session turns out to exist
  dropped: new Set(), // stored session ids the server did not know for this user (404)
  confirmed: '', // the last session id a server frame carried ('' until the server names one)
  helpOpen: false, // a help request was sent and no administrator has joined since
  replying: false, // a reply is on its way (from its `loading` frame to its end)
  proposed: '', // the id this page made up for a new session (the server names the real one)
};

// AI bubbles that were streamed to this page (possibly only their end, after a reload).
const streamedNodes = new WeakSet();
// The AI replies shown in the conversation (at most one streaming at a time).
const replies = createReplyStream(ui.messages, {
  onStreamStart: (node) => streamedNodes.add(node),
  onDone: addCopyButton,
});

/** Gives a finished reply bubble its "Copy" button (copies the reply's markdown source). */
function addCopyButton(node) {
  if (node.querySelector('.copy-reply')) return;
  const button = el('button', { type: 'button', class: 'copy-reply', 'aria-label': 'Copy this reply' }, 'Copy');
  button.addEventListener('click', async () => {
    const copied = await copyText(bubbleSource(node));
    button.textContent = copied ? 'Copied' : 'Copy failed';
    setTimeout(() => { button.textContent = 'Copy'; }, 2000);
  });
  node.append(el('div', { class: 'msg-actions' }, button));
}

const tokens = new TokenSource(onToken);
const form = wireTokenForm(tokens);

function storageKey() {
  return `chatbox.session.${state.userId || 'anonymous'}`;
}

function adoptSession(id) {
  if (!id || id === state.sessionId) return;
  state.sessionId = id;
  document.body.dataset.sessionId = id;
  try {
    sessionStorage.setItem(storageKey(), id);
  } catch {
    // Storage can be disabled (private modes, some WebViews): the id lives in memory then.
  }
}

/** Forgets the current session (a stored id the server does not know for this user): the next
 *  message starts a new one. */
function forgetSession() {
  if (state.sessionId) state.dropped.add(state.sessionId);
  state.sessionId = '';
  state.confirmed = '';
  delete document.body.dataset.sessionId;
  try {
    sessionStorage.removeItem(storageKey());
  } catch {
    // See adoptSession.
  }
}

/** The user, AI and admin bubbles on the page (notices are not part of the conversation). */
function conversationNodes() {
  return Array.from(ui.messages.children).filter((node) => node.matches?.('.msg:not([data-sender="system"])'));
}

/** Fetches the stored session's messages (§4.2) and shows them before anything already on the
 *  page, when the page shows no conversation yet (after a reload, or a first fetch that failed);
 *  a 404 (unknown, or someone else's) drops the stored id. */
async function loadHistory() {
  const id = state.sessionId;
  if (!id || !state.token || state.historyFor === id || conversationNodes().length > 0) return;
  state.historyFor = id;
  state.heldBindError = null;
  const answer = await api('GET', `/sessions/${encodeURIComponent(id)}`, state.token);
  if (state.historyFor !== id) return; // superseded (another token or session meanwhile)
  state.historyFor = '';
  const held = state.heldBindError;
  state.heldBindError = null;
  if (state.sessionId !== id) return;
  if (answer.ok) {
    const messages = Array.isArray(answer.body?.messages) ? answer.body.messages : [];
    showHistory(messages);
    if (held) showError(held);
    await checkEnded(id);
    return;
  }
  if (answer.status === 404) {
    // Start fresh, unless the conversation already went on in this session on this page.
    if (conversationNodes().length === 0) forgetSession();
    return;
  }
  if (held) showError(held);
  // Other failures (offline, a 401 or 5xx) keep the session: a reconnect tries again.
}

/** Puts the stored `messages` before the page's messages, skipping the ones already shown (a
 *  reply or admin message that arrived over the socket while the history was fetched). */
function showHistory(messages) {
  const stored = messages.map((m) => ({ ...bubbleOf(m), timestamp: m.timestamp }));
  // Match the live bubbles, in order, to the latest stored messages they can be.
  const matched = new Set();
  let from = 0;
  const interrupted = messages.map(isInterrupted);
  for (const node of conversationNodes()) {
    const live = bubbleSource(node);
    const sender = node.dataset.sender;
    const partial = streamedNodes.has(node);
    for (let i = from; i < stored.length; i += 1) {
      const s = stored[i];
      if (s.sender !== sender) continue;
      const same = s.text === live || (partial && live !== '' && s.text.includes(live));
      if (!same) continue;
      matched.add(i);
      from = i + 1;
      if (interrupted[i] && node.dataset.streaming === 'false') markInterrupted(node);
      // A finished reply seen only in part (its start streamed before this page bound) is
      // completed from the stored text.
      if (s.text !== live && node.dataset.streaming === 'false') setBubbleText(node, s.text);
      break;
    }
  }
  const first = ui.messages.firstChild;
  keepAtEnd(ui.messages, () => {
    stored.forEach((s, i) => {
      if (matched.has(i)) return;
      const node = messageNode(s.sender, s.text, { timestamp: s.timestamp, interrupted: interrupted[i] });
      showAttachment(node, messages[i]);
      if (s.sender === 'ai') {
        node.dataset.streaming = 'false';
        addCopyButton(node);
      }
      ui.messages.insertBefore(node, first);
    });
  });
}

/** Shows the session as ended when the user's list says so (a reload of an ended chat). */
async function checkEnded(id) {
  const list = await api('GET', '/sessions', state.token);
  if (!list.ok || state.sessionId !== id) return;
  const found = (list.body?.sessions || []).find((s) => (s.session_id || s.id) === id);
  if (found && !found.is_active) showEnded(true);
}

/** The ended state: no live composer, a "Start a new chat" action instead. */
function showEnded(ended) {
  ui.ended.hidden = !ended;
  ui.composer.hidden = ended;
  if (ended) ui.startNew.focus();
}

/** Starts a new chat: with `ask`, confirms first and ends the current session
 *  (POST {P}/sessions/{id}/end); the next message then starts a new session. */
async function newChat({ ask }) {
  const id = state.sessionId;
  if (ask && id) {
    if (!window.confirm('End this conversation and start a new chat?')) return;
    const answer = await api('POST', `/sessions/${encodeURIComponent(id)}/end`, state.token);
    // 404: never stored (nothing was said yet) or already gone; either way it is over.
    if (!answer.ok && answer.status !== 404) {
      showError(answer.message);
      return;
    }
  }
  forgetSession();
  replies.finish();
  setReplying(false);
  ui.loading.hidden = true;
  ui.messages.replaceChildren();
  ui.assist.hidden = true;
  ui.assist.textContent = '';
  ui.help.hidden = false;
  state.helpOpen = false;
  showEnded(false);
  clearError();
  system('New chat. How can we help?');
  ui.input.focus();
}

function onToken(token, reason) {
  state.token = token;
  const claims = jwtClaims(token);
  const userId = claims && typeof claims.user_id === 'string' ? claims.user_id : '';
  if (userId !== state.userId || !state.sessionId) {
    state.userId = userId;
    state.sessionId = '';
    state.confirmed = '';
    let stored = '';
    try {
      stored = sessionStorage.getItem(storageKey()) || '';
    } catch {
      stored = '';
    }
    if (stored) adoptSession(stored);
    // A reload keeps the session: show what was said in it so far.
    loadHistory();
  }
  ui.mySessions.href = pageLink('my-sessions', token);
  form.hide();
  // A refreshed token is used by the next connection; an open one stays as it is.
  if (reason === 'refresh' && state.ws && state.ws.readyState <= WebSocket.OPEN) return;
  if (!state.ws || state.ws.readyState >= WebSocket.CLOSING) connect();
  else {
    // A different token (e.g. pasted again): reconnect with it.
    state.ws.onclose = null;
    state.ws.close();
    connect();
  }
}

function setStatus(stateName, text) {
  ui.status.dataset.state = stateName;
  ui.status.textContent = text;
  updateSend();
  ui.help.disabled = stateName !== 'open';
}

/** Send is enabled while connected, outside a rate-limit countdown and while no reply streams. */
function updateSend() {
  ui.send.disabled = ui.status.dataset.state !== 'open' || Boolean(state.countdownTimer) || state.replying;
}

/** A reply started (`loading`) or ended: Stop shows only meanwhile, Send is disabled meanwhile. */
function setReplying(replying) {
  const had = ui.stop.contains(document.activeElement);
  state.replying = replying;
  ui.stop.hidden = !replying;
  ui.stop.disabled = !replying;
  updateSend();
  if (had && !replying) ui.input.focus();
}

/** Asks the server to stop the reply in progress (`stop`, issue 15); the reply then ends with
 *  its `done` frame marked interrupted. */
function stopReply() {
  if (!state.replying || !state.sessionId) return;
  if (sendFrame(state.ws, { type: 'stop', session_id: state.sessionId, timestamp: new Date().toISOString() })) {
    ui.stop.disabled = true; // until the reply's end arrives
  }
}

function connect() {
  clearTimeout(state.reconnectTimer);
  clearInterval(state.reconnectCountdown);
  state.reconnectTimer = 0;
  setStatus(state.everOpened ? 'reconnecting' : 'connecting', state.everOpened ? 'Reconnecting…' : 'Connecting…');
  let ws;
  try {
    ws = openSocket(state.token, handleFrame);
  } catch {
    scheduleReconnect(false);
    return;
  }
  state.ws = ws;
  let opened = false;
  ws.onopen = () => {
    opened = true;
    state.everOpened = true;
    state.attempt = 0;
    setStatus('open', 'Connected');
    // A reply cut mid-stream by the drop continues in its bubble (`resume`, issue 14);
    // otherwise the usual bind.
    const point = state.resumePoint;
    state.resumePoint = null;
    if (state.sessionId && point) {
      sendFrame(ws, { type: 'resume', session_id: state.sessionId, metadata: point });
    } else if (state.sessionId) {
      sendFrame(ws, bindFrame(state.sessionId, 'user'));
    }
    // A reconnect with nothing shown yet (e.g. the first fetch found the server down).
    loadHistory();
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    // Keep the newest streaming bubble open to resume it; anything else ends here (a resume
    // continues one reply, so another one streaming at the same time is cut).
    state.resumePoint = replies.resumePoint();
    if (!state.resumePoint) {
      replies.finish();
      setReplying(false);
    } else {
      replies.finish({ interrupted: true, except: state.resumePoint.reply_id });
    }
    ui.loading.hidden = true;
    scheduleReconnect(opened);
  };
}

function scheduleReconnect(wasOpen) {
  const delay = backoffDelay(state.attempt);
  state.attempt += 1;
  let remaining = Math.ceil(delay / 1000);
  const tick = () => {
    setStatus('reconnecting', `Disconnected. Reconnecting in ${remaining} s…`);
  };
  tick();
  const started = Date.now();
  clearInterval(state.reconnectCountdown);
  state.reconnectCountdown = setInterval(() => {
    remaining = Math.max(0, Math.ceil((delay - (Date.now() - started)) / 1000));
    tick();
  }, 250);
  // The browser hides a refused handshake's status (401 shows as close 1006): when a socket
  // never opened, ask the host for a fresh token before the next try.
  if (!wasOpen && tokens.embedded) {
    // An answer arrives through onToken('refresh'), which reconnects at once with it.
    tokens.refresh();
  }
  if (!wasOpen && !state.everOpened && !tokens.embedded && state.attempt >= 2) {
    showError('Cannot connect. The server may be down, or the token may be invalid or expired.');
  }
  state.reconnectTimer = setTimeout(connect, delay);
}

function append(node) {
  return appendToLog(ui.messages, node);
}

function system(text) {
  append(messageNode('system', text));
}

/** The server moved this page to another session than the one it confirmed before (the old
 *  one was ended, e.g. from "My sessions"; an ended session is never resumed): say so, so the
 *  conversation above is not taken for part of the new one. */
function noteNewSession(id) {
  const previous = state.confirmed;
  state.confirmed = id;
  // The binding to the id this page proposed for a new session is no conversation of its own.
  if (previous && previous !== id && previous !== state.proposed && conversationNodes().length > 0) {
    system('That conversation was ended. This is a new conversation.');
  }
}

function handleFrame(frame) {
  if (typeof frame.session_id === 'string' && frame.session_id && !state.dropped.has(frame.session_id)) {
    noteNewSession(frame.session_id);
    adoptSession(frame.session_id);
  }
  switch (frame.type) {
    case 'connection_status':
      if (Array.isArray(frame.models) && frame.models.length > 0) showModels(frame.models);
      if (frame.content) system(frame.content);
      break;
    case 'loading':
      ui.loading.hidden = false;
      setReplying(true);
      break;
    case 'ai_response':
      ui.loading.hidden = true;
      replies.onFrame(frame);
      if (frame.metadata?.streaming !== 'true' || frame.metadata?.done === 'true') {
        // Another reply of the session (the user's other device) may still be streaming.
        if (!replies.streaming()) setReplying(false);
      } else if (!state.replying) setReplying(true); // a reply resumed or joined mid-stream
      break;
    case 'user_message':
      if (frame.sender === 'admin') append(messageNode('admin', bubbleOf(frame).text, { timestamp: frame.timestamp }));
      break;
    case 'file_upload':
    case 'voice_message': {
      const sender = frame.sender === 'admin' ? 'admin' : 'user';
      const own = isOwnFile(frame.file_url);
      const node = messageNode(sender, own ? String(frame.content || '') : bubbleOf(frame).text, { timestamp: frame.timestamp });
      showAttachment(node, frame);
      append(node);
      break;
    }
    case 'admin_join': {
      const name = frame.metadata?.admin_name || 'an administrator';
      ui.assist.textContent = `Assisted by ${name}`;
      ui.assist.hidden = false;
      // A person is here: no help button while they assist.
      state.helpOpen = false;
      ui.help.hidden = true;
      system(frame.content || `${name} has joined the session`);
      break;
    }
    case 'admin_leave':
      ui.assist.hidden = true;
      ui.assist.textContent = '';
      ui.help.hidden = false;
      system(frame.content || 'The administrator has left the session');
      break;
    case 'notification':
      if (frame.content) system(frame.content);
      break;
    case 'error':
      onError(frame.error || {}, frame.session_id, frame.metadata || {});
      break;
    default:
      break;
  }
}

function onError(error, sessionId, metadata = {}) {
  const message = String(error.message || 'Something went wrong.');
  if (isBindReply(message)) return;
  // A failed reply's error frame names the reply (README, "Frames added for resumable replies"):
  // it ends that reply's bubble only; the user's other device may have another reply of this
  // session streaming (on this instance or another), which goes on.
  const named = typeof metadata.reply_id === 'string' ? metadata.reply_id : '';
  if (named) {
    replies.finish({ replyId: named, interrupted: true });
    if (replies.streaming()) {
      showError(message, Number(error.retry_after) || 0);
      return;
    }
  }
  if (message.startsWith(BIND_FAILED) && sessionId) {
    // The bind of a stored session id: not this user's session any more (the history fetch
    // decides), or one already dropped.
    if (state.dropped.has(sessionId)) return;
    if (sessionId === state.historyFor) {
      state.heldBindError = message;
      return;
    }
  }
  ui.loading.hidden = true;
  // A reply cut by an error (deadline, shutdown) is stored with what it had: mark it so.
  replies.finish({ interrupted: true });
  setReplying(false);
  if (error.code === 'RESUME_UNAVAILABLE') {
    // The rest of the reply is gone from the buffers: the stored session has it.
    loadHistory();
    return;
  }
  showError(message, Number(error.retry_after) || 0);
}

function showError(message, retryAfterMs = 0) {
  ui.errorText.textContent = message;
  ui.error.hidden = false;
  clearInterval(state.countdownTimer);
  state.countdownTimer = 0;
  ui.retryWrap.hidden = true;
  if (retryAfterMs > 0) {
    const until = Date.now() + retryAfterMs;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      ui.retry.textContent = String(left);
      if (left <= 0) {
        clearInterval(state.countdownTimer);
        state.countdownTimer = 0;
        ui.retryWrap.hidden = true;
        ui.error.hidden = true;
        updateSend();
      }
    };
    ui.retryWrap.hidden = false;
    ui.send.disabled = true;
    state.countdownTimer = setInterval(tick, 250);
    tick();
  }
}

function clearError() {
  if (state.countdownTimer) return; // the countdown ends itself
  ui.error.hidden = true;
  ui.errorText.textContent = '';
}

function showModels(models) {
  const current = ui.models.value;
  ui.models.replaceChildren(
    ...models.map((m) => el('option', { value: m.id }, m.name || m.id)),
  );
  if (current && models.some((m) => m.id === current)) ui.models.value = current;
  const several = models.length > 1;
  ui.models.hidden = !several;
  ui.modelLabel.hidden = !several;
}

function ensureSession() {
  if (!state.sessionId) {
    state.proposed = randomId();
    adoptSession(state.proposed);
  }
  return state.sessionId;
}

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  const content = ui.input.value.trim();
  if (!content || ui.send.disabled) return;
  const frame = { type: 'user_message', session_id: ensureSession(), content, sender: 'user' };
  if (!sendFrame(state.ws, frame)) {
    showError('Not connected. Your message was not sent; it will be possible again once reconnected.');
    return;
  }
  clearError();
  appendToLog(ui.messages, messageNode('user', content, { timestamp: new Date().toISOString() }), { own: true });
  ui.input.value = '';
  ui.input.focus();
});

submitOnEnter(ui.input, ui.composer);

ui.models.addEventListener('change', () => {
  sendFrame(state.ws, { type: 'model_select', session_id: ensureSession(), model_id: ui.models.value, sender: 'user' });
});

ui.help.addEventListener('click', () => {
  if (!state.sessionId) {
    system('Send a message first, so an administrator has a conversation to join.');
    return;
  }
  if (state.helpOpen) {
    // Honest: the request is still open, nothing new is sent.
    system('Your help request is already with the support team. An administrator will join as soon as one is free.');
    return;
  }
  if (sendFrame(state.ws, { type: 'help_request', session_id: state.sessionId, sender: 'user' })) {
    state.helpOpen = true;
    clearError();
  }
});

/** Uploads `file` and sends it to the session as a `file_upload` frame. */
async function attach(file) {
  if (!state.sessionId || !state.confirmed) {
    system('Send a message first: a file is added to a conversation that has started.');
    return;
  }
  const data = new FormData();
  data.append('file', file, file.name);
  let response;
  let body = null;
  ui.attach.disabled = true;
  try {
    response = await fetch(`${apiBase()}/upload`, {
      method: 'POST', headers: { Authorization: `Bearer ${state.token}` }, body: data,
    });
    body = await response.json().catch(() => null);
  } catch {
    showError('The file could not be sent: the server cannot be reached.');
    return;
  } finally {
    ui.attach.disabled = false;
  }
  if (!response.ok) {
    showError(body?.error || body?.message || `The file could not be sent (${response.status}).`);
    return;
  }
  const frame = {
    type: 'file_upload', session_id: state.sessionId, file_id: body.file_id, file_url: body.file_url, content: '',
    metadata: { filename: file.name, content_type: body.content_type, size: String(body.size) }, sender: 'user',
  };
  if (!sendFrame(state.ws, frame)) showError('Not connected. The file was stored but not sent; attach it again once reconnected.');
  else clearError();
}

ui.attach.addEventListener('click', () => ui.file.click());
ui.file.addEventListener('change', () => {
  const [file] = ui.file.files;
  ui.file.value = '';
  if (file) attach(file);
});

ui.newChat.addEventListener('click', () => newChat({ ask: true }));
ui.startNew.addEventListener('click', () => newChat({ ask: false }));

ui.dismiss.addEventListener('click', () => {
  clearInterval(state.countdownTimer);
  state.countdownTimer = 0;
  ui.retryWrap.hidden = true;
  ui.error.hidden = true;
  updateSend();
});

ui.stop.addEventListener('click', () => stopReply());
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && state.replying && !event.defaultPrevented) {
    event.preventDefault();
    stopReply();
  }
});

setStatus('connecting', 'Waiting for a token…');
tokens.start({
  showForm: () => {
    setStatus('closed', 'Not connected: no token');
    form.show();
  },
  noToken: () => {
    setStatus('closed', 'Not connected: no token');
    showError('No token: open this page with ?token=<JWT>, or embed it in a page that hands one over.');
  },
});
