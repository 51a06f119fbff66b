//! A real Redis for the fleet tests: Debian's `redis-server`, installed and started by
//! `scripts/redis-server.sh` on loopback on a fresh port, stopped (SHUTDOWN NOSAVE) on drop.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::script_server::{listening, port_of, Stderr};
use tokio::process::{Child, Command};

/// Bound on installing (first run) and starting the server.
const START_BUDGET: Duration = Duration::from_secs(300);

/// A running Redis and its directory.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port (installing `redis-server` with apt when missing).
    ///
    /// # Panics
    /// When it cannot be installed or started; the script's stderr is shown.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("chatbox-redis-").tempdir().expect("temp dir");
        let (child, port) = spawn(dir.path(), 0).await;
        Self { child: Some(child), port, dir }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Subscribers of `channel` (`PUBSUB NUMSUB`); 0 when the server does not answer.
    pub async fn subscribers(&self, channel: &str) -> u64 {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "pubsub", "numsub", channel])
            .stdin(Stdio::null())
            .output()
            .await;
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        text.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }

    /// Waits up to `limit` until `channel` has a subscriber (an instance's bus subscribes a
    /// channel in the background, after the connection that needs it registered); whether it did.
    pub async fn until_subscribed(&self, channel: &str, limit: Duration) -> bool {
        let started = crate::harness::now();
        loop {
            if self.subscribers(channel).await > 0 {
                return true;
            }
            if started.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server at once, dropping every client connection.
    pub async fn stop(&mut self) {
        shutdown(self.port);
        if let Some(mut child) = self.child.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            let _ = child.start_kill();
        }
    }

    /// Starts it again on the same port.
    ///
    /// # Panics
    /// When it does not come back.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (child, port) = spawn(self.dir.path(), self.port).await;
        assert_eq!(port, self.port, "restarted on the same port");
        self.child = Some(child);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            shutdown(self.port);
        }
    }
}

fn shutdown(port: u16) {
    let _ = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "shutdown", "nosave"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

async fn spawn(dir: &Path, port: u16) -> (Child, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis-server.sh");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
        .expect("open the Redis script's log");
    let mut child = Command::new("bash")
        .arg(&script)
        .args(["start", "--port", &port.to_string(), "--dir"])
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()));
    let log = dir.join("stderr.log");
    let addr = listening(&mut child, START_BUDGET, "redis-server", "", Stderr::File(&log)).await;
    let port = port_of(&addr);
    (child, port)
}
