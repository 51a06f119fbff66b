// The "my sessions" page: the caller's sessions (GET {P}/sessions), a read-only transcript
// (GET {P}/sessions/{id}), a share link (POST {P}/sessions/{id}/share) and its revocation
// (DELETE {P}/sessions/{id}/share, issue 15), and ending a session after a confirmation
// (POST {P}/sessions/{id}/end). PROTOCOL.md §4.1–§4.4.

import {
  $, TokenSource, api, apiBase, copyText, el, formatTime, pageLink, renderTranscript, wireTokenForm,
} from './common.js';

const ui = {
  error: $('error-banner'),
  errorText: $('error-text'),
  table: $('sessions-table'),
  body: $('sessions-table').querySelector('tbody'),
  empty: $('sessions-empty'),
  refresh: $('refresh-sessions'),
  sharePanel: $('share-panel'),
  shareLink: $('share-link'),
  copy: $('copy-share'),
  revoke: $('revoke-share'),
  shareStatus: $('share-status'),
  transcriptPanel: $('transcript-panel'),
  transcriptHeading: $('transcript-heading'),
  transcript: $('transcript'),
  chatLink: $('chat-link'),
};

let token = '';
let sharedId = ''; // the session whose link the share panel shows

function showError(message) {
  ui.errorText.textContent = message;
  ui.error.hidden = !message;
}

function statusText(session) {
  return session.is_active ? 'Active' : 'Ended';
}

function row(session) {
  const id = session.id || session.session_id;
  const tr = el('tr', { class: 'session-row', 'data-session-id': id });
  const name = session.name || 'Untitled conversation';
  tr.append(
    el('td', { class: 'name', 'data-label': 'Name' }, name),
    el('td', { class: 'time', 'data-label': 'Started' }, el('time', { datetime: session.start_time || '' }, formatTime(session.start_time))),
    el('td', { class: 'count', 'data-label': 'Messages' }, String(session.message_count ?? 0)),
    el('td', { class: 'status', 'data-label': 'Status' }, statusText(session)),
  );
  const open = el('button', { type: 'button', class: 'open-session secondary', 'aria-label': `Open ${name}` }, 'Open');
  const share = el('button', { type: 'button', class: 'share-session secondary', 'aria-label': `Share ${name}` }, 'Share');
  const end = el('button', { type: 'button', class: 'end-session danger', 'aria-label': `End ${name}`, disabled: !session.is_active }, 'End');
  open.addEventListener('click', () => openSession(id, name));
  share.addEventListener('click', () => shareSession(id));
  end.addEventListener('click', () => endSession(id, name, tr, end));
  tr.append(el('td', { class: 'actions', 'data-label': 'Actions' }, open, share, end));
  return tr;
}

async function load() {
  if (!token) return;
  const answer = await api('GET', '/sessions', token);
  if (!answer.ok) {
    showError(answer.message);
    return;
  }
  showError('');
  const sessions = Array.isArray(answer.body?.sessions) ? answer.body.sessions : [];
  ui.body.replaceChildren(...sessions.map(row));
  ui.empty.hidden = sessions.length > 0;
}

async function openSession(id, name) {
  const answer = await api('GET', `/sessions/${encodeURIComponent(id)}`, token);
  if (!answer.ok) {
    showError(answer.message);
    return;
  }
  showError('');
  ui.transcriptHeading.textContent = `Transcript: ${answer.body?.name || name}`;
  renderTranscript(ui.transcript, answer.body?.messages);
  ui.transcriptPanel.hidden = false;
  ui.transcript.focus();
}

async function shareSession(id) {
  const answer = await api('POST', `/sessions/${encodeURIComponent(id)}/share`, token);
  if (!answer.ok) {
    showError(answer.message);
    return;
  }
  showError('');
  const shareToken = answer.body?.share_token || '';
  sharedId = id;
  ui.revoke.disabled = false;
  ui.copy.disabled = false;
  ui.shareLink.value = `${location.origin}${apiBase()}/view/${encodeURIComponent(shareToken)}`;
  ui.shareStatus.textContent = '';
  ui.sharePanel.hidden = false;
  ui.shareLink.focus();
  ui.shareLink.select();
}

/** Revokes the link shown: the old link stops working; sharing again makes a new one. */
async function revokeShare() {
  if (!sharedId) return;
  const answer = await api('DELETE', `/sessions/${encodeURIComponent(sharedId)}/share`, token);
  if (!answer.ok) {
    showError(answer.message);
    return;
  }
  showError('');
  sharedId = '';
  ui.shareLink.value = '';
  ui.revoke.disabled = true;
  ui.copy.disabled = true;
  ui.shareStatus.textContent = 'Link revoked: it no longer works. Share again for a new link.';
}

async function endSession(id, name, tr, button) {
  if (!window.confirm(`End "${name}"? It can no longer be continued.`)) return;
  button.disabled = true;
  const answer = await api('POST', `/sessions/${encodeURIComponent(id)}/end`, token);
  if (!answer.ok) {
    button.disabled = false;
    showError(answer.message);
    return;
  }
  showError('');
  tr.querySelector('.status').textContent = 'Ended';
  // Refresh the row's other figures from the server (the list is the source of truth).
  const list = await api('GET', '/sessions', token);
  const fresh = list.ok ? (list.body?.sessions || []).find((s) => (s.id || s.session_id) === id) : null;
  if (fresh) tr.replaceWith(row({ ...fresh, is_active: false }));
}

ui.copy.addEventListener('click', async () => {
  const copied = await copyText(ui.shareLink.value);
  if (!copied) {
    ui.shareLink.focus();
    ui.shareLink.select();
  }
  ui.shareStatus.textContent = copied ? 'Copied' : 'Selected: press Ctrl+C (or Cmd+C) to copy';
});

ui.revoke.addEventListener('click', revokeShare);

ui.refresh.addEventListener('click', load);

const tokens = new TokenSource((fresh) => {
  token = fresh;
  ui.chatLink.href = pageLink('chat', fresh);
  form.hide();
  load();
});
const form = wireTokenForm(tokens);
tokens.start({
  showForm: () => form.show(),
  noToken: () => showError('No token: open this page with ?token=<JWT>.'),
});
