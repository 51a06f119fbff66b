// The admin console: session search with the filters, sorting and paging of PROTOCOL.md §4.6,
// metrics cards (§4.7 with §10 item 6), a sessions-over-time chart, and taking a session over
// to chat with its user (§4.8, §10 items 2 and 3). The admin limit is 20 calls a minute by
// default, so metrics and the chart are fetched only when a search is submitted, not on paging.

import {
  $, TokenSource, api, appendToLog, backoffDelay, bindFrame, bubbleOf, createReplyStream, el, formatTime,
  isBindReply, jwtClaims, messageNode, openSocket, sendFrame, submitOnEnter, wireTokenForm,
} from './common.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const CHART_SAMPLE = 1000;
const BUCKETS = 24;

const ui = {
  error: $('admin-error'),
  who: $('who'),
  form: $('search-form'),
  userId: $('f-user-id'),
  status: $('f-status'),
  assisted: $('f-admin-assisted'),
  from: $('f-from'),
  to: $('f-to'),
  sortBy: $('f-sort-by'),
  sortOrder: $('f-sort-order'),
  limit: $('f-limit'),
  results: $('admin-sessions').querySelector('tbody'),
  prev: $('prev-page'),
  next: $('next-page'),
  pageInfo: $('page-info'),
  chart: $('sessions-chart'),
  metricsWindow: $('metrics-window'),
  panel: $('takeover-panel'),
  panelHeading: $('takeover-heading'),
  adminConn: $('admin-conn'),
  messages: $('admin-messages'),
  composer: $('admin-composer'),
  input: $('admin-input'),
  send: $('admin-send'),
  leave: $('leave-button'),
};

const METRICS = {
  'metric-total-sessions': 'total_sessions',
  'metric-active-sessions': 'active_sessions',
  'metric-total-tokens': 'total_tokens',
  'metric-avg-response': 'avg_response_time',
  'metric-max-response': 'max_response_time',
  'metric-admin-assisted': 'admin_assisted_count',
  'metric-avg-concurrent': 'avg_concurrent',
  'metric-max-concurrent': 'max_concurrent',
};

let token = '';
let offset = 0;
let pageSize = 20; // the page size of the results shown (Prev/Next move by it and keep it)
const chat = { session: '', ws: null, attempt: 0, timer: 0, leaving: false };
// The AI replies shown in the takeover chat (at most one streaming at a time).
const replies = createReplyStream(ui.messages);

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

