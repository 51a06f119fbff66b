//! What the test servers that `scripts/*-server.sh start` run (SMTP, MongoDB, Redis, S3) have in
//! common: each prints `listening HOST:PORT` as its first line once it serves, and an HTTP
//! request read whole off a raw socket (the local webhook receivers).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;

/// The `HOST:PORT` of the first line (`listening HOST:PORT`) `child` prints on its piped
/// stdout within `budget`. When none comes, the process is killed and `Err` says what came
/// instead (for the caller's panic, with the script's stderr).
pub async fn listening(child: &mut Child, budget: Duration) -> Result<String, String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    match tokio::time::timeout(budget, lines.next_line()).await {
        Ok(Ok(Some(line))) => match line.strip_prefix("listening ") {
            Some(addr) => Ok(addr.trim().to_string()),
            None => Err(format!("unexpected first line {line:?}")),
        },
        outcome => {
            let _ = child.start_kill();
            Err(format!("{outcome:?}"))
        }
    }
}

/// The port of a `HOST:PORT`.
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit(':').next()?.parse().ok()
}

/// What `child` wrote to its piped stderr, read for at most `budget`.
pub async fn piped_stderr(child: &mut Child, budget: Duration) -> String {
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = tokio::time::timeout(budget, err.read_to_string(&mut stderr)).await;
    }
    stderr
}

/// Reads one HTTP request off `socket`: its head (request line and headers) and its
/// `Content-Length` body; `None` when the peer closes or fails first.
pub async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0usize);
    while buf.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some((head, buf[head_end..head_end + length].to_vec()))
}
