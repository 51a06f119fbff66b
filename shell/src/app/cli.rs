//! The command line (clap): reads the environment and the optional TOML file, validates the
//! configuration (every problem at once), sets up logging, runs the server on a tokio runtime and
//! shuts it down gracefully on SIGTERM/SIGINT. `serve --dev` needs no configuration at all and
//! prints tokens and the URLs of the WebSocket, the chat page and the admin console.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine as _;
use chatbox_core::config::{self, jwt_secret_problems, Config, Origin, Secret};
use clap::{Parser, Subcommand};

use super::{telemetry, wiring};
use crate::adapters::data_dir;
use crate::http::auth::mint;
use crate::http::pages::PageOptions;
use crate::http::router::route;
use crate::server;

/// chatbox: a WebSocket gateway between people and LLM providers.
#[derive(Debug, Parser)]
#[command(name = "chatbox", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Development mode: no configuration needed (fresh secret, embedded store in the data
        /// directory, the built-in echo model); prints tokens and a WebSocket URL.
        #[arg(long)]
        dev: bool,
        /// TOML configuration file (environment variables win over it).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Data directory for the embedded store (overrides DATA_DIR).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Listen port (overrides SERVER_PORT; 0 picks a free port).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Validate the configuration and print every problem; exits non-zero when invalid.
    CheckConfig {
        /// TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Mint a JWT signed with the configured secret (for development and tests); needs only
    /// `JWT_SECRET` (or `--dev`), no provider.
    Token {
        /// `user_id` claim.
        #[arg(long)]
        user: String,
        /// `name` claim.
        #[arg(long)]
        name: Option<String>,
        /// A role (repeat for several), e.g. `--role admin`.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in Go duration syntax (e.g. `24h`); no `exp` claim when absent.
        #[arg(long)]
        ttl: Option<String>,
        /// TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Use the development secret of `serve --dev` (from the data directory).
        #[arg(long)]
        dev: bool,
        /// Data directory of `serve --dev`.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print a strong random JWT secret.
    GenSecret,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { dev, config, data_dir, port } => {
            serve(dev, config.as_deref(), data_dir, port)
        }
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::Token { user, name, roles, ttl, config, dev, data_dir } => {
            token(&user, name.as_deref(), &roles, ttl.as_deref(), config.as_deref(), dev, data_dir)
        }
        Command::GenSecret => {
            println!("{}", generate_secret());
            ExitCode::SUCCESS
        }
    }
}

/// A random secret that passes every rule of PROTOCOL.md §2.4 (48 random bytes, base64url).
pub fn generate_secret() -> String {
    loop {
        let mut bytes = [0u8; 48];
        rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
        let candidate = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        // Random text can contain a weak substring such as "demo"; draw again then.
        if jwt_secret_problems(&Secret::new(candidate.clone(), Origin::Builtin)).is_empty() {
            return candidate;
        }
    }
}

fn env_map() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// The configuration file: `--config`, else `CHATBOX_CONFIG`, else the original's `RMBASE_FILE_CFG`.
fn read_config_file(path: Option<&Path>) -> Result<Option<String>, String> {
    let from_env =
        || std::env::var_os("CHATBOX_CONFIG").or_else(|| std::env::var_os("RMBASE_FILE_CFG"));
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => match from_env() {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => return Ok(None),
        },
    };
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| format!("cannot read configuration file {}: {e}", path.display()))
}

/// What a newcomer who configured nothing is told to try first.
const DEV_HINT: &str = "Nothing is configured yet. To try chatbox without any configuration, \
                        run: chatbox serve --dev";

fn load(path: Option<&Path>) -> Result<config::Loaded, String> {
    let text = read_config_file(path)?;
    config::load(&env_map(), text.as_deref()).map_err(|errors| {
        let mut report = format!("{}:\n{errors}", errors.headline());
        if errors.nothing_configured() && text.is_none() {
            report.push_str("\n\n");
            report.push_str(DEV_HINT);
        }
        report
    })
}

