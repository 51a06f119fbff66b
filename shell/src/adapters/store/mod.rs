//! Session storage adapters: implementations of the engine's
//! [`SessionStore`](crate::engine::store::SessionStore) port that do real IO.
//!
//! - [`embedded`] — [`EmbeddedStore`], one redb file in the data directory; the default when no
//!   MongoDB is configured.
//! - [`mongo`] — [`MongoStore`], the original system's `chat.sessions` collection on MongoDB.
//! - [`breaker`] — [`BreakerStore`], a decorator that fails calls fast while the store is known
//!   to be down (core's circuit breaker); the binary puts it around MongoDB.
//!
//! Compiled only in normal builds (`cfg(not(madsim))`): the simulator brings its own store.

pub mod breaker;
pub mod embedded;
mod error;
#[cfg(feature = "mongodb")]
pub mod mongo;
mod ops;
mod schema;
mod writer;

pub use breaker::BreakerStore;
pub use embedded::EmbeddedStore;
#[cfg(feature = "mongodb")]
pub use mongo::MongoStore;
