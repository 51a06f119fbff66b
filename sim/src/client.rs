//! What the simulated worlds (`world`, `fleet`) share: the server settings both start from, and
//! the clients their users and administrators use over simulated TCP — a WebSocket connection and
//! a raw HTTP/1.1 POST.

use std::net::SocketAddr;
use std::time::Duration;

use chatbox_core::config::{Config, ProviderConfig};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The JWT secret of every simulated server.
pub const SECRET: &str = "sim-Zq8LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0NeRr4";
/// The port every simulated server listens on.
pub const PORT: u16 = 8080;

/// A client's WebSocket connection.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The settings both worlds start from: the echo provider, short reply deadlines, 12 messages a
/// minute, a ping every 20 s; each world adds its own.
pub fn base_config() -> Config {
    let mut config = Config::for_dev(SECRET.to_string(), "unused");
    config.server.host = "0.0.0.0".into();
    config.server.port = PORT;
    config.llm.providers = vec![ProviderConfig::echo("sim", "Simulated model")];
    config.llm.first_chunk_timeout = Duration::from_secs(5);
    config.llm.idle_timeout = Duration::from_secs(4);
    config.llm.stream_timeout = Duration::from_secs(20);
    config.rate.messages.limit = 12;
    config.rate.messages.window = Duration::from_secs(60);
    config.websocket.ping_interval = Duration::from_secs(20);
    config.websocket.pong_wait = Duration::from_secs(25);
    config
}

/// A WebSocket to the server at `addr` with `token`; `None` if it could not be opened in time.
pub async fn connect(addr: SocketAddr, token: &str) -> Option<Ws> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut request = format!("ws://{addr}/chatbox/ws").into_client_request().ok()?;
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().ok()?);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(request, tcp),
    )
    .await
    .ok()?
    .ok()?;
    Some(ws)
}

/// A raw HTTP/1.1 POST to `addr` with `token`; returns the status code.
pub async fn post(addr: SocketAddr, path: &str, token: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: chatbox\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&response).split_whitespace().nth(1)?.parse().ok()
}
