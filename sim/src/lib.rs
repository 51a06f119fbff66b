//! # chatbox-sim — the real server under simulated time
//!
//! Test support for the madsim simulations in `sim/tests/` (run them with
//! `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test -p chatbox-sim`). The server
//! code is the production code; only its ports are replaced: [`store::SimStore`] is an in-memory
//! `SessionStore`, and replies come from the pure `echo` provider.

pub mod faults;
pub mod provider;
pub mod store;
#[cfg(madsim)]
pub mod world;
