//! The engine: async services that drive core.
//!
//! Ports: [`llm::LlmProvider`], [`store::SessionStore`]. State: [`hub::Engine`]. Services:
//! [`dispatch`] (inbound frames), [`reply`] (one LLM reply), [`workers`] (per-session order),
//! [`sweeper`] (session and limiter expiry), [`lifecycle`] (shutdown), [`connections`] (the
//! registry and fan-out), [`admin`] (the HTTP routes' session operations: end, share, search,
//! metrics, takeover, leave). [`clock`] and [`supervisor`] are the only ways to read time and
//! spawn.

pub mod admin;
pub mod caller;
pub mod clock;
pub mod connections;
pub mod crypto;
pub mod dispatch;
pub mod dns;
pub mod encrypting_store;
pub mod gauge;
pub mod history;
pub mod hub;
pub mod ids;
pub mod lifecycle;
pub mod llm;
pub mod metrics;
pub mod notify;
pub mod outbox;
pub mod persist;
pub mod probe;
pub mod reply;
pub mod store;
pub mod supervisor;
pub mod sweeper;
pub mod workers;
