'use strict';
// The real-browser harness: the real `chatbox` binary on 127.0.0.1, JWTs minted here with the
// server's secret, Debian's Chromium driven by playwright-core, and small loopback servers the
// tests need (a scripted OpenAI-compatible upstream, a webhook recorder, an embedding page).
//
// - startServer(opts) spawns `chatbox serve --port 0` (never --dev) with a clean environment, a
//   fresh data directory and a strong random JWT_SECRET, and waits for its `listening on ADDR`
//   line on stdout (stderr goes to a log file whose tail is printed when a test fails).
//   server.stop() sends SIGTERM (SIGKILL after 15 s); server.restart() starts it again on the
//   same port and data directory, so a page's reconnect finds it.
// - launchBrowser() starts headless Chromium (/usr/bin/chromium, or CHROMIUM_PATH).
// - Everything started is stopped by cleanup() (each test file calls it in `after`).
//
// Environment: CHATBOX_BIN (default target/debug/chatbox), CHROMIUM_PATH (default
// /usr/bin/chromium), BROWSER_ARTIFACTS (default target/browser-artifacts), CHATBOX_TOOLS (the
// cache scripts/browser-install.sh fills), BROWSER_SERVER_LOG_LEVEL (default info).

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const REPO = path.resolve(__dirname, '..', '..');
const PREFIX = '/chatbox';
const BINARY = process.env.CHATBOX_BIN || path.join(REPO, 'target', 'debug', 'chatbox');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = process.env.BROWSER_ARTIFACTS
  ? path.resolve(process.env.BROWSER_ARTIFACTS)
  : path.join(REPO, 'target', 'browser-artifacts');
const STARTUP_LIMIT_MS = 20000;
const LOG_TAIL_LINES = 60;

/** Desktop and phone viewports of the screenshots and layout checks. */
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 740 };

/** playwright-core: from NODE_PATH / a node_modules above, else from the install cache. */
function playwright() {
  try {
    return require('playwright-core');
  } catch (_) {
    const tools = process.env.CHATBOX_TOOLS || path.join(os.homedir(), '.cache', 'chatbox-tools');
    const cached = path.join(tools, 'browser', 'node_modules', 'playwright-core');
    try {
      return require(cached);
    } catch (error) {
      throw new Error(
        `playwright-core not found (looked in NODE_PATH and ${cached}); run scripts/browser-install.sh\n${error}`,
      );
    }
  }
}

/** The source of axe-core's browser build (axe.min.js): from NODE_PATH, else the install cache. */
function axeSource() {
  let file;
  try {
    file = require.resolve('axe-core/axe.min.js');
  } catch (_) {
    const tools = process.env.CHATBOX_TOOLS || path.join(os.homedir(), '.cache', 'chatbox-tools');
    file = path.join(tools, 'browser', 'node_modules', 'axe-core', 'axe.min.js');
    if (!fs.existsSync(file)) {
      throw new Error(`axe-core not found (looked in NODE_PATH and ${file}); run scripts/browser-install.sh`);
    }
  }
  return fs.readFileSync(file, 'utf8');
}

/**
 * Runs axe-core on `page` as it is now and returns its serious and critical violations as
 * `{id, impact, help, targets}`. axe is evaluated through the DevTools protocol, so the pages'
 * CSP (no inline script) stays in force for the page's own code.
 */
async function accessibilityViolations(page) {
  const loaded = await page.evaluate(() => typeof window.axe === 'object');
  if (!loaded) await page.evaluate(axeSource());
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
    }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

const cleanups = [];

// Server processes still running: killed when this process ends, however it ends, so a crashed
// or interrupted test file never leaves a server behind.
const liveChildren = new Set();
function killLiveChildren() {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch (_) {
      /* already gone */
    }
  }
}
process.on('exit', killLiveChildren);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killLiveChildren();
    process.kill(process.pid, signal);
  });
}

/**
 * The usual set-up of a test file: one server with the default options and one browser,
 * started before its tests (handed to `use` as `{ server, browser }`) and stopped after them.
 */
function serverAndBrowser(use) {
  const test = require('node:test');
  test.before(async () => {
    const server = await startServer();
    const browser = await launchBrowser();
    use({ server, browser });
  });
  test.after(cleanup);
}

/** Registers `fn` to run (newest first) in cleanup(). */
function onCleanup(fn) {
  cleanups.push(fn);
}

