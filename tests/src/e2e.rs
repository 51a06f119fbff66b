//! Helpers shared by the `e2e_*` tests (whole flows through the real binary):
//!
//! - [`chat`] — one `user_message` and its successful reply.
//! - [`without_timestamp`] — a frame minus its (asserted) `timestamp`, for exact comparisons.
//! - [`SmtpSink`] — a real SMTP server (`scripts/smtp-server.sh`, aiosmtpd) that writes every
//!   message it accepts to a directory, started the same way as in `tests/tests/alerts.rs`.
//! - [`WebhookRecorder`] — a tiny local HTTP server that records every request body and answers
//!   `204`.
//! - [`Exposition`] — a parser for the Prometheus text exposition format (`# TYPE` lines and
//!   samples with quoted, escaped label values).
//! - [`PendingRequest`] — an HTTP request whose head is sent in two parts, so that it is already
//!   in progress on the server when the server begins its graceful shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::harness::{is_done, now, Client, HttpResponse, Server};
use crate::http::{get, ok_json};
use crate::script_server::{listening, port_of, read_request, Stderr};

/// Bound on one step of an end-to-end test, so a bug fails the test instead of hanging it.
pub const STEP: Duration = Duration::from_secs(5);

/// The first start of the SMTP sink may install aiosmtpd from PyPI into the cache venv.
const SMTP_START_BUDGET: Duration = Duration::from_secs(300);

/// Sends `content` on `session` and waits for a successful reply.
///
/// Returns the authoritative session id and the reply's frames.
///
/// # Panics
/// When the reply does not end with a `done` frame within [`STEP`] (four times that on the
/// MongoDB tier, see `Client::recv_until`).
pub async fn chat(client: &mut Client, session: &str, content: &str) -> (String, Vec<Value>) {
    client.send_user_message(session, content).await;
    let frames = client.recv_reply(STEP).await;
    let last = frames.last().expect("an outcome");
    assert!(is_done(last), "the reply succeeds: {frames:#?}");
    let id = last["session_id"].as_str().expect("session id").to_string();
    (id, frames)
}

