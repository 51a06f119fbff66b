//! What the test servers that `scripts/*-server.sh start` run (SMTP, MongoDB, Redis, S3) have in
//! common: each prints `listening HOST:PORT` as its first line once it serves, and an HTTP
//! request read whole off a raw socket (the local webhook receivers).

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;

/// Where a script's server writes its stderr, for the panic when it does not start.
#[derive(Debug)]
pub enum Stderr<'a> {
    /// The child's piped stderr, read for at most this long.
    Piped(Duration),
    /// A log file.
    File(&'a Path),
}

/// The `HOST:PORT` of the first line (`listening HOST:PORT`) `child` prints on its piped
/// stdout within `budget`.
///
/// # Panics
/// When none comes: the process is killed, and the panic names `server`, what came instead,
/// `needs` (what the script needs, e.g. "it needs python3 …") and the script's stderr.
pub async fn listening(
    child: &mut Child,
    budget: Duration,
    server: &str,
    needs: &str,
    stderr: Stderr<'_>,
) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let outcome = match tokio::time::timeout(budget, lines.next_line()).await {
        Ok(Ok(Some(line))) => match line.strip_prefix("listening ") {
            Some(addr) => return addr.trim().to_string(),
            None => format!("unexpected first line {line:?}"),
        },
        outcome => format!("{outcome:?}"),
    };
    let _ = child.start_kill();
    let stderr = match stderr {
        Stderr::Piped(wait) => piped_stderr(child, wait).await,
        Stderr::File(path) => std::fs::read_to_string(path).unwrap_or_default(),
    };
    panic!("the {server} did not start ({outcome}){needs}.\nstderr:\n{stderr}");
}

/// The port of a `HOST:PORT`.
///
/// # Panics
/// When `addr` has none.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in the server's address {addr:?}"))
}

/// What `child` wrote to its piped stderr, read for at most `budget`.
async fn piped_stderr(child: &mut Child, budget: Duration) -> String {
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
