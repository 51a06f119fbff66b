// The admin console as a support inbox (issue 15): the session list on the left — help requests
// flagged and on top, unread counts, quick filters (needs help, assisted, status), who assists
// now — kept live by the admin event stream (GET {P}/admin/events, live.js): a row shown is
// updated in place from its events (count, last activity, help, who assists, ended) with no API
// call, and a session not shown yet (a new one, or help asked on one off this page) re-reads the
// list, at most once every REFRESH_GAP_MS; a slow safety poll catches anything missed. The
// selected session's whole transcript is on the right (GET {P}/admin/sessions/{id}), where the
// admin takes it over, chats live with its user and hands it back to the AI (§4.8, §10 items 2
// and 3). Metrics sit in one compact row; the chart is folded away. The admin limit is 20 calls
// a minute by default, so list reads are spaced, and the metrics and the chart are fetched only
// when a search is submitted.

import {
  $, TokenSource, api, appendToLog, backoffDelay, bindFrame, bubbleOf, createReplyStream, el, formatTime,
  isBindReply, isInterrupted, jwtClaims, messageNode, openSocket, sendFrame, showAttachment, submitOnEnter, wireTokenForm,
} from './common.js';
import { followAdminEvents } from './live.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const CHART_SAMPLE = 1000;
const BUCKETS = 24;
// The safety re-read of the list while the page is visible: live events do the work, this only
// catches what a dropped stream missed.
const POLL_MS = 60_000;
// Least time between two list re-reads asked for by live events (the admin limit is 20 a minute).
const REFRESH_GAP_MS = 4000;
// The same for a help request on a session not shown yet.
const HELP_GAP_MS = 1000;

const ui = {
  error: $('admin-error'),
  who: $('who'),
  form: $('search-form'),
  userId: $('f-user-id'),
  status: $('f-status'),
  assisted: $('f-admin-assisted'),
  help: $('f-help'),
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
  refreshStatus: $('refresh-status'),
  inbox: document.querySelector('.inbox'),
  panel: $('takeover-panel'),
  conversationState: $('conversation-state'),
  panelActions: $('panel-actions'),
  panelTakeover: $('panel-takeover'),
  panelClose: $('panel-close'),
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
// The session assisted by this admin ('' when none) and its socket.
const chat = { session: '', ws: null, attempt: 0, timer: 0, leaving: false };
// The session shown in the conversation panel ('' when none) and what the list last said of it.
const view = { session: '', detail: null, count: -1 };
// The summaries of the rows shown, by id.
let rows = new Map();
// Per session, the message count this admin has seen: the count when the list first showed it,
// or when it was last opened. More stored messages than that are shown as unread.
const seen = new Map();
let searching = false;
let lastQuery = ''; // the query of the list shown, which a refresh repeats
let searchSeq = 0; // the latest search issued; an older answer arriving later is dropped
let pollPausedUntil = 0;
// The status line's parts: the last list read, and the live stream's state.
const status = { updated: '', live: '' };
let lastRefresh = 0; // when the list was last re-read for a live event
let refreshTimer = 0; // a re-read waiting for REFRESH_GAP_MS to pass
let refreshDue = 0; // when that re-read runs
let streamOpened = false; // the live stream said `ready` once (later ones are reconnections)
let conversationTimer = 0; // a re-read of the open transcript, coalescing a burst of messages
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
  put('help_requested', ui.help.value);
  put('start_time_from', rfc3339(ui.from.value));
  put('start_time_to', rfc3339(ui.to.value));
  put('sort_by', ui.sortBy.value);
  put('sort_order', ui.sortOrder.value);
  put('limit', limit);
  put('offset', offset);
  return params;
}

/** Whether a summary is a help request nobody has answered yet (asked, active, never assisted). */
function needsHelp(s) {
  return Boolean(s.help_requested && s.is_active && !s.admin_assisted && !s.assisting_admin_name);
}

