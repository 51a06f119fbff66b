//! The black-box harness: the real `chatbox` binary on 127.0.0.1 and real WebSocket clients.
//!
//! - [`Server`] spawns `chatbox serve --port 0` (never `--dev`) with a fresh temporary data
//!   directory, a strong random `JWT_SECRET` and the environment of a [`ServerOpts`] (nothing is
//!   inherited from the test process), waits for its `listening on ADDR` line, keeps its stderr
//!   in a file (whose tail is printed when a [`Server`] is dropped during a panic), mints tokens
//!   with the same secret, stops it with SIGTERM and restarts it on the same data directory.
//!   The process is killed when the [`Server`] is dropped.
//! - [`Client`] is a WebSocket client (tokio-tungstenite) with bounded waits: every receive
//!   takes a timeout, so a missing frame fails the test instead of hanging it.
//! - [`HttpResponse`] comes from [`Server::http_get`] / [`Server::ws_handshake`], raw HTTP/1.1
//!   requests used to check handshake refusals (status, headers, body).
//! - [`check_config`] runs `chatbox check-config` with a given environment.
//!
//! The binary is looked up next to the test executable (`target/<profile>/chatbox`); when it
//! is missing it is built once with `cargo build -p chatbox --bin chatbox`. An existing binary
//! is used as it is, so build it before running the tests (CI does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::upstream::Upstream;

/// How long a server may take to print its `listening on` line.
const STARTUP_LIMIT: Duration = Duration::from_secs(20);
/// Lines of server stderr printed when a test fails.
const LOG_TAIL_LINES: usize = 80;
/// The route prefix the harness servers use (the default).
pub const PREFIX: &str = "/chatbox";
/// The provider id [`ServerOpts::with_upstream`] configures first.
pub const DEFAULT_MODEL: &str = "openai-gpt4";

/// The path of the `chatbox` binary, built once if it is missing.
///
/// # Panics
/// When the binary is missing and `cargo build -p chatbox --bin chatbox` fails.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of the test executable");
        // target/<profile>/deps/<test>-<hash> → target/<profile>/chatbox
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps");
        let binary = profile_dir.join(format!("chatbox{}", std::env::consts::EXE_SUFFIX));
        if !binary.exists() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "-p", "chatbox", "--bin", "chatbox"])
                .status();
            match status {
                Ok(status) if status.success() && binary.exists() => {}
                other => panic!(
                    "the chatbox binary is missing at {} and `cargo build -p chatbox --bin \
                     chatbox` failed ({other:?}); build it first",
                    binary.display()
                ),
            }
        }
        binary
    })
}

/// Configuration of one harness server: environment variables passed to the binary.
///
/// Defaults: `SERVER_HOST=127.0.0.1`, `LOG_FORMAT=text`, `LOG_LEVEL=debug`, `NO_COLOR=1`; the
/// harness adds
/// `JWT_SECRET` and `DATA_DIR`. No provider is configured until one is added.
#[derive(Debug, Clone)]
pub struct ServerOpts {
    env: BTreeMap<String, String>,
    providers: usize,
}

impl Default for ServerOpts {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerOpts {
    /// The defaults, without any provider.
    pub fn new() -> Self {
        let mut env = BTreeMap::new();
        for (key, value) in [
            ("SERVER_HOST", "127.0.0.1"),
            ("LOG_FORMAT", "text"),
            ("LOG_LEVEL", "debug"),
            ("NO_COLOR", "1"),
        ] {
            env.insert(key.to_string(), value.to_string());
        }
        if let Some(uri) = crate::mongo::shared_uri() {
            env.insert("MONGO_URI".into(), uri);
            env.insert("MONGO_DATABASE".into(), crate::mongo::fresh_database());
            env.insert("MONGO_CONNECT_TIMEOUT".into(), "2s".into());
            env.insert("MONGO_SERVER_SELECTION_TIMEOUT".into(), "2s".into());
            // The CI's SecantusDB is one Python process shared by every test running at once on
            // a 2-core box: a first call on a fresh database can take seconds there, which the
            // 2 s production default would count as an outage (tests of the deadline set theirs).
            env.insert("STORE_CALL_TIMEOUT".into(), "20s".into());
        }
        Self { env, providers: 0 }
    }

