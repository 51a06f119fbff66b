//! # chatbox-sim — the real server under simulated time
//!
//! Test support for the madsim simulations in `sim/tests/` (run them with
//! `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test -p chatbox-sim`). The server
//! code is the production code; only its ports are replaced: the engine's in-memory
//! `MemoryStore` with injected [`faults`], simulated [`provider`]s, and a simulated DNS
//! [`resolver`]; for the fleet world (`fleet`), a simulated Redis (`broker`) and the fleet-wide
//! limits over it (`limits`).

#[cfg(madsim)]
pub mod broker;
#[cfg(madsim)]
pub mod client;
pub mod faults;
#[cfg(madsim)]
pub mod fleet;
#[cfg(madsim)]
pub mod limits;
pub mod provider;
#[cfg(madsim)]
pub mod replay;
pub mod resolver;
#[cfg(madsim)]
pub mod world;

/// `SIM_LOG=debug` (any filter) prints the server's logs. The subscriber draws from the
/// simulation's random numbers, so with it a seed plays a different world: to read a failing
/// seed, print with `eprintln!` at the points in question instead (SIMULATION.md).
#[cfg(madsim)]
fn log_from_env() {
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}