/** Stops everything started through this module (browsers, servers, temp dirs). */
async function cleanup() {
  while (cleanups.length > 0) {
    const fn = cleanups.pop();
    try {
      await fn();
    } catch (error) {
      console.error('cleanup step failed:', error);
    }
  }
}

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

/** An HS256 JWT with exactly `claims`, signed with `secret`. */
function signJwt(secret, claims) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** A strong secret the server accepts (≥ 32 bytes, none of the weak words, e.g. `12345`). */
function strongSecret() {
  for (;;) {
    const secret = crypto.randomBytes(32).toString('hex');
    if (!/12345|dead|beef/.test(secret)) return secret;
  }
}

/** Resolves after `ms` milliseconds. */
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `fn` until it returns a truthy value (returned) or `ms` pass (throws with `what`). */
async function waitFor(fn, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
    await sleep(50);
  }
}

/** The last `lines` lines of a file, framed for a failure message. */
function tail(file, lines = LOG_TAIL_LINES) {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (_) {
    /* no log yet */
  }
  const all = text.split('\n');
  return `---- chatbox stderr (${file}, last ${lines} lines) ----\n${all.slice(-lines).join('\n')}\n---- end ----`;
}

/**
 * Adds the next provider `LLM_PROVIDER_<n>_*` to `env`: `{id, name, type, endpoint}`; an echo
 * provider needs only id and name.
 */
function providerEnv(providers) {
  const env = {};
  providers.forEach((p, i) => {
    const n = i + 1;
    env[`LLM_PROVIDER_${n}_ID`] = p.id;
    env[`LLM_PROVIDER_${n}_NAME`] = p.name;
    env[`LLM_PROVIDER_${n}_TYPE`] = p.type || 'echo';
    if (p.endpoint) {
      env[`LLM_PROVIDER_${n}_ENDPOINT`] = p.endpoint;
      env[`LLM_PROVIDER_${n}_API_KEY`] = `sk-browser-${n}-0123456789abcdef`;
      env[`LLM_PROVIDER_${n}_MODEL`] = `scripted-${p.type}`;
    }
  });
  return env;
}

/**
 * Starts `chatbox serve` on 127.0.0.1.
 * opts.env: extra environment; opts.providers: [{id, name, type?, endpoint?}] (default one echo
 * provider `echo` / "Echo"); opts.port (default 0); opts.dev: `serve --dev` (no JWT_SECRET, no
 * provider: the server makes its own secret, so server.token() does not apply; take the tokens
 * from server.stdout).
 */