    /// Uses the embedded store even when the run asks for MongoDB (for tests that inspect the
    /// data directory's files).
    #[must_use]
    pub fn embedded_store(mut self) -> Self {
        self.env.retain(|key, _| !key.starts_with("MONGO_"));
        self
    }

    /// Uses the MongoDB at `uri`, in a database of its own.
    #[must_use]
    pub fn mongo(mut self, uri: &str) -> Self {
        // A test's own database (an outage test, say) runs under the production deadline.
        self.env.remove("STORE_CALL_TIMEOUT");
        self.env("MONGO_URI", uri)
            .env("MONGO_DATABASE", &crate::mongo::fresh_database())
            .env("MONGO_CONNECT_TIMEOUT", "1s")
            .env("MONGO_SERVER_SELECTION_TIMEOUT", "1s")
    }

    /// The defaults plus one OpenAI-compatible provider [`DEFAULT_MODEL`] on `upstream`.
    pub fn with_upstream(upstream: &Upstream) -> Self {
        Self::new().provider(DEFAULT_MODEL, "GPT-4", "openai", &upstream.url())
    }

    /// Sets an environment variable of the server.
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    /// Removes an environment variable of the server (e.g. one of the defaults).
    #[must_use]
    pub fn without(mut self, key: &str) -> Self {
        self.env.remove(key);
        self
    }

    /// Adds the next provider (`LLM_PROVIDER_<n>_*`, n = 1, 2, …) with upstream model
    /// `scripted-<kind>` and a fixed API key.
    #[must_use]
    pub fn provider(mut self, id: &str, name: &str, kind: &str, endpoint: &str) -> Self {
        self.providers += 1;
        let n = self.providers;
        for (field, value) in [
            ("ID", id.to_string()),
            ("NAME", name.to_string()),
            ("TYPE", kind.to_string()),
            ("ENDPOINT", endpoint.to_string()),
            ("API_KEY", format!("sk-harness-{n}-0123456789")),
            ("MODEL", format!("scripted-{kind}")),
        ] {
            self.env.insert(format!("LLM_PROVIDER_{n}_{field}"), value);
        }
        self
    }
}

/// A running (or stopped) `chatbox` process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addr: SocketAddr,
    secret: String,
    opts: ServerOpts,
    root: Arc<TempDir>,
    log: PathBuf,
    generation: u32,
    terminated_at: Option<Instant>,
    exit: Option<ExitStatus>,
}

impl Server {
    /// Starts a server with `opts` on a fresh data directory and a fresh secret.
    ///
    /// # Panics
    /// When the process exits or does not print `listening on ADDR` within 20 s (the stderr
    /// tail is printed).
    pub async fn start(opts: ServerOpts) -> Server {
        let root = tempfile::Builder::new().prefix("chatbox-it-").tempdir().expect("temp dir");
        // A `JWT_SECRET` in `opts` is kept (servers that must accept each other's tokens).
        let secret =
            opts.env.get("JWT_SECRET").cloned().unwrap_or_else(chatbox::app::cli::generate_secret);
        Self::spawn(opts, Arc::new(root), secret, 1).await
    }