/// `(sender, content)` of every stored message of `session`, read through
/// `GET {P}/sessions/:id` with `token` (its owner's).
///
/// # Panics
/// When the route does not answer `200` with a `messages` array.
pub async fn stored_messages(server: &Server, token: &str, session: &str) -> Vec<(String, String)> {
    let body = ok_json(&get(server, &format!("/sessions/{session}"), Some(token)).await);
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["sender"].as_str().unwrap_or_default().to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `is_active` of `session` in its owner's `GET {P}/sessions` on `server` (`token`: the
/// owner's).
///
/// # Panics
/// When the list does not hold the session.
pub async fn is_active(server: &Server, token: &str, session: &str) -> bool {
    let list = ok_json(&get(server, "/sessions", Some(token)).await);
    let items = list["sessions"].as_array().unwrap_or_else(|| panic!("sessions: {list}"));
    let item = items.iter().find(|s| s["id"] == session);
    item.and_then(|s| s["is_active"].as_bool()).unwrap_or_else(|| panic!("{session}: {list}"))
}

/// `frame` without its `timestamp`, which must be present and a string.
///
/// # Panics
/// When the frame has no string `timestamp`.
pub fn without_timestamp(frame: &Value) -> Value {
    let mut frame = frame.clone();
    let removed = frame.as_object_mut().and_then(|o| o.remove("timestamp"));
    assert!(removed.is_some_and(|t| t.is_string()), "timestamp present: {frame}");
    frame
}

/// A running `scripts/smtp-server.sh start` (killed on drop) and the directory it writes each
/// accepted message to (`N.eml` plus the envelope `N.json`, N = 1, 2, …).
#[derive(Debug)]
pub struct SmtpSink {
    _child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts the sink on `127.0.0.1` and a free port.
    ///
    /// # Panics
    /// When bash, python3 or aiosmtpd (from PyPI) are unavailable; the script's stderr is shown.
    pub async fn start() -> Self {
        Self::start_with_auth(None).await
    }

    /// Like [`SmtpSink::start`]; `auth` = `Some("user:password")` makes the server require AUTH.
    ///
    /// # Panics
    /// As [`SmtpSink::start`].
    pub async fn start_with_auth(auth: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/smtp-server.sh");
        let mut command = Command::new("bash");
        command
            .arg(&script)
            .args(["start", "--host", "127.0.0.1", "--port", "0", "--dir"])
            .arg(dir.path().join("mail"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(auth) = auth {
            command.args(["--auth", auth]);
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run bash {}: {e} (the SMTP tests need bash and python3)",
                script.display()
            )
        });
        let needs = "; it needs python3 (with venv) and PyPI access for aiosmtpd (see \
                     `scripts/smtp-server.sh install`)";
        let stderr = Stderr::Piped(STEP);
        let addr =
            listening(&mut child, SMTP_START_BUDGET, "SMTP test server", needs, stderr).await;
        let port = port_of(&addr);
        Self { _child: child, port, dir }
    }

    /// The port the sink listens on (host `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory the messages are written to.
    pub fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// How many messages have arrived so far.
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.mail_dir())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        !name.starts_with('.') && name.ends_with(".eml")
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// Waits (at most [`STEP`]) for message `n`; its raw bytes and its envelope.
    ///
    /// # Panics
    /// When message `n` does not arrive in time.
    pub async fn message(&self, n: usize) -> (Vec<u8>, Value) {
        let eml = self.mail_dir().join(format!("{n}.eml"));
        let deadline = now() + STEP;
        while !eml.exists() {
            assert!(now() < deadline, "no message {n} in {eml:?} within {STEP:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let raw = tokio::fs::read(&eml).await.expect("read message");
        let envelope = tokio::fs::read(self.mail_dir().join(format!("{n}.json")))
            .await
            .expect("read envelope");
        (raw, serde_json::from_slice(&envelope).expect("envelope JSON"))
    }
}

/// One request received by a [`WebhookRecorder`].
#[derive(Debug, Clone)]
pub struct Hook {
    /// The request line and headers.
    pub head: String,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
}

/// A local HTTP server on `127.0.0.1:0` that records every request and answers
/// `204 No Content` (one request per connection). Stops when dropped.
#[derive(Debug)]
pub struct WebhookRecorder {
    addr: SocketAddr,
    hooks: Arc<Mutex<Vec<Hook>>>,
    task: JoinHandle<()>,
}

impl WebhookRecorder {
    /// Starts the recorder.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the webhook recorder");
        let addr = listener.local_addr().expect("recorder address");
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&hooks);
        #[allow(clippy::disallowed_methods)] // test fixture: aborted on drop
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let sink = Arc::clone(&sink);
                #[allow(clippy::disallowed_methods)] // test fixture: ends with the connection
                tokio::spawn(async move {
                    if let Some(hook) = serve_hook(socket).await {
                        sink.lock().unwrap_or_else(PoisonError::into_inner).push(hook);
                    }
                });
            }
        });
        Self { addr, hooks, task }
    }

    /// The URL to configure as `ALERT_WEBHOOK_URL`.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/chatbox", self.addr)
    }

    /// Every request recorded so far.
    pub fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits (at most `within`) until `count` requests were recorded; whether they were.
    pub async fn wait_for(&self, count: usize, within: Duration) -> bool {
        let deadline = now() + within;
        loop {
            if self.hooks().len() >= count {
                return true;
            }
            if now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WebhookRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head and `Content-Length` body) and answers `204`.
async fn serve_hook(mut socket: TcpStream) -> Option<Hook> {
    let (head, body) = read_request(&mut socket).await?;
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = "HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let _ = socket.write_all(reply.as_bytes()).await;
    let _ = socket.shutdown().await;
    Some(Hook { head, body })
}

/// One sample of a Prometheus exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name (for histograms with its `_bucket`/`_sum`/`_count` suffix).
    pub name: String,
    /// Label names and (unescaped) values.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A parsed Prometheus text exposition (format 0.0.4): the `# TYPE` of each family and every
/// sample.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Family name → kind (`counter`, `gauge`, `histogram`, `summary`, `untyped`).
    pub types: BTreeMap<String, String>,
    /// Every sample line, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses `text`.
    ///
    /// # Panics
    /// On a line that is neither a comment, blank, nor a well-formed sample.
    pub fn parse(text: &str) -> Self {
        let mut exposition = Exposition::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE") {
                    let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                        panic!("malformed TYPE line: {line:?}");
                    };
                    exposition.types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            exposition.samples.push(
                parse_sample(line).unwrap_or_else(|| panic!("malformed sample line: {line:?}")),
            );
        }
        exposition
    }

    /// Samples named exactly `name` whose labels include every pair of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v)))
            .collect()
    }

    /// The value of the one sample named `name` with exactly the labels `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .map(|s| s.value)
    }

    /// The `le` bounds of histogram `family`'s buckets for the series with `labels`, in order.
    pub fn bucket_bounds(&self, family: &str, labels: &[(&str, &str)]) -> Vec<String> {
        self.find(&format!("{family}_bucket"), labels)
            .iter()
            .filter_map(|s| s.labels.get("le").cloned())
            .collect()
    }
}

