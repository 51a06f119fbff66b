//! `chatbox-load relay`: the floor any gateway process stands on. A bare WebSocket ↔ OpenAI
//! SSE relay with none of chatbox's work (no auth check, sessions, store, history, limits or
//! metrics) and the fewest wake-ups a separate process can have: one task per WebSocket that
//! also drives its upstream connections and writes each chunk itself. Measured with
//! `chatbox-load run --server-addr`, it shows what the machine's scheduler and loopback cost
//! between two processes, i.e. how much of chatbox's added latency is not chatbox's work.
//!
//! It speaks just enough of the chat protocol for the load client: a greeting, `user_message`
//! in, `ai_response` chunks and a `done` frame out.
//!
//! It does the transport work chatbox does the way chatbox does it (issue 18: the ratio must
//! compare like with like): upstream HTTP/1.1 connections are kept alive in one pool per
//! process, as chatbox's reqwest client keeps them, and the WebSocket has chatbox's buffers
//! (see `shell/src/http/ws.rs`). A pooled connection is driven by the reply using it rather
//! than by a task of its own, so it costs no extra wake-up.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::stream::{SelectAll, Stream, StreamExt};
use futures_util::SinkExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::util::{spawn, SseEvent, SseReader};

/// Options of `chatbox-load relay`.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The OpenAI-compatible upstream (e.g. the stub of `chatbox-load run --stub-port P`).
    #[arg(long, default_value = "127.0.0.1:18999")]
    pub upstream: SocketAddr,
    /// chatbox's task layout instead of the fewest wake-ups: each reply in a task of its own
    /// that sends its events to the WebSocket's task, and each upstream connection driven by
    /// a task of its own (as reqwest drives it). What the two hops per chunk cost by
    /// themselves (BENCHMARKS.md "1k").
    #[arg(long)]
    pub tasks: bool,
}

/// What one upstream reply produced.
enum Event {
    Chunk(String),
    Done,
    Failed(String),
}

type Reply = Pin<Box<dyn Stream<Item = (String, Event)> + Send>>;

/// The request half of an upstream HTTP/1.1 connection.
type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// The connection half, polled by whichever reply uses the connection.
type Conn = Pin<Box<hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// Idle upstream connections, last in first out (reqwest's pool hands out the most recent).
type Pool = Arc<Mutex<Vec<(Sender, Conn)>>>;

/// Runs the relay until the process is killed; prints `relay listening on ADDR`.
pub async fn relay(args: &RelayArgs) {
    let listener = match TcpListener::bind(("127.0.0.1", args.port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("relay: cannot listen on port {}: {error}", args.port);
            std::process::exit(2);
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            let layout = if args.tasks { "chatbox's tasks" } else { "one task per WebSocket" };
            println!("relay listening on {addr} (upstream {}, {layout})", args.upstream);
        }
        Err(error) => eprintln!("relay: {error}"),
    }
    let upstream = args.upstream;
    let pool = Pool::default();
    let tasked = args.tasks.then(TaskedPool::default);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        spawn(connection(stream, upstream, Arc::clone(&pool), tasked.clone()));
    }
}

async fn connection(
    stream: TcpStream,
    upstream: SocketAddr,
    pool: Pool,
    tasked: Option<TaskedPool>,
) {
    let Ok(ws) =
        tokio_tungstenite::accept_async_with_config(stream, Some(crate::util::ws_config())).await
    else {
        return;
    };
    let (mut sink, mut inbound) = ws.split();
    let greeting = json!({"type": "connection_status", "status": "connected"});
    if sink.send(Message::text(greeting.to_string())).await.is_err() {
        return;
    }
    let mut replies: SelectAll<Reply> = SelectAll::new();
    loop {
        let out = tokio::select! {
            message = inbound.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    let session = frame["session_id"].as_str().unwrap_or("relay").to_string();
                    let content = frame["content"].as_str().unwrap_or("").to_string();
                    replies.push(match &tasked {
                        Some(tasked) => tasked::reply(upstream, Arc::clone(tasked), session, content),
                        None => reply(upstream, Arc::clone(&pool), session, content),
                    });
                    continue;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
            Some((session, event)) = replies.next(), if !replies.is_empty() => match event {
                Event::Chunk(text) => json!({
                    "type": "ai_response", "session_id": session, "content": text,
                }),
                Event::Done => json!({
                    "type": "ai_response", "session_id": session, "content": "",
                    "metadata": {"done": "true"},
                }),
                Event::Failed(why) => json!({
                    "type": "error", "session_id": session,
                    "error": {"code": "LLM_UNAVAILABLE", "message": why},
                }),
            },
        };
        if sink.send(Message::text(out.to_string())).await.is_err() {
            return;
        }
    }
}

/// Idle upstream connections of the `--tasks` layout: each one's connection future runs in a
/// task of its own, so only the request half is pooled.
type TaskedPool = Arc<Mutex<Vec<Sender>>>;

/// An idle connection from `pool` that is still open, else a new one to `upstream`.
async fn checkout(pool: &Pool, upstream: SocketAddr) -> Result<(Sender, Conn), String> {
    loop {
        let idle = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let Some((mut send, mut conn)) = idle else { break };
        // The connection future ends when the upstream closed it while it was idle.
        let ready = tokio::select! {
            ready = send.ready() => ready.is_ok(),
            _ = conn.as_mut() => false,
        };
        if ready {
            return Ok((send, conn));
        }
    }
    let stream = TcpStream::connect(upstream).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    Ok((send, Box::pin(conn)))
}