    async fn spawn(
        opts: ServerOpts,
        root: Arc<TempDir>,
        secret: String,
        generation: u32,
    ) -> Server {
        let data_dir = root.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("create the data dir");
        let log = root.path().join(format!("stderr-{generation}.log"));
        let stderr = std::fs::File::create(&log).expect("create the stderr log");
        let launched = launch(binary(), &opts.env, &secret, &data_dir, stderr).await;
        let (child, addr) = match launched {
            Ok(launched) => launched,
            Err(error) => panic!("{error}\n{}", log_tail(&log, LOG_TAIL_LINES)),
        };
        Server { child, addr, secret, opts, root, log, generation, terminated_at: None, exit: None }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The JWT secret the server runs with.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The data directory (kept across [`Server::restart`]).
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The server's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server's stderr contains `needle`, at most `within`; whether it did.
    /// (For events with no observable frame, e.g. a sweep; polled every 20 ms.)
    pub async fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = now() + within;
        loop {
            if self.log_text().contains(needle) {
                return true;
            }
            if now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A token for `user` with `roles` and an optional `name`, valid for one hour.
    pub fn token(&self, user: &str, roles: &[&str], name: Option<&str>) -> String {
        let mut claims = json!({"user_id": user, "roles": roles, "exp": unix_now() + 3600});
        if let Some(name) = name {
            claims["name"] = json!(name);
        }
        self.token_with_claims(&claims)
    }

    /// An HS256 token with exactly these claims, signed with the server's secret.
    pub fn token_with_claims(&self, claims: &Value) -> String {
        sign(self.secret.as_bytes(), claims)
    }

    /// `ws://ADDR/chatbox/ws`, with `?query` when given.
    pub fn ws_url(&self, query: Option<&str>) -> String {
        match query {
            Some(q) => format!("ws://{}{PREFIX}/ws?{q}", self.addr),
            None => format!("ws://{}{PREFIX}/ws", self.addr),
        }
    }

    /// Opens a WebSocket with `Authorization: Bearer <token>` and reads the greeting.
    ///
    /// # Panics
    /// When the handshake is refused or no greeting arrives within 5 s.
    pub async fn connect(&self, token: &str) -> Client {
        let auth = format!("Bearer {token}");
        match Client::connect(&self.ws_url(None), &[("Authorization", &auth)]).await {
            Ok(client) => client,
            Err(refused) => panic!("handshake refused: {refused:?}\n{}", self.tail()),
        }
    }

    /// Opens a WebSocket to `?query` with extra headers; the refusal when the handshake fails.
    pub async fn try_connect(
        &self,
        query: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Client, Refused> {
        Client::connect(&self.ws_url(query), headers).await
    }

    /// A raw `GET` of `path_and_query` with `headers` (the answer is read whole).
    pub async fn http_get(&self, path_and_query: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http_get(self.addr, path_and_query, headers).await
    }

    /// A WebSocket upgrade request to `{P}/ws[?query]` as raw HTTP, with the standard upgrade
    /// headers plus `headers`; for checking refusals (status, headers, body).
    pub async fn ws_handshake(
        &self,
        query: Option<&str>,
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        let path = match query {
            Some(q) => format!("{PREFIX}/ws?{q}"),
            None => format!("{PREFIX}/ws"),
        };
        let mut all = vec![
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        all.extend_from_slice(headers);
        http_get(self.addr, &path, &all).await
    }

    /// Sends SIGTERM (the start of a graceful shutdown).
    pub fn sigterm(&mut self) {
        let pid = self.child.id().expect("the server is still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {pid} failed: {status}");
        self.terminated_at = Some(now());
    }

    /// Waits at most `limit` for the process to exit; its status and the time since
    /// [`Server::sigterm`] (or since this call when no signal was sent).
    ///
    /// # Panics
    /// When the process is still running after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let since = self.terminated_at.unwrap_or_else(now);
        let status = match self.exit {
            Some(status) => status,
            None => match tokio::time::timeout(limit, self.child.wait()).await {
                Ok(Ok(status)) => status,
                Ok(Err(error)) => panic!("waiting for chatbox failed: {error}"),
                Err(_) => panic!(
                    "chatbox still running {limit:?} after {}\n{}",
                    if self.terminated_at.is_some() { "SIGTERM" } else { "the wait began" },
                    self.tail()
                ),
            },
        };
        self.exit = Some(status);
        (status, since.elapsed())
    }

    /// Stops the server (SIGTERM, graceful, at most 30 s) and starts it again with the same
    /// options, secret and data directory; the address changes.
    pub async fn restart(mut self) -> Server {
        if self.exit.is_none() {
            if self.terminated_at.is_none() {
                self.sigterm();
            }
            self.wait_exit(Duration::from_secs(30)).await;
        }
        let (opts, root) = (self.opts.clone(), Arc::clone(&self.root));
        let (secret, generation) = (self.secret.clone(), self.generation + 1);
        drop(self);
        Self::spawn(opts, root, secret, generation).await
    }

    /// The last lines of the server's stderr, framed for a failure message.
    pub fn tail(&self) -> String {
        log_tail(&self.log, LOG_TAIL_LINES)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.tail());
        }
        let _ = self.child.start_kill();
    }
}

/// The runtime's monotonic now, for the harness's own bounded waits. The one place in the test
/// crate that reads it: `clippy.toml` keeps server code on the engine's clock.
#[allow(clippy::disallowed_methods, reason = "test infrastructure times its own waits")]
pub fn now() -> Instant {
    Instant::now()
}

/// Seconds since the Unix epoch (for `exp` claims).
#[allow(clippy::disallowed_methods)] // test infrastructure: token times are wall-clock times
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// An HS256 token with `claims` signed with `secret`.
pub fn sign(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign a token")
}

/// The last `lines` lines of a server's stderr log, framed for a failure message.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let (shown, text) = last_lines(path, lines);
    format!(
        "---- chatbox stderr ({}, last {shown} lines) ----\n{text}\n---- end of chatbox stderr ----",
        path.display(),
    )
}

