//! # chatbox — the server
//!
//! Drives chatbox-core's state machines with real IO. Four parts (ARCHITECTURE.md):
//! - [`engine`] — a small struct of services, each owning its state: `sessions` (the live table,
//!   load on demand, resolution with the asking connection's binding move, who assists, the
//!   sweeper), `delivery` (bindings, error frames and every fan-out, through the `Bus` port, and
//!   the admin consoles' live events), `persistence` (the only user of the store: retries, the
//!   durable outbox, history reads with their fallback cache), `limits` (rate limiters,
//!   connection slots), `replies` (models, one reply under core's deadlines, retries and
//!   fallbacks, upstream conversation ids, token accounts) and `alerts`; client frames one file
//!   each in `engine::frames` behind one dispatch, which keeps each session's frames in order.
//!   It talks to the world only through ports: `LlmProvider`, `SessionStore`, `Outbox` (with its
//!   `EntrySeal`), `Notifier`, `Resolver`, `Bus`. The services never call back into the frame
//!   handlers: one `user_message` passes through eight files (README, "The path of one
//!   `user_message`").
//! - [`http`] — the accept loop (hyper + tokio-tungstenite, so the same code runs under madsim),
//!   the axum router, JWT checks, origin checks, security headers, the WebSocket session loop
//!   (which hands each data frame straight to `engine::frames::on_text`).
//! - [`adapters`] — what madsim cannot simulate (stores, HTTP providers, notifiers, the outbox
//!   file, the system resolver), compiled only in normal builds; they implement the engine's
//!   ports and import little else of it (the store breaker reads the engine's `Clock`; the Redis
//!   link drives the engine's `FleetBus`). The built-in `echo` provider is pure and always present.
//! - [`app`] — the composition root: the command line and the wiring of real ports; [`server`]
//!   starts and stops the services (shared with the simulator, which wires its own ports).

pub mod adapters;
#[cfg(not(madsim))]
pub mod app;
pub mod engine;
pub mod http;
pub mod server;
