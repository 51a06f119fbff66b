// The public read-only view of a shared conversation: {P}/view/{shareToken} reads the JSON of
// GET {P}/shared/{shareToken} (PROTOCOL.md §4.5). No token, no input.

import { $, api, renderTranscript } from './common.js';

const name = $('session-name');
const transcript = $('transcript');
const error = $('error-banner');
const errorText = $('error-text');

async function load() {
  const share = decodeURIComponent(location.pathname.replace(/\/+$/, '').split('/').pop() || '');
  const answer = await api('GET', `/shared/${encodeURIComponent(share)}`);
  if (!answer.ok) {
    errorText.textContent = answer.status === 404
      ? 'This shared conversation does not exist (the link may be mistyped).'
      : answer.message;
    error.hidden = false;
    return;
  }
  const title = answer.body?.name || 'Shared conversation';
  name.textContent = title;
  document.title = title;
  // The reader is not the owner: the owner's lines are the user's, not "You".
  renderTranscript(transcript, answer.body?.messages, { user: 'User' });
}

load();