/// The last `lines` lines of a file (missing: none), and how many there are.
pub fn last_lines(path: &Path, lines: usize) -> (usize, String) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    (all.len() - start, all[start..].join("\n"))
}

/// Why [`launch`] has no running server to give.
#[derive(Debug)]
pub enum LaunchError {
    /// The process could not be started.
    Spawn(std::io::Error),
    /// It did not print `listening on ADDR` within the start-up limit (or closed stdout first).
    NoAddress {
        /// The limit passed (rather than stdout closing).
        timed_out: bool,
        /// How the process ended, if it did within 5 s of being killed.
        exit: Option<ExitStatus>,
    },
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaunchError::Spawn(error) => write!(f, "cannot start chatbox: {error}"),
            LaunchError::NoAddress { timed_out, exit } => write!(
                f,
                "chatbox did not report `listening on ADDR` ({}; exit {exit:?})",
                if *timed_out { "timed out" } else { "stdout closed" }
            ),
        }
    }
}

/// Starts `bin serve --port 0` with exactly `env` (plus `PATH`), `JWT_SECRET=secret` and
/// `DATA_DIR=data_dir`, its stderr going to `stderr`, and waits for its `listening on ADDR`
/// line; the rest of its stdout is drained so it can never block on a full pipe. The child is
/// killed when dropped. Shared by the test harness and the load generator.
pub async fn launch<K, V>(
    bin: &Path,
    env: impl IntoIterator<Item = (K, V)>,
    secret: &str,
    data_dir: &Path,
    stderr: std::fs::File,
) -> Result<(Child, SocketAddr), LaunchError>
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(bin);
    command
        .args(["serve", "--port", "0"])
        .env_clear()
        .envs(env)
        .env("JWT_SECRET", secret)
        .env("DATA_DIR", data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let mut child = command.spawn().map_err(LaunchError::Spawn)?;
    let stdout = child.stdout.take().expect("stdout is piped above");
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(STARTUP_LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.trim().parse::<SocketAddr>().ok();
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(addr)) => {
            drain(lines);
            Ok((child, addr))
        }
        other => {
            let _ = child.start_kill();
            let exit = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            Err(LaunchError::NoAddress {
                timed_out: other.is_err(),
                exit: exit.ok().and_then(Result::ok),
            })
        }
    }
}

