//! HTTP and WebSocket: the accept loop, the router, authentication and the session loop.

pub mod accept;
pub mod auth;
pub mod router;
pub mod timer;
pub mod ws;
