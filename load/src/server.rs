//! The server under load: either a `chatbox` process this tool starts (release binary, fresh
//! data directory, strong random secret, the stub as its only provider) or one the user runs
//! (`--server-addr`, `--server-pid`, `JWT_SECRET`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Child;
use tokio::time::Instant;

use crate::util;

/// Where the server is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The `chatbox` binary to start (default: the one beside this executable, else
    /// target/release/chatbox of this repository).
    #[arg(long, global = true)]
    pub server_bin: Option<PathBuf>,
    /// Use a running server at HOST:PORT instead of starting one (needs JWT_SECRET in the
    /// environment; give --server-pid for RSS figures).
    #[arg(long, global = true)]
    pub server_addr: Option<SocketAddr>,
    /// Process id of a running server (RSS is read from /proc/PID/status).
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Route prefix of the server.
    #[arg(long, global = true, default_value = "/chatbox")]
    pub prefix: String,
    /// Extra server environment, KEY=VALUE (repeatable); wins over the scenario's defaults.
    #[arg(long = "server-env", global = true, value_name = "KEY=VALUE")]
    pub server_env: Vec<String>,
    /// The server's LOG_LEVEL (info logs a line per connection).
    #[arg(long, global = true, default_value = "warn")]
    pub server_log_level: String,
    /// Client sockets are bound to 127.0.0.1 … 127.0.0.N in turn (loopback targets only).
    #[arg(long, global = true, default_value_t = 8)]
    pub source_addrs: usize,
}

/// A server under load.
#[derive(Debug)]
pub struct Target {
    /// Its listening address.
    pub addr: SocketAddr,
    /// Its process id, when known.
    pub pid: Option<u32>,
    /// The JWT secret tokens are signed with.
    pub secret: String,
    /// The route prefix.
    pub prefix: String,
    /// The process, when this tool started it.
    child: Option<Child>,
    /// The data directory and the stderr log, when this tool started it.
    dir: Option<tempfile::TempDir>,
    /// When SIGTERM was sent.
    terminated_at: Option<Instant>,
}

/// The started server's stderr, in its temporary directory.
const SERVER_LOG: &str = "server.log";

impl Target {
    /// Starts a server (or describes the given one) whose provider is `endpoint`, with the
    /// scenario's environment `env` (the user's `--server-env` wins).
    pub async fn start(
        args: &ServerArgs,
        endpoint: &str,
        env: &[(&str, String)],
    ) -> Result<Target, String> {
        Target::start_under(args, endpoint, env, None).await
    }

    /// [`Target::start`], with the binary run under `wrapper` (a program and its options, e.g.
    /// valgrind), which may take up to `limit` to start listening.
    pub async fn start_under(
        args: &ServerArgs,
        endpoint: &str,
        env: &[(&str, String)],
        wrapper: Option<(&[String], Duration)>,
    ) -> Result<Target, String> {
        if let Some(addr) = args.server_addr {
            let secret = std::env::var("JWT_SECRET")
                .map_err(|_| "--server-addr needs JWT_SECRET in the environment".to_string())?;
            return Ok(Target {
                addr,
                pid: args.server_pid,
                secret,
                prefix: args.prefix.clone(),
                child: None,
                dir: None,
                terminated_at: None,
            });
        }
        let bin = args.server_bin.clone().unwrap_or_else(default_binary);
        if !bin.exists() {
            return Err(format!(
                "no chatbox binary at {} (build it: cargo build --release -p chatbox --bin \
                 chatbox, or pass --server-bin)",
                bin.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("chatbox-load-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        // A DATA_DIR in --server-env wins (e.g. a tmpfs, to take fsync out of the picture).
        let data = args
            .server_env
            .iter()
            .find_map(|pair| pair.strip_prefix("DATA_DIR=").map(PathBuf::from))
            .unwrap_or_else(|| dir.path().join("data"));
        std::fs::create_dir_all(&data).map_err(|e| format!("data dir: {e}"))?;
        let log = dir.path().join(SERVER_LOG);
        let stderr = std::fs::File::create(&log).map_err(|e| format!("server log: {e}"))?;
        let secret = util::random_secret();
        let mut all: Vec<(String, String)> = vec![
            ("SERVER_HOST".into(), "127.0.0.1".into()),
            ("LOG_FORMAT".into(), "json".into()),
            ("LOG_LEVEL".into(), args.server_log_level.clone()),
            ("NO_COLOR".into(), "1".into()),
            ("CHATBOX_PATH_PREFIX".into(), args.prefix.clone()),
            ("LLM_PROVIDER_1_ID".into(), "openai-gpt4".into()),
            ("LLM_PROVIDER_1_NAME".into(), "Stub".into()),
            ("LLM_PROVIDER_1_TYPE".into(), "openai".into()),
            ("LLM_PROVIDER_1_ENDPOINT".into(), endpoint.into()),
            ("LLM_PROVIDER_1_API_KEY".into(), "sk-load-0123456789abcdef".into()),
            ("LLM_PROVIDER_1_MODEL".into(), "stub".into()),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_string(), v.clone())));
        for pair in args.server_env.iter().filter(|pair| !pair.starts_with("DATA_DIR=")) {
            let (key, value) =
                pair.split_once('=').ok_or_else(|| format!("--server-env {pair}: no '='"))?;
            all.push((key.to_string(), value.to_string()));
        }
        let launched = match wrapper {
            None => chatbox_tests::harness::launch(&bin, all, &secret, &data, stderr)
                .await
                .map_err(|error| error.to_string()),
            Some((wrapper, limit)) => {
                let Some((program, options)) = wrapper.split_first() else {
                    return Err("an empty wrapper command".into());
                };
                let mut command = tokio::process::Command::new(program);
                command
                    .args(options)
                    .arg(&bin)
                    .args(["serve", "--port", "0"])
                    .env_clear()
                    .envs(all)
                    .env("JWT_SECRET", &secret)
                    .env("DATA_DIR", &data)
                    .stderr(std::process::Stdio::from(stderr));
                if let Some(path) = std::env::var_os("PATH") {
                    command.env("PATH", path);
                }
                spawn_listening(command, "listening on ", limit).await
            }
        };
        let (child, addr) = launched
            .map_err(|error| format!("{error}\n{}", chatbox_tests::harness::log_tail(&log, 30)))?;
        Ok(Target {
            addr,
            pid: child.id(),
            secret,
            prefix: args.prefix.clone(),
            child: Some(child),
            dir: Some(dir),
            terminated_at: None,
        })
    }

    /// A process this tool started some other way (e.g. `chatbox-load relay`) listening on
    /// `addr`; it is stopped like a started server.
    pub fn from_child(child: Child, addr: SocketAddr, prefix: &str) -> Target {
        Target {
            addr,
            pid: child.id(),
            secret: "unused".into(),
            prefix: prefix.into(),
            child: Some(child),
            dir: None,
            terminated_at: None,
        }
    }

    /// `ws://ADDR{prefix}/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}/ws", self.addr, self.prefix.trim_end_matches('/'))
    }

    /// `{prefix}{path}`.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.prefix.trim_end_matches('/'))
    }

