//! HTTP and WebSocket: the accept loop, the router, authentication, the WebSocket route ([`ws`])
//! and its session loop ([`ws_session`], generic over Sink/Stream), the REST and admin routes
//! ([`rest`], [`admin`] with its live events [`admin_events`], their path segments [`path_key`]), the client IP ([`client_ip`]) and the
//! HTTP rate limits ([`limits`]), and the web pages ([`pages`]).

pub mod accept;
pub mod admin;
pub mod admin_events;
pub mod auth;
pub mod client_ip;
pub mod limits;
pub mod ops;
pub mod pages;
pub mod path_key;
pub mod rest;
pub mod router;
pub mod timer;
pub mod upload;
pub mod ws;
pub mod ws_session;