/** The page's sessions, those needing help first (otherwise in the server's order). */
function inboxOrder(sessions) {
  const flagged = sessions.filter(needsHelp);
  return flagged.concat(sessions.filter((s) => !needsHelp(s)));
}

/** Searches at `offset` with `limit` rows a page (the limit field's, unless paging keeps the
 *  page size shown). `quiet` (a poll) shows no busy state and keeps a failure out of the
 *  banner when the list is already shown. */
async function search(limit = fieldLimit(), { quiet = false, query = '' } = {}) {
  const params = query || searchParams(limit).toString();
  lastQuery = params;
  const mine = ++searchSeq;
  searching = true;
  if (!quiet) ui.form.setAttribute('aria-busy', 'true');
  const answer = await api('GET', `/admin/sessions?${params}`, token);
  if (mine !== searchSeq) return;
  searching = false;
  ui.form.removeAttribute('aria-busy');
  if (!answer.ok) {
    if (answer.status === 429) pollPausedUntil = Date.now() + 60_000;
    if (!quiet) showError(answer.message);
    else {
      status.updated = `Auto-refresh paused: ${answer.message}`;
      showStatus();
    }
    return;
  }
  if (!quiet) showError('');
  pageSize = Number(answer.body?.limit) || limit;
  showRows(Array.isArray(answer.body?.sessions) ? answer.body.sessions : []);
  status.updated = `Updated ${new Date().toLocaleTimeString()}`;
  showStatus();
  // The open conversation follows the list: re-read it when it changed and nobody chats live.
  const shown = rows.get(view.session);
  if (shown && view.session !== chat.session && shown.message_count !== view.count) {
    await loadConversation(view.session);
  } else if (shown && view.detail) {
    view.detail = { ...view.detail, assisting_admin_name: shown.assisting_admin_name || '', is_active: shown.is_active };
    showConversationState();
  }
}

/** Shows `list` (summaries) as the page's rows, those needing help first. */
function showRows(list) {
  const sessions = inboxOrder(list);
  rows = new Map(sessions.map((s) => [s.session_id || s.id, s]));
  ui.results.replaceChildren(...sessions.map(resultRow));
  if (sessions.length === 0) {
    ui.results.append(el('tr', {}, el('td', { colspan: '9', class: 'muted' }, 'No sessions match.')));
  }
  const page = Math.floor(offset / pageSize) + 1;
  const waiting = sessions.filter(needsHelp).length;
  ui.pageInfo.textContent = (sessions.length
    ? `Page ${page}: sessions ${offset + 1}–${offset + sessions.length}`
    : `Page ${page}: no sessions`) + (waiting ? ` · ${waiting} waiting for help` : '');
  ui.prev.disabled = offset <= 0;
  ui.next.disabled = sessions.length < pageSize;
}

/** Re-reads the list as it is shown (filters, page). Called by the poll; a live push calls it
 *  too. */
export async function refreshList() {
  if (!token || searching || !lastQuery) return;
  await search(pageSize, { quiet: true, query: lastQuery });
}

/** Re-reads the list for a live event: at once when the last such read is `gap` old, else once
 *  when it is (a burst of events costs one call). A shorter gap brings a waiting read forward. */
function refreshSoon(gap = REFRESH_GAP_MS) {
  const wait = Math.max(0, lastRefresh + gap - Date.now());
  if (refreshTimer) {
    if (Date.now() + wait >= refreshDue) return;
    clearTimeout(refreshTimer);
  }
  refreshDue = Date.now() + wait;
  const run = async () => {
    // A read in progress may predate the event: wait for it, then read again.
    if (searching) {
      refreshTimer = setTimeout(run, 300);
      return;
    }
    refreshTimer = 0;
    lastRefresh = Date.now();
    await refreshList();
  };
  refreshTimer = setTimeout(run, wait);
}

/** One live event (GET {P}/admin/events; README "Live admin events"). A row shown is updated in
 *  place; a session not shown yet makes the list re-read. */
