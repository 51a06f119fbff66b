//! # chatbox — the server
//!
//! Drives chatbox-core's state machines with real IO. Three parts (ARCHITECTURE.md):
//! - [`engine`] — async services: sessions and their sweeper, the message path (provider call
//!   with deadlines, fan-out, persistence), the connection registry, shutdown. It talks to the
//!   world only through the ports [`engine::llm::LlmProvider`] and [`engine::store::SessionStore`].
//! - [`http`] — the accept loop (hyper + tokio-tungstenite, so the same code runs under madsim),
//!   the axum router, JWT checks, origin checks, security headers, the WebSocket session loop.
//! - [`adapters`] — what madsim cannot simulate (embedded store, HTTP providers, CLI helpers),
//!   compiled only in normal builds; the built-in `echo` provider is pure and always present.

pub mod adapters;
pub mod engine;
pub mod http;
pub mod server;
