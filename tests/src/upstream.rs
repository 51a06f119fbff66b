//! A scripted upstream LLM server for integration tests and the load generator: a real HTTP/1.1
//! server on `127.0.0.1:0` that answers the three provider APIs chatbox calls, on the same paths
//! (matched by suffix, so any endpoint prefix such as `/v1` works):
//!
//! | path suffix          | dialect                                   |
//! |----------------------|-------------------------------------------|
//! | `/chat/completions`  | OpenAI chat-completion chunks, `[DONE]`   |
//! | `/messages`          | Anthropic Messages stream events          |
//! | `/chat-messages`     | Dify `message` / `message_end` events     |
//!
//! What each reply does is a [`Script`]: the text (fixed chunks, or an echo of the request's
//! current user message), the delay before the first chunk and between chunks, and a
//! [`Behaviour`] (normal, stall, drop the connection, an HTTP status, no end event, an error
//! event). Scripts queued with [`Upstream::push_script`] are used one per request, in arrival
//! order; when the queue is empty the default ([`Upstream::set_default`]) applies.
//!
//! Every request is counted and (unless recording is switched off) recorded — method, path,
//! headers, JSON body — together with the instant its first content chunk was handed to the
//! connection ([`RecordedRequest::first_chunk_at`]), which the load generator measures added
//! latency against. Dropping the [`Upstream`] stops the server and closes its connections.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use chatbox::adapters::llm::echo::split_chunks;
use futures_util::stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::harness::now;

/// Largest request body the upstream reads (bigger ones are recorded with a `Null` body).
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// Pause before a scripted drop, so what was sent before it (headers, chunks) is flushed to
/// the socket first instead of being discarded with the connection.
const FLUSH_BEFORE_DROP: Duration = Duration::from_millis(5);

/// Chunks an echoed reply is split into (fewer for short texts).
const ECHO_CHUNKS: usize = 4;

/// What a scripted reply does besides streaming its chunks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Preamble, chunks, then the dialect's end event(s); the body then ends cleanly.
    #[default]
    Normal,
    /// Never sends the response headers (the connection stays open until the upstream is
    /// dropped): exercises the provider's header timeout.
    StallBeforeHeaders,
    /// Sends headers and the dialect's preamble, then nothing: exercises the first-chunk
    /// deadline.
    StallBeforeFirst,
    /// Sends this many chunks, then nothing (connection held open): exercises the idle
    /// deadline.
    StallAfter(usize),
    /// Answers with this HTTP status and body, no stream.
    Status(u16, String),
    /// Sends this many chunks, then aborts the connection mid-body (no terminating chunk).
    DropAfter(usize),
    /// Sends every chunk, then ends the body cleanly without the end event (for OpenAI also
    /// without the closing `finish_reason` chunk): a truncated stream.
    NoEndEvent,
    /// Sends every chunk, then the dialect's error event instead of the end event.
    ErrorEvent,
}

/// One scripted reply. Build with [`Script::echo`], [`Script::reply`] or [`Script::status`]
/// and adjust with the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The reply text, chunk by chunk (ignored when `echo` is set).
    pub chunks: Vec<String>,
    /// Reply with the request's current user message (OpenAI/Anthropic: the last `user`
    /// message; Dify: `query`), split into up to four chunks, instead of `chunks`.
    pub echo: bool,
    /// Wait after the headers (and preamble) before the first chunk.
    pub first_chunk_delay: Duration,
    /// Wait between chunks.
    pub chunk_interval: Duration,
    /// What else happens.
    pub behaviour: Behaviour,
    /// Token usage to report as (prompt, completion), in the dialect's own events: OpenAI's
    /// final usage chunk (only when the request asked with `stream_options.include_usage`),
    /// Anthropic's `message_start` / `message_delta`, Dify's `message_end`.
    pub usage: Option<(u64, u64)>,
    /// A `Retry-After` header on a [`Behaviour::Status`] answer.
    pub retry_after: Option<String>,
}