/// The JWT secret alone (what `token` needs), with the same sources and rules as [`load`].
fn load_secret(path: Option<&Path>) -> Result<String, String> {
    let text = read_config_file(path)?;
    config::load_jwt_secret(&env_map(), text.as_deref())
        .map(|secret| secret.expose().to_string())
        .map_err(|errors| format!("{}:\n{errors}", errors.headline()))
}

/// The data directory made absolute and created (see [`data_dir::prepare`]).
fn prepare_data_dir(dir: &Path) -> Result<PathBuf, String> {
    data_dir::prepare(dir).map_err(|e| e.to_string())
}

fn check_config(path: Option<&Path>) -> ExitCode {
    match load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                println!("warning: {warning}");
            }
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(report) => {
            eprintln!("{report}");
            ExitCode::from(2)
        }
    }
}

/// The development secret: kept in the data directory so tokens survive restarts.
fn dev_secret(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(".dev-jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if jwt_secret_problems(&Secret::new(existing.clone(), Origin::Builtin)).is_empty() {
            return Ok(existing);
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = generate_secret();
    std::fs::write(&path, &secret)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(secret)
}

fn dev_config(data_dir: Option<PathBuf>) -> Result<Config, String> {
    let dir = data_dir
        .or_else(|| std::env::var_os("DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"));
    let dir = prepare_data_dir(&dir)?;
    let secret = dev_secret(&dir)
        .map_err(|e| format!("cannot prepare data directory {}: {e}", dir.display()))?;
    let mut config = Config::for_dev(secret, dir);
    if let Some(port) = std::env::var("SERVER_PORT").ok().and_then(|p| p.parse().ok()) {
        config.server.port = port;
    }
    Ok(config)
}

/// Colour in text logs only for a person at a terminal: never when stderr is a file or a pipe,
/// and never when `NO_COLOR` is set to anything (<https://no-color.org>).
fn log_colour() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

fn serve(dev: bool, path: Option<&Path>, data_dir: Option<PathBuf>, port: Option<u16>) -> ExitCode {
    let (mut config, warnings) = if dev {
        match dev_config(data_dir) {
            Ok(config) => {
                let warnings = config.warnings();
                (config, warnings)
            }
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(2);
            }
        }
    } else {
        match load(path) {
            Ok(loaded) => {
                let mut config = loaded.config;
                let dir = data_dir.as_deref().unwrap_or(&config.storage.data_dir);
                match prepare_data_dir(dir) {
                    Ok(dir) => config.storage.data_dir = dir,
                    Err(message) => {
                        eprintln!("{message}");
                        return ExitCode::from(2);
                    }
                }
                (config, loaded.warnings)
            }
            Err(report) => {
                eprintln!("{report}");
                return ExitCode::from(2);
            }
        }
    };
    if let Some(port) = port {
        config.server.port = port;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Logs, and trace export when OTEL_EXPORTER_OTLP_ENDPOINT is set (its requests run on
    // the runtime).
    let telemetry = match telemetry::init(&config, log_colour(), runtime.handle()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let code = runtime.block_on(run(Arc::new(config), dev, path.map(Path::to_path_buf)));
    // Queued spans are sent while the runtime still runs (bounded by TRACE_FLUSH_BUDGET).
    telemetry.shutdown();
    // Tasks still running after the drain plan exited (e.g. a stuck store call) are abandoned.
    runtime.shutdown_timeout(chatbox_core::budgets::RUNTIME_SHUTDOWN_GRACE);
    code
}

async fn run(config: Arc<Config>, dev: bool, config_path: Option<PathBuf>) -> ExitCode {
    // Handlers first: a SIGTERM that arrives while the store opens or the listener binds is
    // queued and answered with a graceful shutdown once serving, never the default kill.
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let store = match wiring::store(&config).await {
        Ok(store) => store,
        Err(error) => {
            tracing::error!(%error, "start-up failed");
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let providers = match wiring::providers(&config) {
        Ok(providers) => providers,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let notifier = crate::adapters::notify::from_config(&config.alerts);
    let outbox = match wiring::outbox(&config) {
        Ok(outbox) => outbox,
        Err(error) => {
            tracing::error!(%error, "start-up failed");
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let resolver = Arc::new(crate::adapters::dns::SystemResolver);
    let ports = server::Ports { store, outbox, providers, notifier, resolver };
    let pages = PageOptions { dev };
    let running = match server::start_with_pages(Arc::clone(&config), ports, pages).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("cannot listen on {}:{}: {error}", config.server.host, config.server.port);
            return ExitCode::FAILURE;
        }
    };
    let addr = running.addr();
    if dev {
        print_dev_banner(&config, addr);
    }
    // Machine-readable line for scripts and tests that start the binary on port 0.
    println!("listening on {addr}");
    loop {
        match signals.next().await {
            Signal::Stop => break,
            Signal::Reload => reload_origins(&running, config_path.as_deref()),
        }
    }
    let report = running.shutdown().await;
    tracing::info!(
        cut_replies = report.cut_replies,
        forced_connections = report.forced_connections,
        "stopped"
    );
    ExitCode::SUCCESS
}

fn print_dev_banner(config: &Config, addr: std::net::SocketAddr) {
    let secret = config.auth.jwt_secret.expose().as_bytes();
    let day = chrono::Utc::now().timestamp() + 24 * 3600;
    let user = mint(secret, "dev-user", Some("Dev User"), &["user".into()], Some(day));
    let admin = mint(secret, "dev-admin", Some("Dev Admin"), &["admin".into()], Some(day));
    let (Ok(user), Ok(admin)) = (user, admin) else { return };
    let host =
        if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let ws = route(&config.server.path_prefix, "/ws");
    println!(
        "chatbox is running in development mode (echo model, embedded store in {})",
        config.storage.data_dir.display()
    );
    println!("user token (24 h):  {user}");
    println!("admin token (24 h): {admin}");
    println!("WebSocket URL:      ws://{host}:{}{ws}?token={user}", addr.port());
    let chat = route(&config.server.path_prefix, "/chat");
    let console = route(&config.server.path_prefix, "/console");
    println!("Chat page: http://{host}:{}{chat}?token={user}", addr.port());
    println!("Admin console: http://{host}:{}{console}?token={admin}", addr.port());
}

/// What a signal asks for.
enum Signal {
    /// SIGTERM or SIGINT: shut down gracefully.
    Stop,
    /// SIGHUP: re-read the configuration and apply what can change at runtime.
    Reload,
}

/// The process's signal streams, registered once at start-up so no signal falls between two
/// waits.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal that asks for something.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => { tracing::info!("SIGTERM received"); Signal::Stop }
            _ = self.int.recv() => { tracing::info!("SIGINT received"); Signal::Stop }
            _ = self.hup.recv() => { tracing::info!("SIGHUP received"); Signal::Reload }
        }
    }
}

/// Re-reads the configuration and swaps in the new origin allow-list (no restart, no race:
/// handshakes in progress finish with the list they started with). Other settings need a restart.
fn reload_origins(running: &server::Running, path: Option<&Path>) {
    match load(path) {
        Ok(loaded) => {
            let origins = loaded.config.websocket.allowed_origins;
            tracing::info!(count = origins.len(), "allowed origins reloaded");
            running.engine.origins.replace(chatbox_core::origin::OriginPolicy::new(&origins));
        }
        Err(report) => {
            tracing::error!(%report, "configuration reload refused; keeping the current settings")
        }
    }
}

fn token(
    user: &str,
    name: Option<&str>,
    roles: &[String],
    ttl: Option<&str>,
    path: Option<&Path>,
    dev: bool,
    data_dir: Option<PathBuf>,
) -> ExitCode {
    let secret = if dev {
        dev_config(data_dir).map(|config| config.auth.jwt_secret.expose().to_string())
    } else {
        load_secret(path)
    };
    let secret = match secret {
        Ok(secret) => secret,
        Err(report) => {
            eprintln!("{report}");
            return ExitCode::from(2);
        }
    };
    let expires_at = match ttl.map(chatbox_core::godur::parse) {
        None => None,
        Some(Ok(d)) => Some(
            chrono::Utc::now().timestamp() + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
        ),
        Some(Err(error)) => {
            eprintln!("--ttl: {error}");
            return ExitCode::from(2);
        }
    };
    match mint(secret.as_bytes(), user, name, roles, expires_at) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