/// Reads and discards the rest of the server's stdout.
#[allow(clippy::disallowed_methods)] // test infrastructure: the task ends with the pipe
fn drain(mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) {
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}

/// Runs `chatbox check-config` with exactly `env` (plus `PATH`); exit status, stdout, stderr.
pub async fn check_config(env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut command = Command::new(binary());
    command.arg("check-config").env_clear().stdin(Stdio::null()).kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("check-config finishes within 20 s")
        .expect("run chatbox check-config");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A whole HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body as text (lossy UTF-8).
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the four security headers of PROTOCOL.md §1.
    pub fn assert_security_headers(&self) {
        self.assert_common_security_headers();
        assert_eq!(self.header("x-frame-options"), Some("DENY"), "x-frame-options on {self:?}");
    }

    /// Asserts the three security headers of §1 that every response carries whatever the
    /// framing rule (`FRAME_ANCESTORS` replaces `X-Frame-Options` with CSP `frame-ancestors`).
    pub fn assert_common_security_headers(&self) {
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
            ("x-xss-protection", "1; mode=block"),
        ] {
            assert_eq!(self.header(name), Some(value), "header {name} on {self:?}");
        }
    }

    /// Asserts a plain-text handshake refusal: `status`, `text/plain; charset=utf-8`,
    /// body `text` plus a newline, and the security headers.
    pub fn assert_plain(&self, status: u16, text: &str) {
        assert_eq!(self.status, status, "status of {self:?}");
        assert_eq!(self.body, format!("{text}\n"), "body of {self:?}");
        assert_eq!(self.header("content-type"), Some("text/plain; charset=utf-8"), "{self:?}");
        self.assert_security_headers();
    }
}

/// One `GET` over a fresh connection with hyper's HTTP/1.1 client.
pub async fn http_get(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let answer = send_request(addr, "GET", path_and_query, headers, Empty::<Bytes>::new()).await;
    HttpResponse::from(answer.within(Duration::from_secs(10)).await)
}

/// An answer with its body as bytes.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl RawResponse {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl From<RawResponse> for HttpResponse {
    fn from(raw: RawResponse) -> Self {
        let body = String::from_utf8_lossy(&raw.body).into_owned();
        HttpResponse { status: raw.status, headers: raw.headers, body }
    }
}

/// A request sent over a fresh connection, its answer not read yet ([`Pending::within`]).
pub struct Pending {
    answer: std::pin::Pin<Box<dyn std::future::Future<Output = RawResponse> + Send>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Pending {
    /// The answer, read whole (no body for a `101`).
    ///
    /// # Panics
    /// When it does not come within `budget`.
    pub async fn within(self, budget: Duration) -> RawResponse {
        let answer = tokio::time::timeout(budget, self.answer)
            .await
            .unwrap_or_else(|_| panic!("HTTP answer within {budget:?}"));
        self.driver.abort();
        answer
    }
}

/// Sends one request with `method`, `headers` and `body` to `path_and_query` over a fresh
/// connection with hyper's HTTP/1.1 client.
///
/// # Panics
/// When the server cannot be reached within 5 s or the handshake fails.
pub async fn send_request<B>(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: B,
) -> Pending
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("connect within 5 s")
        .expect("connect to the server");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP handshake");
    #[allow(clippy::disallowed_methods)] // test infrastructure: ends with the connection
    let driver = tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("Host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body).expect("build the request");
    let answer = Box::pin(async move {
        let response = sender.send_request(request).await.expect("send the request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = if status == 101 {
            Bytes::new()
        } else {
            response.into_body().collect().await.expect("read the body").to_bytes()
        };
        RawResponse { status, headers, body }
    });
    Pending { answer, driver }
}

/// A refused WebSocket handshake.
#[derive(Debug)]
pub enum Refused {
    /// The server answered with this status (body as far as the client read it).
    Http {
        /// Status code.
        status: u16,
        /// Body bytes the client had read, lossy UTF-8.
        body: String,
    },
    /// Any other failure (connection refused, protocol error).
    Other(String),
}

/// A WebSocket client with bounded waits.
#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The first frame after the upgrade (`connection_status` with `models`).
    pub greeting: Value,
}

