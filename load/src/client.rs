//! Client connections that carry load messages: a WebSocket to chatbox (up to
//! `WS_MAX_IN_FLIGHT` replies at once) or an HTTP/1.1 keep-alive connection to an
//! OpenAI-compatible endpoint (one streamed reply at a time).
//!
//! Both take [`Job`]s from the scheduler and give a capacity token (their index) back on the
//! `tokens` channel whenever a reply finishes, so the scheduler only hands work to a connection
//! that has room. A load message's content is `load-<id>`; the stub tags each chunk of its
//! reply `L<id>.<k>`, which is how chunks are attributed to requests.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::frame::ServerFrame;
use crate::stats::Stats;
use crate::stub::Stub;
use crate::util::{connect_from, now_us, SseEvent, SseReader};

/// One message to send.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// Request id (`load-<id>`).
    pub id: u64,
    /// When the open loop scheduled it.
    pub scheduled_us: u64,
}

/// The scheduler's handle on a connection.
#[derive(Debug)]
pub struct Slot {
    /// Work for the connection.
    pub tx: mpsc::UnboundedSender<Job>,
    /// False once the connection is gone.
    pub alive: Arc<AtomicBool>,
}

/// What every connection task shares.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Where results go.
    pub stats: Arc<Stats>,
    /// The in-process stub, for its per-request times (`None` when it runs elsewhere).
    pub stub: Option<Stub>,
    /// Capacity tokens back to the scheduler.
    pub tokens: std::sync::mpsc::Sender<usize>,
    /// Chunks per reply the stub sends.
    pub chunks: u32,
}

/// A request in flight on a connection.
#[derive(Debug)]
struct InFlight {
    job: Job,
    sent_us: u64,
    /// Chunks received so far (the first one is timed).
    chunks: u32,
}

/// A WebSocket client connection over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `url` (server at `addr`) from `from` with a bearer token and reads
/// the greeting (`connection_status`).
pub async fn ws_connect(
    url: &str,
    addr: SocketAddr,
    from: IpAddr,
    token: &str,
    limit: Duration,
) -> Result<(Ws, Value), String> {
    let attempt = async {
        let stream = connect_from(from, addr).await.map_err(|e| format!("connect: {e}"))?;
        let mut request = url.into_client_request().map_err(|e| format!("request: {e}"))?;
        let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        request.headers_mut().insert("Authorization", auth);
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(
            request,
            stream,
            Some(crate::util::ws_config()),
        )
        .await
        .map_err(|e| format!("handshake: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let greeting = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    return Ok((ws, greeting));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("greeting: {e}")),
                None => return Err("greeting: closed".to_string()),
            }
        }
    };
    tokio::time::timeout(limit, attempt).await.map_err(|_| "connect: timed out".to_string())?
}

/// Parses the `L<id>.<k>` tags of a chunk's text.
fn tags(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.split_whitespace()
        .filter_map(|word| word.strip_prefix('L')?.split('.').next()?.parse().ok())
}

/// Handles the chunk text of a reply: records first chunks, counts chunks.
fn on_chunk(ctx: &Ctx, pending: &mut [InFlight], text: &str, now: u64) {
    for id in tags(text) {
        if let Some(request) = pending.iter_mut().find(|r| r.job.id == id) {
            request.chunks += 1;
            if request.chunks == 1 {
                let stub = ctx.stub.as_ref().and_then(|s| s.take(id));
                ctx.stats.first_chunk(request.job.scheduled_us, request.sent_us, now, stub);
            }
        }
    }
}