async function startServer(opts = {}) {
  if (!fs.existsSync(BINARY)) {
    throw new Error(`the chatbox binary is missing at ${BINARY}; build it (cargo build -p chatbox --bin chatbox) or set CHATBOX_BIN`);
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chatbox-browser-'));
  const dataDir = path.join(root, 'data');
  fs.mkdirSync(dataDir);
  const secret = strongSecret();
  const providers = opts.providers || [{ id: 'echo', name: 'Echo' }];
  const env = {
    PATH: process.env.PATH || '/usr/bin:/bin',
    SERVER_HOST: '127.0.0.1',
    LOG_FORMAT: 'text',
    LOG_LEVEL: process.env.BROWSER_SERVER_LOG_LEVEL || 'info',
    NO_COLOR: '1',
    // The console makes a few admin requests per action; the default 20/min is for production.
    ADMIN_RATE_LIMIT: '1000',
    // `serve --dev` needs no configuration: it makes its own secret and uses the echo model.
    ...(opts.dev ? {} : providerEnv(providers)),
    ...(opts.env || {}),
    ...(opts.dev ? {} : { JWT_SECRET: secret }),
    DATA_DIR: dataDir,
  };
  const server = {
    root,
    dataDir,
    secret,
    env,
    generation: 0,
    child: null,
    port: 0,
    logFile: null,
    exited: null,
    stdout: [], // every line the server printed on stdout (the --dev banner, `listening on`)
  };

  server.origin = () => `http://127.0.0.1:${server.port}`;
  server.url = (p) => `${server.origin()}${PREFIX}${p}`;
  server.pageUrl = (page, token) =>
    token ? `${server.url(page)}?token=${encodeURIComponent(token)}` : server.url(page);
  server.token = (userId, { roles = ['user'], name, ttl = 3600 } = {}) => {
    const claims = { user_id: userId, roles, exp: Math.floor(Date.now() / 1000) + ttl };
    if (name !== undefined) claims.name = name;
    return signJwt(secret, claims);
  };
  server.adminToken = (userId, name) => server.token(userId, { roles: ['admin'], name });
  server.tail = () => tail(server.logFile);
  server.log = () => {
    try {
      return fs.readFileSync(server.logFile, 'utf8');
    } catch (_) {
      return '';
    }
  };
  /** fetch() of `{P}<p>` with the token as a bearer header; the JSON body and status. */
  server.api = async (method, p, token) => {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(server.url(p), { method, headers });
    const text = await response.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch (_) {
      /* not JSON */
    }
    return { status: response.status, json, text, headers: response.headers };
  };

  server.spawn = async (port) => {
    server.generation += 1;
    server.logFile = path.join(root, `stderr-${server.generation}.log`);
    const log = fs.openSync(server.logFile, 'w');
    const args = ['serve', '--port', String(port)];
    if (opts.dev) args.push('--dev', '--data-dir', dataDir);
    const child = spawn(BINARY, args, {
      env,
      stdio: ['ignore', 'pipe', log],
    });
    fs.closeSync(log);
    liveChildren.add(child);
    child.once('exit', () => liveChildren.delete(child));
    server.child = child;
    server.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const lines = readline.createInterface({ input: child.stdout });
    const addr = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out')), STARTUP_LIMIT_MS);
      lines.on('line', (line) => {
        server.stdout.push(line);
        const m = /^listening on (\S+)$/.exec(line.trim());
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${code ?? signal}`));
      });
    }).catch((error) => {
      child.kill('SIGKILL');
      throw new Error(`chatbox did not report "listening on ADDR" (${error.message})\n${server.tail()}`);
    });
    // Keep draining stdout so the server never blocks on a full pipe.
    server.port = Number(addr.slice(addr.lastIndexOf(':') + 1));
    return server;
  };

  /** SIGTERM (graceful: close 1001 to every socket), SIGKILL after 15 s; resolves on exit. */
  server.stop = async () => {
    const child = server.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 15000);
    await server.exited;
    clearTimeout(killer);
  };

  /** SIGKILL: the sockets end without a close frame, as when a machine dies. */
  server.kill = async () => {
    const child = server.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await server.exited;
  };

  /** Stops the server (if still running) and starts it again on the same port and data
   * directory. */
  server.restart = async () => {
    const port = server.port;
    await server.stop();
    let lastError;
    for (let attempt = 0; attempt < 20; attempt += 1) {
      try {
        return await server.spawn(port);
      } catch (error) {
        lastError = error; // the port may still be held for a moment
        await sleep(250);
      }
    }
    throw lastError;
  };

  onCleanup(async () => {
    await server.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });
  await server.spawn(opts.port || 0);
  return server;
}

/** Headless Chromium; closed by cleanup(). */
async function launchBrowser() {
  const { chromium } = playwright();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--no-first-run',
    ],
  });
  onCleanup(() => browser.close());
  return browser;
}

/**
 * A new context + page; records console errors, page errors and dialogs on `page.records` so a
 * test can assert that no dialog fired (e.g. an injected `alert`).
 */
async function newPage(browser, { viewport = DESKTOP, ...options } = {}) {
  // A fixed zone and locale: datetime-local filters and the screenshots do not depend on the
  // machine's settings.
  const context = await browser.newContext({ viewport, timezoneId: 'UTC', locale: 'en-US', ...options });
  const page = await context.newPage();
  page.records = { dialogs: [], pageErrors: [], console: [] };
  page.on('dialog', (dialog) => {
    page.records.dialogs.push({ type: dialog.type(), message: dialog.message() });
    // confirm() is how a page may ask "End this session?": say yes; alerts are only recorded.
    dialog.accept().catch(() => {});
  });
  page.on('pageerror', (error) => page.records.pageErrors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') page.records.console.push(message.text());
  });
  page.setDefaultTimeout(10000);
  return page;
}

/** Path of the artifacts directory (created). */
function artifactsDir() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}

/** Saves a full-page screenshot `<name>.png` into the artifacts directory; its path. */
async function screenshot(page, name) {
  const file = path.join(artifactsDir(), `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Starts an HTTP server on 127.0.0.1:0 with `handler`; `{server, port, url}`; closed by cleanup(). */
async function listen(handler) {
  const srv = http.createServer(handler);
  const sockets = new Set();
  srv.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = srv.address().port;
  onCleanup(
    () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  );
  return { server: srv, port, url: `http://127.0.0.1:${port}` };
}

function readBody(req) {
  return new Promise((resolve) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
  });
}

/**
 * A scripted OpenAI-compatible upstream: `POST /v1/chat/completions` answers with
 * `text/event-stream` chunks. `script(lastUserText, body)` returns `{chunks: [..], delayMs}`
 * (default: the user's text in 4 pieces, 250 ms apart). Endpoint for chatbox: `up.endpoint`.
 * `up.requests` records every request body.
 */
async function scriptedUpstream(script) {
  const requests = [];
  const plan =
    script ||
    ((text) => {
      const size = Math.max(1, Math.ceil(text.length / 4));
      const chunks = [];
      for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
      return { chunks, delayMs: 250 };
    });
  const up = await listen(async (req, res) => {
    const raw = await readBody(req);
    if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
      res.writeHead(404).end('not found');
      return;
    }
    let body = {};
    try {
      body = JSON.parse(raw);
    } catch (_) {
      /* recorded as is */
    }
    requests.push(body);
    const users = (body.messages || []).filter((m) => m.role === 'user');
    const last = users.length > 0 ? String(users[users.length - 1].content) : '';
    const { chunks, delayMs = 250 } = plan(last, body);
    if (!body.stream) {
      const text = chunks.join('');
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: text } }], usage: { total_tokens: 1 } }));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    for (const chunk of chunks) {
      await sleep(delayMs);
      if (closed) return;
      res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: chunk } }] })}\n\n`);
    }
    await sleep(delayMs);
    if (!closed) res.end('data: [DONE]\n\n');
  });
  up.endpoint = `${up.url}/v1`;
  up.requests = requests;
  return up;
}

/** Records every POST body (JSON) it receives: `rec.received`; answers 200. */
async function webhookRecorder() {
  const received = [];
  const rec = await listen(async (req, res) => {
    const raw = await readBody(req);
    let json = null;
    try {
      json = JSON.parse(raw);
    } catch (_) {
      /* kept as text */
    }
    received.push({ method: req.method, url: req.url, body: json ?? raw });
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
  });
  rec.received = received;
  return rec;
}

/**
 * Runs a WebSocket chat from inside `page` (which must be on the server's origin, e.g. at
 * `{P}/healthz`): connects with `?token=`, sends each text as a `user_message` in one session and
 * waits for each reply's `done`. Resolves to the session id the server adopted.
 */
async function wsChat(page, server, token, texts) {
  await page.goto(server.url('/healthz'));
  return page.evaluate(
    async ({ wsUrl, texts }) => {
      const ws = new WebSocket(wsUrl);
      const frames = [];
      let wake = () => {};
      ws.onmessage = (e) => {
        frames.push(JSON.parse(e.data));
        wake();
      };
      const next = (pred, ms) =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no frame in time; seen ${JSON.stringify(frames)}`)), ms);
          const check = () => {
            const i = frames.findIndex(pred);
            if (i >= 0) {
              clearTimeout(timer);
              const [f] = frames.splice(0, i + 1).slice(-1);
              resolve(f);
            } else wake = check;
          };
          check();
        });
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error('websocket error'));
      });
      let session = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
      for (const content of texts) {
        ws.send(JSON.stringify({ type: 'user_message', session_id: session, content, sender: 'user' }));
        const done = await next(
          (f) => (f.type === 'ai_response' && f.metadata && f.metadata.done === 'true') || f.type === 'error',
          10000,
        );
        if (done.type === 'error') throw new Error(`error frame: ${JSON.stringify(done)}`);
        session = done.session_id;
      }
      ws.close();
      return session;
    },
    { wsUrl: `ws://127.0.0.1:${server.port}${PREFIX}/ws?token=${encodeURIComponent(token)}`, texts },
  );
}

/** Attaches the server log tail to an assertion failure (wrap a test body). */
function withServerLog(servers, fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (error) {
      const list = Array.isArray(servers) ? servers : [servers];
      for (const s of list) {
        const server = typeof s === 'function' ? s() : s;
        if (server && server.logFile) console.error(server.tail());
      }
      throw error;
    }
  };
}

module.exports = {
  accessibilityViolations,
  ARTIFACTS,
  BINARY,
  CHROMIUM,
  DESKTOP,
  PHONE,
  PREFIX,
  REPO,
  artifactsDir,
  cleanup,
  launchBrowser,
  listen,
  newPage,
  onCleanup,
  playwright,
  screenshot,
  scriptedUpstream,
  serverAndBrowser,
  signJwt,
  sleep,
  startServer,
  waitFor,
  webhookRecorder,
  withServerLog,
  wsChat,
};
