//! The engine: async services that drive core (ARCHITECTURE.md "The engine's services").
//!
//! [`hub::Engine`] is a small struct of services, each owning its state in its own module:
//! - [`sessions`] — the live session table, load on demand, resolution, who assists, and the
//!   [`sessions::sweeper`];
//! - [`delivery`] — which connections are bound to which session, and every fan-out, through
//!   the [`delivery::Bus`] port (in-process or the fleet's), and the admin consoles' live events;
//! - [`persistence`] — the only user of the store: retries, the durable outbox and its drain,
//!   history reads, readiness;
//! - [`limits`] — user, admin and public rate limiters, connection slots;
//! - [`replies`] — models and one reply under core's deadlines, retry schedule and fallbacks,
//!   token accounts;
//! - [`alerts`] — help-request alerts and their limiter;
//! - [`turns`] — in a fleet, one user's messages answered one at a time across instances.
//!
//! Client frames are handled one file each behind one dispatch in [`frames`]; the HTTP routes'
//! session operations are in [`admin`]; [`lifecycle`] drives shutdown. Ports: [`llm::LlmProvider`],
//! [`store::SessionStore`], [`persistence::Outbox`], [`notify::Notifier`], [`dns::Resolver`],
//! [`delivery::Bus`]. [`clock`] and [`supervisor`] are the only ways to read time and spawn.

pub mod admin;
pub mod alerts;
pub mod caller;
pub mod clock;
pub mod crypto;
pub mod delivery;
pub mod dns;
pub mod encrypting_files;
pub mod encrypting_store;
pub mod files;
pub mod fleet_limits;
pub mod frames;
pub mod gauge;
pub mod history;
pub mod hub;
pub mod ids;
pub mod lifecycle;
pub mod limits;
pub mod llm;
pub mod metrics;
pub mod notify;
pub mod persistence;
pub mod probe;
pub mod relay;
pub mod replies;
pub mod sessions;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod turns;
pub mod vision;
