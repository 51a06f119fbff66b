//! Small shared pieces: the one monotonic clock every timestamp is read from, task spawning,
//! duration parsing, `/proc` readings, token minting and a tiny HTTP/1.1 client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use chatbox_core::godur;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The process's time origin; every timestamp is microseconds since it.
#[allow(clippy::disallowed_methods, reason = "a client tool timing its own requests")]
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Microseconds since the process's time origin (tokio's monotonic clock).
pub fn now_us() -> u64 {
    u64::try_from(origin().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Spawns a task. The load generator is a client, not part of the server's task supervisor:
/// its tasks end with the scenario (or with the process).
#[allow(clippy::disallowed_methods)] // a client tool: no supervisor to register with
pub fn spawn<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(task)
}

/// Parses Go duration text (`250us`, `20ms`, `1.5s`, `2m`, `1h30m`; core's `godur`, the syntax
/// of the server's own settings) or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 => Ok(Duration::from_secs_f64(ms / 1e3)),
        Ok(_) => Err(format!("not a duration: {text:?}")),
        Err(_) => godur::parse(text).map_err(|e| e.to_string()),
    }
}

/// A process's resident set: (`VmRSS`, `VmHWM`) in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.trim_start_matches(':').trim();
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some((field("VmRSS")?, field("VmHWM")?))
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // /proc counts in USER_HZ, which Linux fixes at 100 on every architecture it exports it on
    // (sysconf(_SC_CLK_TCK) would need unsafe code, which the workspace forbids).
    const USER_HZ: u64 = 100;
    Some(Duration::from_micros((utime + stime) * 1_000_000 / USER_HZ))
}

/// Open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to the hard limit; the limit in force.
/// Children (the server) inherit it.
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            eprintln!("could not raise RLIMIT_NOFILE: {error}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
        }
    }
}

/// An HS256 user token for `user`, valid for a day (longer than any scenario runs).
pub fn user_token(secret: &str, user: &str) -> String {
    let exp = chatbox_tests::harness::unix_now() + 86_400;
    chatbox_tests::harness::sign(
        secret.as_bytes(),
        &json!({"user_id": user, "roles": ["user"], "exp": exp}),
    )
}

/// chatbox's WebSocket settings at their defaults (`WS_READ_BUFFER_SIZE` 1024, messages up to
/// 1 MiB, every frame written straight to the socket), as `shell/src/http/ws.rs` sets them: the
/// relay accepts with them and the generator's clients connect with them. tungstenite's default
/// 128 KiB read buffer is zeroed on every read, which was most of either side's CPU per reply.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(1_048_576))
        .max_frame_size(Some(1_048_576))
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(usize::MAX)
}

/// A `user_message` frame for `session` (the server assigns a session when it knows none).
pub fn user_message(session: &str, content: &str) -> tokio_tungstenite::tungstenite::Message {
    let frame = json!({"type": "user_message", "session_id": session, "content": content, "sender": "user"});
    tokio_tungstenite::tungstenite::Message::text(frame.to_string())
}

/// What an OpenAI streaming body carried, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// A chunk's `choices[0].delta.content`.
    Text(String),
    /// `data: [DONE]`.
    Done,
}

/// Reads an OpenAI SSE body incrementally (the client's `--target http` and the relay): bytes
/// go in as they arrive, whole `data:` lines come out as events.
#[derive(Debug, Default)]
pub struct SseReader {
    buffer: bytes::BytesMut,
}

impl SseReader {
    /// Adds `data` and returns the events of every line it completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(data);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line = self.buffer.split_to(end + 1);
            let Ok(line) = std::str::from_utf8(&line) else { continue };
            let Some(payload) = line.trim().strip_prefix("data:").map(str::trim) else { continue };
            if payload == "[DONE]" {
                events.push(SseEvent::Done);
                continue;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(payload) else { continue };
            if let Some(text) = chunk.pointer("/choices/0/delta/content").and_then(Value::as_str) {
                events.push(SseEvent::Text(text.to_string()));
            }
        }
        events
    }
}

/// A strong random secret (64 hex digits: no weak word can appear in it).
pub fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A random 32-hex-digit id (session ids proposed by the client).
pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Source address number `k` of `count`: 127.0.0.(1 + k mod count).
pub fn source_ip(k: usize, count: usize) -> IpAddr {
    let last = 1 + (k % count.clamp(1, 254));
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, u8::try_from(last).unwrap_or(1)))
}

/// A TCP connection to `to` from `from` (port chosen by the kernel), with `TCP_NODELAY`.
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if to.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if to.ip().is_loopback() && to.is_ipv4() {
        socket.bind(SocketAddr::new(from, 0))?;
    }
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A persistent HTTP/1.1 connection (requests one at a time).
pub struct HttpConn {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl HttpConn {
    /// Opens a connection to `addr` from `from`.
    pub async fn open(from: IpAddr, addr: SocketAddr) -> std::io::Result<HttpConn> {
        let stream = connect_from(from, addr).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        spawn(async move {
            let _ = connection.await;
        });
        Ok(HttpConn { sender, addr })
    }

    /// Sends one request and reads the whole answer: (status, body text).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<(u16, String), String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let bytes = match body {
            Some(value) => {
                builder = builder.header("content-type", "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(bytes)).map_err(|e| e.to_string())?;
        let response = self.sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// One `GET` on a fresh connection: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut conn =
        HttpConn::open(IpAddr::V4(Ipv4Addr::LOCALHOST), addr).await.map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), conn.request("GET", path, &[], None))
        .await
        .map_err(|_| "timed out".to_string())?
}

/// The value of an unlabelled Prometheus sample `name` in a text exposition.
pub fn prom_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Mebibytes of a KiB figure, one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_millis(7)));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn sse_events_are_read_across_frame_boundaries() {
        let mut sse = SseReader::default();
        let chunk = r#"data: {"choices":[{"delta":{"content":"L1.0 "}}]}"#;
        let (head, tail) = chunk.split_at(20);
        assert_eq!(sse.push(head.as_bytes()), []);
        assert_eq!(
            sse.push(format!("{tail}\n\n: comment\n").as_bytes()),
            [SseEvent::Text("L1.0 ".into())]
        );
        let finish = r#"data: {"choices":[{"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(sse.push(format!("{finish}\n\ndata: [DONE]\n\n").as_bytes()), [SseEvent::Done]);
    }

    #[test]
    fn prometheus_values_parse() {
        let text =
            "# HELP x\nchatbox_active_sessions_total 12\nchatbox_sessions_created_total 30\n";
        assert_eq!(prom_value(text, "chatbox_active_sessions_total"), Some(12.0));
        assert_eq!(prom_value(text, "chatbox_sessions_created"), None);
    }
}
