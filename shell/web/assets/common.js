// Shared by every chatbox page: where the API lives, building DOM safely, HTTP calls with
// errors in words, message bubbles and the token hand-over (query string, embedding page,
// React Native WebView, or a pasted token in --dev mode). Plain ES module, no bundler.

import { renderMarkdown } from './markdown.js';

/** The path prefix the pages are served under ('' when it is `/`): the page path without its
 *  own suffix, so any prefix works without configuring the pages. */
export function apiBase() {
  const path = location.pathname.replace(/\/+$/, '');
  return path.replace(/\/(chat|my-sessions|console|view\/[^/]*)$/, '');
}

/** `document.getElementById`, failing loudly when the page lacks an element the script needs. */
export function $(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`missing element #${id}`);
  return found;
}

/** Creates an element; `attrs` become attributes (text only: never HTML), `children` are nodes
 *  or strings (inserted as text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

/** Whether the server runs `serve --dev` (it rewrites the page's marker). */
export function isDev() {
  return document.documentElement.dataset.dev === 'true';
}

/** The claims of a JWT, decoded without verification (the server verifies), or null. */
export function jwtClaims(token) {
  try {
    const part = token.split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** A new random 32-hex-character id (the form the server uses for sessions). */
export function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A timestamp as local date and time, or '' when absent or invalid. */
export function formatTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime()) || date.getFullYear() < 1000) return '';
  return date.toLocaleString();
}