/// How long [`Client::connect`] waits for the handshake and the greeting.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

impl Client {
    /// Connects to `url` with extra request headers, then reads the greeting frame.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Client, Refused> {
        let mut request = url.into_client_request().map_err(|e| Refused::Other(e.to_string()))?;
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Refused::Other(e.to_string()))?;
            let value = HeaderValue::from_str(value).map_err(|e| Refused::Other(e.to_string()))?;
            request.headers_mut().insert(name, value);
        }
        let connected =
            tokio::time::timeout(CONNECT_LIMIT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| Refused::Other("handshake timed out".into()))?;
        let ws = match connected {
            Ok((ws, _response)) => ws,
            Err(WsError::Http(response)) => {
                let body = response.body().as_deref().map(String::from_utf8_lossy);
                return Err(Refused::Http {
                    status: response.status().as_u16(),
                    body: body.map(|b| b.into_owned()).unwrap_or_default(),
                });
            }
            Err(error) => return Err(Refused::Other(error.to_string())),
        };
        let mut client = Client { ws, greeting: Value::Null };
        client.greeting = client.recv_frame(CONNECT_LIMIT).await;
        Ok(client)
    }

    /// Sends one text frame as is.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send a text frame");
    }

    /// Sends one raw WebSocket frame as built (masked by the client, otherwise unchanged), for
    /// tests of what the server does with frames that break the protocol.
    pub async fn send_frame(&mut self, frame: Frame) {
        self.ws.send(Message::Frame(frame)).await.expect("send a raw frame");
    }

    /// Sends one JSON object as a text frame.
    pub async fn send_json(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// Sends `{"type":"user_message","session_id":session,"content":content}`.
    pub async fn send_user_message(&mut self, session: &str, content: &str) {
        self.send_json(&json!({"type": "user_message", "session_id": session, "content": content}))
            .await;
    }

    /// The next data frame as JSON, skipping pings and pongs.
    ///
    /// # Panics
    /// On timeout, on a close, on a read error, or when the frame is not JSON.
    pub async fn recv_frame(&mut self, limit: Duration) -> Value {
        let limit = patience(limit);
        match self.try_recv_frame(limit).await {
            Some(frame) => frame,
            None => panic!("no frame within {limit:?}"),
        }
    }

    /// The next data frame as JSON, or `None` when nothing arrives within `limit`.
    ///
    /// # Panics
    /// On a close, a read error, or a frame that is not JSON.
    pub async fn try_recv_frame(&mut self, limit: Duration) -> Option<Value> {
        let deadline = now() + limit;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => panic!("the connection ended while a frame was expected"),
                Ok(Some(Err(error))) => panic!("read error while a frame was expected: {error}"),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    return Some(
                        serde_json::from_str(text.as_str()).unwrap_or_else(|e| {
                            panic!("frame is not JSON ({e}): {}", text.as_str())
                        }),
                    );
                }
                Message::Binary(bytes) => panic!("unexpected binary frame: {bytes:?}"),
                Message::Close(close) => panic!("closed while a frame was expected: {close:?}"),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Frames up to and including the first one matching `pred`, within `limit` overall (four
    /// times that on the MongoDB tier: `patience`).
    ///
    /// # Panics
    /// When no matching frame arrives in time (the frames seen are printed).
    pub async fn recv_until<F>(&mut self, mut pred: F, limit: Duration) -> Vec<Value>
    where
        F: FnMut(&Value) -> bool,
    {
        let limit = patience(limit);
        let deadline = now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(now());
            match self.try_recv_frame(left).await {
                Some(frame) => {
                    let done = pred(&frame);
                    seen.push(frame);
                    if done {
                        return seen;
                    }
                }
                None => panic!("no matching frame within {limit:?}; frames seen: {seen:#?}"),
            }
        }
    }

    /// The frames of one reply: up to and including its outcome (a `done:"true"` frame or an
    /// `error` frame).
    pub async fn recv_reply(&mut self, limit: Duration) -> Vec<Value> {
        self.recv_until(|f| is_done(f) || f["type"] == "error", limit).await
    }

    /// Asserts that no data frame arrives within `wait` (a bounded wait past a deadline).
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(frame) = self.try_recv_frame(wait).await {
            panic!("expected no frame within {wait:?}, got {frame}");
        }
    }

    /// Waits for the server's close: the close frame (`None` when the connection ended
    /// without one).
    ///
    /// # Panics
    /// On timeout or when a data frame arrives first.
    pub async fn expect_close(&mut self, limit: Duration) -> Option<CloseFrame> {
        let (frames, close) = self.frames_until_close(limit).await;
        assert!(frames.is_empty(), "expected a close, got frames {frames:#?}");
        close
    }

    /// The data frames that arrive before the server's close, and the close frame (`None` when
    /// the connection ended without one).
    ///
    /// # Panics
    /// On timeout, or on a frame that is not JSON text.
    pub async fn frames_until_close(
        &mut self,
        limit: Duration,
    ) -> (Vec<Value>, Option<CloseFrame>) {
        let deadline = now() + limit;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("no close within {limit:?}; frames seen: {seen:#?}"),
                Ok(None) | Ok(Some(Err(_))) => return (seen, None),
                Ok(Some(Ok(Message::Close(close)))) => return (seen, close),
                Ok(Some(Ok(Message::Text(text)))) => seen.push(
                    serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {}", text.as_str())),
                ),
                Ok(Some(Ok(Message::Binary(bytes)))) => panic!("unexpected binary {bytes:?}"),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Starts the close handshake with `code` and `reason`; the server's answering close frame
    /// (`None` when the connection ended without one).
    ///
    /// # Panics
    /// When nothing ends the connection within `limit`.
    pub async fn close_handshake(
        mut self,
        code: u16,
        reason: &str,
        limit: Duration,
    ) -> Option<CloseFrame> {
        let frame = CloseFrame { code: code.into(), reason: reason.to_string().into() };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        let (frames, close) = self.frames_until_close(limit).await;
        assert!(frames.is_empty(), "expected the close answer, got frames {frames:#?}");
        close
    }

    /// Closes the connection from the client side and waits (at most 2 s) for the server's
    /// answer to the close handshake, i.e. until the server has seen the disconnect.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// Whether `frame` is the final `ai_response` of a reply (`metadata.done == "true"`).
pub fn is_done(frame: &Value) -> bool {
    frame["type"] == "ai_response" && frame["metadata"]["done"] == "true"
}

/// Asserts an error frame's `code`, `message` and `recoverable:true`, and its `sender:"ai"`.
pub fn assert_error(frame: &Value, code: &str, message: &str) {
    assert_eq!(frame["type"], "error", "not an error frame: {frame}");
    assert_eq!(frame["sender"], "ai", "error sender: {frame}");
    assert_eq!(frame["error"]["code"], code, "error code: {frame}");
    assert_eq!(frame["error"]["message"], message, "error message: {frame}");
    assert_eq!(frame["error"]["recoverable"], true, "recoverable: {frame}");
}

/// The text of a reply: the concatenated `content` of its chunk frames.
pub fn reply_text(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["type"] == "ai_response" && f["metadata"]["done"] == "false")
        .filter_map(|f| f["content"].as_str())
        .collect()
}

/// How long a wait for an expected frame may take: `limit`, or four times it on CI's MongoDB
/// tier, where one Python MongoDB-compatible server serves every test of a file at once on two
/// cores and has taken over 5 s to acknowledge a message. Only a failing test waits that long;
/// waits for silence (`expect_silence`) are not stretched.
fn patience(limit: Duration) -> Duration {
    if crate::mongo::shared_uri().is_some() {
        limit.saturating_mul(4)
    } else {
        limit
    }
}
