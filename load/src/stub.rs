//! The built-in stub upstream: an OpenAI-compatible `POST …/chat/completions` streaming server
//! (`text/event-stream`) with a configurable first-chunk delay and chunk cadence.
//!
//! Each request's current message is the last `user` message of its body; a load message's
//! content is `load-<n>`, and every chunk of its reply is tagged `L<n>.<k> ` so the client can
//! attribute chunks to requests even when replies interleave on one connection. Per request
//! id the stub records when the request arrived and when its first chunk was handed to the
//! connection ([`Stub::take`]), both on the process clock ([`crate::util::now_us`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::util::{now_us, spawn};

/// What each reply looks like.
#[derive(Debug, Clone, Copy)]
pub struct StubConfig {
    /// Wait after the response headers before the first chunk.
    pub first_chunk_delay: Duration,
    /// Content chunks per reply (at least one).
    pub chunks: u32,
    /// Wait between two chunks.
    pub chunk_interval: Duration,
}

/// Arrival and first-chunk times of one request, in µs of the process clock.
#[derive(Debug, Clone, Copy)]
pub struct StubTimes {
    /// The request head arrived (its body is read after this).
    pub received_us: u64,
    /// The first content chunk was handed to the connection.
    pub first_chunk_us: u64,
}

#[derive(Debug, Default)]
struct Shared {
    times: Mutex<HashMap<u64, StubTimes>>,
    requests: AtomicU64,
    streaming: AtomicU64,
    connections: AtomicU64,
}

/// A running stub upstream (its tasks live as long as the process).
#[derive(Debug, Clone)]
pub struct Stub {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Stub {
    /// Starts the stub on `127.0.0.1:port` (`0`: any free port).
    pub async fn start(port: u16, config: StubConfig) -> std::io::Result<Stub> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        spawn(accept_loop(listener, Arc::clone(&shared), config));
        Ok(Stub { addr, shared })
    }

