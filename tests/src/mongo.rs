//! A real MongoDB-wire-compatible server for the integration tests: SecantusDB, started by
//! `scripts/mongo-server.sh` (which installs it from PyPI into a cache venv on first use) on a
//! free loopback port with a temporary data directory. [`MongoServer::kill`] and
//! [`MongoServer::restart`] take it away and bring it back on the same port and data, for the
//! outage tests.
//!
//! When `CHATBOX_TEST_MONGO_URI` is set (CI's second pass, `scripts/test-all.sh`), every
//! [`crate::harness::ServerOpts`] points its server at that database instead of the embedded
//! store, each server in a database of its own ([`shared_uri`]).

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::script_server::{listening, port_of, Stderr};
use tokio::process::{Child, Command};

/// First start may install SecantusDB from PyPI.
const START_BUDGET: Duration = Duration::from_secs(300);

/// The MongoDB every harness server uses instead of the embedded store, if the test run names
/// one (`CHATBOX_TEST_MONGO_URI`).
pub fn shared_uri() -> Option<String> {
    std::env::var("CHATBOX_TEST_MONGO_URI").ok().filter(|uri| !uri.is_empty())
}

/// A database name no other server of this test process uses.
pub fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("chatbox_it_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A running SecantusDB (killed on drop) and its data directory.
#[derive(Debug)]
pub struct MongoServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl MongoServer {
    /// Starts a server on a free port.
    ///
    /// # Panics
    /// When bash, python3 or SecantusDB (from PyPI) are unavailable; the script's stderr is shown.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("chatbox-mongo-").tempdir().expect("temp dir");
        let (child, port) = spawn(dir.path(), 0).await;
        Self { child: Some(child), port, dir }
    }

    /// `mongodb://127.0.0.1:PORT/?directConnection=true`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Kills the server at once (SIGKILL: no goodbye to its clients), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }

    /// The server's process id while it runs (the load generator freezes it with SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts it again on the same port and data directory.
    ///
    /// # Panics
    /// When it does not come back (e.g. the port was taken meanwhile).
    pub async fn restart(&mut self) {
        self.kill().await;
        let (child, port) = spawn(self.dir.path(), self.port).await;
        assert_eq!(port, self.port, "restarted on the same port");
        self.child = Some(child);
    }
}

async fn spawn(dir: &Path, port: u16) -> (Child, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mongo-server.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .args(["start", "--durable", "--port", &port.to_string(), "--dir"])
        .arg(dir.join("db"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("stderr.log"))
                .expect("open the MongoDB server's log"),
        ))
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run bash {}: {e} (the MongoDB tests need bash and python3)",
            script.display()
        )
    });
    std::fs::create_dir_all(dir).expect("create the MongoDB data dir");
    let needs = "; it needs python3 (with venv) and PyPI access for SecantusDB (see \
                 `scripts/mongo-server.sh install`)";
    let log = dir.join("stderr.log");
    let addr =
        listening(&mut child, START_BUDGET, "MongoDB test server", needs, Stderr::File(&log)).await;
    let port = port_of(&addr);
    (child, port)
}
