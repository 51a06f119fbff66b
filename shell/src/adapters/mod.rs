//! Adapters: IO that is not simulated. Everything here except `llm::echo` is compiled only in
//! normal builds (`cfg(not(madsim))`); the simulator replaces them with its own implementations
//! of the engine's ports.

#[cfg(not(madsim))]
pub mod bus;
#[cfg(not(madsim))]
pub mod data_dir;
#[cfg(not(madsim))]
pub mod dns;
#[cfg(not(madsim))]
pub mod files;
#[cfg(not(madsim))]
pub mod limits;
pub mod llm;
#[cfg(not(madsim))]
pub mod notify;
#[cfg(not(madsim))]
pub mod outbox;
#[cfg(not(madsim))]
pub mod store;