    /// The OpenAI base URL to configure a provider with (`http://127.0.0.1:PORT/v1`).
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Removes and returns the times recorded for request id `id`.
    pub fn take(&self, id: u64) -> Option<StubTimes> {
        self.shared.times.lock().unwrap_or_else(PoisonError::into_inner).remove(&id)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// TCP connections accepted so far (fewer than requests when callers keep them alive).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Replies being streamed now.
    pub fn streaming(&self) -> u64 {
        self.shared.streaming.load(Ordering::Relaxed)
    }

    /// Forgets every recorded time (between scenario steps).
    pub fn clear(&self) {
        self.shared.times.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, config: StubConfig) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        spawn(async move {
            let service = service_fn(move |request| handle(request, Arc::clone(&shared), config));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The request id of a load message (`load-<n>`): the last JSON string of the body that is
/// exactly `load-<digits>`. The stub serves the load generator, whose every user message is a
/// load message, so that string is the last user message's content (assistant replies are tagged
/// `L<n>.<k>`, user ids are `load-s…`). Searched from the end of the raw bytes instead of parsing
/// the body, which carries the whole history: a `serde_json::Value` of it was a large share of the
/// generator's CPU per reply.
fn request_id(body: &[u8]) -> Option<u64> {
    const OPEN: &[u8] = b"\"load-";
    let mut end = body.len();
    while let Some(at) = body[..end].windows(OPEN.len()).rposition(|w| w == OPEN) {
        let rest = &body[at + OPEN.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && rest.get(digits) == Some(&b'"') {
            return std::str::from_utf8(&rest[..digits]).ok()?.parse().ok();
        }
        end = at;
    }
    None
}

/// One OpenAI `chat.completion.chunk` event (written out rather than built as a
/// `serde_json::Value`: six of them per reply).
fn sse(content: Option<&str>, first: bool, finish: bool) -> Bytes {
    let role = if first { r#""role":"assistant""# } else { "" };
    let text = content.map(|text| Value::from(text).to_string());
    let text = text.map(|t| format!(r#""content":{t}"#)).unwrap_or_default();
    let comma = if role.is_empty() || text.is_empty() { "" } else { "," };
    let reason = if finish { r#""stop""# } else { "null" };
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-load\",\"object\":\"chat.completion.chunk\",\"created\":0,\
         \"model\":\"stub\",\"choices\":[{{\"index\":0,\"delta\":{{{role}{comma}{text}}},\
         \"finish_reason\":{reason}}}]}}\n\n"
    ))
}

/// Decrements the streaming gauge when a reply body is dropped (finished or cut).
struct StreamingGuard(Arc<Shared>);

impl Drop for StreamingGuard {
    fn drop(&mut self) {
        self.0.streaming.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    config: StubConfig,
) -> Result<Response<Body>, Infallible> {
    let received_us = now_us();
    let seq = shared.requests.fetch_add(1, Ordering::Relaxed);
    if !request.uri().path().trim_end_matches('/').ends_with("/chat/completions") {
        let body = Full::new(Bytes::from_static(b"not found")).boxed_unsync();
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    }
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    // Requests that are not load messages get an untracked id of their own.
    let id = request_id(&body);
    let tag = id.unwrap_or(u64::MAX - seq);
    shared.streaming.fetch_add(1, Ordering::Relaxed);
    let guard = StreamingGuard(Arc::clone(&shared));
    let chunks = config.chunks.max(1);
    // Steps: 0..chunks content chunks, then the finishing chunk, then [DONE].
    let recorder = Arc::clone(&shared);
    let frames = futures_util::stream::unfold(0u32, move |step| {
        let shared = Arc::clone(&recorder);
        async move {
            let bytes = if step < chunks {
                let wait = if step == 0 { config.first_chunk_delay } else { config.chunk_interval };
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                let text = format!("L{tag}.{step} ");
                let bytes = sse(Some(&text), step == 0, false);
                if step == 0 {
                    if let Some(id) = id {
                        let times = StubTimes { received_us, first_chunk_us: now_us() };
                        shared
                            .times
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(id, times);
                    }
                }
                bytes
            } else if step == chunks {
                sse(None, false, true)
            } else if step == chunks + 1 {
                Bytes::from_static(b"data: [DONE]\n\n")
            } else {
                return None;
            };
            Some((Ok::<_, Infallible>(Frame::data(bytes)), step + 1))
        }
    });
    let frames = futures_util::StreamExt::map(frames, move |frame| {
        let _keep = &guard;
        frame
    });
    let body = StreamBody::new(frames).boxed_unsync();
    let mut response = Response::new(body);
    response.headers_mut().insert("content-type", "text/event-stream".parse().expect("static"));
    response.headers_mut().insert("cache-control", "no-cache".parse().expect("static"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_request_id_is_the_last_load_string() {
        let body = json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "load-7"},
                {"role": "assistant", "content": "L7.0 L7.1 "},
                {"role": "user", "content": "load-12"},
            ],
            "user": "load-s1-u3",
            "stream": true,
        });
        assert_eq!(request_id(body.to_string().as_bytes()), Some(12));
        let spaced = serde_json::to_string_pretty(&body).unwrap();
        assert_eq!(request_id(spaced.as_bytes()), Some(12));
        assert_eq!(request_id(br#"{"messages":[{"role":"user","content":"hello"}]}"#), None);
        assert_eq!(request_id(br#"{"messages":[{"role":"user","content":"load-9x"}]}"#), None);
        assert_eq!(request_id(b""), None);
    }

    #[test]
    fn chunks_are_openai_chunk_events() {
        let parse = |bytes: Bytes| -> Value {
            let text = std::str::from_utf8(&bytes).unwrap();
            let data = text.strip_prefix("data: ").unwrap().strip_suffix("\n\n").unwrap();
            serde_json::from_str(data).unwrap()
        };
        let first = parse(sse(Some("L1.0 \"q\""), true, false));
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(
            first["choices"][0]["delta"],
            json!({"role": "assistant", "content": "L1.0 \"q\""})
        );
        assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
        let middle = parse(sse(Some("L1.1 "), false, false));
        assert_eq!(middle["choices"][0]["delta"], json!({"content": "L1.1 "}));
        let last = parse(sse(None, false, true));
        assert_eq!(last["choices"][0]["delta"], json!({}));
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
    }
}