/// `name{k="v",…} value [timestamp]` or `name value [timestamp]`.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let mut chars = after_brace.char_indices().peekable();
        let consumed = loop {
            // Skip separators, then either `}` or `key="value"`.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let (i, c) = chars.next()?;
            if c == '}' {
                break i + 1;
            }
            let mut key = String::from(c);
            loop {
                let (_, c) = chars.next()?;
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.insert(key.trim().to_string(), value);
        };
        rest = &after_brace[consumed..];
    }
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// An HTTP/1.1 `GET` whose request head is sent in two parts: everything but the final blank
/// line at [`PendingRequest::open`], the rest at [`PendingRequest::finish`].
///
/// A server that begins a graceful shutdown in between still answers it (the request is in
/// progress), whereas new connections are no longer accepted. This is how a test observes
/// what a route answers while the server drains.
#[derive(Debug)]
pub struct PendingRequest {
    stream: TcpStream,
}

impl PendingRequest {
    /// Connects to `addr` and sends the request line and headers of `GET path` (with
    /// `Connection: close`), without the terminating blank line.
    ///
    /// # Panics
    /// When the connection or the write fails.
    pub async fn open(addr: SocketAddr, path: &str) -> Self {
        let mut stream = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect within the step")
            .expect("connect to the server");
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        stream.write_all(head.as_bytes()).await.expect("send the request head");
        Self { stream }
    }

    /// Completes the request and reads the whole response (the server closes the connection).
    ///
    /// # Panics
    /// When the response does not arrive within [`STEP`] or cannot be parsed.
    pub async fn finish(mut self) -> HttpResponse {
        self.stream.write_all(b"\r\n").await.expect("complete the request");
        let mut raw = Vec::new();
        tokio::time::timeout(STEP, self.stream.read_to_end(&mut raw))
            .await
            .expect("a response within the step")
            .expect("read the response");
        parse_response(&raw)
    }
}

/// A raw HTTP/1.1 response with a `Content-Length` (or read-to-close) body.
fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) =
        text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = http::HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.trim().as_bytes()),
                http::HeaderValue::from_str(value.trim()),
            ) {
                headers.append(name, value);
            }
        }
    }
    HttpResponse { status, headers, body: body.to_string() }
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    list_files(dir)
        .into_iter()
        .filter(|path| {
            std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Every file under `dir` (recursively), for failure messages.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_parses_types_labels_escapes_and_infinities() {
        let text = "# HELP a_total A counter\n# TYPE a_total counter\na_total 3\n\
                    # TYPE h histogram\n\
                    h_bucket{endpoint=\"/x/{id}\",method=\"GET\",le=\"0.5\"} 1\n\
                    h_bucket{endpoint=\"/x/{id}\",method=\"GET\",le=\"+Inf\"} 2\n\
                    h_count{endpoint=\"/x/{id}\",method=\"GET\"} 2\n\
                    q{v=\"a\\\"b\\\\c\"} +Inf\n";
        let e = Exposition::parse(text);
        assert_eq!(e.types.get("a_total").map(String::as_str), Some("counter"));
        assert_eq!(e.types.get("h").map(String::as_str), Some("histogram"));
        assert_eq!(e.value("a_total", &[]), Some(3.0));
        assert_eq!(e.value("h_count", &[("endpoint", "/x/{id}"), ("method", "GET")]), Some(2.0));
        assert_eq!(e.bucket_bounds("h", &[("method", "GET")]), ["0.5", "+Inf"]);
        assert_eq!(e.value("q", &[("v", "a\"b\\c")]), Some(f64::INFINITY));
    }

    #[test]
    fn raw_responses_parse() {
        let r = parse_response(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, "{}");
    }
}
