//! # chatbox-core — the decisions
//!
//! Every rule of chatbox that involves time or a limit, as sans-IO state machines. Nothing here
//! performs IO, reads a clock, spawns a task or draws randomness on its own: time comes in as
//! [`time::Instant`] arguments, randomness as seeds, and effects go out as returned values.
//! The server (`shell/`) drives these machines; the simulator (`sim/`), the proptests and the fuzz
//! targets drive the very same code with moved time.
//!
//! Map:
//! - [`time`] — the `Instant` and `UnixMillis` value types every machine takes.
//! - [`session`] — `SessionTable`: create, bind, resume within the reconnect window, end, expire,
//!   one active session per user, ownership, takeover state, naming (PROTOCOL.md §6).
//! - [`response_times`] — bounded ring of response times (seed properties 12, 13).
//! - [`rate`] — the keyed sliding-window limiter and per-user connection slots (PROTOCOL.md §5).
//! - [`timer`] — a periodic schedule (cleanup and sweep ticks) that can be stopped.
//! - [`retry`] — backoff schedule and transient/permanent classification (seed fix #9).
//! - [`breaker`] — the store's circuit breaker: closed / open / half-open (issue 16).
//! - [`stream`] — an LLM reply's three deadlines and its single outcome (seed fix #8).
//! - [`godur`] — Go-style duration text (`2m0s`), parsed and formatted.
//! - [`config`] — the configuration model, loading from env/TOML, and `validate()` (PROTOCOL.md §9).
//! - [`origin`] — the allowed-origin policy (PROTOCOL.md §3.1).
//! - [`shutdown`] — the drain plan (seed fix #15).
//! - [`protocol`] — frames, HTTP bodies, the inbound pipeline and the error catalogue (§3–§5).
//! - [`shared`] — the few thread-safe wrappers the server shares between tasks (loom-checked).
//! - [`sync`] — `std::sync` normally, `loom::sync` under `--cfg loom`.

pub mod breaker;
pub mod config;
pub mod godur;
pub mod origin;
pub mod protocol;
pub mod rate;
pub mod response_times;
pub mod retry;
pub mod session;
pub mod shared;
pub mod shutdown;
pub mod stream;
pub mod sync;
pub mod time;
pub mod timer;

pub use time::{Instant, UnixMillis};
