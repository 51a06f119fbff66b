//! Session storage adapters: implementations of the engine's
//! [`SessionStore`](crate::engine::store::SessionStore) port that do real IO.
//!
//! - [`embedded`] — [`EmbeddedStore`], one redb file in the data directory; the default when no
//!   MongoDB is configured.
//!
//! Compiled only in normal builds (`cfg(not(madsim))`): the simulator brings its own store.

pub mod embedded;
mod error;
mod ops;
mod schema;

pub use embedded::EmbeddedStore;