function onLiveEvent(name, data) {
  if (name === 'ready' && !streamOpened) {
    // The first connection opens before the first read of the list, which sees what came before.
    streamOpened = true;
    return;
  }
  if (name === 'ready' || name === 'resync') {
    // Reconnected, or fell behind: what happened meanwhile is only in the list.
    if (lastQuery) refreshSoon();
    return;
  }
  const id = data && typeof data.session_id === 'string' ? data.session_id : '';
  if (!id) return;
  const row = rows.get(id);
  if (!row) {
    // A help request must show within 2 s (issue 15): it may cut the wait short.
    if (name === 'help_requested') refreshSoon(HELP_GAP_MS);
    else if (name === 'session_started' || name === 'message') refreshSoon();
    return;
  }
  switch (name) {
    case 'message':
      row.message_count = Number(row.message_count ?? 0) + 1;
      if (data.timestamp) row.last_activity = data.timestamp;
      if (id === view.session && id !== chat.session) reloadConversationSoon(id);
      break;
    case 'help_requested':
      row.help_requested = true;
      break;
    case 'admin_joined':
      row.admin_assisted = true;
      row.assisting_admin_name = data.admin_name || data.admin_id || 'an administrator';
      break;
    case 'admin_left':
      row.assisting_admin_name = '';
      break;
    case 'session_ended':
      row.is_active = false;
      break;
    default:
      return;
  }
  showRows(Array.from(rows.values()));
  if (id === view.session && view.detail) {
    view.detail = {
      ...view.detail,
      help_requested: row.help_requested,
      admin_assisted: row.admin_assisted,
      assisting_admin_name: row.assisting_admin_name || '',
      is_active: row.is_active,
    };
    showConversationState();
  }
}

/** Re-reads the open transcript a moment after a burst of messages (not while chatting live:
 *  the socket shows those). */
function reloadConversationSoon(id) {
  clearTimeout(conversationTimer);
  conversationTimer = setTimeout(() => {
    if (view.session === id && chat.session !== id) loadConversation(id);
  }, 500);
}

function onLiveState(stateName) {
  ui.refreshStatus.dataset.live = stateName;
  status.live = {
    live: 'live',
    reconnecting: 'live updates reconnecting…',
    refused: 'no live updates (an administrator role is needed)',
  }[stateName] || '';
  showStatus();
}

/** The status line: when the list was last read, and the live stream's state. */
function showStatus() {
  ui.refreshStatus.textContent = [status.updated, status.live].filter(Boolean).join(' · ');
}

let stopLive = null;

function startLive() {
  if (stopLive) return;
  stopLive = followAdminEvents(() => token, onLiveEvent, onLiveState);
}

function startPolling() {
  setInterval(() => {
    if (document.visibilityState !== 'visible' || Date.now() < pollPausedUntil) return;
    refreshList();
  }, POLL_MS);
}

/** Shows the page `delta` pages after (or before) the one shown, with the same page size. */
function goPage(delta) {
  offset = Math.max(0, offset + delta * pageSize);
  return search(pageSize);
}