impl Default for Script {
    /// [`Script::echo`].
    fn default() -> Self {
        Self::echo()
    }
}

impl Script {
    /// Echo the current user message back in chunks, without delays, then end normally.
    pub fn echo() -> Self {
        Self {
            chunks: Vec::new(),
            echo: true,
            first_chunk_delay: Duration::ZERO,
            chunk_interval: Duration::ZERO,
            behaviour: Behaviour::Normal,
            usage: None,
            retry_after: None,
        }
    }

    /// Stream exactly these chunks, without delays, then end normally.
    pub fn reply<I, S>(chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { chunks: chunks.into_iter().map(Into::into).collect(), echo: false, ..Self::echo() }
    }

    /// Answer with an HTTP status and body instead of a stream.
    pub fn status(code: u16, body: impl Into<String>) -> Self {
        Self::reply(Vec::<String>::new()).with_behaviour(Behaviour::Status(code, body.into()))
    }

    /// The same script reporting `prompt` and `completion` tokens.
    #[must_use]
    pub fn with_usage(mut self, prompt: u64, completion: u64) -> Self {
        self.usage = Some((prompt, completion));
        self
    }

    /// The same script sending `Retry-After: value` with its status answer.
    #[must_use]
    pub fn with_retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    /// The same script with another behaviour.
    #[must_use]
    pub fn with_behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// The same script with another delay before the first chunk.
    #[must_use]
    pub fn with_first_chunk_delay(mut self, delay: Duration) -> Self {
        self.first_chunk_delay = delay;
        self
    }

    /// The same script with another delay between chunks.
    #[must_use]
    pub fn with_chunk_interval(mut self, interval: Duration) -> Self {
        self.chunk_interval = interval;
        self
    }
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// 0-based arrival number (also counts requests received while recording was off).
    pub index: usize,
    /// HTTP method.
    pub method: String,
    /// Request path (without the query).
    pub path: String,
    /// Headers in arrival order, names lower-case; values that are not UTF-8 are skipped.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    /// When the request head arrived.
    pub received_at: Instant,
    first_chunk: Arc<OnceLock<Instant>>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// When the reply's first content chunk was handed to the connection (`None` until then,
    /// and for replies without content).
    pub fn first_chunk_at(&self) -> Option<Instant> {
        self.first_chunk.get().copied()
    }
}

/// State shared by the server tasks and the test.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    count: AtomicUsize,
    conversation_seq: AtomicU64,
    /// Streams the client dropped before their last step (a cancelled provider request).
    abandoned: AtomicUsize,
}

#[derive(Debug)]
struct State {
    default: Script,
    queue: VecDeque<Script>,
    requests: Vec<RecordedRequest>,
    recording: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running scripted upstream. Stops (and closes every connection) when dropped.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    // Dropping the sender wakes every connection task, which then closes its connection.
    _shutdown: watch::Sender<()>,
}

impl Upstream {
    /// Starts a server on `127.0.0.1:0` with the [`Script::echo`] default.
    ///
    /// # Panics
    /// If no loopback port can be bound (use [`Upstream::try_start`] to handle that).
    pub async fn start() -> Upstream {
        Self::try_start().await.expect("bind the scripted upstream on 127.0.0.1:0")
    }