/** The RFC 3339 form of a datetime-local value (local time), or ''. */
function rfc3339(value) {
  if (!value) return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

/** The search window: the filters' times, else the last 24 hours. */
function timeWindow() {
  const to = rfc3339(ui.to.value) || new Date().toISOString();
  const from = rfc3339(ui.from.value) || new Date(Date.parse(to) - 24 * 3600 * 1000).toISOString();
  return { from, to };
}

/** The limit in the form's field, within the API's bounds. */
function fieldLimit() {
  return Math.min(Math.max(Number(ui.limit.value) || 20, 1), 1000);
}

function searchParams(limit) {
  const params = new URLSearchParams();
  const put = (key, value) => {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  };
  put('user_id', ui.userId.value.trim());
  put('status', ui.status.value);
  put('admin_assisted', ui.assisted.value);
  put('start_time_from', rfc3339(ui.from.value));
  put('start_time_to', rfc3339(ui.to.value));
  put('sort_by', ui.sortBy.value);
  put('sort_order', ui.sortOrder.value);
  put('limit', limit);
  put('offset', offset);
  return params;
}

/** Searches at `offset` with `limit` rows a page (the limit field's, unless paging keeps the
 *  page size shown). */
async function search(limit = fieldLimit()) {
  const params = searchParams(limit);
  ui.form.setAttribute('aria-busy', 'true');
  const answer = await api('GET', `/admin/sessions?${params}`, token);
  ui.form.removeAttribute('aria-busy');
  if (!answer.ok) {
    showError(answer.message);
    return;
  }
  showError('');
  const sessions = Array.isArray(answer.body?.sessions) ? answer.body.sessions : [];
  ui.results.replaceChildren(...sessions.map(resultRow));
  if (sessions.length === 0) {
    ui.results.append(el('tr', {}, el('td', { colspan: '9', class: 'muted' }, 'No sessions match.')));
  }
  pageSize = Number(answer.body?.limit) || limit;
  const page = Math.floor(offset / pageSize) + 1;
  ui.pageInfo.textContent = sessions.length
    ? `Page ${page}: sessions ${offset + 1}–${offset + sessions.length}`
    : `Page ${page}: no sessions`;
  ui.prev.disabled = offset <= 0;
  ui.next.disabled = sessions.length < pageSize;
}

/** Shows the page `delta` pages after (or before) the one shown, with the same page size. */
function goPage(delta) {
  offset = Math.max(0, offset + delta * pageSize);
  return search(pageSize);
}

function resultRow(s) {
  const id = s.session_id || s.id;
  const tr = el('tr', { class: 'session-row', 'data-session-id': id });
  const takeover = el('button', { type: 'button', class: 'takeover', 'aria-label': `Take over session ${id}`, disabled: !s.is_active }, 'Take over');
  takeover.addEventListener('click', () => takeOver(id));
  tr.append(
    el('td', { class: 'mono', 'data-label': 'Session' }, id),
    el('td', { 'data-label': 'User' }, s.user_id || ''),
    el('td', { 'data-label': 'Name' }, s.name || ''),
    el('td', { 'data-label': 'Started' }, formatTime(s.start_time)),
    el('td', { class: 'status', 'data-label': 'Status' }, s.is_active ? 'Active' : 'Ended'),
    el('td', { 'data-label': 'Messages' }, String(s.message_count ?? 0)),
    el('td', { 'data-label': 'Tokens' }, String(s.total_tokens ?? 0)),
    el('td', { 'data-label': 'Assisted by' }, s.admin_assisted ? s.assisting_admin_name || 'yes' : ''),
    el('td', { class: 'actions', 'data-label': 'Action' }, takeover),
  );
  return tr;
}

async function loadMetrics({ from, to }) {
  ui.metricsWindow.textContent = `(${formatTime(from)} – ${formatTime(to)})`;
  const params = new URLSearchParams({ start_time: from, end_time: to });
  const answer = await api('GET', `/admin/metrics?${params}`, token);
  if (!answer.ok) {
    showError(answer.message);
    return;
  }
  for (const [id, key] of Object.entries(METRICS)) {
    const value = Number(answer.body?.[key] ?? 0);
    $(id).textContent = Number.isInteger(value) ? String(value) : value.toFixed(2);
  }
}

async function loadChart({ from, to }) {
  // One search call samples the window's sessions; bucketing happens here.
  const params = new URLSearchParams({
    start_time_from: from, start_time_to: to, sort_by: 'start_time', sort_order: 'asc',
    limit: String(CHART_SAMPLE), offset: '0',
  });
  const answer = await api('GET', `/admin/sessions?${params}`, token);
  if (!answer.ok) {
    showError(answer.message);
    return;
  }
  const start = Date.parse(from);
  const end = Date.parse(to);
  const span = Math.max(end - start, 1);
  const counts = new Array(BUCKETS).fill(0);
  for (const s of answer.body?.sessions || []) {
    const t = Date.parse(s.start_time);
    if (Number.isNaN(t) || t < start || t > end) continue;
    counts[Math.min(BUCKETS - 1, Math.floor(((t - start) / span) * BUCKETS))] += 1;
  }
  drawChart(counts, start, span);
}

/** The search, then the metrics and the chart of one time window (metrics and the chart are
 *  fetched only here, not on paging: the admin rate limit is small). */
async function refreshAll() {
  const span = timeWindow();
  await search();
  await loadMetrics(span);
  await loadChart(span);
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function drawChart(counts, start, span) {
  const width = 900;
  const height = 180;
  const pad = { left: 30, right: 8, top: 10, bottom: 22 };
  const max = Math.max(1, ...counts);
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const barW = plotW / counts.length;
  const total = counts.reduce((a, b) => a + b, 0);
  // The time at the left edge of bucket `i` (`counts.length` is the window's end).
  const edge = (i) => new Date(start + (i * span) / counts.length);
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `${total} sessions started in the window, in ${counts.length} intervals; busiest interval ${max === 1 && total === 0 ? 0 : max}`,
  });
  root.append(svg('line', { class: 'axis', x1: pad.left, y1: pad.top + plotH, x2: width - pad.right, y2: pad.top + plotH }));
  root.append(svg('line', { class: 'axis', x1: pad.left, y1: pad.top, x2: pad.left, y2: pad.top + plotH }));
  const maxLabel = svg('text', { x: 2, y: pad.top + 8 });
  maxLabel.textContent = String(max);
  root.append(maxLabel);
  counts.forEach((count, i) => {
    const h = (count / max) * plotH;
    const bar = svg('rect', {
      class: 'bar', x: pad.left + i * barW + 1, y: pad.top + plotH - h,
      width: Math.max(barW - 2, 1), height: h, 'data-count': count,
    });
    const title = svg('title');
    title.textContent = `${count} sessions from ${edge(i).toLocaleString()} to ${edge(i + 1).toLocaleString()}`;
    bar.append(title);
    root.append(bar);
  });
  // The axis is labelled at bucket edges (not bucket starts): the window's start at the left
  // end, its middle, and its end at the right end.
  const n = counts.length;
  const days = new Date(start).toDateString() !== edge(n).toDateString();
  const format = days
    ? { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }
    : { hour: '2-digit', minute: '2-digit' };
  for (const [i, anchor] of [[0, 'start'], [n / 2, 'middle'], [n, 'end']]) {
    const label = svg('text', { x: pad.left + i * barW, y: height - 6, 'text-anchor': anchor });
    label.textContent = edge(i).toLocaleString([], format);
    root.append(label);
  }
  ui.chart.replaceChildren(root);
}

