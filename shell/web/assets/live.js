// The admin consoles' live events (issue 15): GET {P}/admin/events read as server-sent events
// with `fetch` streaming, because a browser's EventSource cannot send the Authorization header the
// admin API takes (and a token in a URL ends up in logs). Reconnects with the pages' backoff
// (1 s doubling to 30 s) and calls `onState('live' | 'reconnecting' | 'refused')`; every event
// is handed to `onEvent(name, data)`, `ready` included (a (re)connected stream: the console
// re-reads its list to catch up on what it missed meanwhile).

import { apiBase, backoffDelay } from './common.js';

/** Follows the event stream with the token `token()` returns; returns a function that stops it. */
export function followAdminEvents(token, onEvent, onState) {
  let stopped = false;
  let attempt = 0;
  let controller = null;
  let timer = 0;

  async function connect() {
    controller = new AbortController();
    let response;
    try {
      response = await fetch(`${apiBase()}/admin/events`, {
        headers: { Accept: 'text/event-stream', Authorization: `Bearer ${token()}` },
        cache: 'no-store',
        signal: controller.signal,
      });
    } catch {
      return retry();
    }
    if (response.status === 401 || response.status === 403) {
      onState('refused');
      return undefined; // a token without the role will not do better on a retry
    }
    if (!response.ok || !response.body) return retry();
    attempt = 0;
    onState('live');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch {
      // Aborted or dropped: reconnect below.
    }
    return retry();
  }

  function dispatch(block) {
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) name = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (data.length === 0) return; // a keep-alive comment
    let parsed = null;
    try {
      parsed = JSON.parse(data.join('\n'));
    } catch {
      return;
    }
    onEvent(name, parsed);
  }

  function retry() {
    if (stopped) return;
    onState('reconnecting');
    const delay = backoffDelay(attempt);
    attempt += 1;
    timer = setTimeout(connect, delay);
  }

  connect();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (controller) controller.abort();
  };
}