    /// (VmRSS, VmHWM) in KiB, when the pid is known.
    pub fn rss(&self) -> Option<(u64, u64)> {
        util::rss_kib(self.pid?)
    }

    /// Open file descriptors of the server, when the pid is known.
    pub fn fds(&self) -> Option<usize> {
        util::open_fds(self.pid?)
    }

    /// The Prometheus exposition, if the server answers.
    pub async fn metrics(&self) -> Option<String> {
        match util::http_get(self.addr, &self.path("/metrics/prometheus")).await {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    }

    /// Sends SIGTERM to the server (needs the pid).
    #[allow(clippy::disallowed_methods, reason = "a client tool timing the server's exit")]
    pub fn sigterm(&mut self) -> Result<(), String> {
        let pid = self.pid.ok_or("no server pid")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        self.terminated_at = Some(Instant::now());
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -TERM {pid}: {status}"))
        }
    }

    /// Waits for a started server to exit: its exit status text and the time since SIGTERM.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<(String, Duration)> {
        let child = self.child.as_mut()?;
        let status = tokio::time::timeout(limit, child.wait()).await.ok()?.ok()?;
        let since = self.terminated_at.map(|t| t.elapsed()).unwrap_or_default();
        Some((status.to_string(), since))
    }

    /// The last `lines` lines of a started server's stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(dir) = &self.dir else { return String::new() };
        chatbox_tests::harness::last_lines(&dir.path().join(SERVER_LOG), lines).1
    }

    /// Stops a started server (SIGTERM, then kill after 30 s).
    pub async fn stop(mut self) {
        if self.child.is_none() || self.sigterm().is_err() {
            return;
        }
        if self.wait_exit(Duration::from_secs(30)).await.is_none() {
            if let Some(child) = self.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}

/// Spawns `command` with stdout piped and waits up to `limit` for the line `{prefix}ADDR`;
/// the rest of stdout is read and dropped. The process is killed if it does not get there.
pub async fn spawn_listening(
    mut command: tokio::process::Command,
    prefix: &str,
    limit: Duration,
) -> Result<(Child, SocketAddr), String> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
    command.kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(limit, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix(prefix) {
                // `relay listening on ADDR (upstream …)`: the address is the first word.
                return rest.split_whitespace().next().and_then(|a| a.parse::<SocketAddr>().ok());
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(addr)) => {
            util::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok((child, addr))
        }
        other => {
            let _ = child.start_kill();
            let why = if other.is_err() { "timed out" } else { "stdout closed" };
            Err(format!("{command:?} did not print `{prefix}ADDR` ({why})"))
        }
    }
}

/// The `chatbox` binary beside this executable (same target directory and profile), else
/// `target/release/chatbox` of the repository this crate belongs to.
fn default_binary() -> PathBuf {
    let name = format!("chatbox{}", std::env::consts::EXE_SUFFIX);
    if let Some(beside) =
        std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(&name)))
    {
        if beside.exists() {
            return beside;
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release").join(name)
}
