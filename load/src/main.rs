//! `chatbox-load`: the load generator of issue 7. It drives the real `chatbox` binary over real
//! WebSockets (or any OpenAI-compatible streaming endpoint over HTTP) against a built-in stub
//! OpenAI upstream, with an open-loop message rate, and reports latency added by the server,
//! throughput, errors by kind and the server's memory (from `/proc`).
//!
//! | module | role |
//! |---|---|
//! | `stub` | the stub upstream (first-chunk delay, chunk cadence, per-request times) |
//! | `server` | starting the `chatbox` process under test (or describing a running one) |
//! | `client` | WebSocket and HTTP client connections that carry load messages |
//! | `stats` | latency definitions, histograms, counters, report printing |
//! | `run` | scenario 1, latency against rate (open loop); also `--target http` |
//! | `idle` | scenario 2, memory per idle connection |
//! | `churn` | scenario 3, sessions created and ended through the TTL sweeper |
//! | `shutdown` | scenario 4, SIGTERM with streams in flight |
//! | `relay` | a bare WebSocket ↔ SSE relay process: the floor any gateway stands on |
//! | `convo` | one-message-at-a-time conversations that record acknowledgements (issue 16) |
//! | `outage` | a database outage under steady chat: loss, reply time, `/readyz` (issue 16) |
//! | `soak` | a long run with connections churning: RSS drift, files, outbox (issue 16) |
//! | `instructions` | instructions per reply under callgrind, chatbox and the relay (issue 18) |
//!
//! Every scenario prints a human table and one `RESULT {json}` line per step on stdout, and a
//! live progress line on stderr. Figures are reported, never asserted.

mod churn;
mod client;
mod convo;
mod frame;
mod idle;
mod instructions;
mod outage;
mod relay;
mod run;
mod server;
mod shutdown;
mod soak;
mod stats;
mod stub;
mod util;

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::stub::{Stub, StubConfig};

/// The load generator of issue 7 (see BENCHMARKS.md, "Load").
#[derive(Debug, Parser)]
#[command(name = "chatbox-load", version)]
struct Cli {
    #[command(flatten)]
    server: server::ServerArgs,
    #[command(flatten)]
    stub: StubArgs,
    /// Worker threads of the runtime (default: one for the generator — a second worker woke the
    /// first on every hand-off and cost 30 % more CPU per reply, BENCHMARKS.md "1b. A lighter generator";
    /// one per core for `relay`, as chatbox runs).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

/// The stub upstream's reply shape (defaults depend on the scenario).
#[derive(Debug, Clone, clap::Args)]
struct StubArgs {
    /// Delay before the first chunk (run/idle: 20ms, churn: 0ms, shutdown: 1s).
    #[arg(long, global = true, value_parser = util::parse_duration)]
    first_chunk_delay: Option<Duration>,
    /// Content chunks per reply (run/idle: 4, churn: 1, shutdown: 20).
    #[arg(long, global = true)]
    chunks: Option<u32>,
    /// Delay between chunks (run/idle: 5ms, churn: 0ms, shutdown: 1s).
    #[arg(long, global = true, value_parser = util::parse_duration)]
    chunk_interval: Option<Duration>,
    /// Port of the in-process stub (0: any), e.g. for a proxy configured to call it.
    #[arg(long, global = true, default_value_t = 0)]
    stub_port: u16,
}

impl StubArgs {
    fn config(&self, delay_ms: u64, chunks: u32, interval_ms: u64) -> StubConfig {
        StubConfig {
            first_chunk_delay: self.first_chunk_delay.unwrap_or(Duration::from_millis(delay_ms)),
            chunks: self.chunks.unwrap_or(chunks).max(1),
            chunk_interval: self.chunk_interval.unwrap_or(Duration::from_millis(interval_ms)),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scenario 1: latency against an open-loop message rate (one step per rate).
    Run(run::RunArgs),
    /// Scenario 2: server memory per idle connection.
    Idle(idle::IdleArgs),
    /// Scenario 3: sessions created and ended through the TTL sweeper.
    Churn(churn::ChurnArgs),
    /// Scenario 4: SIGTERM with a reply streaming on every connection.
    Shutdown(shutdown::ShutdownArgs),
    /// Issue 16: a MongoDB (SecantusDB) outage under steady chat — acknowledged messages lost,
    /// reply time before / during / after, `/readyz` flip and recovery.
    Outage(outage::OutageArgs),
    /// Issue 16: a long run with connections and sessions churning — RSS drift, open files,
    /// outbox depth, errors.
    Soak(soak::SoakArgs),
    /// Issue 18: CPU instructions per reply of chatbox and of the bare relay, each under
    /// `valgrind --tool=callgrind` (two steps of messages; the difference per reply).
    Instructions(instructions::InstructionsArgs),
    /// Only the stub upstream, until killed (prints `stub endpoint URL`).
    Stub,
    /// A bare WebSocket ↔ OpenAI SSE relay (no chatbox logic), until killed: measure it with
    /// `run --server-addr` to see what two processes cost on this machine.
    Relay(relay::RelayArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let nofile = util::raise_nofile();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    let generator_default = (!matches!(cli.command, Command::Relay(_))).then_some(1);
    if let Some(threads) = cli.threads.or(generator_default) {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main(cli, nofile));
    runtime.shutdown_timeout(Duration::from_millis(200));
    std::process::ExitCode::SUCCESS
}

async fn start_stub(port: u16, config: StubConfig) -> Stub {
    match Stub::start(port, config).await {
        Ok(stub) => stub,
        Err(error) => {
            eprintln!("cannot start the stub upstream on port {port}: {error}");
            std::process::exit(2);
        }
    }
}

async fn async_main(cli: Cli, nofile: u64) {
    let _ = util::now_us(); // fix the clock's origin
    match &cli.command {
        Command::Run(args) => {
            let config = cli.stub.config(20, 4, 5);
            let stub = start_stub(cli.stub.stub_port, config).await;
            run::run(&cli.server, args, config, stub).await;
        }
        Command::Idle(args) => {
            let config = cli.stub.config(20, 4, 5);
            let stub = start_stub(cli.stub.stub_port, config).await;
            idle::idle(&cli.server, args, nofile, stub).await;
        }
        Command::Churn(args) => {
            let config = cli.stub.config(0, 1, 0);
            let stub = start_stub(cli.stub.stub_port, config).await;
            churn::churn(&cli.server, args, stub).await;
        }
        Command::Shutdown(args) => {
            let config = cli.stub.config(1000, 20, 1000);
            shutdown::shutdown(&cli.server, args, config).await;
        }
        Command::Outage(args) => {
            let config = cli.stub.config(20, 4, 5);
            let stub = start_stub(cli.stub.stub_port, config).await;
            outage::outage(&cli.server, args, stub).await;
        }
        Command::Soak(args) => {
            let config = cli.stub.config(20, 4, 5);
            let stub = start_stub(cli.stub.stub_port, config).await;
            soak::soak(&cli.server, args, stub).await;
        }
        Command::Instructions(args) => {
            let config = cli.stub.config(20, 4, 5);
            let stub = start_stub(cli.stub.stub_port, config).await;
            instructions::instructions(&cli.server, args, config, stub).await;
        }
        Command::Relay(args) => relay::relay(args).await,
        Command::Stub => {
            let config = cli.stub.config(20, 4, 5);
            let stub = start_stub(cli.stub.stub_port, config).await;
            println!("stub endpoint {}", stub.endpoint());
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                eprint!("\rstub: {} requests, {} streaming   ", stub.requests(), stub.streaming());
            }
        }
    }
}