function resultRow(s) {
  const id = s.session_id || s.id;
  const held = s.assisting_admin_name || '';
  const flagged = needsHelp(s);
  const tr = el('tr', {
    class: `session-row${flagged ? ' needs-help' : ''}${id === view.session ? ' selected' : ''}`,
    'data-session-id': id,
    'data-help': s.help_requested ? 'true' : 'false',
  });
  const open = el('button', { type: 'button', class: 'open-session secondary', 'aria-label': `Open session ${id}` }, 'Open');
  open.addEventListener('click', () => openConversation(id));
  const takeover = el('button', {
    type: 'button', class: 'takeover', 'aria-label': `Take over session ${id}`,
    disabled: !s.is_active || Boolean(held),
    title: held ? `Assisted by ${held}` : undefined,
  }, 'Take over');
  takeover.addEventListener('click', () => takeOver(id));
  const count = Number(s.message_count ?? 0);
  if (!seen.has(id)) seen.set(id, count);
  const unread = id === view.session ? 0 : count - seen.get(id);
  const sessionCell = el('td', { class: 'mono', 'data-label': 'Session' });
  if (unread > 0) sessionCell.append(el('span', { class: 'badge unread-badge', title: `${unread} messages since you last looked` }, `${unread} new`), ' ');
  if (flagged) sessionCell.append(el('span', { class: 'badge help-badge' }, 'Needs help'), ' ');
  else if (s.help_requested) sessionCell.append(el('span', { class: 'badge muted-badge' }, 'Asked for help'), ' ');
  sessionCell.append(el('span', { class: 'session-id' }, id));
  tr.append(
    sessionCell,
    el('td', { 'data-label': 'User' }, s.user_id || ''),
    el('td', { 'data-label': 'Name' }, s.name || ''),
    el('td', { 'data-label': 'Started' }, formatTime(s.start_time)),
    el('td', { class: 'status', 'data-label': 'Status' }, s.is_active ? 'Active' : 'Ended'),
    el('td', { 'data-label': 'Messages' }, String(s.message_count ?? 0)),
    el('td', { 'data-label': 'Tokens' }, String(s.total_tokens ?? 0)),
    el('td', { class: 'assisted-by', 'data-label': 'Assisted by' }, held || (s.admin_assisted ? 'Earlier' : '')),
    el('td', { class: 'actions', 'data-label': 'Action' }, open, takeover),
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


// ---- Conversation panel and takeover ----------------------------------------------------------

const NAMES = { user: 'User', ai: 'Assistant', admin: 'Administrator' };

function showPanel(show) {
  ui.panel.hidden = !show;
  ui.inbox.classList.toggle('with-conversation', show);
  for (const tr of ui.results.querySelectorAll('tr.session-row')) {
    tr.classList.toggle('selected', show && tr.dataset.sessionId === view.session);
  }
}

/** The panel's state line and buttons for the session shown. */
function showConversationState() {
  const d = view.detail;
  if (!d) return;
  const mine = chat.session === view.session;
  const parts = [`User ${d.user_id || '?'}`, d.is_active ? 'active' : 'ended'];
  if (d.help_requested) parts.push('asked for help');
  if (mine) parts.push('you are assisting');
  else if (d.assisting_admin_name) parts.push(`assisted by ${d.assisting_admin_name}`);
  else if (d.admin_assisted) parts.push('assisted earlier');
  ui.conversationState.textContent = parts.join(' · ');
  ui.panelActions.hidden = mine;
  ui.composer.hidden = !mine;
  ui.panelTakeover.disabled = !d.is_active || Boolean(d.assisting_admin_name && !mine);
}

/** Reads session `id` (GET {P}/admin/sessions/{id}) and shows its whole transcript in the
 *  panel; false when it could not be read. */
async function loadConversation(id) {
  const answer = await api('GET', `/admin/sessions/${encodeURIComponent(id)}`, token);
  if (!answer.ok) {
    showError(answer.message);
    return false;
  }
  if (view.session !== id) return false; // another session was opened meanwhile
  const d = answer.body || {};
  view.detail = d;
  const messages = Array.isArray(d.messages) ? d.messages : [];
  view.count = messages.length;
  seen.set(id, Math.max(messages.length, Number(rows.get(id)?.message_count ?? 0)));
  const badge = ui.results.querySelector(`tr.session-row[data-session-id="${CSS.escape(id)}"] .unread-badge`);
  if (badge) badge.remove();
  replies.finish();
  const nodes = messages.map((m) => {
    const { sender, text } = bubbleOf(m);
    const node = messageNode(sender, text, { name: NAMES[sender], timestamp: m.timestamp, interrupted: isInterrupted(m) });
    showAttachment(node, m);
    if (sender === 'ai') node.dataset.streaming = 'false';
    return node;
  });
  if (nodes.length === 0) nodes.push(messageNode('system', 'No messages yet.'));
  ui.messages.replaceChildren(...nodes);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  ui.panelHeading.textContent = d.name ? `Conversation: ${d.name}` : 'Conversation';
  showConversationState();
  return true;
}

/** Shows session `id` in the panel (the one being assisted stays assisted). */
async function openConversation(id) {
  if (chat.session && chat.session !== id) {
    // One panel: opening another session hands the assisted one back first.
    if (!window.confirm('Hand the session you are assisting back to the AI and open this one?')) return;
    await leave();
  }
  view.session = id;
  view.detail = null;
  showError('');
  if (await loadConversation(id)) {
    showPanel(true);
    ui.messages.focus(); // also brings the panel into view where it sits below the list
  }
}

async function takeOver(id) {
  if (chat.session && chat.session !== id) {
    if (!window.confirm('Hand the session you are assisting back to the AI and take this one over?')) return;
    await leave();
  }
  const answer = await api('POST', `/admin/takeover/${encodeURIComponent(id)}`, token);
  if (!answer.ok) {
    showError(answer.message);
    return;
  }
  showError('');
  chat.session = id;
  chat.leaving = false;
  chat.attempt = 0;
  view.session = id;
  // The whole conversation so far, then the live one.
  await loadConversation(id);
  appendAdmin(messageNode('system', 'You joined this session. The user sees that you are assisting.'));
  showConversationState();
  showPanel(true);
  connectAdmin();
  ui.input.focus();
  refreshList();
}

function setConn(stateName, text) {
  ui.adminConn.dataset.state = stateName;
  ui.adminConn.textContent = text;
  ui.adminConn.hidden = stateName === 'closed'; // only while this admin chats live
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
      setConn('closed', '');
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
    case 'voice_message': {
      const node = messageNode('user', bubbleOf(frame).text, { name: 'User', timestamp: frame.timestamp });
      showAttachment(node, frame);
      appendAdmin(node);
      break;
    }
    case 'ai_response':
      replies.onFrame(frame);
      break;
    case 'admin_leave':
      // Cleared (here or by another admin): the conversation stays shown, read-only.
      endAssist();
      appendAdmin(messageNode('system', frame.content || 'The session was handed back to the AI.'));
      refreshList();
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

/** Stops assisting on this page: closes the socket; the panel stays, read-only. */
function endAssist() {
  chat.leaving = true;
  chat.session = '';
  clearTimeout(chat.timer);
  replies.finish();
  if (chat.ws) {
    const ws = chat.ws;
    chat.ws = null;
    ws.close();
  }
  setConn('closed', '');
  if (view.detail) view.detail = { ...view.detail, assisting_admin_name: '', admin_assisted: true };
  showConversationState();
}

/** Hands the assisted session back to the AI. */
async function leave() {
  const id = chat.session;
  if (!id) return;
  const answer = await api('POST', `/admin/leave/${encodeURIComponent(id)}`, token);
  // The HTTP route needs the session in this process's memory; the frame works wherever the
  // admin's socket is bound.
  if (!answer.ok && !sendFrame(chat.ws, { type: 'admin_leave', session_id: id, sender: 'admin' })) {
    showError(answer.message);
  }
  endAssist();
  appendAdmin(messageNode('system', 'You handed the session back to the AI.'));
  refreshList();
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
ui.panelTakeover.addEventListener('click', () => view.session && takeOver(view.session));
ui.panelClose.addEventListener('click', () => {
  // What was on screen counts as read, the admin's own live lines included.
  const shown = rows.get(view.session);
  if (shown) seen.set(view.session, Number(shown.message_count ?? 0));
  view.session = '';
  view.detail = null;
  showPanel(false);
});

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
  // Live first, so nothing between the first read of the list and the stream is missed.
  startLive();
  await refreshAll();
});
const form = wireTokenForm(tokens);
tokens.start({
  showForm: () => form.show(),
  noToken: () => showError('No token: open this page with ?token=<admin JWT>.'),
});
// On a phone the extra filters start folded, so the list comes sooner.
if (window.matchMedia('(max-width: 40rem)').matches) $('more-filters').open = false;
startPolling();