// ---- Takeover chat ---------------------------------------------------------------------------

async function takeOver(id) {
  if (chat.session && chat.session !== id) await leave();
  const answer = await api('POST', `/admin/takeover/${encodeURIComponent(id)}`, token);
  if (!answer.ok) {
    showError(answer.message);
    return;
  }
  showError('');
  chat.session = id;
  chat.leaving = false;
  chat.attempt = 0;
  replies.finish();
  ui.messages.replaceChildren(messageNode('system', `You joined session ${id}. The user sees that you are assisting.`));
  ui.panelHeading.textContent = `Assisting session ${id}`;
  ui.panel.hidden = false;
  connectAdmin();
  ui.input.focus();
}

function setConn(stateName, text) {
  ui.adminConn.dataset.state = stateName;
  ui.adminConn.textContent = text;
  ui.send.disabled = stateName !== 'open';
}

function connectAdmin() {
  clearTimeout(chat.timer);
  setConn('connecting', 'Connecting…');
  const ws = openSocket(token, onAdminFrame);
  chat.ws = ws;
  ws.onopen = () => {
    chat.attempt = 0;
    setConn('open', 'Connected');
    sendFrame(ws, bindFrame(chat.session, 'admin'));
  };
  ws.onclose = () => {
    if (chat.ws !== ws) return;
    chat.ws = null;
    replies.finish(); // a reply cut by the close will not go on on the next socket
    if (chat.leaving || !chat.session) {
      setConn('closed', 'Disconnected');
      return;
    }
    const delay = backoffDelay(chat.attempt);
    chat.attempt += 1;
    setConn('reconnecting', `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    chat.timer = setTimeout(connectAdmin, delay);
  };
}

function appendAdmin(node) {
  return appendToLog(ui.messages, node);
}

function onAdminFrame(frame) {
  if (frame.session_id && frame.session_id !== chat.session) return;
  switch (frame.type) {
    case 'user_message':
      if (frame.sender === 'user') appendAdmin(messageNode('user', bubbleOf(frame).text, { name: 'User', timestamp: frame.timestamp }));
      break;
    case 'file_upload':
    case 'voice_message':
      appendAdmin(messageNode('user', bubbleOf(frame).text, { name: 'User', timestamp: frame.timestamp }));
      break;
    case 'ai_response':
      replies.onFrame(frame);
      break;
    case 'admin_leave':
      closePanel();
      break;
    case 'error': {
      const message = String(frame.error?.message || 'Something went wrong.');
      if (isBindReply(message)) break;
      showError(message);
      break;
    }
    default:
      break;
  }
}

function closePanel() {
  chat.leaving = true;
  chat.session = '';
  clearTimeout(chat.timer);
  replies.finish();
  if (chat.ws) {
    const ws = chat.ws;
    chat.ws = null;
    ws.close();
  }
  ui.panel.hidden = true;
  setConn('closed', '');
}

async function leave() {
  const id = chat.session;
  if (!id) return;
  const answer = await api('POST', `/admin/leave/${encodeURIComponent(id)}`, token);
  // The HTTP route needs the session in this process's memory; the frame works wherever the
  // admin's socket is bound.
  if (!answer.ok && !sendFrame(chat.ws, { type: 'admin_leave', session_id: id, sender: 'admin' })) {
    showError(answer.message);
  }
  closePanel();
}

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  const content = ui.input.value.trim();
  if (!content || !sendFrame(chat.ws, { type: 'user_message', session_id: chat.session, content, sender: 'admin' })) return;
  // The server relays the admin's line to the user only, so it is shown here directly.
  appendToLog(ui.messages, messageNode('admin', content, { name: 'You (admin)', timestamp: new Date().toISOString() }), { own: true });
  ui.input.value = '';
  ui.input.focus();
});

submitOnEnter(ui.input, ui.composer);

ui.leave.addEventListener('click', () => leave());

ui.form.addEventListener('submit', async (event) => {
  event.preventDefault();
  offset = 0;
  await refreshAll();
});

ui.prev.addEventListener('click', () => goPage(-1));
ui.next.addEventListener('click', () => goPage(1));

const tokens = new TokenSource(async (fresh, reason) => {
  token = fresh;
  form.hide();
  const claims = jwtClaims(fresh) || {};
  const roles = Array.isArray(claims.roles) ? claims.roles : [];
  ui.who.textContent = `Signed in as ${claims.name || claims.user_id || 'unknown'}`;
  if (!roles.includes('admin') && !roles.includes('chat_admin')) {
    showError('This token has no administrator role (admin or chat_admin); the console needs one.');
  }
  if (reason === 'refresh') return;
  await refreshAll();
});
const form = wireTokenForm(tokens);
tokens.start({
  showForm: () => form.show(),
  noToken: () => showError('No token: open this page with ?token=<admin JWT>.'),
});