/// Drives one WebSocket: sends jobs as `user_message` frames, reads replies, until the
/// scheduler drops its sender (then closes) or the server closes.
pub async fn ws_loop(
    index: usize,
    ws: Ws,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ctx: Ctx,
    alive: Arc<AtomicBool>,
) {
    let (mut sink, mut stream) = ws.split();
    let mut session = crate::util::random_id();
    let mut pending: Vec<InFlight> = Vec::new();
    // Ends request `position`: with its done frame (`Some(complete)`) or refused (`None`).
    let finish = |pending: &mut Vec<InFlight>, position: usize, done: Option<bool>| {
        pending.remove(position);
        match done {
            Some(all) => ctx.stats.done(all),
            None => ctx.stats.finished(),
        }
        let _ = ctx.tokens.send(index);
    };
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { break };
                let message = crate::util::user_message(&session, &format!("load-{}", job.id));
                if sink.send(message).await.is_err() {
                    ctx.stats.error("send_failed");
                    ctx.stats.finished();
                    break;
                }
                let sent_us = now_us();
                ctx.stats.sent(job.scheduled_us, sent_us);
                pending.push(InFlight { job, sent_us, chunks: 0 });
            }
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let now = now_us();
                let Some(frame) = ServerFrame::parse(text.as_str()) else { continue };
                if let Some(id) = frame.session_id.as_deref() {
                    if id != session {
                        session = id.to_string();
                    }
                }
                match &*frame.kind {
                    "ai_response" => {
                        if let Some(content) = &frame.content {
                            on_chunk(&ctx, &mut pending, content, now);
                        }
                        if frame.is_done() && !pending.is_empty() {
                            let full = pending.iter().position(|r| r.chunks >= ctx.chunks);
                            finish(&mut pending, full.unwrap_or(0), Some(full.is_some()));
                        }
                    }
                    "error" => {
                        ctx.stats.error(frame.error_code().unwrap_or("error_frame"));
                        // Refusals (busy, rate limit) come at once: attribute the error to
                        // the newest request without a chunk, if any.
                        if let Some(position) = pending.iter().rposition(|r| r.chunks == 0) {
                            finish(&mut pending, position, None);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    alive.store(false, Ordering::Relaxed);
    for _ in pending.drain(..) {
        ctx.stats.error("closed_in_flight");
        ctx.stats.finished();
    }
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
}

/// An OpenAI-compatible streaming endpoint.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// Its address.
    pub addr: SocketAddr,
    /// Path of the chat-completions route (e.g. `/v1/chat/completions`).
    pub path: String,
    /// `model` of each request.
    pub model: String,
    /// Bearer token, if the endpoint wants one.
    pub api_key: Option<String>,
}

/// Drives one HTTP/1.1 keep-alive connection: one streamed completion per job.
pub async fn http_loop(
    index: usize,
    from: IpAddr,
    target: HttpTarget,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ctx: Ctx,
) {
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    while let Some(job) = jobs.recv().await {
        let outcome = http_one(&mut sender, from, &target, job, &ctx).await;
        if let Err(kind) = outcome {
            ctx.stats.error(&kind);
            ctx.stats.finished();
            sender = None;
        }
        let _ = ctx.tokens.send(index);
    }
}

async fn http_one(
    sender: &mut Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    from: IpAddr,
    target: &HttpTarget,
    job: Job,
    ctx: &Ctx,
) -> Result<(), String> {
    if sender.as_mut().map(|s| s.is_closed()).unwrap_or(true) {
        let stream = connect_from(from, target.addr).await.map_err(|_| "connect".to_string())?;
        let (s, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| "connect".to_string())?;
        crate::util::spawn(async move {
            let _ = connection.await;
        });
        *sender = Some(s);
    }
    let Some(s) = sender.as_mut() else { return Err("connect".into()) };
    s.ready().await.map_err(|_| "connection_closed".to_string())?;
    let body = json!({
        "model": target.model,
        "messages": [{"role": "user", "content": format!("load-{}", job.id)}],
        "stream": true,
    });
    let mut request = hyper::Request::post(&target.path)
        .header("host", target.addr.to_string())
        .header("content-type", "application/json")
        .header("accept", "text/event-stream");
    if let Some(key) = &target.api_key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|_| "request".to_string())?;
    let sent_us = now_us();
    let response = s.send_request(request).await.map_err(|_| "send_failed".to_string())?;
    ctx.stats.sent(job.scheduled_us, sent_us);
    if response.status() != 200 {
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        return Err(format!("http_{status}"));
    }
    let mut pending = vec![InFlight { job, sent_us, chunks: 0 }];
    let mut body = response.into_body();
    let mut sse = SseReader::default();
    let mut done = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| "body_error".to_string())?;
        let Some(data) = frame.data_ref() else { continue };
        let now = now_us();
        for event in sse.push(data) {
            match event {
                SseEvent::Text(text) => on_chunk(ctx, &mut pending, &text, now),
                SseEvent::Done => done = true,
            }
        }
    }
    let all = pending.first().map(|r| r.chunks >= ctx.chunks).unwrap_or(false);
    if done {
        ctx.stats.done(all);
        Ok(())
    } else {
        Err("no_done_event".into())
    }
}