    /// Starts a server on `127.0.0.1:0` with the [`Script::echo`] default.
    pub async fn try_start() -> io::Result<Upstream> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                default: Script::echo(),
                queue: VecDeque::new(),
                requests: Vec::new(),
                recording: true,
            }),
            count: AtomicUsize::new(0),
            conversation_seq: AtomicU64::new(0),
            abandoned: AtomicUsize::new(0),
        });
        let (shutdown, stopped) = watch::channel(());
        let accept = spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(Upstream { addr, shared, accept, _shutdown: shutdown })
    }

    /// The base URL, `http://127.0.0.1:PORT` (use it as a provider endpoint).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The script for requests when no queued script is left.
    pub fn set_default(&self, script: Script) {
        self.shared.lock().default = script;
    }

    /// Queues a script for one upcoming request (first in, first used).
    pub fn push_script(&self, script: Script) {
        self.shared.lock().queue.push_back(script);
    }

    /// Drops every queued script.
    pub fn clear_scripts(&self) {
        self.shared.lock().queue.clear();
    }

    /// Streamed replies whose client went away before the stream's end (a cancelled request).
    pub fn abandoned_streams(&self) -> usize {
        self.shared.abandoned.load(Ordering::SeqCst)
    }

    /// Requests received so far (all of them, also those not recorded).
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// A copy of the recorded requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// The most recent recorded request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.lock().requests.last().cloned()
    }

    /// Removes and returns the recorded requests (a long load run drains them to bound memory).
    pub fn take_requests(&self) -> Vec<RecordedRequest> {
        std::mem::take(&mut self.shared.lock().requests)
    }

    /// Switches recording on or off (counting always continues).
    pub fn set_recording(&self, recording: bool) {
        self.shared.lock().recording = recording;
    }

    /// Waits until at least `count` requests arrived, at most `within`; whether they did.
    pub async fn wait_for_requests(&self, count: usize, within: Duration) -> bool {
        let deadline = now() + within;
        while self.request_count() < count {
            if now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Spawns a server task. The test harness is not under the server's task supervisor.
#[allow(clippy::disallowed_methods)] // test infrastructure: its tasks end with the Upstream
fn spawn<F>(task: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(task)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stopped: watch::Receiver<()>) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            // Out of file descriptors or similar: back off briefly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let mut stopped = stopped.clone();
        spawn(async move {
            let service = service_fn(move |request| handle(request, Arc::clone(&shared)));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = stopped.changed() => {}
            }
        });
    }
}

/// The response body type: a stream of frames, or a whole status body.
type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Which provider API a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Anthropic,
    Dify,
}