/** The WebSocket URL of this server for `token`. */
export function wsUrl(token) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${apiBase()}/ws?token=${encodeURIComponent(token)}`;
}

/** Reconnect backoff of the chat page and the console: 1 s, doubling, capped at 30 s. */
export function backoffDelay(attempt) {
  return Math.min(1000 * 2 ** attempt, 30_000);
}

// Sent right after (re)connecting to bind the socket to a session (§3.7) so frames of that
// session (admin messages, replies still in progress) arrive before anyone types. The type has no
// handler, so the server answers with an "unknown message type" error, which pages do not show.
const BIND_TYPE = 'typing_indicator';

/** The frame that binds a freshly opened socket to `sessionId` as `sender` (send it with
 *  `sendFrame`, which stamps it). */
export function bindFrame(sessionId, sender) {
  return { type: BIND_TYPE, session_id: sessionId, sender };
}

/** Sends `frame` on `ws` stamped with the current time; false (nothing sent) when the socket is
 *  absent or not open. */
export function sendFrame(ws, frame) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify({ ...frame, timestamp: new Date().toISOString() }));
  return true;
}

/** Whether an error message is the server's expected answer to `bindFrame`. */
export function isBindReply(message) {
  return message.startsWith(`Invalid message format: unknown message type ${BIND_TYPE}`);
}

/** Enter sends `form` from the `input` textarea (Shift+Enter is a new line; IME input is left alone). */
export function submitOnEnter(input, form) {
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}

/** Opens the WebSocket for `token`; each text frame that is JSON goes to `onFrame`. */
export function openSocket(token, onFrame) {
  const ws = new WebSocket(wsUrl(token));
  ws.onmessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // the server sends only JSON; anything else is not a frame
    }
    onFrame(frame);
  };
  return ws;
}

/** A same-origin page link carrying the token (`page` is `chat`, `my-sessions`, `console`). */
export function pageLink(page, token) {
  const url = `${apiBase()}/${page}`;
  return token ? `${url}?token=${encodeURIComponent(token)}` : url;
}

/** Copies `text` to the clipboard: the async clipboard where allowed, else a selection copy of
 *  a temporary field; whether it worked. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // Refused (no permission, not focused): fall back below.
  }
  const field = el('textarea', { class: 'visually-hidden', 'aria-hidden': 'true', tabindex: '-1' });
  field.value = text;
  document.body.append(field);
  field.select();
  let copied = false;
  try {
    copied = document.execCommand('copy');
  } catch {
    copied = false;
  }
  field.remove();
  return copied;
}

/** The outcome of an API call: `ok`, `status`, the parsed `body` (JSON or text) and, when it
 *  failed, `message` in words (including a rate limit's wait). */
export async function api(method, path, token) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(`${apiBase()}${path}`, { method, headers, cache: 'no-store' });
  } catch {
    return { ok: false, status: 0, body: null, message: 'The server cannot be reached. Check your connection and try again.' };
  }
  const text = await response.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // Plain-text bodies (e.g. 404 page not found) stay text.
  }
  if (response.ok) return { ok: true, status: response.status, body, message: '' };
  return { ok: false, status: response.status, body, message: describeFailure(response, body) };
}

function describeFailure(response, body) {
  if (response.status === 429) {
    const seconds = Number(response.headers.get('Retry-After')) || Math.ceil((body?.retry_after_ms ?? 0) / 1000);
    const text = body?.message || 'Too many requests. Please try again later.';
    return seconds > 0 ? `${text} Try again in ${seconds} s.` : text;
  }
  if (response.status === 401) {
    return 'You are not signed in, or your sign-in has expired. Open this page again with a valid token.';
  }
  if (response.status === 403) return 'You do not have permission for this (an administrator role is needed).';
  if (body && typeof body === 'object' && body.error) return `${body.error}.`.replace(/\.\.$/, '.');
  if (typeof body === 'string' && body.trim()) return body.trim();
  return `The request failed (HTTP ${response.status}).`;
}

// Senders a bubble can have; a stored message with any other sender shows as a notice.
const SENDERS = new Set(['user', 'ai', 'admin', 'system']);

// The markdown source each bubble shows (kept here, once, so pages can compare bubbles with
// stored messages and a streamed reply can grow without a second copy of its text).
const sources = new WeakMap();

/** A message bubble: `.msg[data-sender]` with the sender's name, the time and the text
 *  rendered as safe markdown. */
export function messageNode(sender, text, { name, timestamp, interrupted = false } = {}) {
  const who = name || { user: 'You', ai: 'Assistant', admin: 'Administrator', system: 'Notice' }[sender] || sender;
  const node = el('div', { class: 'msg', 'data-sender': sender });
  const head = el('span', { class: 'who' }, who);
  const when = formatTime(timestamp);
  if (when && sender !== 'system') head.append(el('span', { class: 'when' }, when));
  if (sender !== 'system') node.append(head);
  node.append(el('div', { class: 'body' }));
  setBubbleText(node, text || '');
  if (interrupted) markInterrupted(node);
  return node;
}

/** Marks a reply bubble as interrupted (stopped, or cut by a deadline or a shutdown: issue 15);
 *  the text shown is all there is. Once per bubble. */
export function markInterrupted(node) {
  if (!node || node.dataset.interrupted === 'true') return;
  node.dataset.interrupted = 'true';
  node.querySelector('.body')?.after(el('p', { class: 'interrupted-note' }, 'Reply interrupted'));
}

/** Whether a stored message (or frame) is a reply that did not finish (`metadata.interrupted`). */
export function isInterrupted(message) {
  return message?.metadata?.interrupted === 'true';
}

/** The markdown source a bubble shows ('' for a node that is no bubble). */
export function bubbleSource(node) {
  return sources.get(node) ?? '';
}

/** Replaces a bubble's text and renders it (a streamed reply is re-rendered whole, at most once
 *  a frame: cheap at reply sizes, and markdown spanning chunks renders right). */
export function setBubbleText(node, text) {
  sources.set(node, text);
  renderBubble(node);
}

function renderBubble(node) {
  node.querySelector('.body').replaceChildren(renderMarkdown(bubbleSource(node)));
}

/** The bubble of a stored message (or of a frame carrying one): `sender` is one a bubble can
 *  have (anything else is 'system'), `text` the content followed, after a blank line, by the
 *  attachment's URL when there is one (the markdown renderer makes an http(s) URL a link). */
export function bubbleOf(message) {
  const sender = SENDERS.has(message.sender) ? message.sender : 'system';
  const content = String(message.content || '');
  const text = message.file_url ? `${content}\n\n${message.file_url}`.trim() : content;
  return { sender, text };
}

// How close to its end (in px) a log counts as "at the end" for following new content.
const NEAR_END_PX = 40;

/** Runs `change` (which adds content to `log`) and, when the reader was within NEAR_END_PX of
 *  the log's end before it, scrolls the log to its new end; a reader scrolled further up stays
 *  where they are. Returns what `change` returns. */
export function keepAtEnd(log, change) {
  const near = log.scrollHeight - log.scrollTop - log.clientHeight <= NEAR_END_PX;
  const result = change();
  if (near) log.scrollTop = log.scrollHeight;
  return result;
}

/** Appends `node` to `log`, following the end as `keepAtEnd` does; `own` (the reader's own
 *  message) scrolls to the end wherever the reader was. */
export function appendToLog(log, node, { own = false } = {}) {
  keepAtEnd(log, () => log.append(node));
  if (own) log.scrollTop = log.scrollHeight;
  return node;
}

/**
 * The AI replies (`ai_response` frames, PROTOCOL.md §3) shown in `log`. `onFrame(frame)` takes
 * each `ai_response` frame: streamed chunks (metadata.streaming "true") grow their reply's bubble,
 * marked data-streaming="true", until metadata.done; a reply that is not streamed is a finished
 * bubble of its own. Each streamed reply names itself (`metadata.reply_id`, `metadata.seq`, issue
 * 14), and replies of one session may stream at the same time (PROTOCOL.md §3.2: up to three per
 * connection, and the user's other devices): each reply id keeps its own bubble, so interleaved
 * chunks never mix. Chunks without a reply id go to the newest streaming bubble. Chunks are
 * rendered at most once per animation frame; a reply's final text is rendered at once when it
 * ends. `finish()` ends every reply cut short (socket closed, panel left, log cleared) and
 * `finish({ replyId })` one of them: the next chunk of a reply ended that way starts a new bubble,
 * unless it was ended as `interrupted` (then, as after its `done`, its frames are skipped).
 * `onStreamStart(node)` is told of each streamed bubble when it is made, `onDone(node)` of each
 * reply bubble when it is complete (or cut short). `resumePoint()` is where a reconnected page asks
 * to continue the newest streaming reply (`resume` frame; the page ends the others with
 * `finish({ interrupted: true, except })`, their missed chunks are not replayed), and a frame of
 * a reply with a seq already shown is skipped, so a bubble never shows a chunk twice.
 */
export function createReplyStream(log, { onStreamStart, onDone } = {}) {
  // The streaming replies by id ('' for one the server named no id for), oldest first:
  // { node, lastSeq (the highest seq shown), pending (its requested animation frame, 0 if none) }.
  const open = new Map();
  // Ids of replies whose bubble ended (done, or cut short as interrupted), newest last: a late or
  // replayed frame of one must not start a bubble of its own, nor show a reply with a hole in it.
  // A bubble left without `interrupted` (panel left, log cleared) is not remembered: the reply's
  // next chunk starts a new bubble there. Only the last ENDED_KEPT are remembered.
  const ended = new Set();
  const ENDED_KEPT = 64;

  function render(reply) {
    reply.pending = 0;
    keepAtEnd(log, () => renderBubble(reply.node));
  }

  function close(id, interrupted, remember) {
    const reply = open.get(id);
    if (!reply) return;
    open.delete(id);
    if (id && remember) {
      ended.add(id);
      if (ended.size > ENDED_KEPT) ended.delete(ended.values().next().value);
    }
    if (reply.pending) {
      cancelAnimationFrame(reply.pending);
      render(reply);
    }
    if (interrupted && bubbleSource(reply.node)) markInterrupted(reply.node);
    reply.node.dataset.streaming = 'false';
    if (onDone) onDone(reply.node);
  }

  /** Ends the reply `replyId`, or every streaming reply but `except`; `interrupted` marks them
   *  (when they show any text). */
  function finish({ interrupted = false, replyId, except } = {}) {
    if (replyId !== undefined) {
      close(replyId, interrupted, interrupted);
      return;
    }
    for (const id of [...open.keys()]) if (id !== except) close(id, interrupted, interrupted);
  }

  /** The id of the newest streaming reply, or undefined. */
  function newest() {
    let last;
    for (const id of open.keys()) last = id;
    return last;
  }

  /** `{reply_id, after_seq}` of the newest streaming reply, or null when none can be resumed. */
  function resumePoint() {
    const id = newest();
    return id ? { reply_id: id, after_seq: String(open.get(id).lastSeq) } : null;
  }

  function onFrame(frame) {
    const meta = frame.metadata || {};
    if (meta.streaming !== 'true') {
      finish();
      const done = messageNode('ai', frame.content || '', { timestamp: frame.timestamp });
      done.dataset.streaming = 'false';
      appendToLog(log, done);
      if (onDone) onDone(done);
      return;
    }
    const named = typeof meta.reply_id === 'string' ? meta.reply_id : '';
    if (named && ended.has(named)) return; // its bubble ended already
    const id = named || (newest() ?? '');
    const seq = Number(meta.seq) || 0;
    let reply = open.get(id);
    if (reply && named && seq > 0 && seq <= reply.lastSeq) return; // shown already
    if (!reply && named && open.has('')) {
      // A reply that named itself only after its first chunks keeps its bubble.
      reply = open.get('');
      open.delete('');
      open.set(named, reply);
    }
    if (!reply) {
      const node = messageNode('ai', '', { timestamp: frame.timestamp });
      node.dataset.streaming = 'true';
      reply = { node, lastSeq: 0, pending: 0 };
      open.set(id, reply);
      if (onStreamStart) onStreamStart(node);
      appendToLog(log, node);
    }
    if (named) reply.lastSeq = Math.max(reply.lastSeq, seq);
    if (frame.content) {
      sources.set(reply.node, bubbleSource(reply.node) + frame.content);
      if (!reply.pending) reply.pending = requestAnimationFrame(() => render(reply));
    }
    if (meta.done === 'true') close(id, meta.interrupted === 'true', true);
  }

  /** Whether a reply is being streamed into a bubble now. */
  function streaming() {
    return open.size > 0;
  }

  return { onFrame, finish, resumePoint, streaming };
}

/** Fills a read-only transcript from the API's message objects; `names` overrides the sender
 *  labels (a shared view calls the owner "User", not "You"). */
export function renderTranscript(container, messages, names = {}) {
  container.replaceChildren();
  if (!messages || messages.length === 0) {
    container.append(messageNode('system', 'No messages.'));
    return;
  }
  for (const m of messages) {
    const { sender, text } = bubbleOf(m);
    container.append(messageNode(sender, text, { name: names[sender], timestamp: m.timestamp, interrupted: isInterrupted(m) }));
  }
}

// ---- Token hand-over -------------------------------------------------------------------------
//
// Protocol (README, "Web pages"): without `?token=`, a page inside a frame posts
// {"type":"request_token"} to its parent (targetOrigin '*': the request carries no secret) and
// takes the answer {"type":"token","token":"<jwt>"} only from `window.parent`. Shortly before
// the token's `exp`, and when a connection is refused, it posts {"type":"refresh_token"}. In a
// React Native WebView the same JSON text goes through window.ReactNativeWebView.postMessage
// and answers arrive as `message` events on document or window.

const TOKEN_TYPES = new Set(['token', 'request_token', 'refresh_token']);
const REFRESH_AHEAD_MS = 60_000;

/** Where the page's token comes from and how to renew it. */
export class TokenSource {
  /** `onToken(token, reason)` is called with each token obtained ('initial', 'refresh',
   *  'paste'). */
  constructor(onToken) {
    this.onToken = onToken;
    this.token = '';
    this.waiters = [];
    this.refreshTimer = 0;
    this.framed = window.parent !== window;
    this.native = Boolean(window.ReactNativeWebView);
  }

  /** Whether a host (parent page or native app) can hand tokens over. */
  get embedded() {
    return this.framed || this.native;
  }

  /** Starts: `?token=` at once, else asks the host, else (dev) offers the paste form after
   *  ~1 s; `showForm()` is called then, `noToken()` when nothing can provide one. */
  start({ showForm, noToken }) {
    const listener = (event) => this.onMessage(event);
    window.addEventListener('message', listener);
    if (this.native) document.addEventListener('message', listener);
    const fromQuery = new URLSearchParams(location.search).get('token');
    if (fromQuery) {
      this.accept(fromQuery.trim(), 'initial');
      return;
    }
    if (this.embedded) this.post('request_token');
    setTimeout(() => {
      if (this.token) return;
      if (isDev()) showForm();
      else if (!this.embedded) noToken();
    }, 1000);
  }

  /** A token pasted into the dev form. */
  paste(token) {
    this.accept(token.trim(), 'paste');
  }

  /** Asks the host for a fresh token; resolves with it, or with '' after `waitMs`. */
  refresh(waitMs = 5000) {
    if (!this.embedded) return Promise.resolve('');
    this.post('refresh_token');
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve('');
      }, waitMs);
      const waiter = (token) => {
        clearTimeout(timer);
        resolve(token);
      };
      this.waiters.push(waiter);
    });
  }

  post(type) {
    const message = { type };
    try {
      if (this.native) window.ReactNativeWebView.postMessage(JSON.stringify(message));
      if (this.framed) window.parent.postMessage(message, '*');
    } catch {
      // A host that cannot be reached leaves the page on its paste form / error.
    }
  }

  onMessage(event) {
    const fromParent = this.framed && event.source === window.parent;
    const fromNative = this.native && (event.source === null || event.source === window || event.source === undefined);
    if (!fromParent && !fromNative) return;
    let data = event.data;
    if (typeof data === 'string') {
      try {
        data = JSON.parse(data);
      } catch {
        return;
      }
    }
    if (!data || typeof data !== 'object' || !TOKEN_TYPES.has(data.type)) return;
    if (typeof data.token !== 'string' || !data.token.trim()) return;
    this.accept(data.token.trim(), this.token ? 'refresh' : 'initial');
  }

  accept(token, reason) {
    if (!token) return;
    this.token = token;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter(token);
    this.scheduleRefresh();
    this.onToken(token, reason);
  }

  /** Asks for a new token a minute before this one expires (hosts only). */
  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    if (!this.embedded) return;
    const exp = Number(jwtClaims(this.token)?.exp);
    if (!Number.isFinite(exp) || exp <= 0) return;
    const wait = Math.max(exp * 1000 - REFRESH_AHEAD_MS - Date.now(), 1000);
    // setTimeout's limit is ~24.8 days; a longer wait is re-armed when it fires.
    const max = 2 ** 31 - 1;
    this.refreshTimer = setTimeout(() => (wait > max ? this.scheduleRefresh() : this.refresh()), Math.min(wait, max));
  }
}

/** Wires a page's `#token-form` (dev paste) to `source`. */
export function wireTokenForm(source) {
  const form = document.getElementById('token-form');
  if (!form) return { show() {}, hide() {} };
  const input = $('token-input');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!input.value.trim()) return;
    source.paste(input.value);
    input.value = '';
  });
  return {
    show() {
      form.hidden = false;
      input.focus();
    },
    hide() {
      form.hidden = true;
    },
  };
}

/** Whether `url` is a file this server stores (`{P}/files/<id>…`, from an upload, issue 17). */
export function isOwnFile(url) {
  return typeof url === 'string' && url.startsWith(`${apiBase()}/files/`);
}

/** Adds a stored file to a message bubble: the image itself for images this server serves, a
 *  link for other files. Other hosts' URLs stay text (the pages load nothing from elsewhere). */
export function showAttachment(node, message) {
  const url = message.file_url;
  if (!isOwnFile(url)) return;
  const name = String(message.metadata?.filename || 'file');
  const type = String(message.metadata?.content_type || '');
  const body = node.querySelector('.body') || node;
  if (type.startsWith('image/') && !type.includes('svg')) {
    body.append(el('img', { class: 'attachment-image', src: url, alt: name, loading: 'lazy' }));
  }
  body.append(el('a', { class: 'attachment-link', href: url, target: '_blank', rel: 'noopener', download: name }, name));
}
