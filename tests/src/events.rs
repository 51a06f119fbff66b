//! A client of the admin event stream (`GET {P}/admin/events`, server-sent events, issue 15):
//! one streaming HTTP/1.1 request over hyper, parsed into `(event, data)` pairs as they arrive,
//! with bounded waits. Comments (keep-alives) are skipped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::harness::{now, PREFIX};

/// One event: its name and its JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub name: String,
    /// The `data:` field as JSON (`Value::Null` when it is not JSON).
    pub data: Value,
}

/// An open event stream.
#[derive(Debug)]
pub struct EventStream {
    /// The response status.
    pub status: u16,
    /// The `content-type` header.
    pub content_type: String,
    body: Incoming,
    buffer: String,
    ready: VecDeque<SseEvent>,
    driver: tokio::task::JoinHandle<()>,
}

impl EventStream {
    /// Opens `GET {P}/admin/events` on `addr` with `token` as the bearer token.
    ///
    /// # Panics
    /// When the server cannot be reached or does not answer within 5 s.
    pub async fn open(addr: SocketAddr, token: &str) -> EventStream {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .expect("connect within 5 s")
            .expect("connect to the server");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        #[allow(clippy::disallowed_methods)] // test infrastructure: ends with the connection
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let req = hyper::Request::builder()
            .method("GET")
            .uri(format!("{PREFIX}/admin/events"))
            .header("Host", addr.to_string())
            .header("Accept", "text/event-stream")
            .header("Authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .expect("build the request");
        let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
            .await
            .expect("response head within 5 s")
            .expect("send the request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        EventStream {
            status,
            content_type,
            body: response.into_body(),
            buffer: String::new(),
            ready: VecDeque::new(),
            driver,
        }
    }

    /// The next event within `limit`, or `None` (the stream ended or nothing came).
    pub async fn next(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = now() + limit;
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.ok()??;
            let Ok(frame) = frame else { return None };
            if let Some(data) = frame.data_ref() {
                self.buffer.push_str(&String::from_utf8_lossy(data));
                self.parse();
            }
        }
    }

    /// Events until the first named `name` (included) within `limit`.
    ///
    /// # Panics
    /// When no such event comes within `limit`.
    pub async fn until(&mut self, name: &str, limit: Duration) -> Vec<SseEvent> {
        let deadline = now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(now());
            let Some(event) = self.next(left).await else {
                panic!("no {name:?} event within {limit:?}; got {seen:#?}");
            };
            let last = event.name == name;
            seen.push(event);
            if last {
                return seen;
            }
        }
    }

    fn parse(&mut self) {
        let text = self.buffer.replace("\r\n", "\n");
        self.buffer = text;
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let (mut name, mut data) = (String::from("message"), String::new());
            let mut any = false;
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim_start().to_string();
                    any = true;
                } else if let Some(value) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value.strip_prefix(' ').unwrap_or(value));
                    any = true;
                }
            }
            if any {
                let data = serde_json::from_str(&data).unwrap_or(Value::Null);
                self.ready.push_back(SseEvent { name, data });
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