impl Dialect {
    fn from_path(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Self::OpenAi)
        } else if path.ends_with("/chat-messages") {
            Some(Self::Dify)
        } else if path.ends_with("/messages") {
            Some(Self::Anthropic)
        } else {
            None
        }
    }
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let received_at = now();
    let index = shared.count.fetch_add(1, Ordering::SeqCst);
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = match Limited::new(request.into_body(), MAX_REQUEST_BODY).collect().await {
        Ok(collected) => serde_json::from_slice(&collected.to_bytes()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let first_chunk = Arc::new(OnceLock::new());
    let script = {
        let mut state = shared.lock();
        if state.recording {
            state.requests.push(RecordedRequest {
                index,
                method,
                path: path.clone(),
                headers,
                body: body.clone(),
                received_at,
                first_chunk: Arc::clone(&first_chunk),
            });
        }
        state.queue.pop_front().unwrap_or_else(|| state.default.clone())
    };

    let Some(dialect) = Dialect::from_path(&path) else {
        return Ok(plain(StatusCode::NOT_FOUND, "no such scripted endpoint"));
    };
    match &script.behaviour {
        Behaviour::Status(code, text) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = plain(status, text.clone());
            if let Some(value) = script
                .retry_after
                .as_deref()
                .and_then(|v| hyper::header::HeaderValue::from_str(v).ok())
            {
                response.headers_mut().insert(hyper::header::RETRY_AFTER, value);
            }
            return Ok(response);
        }
        Behaviour::StallBeforeHeaders => {
            // Held until the client gives up or the upstream is dropped.
            std::future::pending::<()>().await;
        }
        _ => {}
    }

    let conversation_id = match body.get("conversation_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("conv-{}", shared.conversation_seq.fetch_add(1, Ordering::SeqCst) + 1),
    };
    let chunks = if script.echo {
        split_chunks(&current_text(dialect, &body), ECHO_CHUNKS)
    } else {
        script.chunks.clone()
    };
    let usage_requested = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let writer = Writer {
        dialect,
        conversation_id,
        model: body.get("model").and_then(Value::as_str).unwrap_or("scripted").to_owned(),
        usage: script.usage.filter(|_| dialect != Dialect::OpenAi || usage_requested),
    };
    let steps = plan(&writer, &script, &chunks);

    let watch = Abandon { shared: Arc::clone(&shared), finished: false };
    let frames = stream::unfold(
        (steps, first_chunk, watch),
        |(mut steps, first_chunk, mut watch)| async move {
            loop {
                let Some(step) = steps.pop_front() else {
                    watch.finish();
                    return None;
                };
                match step {
                    Step::Wait(delay) => tokio::time::sleep(delay).await,
                    Step::Send { bytes, first_content } => {
                        if first_content {
                            let _ = first_chunk.set(now());
                        }
                        return Some((Ok(Frame::data(bytes)), (steps, first_chunk, watch)));
                    }
                    Step::Stall => std::future::pending::<()>().await,
                    Step::Drop => {
                        let error =
                            io::Error::new(io::ErrorKind::ConnectionAborted, "scripted drop");
                        watch.finish();
                        return Some((Err(error), (steps, first_chunk, watch)));
                    }
                }
            }
        },
    );
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(StreamBody::new(frames).boxed_unsync());
    Ok(response.unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad response")))
}

/// Counts a streamed reply dropped before its last step (the client went away).
struct Abandon {
    shared: Arc<Shared>,
    finished: bool,
}

impl Abandon {
    /// The stream reached its end (or its scripted abort): not a client going away.
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A whole-body reply.
fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let body = Full::new(text.into()).map_err(|never: Infallible| match never {}).boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// The request's current user message: OpenAI/Anthropic the last `user` message (string
/// content, or the text blocks of an array), Dify the `query`.
fn current_text(dialect: Dialect, body: &Value) -> String {
    if dialect == Dialect::Dify {
        return body.get("query").and_then(Value::as_str).unwrap_or_default().to_owned();
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return String::new();
    };
    let Some(last_user) =
        messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    match last_user.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// One thing the response body does.
#[derive(Debug)]
enum Step {
    Wait(Duration),
    Send { bytes: Bytes, first_content: bool },
    Stall,
    Drop,
}

/// The body of a streamed reply, step by step.
fn plan(writer: &Writer, script: &Script, chunks: &[String]) -> VecDeque<Step> {
    let mut steps = VecDeque::new();
    let preamble = writer.preamble();
    if !preamble.is_empty() {
        steps.push_back(Step::Send { bytes: preamble.into(), first_content: false });
    }
    if script.behaviour == Behaviour::StallBeforeFirst {
        steps.push_back(Step::Stall);
        return steps;
    }
    if !script.first_chunk_delay.is_zero() {
        steps.push_back(Step::Wait(script.first_chunk_delay));
    }
    for (i, chunk) in chunks.iter().enumerate() {
        match script.behaviour {
            Behaviour::StallAfter(n) if n == i => {
                steps.push_back(Step::Stall);
                return steps;
            }
            Behaviour::DropAfter(n) if n == i => {
                steps.push_back(Step::Wait(FLUSH_BEFORE_DROP));
                steps.push_back(Step::Drop);
                return steps;
            }
            _ => {}
        }
        if i > 0 && !script.chunk_interval.is_zero() {
            steps.push_back(Step::Wait(script.chunk_interval));
        }
        steps.push_back(Step::Send { bytes: writer.chunk(i, chunk).into(), first_content: i == 0 });
    }
    let tail = match script.behaviour {
        Behaviour::StallAfter(_) => Some(Step::Stall),
        Behaviour::DropAfter(_) => {
            steps.push_back(Step::Wait(FLUSH_BEFORE_DROP));
            Some(Step::Drop)
        }
        Behaviour::NoEndEvent => None,
        Behaviour::ErrorEvent => {
            Some(Step::Send { bytes: writer.error().into(), first_content: false })
        }
        _ => Some(Step::Send { bytes: writer.end(chunks.len()).into(), first_content: false }),
    };
    steps.extend(tail);
    steps
}

/// Writes one dialect's events.
#[derive(Debug)]
struct Writer {
    dialect: Dialect,
    conversation_id: String,
    model: String,
    /// (prompt, completion) tokens to report, if any.
    usage: Option<(u64, u64)>,
}

/// `data: <json>\n\n`, with `event: <name>` first when `name` is given.
fn sse(name: Option<&str>, data: &Value) -> String {
    match name {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

impl Writer {
    /// What precedes the first chunk (role announcement, message start, a ping).
    fn preamble(&self) -> String {
        match self.dialect {
            Dialect::OpenAi => {
                self.openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null)
            }
            Dialect::Anthropic => {
                let start = json!({"type": "message_start", "message": {
                    "id": "msg_scripted", "type": "message", "role": "assistant", "model": self.model,
                    "content": [], "stop_reason": null,
                    "usage": {"input_tokens": self.usage.map_or(1, |u| u.0), "output_tokens": 1}}});
                let block = json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}});
                sse(Some("message_start"), &start)
                    + &sse(Some("content_block_start"), &block)
                    + &sse(Some("ping"), &json!({"type": "ping"}))
            }
            Dialect::Dify => "event: ping\n\n".to_owned(),
        }
    }

    fn openai_chunk(&self, delta: Value, finish_reason: Value) -> String {
        sse(
            None,
            &json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
            "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}),
        )
    }

    /// Content chunk number `i`.
    fn chunk(&self, i: usize, text: &str) -> String {
        match self.dialect {
            Dialect::OpenAi => self.openai_chunk(json!({"content": text}), Value::Null),
            Dialect::Anthropic => sse(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            ),
            Dialect::Dify => sse(
                None,
                &json!({"event": "message", "task_id": "task-scripted",
                "message_id": "msg-scripted", "id": format!("msg-scripted-{i}"),
                "conversation_id": self.conversation_id, "answer": text, "created_at": 0}),
            ),
        }
    }

    /// The end event(s) after `count` chunks.
    fn end(&self, count: usize) -> String {
        match self.dialect {
            Dialect::OpenAi => {
                let usage = match self.usage {
                    Some((prompt, completion)) => sse(
                        None,
                        &json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                        "created": 0, "model": self.model, "choices": [],
                        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                            "total_tokens": prompt + completion}}),
                    ),
                    None => String::new(),
                };
                self.openai_chunk(json!({}), json!("stop")) + &usage + "data: [DONE]\n\n"
            }
            Dialect::Anthropic => {
                sse(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": 0}))
                    + &sse(
                        Some("message_delta"),
                        &json!({"type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                        "usage": {"output_tokens": self.usage.map_or(count as u64, |u| u.1)}}),
                    )
                    + &sse(Some("message_stop"), &json!({"type": "message_stop"}))
            }
            Dialect::Dify => sse(
                None,
                &json!({"event": "message_end", "task_id": "task-scripted",
                "message_id": "msg-scripted", "conversation_id": self.conversation_id,
                "metadata": {"usage": match self.usage {
                    Some((prompt, completion)) => json!({"prompt_tokens": prompt,
                        "completion_tokens": completion, "total_tokens": prompt + completion}),
                    None => json!({"total_tokens": count}),
                }}}),
            ),
        }
    }

    /// The dialect's error event.
    fn error(&self) -> String {
        match self.dialect {
            Dialect::OpenAi => sse(
                None,
                &json!({"error": {"message": "scripted upstream error",
                "type": "server_error", "code": null}}),
            ),
            Dialect::Anthropic => sse(
                Some("error"),
                &json!({"type": "error",
                "error": {"type": "overloaded_error", "message": "scripted upstream error"}}),
            ),
            Dialect::Dify => sse(
                None,
                &json!({"event": "error", "task_id": "task-scripted",
                "message_id": "msg-scripted", "status": 500, "code": "internal_error",
                "message": "scripted upstream error"}),
            ),
        }
    }
}