/// One upstream reply as a stream of events. The connection future is polled by this stream
/// (not spawned), so a chunk reaches the WebSocket without another task's wake-up; once the
/// body has ended the connection goes back to `pool`.
fn reply(upstream: SocketAddr, pool: Pool, session: String, content: String) -> Reply {
    let start = async move {
        let (mut send, mut conn) = checkout(&pool, upstream).await?;
        let request = request(upstream, &content)?;
        let response = tokio::select! {
            response = send.send_request(request) => response.map_err(|e| e.to_string())?,
            _ = conn.as_mut() => return Err("upstream closed".to_string()),
        };
        Ok::<_, String>(Upstream {
            send,
            conn,
            conn_done: false,
            body: response.into_body(),
            sse: SseReader::default(),
            done: false,
            ended: false,
            pool,
        })
    };
    let events = futures_util::stream::once(start).flat_map(|started| match started {
        Ok(upstream) => futures_util::stream::unfold(upstream, next_events)
            .flat_map(futures_util::stream::iter)
            .left_stream(),
        Err(why) => futures_util::stream::iter(vec![Event::Failed(why)]).right_stream(),
    });
    Box::pin(events.map(move |event| (session.clone(), event)))
}

/// The streamed chat request for `content` to the stub at `upstream`.
fn request(upstream: SocketAddr, content: &str) -> Result<hyper::Request<Full<Bytes>>, String> {
    let body = json!({
        "model": "stub", "stream": true,
        "messages": [{"role": "user", "content": content}],
    });
    hyper::Request::post("/v1/chat/completions")
        .header("host", upstream.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())
}

/// The relay's events for the SSE events of one body frame.
fn events(sse: &mut SseReader, data: &Bytes) -> Vec<Event> {
    let to_event = |event| match event {
        SseEvent::Text(text) => Event::Chunk(text),
        SseEvent::Done => Event::Done,
    };
    sse.push(data).into_iter().map(to_event).collect()
}

/// An upstream response being read, with its connection.
struct Upstream {
    send: Sender,
    conn: Conn,
    /// The connection future has ended (the upstream closed it): not reusable.
    conn_done: bool,
    body: Incoming,
    sse: SseReader,
    /// `[DONE]` was relayed; the body is read to its end only to free the connection.
    done: bool,
    /// Nothing more to relay or read.
    ended: bool,
    pool: Pool,
}

impl Upstream {
    /// Puts the connection back into the pool (its response has been read to the end).
    fn release(self) {
        if !self.conn_done {
            self.pool.lock().unwrap_or_else(PoisonError::into_inner).push((self.send, self.conn));
        }
    }
}

/// The events of the next body frame (several SSE events may share one frame); after
/// `[DONE]`, reads the body to its end and releases the connection.
async fn next_events(mut up: Upstream) -> Option<(Vec<Event>, Upstream)> {
    if up.ended {
        return None;
    }
    loop {
        let frame = tokio::select! {
            frame = up.body.frame() => frame,
            _ = up.conn.as_mut(), if !up.conn_done => { up.conn_done = true; continue; }
        };
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Some(Err(_)) if up.done => return None,
            Some(Err(error)) => {
                up.ended = true;
                return Some((vec![Event::Failed(error.to_string())], up));
            }
            None if up.done => {
                up.release();
                return None;
            }
            None => {
                up.ended = true;
                return Some((vec![Event::Failed("no [DONE]".into())], up));
            }
        };
        if up.done {
            continue;
        }
        let events = events(&mut up.sse, &data);
        up.done = events.iter().any(|e| matches!(e, Event::Done));
        if !events.is_empty() {
            return Some((events, up));
        }
    }
}

/// The `--tasks` layout: chatbox's two hops per chunk (connection task → reply task → the
/// WebSocket's task) around the same transport work.
mod tasked {
    use super::{
        spawn, BodyExt, Event, PoisonError, Reply, Sender, SocketAddr, SseReader, TaskedPool,
        TcpStream, TokioIo,
    };

    /// One upstream reply, run by a task of its own; its events come through a channel.
    pub(super) fn reply(
        upstream: SocketAddr,
        pool: TaskedPool,
        session: String,
        content: String,
    ) -> Reply {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        spawn(async move {
            let events = match run(upstream, &pool, &content, &tx).await {
                Ok(()) => return,
                Err(why) => Event::Failed(why),
            };
            let _ = tx.send(events);
        });
        let events = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        });
        Box::pin(futures_util::StreamExt::map(events, move |event| (session.clone(), event)))
    }

    /// Sends the reply's events; the connection goes back to `pool` after its body ended.
    async fn run(
        upstream: SocketAddr,
        pool: &TaskedPool,
        content: &str,
        tx: &tokio::sync::mpsc::UnboundedSender<Event>,
    ) -> Result<(), String> {
        let mut send = checkout(pool, upstream).await?;
        let request = super::request(upstream, content)?;
        let mut body = send.send_request(request).await.map_err(|e| e.to_string())?.into_body();
        let (mut sse, mut done) = (SseReader::default(), false);
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(_) if done => return Ok(()),
                Err(error) => return Err(error.to_string()),
            };
            let Ok(data) = frame.into_data() else { continue };
            if done {
                continue;
            }
            for event in super::events(&mut sse, &data) {
                done |= matches!(event, Event::Done);
                let _ = tx.send(event);
            }
        }
        if !done {
            return Err("no [DONE]".into());
        }
        pool.lock().unwrap_or_else(PoisonError::into_inner).push(send);
        Ok(())
    }

    /// An idle, open connection from `pool`, else a new one whose future runs in its own task.
    async fn checkout(pool: &TaskedPool, upstream: SocketAddr) -> Result<Sender, String> {
        loop {
            let idle = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let Some(mut send) = idle else { break };
            if send.ready().await.is_ok() {
                return Ok(send);
            }
        }
        let stream = TcpStream::connect(upstream).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        spawn(conn);
        Ok(send)
    }
}
